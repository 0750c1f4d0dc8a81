"""What every peer shares: the bar rules applied to one trade, the indicator step, the
records it emits (the job's own Avro layout) and the result file it leaves for the parent.

Runs in the main venv and in the peers venv (``.artifacts/peers-venv``): it imports only
``shared``, ``flink_job.records`` / ``flink_job.symbol_processor`` (pure Python) and
``torghut.bench.sampling``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.bars import MicroBar, bucket_start_ns
from shared.indicators import SignalState, SignalValues
from shared.sale_conditions import FORM_T, resolve
from torghut.bench.sampling import group_cpu_s

BAR_NS = 1_000_000_000
#: indicator fields a trades-only peer computes (spread and imbalance need the quotes)
TRADE_SIGNALS = (
    "ema12",
    "ema26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi14",
    "boll_mid",
    "boll_upper",
    "boll_lower",
    "atr14",
    "vwap_session",
    "vwap_5m",
    "realized_vol_60s",
)
QUOTE_SIGNALS = ("spread", "imbalance")
BAR_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "trade_count", "price_basis")


def trade_flags(flags: int, event_ns: int) -> int:
    """What the trade may update, as the job applies it (Form T priced outside the session)."""
    return resolve(flags, event_ns) if flags & FORM_T else flags


def open_bar(symbol: str, price: float, size: float, event_ns: int, flags: int) -> MicroBar:
    return MicroBar.open_with(
        symbol, bucket_start_ns(event_ns, BAR_NS), BAR_NS, price, size, event_ns, flags
    )


def close_bar(signals: SignalState, bar: MicroBar, quote: Any = None) -> SignalValues | None:
    """The final bar's indicator values (None: a bar without a price and nothing to carry,
    which the job refuses too)."""
    if not bar.price_basis:
        previous = signals.last_close
        if previous is None:
            return None
        bar.carry(previous)
    return signals.update(bar, quote)


def records(bar: MicroBar, values: SignalValues, source: str) -> tuple[dict, dict]:
    """The (ta.bars.1s.v1, ta.signals.v1) records of a final bar, as the job builds them;
    lineage is the bar's last trade time (the peers keep no per-trade seq or trace id)."""
    from flink_job.records import microbar_record, signal_record
    from flink_job.symbol_processor import Emission

    em = Emission(bar, values, True, bar.last_event_ns, 0, 0, "")
    now = time.time_ns()
    return microbar_record(em, now, source), signal_record(em, now, source)


def bar_key(symbol: str, start_us: int) -> str:
    return f"{symbol}@{start_us}"


@dataclass
class PeerResult:
    """The result file a peer process writes: its own span and CPU, from /proc."""

    peer: str
    trades: int = 0
    bars: int = 0
    first_ns: int = 0  # wall time of the first record processed
    last_ns: int = 0  # wall time its last output was flushed (committed where it commits)
    cpu_s: float = 0.0  # CPU seconds of its process group between the two
    note: str = ""
    final: dict[str, list[Any]] = field(default_factory=dict)  # bar key -> bar + signals

    def start(self) -> None:
        self.first_ns = time.time_ns()
        self._cpu0 = group_cpu_s(os.getpgrp())

    def stop(self) -> None:
        self.last_ns = time.time_ns()
        self.cpu_s = group_cpu_s(os.getpgrp()) - self._cpu0

    def write(self, path: str | Path) -> None:
        d = asdict(self)
        Path(path).write_text(json.dumps(d))
