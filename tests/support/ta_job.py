"""Driving the real TA job in tests: envelope producer, job process, output reader."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer

from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer
from tests.conftest import REPO_ROOT
from tests.support.kafka import QUIET
from torghut.envelopes import EnvelopeProducer as _EnvelopeProducer
from torghut.stack import apps, minio
from torghut.stack.state import StackState


class EnvelopeProducer(_EnvelopeProducer):
    """The tools' envelope producer, marked as test data and flushed promptly."""

    def __init__(self, stack: StackState) -> None:
        super().__init__(stack, source="test", feed="test", linger_ms=5)


class TaJobProcess:
    """`torghut ta` as a separate process (so it can be killed -9 like a crashed TaskManager),
    started by the project's launcher; `settings` are more `TaSettings` fields."""

    def __init__(
        self,
        stack: StackState,
        workdir: Path,
        checkpoint_prefix: str,
        txn_prefix: str,
        group: str,
        checkpoint_interval_ms: int = 1000,
        settings: dict[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        self.checkpoint_prefix = checkpoint_prefix
        self.env = {
            **apps.ta_job_env(
                stack,
                checkpoint_dir=f"s3a://{stack.s3_bucket}/{checkpoint_prefix}",
                checkpoint_interval_ms=checkpoint_interval_ms,
                starting_offsets="committed-earliest",
                consumer_group=group,
                transactional_id_prefix=txn_prefix,
                # tests end jobs with kill -9 and never reuse their prefix: the open
                # transaction would hold the partitions' last stable offset (read_committed
                # readers see nothing past it) for the whole timeout, so keep it short here
                **{"transaction_timeout_ms": 20_000, **(settings or {})},
            ),
            "FLINK_LOG_DIR": str(workdir / "flink-logs"),
        }
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, restore: bool = False) -> None:
        self.starts += 1
        argv = [*apps.TA_JOB, *(["--restore-latest"] if restore else [])]
        self.proc = apps.launch(
            argv, self.env, self.workdir / f"ta-{self.starts}.log", cwd=REPO_ROOT
        )

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.kill9()


def latest_checkpoint(stack: StackState, prefix: str) -> int:
    """Highest completed checkpoint id under `prefix` (-1 if none).

    Ids continue across a restore, and Flink keeps one completed checkpoint and deletes the
    one it subsumes, so "N new checkpoints" is the id moving on by N: a set difference of
    `_metadata` files would need two of them to exist at the same moment.
    """
    s3 = minio.client(stack.s3_endpoint, stack.s3_access_key, stack.s3_secret_key)
    ids = [
        int(m.group(1))
        for o in s3.list_objects(stack.s3_bucket, prefix=prefix, recursive=True)
        if (m := re.search(r"/chk-(\d+)/_metadata$", o.object_name))
    ]
    return max(ids, default=-1)


class JobDied(AssertionError):
    """The job process exited while a test waited for its output."""


def read_topic(
    stack: StackState,
    topic: str,
    symbols: set[str],
    until,
    timeout_s: float,
    isolation: str = "read_committed",
    job: TaJobProcess | None = None,
) -> list[dict]:
    """Decoded records of `symbols` from the beginning, until `until(records)` or the deadline."""
    deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
    c = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"read-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "logger": QUIET,
        }
    )
    c.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                rec = deser.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
                rec["_recv_ns"] = time.time_ns()
                if rec.get("symbol") in symbols:
                    out.append(rec)
                continue
            if until(out):
                break
            if job is not None and not job.alive():
                raise JobDied(f"job exited (code {job.proc.returncode}); logs in {job.workdir}")
    finally:
        c.close()
    return out


def read_finals(
    stack: StackState,
    topic: str,
    symbols: set[str],
    n: int,
    timeout_s: float = 120.0,
    job: TaJobProcess | None = None,
) -> list[dict]:
    """`read_topic` (read_committed) until `n` distinct final records of `symbols` arrived
    (bars or signals: by symbol and window start), or the deadline (or `job` died)."""
    from tests.support.oracle import final_bar_counts

    return read_topic(
        stack, topic, symbols, lambda recs: len(final_bar_counts(recs)) >= n, timeout_s, job=job
    )


def job_finals(
    stack: StackState, workdir: Path, tag: str, symbols: set[str], n: int, timeout_s: float = 240
) -> list[dict]:
    """Run the TA job over the raw log from the beginning (checkpoints, transactional ids and
    consumer group of its own, named after `tag`) until `n` distinct final bars of
    `symbols` are read back (read_committed); stop it and return the bar records read."""
    job = TaJobProcess(stack, workdir, f"cp-{tag}", f"tx-{tag}", f"grp-{tag}")
    job.start()
    try:
        records = read_finals(stack, "ta.bars.1s.v1", symbols, n, timeout_s, job)
        assert job.alive(), f"job died; logs in {workdir}"
    finally:
        job.stop()
    return records


def read_raw_log(
    stack: StackState, counts: dict[str, int], timeout_s: float = 60.0, settle_s: float = 1.0
) -> list:
    """Every record of the raw topics in `counts` (topic -> records expected at least,
    heartbeats included) as `oracle.LogRecord`s with partition and offset: the input of
    `oracle.expected_output`. Reads on for `settle_s` after the count, to catch the rest."""
    from tests.support.kafka import consume
    from tests.support.oracle import LogRecord

    deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
    out = []
    for topic, n in counts.items():
        msgs = consume(stack, topic, expected=n, timeout_s=timeout_s, settle_s=settle_s)
        assert len(msgs) >= n, f"{topic}: read back {len(msgs)} of {n}"
        for m in msgs:
            env = None if m.value() is None else deser.decode(m.value())
            out.append(LogRecord(f"{m.topic()}-{m.partition()}", m.offset(), m.timestamp()[1], env))
    return out
