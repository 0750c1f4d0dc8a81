"""Fast bounded runs are generated before the first subscriber and encoded before the first
data frame; a client still receives exactly what the source published, in order, in both
encodings, and the simulator only sends while the client reads."""

from __future__ import annotations

import msgpack
import orjson
import pytest
from websockets.sync.client import connect

from torghut.sim import SimConfig, SimServerThread, SyntheticConfig, read_jsonl
from torghut.sim.sources import pregenerates
from torghut.sim.timestamps import from_wire_timestamp

# a real simulator (and clients) on loopback sockets
pytestmark = pytest.mark.integration


def _config(tmp_path, **kw) -> SimConfig:
    return SimConfig(
        synthetic=SyntheticConfig(symbols=("AAPL", "MSFT", "SPY"), seed=9),
        fast=True,
        max_messages=20_000,
        record_path=tmp_path / "sent.jsonl",
        **kw,
    )


def test_only_fast_runs_bounded_by_message_count_are_pregenerated(tmp_path):
    assert pregenerates(_config(tmp_path))
    assert not pregenerates(_config(tmp_path, pregenerate_max_messages=10))
    assert not pregenerates(_config(tmp_path, duration_s=5.0))
    assert not pregenerates(_config(tmp_path).model_copy(update={"fast": False}))


@pytest.mark.parametrize("wire", ["msgpack", "json"])
def test_a_pregenerated_run_sends_exactly_the_recording_in_order(tmp_path, wire):
    cfg = _config(tmp_path)
    headers = {"Content-Type": "application/msgpack"} if wire == "msgpack" else {}
    got: list[dict] = []
    frames = 0
    with SimServerThread(cfg) as sim, connect(sim.url, additional_headers=headers) as ws:

        def recv() -> list[dict]:
            raw = ws.recv(10)
            return msgpack.unpackb(raw) if wire == "msgpack" else orjson.loads(raw)

        def send(msg: dict) -> None:
            ws.send(msgpack.packb(msg) if wire == "msgpack" else orjson.dumps(msg).decode())

        assert recv()[0]["msg"] == "connected"
        send({"action": "auth", "key": "k", "secret": "s"})
        assert recv()[0]["msg"] == "authenticated"
        send({"action": "subscribe", "trades": ["*"], "quotes": ["*"], "statuses": ["*"]})
        assert recv()[0]["T"] == "subscription"
        while len(got) < cfg.max_messages:  # type: ignore[operator]
            frame = recv()
            frames += 1
            assert len(frame) <= cfg.frame_max_messages
            got.extend(frame)
        sim.wait_until(lambda: sim.source_done, 10, "the source")
        counters = sim.counters.snapshot()
    sent = read_jsonl(tmp_path / "sent.jsonl")
    assert len(sent) == cfg.max_messages
    assert [{**m, "t": from_wire_timestamp(m["t"])} for m in got] == sent
    assert counters["frames_sent"] == frames + 3
    assert sum(counters["source_messages"].values()) == cfg.max_messages
