"""Read a TA topic the way the consumer profile says (`shared/consumer_profile.py`).

`TaConsumer` reads one topic (`ta.signals.v1`, `ta.bars.1s.v1`, `ta.status.v1`, a newer
version) with the profile's isolation, decodes the Confluent-framed Avro with the writer
schema from the registry (`shared/serde.py`, so a newer schema's added fields come through)
and yields `ConsumedRecord`s:

- `exactly-once`: `read_committed`; only final records (`is_final` true) and records of
  topics without provisional ones (`ta.status.v1`): each final record of a committed
  transaction, never one that a job restore rolled back.
- `at-least-once`: `read_uncommitted`; provisional and final records as soon as the job
  writes them, duplicates dropped by `(symbol, window.start, is_final, version)`, a final
  record's version left out (`dedup_key`; the last `dedup_keys` keys are remembered). A record of a transaction that is aborted later may be
  yielded: use `exactly-once` where only committed output may count.

It assigns the topic's partitions itself (no consumer group membership, no offsets
committed): `start` is `earliest`, `latest` or an epoch-ns instant (the first record at or
after it, by record timestamp). A topic the cluster does not have is `UnknownTopicError`, one
without a registered value schema is `NoSchemaError`; a record that does not decode is
counted (`stats.undecodable`) and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cachetools import LRUCache
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition

from shared.consumer_profile import ConsumerProfile, Profile, isolation_of
from shared.registry import RegistryError, SchemaNotFoundError, SchemaRegistryClient
from shared.serde import AvroDeserializer, SerdeError
from shared.settings import KafkaConnection

log = logging.getLogger(__name__)
_QUIET = logging.getLogger("torghut.ta_consumer.rdkafka")
_QUIET.setLevel(logging.CRITICAL)

Start = Literal["earliest", "latest"] | int  # int: epoch nanoseconds
DEDUP_KEYS = 1_000_000


class TaConsumerError(ValueError):
    """The consumer cannot read what it was asked to; the message says what to do."""


class UnknownTopicError(TaConsumerError):
    """The cluster has no such topic."""


class NoSchemaError(TaConsumerError):
    """The registry has no value schema for the topic."""


@dataclass
class ConsumerStats:
    """What was read and what was left out (bad input is counted, not silently dropped)."""

    read: int = 0
    yielded: int = 0
    duplicates: int = 0  # at-least-once: a key seen before
    provisional_skipped: int = 0  # exactly-once: is_final false
    undecodable: int = 0  # not Confluent-framed Avro the registry resolves
    errors: list[str] = field(default_factory=list)  # the first undecodable records' errors


@dataclass(frozen=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: dict[str, Any]


def dedup_key(value: dict[str, Any]) -> tuple[Any, ...] | None:
    """`(symbol, window start, is_final, version)`, or None for a record without them.

    A final record's version is left out (None): a bar is final once, and the job's
    at-least-once sink repeats a final after a restore with the same values and a newer
    `version` (docs/flink-job.md, "Delivery"), which must count as the same record. A
    provisional record keeps its version: each update of an open bar is a record of its own.
    """
    window = value.get("window")
    if not isinstance(window, dict) or "symbol" not in value or "version" not in value:
        return None
    final = value.get("is_final")
    return (value["symbol"], window.get("start"), final, None if final else value["version"])


class TaConsumer:
    """One topic, read with a consumer profile (module doc)."""

    def __init__(
        self,
        kafka: KafkaConnection,
        registry: SchemaRegistryClient,
        topic: str,
        profile: ConsumerProfile | Profile = "exactly-once",
        start: Start = "earliest",
        dedup_keys: int = DEDUP_KEYS,
        metadata_timeout_s: float = 10.0,
    ) -> None:
        self.topic = topic
        self.profile: Profile = profile.profile if isinstance(profile, ConsumerProfile) else profile
        self.isolation = isolation_of(self.profile)
        self.stats = ConsumerStats()
        self._seen: LRUCache[tuple[Any, ...], bool] = LRUCache(maxsize=dedup_keys)
        self._decoder = AvroDeserializer(registry)
        self._consumer = Consumer(
            {
                **kafka.as_librdkafka_dict(),
                "group.id": f"torghut-consume-{topic}",  # never joined: partitions assigned
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "isolation.level": self.isolation,
                "logger": _QUIET,
            }
        )
        try:
            self._assign(start, metadata_timeout_s)
            self._check_schema(registry)
        except BaseException:
            self._consumer.close()
            raise

    def _check_schema(self, registry: SchemaRegistryClient) -> None:
        subject = f"{self.topic}-value"
        try:
            registry.versions(subject)
        except SchemaNotFoundError:
            raise NoSchemaError(
                f"the registry at {registry.url} has no schema under {subject!r}: "
                f"{self.topic} is not a topic written in Avro by the pipeline (or its writer "
                "has not started); check the topic name (docs/topics-and-schemas.md)"
            ) from None
        except RegistryError as exc:
            raise TaConsumerError(f"schema registry {registry.url}: {exc}") from None

    def _assign(self, start: Start, timeout_s: float) -> None:
        try:
            # every topic: asking for one by name may auto-create it on a broker that allows it
            meta = self._consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise TaConsumerError(f"Kafka metadata for {self.topic}: {exc}") from None
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            have = sorted(t for t in meta.topics if not t.startswith("__"))
            raise UnknownTopicError(
                f"Kafka has no topic {self.topic!r} (topics the listing shows: "
                f"{', '.join(have) or 'none'}); check the name and version, e.g. ta.signals.v1"
            )
        parts = sorted(tmeta.partitions)
        if start == "earliest":
            tps = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts]
        elif start == "latest":
            tps = [TopicPartition(self.topic, p, OFFSET_END) for p in parts]
        else:
            wanted = [TopicPartition(self.topic, p, int(start) // 1_000_000) for p in parts]
            found = self._consumer.offsets_for_times(wanted, timeout=timeout_s)
            # -1: no record at or after the time in that partition: start at its end
            tps = [
                TopicPartition(
                    self.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END
                )
                for tp in found
            ]
        self._consumer.assign(tps)

    def _wanted(self, value: dict[str, Any]) -> bool:
        if self.profile == "exactly-once":
            if value.get("is_final") is False:
                self.stats.provisional_skipped += 1
                return False
            return True
        key = dedup_key(value)
        if key is None:
            return True
        if key in self._seen:
            self.stats.duplicates += 1
            return False
        self._seen[key] = True
        return True

    def records(
        self, max_records: int | None = None, idle_s: float = 5.0
    ) -> Iterator[ConsumedRecord]:
        """Yield records until `max_records` were yielded or nothing came for `idle_s`."""
        last = time.monotonic()
        while max_records is None or self.stats.yielded < max_records:
            msg = self._consumer.poll(0.2)
            if msg is None:
                if time.monotonic() - last >= idle_s:
                    return
                continue
            last = time.monotonic()
            if msg.error():
                raise TaConsumerError(f"reading {self.topic}: {msg.error()}")
            self.stats.read += 1
            partition, offset = msg.partition() or 0, msg.offset() or 0
            try:
                value = self._decoder.decode(msg.value() or b"", self.topic, partition, offset)
            except SerdeError as exc:
                self.stats.undecodable += 1
                if len(self.stats.errors) < 10:
                    self.stats.errors.append(str(exc))
                log.warning("skipped a record that does not decode: %s", exc)
                continue
            if not self._wanted(value):
                continue
            self.stats.yielded += 1
            yield ConsumedRecord(self.topic, partition, offset, msg.timestamp()[1], value)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TaConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
