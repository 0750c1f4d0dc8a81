"""``EnvelopeRouter``: the hot path. For each market-data message of a frame: validate and
encode, drop duplicates, number, produce. No I/O besides handing bytes to librdkafka.

One call per frame, one path for every message type: the payload from the writer's
encoder of that type (``avro_writer.BODIES``, which also validates it), the event time,
then per (type, symbol) a slot ``[next seq, feed/channel/symbol prefix bytes, Kafka key]``
in place of seq table, prefix cache and key cache lookups; dedup is a set test plus a
deque append (trades' and quotes' keys are booked per frame); the envelope is assembled by
``avro_writer.envelope`` in the layout of ``shared.envelope_layout``. Counters, seq
``issued``, trace ids and the producer's ack accounting (``EnvelopeProducer.track``) are
updated per frame. The bytes equal ``EnvelopeWriter.encode`` and fastavro's
(``tests/unit/test_forwarder_router.py``).

``route_raw`` is the native fast path (``forwarder/_fastroute.c``): given the undecoded
msgpack frame, it encodes well-formed trades and quotes in C with the same slots, dedup
caches, seqs, trace ids, bytes and bookkeeping as ``route``, hands any other message of
the frame to ``route``'s loop in order, and declines (having done nothing) a frame that is
not decodable or holds no trade or quote, which the caller then decodes and passes to
``route`` (``tests/unit/test_forwarder_fastroute.py`` proves both paths agree).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgpack
from confluent_kafka import Producer

from forwarder.avro_writer import (
    _CHUNK14,
    _SMALL,
    BODIES,
    ENCODE_ERRORS,
    TAIL,
    TRAILERS_NO_WINDOW,
    EnvelopeWriter,
    envelope,
    frame_header,
    trailer,
    write_long,
)
from forwarder.avro_writer import set_limits as avro_set_limits
from forwarder.dedup import DedupCache
from forwarder.envelope import (
    BAR_WINDOW_MS,
    CHANNEL_BY_TYPE,
    CONTROL_TYPES,
    DEDUP_KEY,
    SOURCE,
    event_ts_ns,
)
from forwarder.exceptions import EnvelopeTooLargeError, InvalidMessageError
from forwarder.heartbeat import EventClock
from forwarder.metrics import CHANNELS, TYPE_INDEX, ForwarderMetrics
from forwarder.producer import EnvelopeProducer
from forwarder.sequence import SequenceNumbers
from forwarder.settings import ForwarderSettings
from forwarder.wire import decode_spans
from shared import envelope_layout as L
from shared.limits import DEFAULT_LIMITS, PlausibleLimits
from shared.logs import record_fields
from shared.topics import CHANNEL_TOPICS

#: event times more than this ahead of the frame's ingest time are refused
#: (``ForwarderSettings.max_future_s``; Kafka 4 refuses record timestamps more than an hour
#: ahead, log.message.timestamp.after.max.ms)
DEFAULT_MAX_FUTURE_NS = round(ForwarderSettings.model_fields["max_future_s"].default * 1e9)

# message families that share a dedup cache
_FAMILY = {
    "t": "trades",
    "q": "quotes",
    "b": "bars",
    "u": "bars",
    "d": "bars",
    "s": "other",
    "l": "other",
    "c": "other",
    "x": "other",
}
_MAX_NS = 1 << 63
#: ``ForwarderSettings.max_envelope_bytes``: the largest envelope the router produces
DEFAULT_MAX_ENVELOPE_BYTES = ForwarderSettings.model_fields["max_envelope_bytes"].default
#: an envelope's bytes besides the payload and the feed/channel/symbol prefix, at most:
#: schema header, ingest_ts, event_ts, seq, trailer (bar windows included), trace id, tail
ENVELOPE_FIXED_MAX = 5 + 10 + 10 + 10 + 64 + 40 + len(TAIL)
#: the C fast path hands a message whose msgpack map spans more bytes than this to Python
#: (``NATIVE_MAX_SPAN`` in ``_fastroute.c``), so the size check below is Python's alone;
#: its envelope cannot exceed span + a few hundred bytes, far below the smallest limit
NATIVE_MAX_SPAN = 1 << 16
_NCH = len(CHANNELS)
_T_IDX = TYPE_INDEX["t"]
_Q_IDX = TYPE_INDEX["q"]

try:
    from forwarder import _fastroute
except ImportError:  # not compiled (a plain source checkout): route() does everything
    _fastroute = None  # type: ignore[assignment]
#: the native fast path is compiled and importable
NATIVE = _fastroute is not None
log = logging.getLogger("forwarder.router")


def configure_native(tail: bytes = TAIL) -> None:
    """Hand the C encoder its layout: the union tags of Trade and Quote and the tail after
    the trace id (``shared.envelope_layout``) and the writer's trailer, not literals in C;
    confluent_kafka.Producer.produce is called positionally (the same call, cheaper)."""
    if _fastroute is not None:
        _fastroute.configure(
            _NCH, _T_IDX, _Q_IDX, L.TRADE_BRANCH, L.QUOTE_BRANCH, TRAILERS_NO_WINDOW, tail, Producer
        )


def set_limits(limits: PlausibleLimits) -> None:
    """The plausibility limits of trades and quotes (``shared.limits``), on both paths: the
    Python encoder's (``avro_writer.set_limits``) and the native path's copy, which hands
    anything outside them to Python to reject (``invalid_price`` / ``invalid_size``)."""
    avro_set_limits(limits)
    if _fastroute is not None:
        _fastroute.set_limits(limits.price_min, limits.price_max, limits.size_max)


configure_native()
set_limits(DEFAULT_LIMITS)

_HEX3 = [b"%03x" % i for i in range(4096)]
_REST: dict[int, bytes] = {}


def _rest(r: int) -> bytes:
    """Canonical varint of ``r`` (>= 1), cached."""
    if r < 16384:
        return _SMALL[r]
    if len(_REST) > 65536:
        _REST.clear()
    e = _REST[r] = _CHUNK14[r & 16383] + _rest(r >> 14)
    return e


# reject(reason, detail, message or None)
RejectHook = Callable[[str, str, Any], None]
ControlHook = Callable[[Mapping[str, Any]], None]


class TraceIds:
    """Cheap unique trace ids: a random per-process prefix and a hex counter (from 0x1000,
    so the router can append the low three hex digits from a table)."""

    __slots__ = ("_n", "prefix")

    def __init__(self) -> None:
        self.prefix = os.urandom(4).hex().encode()
        self._n = 0x1000

    def next_bytes(self) -> bytes:
        self._n += 1
        return b"%s%x" % (self.prefix, self._n)

    def next(self) -> str:
        return self.next_bytes().decode()

    def format(self, n: int) -> str:
        """Trace id number ``n`` as the envelopes carry it."""
        return f"{self.prefix.decode()}{n:x}"


def _event_ts(t: Any, ingest_ns: int, limit: int) -> int:
    """The slow path of the event time: any wire form, range and future checks (``limit``:
    the latest event time accepted, ingest time + max_future)."""
    ets = event_ts_ns(t)
    if ets > limit:
        # the record timestamp is the event time: one far ahead would move event time for
        # every other record of its partition (and brokers refuse them beyond an hour)
        raise InvalidMessageError(
            "event_ts_in_future",
            f"t={ets} is {(ets - ingest_ns) / 1e9:.3f}s ahead of the forwarder's clock, more "
            f"than TORGHUT_FWD_MAX_FUTURE_S={(limit - ingest_ns) / 1e9:g} (check the host's "
            "clock sync)",
        )
    return ets


def _trace_head(prefix: bytes, n: int) -> bytes:
    """The Avro string of trace id ``n`` without its last three hex digits (``_HEX3``): the
    length (a trace id has more than 3 and fewer than 64 hex digits) and the rest."""
    head = b"%s%x" % (prefix, n >> 12)
    return _SMALL[(len(head) + 3) << 1] + head


class EnvelopeRouter:
    """Dedup -> seq -> Avro -> produce, one frame per call; rejects never stop the loop."""

    def __init__(
        self,
        writer: EnvelopeWriter,
        seqs: SequenceNumbers,
        producer: EnvelopeProducer,
        metrics: ForwarderMetrics,
        dedup_max_entries: int,
        dedup_horizon_s: float,
        on_reject: RejectHook,
        on_control: ControlHook,
        trace_ids: TraceIds | None = None,
        max_future_ns: int = DEFAULT_MAX_FUTURE_NS,
        clock: EventClock | None = None,
        max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
        trace_symbols: Iterable[str] = (),
    ) -> None:
        self.writer, self.seqs, self.producer, self.metrics = writer, seqs, producer, metrics
        #: symbols whose every produced record is logged (``TORGHUT_FWD_TRACE_SYMBOLS``): a
        #: debugging aid that turns the native path off, so the Python loop sees them all
        self.trace_symbols = frozenset(trace_symbols)
        if not 0 <= max_future_ns < _MAX_NS:
            raise ValueError(f"max_future_ns={max_future_ns} must be in [0, 2**63)")
        if max_envelope_bytes < 2 * NATIVE_MAX_SPAN:
            raise ValueError(
                f"max_envelope_bytes={max_envelope_bytes} must be at least {2 * NATIVE_MAX_SPAN}"
            )
        #: a message whose envelope would be larger is rejected (``EnvelopeTooLargeError``)
        #: before it takes a seq or a dedup entry: librdkafka and the broker would refuse it
        self.max_envelope_bytes = max_envelope_bytes
        #: event times more than this ahead of a frame's ingest time are rejected
        #: (``event_ts_in_future``); the native path gets it per call
        self.max_future_ns = max_future_ns
        #: the event-time clock of the heartbeats: fed once per frame with the highest event
        #: time of the trades and quotes it produced (``_finish``)
        self.clock = clock
        self.on_reject, self.on_control = on_reject, on_control
        self.trace_ids = trace_ids or TraceIds()
        caches = {f: DedupCache(dedup_max_entries, dedup_horizon_s) for f in set(_FAMILY.values())}
        self.dedup = {t: caches[f] for t, f in _FAMILY.items()}
        self._caches = tuple(caches.values())
        self.topics = {t: CHANNEL_TOPICS[c].name for t, c in CHANNEL_BY_TYPE.items()}
        # Confluent framing per topic: registries may give each subject its own schema id
        self.headers = {t: writer.header for t in CHANNEL_BY_TYPE}
        # the status topic is keyed by feed, the others by symbol
        self._feed_keyed = frozenset(
            t for t, c in CHANNEL_BY_TYPE.items() if CHANNEL_TOPICS[c].key == "feed"
        )
        self._feed_key = writer.feed.encode()
        # type -> symbol -> [next seq, prefix bytes, Kafka key]
        self._slots: dict[str, dict[str, list[Any]]] = {t: {} for t in CHANNEL_BY_TYPE}
        self._nslots = 0
        # per type, what _route uses: payload encoder, dedup key, slots, dedup set and deque
        # append, the cache to mark per message (None: trades and quotes, marked per frame),
        # the trailer when it is the same for every message, topic, channel index
        self._kinds = {
            t: (
                BODIES[t],
                DEDUP_KEY[t],
                self._slots[t],
                self.dedup[t].keys,
                self.dedup[t].order.append,
                None if t in "tq" else self.dedup[t],
                None if t in BAR_WINDOW_MS else TRAILERS_NO_WINDOW,
                self.topics[t],
                TYPE_INDEX[t],
            )
            for t in CHANNEL_BY_TYPE
        }
        #: use the native fast path in ``route_raw`` (off: every frame goes through ``route``)
        self.native = NATIVE and not self.trace_symbols

    def set_schema_ids(self, ids: Mapping[str, int]) -> None:
        """Schema id per topic name, as the registry answered for ``<topic>-value``."""
        for t, topic in self.topics.items():
            self.headers[t] = frame_header(ids[topic])

    def _slot(self, kind: str, sym: Any, issued_in_frame: int) -> list[Any]:
        """A (type, symbol) seen for the first time: it starts at ``floor + issued``,
        above every seq issued before (the ``SequenceNumbers`` rule), and the table is
        dropped when it holds ``max_keys`` keys (keys restart higher, still monotonic)."""
        prefix = self.writer.prefix(kind, sym)  # validates the symbol
        seqs = self.seqs
        if self._nslots >= seqs.max_keys:
            for table in self._slots.values():
                table.clear()
            self._nslots = 0
        key = self._feed_key if kind in self._feed_keyed else sym.encode()
        slot = [seqs.floor + seqs.issued + issued_in_frame, prefix, key]
        self._slots[kind][sym] = slot
        self._nslots += 1
        return slot

    def symbols(self) -> list[str]:
        """Every symbol routed so far on a symbol-keyed topic (since the slot table was last
        dropped at ``max_keys``), sorted: the symbols a WebSocket gap may have cost messages
        (forwarder/gaps.py)."""
        seen: set[str] = set()
        for kind, table in self._slots.items():
            if kind not in self._feed_keyed:
                seen.update(table)
        return sorted(seen)

    def sizes(self) -> dict[str, int]:
        """Entries held per dedup family and slot count (the metrics' memory gauges)."""
        # types of one family share its cache: the same entry, written once per type
        out = {f"dedup_{_FAMILY[t]}": len(c) for t, c in self.dedup.items()}
        out["symbol_slots"] = self._nslots
        return out

    def _blocking_produce(self, topic: str, value: bytes, key: bytes, ts_ms: int) -> None:
        self.producer.produce_blocking(topic, value, key, ts_ms)

    def route_raw(self, raw: bytes, ingest_ns: int) -> bool:
        """Route a raw msgpack frame natively: True. Well-formed trades and quotes are
        encoded in C, any other message of the frame goes through ``route``'s loop in order
        (``_route_spans``), with the same frame state and bookkeeping. False when the frame
        is not decodable msgpack or holds no trade or quote: nothing of it was produced or
        booked, so the caller decodes it and calls ``route``."""
        if not self.native or _fastroute is None:
            return False
        return bool(_fastroute.route(self, raw, ingest_ns, time.monotonic(), self.max_future_ns))

    def _native_reject(self, exc: BaseException, raw: bytes, start: int, end: int) -> None:
        """The native path met an error ``route`` turns into a reject (``produce`` or
        ``_slot`` raised one): the same ``on_reject`` call, with the message decoded from
        ``raw[start:end]``; anything else propagates as it would from ``route``."""
        m = msgpack.unpackb(raw[start:end], timestamp=2, use_list=False)
        if isinstance(exc, InvalidMessageError):
            self.on_reject(exc.reason, exc.detail, m)
        elif isinstance(exc, ENCODE_ERRORS):
            self.on_reject("invalid_field", repr(exc)[:200], m)
        else:
            raise exc

    def route(self, msgs: Sequence[Any], ingest_ns: int) -> None:
        """Forward every message of one frame (received at ``ingest_ns``)."""
        f = self._begin(ingest_ns, time.monotonic())
        try:
            self._route(msgs, f)
        finally:
            # per-frame bookkeeping, also when something unexpected escapes the loop
            self._finish(f)

    def _begin(self, ingest_ns: int, now: float) -> _Frame:
        """The state of one frame (``route``, or the native path of ``route_raw``)."""
        f = _Frame()
        f.ingest_ns, f.now = ingest_ns, now
        f.n0 = f.n = self.trace_ids._n
        f.n_t = f.n_q = f.dup_t = f.dup_q = 0  # the native path's trades and quotes
        f.sent = f.duplicates = None  # per channel, of the Python path
        f.event_ts = []  # of the trades and quotes produced (the native path appends here)
        f.other_ts = []  # of the other messages produced
        f.c_tq = f.tq_max = 0  # trades/quotes the native path encoded, their highest event time
        f.len_t0, f.len_q0 = len(self.dedup["t"].order), len(self.dedup["q"].order)
        return f

    def _route_spans(self, raw: bytes, spans: Sequence[tuple[int, int]], f: _Frame) -> None:
        """The native path hands over the messages of a frame it does not encode itself
        (other types, anything unusual): decoded one by one from their bytes, they go
        through the same loop as in ``route``, in the frame's order and state."""
        self._route(decode_spans(raw, spans, self.max_envelope_bytes), f)  # lazily (wire.py)

    def _route(self, msgs: Iterable[Any], f: _Frame) -> None:
        """The loop of ``route`` over ``msgs`` (all or part of a frame), state in ``f``. Every
        message type takes the same steps: its payload encoded and validated by the writer
        (``BODIES``), event time, slot, dedup, seq, the envelope (``envelope``), produce."""
        ingest_ns, now = f.ingest_ns, f.now
        ingest = write_long(ingest_ns)
        limit = min(ingest_ns + self.max_future_ns, _MAX_NS - 1)
        headers, kinds = self.headers, self._kinds
        rest_of = _REST.get
        produce = self.producer.raw_produce
        tprefix = self.trace_ids.prefix
        body_max = self.max_envelope_bytes - ENVELOPE_FIXED_MAX
        n0, n = f.n0, f.n
        # trace id = prefix + hex counter: its length and all but the last three hex digits
        # change every 4096 ids
        tid_head = _trace_head(tprefix, n + 1)
        keep_ts, keep_other_ts = f.event_ts.append, f.other_ts.append
        produced, dropped = f.sent, f.duplicates
        traced = self.trace_symbols
        if produced is None or dropped is None:
            produced, dropped = f.sent, f.duplicates = [0] * _NCH, [0] * _NCH
        m: Any = None
        try:
            for m in msgs:
                try:
                    kind = m.get("T")
                    k = kinds.get(kind)
                    if k is None:
                        if kind in CONTROL_TYPES:
                            self.on_control(m)
                            continue
                        raise InvalidMessageError("unknown_type", f"T={str(kind)[:32]!r}")
                    body_of, key_of, table, seen, remember, cache, fixed_trailer, topic, ch = k
                    body = body_of(m)
                    t = m["t"]
                    if type(t) is not int or not 0 < t <= limit:
                        t = _event_ts(t, ingest_ns, limit)
                    sym = m["S"]
                    slot = table.get(sym)
                    if slot is None:
                        slot = self._slot(kind, sym, n - n0)
                    if len(body) + len(slot[1]) > body_max:
                        raise EnvelopeTooLargeError(
                            kind,
                            sym,
                            len(body) + len(slot[1]) + ENVELOPE_FIXED_MAX,
                            self.max_envelope_bytes,
                        )
                    dk = key_of(m)
                    if dk in seen:
                        dropped[ch] += 1
                        continue
                    seen.add(dk)
                    remember(dk)
                    if cache is None:  # trades and quotes: their keys are booked per frame
                        keep = keep_ts
                    else:
                        cache.mark(now, 1)
                        keep = keep_other_ts
                    seq = slot[0]
                    slot[0] = seq + 1
                    n += 1
                    if not n & 4095:
                        tid_head = _trace_head(tprefix, n)
                    z = t << 1
                    wt = (
                        _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                        if z >= 16384
                        else write_long(t)
                    )
                    z = seq << 1
                    ws = (
                        _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                        if z >= 16384
                        else write_long(seq)
                    )
                    value = envelope(
                        headers[kind],
                        ingest,
                        wt,
                        slot[1],
                        ws,
                        body,
                        fixed_trailer or trailer(kind, t),
                        tid_head + _HEX3[n & 4095],
                    )
                    try:
                        produce(topic, value, slot[2], timestamp=t // 1_000_000)
                    except BufferError:
                        self._blocking_produce(topic, value, slot[2], t // 1_000_000)
                    keep(t)
                    produced[ch] += 1
                    if traced and sym in traced:
                        self._log_traced(kind, sym, t, seq, n)
                except InvalidMessageError as exc:
                    self.on_reject(exc.reason, exc.detail, m)
                except ENCODE_ERRORS as exc:
                    if type(m) is not dict:
                        self.on_reject("not_an_object", f"message of type {type(m).__name__}", m)
                    else:
                        self.on_reject("invalid_field", repr(exc)[:200], m)
        finally:
            f.n = n

    def _log_traced(self, kind: str, sym: str, event_ts: int, seq: int, n: int) -> None:
        """The record-level line of a produced record of a traced symbol."""
        trace_id = self.trace_ids.format(n)
        log.info(
            "traced record %s %s seq %d produced as %s",
            CHANNEL_BY_TYPE[kind],
            sym,
            seq,
            trace_id,
            extra=record_fields(sym, CHANNEL_BY_TYPE[kind], event_ts, seq, SOURCE, trace_id),
        )

    def _finish(self, f: _Frame) -> None:
        """``route``'s per-frame bookkeeping: trace ids, seqs issued, dedup marks, counters,
        the producer's ack accounting."""
        n, n0 = f.n, f.n0
        self.trace_ids._n = n
        self.seqs.issued += n - n0
        t_dedup, q_dedup = self.dedup["t"], self.dedup["q"]
        t_dedup.mark(f.now, len(t_dedup.order) - f.len_t0)
        q_dedup.mark(f.now, len(q_dedup.order) - f.len_q0)
        metrics = self.metrics
        received, dropped = metrics.received, metrics.dedup_dropped
        sent, duplicates = f.sent, f.duplicates
        if sent is not None:
            assert duplicates is not None
            for ch in range(_NCH):
                if sent[ch] or duplicates[ch]:
                    received[ch] += sent[ch] + duplicates[ch]
                    dropped[ch] += duplicates[ch]
        counts = sent if sent is not None else [0] * _NCH
        counts[_T_IDX] += f.n_t
        counts[_Q_IDX] += f.n_q
        received[_T_IDX] += f.n_t + f.dup_t
        received[_Q_IDX] += f.n_q + f.dup_q
        dropped[_T_IDX] += f.dup_t
        dropped[_Q_IDX] += f.dup_q
        if n != n0:
            event_ts = f.event_ts
            if event_ts and self.clock is not None:
                # the heartbeats' clock: trades and quotes only; the native path computed
                # the max of its own, a max over the list only when Python produced some
                top = f.tq_max if len(event_ts) == f.c_tq else max(event_ts)
                self.clock.observe(top, f.now)
            if f.other_ts:
                event_ts += f.other_ts
            self.producer.track(n - n0, counts, event_ts)


class _Frame:
    """One frame's routing state: ``EnvelopeRouter._begin`` -> ``_route`` (and the native
    path) -> ``_finish``. ``sent``/``duplicates`` count per channel what ``_route`` produced
    and dropped; ``n_t``/``n_q``/``dup_t``/``dup_q`` what the native path did with trades and
    quotes (``c_tq`` of them encoded, ``tq_max`` their highest event time)."""

    __slots__ = (
        "c_tq",
        "dup_q",
        "dup_t",
        "duplicates",
        "event_ts",
        "ingest_ns",
        "len_q0",
        "len_t0",
        "n",
        "n0",
        "n_q",
        "n_t",
        "now",
        "other_ts",
        "sent",
        "tq_max",
    )
    ingest_ns: int
    now: float
    n0: int
    n: int
    n_t: int
    n_q: int
    dup_t: int
    dup_q: int
    sent: list[int] | None
    duplicates: list[int] | None
    event_ts: list[int]
    other_ts: list[int]
    c_tq: int
    tq_max: int
    len_t0: int
    len_q0: int
