"""The job's streaming bar kernel (`shared.bars.MicroBar`) against the tests' bar oracle
(tests/support/bar_oracle.py, written from docs/design.md), trade by trade in arrival order.

Regular sales only for now: the kernel's API for a trade's sale-condition flags is being
added with the condition-aware bars; once `MicroBar` takes them, this check should feed
each trade's flags (`bar_oracle.trade_flags`) and drop the regular-only restriction.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bars import MicroBar
from tests.support.bar_oracle import assert_same_bars, bucket_start, oracle_bars

S = 1_000_000_000
T0 = 1_796_394_600 * S


def _stream(trades: list[tuple[str, int, float, float]]) -> list[MicroBar]:
    bars: dict[tuple[str, int], MicroBar] = {}
    for sym, ts, price, size in trades:
        key = (sym, bucket_start(ts, S))
        if key in bars:
            bars[key].add_trade(price, size, ts)
        else:
            bars[key] = MicroBar.open_with(sym, key[1], S, price, size, ts)
    return [bars[k] for k in sorted(bars)]


@settings(max_examples=300, deadline=None)
@given(
    trades=st.lists(
        st.tuples(
            st.sampled_from(["AAPL", "MSFT"]),
            st.integers(T0 - 2 * S, T0 + 3 * S),  # out of order within and across seconds
            st.sampled_from([99.5, 100.0, 100.25]) | st.floats(0.01, 10_000.0),
            st.sampled_from([0.0, 1.0, 100.0]) | st.floats(1e-6, 1e7),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_microbar_equals_the_oracle_for_regular_sales_in_any_arrival_order(trades) -> None:
    assert_same_bars(_stream(trades), oracle_bars(trades, S))
