"""The minute check drill with a mix of sale conditions on the real stack: the job's
condition-aware 1 s bars and the simulator's minute bars (two implementations of one rule,
docs/design.md "Condition-aware bars") must agree field for field on every minute.

A module (and stack) of its own: the regular-sale drill's records move the raw partitions'
event-time marks past the minutes this one writes.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.support.minute_check import produce_vendor_bars, run_checks
from tests.support.ta_job import EnvelopeProducer
from torghut.barcheck.logic import AGREE, NS_PER_MIN, ONLY_OURS_NO_PRICE
from torghut.sim.bars import MinuteBarBuilder

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MINUTES = 3
S = 1_000_000_000


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    return fresh_stack


def _trade(
    prod: EnvelopeProducer,
    sym: str,
    ts: int,
    price: float,
    size: float,
    tid: int,
    conditions: list[str],
) -> None:
    """A tape C trade with these sale conditions, as the forwarder writes it."""
    payload = {
        "id": tid,
        "exchange": "V",
        "price": price,
        "size": size,
        "conditions": conditions,
        "tape": "C",
    }
    env = prod._envelope("trades", sym, ts, payload, f"{sym}-{tid}")
    prod._produce(prod.trades_topic, prod.trades.encode(env), sym, ts)


# mostly regular sales; odd lots and volume-only codes, high/low-only codes (out of
# sequence, derivatively priced), an official close that updates nothing, Form T
MIX = [["@"]] * 8 + [["@", "I"], ["I"], ["Z"], ["4"], ["@", "F"], ["M"], ["T"], ["W"]]


def test_with_sale_conditions_every_minute_agrees_and_an_odd_lot_minute_is_only_ours_no_price(
    stack, unique, tmp_path
):
    rng = random.Random(12)
    busy, odd = unique("MCC").upper(), unique("MCD").upper()
    t0 = (time.time_ns() // NS_PER_MIN - MINUTES - 2) * NS_PER_MIN
    vendor = MinuteBarBuilder(daily_bars=False)
    prod = EnvelopeProducer(stack)
    price = {busy: 80.0, odd: 40.0}
    tid = 0

    def send(sym: str, ts: int, conditions: list[str]) -> None:
        nonlocal tid
        price[sym] = round(price[sym] * (1 + rng.gauss(0, 0.0005)), 2)
        size = float(rng.randint(1, 300))
        tid += 1
        _trade(prod, sym, ts, price[sym], size, tid, conditions)
        vendor.add_trade(sym, ts, price[sym], size, conditions, "C")

    for sym in (busy, odd):  # a priced first bar: a volume-only one would have no close to carry
        send(sym, t0, ["@"])
    for sec in range(MINUTES * 60):
        for _ in range(3):
            send(busy, t0 + sec * S + rng.randrange(1, S), rng.choice(MIX))
        # the odd symbol's second minute holds odd lots only: no vendor bar for it
        if sec % 5 == 0:
            one_min = t0 + NS_PER_MIN <= t0 + sec * S < t0 + 2 * NS_PER_MIN
            send(odd, t0 + sec * S + rng.randrange(1, S), ["I"] if one_min else ["@"])
    prod.trade(busy, t0 + MINUTES * NS_PER_MIN + S, price[busy], 1.0, tid + 1)
    prod.heartbeat(t0 + MINUTES * NS_PER_MIN + 10 * S)
    prod.flush()
    sent = vendor.close_until(t0 + MINUTES * NS_PER_MIN)
    assert {(m["S"], (m["t"] - t0) // NS_PER_MIN) for m in sent} == {
        (busy, 0),
        (busy, 1),
        (busy, 2),
        (odd, 0),
        (odd, 2),
    }
    produce_vendor_bars(stack, sent)

    checks = run_checks(stack, unique, tmp_path, {busy, odd}, 2 * MINUTES)
    got = {(c.symbol, (c.minute_ns - t0) // NS_PER_MIN): c for c in checks}
    results = {k: (c.result, c.disagreements) for k, c in got.items()}
    assert results == {
        **{(busy, m): (AGREE, ()) for m in range(MINUTES)},
        (odd, 0): (AGREE, ()),
        (odd, 1): (ONLY_OURS_NO_PRICE, ()),
        (odd, 2): (AGREE, ()),
    }
    assert got[(odd, 1)].ours.price_basis == 0 and got[(odd, 1)].ours.volume > 0
    assert {got[(busy, m)].ours.price_basis for m in range(MINUTES)} == {2}
