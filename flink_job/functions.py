"""PyFlink adapters: decode, event-time assignment, and the per-symbol TA function."""

from __future__ import annotations

import logging
import time
from typing import Any

from pyflink.common import Types
from pyflink.datastream import FlatMapFunction, KeyedProcessFunction, RuntimeContext, TimeDomain
from pyflink.datastream.state import ValueStateDescriptor

from flink_job.decode import REJECTED, decode_raw
from flink_job.records import microbar_record, signal_record
from flink_job.symbol_processor import (
    CANCEL,
    CORRECTION,
    QUOTE,
    TRADE,
    SymbolProcessor,
    SymbolState,
)
from shared.framing import frame_record
from shared.indicators import SignalConfig, SignalState
from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS, TA_STATUS

log = logging.getLogger("torghut.ta")


class DecodeRaw(FlatMapFunction):
    """Confluent-framed Avro envelope -> event tuple; undecodable input -> a REJECTED marker."""

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url
        self._deser: AvroDeserializer | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._deser = AvroDeserializer(SchemaRegistryClient(self.registry_url), "torghut.Envelope")

    def flat_map(self, value: bytes):
        assert self._deser is not None
        yield from decode_raw(self._deser, bytes(value))


class SymbolTaFunction(KeyedProcessFunction):
    """1 s bars, signals and status for one symbol per key; emits sink frames."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts

    def open(self, runtime_context: RuntimeContext) -> None:
        o = self.opts
        self.symbol_state = runtime_context.get_state(
            ValueStateDescriptor("symbol-state", Types.PICKLED_BYTE_ARRAY())
        )
        self.signal_state = runtime_context.get_state(
            ValueStateDescriptor("signal-state", Types.PICKLED_BYTE_ARRAY())
        )
        self.signal_config = SignalConfig.parse(o["session_start_local"], o["quote_max_age_ms"])
        self.proc = SymbolProcessor(
            bar_size_ns=o["bar_size_ms"] * 1_000_000,
            provisional_interval_ns=o["provisional_interval_ms"] * 1_000_000,
            quote_max_age_ns=o["quote_max_age_ms"] * 1_000_000,
        )
        registry = SchemaRegistryClient(o["registry_url"])
        self.bars_out = AvroSerializer(registry, TA_BARS_1S)
        self.signals_out = AvroSerializer(registry, TA_SIGNALS)
        self.status_out = AvroSerializer(registry, TA_STATUS)
        # per-key objects cached between records; state is written on every change, and a
        # restore re-opens the function, so the cache never outlives its state
        self.cache: dict[str, tuple[SymbolState, SignalState]] = {}
        self.subtask = runtime_context.get_index_of_this_subtask()
        self.job = o["job_name"]
        self.status_interval_ns = o["status_interval_ms"] * 1_000_000
        self.records_in = self.records_out = self.rejected = 0
        self.max_event_ns = 0
        self.last_status_ns = 0
        # the heartbeat: a processing-time timer chain, so status flows while input is idle
        self.heartbeat_due_ms = 0
        self.watermark_ms: int | None = None

    def _load(self, key: str) -> tuple[SymbolState, SignalState]:
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        raw_sym, raw_sig = self.symbol_state.value(), self.signal_state.value()
        sym = SymbolState.from_state(raw_sym) if raw_sym is not None else SymbolState()
        sig = (
            SignalState.from_state(raw_sig, self.signal_config)
            if raw_sig is not None
            else SignalState(self.signal_config)
        )
        self.cache[key] = (sym, sig)
        return sym, sig

    def _frames(self, emissions, key: bytes):
        now = time.time_ns()
        for em in emissions:
            yield frame_record(TA_BARS_1S.name, key, self.bars_out.encode(microbar_record(em, now)))
            yield frame_record(
                TA_SIGNALS.name, key, self.signals_out.encode(signal_record(em, now))
            )
            self.records_out += 2

    def _arm_heartbeat(self, ctx) -> None:
        self.heartbeat_due_ms = time.time_ns() // 1_000_000 + self.status_interval_ns // 1_000_000
        ctx.timer_service().register_processing_time_timer(self.heartbeat_due_ms)

    def process_element(self, value: tuple, ctx: KeyedProcessFunction.Context):
        self.records_in += 1
        if not self.heartbeat_due_ms:
            self._arm_heartbeat(ctx)
        wm = ctx.timer_service().current_watermark()
        self.watermark_ms = wm
        kind = value[0]
        if kind == REJECTED:
            self.rejected += 1
            log.warning("rejected raw record: %s", value[6])
            yield from self._maybe_status()
            return
        key = ctx.get_current_key()
        sym, sig = self._load(key)
        if value[2] > self.max_event_ns:
            self.max_event_ns = value[2]
        if kind == TRADE:
            result = self.proc.on_trade(sym, sig, value, wm, time.time_ns())
            if result.new_timer_ms is not None:
                ctx.timer_service().register_event_time_timer(result.new_timer_ms)
            self.symbol_state.update(sym.to_state())
            yield from self._frames(result.emissions, key.encode())
        elif kind == QUOTE:
            self.proc.on_quote(sym, value)
            self.symbol_state.update(sym.to_state())
        elif kind in (CORRECTION, CANCEL):
            self.proc.on_correction(sym, value)
            self.symbol_state.update(sym.to_state())
        yield from self._maybe_status()

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):
        if ctx.time_domain() == TimeDomain.PROCESSING_TIME:
            # only the newest chain re-arms: a timer restored from a checkpoint ends there
            if timestamp >= self.heartbeat_due_ms:
                self._arm_heartbeat(ctx)
            self.last_status_ns = 0
            yield from self._maybe_status()
            return
        key = ctx.get_current_key()
        sym, sig = self._load(key)
        wm = max(timestamp, ctx.timer_service().current_watermark())
        self.watermark_ms = wm
        emissions = self.proc.on_watermark(sym, sig, wm)
        if emissions:
            self.signal_state.update(sig.to_state())
            self.symbol_state.update(sym.to_state())
            yield from self._frames(emissions, key.encode())

    def _maybe_status(self):
        now = time.time_ns()
        if now - self.last_status_ns < self.status_interval_ns:
            return
        self.last_status_ns = now
        symbols, late, ooo, gaps = [], 0, 0, 0
        for name, (sym, _sig) in sorted(self.cache.items()):
            c = sym.counters
            late, ooo, gaps = (
                late + c.late,
                ooo + c.out_of_order,
                gaps + c.seq_gaps + c.seq_regressions,
            )
            symbols.append(
                {
                    "symbol": name,
                    "last_event_ts": sym.last_trade_ns,
                    "late_events": c.late,
                    "out_of_order_events": c.out_of_order,
                    "seq_gaps": c.seq_gaps + c.seq_regressions,
                }
            )
        wm = self.watermark_ms if self.watermark_ms is not None and self.watermark_ms > 0 else None
        record = {
            "job": self.job,
            "subtask": self.subtask,
            "emit_ts": now,
            "watermark_ts": wm * 1_000_000 if wm is not None else None,
            "watermark_lag_ms": now // 1_000_000 - wm if wm is not None else None,
            "source_lag_ms": (now - self.max_event_ns) // 1_000_000 if self.max_event_ns else None,
            "records_in": self.records_in,
            "records_out": self.records_out,
            "late_events": late,
            "out_of_order_events": ooo,
            "seq_gaps": gaps,
            "rejected_records": self.rejected,
            "symbols": symbols,
        }
        self.records_out += 1
        yield frame_record(TA_STATUS.name, self.job.encode(), self.status_out.encode(record))
