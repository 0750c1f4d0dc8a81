"""The processes ``torghut bench pipeline`` starts (jobs, simulator, forwarder) and the
TA job's environment per phase."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


class Procs:
    """Every process this benchmark starts; stopped in reverse order (by pid/group)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, int]] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> int:
        from torghut.stack import procs

        pid = procs.spawn(cmd, self.log_dir / f"{name}.log", env=env)
        self.started.append((name, pid))
        return pid

    def check(self, *names: str) -> None:
        from torghut.stack import procs

        for name, pid in self.started:
            if (not names or name in names) and not procs.alive(pid):
                raise RuntimeError(
                    f"{name} (pid {pid}) exited; see {self.log_dir / (name + '.log')}"
                )

    def stop(self, name: str | None = None) -> None:
        from torghut.stack import procs

        for entry in reversed(list(self.started)):
            if name is None or entry[0] == name:
                procs.stop(entry[1])
                self.started.remove(entry)


def torghut_cmd(*argv: str) -> list[str]:
    """``torghut <argv>`` run with this interpreter."""
    return [sys.executable, "-m", "torghut.cli", *argv]


def job_env(
    state: Any,
    *,
    run_id: str,
    phase: str,
    group: str,
    offsets: str,
    provisional_ms: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, str]:
    return {
        "TORGHUT_TA_KAFKA_BOOTSTRAP": state.kafka_bootstrap,
        "TORGHUT_TA_REGISTRY_URL": state.registry_url,
        "TORGHUT_TA_S3_ENDPOINT": state.s3_endpoint,
        "TORGHUT_TA_S3_ACCESS_KEY": state.s3_access_key,
        "TORGHUT_TA_S3_SECRET_KEY": state.s3_secret_key,
        "TORGHUT_TA_CHECKPOINT_DIR": f"s3a://{state.s3_bucket}/bench-pipeline/{run_id}/{phase}",
        "TORGHUT_TA_CHECKPOINT_INTERVAL_MS": str(
            throughput_checkpoint_ms(args) if phase == "throughput" else args.checkpoint_interval_ms
        ),
        "TORGHUT_TA_STARTING_OFFSETS": offsets,
        "TORGHUT_TA_CONSUMER_GROUP": group,
        # one prefix for both phases: a fresh job aborts the lingering transactions of the
        # previous (killed) one, which would otherwise hold read_committed readers back
        "TORGHUT_TA_TRANSACTIONAL_ID_PREFIX": f"bench-pipeline-{run_id}",
        "TORGHUT_TA_TRANSACTION_TIMEOUT_MS": "60000",
        "TORGHUT_TA_PROVISIONAL_INTERVAL_MS": str(provisional_ms),
        "TORGHUT_TA_OUT_OF_ORDERNESS_MS": str(args.out_of_orderness_ms),
        "TORGHUT_TA_STATUS_INTERVAL_MS": "1000",
        "TORGHUT_TA_JOB_NAME": f"bench-pipeline-{phase}",
        "FLINK_LOG_DIR": str(log_dir / f"flink-{phase}"),
    }


def throughput_checkpoint_ms(args: argparse.Namespace) -> int:
    """The throughput phase's checkpoint interval: its own flag, else the live one."""
    return int(args.throughput_checkpoint_interval_ms or args.checkpoint_interval_ms)


#: per phase: (consumer group prefix, starting offsets) of its job
JOB_START = {"live": ("bench-live", "latest"), "throughput": ("bench-tput", "committed-earliest")}


def launch_job(
    state: Any, args: argparse.Namespace, procs: Procs, run_id: str, phase: str, provisional_ms: int
) -> tuple[int, int]:
    """Start the TA job of a phase (process ``ta-<phase>``): (launch wall ns, pid)."""
    group, offsets = JOB_START[phase]
    env = job_env(
        state,
        run_id=run_id,
        phase=phase,
        group=f"{group}-{run_id}",
        offsets=offsets,
        provisional_ms=provisional_ms,
        args=args,
        log_dir=procs.log_dir,
    )
    t_launch = time.time_ns()
    return t_launch, procs.spawn(f"ta-{phase}", torghut_cmd("ta", "--no-stack"), env)
