"""The canary's bookkeeping, without I/O: the newest event time per (topic, partition,
symbol) of the raw input and of the TA job's output, the lag between them per symbol, and
whether the raw input still moves. docs/design.md ("The canary") states the definitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the raw topic whose event time the derived output follows (the job builds bars of trades)
LAG_SOURCE = "trades"


@dataclass
class SymbolTimes:
    """One configured symbol's newest event times (epoch ns; 0: none read yet)."""

    raw_ns: dict[str, int] = field(default_factory=dict)  # raw channel -> newest event
    derived_ns: int = 0  # newest event_ts of a bar or signal record, provisional or final
    final_ns: int = 0  # newest final bar's window end
    first_trade_ns: int = 0  # the first trade read: lag counts from it until output follows

    @property
    def last_event_ns(self) -> int:
        return max(self.raw_ns.values(), default=0)

    def lag_ns(self) -> int | None:
        """Newest trade minus newest derived output (>= 0), None before any trade."""
        trade = self.raw_ns.get(LAG_SOURCE, 0)
        if not trade:
            return None
        return max(0, trade - max(self.derived_ns, self.first_trade_ns))

    def final_lag_ns(self) -> int | None:
        trade = self.raw_ns.get(LAG_SOURCE, 0)
        if not trade:
            return None
        return max(0, trade - max(self.final_ns, self.first_trade_ns))


@dataclass
class CanaryBook:
    """What the canary has read. `now_ns` is the wall clock of each call (for the idle time
    of the raw input: arrival-based, so a delayed feed or a replay is not "stalled")."""

    symbols: frozenset[str]
    started_ns: int
    times: dict[str, SymbolTimes] = field(default_factory=dict)
    newest_raw_ns: int = 0  # newest raw event time of any configured symbol
    raw_advanced_wall_ns: int = 0  # wall time newest_raw_ns last moved forward
    other_records: int = 0  # records of symbols that are not configured

    def __post_init__(self) -> None:
        self.times = {s: SymbolTimes() for s in sorted(self.symbols)}
        self.raw_advanced_wall_ns = self.started_ns

    def on_raw(self, channel: str, symbol: str, event_ns: int, now_ns: int) -> bool:
        """A raw trade or quote; False (counted in `other_records`) for another symbol."""
        t = self.times.get(symbol)
        if t is None:
            self.other_records += 1
            return False
        if event_ns > t.raw_ns.get(channel, 0):
            t.raw_ns[channel] = event_ns
        if channel == LAG_SOURCE and not t.first_trade_ns:
            t.first_trade_ns = event_ns
        if event_ns > self.newest_raw_ns:
            self.newest_raw_ns = event_ns
            self.raw_advanced_wall_ns = now_ns
        return True

    def on_derived(self, symbol: str, event_ns: int) -> bool:
        t = self.times.get(symbol)
        if t is None:
            self.other_records += 1
            return False
        t.derived_ns = max(t.derived_ns, event_ns)
        return True

    def on_final(self, symbol: str, window_end_ns: int) -> bool:
        t = self.times.get(symbol)
        if t is None:
            self.other_records += 1
            return False
        t.final_ns = max(t.final_ns, window_end_ns)
        return True

    def input_idle_s(self, now_ns: int) -> float:
        """Seconds of wall time since the raw input's newest event time last moved forward
        (since the start while nothing was read)."""
        return max(0, now_ns - self.raw_advanced_wall_ns) / 1e9

    def max_lag_s(self) -> float:
        lags = [lag for t in self.times.values() if (lag := t.lag_ns()) is not None]
        return max(lags, default=0) / 1e9
