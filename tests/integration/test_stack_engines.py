"""Foundation: the real engines started by the stack behave as the pipeline relies on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, wait_for
from tests.support.kafka import QUIET, consume, create_topic
from torghut.stack import apps, minio
from torghut.stack.state import StackState

pytestmark = pytest.mark.integration


def test_read_committed_consumer_sees_committed_records_and_never_aborted_ones(stack, unique):
    from confluent_kafka import Producer

    topic = create_topic(stack, unique("txn"))
    p = Producer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "transactional.id": unique("tx"),
            "logger": QUIET,
        }
    )
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(5):
        p.produce(topic, f"aborted-{i}".encode())
    assert p.flush(30) == 0  # on the broker, inside the open transaction
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(7):
        p.produce(topic, f"committed-{i}".encode())
    p.commit_transaction(30)

    committed = consume(stack, topic, expected=7, settle_s=1.0)
    assert [m.value().decode() for m in committed] == [f"committed-{i}" for i in range(7)]
    # the aborted records were really written: they and both transaction markers hold offsets
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {"bootstrap.servers": stack.kafka_bootstrap, "group.id": unique("wm"), "logger": QUIET}
    )
    _low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert high == 5 + 7 + 2


def test_scram_sha512_listener_accepts_the_stack_user_and_rejects_a_wrong_password(stack, unique):
    if os.environ.get("TORGHUT_TESTCONTAINERS") == "1":  # the only stack without the listener
        pytest.skip("the testcontainers stack has no SASL_SSL listener")
    assert stack.kafka_sasl_ssl_bootstrap, "`torghut stack up` must serve SASL_SSL"
    from confluent_kafka import KafkaError, Producer
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**stack.kafka_scram_config(), "logger": QUIET})
    assert len(admin.list_topics(timeout=20).brokers) == 1
    topic = create_topic(stack, unique("scram"))
    p = Producer({**stack.kafka_scram_config(), "logger": QUIET})
    p.produce(topic, b"over-tls")
    assert p.flush(20) == 0
    assert [m.value() for m in consume(stack, topic, expected=1)] == [b"over-tls"]

    errors = []
    bad = AdminClient(
        {
            **stack.kafka_scram_config(),
            "sasl.password": "wrong",
            "logger": QUIET,
            "error_cb": errors.append,
        }
    )
    with pytest.raises(Exception, match=r"(?i)failed to get metadata"):
        bad.list_topics(timeout=10)
    wait_for(
        lambda: (
            bad.poll(0.5) is not None
            and any(e.code() == KafkaError._AUTHENTICATION for e in errors)
        ),
        30,
        "an authentication error",
    )


def test_pyflink_exactly_once_job_checkpoints_to_minio_and_commits_its_output(
    stack, unique, tmp_path
):
    src, dst = create_topic(stack, unique("in")), create_topic(stack, unique("out"))
    cp_prefix = unique("foundation")
    env = {
        **apps.ta_job_env(
            stack,
            checkpoint_dir=f"s3a://{stack.s3_bucket}/{cp_prefix}",
            checkpoint_interval_ms=1000,
            starting_offsets="earliest",
            transactional_id_prefix=unique("tx-foundation"),
        ),
        "FLINK_LOG_DIR": str(tmp_path),
    }
    job = apps.launch(
        [sys.executable, "-m", "tests.integration.jobs.passthrough", src, dst],
        env,
        tmp_path / "job.out",
        cwd=REPO_ROOT,
    )
    try:
        from confluent_kafka import Producer

        p = Producer({"bootstrap.servers": stack.kafka_bootstrap, "logger": QUIET})
        for i in range(50):
            p.produce(src, f"event-{i:03d}".encode())
        assert p.flush(20) == 0

        out = consume(stack, dst, expected=50, timeout_s=120, settle_s=2.0)
        assert sorted(m.value() for m in out) == sorted(
            f"event-{i:03d}".encode()[::-1] for i in range(50)
        )
        assert job.poll() is None, "job died"

        s3 = minio.client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)

        def checkpoint_metadata() -> list[str]:
            return [
                o.object_name
                for o in s3.list_objects(stack.s3_bucket, prefix=cp_prefix, recursive=True)
                if o.object_name.endswith("/_metadata")
            ]

        assert wait_for(checkpoint_metadata, 60, "a completed checkpoint in MinIO")
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)


def test_stack_cli_up_status_down_leaves_no_process(tmp_path):
    torghut = [sys.executable, "-m", "torghut.cli"]
    run_dir = tmp_path / "cli-stack"
    up = subprocess.run(
        [*torghut, "stack", "up", "--dir", str(run_dir), "--no-topics"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    state = StackState.load(run_dir)
    pids = [c.pid for c in state.components.values()]
    assert len(pids) == 3
    status = subprocess.run(
        [*torghut, "stack", "status", "--dir", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0 and status.stdout.count("ok ") == 3, status.stdout
    down = subprocess.run(
        [*torghut, "stack", "down", "--dir", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), f"pid {pid} still running"
    after = subprocess.run(
        [*torghut, "stack", "status", "--dir", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert after.returncode == 1


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"
    except FileNotFoundError:
        return True
