"""Plausibility limits of a trade or quote: the one definition the forwarder and the job share.

A price or size can be finite and positive and still absurd (a 1e308 trade once made a final
bar with `vwap = inf`). Both the forwarder (`TORGHUT_FWD_PRICE_MIN`, ...) and the job
(`TORGHUT_TA_PRICE_MIN`, ...) refuse values outside these ranges, with the same defaults
(docs/design.md, "Bad input"):

- price in [1e-6, 1e7] USD. The highest-priced US share (BRK.A) trades below 1e6 and the
  smallest US equity tick is 1e-4 (sub-penny, Reg NMS 612): both ends leave a 10..100x
  margin. Inside this range every sum, product and ratio the bar builder and the indicators
  form stays far from overflow and underflow (a price ratio is at most 1e13, a log return
  at most 30). A quote price may also be exactly 0 (an empty side).
- size in [0, 1e10] shares: the busiest US stocks trade ~1e9 shares a *day*; one trade of
  1e10 would be ten times that. Sizes are doubles (fractional crypto); a feed of tokens
  priced below 1e-6 or traded in lots above 1e10 needs both limits moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRICE_MIN = 1e-6
PRICE_MAX = 1e7
SIZE_MAX = 1e10


@dataclass(frozen=True, slots=True)
class PlausibleLimits:
    """Closed ranges: price_min <= price <= price_max, 0 <= size <= size_max."""

    price_min: float = PRICE_MIN
    price_max: float = PRICE_MAX
    size_max: float = SIZE_MAX

    def __post_init__(self) -> None:
        if not 0.0 < self.price_min < self.price_max < math.inf:
            raise ValueError(
                f"price limits [{self.price_min!r}, {self.price_max!r}] must satisfy "
                "0 < price_min < price_max < inf"
            )
        if not 0.0 < self.size_max < math.inf:
            raise ValueError(f"size_max={self.size_max!r} must be > 0 and finite")

    def price_problem(self, v: float, *, zero_ok: bool = False) -> str | None:
        """Why `v` is no plausible price (None if it is); `zero_ok`: a quote's empty side."""
        if self.price_min <= v <= self.price_max or (zero_ok and v == 0.0):
            return None
        if not (0.0 <= v < math.inf if zero_ok else 0.0 < v < math.inf):
            return "not a finite number " + (">= 0" if zero_ok else "> 0")
        return f"outside the plausible range [{self.price_min:g}, {self.price_max:g}]"

    def size_problem(self, v: float) -> str | None:
        """Why `v` is no plausible size (None if it is)."""
        if 0.0 <= v <= self.size_max:
            return None
        if not 0.0 <= v < math.inf:
            return "not a finite number >= 0"
        return f"outside the plausible range [0, {self.size_max:g}]"


DEFAULT_LIMITS = PlausibleLimits()
