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


def backlog_span_ns(symbols: list[str], trades: int) -> int:
    """Event time the backlog of ``trades`` spans."""
    return trades * (NS_PER_S // (25 * len(symbols)))
