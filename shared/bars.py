"""Micro-bars: fixed-size event-time buckets of trades, built one trade at a time.

`MicroBar` is the streaming kernel the Flink job keeps per (symbol, bucket);
`batch_bars` is the independent batch oracle the tests and end-to-end checks use.
OHLC follow event time, not arrival order, so a trade that arrives late but inside
the out-of-orderness bound still becomes the open or the close it really was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
        return cls(
            symbol=symbol,
            start_ns=start_ns,
            end_ns=end_ns,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=size,
            vwap=pv / size if size > 0.0 else price,
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
        self.volume += size
        self.pv += price * size
        self.trade_count += 1
        self.vwap = self.pv / self.volume if self.volume > 0.0 else self.close

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
                vwap=pv / volume if volume > 0.0 else last[2],
                trade_count=len(group),
                first_event_ns=first[0],
                last_event_ns=last[0],
                pv=pv,
            )
        )
    return bars
