"""Micro-bars: fixed-size event-time buckets of trades, built one trade at a time.

`MicroBar` is the streaming kernel the Flink job keeps per (symbol, bucket); the tests'
oracle (tests/support/bar_oracle.py) is written from docs/design.md without this module.
OHLC follow event time, not arrival order, so a trade that arrives late but inside
the out-of-orderness bound still becomes the open or the close it really was.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from shared.sale_conditions import ALL, HIGH_LOW, LAST, VOLUME

_INF = float("inf")
_NAN = float("nan")
# pv / volume is the VWAP while pv is a normal finite number; below this pv has lost
# precision (subnormal) or underflowed to 0, at inf it overflowed (`_blend` takes over)
_TINY = sys.float_info.min


def _blend(vwap: float, v_old: float, price: float, size: float, volume: float) -> float:
    """The weighted mean of the VWAP so far (weight `v_old`) and one trade (weight `size`),
    `volume` = v_old + size > 0: the VWAP when pv = sum(price * size) is not usable (it
    overflowed or underflowed; finite positive prices and sizes can do either). A sum of
    two non-negative terms, clamped between the two prices: it cannot overflow or cancel.
    A volume that overflowed itself is halved with both weights (exact), so the ratios stay right;
    once the volume so far is infinite the VWAP no longer moves (such a bar is refused)."""
    if v_old == _INF:
        return vwap
    if volume == _INF:
        v_old, size = v_old * 0.5, size * 0.5
        volume = v_old + size
    r = vwap * (v_old / volume) + price * (size / volume)
    # a mean lies between its terms; the rounded weights may sum to 1 + ulp (at the largest
    # double that would overflow), so the result is clamped to them
    lo, hi = (vwap, price) if vwap <= price else (price, vwap)
    return hi if r > hi else lo if r < lo else r


class TradeOutsideBarError(ValueError):
    """A trade's event time does not fall inside the bar it was given to."""


def bucket_start_ns(event_ts_ns: int, size_ns: int) -> int:
    """Start of the `size_ns` bucket holding `event_ts_ns` (floor; negative times too)."""
    if size_ns <= 0:
        raise ValueError(f"bucket size must be a positive number of ns, got {size_ns}")
    return event_ts_ns - event_ts_ns % size_ns  # Python's % floors, so this works below 0


@dataclass(slots=True)
class MicroBar:
    """One symbol's trades in [start_ns, end_ns), by the tape's sale-condition rules.

    Each trade comes with its flags (`shared.sale_conditions.trade_updates`: what it may
    update) and docs/design.md ("Condition-aware bars") says how they build the bar:
    `price_basis` is the highest rank of the bar's trades (2: may set the last sale,
    1: only high/low, 0: neither); open/close are the trades of that rank with the earliest
    /latest event time (ties: first/last to arrive); high/low span the trades of rank >= 1;
    volume, trade_count and pv (sum of price*size) accumulate the volume trades in arrival
    order; sizes stay floats, so fractional crypto sizes are never truncated.
    A bar of basis 0 has no price of its own: its open/high/low/close (and a vwap without
    volume) are NaN until `carry` gives them the symbol's previous close.

    vwap = pv / volume whenever pv is a normal finite number; for prices and sizes whose
    products overflow (1e308 x 10) or underflow (subnormals) it is kept as a running
    weighted mean instead (`_blend`), so it is always finite for finite input. Only
    `volume` itself can overflow (sizes summing past 1.8e308): the job's emit guard refuses
    such a bar (flink_job.symbol_processor.bar_problem).
    """

    symbol: str
    start_ns: int
    end_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    trade_count: int
    first_event_ns: int = 0
    last_event_ns: int = 0
    pv: float = 0.0
    price_basis: int = 2

    @classmethod
    def open_with(
        cls,
        symbol: str,
        start_ns: int,
        size_ns: int,
        price: float,
        size: float,
        event_ts_ns: int,
        flags: int = ALL,
    ) -> MicroBar:
        """A new bar for the bucket [start_ns, start_ns + size_ns) holding one trade."""
        end_ns = start_ns + size_ns
        if not start_ns <= event_ts_ns < end_ns:
            raise TradeOutsideBarError(
                f"{symbol}: trade at event_ts {event_ts_ns} is outside the bucket "
                f"[{start_ns}, {end_ns}); open the bar at bucket_start_ns(event_ts, size)"
            )
        bar = cls(symbol, start_ns, end_ns, _NAN, _NAN, _NAN, _NAN, 0.0, _NAN, 0, 0, 0, 0.0, 0)
        bar.add_trade(price, size, event_ts_ns, flags)
        return bar

    def add_trade(self, price: float, size: float, event_ts_ns: int, flags: int = ALL) -> None:
        """Fold one more trade in, by event time (it may arrive out of order)."""
        if not self.start_ns <= event_ts_ns < self.end_ns:
            raise TradeOutsideBarError(
                f"{self.symbol}: trade at event_ts {event_ts_ns} is outside the bar "
                f"[{self.start_ns}, {self.end_ns}); route it to its own bucket"
            )
        if flags == ALL and self.price_basis == 2:  # a regular sale in a priced bar: most trades
            if event_ts_ns < self.first_event_ns:
                self.open = price
                self.first_event_ns = event_ts_ns
            if event_ts_ns >= self.last_event_ns:
                self.close = price
                self.last_event_ns = event_ts_ns
            if price > self.high:
                self.high = price
            elif price < self.low:
                self.low = price
            rank = 0
        else:
            rank = 2 if flags & LAST else 1 if flags & HIGH_LOW else 0
        if rank:
            basis = self.price_basis
            if rank > basis:  # the first trade of a higher rank opens and closes the bar
                if not basis:
                    self.high = self.low = price
                self.price_basis = rank
                self.open = self.close = price
                self.first_event_ns = self.last_event_ns = event_ts_ns
            elif rank == basis:
                if event_ts_ns < self.first_event_ns:  # strictly: an equal time came later
                    self.open = price
                    self.first_event_ns = event_ts_ns
                if event_ts_ns >= self.last_event_ns:  # equal time: the later arrival closes
                    self.close = price
                    self.last_event_ns = event_ts_ns
            if price > self.high:
                self.high = price
            if price < self.low:
                self.low = price
        if not flags & VOLUME:
            if self.volume <= 0.0:
                self.vwap = self.close
            return
        v_old = self.volume
        volume = self.volume = v_old + size
        pv = self.pv = self.pv + price * size
        self.trade_count += 1
        if volume > 0.0:
            if _TINY <= pv < _INF:
                vwap = pv / volume
                if vwap < _INF:
                    self.vwap = vwap
                    return
            self.vwap = _blend(self.vwap if v_old > 0.0 else price, v_old, price, size, volume)
        else:
            self.vwap = self.close

    def carry(self, previous_close: float) -> None:
        """A bar of basis 0 takes the symbol's previous close as its flat price."""
        if self.price_basis:
            raise ValueError(
                f"{self.symbol}: a bar with its own price (basis {self.price_basis}) is not carried"
            )
        self.open = self.high = self.low = self.close = previous_close
        if not self.volume > 0.0:
            self.vwap = previous_close

    def to_state(self) -> tuple:
        """Plain tuple for Flink keyed state (small when pickled)."""
        return (
            self.symbol,
            self.start_ns,
            self.end_ns,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.vwap,
            self.trade_count,
            self.first_event_ns,
            self.last_event_ns,
            self.pv,
            self.price_basis,
        )

    @classmethod
    def from_state(cls, state: tuple) -> MicroBar:
        """Inverse of `to_state`; a 13-field state (written before sale conditions) is a bar
        of regular sales (basis 2)."""
        if len(state) not in (13, 14):
            raise ValueError(
                f"MicroBar state must have 13 or 14 fields, got {len(state)}; "
                "it was not written by MicroBar.to_state"
            )
        return cls(*state)
