"""Alpaca market-data message -> ``torghut.Envelope`` record (pure, no I/O).

This is the readable reference mapping: status events are built with it, and the fast
byte writer (``forwarder.avro_writer``) is tested to produce exactly what fastavro writes
for these dicts. Timestamps stay integers: JSON carries RFC 3339 strings with nanoseconds,
msgpack a Timestamp ext (decoded with ``timestamp=2`` to int ns), both parsed exactly.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

import msgpack

from forwarder.exceptions import InvalidMessageError

NS_PER_US = 1_000
NS_PER_S = 1_000_000_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000

# Alpaca message type ``T`` -> envelope channel (the catalog maps channel -> topic).
CHANNEL_BY_TYPE: dict[str, str] = {
    "t": "trades",
    "q": "quotes",
    "b": "bars",
    "u": "updatedBars",
    "d": "dailyBars",
    "s": "statuses",
    "l": "lulds",
    "c": "corrections",
    "x": "cancelErrors",
}
STATUS_CHANNEL = "status"
#: gap markers (forwarder/gaps.py): a ForwarderStatus payload in the raw trades topic
GAP_CHANNEL = "gap"
CONTROL_TYPES = frozenset(("success", "error", "subscription"))
BAR_WINDOW_MS = {"b": MINUTE_MS, "u": MINUTE_MS, "d": DAY_MS}
SOURCE = "alpaca"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})"
)
_SECOND_CACHE: dict[str, int] = {}


def parse_rfc3339_ns(text: str) -> int:
    """RFC 3339 (Go ``RFC3339Nano``, 0-9 fraction digits, Z or offset) -> epoch ns, exactly."""
    head = text[:19]
    secs = _SECOND_CACHE.get(head)
    tail = text[19:]
    # fast path: a cached second and "Z" or ".fffZ"
    if secs is not None and tail[-1:] == "Z":
        if tail == "Z":
            return secs * NS_PER_S
        frac = tail[1:-1]
        if tail[0] == "." and 0 < len(frac) <= 9 and frac.isdigit():
            return secs * NS_PER_S + int(frac.ljust(9, "0"))
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise InvalidMessageError("bad_timestamp", f"not RFC 3339: {text[:64]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        secs = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
        if not (
            1 <= int(month) <= 12
            and 1 <= int(day) <= 31
            and int(hour) < 24
            and int(minute) < 60
            and int(second) < 61
        ):
            raise ValueError("field out of range")
    except (ValueError, OverflowError) as exc:
        raise InvalidMessageError("bad_timestamp", f"{text[:64]!r}: {exc}") from None
    if zone in ("Z", "z"):
        if len(_SECOND_CACHE) > 100_000:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[head] = secs
    else:
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * NS_PER_S + int((frac or "0").ljust(9, "0"))


def event_ts_ns(value: Any) -> int:
    """Any wire form of Alpaca's ``t`` -> epoch ns: int ns (msgpack ``timestamp=2``),
    msgpack.Timestamp, or an RFC 3339 string (JSON)."""
    if type(value) is int:
        if value <= 0 or value >= 1 << 63:
            raise InvalidMessageError("bad_timestamp", f"t={value} out of range")
        return value
    if isinstance(value, str):
        return parse_rfc3339_ns(value)
    if isinstance(value, msgpack.Timestamp):
        return event_ts_ns(value.to_unix_nano())
    raise InvalidMessageError("bad_timestamp", f"t of type {type(value).__name__}")


def _s(msg: Mapping[str, Any], key: str, default: str | None = None) -> str:
    v = msg.get(key, default)
    if not isinstance(v, str):
        raise InvalidMessageError(
            "invalid_field", f"{key} must be a string, got {type(v).__name__}"
        )
    return v


def _f(msg: Mapping[str, Any], key: str) -> float:
    v = msg.get(key)
    if type(v) not in (int, float):
        raise InvalidMessageError(
            "invalid_field", f"{key} must be a number, got {type(v).__name__}"
        )
    return float(v)  # type: ignore[arg-type]


def _i(msg: Mapping[str, Any], key: str) -> int:
    v = msg.get(key)
    if type(v) is not int or not -(1 << 63) <= v < 1 << 63:  # type: ignore[operator]
        raise InvalidMessageError("invalid_field", f"{key} must be a 64-bit integer")
    return v  # type: ignore[return-value]


def _strs(msg: Mapping[str, Any], key: str) -> list[str]:
    v = msg.get(key, ())
    if v is None:
        return []
    if type(v) not in (list, tuple) or not all(isinstance(x, str) for x in v):
        raise InvalidMessageError("invalid_field", f"{key} must be a list of strings")
    return list(v)


def payload_of(msg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(Avro union branch name, payload record) of one market-data message."""
    kind = msg.get("T")
    if kind == "t":
        return "torghut.Trade", {
            "id": _i(msg, "i"),
            "exchange": _s(msg, "x"),
            "price": _f(msg, "p"),
            "size": _f(msg, "s"),
            "conditions": _strs(msg, "c"),
            "tape": _s(msg, "z", ""),
        }
    if kind == "q":
        return "torghut.Quote", {
            "bid_exchange": _s(msg, "bx"),
            "bid_price": _f(msg, "bp"),
            "bid_size": _f(msg, "bs"),
            "ask_exchange": _s(msg, "ax"),
            "ask_price": _f(msg, "ap"),
            "ask_size": _f(msg, "as"),
            "conditions": _strs(msg, "c"),
            "tape": _s(msg, "z", ""),
        }
    if kind in ("b", "u", "d"):
        return "torghut.Bar", {
            "open": _f(msg, "o"),
            "high": _f(msg, "h"),
            "low": _f(msg, "l"),
            "close": _f(msg, "c"),
            "volume": _f(msg, "v"),
            "trade_count": _i(msg, "n"),
            "vwap": _f(msg, "vw"),
        }
    if kind == "s":
        return "torghut.TradingStatus", {
            "status_code": _s(msg, "sc"),
            "status_message": _s(msg, "sm"),
            "reason_code": _s(msg, "rc"),
            "reason_message": _s(msg, "rm"),
            "tape": _s(msg, "z", ""),
        }
    if kind == "l":
        return "torghut.Luld", {
            "limit_up_price": _f(msg, "u"),
            "limit_down_price": _f(msg, "d"),
            "indicator": _s(msg, "i"),
            "tape": _s(msg, "z", ""),
        }
    if kind == "c":
        return "torghut.Correction", {
            "exchange": _s(msg, "x"),
            "original_id": _i(msg, "oi"),
            "original_price": _f(msg, "op"),
            "original_size": _f(msg, "os"),
            "original_conditions": _strs(msg, "oc"),
            "corrected_id": _i(msg, "ci"),
            "corrected_price": _f(msg, "cp"),
            "corrected_size": _f(msg, "cs"),
            "corrected_conditions": _strs(msg, "cc"),
            "tape": _s(msg, "z", ""),
        }
    if kind == "x":
        return "torghut.CancelError", {
            "id": _i(msg, "i"),
            "exchange": _s(msg, "x"),
            "price": _f(msg, "p"),
            "size": _f(msg, "s"),
            "action": _s(msg, "a"),
            "tape": _s(msg, "z", ""),
        }
    raise InvalidMessageError("unknown_type", f"T={str(kind)[:32]!r}")


def window_of(kind: str, event_ts: int) -> dict[str, int] | None:
    """The bar window (timestamp-micros start/end) of b/u/d messages; None for the rest."""
    size_ms = BAR_WINDOW_MS.get(kind)
    if size_ms is None:
        return None
    start_us = event_ts // NS_PER_US
    return {
        "size_ms": size_ms,
        "step_ms": size_ms,
        "start": start_us,
        "end": start_us + size_ms * 1000,
    }


def to_envelope(
    msg: Mapping[str, Any], *, feed: str, seq: int, ingest_ts: int, trace_id: str
) -> dict[str, Any]:
    """One Alpaca market-data message as an Envelope record (fastavro dict form)."""
    if not isinstance(msg, Mapping):
        raise InvalidMessageError("not_an_object", f"message of type {type(msg).__name__}")
    kind = msg.get("T")
    if kind not in CHANNEL_BY_TYPE:
        raise InvalidMessageError("unknown_type", f"T={str(kind)[:32]!r}")
    symbol = _s(msg, "S")
    if not symbol:
        raise InvalidMessageError("invalid_field", "S must not be empty")
    event_ts = event_ts_ns(msg.get("t"))
    branch, payload = payload_of(msg)
    return {
        "ingest_ts": ingest_ts,
        "event_ts": event_ts,
        "feed": feed,
        "channel": CHANNEL_BY_TYPE[kind],
        "symbol": symbol,
        "seq": seq,
        "payload": (branch, payload),
        "is_final": kind != "u",
        "source": SOURCE,
        "window": window_of(kind, event_ts),
        "trace_id": trace_id,
    }


def status_envelope(
    event: str,
    *,
    feed: str,
    seq: int,
    ts: int,
    trace_id: str,
    reason: str = "",
    attempt: int = 0,
    code: int | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """A forwarder status event (ForwarderStatus payload) for ``torghut.status.v1``."""
    return {
        "ingest_ts": ts,
        "event_ts": ts,
        "feed": feed,
        "channel": STATUS_CHANNEL,
        "symbol": "",
        "seq": seq,
        "payload": (
            "torghut.ForwarderStatus",
            {
                "event": event,
                "reason": reason,
                "attempt": attempt,
                "code": code,
                "detail": detail[:2000],
            },
        ),
        "is_final": True,
        "source": "forwarder",
        "window": None,
        "trace_id": trace_id,
    }


def gap_envelope(
    symbol: str,
    *,
    feed: str,
    seq: int,
    from_ns: int,
    to_ns: int,
    event_ts: int,
    trace_id: str,
    reason: str = "",
    attempt: int = 0,
) -> dict[str, Any]:
    """A gap marker (forwarder/gaps.py) of ``symbol`` for ``torghut.trades.v1``: messages
    may have been lost in [``from_ns``, ``to_ns``] (the ``window``, µs); ``ingest_ts`` is
    ``to_ns``, ``event_ts`` the forwarder's event-time clock (it never moves event time)."""
    from_us, to_us = from_ns // NS_PER_US, -(-to_ns // NS_PER_US)
    span_ms = -(-(to_us - from_us) // 1000)
    return {
        "ingest_ts": to_ns,
        "event_ts": event_ts,
        "feed": feed,
        "channel": GAP_CHANNEL,
        "symbol": symbol,
        "seq": seq,
        "payload": (
            "torghut.ForwarderStatus",
            {
                "event": "gap",
                "reason": reason[:500],
                "attempt": attempt,
                "code": None,
                "detail": f"messages may have been lost from {from_ns} to {to_ns} (epoch ns)",
            },
        ),
        "is_final": True,
        "source": "forwarder",
        "window": {"size_ms": span_ms, "step_ms": span_ms, "start": from_us, "end": to_us},
        "trace_id": trace_id,
    }


#: what makes a message a re-send of another: the fields of its dedup key, per type.
#: Trades: (S, i); quotes: (S, t); minute bars: (S, t). Updated and daily bars repeat
#: their window start with new values, so their count and volume are part of the key
#: (an identical re-send is a duplicate, a real update is not), with the type first.
#: Statuses, LULD bands, corrections and cancels key on their identifying fields.
DEDUP_FIELDS: dict[str, tuple[str, ...]] = {
    "t": ("S", "i"),
    "q": ("S", "t"),
    "b": ("S", "t"),
    "u": ("T", "S", "t", "n", "v"),
    "d": ("T", "S", "t", "n", "v"),
    "s": ("S", "t", "sc", "rc"),
    "l": ("S", "t", "u", "d", "i"),
    "c": ("S", "oi", "ci"),
    "x": ("S", "i", "a", "t"),
}
#: per type, message -> its dedup key (a tuple of those fields)
DEDUP_KEY: dict[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {
    kind: itemgetter(*fields) for kind, fields in DEDUP_FIELDS.items()
}


def dedup_key(msg: Mapping[str, Any]) -> tuple[Any, ...]:
    """The dedup key of a market-data message (``DEDUP_FIELDS``)."""
    return DEDUP_KEY[msg["T"]](msg)
