"""The tests' indicator oracle: every value of a signal record, from a symbol's bar series.

docs/design.md ("Indicators") says what each value is. The ten TA-Lib values come from
TA-Lib 0.8.2 itself (pinned in pyproject.toml) over the closes (highs, lows) of the series
from its first bar: EMA 12 and 26, MACD 12/26/9 (line, signal, histogram: TA-Lib seeds the
fast EMA at bar 25, so the line is not EMA12 - EMA26 before it settles), RSI 14 (0 for a
flat series in 0.8.2), Bollinger 20/2 with the population sd (`BBANDS(..., 2, 2, 0)`), ATR 14.
The other five are written here with numpy from the same section and the field docs of the
signal record:

- `vwap_session`: sum(vwap x volume) / sum(volume) over the bars since the session start,
  a session beginning every New York day at `session_start` local time (a bar belongs to
  the session its start falls in); None while the session has no volume;
- `vwap_5m`: the same over the bars whose end lies in (end - 300 s, end]; None when none of
  them has volume;
- `realized_vol_60s`: the sample sd (ddof=1) of ln(close_i / close_{i-1}) over consecutive
  bars of the series that both end in (end - 60 s, end] (the return counts while its older
  bar is in the window); not annualised; None below 2 returns;
- `spread`, `imbalance`: ask - bid and (bid_size - ask_size) / (bid_size + ask_size) of
  the bar's quote (the oracle's `OracleResult.quotes`: the latest on-time quote before the
  bar's end, at most `quote_max_age` old); None without one, imbalance also when both sizes
  are 0.

Tolerances (`close_enough`): every value within 1e-9 relative of the reference (the
documented TA-Lib parity, "<= 1e-9"), with an absolute floor of 1e-9 for the values that
can be 0 or cross it at the price scale of the drills (MACD and its histogram, RSI, the
imbalance, the spread); the drills' prices are 1..1000, so that floor is <= 1e-9 of the
price. The one looser rule is `realized_vol_60s`: a standard deviation is ill-conditioned
when the returns are nearly equal (it is a difference of nearly equal sums), and the job's
Welford aggregates and numpy's two-pass formula each round to about eps x max|return|, not
eps x sd; so its floor is 1e-9 x the largest |return| in the window (still far below any
return a price tick makes).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

S = 1_000_000_000
VWAP_WINDOW_NS = 300 * S
VOL_WINDOW_NS = 60 * S
NEW_YORK = ZoneInfo("America/New_York")

TALIB_FIELDS = (
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
)
OWN_FIELDS = ("vwap_session", "vwap_5m", "realized_vol_60s", "spread", "imbalance")
SIGNAL_VALUE_FIELDS = TALIB_FIELDS + OWN_FIELDS

#: a quote as the oracle keeps it: (bid, bid size, ask, ask size)
QuoteTuple = tuple[float, float, float, float]


class BarLike(Protocol):
    start_ns: int
    end_ns: int
    high: float
    low: float
    close: float
    volume: float
    vwap: float


def session_day(start_ns: int, session_start: time = time(4, 0)) -> datetime:
    """The New York calendar day whose session holds `start_ns`: the local wall time moved
    back by the session's start time of day, truncated to the day."""
    local = datetime.fromtimestamp(start_ns // S, UTC).astimezone(NEW_YORK).replace(tzinfo=None)
    back = timedelta(
        hours=session_start.hour, minutes=session_start.minute, seconds=session_start.second
    )
    day = (local - back).date()
    return datetime(day.year, day.month, day.day)


def _nan_to_none(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def expected_signals(
    bars: Sequence[BarLike],
    quotes: Sequence[QuoteTuple | None] | None = None,
    session_start: time = time(4, 0),
) -> dict[str, list[float | None]]:
    """Every signal value of each bar of one symbol's series (start order, from its first
    bar), None where the documented value does not exist; `quotes[i]` is bar i's quote."""
    import talib  # type: ignore[import-untyped]

    n = len(bars)
    close = np.array([b.close for b in bars], dtype=float)
    high = np.array([b.high for b in bars], dtype=float)
    low = np.array([b.low for b in bars], dtype=float)
    macd, macd_signal, macd_hist = talib.MACD(close, 12, 26, 9)
    upper, mid, lower = talib.BBANDS(close, 20, 2.0, 2.0, talib.MA_Type.SMA)  # population sd
    out: dict[str, list[float | None]] = {
        "ema12": _nan_to_none(talib.EMA(close, 12)),
        "ema26": _nan_to_none(talib.EMA(close, 26)),
        "macd": _nan_to_none(macd),
        "macd_signal": _nan_to_none(macd_signal),
        "macd_hist": _nan_to_none(macd_hist),
        "rsi14": _nan_to_none(talib.RSI(close, 14)),
        "boll_mid": _nan_to_none(mid),
        "boll_upper": _nan_to_none(upper),
        "boll_lower": _nan_to_none(lower),
        "atr14": _nan_to_none(talib.ATR(high, low, close, 14)),
    }

    volume = np.array([b.volume for b in bars], dtype=float)
    pv = np.array([b.vwap for b in bars], dtype=float) * volume
    ends = np.array([b.end_ns for b in bars], dtype=np.int64)

    # session VWAP: cumulative sums restarting at each new session
    days = [session_day(b.start_ns, session_start) for b in bars]
    vwap_session: list[float | None] = []
    i = 0
    while i < n:
        j = i
        while j < n and days[j] == days[i]:
            j += 1
        cpv, cv = np.cumsum(pv[i:j]), np.cumsum(volume[i:j])
        vwap_session += [float(a / b) if b > 0 else None for a, b in zip(cpv, cv, strict=True)]
        i = j
    out["vwap_session"] = vwap_session

    # 5 min VWAP over the bars ending in (end - 300 s, end]
    vwap_5m: list[float | None] = []
    for k in range(n):
        lo = int(np.searchsorted(ends, ends[k] - VWAP_WINDOW_NS, side="right"))
        v = volume[lo : k + 1]
        if not (v > 0).any():
            vwap_5m.append(None)
            continue
        ratio = math.fsum(pv[lo : k + 1]) / math.fsum(v)
        vwap_5m.append(ratio if math.isfinite(ratio) else None)
    out["vwap_5m"] = vwap_5m

    # realized volatility: return r_k = ln(c_k / c_{k-1}) counts while bar k-1 ends in window
    rets = np.log(close[1:] / close[:-1]) if n > 1 else np.array([])
    vol: list[float | None] = []
    for k in range(n):
        if k == 0:
            vol.append(None)
            continue
        # returns 1..k, kept while the older bar's end (ends[j-1]) > ends[k] - 60 s
        first = int(np.searchsorted(ends, ends[k] - VOL_WINDOW_NS, side="right")) + 1
        window = rets[max(first, 1) - 1 : k]
        vol.append(float(np.std(window, ddof=1)) if len(window) >= 2 else None)
    out["realized_vol_60s"] = vol

    spread: list[float | None] = []
    imbalance: list[float | None] = []
    for q in quotes if quotes is not None else [None] * n:
        if q is None:
            spread.append(None)
            imbalance.append(None)
            continue
        bid, bid_size, ask, ask_size = q
        spread.append(ask - bid)
        depth = bid_size + ask_size
        imbalance.append((bid_size - ask_size) / depth if depth > 0 else None)
    out["spread"] = spread
    out["imbalance"] = imbalance
    assert all(len(v) == n for v in out.values())
    return out


def bar_quotes(
    bars: Sequence[BarLike],
    quotes: Sequence[tuple[int, float, float, float, float]],
    max_age_ns: int = 5 * S,
) -> list[QuoteTuple | None]:
    """Each bar's quote for one symbol whose quotes (event ns, bid, bid size, ask, ask size)
    are given in arrival order, none of them late: the latest (event time, ties by arrival)
    with end - max_age <= t < end (the job's rule: before the bar's end, at most
    `quote_max_age` old)."""
    ordered = sorted(quotes, key=lambda q: q[0])  # stable: equal times keep arrival order
    times = [q[0] for q in ordered]
    out: list[QuoteTuple | None] = []
    for b in bars:
        j = bisect_left(times, b.end_ns) - 1  # the last quote before the end
        hit = j >= 0 and times[j] >= b.end_ns - max_age_ns
        out.append(tuple(ordered[j][1:]) if hit else None)  # type: ignore[arg-type]
    return out


def _vol_floor(bars: Sequence[BarLike], k: int) -> float:
    """The largest |return| in bar k's 60 s window (the scale a sd's rounding follows)."""
    closes = [b.close for b in bars[: k + 1]]
    cutoff = bars[k].end_ns - VOL_WINDOW_NS
    rets = [
        abs(math.log(closes[j] / closes[j - 1]))
        for j in range(1, k + 1)
        if bars[j - 1].end_ns > cutoff
    ]
    return max(rets, default=0.0)


def close_enough(name: str, got: Any, want: float | None, scale: float = 0.0) -> bool:
    """`got` (a record's value) equals the reference `want` by the tolerances of the module
    doc; None only where the reference is None. `scale`: the realized-vol floor."""
    if want is None or got is None:
        return got is None and want is None
    if name == "realized_vol_60s":
        return abs(got - want) <= 1e-9 * max(abs(want), scale)
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def assert_series_signals(
    name_of_series: object,
    bars: Sequence[BarLike],
    got: Sequence[Any],
    quotes: Sequence[QuoteTuple | None] | None = None,
    fields: Sequence[str] = SIGNAL_VALUE_FIELDS,
    session_start: time = time(4, 0),
    check: Sequence[int] | None = None,
) -> None:
    """`got[i]` (a mapping of a signal record's values) equals the oracle of `bars` at bar i,
    for each i in `check` (default: all) and each of `fields`."""
    want = expected_signals(bars, quotes, session_start)
    for i in range(len(bars)) if check is None else check:
        for name in fields:
            value = got[i][name]
            floor = _vol_floor(bars, i) if name == "realized_vol_60s" else 0.0
            assert close_enough(name, value, want[name][i], floor), (
                name_of_series,
                name,
                i,
                value,
                want[name][i],
            )
