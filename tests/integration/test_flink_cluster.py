"""The TA job on a real standalone Flink cluster (`torghut.flink_cluster`): a TaskManager
`kill -9`-ed while trades flow, a replacement started, the JobManager restores the job from
its last checkpoint, and the `read_committed` final bars equal the batch oracle of the raw
log read back — none missing, none duplicated.

Two TaskManager JVMs with one slot each, the job at parallelism 2, the raw topics at two
partitions each (so both source subtasks read records), checkpoints every second to MinIO
through the S3 filesystem plugin. This is docs/deploy.md's "Local standalone cluster"
drill; the kill-to-checkpoint time it prints is the failover time quoted there.
"""

from __future__ import annotations

import datetime
import random
import threading
import time
from collections import Counter

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer
from shared.topics import QUOTES, TRADES
from tests.support.kafka import consume
from tests.support.oracle import LogRecord, expected_output
from tests.support.ta_job import EnvelopeProducer, read_topic
from torghut.flink_cluster import FlinkCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000
PARTITIONS = 2
# fixed names on a stack of the module's own: murmur2 puts them in both partitions
SYMBOLS = ["FCA", "FCB", "FCC", "FCD", "FCE", "FCF"]
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw log holds only what this drill writes."""
    admin = AdminClient({"bootstrap.servers": fresh_stack.kafka_bootstrap})
    futures = admin.create_partitions(
        [NewPartitions(TRADES.name, PARTITIONS), NewPartitions(QUOTES.name, PARTITIONS)]
    )
    for f in futures.values():
        f.result(30)
    return fresh_stack


def _start_us(r: dict) -> int:
    return (r["window"]["start"] - EPOCH) // datetime.timedelta(microseconds=1)


class Feed(threading.Thread):
    """Trades of every symbol every ~10 ms at wall-clock event time, a quote per symbol
    every ~0.5 s and event-time heartbeats (now - 1 s) into every raw partition, as the
    forwarder writes them."""

    def __init__(self, stack) -> None:
        super().__init__(daemon=True)
        self.prod = EnvelopeProducer(stack)
        self.stop = threading.Event()
        self.trades = self.quotes = self.heartbeats = 0
        self.last_ns = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            rng = random.Random(14)
            tid, next_slow = 0, 0.0
            while not self.stop.is_set():
                now = time.time_ns()
                for s in SYMBOLS:
                    tid += 1
                    self.prod.trade(s, now, round(100 + rng.random(), 4), rng.randint(1, 9), tid)
                    self.trades += 1
                if time.monotonic() >= next_slow:
                    for s in SYMBOLS:
                        self.prod.quote(s, now, 99.9, 100.1, 300.0, 100.0)
                        self.quotes += 1
                    self.prod.heartbeat(now - S)
                    self.heartbeats += 1
                    next_slow = time.monotonic() + 0.5
                self.last_ns = now
                time.sleep(0.01)
            # close every traded second: after 3 quiet seconds a trade per symbol and a
            # heartbeat at that time (stamped 3 s ahead instead, they would be refused)
            while (end := time.time_ns()) < self.last_ns + 3 * S:
                time.sleep(0.05)
            for s in SYMBOLS:
                tid += 1
                self.prod.trade(s, end, 1.0, 1.0, tid)
                self.trades += 1
            self.prod.heartbeat(end)
            self.heartbeats += 1
            self.prod.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _read_log(stack, feed: Feed) -> list[LogRecord]:
    """Every record of the raw topics (heartbeats too), with its partition and offset."""
    deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
    out = []
    hb = feed.heartbeats * PARTITIONS
    for topic, n in ((TRADES.name, feed.trades + hb), (QUOTES.name, feed.quotes + hb)):
        msgs = consume(stack, topic, expected=n, timeout_s=60, settle_s=1.0)
        assert len(msgs) == n, f"{topic}: read back {len(msgs)} of {n}"
        for m in msgs:
            env = None if m.value() is None else deser.decode(m.value())
            out.append(LogRecord(f"{m.topic()}-{m.partition()}", m.offset(), m.timestamp()[1], env))
    return out


def test_taskmanager_kill9_restores_from_checkpoint_and_final_bars_equal_the_oracle(
    stack, unique, tmp_path
):
    t_test = time.monotonic()
    cp_prefix = unique("cp-cluster")
    cluster = FlinkCluster(
        tmp_path / "cluster",
        {
            "kafka_bootstrap": stack.kafka_bootstrap,
            "registry_url": stack.registry_url,
            "s3_endpoint": stack.s3_endpoint,
            "s3_access_key": stack.s3_access_key,
            "s3_secret_key": stack.s3_secret_key,
            "checkpoint_dir": f"s3a://{stack.s3_bucket}/{cp_prefix}",
            "checkpoint_interval_ms": 1000,
            "parallelism": 2,
            "starting_offsets": "committed-earliest",
            "consumer_group": unique("grp-cluster"),
            "transactional_id_prefix": unique("tx-cluster"),
            # a killed TaskManager's open transaction is aborted at restore (same prefix);
            # short anyway, as in the other kill -9 tests
            "transaction_timeout_ms": 20_000,
            "job_name": "ta-cluster",
        },
        taskmanagers=2,
        slots=1,
    )
    feed = Feed(stack)
    with cluster:
        try:
            _drill(cluster, feed, stack, t_test)
        finally:
            feed.stop.set()


def _completed_id(cluster: FlinkCluster, job: str) -> int:
    done = cluster.latest_completed(job)
    return -1 if done is None else int(done["id"])


def _drill(cluster: FlinkCluster, feed: Feed, stack, t_test: float) -> None:
    cluster.start()
    job = cluster.job_id()
    cluster.wait(lambda: cluster.all_tasks_running(job), 180, "all tasks RUNNING")
    cluster.wait(lambda: cluster.latest_completed(job), 60, "a first checkpoint")
    print(f"cluster up, job running, first checkpoint: {time.monotonic() - t_test:.1f}s")
    feed.start()
    before = _completed_id(cluster, job)
    cluster.wait(lambda: _completed_id(cluster, job) >= before + 3, 60, "checkpoints with data")
    time.sleep(random.Random(before).uniform(0.1, 0.9))  # an arbitrary moment

    victim = cluster.workers[0]
    kill_ms = time.time_ns() // 1_000_000
    victim.kill9()
    t_kill = time.monotonic()
    cluster.start_taskmanager()

    def restored_and_checkpointed() -> dict | None:
        cps = cluster.checkpoints(job)
        restored = (cps.get("latest") or {}).get("restored")
        done = (cps.get("latest") or {}).get("completed")
        if (
            restored
            and restored["restore_timestamp"] >= kill_ms
            and done
            and done["id"] > restored["id"]
            and done["trigger_timestamp"] >= restored["restore_timestamp"]
        ):
            return {"restored": restored, "completed": done}
        return None

    got = cluster.wait(restored_and_checkpointed, 150, "a checkpoint after the restore")
    failover_s = time.monotonic() - t_kill
    restored, completed = got["restored"], got["completed"]
    print(
        f"kill -9 TaskManager -> restored from chk-{restored['id']} "
        f"({(restored['restore_timestamp'] - kill_ms) / 1000:.1f}s after the kill) -> "
        f"chk-{completed['id']} completed: {failover_s:.1f}s after the kill "
        f"(ack {(completed['latest_ack_timestamp'] - kill_ms) / 1000:.1f}s)"
    )
    assert not victim.alive()
    assert cluster.taskmanager_count() >= 2

    # data keeps flowing through the restored job for a few more checkpoints
    after = completed["id"]
    cluster.wait(lambda: _completed_id(cluster, job) >= after + 3, 60, "more checkpoints")
    feed.stop.set()
    feed.join(60)
    assert feed.error is None, feed.error

    log = _read_log(stack, feed)
    splits = {r.split for r in log if r.envelope is not None}
    assert {f"{TRADES.name}-{p}" for p in range(PARTITIONS)} <= splits, splits
    oracle = expected_output(log)
    assert oracle.rejected == oracle.duplicates == 0
    expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items()}
    assert len(expected) >= 10 * len(SYMBOLS)

    records = read_topic(
        stack,
        "ta.bars.1s.v1",
        set(SYMBOLS),
        lambda recs: (
            len({(r["symbol"], _start_us(r)) for r in recs if r["is_final"]}) >= len(expected)
        ),
        timeout_s=120,
    )
    counts = Counter((r["symbol"], _start_us(r)) for r in records if r["is_final"])
    missing = set(expected) - set(counts)
    extra = set(counts) - set(expected)
    dupes = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} final bars missing: {sorted(missing)[:5]}"
    assert not extra, f"final bars the oracle does not have: {sorted(extra)[:5]}"
    assert not dupes, f"duplicated final bars: {list(dupes.items())[:5]}"
    finals = {(r["symbol"], _start_us(r)): r for r in records if r["is_final"]}
    for key, b in expected.items():
        r = finals[key]
        assert (r["open"], r["high"], r["low"], r["close"], r["trade_count"]) == (
            b.open,
            b.high,
            b.low,
            b.close,
            b.trade_count,
        ), key
        assert (r["volume"], r["vwap"]) == (b.volume, b.vwap), key
    assert cluster.job_state(job) == "RUNNING"
    print(
        f"{len(expected)} final bars equal the oracle ({feed.trades} trades); "
        f"failover {failover_s:.1f}s; test {time.monotonic() - t_test:.0f}s"
    )
