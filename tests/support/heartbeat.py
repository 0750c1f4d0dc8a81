"""The forwarder's HeartbeatWriter in unit tests: a stand-in for the confluent_kafka
Producer calls it makes, and a writer on it with the clock and metrics it reports to."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from confluent_kafka import KafkaError

from forwarder.heartbeat import EventClock, HeartbeatWriter
from forwarder.metrics import ForwarderMetrics
from forwarder.settings import ForwarderSettings
from shared.topics import QUOTES, TRADES


class FakeKafka:
    """What the writer needs of a confluent_kafka.Producer: produce, poll, list_topics."""

    def __init__(self, partitions: dict[str, int | None]) -> None:
        self.partitions = partitions
        self.records: list[dict[str, Any]] = []
        self.polls = 0

    def produce(self, topic: str, value: Any, key: Any, **kw: Any) -> None:
        self.records.append({"topic": topic, "value": value, "key": key, **kw})

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def list_topics(self, topic: str, timeout: float) -> Any:
        n = self.partitions.get(topic)
        if n is None:
            meta = SimpleNamespace(
                error=KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), partitions={}
            )
        else:
            meta = SimpleNamespace(error=None, partitions={p: None for p in range(n)})
        return SimpleNamespace(topics={topic: meta})

    def flush(self, timeout: float) -> int:
        return 0


def heartbeat_writer(
    partitions: dict[str, int | None] | None = None, **settings: Any
) -> tuple[HeartbeatWriter, EventClock, FakeKafka, ForwarderMetrics]:
    """A HeartbeatWriter on a FakeKafka with `partitions` per topic (3 trades, 2 quotes by
    default), lag 2 s and quiet 1 s; `settings` override ForwarderSettings."""
    s = ForwarderSettings(heartbeat_lag_s=2.0, heartbeat_quiet_s=1.0, **settings)
    clock, metrics = EventClock(s.heartbeat_quiet_s), ForwarderMetrics()
    kafka = FakeKafka(partitions or {TRADES.name: 3, QUOTES.name: 2})
    hb = HeartbeatWriter(s, clock, metrics, producer=kafka)
    hb.refresh_partitions()
    return hb, clock, kafka, metrics
