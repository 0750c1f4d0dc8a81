"""Event-time heartbeats into every raw trades/quotes partition (contract: shared/heartbeat.py).

``EventClock`` is the forwarder's event-time clock, pure and unit-tested without Kafka:

- it has no value (no heartbeats) until the first trade or quote was produced, so a replay
  of an old recording never gets wall-clock heartbeats;
- afterwards ``clock = max(previous clock, highest trade/quote event time produced)``;
- once no trade or quote was produced for ``quiet_s`` of monotonic time (a halt, the end of
  the session: the whole feed is quiet), it runs on with monotonic time from the highest
  event time, ``max_event + (mono_now - mono_at_max_event)``, capped at the wall clock
  (never ahead of it); it never moves backwards.

The router feeds it once per frame (``observe``: the frame's highest trade/quote event
time and the frame's monotonic time, both of which it already has).

``HeartbeatWriter`` produces, every ``heartbeat_interval_s``, one heartbeat per partition
of both raw topics with record timestamp ``(clock - heartbeat_lag_s) // 1 ms``, and only
when that timestamp is greater than the last one sent. It produces through the envelopes' own producer, so in every partition a heartbeat
follows the envelopes it summarises (a second producer could overtake them and make them
late in the job); each tick is booked in that producer's ack accounting as a frame of no
envelopes. A failed one is counted (``torghut_forwarder_heartbeat_errors_total``) and never
re-produced (the next tick supersedes it).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from forwarder.metrics import ForwarderMetrics
from forwarder.settings import ForwarderSettings
from shared.heartbeat import HEADER, HEADER_VALUE
from shared.topics import QUOTES, TRADES

log = logging.getLogger("forwarder.heartbeat")

#: partition counts are re-read this often (topics may gain partitions)
METADATA_REFRESH_S = 60.0
METADATA_TIMEOUT_S = 5.0


class EventClock:
    """The forwarder's event-time clock (ns); see the module docstring for the rule."""

    __slots__ = ("_clock", "last_mono", "max_event_ns", "mono_at_max", "quiet_s")

    def __init__(self, quiet_s: float) -> None:
        if not quiet_s > 0:
            raise ValueError(f"quiet_s={quiet_s} must be > 0 (TORGHUT_FWD_HEARTBEAT_QUIET_S)")
        self.quiet_s = quiet_s
        #: highest event time (ns) of a trade or quote produced; 0: none yet
        self.max_event_ns = 0
        #: monotonic time when ``max_event_ns`` was produced, and of the last trade/quote
        self.mono_at_max = 0.0
        self.last_mono = 0.0
        self._clock = 0

    def observe(self, max_event_ns: int, mono: float) -> None:
        """A frame produced trades/quotes up to ``max_event_ns`` at monotonic ``mono``."""
        self.last_mono = mono
        if max_event_ns > self.max_event_ns:
            self.max_event_ns = max_event_ns
            self.mono_at_max = mono

    @property
    def started(self) -> bool:
        return self.max_event_ns > 0

    def now_ns(self, mono: float, wall_ns: int) -> int | None:
        """The clock at monotonic ``mono`` / wall ``wall_ns``; None before the first trade
        or quote."""
        top = self.max_event_ns
        if top <= 0:
            return None
        clock = self._clock if self._clock > top else top
        if mono - self.last_mono >= self.quiet_s:
            run_on = top + int((mono - self.mono_at_max) * 1e9)
            if run_on > wall_ns:
                run_on = wall_ns
            if run_on > clock:
                clock = run_on
        self._clock = clock
        return clock


class HeartbeatWriter:
    """Writes the heartbeats of one forwarder (``tick`` from its loop, ``refresh_partitions``
    from a worker thread: it blocks on broker metadata)."""

    topics = (TRADES.name, QUOTES.name)

    def __init__(
        self,
        settings: ForwarderSettings,
        clock: EventClock,
        metrics: ForwarderMetrics,
        producer: Any,
        book: Callable[[int], None] | None = None,
    ) -> None:
        """`producer`: the confluent-kafka producer the envelopes go through (the forwarder's
        `EnvelopeProducer.kafka`). It must be the same one: a partition keeps the order of one
        producer's records, and a heartbeat may only follow the envelopes it summarises — one
        through another producer can overtake them and make them late in the job. `book(n)`
        enters `n` heartbeats into the envelope producer's ack accounting (as no envelopes)."""
        self.clock, self.metrics = clock, metrics
        self.interval_s = settings.heartbeat_interval_s
        self.lag_ns = round(settings.heartbeat_lag_s * 1e9)
        self._producer = producer
        self._book = book or (lambda n: None)
        #: topic -> its partitions (from broker metadata); a topic not in it is skipped
        self.partitions: dict[str, list[int]] = {}
        self.refreshed_at = -math.inf
        self.last_ms: int | None = None
        self.ticks = 0
        self._unavailable: set[str] = set()  # logged once until it is available
        #: no heartbeats before this monotonic time: a WebSocket gap is open and its markers
        #: are not written yet (forwarder/gaps.py)
        self.hold_until = -math.inf

    # --- metadata ----------------------------------------------------------------------

    def refresh_due(self, mono: float) -> bool:
        return mono - self.refreshed_at >= METADATA_REFRESH_S or len(self.partitions) < len(
            self.topics
        )

    def refresh_partitions(self, timeout_s: float = METADATA_TIMEOUT_S) -> None:
        """Partition counts from the producer's metadata (blocking). A topic whose metadata
        is not available keeps its previous partitions, or is skipped until it is."""
        self.refreshed_at = time.monotonic()
        for topic in self.topics:
            reason = ""
            try:
                meta = self._producer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            except KafkaException as exc:
                meta, reason = None, str(exc)
            if meta is not None and meta.error is None and meta.partitions:
                self.partitions[topic] = sorted(meta.partitions)
                self._unavailable.discard(topic)
                continue
            reason = reason or str(meta.error if meta is not None else "no metadata")
            if topic not in self._unavailable:
                self._unavailable.add(topic)
                log.warning(
                    "no heartbeats into %s until its metadata is available (%s); create the "
                    "catalog topics (torghut stack up / KafkaTopic CRs)",
                    topic,
                    reason or "no partitions",
                )

    # --- heartbeats --------------------------------------------------------------------

    def tick(self, mono: float, wall_ns: int) -> int:
        """One heartbeat per known partition of both topics when the clock's timestamp moved
        past the last one sent; returns how many were produced."""
        self.ticks += 1
        self._producer.poll(0)
        if mono < self.hold_until:
            return 0
        clock = self.clock.now_ns(mono, wall_ns)
        if clock is None:
            return 0
        ts_ms = (clock - self.lag_ns) // 1_000_000
        if ts_ms <= 0 or (self.last_ms is not None and ts_ms <= self.last_ms):
            return 0
        n = 0
        headers: list[tuple[str, str | bytes | None]] = [(HEADER, HEADER_VALUE)]
        produce = self._producer.produce
        for topic in self.topics:
            for partition in self.partitions.get(topic, ()):
                try:
                    produce(
                        topic,
                        None,
                        None,
                        partition=partition,
                        timestamp=ts_ms,
                        headers=headers,
                        on_delivery=self._delivered,
                    )
                except (BufferError, KafkaException) as exc:
                    self.metrics.heartbeat_errors += 1
                    log.warning("heartbeat into %s[%d] not produced: %s", topic, partition, exc)
                    continue
                n += 1
        if n:
            self._book(n)
            self.last_ms = ts_ms
            self.metrics.heartbeats += n
            self.metrics.heartbeat_ms = ts_ms
        return n

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        """Failed deliveries only (error-only reports): counted, never re-produced."""
        if err is None:
            return
        self.metrics.heartbeat_errors += 1
        log.warning("heartbeat into %s[%s] failed: %s", msg.topic(), msg.partition(), err)
