"""The forwarder's frame recording against the real simulator, Kafka and registry: every
frame it read is in the recording byte for byte with the ingest time its envelopes carry,
the frames decode to exactly what the simulator sent, and replaying the recording through
the simulator into a second forwarder gives the same frames (byte-exact) and the same
envelopes per symbol and channel."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from forwarder.app import ForwarderThread
from shared.recording import RecordingWriter, RecordKind, decode_frame, iter_recording, summarize
from tests.conftest import wait_for
from tests.support.forwarder import envelopes, fwd_settings, market, symbols_for
from tests.support.hostile import hostile_frames
from torghut.sim import ReplayConfig, SimConfig, SimServerThread, read_jsonl
from torghut.sim.protocol import normalize_message

pytestmark = pytest.mark.integration

CONTROL_FRAMES = 3  # connected, authenticated, subscription: read before the recording starts


def forward(stack, cfg: SimConfig, record_dir: Path, sent: Path, **kw) -> ForwarderThread:
    """Run ``cfg`` through a recording forwarder until every message it sent is acked; the
    forwarder is stopped (its recording closed) on return."""
    with (
        SimServerThread(cfg) as sim,
        ForwarderThread(fwd_settings(stack, sim.url, record_dir=str(record_dir), **kw)) as fwd,
    ):
        sim.wait_until(lambda: sim.source_done, 30, "the source")
        n = len(read_jsonl(sent))
        wait_for(lambda: sum(fwd.metrics.messages[:-1]) >= n, 30, f"{n} acks")
        frames_sent = sim.counters.frames_sent
        wait_for(
            lambda: fwd.forwarder._stream.frames_read >= frames_sent - CONTROL_FRAMES,
            10,
            "every frame read",
        )
    assert fwd.forwarder.exit_code == 0
    return fwd


def recorded_messages(path: Path) -> list[dict]:
    return [
        normalize_message(m) for r in iter_recording(path) if r.is_frame for m in decode_frame(r)
    ]


def payloads(envs: list[dict], fwd: ForwarderThread) -> dict:
    """(channel, symbol) -> what each envelope of one forwarder carried, in log order."""
    prefix = fwd.forwarder._trace.prefix.decode()
    out: dict = defaultdict(list)
    for e in envs:
        if e["trace_id"].startswith(prefix) and e["channel"] not in ("status", "gap"):
            out[(e["channel"], e["symbol"])].append(
                (e["event_ts"], e["payload"], e["window"], e["is_final"], e["_key"])
            )
    return out


def test_a_msgpack_recording_holds_every_frame_as_received_and_replays_to_the_same_envelopes(
    stack, tmp_path, unique
):
    syms = symbols_for(unique)
    rec1, rec2 = tmp_path / "rec1", tmp_path / "rec2"
    cfg = SimConfig(
        synthetic=market(syms, trades_per_sec=200, quotes_per_sec=100),
        max_trades=400,
        frame_max_messages=50,
        record_path=tmp_path / "sent.jsonl",
    )
    fwd1 = forward(stack, cfg, rec1, tmp_path / "sent.jsonl")
    sent = read_jsonl(tmp_path / "sent.jsonl")
    records = list(iter_recording(rec1))
    frames = [r for r in records if r.is_frame]
    # every frame the forwarder read, as msgpack binary frames, decoding to what was sent
    assert frames and all(r.kind == RecordKind.BINARY for r in frames)
    assert len(frames) == fwd1.forwarder._stream.frames_read == fwd1.metrics.recorded_frames
    assert recorded_messages(rec1) == sent
    assert [r.receive_ns for r in frames] == sorted(r.receive_ns for r in frames)
    assert records[0].kind == RecordKind.SESSION
    assert records[0].info()["event"] == "subscribed" and records[0].info()["attempt"] == 0
    assert records[-1].kind == RecordKind.SESSION and records[-1].info()["event"] == "disconnected"
    summary = summarize(rec1)
    assert summary.lost_frames == 0 and summary.warnings == []
    assert summary.symbols == set(syms) and summary.metadata["wire_format"] == "msgpack"
    assert fwd1.metrics.record_dropped_queue_full == fwd1.metrics.record_dropped_write_error == 0

    # replay the recording into a second forwarder that records too
    cfg2 = SimConfig(
        source="replay",
        replay=ReplayConfig(path=rec1, pace="fast"),
        record_path=tmp_path / "sent2.jsonl",
    )
    fwd2 = forward(stack, cfg2, rec2, tmp_path / "sent2.jsonl")
    assert read_jsonl(tmp_path / "sent2.jsonl") == sent
    # byte-exact: the replay's recording holds the very same frames
    assert [r.data for r in iter_recording(rec2) if r.is_frame] == [r.data for r in frames]

    envs = envelopes(stack, symbols=set(syms))
    # the envelopes carry the receive time of the frame their message came in
    frame_of = {}
    for r in frames:
        for m in decode_frame(r):
            if m["T"] == "t":
                frame_of[(m["S"], m["i"])] = r.receive_ns
    prefix = fwd1.forwarder._trace.prefix.decode()
    trades = [e for e in envs if e["channel"] == "trades" and e["trace_id"].startswith(prefix)]
    assert len(trades) == sum(m["T"] == "t" for m in sent)
    assert all(e["ingest_ts"] == frame_of[(e["symbol"], e["payload"]["id"])] for e in trades)
    # the replay produced the same envelopes, symbol by symbol and channel by channel
    first, second = payloads(envs, fwd1), payloads(envs, fwd2)
    assert first and first == second
    assert {ch for ch, _ in first} >= {"trades", "quotes"}


def test_a_json_recording_holds_the_text_frames_and_replays_them_byte_exact(
    stack, tmp_path, unique
):
    syms = symbols_for(unique)
    rec1, rec2 = tmp_path / "rec1", tmp_path / "rec2"
    cfg = SimConfig(
        synthetic=market(syms, trades_per_sec=200, quotes_per_sec=100),
        max_trades=150,
        frame_max_messages=50,
        record_path=tmp_path / "sent.jsonl",
    )
    fwd1 = forward(stack, cfg, rec1, tmp_path / "sent.jsonl", wire_format="json")
    sent = read_jsonl(tmp_path / "sent.jsonl")
    frames = [r for r in iter_recording(rec1) if r.is_frame]
    assert frames and all(r.kind == RecordKind.TEXT for r in frames)
    assert len(frames) == fwd1.metrics.recorded_frames
    assert recorded_messages(rec1) == sent
    assert summarize(rec1).metadata["wire_format"] == "json"

    cfg2 = SimConfig(
        source="replay",
        replay=ReplayConfig(path=rec1, pace="fast"),
        record_path=tmp_path / "sent2.jsonl",
    )
    forward(stack, cfg2, rec2, tmp_path / "sent2.jsonl", wire_format="json")
    assert read_jsonl(tmp_path / "sent2.jsonl") == sent
    assert [r.payload for r in iter_recording(rec2) if r.is_frame] == [r.payload for r in frames]


def test_hostile_frames_replay_byte_exact_so_the_forwarder_rejects_them_alike(stack, tmp_path):
    # a recording of broken msgpack frames (the pipeline tests' fuzzer): truncated, bit
    # flips, junk fields, unknown types, non-arrays; each must reach the forwarder as recorded
    frames = [f for f in hostile_frames(1500, seed=11) if isinstance(f, bytes)]
    rec1, rec2 = tmp_path / "rec1", tmp_path / "rec2"
    writer = RecordingWriter(rec1, {"url": "ws://fuzz/v2/iex", "wire_format": "msgpack"})
    for i, frame in enumerate(frames):
        writer.write(1_700_000_000_000_000_000 + i * 1000, RecordKind.BINARY, frame)
    writer.close()
    cfg = SimConfig(source="replay", replay=ReplayConfig(path=rec1, pace="fast"))
    with (
        SimServerThread(cfg) as sim,
        ForwarderThread(fwd_settings(stack, sim.url, record_dir=str(rec2))) as fwd,
    ):
        sim.wait_until(lambda: sim.source_done, 30, "the replay")
        wait_for(lambda: fwd.forwarder._stream.frames_read >= len(frames), 30, "every frame read")
        assert sim.counters.replay_exact_frames_total == len(frames)
        rejected = dict(fwd.metrics.frames_rejected)
    assert [r.data for r in iter_recording(rec2) if r.is_frame] == frames
    assert {"malformed_frame", "invalid_field", "unknown_type", "not_an_object"} <= set(rejected)
