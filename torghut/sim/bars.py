"""Minute bars built from trades, the way Alpaca builds ``b`` / ``u`` / ``d`` messages.

Pure logic, no I/O. A minute's bar is emitted once the clock passes the minute's end;
a trade that arrives later for an already emitted minute (a late or out-of-order trade)
updates that bar and produces an ``updatedBars`` message. Bars aggregate every trade
sent (corrections and cancels do not rewrite them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from torghut.sim.timestamps import NS_PER_MIN, NS_PER_S

_NEW_YORK = ZoneInfo("America/New_York")
_NS_PER_HOUR = 60 * NS_PER_MIN


def minute_start(ts_ns: int) -> int:
    return ts_ns - ts_ns % NS_PER_MIN


def session_day_start(ts_ns: int) -> int:
    """Midnight America/New_York of the trading day holding ``ts_ns`` (Alpaca daily bar ``t``)."""
    local = datetime.fromtimestamp(ts_ns // NS_PER_S, tz=_NEW_YORK)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp()) * NS_PER_S


@dataclass(slots=True)
class BarAccumulator:
    """OHLCV, trade count and VWAP numerator of one bar."""

    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    count: int
    notional: float
    first_ts: int
    last_ts: int

    @classmethod
    def first(cls, start_ns: int, ts_ns: int, price: float, size: float) -> BarAccumulator:
        return cls(start_ns, price, price, price, price, size, 1, price * size, ts_ns, ts_ns)

    def add(self, ts_ns: int, price: float, size: float) -> None:
        # open/close follow event time, so an out-of-order trade can change them
        if ts_ns < self.first_ts:
            self.first_ts, self.open = ts_ns, price
        if ts_ns >= self.last_ts:
            self.last_ts, self.close = ts_ns, price
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.volume += size
        self.count += 1
        self.notional += price * size

    def message(self, kind: str, symbol: str) -> dict[str, Any]:
        return {
            "T": kind,
            "S": symbol,
            "o": self.open,
            "h": self.high,
            "l": self.low,
            "c": self.close,
            "v": self.volume,
            "t": self.start_ns,
            "n": self.count,
            "vw": self.notional / self.volume if self.volume else self.close,
        }


class MinuteBarBuilder:
    """Per-symbol 1 min bars (and the running daily bar) from a stream of trades.

    ``add_trade`` returns ``updatedBars`` messages for minutes already emitted;
    ``close_until(now)`` returns the ``bars`` (then ``dailyBars``) for every minute that
    ended at or before ``now``. Emitted minutes are kept for ``retain_minutes`` so late
    trades can still update them; older late trades only count in ``dropped_late``.
    """

    def __init__(self, retain_minutes: int = 15, daily_bars: bool = True) -> None:
        self._retain_ns = retain_minutes * NS_PER_MIN
        self._daily = daily_bars
        self._open: dict[str, dict[int, BarAccumulator]] = {}
        self._closed: dict[str, dict[int, BarAccumulator]] = {}
        self._days: dict[str, BarAccumulator] = {}
        self._emitted_until = 0
        self._day_hour = -1
        self._day_start = 0
        self.dropped_late = 0

    def add_trade(self, symbol: str, ts_ns: int, price: float, size: float) -> list[dict]:
        start = minute_start(ts_ns)
        self._add_daily(symbol, ts_ns, price, size)
        if start + NS_PER_MIN <= self._emitted_until:
            closed = self._closed.get(symbol, {}).get(start)
            if closed is None:
                if start + self._retain_ns < self._emitted_until:
                    self.dropped_late += 1
                    return []
                closed = BarAccumulator.first(start, ts_ns, price, size)
                self._closed.setdefault(symbol, {})[start] = closed
            else:
                closed.add(ts_ns, price, size)
            return [closed.message("u", symbol)]
        minutes = self._open.setdefault(symbol, {})
        bar = minutes.get(start)
        if bar is None:
            minutes[start] = BarAccumulator.first(start, ts_ns, price, size)
        else:
            bar.add(ts_ns, price, size)
        return []

    def _add_daily(self, symbol: str, ts_ns: int, price: float, size: float) -> None:
        if not self._daily:
            return
        hour = ts_ns // _NS_PER_HOUR
        if hour != self._day_hour:  # New York offsets are whole hours: constant per UTC hour
            self._day_hour, self._day_start = hour, session_day_start(ts_ns)
        day = self._day_start
        acc = self._days.get(symbol)
        if acc is None or acc.start_ns != day:
            self._days[symbol] = BarAccumulator.first(day, ts_ns, price, size)
        else:
            acc.add(ts_ns, price, size)

    def close_until(self, now_ns: int) -> list[dict]:
        """Emit every open minute whose end is ``<= now_ns`` (all of them if ``now_ns`` is huge)."""
        boundary = minute_start(now_ns)
        if boundary <= self._emitted_until:
            return []
        out: list[dict] = []
        for symbol, minutes in self._open.items():
            due = sorted(start for start in minutes if start + NS_PER_MIN <= now_ns)
            if not due:
                continue
            closed = self._closed.setdefault(symbol, {})
            for start in due:
                bar = minutes.pop(start)
                closed[start] = bar
                out.append(bar.message("b", symbol))
            if self._daily and symbol in self._days:
                out.append(self._days[symbol].message("d", symbol))
        self._emitted_until = boundary
        horizon = boundary - self._retain_ns
        for closed in self._closed.values():
            for start in [s for s in closed if s < horizon]:
                del closed[start]
        return out

    def flush(self) -> list[dict]:
        """Emit all open minutes (end of a bounded run), as if the clock moved past them."""
        latest = max((s for m in self._open.values() for s in m), default=None)
        if latest is None:
            return []
        return self.close_until(latest + NS_PER_MIN)
