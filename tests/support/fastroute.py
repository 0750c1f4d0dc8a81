"""The forwarder's native fast path (`forwarder/_fastroute.c`) against the Python router in
unit tests: a msgpack writer that can also write what `msgpack.packb` never does, a router
("side") on a recording producer, and `run_both`, which feeds the same frames through
`route_raw` and through decode + `route` on a pinned clock and asserts identical state."""

from __future__ import annotations

import contextlib
import struct
import types
from collections.abc import Iterator
from typing import Any

import msgpack

import forwarder.router as router_mod
from forwarder.avro_writer import EnvelopeWriter
from forwarder.envelope import CHANNEL_BY_TYPE
from forwarder.metrics import ForwarderMetrics
from forwarder.router import EnvelopeRouter, TraceIds
from forwarder.sequence import SequenceNumbers
from shared.topics import CHANNEL_TOPICS

#: an event time; INGEST the ingest time of the first frame run_both feeds
T0 = 1_709_303_400_123_456_789
INGEST = T0 + 5 * 10**9
MAX_FUTURE = router_mod.DEFAULT_MAX_FUTURE_NS


# --- a msgpack writer that can also emit what msgpack.packb never does -----------------


class Raw(bytes):
    """Pre-encoded msgpack bytes, written as they are."""


def pack(obj: Any) -> bytes:
    """msgpack of `obj` with `Raw` bytes written as they are and `DupMap` keys repeated."""
    if isinstance(obj, Raw):
        return bytes(obj)
    if isinstance(obj, dict):
        items = list(obj.items())
        return _map_header(len(items)) + b"".join(pack(k) + pack(v) for k, v in items)
    if isinstance(obj, DupMap):
        return _map_header(len(obj.items)) + b"".join(pack(k) + pack(v) for k, v in obj.items)
    if isinstance(obj, list | tuple):
        head = msgpack.packb([0] * len(obj))[: -len(obj) or None]
        return head + b"".join(pack(x) for x in obj)
    return msgpack.packb(obj, datetime=False)


class DupMap:
    """A map with repeated keys (msgpack allows it; Python keeps the last)."""

    def __init__(self, items: list[tuple[Any, Any]]) -> None:
        self.items = items


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    if n < 1 << 16:
        return b"\xde" + struct.pack(">H", n)
    return b"\xdf" + struct.pack(">I", n)


def ts_ext(ns: int, form: str = "auto") -> Any:
    """Event time as the msgpack Timestamp ext (-1): smallest form, or forced 64/96-bit."""
    sec, nsec = divmod(ns, 10**9)
    if form == "96":
        return Raw(b"\xc7\x0c\xff" + struct.pack(">Iq", nsec, sec))
    if form == "64" and 0 <= sec < 1 << 34:
        return Raw(b"\xd7\xff" + struct.pack(">Q", (nsec << 34) | sec))
    if form == "int":
        return ns
    return msgpack.Timestamp(sec, nsec)


# --- the two routers ----------------------------------------------------------------------


class Recorder:
    """The producer at the Python level: records what the router hands over; optionally
    raises BufferError (queue full) every ``buffer_every``-th call or ``error`` on call
    ``error_at``."""

    def __init__(
        self, buffer_every: int = 0, error_at: int = 0, error: type[BaseException] = ValueError
    ) -> None:
        self.records: list[tuple[Any, ...]] = []
        self.tracked: list[tuple[int, list[int], list[int]]] = []
        self.calls = 0
        self.buffer_every, self.error_at, self.error = buffer_every, error_at, error

    def raw_produce(self, topic: str, value: bytes, key: bytes, timestamp: int) -> None:
        self.calls += 1
        if self.buffer_every and self.calls % self.buffer_every == 0:
            raise BufferError("Local: Queue full")
        if self.calls == self.error_at:
            raise self.error("refused")
        self.records.append((topic, value, key, timestamp))

    def produce_blocking(self, topic: str, value: bytes, key: bytes, ts_ms: int) -> None:
        self.records.append(("blocking", topic, value, key, ts_ms))

    def track(self, n: int, per_channel: list[int], event_ts: list[int]) -> None:
        self.tracked.append((n, list(per_channel), list(event_ts)))


class Side:
    """One router on a `Recorder` with its own metrics, seqs and rejects; `feed` takes a
    frame as the WebSocket client does, natively or through Python."""

    def __init__(
        self,
        prefix: bytes,
        n0: int,
        floor: int,
        max_keys: int = 100_000,
        dedup_max: int = 200_000,
        max_future_ns: int = MAX_FUTURE,
        **producer: Any,
    ) -> None:
        self.prod = Recorder(**producer)
        self.metrics = ForwarderMetrics()
        self.seqs = SequenceNumbers(floor, max_keys)
        self.rejects: list[tuple[str, str, Any]] = []
        trace = TraceIds()
        trace.prefix, trace._n = prefix, n0
        self.router = EnvelopeRouter(
            EnvelopeWriter(42, "iex"),
            self.seqs,
            self.prod,  # type: ignore[arg-type]
            self.metrics,
            dedup_max,
            300.0,
            on_reject=lambda reason, detail, m: self.rejects.append((reason, detail, m)),
            on_control=lambda m: self.rejects.append(("control", "", m)),
            trace_ids=trace,
            max_future_ns=max_future_ns,
        )
        ids = {CHANNEL_TOPICS[c].name: 40 + i for i, c in enumerate(CHANNEL_BY_TYPE.values())}
        self.router.set_schema_ids(ids)
        self.paths: list[str] = []

    def feed(self, raw: bytes, ingest: int, native: bool) -> None:
        """What ``ws_client._read`` does with a binary frame."""
        if native and self.router.route_raw(raw, ingest):
            self.paths.append("native")
            return
        try:
            msgs = msgpack.unpackb(raw, timestamp=2, use_list=False)
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError):
            self.rejects.append(("malformed_frame", "", None))
            self.paths.append("malformed")
            return
        if type(msgs) is not tuple and type(msgs) is not list:
            self.rejects.append(("malformed_frame", "", None))
            self.paths.append("malformed")
            return
        self.paths.append("python")
        self.router.route(msgs, ingest)

    def snapshot(self) -> Any:
        r = self.router
        return canon(
            {
                "records": self.prod.records,
                "tracked": self.prod.tracked,
                "rejects": self.rejects,
                "received": self.metrics.received,
                "dropped": self.metrics.dedup_dropped,
                "issued": self.seqs.issued,
                "trace": r.trace_ids._n,
                "dedup": {
                    t: (r.dedup[t].keys, list(r.dedup[t].order), list(r.dedup[t].marks))
                    for t in "tqbs"
                },
                "slots": r._slots,
                "nslots": r._nslots,
            }
        )


def canon(x: Any) -> Any:
    """Comparable form: floats by their bits (NaN == NaN), sets sorted."""
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, dict):
        return ("d", sorted(((repr(k), canon(k), canon(v)) for k, v in x.items()), key=repr))
    if isinstance(x, set | frozenset):
        return ("s", sorted((canon(v) for v in x), key=repr))
    if isinstance(x, list | tuple):
        return (type(x).__name__, [canon(v) for v in x])
    return x


@contextlib.contextmanager
def fixed_clock(clock: list[float]) -> Iterator[None]:
    """route() and route_raw() read ``time.monotonic`` of forwarder.router: pin it."""
    real = router_mod.time
    router_mod.time = types.SimpleNamespace(monotonic=lambda: clock[0])  # type: ignore[assignment]
    try:
        yield
    finally:
        router_mod.time = real


def run_both(
    frames: list[bytes],
    *,
    n0: int = 0x1000,
    floor: int = 1_709_303_400_000_000,
    steps: list[float] | None = None,
    **kw: Any,
) -> tuple[Side, Side]:
    """`frames` through a native and a Python `Side` on the same pinned clock: the same
    exception escapes both, and their state is identical at the end; returns both."""
    native, python = Side(b"c0ffee01", n0, floor, **kw), Side(b"c0ffee01", n0, floor, **kw)
    clock = [1000.0]
    with fixed_clock(clock):
        for k, raw in enumerate(frames):
            clock[0] += steps[k % len(steps)] if steps else 0.5
            errors = []
            for side, use_native in ((native, True), (python, False)):
                try:
                    side.feed(raw, INGEST + k, use_native)
                    errors.append(None)
                except Exception as exc:  # the same exception must escape both paths
                    errors.append(type(exc))
            assert errors[0] == errors[1]
    assert native.snapshot() == python.snapshot()
    return native, python
