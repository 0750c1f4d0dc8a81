"""The job's bars against the tests' bar oracle (tests/support/bar_oracle.py, written from
docs/design.md and the tape's table): the streaming kernel `shared.bars.MicroBar` trade by
trade, and `SymbolProcessor` as the job drives it (its trade events carry the decoder's
flags), for any mix of sale conditions, tapes, arrival orders and times of day."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flink_job.symbol_processor import SymbolProcessor, SymbolState
from shared import sale_conditions as table
from shared.bars import MicroBar
from shared.indicators import SignalState
from tests.support.bar_inputs import AFTER_HOURS, CONDITIONS, IN_SESSION
from tests.support.bar_oracle import (
    assert_same_bars,
    bucket_start,
    oracle_bars,
    trade_flags,
)

S = 1_000_000_000
NO_WM = -(1 << 63)


def _trades(symbols: list[str]) -> st.SearchStrategy:
    return st.sampled_from([IN_SESSION, AFTER_HOURS]).flatmap(
        lambda base: st.lists(
            st.tuples(
                st.sampled_from(symbols),
                st.integers(base - 2 * S, base + 3 * S),  # out of order, across seconds
                st.sampled_from([99.5, 100.0, 100.25]) | st.floats(0.01, 10_000.0),
                st.sampled_from([0.0, 1.0, 100.0]) | st.floats(1e-6, 1e7),
                st.sampled_from(["", "A", "B", "C"]),
                CONDITIONS,
            ),
            min_size=1,
            max_size=60,
        )
    )


def _stream(trades: list[tuple], carry: dict[str, float]) -> list[MicroBar]:
    """MicroBar fed trade by trade with each trade's flags, then closed in start order: a
    bar without a price takes the symbol's previous close, or is dropped without one."""
    bars: dict[tuple[str, int], MicroBar] = {}
    for sym, ts, price, size, tape, conds in trades:
        flags = trade_flags(tape, conds, ts)
        if not flags:
            continue
        key = (sym, bucket_start(ts, S))
        if key in bars:
            bars[key].add_trade(price, size, ts, flags)
        else:
            bars[key] = MicroBar.open_with(sym, key[1], S, price, size, ts, flags)
    out, prev = [], dict(carry)
    for key in sorted(bars):
        bar = bars[key]
        if not bar.price_basis:
            if key[0] not in prev:
                continue
            bar.carry(prev[key[0]])
        out.append(bar)
        prev[key[0]] = bar.close
    return out


@settings(max_examples=300, deadline=None)
@given(trades=_trades(["AAPL", "MSFT"]), carried=st.booleans())
def test_microbar_equals_the_oracle_for_any_conditions_in_any_arrival_order(
    trades, carried
) -> None:
    carry = {"AAPL": 100.0, "MSFT": 50.0} if carried else {}
    assert_same_bars(_stream(trades, carry), oracle_bars(trades, S, carry))


@settings(max_examples=150, deadline=None)
@given(trades=_trades(["AAPL"]))
def test_the_symbol_processors_final_bars_equal_the_oracle(trades) -> None:
    """Trade events as the decoder makes them (flags = `trade_updates` of the envelope's
    tape and conditions), none late; the watermark then closes every bar in start order.
    A bar without a price before the symbol's first priced bar is not emitted."""
    proc = SymbolProcessor(provisional_interval_ns=1 << 62)
    state, signals = SymbolState(), SignalState()
    for seq, (sym, ts, price, size, tape, conds) in enumerate(trades, 1):
        flags = table.trade_updates(tape, conds)
        ev = ("t", sym, ts, seq, ts + 1000, f"tr{seq}", price, size, seq, flags)
        proc.on_trade(state, signals, ev, NO_WM, 0)
    finals = [e.bar for e in proc.on_watermark(state, signals, 1 << 62) if e.is_final]
    assert_same_bars(finals, oracle_bars(trades, S))
