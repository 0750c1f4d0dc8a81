"""``Forwarder``: wires settings, registry, producer, seq recovery, the WebSocket stream and
the HTTP endpoints, and owns the lifecycle (start, run, SIGTERM flush, exit code)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from forwarder import memtrim
from forwarder.avro_writer import EnvelopeWriter
from forwarder.envelope import (
    CHANNEL_BY_TYPE,
    GAP_CHANNEL,
    SOURCE,
    STATUS_CHANNEL,
    gap_envelope,
    status_envelope,
)
from forwarder.exceptions import FatalStreamError, ForwarderError
from forwarder.gaps import GapTracker
from forwarder.heartbeat import EventClock, HeartbeatWriter
from forwarder.http import HealthServer
from forwarder.metrics import CHANNEL_INDEX, ForwarderMetrics
from forwarder.producer import EnvelopeProducer
from forwarder.reconnect import ReconnectPolicy
from forwarder.recorder import FrameRecorder
from forwarder.router import NATIVE, EnvelopeRouter, TraceIds, set_limits
from forwarder.sequence import SequenceNumbers, TailScan, scan_tail, seq_floor
from forwarder.settings import ForwarderSettings
from forwarder.ws_client import StockDataStream
from shared.envelope_layout import check_schema
from shared.logs import record_fields
from shared.registry import SchemaRegistryClient
from shared.schemas import schema_json
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import RAW_TOPICS, STATUS, TRADES

log = logging.getLogger("forwarder")

EXIT_OK = 0
EXIT_STARTUP = 1
EXIT_FATAL_STREAM = 2
EXIT_PRODUCER = 3
SHUTDOWN_FLUSH_S = 25.0  # inside the 30 s Kubernetes grace period
STATUS_IDX = CHANNEL_INDEX[STATUS_CHANNEL]
GAP_IDX = CHANNEL_INDEX[GAP_CHANNEL]
GC_THRESHOLD = (100_000, 50, 100)
#: record-level lines per gap (one per marker); the markers of further symbols are in the
#: gap's summary line and its status event
GAP_MARKER_LINES = 20


def tune_gc() -> tuple[int, int, int]:
    """The process-wide GC setting of ``torghut forwarder``: the hot path allocates
    short-lived objects by the million, so start-up objects are frozen out of collection
    and the young generation is collected every 100k allocations, not 700 (the router also
    pauses the collector while it routes a frame). Returns the previous thresholds."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    return previous


class Forwarder:
    """One Alpaca connection forwarded to Kafka. ``await run()`` returns the exit code."""

    def __init__(
        self, settings: ForwarderSettings, producer_config: Mapping[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.metrics = ForwarderMetrics()
        self.http_port: int | None = None
        self.exit_code: int | None = None
        self.started = threading.Event()
        self._producer_config = dict(producer_config or {})
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._producer: EnvelopeProducer | None = None
        self._stream: StockDataStream | None = None
        self._status_ser: AvroSerializer | None = None
        self._trades_ser: AvroSerializer | None = None  # gap markers (forwarder/gaps.py)
        self._gaps = GapTracker()
        self._gap_reason = ""
        # a restart gap's symbols from the Kafka tail -> their last trade's event time (ns)
        self._gap_symbols: dict[str, int] = {}
        self._tail_event_ns = 0  # the event time the Kafka tail had reached (restart gaps)
        self._clock: EventClock | None = None
        self._trace = TraceIds()
        self._seqs: SequenceNumbers | None = None
        self._heartbeats: HeartbeatWriter | None = None
        self._heartbeat = time.monotonic()
        self._phase = "starting"  # what start-up is doing (readiness says it)
        self._setup_cancelled = threading.Event()
        self._rejects: dict[str, tuple[float, int]] = {}  # reason -> (last report, suppressed)
        self._recorder: FrameRecorder | None = None  # TORGHUT_FWD_RECORD_DIR
        self._started_ns = time.time_ns()

    # --- lifecycle ---------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started_ns = time.time_ns()
        s = self.settings
        # the probes answer from the start: alive, and not ready while start-up waits (for an
        # unreachable schema registry up to TORGHUT_FWD_REGISTRY_WAIT_S)
        http = HealthServer(s.http_host, s.http_port, self.metrics.render, self.healthy, self.ready)
        self.http_port = await http.start()
        try:
            router = await self._start_up()
        except Exception as exc:
            await http.stop()
            self.started.set()
            if self._setup_cancelled.is_set():
                log.info("stopped during start-up")
                self.exit_code = EXIT_OK
                return EXIT_OK
            log.error("forwarder could not start: %s", exc)
            self.exit_code = EXIT_STARTUP
            return EXIT_STARTUP
        assert self._producer is not None
        policy = ReconnectPolicy(s.backoff_base_s, s.backoff_cap_s, s.conflict_backoff_s)
        self._stream = StockDataStream(s, self, policy, recorder=self._recorder)
        self._router = router
        self.metrics.sizes = router.sizes
        router.on_control = self._stream.on_control
        if s.wire_format == "msgpack" and not NATIVE:
            log.warning(
                "native fast path forwarder._fastroute not compiled: every frame takes the "
                "pure-Python router (~2x the CPU per message); rebuild with `make setup`"
            )
        house = asyncio.create_task(self._housekeeping(), name="forwarder-housekeeping")
        aux = []  # background loops, cancelled at the stop
        if self._heartbeats is not None:
            hb = self._heartbeat_loop(self._heartbeats)
            aux.append(asyncio.create_task(hb, name="forwarder-heartbeats"))
        if s.malloc_trim_s > 0 and memtrim.available:
            trims = self._trim_loop(s.malloc_trim_s)
            aux.append(asyncio.create_task(trims, name="forwarder-malloc-trim"))
        stream_task = asyncio.create_task(self._stream.run(), name="forwarder-stream")
        stop_task = asyncio.create_task(self._stop.wait())
        self.started.set()
        code = EXIT_OK
        try:
            await asyncio.wait({stream_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if not stream_task.done():
                self._stream.stop()
                try:
                    await asyncio.wait_for(asyncio.shield(stream_task), 10)
                except TimeoutError:
                    stream_task.cancel()
            err = stream_task.exception() if not stream_task.cancelled() else None
            if isinstance(err, FatalStreamError):
                log.error("stopping: %s", err)
                code = EXIT_FATAL_STREAM
            elif err is not None:
                log.error("stream failed: %r", err)
                code = EXIT_STARTUP
            if self.exit_code is not None:  # set by housekeeping (fatal producer error)
                code = self.exit_code
        finally:
            stop_task.cancel()
            house.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await house
            for task in aux:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._recorder is not None:  # the stream is done: write the rest, close
                await asyncio.to_thread(self._recorder.close)
            self.on_status("stopped", reason=f"exit code {code}")
            left = await asyncio.to_thread(self._producer.flush, SHUTDOWN_FLUSH_S)
            self.metrics.queue_depth = left
            if left:
                log.error(
                    "%d envelopes were not acked by Kafka within %.0fs", left, SHUTDOWN_FLUSH_S
                )
                code = code or EXIT_PRODUCER
            log.info(
                "stopped: %d envelopes acked, %d rejected, exit code %d",
                self.metrics.acked_total,
                sum(self.metrics.frames_rejected.values()),
                code,
            )
            await http.stop()
        self.exit_code = code
        return code

    async def _start_up(self) -> EnvelopeRouter:
        """`_setup` in a thread; the loop stays live (liveness) and a stop request cancels
        a start-up that waits for the registry."""
        assert self._stop is not None
        setup = asyncio.ensure_future(asyncio.to_thread(self._setup))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while not setup.done():
                self._heartbeat = time.monotonic()
                await asyncio.wait({setup, stop}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if stop.done() and not setup.done():
                    self._setup_cancelled.set()  # the registry client gives up at its next try
                    await asyncio.wait({setup})
        finally:
            stop.cancel()
        return setup.result()

    def _setup(self) -> EnvelopeRouter:
        """Blocking start-up: registry ids, producer, seq floor from the Kafka tail."""
        s = self.settings
        check_schema(schema_json("torghut.Envelope"))
        self._phase = "waiting for the schema registry"
        registry = SchemaRegistryClient(
            s.registry_url, wait_s=s.registry_wait_s, cancelled=self._setup_cancelled.is_set
        )
        ids = {}
        for topic in RAW_TOPICS:
            ser = AvroSerializer(registry, topic)
            ids[topic.name] = ser.schema_id
            if topic is STATUS:
                self._status_ser = ser
            elif topic is TRADES:
                self._trades_ser = ser
        deser = AvroDeserializer(registry)
        self._phase = "recovering the seq floor from Kafka"
        tail = scan_tail(
            s.kafka_config(), [t.name for t in RAW_TOPICS], deser.decode, s.seq_scan_records
        )
        highest = tail.highest_seq
        floor = seq_floor(time.time_ns() // 1000, highest)
        log.info("seq floor %d (highest seq in Kafka: %s)", floor, highest)
        self._seqs = SequenceNumbers(floor)
        self._producer = EnvelopeProducer(s, self.metrics, self._producer_config)
        writer = EnvelopeWriter(ids[RAW_TOPICS[0].name], s.feed)
        clock = None
        if s.heartbeat_interval_s > 0:
            clock = self._clock = EventClock(s.heartbeat_quiet_s)
            p = self._producer
            self._heartbeats = HeartbeatWriter(
                s, clock, self.metrics, p.kafka, book=p.book_heartbeats
            )
        self._open_restart_gap(tail)
        set_limits(s.limits())  # both encoders: trades and quotes outside are rejected
        router = EnvelopeRouter(
            writer,
            self._seqs,
            self._producer,
            self.metrics,
            s.dedup_max_entries,
            s.dedup_horizon_s,
            on_reject=self.on_reject,
            on_control=lambda m: None,
            trace_ids=self._trace,
            max_future_ns=round(s.max_future_s * 1e9),
            max_envelope_bytes=s.max_envelope_bytes,
            clock=clock,
            trace_symbols=s.trace_symbols,
        )
        router.set_schema_ids(ids)
        if s.record_dir:  # last: nothing after it can fail and leave the writer running
            self._phase = "opening the recording"
            recorder = FrameRecorder.from_settings(s, self.metrics, self._started_ns)
            self._recorder = recorder.start()
        return router

    def _open_restart_gap(self, tail: TailScan) -> None:
        """An earlier process's market data in the Kafka tail: what it read after its last
        logged frame, and what Alpaca published until this process subscribes, may be lost
        (forwarder/gaps.py, "Across a process restart")."""
        self._tail_event_ns = tail.last_event_ns
        if tail.last_ingest_ns is None or not self._gaps.restarted(tail.last_ingest_ns):
            return
        self.metrics.gaps += 1
        self._gap_reason = "forwarder restart"
        self._gap_symbols = dict(tail.symbols)
        if self._heartbeats is not None and self.settings.gap_hold_s > 0:
            self._heartbeats.hold_until = time.monotonic() + self.settings.gap_hold_s
        log.warning(
            "restart gap opened: an earlier process read market data until %d (epoch ns, "
            "%.1f s ago) for %d symbols in the Kafka tail; marked at the first subscription",
            tail.last_ingest_ns,
            (time.time_ns() - tail.last_ingest_ns) / 1e9,
            len(tail.symbols),
        )

    def stop(self) -> None:
        """Request a clean stop (thread-safe): stop reading, flush, exit 0."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _housekeeping(self) -> None:
        p = self._producer
        assert p is not None
        while True:
            self._heartbeat = time.monotonic()
            p.poll(0)
            p.retry_failed()
            self.metrics.queue_depth = len(p)
            if self._stream is not None:
                self.metrics.frames = self._stream.frames_read
            self.metrics.ready = int(self.ready()[0])
            if p.fatal_error and self.exit_code is None:
                log.error("fatal producer error, stopping: %s", p.fatal_error)
                self.exit_code = EXIT_PRODUCER
                assert self._stop is not None
                self._stop.set()
            await asyncio.sleep(0.05)

    async def _trim_loop(self, every_s: float) -> None:
        """Freed heap pages back to the OS every ``every_s`` (forwarder/memtrim.py), in a
        worker thread: the event loop only waits if it needs the allocator meanwhile."""
        while True:
            await asyncio.sleep(every_s)
            await asyncio.to_thread(memtrim.trim)

    async def _heartbeat_loop(self, hb: HeartbeatWriter) -> None:
        """Event-time heartbeats every ``heartbeat_interval_s`` (forwarder/heartbeat.py);
        partition counts re-read from broker metadata in a worker thread."""
        while True:
            try:
                if hb.refresh_due(time.monotonic()):
                    await asyncio.to_thread(hb.refresh_partitions)
                if -math.inf < hb.hold_until <= time.monotonic():
                    self._mark_held_gap()
                hb.tick(time.monotonic(), time.time_ns())
            except Exception:  # a heartbeat must never stop the forwarder
                self.metrics.heartbeat_errors += 1
                log.exception("heartbeat tick failed")
            await asyncio.sleep(hb.interval_s)

    # --- probes ------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        lag = time.monotonic() - self._heartbeat
        if lag > 5:
            return False, f"event loop blocked for {lag:.1f}s"
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        st, p = self._stream, self._producer
        if st is None or p is None:
            return False, self._phase
        if not st.subscribed:
            return False, f"not subscribed (attempt {st.attempt})"
        return p.health()

    # --- StreamHandler -----------------------------------------------------------

    def on_data(self, msgs: Sequence[Any], ingest_ns: int) -> bool:
        p = self._producer
        assert p is not None
        self._gaps.data(ingest_ns)
        self._router.route(msgs, ingest_ns)
        p.poll(0)
        return len(p) >= self.settings.queue_limit

    def on_frame(self, raw: bytes, ingest_ns: int) -> bool | None:
        """The native fast path (``EnvelopeRouter.route_raw``); None when it declined the
        frame, which is then decoded and passed to ``on_data``."""
        p = self._producer
        assert p is not None
        if not self._router.route_raw(raw, ingest_ns):
            return None
        self._gaps.data(ingest_ns)
        p.poll(0)
        return len(p) >= self.settings.queue_limit

    async def drain(self) -> None:
        """Backpressure: the socket is not read until the producer drains to half."""
        p = self._producer
        assert p is not None
        limit = self.settings.queue_limit
        while len(p) > limit // 2 and not p.fatal_error:
            p.poll(0.005)
            p.retry_failed()
            self.metrics.queue_depth = len(p)
            await asyncio.sleep(0)

    def on_connected(self, connected: bool) -> None:
        self.metrics.connected = int(connected)

    def on_status(
        self,
        event: str,
        *,
        reason: str = "",
        attempt: int = 0,
        code: int | None = None,
        detail: str = "",
    ) -> None:
        if event == "reconnecting":
            self.metrics.reconnects += 1
        elif (
            event == "disconnected"
            and not (self._stop is not None and self._stop.is_set())  # not a stop: no gap
            and self._gaps.disconnected(time.time_ns())
        ):
            self.metrics.gaps += 1
            self._gap_reason = reason
            if self._heartbeats is not None and self.settings.gap_hold_s > 0:
                self._heartbeats.hold_until = time.monotonic() + self.settings.gap_hold_s
        elif event == "subscribed":
            hb_ms = self._heartbeats.last_ms if self._heartbeats is not None else None
            gap = self._gaps.subscribed(time.time_ns(), (hb_ms or 0) * 1_000_000)
            if gap is not None:
                self._write_gap_markers(*gap, reason=self._gap_reason, attempt=attempt)
        level = logging.WARNING if event in ("disconnected", "error") else logging.INFO
        log.log(
            level, "status %s attempt=%d code=%s reason=%s %s", event, attempt, code, reason, detail
        )
        if self._producer is None or self._status_ser is None or self._seqs is None:
            return
        ts = time.time_ns()
        record = status_envelope(
            event,
            feed=self.settings.feed,
            seq=self._seqs.next((STATUS_CHANNEL, "")),
            ts=ts,
            trace_id=self._trace.next(),
            reason=reason[:500],
            attempt=attempt,
            code=code,
            detail=detail,
        )
        self._producer.produce(
            STATUS.name,
            self._status_ser.encode(record),
            self.settings.feed.encode(),
            STATUS_IDX,
            ts,
        )

    def _mark_held_gap(self) -> None:
        """The gap hold ran out: with the gap still open, mark the window so far before the
        heartbeats resume (forwarder/gaps.py, "A gap longer than the hold")."""
        window = self._gaps.interim(time.time_ns())
        if window is not None:
            self._write_gap_markers(*window, reason=self._gap_reason, attempt=0, interim=True)
        if self._heartbeats is not None:
            self._heartbeats.hold_until = -math.inf

    def _write_gap_markers(
        self, from_ns: int, to_ns: int, *, reason: str, attempt: int, interim: bool = False
    ) -> None:
        """One gap marker per symbol seen into the raw trades topic, keyed by the symbol, before
        any message of the new connection is routed (forwarder/gaps.py); then heartbeats
        resume and a ``gap`` status event says what was marked. ``interim``: the gap is
        still open (the hold ran out), a later call marks the rest for the same symbols."""
        p, ser = self._producer, self._trades_ser
        if p is None or ser is None or self._seqs is None:
            return
        clock = self._clock.max_event_ns if self._clock is not None else 0
        clock = max(clock, self._tail_event_ns)  # a restart gap: no frame read yet
        event_ts = min(to_ns, clock) if clock > 0 else from_ns
        symbols = self._router.symbols()
        tail = self._gap_symbols
        if not interim:
            self._gap_symbols = {}
        if tail:  # a restart gap: the symbols of the earlier process too
            symbols = sorted(tail.keys() | set(symbols))
        for i, symbol in enumerate(symbols):
            # a tail symbol's marker: not after its last trade in the log (its partition)
            ts = min(event_ts, tail.get(symbol) or event_ts)
            seq, trace_id = self._seqs.next((GAP_CHANNEL, symbol)), self._trace.next()
            record = gap_envelope(
                symbol,
                feed=self.settings.feed,
                seq=seq,
                from_ns=from_ns,
                to_ns=to_ns,
                event_ts=ts,
                trace_id=trace_id,
                reason=reason,
                attempt=attempt,
            )
            p.produce(TRADES.name, ser.encode(record), symbol.encode(), GAP_IDX, ts)
            if i < GAP_MARKER_LINES:  # one line per marker, the first ones of a large gap
                log.warning(
                    "gap marker for %s: messages may have been lost from %d to %d",
                    symbol,
                    from_ns,
                    to_ns,
                    extra=record_fields(symbol, GAP_CHANNEL, ts, seq, "forwarder", trace_id),
                )
        self.metrics.gap_markers += len(symbols)
        if self._heartbeats is not None:
            self._heartbeats.hold_until = -math.inf
        detail = (
            f"messages may have been lost from {from_ns} to {to_ns} (epoch ns, "
            f"{(to_ns - from_ns) / 1e9:.3f} s); gap markers written for {len(symbols)} symbols"
        )
        if interim:
            detail += (
                f"; still disconnected after the {self.settings.gap_hold_s:g} s hold "
                "(TORGHUT_FWD_GAP_HOLD_S): heartbeats resume, the rest is marked at the "
                "next subscription"
            )
        log.warning(
            "%s gap: %s", "restart" if reason == "forwarder restart" else "reconnect", detail
        )
        self.on_status("gap", reason=reason, attempt=attempt, detail=detail)

    def on_reject(self, reason: str, detail: str, msg: Any) -> None:
        """Count every reject; log and report each reason at most once per interval."""
        self.metrics.frames_rejected[reason] += 1
        now = time.monotonic()
        last, suppressed = self._rejects.get(reason, (-1e9, 0))
        if now - last < self.settings.status_interval_s:
            self._rejects[reason] = (last, suppressed + 1)
            return
        self._rejects[reason] = (now, 0)
        ctx: dict[str, str | None] = {"symbol": None, "channel": None, "event_ts": None}
        if isinstance(msg, dict):
            ctx = {
                "symbol": str(msg.get("S"))[:32],
                "channel": CHANNEL_BY_TYPE.get(str(msg.get("T")), str(msg.get("T"))[:32]),
                "event_ts": str(msg.get("t"))[:40],
            }
        text = (
            f"reason={reason} symbol={ctx['symbol']} channel={ctx['channel']} "
            f"event_ts={ctx['event_ts']} detail={detail[:300]} "
            f"suppressed_since_last={suppressed}"
        )
        # record-level: never produced, so no seq and no trace id; event_ts as received
        # (epoch ns when it came as an integer, else its text)
        raw_t = msg.get("t") if isinstance(msg, dict) else None
        log.warning(
            "rejected market data: %s",
            text,
            extra={
                **record_fields(ctx["symbol"], ctx["channel"], None, None, SOURCE, None),
                "event_ts": raw_t if type(raw_t) is int else ctx["event_ts"],
                "reason": reason,
                "suppressed": suppressed,
            },
        )
        self.on_status("frame_rejected", reason=reason, detail=text)


class ForwarderThread:
    """A ``Forwarder`` on its own loop in a background thread (tests, benchmarks)."""

    def __init__(self, settings: ForwarderSettings, **kwargs: Any) -> None:
        self.forwarder = Forwarder(settings, **kwargs)
        self._thread = threading.Thread(target=self._main, name="forwarder", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(self.forwarder.run())
        except BaseException as exc:
            self.error = exc
            self.forwarder.started.set()

    def start(self, timeout_s: float = 60.0, wait: bool = True) -> ForwarderThread:
        """Start the thread; with `wait`, return once start-up finished (raising if it
        failed), else at once (`forwarder.started` tells when)."""
        self._thread.start()
        if not wait:
            return self
        if not self.forwarder.started.wait(timeout_s):
            raise ForwarderError(f"forwarder did not start within {timeout_s}s")
        if self.forwarder.exit_code is not None or self.error is not None:
            raise ForwarderError(
                f"forwarder failed to start (exit code "
                f"{self.forwarder.exit_code}, error {self.error!r})"
            )
        return self

    def stop(self, timeout_s: float = 60.0) -> int | None:
        self.forwarder.stop()
        self._thread.join(timeout_s)
        return self.forwarder.exit_code

    @property
    def metrics(self) -> ForwarderMetrics:
        return self.forwarder.metrics

    def join(self, timeout_s: float) -> int | None:
        self._thread.join(timeout_s)
        return self.forwarder.exit_code

    def __enter__(self) -> ForwarderThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
