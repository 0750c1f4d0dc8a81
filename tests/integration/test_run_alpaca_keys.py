"""`torghut run --source alpaca`: a missing or refused key is one line saying what Alpaca
answered and what to do, before anything is started: no traceback, no reconnect loop, no
stack left behind. Against the simulator, which answers auth as Alpaca does (402 for a bad
key, 409 for a feed the key's plan lacks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from torghut.sim import SimConfig, SimServerThread
from torghut.sim.config import ApiKey

pytestmark = pytest.mark.integration

KEY, SECRET = "PKTESTKEY123", "s3cr3t-never-printed"


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[int, str, str, float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    base["TORGHUT_STACK_HOME"] = str(tmp_path / "stacks")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "torghut.cli", "run", "--no-view", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith("[run] checking")]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_no_key_in_the_environment_is_one_line_naming_both_variables(tmp_path):
    code, out, err, _ = _run(["--source", "alpaca"], {}, tmp_path)
    line = _one_line(err)
    assert code == 2
    assert "APCA_API_KEY_ID and APCA_API_SECRET_KEY not set" in line
    assert not (tmp_path / "stacks").exists(), "nothing may start without keys"
    assert out == ""


def test_a_refused_key_is_alpacas_code_and_what_to_do_and_never_in_argv_or_output(tmp_path):
    cfg = SimConfig(keys=(ApiKey(key=KEY, secret=SECRET, feeds=("iex",)),))
    with SimServerThread(cfg) as sim:
        wrong = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": "wrong-" + SECRET}
        code, out, err, took = _run(
            ["--source", "alpaca", "--alpaca-url", sim.url_for("iex")], wrong, tmp_path
        )
        line = _one_line(err)
        assert code == 2
        assert "error 402 'auth failed'" in line
        assert "APCA_API_KEY_ID" in line and "APCA_API_SECRET_KEY" in line
        assert SECRET not in err + out
        # a plan without the feed: Alpaca's 409 and the advice to use iex
        right = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}
        code, out, err, _ = _run(
            ["--source", "alpaca", "--feed", "sip", "--alpaca-url", sim.url_for("sip")],
            right,
            tmp_path,
        )
        line = _one_line(err)
        assert code == 2
        assert "error 409" in line and "--feed iex" in line
        assert SECRET not in err + out
        assert sim.counters.auth_failures_total == 2  # one attempt each: no reconnect loop
    assert not (tmp_path / "stacks").exists(), "nothing may start with a refused key"
    assert took < 60
