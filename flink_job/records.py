"""Avro records (schemas/avro) the job emits, built from processor emissions."""

from __future__ import annotations

from typing import Any

from flink_job.symbol_processor import Emission

SOURCE = "torghut-ta"  # the default job name; records carry the name of the job that made them


def _common(em: Emission, emit_ns: int, source: str) -> dict[str, Any]:
    """Fields every derived record shares: identity, window, finality, lineage."""
    size_ms = (em.bar.end_ns - em.bar.start_ns) // 1_000_000
    return {
        "symbol": em.bar.symbol,
        "window": {
            "size_ms": size_ms,
            "step_ms": size_ms,
            "start": em.bar.start_ns // 1_000,
            "end": em.bar.end_ns // 1_000,
        },
        "is_final": em.is_final,
        "version": emit_ns,
        "event_ts": em.event_ns,
        "ingest_ts": em.ingest_ns,
        "emit_ts": emit_ns,
        "seq": em.seq,
        "source": source,
        "trace_id": em.trace_id,
    }


def microbar_record(em: Emission, emit_ns: int, source: str = SOURCE) -> dict[str, Any]:
    b = em.bar
    rec = _common(em, emit_ns, source)
    rec.update(
        open=b.open,
        high=b.high,
        low=b.low,
        close=b.close,
        volume=b.volume,
        vwap=b.vwap,
        trade_count=b.trade_count,
        gap=em.gap,
        price_basis=b.price_basis,
    )
    return rec


def signal_record(em: Emission, emit_ns: int, source: str = SOURCE) -> dict[str, Any]:
    rec = _common(em, emit_ns, source)
    rec["close"] = em.bar.close
    rec.update(em.signals.as_dict())
    rec["gap"] = em.gap
    return rec
