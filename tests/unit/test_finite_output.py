"""No non-finite or absurd value in any bar or signal (docs/design.md, "Bad input").

Plausibility limits (shared/limits.py) refuse absurd trades and quotes in the forwarder and
the job; the bar builder and the indicators cannot overflow on their own (shared/bars.py,
shared/indicators/signals.py "Finite by construction"); and the job's emit guard
(`bar_problem`, `null_non_finite`) holds back whatever still is not finite.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import forwarder.router as router_mod
from flink_job.settings import TaSettings
from flink_job.symbol_processor import (
    SymbolProcessor,
    SymbolState,
    bar_problem,
    invalid_reason,
    null_non_finite,
)
from forwarder.settings import ForwarderSettings
from shared.bars import MicroBar
from shared.indicators import InvalidBarError, Quote, RollingVolatility, RollingVwap, SignalState
from shared.indicators.signals import PRICE_CEIL, PRICE_FLOOR, VOLUME_CEIL, SignalValues
from shared.limits import DEFAULT_LIMITS, PlausibleLimits
from tests.support.bar_oracle import assert_same_bars, oracle_bars
from tests.support.fastroute import T0 as FAST_T0
from tests.support.fastroute import pack, run_both, ts_ext
from tests.support.router import QUOTE, TRADE, rejecting_router

S = 1_000_000_000
T0 = 1_767_362_400 * S  # 2026-01-02 14:00:00 UTC
NO_WM = -(1 << 63)
MAX = 1.7976931348623157e308
TINY = 2.2250738585072014e-308  # the smallest normal double
SUB = 5e-324  # the smallest subnormal

EXTREME_PRICES = [1e308, MAX, 1e-308, TINY, SUB, 1e-6, 1e7, 1e100, 1e-100, 100.0, 1.0, 0.5]
EXTREME_SIZES = [0.0, SUB, 1e-308, 1e308, MAX, 1e10, 1e11, 1e100, 1.0, 100.0, 1e-8]
prices = (
    st.sampled_from(EXTREME_PRICES)
    | st.floats(min_value=SUB, max_value=MAX)
    | st.floats(min_value=1.0, max_value=1000.0)
)
sizes = (
    st.sampled_from(EXTREME_SIZES)
    | st.floats(min_value=0.0, max_value=MAX)
    | st.floats(min_value=0.0, max_value=1000.0)
)


def finite(v: float | None) -> bool:
    return v is None or -math.inf < v < math.inf


def bar_fields_finite(b: MicroBar) -> bool:
    return all(finite(v) for v in (b.open, b.high, b.low, b.close, b.volume, b.vwap))


def trade(ts_ns: int, price: float, size: float = 1.0, seq: int = 1) -> tuple:
    return ("t", "AAPL", ts_ns, seq, ts_ns + 1000, f"tr{seq}", price, size, seq)


# --------------------------------------------------------------------------- the limits


def test_the_limits_refuse_an_empty_or_inverted_range() -> None:
    for bad in ((0.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1e-6, math.inf, 1.0), (1e-6, 1e7, 0.0)):
        with pytest.raises(ValueError, match="must"):
            PlausibleLimits(*bad)
    with pytest.raises(ValueError, match="size_max"):
        PlausibleLimits(size_max=math.nan)


@pytest.mark.parametrize(
    ("price", "size", "needle"),
    [
        (1e308, 1.0, "trade price 1e+308 is outside the plausible range [1e-06, 1e+07]"),
        (MAX, 1.0, "trade price 1.7976931348623157e+308 is outside"),
        (1e-308, 1.0, "trade price 1e-308 is outside"),
        (SUB, 1.0, "trade price 5e-324 is outside"),
        (math.nextafter(1e7, math.inf), 1.0, "is outside the plausible range"),
        (100.0, 1e308, "trade size 1e+308 is outside the plausible range [0, 1e+10]"),
        (100.0, math.nextafter(1e10, math.inf), "trade size"),
    ],
)
def test_the_job_refuses_a_finite_but_implausible_trade_naming_the_range(price, size, needle):
    reason = invalid_reason(trade(T0, price, size), 2 * S)
    assert reason is not None and needle in reason


def test_the_limits_themselves_pass_and_a_zero_quote_side_is_still_allowed() -> None:
    assert invalid_reason(trade(T0, 1e-6, 0.0), 0) is None
    assert invalid_reason(trade(T0, 1e7, 1e10), 0) is None
    assert invalid_reason(("q", "AAPL", T0, 1, T0, "q", 0.0, 0.0, 1e7, 1e10), 0) is None
    for i, v in ((6, 1e308), (6, 1e-9), (7, 1e11), (8, 5e-324), (9, 1e308)):
        q = ["q", "AAPL", T0, 1, T0, "q", 9.0, 1.0, 10.0, 1.0]
        q[i] = v
        assert "outside the plausible range" in (invalid_reason(tuple(q), 0) or "")


def test_configured_job_limits_reach_invalid_reason_and_a_range_is_checked(monkeypatch) -> None:
    monkeypatch.setenv("TORGHUT_TA_PRICE_MAX", "1000")
    monkeypatch.setenv("TORGHUT_TA_SIZE_MAX", "5000")
    cfg = TaSettings().function_config()
    assert (cfg.price_min, cfg.price_max, cfg.size_max) == (1e-6, 1000.0, 5000.0)
    assert invalid_reason(trade(T0, 1000.5, 1.0), 0, cfg.limits()) is not None
    assert invalid_reason(trade(T0, 999.0, 5001.0), 0, cfg.limits()) is not None
    assert invalid_reason(trade(T0, 999.0, 5000.0), 0, cfg.limits()) is None
    monkeypatch.setenv("TORGHUT_TA_PRICE_MIN", "2000")
    with pytest.raises(ValueError, match="price_min < price_max"):
        TaSettings()


def test_the_forwarder_has_the_same_defaults_and_checks_its_range(monkeypatch) -> None:
    s = ForwarderSettings()
    assert s.limits() == DEFAULT_LIMITS == TaSettings().function_config().limits()
    monkeypatch.setenv("TORGHUT_FWD_PRICE_MIN", "1e8")
    with pytest.raises(ValueError, match="price_min < price_max"):
        ForwarderSettings()


@pytest.mark.parametrize(
    ("bad", "reason", "detail"),
    [
        ({**TRADE, "p": 1e308}, "invalid_price", "p=1e+308 (outside the plausible range"),
        ({**TRADE, "p": 5e-324}, "invalid_price", "p=5e-324 (outside the plausible range"),
        ({**TRADE, "s": 1e11}, "invalid_size", "s=100000000000.0 (outside the plausible range"),
        ({**QUOTE, "ap": 1e308}, "invalid_price", "ap=1e+308 (outside"),
        ({**QUOTE, "bp": 1e-308}, "invalid_price", "bp=1e-308 (outside"),
        ({**QUOTE, "as": 1e308}, "invalid_size", "as=1e+308 (outside"),
    ],
)
def test_the_forwarder_rejects_an_implausible_trade_or_quote_by_reason(bad, reason, detail):
    router, prod, rejects, seqs = rejecting_router()
    router.route([bad], T0 + S)
    assert prod.records == [] and seqs.issued == 0
    assert len(rejects) == 1 and rejects[0][0] == reason and rejects[0][1].startswith(detail)


def _frame(*msgs: dict[str, Any]) -> bytes:
    """A msgpack frame as the fast-path tests build them, one event time per message."""
    return pack([{**m, "t": ts_ext(FAST_T0 + i)} for i, m in enumerate(msgs)])


def test_the_native_path_hands_implausible_values_to_python_which_rejects_them() -> None:
    good = {**TRADE, "i": 1, "p": 1e7, "s": 1e10}
    frames = [
        _frame(good, {**TRADE, "i": 2, "p": 1e308}, {**TRADE, "i": 3, "s": 1e308}),
        _frame({**QUOTE, "ap": 1e308}, {**QUOTE, "bp": 0.0, "as": 1e10}),
    ]
    native, _python = run_both(frames)
    assert [r for r, _, _ in native.rejects] == ["invalid_price", "invalid_size", "invalid_price"]
    assert len(native.prod.records) == 2  # the plausible trade and the one-sided quote


@pytest.fixture
def narrow_forwarder_limits():
    router_mod.set_limits(PlausibleLimits(1.0, 100.0, 10.0))
    try:
        yield
    finally:
        router_mod.set_limits(DEFAULT_LIMITS)


def test_set_limits_narrows_both_forwarder_paths_alike(narrow_forwarder_limits) -> None:
    frames = [
        _frame(
            {**TRADE, "i": 1, "p": 100.0, "s": 10.0},
            {**TRADE, "i": 2, "p": 100.5},
            {**TRADE, "i": 3, "p": 0.5},
            {**TRADE, "i": 4, "s": 11.0},
        )
    ]
    native, _python = run_both(frames)
    assert [r for r, _, _ in native.rejects] == ["invalid_price", "invalid_price", "invalid_size"]
    assert "[1, 100]" in native.rejects[0][1]
    assert len(native.prod.records) == 1
    assert msgpack.unpackb(frames[0], timestamp=2)[0]["p"] == 100.0


# ------------------------------------------------------------------------ the bar builder


def _stream_bar(trades: list[tuple[float, float]]) -> MicroBar:
    (p0, s0), *rest = trades
    bar = MicroBar.open_with("X", T0, S, p0, s0, T0)
    for i, (p, s) in enumerate(rest, 1):
        bar.add_trade(p, s, T0 + i)
    return bar


@settings(max_examples=400, deadline=None)
@given(trades=st.lists(st.tuples(prices, sizes), min_size=1, max_size=25))
def test_a_bar_of_any_finite_trades_is_finite_but_for_an_overflowing_volume(trades) -> None:
    """1e308, subnormals, huge sizes and normal trades mixed: open, high, low, close and the
    VWAP are always finite; only the volume can overflow (sizes summing past 1.8e308), the
    one case the emit guard refuses. The VWAP equals the oracle's (which takes the exact
    rational VWAP when pv is unusable) and lies within the bar's range."""
    bar = _stream_bar(trades)
    (oracle,) = oracle_bars([("X", T0 + i, p, s) for i, (p, s) in enumerate(trades)], S)
    assert all(finite(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.vwap))
    assert bar.volume == oracle.volume  # the same sum in the same order
    if bar.volume == math.inf:
        assert bar_problem(bar, PlausibleLimits(SUB, MAX, MAX)) is not None
        return
    assert bar.vwap == pytest.approx(oracle.vwap, rel=1e-12, abs=1e-320)
    if bar.volume > 0:
        exact = sum(Fraction(p) * Fraction(s) for p, s in trades) / sum(
            Fraction(s) for _, s in trades
        )
        assert bar.vwap == pytest.approx(float(exact), rel=1e-12, abs=1e-320)
        assert bar.low * (1 - 1e-9) - 1e-320 <= bar.vwap <= bar.high * (1 + 1e-9)
    else:
        assert bar.vwap == bar.close


def test_the_reported_case_1e308_times_a_size_overflowing_pv_gives_the_true_vwap() -> None:
    bar = _stream_bar([(100.0, 10.0), (1e308, 10.0), (1.0, 1e300)])
    assert bar.pv == math.inf  # price * size overflowed: the VWAP is blended instead
    assert bar.vwap == pytest.approx(1e9 + 1, rel=1e-15)  # (1e309 + 1e300 + 1000) / 1e300
    assert MicroBar.open_with("X", T0, S, 1e308, 10.0, T0).vwap == 1e308
    assert MicroBar.open_with("X", T0, S, SUB, 0.5, T0).vwap == SUB  # pv underflowed to 0


def test_normal_bars_keep_the_plain_pv_over_volume_bit_for_bit() -> None:
    bar = _stream_bar([(100.01, 3.0), (99.97, 0.5), (100.02, 1e-8)])
    assert bar.vwap == (100.01 * 3.0 + 99.97 * 0.5 + 100.02 * 1e-8) / (3.0 + 0.5 + 1e-8)


# --------------------------------------------------------------------------- indicators


def in_kernel_domain(b: Any) -> bool:
    return all(PRICE_FLOOR <= v <= PRICE_CEIL for v in (b.close, b.high, b.low, b.vwap)) and (
        0.0 <= b.volume <= VOLUME_CEIL
    )


domain_prices = st.sampled_from([1e-100, 1e100, 1e50, 1e-50, 1e-6, 1e7, 100.0]) | st.floats(
    1e-100, 1e100
)
any_prices = domain_prices | prices


@st.composite
def extreme_bar(draw: Any, k: int, wild: bool) -> tuple[MicroBar, Quote | None]:
    ps = sorted(draw(st.lists(any_prices if wild else domain_prices, min_size=3, max_size=3)))
    vol = draw(sizes if wild else st.sampled_from([0.0, 1.0, 1e10, 1e100]) | st.floats(0, 1e100))
    close = draw(st.sampled_from(ps))
    end = T0 + (k + 1) * S
    bar = MicroBar("X", end - S, end, close, ps[2], ps[0], close, vol, ps[1], 1)
    quote = None
    if draw(st.booleans()):
        bid, ask = draw(prices), draw(prices)
        quote = Quote(bid, draw(sizes), ask, draw(sizes), end - 1)
    return bar, quote


@st.composite
def bar_histories(draw: Any) -> list[tuple[MicroBar, Quote | None]]:
    n = draw(st.integers(1, 60))
    return [draw(extreme_bar(k, draw(st.integers(0, 4)) == 0)) for k in range(n)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=bar_histories())
def test_every_indicator_is_finite_and_a_bar_outside_the_kernel_domain_is_refused(history):
    """EMA, MACD, RSI, Bollinger, ATR, both VWAPs, volatility, spread and imbalance over
    histories of extreme bars (1e100 .. 1e-100 in the domain; 1e308, subnormals and huge
    volumes outside it): a bar is refused exactly when it leaves the domain, the state is
    then untouched, and every value of every accepted bar (and of a peek) is finite."""
    state = SignalState()
    for bar, quote in history:
        before = state.to_state()
        if not in_kernel_domain(bar):
            with pytest.raises(InvalidBarError):
                state.peek(bar, quote)
            with pytest.raises(InvalidBarError):
                state.update(bar, quote)
            assert state.to_state() == before
            continue
        peeked = state.peek(bar, quote).as_dict()
        values = state.update(bar, quote).as_dict()
        assert all(finite(v) for v in values.values()), values
        assert all(finite(v) for v in peeked.values()), peeked
    assert all(finite(v) for v in _flat(state.to_state()))


def _flat(t: Any) -> list[float]:
    if isinstance(t, tuple | list):
        return [x for item in t for x in _flat(item)]
    return [t] if isinstance(t, float) else []


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.integers(1, 400),
            st.floats(0, 1e100) | st.sampled_from([0.0, 1e100, 1e-300]),
            st.floats(0, 1e100) | st.sampled_from([0.0, 1e100, SUB]),
            st.floats(-461, 461) | st.sampled_from([461.0, -461.0, 0.0, SUB]),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_the_time_windows_stay_finite_over_the_whole_kernel_domain(items) -> None:
    """RollingVwap's compensated sums and RollingVolatility's Welford aggregates, fed the
    largest values the domain allows (pv = vwap * volume <= 1e200, volume <= 1e100, log
    returns within +-461), never answer or keep a non-finite number."""
    vwap, vol = RollingVwap(), RollingVolatility()
    key = 0
    for step, v, price_scale, ret in items:
        key += step * S
        pv = v * min(price_scale, 1e100)
        cutoff = key - 300 * S
        assert finite(vwap.peek(cutoff, key, pv, v))
        assert finite(vwap.commit(cutoff, key, pv, v))
        assert finite(vol.peek(key - 60 * S, key, ret))
        assert finite(vol.commit(key - 60 * S, key, ret))
    assert all(finite(x) for x in _flat(vwap.to_state()) + _flat(vol.to_state()))


def test_a_depth_that_overflows_still_gives_the_imbalance() -> None:
    state = SignalState()
    bar = MicroBar("X", T0, T0 + S, 10.0, 10.0, 10.0, 10.0, 1.0, 10.0, 1)
    values = state.update(bar, Quote(9.0, MAX, 11.0, MAX / 2, T0 + S - 1))
    assert values.imbalance == pytest.approx(1 / 3, rel=1e-12)
    assert values.spread == 2.0


# ----------------------------------------------------------------------- the emit guard


def _bar(**over: float) -> MicroBar:
    fields = dict(open=10.0, high=11.0, low=9.0, close=10.5, volume=3.0, vwap=10.2)
    fields.update(over)
    return MicroBar("AAPL", T0, T0 + S, trade_count=2, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"vwap": math.inf}, "vwap inf"),
        ({"vwap": math.nan}, "vwap nan"),
        ({"vwap": 2e7}, "vwap 20000000.0 is outside the plausible range"),
        ({"volume": math.inf}, "volume inf"),
        ({"high": 1e308}, "high 1e+308 is outside the plausible range"),
        ({"low": 5e-324}, "low 5e-324"),
        ({"close": math.nan}, "close nan"),
    ],
)
def test_the_emit_guard_names_the_field_it_refuses(over, needle) -> None:
    assert needle in (bar_problem(_bar(**over)) or "")


def test_the_emit_guard_passes_a_plausible_bar_and_a_vwap_a_few_ulps_outside() -> None:
    assert bar_problem(_bar()) is None
    assert bar_problem(_bar(vwap=math.nextafter(11.0, 12.0))) is None


class Refusals(list):
    """The emit guard's refusals (the trade each concerns, `record`, is not compared)."""

    def __call__(self, *args: Any, record: Any = None) -> None:
        self.append(args)


def test_a_final_bar_with_a_non_finite_field_is_refused_counted_and_never_reaches_signals():
    refusals = Refusals()
    proc = SymbolProcessor(provisional_interval_ns=0, on_refuse=refusals)
    st_, sig = SymbolState(), SignalState()
    proc.on_trade(st_, sig, trade(T0 + 100, 100.0, seq=1), NO_WM, 0)
    proc.on_trade(st_, sig, trade(T0 + S + 100, 101.0, seq=2), NO_WM, 0)
    st_.bars[T0].vwap = math.inf  # what a kernel bug (or overflow) would leave
    out = proc.on_watermark(st_, sig, (T0 + 2 * S) // 1_000_000)
    assert [e.bar.start_ns for e in out] == [T0 + S]
    assert st_.counters.refused_bars == 1
    assert sig.bars_committed == 1  # the refused bar never reached the indicators
    assert refusals == [
        ("AAPL", T0, True, "bar", "vwap inf is outside the plausible range [1e-06, 1e+07]")
    ]


def test_a_provisional_bar_with_an_implausible_field_is_not_emitted_and_reported():
    refusals = Refusals()
    proc = SymbolProcessor(provisional_interval_ns=1, on_refuse=refusals)
    st_, sig = SymbolState(), SignalState()
    assert len(proc.on_trade(st_, sig, trade(T0 + 100, 100.0, seq=1), NO_WM, 10).emissions) == 1
    st_.bars[T0].volume = math.inf
    assert proc.on_trade(st_, sig, trade(T0 + 200, 100.0, seq=2), NO_WM, 20).emissions == []
    assert refusals == [("AAPL", T0, False, "bar", "volume inf is not a finite number >= 0")]
    assert st_.counters.refused_bars == 0  # provisional: counted by the keyed function


def test_a_non_finite_indicator_value_is_emitted_as_null_with_the_bar(monkeypatch):
    refusals = Refusals()
    proc = SymbolProcessor(provisional_interval_ns=0, on_refuse=refusals)
    st_, sig = SymbolState(), SignalState()
    monkeypatch.setattr(
        SignalState,
        "update",
        lambda self, bar, q=None: SignalValues(ema12=math.inf, rsi14=math.nan, atr14=1.5),
    )
    proc.on_trade(st_, sig, trade(T0 + 100, 100.0, seq=1), NO_WM, 0)
    (em,) = proc.on_watermark(st_, sig, (T0 + S) // 1_000_000)
    assert (em.signals.ema12, em.signals.rsi14, em.signals.atr14) == (None, None, 1.5)
    assert refusals == [("AAPL", T0, True, "values", "ema12, rsi14")]
    values = SignalValues(macd=-math.inf, spread=0.0)
    assert null_non_finite(values) == ["macd"] and values.spread == 0.0


# -------------------------------------------------------- SymbolProcessor, end to end


@st.composite
def trade_streams(draw: Any) -> list[tuple[int, float, float]]:
    """Trades over 40 s: normal ones (a random walk) mixed with extreme finite values."""
    n = draw(st.integers(1, 120))
    out, t, p = [], T0, 100.0
    for _ in range(n):
        t += draw(st.integers(0, 400_000_000))
        if draw(st.integers(0, 3)) == 0:
            out.append((t, draw(prices), draw(sizes)))
        else:
            p = max(0.01, p * (1 + draw(st.floats(-0.01, 0.01))))
            out.append((t, p, draw(st.floats(0, 500) | st.just(0.0))))
    return out


def _run(trades, limits: PlausibleLimits) -> tuple[list[Any], Refusals, SymbolState, list]:
    refusals = Refusals()
    proc = SymbolProcessor(provisional_interval_ns=1, limits=limits, on_refuse=refusals)
    st_, sig = SymbolState(), SignalState()
    emissions, applied = [], []
    for seq, (t, p, s) in enumerate(trades, 1):
        ev = trade(t, p, s, seq)
        reason = invalid_reason(ev, 2 * S, limits)
        plausible = limits.price_problem(p) is None and limits.size_problem(s) is None
        assert (reason is None) == plausible
        if reason is None:
            applied.append(("AAPL", t, p, s))
            out = proc.on_trade(st_, sig, ev, NO_WM, seq * 1000).emissions
            out += proc.on_watermark(st_, sig, (t - S) // 1_000_000)
            # as emitted: a provisional emission shares the open bar, which moves on
            emissions += [copy.deepcopy(e) for e in out]
    emissions += proc.on_watermark(st_, sig, 1 << 62)
    return emissions, refusals, st_, applied


def _all_finite(emissions) -> bool:
    return all(
        bar_fields_finite(e.bar) and all(finite(v) for v in e.signals.as_dict().values())
        for e in emissions
    )


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades=trade_streams())
def test_with_the_default_limits_extreme_trades_are_refused_and_every_output_is_finite(trades):
    """A trade is refused exactly when it leaves the limits; the bars of the rest are all
    plausible, so the emit guard never fires, and every final and provisional bar and
    signal is finite; the final bars equal the oracle of the applied trades."""
    emissions, refusals, st_, applied = _run(trades, DEFAULT_LIMITS)
    assert _all_finite(emissions)
    assert refusals == [] and st_.counters.refused_bars == 0
    finals = [e.bar for e in emissions if e.is_final]
    assert_same_bars(finals, oracle_bars(applied, S))


WIDE = PlausibleLimits(SUB, MAX, MAX)  # no plausibility at all: the kernels on their own


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trades=trade_streams())
def test_without_limits_the_guard_and_the_kernels_still_emit_nothing_non_finite(trades):
    """Limits opened to every finite number: bars of 1e308 or subnormal prices and huge
    sizes are built, and each final bar is either emitted (all finite) or refused by the
    documented rule: the emit guard (a non-finite field) or the indicators' domain."""
    emissions, refusals, st_, applied = _run(trades, WIDE)
    assert _all_finite(emissions)
    finals = {e.bar.start_ns for e in emissions if e.is_final}
    expected_refused = set()
    for bar in oracle_bars(applied, S):
        if bar_problem(bar, WIDE) is not None or not in_kernel_domain(bar):
            expected_refused.add(bar.start_ns)
        else:
            assert bar.start_ns in finals
    assert st_.counters.refused_bars == len(expected_refused)
    assert {r[1] for r in refusals if r[2] and r[3] == "bar"} <= expected_refused
    assert finals.isdisjoint(expected_refused)


# ------------------------------------------------------------ the keyed function


def test_the_keyed_function_refuses_1e308_trades_and_reports_the_guard_on_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through SymbolTaFunction (Avro records in, frames out): trades at 1e308, 1e-308,
    5e-324 and of size 1e308 are rejected records; every final bar and signal is finite;
    the emit guard's counters are on ta.status.v1."""
    from shared.framing import unframe_record
    from shared.serde import AvroDeserializer
    from tests.support.registry import InMemoryRegistry
    from tests.support.ta_harness import (
        SYMBOLS,
        Harness,
        decoded_outputs,
        mixed_stream,
        raw_envelopes,
    )

    stream = mixed_stream(3)
    poison = [(1e308, 1.0), (1e-308, 1.0), (5e-324, 2.0), (100.0, 1e308), (MAX, MAX)]
    for i, (p, s) in enumerate(poison):
        _kind, ts, sym, _f = stream[100 + 50 * i]
        stream.insert(101 + 50 * i, ("t", ts, sym, (p, s, 10_000 + i)))
    import flink_job.functions as functions

    reg = InMemoryRegistry()
    monkeypatch.setattr(functions, "SchemaRegistryClient", lambda url, **_: reg)
    raw = raw_envelopes(stream, reg)
    h = Harness(reg, log_max=64)
    records = [
        (sym, "t" if k == "t" else "q", ts, r)
        for (k, ts, sym, _), r in zip(stream, raw, strict=True)
    ]
    for i in range(0, len(records), 5):
        h.feed(records[i : i + 5])
    h.advance(1 << 62)
    finals = [dict(f[1]) for f in decoded_outputs(h.out, reg)]
    assert {r["symbol"] for r in finals} == set(SYMBOLS)
    for r in finals:
        assert all(finite(v) for v in r.values() if isinstance(v, float)), r
    h.fn._refused("AAPL", T0, False, "bar", "volume inf is not a finite number >= 0")
    h.fn._refused("AAPL", T0, True, "values", "ema12, macd")
    h.fn.watermark_ms = None
    _topic, _key, value = unframe_record(h.fn._status_frame(0))
    status = AvroDeserializer(reg).decode(value)  # type: ignore[arg-type]
    assert status["rejected_records"] == len(poison)
    assert (status["refused_outputs"], status["nulled_values"]) == (1, 2)
