"""The live view's latency line (``torghut run``): a window of recent signals (no engines)."""

from __future__ import annotations

import argparse
import math

from torghut.pipeline import LATENCY_WINDOW_S, Pipeline

S = 10**9


def test_latency_summary_covers_only_the_recent_window() -> None:
    p = Pipeline(argparse.Namespace())
    now = 1_000 * S
    # start-up signals, older than the window: slow, and must not count
    p.latencies.extend((now - int(LATENCY_WINDOW_S * S) - k * S, 2_000.0) for k in range(1, 50))
    # recent ones: 1..100 ms
    p.latencies.extend((now - k * 10**7, float(k)) for k in range(1, 101))
    p50, p99, n = p.latency_summary(now)
    assert n == 100
    assert p50 == 51.0
    assert p99 == 100.0


def test_latency_summary_without_signals_is_nan() -> None:
    p50, p99, n = Pipeline(argparse.Namespace()).latency_summary(5 * S)
    assert n == 0 and math.isnan(p50) and math.isnan(p99)
