"""Minute bars built from trades: emitted at the minute's end, updated by late trades."""

from torghut.sim.bars import MinuteBarBuilder
from torghut.sim.timestamps import NS_PER_MIN, NS_PER_S

M0 = 1_709_303_400 * NS_PER_S  # 14:30:00 UTC, a minute boundary


def test_bar_is_emitted_when_the_clock_passes_the_minute():
    b = MinuteBarBuilder(daily_bars=False)
    assert b.add_trade("AAPL", M0 + 1, 10.0, 100) == []
    b.add_trade("AAPL", M0 + 2 * NS_PER_S, 12.0, 50)
    b.add_trade("AAPL", M0 + 3 * NS_PER_S, 9.0, 50)
    assert b.close_until(M0 + NS_PER_MIN - 1) == []
    (bar,) = b.close_until(M0 + NS_PER_MIN)
    assert bar == {
        "T": "b",
        "S": "AAPL",
        "o": 10.0,
        "h": 12.0,
        "l": 9.0,
        "c": 9.0,
        "v": 200.0,
        "t": M0,
        "n": 3,
        "vw": (1000 + 600 + 450) / 200,
    }


def test_out_of_order_trade_sets_open_by_event_time():
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 5 * NS_PER_S, 10.0, 1)
    b.add_trade("AAPL", M0 + 1 * NS_PER_S, 11.0, 1)  # earlier than the previous trade
    (bar,) = b.close_until(M0 + NS_PER_MIN)
    assert (bar["o"], bar["c"]) == (11.0, 10.0)


def test_late_trade_for_a_closed_minute_emits_an_updated_bar():
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 1, 10.0, 100)
    b.close_until(M0 + NS_PER_MIN + 1)
    (updated,) = b.add_trade("AAPL", M0 + 30 * NS_PER_S, 8.0, 100)
    assert updated["T"] == "u" and updated["t"] == M0
    assert (updated["l"], updated["c"], updated["v"], updated["n"]) == (8.0, 8.0, 200.0, 2)


def test_daily_bar_follows_each_minute_bar_and_starts_at_new_york_midnight():
    b = MinuteBarBuilder()
    b.add_trade("AAPL", M0 + 1, 10.0, 100)
    bar, daily = b.close_until(M0 + NS_PER_MIN)
    assert daily["T"] == "d"
    assert daily["t"] == (1_709_303_400 - 14 * 3600 - 30 * 60 + 5 * 3600) * NS_PER_S  # 05:00Z
    assert daily["v"] == bar["v"]


def test_empty_minutes_make_no_bar():
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 1, 10.0, 1)
    assert len(b.close_until(M0 + 5 * NS_PER_MIN)) == 1
