"""The tests' bar oracle (tests/support/bar_oracle.py) against hand-computed examples of
docs/design.md ("Condition-aware bars") and against a brute-force restatement of the rules.

Each example's expected numbers are worked out from the contract and the tape's table
(shared/sale_conditions.py), not from any code; a regular sale here is `@`.
"""

from __future__ import annotations

import math
from datetime import datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import sale_conditions as table
from tests.support.bar_oracle import (
    MINUTE,
    NEW_YORK,
    OracleBar,
    bucket_start,
    in_regular_session,
    oracle_bars,
    oracle_minute_bars,
    trade_flags,
)

S = 1_000_000_000
T0 = 1_796_394_600 * S  # 2026-12-04 14:30 UTC, a whole minute
MS = 1_000_000
#: every code of both tables, codes of neither, and blanks
CODES = [*sorted(set(table.CTA) | set(table.UTP)), "J", "&", " ", ""]


def t(ms: int, price: float, size: float, *conds: str, tape: str = "A", sym: str = "X") -> tuple:
    """A trade `ms` milliseconds after T0."""
    return (sym, T0 + ms * MS, price, size, tape, conds)


def one(trades: list[tuple], **kw: object) -> OracleBar:
    (bar,) = oracle_bars(trades, S, **kw)  # type: ignore[arg-type]
    return bar


def ohlc(b: OracleBar) -> tuple[float, float, float, float]:
    return (b.open, b.high, b.low, b.close)


# ----------------------------------------------------------------------- flags and buckets


def test_flags_are_the_and_of_the_tables_bits_over_the_conditions() -> None:
    hl, last, vol = table.HIGH_LOW, table.LAST, table.VOLUME
    assert trade_flags("A", ()) == hl | last | vol  # no conditions: a regular sale
    assert trade_flags("A", ("@",)) == hl | last | vol
    assert trade_flags("A", (" ",)) == hl | last | vol  # CTA's blank regular sale
    assert trade_flags("A", ("I",)) == vol  # odd lot
    assert trade_flags("A", ("Z",)) == hl | vol
    assert trade_flags("A", ("9",)) == hl | last  # corrected close: no volume
    assert trade_flags("A", ("M",)) == trade_flags("C", ("Q",)) == 0
    assert trade_flags("A", ("@", "F", "I")) == vol  # ISO odd lot
    assert trade_flags("A", ("Z", "I")) == vol
    assert trade_flags("A", ("9", "I")) == 0  # hl|last AND volume: nothing
    assert trade_flags("A", ("P", "9")) == hl  # high/low only, no volume
    assert trade_flags("A", ("J",)) == hl | last | vol  # not in CTA's table
    assert trade_flags("A", ("J", "I")) == vol  # the unknown code takes nothing away
    assert trade_flags("C", ("E",)) == hl | last | vol  # E is CTA's, unknown on tape C
    # tape: C takes UTP's table, every other tape (and none) CTA's
    assert trade_flags("C", ("B",)) == hl | last | vol  # UTP: Bunched Trade
    assert trade_flags("A", ("B",)) == trade_flags("B", ("B",)) == vol  # CTA: Average Price
    assert trade_flags("", ("B",)) == trade_flags("N", ("B",)) == vol
    assert trade_flags("C", ("G",)) == hl | vol  # UTP: Bunched Sold
    assert trade_flags("A", ("G",)) == hl | last | vol  # unknown to CTA
    assert trade_flags("C", ("W",)) == vol and trade_flags("A", ("W",)) == hl | last | vol


def ny(y: int, mo: int, d: int, h: int, mi: int = 0, sec: int = 0) -> int:
    """Epoch ns of a New York wall-clock time."""
    return int(datetime(y, mo, d, h, mi, sec, tzinfo=NEW_YORK).timestamp()) * S


#: instants on both sides of the NYSE regular session's edges (2026: a Friday, a Saturday,
#: Christmas, the early close after Thanksgiving at 13:00)
INSTANTS = {
    ny(2026, 12, 4, 9, 29, 59): False,
    ny(2026, 12, 4, 9, 30): True,
    ny(2026, 12, 4, 15, 59, 59): True,
    ny(2026, 12, 4, 16, 0): False,
    ny(2026, 12, 4, 20, 0): False,
    ny(2026, 12, 5, 12, 0): False,
    ny(2026, 12, 25, 12, 0): False,
    ny(2026, 11, 27, 12, 59, 59): True,
    ny(2026, 11, 27, 13, 0): False,
    ny(2026, 7, 6, 9, 30): True,  # daylight saving time
    ny(2026, 7, 6, 9, 29, 59): False,
}


def test_the_regular_session_is_the_nyse_calendars() -> None:
    assert {ts: in_regular_session(ts) for ts in INSTANTS} == INSTANTS


def test_form_t_prices_a_bar_only_outside_the_regular_session() -> None:
    hl, last, vol = table.HIGH_LOW, table.LAST, table.VOLUME
    inside, outside = ny(2026, 12, 4, 10, 0), ny(2026, 12, 4, 18, 0)
    assert trade_flags("C", ("T",)) == vol  # the table alone
    assert trade_flags("C", ("T",), inside) == vol
    assert trade_flags("C", ("T",), outside) == hl | last | vol
    assert trade_flags("A", ("@", "T"), outside) == hl | last | vol
    assert trade_flags("A", ("T", "I"), outside) == vol  # an odd lot stays one
    assert trade_flags("A", ("T", "Z"), outside) == hl | vol
    assert trade_flags("A", ("U",), outside) == vol  # only T: U stays volume only

    def bars_at(t0: int) -> list[OracleBar]:
        return oracle_bars(
            [
                ("X", t0, 10.0, 100.0, "C", ("@",)),
                ("X", t0 + S + 1, 10.4, 50.0, "C", ("T",)),
                ("X", t0 + S + 2, 10.2, 50.0, "C", ("T",)),
                ("X", t0 + S + 3, 99.0, 5.0, "C", ("T", "I")),
            ],
            S,
        )

    after_hours = bars_at(outside)[1]
    assert (after_hours.price_basis, *ohlc(after_hours)) == (2, 10.4, 10.4, 10.2, 10.2)
    assert (after_hours.volume, after_hours.trade_count) == (105.0, 3)
    in_session = bars_at(inside)[1]  # late reports of extended-hours trades: volume only
    assert (in_session.price_basis, *ohlc(in_session)) == (0, *(10.0,) * 4)
    assert (in_session.volume, in_session.trade_count) == (105.0, 3)


@settings(max_examples=300, deadline=None)
@given(
    tape=st.sampled_from(["", "A", "B", "C", "N"]),
    conds=st.lists(st.sampled_from(CODES), max_size=4).map(tuple),
    ts=st.sampled_from(sorted(INSTANTS)),
)
def test_the_flags_read_the_table_as_its_own_module_does(tape, conds, ts) -> None:
    """The oracle's AND over the table (and its Form T rule) equals the table module's own
    reading, which the job uses: `resolve(trade_updates(...), event time)`."""
    assert trade_flags(tape, conds, ts) == table.resolve(table.trade_updates(tape, conds), ts)


def test_bucket_start_floors_also_below_zero() -> None:
    assert bucket_start(T0 + 999_999_999, S) == T0
    assert bucket_start(T0 + S, S) == T0 + S
    assert bucket_start(0, S) == 0
    assert bucket_start(-1, S) == -S
    assert bucket_start(-S, S) == -S
    assert bucket_start(-S - 1, S) == -2 * S
    assert bucket_start(T0 + 61 * S, MINUTE) == T0 + MINUTE
    with pytest.raises(ValueError):
        bucket_start(5, 0)


def test_negative_event_times_land_in_their_floored_second() -> None:
    bars = oracle_bars([("X", -1, 10.0, 1.0), ("X", -S, 11.0, 1.0), ("X", 0, 12.0, 1.0)], S)
    assert [(b.start_ns, b.end_ns, b.open, b.close, b.trade_count) for b in bars] == [
        (-S, 0, 11.0, 10.0, 2),
        (0, S, 12.0, 12.0, 1),
    ]


# ------------------------------------------------------------------------ regular trades


def test_regular_trades_make_event_time_ohlc_arrival_order_ties_and_the_plain_vwap() -> None:
    bar = one(
        [
            t(500, 10.0, 100.0, "@"),
            t(100, 10.2, 50.0, "@"),  # arrives second, earliest: the open
            t(900, 9.9, 10.0, "@"),
            t(900, 10.1, 20.0, "@"),  # same time, arrives later: the close
            t(300, 10.4, 1.0),  # no conditions: regular
        ]
    )
    assert (bar.symbol, bar.start_ns, bar.end_ns) == ("X", T0, T0 + S)
    assert ohlc(bar) == (10.2, 10.4, 9.9, 10.1)
    assert (bar.volume, bar.trade_count, bar.price_basis) == (181.0, 5, 2)
    pv = 10.0 * 100.0 + 10.2 * 50.0 + 9.9 * 10.0 + 10.1 * 20.0 + 10.4 * 1.0  # arrival order
    assert bar.vwap == pv / 181.0


def test_the_old_four_tuples_are_regular_sales() -> None:
    old = oracle_bars([("X", T0 + 5, 10.0, 2.0), ("X", T0 + 7, 11.0, 1.0)], S)
    new = oracle_bars([t(0, 10.0, 2.0, "@"), t(0, 11.0, 1.0, "@")], S)
    assert [ohlc(b) for b in old] == [(10.0, 11.0, 10.0, 11.0)]
    assert (old[0].volume, old[0].trade_count, old[0].price_basis) == (3.0, 2, 2)
    assert old[0].vwap == new[0].vwap == (10.0 * 2.0 + 11.0) / 3.0


def test_bars_come_sorted_by_symbol_then_start_each_symbol_on_its_own() -> None:
    bars = oracle_bars(
        [t(1500, 5.0, 1.0, sym="B"), t(200, 7.0, 1.0, sym="A"), t(100, 6.0, 2.0, sym="B")], S
    )
    assert [(b.symbol, b.start_ns - T0, b.close) for b in bars] == [
        ("A", 0, 7.0),
        ("B", 0, 6.0),
        ("B", S, 5.0),
    ]


# ------------------------------------------------------------------------ the conditions


def test_an_odd_lot_counts_in_volume_and_vwap_but_never_moves_a_price() -> None:
    bar = one(
        [
            t(0, 10.00, 100.0, "I"),  # earliest trade: an odd lot, not the open
            t(100, 10.00, 100.0, "@"),
            t(200, 10.50, 10.0, "@", "I"),  # the highest price: an odd lot, not the high
            t(300, 9.00, 5.0, "I"),  # the lowest: not the low
            t(400, 10.10, 100.0, "@"),
            t(900, 11.0, 1.0, "I"),  # latest: not the close
        ]
    )
    assert ohlc(bar) == (10.0, 10.1, 10.0, 10.1)
    assert bar.volume == 316.0 and bar.trade_count == 6 and bar.price_basis == 2
    assert bar.vwap == pytest.approx((1000 + 1000 + 105 + 45 + 1010 + 11) / 316, rel=1e-15)


def test_an_average_price_print_far_away_is_volume_only_and_pulls_vwap_outside_the_range() -> None:
    bar = one([t(0, 10.0, 100.0, "@"), t(10, 20.0, 1000.0, "B"), t(20, 10.1, 100.0, "@")])
    assert ohlc(bar) == (10.0, 10.1, 10.0, 10.1)  # the print at 20 sets no high
    assert bar.volume == 1200.0 and bar.trade_count == 3
    assert bar.vwap == pytest.approx((1000 + 20000 + 1010) / 1200, rel=1e-15)  # 18.34 > high
    assert bar.vwap > bar.high
    # UTP's average price is W: the same on tape C
    c = one([t(0, 10.0, 100.0, "@", tape="C"), t(10, 20.0, 1000.0, "W", tape="C")])
    assert ohlc(c) == (10.0, 10.0, 10.0, 10.0) and c.volume == 1100.0


def test_official_open_and_close_are_in_no_bar() -> None:
    assert oracle_bars([t(0, 10.0, 500.0, "M"), t(10, 10.5, 500.0, "Q", tape="C")], S) == []
    bar = one([t(0, 10.0, 100.0, "@"), t(500, 50.0, 1e6, "M"), t(600, 1.0, 1e6, "Q")])
    assert ohlc(bar) == (10.0, 10.0, 10.0, 10.0)
    assert (bar.volume, bar.trade_count, bar.vwap) == (100.0, 1, 10.0)
    # nor is a trade whose conditions together allow nothing (corrected close x odd lot)
    assert oracle_bars([t(0, 10.0, 5.0, "9", "I")], S) == []


def test_out_of_sequence_z_sets_high_and_low_but_not_open_or_close_beside_a_regular_trade() -> None:
    bar = one(
        [
            t(0, 12.0, 10.0, "Z"),  # earliest, and the highest
            t(100, 10.0, 10.0, "@"),
            t(500, 10.5, 10.0, "@"),
            t(900, 9.0, 10.0, "Z"),  # latest, and the lowest
        ]
    )
    assert ohlc(bar) == (10.0, 12.0, 9.0, 10.5)
    assert (bar.volume, bar.trade_count, bar.price_basis) == (40.0, 4, 2)
    assert bar.vwap == pytest.approx(41.5 / 4, rel=1e-15)


def test_a_bar_of_only_z_trades_takes_open_and_close_from_them() -> None:
    bar = one(
        [
            t(300, 11.0, 1.0, "Z"),
            t(100, 12.0, 2.0, "Z"),  # earliest: the open
            t(700, 10.5, 3.0, "Z"),  # latest: the close
            t(800, 99.0, 4.0, "I"),  # no price
        ]
    )
    assert bar.price_basis == 1
    assert ohlc(bar) == (12.0, 12.0, 10.5, 10.5)
    assert (bar.volume, bar.trade_count) == (10.0, 4)
    assert bar.vwap == pytest.approx((11 + 24 + 31.5 + 396) / 10, rel=1e-15)
    # the other high/low-only codes rank the same: P, 4 (both tapes), G on tape C
    for code, tape in (("P", "A"), ("4", "A"), ("P", "C"), ("4", "C"), ("G", "C")):
        b = one([t(100, 12.0, 2.0, code, tape=tape), t(700, 10.5, 3.0, code, tape=tape)])
        assert (b.price_basis, *ohlc(b)) == (1, 12.0, 12.0, 10.5, 10.5), code


def test_a_corrected_close_sets_prices_without_volume() -> None:
    bar = one([t(100, 10.0, 50.0, "9")])
    assert (bar.price_basis, *ohlc(bar)) == (2, 10.0, 10.0, 10.0, 10.0)
    assert (bar.volume, bar.trade_count, bar.vwap) == (0.0, 0, 10.0)  # no volume: vwap = close
    mixed = one([t(100, 10.0, 50.0, "9"), t(200, 11.0, 5.0, "I")])
    assert ohlc(mixed) == (10.0, 10.0, 10.0, 10.0) and mixed.vwap == 11.0


def test_an_unknown_code_restricts_nothing() -> None:
    plain = one([t(0, 10.0, 1.0, "@"), t(10, 11.0, 2.0, "@")])
    odd = one([t(0, 10.0, 1.0, "J"), t(10, 11.0, 2.0, "&", "@")])
    assert (ohlc(odd), odd.volume, odd.trade_count, odd.price_basis) == (
        ohlc(plain),
        plain.volume,
        plain.trade_count,
        2,
    )
    # beside a known restriction only the known one counts
    assert ohlc(one([t(0, 10.0, 1.0, "@"), t(10, 11.0, 2.0, "J", "I")])) == (10.0,) * 4


def test_several_conditions_update_only_what_every_one_allows() -> None:
    bar = one(
        [
            t(0, 10.0, 100.0, "@", "F"),  # regular ISO: everything
            t(100, 13.0, 10.0, "F", "I"),  # ISO odd lot: volume only
            t(200, 12.0, 10.0, "Z", "F"),  # out of sequence ISO: high/low and volume
            t(300, 8.0, 10.0, "Z", "T"),  # out of sequence Form T: volume only
            t(400, 10.2, 100.0, "@", "O"),  # opening trade: everything
        ]
    )
    assert ohlc(bar) == (10.0, 12.0, 10.0, 10.2)
    assert (bar.volume, bar.trade_count) == (230.0, 5)


def test_tape_c_and_tape_a_read_the_same_codes_differently() -> None:
    """`B` is UTP's Bunched Trade (everything) on tape C, CTA's Average Price Trade (volume
    only) on tapes A and B; `G` is UTP's Bunched Sold (high/low) and no CTA code."""
    trades = [("@", 10.0), ("B", 14.0), ("G", 9.0), ("@", 10.5)]

    def on(tape: str) -> OracleBar:
        return one([t(i * 100, p, 10.0, code, tape=tape) for i, (code, p) in enumerate(trades)])

    c, a = on("C"), on("A")
    assert ohlc(c) == (10.0, 14.0, 9.0, 10.5)  # B sets the high, G the low
    assert ohlc(a) == (10.0, 10.5, 9.0, 10.5)  # B is volume only; G is unknown: regular
    assert ohlc(on("B")) == ohlc(on("")) == ohlc(a)
    assert c.volume == a.volume == 40.0 and c.vwap == a.vwap
    # a bunched trade alone on tape C opens and closes the bar; on tape A it is volume only
    assert one([t(0, 14.0, 10.0, "B", tape="C")]).price_basis == 2
    assert oracle_bars([t(0, 14.0, 10.0, "B", tape="A")], S) == []  # no earlier bar


# ----------------------------------------------------------------------- carried flat bars


def test_a_second_of_only_odd_lots_is_a_flat_bar_at_the_previous_close() -> None:
    bars = oracle_bars(
        [
            t(0, 10.0, 100.0, "@"),
            t(500, 10.2, 100.0, "@"),  # close of second 0
            t(1100, 10.6, 5.0, "I"),
            t(1200, 10.4, 15.0, "I"),
            t(2300, 10.8, 1.0, "I"),  # second 2: odd lots again
            t(3000, 10.7, 10.0, "Z"),  # second 3: high/low only
            t(4000, 11.0, 7.0, "I"),  # second 4: carries 10.7, the Z bar's close
        ],
        S,
    )
    assert [(b.start_ns - T0) // S for b in bars] == [0, 1, 2, 3, 4]
    flat = bars[1]
    assert (flat.price_basis, *ohlc(flat)) == (0, 10.2, 10.2, 10.2, 10.2)
    assert (flat.volume, flat.trade_count) == (20.0, 2)
    assert flat.vwap == pytest.approx((53 + 156) / 20, rel=1e-15)  # the odd lots' average
    assert ohlc(bars[2]) == (10.2,) * 4 and bars[2].vwap == 10.8
    assert (bars[3].price_basis, *ohlc(bars[3])) == (1, 10.7, 10.7, 10.7, 10.7)
    assert ohlc(bars[4]) == (10.7,) * 4


def test_a_flat_bar_before_the_first_priced_bar_is_dropped_unless_a_close_is_carried_in() -> None:
    trades = [t(0, 10.5, 5.0, "I"), t(1000, 10.0, 100.0, "@"), t(2000, 10.5, 5.0, "I")]
    dropped = oracle_bars(trades, S)
    assert [(b.start_ns - T0) // S for b in dropped] == [1, 2]
    assert ohlc(dropped[1]) == (10.0,) * 4
    carried = oracle_bars(trades, S, carry={"X": 9.5})
    assert [(b.price_basis, b.close) for b in carried] == [(0, 9.5), (2, 10.0), (0, 10.0)]
    assert carried[0].vwap == 10.5 and carried[0].volume == 5.0
    # a carried close is per symbol
    assert oracle_bars(trades, S, carry={"Y": 9.5}) == dropped


def test_the_carry_follows_start_order_not_arrival_order() -> None:
    bars = oracle_bars([t(1000, 10.0, 1.0, "I"), t(0, 9.0, 1.0, "@")], S)
    assert [(b.price_basis, b.close) for b in bars] == [(2, 9.0), (0, 9.0)]


# ------------------------------------------------------------------------------- the VWAP


def test_the_vwap_of_extreme_trades_is_the_exact_one_rounded_once() -> None:
    over = one([t(0, 1e308, 10.0, "@"), t(1, 100.0, 10.0, "@")])  # pv overflows
    assert over.vwap == float((Fraction(1e308) * 10 + 1000) / 20) == 1e308 / 2
    sub = 5e-324
    under = one([t(0, sub, 0.5, "@"), t(1, 3 * sub, 0.5, "@")])  # pv underflows
    assert under.vwap == float(Fraction(sub) / 2 + Fraction(3 * sub) / 2) == 2 * sub
    # pv overflows with an odd lot in it: the exact ratio of the volume trades
    big = one([t(0, 1e300, 1e10, "@"), t(1, 1.0, 1e-300, "I"), t(2, 5e307, 1.0, "M")])
    f = Fraction
    want = (f(1e300) * f(1e10) + f(1e-300)) / (f(1e10) + f(1e-300))
    assert big.vwap == float(want) and big.volume == 1e10
    normal = one([t(0, 100.01, 3.0, "@"), t(1, 99.97, 0.5, "@"), t(2, 100.02, 1e-8, "@")])
    assert normal.vwap == (100.01 * 3.0 + 99.97 * 0.5 + 100.02 * 1e-8) / (3.0 + 0.5 + 1e-8)


def test_a_bar_whose_volume_trades_have_size_zero_has_vwap_equal_to_close() -> None:
    bar = one([t(0, 10.0, 0.0, "@"), t(5, 11.0, 0.0, "@")])
    assert (bar.volume, bar.trade_count, bar.vwap) == (0.0, 2, 11.0)


# ------------------------------------------------------------------------------ roll-up


def _b(
    sec: int, basis: int, o: float, h: float, lo: float, c: float, v: float, vw: float, n: int
) -> OracleBar:
    start = T0 + sec * S
    return OracleBar("X", start, start + S, o, h, lo, c, v, vw, n, basis)


def test_a_minute_rolls_up_its_seconds_by_the_same_rules() -> None:
    seconds = [
        _b(0, 2, 10.0, 10.3, 9.9, 10.2, 100.0, 10.1, 5),
        _b(5, 1, 11.0, 11.0, 11.0, 11.0, 5.0, 11.0, 1),  # Z trades: the minute's high only
        _b(10, 0, 11.0, 11.0, 11.0, 11.0, 3.0, 10.4, 2),  # flat: no price at all
        _b(20, 2, 10.1, 10.15, 9.95, 10.0, 50.0, 10.05, 4),
        _b(30, 1, 9.5, 9.5, 9.0, 9.0, 1.0, 9.2, 2),  # later than the last basis-2 bar
        _b(65, 1, 12.0, 12.5, 11.5, 11.5, 2.0, 12.1, 2),  # next minute: Z only
        _b(130, 0, 11.5, 11.5, 11.5, 11.5, 4.0, 11.8, 3),  # third minute: flat only
    ]
    first, second, third = oracle_minute_bars(seconds)
    assert (first.start_ns, first.end_ns, first.price_basis) == (T0, T0 + MINUTE, 2)
    assert ohlc(first) == (10.0, 11.0, 9.0, 10.0)  # open/close from basis 2, range from >= 1
    assert (first.volume, first.trade_count) == (159.0, 14)
    want = (10.1 * 100 + 11.0 * 5 + 10.4 * 3 + 10.05 * 50 + 9.2 * 1) / 159
    assert first.vwap == pytest.approx(want, rel=1e-15)
    assert (second.price_basis, *ohlc(second)) == (1, 12.0, 12.5, 11.5, 11.5)
    assert (second.volume, second.trade_count) == (2.0, 2)
    # a minute of only flat seconds carries the previous minute's close (11.5 here)
    assert (third.price_basis, *ohlc(third), third.volume, third.vwap) == (
        0,
        11.5,
        11.5,
        11.5,
        11.5,
        4.0,
        11.8,
    )


def test_a_flat_minute_carries_the_previous_minutes_close_not_its_last_seconds() -> None:
    seconds = [
        _b(0, 2, 10.0, 10.0, 10.0, 10.0, 1.0, 10.0, 1),
        _b(50, 1, 12.0, 12.0, 12.0, 12.0, 1.0, 12.0, 1),  # a Z second after the last regular
        _b(70, 0, 12.0, 12.0, 12.0, 12.0, 1.0, 11.0, 1),  # its 1 s carry: 12.0
    ]
    first, flat = oracle_minute_bars(seconds)
    assert first.close == 10.0 and first.high == 12.0
    assert ohlc(flat) == (10.0,) * 4
    assert oracle_minute_bars(seconds[2:]) == []  # no previous minute: dropped
    assert oracle_minute_bars(seconds[2:], carry={"X": 9.0})[0].close == 9.0


def test_a_minute_without_volume_has_vwap_equal_to_close() -> None:
    (m,) = oracle_minute_bars([_b(3, 2, 10.0, 10.0, 10.0, 10.0, 0.0, 10.0, 0)])
    assert (m.volume, m.trade_count, m.vwap) == (0.0, 0, 10.0)


# ---------------------------------------------- the oracle against a brute-force restatement

PRICES = st.sampled_from([9.5, 10.0, 10.25, 11.0]) | st.floats(1.0, 1000.0)
SIZES = st.sampled_from([0.0, 1.0, 100.0]) | st.floats(1e-8, 1e6)  # pv stays normal

trades_st = st.lists(
    st.tuples(
        st.sampled_from(["X", "Y"]),
        # around the epoch (no session) and around 10:00 New York on a trading day
        st.tuples(st.sampled_from([0, ny(2026, 12, 4, 10)]), st.integers(-3 * S, 4 * S)).map(sum),
        PRICES,
        SIZES,
        st.sampled_from(["", "A", "B", "C"]),
        st.lists(st.sampled_from(CODES), max_size=3).map(tuple),
    ),
    max_size=40,
)


def _brute_flags(tape: str, conds: tuple[str, ...], ts: int) -> tuple[bool, bool, bool]:
    """(high/low, last, volume), each field on its own: allowed unless a known code forbids
    it; Form T forbids nothing outside the regular session."""
    rules = table.UTP if tape == "C" else table.CTA
    codes = [c.strip() or "@" for c in conds]
    known = [rules[c][1] for c in codes if c in rules and (c != "T" or in_regular_session(ts))]
    return tuple(all(bits & bit for bits in known) for bit in (1, 2, 4))  # type: ignore[return-value]


def _brute_bars(trades: list[tuple], carry: dict[str, float]) -> list[tuple]:
    """The rules restated field by field with plain scans (quadratic on purpose)."""
    out = []
    keys = sorted({(sym, ts // S * S) for sym, ts, *_ in trades})
    prev = dict(carry)
    for sym, start in keys:
        mine = []
        for arrival, (s, ts, p, size, tape, conds) in enumerate(trades):
            if s == sym and start <= ts < start + S:
                hl, last, vol = _brute_flags(tape, conds, ts)
                if hl or last or vol:
                    mine.append((ts, arrival, p, size, 2 if last else (1 if hl else 0), vol))
        if not mine:
            continue
        basis = max(m[4] for m in mine)
        vols = [m for m in mine if m[5]]
        volume = 0.0
        pv = 0.0
        for m in vols:
            volume += m[3]
            pv += m[2] * m[3]
        if basis == 0:
            if sym not in prev:
                continue
            o = h = lo = c = prev[sym]
        else:
            top = [m for m in mine if m[4] == basis]
            o = next(m[2] for m in top if all((m[0], m[1]) <= (x[0], x[1]) for x in top))
            c = next(m[2] for m in top if all((m[0], m[1]) >= (x[0], x[1]) for x in top))
            h = max(m[2] for m in mine if m[4] >= 1)
            lo = min(m[2] for m in mine if m[4] >= 1)
        vwap = pv / volume if volume > 0 else c
        out.append((sym, start, o, h, lo, c, volume, vwap, len(vols), basis))
        prev[sym] = c
    return out


@settings(max_examples=300, deadline=None)
@given(trades=trades_st, carry=st.dictionaries(st.sampled_from(["X", "Y"]), PRICES, max_size=2))
def test_the_oracle_agrees_with_a_brute_force_restatement(trades, carry) -> None:
    got = [
        (b.symbol, b.start_ns, *ohlc(b), b.volume, b.vwap, b.trade_count, b.price_basis)
        for b in oracle_bars(trades, S, carry=carry)
    ]
    assert got == _brute_bars(trades, carry)
    for b in oracle_bars(trades, S, carry=carry):
        assert b.end_ns == b.start_ns + S
        if b.price_basis:
            assert b.low <= b.open <= b.high and b.low <= b.close <= b.high


@settings(max_examples=200, deadline=None)
@given(trades=trades_st)
def test_rolling_seconds_up_equals_minute_bars_of_the_trades(trades) -> None:
    """With a close carried in for every symbol (no second is dropped), the roll-up of the
    1 s bars is the minute bar of the trades themselves: prices, basis and count exactly,
    volume and VWAP to rounding (they are summed in another grouping)."""
    carry = {"X": 10.0, "Y": 20.0}
    rolled = oracle_minute_bars(oracle_bars(trades, S, carry=carry), MINUTE, carry=carry)
    direct = oracle_bars(trades, MINUTE, carry=carry)
    assert [(b.symbol, b.start_ns, *ohlc(b), b.trade_count, b.price_basis) for b in rolled] == [
        (b.symbol, b.start_ns, *ohlc(b), b.trade_count, b.price_basis) for b in direct
    ]
    for r, d in zip(rolled, direct, strict=True):
        assert math.isclose(r.volume, d.volume, rel_tol=1e-12, abs_tol=1e-300)
        assert math.isclose(r.vwap, d.vwap, rel_tol=1e-9)


# ------------------------------------------------------- the log oracle carries conditions


def test_the_log_oracle_builds_condition_aware_bars_from_the_envelopes() -> None:
    """tests/support/oracle.py: each trade envelope's `tape` and `conditions` reach the
    bars; a payload without them (an old record) is a regular sale."""
    from tests.support.oracle import LogRecord, expected_output, trades_of_envelopes

    def env(seq: int, ms: int, price: float, size: float, **more: object) -> dict:
        ts = T0 + ms * MS
        payload = {"id": seq, "exchange": "V", "price": price, "size": size, **more}
        return {
            "ingest_ts": ts,
            "event_ts": ts,
            "channel": "trades",
            "symbol": "X",
            "seq": seq,
            "payload": payload,
            "window": None,
        }

    envs = [
        env(1, 100, 10.0, 100.0, conditions=["@"], tape="A"),
        env(2, 200, 12.0, 5.0, conditions=["@", "I"], tape="A"),  # odd lot
        env(3, 300, 14.0, 50.0, conditions=["B"], tape="A"),  # average price
        env(4, 400, 9.0, 10.0, conditions=["B"], tape="C"),  # bunched: a price
        env(5, 500, 11.0, 10.0, conditions=["M"], tape="C"),  # official close
        env(6, 600, 10.5, 10.0),  # no conditions, no tape
        env(7, 1300, 10.8, 3.0, conditions=["I"], tape="C"),  # second 1: odd lots only
        env(8, 5000, 10.0, 1.0, conditions=["@"], tape="C"),  # closes seconds 0 and 1
    ]
    log = [LogRecord("t", i, e["event_ts"] // MS, e) for i, e in enumerate(envs)]
    oracle = expected_output(log)
    first, flat = oracle.bars[("X", T0)], oracle.bars[("X", T0 + S)]
    assert ohlc(first) == (10.0, 10.5, 9.0, 10.5)
    assert (first.volume, first.trade_count, first.price_basis) == (175.0, 5, 2)
    assert (flat.price_basis, *ohlc(flat), flat.volume) == (0, *(10.5,) * 4, 3.0)
    assert flat.vwap == 10.8 * 3.0 / 3.0  # the odd lots' own average
    assert len(oracle.on_time_trades) == 8
    assert oracle.on_time_trades[1] == ("X", T0 + 200 * MS, 12.0, 5.0, "A", ("@", "I"))
    assert trades_of_envelopes(envs) == oracle.on_time_trades
