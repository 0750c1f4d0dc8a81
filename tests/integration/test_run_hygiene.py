"""`torghut run` leaves nothing running: on a closed stdout + Ctrl-C (`make run | tee`, then
Ctrl-C) and when it is itself killed -9 (its children die with it: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STARTED = re.compile(r"\[run\] (\w+) started \(pid (\d+)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _sessions_alive(sids: set[int]) -> list[int]:
    """Every live process in one of these sessions (a child and whatever it started)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sids and fields[0] != "Z":  # fields[3]: session id
            out.append(int(d.name))
    return out


def _start(tmp_path: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    """`torghut run` with a fresh stack of its own, until its sim, forwarder, job and canary
    run."""
    env = {**os.environ, "TORGHUT_STACK_HOME": str(tmp_path / "stacks")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "run", "--no-view", "--symbols", "HYGA,HYGB"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stderr is not None
    pids: dict[str, int] = {}
    deadline = time.monotonic() + 180
    while not {"ta", "canary"} <= set(pids) and time.monotonic() < deadline:
        line = proc.stderr.readline().decode()
        if not line and proc.poll() is not None:
            break
        if m := STARTED.search(line):
            pids[m.group(1)] = int(m.group(2))
        if m := re.search(r"state (\S+state\.json)", line):
            state = json.loads(Path(m.group(1)).read_text())
            pids.update({c["name"]: c["pid"] for c in state["components"].values()})
    assert {"kafka", "minio", "registry", "sim", "forwarder", "ta", "canary"} <= set(pids), pids
    # the job's JVM (a grandchild: `torghut ta` starts it) must be up too, so its fate counts
    wait_for(lambda: _java_in_session(pids["ta"]), 120, "the TA job's JVM", interval_s=0.5)
    return proc, pids


def _java_in_session(sid: int) -> bool:
    for pid in _sessions_alive({sid}):
        try:
            if b"java" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_a_closed_stdout_and_ctrl_c_stop_everything_it_started(tmp_path):
    proc, pids = _start(tmp_path)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader of stdout is gone, as with `| tee` ended by Ctrl-C
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(120)
    left = _sessions_alive(set(pids.values()))
    assert not [p for p in pids.values() if _alive(p)] and not left, (pids, left)


def test_kill_9_of_torghut_run_takes_every_child_with_it(tmp_path):
    proc, pids = _start(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_for(
        lambda: (
            not [p for p in pids.values() if _alive(p)] and not _sessions_alive(set(pids.values()))
        ),
        60,
        f"every process of the killed run gone: {pids}",
        interval_s=0.5,
    )
