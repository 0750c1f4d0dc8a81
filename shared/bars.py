"""Micro-bars: fixed-size event-time buckets of trades, built one trade at a time.

`MicroBar` is the streaming kernel the Flink job keeps per (symbol, bucket);
`batch_bars` is the independent batch oracle the tests and end-to-end checks use.
OHLC follow event time, not arrival order, so a trade that arrives late but inside
the out-of-orderness bound still becomes the open or the close it really was.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

_INF = float("inf")
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
    """One symbol's trades in [start_ns, end_ns).

    open/close are the trades with the earliest/latest event time (ties: first/last
    to arrive); volume and pv (sum of price*size) accumulate in arrival order; sizes
    stay floats, so fractional crypto sizes are never truncated.
    `first_event_ns`, `last_event_ns` and `pv` are kept by `open_with`/`add_trade`.

    vwap = pv / volume, exactly as the batch oracle computes it, whenever pv is a normal
    finite number; for prices and sizes whose products overflow (1e308 x 10) or underflow
    (subnormals) it is kept as a running weighted mean instead (`_blend`), so it is always
    finite for finite input. Only `volume` itself can overflow (sizes summing past 1.8e308):
    the job's emit guard refuses such a bar (flink_job.symbol_processor.bar_problem).
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

    @classmethod
    def open_with(
        cls,
        symbol: str,
        start_ns: int,
        size_ns: int,
        price: float,
        size: float,
        event_ts_ns: int,
    ) -> MicroBar:
        """A new bar for the bucket [start_ns, start_ns + size_ns) holding one trade."""
        end_ns = start_ns + size_ns
        if not start_ns <= event_ts_ns < end_ns:
            raise TradeOutsideBarError(
                f"{symbol}: trade at event_ts {event_ts_ns} is outside the bucket "
                f"[{start_ns}, {end_ns}); open the bar at bucket_start_ns(event_ts, size)"
            )
        pv = price * size
        vwap = price
        if size > 0.0 and _TINY <= pv < _INF:
            vwap = pv / size
            if not vwap < _INF:  # a price within rounding of the largest double
                vwap = price
        return cls(
            symbol=symbol,
            start_ns=start_ns,
            end_ns=end_ns,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=size,
            vwap=vwap,
            trade_count=1,
            first_event_ns=event_ts_ns,
            last_event_ns=event_ts_ns,
            pv=pv,
        )

    def add_trade(self, price: float, size: float, event_ts_ns: int) -> None:
        """Fold one more trade in, by event time (it may arrive out of order)."""
        if not self.start_ns <= event_ts_ns < self.end_ns:
            raise TradeOutsideBarError(
                f"{self.symbol}: trade at event_ts {event_ts_ns} is outside the bar "
                f"[{self.start_ns}, {self.end_ns}); route it to its own bucket"
            )
        if event_ts_ns < self.first_event_ns:  # strictly earlier: an equal time arrived later
            self.open = price
            self.first_event_ns = event_ts_ns
        if event_ts_ns >= self.last_event_ns:  # equal time: the later arrival is the close
            self.close = price
            self.last_event_ns = event_ts_ns
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
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
        )

    @classmethod
    def from_state(cls, state: tuple) -> MicroBar:
        """Inverse of `to_state`."""
        if len(state) != 13:
            raise ValueError(
                f"MicroBar state must have 13 fields, got {len(state)}; "
                "it was not written by MicroBar.to_state"
            )
        return cls(*state)


def batch_bars(trades: Iterable[tuple[str, int, float, float]], size_ns: int) -> list[MicroBar]:
    """Batch oracle: bars of (symbol, event_ts_ns, price, size) trades, sorted by (symbol, start).

    The iteration order is the arrival order: it breaks event-time ties and sets the
    order in which volume and pv are summed (so a stream fed the same order matches
    bit for bit). Written independently of `MicroBar.add_trade` on purpose.
    """
    groups: dict[tuple[str, int], list[tuple[int, int, float, float]]] = {}
    for arrival, (symbol, ts, price, size) in enumerate(trades):
        key = (symbol, bucket_start_ns(ts, size_ns))
        groups.setdefault(key, []).append((ts, arrival, price, size))

    bars = []
    for (symbol, start), group in sorted(groups.items()):
        first = min(group, key=lambda t: (t[0], t[1]))
        last = max(group, key=lambda t: (t[0], t[1]))
        volume = 0.0
        pv = 0.0
        for _, _, price, size in group:
            volume += size
            pv += price * size
        if volume > 0.0 and not (_TINY <= pv < _INF and pv / volume < _INF):
            # extreme prices or sizes (the stream blends, `_blend`): the exact VWAP, rounded
            exact = sum(Fraction(p) * Fraction(s) for _, _, p, s in group)
            vwap = float(exact / sum(Fraction(s) for _, _, _, s in group))
        else:
            vwap = pv / volume if volume > 0.0 else last[2]
        bars.append(
            MicroBar(
                symbol=symbol,
                start_ns=start,
                end_ns=start + size_ns,
                open=first[2],
                high=max(t[2] for t in group),
                low=min(t[2] for t in group),
                close=last[2],
                volume=volume,
                vwap=vwap,
                trade_count=len(group),
                first_event_ns=first[0],
                last_event_ns=last[0],
                pv=pv,
            )
        )
    return bars
