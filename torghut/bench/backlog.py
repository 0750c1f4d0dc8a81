"""The synthetic trades and quotes of the throughput backlog and of the in-process profile."""

from __future__ import annotations

import random
from collections.abc import Iterator

from torghut.bench.common import NS_PER_S

#: (kind "t"/"q", symbol, event ns, a, b, c, d): a trade is (price, size, id, 0.0), a quote
#: (bid price, ask price, bid size, ask size)
BacklogEvent = tuple[str, str, int, float, float, float, float]


def backlog_events(
    symbols: list[str], trades: int, quote_ratio: float, base_ns: int, seed: int = 11
) -> Iterator[BacklogEvent]:
    """Events in event-time order: 25 trades/s per symbol of event time, ``quote_ratio``
    quotes per trade."""
    rng = random.Random(seed)
    spacing = NS_PER_S // (25 * len(symbols))
    price = {s: 100.0 + 10 * i for i, s in enumerate(symbols)}
    quote_acc = 0.0
    for i in range(trades):
        sym = symbols[i % len(symbols)]
        ts = base_ns + i * spacing
        p = price[sym] = max(1.0, price[sym] * (1 + rng.gauss(0, 0.0004)))
        yield ("t", sym, ts, round(p, 4), float(rng.randint(1, 500)), 1_000_000 + i, 0.0)
        quote_acc += quote_ratio
        while quote_acc >= 1.0:
            quote_acc -= 1.0
            yield (
                "q",
                sym,
                ts + 1,
                round(p - 0.01, 4),
                round(p + 0.01, 4),
                float(rng.randint(1, 30) * 100),
                float(rng.randint(1, 30) * 100),
            )


#: the sale-condition mix of the peers' backlog (tape C, UTP): (every, at, conditions) on the
#: trade index; primes, so no symbol of the round-robin gets one kind only: every 11th trade
#: an odd lot (volume only), every 13th an out-of-sequence sale (high/low and volume, never
#: the close), every 17th an average-price trade (volume only), every 53rd a market
#: center's official close (in no bar); the rest regular sales. Form T is left out: it needs
#: the NYSE calendar, which the peers' venv does not have.
CONDITION_MIX: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (53, 11, ("M",)),
    (11, 3, ("@", "I")),
    (13, 7, ("Z",)),
    (17, 9, ("W",)),
)
REGULAR = ("@",)


def backlog_conditions(trade_id: int, mix: bool) -> tuple[str, ...]:
    """The conditions of the backlog's trade ``trade_id`` (``1_000_000 + i``): regular sales
    only unless ``mix`` (``CONDITION_MIX``)."""
    if mix:
        i = trade_id - 1_000_000
        for every, at, conditions in CONDITION_MIX:
            if i % every == at:
                return conditions
    return REGULAR


def backlog_span_ns(symbols: list[str], trades: int) -> int:
    """Event time the backlog of ``trades`` spans."""
    return trades * (NS_PER_S // (25 * len(symbols)))
