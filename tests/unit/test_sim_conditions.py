"""The simulator's sale conditions: a consolidated tape's mix in the regular session, Form T
outside it (the NYSE calendar), and off-market prints priced away from the market."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.sale_conditions import CTA, UTP
from torghut.sim.config import SyntheticConfig
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.timestamps import NS_PER_S

SESSION = 1_796_655_600 * NS_PER_S  # Monday 2026-12-07 15:00 UTC, 10:00 New York
EVENING = 1_796_680_800 * NS_PER_S  # the same day 22:00 UTC, 17:00 New York: after hours
CHRISTMAS = 1_798_210_800 * NS_PER_S  # Friday 2026-12-25 15:00 UTC: a weekday holiday
CONFIG = SyntheticConfig(
    symbols=("AAPL", "SPY"),  # tape C and tape B
    trades_per_sec=400,
    quotes_per_sec=0,
    late_rate=0.0,
    out_of_order_rate=0.0,
    correction_rate=0.0,
    cancel_error_rate=0.0,
)


def trades(start: int, seconds: int = 30, config: SyntheticConfig = CONFIG) -> list[dict]:
    market = SyntheticMarket(config, start, seed=7)
    return [m for m in market.advance(start + seconds * NS_PER_S) if m["T"] == "t"]


def test_the_regular_session_has_a_tapes_mix_and_every_code_is_in_its_tapes_table() -> None:
    ts = trades(SESSION)
    assert len(ts) > 20_000
    share = Counter("I" in t["c"] for t in ts)[True] / len(ts)
    assert 0.40 < share < 0.50  # odd lots: about half the prints
    codes = Counter(c for t in ts for c in t["c"])
    for rare in ("Z", "4", "P", "7", "X"):  # present, and rare
        assert 0 < codes[rare] < 0.02 * len(ts), rare
    assert "T" not in codes
    for t in ts:
        table = UTP if t["z"] == "C" else CTA
        assert all(c in table for c in t["c"]), t
    # the average-price code is each tape's own: W on UTP (tape C), B on CTA (tape B)
    assert {t["z"] for t in ts if "W" in t["c"]} == {"C"}
    assert {t["z"] for t in ts if t["c"] == ["B"]} == {"B"}


def test_average_price_prints_are_away_from_the_market() -> None:
    last = None
    distances = []
    for t in trades(SESSION):
        if t["S"] != "AAPL":
            continue
        if t["c"] == ["@"]:
            last = t["p"]
        elif t["c"] == ["W"] and last is not None:
            distances.append(abs(t["p"] / last - 1.0))
    assert distances and min(distances) > 0.008  # 1 % from the market, give or take a tick


def test_outside_the_session_and_on_a_holiday_every_print_is_form_t() -> None:
    for start in (EVENING, CHRISTMAS):
        ts = trades(start, seconds=5)
        assert ts and all("T" in t["c"] or "U" in t["c"] for t in ts)


def test_regular_only_is_a_setting() -> None:
    ts = trades(EVENING, seconds=5, config=CONFIG.model_copy(update={"sale_conditions": "regular"}))
    assert ts and all(t["c"] == ["@"] for t in ts)


def test_the_minute_bars_follow_the_conditions_and_one_can_be_corrupted() -> None:
    config = CONFIG.model_copy(update={"symbols": ("AAPL",), "corrupt_minute_bar": "AAPL@2"})
    market = SyntheticMarket(config, SESSION, seed=7)
    msgs = market.advance(SESSION + 200 * NS_PER_S)
    trades = [m for m in msgs if m["T"] == "t"]
    bars = [m for m in msgs if m["T"] == "b"]
    assert len(bars) >= 3
    for i, bar in enumerate(bars):
        minute = [t for t in trades if bar["t"] <= t["t"] < bar["t"] + 60 * NS_PER_S]
        priced = [t["p"] for t in minute if t["c"] in (["@"], ["@", "F"], ["@", "X"])]
        high = max(
            priced + [t["p"] for t in minute if "Z" in t["c"] or "4" in t["c"] or "P" in t["c"]]
        )
        # odd lots, average-price, cash and the other volume-only prints never set the high
        assert bar["h"] == (pytest.approx(high * 1.01, rel=1e-9) if i == 1 else high), i
        assert bar["v"] == sum(t["s"] for t in minute if t["c"] not in (["M"], ["Q"]))


def test_a_bad_corruption_spec_is_refused_with_what_to_give() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="SYMBOL@N"):
        CONFIG.model_copy(update={"corrupt_minute_bar": "AAPL"}).model_validate(
            {**CONFIG.model_dump(), "corrupt_minute_bar": "AAPL"}
        )
