"""The TA job's start-up checks against the real broker (`flink_job.kafka_io.check_parallelism`)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient

from shared.topics import QUOTES, TRADES
from tests.conftest import REPO_ROOT
from torghut.stack import apps

pytestmark = pytest.mark.integration


def test_a_parallelism_above_the_raw_partitions_is_refused_at_start_naming_both(
    stack, unique, tmp_path
):
    """Parallelism 2 over 1-partition raw topics: one source subtask would read nothing and
    hold event time back forever (idleness is off), so the job refuses to start and says
    what to change — instead of running without ever closing a bar."""
    meta = AdminClient({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(timeout=30)
    assert {len(meta.topics[t.name].partitions) for t in (TRADES, QUOTES)} == {1}
    env = apps.ta_job_env(
        stack,
        parallelism=2,
        consumer_group=unique("grp-preflight"),
        transactional_id_prefix=unique("tx-preflight"),
    )
    env["FLINK_LOG_DIR"] = str(tmp_path / "flink-logs")
    log = tmp_path / "ta.log"
    t0 = time.monotonic()
    proc = apps.launch(list(apps.TA_JOB), env, log, cwd=REPO_ROOT)
    try:
        code = proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code != 0, text[-2000:]
    assert "PartitionCountError" in text, text[-2000:]
    assert (
        "parallelism 2 is above the partition count of torghut.quotes.v1 (1), "
        "torghut.trades.v1 (1)" in text
    ), text[-2000:]
    assert "TORGHUT_TA_PARALLELISM" in text
    print(f"refused in {time.monotonic() - t0:.1f}s")
