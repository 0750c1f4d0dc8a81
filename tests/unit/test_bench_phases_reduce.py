"""The reductions of ``torghut bench pipeline``'s phases: what the collectors read -> the
numbers of a ``LivePhaseResult`` / ``ThroughputPhaseResult`` (no engines, no decoding)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from torghut.bench.common import NS_PER_MS, NS_PER_S, PROBE
from torghut.bench.live import (
    Window,
    _Run,
    commit_gaps_ms,
    final_latencies,
    live_result,
    signal_latencies,
)
from torghut.bench.throughput import (
    Backlog,
    _Watch,
    busiest_threads,
    pending_before_last_status,
    records_in_rate,
    slot_shares,
    throughput_result,
    warm_statuses,
)

MS = NS_PER_MS
T0 = 1_000 * NS_PER_S  # the measurement starts here (ns)


def _decoded(rec: Any) -> Any:
    """The decoder of records that are already decoded (the tests' collectors keep dicts)."""
    return rec


def _signals() -> tuple[list[tuple[int, Any]], Any]:
    """(receive ns, record) as a collector keeps them, with identity as the decoder."""

    def sig(recv: int, sym: str = "AAPL", final: bool = False) -> tuple[int, dict[str, Any]]:
        return recv, {
            "symbol": sym,
            "is_final": final,
            "ingest_ts": recv - 10 * MS,
            "event_ts": recv - 12 * MS,
            "emit_ts": recv - 2 * MS,
        }

    items = [
        sig(T0 - 5 * NS_PER_S),  # before the warm-up: ignored
        sig(T0 - 1 * NS_PER_S),  # warm-up
        sig(T0 - 1 * NS_PER_S, PROBE),  # a probe in the warm-up: ignored
        sig(T0 + 100 * MS),
        sig(T0 + 1_500 * MS),
        sig(T0 + 1_600 * MS, PROBE),  # probe: not measured
        sig(T0 + 1_700 * MS, final=True),  # final signal: counted, not measured
        sig(T0 + 3 * NS_PER_S),  # at t1: outside
    ]
    return items, _decoded


def test_signal_latencies_split_warm_up_and_window() -> None:
    items, decode = _signals()
    s = signal_latencies(items, decode, T0 - 2 * NS_PER_S, T0, T0 + 3 * NS_PER_S)
    assert s.warmup == [10.0]
    assert s.recv_minus_ingest == [10.0, 10.0]
    assert s.recv_minus_event == [12.0, 12.0]
    assert s.emit_minus_ingest == [8.0, 8.0]
    assert s.recv_minus_emit == [2.0, 2.0]
    assert s.at_s == [0.1, 1.5]
    assert s.finals == 1


def _bar(recv: int, end: int, sym: str = "AAPL", final: bool = True) -> tuple[int, Any]:
    rec = {
        "symbol": sym,
        "is_final": final,
        "window": {"end": end // 1000},
        "emit_ts": recv - 300 * MS,
    }
    return recv, rec


def test_final_latencies_from_window_end_watermark_and_emit() -> None:
    bars = [
        _bar(T0 + 2_400 * MS, T0 + NS_PER_S),
        _bar(T0 + 2_500 * MS, T0 + NS_PER_S),  # the same bar again: counted, one distinct
        _bar(T0 + 2_400 * MS, T0 + NS_PER_S, "MSFT"),
        _bar(T0 + 2_400 * MS, T0 + NS_PER_S, final=False),  # provisional: ignored
        _bar(T0 + 2_400 * MS, T0 + NS_PER_S, PROBE),  # probe: ignored
        _bar(T0 + 9_000 * MS, T0 + 5 * NS_PER_S),  # bar ends at t1: outside
    ]
    f = final_latencies(bars, _decoded, T0, T0 + 5 * NS_PER_S, out_of_orderness_ms=1000)
    assert f.recv_minus_end == [1400.0, 1500.0, 1400.0]
    assert f.recv_minus_watermark == [400.0, 500.0, 400.0]
    assert f.recv_minus_emit == [300.0, 300.0, 300.0]
    assert f.distinct == {("AAPL", T0 + NS_PER_S), ("MSFT", T0 + NS_PER_S)}


def test_commit_gaps_between_bursts_of_the_committed_reader() -> None:
    recv = [T0, T0 + 5 * MS, T0 + 1_000 * MS, T0 + 1_100 * MS, T0 + 2_010 * MS, T0 + 9_000 * MS]
    assert commit_gaps_ms(recv, T0, T0 + 5 * NS_PER_S) == [1000.0, 1010.0]
    assert commit_gaps_ms([], T0, T0 + NS_PER_S) == []


def _args(**kw: Any) -> argparse.Namespace:
    base = {
        "rate": 1000.0,
        "duration": 3.0,
        "out_of_orderness_ms": 1000,
        "checkpoint_interval_ms": 1000,
        "throughput_checkpoint_interval_ms": None,
        "throughput_provisional_interval_ms": 200,
    }
    return argparse.Namespace(**{**base, **kw})


def test_live_result_holds_the_reduced_numbers() -> None:
    items, decode = _signals()
    window = Window(T0, T0 + 3 * NS_PER_S, 0.4, {"kafka": 0.3})
    run = _Run(
        2, T0 - 20 * NS_PER_S, T0 - 12 * NS_PER_S, T0 - 2 * NS_PER_S, 10.5, True, window, "a", "b"
    )
    bars = [_bar(T0 + 2_400 * MS, T0 + NS_PER_S)]
    res = live_result(_args(), run, items, bars, decode)
    assert res.symbols == 2 and res.final_bars_expected_about == 6
    assert res.job_launch_to_ready_s == 8.0
    assert res.provisional_signals == 2 and res.provisional_signals_per_s == 2 / 3
    assert res.live_recv_minus_ingest_ms.p99 == 10.0
    assert res.warmup_recv_minus_ingest_ms.n == 1
    assert res.final_bars == 1 and res.final_distinct == 1
    assert res.commit_interval_ms.n == 0
    assert [w["second"] for w in res.worst_seconds] == [0.0, 1.0]
    assert res.live_ms == [10.0, 10.0] and res.final_ms == [1400.0]


def _status(emit_s: float, records_in: int) -> dict[str, Any]:
    emit = int(T0 + emit_s * NS_PER_S)
    return {"recv": emit, "emit": emit, "records_in": records_in, "records_out": 0}


def test_rates_from_the_records_in_counter() -> None:
    statuses = [_status(0, 0), _status(1, 5_000), _status(2, 25_000), _status(3, 45_000)]
    assert records_in_rate(statuses) == 15_000.0
    assert records_in_rate(statuses[1:]) == 20_000.0
    assert [s["records_in"] for s in warm_statuses(statuses, 50_000)] == [25_000, 45_000]
    assert pending_before_last_status(statuses, 50_000)
    assert not pending_before_last_status(statuses, 47_000)


def test_thread_cores_and_slot_shares() -> None:
    a = (0, {"bars-signals ->": 1.0, "GC": 0.5})
    b = (2 * NS_PER_S, {"bars-signals ->": 2.5, "GC": 0.6, "new": 0.2})
    threads = busiest_threads(a, b)
    assert [name for name, _ in threads] == ["bars-signals ->", "new", "GC"]
    assert math.isclose(threads[0][1], 0.75)
    assert busiest_threads(a, None) == [] and busiest_threads(b, a) == []
    watch = _Watch(1, 100, {})
    assert all(math.isnan(v) for v in slot_shares(watch))
    watch.threads_a, watch.threads_b = a, b
    watch.sched_a, watch.sched_b = (0, 0), (NS_PER_S, NS_PER_S // 2)
    assert slot_shares(watch) == (0.5, 0.25)


def test_throughput_result_from_a_sampled_run() -> None:
    statuses = [_status(0, 0), _status(1, 10_000), _status(2, 20_000), _status(3, 30_000)]
    watch = _Watch(1, 30_000, {})
    watch.statuses = statuses
    watch.cpu = [(T0, 10.0), (T0 + 3 * NS_PER_S, 13.0)]
    watch.threads_a = (T0, {"bars-signals ->": 0.0})
    watch.threads_b = (T0 + 2 * NS_PER_S, {"bars-signals ->": 1.0})
    watch.sched_a, watch.sched_b = (0, 0), (NS_PER_S, 0)
    watch.done_ns = T0 + 4 * NS_PER_S
    backlog = Backlog(24_000, 6_000, 30_000, 0.8, 1.5, {})
    res = throughput_result(_args(), backlog, watch, T0 - 5 * NS_PER_S, ("x", "y"))
    assert res.events_per_s == 10_000.0 and res.trades_per_s == 8_000.0
    assert res.events_per_s_after_first_s == 10_000.0
    # records 10k..28.5k of the 30k: two points, too few for a warm rate
    assert res.warm_status_points == 2 and math.isnan(res.events_per_s_warm)
    assert res.end_to_end_s == 4.0 and res.end_to_end_trades_per_s == 6_000.0
    assert res.job_cpu_cores == 1.0 and res.job_cpu_us_per_event == 100.0
    assert res.busiest_task_thread_cores == 0.5
    assert res.projected_trades_per_s_full_core == 16_000.0
    assert res.slot_thread_on_cpu == 0.5 and res.trades_per_slot_cpu_s == 16_000.0
    assert res.job_launch_to_first_record_s == 5.0
    assert res.checkpoint_interval_ms == 1000
    assert res.points == [(0.0, 0), (1.0, 10_000), (2.0, 20_000), (3.0, 30_000)]
