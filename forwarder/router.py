"""``EnvelopeRouter``: the hot path. For each market-data message of a frame: validate and
encode, drop duplicates, number, produce. No I/O besides handing bytes to librdkafka.

One call per frame: trades and quotes (nearly all the traffic) have inlined branches;
per (type, symbol) a slot ``[next seq, feed/channel/symbol prefix bytes, Kafka key]``
replaces the seq table, prefix cache and key cache lookups; dedup is a set test plus a
deque append (the frame's keys are booked at once); counters, seq ``issued``, trace ids
and the producer's ack accounting (``EnvelopeProducer.track``) are updated per frame.
The bytes equal ``EnvelopeWriter.encode`` (``tests/unit/test_forwarder_router.py``).

``route_raw`` is the native fast path (``forwarder/_fastroute.c``): given the undecoded
msgpack frame, it encodes well-formed trades and quotes in C with the same slots, dedup
caches, seqs, trace ids, bytes and bookkeeping as ``route``, hands any other message of
the frame to ``route``'s loop in order, and declines (having done nothing) a frame that is
not decodable or holds no trade or quote, which the caller then decodes and passes to
``route`` (``tests/unit/test_forwarder_fastroute.py`` proves both paths agree).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack
from confluent_kafka import Producer

from forwarder.avro_writer import (
    _ARRAYS,
    _CHUNK14,
    _DD,
    _SMALL,
    _STRS,
    BODIES,
    ENCODE_ERRORS,
    TRAILERS_NO_WINDOW,
    EnvelopeWriter,
    check_price,
    check_size,
    frame_header,
    trailer,
    write_long,
    write_string,
    write_string_array,
)
from forwarder.dedup import DedupCache
from forwarder.envelope import CHANNEL_BY_TYPE, CONTROL_TYPES, dedup_key, event_ts_ns
from forwarder.exceptions import InvalidMessageError
from forwarder.heartbeat import EventClock
from forwarder.metrics import CHANNELS, TYPE_INDEX, ForwarderMetrics
from forwarder.producer import EnvelopeProducer
from forwarder.sequence import SequenceNumbers
from forwarder.settings import ForwarderSettings
from shared.topics import CHANNEL_TOPICS

#: event times more than this ahead of the frame's ingest time are refused
#: (``ForwarderSettings.max_future_s``; Kafka 4 refuses record timestamps more than an hour
#: ahead, log.message.timestamp.after.max.ms)
DEFAULT_MAX_FUTURE_NS = round(ForwarderSettings.model_fields["max_future_s"].default * 1e9)
_INF = float("inf")

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
_BAR_TYPES = frozenset("bud")
_MAX_NS = 1 << 63
_MAX_ID = 1 << 62
_NCH = len(CHANNELS)
_T_IDX = TYPE_INDEX["t"]
_Q_IDX = TYPE_INDEX["q"]

try:
    from forwarder import _fastroute
except ImportError:  # not compiled (a plain source checkout): route() does everything
    _fastroute = None  # type: ignore[assignment]
else:
    # confluent_kafka.Producer.produce is called positionally (the same call, cheaper)
    _fastroute.configure(_NCH, _T_IDX, _Q_IDX, TRAILERS_NO_WINDOW, Producer)
#: the native fast path is compiled and importable
NATIVE = _fastroute is not None

_HEX3 = [b"%03x" % i for i in range(4096)]
# varint of v >> 14 for v >= 2**14 (the low 14 bits come from _CHUNK14): timestamps, trade
# ids and seqs of one frame share their high bits, so this is nearly always a dict hit
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


def _bad_trade(m: Any) -> None:
    """Raise the reject of a trade whose price or size failed the hot path's range check."""
    check_price(m, "p")
    check_size(m, "s")


def _bad_quote(m: Any) -> None:
    """Raise the reject of a quote whose prices or sizes failed the hot path's range check
    (0 is allowed: a one-sided quote)."""
    check_price(m, "bp", zero_ok=True)
    check_price(m, "ap", zero_ok=True)
    check_size(m, "bs")
    check_size(m, "as")


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
    ) -> None:
        self.writer, self.seqs, self.producer, self.metrics = writer, seqs, producer, metrics
        if not 0 <= max_future_ns < _MAX_NS:
            raise ValueError(f"max_future_ns={max_future_ns} must be in [0, 2**63)")
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
        #: use the native fast path in ``route_raw`` (off: every frame goes through ``route``)
        self.native = NATIVE

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
        f.n_t = f.n_q = f.dup_t = f.dup_q = 0
        f.other = f.other_dup = None
        f.event_ts = []  # of the trades and quotes produced (the native path appends here)
        f.other_ts = []  # of the other messages produced
        f.c_tq = f.tq_max = 0  # trades/quotes the native path encoded, their highest event time
        f.len_t0, f.len_q0 = len(self.dedup["t"].order), len(self.dedup["q"].order)
        return f

    def _route_spans(self, raw: bytes, spans: Sequence[tuple[int, int]], f: _Frame) -> None:
        """The native path hands over the messages of a frame it does not encode itself
        (other types, anything unusual): decoded one by one from their bytes, they go
        through the same loop as in ``route``, in the frame's order and state."""
        unpackb = msgpack.unpackb
        self._route(tuple(unpackb(raw[a:b], timestamp=2, use_list=False) for a, b in spans), f)

    def _route(self, msgs: Sequence[Any], f: _Frame) -> None:
        """The loop of ``route`` over ``msgs`` (all or part of a frame), state in ``f``."""
        ingest_ns, now = f.ingest_ns, f.now
        headers = self.headers
        ingest = write_long(ingest_ns)
        t_head = headers["t"] + ingest
        q_head = headers["q"] + ingest
        limit = ingest_ns + self.max_future_ns
        if limit >= _MAX_NS:
            limit = _MAX_NS - 1
        slots = self._slots
        t_slots, q_slots = slots["t"], slots["q"]
        t_dedup, q_dedup = self.dedup["t"], self.dedup["q"]
        t_seen, q_seen = t_dedup.keys, q_dedup.keys
        t_add, q_add = t_seen.add, q_seen.add
        t_keep, q_keep = t_dedup.order.append, q_dedup.order.append
        t_topic, q_topic = self.topics["t"], self.topics["q"]
        produce = self.producer.raw_produce
        trace = self.trace_ids
        tprefix = trace.prefix
        n0, n = f.n0, f.n
        head = b"%s%x" % (tprefix, (n + 1) >> 12)
        head_len = _SMALL[(len(head) + 3) << 1]
        rest_of = _REST.get
        str_of, arr_of = _STRS.get, _ARRAYS.get
        keep_ts = f.event_ts.append
        keep_other_ts = f.other_ts.append
        n_t, n_q, dup_t, dup_q = f.n_t, f.n_q, f.dup_t, f.dup_q
        other = f.other  # produced per channel, other types
        other_dup = f.other_dup
        m: Any = None
        try:
            for m in msgs:
                try:
                    kind = m.get("T")
                    if kind == "t":
                        sym = m["S"]
                        t = m["t"]
                        if type(t) is int and 8192 <= t <= limit:
                            z = t << 1
                            wt = _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                        else:
                            t = _event_ts(t, ingest_ns, limit)
                            wt = write_long(t)
                        slot = t_slots.get(sym)
                        if slot is None:
                            slot = self._slot("t", sym, n - n0)
                        i = m["i"]
                        if type(i) is int and 8192 <= i < _MAX_ID:
                            z = i << 1
                            wi = _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                        else:
                            wi = write_long(i)
                        x = m["x"]
                        x = str_of(x) or write_string(x)
                        p = m["p"]
                        s = m["s"]
                        ps = _DD(p, s)
                        if not (0.0 < p < _INF and 0.0 <= s < _INF):
                            _bad_trade(m)
                        c = m.get("c")
                        c = (type(c) is tuple and arr_of(c)) or write_string_array(c)
                        tape = m.get("z", "")
                        tape = str_of(tape) or write_string(tape)
                        dk = (sym, i)
                        if dk in t_seen:
                            dup_t += 1
                            continue
                        t_add(dk)
                        t_keep(dk)
                        seq = slot[0]
                        slot[0] = seq + 1
                        z = seq << 1
                        ws = (
                            _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                            if z >= 16384
                            else write_long(seq)
                        )
                        n += 1
                        if not n & 4095:
                            head = b"%s%x" % (tprefix, n >> 12)
                            head_len = _SMALL[(len(head) + 3) << 1]
                        value = b"".join(
                            (
                                t_head,
                                wt,
                                slot[1],
                                ws,
                                b"\x00",
                                wi,
                                x,
                                ps,
                                c,
                                tape,
                                TRAILERS_NO_WINDOW,
                                head_len,
                                head,
                                _HEX3[n & 4095],
                            )
                        )
                        try:
                            produce(t_topic, value, slot[2], timestamp=t // 1_000_000)
                        except BufferError:
                            self._blocking_produce(t_topic, value, slot[2], t // 1_000_000)
                        keep_ts(t)
                        n_t += 1
                    elif kind == "q":
                        sym = m["S"]
                        t = m["t"]
                        if type(t) is int and 8192 <= t <= limit:
                            z = t << 1
                            wt = _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                        else:
                            t = _event_ts(t, ingest_ns, limit)
                            wt = write_long(t)
                        slot = q_slots.get(sym)
                        if slot is None:
                            slot = self._slot("q", sym, n - n0)
                        bx = m["bx"]
                        bx = str_of(bx) or write_string(bx)
                        bp = m["bp"]
                        bs = m["bs"]
                        bid = _DD(bp, bs)
                        ax = m["ax"]
                        ax = str_of(ax) or write_string(ax)
                        ap = m["ap"]
                        as_ = m["as"]
                        ask = _DD(ap, as_)
                        if not (
                            0.0 <= bp < _INF
                            and 0.0 <= ap < _INF
                            and 0.0 <= bs < _INF
                            and 0.0 <= as_ < _INF
                        ):
                            _bad_quote(m)
                        c = m.get("c")
                        c = (type(c) is tuple and arr_of(c)) or write_string_array(c)
                        tape = m.get("z", "")
                        tape = str_of(tape) or write_string(tape)
                        dk = (sym, m["t"])
                        if dk in q_seen:
                            dup_q += 1
                            continue
                        q_add(dk)
                        q_keep(dk)
                        seq = slot[0]
                        slot[0] = seq + 1
                        z = seq << 1
                        ws = (
                            _CHUNK14[z & 16383] + (rest_of(z >> 14) or _rest(z >> 14))
                            if z >= 16384
                            else write_long(seq)
                        )
                        n += 1
                        if not n & 4095:
                            head = b"%s%x" % (tprefix, n >> 12)
                            head_len = _SMALL[(len(head) + 3) << 1]
                        value = b"".join(
                            (
                                q_head,
                                wt,
                                slot[1],
                                ws,
                                b"\x02",
                                bx,
                                bid,
                                ax,
                                ask,
                                c,
                                tape,
                                TRAILERS_NO_WINDOW,
                                head_len,
                                head,
                                _HEX3[n & 4095],
                            )
                        )
                        try:
                            produce(q_topic, value, slot[2], timestamp=t // 1_000_000)
                        except BufferError:
                            self._blocking_produce(q_topic, value, slot[2], t // 1_000_000)
                        keep_ts(t)
                        n_q += 1
                    else:
                        body_of = BODIES.get(kind)
                        if body_of is None:
                            if kind in CONTROL_TYPES:
                                self.on_control(m)
                                continue
                            raise InvalidMessageError("unknown_type", f"T={str(kind)[:32]!r}")
                        body = body_of(m)
                        t = m["t"]
                        if type(t) is not int or not 0 < t <= limit:
                            t = _event_ts(t, ingest_ns, limit)
                        sym = m["S"]
                        slot = slots[kind].get(sym)
                        if slot is None:
                            slot = self._slot(kind, sym, n - n0)
                        ch = TYPE_INDEX[kind]
                        if other is None:
                            other, other_dup = [0] * _NCH, [0] * _NCH
                        cache = self.dedup[kind]
                        dk = dedup_key(m)
                        if dk in cache.keys:
                            other_dup[ch] += 1  # type: ignore[index]
                            continue
                        cache.keys.add(dk)
                        cache.order.append(dk)
                        if cache is not t_dedup and cache is not q_dedup:
                            cache.mark(now, 1)
                        seq = slot[0]
                        slot[0] = seq + 1
                        n += 1
                        tid = b"%s%x" % (tprefix, n)
                        if not n & 4095:
                            head = b"%s%x" % (tprefix, n >> 12)
                            head_len = _SMALL[(len(head) + 3) << 1]
                        value = b"".join(
                            (
                                headers[kind],
                                ingest,
                                write_long(t),
                                slot[1],
                                write_long(seq),
                                body,
                                trailer(kind, t) if kind in _BAR_TYPES else TRAILERS_NO_WINDOW,
                                _SMALL[len(tid) << 1],
                                tid,
                            )
                        )
                        topic = self.topics[kind]
                        try:
                            produce(topic, value, slot[2], timestamp=t // 1_000_000)
                        except BufferError:
                            self._blocking_produce(topic, value, slot[2], t // 1_000_000)
                        keep_other_ts(t)
                        other[ch] += 1
                except InvalidMessageError as exc:
                    self.on_reject(exc.reason, exc.detail, m)
                except ENCODE_ERRORS as exc:
                    if type(m) is not dict:
                        self.on_reject("not_an_object", f"message of type {type(m).__name__}", m)
                    else:
                        self.on_reject("invalid_field", repr(exc)[:200], m)
        finally:
            f.n, f.n_t, f.n_q, f.dup_t, f.dup_q = n, n_t, n_q, dup_t, dup_q
            f.other, f.other_dup = other, other_dup

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
        other, other_dup = f.other, f.other_dup
        if other is not None:
            assert other_dup is not None
            for ch in range(_NCH):
                if other[ch] or other_dup[ch]:
                    received[ch] += other[ch] + other_dup[ch]
                    dropped[ch] += other_dup[ch]
        counts = other if other is not None else [0] * _NCH
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
    path) -> ``_finish``."""

    __slots__ = (
        "c_tq",
        "dup_q",
        "dup_t",
        "event_ts",
        "ingest_ns",
        "len_q0",
        "len_t0",
        "n",
        "n0",
        "n_q",
        "n_t",
        "now",
        "other",
        "other_dup",
        "other_ts",
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
    other: list[int] | None
    other_dup: list[int] | None
    event_ts: list[int]
    other_ts: list[int]
    c_tq: int
    tq_max: int
    len_t0: int
    len_q0: int
