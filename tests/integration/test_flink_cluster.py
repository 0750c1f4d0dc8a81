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

import random
import time

import pytest

from tests.support.flink_drill import (
    Feed,
    add_raw_partitions,
    assert_final_bars_equal_the_oracle,
    cluster_values,
    completed_id,
)
from torghut.flink_cluster import FlinkCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# fixed names on a stack of the module's own: murmur2 puts them in both partitions
SYMBOLS = ["FCA", "FCB", "FCC", "FCD", "FCE", "FCF"]


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw log holds only what this drill writes."""
    add_raw_partitions(fresh_stack)
    return fresh_stack


def test_taskmanager_kill9_restores_from_checkpoint_and_final_bars_equal_the_oracle(
    stack, unique, tmp_path
):
    t_test = time.monotonic()
    cluster = FlinkCluster(
        tmp_path / "cluster",
        cluster_values(stack, unique, "cluster"),
        taskmanagers=2,
        slots=1,
    )
    feed = Feed(stack, SYMBOLS)
    with cluster:
        try:
            _drill(cluster, feed, stack, t_test)
        finally:
            feed.stop.set()


def _drill(cluster: FlinkCluster, feed: Feed, stack, t_test: float) -> None:
    cluster.start()
    job = cluster.job_id()
    cluster.wait(lambda: cluster.all_tasks_running(job), 180, "all tasks RUNNING")
    cluster.wait(lambda: cluster.latest_completed(job), 60, "a first checkpoint")
    print(f"cluster up, job running, first checkpoint: {time.monotonic() - t_test:.1f}s")
    feed.start()
    before = completed_id(cluster, job)
    cluster.wait(lambda: completed_id(cluster, job) >= before + 3, 60, "checkpoints with data")
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
    cluster.wait(lambda: completed_id(cluster, job) >= after + 3, 60, "more checkpoints")
    n_bars = assert_final_bars_equal_the_oracle(stack, feed)
    assert cluster.job_state(job) == "RUNNING"
    print(
        f"{n_bars} final bars equal the oracle ({feed.trades} trades); "
        f"failover {failover_s:.1f}s; test {time.monotonic() - t_test:.0f}s"
    )
