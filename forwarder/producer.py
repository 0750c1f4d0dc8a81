"""``EnvelopeProducer``: the idempotent Kafka producer of the forwarder.

``acks=all``, ``enable.idempotence``, lz4, ``murmur2_random`` (keys hash like the Java
clients and Flink), symbol keys. An envelope counts as sent only in the delivery callback
after the broker acked it. librdkafka retries transient errors itself for
``message.timeout.ms``; a delivery that still fails is kept in memory and re-produced with
backoff (it counts toward the queue limit, so reading from Alpaca stops instead of dropping).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, Producer

from forwarder.metrics import ForwarderMetrics
from forwarder.settings import ForwarderSettings

log = logging.getLogger("forwarder.producer")
RETRY_BASE_S = 0.1
RETRY_CAP_S = 5.0


# errors about the record itself, which no retry can fix
PERMANENT_RECORD_ERRORS = frozenset(
    {KafkaError.INVALID_TIMESTAMP, KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD}
)


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
            "error_cb": self._on_error,
            "logger": logging.getLogger("forwarder.rdkafka"),
            **(extra_config or {}),
        }
        self._producer = Producer(cfg)
        self._retry: deque[tuple[str, bytes, bytes | None, int, int]] = deque()
        self._retry_attempt = 0
        self._retry_at = 0.0
        self.last_ack = time.monotonic()
        self.last_failure: float | None = None
        self.brokers_down_since: float | None = None
        self.fatal_error: str | None = None
        self.last_error: str = ""

    # --- hot path ----------------------------------------------------------------

    def produce(
        self, topic: str, value: bytes, key: bytes | None, channel: int, event_ts: int
    ) -> None:
        cb = partial(self._delivered, channel, event_ts)
        # the record timestamp is the Alpaca event time: the TA job's per-partition
        # watermarks come straight from it
        ts_ms = event_ts // 1_000_000
        try:
            self._producer.produce(topic, value, key, on_delivery=cb, timestamp=ts_ms)
        except BufferError:
            # the hard queue limit: wait for acks (backpressure), never drop
            while True:
                self._producer.poll(0.05)
                try:
                    self._producer.produce(topic, value, key, on_delivery=cb, timestamp=ts_ms)
                    return
                except BufferError:
                    continue

    def _delivered(self, channel: int, event_ts: int, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            m = self.metrics
            m.messages[channel] += 1
            lag = time.time_ns() - event_ts
            m.observe_lag(lag if lag > 0 else 0)
            self.last_ack = time.monotonic()
            self.brokers_down_since = None
            return
        self.metrics.produce_errors += 1
        self.last_failure = time.monotonic()
        self.last_error = str(err)
        if err.code() in PERMANENT_RECORD_ERRORS:
            # this record can never be accepted: retrying would wedge the queue behind it
            log.error("broker refused a record for %s for good (%s); dropped", msg.topic(), err)
            self.metrics.frames_rejected["broker_refused"] += 1
            return
        if err.fatal():
            self.fatal_error = str(err)
        log.warning("delivery to %s failed (%s); re-producing with backoff", msg.topic(), err)
        self._retry.append((msg.topic(), msg.value(), msg.key(), channel, event_ts))

    def poll(self, timeout_s: float = 0.0) -> int:
        return int(self._producer.poll(timeout_s))

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
            topic, value, key, channel, event_ts = self._retry.popleft()
            self.produce(topic, value, key, channel, event_ts)
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
        """Envelopes not yet acked: in librdkafka plus waiting for a re-produce."""
        return len(self._producer) + len(self._retry)

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
            self.retry_failed()
            self._producer.flush(min(0.5, max(0.0, deadline - time.monotonic())))
        return len(self)
