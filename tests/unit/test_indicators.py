"""SignalState against TA-Lib and against straightforward batch computations.

Tolerance for the TA-Lib indicators: |ours - talib| <= 1e-9 * max(1, |talib|) after
both are divided by the series' price scale (so tiny and huge prices are held to the
same relative standard); None exactly where TA-Lib returns NaN.
"""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime, time, timedelta

import numpy as np
import pytest
import talib

from shared.bars import MicroBar
from shared.indicators import (
    BarOrderError,
    InvalidBarError,
    Quote,
    SignalConfig,
    SignalState,
    SignalStateError,
    SignalValues,
)
from shared.indicators.session import NEW_YORK

NS = 1_000_000_000
T0 = 1_718_000_000 * NS  # 2024-06-10, a Monday
TOL = 1e-9


# ---------------------------------------------------------------- series and helpers


def random_walk(seed: int, n: int = 700, scale: float = 100.0, vol: float = 0.002) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * np.exp(np.cumsum(rng.normal(0.0, vol, n)))


def ohlc(closes: np.ndarray, seed: int = 99) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    highs = top * (1.0 + np.abs(rng.normal(0.0, 0.001, len(closes))))
    lows = bottom * (1.0 - np.abs(rng.normal(0.0, 0.001, len(closes))))
    return opens, highs, lows


def make_bars(
    closes: np.ndarray,
    ends: list[int] | None = None,
    volumes: list[float] | None = None,
    size_ns: int = NS,
) -> list[MicroBar]:
    opens, highs, lows = ohlc(closes)
    ends = ends or [T0 + (i + 1) * size_ns for i in range(len(closes))]
    volumes = volumes or [10.0 + i % 7 for i in range(len(closes))]
    bars = []
    for i, c in enumerate(closes.tolist()):
        vwap = (highs[i] + lows[i] + c) / 3.0
        bars.append(
            MicroBar(
                "TEST",
                ends[i] - size_ns,
                ends[i],
                float(opens[i]),
                float(highs[i]),
                float(lows[i]),
                c,
                volumes[i],
                vwap,
                3,
            )
        )
    return bars


def run(bars: list[MicroBar], quotes: list[Quote | None] | None = None) -> list[SignalValues]:
    state = SignalState()
    quotes = quotes or [None] * len(bars)
    return [state.update(b, q) for b, q in zip(bars, quotes, strict=True)]


def column(values: list[SignalValues], name: str) -> list[float | None]:
    return [getattr(v, name) for v in values]


def assert_matches_talib(
    name: str, ours: list[float | None], expected: np.ndarray, scale: float = 1.0
) -> None:
    expected = np.asarray(expected, dtype=float)
    missing = np.array([v is None for v in ours])
    first_ours = int(np.argmin(missing)) if not missing.all() else len(ours)
    first_talib = int(np.argmin(np.isnan(expected))) if not np.isnan(expected).all() else len(ours)
    assert first_ours == first_talib, f"{name}: first value at {first_ours}, TA-Lib {first_talib}"
    assert (missing == np.isnan(expected)).all(), f"{name}: None/NaN positions differ"
    got = np.array([np.nan if v is None else v for v in ours])[~missing] / scale
    want = expected[~missing] / scale
    err = np.abs(got - want)
    tol = TOL * np.maximum(1.0, np.abs(want))
    worst = int(np.argmax(err / tol)) if len(err) else 0
    assert (err <= tol).all(), (
        f"{name}: |ours - talib| {err[worst]:.3g} > {tol[worst]:.3g} at bar "
        f"{np.flatnonzero(~missing)[worst]}"
    )


def _flat() -> np.ndarray:
    return np.full(600, 100.0)


def _flat_then_moving() -> np.ndarray:
    return np.concatenate([np.full(300, 50.0), random_walk(1, 300, 50.0)])


def _gaps_and_jumps() -> np.ndarray:
    c = random_walk(2)
    c[150:] *= 2.0
    c[320:] *= 0.4
    c[500:] *= 3.0
    return c


def _spikes() -> np.ndarray:
    c = random_walk(3)
    c[100] *= 10.0
    c[250] *= 0.1
    c[400:403] *= 5.0
    return c


def _two_decimal_ticks() -> np.ndarray:
    return np.round(random_walk(4, scale=20.0, vol=0.0005), 2)


def _alternating() -> np.ndarray:
    return np.array([100.0 + (i % 2) for i in range(600)])


def _rising() -> np.ndarray:
    return 100.0 + np.arange(600) * 0.01


ADVERSARIAL = {
    "flat": (_flat, 100.0),
    "flat_then_moving": (_flat_then_moving, 50.0),
    "gaps_and_jumps": (_gaps_and_jumps, 100.0),
    "spikes": (_spikes, 100.0),
    "two_decimal_ticks": (_two_decimal_ticks, 20.0),
    "alternating": (_alternating, 100.0),
    "rising": (_rising, 100.0),
    "tiny_prices": (lambda: random_walk(5, scale=1e-6), 1e-6),
    "huge_prices_low_vol": (lambda: random_walk(6, scale=1e9, vol=1e-6), 1e9),
}
SERIES = {f"random_walk_seed{s}": (lambda s=s: random_walk(s, 800), 100.0) for s in range(5)}
SERIES |= ADVERSARIAL


@pytest.fixture(params=sorted(SERIES), scope="module")
def series(request: pytest.FixtureRequest) -> tuple[np.ndarray, float, list[SignalValues]]:
    make, scale = SERIES[request.param]
    closes = make()
    return closes, scale, run(make_bars(closes))


# ---------------------------------------------------------------- TA-Lib parity


def test_ema_12_and_26_match_talib_sma_seeded_ema(series) -> None:
    closes, scale, values = series
    assert_matches_talib("ema12", column(values, "ema12"), talib.EMA(closes, 12), scale)
    assert_matches_talib("ema26", column(values, "ema26"), talib.EMA(closes, 26), scale)


def test_macd_line_signal_and_histogram_match_talib_macd(series) -> None:
    closes, scale, values = series
    macd, signal, hist = talib.MACD(closes, 12, 26, 9)
    assert_matches_talib("macd", column(values, "macd"), macd, scale)
    assert_matches_talib("macd_signal", column(values, "macd_signal"), signal, scale)
    assert_matches_talib("macd_hist", column(values, "macd_hist"), hist, scale)


def test_rsi_14_matches_talib_wilder_rsi(series) -> None:
    closes, _, values = series
    assert_matches_talib("rsi14", column(values, "rsi14"), talib.RSI(closes, 14))


def test_bollinger_20_2_matches_talib_bbands_with_population_sd(series) -> None:
    closes, scale, values = series
    upper, mid, lower = talib.BBANDS(closes, 20, 2.0, 2.0, 0)
    assert_matches_talib("boll_mid", column(values, "boll_mid"), mid, scale)
    assert_matches_talib("boll_upper", column(values, "boll_upper"), upper, scale)
    assert_matches_talib("boll_lower", column(values, "boll_lower"), lower, scale)


def test_atr_14_matches_talib_atr_seeding(series) -> None:
    closes, scale, values = series
    bars = make_bars(closes)
    highs = np.array([b.high for b in bars])
    lows = np.array([b.low for b in bars])
    assert_matches_talib(
        "atr14", column(values, "atr14"), talib.ATR(highs, lows, closes, 14), scale
    )


def test_first_values_appear_at_the_talib_lookback_bars() -> None:
    values = run(make_bars(random_walk(7, 60)))
    first = {
        name: next(i for i, v in enumerate(values) if getattr(v, name) is not None)
        for name in ("ema12", "ema26", "macd", "macd_signal", "rsi14", "boll_mid", "atr14")
    }
    assert first == {
        "ema12": 11,
        "ema26": 25,
        "macd": 33,
        "macd_signal": 33,
        "rsi14": 14,
        "boll_mid": 19,
        "atr14": 14,
    }


def test_macd_fast_ema_is_seeded_at_bar_25_not_bar_11_like_talib() -> None:
    closes = random_walk(8, 200)
    values = run(make_bars(closes))
    naive = talib.EMA(closes, 12) - talib.EMA(closes, 26)  # fast EMA seeded at bar 11
    ta_macd = talib.MACD(closes, 12, 26, 9)[0]

    assert abs(naive[33] - ta_macd[33]) > 1e-6  # the quirk is real and visible
    assert values[33].macd == pytest.approx(ta_macd[33], rel=1e-12, abs=1e-12)


def test_rsi_of_a_flat_series_is_zero_as_talib_returns() -> None:
    values = run(make_bars(np.full(40, 123.45)))
    assert [v.rsi14 for v in values[14:]] == [0.0] * 26
    assert np.all(talib.RSI(np.full(40, 123.45), 14)[14:] == 0.0)


def test_rsi_of_a_tiny_priced_instrument_is_not_zeroed() -> None:
    closes = random_walk(9, 100, scale=1e-9)
    values = run(make_bars(closes))
    assert 0.0 < values[50].rsi14 < 100.0
    assert_matches_talib("rsi14", column(values, "rsi14"), talib.RSI(closes, 14))


def test_ema_carries_no_history_so_no_cap_can_change_it() -> None:
    closes = random_walk(10, 5000)
    state = SignalState()
    values = []
    sizes = {}
    for i, bar in enumerate(make_bars(closes)):
        values.append(state.update(bar))
        if i + 1 in (1000, 5000):
            sizes[i + 1] = len(pickle.dumps(state.to_state()))

    for name, period in (("ema12", 12), ("ema26", 26)):
        assert_matches_talib(name, column(values, name), talib.EMA(closes, period), 100.0)
    assert_matches_talib("macd", column(values, "macd"), talib.MACD(closes)[0], 100.0)
    assert abs(sizes[5000] - sizes[1000]) < 1024  # bounded windows only: no growth with history


# ---------------------------------------------------------------- peek and state


def irregular_stream(seed: int, n: int = 900) -> tuple[list[MicroBar], list[Quote | None]]:
    """Bars with gaps (1 s .. 6 min), volume spikes and zero volume, plus quotes."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([1, 1, 1, 1, 2, 3, 7, 30, 59, 61, 200, 299, 301, 400], n)
    ends = (T0 + np.cumsum(gaps) * NS).tolist()
    volumes = rng.choice([0.0, 0.001, 1.0, 5.5, 120.0, 3e12], n).tolist()
    closes = random_walk(seed, n)
    closes[n // 3] *= 4.0
    bars = make_bars(closes, ends, volumes)
    quotes: list[Quote | None] = []
    for b in bars:
        age = int(rng.choice([0, 1, NS, 5 * NS, 6 * NS]))
        p = b.close
        quotes.append(
            None
            if rng.random() < 0.1
            else Quote(p - 0.01, float(rng.integers(0, 500)), p + 0.02, 300.0, b.end_ns - age)
        )
    return bars, quotes


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_peek_equals_update_on_a_copy_and_leaves_state_unchanged(seed: int) -> None:
    bars, quotes = irregular_stream(seed)
    state = SignalState()
    for bar, quote in zip(bars, quotes, strict=True):
        before = state.to_state()
        for provisional_close in (bar.close * 1.001, bar.close):  # the open bar moves, then closes
            provisional = MicroBar.from_state(bar.to_state())
            provisional.close = provisional_close
            peeked = state.peek(provisional, quote)
            assert state.to_state() == before
            copy = SignalState.from_state(before)
            assert copy.update(provisional, quote) == peeked
        assert state.update(bar, quote) == peeked


@pytest.mark.parametrize("cut", [1, 20, 34, 150, 451, 899])
def test_state_round_trip_mid_stream_continues_identically(cut: int) -> None:
    bars, quotes = irregular_stream(14)
    uninterrupted = run(bars, quotes)

    state = SignalState()
    for bar, quote in zip(bars[:cut], quotes[:cut], strict=True):
        state.update(bar, quote)
    restored = SignalState.from_state(pickle.loads(pickle.dumps(state.to_state())))
    resumed = [restored.update(b, q) for b, q in zip(bars[cut:], quotes[cut:], strict=True)]

    assert resumed == uninterrupted[cut:]


def _only_plain_values(value: object) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_only_plain_values(v) for v in value)
    return value is None or isinstance(value, (int, float, str))


def test_state_holds_only_plain_values_and_stays_bounded() -> None:
    state = SignalState()
    for bar in make_bars(random_walk(15, 3000)):
        state.update(bar)
    snapshot = state.to_state()

    assert _only_plain_values(snapshot)
    assert len(snapshot[12]) == 19  # closes kept for Bollinger
    assert len(snapshot[16][0]) == 300  # bars in the 5 min window
    assert len(snapshot[17][0]) + len(snapshot[17][3]) == 59  # returns in the 60 s window
    assert len(pickle.dumps(snapshot, protocol=5)) < 16_000  # mostly the 300 bars of 5 min


def test_state_of_another_version_is_rejected() -> None:
    snapshot = list(SignalState().to_state())
    snapshot[0] = 999
    with pytest.raises(SignalStateError, match="version"):
        SignalState.from_state(tuple(snapshot))


def test_bars_must_be_committed_in_increasing_end_time() -> None:
    bars = make_bars(random_walk(16, 3))
    state = SignalState()
    state.update(bars[1])
    with pytest.raises(BarOrderError, match="not after"):
        state.update(bars[0])
    with pytest.raises(BarOrderError):
        state.peek(bars[1])


def test_a_non_positive_close_is_rejected() -> None:
    bar = make_bars(random_walk(17, 1))[0]
    bar.close = 0.0
    with pytest.raises(InvalidBarError, match="close"):
        SignalState().update(bar)


def test_signal_values_as_dict_has_exactly_the_contract_fields() -> None:
    from shared.schemas import schema_json

    # the contract is the Signal schema: its nullable doubles, in order
    fields = schema_json("torghut.ta.Signal")["fields"]
    assert list(SignalValues().as_dict()) == [
        f["name"] for f in fields if f["type"] == ["null", "double"]
    ]


# ---------------------------------------------------------------- session VWAP


def utc_ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * NS


def bars_at(starts: list[int], prices: list[float], volumes: list[float]) -> list[MicroBar]:
    return [
        MicroBar("TEST", s, s + NS, p, p, p, p, v, p, 1)
        for s, p, v in zip(starts, prices, volumes, strict=True)
    ]


@pytest.mark.parametrize(
    ("label", "boundary_utc"),
    [
        ("summer EDT", utc_ns(2024, 6, 11, 8, 0, 0)),
        ("winter EST", utc_ns(2024, 1, 9, 9, 0, 0)),
        ("spring-forward day", utc_ns(2024, 3, 10, 8, 0, 0)),  # 04:00 EDT, 23 h session
        ("fall-back day", utc_ns(2024, 11, 3, 9, 0, 0)),  # 04:00 EST, 25 h session
    ],
)
def test_session_vwap_resets_at_0400_new_york_across_dst(label: str, boundary_utc: int) -> None:
    starts = [boundary_utc - 2 * NS, boundary_utc - NS, boundary_utc, boundary_utc + NS]
    values = run(bars_at(starts, [10.0, 20.0, 30.0, 40.0], [1.0, 3.0, 1.0, 1.0]))

    assert [v.vwap_session for v in values] == [10.0, 17.5, 30.0, 35.0], label


def test_session_vwap_does_not_reset_at_the_utc_or_fixed_offset_midnight() -> None:
    boundary = utc_ns(2024, 3, 10, 8, 0, 0)  # 04:00 EDT
    wrong_est_boundary = boundary + 3600 * NS  # where a fixed UTC-5 offset would reset
    values = run(bars_at([boundary, wrong_est_boundary], [10.0, 20.0], [1.0, 1.0]))
    assert values[1].vwap_session == 15.0


def test_session_vwap_uses_the_configured_session_start() -> None:
    open_bell = utc_ns(2024, 6, 11, 13, 30, 0)  # 09:30 EDT
    bars = bars_at([open_bell - NS, open_bell], [10.0, 20.0], [1.0, 1.0])
    state = SignalState(SignalConfig.parse(session_start_local="09:30"))
    assert [state.update(b).vwap_session for b in bars] == [10.0, 20.0]
    default = run(bars)
    assert [v.vwap_session for v in default] == [10.0, 15.0]


def test_session_vwap_equals_a_batch_cumulative_sum_per_new_york_session() -> None:
    rng = np.random.default_rng(18)
    starts = (utc_ns(2024, 3, 7, 20, 0, 0) + np.cumsum(rng.integers(1, 1800, 800)) * NS).tolist()
    prices = random_walk(18, 800).tolist()
    volumes = rng.choice([0.5, 1.0, 7.25, 1e6], 800).tolist()
    values = run(bars_at(starts, prices, volumes))

    def session_of(start_ns: int) -> object:
        local = datetime.fromtimestamp(start_ns // NS, NEW_YORK)
        return local.date() - timedelta(days=1) if local.time() < time(4) else local.date()

    sessions = [session_of(s) for s in starts]
    assert len(set(sessions)) >= 5  # spans the 2024-03-10 DST change
    pv = np.array(prices) * np.array(volumes)
    expected = []
    for i in range(len(starts)):
        same = [j for j in range(i + 1) if sessions[j] == sessions[i]]
        expected.append(math.fsum(pv[same]) / math.fsum(np.array(volumes)[same]))
    np.testing.assert_allclose(column(values, "vwap_session"), expected, rtol=1e-12)


# ---------------------------------------------------------------- time windows


def test_rolling_vwap_equals_a_batch_sum_over_the_last_5_minutes_of_bar_ends() -> None:
    bars, _ = irregular_stream(19, 1500)
    values = run(bars)
    ends = np.array([b.end_ns for b in bars])
    pv = np.array([b.vwap * b.volume for b in bars])
    vol = np.array([b.volume for b in bars])

    for i, v in enumerate(values):
        inside = (ends > ends[i] - 300 * NS) & (ends <= ends[i])
        total = math.fsum(vol[inside])
        if total == 0.0:
            assert v.vwap_5m is None
        else:
            assert v.vwap_5m == pytest.approx(math.fsum(pv[inside]) / total, rel=1e-12)


def test_rolling_vwap_window_is_by_bar_end_time_not_bar_count() -> None:
    starts = [T0, T0 + 100 * NS, T0 + 299 * NS, T0 + 300 * NS]
    values = run(bars_at(starts, [10.0, 20.0, 30.0, 40.0], [1.0, 1.0, 1.0, 1.0]))
    # ends: T0+1s, +101s, +300s, +301s; at +301s the bar ending at +1s has left
    assert [v.vwap_5m for v in values] == [10.0, 15.0, 20.0, 30.0]


def test_realized_vol_equals_sample_sd_of_log_returns_of_bars_ending_in_the_last_60s() -> None:
    bars, _ = irregular_stream(20, 1500)
    values = run(bars)
    ends = np.array([b.end_ns for b in bars])
    closes = np.array([b.close for b in bars])

    checked = 0
    for i, v in enumerate(values):
        inside = np.flatnonzero((ends > ends[i] - 60 * NS) & (ends <= ends[i]))
        returns = np.log(closes[inside][1:] / closes[inside][:-1])
        if len(returns) < 2:
            assert v.realized_vol_60s is None
            continue
        checked += 1
        assert v.realized_vol_60s == pytest.approx(np.std(returns, ddof=1), rel=1e-9, abs=1e-15)
    assert checked > 500


def test_realized_vol_of_a_flat_series_is_exactly_zero_and_recovers_after_a_spike() -> None:
    closes = np.full(200, 50.0)
    closes[20] = 500.0  # an outlier that must leave no residue once it is out of the window
    values = run(make_bars(closes))
    assert values[10].realized_vol_60s == 0.0
    assert values[21].realized_vol_60s > 0.1
    assert values[150].realized_vol_60s == 0.0


# ---------------------------------------------------------------- quotes


@pytest.mark.parametrize(
    ("age_ns", "fresh"),
    [(1, True), (5 * NS, True), (5 * NS + 1, False), (0, False), (-NS, False)],
)
def test_spread_and_imbalance_come_from_a_quote_no_older_than_5s_before_bar_end(
    age_ns: int, fresh: bool
) -> None:
    bar = make_bars(np.array([100.0]))[0]
    quote = Quote(99.98, 300.0, 100.02, 100.0, bar.end_ns - age_ns)
    values = SignalState().update(bar, quote)
    if fresh:
        assert values.spread == pytest.approx(0.04)
        assert values.imbalance == 0.5
    else:
        assert (values.spread, values.imbalance) == (None, None)


def test_quote_age_limit_is_configurable() -> None:
    bar = make_bars(np.array([100.0]))[0]
    quote = Quote(99.0, 1.0, 101.0, 3.0, bar.end_ns - 2 * NS)
    strict = SignalState(SignalConfig.parse(quote_max_age_ms=1_000)).update(bar, quote)
    assert (strict.spread, strict.imbalance) == (None, None)
    assert SignalState().update(bar, quote).imbalance == -0.5


def test_imbalance_is_none_when_both_sizes_are_zero_and_no_quote_gives_none() -> None:
    bars = make_bars(np.array([100.0, 101.0]))
    state = SignalState()
    empty_book = state.update(bars[0], Quote(99.0, 0.0, 101.0, 0.0, bars[0].end_ns - 1))
    assert (empty_book.spread, empty_book.imbalance) == (2.0, None)
    assert state.update(bars[1], None).spread is None


def test_session_start_must_be_a_local_time() -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        SignalConfig.parse(session_start_local="4 o'clock")
