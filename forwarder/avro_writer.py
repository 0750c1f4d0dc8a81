"""``EnvelopeWriter``: Alpaca message -> Confluent-framed Avro ``torghut.Envelope`` bytes, fast.

fastavro's generic writer costs ~7 µs per envelope; this writer knows the Envelope's field
order and precomputes what repeats (per (channel, symbol) prefixes, varint tables,
exchange codes, condition lists), so a trade costs ~2 µs. It validates as it encodes
(wrong types raise ``InvalidMessageError``). The router's Python path uses the same pieces:
``BODIES`` (a payload per message type) and ``envelope`` (the whole record in field order).

The layout (field order, union tags, the tail after trace_id) is the one described in
``shared.envelope_layout``, whose ``check_schema`` refuses to start when ``envelope.avsc`` no
longer matches it. The tests prove the bytes equal fastavro's for
``forwarder.envelope.to_envelope`` on every message type (``tests/unit/test_forwarder_units.py``,
``tests/unit/test_forwarder_router.py``, ``tests/unit/test_contracts_envelope_layout.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from forwarder.envelope import CHANNEL_BY_TYPE, DAY_MS, MINUTE_MS, SOURCE, event_ts_ns
from forwarder.exceptions import InvalidMessageError
from shared import envelope_layout as L
from shared.limits import DEFAULT_LIMITS, PlausibleLimits

_TRADE = L.branch_tag("Trade")
_QUOTE = L.branch_tag("Quote")
_BAR = L.branch_tag("Bar")
_STATUS = L.branch_tag("TradingStatus")
_LULD = L.branch_tag("Luld")
_CORRECTION = L.branch_tag("Correction")
_CANCEL = L.branch_tag("CancelError")
#: written after every trace id: the defaults of fields after trace_id (empty today)
TAIL = L.TAIL

_D = struct.Struct("<d").pack
_DD = struct.Struct("<dd").pack
_BAR_DOUBLES = struct.Struct("<ddddd").pack

# varint building blocks: every 14-bit chunk with continuation bits on both bytes, and the
# full encoding of every value below 2**14.
_CHUNK14 = [bytes(((c & 0x7F) | 0x80, ((c >> 7) & 0x7F) | 0x80)) for c in range(1 << 14)]
_SMALL = [bytes((v,)) if v < 0x80 else bytes(((v & 0x7F) | 0x80, v >> 7)) for v in range(1 << 14)]
_HIGH: dict[int, bytes] = {}


def _varint(z: int) -> bytes:
    out = b""
    while z >= 0x80:
        out += bytes(((z & 0x7F) | 0x80,))
        z >>= 7
    return out + bytes((z,))


def write_long(n: int) -> bytes:
    """Avro long (zigzag varint). Raises OverflowError outside 64 bits, TypeError on non-int."""
    z = (n << 1) ^ (n >> 63)
    if z < 16384:
        return _SMALL[z]
    if z >> 64:
        raise OverflowError(f"{n} does not fit an Avro long")
    if z < 268435456:  # 2**28
        return _CHUNK14[z & 16383] + _SMALL[z >> 14]
    hi = z >> 28
    h = _HIGH.get(hi)
    if h is None:
        if len(_HIGH) > 65536:
            _HIGH.clear()
        h = _HIGH[hi] = _varint(hi)
    return _CHUNK14[z & 16383] + _CHUNK14[(z >> 14) & 16383] + h


_STRS: dict[str, bytes] = {}
_ARRAYS: dict[tuple[str, ...], bytes] = {}


def write_string(s: str) -> bytes:
    e = _STRS.get(s)
    if e is None:
        if type(s) is not str:
            raise TypeError(f"expected a string, got {type(s).__name__}")
        b = s.encode()
        e = write_long(len(b)) + b
        if len(s) <= 16:  # exchange codes, tapes, condition codes: a small, closed set
            if len(_STRS) > 50_000:
                _STRS.clear()
            _STRS[s] = e
    return e


def write_string_array(items: Any) -> bytes:
    t = type(items)
    if t is not tuple:
        if t is not list:
            if items is None:
                return b"\x00"
            raise TypeError(f"expected a list of strings, got {t.__name__}")
        items = tuple(items)
    e = _ARRAYS.get(items)
    if e is None:
        if not items:
            return b"\x00"
        e = write_long(len(items)) + b"".join(write_string(s) for s in items) + b"\x00"
        if len(_ARRAYS) > 50_000:
            _ARRAYS.clear()
        _ARRAYS[items] = e
    return e


_INF = float("inf")

# plausibility limits (shared/limits.py): module state, like the native path's copy of them;
# ``set_limits`` changes both (forwarder.router.set_limits), the app at start from its settings
LIMITS = DEFAULT_LIMITS
_PMIN, _PMAX, _SMAX = LIMITS.price_min, LIMITS.price_max, LIMITS.size_max


def set_limits(limits: PlausibleLimits) -> None:
    """The ranges ``check_price``/``check_size`` and the trade and quote encoders enforce."""
    global LIMITS, _PMIN, _PMAX, _SMAX
    LIMITS = limits
    _PMIN, _PMAX, _SMAX = limits.price_min, limits.price_max, limits.size_max


def check_price(m: Mapping[str, Any], field: str, *, zero_ok: bool = False) -> None:
    """``invalid_price`` unless ``m[field]`` is a finite number > 0 (>= 0 with ``zero_ok``:
    one side of a quote may be empty) within the plausible range (``LIMITS``; 0 with
    ``zero_ok``). Call after the value was packed (its type is fine)."""
    v = m[field]
    if not (0.0 <= v < _INF if zero_ok else 0.0 < v < _INF):
        bound = ">= 0" if zero_ok else "> 0"
        raise InvalidMessageError("invalid_price", f"{field}={v!r} (must be {bound}, finite)")
    if not (_PMIN <= v <= _PMAX or (zero_ok and v == 0.0)):
        raise InvalidMessageError(
            "invalid_price",
            f"{field}={v!r} (outside the plausible range [{_PMIN:g}, {_PMAX:g}], "
            "TORGHUT_FWD_PRICE_MIN/MAX)",
        )


def check_size(m: Mapping[str, Any], field: str) -> None:
    """``invalid_size`` unless ``m[field]`` is a finite number in [0, size_max]."""
    v = m[field]
    if not 0.0 <= v < _INF:
        raise InvalidMessageError("invalid_size", f"{field}={v!r} (must be >= 0, finite)")
    if not v <= _SMAX:
        raise InvalidMessageError(
            "invalid_size",
            f"{field}={v!r} (outside the plausible range [0, {_SMAX:g}], TORGHUT_FWD_SIZE_MAX)",
        )


# Trades and quotes, nearly all the traffic, check their ranges at once and look their
# strings and condition lists up in the caches directly; the native path declines what
# fails these checks to the router's Python path, so the reject comes from here
# (forwarder/_fastroute.c).


def _conditions_and_tape(m: Mapping[str, Any]) -> bytes:
    """The last two fields of a trade or a quote, from the caches when they hold them."""
    c = m.get("c")
    z = m.get("z", "")
    arr = (type(c) is tuple and _ARRAYS.get(c)) or write_string_array(c)
    return arr + (_STRS.get(z) or write_string(z))


def _trade(m: Mapping[str, Any]) -> bytes:
    wi = write_long(m["i"])
    x = m["x"]
    wx = _STRS.get(x) or write_string(x)
    p = m["p"]
    s = m["s"]
    ps = _DD(p, s)
    if not (_PMIN <= p <= _PMAX and 0.0 <= s <= _SMAX):
        check_price(m, "p")
        check_size(m, "s")
    return b"".join((_TRADE, wi, wx, ps, _conditions_and_tape(m)))


def _quote(m: Mapping[str, Any]) -> bytes:
    bx = m["bx"]
    wbx = _STRS.get(bx) or write_string(bx)
    bp = m["bp"]
    bs = m["bs"]
    bid = _DD(bp, bs)
    ax = m["ax"]
    wax = _STRS.get(ax) or write_string(ax)
    ap = m["ap"]
    as_ = m["as"]
    ask = _DD(ap, as_)
    if not (
        (_PMIN <= bp <= _PMAX or bp == 0.0)
        and (_PMIN <= ap <= _PMAX or ap == 0.0)
        and 0.0 <= bs <= _SMAX
        and 0.0 <= as_ <= _SMAX
    ):
        check_price(m, "bp", zero_ok=True)  # 0 is allowed: a one-sided quote
        check_price(m, "ap", zero_ok=True)
        check_size(m, "bs")
        check_size(m, "as")
    return b"".join((_QUOTE, wbx, bid, wax, ask, _conditions_and_tape(m)))


def _bar(m: Mapping[str, Any]) -> bytes:
    out = b"".join(
        (
            _BAR,
            _BAR_DOUBLES(m["o"], m["h"], m["l"], m["c"], m["v"]),
            write_long(m["n"]),
            _D(m["vw"]),
        )
    )
    for field in ("o", "h", "l", "c"):  # open, high, low, close
        check_price(m, field)
    return out


def _status(m: Mapping[str, Any]) -> bytes:
    return b"".join(
        (
            _STATUS,
            write_string(m["sc"]),
            write_string(m["sm"]),
            write_string(m["rc"]),
            write_string(m["rm"]),
            write_string(m.get("z", "")),
        )
    )


def _luld(m: Mapping[str, Any]) -> bytes:
    return b"".join(
        (_LULD, _DD(m["u"], m["d"]), write_string(m["i"]), write_string(m.get("z", "")))
    )


def _correction(m: Mapping[str, Any]) -> bytes:
    return b"".join(
        (
            _CORRECTION,
            write_string(m["x"]),
            write_long(m["oi"]),
            _DD(m["op"], m["os"]),
            write_string_array(m.get("oc")),
            write_long(m["ci"]),
            _DD(m["cp"], m["cs"]),
            write_string_array(m.get("cc")),
            write_string(m.get("z", "")),
        )
    )


def _cancel(m: Mapping[str, Any]) -> bytes:
    return b"".join(
        (
            _CANCEL,
            write_long(m["i"]),
            write_string(m["x"]),
            _DD(m["p"], m["s"]),
            write_string(m["a"]),
            write_string(m.get("z", "")),
        )
    )


BODIES: dict[str, Callable[[Mapping[str, Any]], bytes]] = {
    "t": _trade,
    "q": _quote,
    "b": _bar,
    "u": _bar,
    "d": _bar,
    "s": _status,
    "l": _luld,
    "c": _correction,
    "x": _cancel,
}

# the trailer: is_final (a boolean byte), source, the window union (null, or the Window
# record: size_ms, step_ms, start, end)
_TRAILER_FINAL = b"\x01" + write_string(SOURCE)
_TRAILER_PROVISIONAL = b"\x00" + write_string(SOURCE)
TRAILERS_NO_WINDOW = _TRAILER_FINAL + L.union_tag(L.WINDOW_NULL)
_WINDOW = L.union_tag(L.WINDOW_RECORD)
_MINUTE_WINDOW = _WINDOW + write_long(MINUTE_MS) + write_long(MINUTE_MS)
_DAY_WINDOW = _WINDOW + write_long(DAY_MS) + write_long(DAY_MS)


def trailer(kind: str, event_ts: int) -> bytes:
    """is_final, source and window of a message of type ``kind``."""
    if kind == "b" or kind == "u":
        start = event_ts // 1000
        return b"".join(
            (
                _TRAILER_PROVISIONAL if kind == "u" else _TRAILER_FINAL,
                _MINUTE_WINDOW,
                write_long(start),
                write_long(start + MINUTE_MS * 1000),
            )
        )
    if kind == "d":
        start = event_ts // 1000
        return b"".join(
            (_TRAILER_FINAL, _DAY_WINDOW, write_long(start), write_long(start + DAY_MS * 1000))
        )
    return TRAILERS_NO_WINDOW


ENCODE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, OverflowError, struct.error)


def envelope(
    header: bytes,
    ingest_ts: bytes,
    event_ts: bytes,
    prefix: bytes,
    seq: bytes,
    body: bytes,
    trailer: bytes,
    trace_id: bytes,
) -> bytes:
    """A framed envelope from its encoded parts, in the order of ``shared.envelope_layout``:
    the frame header, ingest_ts, event_ts, feed/channel/symbol (``prefix``), seq, the payload
    (``BODIES``), is_final/source/window (``trailer``), trace_id, then ``TAIL``."""
    return b"".join((header, ingest_ts, event_ts, prefix, seq, body, trailer, trace_id, TAIL))


def frame_header(schema_id: int) -> bytes:
    """Confluent wire-format header: magic byte 0 and the 4-byte big-endian schema id."""
    return struct.pack(">bI", 0, schema_id)


class EnvelopeWriter:
    """Builds framed Envelope bytes for one feed; prefixes cached per (type, symbol)."""

    __slots__ = ("_header", "_prefixes", "feed", "feed_bytes")

    def __init__(self, schema_id: int, feed: str) -> None:
        self._header = frame_header(schema_id)
        self.feed = feed
        self.feed_bytes = write_string(feed)
        self._prefixes: dict[tuple[str, str], bytes] = {}

    def prefix(self, kind: str, symbol: str) -> bytes:
        """feed, channel and symbol fields (they sit between event_ts and seq)."""
        key = (kind, symbol)
        p = self._prefixes.get(key)
        if p is None:
            if type(symbol) is not str or not symbol:
                raise InvalidMessageError("invalid_field", "S must be a non-empty string")
            p = self.feed_bytes + write_string(CHANNEL_BY_TYPE[kind]) + write_string(symbol)
            if len(self._prefixes) > 100_000:
                self._prefixes.clear()
            self._prefixes[key] = p
        return p

    @property
    def header(self) -> bytes:
        return self._header

    def encode(self, msg: Mapping[str, Any], *, seq: int, ingest_ts: int, trace_id: str) -> bytes:
        """The whole envelope in one call (tests and the slow path; the router inlines this)."""
        try:
            kind = msg["T"]
            body = BODIES[kind](msg)
            event_ts = event_ts_ns(msg["t"])
            return envelope(
                self._header,
                write_long(ingest_ts),
                write_long(event_ts),
                self.prefix(kind, msg["S"]),
                write_long(seq),
                body,
                trailer(kind, event_ts),
                write_string(trace_id),
            )
        except InvalidMessageError:
            raise
        except ENCODE_ERRORS as exc:
            raise InvalidMessageError("invalid_field", repr(exc)[:200]) from None
