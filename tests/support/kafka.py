"""Small Kafka helpers for tests (real broker, confluent-kafka)."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, Producer

from shared.heartbeat import is_heartbeat
from torghut.stack import kafka as stack_kafka
from torghut.stack.state import StackState

QUIET = logging.getLogger("rdkafka.quiet")
QUIET.setLevel(logging.CRITICAL)


def create_topic(state: StackState, name: str, partitions: int = 1) -> str:
    stack_kafka.create_topics(state.kafka_bootstrap, [(name, partitions, {})])
    return name


def producer(state: StackState, **extra: str) -> Producer:
    return Producer({"bootstrap.servers": state.kafka_bootstrap, "logger": QUIET, **extra})


def consume(
    state: StackState,
    topic: str,
    expected: int,
    timeout_s: float = 60.0,
    isolation: str = "read_committed",
    settle_s: float = 0.0,
    skip_heartbeats: bool = False,
) -> list:
    """Read from the beginning until `expected` records arrived (and `settle_s` more passed
    with nothing new, to catch extras), or the deadline. ``skip_heartbeats``: leave out the
    event-time heartbeats of the raw trades/quotes topics (shared/heartbeat.py)."""
    c = Consumer(
        {
            "bootstrap.servers": state.kafka_bootstrap,
            "group.id": f"test-{topic}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "logger": QUIET,
        }
    )
    c.subscribe([topic])
    out: list = []
    deadline = time.monotonic() + timeout_s
    settled_at = None
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                if skip_heartbeats and is_heartbeat(msg.value(), msg.headers()):
                    continue
                out.append(msg)
                settled_at = None
                continue
            if len(out) >= expected:
                if settled_at is None:
                    settled_at = time.monotonic()
                if time.monotonic() - settled_at >= settle_s:
                    break
    finally:
        c.close()
    return out


def max_event_ms(state: StackState, topics: list[str]) -> int:
    """The highest record timestamp (the event time the job reads, ms) in any partition of
    `topics`, or -1 for empty topics (Kafka's ListOffsets `MAX_TIMESTAMP`, KIP-734)."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": state.kafka_bootstrap, "logger": QUIET})
    meta = admin.list_topics(timeout=30)
    spec = {
        TopicPartition(t, p): OffsetSpec.max_timestamp()
        for t in topics
        for p in meta.topics[t].partitions
    }
    futures = admin.list_offsets(spec, request_timeout=30)
    return max([-1, *(f.result().timestamp for f in futures.values())])


def wait_past_event_time_marks(
    state: StackState, topics: list[str], bound_ms: int, bar_ms: int, timeout_s: float = 60.0
) -> int:
    """Wait until a trade stamped with the wall clock is on time for every partition of
    `topics`, whatever earlier tests left there; returns how long that took (ms).

    The job decides lateness from each partition's event-time high-water mark over the whole
    log (docs/design.md, "Event time"), and a job that starts from the earliest offset reads
    the earlier tests' records too. A test that closed its last bars with records a few seconds
    ahead of the clock (as the drills do) leaves a mark that makes the next test's first second
    late by design: a real finding for the job, a wrong oracle for the test. Found by reading
    the log of a failed drill: its first second was missing, nothing around its kill -9."""
    limit = max_event_ms(state, topics) + bound_ms + bar_ms
    started = time.time_ns() // 1_000_000
    deadline = time.monotonic() + timeout_s
    while (now := time.time_ns() // 1_000_000) <= limit:
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"the raw topics hold event times up to {limit - now} ms ahead of the clock "
                f"after {timeout_s:.0f}s: a test wrote records far in the future"
            )
        time.sleep(min(0.1, (limit - now + 1) / 1000))
    return now - started
