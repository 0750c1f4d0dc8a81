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
        from torghut.stack import apps

        # the project's launcher: the child dies with the benchmark, even on kill -9
        pid = apps.launch(cmd, env, self.log_dir / f"{name}.log").pid
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
    from torghut.stack import apps

    checkpoint_ms = (
        throughput_checkpoint_ms(args) if phase == "throughput" else args.checkpoint_interval_ms
    )
    env = apps.ta_job_env(
        state,
        checkpoint_dir=f"s3a://{state.s3_bucket}/bench-pipeline/{run_id}/{phase}",
        checkpoint_interval_ms=checkpoint_ms,
        starting_offsets=offsets,
        consumer_group=group,
        # one prefix for both phases: a fresh job aborts the lingering transactions of the
        # previous (killed) one, which would otherwise hold read_committed readers back
        transactional_id_prefix=f"bench-pipeline-{run_id}",
        transaction_timeout_ms=60_000,
        provisional_interval_ms=provisional_ms,
        out_of_orderness_ms=args.out_of_orderness_ms,
        status_interval_ms=1000,
        job_name=f"bench-pipeline-{phase}",
    )
    return {**env, "FLINK_LOG_DIR": str(log_dir / f"flink-{phase}")}


def throughput_checkpoint_ms(args: argparse.Namespace) -> int:
    """The throughput phase's checkpoint interval: its own flag, else the live one."""
    return int(args.throughput_checkpoint_interval_ms or args.checkpoint_interval_ms)


#: per phase: (consumer group prefix, starting offsets) of its job
JOB_START = {"live": ("bench-live", "latest"), "throughput": ("bench-tput", "committed-earliest")}


def launch_job(
    state: Any,
    args: argparse.Namespace,
    procs: Procs,
    run_id: str,
    phase: str,
    provisional_ms: int,
    group: str | None = None,
) -> tuple[int, int]:
    """Start the TA job of a phase (process ``ta-<phase>``): (launch wall ns, pid).
    ``group``: its consumer group (default: the phase's prefix and ``run_id``)."""
    prefix, offsets = JOB_START[phase]
    env = job_env(
        state,
        run_id=run_id,
        phase=phase,
        group=group or f"{prefix}-{run_id}",
        offsets=offsets,
        provisional_ms=provisional_ms,
        args=args,
        log_dir=procs.log_dir,
    )
    t_launch = time.time_ns()
    return t_launch, procs.spawn(f"ta-{phase}", torghut_cmd("ta", "--no-stack"), env)
