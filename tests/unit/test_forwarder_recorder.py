"""The forwarder's frame recorder (forwarder/recorder.py): a writer thread behind a bounded
queue. A full queue leaves frames out, counts them and puts a loss marker in their place;
a failed write is counted and marked the same way; close() writes and flushes the rest."""

from __future__ import annotations

import random
import shutil

import orjson
import pytest
from pydantic import ValidationError

from forwarder.metrics import ForwarderMetrics
from forwarder.recorder import FrameRecorder
from forwarder.settings import ForwarderSettings
from shared.recording import RecordingError, RecordKind, iter_recording, segment_paths
from tests.conftest import wait_for

META = {"url": "ws://127.0.0.1:1/v2/iex", "feed": "iex", "wire_format": "msgpack"}
T0 = 1_700_000_000_000_000_000


def metric(m: ForwarderMetrics, name: str, labels: dict | None = None) -> float:
    for family in m.collect():
        for sample in family.samples:
            if sample.name == name and (labels is None or sample.labels == labels):
                return sample.value
    raise KeyError(name)


def test_a_full_queue_drops_frames_counts_them_and_marks_the_loss(tmp_path):
    m = ForwarderMetrics()
    rec = FrameRecorder(str(tmp_path), META, m, queue_bytes=1000)
    frame = b"\x91" + bytes(399)
    # nothing drains before start(): the queue holds two 400-byte frames, the next 3 are lost
    for i in range(5):
        rec.frame(frame, T0 + i)
    assert rec.queued_bytes == 800 and m.record_dropped_queue_full == 3
    rec.start()
    wait_for(lambda: rec.queued_bytes == 0, 10, "the writer to drain the queue")
    rec.frame('[{"T":"t","S":"A"}]', T0 + 10)  # fits again: marker first, then the frame
    rec.marker({"event": "subscribed", "attempt": 1}, T0 + 11)
    rec.close()
    got = list(iter_recording(tmp_path))
    assert [(r.receive_ns, r.kind) for r in got] == [
        (T0, RecordKind.BINARY),
        (T0 + 1, RecordKind.BINARY),
        (T0 + 2, RecordKind.LOSS),
        (T0 + 10, RecordKind.TEXT),
        (T0 + 11, RecordKind.SESSION),
    ]
    assert got[0].data == frame and got[3].payload == '[{"T":"t","S":"A"}]'
    loss = got[2].info()
    assert loss == {
        "event": "frames_lost",
        "reason": "queue_full",
        "frames": 3,
        "bytes": 1200,
        "from_ns": T0 + 2,
        "to_ns": T0 + 4,
    }
    assert got[4].info() == {"event": "subscribed", "attempt": 1}
    assert metric(m, "torghut_forwarder_recorded_frames_total") == 3
    assert metric(m, "torghut_forwarder_record_dropped_frames_total", {"reason": "queue_full"}) == 3
    files = segment_paths(tmp_path)
    assert metric(m, "torghut_forwarder_record_bytes_total") == sum(f.stat().st_size for f in files)
    assert metric(m, "torghut_forwarder_record_segments") == len(files) == 1


def test_close_writes_and_flushes_what_is_queued_and_buffered(tmp_path):
    m = ForwarderMetrics()
    # no time-based flush during the test: only close() can put the frames on disk
    rec = FrameRecorder(str(tmp_path), META, m, flush_s=3600).start()
    frames = [orjson.dumps([{"T": "q", "S": "A", "n": i}]).decode() for i in range(50)]
    for i, f in enumerate(frames):
        rec.frame(f, T0 + i)
    wait_for(lambda: rec.queued_bytes == 0, 10, "the writer to take the frames")
    assert list(iter_recording(tmp_path)) == []  # in the writer's buffer, not yet flushed
    rec.close()
    assert [r.payload for r in iter_recording(tmp_path)] == frames
    assert m.recorded_frames == 50 and m.record_queue_bytes == 0
    rec.frame("[]", T0 + 99)  # after close: not recorded, counted
    assert m.record_dropped_queue_full == 1


def test_a_failed_write_is_counted_and_marked_and_the_next_segment_resumes(tmp_path):
    m = ForwarderMetrics()
    directory = tmp_path / "rec"
    # every flush closes its segment (64 KiB rotation, 70 KB frames), the next opens one
    rec = FrameRecorder(str(directory), META, m, rotate_bytes=1 << 16, flush_s=0.05).start()
    big = random.Random(1).randbytes(70_000)  # noise: stays 70 KB compressed
    rec.frame(big, T0)
    wait_for(lambda: m.recorded_frames == 1, 10, "the first frame on disk")
    shutil.rmtree(directory)  # the next segment cannot be created
    rec.frame(big, T0 + 1)
    wait_for(lambda: m.record_dropped_write_error == 1, 10, "the failed write to be counted")
    directory.mkdir()
    rec.frame(big, T0 + 2)
    rec.close()
    got = list(iter_recording(directory))
    assert [(r.receive_ns, r.kind) for r in got] == [
        (T0 + 1, RecordKind.LOSS),
        (T0 + 2, RecordKind.BINARY),
    ]
    info = got[0].info()
    assert info["reason"] == "write_error" and info["frames"] == 1
    assert (info["from_ns"], info["to_ns"]) == (T0 + 1, T0 + 1)
    assert (
        metric(m, "torghut_forwarder_record_dropped_frames_total", {"reason": "write_error"}) == 1
    )


def test_an_unwritable_directory_fails_the_start_naming_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rec = FrameRecorder(str(blocker / "rec"), META, ForwarderMetrics())
    with pytest.raises(RecordingError, match="recording directory"):
        rec.start()


def test_recording_settings_are_checked_against_each_other():
    base = dict(alpaca_url="ws://127.0.0.1:1/v2/iex", record_dir="/tmp/x")
    s = ForwarderSettings(**base)
    assert s.record_rotate_bytes == 256 << 20 and s.record_max_bytes == 0
    with pytest.raises(ValidationError, match="TORGHUT_FWD_RECORD_MAX_BYTES=1000000 is below"):
        ForwarderSettings(**base, record_max_bytes=1_000_000, record_rotate_bytes=2_000_000)
    rec = FrameRecorder.from_settings(
        ForwarderSettings(
            alpaca_url="wss://user:pw@stream.example/v2/sip?x=1", symbols="AAPL,MSFT"
        ),
        ForwarderMetrics(),
        started_ns=T0,
    )
    assert rec.metadata["url"] == "wss://stream.example/v2/sip"
    assert rec.metadata["symbols"] == ["AAPL", "MSFT"] and rec.metadata["started_ns"] == T0
    assert rec.metadata["feed"] == "sip" and rec.metadata["wire_format"] == "msgpack"
