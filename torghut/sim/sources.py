"""Where market data comes from: the synthetic market (paced or as fast as possible) or a
JSONL replay (original pacing or as fast as possible). Each source is an async loop that
hands batches to ``publish`` and stops at the configured bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from torghut.sim.config import SimConfig
from torghut.sim.recording import iter_jsonl
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.timestamps import NS_PER_S

log = logging.getLogger("torghut.sim")

# publish(batch, backpressure): backpressure=True waits for slow clients instead of dropping them
Publish = Callable[[list[dict[str, Any]], bool], Awaitable[None]]
_BAR_TYPES = frozenset("bud")


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


async def run_replay(config: SimConfig, publish: Publish, stop: asyncio.Event) -> None:
    assert config.replay is not None
    replay = config.replay
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


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
