"""A TaskManager that survives a JobManager restart under HA, on a real standalone Flink
cluster (`torghut.flink_cluster`) with Flink's ZooKeeper HA against a real ZooKeeper server
on loopback (`torghut.stack.zookeeper`).

The job runs its Python in thread mode: pemja embeds CPython in the TaskManager JVM and, on
Java 17, loads libpython for one user-code classloader per JVM (FLINK-37727). A TaskManager
that gets a new classloader for the job cannot run it (`NoSuchFieldException:
loadedLibraryNames`). The FlinkDeployment's answer is `taskmanager.slot.timeout`: under HA
the job id survives a JobManager restart and a TaskManager that lost its JobManager keeps the
job's slots inactive for that long, and with them the job's classloader, so the new leader
deploys the recovered job into the classloader where pemja is already loaded
(docs/flink-job.md, "TaskManagers after a JobManager restart").

1. The drill: one TaskManager, `taskmanager.slot.timeout` as the FlinkDeployment sets it
   (read from `k8s/base/flink/flinkdeployment.yaml`), trades flowing, checkpoints every
   second; `kill -9` of the JobManager's process group only, a new JobManager with the same
   configuration; the TaskManager JVM is never restarted. It recovers the same job id, runs
   every task of it, no pemja error, checkpoints go on, final bars equal the batch oracle.
2. The control (`-m on_demand`: not part of `make test`, for its time budget): the same
   restart with a 2 s slot timeout, shorter than the JobManager is away: the TaskManager
   frees the slots and releases the job's classloader, and the recovered job cannot start
   its Python there (`loadedLibraryNames`): the setting is what makes the difference.
   `pytest tests/integration/test_flink_jobmanager_ha.py -m on_demand` runs it.

Scaled down for CI: one TaskManager with one slot at parallelism 1 (production runs one slot
per TaskManager too), 4 symbols, 1 s checkpoints, a 15 s ZooKeeper session timeout (Kubernetes HA's
lease duration, which it stands for); the control runs no feed (the error comes at the
operator's `open`, before any record). What the scale does not change: the TaskManager's
side of the restart (its slots, the job's entry and classloader, pemja in its JVM) is per
JVM and per job, whatever the parallelism or the trade rate; one slot per TaskManager is
production's layout.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.flink_drill import (
    Feed,
    assert_final_bars_equal_the_oracle,
    cluster_values,
    completed_id,
    drill_stack,
    restored_then_checkpointed,
)
from torghut.flink_cluster import FlinkCluster, FlinkProcess, ZooKeeperHA, ha_job_id
from torghut.k8s_render import base_resource_docs, find
from torghut.stack.zookeeper import ZooKeeperServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# one per raw partition (murmur2: FCF 0, FCC 1, FCL 2, FCA 3)
SYMBOLS = ["FCA", "FCC", "FCF", "FCL"]
PEMJA_ERROR = "loadedLibraryNames"
# a TaskManager's job table entry (it holds the job's user-code classloader lease) comes and
# goes with these lines (DefaultJobLeaderService, INFO)
ADD_JOB = "Add job"
REMOVE_JOB = "Remove job"
# the control's slot timeout: far shorter than a JobManager restart (ZooKeeper session + JVM)
SHORT_SLOT_TIMEOUT = "2 s"


def deployment_slot_timeout() -> str:
    """`taskmanager.slot.timeout` as the FlinkDeployment sets it."""
    (fd,) = find(base_resource_docs(), "FlinkDeployment", "torghut-ta")
    return str(fd["spec"]["flinkConfiguration"]["taskmanager.slot.timeout"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from drill_stack(tmp_path_factory)


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory):
    # 1 s ticks: sessions of 2-20 s, the HA session of 15 s among them
    with ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), tick_ms=1000) as server:
        yield server


def _ha_cluster(
    run_dir: Path, stack, zookeeper: ZooKeeperServer, unique, name: str, slot_timeout: str
) -> FlinkCluster:
    return FlinkCluster(
        run_dir,
        # a JobManager restart may take longer than the tests' 20 s transaction timeout:
        # 180 s as in the JobManager drill without HA (test_flink_cluster.py)
        cluster_values(stack, unique, name, parallelism=1, transaction_timeout_ms=180_000),
        taskmanagers=1,
        slots=1,
        ha=ZooKeeperHA(zookeeper.connect_string, cluster_id=f"/{unique(name)}"),
        flink_overrides={"taskmanager.slot.timeout": slot_timeout},
    )


def _log(proc: FlinkProcess) -> str:
    return proc.log_file.read_text(errors="replace")


def _kill_jobmanager_keep_taskmanager(cluster: FlinkCluster) -> tuple[int, float]:
    """`kill -9` of the JobManager's process group (the JVM and the job's Python driver),
    then a new JobManager, same configuration, nothing restored by hand (HA recovers). The
    kill's wall-clock ms and monotonic time."""
    old = cluster.jobmanager
    assert old is not None
    kill_ms = time.time_ns() // 1_000_000
    old.kill9()
    t_kill = time.monotonic()
    assert not old.alive()
    cluster.replace_jobmanager(None)
    return kill_ms, t_kill


def _subtasks_by_taskmanager(cluster: FlinkCluster, job: str) -> dict[str, set[str]]:
    """For every vertex of the job: {taskmanager id: the statuses of its subtasks there}."""
    out: dict[str, set[str]] = {}
    for v in cluster.rest(f"/jobs/{job}")["vertices"]:
        for sub in cluster.rest(f"/jobs/{job}/vertices/{v['id']}")["subtasks"]:
            out.setdefault(sub["taskmanager-id"], set()).add(sub["status"])
    return out


def test_a_taskmanager_that_survives_a_jobmanager_kill9_runs_the_recovered_job_in_the_same_jvm(
    stack, zookeeper, unique, tmp_path
):
    t_test = time.monotonic()
    slot_timeout = deployment_slot_timeout()
    cluster = _ha_cluster(tmp_path / "cluster", stack, zookeeper, unique, "jmha", slot_timeout)
    assert cluster.ha is not None
    feed = Feed(stack, SYMBOLS)
    with cluster:
        try:
            cluster.start(timeout_s=180)
            job = cluster.job_id(180)
            # under HA application mode fixes the id from the cluster id: every JobManager
            # of this cluster submits this one
            assert job == ha_job_id(cluster.ha.cluster_id)
            cluster.wait(lambda: cluster.all_tasks_running(job), 180, "all tasks RUNNING")
            cluster.wait(lambda: cluster.latest_completed(job), 60, "a first checkpoint")
            feed.start()
            before = completed_id(cluster, job)
            cluster.wait(lambda: completed_id(cluster, job) >= before + 3, 60, "checkpoints")
            (tm,) = cluster.workers
            tm_pid = tm.pid
            assert _subtasks_by_taskmanager(cluster, job) == {tm.name: {"RUNNING"}}
            print(f"cluster up, job {job} running, trades flowing: {time.monotonic() - t_test:.1f}s")

            last_seen = completed_id(cluster, job)
            kill_ms, t_kill = _kill_jobmanager_keep_taskmanager(cluster)
            got = cluster.wait(
                lambda: restored_then_checkpointed(cluster, job, kill_ms),
                240,
                "the recovered job's first checkpoint after its restore",
                tm,  # fail at once should the TaskManager die
            )
            failover_s = time.monotonic() - t_kill
            restored, completed = got["restored"], got["completed"]

            # the same job, recovered from the HA store (no savepoint given), from a
            # checkpoint no older than the last one seen before the kill
            assert [j["id"] for j in cluster.rest("/jobs")["jobs"]] == [job]
            assert not restored["is_savepoint"] and restored["id"] >= last_seen, restored
            # the same TaskManager JVM runs every task of it
            assert cluster.workers == [tm] and tm.alive() and tm.pid == tm_pid
            assert [t["id"] for t in cluster.rest("/taskmanagers")["taskmanagers"]] == [tm.name]
            cluster.wait(lambda: cluster.all_tasks_running(job), 60, "all tasks RUNNING", tm)
            assert _subtasks_by_taskmanager(cluster, job) == {tm.name: {"RUNNING"}}
            # how: it lost the old leader, kept the job's slots and with them the job's entry
            # (which holds the classloader lease: added once, never removed) and offered them
            # to the new leader; pemja never failed
            log = _log(tm)
            closed = log.index(f"Close JobManager connection for job {job}")
            assert log.rindex(f"Offer reserved slots to the leader of job {job}") > closed
            assert log.count(f"{ADD_JOB} {job} ") == 1
            assert f"{REMOVE_JOB} {job} " not in log
            assert PEMJA_ERROR not in log
            print(
                f"kill -9 JobManager -> restored chk-{restored['id']} "
                f"{(restored['restore_timestamp'] - kill_ms) / 1000:.1f}s after the kill -> "
                f"chk-{completed['id']} completed {failover_s:.1f}s after the kill, "
                f"TaskManager pid {tm_pid} kept (slot timeout {slot_timeout})"
            )

            after = completed["id"]
            cluster.wait(lambda: completed_id(cluster, job) >= after + 3, 60, "more checkpoints")
            n_bars = assert_final_bars_equal_the_oracle(stack, feed)
            assert cluster.job_state(job) == "RUNNING"
            assert PEMJA_ERROR not in _log(tm) and tm.pid == tm_pid and tm.alive()
            print(
                f"{n_bars} final bars equal the oracle ({feed.trades} trades); "
                f"test {time.monotonic() - t_test:.0f}s"
            )
        finally:
            feed.stop.set()


# 56 s (load 3-7) to 145 s (load ~20) with its cluster: make test's budget has no room left
# for it once the drill above is in; run it by name with `-m on_demand`
@pytest.mark.on_demand
def test_with_a_slot_timeout_shorter_than_the_restart_the_surviving_taskmanager_cannot_run_the_job(
    stack, zookeeper, unique, tmp_path
):
    t_test = time.monotonic()
    cluster = _ha_cluster(
        tmp_path / "cluster", stack, zookeeper, unique, "jmha-short", SHORT_SLOT_TIMEOUT
    )
    with cluster:
        cluster.start(timeout_s=180)
        job = cluster.job_id(180)
        cluster.wait(lambda: cluster.all_tasks_running(job), 180, "all tasks RUNNING")
        cluster.wait(lambda: cluster.latest_completed(job), 60, "a first checkpoint")
        (tm,) = cluster.workers
        tm_pid = tm.pid

        kill_ms, t_kill = _kill_jobmanager_keep_taskmanager(cluster)
        cluster.wait(lambda: PEMJA_ERROR in _log(tm), 240, "the pemja error", tm)
        error_s = time.monotonic() - t_kill
        log = _log(tm)
        # the slots timed out and the job's entry (its classloader lease) went with the last
        # one; the new leader's slot request made a new entry, so a new classloader, in which
        # pemja cannot load libpython
        assert "Free slot TaskSlot" in log
        assert f"{REMOVE_JOB} {job} " in log
        assert log.count(f"{ADD_JOB} {job} ") == 2
        assert [j["id"] for j in cluster.rest("/jobs")["jobs"]] == [job]
        assert tm.alive() and tm.pid == tm_pid
        exceptions = cluster.rest(f"/jobs/{job}/exceptions")
        assert PEMJA_ERROR in str(exceptions)
        # and it stays so: no checkpoint completes after the restart
        latest = cluster.checkpoints(job).get("latest") or {}
        done = latest.get("completed")
        assert done is None or done["trigger_timestamp"] < kill_ms, done
        print(
            f"slot timeout {SHORT_SLOT_TIMEOUT}: pemja error {error_s:.1f}s after the kill, "
            f"test {time.monotonic() - t_test:.0f}s"
        )
