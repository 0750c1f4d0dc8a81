"""``EnvelopeRouter``: the hot path. For each market-data message of a frame: validate and
encode, drop duplicates, number, produce. No I/O besides handing bytes to the producer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from forwarder.avro_writer import (
    BODIES,
    ENCODE_ERRORS,
    TRAILERS_NO_WINDOW,
    EnvelopeWriter,
    frame_header,
    trailer,
    write_long,
)
from forwarder.dedup import DedupCache
from forwarder.envelope import CHANNEL_BY_TYPE, CONTROL_TYPES, dedup_key, event_ts_ns
from forwarder.exceptions import InvalidMessageError
from forwarder.metrics import TYPE_INDEX, ForwarderMetrics
from forwarder.producer import EnvelopeProducer
from forwarder.sequence import SequenceNumbers
from shared.topics import CHANNEL_TOPICS

# Kafka 4 refuses record timestamps more than an hour ahead (log.message.timestamp.after.max.ms);
# an Alpaca event this far ahead of our clock is bad input, not data.
MAX_FUTURE_NS = 10 * 60 * 10**9

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

# reject(reason, detail, message or None)
RejectHook = Callable[[str, str, Any], None]
ControlHook = Callable[[Mapping[str, Any]], None]


class TraceIds:
    """Cheap unique trace ids: a random per-process prefix and a hex counter."""

    __slots__ = ("_n", "prefix")

    def __init__(self) -> None:
        self.prefix = os.urandom(4).hex().encode()
        self._n = 0

    def next_bytes(self) -> bytes:
        self._n += 1
        return b"%s%x" % (self.prefix, self._n)

    def next(self) -> str:
        return self.next_bytes().decode()


class EnvelopeRouter:
    """Dedup -> seq -> Avro -> produce, per message; rejects never stop the loop."""

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
    ) -> None:
        self.writer, self.seqs, self.producer, self.metrics = writer, seqs, producer, metrics
        self.on_reject, self.on_control = on_reject, on_control
        self.trace_ids = trace_ids or TraceIds()
        caches = {f: DedupCache(dedup_max_entries, dedup_horizon_s) for f in set(_FAMILY.values())}
        self.dedup = {t: caches[f] for t, f in _FAMILY.items()}
        self.topics = {t: CHANNEL_TOPICS[c].name for t, c in CHANNEL_BY_TYPE.items()}
        # Confluent framing per topic: registries may give each subject its own schema id
        self.headers = {t: writer.header for t in CHANNEL_BY_TYPE}
        feed_key = writer.feed.encode()
        # the status topic is keyed by feed, the others by symbol
        self._feed_keyed = {
            t for t, c in CHANNEL_BY_TYPE.items() if CHANNEL_TOPICS[c].key == "feed"
        }
        self._feed_key = feed_key
        self._keys: dict[str, bytes] = {}

    def set_schema_ids(self, ids: Mapping[str, int]) -> None:
        """Schema id per topic name, as the registry answered for ``<topic>-value``."""
        for t, topic in self.topics.items():
            self.headers[t] = frame_header(ids[topic])

    def route(self, msgs: Sequence[Any], ingest_ns: int) -> None:
        """Forward every message of one frame (received at ``ingest_ns``)."""
        now = time.monotonic()
        headers = self.headers
        ingest = write_long(ingest_ns)
        prefix_of = self.writer.prefix
        seq_next = self.seqs.next
        dedup = self.dedup
        topics = self.topics
        keys = self._keys
        feed_keyed = self._feed_keyed
        produce = self.producer.produce
        received = self.metrics.received
        dropped = self.metrics.dedup_dropped
        trace = self.trace_ids
        tprefix = trace.prefix
        n = trace._n
        for m in msgs:
            try:
                if type(m) is not dict:
                    raise InvalidMessageError(
                        "not_an_object", f"message of type {type(m).__name__}"
                    )
                kind: str = m.get("T")  # type: ignore[assignment]
                body_of = BODIES.get(kind)  # type: ignore[arg-type]
                if body_of is None:
                    if kind in CONTROL_TYPES:
                        self.on_control(m)
                        continue
                    raise InvalidMessageError("unknown_type", f"T={str(kind)[:32]!r}")
                body = body_of(m)
                t = m["t"]
                ets = t if type(t) is int and 0 < t < _MAX_NS else event_ts_ns(t)
                if ets > ingest_ns + MAX_FUTURE_NS:
                    # the record timestamp is the event time; brokers refuse far-future ones
                    raise InvalidMessageError(
                        "event_ts_in_future", f"t={ets} is {(ets - ingest_ns) // 10**9}s ahead"
                    )
                sym = m["S"]
                pfx = prefix_of(kind, sym)
                ch = TYPE_INDEX[kind]
                received[ch] += 1
                if dedup[kind].seen(dedup_key(m), now):
                    dropped[ch] += 1
                    continue
                seq = seq_next((kind, sym))
                n += 1
                tid = b"%s%x" % (tprefix, n)
                value = b"".join(
                    (
                        headers[kind],
                        ingest,
                        write_long(ets),
                        pfx,
                        write_long(seq),
                        body,
                        trailer(kind, ets) if kind in _BAR_TYPES else TRAILERS_NO_WINDOW,
                        write_long(len(tid)),
                        tid,
                    )
                )
                if kind in feed_keyed:
                    key = self._feed_key
                else:
                    key = keys.get(sym)  # type: ignore[assignment]
                    if key is None:
                        if len(keys) > 100_000:
                            keys.clear()
                        key = keys[sym] = sym.encode()
                produce(topics[kind], value, key, ch, ets)
            except InvalidMessageError as exc:
                self.on_reject(exc.reason, exc.detail, m)
            except ENCODE_ERRORS as exc:
                self.on_reject("invalid_field", repr(exc)[:200], m)
        trace._n = n
