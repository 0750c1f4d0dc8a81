"""Minute bars built from trades: emitted at the minute's end, updated by late trades."""

import pytest

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


def test_sale_conditions_decide_what_a_trade_sets_in_the_minute_bar():
    """docs/design.md, "Condition-aware bars": open/close from the highest-rank trades,
    high/low from rank >= 1, volume, n and vw from the volume trades."""
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 1 * NS_PER_S, 10.0, 100, ["@"], "C")
    b.add_trade("AAPL", M0 + 2 * NS_PER_S, 13.0, 50, ["Z"], "C")  # out of sequence: rank 1
    b.add_trade("AAPL", M0 + 3 * NS_PER_S, 7.0, 30, ["@", "I"], "C")  # odd lot: volume only
    b.add_trade("AAPL", M0 + 4 * NS_PER_S, 11.0, 20, ["@"], "C")
    b.add_trade("AAPL", M0 + 5 * NS_PER_S, 50.0, 999, ["M"], "C")  # official close: nothing
    b.add_trade("AAPL", M0 + 6 * NS_PER_S, 12.0, 10, ["9"], "B")  # corrected close: no volume
    (bar,) = b.close_until(M0 + NS_PER_MIN)
    assert (bar["o"], bar["c"]) == (10.0, 12.0)
    assert (bar["h"], bar["l"]) == (13.0, 10.0)  # the odd lot's 7.0 is not the low
    assert (bar["v"], bar["n"]) == (200.0, 4)
    assert bar["vw"] == (1000 + 650 + 210 + 220) / 200


def test_a_minute_with_only_volume_trades_gets_no_bar_and_rank_1_sets_open_close_alone():
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 1, 10.0, 30, ["I"], "C")
    b.add_trade("MSFT", M0 + 1, 20.0, 10, ["Z"], "C")
    b.add_trade("MSFT", M0 + 2, 21.0, 10, ["I"], "C")
    (bar,) = b.close_until(M0 + NS_PER_MIN)
    assert bar["S"] == "MSFT"
    assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["n"]) == (
        20.0,
        20.0,
        20.0,
        20.0,
        20.0,
        2,
    )


def test_no_conditions_is_a_regular_sale():
    b = MinuteBarBuilder(daily_bars=False)
    b.add_trade("AAPL", M0 + 1, 10.0, 30)
    (bar,) = b.close_until(M0 + NS_PER_MIN)
    assert (bar["o"], bar["v"], bar["n"]) == (10.0, 30.0, 1)


def test_the_corruption_knob_shifts_the_high_of_exactly_the_nth_minute_bar_and_its_updates():
    from torghut.sim.bars import MinuteBarCorruption

    knob = MinuteBarCorruption.parse("AAPL@2")
    b = MinuteBarBuilder(daily_bars=False, corrupt=knob)
    for minute in range(3):
        for sym in ("AAPL", "MSFT"):
            b.add_trade(sym, M0 + minute * NS_PER_MIN + 1, 10.0, 1)
    bars = b.close_until(M0 + 3 * NS_PER_MIN)
    highs = {(m["S"], (m["t"] - M0) // NS_PER_MIN): m["h"] for m in bars}
    assert highs == {
        ("AAPL", 0): 10.0,
        ("AAPL", 1): 10.0 * 1.01,
        ("AAPL", 2): 10.0,
        ("MSFT", 0): 10.0,
        ("MSFT", 1): 10.0,
        ("MSFT", 2): 10.0,
    }
    (update,) = b.add_trade("AAPL", M0 + NS_PER_MIN + 5, 9.0, 1)  # a late trade
    assert update["T"] == "u" and update["h"] == 10.0 * 1.01 and update["l"] == 9.0
    assert knob.minute_ns == M0 + NS_PER_MIN
    for bad in ("AAPL", "AAPL@0", "@3", "AAPL@x"):
        with pytest.raises(ValueError, match="SYMBOL@N"):
            MinuteBarCorruption.parse(bad)
