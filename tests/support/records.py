"""Builders of valid Avro records for tests: envelopes of every payload type, micro-bars,
signals, job status (the contracts in schemas/avro)."""

from __future__ import annotations

import datetime as dt
from typing import Any

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


SIGNAL_INDICATORS = (
    "ema12",
    "ema26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi14",
    "boll_mid",
    "boll_upper",
    "boll_lower",
    "atr14",
    "vwap_session",
    "vwap_5m",
    "realized_vol_60s",
    "spread",
    "imbalance",
)


def micros(ts: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=ts)


def window(start_us: int = 1_767_364_200_000_000, size_ms: int = 1000) -> dict[str, int]:
    return {
        "size_ms": size_ms,
        "step_ms": size_ms,
        "start": start_us,
        "end": start_us + size_ms * 1000,
    }


def decoded_window(w: dict[str, int]) -> dict[str, Any]:
    return {**w, "start": micros(w["start"]), "end": micros(w["end"])}


def microbar(**over: Any) -> dict[str, Any]:
    rec = {
        "symbol": "AAPL",
        "window": window(),
        "open": 187.1,
        "high": 187.5,
        "low": 186.9,
        "close": 187.25,
        "volume": 1234.5,
        "vwap": 187.2,
        "trade_count": 17,
        "is_final": True,
        "version": 3,
        "event_ts": 1_767_364_200_999_999_999,
        "ingest_ts": 1_767_364_201_000_123_456,
        "emit_ts": 1_767_364_201_010_000_001,
        "seq": 42,
        "source": "torghut-ta",
        "trace_id": "t-1",
        "gap": False,
        "price_basis": 2,
    }
    rec.update(over)
    return rec


def signal(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "symbol": "AAPL",
        "window": window(),
        "close": 187.25,
        **dict.fromkeys(SIGNAL_INDICATORS),
        "is_final": False,
        "version": 1,
        "event_ts": 1_767_364_200_500_000_001,
        "ingest_ts": 1_767_364_200_500_100_000,
        "emit_ts": 1_767_364_200_600_000_000,
        "seq": 7,
        "source": "torghut-ta",
        "trace_id": "",
        "gap": False,
    }
    rec.update(over)
    return rec


def ta_status(**over: Any) -> dict[str, Any]:
    rec = {
        "job": "torghut-ta",
        "subtask": 0,
        "emit_ts": 1_767_364_201_000_000_000,
        "watermark_ts": 1_767_364_199_000_000_000,
        "watermark_lag_ms": 2000,
        "source_lag_ms": 150,
        "records_in": 10_000,
        "records_out": 3_000,
        "late_events": 2,
        "out_of_order_events": 5,
        "seq_gaps": 0,
        "rejected_records": 1,
        "symbols": [
            {
                "symbol": "AAPL",
                "last_event_ts": 1_767_364_200_999_999_999,
                "late_events": 2,
                "out_of_order_events": 5,
                "seq_gaps": 0,
            }
        ],
        "gap_markers": 3,
        "late_gap_markers": 1,
        "refused_outputs": 2,
        "nulled_values": 0,
    }
    rec.update(over)
    return rec


def envelope(channel: str, payload: dict[str, Any], **over: Any) -> dict[str, Any]:
    rec = {
        "ingest_ts": 1_767_364_200_000_500_000,
        "event_ts": 1_767_364_200_000_123_456,
        "feed": "iex",
        "channel": channel,
        "symbol": "AAPL",
        "seq": 1,
        "payload": payload,
        "is_final": True,
        "source": "alpaca",
        "window": None,
        "trace_id": "abc",
    }
    rec.update(over)
    return rec


PAYLOADS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "torghut.Trade",
        "trades",
        {
            "id": 52983525029461,
            "exchange": "V",
            "price": 187.25,
            "size": 0.0123,
            "conditions": ["@", "I"],
            "tape": "C",
        },
    ),
    (
        "torghut.Quote",
        "quotes",
        {
            "bid_exchange": "V",
            "bid_price": 187.2,
            "bid_size": 300.0,
            "ask_exchange": "Q",
            "ask_price": 187.3,
            "ask_size": 0.5,
            "conditions": ["R"],
            "tape": "C",
        },
    ),
    (
        "torghut.Bar",
        "updatedBars",
        {
            "open": 1.0,
            "high": 2.0,
            "low": 0.5,
            "close": 1.5,
            "volume": 1234.75,
            "trade_count": 9,
            "vwap": 1.4,
        },
    ),
    (
        "torghut.TradingStatus",
        "statuses",
        {
            "status_code": "H",
            "status_message": "Trading Halt",
            "reason_code": "T12",
            "reason_message": "News pending",
            "tape": "C",
        },
    ),
    (
        "torghut.Luld",
        "lulds",
        {"limit_up_price": 190.0, "limit_down_price": 180.0, "indicator": "B", "tape": "C"},
    ),
    (
        "torghut.Correction",
        "corrections",
        {
            "exchange": "V",
            "original_id": 1,
            "original_price": 187.0,
            "original_size": 10.0,
            "original_conditions": ["@"],
            "corrected_id": 2,
            "corrected_price": 187.1,
            "corrected_size": 10.5,
            "corrected_conditions": ["@", "I"],
            "tape": "C",
        },
    ),
    (
        "torghut.CancelError",
        "cancelErrors",
        {"id": 77, "exchange": "V", "price": 187.0, "size": 3.25, "action": "C", "tape": "C"},
    ),
    (
        "torghut.ForwarderStatus",
        "status",
        {
            "event": "reconnecting",
            "reason": "ws closed 1006",
            "attempt": 3,
            "code": 1006,
            "detail": "backoff 2s",
        },
    ),
]
