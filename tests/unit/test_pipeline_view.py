"""The live view of ``torghut run`` (no engines): rows from the newest signal of each symbol
with its age, final-in-ClickHouse marks, warm-up labels, the latency window that leaves out
the start-up backlog, and the run's PNG."""

from __future__ import annotations

import datetime
import math

from torghut.live_view import LATENCY_WINDOW_S, WARMUP_BARS, LiveView
from torghut.pipeline import _speed
from torghut.sources import Source, SourceError

S = 10**9
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _signal(sym: str, start_s: int, final: bool, ingest_ns: int, **values: float) -> dict:
    start = EPOCH + datetime.timedelta(seconds=start_s)
    return {
        "symbol": sym,
        "window": {"start": start, "end": start + datetime.timedelta(seconds=1)},
        "is_final": final,
        "ingest_ts": ingest_ns,
        "close": 100.0,
        "macd_signal": values.get("macd_signal"),
        "ema12": values.get("ema12"),
        "gap": False,
    }


def test_latency_summary_covers_only_the_recent_window() -> None:
    v = LiveView(started_ns=0)
    now = 1_000 * S
    # start-up signals, older than the window: slow, and must not count
    v.latencies.extend((now - int(LATENCY_WINDOW_S * S) - k * S, 2_000.0) for k in range(1, 50))
    # recent ones: 1..100 ms
    v.latencies.extend((now - k * 10**7, float(k)) for k in range(1, 101))
    p50, p99, n = v.latency_summary(now)
    assert n == 100
    assert p50 == 51.0
    assert p99 == 100.0


def test_latency_summary_without_signals_is_nan() -> None:
    p50, p99, n = LiveView(started_ns=0).latency_summary(5 * S)
    assert n == 0 and math.isnan(p50) and math.isnan(p99)


def test_the_start_up_backlog_is_not_counted_as_latency() -> None:
    v = LiveView(started_ns=0)
    # forwarded before the job's first signal was read: waited for the job to start
    v.on_signal(_signal("A", 100, False, ingest_ns=90 * S), now_ns=100 * S)
    v.on_signal(_signal("A", 100, False, ingest_ns=95 * S), now_ns=101 * S)
    v.on_signal(_signal("A", 101, False, ingest_ns=int(100.99 * S)), now_ns=101 * S)
    p50, _, n = v.latency_summary(101 * S)
    assert n == 1 and v.backlog == 2
    assert p50 == 10.0


def test_rows_show_the_newest_signal_its_age_finality_and_warm_up() -> None:
    v = LiveView(started_ns=0)
    v.on_signal(_signal("AAA", 10, True, 9 * S, macd_signal=0.1), now_ns=11 * S)
    v.on_signal(_signal("AAA", 11, False, 11 * S, macd_signal=0.2), now_ns=int(11.5 * S))
    v.on_signal(_signal("AAA", 10, False, 10 * S), now_ns=12 * S)  # older bar: not shown
    v.on_signal(_signal("BBB", 11, True, 11 * S), now_ns=12 * S)  # warming up
    screen = v.render(
        "t", final_through={"AAA": 10 * S}, final_counts={"BBB": 3}, footer=[], now_ns=12 * S
    )
    rows = {line.split()[0]: line for line in screen.splitlines()[3:5]}
    assert "00:00:11" in rows["AAA"] and " 500 " in rows["AAA"]  # bar 11 s, 500 ms old
    assert "provisional" in rows["AAA"] and "warm-up" not in rows["AAA"]
    assert "final, loading" in rows["BBB"] and f"warm-up 3/{WARMUP_BARS} bars" in rows["BBB"]
    screen = v.render("t", {"AAA": 11 * S, "BBB": 11 * S}, {"BBB": 3}, [], now_ns=12 * S)
    assert screen.count("final in ClickHouse") == 2


def test_the_run_png_is_written(tmp_path) -> None:
    v = LiveView(started_ns=0)
    for k in range(1, 6):
        v.on_signal(_signal("A", k, False, k * S), now_ns=k * S + 10**7)
        v.on_forwarded(100 * k, now_ns=k * S)
    out = v.save_png(tmp_path / "run.png", "test")
    assert out is not None and out.stat().st_size > 10_000
    assert LiveView(started_ns=0).save_png(tmp_path / "none.png", "t") is None


def test_sources_and_speeds_parse_as_documented() -> None:
    assert Source.parse(["sim"]).kind == "sim"
    assert Source.parse(["replay", "rec/"]).path is not None
    for bad in (["replay"], ["alpaca", "x"], ["kafka"], []):
        try:
            Source.parse(bad)
        except SourceError:
            continue
        raise AssertionError(f"{bad} accepted")
    assert _speed("max") == ("fast", 1.0)
    assert _speed("2.5") == ("original", 2.5)
    for bad in ("0", "-1", "fast-ish"):
        try:
            _speed(bad)
        except SourceError:
            continue
        raise AssertionError(f"--speed {bad} accepted")


def test_an_empty_view_says_it_waits_and_shows_the_hint() -> None:
    screen = LiveView(started_ns=0).render("t", {}, {}, [], now_ns=S, waiting_hint="- quiet")
    assert "(waiting for the first signal) - quiet" in screen


def test_the_canary_line_shows_each_symbols_lag_and_the_verdict_from_its_metrics() -> None:
    from prometheus_client import generate_latest

    from torghut.canary.runner import CanaryMetrics

    v = LiveView(started_ns=0)
    assert v.canary_line() == "canary (output vs raw input): no scrape yet"
    m = CanaryMetrics()
    m.lag.labels("AAA").set(0.25)
    m.final_lag.labels("AAA").set(10.5)
    m.lag.labels("BBB").set(42.0)
    m.final_lag.labels("BBB").set(50.0)
    m.input_idle.set(0.1)
    m.lagging.set(1)
    v.on_canary(generate_latest(m.registry).decode())
    line = v.canary_line()
    assert line.startswith("canary: TA LAGGING;"), line
    assert "AAA 0.2/10.5" in line and "BBB 42.0/50.0" in line and "input idle 0.1 s" in line
    m.input_stalled.set(1)
    v.on_canary(generate_latest(m.registry).decode())
    assert v.canary_line().startswith("canary: INPUT STALLED;")
