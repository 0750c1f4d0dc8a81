"""Kafka readers of ``torghut bench pipeline``: collectors that stamp receive times, and
the record count of topics."""

from __future__ import annotations

import threading
import time
from typing import cast

from torghut.bench.common import quiet_kafka_logger


class Collector(threading.Thread):
    """Reads a topic from its end (assign, no group join); keeps (receive ns, value bytes)."""

    def __init__(self, bootstrap: str, topic: str, isolation: str) -> None:
        super().__init__(name=f"collect-{topic}", daemon=True)
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        self.topic = topic
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-pipeline-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "fetch.wait.max.ms": 10,
                "logger": quiet_kafka_logger,
            }
        )
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.c.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self.items: list[tuple[int, bytes]] = []
        self._halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                # poll returns as soon as one record is there (consume(n, t) would wait for
                # n records or t and add that wait to every latency measured); then take
                # what else has already arrived without waiting
                first = self.c.poll(0.05)
                now = time.time_ns()
                self.ready.set()
                if first is None:
                    continue
                for m in [first, *self.c.consume(1000, 0)]:
                    if m.error() is None:
                        self.items.append((now, cast(bytes, m.value())))
        finally:
            self.c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def start_collectors(bootstrap: str, *topics: tuple[str, str]) -> list[Collector]:
    """One started collector per (topic, isolation level), each reading (or 10 s passed)."""
    collectors = [Collector(bootstrap, topic, isolation) for topic, isolation in topics]
    for c in collectors:
        c.start()
    for c in collectors:
        c.ready.wait(10)
    return collectors


def record_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Records held per topic (high - low watermark over its partitions)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-offsets-{time.time_ns()}",
            "logger": quiet_kafka_logger,
        }
    )
    try:
        out = {}
        for t in topics:
            parts = c.list_topics(t, timeout=10).topics[t].partitions
            total = 0
            for p in parts:
                for attempt in range(60):  # right after topic creation the leader may move
                    try:
                        lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                        break
                    except KafkaException:
                        if attempt == 59:
                            raise
                        time.sleep(0.5)
                total += hi - lo
            out[t] = total
        return out
    finally:
        c.close()
