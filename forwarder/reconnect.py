"""``ReconnectPolicy``: capped exponential backoff with jitter (pure, seeded in tests)."""

from __future__ import annotations

import random


class ReconnectPolicy:
    """Delay before connection attempt ``attempt`` (1 = first retry).

    ``base * 2**(attempt-1)`` capped at ``cap``, with equal jitter (a delay lies in
    [d/2, d]) so a fleet of clients does not reconnect in lockstep yet never hammers.
    After 406 (another connection holds the account) the delay is at least
    ``conflict_s``: the other holder rarely goes away within seconds.
    """

    def __init__(
        self, base_s: float, cap_s: float, conflict_s: float, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError(f"need 0 < base_s <= cap_s, got {base_s}, {cap_s}")
        self.base_s, self.cap_s, self.conflict_s = base_s, cap_s, conflict_s
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        exp = min(max(attempt, 1) - 1, 62)
        return float(min(self.cap_s, self.base_s * (2.0**exp)))

    def delay(self, attempt: int, conflict: bool = False) -> float:
        d = self.ceiling(attempt)
        if conflict:
            d = max(d, self.conflict_s)
        return d / 2 + self._rng.random() * d / 2
