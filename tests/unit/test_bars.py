"""MicroBar: event-time bucketing, OHLC by event time, exact fractional sizes, state."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bars import MicroBar, TradeOutsideBarError, batch_bars, bucket_start_ns

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
    assert streamed == batch_bars(arrivals, NS)


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
    in_event_order = batch_bars(sorted(unique, key=lambda t: t[1]), NS)
    reversed_arrival = batch_bars(list(reversed(unique)), NS)
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


def test_batch_bars_are_sorted_by_symbol_then_start() -> None:
    trades = [
        ("MSFT", T0 + 2 * NS, 1.0, 1.0),
        ("AAPL", T0 + NS, 2.0, 1.0),
        ("AAPL", T0, 3.0, 1.0),
    ]
    bars = batch_bars(trades, NS)
    assert [(b.symbol, b.start_ns) for b in bars] == [
        ("AAPL", T0),
        ("AAPL", T0 + NS),
        ("MSFT", T0 + 2 * NS),
    ]
