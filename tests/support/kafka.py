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
