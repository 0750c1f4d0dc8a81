"""Pure pieces of ``torghut bench pipeline``: percentiles, distributions, helpers."""

from __future__ import annotations

import datetime as dt
import math

from torghut.bench.common import TICKERS, end_ns, symbols_of
from torghut.bench.stats import Dist, pct, ratio


def test_pct_is_the_nearest_rank_of_the_sorted_values() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert pct(values, 0) == 1.0
    assert pct(values, 50) == 3.0
    assert pct(values, 100) == 5.0
    assert pct(values, 99) == 5.0
    assert math.isnan(pct([], 50))


def test_dist_of_values_and_of_none() -> None:
    d = Dist.of([float(v) for v in range(1, 101)])
    assert (d.n, d.p50, d.p90, d.p99, d.max, d.mean) == (100, 51.0, 90.0, 99.0, 100.0, 50.5)
    assert list(d.to_json()) == ["n", "p50", "p90", "p99", "max", "mean"]
    empty = Dist.of([])
    assert empty.to_json() == {"n": 0}
    assert empty.p99 is None
    assert math.isnan(empty.get("p99"))
    assert d.get("p99") == 99.0


def test_ratio_is_nan_unless_the_denominator_is_positive() -> None:
    assert ratio(6.0, 3.0) == 2.0
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(1.0, float("nan")))


def test_symbols_by_count_or_list() -> None:
    assert symbols_of("3") == list(TICKERS[:3])
    many = symbols_of("22")
    assert many[:20] == list(TICKERS) and many[20:] == ["S000", "S001"]
    assert symbols_of(" aapl, msft ,") == ["AAPL", "MSFT"]


def test_window_end_from_micros_or_datetime() -> None:
    assert end_ns(1_500_000) == 1_500_000_000
    t = dt.datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=dt.UTC)
    assert end_ns(t) == 1_500_000_000
