"""``EventReader``: raw envelope bytes -> the job's event tuple, trades and quotes fast.

fastavro's ``schemaless_reader`` costs ~6 µs per envelope here, part of it per-call set-up
(it re-walks the schema's named types on every call) and dicts the job throws away. This
reader knows the ``torghut.Envelope`` layout and reads trades and quotes straight into
the tuple ``flink_job.decode.envelope_event`` builds, validating as it goes (UTF-8 of every
string, union indexes, lengths, no trailing bytes).

Everything else takes the general path (``decode_event``: fastavro via the shared serde):
other channels, records carrying a window, writer schemas other than the bundled one,
and every record the fast path finds malformed, so bad input gets exactly the typed
``SerdeError`` reason the general path gives. ``tests/unit/test_envelope_reader.py`` proves
both paths return the same tuples on generated, corrupted and truncated input;
the layout (union tags, the trailer) comes from ``shared.envelope_layout``, whose
``check_schema`` (the one schema guard) refuses to start on a schema it does not describe.
"""

from __future__ import annotations

import struct

from flink_job.decode import REJECTED_KEY, decode_event, rejected
from flink_job.symbol_processor import QUOTE, TRADE
from shared import envelope_layout as L
from shared.avro_binary import AvroBinaryError
from shared.avro_binary import read_long as _long
from shared.avro_binary import read_string as _str
from shared.envelope_layout import check_schema
from shared.sale_conditions import trade_updates
from shared.serde import AvroDeserializer

_TRADE_BRANCH, _QUOTE_BRANCH = L.TRADE_BRANCH, L.QUOTE_BRANCH
#: the window union's null tag, one byte
(_WINDOW_NULL,) = L.union_tag(L.WINDOW_NULL)
#: the defaults of fields after trace_id (other values: the general path)
_TAIL = L.TAIL
_DD = struct.Struct("<dd").unpack_from


class _Malformed(Exception):
    """The fast path cannot read this record; the general path decides what it is."""


def _str_array(b: bytes, i: int) -> int:
    """Validate an array of strings; returns the offset after it."""
    while True:
        n, i = _long(b, i)
        if n == 0:
            return i
        if n < 0:  # a block that also carries its byte size
            n = -n
            _, i = _long(b, i)
        for _ in range(n):
            _, i = _str(b, i)


#: the encoded (conditions, tape) of a trade -> its sale-condition flags: a few dozen
#: distinct values in a day's tape, so a dict lookup of the raw bytes is the common case
_FLAGS: dict[bytes, int] = {}
_FLAGS_MAX = 4096


def _flags_of(b: bytes, j: int) -> int:
    """The flags of the trade whose conditions array starts at `j` (cached by raw bytes)."""
    conditions: list[str] = []
    i = j
    while True:
        n, i = _long(b, i)
        if n == 0:
            break
        if n < 0:
            n = -n
            _, i = _long(b, i)
        for _ in range(n):
            c, i = _str(b, i)
            conditions.append(c)
    tape, end = _str(b, i)
    flags = trade_updates(tape, tuple(conditions))
    if len(_FLAGS) >= _FLAGS_MAX:
        _FLAGS.clear()
    _FLAGS[b[j:end]] = flags
    return flags


class EventReader:
    """Event tuples from raw records; the fast path for trades and quotes (module doc)."""

    __slots__ = ("_deser", "_fast")

    def __init__(self, deserializer: AvroDeserializer) -> None:
        from shared.schemas import parsed

        check_schema(parsed("torghut.Envelope"))
        self._deser = deserializer
        self._fast: dict[bytes, bool] = {}  # 5-byte frame header -> writer is the bundled schema

    def _fast_header(self, header: bytes) -> bool:
        hit = self._fast.get(header)
        if hit is None:
            try:
                hit = self._deser.writer_is_reader(int.from_bytes(header[1:5], "big"))
            except Exception:  # unknown id, registry down: the general path reports it
                return False
            self._fast[header] = hit
        return hit

    def read(self, data: bytes, key: str | None = None) -> tuple | None:
        """Same contract and result as ``decode_event(deserializer, data, key)``."""
        if key != REJECTED_KEY and len(data) > 5 and data[0] == 0 and self._fast_header(data[:5]):
            try:
                ev = _read_fast(data)
            except (_Malformed, AvroBinaryError, IndexError, UnicodeDecodeError, struct.error):
                ev = None
            if ev is not None:
                if key is not None and ev[1] != key:
                    return rejected(f"record key {key!r} is not the envelope symbol {ev[1]!r}")
                return ev
        return decode_event(self._deser, data, key)

    def envelope(self, data: bytes) -> dict:
        """The whole envelope of a raw record by the general path (slow: for log lines of
        the exceptional paths, never per accepted record); raises what the serde raises."""
        return self._deser.decode(data)


def _read_fast(b: bytes) -> tuple | None:
    """The event of a trade or quote record; None sends the record the general way."""
    ingest, i = _long(b, 5)
    event, i = _long(b, i)
    _feed, i = _str(b, i)
    channel, i = _str(b, i)
    symbol, i = _str(b, i)
    seq, i = _long(b, i)
    branch, i = _long(b, i)
    fields: tuple
    if branch == _TRADE_BRANCH and channel == "trades":
        trade_id, i = _long(b, i)
        _exchange, i = _str(b, i)
        price, size = _DD(b, i)
        j = i + 16
        i = _str_array(b, j)
        _tape, i = _str(b, i)
        flags = _FLAGS.get(b[j:i])
        if flags is None:
            flags = _flags_of(b, j)
        fields = (price, size, trade_id, flags)
        kind = TRADE
    elif branch == _QUOTE_BRANCH and channel == "quotes":
        _bid_exchange, i = _str(b, i)
        bid_price, bid_size = _DD(b, i)
        _ask_exchange, i = _str(b, i + 16)
        ask_price, ask_size = _DD(b, i)
        i = _str_array(b, i + 16)
        _tape, i = _str(b, i)
        fields = (bid_price, bid_size, ask_price, ask_size)
        kind = QUOTE
    else:
        return None
    if b[i] > 1:
        raise _Malformed("boolean byte not 0/1")
    _source, i = _str(b, i + 1)
    if b[i] != _WINDOW_NULL:  # a window (bars only) holds logical timestamps: the general path
        return None
    trace_id, i = _str(b, i + 1)
    if b[i:] != _TAIL:
        raise _Malformed("trailing bytes, or fields after trace_id not at their defaults")
    return (kind, symbol, event, seq, ingest, trace_id, *fields)
