"""``SequenceNumbers``: ``seq`` per (channel, symbol), monotonic within a run and across
restarts, and ``scan_tail`` (``recover_floor``), which reads the tail of the raw topics at
start: the highest seq, and what a restart gap needs (forwarder/gaps.py): the last
market-data ingest time and the symbols of the market data in the tail.

At start the floor is ``max(wall-clock µs, 1 + highest seq in the tail of the raw topics)``.
Within a run each (channel, symbol) counts up by 1 from where it starts, so a restart
shows as one forward jump, never a regression: the run before issued at most one seq
per message, and fewer than a million messages per second per key means its last seq is
below the new wall-clock floor; the tail scan covers a clock that stepped back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from forwarder.exceptions import SequenceRecoveryError
from shared.heartbeat import is_heartbeat
from shared.topics import CHANNEL_TOPICS

log = logging.getLogger("forwarder.sequence")

MAX_KEYS = 100_000
#: channels whose envelopes are keyed by symbol (the symbols a restart gap marks)
SYMBOL_CHANNELS = frozenset(c for c, t in CHANNEL_TOPICS.items() if t.key == "symbol")
#: the forwarder's own envelopes: not market data (status events, gap markers)
OWN_CHANNELS = frozenset(("status", "gap"))
#: channels the forwarder's event-time clock observes (forwarder/heartbeat.py)
CLOCK_CHANNELS = frozenset(("trades", "quotes"))


def seq_floor(now_us: int, highest_seen: int | None) -> int:
    """The first seq of this run: wall-clock µs, or above whatever Kafka already holds."""
    if highest_seen is None:
        return now_us
    return max(now_us, highest_seen + 1)


class SequenceNumbers:
    """Issues seq per (channel, symbol).

    A key seen for the first time starts at ``floor + issued`` (messages issued so far in
    this run), which is above every seq issued before for any key. That keeps memory
    bounded: when more than ``max_keys`` keys exist the table is dropped and keys restart
    higher, still monotonic.
    """

    __slots__ = ("_next", "floor", "issued", "max_keys")

    def __init__(self, floor: int, max_keys: int = MAX_KEYS) -> None:
        self.floor = floor
        self.issued = 0
        self.max_keys = max_keys
        self._next: dict[Any, int] = {}

    def next(self, key: Any) -> int:
        seq = self._next.get(key)
        if seq is None:
            if len(self._next) >= self.max_keys:
                self._next.clear()
            seq = self.floor + self.issued
        self._next[key] = seq + 1
        self.issued += 1
        return seq

    def __len__(self) -> int:
        return len(self._next)


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """Watermarks, retried while a partition has no leader yet (new topic, broker restart)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=2.0)
            return int(low), int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class TailScan:
    """What the tail of the raw topics holds (``scan_tail``)."""

    #: highest ``seq`` of any envelope; None when the tails held none
    highest_seq: int | None = None
    #: highest ``ingest_ts`` (ns) of a market-data envelope (not a status event, gap marker
    #: or heartbeat): when an earlier process last read data; None when there was none
    last_ingest_ns: int | None = None
    #: highest ``event_ts`` (ns) of a trade or quote (what that process's event-time clock
    #: had reached); 0 when there was none
    last_event_ns: int = 0
    #: symbols of the symbol-keyed market-data envelopes (trades, quotes, bars, ...), each
    #: with the highest ``event_ts`` (ns) of its trades (0 when none): a restart gap marker
    #: of the symbol is stamped no later, so it never moves its partition's event time
    symbols: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    undecodable: int = 0

    def add(self, env: dict[str, Any]) -> None:
        """One decoded envelope (the forwarder's own count for the seq only)."""
        seq = env["seq"]
        if self.highest_seq is None or seq > self.highest_seq:
            self.highest_seq = seq
        channel = env.get("channel")
        if channel in OWN_CHANNELS:
            return
        ingest = env["ingest_ts"]
        if self.last_ingest_ns is None or ingest > self.last_ingest_ns:
            self.last_ingest_ns = ingest
        if channel in CLOCK_CHANNELS and env["event_ts"] > self.last_event_ns:
            self.last_event_ns = env["event_ts"]
        symbol = env.get("symbol")
        if channel in SYMBOL_CHANNELS and symbol:
            top = self.symbols.get(symbol, 0)
            if channel == "trades" and env["event_ts"] > top:
                top = env["event_ts"]
            self.symbols[symbol] = top


def recover_floor(
    kafka_config: dict[str, Any],
    topics: Iterable[str],
    decode: Any,
    max_records_per_partition: int,
    timeout_s: float = 30.0,
) -> int | None:
    """Highest ``seq`` in the last ``max_records_per_partition`` records of each partition
    of ``topics`` (read_committed), or None when the topics are empty (``scan_tail``)."""
    return scan_tail(kafka_config, topics, decode, max_records_per_partition, timeout_s).highest_seq


def scan_tail(
    kafka_config: dict[str, Any],
    topics: Iterable[str],
    decode: Any,
    max_records_per_partition: int,
    timeout_s: float = 30.0,
) -> TailScan:
    """The last ``max_records_per_partition`` records of each partition of ``topics``
    (read_committed) as a ``TailScan``: highest seq, last market-data ingest and event
    time, the symbols of the market data (all empty when the topics are).

    ``decode(bytes, topic, partition, offset) -> dict`` decodes one envelope; records that
    fail to decode are skipped (counted in the log line).
    """
    result = TailScan()
    if max_records_per_partition <= 0:
        return result
    consumer = Consumer(
        {
            **kafka_config,
            "group.id": f"torghut-forwarder-seq-scan-{time.time_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 16 << 20,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        assignment: list[TopicPartition] = []
        for name in topics:
            md = consumer.list_topics(name, timeout=max(1.0, deadline - time.monotonic()))
            meta = md.topics.get(name)
            if meta is None or meta.error is not None:
                raise SequenceRecoveryError(
                    f"topic {name} is not readable ({meta.error if meta else 'missing'}); "
                    "create the catalog topics (torghut stack up / KafkaTopic CRs)"
                )
            for p in meta.partitions:
                low, high = _watermarks(consumer, TopicPartition(name, p), deadline)
                if high > low:
                    assignment.append(
                        TopicPartition(name, p, max(low, high - max_records_per_partition))
                    )
        if not assignment:
            return result
        consumer.assign(assignment)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        while pending:
            if time.monotonic() > deadline:
                raise SequenceRecoveryError(
                    f"reading the tail of {sorted(pending)} took over {timeout_s:.0f}s; "
                    "is the broker reachable? (TORGHUT_FWD_SEQ_SCAN_RECORDS=0 skips the scan)"
                )
            for msg in consumer.consume(1000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                        continue
                    raise SequenceRecoveryError(f"reading {msg.topic()}: {err}")
                # event-time heartbeats carry no seq (consumed headers are a list of pairs)
                if is_heartbeat(msg.value(), msg.headers()):  # type: ignore[arg-type]
                    continue
                result.scanned += 1
                try:
                    env = decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
                    result.add(env)
                except Exception:
                    result.undecodable += 1
                    continue
    except SequenceRecoveryError:
        raise
    except Exception as exc:
        raise SequenceRecoveryError(f"seq recovery from Kafka failed: {exc}") from exc
    finally:
        consumer.close()
    log.info(
        "seq recovery: scanned %d records (%d undecodable), highest seq %s, last market-data "
        "ingest %s ns, %d symbols",
        result.scanned,
        result.undecodable,
        result.highest_seq,
        result.last_ingest_ns,
        len(result.symbols),
    )
    return result
