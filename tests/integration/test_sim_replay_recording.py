"""The simulator replays a forwarder's frame recording frame by frame: byte-exact to a client
of the recorded encoding whose subscription selects the whole frame, re-encoded (only the
selected messages) for the others, malformed frames as recorded, markers never sent, paced
by the receive times (sped up) or as fast as the client reads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import orjson
import pytest
from websockets.sync.client import ClientConnection, connect

from shared.recording import RecordingWriter, RecordKind
from torghut.cli import main
from torghut.sim import ReplayConfig, SimConfig, SimServerThread, SyntheticConfig, SyntheticMarket
from torghut.sim.errors import ReplayFileError
from torghut.sim.protocol import encode_json, encode_msgpack, normalize_message
from torghut.sim.server import AlpacaSimServer

# a real simulator and WebSocket clients on loopback sockets
pytestmark = pytest.mark.integration

ALL = {
    ch: ["*"]
    for ch in ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
}
T0 = 1_700_000_000_000_000_000
MALFORMED = b"\x93\xc1\xc1"  # msgpack's never-used byte: undecodable
CONTROL = msgpack.packb([{"T": "error", "code": 407, "msg": "slow client"}])


def write_recording(directory: Path, span_s: float = 1.0) -> tuple[list, list[dict]]:
    """A recording of msgpack frames of a synthetic market, one JSON text frame of AAPL
    trades, a malformed frame, a control-only frame and markers; returns the records
    written (ns, kind, bytes) and every market-data message in order."""
    market = SyntheticMarket(
        SyntheticConfig(symbols=("AAPL", "MSFT"), seed=3, trades_per_sec=200, quotes_per_sec=100),
        T0,
        3,
    )
    msgs = market.advance(T0 + 2 * 10**9)
    batches = [msgs[i : i + 40] for i in range(0, len(msgs), 40)]
    aapl = [m for m in msgs if m["T"] == "t" and m["S"] == "AAPL"][:5]
    step = int(span_s * 1e9) // (len(batches) + 3)
    records: list = [(T0, RecordKind.SESSION, orjson.dumps({"event": "subscribed"}))]
    order: list[dict] = []
    ns = T0
    for n, batch in enumerate(batches):
        ns += step
        records.append((ns, RecordKind.BINARY, encode_msgpack(batch)))
        order += batch
        if n == 2:
            ns += step
            records.append((ns, RecordKind.TEXT, encode_json(aapl)))
            order += aapl
            records.append((ns, RecordKind.BINARY, MALFORMED))
            records.append((ns, RecordKind.LOSS, orjson.dumps({"frames": 4})))
            records.append((ns, RecordKind.BINARY, CONTROL))
    w = RecordingWriter(directory, {"url": "ws://x/v2/iex", "wire_format": "msgpack"})
    for rec in records:
        w.write(*rec)
    w.close()
    return records, order


@contextmanager
def client(url: str, channels: dict, msgpack_wire: bool) -> Iterator[ClientConnection]:
    headers = {"APCA-API-KEY-ID": "k", "APCA-API-SECRET-KEY": "s"}
    if msgpack_wire:
        headers["Content-Type"] = "application/msgpack"
    with connect(url, additional_headers=headers, max_size=None) as ws:
        for _ in range(2):  # connected, authenticated
            ws.recv(5)
        ws.send(orjson.dumps({"action": "subscribe", **channels}).decode())
        answer = ws.recv(5)
        loads = msgpack.unpackb if msgpack_wire else orjson.loads
        assert loads(answer)[0]["T"] == "subscription"
        yield ws


def frames_until(ws: ClientConnection, sim: SimServerThread, quiet_s: float = 0.5) -> list:
    """Every frame until the replay is done and nothing more came for ``quiet_s``."""
    out = []
    while True:
        try:
            out.append(ws.recv(quiet_s))
        except TimeoutError:
            if sim.source_done and sim.server.clients_drained:
                return out


def test_frames_of_the_recorded_encoding_go_out_byte_exact_and_others_re_encoded(tmp_path):
    records, order = write_recording(tmp_path / "rec")
    cfg = SimConfig(
        source="replay",
        replay=ReplayConfig(path=tmp_path / "rec", pace="fast"),
        record_path=tmp_path / "sent.jsonl",
    )
    with SimServerThread(cfg) as sim, client(sim.url, ALL, msgpack_wire=True) as ws:
        got = frames_until(ws, sim)
        counters = sim.counters.snapshot()
    # msgpack frames byte-exact, the JSON frame re-encoded as msgpack, the malformed frame
    # as recorded; the control-only frame selects nothing and the markers are not sent
    expected = []
    for _, kind, data in records:
        if kind == RecordKind.TEXT:
            expected.append(encode_msgpack([normalize_message(m) for m in orjson.loads(data)]))
        elif kind == RecordKind.BINARY and data != CONTROL:
            expected.append(data)
    assert got == expected
    assert counters["replay_exact_frames_total"] == len(expected) - 1
    decoded = [normalize_message(m) for f in got if f != MALFORMED for m in msgpack.unpackb(f)]
    assert decoded == order
    assert sum(counters["source_messages"].values()) == len(order)
    assert counters["messages_sent"]["t"] == sum(m["T"] == "t" for m in order)


def test_a_json_client_with_a_subset_gets_the_selected_messages_and_fitting_frames_exact(
    tmp_path,
):
    records, order = write_recording(tmp_path / "rec")
    text = next(d for _, k, d in records if k == RecordKind.TEXT)
    cfg = SimConfig(source="replay", replay=ReplayConfig(path=tmp_path / "rec", pace="fast"))
    with (
        SimServerThread(cfg) as sim,
        client(sim.url, {"trades": ["AAPL"]}, msgpack_wire=False) as ws,
    ):
        got = frames_until(ws, sim)
        exact = sim.counters.replay_exact_frames_total
    assert text in [f.encode() if isinstance(f, str) else f for f in got]  # byte-exact
    assert MALFORMED in got  # sent as recorded, in its binary frame
    msgs = [normalize_message(m) for f in got if isinstance(f, str) for m in orjson.loads(f)]
    assert msgs == [m for m in order if m["T"] in ("t", "c", "x") and m["S"] == "AAPL"]
    assert exact == 2  # the AAPL text frame and the malformed frame


def test_a_segment_a_forwarder_still_writes_into_the_replayed_directory_is_not_replayed(
    tmp_path,
):
    _, order = write_recording(tmp_path / "rec")
    # a forwarder recording the replay into the same directory: its open segment is skipped
    writer = RecordingWriter(tmp_path / "rec", {"url": "ws://x/v2/iex"})
    writer.write(T0, RecordKind.BINARY, encode_msgpack(order[:3]))
    writer.flush()
    cfg = SimConfig(source="replay", replay=ReplayConfig(path=tmp_path / "rec", pace="fast"))
    try:
        with SimServerThread(cfg) as sim, client(sim.url, ALL, msgpack_wire=True) as ws:
            got = frames_until(ws, sim)
    finally:
        writer.close()
    decoded = [normalize_message(m) for f in got if f != MALFORMED for m in msgpack.unpackb(f)]
    assert decoded == order


def test_original_pace_follows_the_receive_times_sped_up(tmp_path):
    records, _ = write_recording(tmp_path / "rec", span_s=2.0)
    frames = [ns for ns, k, _ in records if k <= RecordKind.BINARY]
    span_s = (frames[-1] - frames[0]) / 1e9
    cfg = SimConfig(
        source="replay", replay=ReplayConfig(path=tmp_path / "rec", pace="original", speed=4)
    )
    with SimServerThread(cfg) as sim, client(sim.url, ALL, msgpack_wire=True) as ws:
        first = ws.recv(5)
        started = time.monotonic()
        got = [first]
        while len(got) < len(frames) - 1:  # every frame but the control-only one
            got.append(ws.recv(5))
        elapsed = time.monotonic() - started
    assert 0.7 * span_s / 4 <= elapsed < span_s, (elapsed, span_s)


def test_a_missing_or_damaged_recording_is_refused_before_serving(tmp_path):
    def start(path: Path) -> None:
        asyncio.run(
            AlpacaSimServer(SimConfig(source="replay", replay=ReplayConfig(path=path))).start()
        )

    with pytest.raises(ReplayFileError, match="does not exist; give a JSONL file"):
        start(tmp_path / "nothing")
    bad = tmp_path / "rec-20250101T000000-0000.tfr.zst"
    bad.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)
    with pytest.raises(ReplayFileError, match=r"cannot replay .*is corrupt at byte 0"):
        start(bad)


def test_torghut_sim_replays_a_recording_directory(tmp_path):
    write_recording(tmp_path / "rec")
    argv = ["sim", "--replay", str(tmp_path / "rec"), "--pace", "fast", "--port", "0"]
    argv += ["--start-immediately", "--exit-when-done", "--progress-every", "0"]
    argv += ["--record", str(tmp_path / "sent.jsonl")]
    assert main(argv) == 0
    assert (tmp_path / "sent.jsonl").stat().st_size > 0
