"""`up`, `status` and `down` for the local stack."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sys
import time
from pathlib import Path
from typing import cast

from torghut.stack import kafka, minio, procs, registry
from torghut.stack.errors import StackError
from torghut.stack.paths import STACK_HOME
from torghut.stack.state import Component, StackState


def _say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


def up(
    run_dir: Path | None = None,
    with_topics: bool = True,
    partitions: int | None = None,
    transaction_max_timeout_ms: int = kafka.TRANSACTION_MAX_TIMEOUT_MS,
) -> StackState:
    """Start Kafka, MinIO and the registry; create the catalog's topics and the bucket.

    `partitions`: of every symbol-keyed topic (`shared.topics.catalog`); default
    `TORGHUT_PARTITIONS` or 1. `transaction_max_timeout_ms`: the broker's
    `transaction.max.timeout.ms` (drills scale it down with the job's transaction timeout).

    On any failure everything already started is stopped again, so a failed `up`
    leaves no process behind.
    """
    if partitions is None:
        from shared.topics import partitions_from_env

        partitions = partitions_from_env()
    if run_dir is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = STACK_HOME / f"run-{stamp}-{os.getpid()}"
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    state = StackState(run_dir=str(run_dir))
    t0 = time.monotonic()
    try:
        k = kafka.start(run_dir, transaction_max_timeout_ms)
        state.components["kafka"] = Component(
            name="kafka", pid=k["pid"], log_file=str(k["log_file"]), ports=k["ports"]
        )
        state.kafka_bootstrap = str(k["bootstrap"])
        state.kafka_sasl_ssl_bootstrap = str(k["sasl_ssl_bootstrap"])
        state.kafka_ca_file = str(k["ca_file"])
        state.kafka_scram_user = str(k["user"])
        state.kafka_scram_password = str(k["password"])
        state.kafka_plain_user = str(k["plain_user"])
        state.kafka_plain_password = str(k["plain_password"])
        state.save()

        m = minio.start(run_dir)
        state.components["minio"] = Component(
            name="minio", pid=m["pid"], log_file=str(m["log_file"]), ports=m["ports"]
        )
        state.s3_endpoint = str(m["endpoint"])
        state.s3_access_key = str(m["access_key"])
        state.s3_secret_key = str(m["secret_key"])
        state.s3_bucket = minio.CHECKPOINT_BUCKET
        state.save()

        r = registry.start(run_dir, state.kafka_bootstrap)
        state.components["registry"] = Component(
            name="registry", pid=r["pid"], log_file=str(r["log_file"]), ports=r["ports"]
        )
        state.registry_url = str(r["url"])
        state.save()

        kafka.wait_ready(state.kafka_bootstrap, k["pid"], Path(k["log_file"]))
        _say(f"kafka ready at {state.kafka_bootstrap} (SASL_SSL {state.kafka_sasl_ssl_bootstrap})")
        minio.wait_ready(state.s3_endpoint, m["pid"], Path(m["log_file"]))
        minio.ensure_bucket(
            state.s3_endpoint, state.s3_access_key, state.s3_secret_key, state.s3_bucket
        )
        _say(f"minio ready at {state.s3_endpoint}, bucket {state.s3_bucket}")
        registry.wait_ready(state.registry_url, r["pid"], Path(r["log_file"]))
        _say(f"registry ready at {state.registry_url}")
        if with_topics:
            from shared.topics import catalog

            topics = catalog(partitions)
            kafka.create_topics(
                state.kafka_bootstrap,
                [
                    (t.name, t.partitions, {**t.config(), "min.insync.replicas": "1"})
                    for t in topics
                ],
            )
            _say(
                f"{len(topics)} catalog topics present ({partitions} partition(s) per symbol topic)"
            )
    except BaseException:
        _stop_components(state)
        raise
    _point_current(run_dir)
    _say(f"up in {time.monotonic() - t0:.1f}s; state {run_dir / 'state.json'}")
    return state


def _point_current(run_dir: Path) -> None:
    if run_dir.parent != STACK_HOME.resolve():
        return
    link = STACK_HOME / "current"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(run_dir)


def status(state: StackState) -> dict[str, dict[str, object]]:
    """Health per component: process alive and its main port answering."""
    report: dict[str, dict[str, object]] = {}
    for name, comp in state.components.items():
        is_alive = procs.alive(comp.pid)
        port_ok = {p: procs.port_open(v) for p, v in comp.ports.items()} if is_alive else {}
        report[name] = {
            "pid": comp.pid,
            "alive": is_alive,
            "ports": comp.ports,
            "ports_open": port_ok,
            "healthy": is_alive and all(port_ok.values()),
            "log_file": comp.log_file,
        }
    return report


def restart_minio(state: StackState, timeout_s: float = 60.0) -> int:
    """Start the stack's MinIO again after it stopped or was killed (outage drills): the
    same address, data dir and credentials; returns once it is ready. The new pid goes into
    `state` (and its state.json), so `down` stops the new process. Returns the pid."""
    m = minio.restart(
        Path(state.run_dir), state.s3_endpoint, state.s3_access_key, state.s3_secret_key, timeout_s
    )
    comp = state.components["minio"]
    comp.pid = cast(int, m["pid"])
    state.save()
    return comp.pid


def _stop_components(state: StackState) -> list[str]:
    stopped = []
    # reverse start order: clients of Kafka first
    for name in reversed(list(state.components)):
        comp = state.components[name]
        procs.stop(comp.pid)
        stopped.append(name)
    return stopped


def down(state: StackState, purge: bool = False) -> list[str]:
    """Stop exactly the processes `up` recorded (by pid/process group)."""
    stopped = _stop_components(state)
    left = [n for n, c in state.components.items() if procs.alive(c.pid)]
    if left:
        raise StackError(f"still running after down: {left}")
    run_dir = Path(state.run_dir)
    link = STACK_HOME / "current"
    if link.is_symlink() and link.resolve() == run_dir:
        link.unlink()
    if purge:
        shutil.rmtree(run_dir, ignore_errors=True)
    return stopped
