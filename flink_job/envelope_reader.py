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
``check_schema`` refuses to start when ``schemas/avro/envelope.avsc`` changes (its parsing
canonical form is pinned below).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from flink_job.decode import REJECTED_KEY, decode_event, rejected
from flink_job.symbol_processor import QUOTE, TRADE
from shared.avro_binary import AvroBinaryError
from shared.avro_binary import read_long as _long
from shared.avro_binary import read_string as _str
from shared.serde import AvroDeserializer

# sha256 of the parsing canonical form of the schemas/avro/envelope.avsc this reader follows
ENVELOPE_CANONICAL_SHA256 = "509ecccded97a77fea5c4b3e1e7187a235b35123461842658b431ead8d571361"

_TRADE_BRANCH, _QUOTE_BRANCH = 0, 1
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


def canonical_sha256(schema: Any) -> str:
    import fastavro

    return hashlib.sha256(fastavro.schema.to_parsing_canonical_form(schema).encode()).hexdigest()


def check_schema(schema: Any) -> None:
    """Refuse to run if the Envelope schema is no longer the one this reader follows."""
    got = canonical_sha256(schema)
    if got != ENVELOPE_CANONICAL_SHA256:
        raise RuntimeError(
            f"schemas/avro/envelope.avsc changed (canonical form sha256 {got}); update "
            "flink_job/envelope_reader.py to the new layout and its pinned hash"
        )


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
        i = _str_array(b, i + 16)
        _tape, i = _str(b, i)
        fields = (price, size, trade_id)
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
    if b[i] != 0:  # a window (bars only) holds logical timestamps: the general path
        return None
    trace_id, i = _str(b, i + 1)
    if i != len(b):
        raise _Malformed("trailing bytes")
    return (kind, symbol, event, seq, ingest, trace_id, *fields)
