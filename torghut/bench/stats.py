"""Distributions of latencies: percentiles, the summary the report prints, worst seconds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank on the sorted values); NaN of no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


@dataclass(frozen=True)
class Dist:
    """p50/p90/p99/max/mean of ``n`` values; the statistics are None when there are none."""

    n: int
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    mean: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Dist:
        if not values:
            return cls(0)
        return cls(
            n=len(values),
            p50=pct(values, 50),
            p90=pct(values, 90),
            p99=pct(values, 99),
            max=max(values),
            mean=statistics.fmean(values),
        )

    def get(self, key: str) -> float:
        """A statistic by name, NaN when there are no values."""
        v = getattr(self, key)
        return float("nan") if v is None else v

    def to_json(self) -> dict[str, Any]:
        if not self.n:
            return {"n": 0}
        return {
            "n": self.n,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


def worst_seconds(at_s: list[float], lat_ms: list[float], n: int = 5) -> list[dict[str, float]]:
    """The ``n`` one-second windows of the measurement with the highest latency: when the
    tail happens (periodic, e.g. with checkpoints, or a burst) says more than its size."""
    per: dict[int, list[float]] = {}
    for t, v in zip(at_s, lat_ms, strict=True):
        per.setdefault(int(t), []).append(v)
    worst = sorted(per.items(), key=lambda kv: max(kv[1]), reverse=True)[:n]
    return [
        {"second": float(s), "max_ms": max(v), "p50_ms": pct(v, 50), "n": float(len(v))}
        for s, v in sorted(worst)
    ]


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN unless the denominator is positive."""
    return numerator / denominator if denominator > 0 else float("nan")
