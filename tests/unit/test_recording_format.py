"""The frame recording format (shared/recording.py): byte-exact round trips, rotation by size
and by age, retention, a cut tail readable up to its last flush, damage named by file and
offset, and the directory / file / glob forms of a recording's path."""

from __future__ import annotations

import os
import random
from pathlib import Path

import msgpack
import orjson
import pytest
import zstandard

from shared.recording import (
    MAGIC,
    SUFFIX,
    RecordingError,
    RecordingFormatError,
    RecordingNotFoundError,
    RecordingWriter,
    RecordKind,
    is_recording,
    iter_recording,
    read_header,
    recording_wire_format,
    redact_url,
    segment_in_use,
    segment_paths,
    summarize,
)

META = {"url": "ws://127.0.0.1:1/v2/iex", "feed": "iex", "wire_format": "msgpack"}


class Clock:
    """An explicit monotonic clock for the writer's flush and rotation ages."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frames(n: int, size: int = 100) -> list[tuple[int, RecordKind, bytes]]:
    """Binary frames with ``size`` bytes of noise each (noise does not compress)."""
    rng = random.Random(n)
    out = []
    for i in range(n):
        pad = rng.randbytes(size)
        body = msgpack.packb([{"T": "t", "S": f"S{i % 3}", "i": i, "p": 1.5, "pad": pad}])
        out.append((1_700_000_000_000_000_000 + i * 1000, RecordKind.BINARY, body))
    return out


def write_all(directory: Path, records, flush_every: int = 1, **kw) -> RecordingWriter:
    w = RecordingWriter(directory, META, **kw)
    for n, (ns, kind, data) in enumerate(records, 1):
        w.write(ns, kind, data)
        if n % flush_every == 0:
            w.flush()
    w.close()
    return w


def test_text_and_binary_frames_round_trip_byte_exact_with_markers_and_header(tmp_path):
    text = '[{"T":"t","S":"ÄPL","t":"2024-03-01T14:30:00.123456789Z","c":["@","€"]}]'
    binary = bytes(range(256)) * 3  # not even msgpack: recorded as received
    records = [
        (5, RecordKind.SESSION, orjson.dumps({"event": "subscribed", "attempt": 0})),
        (10, RecordKind.TEXT, text.encode()),
        (11, RecordKind.BINARY, binary),
        (12, RecordKind.BINARY, b""),
        (13, RecordKind.LOSS, orjson.dumps({"event": "frames_lost", "frames": 2})),
        (2**64 - 1, RecordKind.TEXT, b"[]"),
    ]
    write_all(tmp_path, records, flush_every=2)
    got = list(iter_recording(tmp_path))
    assert [(r.receive_ns, r.kind, r.data) for r in got] == records
    assert got[1].payload == text and isinstance(got[1].payload, str)  # as websockets gave it
    assert got[2].payload == binary and got[2].binary
    assert got[0].info() == {"event": "subscribed", "attempt": 0}
    assert got[4].info()["frames"] == 2
    header = read_header(tmp_path)
    assert header.version == 1 and header.metadata["url"] == META["url"]
    assert header.metadata["segment"] == 0 and header.metadata["opened_ns"] > 0
    # the file is plain zstd: `zstd -d` gives header + records
    raw = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True)
    plain = raw.decompress(segment_paths(tmp_path)[0].read_bytes())
    assert plain.startswith(MAGIC) and text.encode() in plain


def test_segments_rotate_by_size_and_read_back_in_order(tmp_path):
    records = frames(40, size=400)
    w = write_all(tmp_path, records, rotate_bytes=2000)
    files = segment_paths(tmp_path)
    assert len(files) >= 5 and w.segments == len(files)
    assert all(f.name.startswith("rec-") and f.name.endswith(SUFFIX) for f in files)
    # every segment but the last reached the size, and holds whole flushes only
    assert all(f.stat().st_size >= 2000 for f in files[:-1])
    got = list(iter_recording(tmp_path))
    assert [(r.receive_ns, r.kind, r.data) for r in got] == records
    assert [read_header(f).metadata["segment"] for f in files] == list(range(len(files)))


def test_segments_rotate_by_age(tmp_path):
    clock = Clock()
    w = RecordingWriter(tmp_path, META, rotate_s=10, flush_s=1, monotonic=clock)
    records = frames(6)
    for ns, kind, data in records:
        w.write(ns, kind, data)
        clock.now += 4  # every 4 s: a segment takes at most 10 s
        assert w.maybe_flush()
    w.close()
    files = segment_paths(tmp_path)
    per_file = [len(list(iter_recording(f))) for f in files]
    assert len(files) == 3 and sum(per_file) == 6, per_file
    assert [(r.receive_ns, r.data) for r in iter_recording(tmp_path)] == [
        (ns, d) for ns, _, d in records
    ]


def test_maybe_flush_ends_a_zstd_frame_once_a_second(tmp_path):
    clock = Clock()
    w = RecordingWriter(tmp_path, META, flush_s=1.0, monotonic=clock)
    (ns, kind, data), second = frames(2)
    w.write(ns, kind, data)
    clock.now += 0.5
    assert not w.maybe_flush()
    assert list(iter_recording(tmp_path)) == []  # buffered, not flushed yet
    clock.now += 0.6
    assert w.maybe_flush() and w.frames_written == 1
    assert [r.data for r in iter_recording(tmp_path)] == [data]
    w.write(*second)
    w.close()
    assert len(list(iter_recording(tmp_path))) == 2


def test_retention_deletes_the_oldest_segments_over_max_bytes(tmp_path):
    records = frames(60, size=400)
    w = write_all(tmp_path, records, rotate_bytes=2000, max_bytes=6000)
    files = segment_paths(tmp_path)
    assert w.deleted and all(not p.exists() for p in w.deleted)
    # what is left fits (the open segment, written after the last check, may add one more)
    assert sum(f.stat().st_size for f in files[:-1]) <= 6000
    got = [(r.receive_ns, r.data) for r in iter_recording(tmp_path)]
    tail = [(ns, d) for ns, _, d in records][-len(got) :]
    assert got == tail and len(got) < len(records)  # the newest frames, none missing
    # a new writer in the same directory continues the numbering
    w2 = RecordingWriter(tmp_path, META)
    w2.close()
    assert (
        read_header(w2.path).metadata["segment"] == read_header(files[-1]).metadata["segment"] + 1
    )
    assert segment_paths(tmp_path)[-1] == w2.path


def test_a_segment_cut_short_reads_to_its_last_flush_and_warns(tmp_path):
    records = frames(10)
    w = RecordingWriter(tmp_path, META)
    for ns, kind, data in records[:6]:
        w.write(ns, kind, data)
        w.flush()
    path = w.path
    assert path is not None
    whole = path.stat().st_size
    w.write(*records[6])
    w.flush()
    # a crash in the middle of writing the 7th flush: part of its zstd frame is on disk
    with path.open("r+b") as fh:
        fh.truncate(whole + (path.stat().st_size - whole) // 2)
    warnings: list[str] = []
    got = list(iter_recording(path, on_warning=warnings.append))
    assert [r.data for r in got] == [d for _, _, d in records[:6]]
    assert len(warnings) == 1 and str(path) in warnings[0] and "truncated" in warnings[0]
    assert f"up to byte {whole}" in warnings[0]
    summary = summarize(tmp_path)
    assert summary.frames == 6 and summary.warnings == warnings
    # an empty segment (a crash before the header): a warning, not an error
    (tmp_path / f"rec-20990101T000000-9999{SUFFIX}").write_bytes(b"")
    warnings.clear()
    assert len(list(iter_recording(tmp_path, on_warning=warnings.append))) == 6
    assert any("empty segment" in w for w in warnings)


def test_a_damaged_segment_is_an_error_naming_the_file_and_byte_offset(tmp_path):
    records = frames(5)
    w = RecordingWriter(tmp_path, META)
    offsets = []
    for ns, kind, data in records:
        offsets.append(w.segment_bytes)  # where the next zstd frame starts
        w.write(ns, kind, data)
        w.flush()
    w.close()
    path = w.path
    assert path is not None
    blob = bytearray(path.read_bytes())
    blob[offsets[3] + 12] ^= 0xFF  # inside the 4th frame's compressed block or checksum
    path.write_bytes(bytes(blob))
    got = []
    with pytest.raises(RecordingFormatError) as err:
        for r in iter_recording(tmp_path):
            got.append(r.data)
    assert err.value.path == path and err.value.offset == offsets[3]
    text = str(err.value)
    assert str(path) in text and f"byte {offsets[3]}" in text and "head -c" in text
    assert got == [d for _, _, d in records[:3]]  # everything before the damage was read
    # the advice works: cut at the offset, and the rest reads cleanly
    os.truncate(path, offsets[3])
    assert [r.data for r in iter_recording(path)] == [d for _, _, d in records[:3]]


def test_a_file_that_is_not_a_recording_is_refused_naming_it(tmp_path):
    jsonl = tmp_path / "msgs.jsonl"
    jsonl.write_text('{"T":"t"}\n')
    with pytest.raises(RecordingFormatError, match=r"msgs\.jsonl is corrupt at byte 0"):
        list(iter_recording(jsonl))
    assert not is_recording(jsonl)
    other = tmp_path / "other.zst"
    other.write_bytes(zstandard.ZstdCompressor().compress(b"hello world, not a recording"))
    with pytest.raises(RecordingFormatError, match="no TFREC header"):
        list(iter_recording(other))
    assert not is_recording(other)


def test_a_directory_a_file_and_a_glob_name_a_recording(tmp_path):
    records = frames(12, size=400)
    rec = tmp_path / "rec"
    write_all(rec, records, rotate_bytes=1500)
    files = segment_paths(rec)
    assert len(files) >= 3
    (rec / "notes.txt").write_text("ignored")
    assert is_recording(rec) and is_recording(files[1])
    assert is_recording(str(rec / "rec-*.tfr.zst"))
    every = [r.data for r in iter_recording(rec)]
    assert every == [d for _, _, d in records]
    assert [r.data for r in iter_recording(str(rec / f"rec-*{SUFFIX}"))] == every
    one = [r.data for r in iter_recording(files[1])]
    assert one and set(one) < set(every)
    # a glob of the last two segments only
    pattern = str(rec / "rec-*-000[1-9].tfr.zst")
    assert segment_paths(pattern) == files[1:]
    with pytest.raises(RecordingNotFoundError, match="matches no file"):
        segment_paths(str(rec / "rec-1999*.tfr.zst"))
    with pytest.raises(RecordingNotFoundError, match="does not exist"):
        segment_paths(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingNotFoundError, match="holds no recording segments"):
        segment_paths(tmp_path / "empty")


def test_summary_counts_frames_messages_symbols_markers_and_time_range(tmp_path):
    trade = msgpack.packb([{"T": "t", "S": "AAPL"}, {"T": "q", "S": "MSFT"}])
    text = orjson.dumps([{"T": "b", "S": "AAPL"}])
    records = [
        (100, RecordKind.SESSION, orjson.dumps({"event": "subscribed", "attempt": 0})),
        (200, RecordKind.BINARY, trade),
        (300, RecordKind.TEXT, text),
        (350, RecordKind.BINARY, b"\xc1garbage"),
        (400, RecordKind.LOSS, orjson.dumps({"event": "frames_lost", "frames": 7})),
        (500, RecordKind.SESSION, orjson.dumps({"event": "disconnected", "attempt": 0})),
    ]
    write_all(tmp_path, records)
    s = summarize(tmp_path)
    assert (s.frames, s.binary_frames, s.text_frames, s.undecodable_frames) == (3, 2, 1, 1)
    assert s.messages == {"t": 1, "q": 1, "b": 1}
    assert s.symbols == {"AAPL", "MSFT"}
    assert (s.first_ns, s.last_ns) == (200, 350)
    assert s.sessions == {"subscribed": 1, "disconnected": 1} and s.session_markers == 2
    assert (s.loss_markers, s.lost_frames) == (1, 7)
    assert s.bytes == sum(f.stat().st_size for f in s.files)
    assert s.frame_bytes == len(trade) + len(text) + 8
    assert s.metadata["feed"] == "iex" and s.warnings == []


def test_a_newer_format_version_is_refused_with_what_to_do(tmp_path):
    header = MAGIC + (2).to_bytes(2, "little") + (2).to_bytes(4, "little") + b"{}"
    path = tmp_path / f"rec-20250101T000000-0000{SUFFIX}"
    path.write_bytes(zstandard.ZstdCompressor().compress(header))
    with pytest.raises(RecordingFormatError, match=r"newer than this reader.*newer torghut"):
        list(iter_recording(path))


def test_a_directory_that_cannot_be_written_fails_at_the_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecordingError, match=r"cannot create the recording directory .*file/rec"):
        RecordingWriter(blocker / "rec", META)


def test_urls_lose_credentials_and_queries_in_the_header():
    assert redact_url("wss://user:pw@stream.example:443/v2/iex?key=s#x") == (
        "wss://stream.example:443/v2/iex"
    )
    assert redact_url("ws://127.0.0.1:8765/v2/test") == "ws://127.0.0.1:8765/v2/test"


def test_an_open_segment_is_in_use_until_its_writer_closes_it(tmp_path):
    w = RecordingWriter(tmp_path, META)
    first = w.path
    assert first is not None and segment_in_use(first)
    w.write(*frames(1)[0])
    w.flush()
    assert segment_in_use(first)  # readers may still read it (info, export)
    assert len(list(iter_recording(first))) == 1
    w.close()
    assert not segment_in_use(first)


def test_the_wire_format_comes_from_the_header_or_the_first_frame(tmp_path):
    write_all(tmp_path / "a", frames(2))
    assert recording_wire_format(tmp_path / "a") == "msgpack"
    w = RecordingWriter(tmp_path / "b", {"url": "ws://x/v2/iex"})  # a header that does not say
    w.write(1, RecordKind.SESSION, b"{}")
    w.write(2, RecordKind.TEXT, b"[]")
    w.close()
    assert recording_wire_format(tmp_path / "b") == "json"
    (tmp_path / "c.jsonl").write_text("{}\n")
    assert recording_wire_format(tmp_path / "c.jsonl") is None
    assert recording_wire_format(tmp_path / "missing") is None
