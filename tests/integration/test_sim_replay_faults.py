"""Record -> replay gives the same messages; injected faults (drop, re-send after reconnect,
duplicate frames, slow-client disconnect) really happen and are counted."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from torghut.sim import FaultConfig, ReplayConfig, SimConfig, SimServerThread, SyntheticConfig
from torghut.sim.protocol import normalize_message
from torghut.sim.recording import read_jsonl

# a real simulator (and clients) on loopback sockets
pytestmark = pytest.mark.integration

ALL = {
    "trades": ["*"],
    "quotes": ["*"],
    "bars": ["*"],
    "updatedBars": ["*"],
    "dailyBars": ["*"],
    "statuses": ["*"],
    "lulds": ["*"],
}
MARKET = SyntheticConfig(
    symbols=("AAPL", "MSFT", "SPY"),
    seed=21,
    trades_per_sec=300,
    quotes_per_sec=150,
    correction_rate=0.02,
    cancel_error_rate=0.02,
)


@contextmanager
def subscribe(url: str, channels: dict = ALL) -> Iterator[ClientConnection]:
    headers = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    with connect(url, additional_headers=headers) as ws:
        assert orjson.loads(ws.recv(5))[0]["msg"] == "connected"
        assert orjson.loads(ws.recv(5))[0]["msg"] == "authenticated"
        ws.send(orjson.dumps({"action": "subscribe", **channels}).decode())
        assert orjson.loads(ws.recv(5))[0]["T"] == "subscription"
        yield ws


def receive(ws: ClientConnection, count: int, deadline_s: float = 15.0) -> list[dict]:
    out: list[dict] = []
    deadline = time.monotonic() + deadline_s
    while len(out) < count:
        out += [normalize_message(m) for m in orjson.loads(ws.recv(deadline - time.monotonic()))]
    return out


def record(tmp_path, max_trades: int = 400) -> list[dict]:
    path = tmp_path / "run.jsonl"
    with (
        SimServerThread(
            SimConfig(synthetic=MARKET, max_trades=max_trades, record_path=path)
        ) as sim,
        subscribe(sim.url) as ws,
    ):
        sim.wait_until(lambda: sim.source_done, 15, "the bounded run")
        sent = read_jsonl(path)
        assert receive(ws, len(sent)) == sent  # a full subscriber gets exactly the recording
    return sent


def test_replay_fast_and_at_original_pace_sends_the_recorded_messages(tmp_path):
    sent = record(tmp_path)
    assert sum(m["T"] == "t" for m in sent) == 400
    assert {"t", "q", "b", "d", "s", "c", "x"} <= {m["T"] for m in sent}
    for pace in ("fast", "original"):
        cfg = SimConfig(
            source="replay", replay=ReplayConfig(path=tmp_path / "run.jsonl", pace=pace)
        )
        with SimServerThread(cfg) as sim, subscribe(sim.url) as ws:
            started = time.monotonic()
            assert receive(ws, len(sent)) == sent, pace
            elapsed = time.monotonic() - started
        if pace == "original":
            paced = [m["t"] for m in sent if m["T"] not in "bud"]
            span_s = (max(paced) - paced[0]) / 1e9
            assert elapsed >= 0.7 * span_s, (elapsed, span_s)


def test_replay_honours_a_subscription_subset(tmp_path):
    sent = record(tmp_path, max_trades=200)
    want = [m for m in sent if m["T"] in ("t", "c", "x") and m["S"] == "AAPL"]
    cfg = SimConfig(source="replay", replay=ReplayConfig(path=tmp_path / "run.jsonl", pace="fast"))
    with SimServerThread(cfg) as sim, subscribe(sim.url, {"trades": ["AAPL"]}) as ws:
        assert receive(ws, len(want)) == want


def test_duplicate_frames_are_injected_and_counted(tmp_path):
    path = tmp_path / "dups.jsonl"
    cfg = SimConfig(
        synthetic=MARKET,
        max_trades=300,
        record_path=path,
        faults=FaultConfig(duplicate_rate=0.3, seed=1),
    )
    with SimServerThread(cfg) as sim, subscribe(sim.url) as ws:
        sim.wait_until(lambda: sim.source_done and sim.server.clients_drained, 15, "drained")
        sent = read_jsonl(path)
        dups = sim.counters.duplicated_messages_total
        got = receive(ws, len(sent) + dups)
    assert sim.counters.duplicated_frames_total > 0 and dups > 0
    ids = Counter((m["S"], m["i"]) for m in got if m["T"] == "t")
    assert sum(n - 1 for n in ids.values()) > 0
    assert set(ids) == {(m["S"], m["i"]) for m in sent if m["T"] == "t"}


def test_drop_every_n_seconds_and_resend_last_k_after_reconnect():
    cfg = SimConfig(synthetic=MARKET, faults=FaultConfig(drop_every_s=0.3, resend_last=25))
    got: list[dict] = []
    connections = 0
    with SimServerThread(cfg) as sim:
        while connections < 3:
            connections += 1
            with subscribe(sim.url, {"trades": ["*"]}) as ws:
                try:
                    while True:
                        got += [normalize_message(m) for m in orjson.loads(ws.recv(5))]
                except ConnectionClosed:
                    pass
        counters = sim.counters
        assert counters.drops_injected_total >= 2
        assert counters.resent_messages_total >= 25
    ids = Counter((m["S"], m["i"]) for m in got if m["T"] == "t")
    assert any(n > 1 for n in ids.values()), "re-sent trades reach the client as duplicates"


def test_a_client_that_cannot_keep_up_is_disconnected_with_407():
    cfg = SimConfig(
        synthetic=SyntheticConfig(
            symbols=("AAPL", "MSFT"), trades_per_sec=20_000, quotes_per_sec=20_000, seed=3
        ),
        send_queue_frames=64,
        frame_max_messages=50,
    )
    with SimServerThread(cfg) as sim, subscribe(sim.url, {"trades": ["*"], "quotes": ["*"]}) as ws:
        sim.wait_until(
            lambda: sim.counters.slow_client_disconnects_total == 1,
            20,
            "the slow client to be dropped",
        )
        last: list[dict] = []
        try:
            while True:
                last = orjson.loads(ws.recv(10))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
        assert last == [{"T": "error", "code": 407, "msg": "slow client"}]
        assert sim.counters.errors_sent[407] == 1
