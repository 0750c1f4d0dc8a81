"""The canary's bookkeeping (torghut/canary/book.py) and settings: lag and idle time by
their definitions in docs/design.md ("The canary"), bounded labels, typed errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from torghut.canary.book import CanaryBook
from torghut.canary.settings import CanarySettings

S = 1_000_000_000


def test_lag_is_newest_trade_minus_newest_derived_output_and_counts_from_the_first_trade() -> None:
    book = CanaryBook(frozenset({"AAPL"}), started_ns=0)
    assert book.times["AAPL"].lag_ns() is None  # no trade yet
    book.on_raw("trades", "AAPL", 100 * S, now_ns=1 * S)
    book.on_raw("trades", "AAPL", 104 * S, now_ns=2 * S)
    assert book.times["AAPL"].lag_ns() == 4 * S  # no output yet: behind since the first trade
    book.on_derived("AAPL", 103 * S)
    assert book.times["AAPL"].lag_ns() == 1 * S
    book.on_derived("AAPL", 105 * S)  # output newer than the newest trade read: 0, not negative
    assert book.times["AAPL"].lag_ns() == 0
    book.on_final("AAPL", 101 * S)
    assert book.times["AAPL"].final_lag_ns() == 3 * S
    assert book.max_lag_s() == 0


def test_quotes_move_the_last_event_but_not_the_lag() -> None:
    book = CanaryBook(frozenset({"AAPL"}), started_ns=0)
    book.on_raw("trades", "AAPL", 100 * S, now_ns=0)
    book.on_raw("quotes", "AAPL", 150 * S, now_ns=0)
    assert book.times["AAPL"].last_event_ns == 150 * S
    assert book.times["AAPL"].lag_ns() == 0


def test_input_idle_is_wall_time_since_the_newest_raw_event_moved() -> None:
    book = CanaryBook(frozenset({"AAPL"}), started_ns=10 * S)
    assert book.input_idle_s(15 * S) == 5  # nothing read since the start
    book.on_raw("trades", "AAPL", 100 * S, now_ns=20 * S)
    book.on_raw("trades", "AAPL", 90 * S, now_ns=30 * S)  # older: the input did not move
    assert book.input_idle_s(32 * S) == 12


def test_other_symbols_are_one_aggregate_never_a_row() -> None:
    book = CanaryBook(frozenset({"AAPL"}), started_ns=0)
    assert not book.on_raw("trades", "ZZZZ", 100 * S, now_ns=0)
    assert not book.on_derived("ZZZZ", 100 * S)
    assert not book.on_final("ZZZZ", 100 * S)
    assert book.other_records == 3 and set(book.times) == {"AAPL"}
    assert book.newest_raw_ns == 0


def test_settings_take_the_forwarders_comma_list() -> None:
    s = CanarySettings(symbols="AAPL, MSFT")
    assert s.symbols == ("AAPL", "MSFT") and s.calendar == "XNYS"


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"symbols": "*"}, "symbols '*'"),
        ({"symbols": ""}, "symbols must not be empty"),
        ({"symbols": "AAPL", "calendar": "NYSE-ish"}, "not an exchange_calendars name"),
        ({"symbols": "AAPL", "lag_threshold_s": 0}, "lag_threshold_s"),
    ],
)
def test_bad_settings_are_errors_naming_the_input(values, says) -> None:
    with pytest.raises(ValidationError, match=says):
        CanarySettings(**values)


def test_an_unknown_canary_variable_is_an_error_naming_the_nearest(monkeypatch) -> None:
    monkeypatch.setenv("TORGHUT_CANARY_SYMBOL", "AAPL")
    with pytest.raises(ValueError, match="TORGHUT_CANARY_SYMBOLS"):
        CanarySettings(symbols="AAPL")


def test_canary_help_names_every_metric(capsys) -> None:
    from torghut.cli import main

    with pytest.raises(SystemExit):
        main(["canary", "--help"])
    out = capsys.readouterr().out
    for name in (
        "torghut_symbol_last_event_timestamp_seconds",
        "torghut_canary_lag_seconds",
        "torghut_canary_input_stalled",
        "torghut_market_session_open",
    ):
        assert name in out


def test_canary_without_symbols_exits_2_saying_where_they_come_from(capsys, monkeypatch) -> None:
    from torghut.cli import main

    monkeypatch.delenv("TORGHUT_CANARY_SYMBOLS", raising=False)
    assert main(["canary", "--http-port", "0"]) == 2
    err = capsys.readouterr().err
    assert "symbols" in err and "TORGHUT_CANARY_SYMBOLS" in err
