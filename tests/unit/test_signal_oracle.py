"""The tests' indicator oracle (tests/support/signal_oracle.py): hand-computed examples of
docs/design.md "Indicators" for the values it computes itself, TA-Lib's warm-up positions
for the rest, and a cross-check against the job's `SignalState` over irregular series."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.indicators import Quote, SignalState
from tests.support.bar_oracle import OracleBar
from tests.support.signal_oracle import (
    SIGNAL_VALUE_FIELDS,
    assert_series_signals,
    close_enough,
    expected_signals,
    session_day,
)

S = 1_000_000_000
T0 = 1_796_394_600 * S  # 2026-12-04 14:30 UTC = 09:30 New York (EST)


def ns(y: int, mo: int, d: int, h: int, mi: int = 0, sec: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, sec, tzinfo=UTC).timestamp()) * S


def bar(
    start: int, close: float, volume: float = 1.0, vwap: float | None = None, size: int = S
) -> OracleBar:
    return OracleBar(
        "X",
        start,
        start + size,
        close,
        close,
        close,
        close,
        volume,
        close if vwap is None else vwap,
        1,
        2,
    )


# ------------------------------------------------------------------------------ sessions


def test_a_session_starts_at_four_new_york_time_on_both_sides_of_dst() -> None:
    # winter: 04:00 EST = 09:00 UTC
    assert session_day(ns(2026, 12, 4, 8, 59, 59)) == datetime(2026, 12, 3)
    assert session_day(ns(2026, 12, 4, 9, 0, 0)) == datetime(2026, 12, 4)
    # summer: 04:00 EDT = 08:00 UTC
    assert session_day(ns(2026, 7, 6, 7, 59, 59)) == datetime(2026, 7, 5)
    assert session_day(ns(2026, 7, 6, 8, 0, 0)) == datetime(2026, 7, 6)
    # another start time of day
    assert session_day(ns(2026, 12, 4, 14, 29), time(9, 30)) == datetime(2026, 12, 3)
    assert session_day(ns(2026, 12, 4, 14, 30), time(9, 30)) == datetime(2026, 12, 4)


def test_session_vwap_accumulates_within_a_session_and_restarts_at_the_next() -> None:
    four = ns(2026, 12, 4, 9)  # 04:00 New York
    bars = [
        bar(four - 2 * S, 10.0, 1.0, 10.0),
        bar(four - S, 11.0, 3.0, 12.0),  # the last second of the old session
        bar(four, 20.0, 0.0, 20.0),  # the new session's first bar, no volume yet
        bar(four + S, 21.0, 2.0, 21.5),
        bar(four + 5 * S, 22.0, 2.0, 22.5),
    ]
    got = expected_signals(bars)["vwap_session"]
    assert got == [10.0, (10.0 + 36.0) / 4.0, None, 21.5, (43.0 + 45.0) / 4.0]


# -------------------------------------------------------------------------- time windows


def test_the_5_minute_vwap_holds_the_bars_ending_in_the_last_300_s() -> None:
    bars = [
        bar(T0, 10.0, 2.0, 10.0),  # ends T0 + 1 s
        bar(T0 + 1 * S, 12.0, 1.0, 12.0),  # ends T0 + 2 s
        bar(T0 + 300 * S, 20.0, 1.0, 20.0),  # ends T0 + 301 s: the first bar just left
        bar(T0 + 301 * S, 30.0, 0.0, 30.0),  # ends T0 + 302 s: the second left too, no volume
        bar(T0 + 900 * S, 40.0, 0.0, 40.0),  # alone and without volume
    ]
    assert expected_signals(bars)["vwap_5m"] == [10.0, 32.0 / 3.0, 16.0, 20.0, None]


def test_realized_volatility_is_the_sample_sd_of_the_returns_whose_older_bar_is_in_60_s() -> None:
    closes = [100.0, 101.0, 99.0, 100.5, 100.0]
    starts = [T0, T0 + S, T0 + 2 * S, T0 + 60 * S, T0 + 61 * S]  # ends 1, 2, 3, 61, 62 s
    bars = [bar(s, c) for s, c in zip(starts, closes, strict=True)]
    r = [math.log(closes[i] / closes[i - 1]) for i in range(1, 5)]  # r[i]: bar i's end
    got = expected_signals(bars)["realized_vol_60s"]
    assert got[0] is None and got[1] is None  # no return, one return
    assert got[2] == pytest.approx(float(np.std(r[:2], ddof=1)), rel=1e-15)
    # bar 3 ends at 61 s: window (1 s, 61 s]; r[0] (keyed 1 s) has left
    assert got[3] == pytest.approx(float(np.std(r[1:3], ddof=1)), rel=1e-15)
    # bar 4 ends at 62 s: r[1] (keyed 2 s) has left too
    assert got[4] == pytest.approx(float(np.std(r[2:4], ddof=1)), rel=1e-15)
    # a bar ending at 64 s: r[2] (keyed 3 s) has left; r[3] (61 s) and its own 0 return stay
    later = expected_signals([*bars, bar(T0 + 63 * S, 100.0)])["realized_vol_60s"]
    assert later[5] == pytest.approx(float(np.std([*r[3:], 0.0], ddof=1)), rel=1e-15)


def test_a_flat_stretch_has_zero_volatility() -> None:
    bars = [bar(T0 + i * S, 50.0) for i in range(5)]
    assert expected_signals(bars)["realized_vol_60s"] == [None, None, 0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------- quotes


def test_spread_and_imbalance_come_from_the_bars_quote() -> None:
    bars = [bar(T0 + i * S, 10.0) for i in range(4)]
    quotes = [(9.99, 300.0, 10.02, 100.0), None, (10.0, 0.0, 10.01, 0.0), (10.0, 5.0, 10.0, 0.0)]
    got = expected_signals(bars, quotes)
    assert got["spread"] == [10.02 - 9.99, None, 10.01 - 10.0, 0.0]
    assert got["imbalance"] == [0.5, None, None, 1.0]
    assert expected_signals(bars)["spread"] == [None] * 4


# ------------------------------------------------------------------------------- TA-Lib


def test_the_talib_values_start_at_talibs_lookback_bars() -> None:
    rng = random.Random(5)
    closes = [100.0]
    for _ in range(59):
        closes.append(closes[-1] * (1 + rng.gauss(0, 0.002)))
    got = expected_signals([bar(T0 + i * S, c) for i, c in enumerate(closes)])
    first = {
        name: next(i for i, v in enumerate(got[name]) if v is not None)
        for name in got
        if name not in ("spread", "imbalance")  # no quotes here
    }
    assert first == {
        "ema12": 11,
        "ema26": 25,
        "macd": 33,
        "macd_signal": 33,
        "macd_hist": 33,
        "rsi14": 14,
        "boll_mid": 19,
        "boll_upper": 19,
        "boll_lower": 19,
        "atr14": 14,
        "vwap_session": 0,
        "vwap_5m": 0,
        "realized_vol_60s": 2,
    }
    for i in range(33, 60):
        assert got["macd_hist"][i] == pytest.approx(got["macd"][i] - got["macd_signal"][i])
        assert got["boll_upper"][i] - got["boll_mid"][i] == pytest.approx(
            got["boll_mid"][i] - got["boll_lower"][i]
        )


def test_tolerances() -> None:
    assert close_enough("ema12", None, None) and not close_enough("ema12", 0.0, None)
    assert not close_enough("ema12", None, 1.0)
    assert close_enough("ema12", 100.0 * (1 + 9e-10), 100.0)
    assert not close_enough("ema12", 100.0 * (1 + 2e-9), 100.0)
    assert close_enough("macd", 5e-10, 0.0) and not close_enough("macd", 2e-9, 0.0)
    # realized volatility: relative, with a floor at the window's largest return
    assert close_enough("realized_vol_60s", 1e-4 * (1 + 5e-10), 1e-4)
    assert not close_enough("realized_vol_60s", 1e-4 + 1e-12, 1e-4)
    assert close_enough("realized_vol_60s", 1e-12, 0.0, scale=1e-2)


# ------------------------------------------- against the job's SignalState (a cross-check)


def _series(rng: random.Random, n: int, t0: int) -> tuple[list[OracleBar], list]:
    """Irregular bars: gaps of up to 2 min, flat runs, zero-volume bars, odd-lot-like VWAPs
    outside [low, high], and quotes now and then; the session boundary inside when `t0` is
    just before 04:00 New York."""
    bars, quotes, start, price = [], [], t0, 100.0
    for _ in range(n):
        start += S * rng.choice([1, 1, 1, 2, 3, 7, 45, 61, 120])
        if rng.random() > 0.2:
            price *= 1 + rng.gauss(0, 0.003)
        hi, lo = price * (1 + abs(rng.gauss(0, 0.001))), price * (1 - abs(rng.gauss(0, 0.001)))
        volume = rng.choice([0.0, 1.0, rng.uniform(1, 500)])
        vwap = price * (1 + rng.gauss(0, 0.004))
        bars.append(OracleBar("X", start, start + S, price, hi, lo, price, volume, vwap, 1, 2))
        if rng.random() < 0.5:
            bid = price * (1 - rng.uniform(0, 0.001))
            quotes.append((bid, rng.choice([0.0, 100.0]), bid + 0.01, rng.choice([0.0, 200.0])))
        else:
            quotes.append(None)
    return bars, quotes


@pytest.mark.parametrize("seed", range(4))
def test_the_oracle_equals_the_jobs_signal_state_on_irregular_series(seed: int) -> None:
    rng = random.Random(seed)
    t0 = ns(2026, 12, 4, 8, 50) if seed % 2 else T0  # seeds 1 and 3 cross 04:00 New York
    bars, quotes = _series(rng, 400, t0)
    state = SignalState()
    got = []
    for b, q in zip(bars, quotes, strict=True):
        quote = None if q is None else Quote(q[0], q[1], q[2], q[3], b.end_ns - S // 2)
        got.append(state.update(b, quote).as_dict())  # type: ignore[arg-type]
    assert_series_signals(seed, bars, got, quotes)
    # the series exercised every value
    want = expected_signals(bars, quotes)
    for name in SIGNAL_VALUE_FIELDS:
        assert any(v is not None for v in want[name]), name
    if seed % 2:
        assert len({session_day(b.start_ns) for b in bars}) == 2


@settings(max_examples=60, deadline=None)
@given(
    closes=st.lists(st.floats(1.0, 1000.0), min_size=1, max_size=80),
    gaps=st.lists(st.integers(1, 90), min_size=80, max_size=80),
)
def test_the_oracle_equals_the_jobs_signal_state_under_hypothesis(closes, gaps) -> None:
    bars, start = [], T0
    for c, g in zip(closes, gaps, strict=False):
        start += g * S
        bars.append(OracleBar("X", start, start + S, c, c * 1.001, c * 0.999, c, g % 3, c, 1, 2))
    state = SignalState()
    got = [state.update(b).as_dict() for b in bars]  # type: ignore[arg-type]
    assert_series_signals("hypothesis", bars, got)


def test_assert_signals_equal_talib_checks_every_value_of_every_symbol_with_its_quote() -> None:
    """tests/support/oracle.py's check, as the drills call it: bars keyed by (symbol,
    start µs), quotes by (symbol, start ns); `fields` and `only` narrow it."""
    from tests.support.oracle import assert_signals_equal_talib

    rng = random.Random(9)
    expected, quotes, signals = {}, {}, {}
    for sym in ("AAA", "BBB"):
        bars, qs = _series(rng, 120, T0)
        state = SignalState()
        for b, q in zip(bars, qs, strict=True):
            b.symbol = sym
            quote = None if q is None else Quote(q[0], q[1], q[2], q[3], b.end_ns - 1)
            values = state.update(b, quote).as_dict()  # type: ignore[arg-type]
            expected[(sym, b.start_ns // 1000)] = b
            quotes[(sym, b.start_ns)] = q
            signals[(sym, b.start_ns // 1000)] = {"symbol": sym, **values}
    assert_signals_equal_talib(signals, expected, quotes)

    key = sorted(expected)[150]
    wrong = {**signals, key: {**signals[key], "imbalance": 0.123}}
    with pytest.raises(AssertionError, match="imbalance"):
        assert_signals_equal_talib(wrong, expected, quotes)
    # a fixture that kept some values only; a subset of the bars against the whole series
    assert_signals_equal_talib(wrong, expected, quotes, fields=("ema12", "atr14"))
    later = {k for k in expected if k[1] > key[1]}
    assert_signals_equal_talib({k: wrong[k] for k in later}, expected, quotes, only=later)
    missing = {k: v for k, v in signals.items() if k != key}
    with pytest.raises(AssertionError, match="missing"):
        assert_signals_equal_talib(missing, expected, quotes)


def test_bar_quotes_takes_the_latest_quote_before_the_end_and_at_most_max_age_old() -> None:
    from tests.support.signal_oracle import bar_quotes

    bars = [bar(T0, 10.0), bar(T0 + S, 10.0), bar(T0 + 9 * S, 10.0)]
    quotes = [
        (T0 + 200, 1.0, 1.0, 2.0, 1.0),
        (T0 + 100, 3.0, 1.0, 4.0, 1.0),  # arrives later, older: not the latest
        (T0 + 200, 5.0, 1.0, 6.0, 1.0),  # same time, arrives later: the latest
        (T0 + 2 * S, 7.0, 1.0, 8.0, 1.0),  # at the second bar's end: not before it
        (T0 + 5 * S, 9.0, 1.0, 9.5, 1.0),  # the third bar's end is 10 s: exactly 5 s old
    ]
    assert bar_quotes(bars, quotes) == [
        (5.0, 1.0, 6.0, 1.0),
        (5.0, 1.0, 6.0, 1.0),
        (9.0, 1.0, 9.5, 1.0),
    ]
    assert bar_quotes(bars, quotes, max_age_ns=5 * S - 1)[2] is None
