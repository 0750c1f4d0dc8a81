"""``FrameRecorder``: every WebSocket frame the forwarder reads, recorded exactly as received.

The stream hands each frame (raw ``str``/``bytes``, before decoding, validation or dedup)
with the ``ingest_ns`` the router stamps on its envelopes to ``frame()``, which only appends
a tuple to a bounded queue: compression and file I/O happen in a writer thread
(``shared.recording.RecordingWriter``: zstd segments, a zstd frame ended at least every
second, rotation by size and age, retention). The event loop never waits for the recording.

When the queue holds ``queue_bytes`` the frame is not recorded: the loss is counted
(``torghut_forwarder_record_dropped_frames_total{reason="queue_full"}``), logged when it
starts, and once a frame fits again a loss marker (kind 3) with the number of frames and
bytes and their receive-time range goes into the recording in their place. A failed write
(a full disk) loses that flush's frames the same way (``reason="write_error"``), and the
next flush starts a new segment. ``close()`` drains the queue, flushes and closes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import orjson

from forwarder.metrics import ForwarderMetrics
from forwarder.settings import ForwarderSettings
from shared.recording import (
    RecordingError,
    RecordingWriteError,
    RecordingWriter,
    RecordKind,
    redact_url,
)

log = logging.getLogger("forwarder.recorder")

_TEXT, _BINARY = int(RecordKind.TEXT), int(RecordKind.BINARY)
_SESSION, _LOSS = int(RecordKind.SESSION), int(RecordKind.LOSS)
WRITE_ERROR_LOG_S = 60.0  # at most one log line per this many seconds of write failures


class _Loss:
    """Frames not recorded since the last loss marker (owned by one thread)."""

    __slots__ = ("bytes", "first_ns", "frames", "last_ns")

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.first_ns = 0
        self.last_ns = 0

    def add(self, frames: int, nbytes: int, first_ns: int, last_ns: int) -> None:
        if not self.frames:
            self.first_ns = first_ns
        self.frames += frames
        self.bytes += nbytes
        self.last_ns = last_ns

    def marker(self, reason: str) -> bytes:
        info = {
            "event": "frames_lost",
            "reason": reason,
            "frames": self.frames,
            "bytes": self.bytes,
            "from_ns": self.first_ns,
            "to_ns": self.last_ns,
        }
        self.frames = self.bytes = 0
        return orjson.dumps(info)


class FrameRecorder:
    """Records frames and session markers into ``directory`` (``start()``, ``frame()``,
    ``marker()`` from the event loop's thread, ``close()``)."""

    def __init__(
        self,
        directory: str,
        metadata: Mapping[str, Any],
        metrics: ForwarderMetrics,
        *,
        rotate_bytes: int = 256 << 20,
        rotate_s: float = 3600.0,
        max_bytes: int = 0,
        queue_bytes: int = 64 << 20,
        flush_s: float = 1.0,
        poll_s: float = 0.05,
    ) -> None:
        self.directory = directory
        self.metadata = dict(metadata)
        self.metrics = metrics
        self.queue_bytes = queue_bytes
        self._writer_args: dict[str, Any] = dict(
            rotate_bytes=rotate_bytes, rotate_s=rotate_s, max_bytes=max_bytes, flush_s=flush_s
        )
        self._poll_s = min(poll_s, flush_s / 4)
        # (receive_ns, kind, data): data is the frame as received (str or bytes)
        self._queue: deque[tuple[int, int, Any]] = deque()
        # queued = _in - _out; each counter is written by one thread only
        self._in = 0  # event loop thread
        self._out = 0  # writer thread
        self._overflow = _Loss()  # event loop thread
        self._closed = False
        self._stop = threading.Event()
        self._writer: RecordingWriter | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the writer thread, if anything

    @classmethod
    def from_settings(
        cls, settings: ForwarderSettings, metrics: ForwarderMetrics, started_ns: int
    ) -> FrameRecorder:
        metadata = {
            "writer": "torghut-forwarder",
            "url": redact_url(settings.alpaca_url),
            "feed": settings.feed,
            "wire_format": settings.wire_format,
            "symbols": list(settings.symbols),
            "channels": list(settings.channels),
            "started_ns": started_ns,
            "host": socket.gethostname(),
        }
        return cls(
            settings.record_dir,
            metadata,
            metrics,
            rotate_bytes=settings.record_rotate_bytes,
            rotate_s=settings.record_rotate_s,
            max_bytes=settings.record_max_bytes,
            queue_bytes=settings.record_queue_bytes,
        )

    # --- lifecycle (any thread) ------------------------------------------------------

    def start(self) -> FrameRecorder:
        """Open the first segment (raises ``RecordingError`` naming the directory when it
        cannot be written) and start the writer thread."""
        self._writer = RecordingWriter(self.directory, self.metadata, **self._writer_args)
        self._publish(self._writer)
        log.info("recording every frame into %s (segment %s)", self.directory, self._writer.path)
        self._thread = threading.Thread(target=self._run, name="forwarder-recorder", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 20.0) -> None:
        """Record nothing more; write what is queued, flush and close (blocks: call it from
        a worker thread, e.g. ``asyncio.to_thread``)."""
        if self._overflow.frames and not self._closed:  # the stream has stopped: no race
            self._recovered(time.time_ns())
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error(
                    "the recording writer did not finish within %.0fs; the last frames may be "
                    "missing from %s",
                    timeout_s,
                    self.directory,
                )

    @property
    def queued_bytes(self) -> int:
        return self._in - self._out

    # --- the event loop's side (hot path) --------------------------------------------

    def frame(self, raw: str | bytes, receive_ns: int) -> None:
        """One frame exactly as received; never blocks."""
        n = len(raw)
        if self._in - self._out + n > self.queue_bytes or self._closed:
            self._drop(n, receive_ns)
            return
        if self._overflow.frames:
            self._recovered(receive_ns)
        self._in += n
        self._queue.append((receive_ns, _TEXT if type(raw) is str else _BINARY, raw))

    def marker(self, info: Mapping[str, Any], receive_ns: int | None = None) -> None:
        """A session marker (kind 2), e.g. ``{"event": "subscribed", "attempt": 0}``."""
        if self._closed:
            return
        data = orjson.dumps(dict(info))
        self._in += len(data)
        self._queue.append((receive_ns or time.time_ns(), _SESSION, data))

    def _drop(self, n: int, receive_ns: int) -> None:
        loss = self._overflow
        if not loss.frames and not self._closed:
            log.warning(
                "recording queue full (%d bytes queued, TORGHUT_FWD_RECORD_QUEUE_BYTES=%d): "
                "frames are left out of the recording until the writer catches up (the "
                "stream to Kafka is not affected)",
                self._in - self._out,
                self.queue_bytes,
            )
        loss.add(1, n, receive_ns, receive_ns)
        self.metrics.record_dropped_queue_full += 1

    def _recovered(self, receive_ns: int) -> None:
        loss = self._overflow
        log.warning(
            "recording queue drained: %d frames (%d bytes) received from %d to %d (epoch "
            "ns) are not in the recording; a loss marker stands in their place",
            loss.frames,
            loss.bytes,
            loss.first_ns,
            loss.last_ns,
        )
        first_ns = loss.first_ns
        data = loss.marker("queue_full")
        self._in += len(data)
        self._queue.append((first_ns, _LOSS, data))

    # --- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        writer = self._writer
        assert writer is not None
        failed = _Loss()  # frames of failed writes, not yet marked
        last_error_log = -WRITE_ERROR_LOG_S
        while True:
            stopping = self._stop.is_set()
            try:
                self._drain(writer, failed)
                writer.maybe_flush()
                if stopping:
                    writer.close()
            except RecordingWriteError as exc:
                failed.add(exc.frames_lost, 0, exc.first_ns, exc.last_ns)
                self.metrics.record_dropped_write_error += exc.frames_lost
                now = time.monotonic()
                if now - last_error_log >= WRITE_ERROR_LOG_S:
                    last_error_log = now
                    log.error("%s", exc)
                if stopping:
                    with contextlib.suppress(RecordingError, OSError):
                        writer.close()
            except Exception as exc:  # a bug must not take the forwarder down
                self.error = exc
                log.exception("the recording writer failed; recording stops")
                self._closed = True
                return
            finally:
                self._publish(writer)
            if stopping:
                return
            self._stop.wait(self._poll_s)

    def _drain(self, writer: RecordingWriter, failed: _Loss) -> None:
        queue, out = self._queue, 0
        try:
            while queue:
                receive_ns, kind, data = queue.popleft()
                out += len(data)
                if failed.frames:
                    writer.write(failed.first_ns, _LOSS, failed.marker("write_error"))
                writer.write(receive_ns, kind, data.encode() if kind == _TEXT else data)
        finally:
            self._out += out

    def _publish(self, writer: RecordingWriter) -> None:
        m = self.metrics
        m.recorded_frames = writer.frames_written
        m.record_bytes = writer.bytes_written
        m.record_segments = writer.segments
        m.record_queue_bytes = self._in - self._out
