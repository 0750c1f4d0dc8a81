"""The forwarder started while the schema registry does not answer: it waits (alive, not
ready, each retry logged) and forwards everything once the registry is back."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request

import pytest

from forwarder.app import ForwarderThread
from forwarder.metrics import CHANNEL_INDEX
from shared.topics import TRADES
from tests.conftest import wait_for
from tests.support.forwarder import envelopes, fwd_settings, market, symbols_for
from torghut.sim import SimConfig, SimServerThread, read_jsonl

pytestmark = pytest.mark.integration
TRADES_IDX = CHANNEL_INDEX["trades"]
# longer than the registry client's old fixed 30 s budget: the forwarder must wait it out
OUTAGE_S = 40


def _probe(port: int | None, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode().strip()


def test_forwarder_started_while_the_registry_is_down_waits_and_forwards_once_it_is_back(
    stack, tmp_path, unique
):
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(syms, trades_per_sec=200, quotes_per_sec=100),
        duration_s=5.0,
        record_path=tmp_path / "sent.jsonl",
    )
    pid = stack.components["registry"].pid
    with SimServerThread(cfg) as sim:
        settings = fwd_settings(stack, sim.url, registry_wait_s=120)
        fwd = ForwarderThread(settings)
        os.kill(pid, signal.SIGSTOP)  # connections hang: a partition, not a refusal
        try:
            fwd.start(wait=False)
            wait_for(
                lambda: fwd.forwarder.ready() == (False, "waiting for the schema registry"),
                20,
                "readiness to say it waits for the registry",
            )
            time.sleep(OUTAGE_S)  # the outage itself: nothing to wait for
            # the probes answer meanwhile: alive (no restart), not ready
            assert _probe(fwd.forwarder.http_port, "/healthz") == (200, "ok: alive")
            assert _probe(fwd.forwarder.http_port, "/readyz") == (
                503,
                "not ok: waiting for the schema registry",
            )
            assert fwd.error is None and fwd.forwarder.exit_code is None, "it gave up"
            assert not fwd.forwarder.started.is_set()
        finally:
            os.kill(pid, signal.SIGCONT)
        back = time.monotonic()
        try:
            wait_for(lambda: fwd.forwarder.started.is_set(), 60, "start-up to finish")
            assert fwd.forwarder.exit_code is None, fwd.forwarder.exit_code
            wait_for(lambda: fwd.forwarder.ready()[0], 60, "readiness after the registry's return")
            ready_s = time.monotonic() - back
            sim.wait_until(lambda: sim.source_done, 60, "the bounded source")
            sent = [m for m in read_jsonl(tmp_path / "sent.jsonl") if m["T"] == "t"]
            wait_for(lambda: fwd.metrics.messages[TRADES_IDX] >= len(sent), 60, "all trades acked")
        finally:
            fwd.stop()
    got = [e for e in envelopes(stack, (TRADES,), set(syms)) if e["channel"] == "trades"]
    assert sorted((e["symbol"], e["payload"]["id"]) for e in got) == sorted(
        (m["S"], m["i"]) for m in sent
    )
    print(f"registry back -> forwarder ready in {ready_s:.1f} s")
    assert ready_s <= 60


def test_a_stop_while_waiting_for_the_registry_ends_start_up_cleanly(stack):
    """SIGTERM (here: stop) during the registry wait: start-up gives up at its next try and
    the forwarder exits 0 instead of waiting out TORGHUT_FWD_REGISTRY_WAIT_S."""
    pid = stack.components["registry"].pid
    settings = fwd_settings(stack, "ws://127.0.0.1:9/v2/iex", registry_wait_s=600)
    fwd = ForwarderThread(settings)
    os.kill(pid, signal.SIGSTOP)
    try:
        fwd.start(wait=False)
        wait_for(
            lambda: fwd.forwarder.ready() == (False, "waiting for the schema registry"),
            20,
            "readiness to say it waits for the registry",
        )
        t = time.monotonic()
        assert fwd.stop(timeout_s=60) == 0
        print(f"stop during the registry wait: exited in {time.monotonic() - t:.1f} s")
    finally:
        os.kill(pid, signal.SIGCONT)
