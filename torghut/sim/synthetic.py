"""A seeded synthetic stock market: trades, quotes, minute bars, statuses, LULD bands,
corrections and cancel errors in Alpaca's message shapes.

Pure logic with an explicit clock. The message sequence is a function of the config,
the seed and the start time only: ``advance(until)`` yields the same messages however
the clock is chunked, so tests can replay a run exactly.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.market_calendar import NS_PER_DAY, regular_session
from torghut.sim.bars import MinuteBarBuilder, MinuteBarCorruption, minute_start
from torghut.sim.config import SyntheticConfig
from torghut.sim.timestamps import NS_PER_MIN, NS_PER_S

_BASE_PRICES = {
    "AAPL": 190.0,
    "MSFT": 410.0,
    "NVDA": 880.0,
    "TSLA": 200.0,
    "SPY": 510.0,
    "QQQ": 440.0,
    "AMZN": 178.0,
    "GOOGL": 140.0,
    "META": 490.0,
    "FAKEPACA": 100.0,
}
# Exchanges that appear on the SIP feed (IEX-only feeds always say "V").
_SIP_EXCHANGES = ("V", "Q", "P", "N", "K", "Z", "J", "Y", "D", "X", "B", "A", "C", "H", "U")
_NYSE_LISTED_TAPE_B = {"SPY", "QQQ", "IWM", "DIA"}
# Sale conditions of a trade in the regular session, with their share of trades (a
# consolidated-tape day: about half the prints are odd lots, a fifth intermarket sweeps;
# the prints that must not move a bar's price are rare but present every minute at these
# rates). `None` in a combination is the tape's average-price code (CTA "B", UTP "W").
# Cumulative weights; the offset is how far from the market such a print is priced.
_REGULAR_SESSION_CONDITIONS: tuple[tuple[float, tuple[str | None, ...], float], ...] = (
    (0.380, ("@",), 0.0),
    (0.730, ("@", "I"), 0.0),
    (0.850, ("@", "F"), 0.0),
    (0.945, ("@", "F", "I"), 0.0),
    (0.960, ("@", "7"), 0.0),  # qualified contingent trade: volume only
    (0.970, ("@", "Z"), 0.001),  # sold out of sequence: high/low, not the last sale
    (0.975, ("@", "4"), 0.002),  # derivatively priced: high/low only
    (0.980, ("@", "P"), 0.001),  # prior reference price: high/low only
    (0.985, (None,), 0.01),  # average price, far from the market: volume only
    (0.990, ("@", "X"), 0.0),  # cross trade
    (0.994, ("@", "C"), 0.003),  # cash sale: volume only
    (0.997, ("@", "H"), 0.003),  # price variation: volume only
    (0.998, ("@", "N"), 0.003),  # next day: volume only
    (1.000, ("@", "R"), 0.003),  # seller: volume only
)
# outside the regular session (the NYSE calendar) every print is Form T
_EXTENDED_SESSION_CONDITIONS: tuple[tuple[float, tuple[str | None, ...], float], ...] = (
    (0.55, ("@", "T"), 0.0),
    (0.99, ("@", "T", "I"), 0.0),
    (1.00, ("@", "U"), 0.002),  # extended hours, sold out of sequence: volume only
)


@dataclass(slots=True)
class _SymbolState:
    mid: float
    tape: str
    next_id: int
    last_trade_t: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=64))


class SyntheticMarket:
    """Random-walk market data for a set of symbols, deterministic for a given seed.

    Event times are Poisson arrivals at ``trades_per_sec`` / ``quotes_per_sec`` per
    symbol starting at ``start_ns`` (``advance``), or as many events as asked stamped at
    the caller's clock (``burst``). Trade ids ``i`` increase per symbol starting from
    ``start_ns`` in microseconds, so ids keep increasing across simulator restarts.
    """

    def __init__(self, config: SyntheticConfig, start_ns: int, seed: int) -> None:
        self.config = config
        self._rng = random.Random(seed)
        self._clock = start_ns
        self._minute_end = minute_start(start_ns) + NS_PER_MIN
        self._step_scale = config.volatility * math.sqrt(12.0)
        self._bars = MinuteBarBuilder(
            daily_bars=config.daily_bars,
            corrupt=(
                MinuteBarCorruption.parse(config.corrupt_minute_bar)
                if config.corrupt_minute_bar
                else None
            ),
        )
        self._sessions: dict[int, tuple[int, int]] = {}  # UTC day -> regular session
        self._exchange_fixed = "V" if config.feed in ("iex", "test") else None
        self._symbols: dict[str, _SymbolState] = {}
        # rotating symbol -> its group (config.rotating_symbols); only the group whose turn
        # it is (event time since start // period % groups) sends
        self._rotation = {
            sym: i % config.rotation_groups
            for i, sym in enumerate(config.rotating_symbols)
            if sym not in config.symbols
        }
        self._start_ns = start_ns
        self._period_ns = int(config.rotation_period_s * NS_PER_S)
        everyone = (*config.symbols, *self._rotation)
        for sym in everyone:
            base = _BASE_PRICES.get(sym) or 20.0 + (sum(map(ord, sym)) * 7919) % 480
            self._symbols[sym] = _SymbolState(
                mid=base * math.exp(self._rng.gauss(0.0, 0.01)),
                tape="B" if sym in _NYSE_LISTED_TAPE_B else "C",
                next_id=start_ns // 1000,
            )
        self._heap: list[tuple[int, int, str, str]] = []
        self._seq = 0
        for sym in everyone:
            if config.trades_per_sec > 0:
                self._schedule(start_ns, "t", sym, config.trades_per_sec)
            if config.quotes_per_sec > 0:
                self._schedule(start_ns, "q", sym, config.quotes_per_sec)
        self._total_rate = len(config.symbols) * (config.trades_per_sec + config.quotes_per_sec)
        self._trade_share = (
            config.trades_per_sec / (config.trades_per_sec + config.quotes_per_sec)
            if self._total_rate > 0
            else 1.0
        )
        self._symbol_list = list(config.symbols)
        self._started = False
        self.trades_emitted = 0
        self.messages_emitted = 0

    # --- clocks ------------------------------------------------------------------

    def _schedule(self, after_ns: int, kind: str, sym: str, rate: float) -> None:
        gap = max(1, int(self._rng.expovariate(rate) * NS_PER_S))
        self._seq += 1
        heapq.heappush(self._heap, (after_ns + gap, self._seq, kind, sym))

    def advance(self, until_ns: int, max_trades: int | None = None) -> list[dict[str, Any]]:
        """All messages due up to ``until_ns`` (stops early once ``max_trades`` were made)."""
        out: list[dict[str, Any]] = []
        self._start(out)
        rates = {"t": self.config.trades_per_sec, "q": self.config.quotes_per_sec}
        heap = self._heap
        while heap and heap[0][0] <= until_ns:
            if max_trades is not None and self.trades_emitted >= max_trades:
                break
            ts, _, kind, sym = heapq.heappop(heap)
            if self._turn(sym, ts):
                self._event(kind, sym, ts, out)
            self._schedule(ts, kind, sym, rates[kind])
        else:
            if until_ns > self._clock:
                if until_ns >= self._minute_end:
                    self._close_minutes(until_ns, out)
                    self._minute_end = minute_start(until_ns) + NS_PER_MIN
                self._clock = until_ns
        self.messages_emitted += len(out)
        return out

    def _turn(self, sym: str, ts: int) -> bool:
        """Whether ``sym`` sends at event time ``ts`` (always, unless it is rotating)."""
        group = self._rotation.get(sym)
        if group is None:
            return True
        groups = self.config.rotation_groups
        return (ts - self._start_ns) // self._period_ns % groups == group

    def burst(self, count: int, now_ns: int) -> list[dict[str, Any]]:
        """``count`` trade/quote events now (as fast as possible mode), ts strictly increasing."""
        out: list[dict[str, Any]] = []
        self._start(out)
        rng, share, symbols = self._rng, self._trade_share, self._symbol_list
        ts = max(now_ns, self._clock)
        for _ in range(count):
            ts += 1
            sym = symbols[int(rng.random() * len(symbols))]
            self._event("t" if rng.random() < share else "q", sym, ts, out)
        self._clock = ts
        self.messages_emitted += len(out)
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Bars of the minutes still open, so a bounded run accounts for every trade."""
        out = self._bars.flush()
        self.messages_emitted += len(out)
        return out

    @property
    def late_trades_outside_bars(self) -> int:
        return self._bars.dropped_late

    # --- events ------------------------------------------------------------------

    def _start(self, out: list[dict[str, Any]]) -> None:
        if self._started:
            return
        self._started = True
        if not self.config.statuses:
            return
        for sym, st in self._symbols.items():
            out.append(
                {
                    "T": "s",
                    "S": sym,
                    "sc": "T",
                    "sm": "Trading Resumption",
                    "rc": "",
                    "rm": "",
                    "t": self._clock,
                    "z": st.tape,
                }
            )

    def _exchange(self) -> str:
        return self._exchange_fixed or _SIP_EXCHANGES[int(self._rng.random() * len(_SIP_EXCHANGES))]

    def _size(self) -> float | int:
        # random() arithmetic instead of randint/choice: this is the hot path of --fast
        r = self._rng.random
        if self.config.fractional_sizes and r() < 0.3:
            return round(0.0001 + r() * 5.0, 6)
        if r() < 0.4:
            return 1 + int(r() * 99)
        return 100 * (1 + int(r() * 10))

    def _event(self, kind: str, sym: str, ts: int, out: list[dict[str, Any]]) -> None:
        if ts >= self._minute_end:
            self._close_minutes(ts, out)
            self._minute_end = minute_start(ts) + NS_PER_MIN
        if ts > self._clock:
            self._clock = ts
        st = self._symbols[sym]
        rng = self._rng
        # uniform log-return step with sd = volatility (cheaper than gauss on the hot path)
        st.mid = max(0.01, st.mid * (1.0 + self._step_scale * (rng.random() - 0.5)))
        if kind == "q":
            r = rng.random
            half = 0.01 * (1 + int(r() * 3))
            bid = round(st.mid - half, 2)
            ask = round(max(st.mid + half, bid + 0.01), 2)
            out.append(
                {
                    "T": "q",
                    "S": sym,
                    "bx": self._exchange(),
                    "bp": bid,
                    "bs": 1 + int(r() * 10),
                    "ax": self._exchange(),
                    "ap": ask,
                    "as": 1 + int(r() * 10),
                    "c": ["R"],
                    "z": st.tape,
                    "t": ts,
                }
            )
            return
        self._trade(sym, st, ts, out)

    def _close_minutes(self, ts: int, out: list[dict[str, Any]]) -> None:
        bars = self._bars.close_until(ts)
        out.extend(bars)
        if self.config.lulds:
            for bar in bars:
                if bar["T"] == "b":
                    st = self._symbols[bar["S"]]
                    out.append(
                        {
                            "T": "l",
                            "S": bar["S"],
                            "u": round(bar["c"] * 1.05, 2),
                            "d": round(bar["c"] * 0.95, 2),
                            "i": "B",
                            "t": bar["t"] + NS_PER_MIN,
                            "z": st.tape,
                        }
                    )

    def _trade(self, sym: str, st: _SymbolState, ts: int, out: list[dict[str, Any]]) -> None:
        cfg, rng = self.config, self._rng
        t = ts
        roll = rng.random()
        if roll < cfg.late_rate:
            t = ts - int(rng.uniform(cfg.late_delay_s[0], cfg.late_delay_s[1]) * NS_PER_S)
        elif roll < cfg.late_rate + cfg.out_of_order_rate and st.last_trade_t:
            t = st.last_trade_t - 1_000 - int(rng.random() * cfg.out_of_order_max_s * NS_PER_S)
        price = round(st.mid + (0.005 if rng.random() < 0.5 else -0.005), 2)
        size = self._size()
        conditions, offset = self._conditions(st, t)
        if offset:
            price = round(price * (1.0 + (offset if rng.random() < 0.5 else -offset)), 2)
        trade = {
            "T": "t",
            "S": sym,
            "i": st.next_id,
            "x": self._exchange(),
            "p": price,
            "s": size,
            "c": list(conditions),
            "z": st.tape,
            "t": t,
        }
        st.next_id += 1
        st.last_trade_t = max(st.last_trade_t, t)
        st.recent.append(trade)
        out.append(trade)
        self.trades_emitted += 1
        out.extend(self._bars.add_trade(sym, t, price, float(size), conditions, st.tape))
        roll = rng.random()
        if roll < cfg.correction_rate:
            out.append(self._correction(sym, st, ts))
        elif roll < cfg.correction_rate + cfg.cancel_error_rate:
            orig = rng.choice(st.recent)
            out.append(
                {
                    "T": "x",
                    "S": sym,
                    "i": orig["i"],
                    "x": orig["x"],
                    "p": orig["p"],
                    "s": orig["s"],
                    "a": "C",
                    "z": st.tape,
                    "t": ts,
                }
            )

    def _conditions(self, st: _SymbolState, t: int) -> tuple[tuple[str, ...], float]:
        """A trade's sale conditions at event time `t`, and how far from the market such a
        print is priced (average-price and prior-reference prints are not at the market)."""
        if self.config.sale_conditions == "regular":
            return ("@",), 0.0
        day = t // NS_PER_DAY
        session = self._sessions.get(day)
        if session is None:
            session = self._sessions[day] = regular_session(day) or (0, 0)
        table = (
            _REGULAR_SESSION_CONDITIONS
            if session[0] <= t < session[1]
            else _EXTENDED_SESSION_CONDITIONS
        )
        roll = self._rng.random()
        codes, offset = next(((c, o) for cum, c, o in table if roll < cum), table[-1][1:])
        average = "W" if st.tape == "C" else "B"
        return tuple(c if c is not None else average for c in codes), offset

    def _correction(self, sym: str, st: _SymbolState, ts: int) -> dict[str, Any]:
        orig = self._rng.choice(st.recent)
        corrected_id = st.next_id
        st.next_id += 1
        return {
            "T": "c",
            "S": sym,
            "x": orig["x"],
            "oi": orig["i"],
            "op": orig["p"],
            "os": orig["s"],
            "oc": orig["c"],
            "ci": corrected_id,
            "cp": round(orig["p"] + self._rng.choice((-0.01, 0.01)), 2),
            "cs": orig["s"],
            "cc": ["@"],
            "z": st.tape,
            "t": ts,
        }
