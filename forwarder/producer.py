"""``EnvelopeProducer``: the idempotent Kafka producer of the forwarder.

``acks=all``, ``enable.idempotence``, lz4, ``murmur2_random`` (keys hash like the Java
clients and Flink), symbol keys. An envelope counts as sent only once the broker acked it.

Acks are counted per frame, not per message: only failed deliveries are reported, so an
envelope that left librdkafka's queue without a failure report was acked. The router's
native path produces straight into librdkafka (``forwarder/_rdkbridge.c``: this producer
loads ``forwarder._fastroute`` as a librdkafka plugin, whose acknowledgement interceptor
records the failures of those messages for ``poll`` to take); everything else goes through
confluent-kafka's ``produce`` with error-only delivery reports. ``track`` books each routed
frame (count, per-channel counts, event times) in a FIFO; ``settle`` credits whole frames once that many envelopes were
acked in total: ``messages`` per channel and the event-lag histogram. Totals are exact at
all times (a frame is credited only when that many acks happened), per-channel counts are
exact whenever the queue drains. librdkafka retries transient errors itself for
``message.timeout.ms``; a delivery that still fails is kept in memory and re-produced with
backoff (it counts toward the queue limit, so reading from Alpaca stops instead of dropping).
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import deque
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, libversion

from forwarder.exceptions import ProducerConfigError
from forwarder.metrics import CHANNEL_INDEX, LAG_BUCKETS_NS, ForwarderMetrics
from forwarder.settings import ForwarderSettings
from shared.avro_binary import AvroBinaryError, read_long

log = logging.getLogger("forwarder.producer")
RETRY_BASE_S = 0.1
RETRY_CAP_S = 5.0
#: librdkafka's message.max.bytes counts key and record overhead besides the envelope
RECORD_HEADROOM = 10_000

try:
    from forwarder import _fastroute
except ImportError:  # not compiled: confluent-kafka's produce for everything
    _fastroute = None  # type: ignore[assignment]


def _bind_native() -> str | None:
    """The plugin path of the native produce bridge, or None (with the reason logged)."""
    if _fastroute is None:
        return None
    try:
        _fastroute.bind_librdkafka(libversion()[1])
    except OSError as exc:
        log.warning("native produce unavailable, using confluent-kafka's produce: %s", exc)
        return None
    return str(_fastroute.__file__)


#: the shared object librdkafka loads as a plugin for native produce (None: unavailable)
NATIVE_PLUGIN = _bind_native()


_FATAL = KafkaError._FATAL
# errors about the record itself, which no retry can fix
PERMANENT_RECORD_ERRORS = frozenset(
    {KafkaError.INVALID_TIMESTAMP, KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD}
)


def envelope_head(value: bytes) -> tuple[int, int]:
    """(channel index, event_ts ns) of a framed Envelope (header, ingest_ts, event_ts, feed,
    channel); (-1, 0) when the bytes are not one (failed deliveries only: never on the hot
    path)."""
    try:
        pos = 5
        _, pos = read_long(value, pos)
        event_ts, pos = read_long(value, pos)
        n, pos = read_long(value, pos)
        pos += n
        n, pos = read_long(value, pos)
        channel = CHANNEL_INDEX.get(value[pos : pos + n].decode(), -1)
    except (AvroBinaryError, IndexError, UnicodeDecodeError):
        return -1, 0
    return (channel, event_ts) if channel >= 0 else (-1, 0)


def channel_of(value: bytes) -> int:
    """The channel index of a framed Envelope; -1 when the bytes are not one."""
    return envelope_head(value)[0]


class EnvelopeProducer:
    """Produces framed envelopes; tracks acks, failures and broker health."""

    def __init__(
        self,
        settings: ForwarderSettings,
        metrics: ForwarderMetrics,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.metrics = metrics
        self.stall_s = settings.producer_stall_s
        cfg: dict[str, Any] = {
            **settings.kafka_config(),
            "client.id": f"torghut-forwarder-{settings.feed}",
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": settings.linger_ms,
            "partitioner": "murmur2_random",
            "message.timeout.ms": settings.message_timeout_ms,
            # the soft limit (settings.queue_limit) stops reading; this hard one is headroom
            "queue.buffering.max.messages": settings.queue_limit * 2 + 10_000,
            "queue.buffering.max.kbytes": 2_097_151,
            "batch.num.messages": 10_000,
            "batch.size": 1_000_000,
            # the router rejects envelopes over max_envelope_bytes (envelope_too_large);
            # librdkafka's own limit stays above them by room for key and record overhead
            "message.max.bytes": max(1_000_000, settings.max_envelope_bytes + RECORD_HEADROOM),
            # no Python callback per acked message: only failures are reported
            "delivery.report.only.error": True,
            "on_delivery": self._failed,
            "error_cb": self._on_error,
            "logger": logging.getLogger("forwarder.rdkafka"),
            **(extra_config or {}),
        }
        mmb = int(cfg["message.max.bytes"])
        if mmb < settings.max_envelope_bytes + RECORD_HEADROOM:
            # librdkafka would refuse, at produce time, envelopes the router lets through
            raise ProducerConfigError(
                f"producer config message.max.bytes={mmb} is below "
                f"TORGHUT_FWD_MAX_ENVELOPE_BYTES={settings.max_envelope_bytes} + "
                f"{RECORD_HEADROOM}: lower that setting or drop the override"
            )
        #: the native produce bridge of this producer (``forwarder._fastroute.claim``), read
        #: by the router's native path; None: confluent-kafka's produce only
        self.native: Any = None
        self._native_lost = 0
        if NATIVE_PLUGIN is not None and settings.native_produce and _fastroute is not None:
            plugins = [p for p in str(cfg.get("plugin.library.paths", "")).split(";") if p]
            try:
                _fastroute.claim()  # forget a producer this thread created without claiming
                self._producer = Producer(
                    {**cfg, "plugin.library.paths": ";".join([*plugins, NATIVE_PLUGIN])}
                )
                self.native = _fastroute.claim()
            except KafkaException as exc:
                log.warning("native produce unavailable, using confluent-kafka's: %s", exc)
                self._producer = Producer(cfg)
        else:
            self._producer = Producer(cfg)
        #: ``produce(topic, value, key, timestamp=ms)`` of librdkafka, for the router's loop
        #: (callers must ``track`` what they produced)
        self.raw_produce = self._producer.produce
        #: the confluent-kafka producer itself (heartbeats go through it, after the envelopes)
        self.kafka = self._producer
        self._retry: deque[tuple[str, bytes, bytes | None, int]] = deque()
        self._retry_attempt = 0
        self._retry_at = 0.0
        # ack accounting: envelopes handed over, settled (acked or refused for good)
        self.produced = 0
        self._settled = 0
        self._frames: deque[tuple[int, list[int], list[int]]] = deque()
        self._refused = [0] * len(metrics.messages)  # per channel, not yet deducted
        self.last_ack = time.monotonic()
        self.last_failure: float | None = None
        self.brokers_down_since: float | None = None
        self.fatal_error: str | None = None
        self.last_error: str = ""

    # --- hot path ----------------------------------------------------------------

    def track(self, n: int, per_channel: list[int], event_ts: list[int]) -> None:
        """Book ``n`` envelopes just handed to ``raw_produce`` (one frame)."""
        self.produced += n
        self._frames.append((n, per_channel, event_ts))

    def book_heartbeats(self, n: int) -> None:
        """Book `n` heartbeats just produced through `kafka` (forwarder/heartbeat.py): a frame
        of no envelopes, settled with the acks around it, never counted as a message."""
        self.track(n, [0] * len(self.metrics.messages), [])

    def produce(
        self, topic: str, value: bytes, key: bytes | None, channel: int, event_ts: int
    ) -> None:
        """Produce and track one envelope (status events; the router batches instead)."""
        # the record timestamp is the event time: the TA job's per-partition watermarks
        # come straight from it
        self.produce_blocking(topic, value, key, event_ts // 1_000_000)
        per_channel = [0] * len(self.metrics.messages)
        per_channel[channel] = 1
        self.track(1, per_channel, [event_ts])

    def produce_blocking(self, topic: str, value: bytes, key: bytes | None, ts_ms: int) -> None:
        """``raw_produce``; at the hard queue limit wait for acks (backpressure), never drop."""
        while True:
            try:
                self._producer.produce(topic, value, key, timestamp=ts_ms)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _failed(self, err: KafkaError | None, msg: Any) -> None:
        """confluent-kafka's delivery report: a failure (it reports nothing else)."""
        if err is None:  # only with delivery.report.only.error overridden: acks are settled
            return
        self._on_failure(msg.topic(), msg.value() or b"", msg.key(), err)

    def _on_failure(self, topic: str, value: bytes, key: bytes | None, err: KafkaError) -> None:
        """A delivery that failed after librdkafka's own retries: re-produce it with backoff,
        or drop it (counted) when the broker refused the record itself."""
        self.metrics.produce_errors += 1
        self.last_failure = time.monotonic()
        self.last_error = str(err)
        channel, event_ts = envelope_head(value)
        if err.code() in PERMANENT_RECORD_ERRORS:
            # this record can never be accepted: retrying would wedge the queue behind it
            log.error("broker refused a record for %s for good (%s); dropped", topic, err)
            self.metrics.frames_rejected["broker_refused"] += 1
            if channel >= 0:
                self._refused[channel] += 1
            return
        if err.fatal():
            self.fatal_error = str(err)
        log.warning("delivery to %s failed (%s); re-producing with backoff", topic, err)
        # librdkafka reports no timestamp with a failed message: the record timestamp is the
        # envelope's event time again (the TA job's watermarks), 0 (= now) for other records
        self._retry.append((topic, value, key, event_ts // 1_000_000 if channel >= 0 else 0))

    def _take_native_failures(self) -> None:
        if self.native is None or _fastroute is None:
            return
        for topic, value, key, code in _fastroute.take_failures(self.native):
            self._on_failure(topic, value, key, KafkaError(code, fatal=code == _FATAL))
        lost = _fastroute.lost(self.native)
        if lost > self._native_lost:  # out of memory in librdkafka's thread: say so loudly
            self.metrics.produce_errors += lost - self._native_lost
            log.error("%d failed deliveries could not be recorded (out of memory)", lost)
            self._native_lost = lost

    def poll(self, timeout_s: float = 0.0) -> int:
        n = int(self._producer.poll(timeout_s))
        self._take_native_failures()
        self.settle()
        return n

    def settle(self) -> int:
        """Credit the frames whose envelopes are all acked; returns how many envelopes."""
        frames = self._frames
        if not frames:
            return 0
        # not settled: in librdkafka (queued, in flight, failure not yet reported) or
        # waiting for a re-produce
        done = self.produced - len(self) - self._settled
        if done < frames[0][0]:
            return 0
        m = self.metrics
        messages, buckets, refused = m.messages, m.lag_buckets, self._refused
        now = time.time_ns()
        credited = 0
        while frames and frames[0][0] <= done:
            n, per_channel, event_ts = frames.popleft()
            done -= n
            credited += n
            for ch, count in enumerate(per_channel):
                if count:
                    if refused[ch]:  # refused for good: settled but never acked
                        cut = min(count, refused[ch])
                        refused[ch] -= cut
                        count -= cut
                    messages[ch] += count
            if not event_ts:  # heartbeats: no envelope, no lag
                continue
            # now - event_ts per envelope; one bucket for the whole frame when it can
            lo, hi = now - max(event_ts), now - min(event_ts)
            b = bisect_left(LAG_BUCKETS_NS, lo if lo > 0 else 0)
            if b == bisect_left(LAG_BUCKETS_NS, hi if hi > 0 else 0):
                buckets[b] += len(event_ts)
                if lo >= 0:
                    m.lag_sum_ns += now * len(event_ts) - sum(event_ts)
                else:
                    m.lag_sum_ns += sum(max(0, now - e) for e in event_ts)
            else:
                # spread over buckets: per-bucket counts from the sorted event times (what
                # observe_lag per envelope gives, without a Python call per envelope)
                ts = sorted(event_ts)
                total = len(ts)
                below = 0
                for k, bound in enumerate(LAG_BUCKETS_NS):
                    upto = total - bisect_left(ts, now - bound)  # lag <= bound
                    buckets[k] += upto - below
                    below = upto
                buckets[-1] += total - below
                past = bisect_left(ts, now)  # positive lags (the others count as 0)
                m.lag_sum_ns += now * past - sum(ts[:past])
        self._settled += credited
        self.last_ack = time.monotonic()
        self.brokers_down_since = None
        return credited

    # --- retries, health, shutdown -----------------------------------------------

    def retry_failed(self, now: float | None = None) -> int:
        """Re-produce failed deliveries when their backoff has passed; returns how many."""
        if not self._retry:
            self._retry_attempt = 0
            return 0
        now = time.monotonic() if now is None else now
        if now < self._retry_at:
            return 0
        n = 0
        while self._retry:
            topic, value, key, ts_ms = self._retry.popleft()
            self.produce_blocking(topic, value, key, ts_ms)
            n += 1
        self._retry_attempt += 1
        self._retry_at = now + min(RETRY_CAP_S, RETRY_BASE_S * 2 ** min(self._retry_attempt, 16))
        return n

    def _on_error(self, err: KafkaError) -> None:
        self.last_error = str(err)
        if err.fatal():
            self.fatal_error = str(err)
            log.error("fatal producer error: %s", err)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self.brokers_down_since is None:
                self.brokers_down_since = time.monotonic()
            log.warning("all brokers down: %s", err)
        else:
            log.info("producer: %s", err)

    def __len__(self) -> int:
        """Envelopes not yet acked: in librdkafka, failed natively but not yet taken (read
        after librdkafka's count: a failure is recorded before librdkafka lets go of the
        message, so none is missed in between), and waiting for a re-produce."""
        queued = len(self._producer)
        if self.native is not None and _fastroute is not None:
            queued += _fastroute.pending(self.native)
        return queued + len(self._retry)

    def health(self, now: float | None = None) -> tuple[bool, str]:
        """(healthy, reason). Unhealthy on a fatal error, or when errors are sustained:
        nothing acked for ``producer_stall_s`` while envelopes wait, brokers down that long,
        or a delivery that failed after all librdkafka retries within that window."""
        now = time.monotonic() if now is None else now
        if self.fatal_error:
            return False, f"fatal producer error: {self.fatal_error}"
        depth = len(self)
        if depth and now - self.last_ack > self.stall_s:
            return (
                False,
                f"{depth} envelopes unacked for {now - self.last_ack:.0f}s: {self.last_error}",
            )
        if self.brokers_down_since is not None and now - self.brokers_down_since > self.stall_s:
            return False, f"all brokers down for {now - self.brokers_down_since:.0f}s"
        if self.last_failure is not None and now - self.last_failure < self.stall_s:
            return False, f"delivery failed {now - self.last_failure:.0f}s ago: {self.last_error}"
        return True, "ok"

    def flush(self, timeout_s: float) -> int:
        """Wait until every envelope is acked (re-producing failures); returns what is left."""
        deadline = time.monotonic() + timeout_s
        while len(self) and time.monotonic() < deadline:
            self._take_native_failures()
            self.retry_failed()
            self._producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
            self._take_native_failures()
        self.settle()
        return len(self)
