"""Rescale through savepoints on the standalone Flink cluster (`torghut.flink_cluster`):
the job at parallelism 1 is stopped with a savepoint through the REST API
(`POST /jobs/<id>/stop`), started at parallelism 2 from it (its keyed state — one
`SymbolState` per symbol — redistributed over two keyed subtasks by key group, the union
partition marks given to both source subtasks), stopped with a savepoint again and started
at parallelism 1 from that one, while trades and heartbeats keep flowing. The
`read_committed` final bars equal the batch oracle of the raw log read back — the output of
an uninterrupted run, since the output is a function of the log: none missing, none
duplicated, OHLC/volume/VWAP equal.

As the operator would run it: one TaskManager (1 slot) per unit of parallelism, a fresh
cluster (JobManager in application mode + TaskManagers) per run, the same checkpoint dir,
consumer group and transactional-id prefix throughout. This is docs/deploy.md's "Local
standalone cluster" rescale drill; the times it prints are the ones quoted there.
"""

from __future__ import annotations

import time

import pytest

from tests.support.flink_drill import (
    Feed,
    Run,
    assert_final_bars_equal_the_oracle,
    cluster_values,
    drill_stack,
    vertices,
)
from torghut.flink_cluster import FlinkCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# fixed names on a stack of the module's own: murmur2 puts them in all 4 raw partitions,
# Flink's key groups in both keyed subtasks at parallelism 2 (checked below)
SYMBOLS = ["FCA", "FCB", "FCC", "FCD", "FCE", "FCF", "FCL", "FCX"]
KEYED = "bars-signals"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from drill_stack(tmp_path_factory)


def _keyed_vertex(cluster: FlinkCluster, job: str) -> dict:
    return next(v for name, v in vertices(cluster, job).items() if KEYED in name)


def _records_in_per_subtask(cluster: FlinkCluster, job: str) -> list[int]:
    """Records each subtask of the keyed vertex has read (`/jobs/<id>/vertices/<vid>`)."""
    vid = _keyed_vertex(cluster, job)["id"]
    subtasks = cluster.rest(f"/jobs/{job}/vertices/{vid}")["subtasks"]
    return [int(s["metrics"]["read-records"]) for s in subtasks]


def _both_keyed_subtasks_read(run: Run) -> list[int] | None:
    counts = _records_in_per_subtask(run.cluster, run.job)
    return counts if len(counts) == 2 and min(counts) > 0 else None


def test_stop_with_savepoint_rescale_1_2_1_equals_the_oracle(stack, unique, tmp_path):
    t_test = time.monotonic()
    values = cluster_values(stack, unique, "rescale", parallelism=1)
    savepoints = values["checkpoint_dir"] + "/savepoints"
    feed = Feed(stack, SYMBOLS)
    runs = [Run(tmp_path / f"run-{i}", values, p) for i, p in enumerate((1, 2, 1))]
    timings: list[str] = []
    try:
        # parallelism 1: up, then data, then >= 2 checkpoints with data
        timings.append(f"p1 start: {runs[0].start(None)}")
        feed.start()
        runs[0].wait_checkpoints(2)
        sp1, stop1_s = runs[0].stop_with_savepoint(savepoints)
        timings.append(f"stop-with-savepoint p1 -> COMPLETED {stop1_s:.1f}s")

        # parallelism 2 from the first savepoint: both keyed subtasks get symbols
        timings.append(f"p2 start from savepoint 1: {runs[1].start(sp1)}")
        runs[1].wait_checkpoints(2)
        per_subtask = runs[1].cluster.wait(
            lambda: _both_keyed_subtasks_read(runs[1]),
            90,
            "records in both keyed subtasks (REST metrics, refreshed every 10 s)",
        )
        sp2, stop2_s = runs[1].stop_with_savepoint(savepoints)
        timings.append(f"stop-with-savepoint p2 -> COMPLETED {stop2_s:.1f}s")
        assert sp2 != sp1

        # back to parallelism 1 from the second savepoint; data keeps flowing, then the
        # feeder stops and closes the last seconds with a heartbeat
        timings.append(f"p1 start from savepoint 2: {runs[2].start(sp2)}")
        runs[2].wait_checkpoints(2)
        n_bars = assert_final_bars_equal_the_oracle(stack, feed)
        assert runs[2].cluster.job_state(runs[2].job) == "RUNNING"
    finally:
        feed.stop.set()
        for run in runs:
            run.cluster.stop()
        print("; ".join(timings))
    print(
        f"rescale 1 -> 2 -> 1: {n_bars} final bars equal the oracle ({feed.trades} trades), "
        f"keyed records per subtask at p2 {per_subtask}; test {time.monotonic() - t_test:.0f}s"
    )
