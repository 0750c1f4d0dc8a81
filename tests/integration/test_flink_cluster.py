"""The TA job on a real standalone Flink cluster (`torghut.flink_cluster`), two kill -9
drills on one cluster and one stream of trades:

1. a TaskManager `kill -9`-ed while trades flow, a replacement started: the JobManager
   restores the job from its last checkpoint;
2. then the JobManager `kill -9`-ed (its process group: the JVM and the job's Python
   driver), and what Kubernetes HA does with a new JobManager pod done by hand: a new
   JobManager in application mode for the same job, restoring from the newest completed
   (retained) checkpoint on MinIO, on the same ports. The TaskManagers are restarted with
   it: surviving ones re-register with the new JobManager but cannot start the thread-mode
   Python of the restored job (pemja on Java 17 loads libpython for one classloader per JVM:
   `FlinkCluster.replace_jobmanager`).

After both, the `read_committed` final bars equal the batch oracle of the raw log read back
— none missing, none duplicated.

Two TaskManager JVMs with one slot each, the job at parallelism 2, the raw topics at two
partitions each (so both source subtasks read records), checkpoints every second to MinIO
through the S3 filesystem plugin. This is docs/deploy.md's "Local standalone cluster"
drill; the kill-to-checkpoint times it prints are the failover times quoted there.
"""

from __future__ import annotations

import random
import time

import pytest

from flink_job.restore import latest_checkpoint
from tests.support.flink_drill import (
    Feed,
    assert_final_bars_equal_the_oracle,
    cluster_values,
    completed_id,
    drill_stack,
    restored_then_checkpointed,
)
from torghut.flink_cluster import FlinkCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# fixed names on a stack of the module's own: murmur2 spreads them over all 4 raw partitions
# (FCF: 0, FCC/FCD/FCE: 1, FCL/FCX: 2, FCA/FCB: 3)
SYMBOLS = ["FCA", "FCB", "FCC", "FCD", "FCE", "FCF", "FCL", "FCX"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from drill_stack(tmp_path_factory)


def test_taskmanager_then_jobmanager_kill9_restore_from_checkpoint_final_bars_equal_the_oracle(
    stack, unique, tmp_path
):
    t_test = time.monotonic()
    cluster = FlinkCluster(
        tmp_path / "cluster",
        # the JobManager's restart (a JVM start, the job's submission, the restore) may take
        # longer than the tests' 20 s transaction timeout: the broker would abort the last
        # pre-kill checkpoint's transactions before the restored sink re-commits them
        # (docs/reliability.md); 180 s as in the registry restore drill
        cluster_values(stack, unique, "cluster", transaction_timeout_ms=180_000),
        taskmanagers=2,
        slots=1,
    )
    feed = Feed(stack, SYMBOLS)
    with cluster:  # stops every TaskManager and JobManager, the replaced one too
        try:
            _drill(cluster, feed, stack, t_test)
        finally:
            feed.stop.set()


def _report(what: str, got: dict, kill_ms: int, failover_s: float) -> None:
    restored, completed = got["restored"], got["completed"]
    print(
        f"kill -9 {what} -> restored from chk-{restored['id']} "
        f"({(restored['restore_timestamp'] - kill_ms) / 1000:.1f}s after the kill) -> "
        f"chk-{completed['id']} completed: {failover_s:.1f}s after the kill "
        f"(ack {(completed['latest_ack_timestamp'] - kill_ms) / 1000:.1f}s)"
    )


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

    # --- 1. a TaskManager -------------------------------------------------------------
    victim = cluster.workers[0]
    kill_ms = time.time_ns() // 1_000_000
    victim.kill9()
    t_kill = time.monotonic()
    cluster.start_taskmanager()
    got = cluster.wait(
        lambda: restored_then_checkpointed(cluster, job, kill_ms),
        150,
        "a checkpoint after the restore",
    )
    tm_failover_s = time.monotonic() - t_kill
    _report("TaskManager", got, kill_ms, tm_failover_s)
    assert not victim.alive()
    assert cluster.taskmanager_count() >= 2

    # data keeps flowing through the restored job for a few more checkpoints
    after = got["completed"]["id"]
    cluster.wait(lambda: completed_id(cluster, job) >= after + 3, 60, "more checkpoints")

    # --- 2. the JobManager --------------------------------------------------------------
    time.sleep(random.Random(after).uniform(0.1, 0.9))
    last_seen = completed_id(cluster, job)
    old_jm, old_tms = cluster.jobmanager, [w for w in cluster.workers if w.alive()]
    assert old_jm is not None and len(old_tms) == 2
    kill_ms = time.time_ns() // 1_000_000
    old_jm.kill9()
    t_kill = time.monotonic()
    cluster.restart_taskmanagers()
    # what the HA ConfigMap's checkpoint pointer would say: the newest retained checkpoint
    restore = latest_checkpoint(cluster.settings)
    assert restore is not None and restore.split("/chk-")[0].endswith(job), restore
    assert int(restore.rsplit("chk-", 1)[1]) >= last_seen, (restore, last_seen)
    cluster.replace_jobmanager(restore)
    job2 = cluster.job_id(180)
    got = cluster.wait(
        lambda: restored_then_checkpointed(cluster, job2, kill_ms),
        240,
        "a checkpoint after the new JobManager's restore",
    )
    jm_failover_s = time.monotonic() - t_kill
    _report("JobManager", got, kill_ms, jm_failover_s)
    assert got["restored"]["external_path"].rstrip("/") == restore.rstrip("/"), got
    assert not old_jm.alive() and not any(w.alive() for w in old_tms)
    assert cluster.taskmanager_count() == 2
    print(f"new JobManager: job {job2} (was {job}) restored from {restore}")

    after = got["completed"]["id"]
    cluster.wait(lambda: completed_id(cluster, job2) >= after + 3, 60, "more checkpoints")
    n_bars = assert_final_bars_equal_the_oracle(stack, feed)
    assert cluster.job_state(job2) == "RUNNING"
    print(
        f"{n_bars} final bars equal the oracle ({feed.trades} trades); failover "
        f"TaskManager {tm_failover_s:.1f}s, JobManager {jm_failover_s:.1f}s; "
        f"test {time.monotonic() - t_test:.0f}s"
    )
