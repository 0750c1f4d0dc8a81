"""Per-symbol streaming indicators over closed micro-bars, TA-Lib compatible.

One `SignalState` per symbol. `update(bar, quote)` commits a closed bar; `peek(bar,
quote)` answers as if a still-open bar closed now and changes nothing. Both run the
same code path (`_step`), so a provisional value equals the final one whenever the
bar does not change before it closes.

TA-Lib semantics reproduced (values within 1e-9 of TA-Lib 0.8 on the same history
from the same first bar, None exactly where TA-Lib returns NaN):
- EMA n: seeded with the SMA of the first n closes (first value at bar n-1), then
  ((x - ema) * k) + ema with k = 2/(n+1). State is one float: no history cap exists
  that could change a value.
- MACD 12/26/9: the slow line is EMA 26; the fast EMA is seeded at bar 25 with the SMA
  of bars 14..25 (TA-Lib aligns it with the slow seed, so it differs from EMA 12);
  the signal is seeded with the SMA of the MACD line over bars 25..33; first value at 33.
- RSI 14: Wilder; the sum of gains and losses over bars 1..14 scaled by 1/14, then
  avg = (avg * 13 + delta) * (1/14); 100 * gain / (gain + loss), and 0 when that sum
  is exactly 0 (a flat series), as TA-Lib returns. First value at bar 14.
- Bollinger 20/2: mid is TA-Lib's running-sum SMA; the band uses the population sd
  of the last 20 closes about mid, computed two-pass (`math.dist`, in C), never as
  E[x^2] - mean^2, which cancels at high price / low volatility.
- ATR 14: true range from bar 1; seeded with the mean of the first 14 TRs (bar 14),
  then (13/14) * atr + (1/14) * tr.
Not TA-Lib: session VWAP, rolling 5 min VWAP, 60 s realized volatility, spread and
imbalance (see `SignalValues`).

Finite by construction: a bar is refused (`InvalidBarError`) unless its close, high, low
and vwap lie in [PRICE_FLOOR, PRICE_CEIL] and its volume in [0, VOLUME_CEIL]. Inside that
domain nothing the kernels form can overflow or become NaN, however long the history: EMA
and SMA sums of at most 26 prices stay below 3e101, squares of deviations (Bollinger's
`math.dist` scales them anyway) below 1e201, RSI and ATR terms below 1e101, a price
ratio lies in [1e-200, 1e200] so a log return within +-461, and a bar's pv = vwap * volume
is at most 1e200, so a session's sum stays finite for more than 1e100 bars. The quote
fields: ask - bid of two finite non-negative numbers is finite; a depth that overflows is
halved first (exact). The job's plausibility limits are far inside this domain
(shared/limits.py), so for its input the checks never refuse a bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import time

from shared.bars import MicroBar
from shared.indicators.exceptions import BarOrderError, InvalidBarError, SignalStateError
from shared.indicators.session import SessionCalendar
from shared.indicators.windows import RollingVolatility, RollingVwap

STATE_VERSION = 1
VWAP_WINDOW_NS = 300 * 1_000_000_000
VOL_WINDOW_NS = 60 * 1_000_000_000

_K12 = 2.0 / 13.0
_K26 = 2.0 / 27.0
_K9 = 2.0 / 10.0
_INV14 = 1.0 / 14.0
_ATR_BETA = 13.0 / 14.0
_ATR_ALPHA = 1.0 - _ATR_BETA
_SQRT20 = math.sqrt(20.0)
_INF = math.inf
_NO_BAR = -(1 << 63)
# the kernels' domain (module doc): 1e100 squared is still 1e200 below overflow
PRICE_FLOOR = 1e-100
PRICE_CEIL = 1e100
VOLUME_CEIL = 1e100


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book at `event_ns` (epoch ns)."""

    bid: float
    bid_size: float
    ask: float
    ask_size: float
    event_ns: int


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """Knobs of the non-TA-Lib signals. Windows are fixed: the field names state them."""

    session_start: time = time(4, 0)  # America/New_York local time
    quote_max_age_ns: int = 5_000_000_000

    @classmethod
    def parse(
        cls, session_start_local: str = "04:00", quote_max_age_ms: int = 5_000
    ) -> SignalConfig:
        """From the job settings' spelling ("HH:MM" local time, milliseconds)."""
        try:
            start = time.fromisoformat(session_start_local)
        except ValueError as exc:
            raise ValueError(
                f"session_start_local={session_start_local!r} is not a local time; "
                "use HH:MM such as '04:00'"
            ) from exc
        if quote_max_age_ms < 0:
            raise ValueError(f"quote_max_age_ms={quote_max_age_ms} must be >= 0")
        return cls(session_start=start, quote_max_age_ns=quote_max_age_ms * 1_000_000)


@dataclass(slots=True)
class SignalValues:
    """Indicator values at a bar's end; None while warming up or undefined.

    vwap_session: sum(vwap * volume) / sum(volume) of the bars since the session start
      (a bar belongs to the session its start falls in); None without volume.
    vwap_5m: the same over the bars whose end lies in (end - 300 s, end].
    realized_vol_60s: sample sd (ddof=1) of ln(close_i / close_{i-1}) over consecutive
      bars that both end in (end - 60 s, end]; not annualised; None below 2 returns.
    spread, imbalance: ask - bid and (bid_size - ask_size) / (bid_size + ask_size) of the
      quote, if it is before the bar end and at most `quote_max_age_ns` older; else None
      (imbalance also None when both sizes are 0).
    """

    ema12: float | None = None
    ema26: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_hist: float | None = None
    rsi14: float | None = None
    boll_mid: float | None = None
    boll_upper: float | None = None
    boll_lower: float | None = None
    atr14: float | None = None
    vwap_session: float | None = None
    vwap_5m: float | None = None
    realized_vol_60s: float | None = None
    spread: float | None = None
    imbalance: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in _VALUE_FIELDS}


_VALUE_FIELDS = fields(SignalValues)


class SignalState:
    """All indicator state of one symbol; O(1) amortized per bar, plain-data state.

    Bars must be committed in strictly increasing `end_ns`; indicators advance per
    bar (a quiet second without trades has no bar and is not filled in).
    """

    __slots__ = (
        "_atr",
        "_boll_sum",
        "_calendar",
        "_closes",
        "_ema12",
        "_ema26",
        "_gain",
        "_last_close",
        "_last_end",
        "_loss",
        "_macd_fast",
        "_macd_signal",
        "_n",
        "_session_pv",
        "_session_start",
        "_session_v",
        "_vol_60s",
        "_vwap_5m",
        "config",
    )

    def __init__(self, config: SignalConfig | None = None) -> None:
        self.config = config or SignalConfig()
        self._calendar = SessionCalendar(self.config.session_start)
        self._n = 0  # bars committed
        self._last_close = 0.0
        self._last_end = _NO_BAR
        self._ema12 = 0.0  # sum of closes while warming up, then the EMA
        self._ema26 = 0.0
        self._macd_fast = 0.0
        self._macd_signal = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self._atr = 0.0
        self._boll_sum = 0.0  # TA-Lib's running SMA total (of the last 19 closes between bars)
        self._closes: list[float] = []  # the last 19 closes
        self._session_start = _NO_BAR
        self._session_pv = 0.0
        self._session_v = 0.0
        self._vwap_5m = RollingVwap()
        self._vol_60s = RollingVolatility()

    def update(self, bar: MicroBar, quote: Quote | None = None) -> SignalValues:
        """Commit a closed bar and return the indicators at its end."""
        return self._step(bar, quote, True)

    @property
    def last_bar_end_ns(self) -> int | None:
        """End of the last committed bar (None before the first); `peek` needs a later bar."""
        return None if self._last_end == _NO_BAR else self._last_end

    def peek(self, bar: MicroBar, quote: Quote | None = None) -> SignalValues:
        """The values `update` would return for this (still open) bar; state unchanged."""
        return self._step(bar, quote, False)

    @property
    def bars_committed(self) -> int:
        return self._n

    @property
    def last_close(self) -> float | None:
        """Close of the last committed bar (None before the first): the price a bar with
        no price-eligible trade carries (docs/design.md, "Condition-aware bars")."""
        return None if self._n == 0 else self._last_close

    def _step(self, bar: MicroBar, quote: Quote | None, commit: bool) -> SignalValues:
        end = bar.end_ns
        if end <= self._last_end:
            raise BarOrderError(
                f"{bar.symbol}: bar ending {end} is not after the last committed bar "
                f"ending {self._last_end}; commit bars once each, in event-time order"
            )
        x = bar.close
        if not (
            PRICE_FLOOR <= x <= PRICE_CEIL
            and PRICE_FLOOR <= bar.low <= PRICE_CEIL
            and PRICE_FLOOR <= bar.high <= PRICE_CEIL
            and PRICE_FLOOR <= bar.vwap <= PRICE_CEIL
            and 0.0 <= bar.volume <= VOLUME_CEIL
        ):
            raise InvalidBarError(self._domain_problem(bar))
        k = self._n
        prev = self._last_close

        # EMA 12 / 26: SMA seed, then ((x - ema) * k) + ema
        e12 = self._ema12
        ema12 = None
        if k < 11:
            e12 += x
        else:
            e12 = (e12 + x) / 12.0 if k == 11 else ((x - e12) * _K12) + e12
            ema12 = e12
        e26 = self._ema26
        ema26 = None
        if k < 25:
            e26 += x
        else:
            e26 = (e26 + x) / 26.0 if k == 25 else ((x - e26) * _K26) + e26
            ema26 = e26

        # MACD: fast EMA seeded on bars 14..25 (aligned with the slow seed), signal on 25..33
        fast = self._macd_fast
        signal = self._macd_signal
        macd = macd_signal = macd_hist = None
        if k >= 14:
            if k < 25:
                fast += x
            else:
                fast = (fast + x) / 12.0 if k == 25 else ((x - fast) * _K12) + fast
                line = fast - e26
                if k < 33:
                    signal += line
                else:
                    signal = (signal + line) / 9.0 if k == 33 else ((line - signal) * _K9) + signal
                    macd, macd_signal, macd_hist = line, signal, line - signal

        # RSI 14 (Wilder) and ATR 14 need the previous close
        gain, loss, atr_acc = self._gain, self._loss, self._atr
        rsi14 = atr14 = None
        if k > 0:
            delta = x - prev
            up = delta if delta > 0.0 else 0.0
            if k > 14:
                gain *= 13.0
                loss *= 13.0
            gain += up
            loss += up - delta
            if k >= 14:
                gain *= _INV14
                loss *= _INV14
                total = gain + loss
                rsi14 = 100.0 * (gain / total) if total > 0.0 else 0.0

            high, low = bar.high, bar.low
            tr = high - low
            d = abs(prev - high)
            if d > tr:
                tr = d
            d = abs(prev - low)
            if d > tr:
                tr = d
            if k < 14:
                atr_acc += tr
            else:
                atr_acc = (
                    (atr_acc + tr) / 14.0 if k == 14 else _ATR_ALPHA * tr + _ATR_BETA * atr_acc
                )
                atr14 = atr_acc

        # Bollinger 20/2
        boll_sum = self._boll_sum + x
        closes = self._closes
        boll_mid = boll_upper = boll_lower = None
        if k >= 19:
            boll_mid = boll_sum / 20.0
            window = [*closes, x]
            width = 2.0 * (math.dist(window, [boll_mid] * 20) / _SQRT20)
            boll_upper = boll_mid + width
            boll_lower = boll_mid - width
            boll_sum -= closes[0]

        # session VWAP, reset when the New York session changes
        volume = bar.volume
        pv = bar.vwap * volume
        session_start = self._calendar.bounds(bar.start_ns)[0]
        if session_start == self._session_start:
            session_pv = self._session_pv + pv
            session_v = self._session_v + volume
        else:
            session_pv, session_v = pv, volume
        vwap_session = session_pv / session_v if session_v > 0.0 else None

        # time windows; a return is keyed by its older bar's end, so both bars are inside
        ret = math.log(x / prev) if k > 0 else None
        if commit:
            vwap_5m = self._vwap_5m.commit(end - VWAP_WINDOW_NS, end, pv, volume)
            vol = self._vol_60s.commit(end - VOL_WINDOW_NS, self._last_end, ret)
        else:
            vwap_5m = self._vwap_5m.peek(end - VWAP_WINDOW_NS, end, pv, volume)
            vol = self._vol_60s.peek(end - VOL_WINDOW_NS, self._last_end, ret)

        spread = imbalance = None
        if quote is not None and 0 < end - quote.event_ns <= self.config.quote_max_age_ns:
            spread = quote.ask - quote.bid
            bs, as_ = quote.bid_size, quote.ask_size
            depth = bs + as_
            if depth == _INF:  # two finite sizes whose sum overflows: halve both (exact)
                bs, as_ = bs * 0.5, as_ * 0.5
                depth = bs + as_
            if depth > 0.0:
                imbalance = (bs - as_) / depth

        if commit:
            self._n = k + 1
            self._last_close = x
            self._last_end = end
            self._ema12, self._ema26 = e12, e26
            self._macd_fast, self._macd_signal = fast, signal
            self._gain, self._loss, self._atr = gain, loss, atr_acc
            self._boll_sum = boll_sum
            closes.append(x)
            if k >= 19:
                del closes[0]
            self._session_start, self._session_pv, self._session_v = (
                session_start,
                session_pv,
                session_v,
            )

        return SignalValues(
            ema12,
            ema26,
            macd,
            macd_signal,
            macd_hist,
            rsi14,
            boll_mid,
            boll_upper,
            boll_lower,
            atr14,
            vwap_session,
            vwap_5m,
            vol,
            spread,
            imbalance,
        )

    @staticmethod
    def _domain_problem(bar: MicroBar) -> str:
        for name in ("close", "high", "low", "vwap"):
            v = getattr(bar, name)
            if not PRICE_FLOOR <= v <= PRICE_CEIL:
                return (
                    f"{bar.symbol}: bar ending {bar.end_ns} has {name} {v!r}; prices must be "
                    f"finite and in [{PRICE_FLOOR:g}, {PRICE_CEIL:g}]"
                )
        return (
            f"{bar.symbol}: bar ending {bar.end_ns} has volume {bar.volume!r}; volumes must "
            f"be finite and in [0, {VOLUME_CEIL:g}]"
        )

    def to_state(self) -> tuple:
        """Plain tuple (ints, floats, tuples) for Flink ValueState; config is not included."""
        return (
            STATE_VERSION,
            self._n,
            self._last_close,
            self._last_end,
            self._ema12,
            self._ema26,
            self._macd_fast,
            self._macd_signal,
            self._gain,
            self._loss,
            self._atr,
            self._boll_sum,
            tuple(self._closes),
            self._session_start,
            self._session_pv,
            self._session_v,
            self._vwap_5m.to_state(),
            self._vol_60s.to_state(),
        )

    @classmethod
    def from_state(cls, state: tuple, config: SignalConfig | None = None) -> SignalState:
        """Inverse of `to_state`; continues bit-for-bit as if never interrupted."""
        if not state or state[0] != STATE_VERSION or len(state) != 18:
            raise SignalStateError(
                f"signal state version {state[0] if state else None!r} (length {len(state)}) "
                f"is not version {STATE_VERSION}; it was written by another release, "
                "so restart the job from a savepoint of this release or from no state"
            )
        s = cls(config or SignalConfig())
        (
            _,
            s._n,
            s._last_close,
            s._last_end,
            s._ema12,
            s._ema26,
            s._macd_fast,
            s._macd_signal,
            s._gain,
            s._loss,
            s._atr,
            s._boll_sum,
            closes,
            s._session_start,
            s._session_pv,
            s._session_v,
            vwap_state,
            vol_state,
        ) = state
        s._closes = list(closes)
        s._vwap_5m = RollingVwap.from_state(vwap_state)
        s._vol_60s = RollingVolatility.from_state(vol_state)
        return s
