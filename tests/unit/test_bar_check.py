"""The minute check's pure logic: roll-up of 1 s bars, comparison, completeness.

The roll-up is checked against the simulator's minute bars built from the same trades
(torghut/sim/bars.py, the vendor's stand-in), so the two sides' rules are one rule.
"""

from __future__ import annotations

import random

import pytest

from shared.bars import MicroBar
from torghut.barcheck.logic import (
    AGREE,
    DISAGREE,
    LATE_TRADES,
    NS_PER_MIN,
    ONLY_OURS,
    ONLY_OURS_NO_PRICE,
    ONLY_VENDOR,
    MinuteBar,
    MinuteCheck,
    SecondBar,
    compare,
    field_agrees,
    roll_up,
)
from torghut.barcheck.runner import check_record
from torghut.sim.bars import MinuteBarBuilder

NS = 1_000_000_000
M0 = 1_709_303_400 * NS  # a minute boundary


def _second(start_ns: int, o, h, lo, c, v, vw, n, basis=2, gap=False) -> SecondBar:
    return SecondBar(start_ns, o, h, lo, c, v, vw, n, basis, gap)


def _vendor(msg: dict) -> MinuteBar:
    return MinuteBar(msg["o"], msg["h"], msg["l"], msg["c"], msg["v"], msg["n"], msg["vw"])


def test_a_record_without_price_basis_counts_as_basis_2() -> None:
    rec = {
        "window": {"start": M0 // 1000},
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 10.0,
        "vwap": 1.2,
        "trade_count": 3,
    }
    assert SecondBar.from_record(rec).price_basis == 2
    assert SecondBar.from_record({**rec, "price_basis": 0}).price_basis == 0
    assert SecondBar.from_record(rec).start_ns == M0


def test_roll_up_of_regular_sales_equals_the_simulators_minute_bar_built_from_the_same_trades():
    rng = random.Random(7)
    builder = MinuteBarBuilder(daily_bars=False)
    seconds: dict[int, MicroBar] = {}
    for _ in range(400):
        ts = M0 + int(rng.random() * 60 * NS)
        price, size = round(100 + rng.uniform(-1, 1), 2), float(rng.randint(1, 500))
        builder.add_trade("AAPL", ts, price, size, ["@"], "C")
        start = ts - ts % NS
        bar = seconds.get(start)
        if bar is None:
            seconds[start] = MicroBar.open_with("AAPL", start, NS, price, size, ts)
        else:
            bar.add_trade(price, size, ts)
    (msg,) = builder.close_until(M0 + NS_PER_MIN)
    ours = roll_up(
        _second(s, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
        for s, b in seconds.items()
    )
    check = compare("AAPL", M0, ours, _vendor(msg))
    assert check.result == AGREE, check


def test_open_close_come_from_the_highest_basis_high_low_from_basis_1_and_up():
    bars = [
        _second(M0, 9.0, 9.0, 9.0, 9.0, 5.0, 9.0, 1, basis=0),  # odd lots: carried price
        _second(M0 + 1 * NS, 10.0, 12.0, 10.0, 11.0, 10.0, 11.0, 2, basis=1),
        _second(M0 + 2 * NS, 10.5, 10.6, 10.4, 10.5, 20.0, 10.5, 3, basis=2),
        _second(M0 + 3 * NS, 10.2, 10.7, 8.5, 10.3, 10.0, 10.1, 1, basis=2),
        _second(M0 + 4 * NS, 13.0, 13.0, 13.0, 13.0, 0.0, 13.0, 0, basis=1),  # no volume
    ]
    got = roll_up(reversed(bars))  # any order
    assert got is not None
    assert (got.open, got.close) == (10.5, 10.3)  # the basis-2 bars only
    assert (got.high, got.low) == (13.0, 8.5)  # basis >= 1: not the carried 9.0 bar...
    assert got.price_basis == 2 and got.seconds == 5
    assert got.volume == 45.0 and got.trade_count == 7
    assert got.vwap == pytest.approx((45 + 110 + 210 + 101) / 45, rel=1e-12)


def test_a_minute_of_volume_only_bars_keeps_the_carried_price_and_weights_vwap_by_volume():
    bars = [
        _second(M0, 9.0, 9.0, 9.0, 9.0, 5.0, 9.2, 1, basis=0),
        _second(M0 + NS, 9.0, 9.0, 9.0, 9.0, 15.0, 9.4, 2, basis=0),
    ]
    got = roll_up(bars)
    assert got is not None and got.price_basis == 0
    assert (got.open, got.high, got.low, got.close) == (9.0, 9.0, 9.0, 9.0)
    assert got.vwap == pytest.approx((46 + 141) / 20)
    assert roll_up([]) is None


def test_a_minute_without_volume_has_vwap_equal_to_its_close():
    got = roll_up([_second(M0, 5.0, 5.0, 5.0, 5.0, 0.0, 5.0, 0, basis=2)])
    assert got is not None and got.vwap == 5.0 and got.volume == 0.0


def test_prices_agree_within_1e_9_relative_volume_and_count_only_exactly():
    assert field_agrees("vwap", 100.0, 100.0 * (1 + 5e-10))
    assert not field_agrees("vwap", 100.0, 100.0 * (1 + 5e-9))
    assert not field_agrees("high", 100.0, 100.01)  # one cent
    assert field_agrees("volume", 100.0, 100.0)
    assert not field_agrees("volume", 100.0, 100.0 + 1e-9)
    assert not field_agrees("trade_count", 3, 4)


def test_compare_names_every_field_outside_the_tolerance_in_field_order():
    ours = MinuteBar(10.0, 11.0, 9.0, 10.5, 100.0, 4, 10.2)
    theirs = MinuteBar(10.0, 11.11, 9.0, 10.5, 101.0, 4, 10.2)
    check = compare("AAPL", M0, ours, theirs)
    assert check.result == DISAGREE and check.disagreements == ("high", "volume")
    assert check.agrees("high") is False and check.agrees("open") is True
    assert compare("AAPL", M0, ours, ours).result == AGREE


def test_one_sided_minutes_are_labelled_and_a_volume_only_minute_of_ours_distinctly():
    priced = MinuteBar(10.0, 11.0, 9.0, 10.5, 100.0, 4, 10.2, price_basis=2)
    volume_only = MinuteBar(9.0, 9.0, 9.0, 9.0, 5.0, 1, 9.1, price_basis=0)
    assert compare("A", M0, priced, None).result == ONLY_OURS
    assert compare("A", M0, volume_only, None).result == ONLY_OURS_NO_PRICE
    check = compare("A", M0, None, priced)
    assert check.result == ONLY_VENDOR and check.agrees("open") is None


def _feed(mc: MinuteCheck, minute: int, symbol: str = "AAPL") -> MinuteBar:
    start = M0 + minute * NS_PER_MIN
    for k in range(3):
        mc.add_second(symbol, _second(start + k * NS, 10.0, 10.0, 10.0, 10.0, 1.0, 10.0, 1))
    return MinuteBar(10.0, 10.0, 10.0, 10.0, 3.0, 3, 10.0)


def test_a_minute_is_checked_only_after_a_later_final_bar_of_its_symbol_and_the_vendor_bar():
    mc = MinuteCheck()
    vendor = _feed(mc, 0)
    assert mc.ready(0) == []  # ours may still grow
    mc.add_vendor("AAPL", M0, vendor, updated=False)
    assert mc.ready(0) == []
    mc.add_second("MSFT", _second(M0 + NS_PER_MIN, 1, 1, 1, 1, 1, 1, 1))  # another symbol
    assert mc.ready(0) == []
    mc.add_second("AAPL", _second(M0 + NS_PER_MIN, 1, 1, 1, 1, 1, 1, 1))
    (check,) = mc.ready(0)
    assert (check.symbol, check.minute_ns, check.result) == ("AAPL", M0, AGREE)
    assert mc.ready(0) == []  # once


def test_the_watermark_completes_quiet_symbols_and_vendor_only_minutes():
    mc = MinuteCheck()
    vendor = _feed(mc, 0)
    mc.add_vendor("AAPL", M0, vendor, updated=False)
    mc.add_vendor("MSFT", M0, vendor, updated=False)
    mc.set_watermark(M0 + NS_PER_MIN - 1)
    assert mc.ready(0) == []
    mc.set_watermark(M0 + NS_PER_MIN)
    got = {c.symbol: c.result for c in mc.ready(0)}
    assert got == {"AAPL": AGREE, "MSFT": ONLY_VENDOR}


def test_our_minute_without_a_vendor_bar_waits_for_a_later_vendor_minute_or_the_wait():
    mc = MinuteCheck(vendor_wait_ns=10 * NS)
    _feed(mc, 0)
    mc.set_watermark(M0 + NS_PER_MIN)
    assert mc.ready(0) == []
    assert [c.result for c in mc.ready(10 * NS)] == [ONLY_OURS]
    mc2 = MinuteCheck()
    _feed(mc2, 0)
    mc2.set_watermark(M0 + NS_PER_MIN)
    assert mc2.ready(0) == []
    mc2.add_vendor("MSFT", M0 + NS_PER_MIN, MinuteBar(1, 1, 1, 1, 1, 1, 1), updated=False)
    assert [c.result for c in mc2.ready(0)] == [ONLY_OURS]


def test_an_updated_bar_replaces_the_bar_and_re_checks_a_checked_minute():
    mc = MinuteCheck()
    vendor = _feed(mc, 0)
    wrong = MinuteBar(10.0, 10.5, 10.0, 10.0, 3.0, 3, 10.0)
    mc.add_vendor("AAPL", M0, wrong, updated=False)
    mc.set_watermark(M0 + NS_PER_MIN)
    (first,) = mc.ready(0)
    assert first.result == DISAGREE and first.disagreements == ("high",)
    mc.add_vendor("AAPL", M0, vendor, updated=True)
    (again,) = mc.ready(0)
    assert (again.result, again.revision) == (AGREE, 1)
    mc.add_vendor("AAPL", M0, wrong, updated=False)  # a plain bar never beats an update
    assert mc.ready(0) == []


def test_a_disagreement_near_a_late_trade_of_the_symbol_is_late_trades_not_disagree():
    wrong = MinuteBar(10.0, 10.5, 10.0, 10.0, 3.0, 3, 10.0)

    def checked(late_at: int | None, symbol: str = "AAPL") -> str:
        mc = MinuteCheck()
        _feed(mc, 0)
        if late_at is not None:
            mc.note_late(symbol, late_at)
        mc.add_vendor("AAPL", M0, wrong, updated=False)
        mc.set_watermark(M0 + NS_PER_MIN)
        (check,) = mc.ready(0)
        assert check.disagreements == ("high",)
        return check.result

    assert checked(None) == DISAGREE
    assert checked(M0 + NS_PER_MIN + 5 * NS) == LATE_TRADES  # counted just after the minute
    assert checked(M0 + 11 * NS_PER_MIN) == LATE_TRADES  # the window's far end
    assert checked(M0 + 11 * NS_PER_MIN + 1) == DISAGREE  # later: not one of this minute's
    assert checked(M0 - 1) == DISAGREE  # before the minute began
    assert checked(M0 + 5 * NS, symbol="MSFT") == DISAGREE  # another symbol's


def test_minutes_before_the_floor_are_never_checked():
    mc = MinuteCheck(floor_ns=M0 + NS_PER_MIN)
    _feed(mc, 0)
    vendor = _feed(mc, 1)
    mc.add_vendor("AAPL", M0, vendor, updated=False)
    mc.add_vendor("AAPL", M0 + NS_PER_MIN, vendor, updated=False)
    mc.set_watermark(M0 + 2 * NS_PER_MIN)
    assert [(c.minute_ns, c.result) for c in mc.ready(0)] == [(M0 + NS_PER_MIN, AGREE)]


def test_the_check_record_carries_both_sides_per_field_and_nulls_for_a_missing_side():
    ours = MinuteBar(10.0, 11.0, 9.0, 10.5, 100.0, 4, 10.2, price_basis=1, seconds=7, gap=True)
    theirs = MinuteBar(10.0, 11.11, 9.0, 10.5, 100.0, 4, 10.2)
    rec = check_record(compare("AAPL", M0, ours, theirs), 123)
    assert rec["minute"] == M0 // 1000 and rec["result"] == DISAGREE
    assert rec["disagreements"] == ["high"] and rec["high_agrees"] is False
    assert (rec["ours_high"], rec["theirs_high"], rec["open_agrees"]) == (11.0, 11.11, True)
    assert (rec["price_basis"], rec["seconds"], rec["gap"], rec["check_ts"]) == (1, 7, True, 123)
    only = check_record(compare("AAPL", M0, None, theirs), 1)
    assert only["ours_open"] is None and only["open_agrees"] is None and only["price_basis"] is None
    import fastavro

    from shared.schemas import parsed

    fastavro.validate(rec, parsed("torghut.ta.BarCheck"), raise_errors=True)
    fastavro.validate(only, parsed("torghut.ta.BarCheck"), raise_errors=True)


def test_settings_refuse_a_misspelt_variable_and_the_cli_flags_override_the_environment(
    monkeypatch,
):
    import argparse

    from pydantic import ValidationError

    from torghut.barcheck.cli import add_arguments, settings_from
    from torghut.barcheck.settings import BarCheckSettings

    monkeypatch.setenv("TORGHUT_CHECK_VENDOR_WAIT", "5")
    with pytest.raises(ValidationError, match="did you mean TORGHUT_CHECK_VENDOR_WAIT_S"):
        BarCheckSettings()
    monkeypatch.delenv("TORGHUT_CHECK_VENDOR_WAIT")
    monkeypatch.setenv("TORGHUT_CHECK_REGISTRY_URL", "http://registry:8081")
    monkeypatch.setenv("TORGHUT_CHECK_TA_SUBTASKS", "4")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    s = settings_from(parser.parse_args(["--ta-subtasks", "2", "--no-produce"]))
    assert (s.registry_url, s.ta_subtasks, s.produce, s.from_beginning) == (
        "http://registry:8081",
        2,
        False,
        False,
    )
