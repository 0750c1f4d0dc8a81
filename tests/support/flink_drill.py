"""What the standalone-cluster drills share (`tests/integration/test_flink_cluster.py`,
`test_flink_rescale.py`): raw topics at two partitions, a feeder thread writing trades,
quotes and heartbeats at wall-clock event time, the cluster's job settings, and the check
that the `read_committed` final bars equal the batch oracle of the raw log read back."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from shared.topics import QUOTES, TRADES
from tests.conftest import module_stack
from tests.support.oracle import (
    LogRecord,
    assert_final_bars_equal,
    expected_output,
)
from tests.support.ta_job import EnvelopeProducer, read_finals, read_raw_log
from torghut.flink_cluster import FlinkCluster
from torghut.stack.state import StackState

S = 1_000_000_000
PARTITIONS = 4  # the drills run 4-partition raw topics at parallelism 2


def assert_raw_partitions(stack, partitions: int = PARTITIONS) -> None:
    """The stack honoured `torghut stack up --partitions`: the raw topics have `partitions`
    partitions, so every source subtask reads records."""
    meta = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=30)
    for name in (TRADES.name, QUOTES.name):
        assert len(meta.topics[name].partitions) == partitions, name


def drill_stack(tmp_path_factory) -> Iterator[StackState]:
    """A cluster drill module's own stack (`yield from` it in its `stack` fixture), the raw
    topics at `PARTITIONS` partitions (`torghut stack up --partitions`), checked: its raw log
    holds only what the drill writes."""
    stacks = module_stack(tmp_path_factory, partitions=PARTITIONS)
    state = next(stacks)
    try:
        assert_raw_partitions(state)
        yield state
    finally:
        stacks.close()  # stops the stack (module_stack's finally)


def cluster_values(stack, unique: Callable[[str], str], name: str, **more: Any) -> dict:
    """`TaSettings` fields for a drill's cluster: 1 s checkpoints under a prefix of its
    own, committed-earliest offsets, its own group and transactional-id prefix."""
    return {
        "kafka_bootstrap": stack.kafka_bootstrap,
        "registry_url": stack.registry_url,
        "s3_endpoint": stack.s3_endpoint,
        "s3_access_key": stack.s3_access_key,
        "s3_secret_key": stack.s3_secret_key,
        "checkpoint_dir": f"s3a://{stack.s3_bucket}/{unique(f'cp-{name}')}",
        "checkpoint_interval_ms": 1000,
        "parallelism": 2,
        "starting_offsets": "committed-earliest",
        "consumer_group": unique(f"grp-{name}"),
        "transactional_id_prefix": unique(f"tx-{name}"),
        # a killed TaskManager's open transaction is aborted at restore (same prefix);
        # short anyway, as in the other kill -9 tests
        "transaction_timeout_ms": 20_000,
        "job_name": f"ta-{name}",
        **more,
    }


class Feed(threading.Thread):
    """Trades of every symbol every ~10 ms at wall-clock event time, a quote per symbol
    every ~0.5 s and event-time heartbeats (now - 1 s) into every raw partition, as the
    forwarder writes them. `stop` set: after 3 quiet seconds, a last trade per symbol and a
    heartbeat close every traded second."""

    def __init__(self, stack, symbols: Sequence[str]) -> None:
        super().__init__(daemon=True)
        self.symbols = list(symbols)
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
                for s in self.symbols:
                    tid += 1
                    self.prod.trade(s, now, round(100 + rng.random(), 4), rng.randint(1, 9), tid)
                    self.trades += 1
                if time.monotonic() >= next_slow:
                    for s in self.symbols:
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
            for s in self.symbols:
                tid += 1
                self.prod.trade(s, end, 1.0, 1.0, tid)
                self.trades += 1
            self.prod.heartbeat(end)
            self.heartbeats += 1
            self.prod.flush()
        except BaseException as exc:  # reported by the test
            self.error = exc


def read_log(stack, feed: Feed) -> list[LogRecord]:
    """Every record of the raw topics (heartbeats too), with its partition and offset."""
    hb = feed.heartbeats * PARTITIONS
    counts = {TRADES.name: feed.trades + hb, QUOTES.name: feed.quotes + hb}
    log = read_raw_log(stack, counts)
    assert len(log) == sum(counts.values()), f"read back {len(log)} of {counts}"
    return log


def completed_id(cluster: FlinkCluster, job: str) -> int:
    done = cluster.latest_completed(job)
    return -1 if done is None else int(done["id"])


def assert_final_bars_equal_the_oracle(stack, feed: Feed, min_seconds: int = 10) -> int:
    """Stop the feeder, read the raw log back, and check the `read_committed` final bars of
    ta.bars.1s.v1 against its oracle: none missing, none extra, none duplicated,
    OHLC/count/volume/VWAP equal. The number of final bars."""
    feed.stop.set()
    feed.join(60)
    assert feed.error is None, feed.error
    symbols = set(feed.symbols)

    log = read_log(stack, feed)
    splits = {r.split for r in log if r.envelope is not None}
    assert {f"{TRADES.name}-{p}" for p in range(PARTITIONS)} <= splits, splits
    oracle = expected_output(log)
    assert oracle.rejected == oracle.duplicates == 0
    expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items()}
    assert len(expected) >= min_seconds * len(symbols)

    records = read_finals(stack, "ta.bars.1s.v1", symbols, len(expected))
    assert_final_bars_equal(records, expected)
    return len(expected)


def restored_then_checkpointed(cluster: FlinkCluster, job: str, kill_ms: int) -> dict | None:
    """The job restored after `kill_ms` and completed a checkpoint after that restore."""
    latest = cluster.checkpoints(job).get("latest") or {}
    restored, done = latest.get("restored"), latest.get("completed")
    if (
        restored
        and restored["restore_timestamp"] >= kill_ms
        and done
        and done["id"] > restored["id"]
        and done["trigger_timestamp"] >= restored["restore_timestamp"]
    ):
        return {"restored": restored, "completed": done}
    return None


def vertices(cluster: FlinkCluster, job: str) -> dict[str, dict]:
    return {v["name"]: v for v in cluster.rest(f"/jobs/{job}")["vertices"]}


class Run:
    """One cluster lifetime: `parallelism` TaskManagers x 1 slot, the job at `parallelism`,
    started from `savepoint` (or from the committed offsets, nothing restored)."""

    def __init__(self, run_dir: Path, values: dict, parallelism: int) -> None:
        self.parallelism = parallelism
        self.cluster = FlinkCluster(
            run_dir, {**values, "parallelism": parallelism}, taskmanagers=parallelism, slots=1
        )
        self.job = ""

    def start(self, savepoint: str | None) -> str:
        """Start and wait for all tasks RUNNING and a completed checkpoint (after the
        restore from `savepoint`); the seconds from the start to each, as text."""
        c = self.cluster
        t0 = time.monotonic()
        c.start(restore_from=savepoint, timeout_s=180)
        self.job = c.job_id(180)
        c.wait(lambda: c.all_tasks_running(self.job), 180, "all tasks RUNNING")
        running_s = time.monotonic() - t0

        def checkpointed() -> dict | None:
            latest = c.checkpoints(self.job).get("latest") or {}
            done, restored = latest.get("completed"), latest.get("restored")
            if done is None or (savepoint and (restored is None or done["id"] <= restored["id"])):
                return None
            return latest

        latest = c.wait(checkpointed, 120, "a completed checkpoint")
        if savepoint:
            restored = latest["restored"]
            assert restored["is_savepoint"], restored
            assert restored["external_path"].rstrip("/") == savepoint.rstrip("/"), restored
        verts = vertices(c, self.job)
        assert {v["parallelism"] for v in verts.values()} == {self.parallelism}, {
            n: v["parallelism"] for n, v in verts.items()
        }
        return f"tasks RUNNING {running_s:.1f}s, checkpoint {time.monotonic() - t0:.1f}s"

    def wait_checkpoints(self, n: int) -> None:
        c, job = self.cluster, self.job
        before = completed_id(c, job)
        c.wait(lambda: completed_id(c, job) >= before + n, 60, f"{n} more checkpoints")

    def stop_with_savepoint(self, target_dir: str) -> tuple[str, float]:
        """Stop-with-savepoint through REST (no drain); the savepoint's path and the seconds
        from the request to COMPLETED. The job ends FINISHED; the cluster is then stopped."""
        c = self.cluster
        t0 = time.monotonic()
        location = c.stop_with_savepoint(self.job, target_dir, timeout_s=120)
        took = time.monotonic() - t0
        assert location.startswith(target_dir.rstrip("/") + "/savepoint-"), location
        c.wait(lambda: c.job_state(self.job) == "FINISHED", 60, "the job to finish")
        c.stop()
        return location, took
