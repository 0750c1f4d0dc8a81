"""Minute bars built from trades, the way Alpaca builds ``b`` / ``u`` / ``d`` messages.

Pure logic, no I/O. A minute's bar is emitted once the clock passes the minute's end;
a trade that arrives later for an already emitted minute (a late or out-of-order trade)
updates that bar and produces an ``updatedBars`` message. Bars aggregate every trade
sent (corrections and cancels do not rewrite them).

Sale conditions decide what a trade updates, by the rules of docs/design.md
("Condition-aware bars", `shared.sale_conditions.trade_updates`): open and close come from
the bar's highest-rank trades (rank 2: may set the last sale, 1: only high/low), high and
low from the trades of rank >= 1, volume, ``n`` and ``vw`` from the trades that update
volume. A trade that updates nothing is in no bar. A bar with no trade of rank >= 1 (a
minute of odd lots only) is never sent: the simulator's stand-in for the vendor, whose bar
needs a price (the minute check counts such a minute of ours as ``only_ours_no_price``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared import sale_conditions
from shared.sale_conditions import ALL, HIGH_LOW, LAST, VOLUME, trade_updates
from torghut.sim.timestamps import NS_PER_MIN, NS_PER_S

_NEW_YORK = ZoneInfo("America/New_York")
# the bits a trade's flags give at its event time (Form T outside the regular session), where
# shared.sale_conditions has the rule; the plain table bits otherwise
_resolve = getattr(sale_conditions, "resolve", None)


def updates_at(tape: str, conditions: Sequence[str], ts_ns: int) -> int:
    """HIGH_LOW | LAST | VOLUME of a trade at `ts_ns`, by the same rule as the job's bars."""
    flags = trade_updates(tape, tuple(conditions))
    return _resolve(flags, ts_ns) if _resolve is not None else flags & ALL


_NS_PER_HOUR = 60 * NS_PER_MIN


def minute_start(ts_ns: int) -> int:
    return ts_ns - ts_ns % NS_PER_MIN


def session_day_start(ts_ns: int) -> int:
    """Midnight America/New_York of the trading day holding ``ts_ns`` (Alpaca daily bar ``t``)."""
    local = datetime.fromtimestamp(ts_ns // NS_PER_S, tz=_NEW_YORK)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp()) * NS_PER_S


def trade_rank(flags: int) -> int:
    """2 if a trade with these update flags may set the last sale, 1 if only high/low, else 0."""
    return 2 if flags & LAST else 1 if flags & HIGH_LOW else 0


@dataclass(slots=True)
class BarAccumulator:
    """OHLCV, trade count and VWAP numerator of one bar, by the sale-condition rules.

    ``basis`` is the highest rank of the bar's trades; open/close are the earliest/latest
    trade of that rank (ties: the earlier arrival opens, the later closes), high/low span
    the trades of rank >= 1 (NaN while there is none), volume/count/notional the volume
    trades. Build it with ``empty`` and ``add``.
    """

    start_ns: int
    open: float = math.nan
    high: float = math.nan
    low: float = math.nan
    close: float = math.nan
    volume: float = 0.0
    count: int = 0
    notional: float = 0.0
    first_ts: int = 0
    last_ts: int = 0
    basis: int = -1  # no trade yet

    @classmethod
    def empty(cls, start_ns: int) -> BarAccumulator:
        return cls(start_ns)

    @classmethod
    def first(
        cls, start_ns: int, ts_ns: int, price: float, size: float, flags: int = 7
    ) -> BarAccumulator:
        acc = cls(start_ns)
        acc.add(ts_ns, price, size, flags)
        return acc

    @property
    def has_price(self) -> bool:
        """A bar the vendor would send: at least one trade of rank >= 1."""
        return self.basis >= 1

    def add(self, ts_ns: int, price: float, size: float, flags: int = 7) -> None:
        if not flags:
            return  # updates nothing (an official open or close): in no bar
        rank = trade_rank(flags)
        if rank > self.basis:
            self.basis, self.first_ts, self.last_ts = rank, ts_ns, ts_ns
            self.open = self.close = price
        elif rank == self.basis:
            # open/close follow event time, so an out-of-order trade can change them
            if ts_ns < self.first_ts:
                self.first_ts, self.open = ts_ns, price
            if ts_ns >= self.last_ts:
                self.last_ts, self.close = ts_ns, price
        if rank >= 1:
            self.high = price if math.isnan(self.high) else max(self.high, price)
            self.low = price if math.isnan(self.low) else min(self.low, price)
        if flags & VOLUME:
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
    A trade's ``conditions`` and ``tape`` decide what it updates (module doc; none: a
    regular sale). ``corrupt`` (a `MinuteBarCorruption`) falsifies one minute bar on its
    way out, for the minute check's drill.
    """

    def __init__(
        self,
        retain_minutes: int = 15,
        daily_bars: bool = True,
        corrupt: MinuteBarCorruption | None = None,
    ) -> None:
        self._retain_ns = retain_minutes * NS_PER_MIN
        self._daily = daily_bars
        self._corrupt = corrupt
        self._open: dict[str, dict[int, BarAccumulator]] = {}
        self._closed: dict[str, dict[int, BarAccumulator]] = {}
        self._days: dict[str, BarAccumulator] = {}
        self._emitted_until = 0
        self._day_hour = -1
        self._day_start = 0
        self.dropped_late = 0

    def _out(self, bar: BarAccumulator, kind: str, symbol: str) -> list[dict]:
        if not bar.has_price:
            return []  # no trade that may set a price: the vendor sends no bar
        msg = bar.message(kind, symbol)
        return [self._corrupt.apply(msg) if self._corrupt is not None else msg]

    def add_trade(
        self,
        symbol: str,
        ts_ns: int,
        price: float,
        size: float,
        conditions: Sequence[str] = (),
        tape: str = "",
    ) -> list[dict]:
        flags = updates_at(tape, conditions, ts_ns)
        if not flags:
            return []  # updates nothing: in no bar
        start = minute_start(ts_ns)
        self._add_daily(symbol, ts_ns, price, size, flags)
        if start + NS_PER_MIN <= self._emitted_until:
            closed = self._closed.get(symbol, {}).get(start)
            if closed is None:
                if start + self._retain_ns < self._emitted_until:
                    self.dropped_late += 1
                    return []
                closed = BarAccumulator.empty(start)
                self._closed.setdefault(symbol, {})[start] = closed
            closed.add(ts_ns, price, size, flags)
            return self._out(closed, "u", symbol)
        minutes = self._open.setdefault(symbol, {})
        bar = minutes.get(start)
        if bar is None:
            bar = minutes[start] = BarAccumulator.empty(start)
        bar.add(ts_ns, price, size, flags)
        return []

    def _add_daily(self, symbol: str, ts_ns: int, price: float, size: float, flags: int) -> None:
        if not self._daily:
            return
        hour = ts_ns // _NS_PER_HOUR
        if hour != self._day_hour:  # New York offsets are whole hours: constant per UTC hour
            self._day_hour, self._day_start = hour, session_day_start(ts_ns)
        day = self._day_start
        acc = self._days.get(symbol)
        if acc is None or acc.start_ns != day:
            acc = self._days[symbol] = BarAccumulator.empty(day)
        acc.add(ts_ns, price, size, flags)

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
                out.extend(self._out(bar, "b", symbol))
            day = self._days.get(symbol)
            if self._daily and day is not None and day.has_price:
                out.append(day.message("d", symbol))
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


@dataclass(slots=True)
class MinuteBarCorruption:
    """Shift the high of one minute bar by `shift` (relative; 1 %): the `n`-th ``b`` message
    of `symbol` (1 = its first), and every ``u`` re-sending that minute. A drill for the
    minute check (docs/design.md, "The minute check"): the check must report exactly that
    symbol, minute and field. Parse ``SYMBOL@N`` with `parse`."""

    symbol: str
    n: int
    shift: float = 0.01
    _seen: int = 0
    minute_ns: int | None = None  # the corrupted minute, once it was sent

    @classmethod
    def parse(cls, text: str) -> MinuteBarCorruption:
        symbol, sep, n = text.rpartition("@")
        if not sep or not symbol or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{text!r}: give SYMBOL@N, N >= 1 (the symbol's N-th minute bar)")
        return cls(symbol, int(n))

    def apply(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg.get("S") != self.symbol:
            return msg
        if msg.get("T") == "b" and self.minute_ns is None:
            self._seen += 1
            if self._seen == self.n:
                self.minute_ns = msg["t"]
        if msg.get("T") in ("b", "u") and msg.get("t") == self.minute_ns:
            return {**msg, "h": msg["h"] * (1 + self.shift)}
        return msg
