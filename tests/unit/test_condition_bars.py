"""The job's processor with sale conditions (docs/design.md, "Condition-aware bars"):
trades that update nothing are in no bar, a bar without a price carries the symbol's
previous close (or is held back while there is none), and Form T prices bars only
outside the NYSE regular session."""

from __future__ import annotations

from typing import Any

from flink_job.symbol_processor import NO_PRICE, SymbolProcessor, SymbolState
from shared.indicators import SignalState
from shared.sale_conditions import trade_updates

S = 1_000_000_000
MS = 1_000_000
T0 = 1_796_653_800 * S  # Monday 2026-12-07 14:30:00 UTC, 09:30 New York: the open
PRE = 1_796_641_200 * S  # the same day 11:00 UTC, 06:00 New York: pre-market
NO_WM = -(1 << 63)


def trade(ts: int, price: float, conditions: tuple[str, ...], seq: int, size: float = 100.0):
    flags = trade_updates("C", conditions)
    return ("t", "AAPL", ts, seq, ts + 1000, f"tr{seq}", price, size, seq, flags)


class Refusals(list):
    """The emit guard's refusals (the trade each concerns, `record`, is not compared)."""

    def __call__(self, *args: Any, record: Any = None) -> None:
        self.append(args)


def run(trades: list[tuple], until_ns: int, refusals: Refusals | None = None):
    proc = SymbolProcessor(provisional_interval_ns=0, on_refuse=refusals)
    st, sig = SymbolState(), SignalState()
    for ev in trades:
        proc.on_trade(st, sig, ev, NO_WM, 0)
    return proc.on_watermark(st, sig, until_ns // MS), st, sig


def test_an_official_open_or_close_print_is_in_no_bar() -> None:
    out, st, _ = run(
        [trade(T0 + 10, 250.0, ("M",), 1), trade(T0 + 20, 251.0, ("Q",), 2)], T0 + 2 * S
    )
    assert out == [] and st.bars == {}


def test_a_second_of_odd_lots_after_a_priced_bar_is_a_flat_bar_at_the_previous_close() -> None:
    out, _, sig = run(
        [
            trade(T0 + 10, 100.0, ("@",), 1),
            trade(T0 + 20, 100.5, ("@",), 2),
            trade(T0 + S + 10, 103.0, ("@", "I"), 3, size=10),
            trade(T0 + S + 20, 104.0, ("@", "I"), 4, size=30),
        ],
        T0 + 3 * S,
    )
    first, second = (e.bar for e in out)
    assert (first.close, first.price_basis) == (100.5, 2)
    assert (second.open, second.high, second.low, second.close) == (100.5,) * 4
    assert second.price_basis == 0
    assert (second.volume, second.trade_count) == (40, 2)
    assert second.vwap == (103.0 * 10 + 104.0 * 30) / 40
    assert sig.bars_committed == 2  # a flat bar feeds the indicators like any bar


def test_odd_lots_before_any_price_are_held_back_counted_and_reported() -> None:
    refusals = Refusals()
    out, st, sig = run(
        [trade(T0 + 10, 103.0, ("@", "I"), 1, size=10), trade(T0 + S + 10, 100.0, ("@",), 2)],
        T0 + 3 * S,
        refusals,
    )
    assert [e.bar.start_ns for e in out] == [T0 + S]
    assert st.counters.refused_bars == 1 and sig.bars_committed == 1
    assert refusals == [("AAPL", T0, True, "bar", NO_PRICE)]


def test_a_provisional_view_of_an_unpriced_bar_carries_the_latest_close() -> None:
    proc = SymbolProcessor(provisional_interval_ns=1)
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + 10, 100.0, ("@",), 1), NO_WM, 10)
    proc.on_watermark(st, sig, (T0 + S) // MS)
    (em,) = proc.on_trade(st, sig, trade(T0 + S + 10, 90.0, ("@", "I"), 2), NO_WM, 20).emissions
    assert (em.bar.close, em.bar.price_basis, em.is_final) == (100.0, 0, False)
    assert st.bars[T0 + S].close != st.bars[T0 + S].close  # the open bar itself stays unpriced


def test_form_t_sets_prices_in_the_pre_market_and_only_volume_in_the_session() -> None:
    out, _, _ = run(
        [
            trade(PRE + 10, 99.0, ("@", "T"), 1),
            trade(PRE + 20, 99.5, ("@", "T", "I"), 2, size=5),
            trade(T0 + 10, 100.0, ("@",), 3),
            trade(T0 + 20, 90.0, ("@", "T"), 4),  # a late Form T report inside the session
        ],
        T0 + 2 * S,
    )
    pre, regular = (e.bar for e in out)
    assert (pre.open, pre.high, pre.close, pre.price_basis, pre.volume) == (
        99.0,
        99.0,
        99.0,
        2,
        105,
    )
    assert (regular.low, regular.close, regular.volume) == (100.0, 100.0, 200)
