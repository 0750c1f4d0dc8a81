"""Where market data comes from: the synthetic market (paced or as fast as possible) or a
replay (original pacing or as fast as possible) of a JSONL file or of a forwarder's frame
recording (shared/recording.py). Each source is an async loop that hands batches to
``publish`` and stops at the configured bound.

A recording is replayed frame by frame: each recorded frame is one publish carrying the
frame itself (``RecordedFrame``), which the server sends byte-exact to a client whose
encoding matches and whose subscription selects every message in it, and re-encodes
(only the selected messages) for the others. A frame that cannot be filtered (not an
array of Alpaca messages, or holding a message of a type no channel carries) is sent as
recorded to every client: the forwarder rejects it the way it rejected the original.
Control messages read inside the data stream (``success``, ``error``, ``subscription``)
are left out (the simulator speaks its own control protocol), and so are markers (session,
loss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack
import orjson

from shared.recording import (
    Record,
    RecordingError,
    RecordKind,
    decode_frame,
    is_recording,
    iter_recording,
    read_header,
    segment_in_use,
    segment_paths,
)
from torghut.sim.config import ReplayConfig, SimConfig
from torghut.sim.errors import ReplayFileError
from torghut.sim.protocol import MARKET_DATA_TYPES, to_json_message
from torghut.sim.recording import iter_jsonl
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.timestamps import NS_PER_S, TimestampFormatError, parse_rfc3339_ns

log = logging.getLogger("torghut.sim")

# publish(batch, backpressure): backpressure=True waits for slow clients instead of dropping them
Publish = Callable[[list[dict[str, Any]], bool], Awaitable[None]]
_BAR_TYPES = frozenset("bud")
CONTROL_TYPES = frozenset(("success", "error", "subscription"))


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """A recorded frame as it goes back on the wire (``payload``; ``text``: a JSON text
    frame, else msgpack binary), its ``messages`` (control messages included) and their
    count by type, and whether it is ``malformed`` (not an array of filterable Alpaca
    messages: sent as recorded to all)."""

    payload: bytes
    text: bool
    messages: int
    counts: dict[str, int]
    malformed: bool

    def fits(self, msgpack_client: bool, selected: int) -> bool:
        """Send it byte-exact: malformed, or same encoding and every message selected (a
        subscription never selects a control message: a frame holding one is re-encoded
        without it)."""
        return self.malformed or (msgpack_client != self.text and selected == self.messages)


class PublishFrame(Protocol):
    """``publish`` of a replay: a batch, backpressure, and the recorded frame it came from."""

    def __call__(
        self,
        batch: list[dict[str, Any]],
        backpressure: bool,
        *,
        raw: RecordedFrame | None = None,
    ) -> Awaitable[None]: ...


class _Bound:
    """The run bound shared by both sources: max trades, max messages, duration."""

    def __init__(self, config: SimConfig) -> None:
        self.max_trades = config.max_trades
        self.max_messages = config.max_messages
        self.deadline = time.monotonic() + config.duration_s if config.duration_s else None
        self.trades = 0
        self.messages = 0

    def clip(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Cut a batch at ``max_messages`` so the count published is exact."""
        if self.max_messages is not None:
            batch = batch[: max(0, self.max_messages - self.messages)]
        self.messages += len(batch)
        self.trades += sum(1 for m in batch if m["T"] == "t")
        return batch

    @property
    def messages_left(self) -> int | None:
        return None if self.max_messages is None else self.max_messages - self.messages

    @property
    def done(self) -> bool:
        return (
            (self.max_trades is not None and self.trades >= self.max_trades)
            or (self.max_messages is not None and self.messages >= self.max_messages)
            or (self.deadline is not None and time.monotonic() >= self.deadline)
        )


def pregenerates(config: SimConfig) -> bool:
    """Whether the source is generated up front: fast synthetic, bounded by message count."""
    return (
        config.source == "synthetic"
        and config.fast
        and config.max_messages is not None
        and config.max_messages <= config.pregenerate_max_messages
        and config.duration_s is None
    )


async def generate_synthetic(config: SimConfig, stop: asyncio.Event) -> list[list[dict[str, Any]]]:
    """Every batch a fast bounded synthetic run publishes (the same batches ``run_synthetic``
    would, stamped now), yielding to the loop between bursts so clients can connect."""
    seed = config.synthetic.seed if config.synthetic.seed is not None else random.randrange(2**32)
    market = SyntheticMarket(config.synthetic, time.time_ns(), seed)
    log.info(
        "synthetic market: seed=%d symbols=%s fast=True, generating %s messages up front",
        seed,
        ",".join(config.synthetic.symbols),
        config.max_messages,
    )
    bound = _Bound(config)
    frame = config.frame_max_messages
    batches: list[list[dict[str, Any]]] = []
    while not stop.is_set() and not bound.done:
        batch = bound.clip(market.burst(_fast_burst_size(bound, frame), time.time_ns()))
        if batch:
            batches.append(batch)
        await asyncio.sleep(0)
    return batches


def _fast_burst_size(bound: _Bound, frame: int) -> int:
    n = max(1, frame - frame // 50)  # headroom for bars/corrections: one frame per burst
    if bound.max_trades is not None:
        n = min(n, bound.max_trades - bound.trades)
    left = bound.messages_left
    if left is not None:
        n = min(n, left)
    return max(n, 1)


async def run_synthetic(config: SimConfig, publish: Publish, stop: asyncio.Event) -> None:
    seed = config.synthetic.seed if config.synthetic.seed is not None else random.randrange(2**32)
    start_ns = time.time_ns()
    market = SyntheticMarket(config.synthetic, start_ns, seed)
    log.info(
        "synthetic market: seed=%d symbols=%s fast=%s",
        seed,
        ",".join(config.synthetic.symbols),
        config.fast,
    )
    bound = _Bound(config)
    frame = config.frame_max_messages
    while not stop.is_set() and not bound.done:
        if config.fast:
            batch = market.burst(_fast_burst_size(bound, frame), time.time_ns())
        else:
            batch = market.advance(time.time_ns(), max_trades=config.max_trades)
        batch = bound.clip(batch)
        if batch:
            await publish(batch, config.fast)
        if config.fast:
            await asyncio.sleep(0)
        else:
            await _sleep_or_stop(stop, config.tick_s)
    if bound.max_messages is None:
        tail = market.finish()
        if tail:
            await publish(tail, config.fast)


def check_replay(replay: ReplayConfig) -> None:
    """Fail before serving when the replay input is missing or unreadable: a JSONL file, or
    a frame recording (a directory of segments, one ``.tfr.zst`` segment, or a glob)."""
    path = replay.path
    if is_recording(path):
        try:
            read_header(path)
        except RecordingError as exc:
            raise ReplayFileError(f"cannot replay {path}: {exc}") from exc
        return
    if not path.is_file():
        raise ReplayFileError(
            f"replay input {path} does not exist; give a JSONL file (torghut sim --record) or "
            "a forwarder recording (TORGHUT_FWD_RECORD_DIR: its directory, a .tfr.zst "
            "segment, or a quoted glob)"
        )


async def run_replay(config: SimConfig, publish: PublishFrame, stop: asyncio.Event) -> None:
    assert config.replay is not None
    replay = config.replay
    if is_recording(replay.path):
        await run_recording(config, publish, stop)
        return
    bound = _Bound(config)
    frame = config.frame_max_messages
    log.info("replaying %s (pace=%s, speed=%s)", replay.path, replay.pace, replay.speed)
    pending: list[dict[str, Any]] = []
    wall0 = time.monotonic()
    event0: int | None = None
    clock = 0
    for msg in iter_jsonl(replay.path):
        if stop.is_set() or bound.done:
            break
        if replay.pace == "original" and msg["T"] not in _BAR_TYPES and "t" in msg:
            # bars carry their minute's start, so only other messages move the clock
            clock = max(clock, msg["t"])
            if event0 is None:
                event0 = clock
            due = wall0 + (clock - event0) / NS_PER_S / replay.speed
            delay = due - time.monotonic()
            if delay > 0.001 and pending:
                await publish(bound.clip(pending), False)
                pending = []
            if delay > 0.001:
                await _sleep_or_stop(stop, delay)
        pending.append(msg)
        if len(pending) >= frame:
            await publish(bound.clip(pending), replay.pace == "fast")
            pending = []
            await asyncio.sleep(0)
    if pending and not stop.is_set():
        await publish(bound.clip(pending), replay.pace == "fast")


def recorded_frame(rec: Record) -> tuple[list[dict[str, Any]], RecordedFrame]:
    """The market-data messages of a recorded frame (``t`` as int ns where it parses) and
    the frame."""
    text = rec.kind == RecordKind.TEXT
    malformed = RecordedFrame(rec.data, text, 0, {}, True)
    try:
        items = decode_frame(rec)
    except ValueError:
        return [], malformed
    msgs: list[dict[str, Any]] = []
    for m in items:
        t = m.get("T") if isinstance(m, dict) else None
        if type(t) is str and t in CONTROL_TYPES:
            continue  # the simulator speaks its own control protocol: never replayed
        # filterable: a market-data type a channel carries, S (when present) a string
        if type(t) is not str or t not in MARKET_DATA_TYPES or not isinstance(m.get("S", ""), str):
            return [], malformed
        msgs.append(_normalize(m))
    if not text:  # msgpack values JSON cannot hold (bytes, ext types): not re-encodable
        try:
            orjson.dumps([to_json_message(m) for m in msgs])
        except (TypeError, ValueError, OverflowError):
            return [], malformed
    counts = dict(Counter(m["T"] for m in msgs))
    return msgs, RecordedFrame(rec.data, text, len(items), counts, False)


def _normalize(msg: dict[str, Any]) -> dict[str, Any]:
    """``t`` as int epoch ns when it is a msgpack Timestamp or an RFC 3339 string; anything
    else is kept (such a message is only ever sent as recorded or re-encoded as it is)."""
    t = msg.get("t")
    if isinstance(t, msgpack.Timestamp):
        return {**msg, "t": t.to_unix_nano()}
    if isinstance(t, str):
        try:
            return {**msg, "t": parse_rfc3339_ns(t)}
        except TimestampFormatError:
            return msg
    return msg


async def run_recording(config: SimConfig, publish: PublishFrame, stop: asyncio.Event) -> None:
    """Replay a frame recording frame by frame, paced by the frames' receive times
    (``pace="original"``, sped up by ``speed``) or as fast as the clients read."""
    assert config.replay is not None
    replay = config.replay
    bound = _Bound(config)
    fast = replay.pace == "fast"
    header = read_header(replay.path)
    log.info(
        "replaying the frame recording %s (pace=%s, speed=%s; recorded from %s, %s)",
        replay.path,
        replay.pace,
        replay.speed,
        header.metadata.get("url", "?"),
        header.metadata.get("wire_format", "?"),
    )
    # the segments there now, without one a forwarder still writes (e.g. one recording this
    # replay into the same directory: replaying it would replay the replay)
    segments = []
    for segment in segment_paths(replay.path):
        if segment_in_use(segment):
            log.warning("not replaying %s: a recording writer still has it open", segment)
        else:
            segments.append(segment)
    wall0 = time.monotonic()
    first_ns: int | None = None
    frames = malformed = 0
    records = (rec for segment in segments for rec in iter_recording(segment))
    for rec in records:
        if stop.is_set() or bound.done:
            break
        if not rec.is_frame:
            if rec.kind == RecordKind.LOSS:
                log.warning("the recording lost frames here: %s", rec.data.decode()[:300])
            continue
        if not fast:
            if first_ns is None:
                first_ns = rec.receive_ns
            due = wall0 + (rec.receive_ns - first_ns) / NS_PER_S / replay.speed
            delay = due - time.monotonic()
            if delay > 0.001:
                await _sleep_or_stop(stop, delay)
                if stop.is_set():
                    break
        msgs, frame = recorded_frame(rec)
        clipped = bound.clip(msgs)
        raw: RecordedFrame | None = frame
        if len(clipped) != len(msgs):  # cut at max_messages: what is left, re-encoded
            raw = None
            if not clipped:
                break
        frames += 1
        malformed += frame.malformed
        await publish(clipped, fast, raw=raw)
        if fast:
            await asyncio.sleep(0)
    log.info("recording replayed: %d frames (%d malformed, sent as recorded)", frames, malformed)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
