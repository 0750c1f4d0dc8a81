"""Frame recordings: every WebSocket frame a stream sent, byte for byte, with its receive time.

A recording is a directory of segment files ``rec-<UTC yyyymmddTHHMMSS>-<n>.tfr.zst``
(the time the segment was opened, ``n`` counting up across runs in that directory). A
segment is a plain concatenation of zstd frames (``zstd -d`` reads it); decompressed it is

    header   magic b"TFREC\\r\\n\\x1a" (8) | format version u16 | metadata length u32 | JSON
    records  receive_ns u64 | kind u8 | length u32 | bytes          (all little endian)

The metadata names the source (URL without credentials, feed, wire format, symbols,
channels, the writer's start time). Record kinds (``RecordKind``): 0 a text frame (its
UTF-8 bytes), 1 a binary frame, 2 a session marker (JSON, e.g. ``{"event": "subscribed",
"attempt": 0}``), 3 a loss marker (JSON: frames that never reached the recording here).

The writer (``RecordingWriter``, one thread) ends a zstd frame at every flush, and flushes
at least every ``flush_s`` and at close; a record never spans two zstd frames. A crash
therefore loses at most the unflushed tail, and a segment cut short (a crash, a full disk)
reads up to its last complete zstd frame: ``iter_recording`` reports the cut tail as a
warning. Damage anywhere else is a ``RecordingFormatError`` naming the file, the byte
offset and how to keep the records before it. Segments rotate by size and age; with
``max_bytes`` the oldest segments are deleted.

Pure: no forwarder imports (the forwarder writes, the simulator and tools read).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import msgpack
import orjson
import zstandard

log = logging.getLogger("shared.recording")

MAGIC = b"TFREC\r\n\x1a"
FORMAT_VERSION = 1
SUFFIX = ".tfr.zst"
_HEADER = struct.Struct("<8sHI")  # magic, format version, metadata length
_RECORD = struct.Struct("<QBI")  # receive_ns, kind, length
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SEGMENT = re.compile(r"^rec-(\d{8}T\d{6})-(\d+)\.tfr\.zst$")
_GLOB_CHARS = re.compile(r"[*?\[]")
_READ_CHUNK = 1 << 20
MAX_RECORD_BYTES = 0xFFFFFFFF

Warn = Callable[[str], None]


class RecordKind(IntEnum):
    TEXT = 0  # a text frame: its UTF-8 bytes
    BINARY = 1  # a binary frame
    SESSION = 2  # a session marker (JSON object)
    LOSS = 3  # frames lost here (JSON object: frames, bytes, from_ns, to_ns, reason)


FRAME_KINDS = (RecordKind.TEXT, RecordKind.BINARY)


class RecordingError(Exception):
    """A recording cannot be written or read; the message names the path and what to do."""


class RecordingNotFoundError(RecordingError):
    """The path names no recording (no directory of segments, no segment, no glob match)."""


class RecordingFormatError(RecordingError):
    """A segment is damaged (not a truncated tail): ``path``, ``offset`` (file byte offset
    of the zstd frame where reading failed) and ``detail``."""

    def __init__(self, path: Path, offset: int, detail: str, *, hint: str | None = None) -> None:
        self.path, self.offset, self.detail = path, offset, detail
        if hint is None:
            hint = (
                f"the records before byte {offset} are intact: keep them with "
                f"`head -c {offset} {path} > {path.name}.repaired` and move the damaged file "
                "out of the recording"
                if offset > 0
                else "this file holds nothing readable; move it out of the recording"
            )
        super().__init__(f"recording segment {path} is corrupt at byte {offset}: {detail}; {hint}")


class RecordingWriteError(RecordingError):
    """Writing a segment failed (disk full, permissions): the ``frames_lost`` frames of the
    failed flush (received from ``first_ns`` to ``last_ns``) are gone; the next flush opens
    a new segment."""

    def __init__(self, message: str, frames_lost: int, first_ns: int, last_ns: int) -> None:
        super().__init__(message)
        self.frames_lost = frames_lost
        self.first_ns, self.last_ns = first_ns, last_ns  # their receive-time range


@dataclass(frozen=True, slots=True)
class Record:
    """One record: a frame exactly as received, or a marker."""

    receive_ns: int
    kind: RecordKind
    data: bytes

    @property
    def is_frame(self) -> bool:
        return self.kind <= RecordKind.BINARY

    @property
    def binary(self) -> bool:
        return self.kind == RecordKind.BINARY

    @property
    def payload(self) -> str | bytes:
        """The frame as the WebSocket client delivered it: ``str`` text, ``bytes`` binary."""
        return self.data.decode("utf-8") if self.kind == RecordKind.TEXT else self.data

    def info(self) -> dict[str, Any]:
        """A marker's JSON object (session or loss marker)."""
        if self.is_frame:
            raise ValueError("a frame record has no marker info")
        value = orjson.loads(self.data)
        return value if isinstance(value, dict) else {"value": value}


@dataclass(frozen=True)
class SegmentHeader:
    path: Path
    version: int
    metadata: dict[str, Any]


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (nothing secret goes into a header)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def encode_header(metadata: Mapping[str, Any]) -> bytes:
    meta = orjson.dumps(dict(metadata), option=orjson.OPT_SORT_KEYS)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(meta)) + meta


def encode_record(receive_ns: int, kind: int, data: bytes) -> bytes:
    return _RECORD.pack(receive_ns, kind, len(data)) + data


# --- writing --------------------------------------------------------------------------


def segment_name(opened_ns: int, n: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(opened_ns // 1_000_000_000))
    return f"rec-{stamp}-{n:04d}{SUFFIX}"


def _segment_key(path: Path) -> tuple[int, str, int, str]:
    m = _SEGMENT.match(path.name)
    if m is None:  # a renamed segment: after the named ones, by name
        return (1, "", 0, path.name)
    return (0, m.group(1), int(m.group(2)), path.name)


def list_segments(directory: Path) -> list[Path]:
    """The segments of a directory in recording order (open time, then number)."""
    return sorted(
        (p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file()),
        key=_segment_key,
    )


class RecordingWriter:
    """Appends records to a rotating set of segments in ``directory`` (one thread only).

    ``write`` buffers; ``flush`` compresses the buffer into one zstd frame and writes it;
    ``maybe_flush`` flushes when ``flush_s`` passed since the last flush (call it at least
    that often). Rotation happens at a flush: a segment of ``rotate_bytes`` or older than
    ``rotate_s`` is closed and the next flush opens the next one. With ``max_bytes`` > 0 the
    oldest segments of the directory are deleted while all of them together are larger
    (the open segment is never deleted). The first segment is opened by the constructor, so
    a directory that cannot be written fails there.
    """

    def __init__(
        self,
        directory: str | Path,
        metadata: Mapping[str, Any],
        *,
        rotate_bytes: int = 256 << 20,
        rotate_s: float = 3600.0,
        max_bytes: int = 0,
        flush_s: float = 1.0,
        buffer_bytes: int = 4 << 20,
        level: int = 3,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if rotate_bytes <= 0 or rotate_s <= 0 or flush_s <= 0 or max_bytes < 0:
            raise ValueError("rotate_bytes, rotate_s and flush_s must be > 0, max_bytes >= 0")
        self.directory = Path(directory)
        self.metadata = dict(metadata)
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self.buffer_bytes = buffer_bytes
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        self._clock_ns = clock_ns
        self._monotonic = monotonic
        self._buf = bytearray()
        self._buffered = 0  # records in the buffer
        self._buffered_frames = 0  # frame records among them
        self._buf_first_ns = self._buf_last_ns = 0  # receive-time range of the buffer
        self._file: IO[bytes] | None = None
        self._opened_at = 0.0
        self._last_flush = monotonic()
        self.path: Path | None = None  # the open segment
        self.segment_bytes = 0  # bytes written to the open segment
        self.frames_written = 0  # frame records in flushed zstd frames
        self.records_written = 0
        self.bytes_written = 0  # compressed bytes written, headers included
        self.segments = 0  # segment files in the directory (after retention)
        self.deleted: list[Path] = []  # segments retention removed
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(
                f"cannot create the recording directory {self.directory}: {exc}; "
                "point the recording at a writable directory"
            ) from exc
        existing = list_segments(self.directory)
        numbers = [int(m.group(2)) for p in existing if (m := _SEGMENT.match(p.name))]
        self._next_n = max(numbers, default=-1) + 1
        self.segments = len(existing)
        try:
            self._open()
        except OSError as exc:
            raise RecordingError(
                f"cannot write a segment in {self.directory}: {exc}; "
                "point the recording at a writable directory"
            ) from exc
        self._retain()

    # records -------------------------------------------------------------------------

    def write(self, receive_ns: int, kind: int, data: bytes) -> None:
        """Buffer one record; a full buffer is flushed (may raise ``RecordingWriteError``)."""
        if len(data) > MAX_RECORD_BYTES:
            raise ValueError(f"a record holds at most {MAX_RECORD_BYTES} bytes")
        if not self._buf:
            self._buf_first_ns = receive_ns
        self._buf_last_ns = receive_ns
        self._buf += _RECORD.pack(receive_ns, kind, len(data))
        self._buf += data
        self._buffered += 1
        if kind <= RecordKind.BINARY:
            self._buffered_frames += 1
        if len(self._buf) >= self.buffer_bytes:
            self.flush()

    def maybe_flush(self) -> bool:
        """Flush when ``flush_s`` passed since the last flush; True when it did."""
        if self._monotonic() - self._last_flush < self.flush_s:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """End a zstd frame with everything buffered and write it (nothing buffered: no-op)."""
        self._last_flush = self._monotonic()
        if not self._buf:
            return
        frames, records = self._buffered_frames, self._buffered
        data = self._cctx.compress(bytes(self._buf))
        self._buf.clear()
        self._buffered = self._buffered_frames = 0
        try:
            if self._file is not None and self._due():
                self._close_segment()
            if self._file is None:
                self._open()
                self._retain()
            assert self._file is not None
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            path = self.path
            self._abandon()
            raise RecordingWriteError(
                f"writing the recording segment {path} failed: {exc}; {frames} frames are "
                "not in the recording (the next flush starts a new segment)",
                frames,
                self._buf_first_ns,
                self._buf_last_ns,
            ) from exc
        self.segment_bytes += len(data)
        self.bytes_written += len(data)
        self.frames_written += frames
        self.records_written += records
        if self.segment_bytes >= self.rotate_bytes:
            self._close_segment()

    def close(self) -> None:
        """Flush and close the open segment (idempotent)."""
        try:
            self.flush()
        finally:
            self._close_segment()

    # segments ------------------------------------------------------------------------

    def _due(self) -> bool:
        return (
            self.segment_bytes >= self.rotate_bytes
            or self._monotonic() - self._opened_at >= self.rotate_s
        )

    def _open(self) -> None:
        opened_ns = self._clock_ns()
        n = self._next_n
        path = self.directory / segment_name(opened_ns, n)
        meta = {**self.metadata, "segment": n, "opened_ns": opened_ns}
        header = self._cctx.compress(encode_header(meta))
        fh = path.open("xb")
        try:
            # held while the segment is open: replays skip a segment still being written
            # (segment_in_use), e.g. by a forwarder recording the replay into the same dir
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fh.write(header)
            fh.flush()
        except OSError:
            fh.close()
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._next_n = n + 1
        self._file, self.path = fh, path
        self._opened_at = self._monotonic()
        self.segment_bytes = len(header)
        self.bytes_written += len(header)
        self.segments += 1

    def _close_segment(self) -> None:
        fh, self._file = self._file, None
        if fh is None:
            return
        try:
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            log.warning("could not sync recording segment %s: %s", self.path, exc)
        finally:
            fh.close()

    def _abandon(self) -> None:
        fh, self._file = self._file, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()

    def _retain(self) -> None:
        """Delete the oldest segments while the directory holds more than ``max_bytes``."""
        try:
            segments = list_segments(self.directory)
            sizes = {p: p.stat().st_size for p in segments}
        except OSError as exc:
            log.warning("could not list recording segments in %s: %s", self.directory, exc)
            return
        self.segments = len(segments)
        if not self.max_bytes:
            return
        total = sum(sizes.values())
        for p in segments:
            if total <= self.max_bytes or p == self.path:
                break
            try:
                p.unlink()
            except OSError as exc:
                log.warning("could not delete recording segment %s: %s", p, exc)
                break
            total -= sizes[p]
            self.segments -= 1
            self.deleted.append(p)
            log.info("recording retention: deleted %s (%d bytes)", p, sizes[p])


# --- reading --------------------------------------------------------------------------


def segment_paths(path: str | Path) -> list[Path]:
    """The segments ``path`` names, in recording order: a directory (its ``*.tfr.zst``),
    one segment file, or a glob pattern (``rec-20250101*.tfr.zst``)."""
    p = Path(path)
    if p.is_dir():
        found = list_segments(p)
        if not found:
            raise RecordingNotFoundError(
                f"{p} holds no recording segments (rec-*{SUFFIX}); record with "
                "TORGHUT_FWD_RECORD_DIR set, or name a segment file or a glob"
            )
        return found
    if p.is_file():
        return [p]
    if _GLOB_CHARS.search(str(path)):
        matched = [Path(m) for m in glob.glob(str(path)) if Path(m).is_file()]
        if matched:
            return sorted(matched, key=_segment_key)
        raise RecordingNotFoundError(
            f"the pattern {path} matches no file; quote it so the shell does not expand it"
        )
    raise RecordingNotFoundError(
        f"{path} does not exist; expected a directory of rec-*{SUFFIX} segments, one segment "
        "file, or a glob pattern"
    )


def segment_in_use(path: Path) -> bool:
    """True while a ``RecordingWriter`` (in any process) still writes this segment."""
    try:
        with path.open("rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            except OSError:
                return False
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def is_recording(path: str | Path) -> bool:
    """True when ``path`` names a frame recording (by content: a zstd frame starting with
    the header magic), False for anything else (e.g. a JSONL file)."""
    try:
        paths = segment_paths(path)
    except RecordingError:
        return False
    first = paths[0]
    try:
        with first.open("rb") as fh:
            head = fh.read(64 << 10)
    except OSError:
        return False
    if not head.startswith(_ZSTD_MAGIC):
        return False
    try:
        out = zstandard.ZstdDecompressor().decompressobj().decompress(head)
    except zstandard.ZstdError:
        return False
    return out.startswith(MAGIC) or (not out and first.name.endswith(SUFFIX))


def _zstd_frames(path: Path, warn: Warn) -> Iterator[tuple[int, bytes]]:
    """(file offset, decompressed bytes) of every complete zstd frame of one file; a cut
    last frame is a warning."""
    dctx = zstandard.ZstdDecompressor()
    with path.open("rb") as fh:
        start = 0  # file offset of the frame being read
        pos = 0  # file offset after the bytes fed so far
        obj = dctx.decompressobj()
        out: list[bytes] = []
        while chunk := fh.read(_READ_CHUNK):
            pos += len(chunk)
            data = chunk
            while data:
                try:
                    out.append(obj.decompress(data))
                except zstandard.ZstdError as exc:
                    raise RecordingFormatError(path, start, f"zstd: {exc}") from None
                if not obj.eof:
                    break
                data = obj.unused_data
                yield start, b"".join(out)
                start = pos - len(data)
                obj, out = dctx.decompressobj(), []
        if start < pos:
            warn(
                f"{path}: truncated at byte {pos} (a write was cut short, e.g. by a crash); "
                f"read up to byte {start}, the last complete zstd frame"
            )


def _iter_segment(
    path: Path, warn: Warn, header: list[SegmentHeader] | None = None
) -> Iterator[Record]:
    first = True
    for n, (offset, buf) in enumerate(_zstd_frames(path, warn), 1):
        view = memoryview(buf)
        p = 0
        if first:
            first = False
            if len(buf) < _HEADER.size or buf[:8] != MAGIC:
                raise RecordingFormatError(
                    path,
                    offset,
                    "not a torghut frame recording (no TFREC header)",
                    hint="name a recording segment (rec-*.tfr.zst) or its directory",
                )
            _magic, version, meta_len = _HEADER.unpack_from(buf, 0)
            if version > FORMAT_VERSION:
                raise RecordingFormatError(
                    path,
                    offset,
                    f"format version {version} is newer than this reader ({FORMAT_VERSION})",
                    hint="read it with a newer torghut",
                )
            p = _HEADER.size + meta_len
            if p > len(buf):
                raise RecordingFormatError(path, offset, "header metadata cut short")
            try:
                meta = orjson.loads(view[_HEADER.size : p])
            except orjson.JSONDecodeError as exc:
                raise RecordingFormatError(path, offset, f"header metadata: {exc}") from None
            if header is not None:
                header.append(SegmentHeader(path, version, meta if isinstance(meta, dict) else {}))
        end = len(buf)
        while p < end:
            if p + _RECORD.size > end:
                raise RecordingFormatError(
                    path, offset, f"zstd frame {n}: a record header cut short at offset {p}"
                )
            ns, kind, length = _RECORD.unpack_from(buf, p)
            p += _RECORD.size
            if kind > RecordKind.LOSS:
                raise RecordingFormatError(
                    path, offset, f"zstd frame {n}: unknown record kind {kind} at offset {p - 13}"
                )
            if p + length > end:
                raise RecordingFormatError(
                    path,
                    offset,
                    f"zstd frame {n}: a record of {length} bytes runs past the frame's end "
                    f"(offset {p - 13})",
                )
            yield Record(ns, RecordKind(kind), bytes(view[p : p + length]))
            p += length
    if first:
        warn(f"{path}: empty segment (the writer stopped before its header was written)")


def _log_warning(text: str) -> None:
    log.warning("%s", text)


def iter_recording(
    path: str | Path,
    *,
    on_warning: Warn | None = None,
    headers: list[SegmentHeader] | None = None,
) -> Iterator[Record]:
    """Every record of a recording (a directory, one segment or a glob), segment by
    segment in order. A segment cut short yields its complete part and calls
    ``on_warning`` (default: a log warning); damage raises ``RecordingFormatError``.
    ``headers`` (a list) receives each segment's header as it is read."""
    warn = on_warning or _log_warning
    for segment in segment_paths(path):
        yield from _iter_segment(segment, warn, headers)


def read_header(path: str | Path) -> SegmentHeader:
    """The header of one segment (the first of a directory or glob)."""
    first = segment_paths(path)[0]
    found: list[SegmentHeader] = []
    for _ in _iter_segment(first, lambda _t: None, found):
        break
    if not found:
        raise RecordingFormatError(first, 0, "no header (empty or cut before its header)")
    return found[0]


def recording_wire_format(path: str | Path) -> str | None:
    """``msgpack`` or ``json``: what the recorded stream spoke (the header's ``wire_format``,
    else the kind of the first frame), so a replay's client can ask for the same encoding
    and get the frames byte for byte. None when ``path`` is no readable recording or holds
    no frame to tell."""
    try:
        if not is_recording(path):
            return None
        wire = read_header(path).metadata.get("wire_format")
        if wire in ("msgpack", "json"):
            return str(wire)
        for rec in iter_recording(path, on_warning=lambda _text: None):
            if rec.is_frame:
                return "msgpack" if rec.binary else "json"
    except (RecordingError, OSError):
        return None
    return None


# --- frames and summaries -------------------------------------------------------------


def decode_frame(record: Record) -> list[Any]:
    """The messages of a frame record: msgpack (binary) or JSON (text), ``t`` as the wire
    had it (msgpack ``Timestamp`` or RFC 3339 string). Raises ValueError when the frame is
    not an array (a malformed frame: the forwarder rejects it)."""
    try:
        if record.kind == RecordKind.BINARY:
            value = msgpack.unpackb(record.data, strict_map_key=False)
        else:
            value = orjson.loads(record.data)
    except (
        ValueError,  # UnicodeDecodeError, orjson's JSONDecodeError, msgpack's ExtraData ...
        TypeError,  # e.g. a msgpack map key that is itself a map
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise ValueError(f"undecodable frame ({type(exc).__name__}: {exc})"[:300]) from None
    if not isinstance(value, list):
        raise ValueError(f"frame holds a {type(value).__name__}, not an array of messages")
    return value


@dataclass
class RecordingSummary:
    """What a recording holds (``summarize``)."""

    files: list[Path] = field(default_factory=list)
    bytes: int = 0  # on disk (compressed)
    frame_bytes: int = 0  # the frames' own bytes
    frames: int = 0
    text_frames: int = 0
    binary_frames: int = 0
    undecodable_frames: int = 0
    session_markers: int = 0
    sessions: Counter[str] = field(default_factory=Counter)  # session marker events
    loss_markers: int = 0
    lost_frames: int = 0  # frames the loss markers say are missing
    messages: Counter[str] = field(default_factory=Counter)  # by Alpaca type T
    symbols: set[str] = field(default_factory=set)
    first_ns: int | None = None
    last_ns: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the first segment's header
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "bytes": self.bytes,
            "frame_bytes": self.frame_bytes,
            "frames": self.frames,
            "text_frames": self.text_frames,
            "binary_frames": self.binary_frames,
            "undecodable_frames": self.undecodable_frames,
            "session_markers": self.session_markers,
            "sessions": dict(self.sessions),
            "loss_markers": self.loss_markers,
            "lost_frames": self.lost_frames,
            "messages": dict(sorted(self.messages.items())),
            "symbols": sorted(self.symbols),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "metadata": self.metadata,
            "warnings": list(self.warnings),
        }


def summarize(path: str | Path, *, decode: bool = True) -> RecordingSummary:
    """Frames, markers, messages by type and symbols (``decode``), receive-time range,
    files and bytes of a recording; truncated tails are listed in ``warnings``."""
    s = RecordingSummary()
    s.files = segment_paths(path)
    s.bytes = sum(p.stat().st_size for p in s.files)
    headers: list[SegmentHeader] = []
    for segment in s.files:
        for rec in _iter_segment(segment, s.warnings.append, headers):
            _account(s, rec, decode)
    if headers:
        s.metadata = headers[0].metadata
    return s


def _account(s: RecordingSummary, rec: Record, decode: bool) -> None:
    if rec.is_frame:
        s.frames += 1
        s.frame_bytes += len(rec.data)
        if rec.binary:
            s.binary_frames += 1
        else:
            s.text_frames += 1
        if s.first_ns is None:
            s.first_ns = rec.receive_ns
        s.last_ns = rec.receive_ns
        if decode:
            try:
                msgs = decode_frame(rec)
            except ValueError:
                s.undecodable_frames += 1
                return
            _count(s, msgs)
        return
    try:
        info = rec.info()
    except ValueError:
        info = {}
    if rec.kind == RecordKind.SESSION:
        s.session_markers += 1
        s.sessions[str(info.get("event", "?"))] += 1
    else:
        s.loss_markers += 1
        frames = info.get("frames")
        s.lost_frames += frames if isinstance(frames, int) else 0


def _count(s: RecordingSummary, msgs: Iterable[Any]) -> None:
    for m in msgs:
        if isinstance(m, dict):
            t = m.get("T")
            s.messages[t if isinstance(t, str) else "?"] += 1
            sym = m.get("S")
            if isinstance(sym, str):
                s.symbols.add(sym)
        else:
            s.messages["?"] += 1
