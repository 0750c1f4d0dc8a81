"""Minute bars against the tests' bar oracle (tests/support/bar_oracle.py): the simulator's
condition-aware minute bars (`torghut.sim.bars.MinuteBarBuilder`, the vendor side of the
minute check) and the minute check's roll-up of final 1 s bars (`torghut.barcheck.logic
.roll_up`), for any mix of sale conditions, tapes, arrival orders and session sides.

A minute whose trades may set no price has no vendor bar and its rolled-up prices are
never compared (`only_ours_no_price`): those minutes are left out here.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.bar_inputs import AFTER_HOURS, CONDITIONS, IN_SESSION
from tests.support.bar_oracle import MINUTE, oracle_bars, oracle_minute_bars
from torghut.barcheck.logic import SecondBar, roll_up
from torghut.sim.bars import MinuteBarBuilder

S = 1_000_000_000


def _trades() -> st.SearchStrategy:
    return st.sampled_from([IN_SESSION, AFTER_HOURS]).flatmap(
        lambda base: st.lists(
            st.tuples(
                st.sampled_from(["AAPL", "MSFT"]),
                st.integers(base - 70 * S, base + 130 * S),  # three minutes, out of order
                st.sampled_from([99.5, 100.0, 100.25]) | st.floats(0.01, 10_000.0),
                st.sampled_from([0.0, 1.0, 100.0]) | st.floats(1e-6, 1e7),
                st.sampled_from(["", "A", "B", "C"]),
                CONDITIONS,
            ),
            min_size=1,
            max_size=80,
        )
    )


@settings(max_examples=200, deadline=None)
@given(trades=_trades())
def test_the_simulators_minute_bars_equal_the_oracles_minutes_of_its_trades(trades) -> None:
    builder = MinuteBarBuilder(daily_bars=False)
    for sym, ts, price, size, tape, conds in trades:
        assert builder.add_trade(sym, ts, price, size, conds, tape) == []  # nothing closed yet
    sent = {
        (m["S"], m["t"]): (m["o"], m["h"], m["l"], m["c"], m["v"], m["n"], m["vw"])
        for m in builder.flush()
        if m["T"] == "b"
    }
    want = {
        (b.symbol, b.start_ns): (b.open, b.high, b.low, b.close, b.volume, b.trade_count, b.vwap)
        for b in oracle_bars(trades, MINUTE)
        if b.price_basis >= 1
    }
    assert sent == want


@settings(max_examples=200, deadline=None)
@given(trades=_trades())
def test_the_minute_checks_roll_up_equals_the_oracles(trades) -> None:
    """Final 1 s bars (the oracle's, a close carried in so flat seconds exist) rolled up by
    the minute check and by the oracle: prices, basis and count exactly, volume and VWAP to
    rounding (the check sums with math.fsum)."""
    carry = {"AAPL": 100.0, "MSFT": 50.0}
    seconds = oracle_bars(trades, S, carry)
    for minute in oracle_minute_bars(seconds, MINUTE, carry):
        if minute.price_basis == 0:
            continue
        mine = [b for b in seconds if b.symbol == minute.symbol]
        got = roll_up(
            SecondBar(
                b.start_ns,
                b.open,
                b.high,
                b.low,
                b.close,
                b.volume,
                b.vwap,
                b.trade_count,
                b.price_basis,
            )
            for b in mine
            if minute.start_ns <= b.start_ns < minute.end_ns
        )
        assert got is not None
        assert (got.open, got.high, got.low, got.close, got.trade_count, got.price_basis) == (
            minute.open,
            minute.high,
            minute.low,
            minute.close,
            minute.trade_count,
            minute.price_basis,
        )
        assert math.isclose(got.volume, minute.volume, rel_tol=1e-12, abs_tol=1e-300)
        assert math.isclose(got.vwap, minute.vwap, rel_tol=1e-12)
