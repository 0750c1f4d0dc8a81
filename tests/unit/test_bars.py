"""MicroBar (against the bar oracle of tests/support/bar_oracle.py): event-time bucketing, OHLC by event time, exact fractional sizes, state."""

from __future__ import annotations

import math
import pickle
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bars import MicroBar, TradeOutsideBarError, bucket_start_ns
from shared.sale_conditions import (
    ALL,
    CTA,
    FORM_T,
    HIGH_LOW,
    LAST,
    UTP,
    VOLUME,
    resolve,
    trade_updates,
    unknown_codes,
)
from tests.support.bar_oracle import assert_same_bars, oracle_bars

NS = 1_000_000_000
T0 = 1_718_000_000 * NS


def stream_bars(
    arrivals: list[tuple[str, int, float, float]], size_ns: int, bound_ns: int
) -> tuple[list[MicroBar], int]:
    """The streaming side: one open MicroBar per (symbol, bucket), closed by a watermark."""
    open_bars: dict[tuple[str, int], MicroBar] = {}
    closed: list[MicroBar] = []
    late = 0
    max_ts: int | None = None
    for symbol, ts, price, size in arrivals:
        max_ts = ts if max_ts is None else max(max_ts, ts)
        watermark = max_ts - bound_ns
        start = bucket_start_ns(ts, size_ns)
        if start + size_ns <= watermark:
            late += 1  # behind the watermark: counted, never an extra bar
            continue
        bar = open_bars.get((symbol, start))
        if bar is None:
            open_bars[(symbol, start)] = MicroBar.open_with(symbol, start, size_ns, price, size, ts)
        else:
            bar.add_trade(price, size, ts)
        for key in [k for k, b in open_bars.items() if b.end_ns <= watermark]:
            closed.append(open_bars.pop(key))
    closed.extend(open_bars.values())
    closed.sort(key=lambda b: (b.symbol, b.start_ns))
    return closed, late


@given(ts=st.integers(min_value=-(2**62), max_value=2**62), size=st.integers(1, 10**12))
def test_bucket_start_is_the_floor_for_any_integer_time(ts: int, size: int) -> None:
    start = bucket_start_ns(ts, size)
    assert start <= ts < start + size
    assert start % size == 0


def test_bucket_start_rejects_a_non_positive_size() -> None:
    with pytest.raises(ValueError, match="positive"):
        bucket_start_ns(5, 0)


trade_lists = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "BTC/USD", "MSFT"]),
        st.integers(0, 8 * NS),  # event time offset
        st.integers(0, 1_500_000_000),  # arrival delay, within the 1.5 s bound
        st.floats(0.01, 1e6, allow_nan=False, allow_infinity=False),
        st.one_of(st.floats(0.0, 1e4, allow_nan=False), st.sampled_from([1e-8, 0.1, 0.0003])),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(trades=trade_lists)
def test_streaming_bars_equal_the_batch_oracle_on_trades_shuffled_within_the_bound(
    trades: list[tuple[str, int, int, float, float]],
) -> None:
    bound = 1_500_000_000
    in_arrival_order = sorted(
        ((sym, T0 + off, price, size, off + delay) for sym, off, delay, price, size in trades),
        key=lambda t: t[4],
    )
    arrivals = [t[:4] for t in in_arrival_order]

    streamed, late = stream_bars(arrivals, NS, bound)

    assert late == 0
    assert_same_bars(streamed, oracle_bars(arrivals, NS))


@settings(max_examples=100, deadline=None)
@given(trades=trade_lists)
def test_ohlc_do_not_depend_on_arrival_order_when_event_times_are_distinct(
    trades: list[tuple[str, int, int, float, float]],
) -> None:
    seen: set[tuple[str, int]] = set()
    unique = []
    for sym, off, _, price, size in trades:
        if (sym, off) not in seen:
            seen.add((sym, off))
            unique.append((sym, T0 + off, price, size))
    in_event_order, _ = stream_bars(sorted(unique, key=lambda t: t[1]), NS, 10 * NS)
    reversed_arrival, _ = stream_bars(list(reversed(unique)), NS, 10 * NS)
    for a, b in zip(in_event_order, reversed_arrival, strict=True):
        assert (a.open, a.high, a.low, a.close, a.trade_count) == (
            b.open,
            b.high,
            b.low,
            b.close,
            b.trade_count,
        )
        assert a.volume == pytest.approx(b.volume, rel=1e-12)


def test_a_late_trade_with_the_earliest_event_time_becomes_the_open() -> None:
    bar = MicroBar.open_with("AAPL", T0, NS, 10.0, 1.0, T0 + 500)
    bar.add_trade(11.0, 1.0, T0 + 900)
    bar.add_trade(9.5, 2.0, T0 + 100)  # arrives last, happened first

    assert (bar.open, bar.close, bar.high, bar.low) == (9.5, 11.0, 11.0, 9.5)
    assert bar.first_event_ns == T0 + 100
    assert bar.last_event_ns == T0 + 900


def test_a_late_trade_with_the_latest_event_time_becomes_the_close() -> None:
    bar = MicroBar.open_with("AAPL", T0, NS, 10.0, 1.0, T0 + 800)
    bar.add_trade(10.5, 1.0, T0 + 200)  # earlier event: new open, close unchanged
    assert (bar.open, bar.close) == (10.5, 10.0)
    bar.add_trade(12.0, 1.0, T0 + 999_999_999)

    assert (bar.open, bar.close) == (10.5, 12.0)


def test_equal_event_times_keep_arrival_order_for_open_and_close() -> None:
    bar = MicroBar.open_with("AAPL", T0, NS, 1.0, 1.0, T0 + 10)
    bar.add_trade(2.0, 1.0, T0 + 10)
    bar.add_trade(3.0, 1.0, T0 + 10)

    assert (bar.open, bar.close) == (1.0, 3.0)


def test_fractional_sizes_are_kept_exact_and_weight_the_vwap() -> None:
    bar = MicroBar.open_with("BTC/USD", T0, NS, 60_000.0, 0.5, T0 + 1)
    bar.add_trade(60_010.0, 0.25, T0 + 2)
    bar.add_trade(60_020.0, 0.0001, T0 + 3)

    assert bar.volume == 0.5 + 0.25 + 0.0001
    assert bar.pv == 60_000.0 * 0.5 + 60_010.0 * 0.25 + 60_020.0 * 0.0001
    assert bar.vwap == bar.pv / bar.volume
    assert 60_000.0 < bar.vwap < 60_010.0


def test_zero_size_trades_give_a_vwap_equal_to_the_close() -> None:
    bar = MicroBar.open_with("AAPL", T0, NS, 10.0, 0.0, T0 + 1)
    bar.add_trade(11.0, 0.0, T0 + 2)

    assert bar.volume == 0.0
    assert bar.vwap == 11.0


def test_a_trade_outside_the_bucket_is_rejected() -> None:
    bar = MicroBar.open_with("AAPL", T0, NS, 10.0, 1.0, T0)
    with pytest.raises(TradeOutsideBarError, match="outside"):
        bar.add_trade(10.0, 1.0, T0 + NS)
    with pytest.raises(TradeOutsideBarError):
        MicroBar.open_with("AAPL", T0, NS, 10.0, 1.0, T0 - 1)


def test_state_round_trip_restores_the_bar_and_it_keeps_aggregating_identically() -> None:
    bar = MicroBar.open_with("BTC/USD", T0, NS, 100.0, 0.3, T0 + 50)
    bar.add_trade(101.0, 0.7, T0 + 10)
    state = bar.to_state()
    restored = MicroBar.from_state(pickle.loads(pickle.dumps(state)))

    assert restored == bar
    assert all(isinstance(v, (str, int, float)) for v in state)
    bar.add_trade(99.0, 1.1, T0 + 70)
    restored.add_trade(99.0, 1.1, T0 + 70)
    assert restored == bar


# ---- sale conditions (docs/design.md, "Condition-aware bars") ----------------------------


def _bar(*trades: tuple[float, float, int, tuple[str, ...]], tape: str = "C") -> MicroBar:
    """A 1 s bar of (price, size, ns after T0, conditions) trades, in arrival order."""
    bar: MicroBar | None = None
    for price, size, dt, conditions in trades:
        flags = trade_updates(tape, conditions)
        if bar is None:
            bar = MicroBar.open_with("X", T0, NS, price, size, T0 + dt, flags)
        else:
            bar.add_trade(price, size, T0 + dt, flags)
    assert bar is not None
    return bar


def test_an_odd_lot_moves_volume_and_vwap_but_not_a_price_field() -> None:
    bar = _bar((100.0, 100, 10, ("@",)), (105.0, 10, 20, ("@", "I")), (101.0, 100, 30, ("@",)))
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 101.0, 100.0, 101.0)
    assert (bar.volume, bar.trade_count, bar.price_basis) == (210, 3, 2)
    assert bar.vwap == (100.0 * 100 + 105.0 * 10 + 101.0 * 100) / 210


def test_an_average_price_print_far_from_the_market_sets_no_false_high_on_either_tape() -> None:
    for tape, code in (("A", "B"), ("C", "W")):
        bar = _bar((100.0, 100, 10, ("@",)), (120.0, 500, 20, (code,)), tape=tape)
        assert (bar.high, bar.close, bar.volume) == (100.0, 100.0, 600), tape
    # "B" on tape C is a bunched trade: a regular price-setting print
    bar = _bar((100.0, 100, 10, ("@",)), (120.0, 500, 20, ("B",)), tape="C")
    assert (bar.high, bar.close) == (120.0, 120.0)


def test_an_out_of_sequence_print_sets_high_low_but_not_open_or_close() -> None:
    bar = _bar((100.0, 100, 10, ("@",)), (98.0, 100, 5, ("@", "Z")), (101.0, 100, 30, ("@",)))
    assert (bar.open, bar.close, bar.low, bar.high) == (100.0, 101.0, 98.0, 101.0)
    assert bar.price_basis == 2


def test_a_bar_of_only_high_low_prints_takes_open_and_close_from_them() -> None:
    bar = _bar((99.0, 100, 20, ("@", "Z")), (98.0, 100, 10, ("@", "4")), (97.0, 5, 5, ("I",)))
    assert (bar.open, bar.high, bar.low, bar.close) == (98.0, 99.0, 98.0, 99.0)
    assert bar.price_basis == 1
    # a last-sale trade later in the same bar takes open and close over
    bar.add_trade(100.0, 100, T0 + 30, trade_updates("C", ("@",)))
    assert (bar.open, bar.close, bar.high, bar.low, bar.price_basis) == (
        100.0,
        100.0,
        100.0,
        98.0,
        2,
    )


def test_a_bar_of_odd_lots_has_volume_and_no_price_until_it_carries_one() -> None:
    bar = _bar((101.0, 10, 10, ("@", "I")), (102.0, 30, 20, ("@", "I")))
    assert bar.price_basis == 0 and math.isnan(bar.close)
    assert (bar.volume, bar.trade_count, bar.vwap) == (40, 2, (101.0 * 10 + 102.0 * 30) / 40)
    bar.carry(100.5)
    assert (bar.open, bar.high, bar.low, bar.close) == (100.5,) * 4
    assert bar.vwap == (101.0 * 10 + 102.0 * 30) / 40  # the traded volume's own average
    with pytest.raises(ValueError, match="not carried"):
        _bar((100.0, 1, 0, ("@",))).carry(1.0)


def test_the_corrected_close_sets_prices_but_no_volume_and_official_prints_set_nothing() -> None:
    assert trade_updates("A", ("M",)) == 0 and trade_updates("C", ("Q",)) == 0
    bar = _bar((100.0, 100, 10, ("@",)), (100.2, 900, 20, ("9",)))
    assert (bar.close, bar.high, bar.volume, bar.trade_count) == (100.2, 100.2, 100, 1)


def test_a_condition_restricts_updates_and_several_conditions_combine_by_and() -> None:
    assert trade_updates("C", ()) == ALL == trade_updates("A", ("@",)) == trade_updates("A", (" ",))
    assert trade_updates("C", ("@", "F", "I")) == VOLUME
    assert trade_updates("A", ("Z", "I")) == VOLUME
    assert trade_updates("A", ("Z",)) == HIGH_LOW | VOLUME
    # a code neither plan defines restricts nothing (and is remembered for the log)
    assert trade_updates("C", ("@", "&")) == ALL and ("C", "&") in unknown_codes


def test_every_condition_that_may_set_the_last_sale_may_set_high_and_low() -> None:
    """What keeps open and close inside [low, high] whatever the mix of trades."""
    for table in (CTA, UTP):
        for code, (name, flags) in table.items():
            assert not flags & LAST or flags & HIGH_LOW, (code, name)


def test_form_t_prices_bars_outside_the_regular_session_by_the_nyse_calendar() -> None:
    flags = trade_updates("C", ("@", "T"))
    assert flags & FORM_T
    at = lambda s: int(datetime.fromisoformat(s).timestamp()) * NS  # noqa: E731
    assert resolve(flags, at("2026-12-07T15:00:00+00:00")) == VOLUME  # Monday 10:00 New York
    assert resolve(flags, at("2026-12-07T13:00:00+00:00")) == ALL  # 08:00: pre-market
    assert resolve(flags, at("2026-12-25T15:00:00+00:00")) == ALL  # Christmas: no session
    assert resolve(flags, at("2026-11-27T18:30:00+00:00")) == ALL  # 13:30 after the early close
    assert resolve(flags, at("2026-11-27T17:30:00+00:00")) == VOLUME  # 12:30 before it
    # other conditions still apply outside the session: a Form T odd lot is volume only
    assert resolve(trade_updates("C", ("@", "T", "I")), at("2026-12-07T13:00:00+00:00")) == VOLUME
    assert resolve(trade_updates("A", ("@",)), at("2026-12-07T13:00:00+00:00")) == ALL
