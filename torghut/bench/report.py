"""The printed summary of ``torghut bench pipeline`` and its JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torghut.bench.common import LIVE_TARGET_P99_MS, THROUGHPUT_TARGET, WARM_FROM
from torghut.bench.results import (
    LiveConfig,
    LivePhaseResult,
    PipelineResult,
    ProfileResult,
    ThroughputPhaseResult,
    to_json,
)
from torghut.bench.stats import Dist

#: the latency table of the live phase: label -> the result's field
LATENCY_ROWS = (
    ("provisional: recv - ingest_ts (frame read -> readable)", "live_recv_minus_ingest_ms"),
    ("provisional: recv - event_ts (synthetic trade time)", "live_recv_minus_event_ms"),
    ("  of which forwarder read -> job emit (emit - ingest)", "live_emit_minus_ingest_ms"),
    ("  of which job emit -> readable (recv - emit)", "live_recv_minus_emit_ms"),
    ("final bar: recv - window.end (read_committed)", "final_recv_minus_window_end_ms"),
    ("  minus out-of-orderness (watermark could close it)", "final_recv_minus_watermark_ms"),
    ("  job emit -> committed readable (recv - emit)", "final_recv_minus_emit_ms"),
    ("warm-up, not measured: provisional recv - ingest_ts", "warmup_recv_minus_ingest_ms"),
)


def _fmt(d: Dist, key: str) -> str:
    v = getattr(d, key)
    return f"{v:8.1f}" if isinstance(v, float) else f"{'-':>8}"


def _met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def latency_table(live: LivePhaseResult) -> list[str]:
    lines = [f"{'latency (ms)':<58}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>8}"]
    for label, key in LATENCY_ROWS:
        d: Dist = getattr(live, key)
        stats = "".join(_fmt(d, k) for k in ("p50", "p90", "p99", "max"))
        lines.append(f"{label:<58}{stats}{d.n:>8}")
    return lines


def _cpu_lines(live: LivePhaseResult) -> list[str]:
    lines = [
        f"job process tree used {live.job_cpu_cores:.2f} cores during the measurement; job ready "
        f"{live.job_launch_to_ready_s:.1f} s after launch; warm-up {live.warmup_s:.1f} s "
        f"({'caught up' if live.caught_up else 'NOT caught up'})"
    ]
    cc = live.component_cores
    if cc:
        by_cores = sorted(cc.items(), key=lambda kv: -kv[1])
        lines.append(
            f"CPU during the measurement (cores, of {os.cpu_count()}): "
            + ", ".join(f"{k} {v:.2f}" for k, v in by_cores)
        )
    if live.worst_seconds:
        lines.append(
            "worst seconds of the measurement (s: max / p50 ms): "
            + ", ".join(
                f"{w['second']:.0f}: {w['max_ms']:.0f} / {w['p50_ms']:.0f}"
                for w in live.worst_seconds
            )
        )
    return lines


def _final_lines(live: LivePhaseResult, cfg: LiveConfig) -> list[str]:
    ci = live.commit_interval_ms
    return [
        f"observed commit cadence (bursts seen by the read_committed reader): median "
        f"{ci.get('p50'):.0f} ms, max {ci.get('max'):.0f} ms over "
        f"{ci.n} gaps (configured checkpoint interval {cfg.checkpoint_interval_ms} ms)",
        f"final bars: {live.final_bars} read ({live.final_distinct} distinct) of about "
        f"{live.final_bars_expected_about} expected; checkpoint interval "
        f"{cfg.checkpoint_interval_ms} ms, out-of-orderness {cfg.out_of_orderness_ms} ms",
    ]


def _target_lines(live: LivePhaseResult, cfg: LiveConfig) -> list[str]:
    p99 = live.live_recv_minus_ingest_ms.get("p99")
    fp99 = live.final_recv_minus_window_end_ms.get("p99")
    wp99 = live.final_recv_minus_watermark_ms.get("p99")
    budget = cfg.checkpoint_interval_ms + 200
    ooo = cfg.out_of_orderness_ms
    return [
        f"target live p99 <= {LIVE_TARGET_P99_MS:.0f} ms: {p99:.1f} ms -> "
        f"{_met(p99 <= LIVE_TARGET_P99_MS)}",
        f"target final p99 <= checkpoint + 200 = {budget} ms: from window.end {fp99:.0f} ms -> "
        f"{_met(fp99 <= budget)}; from window.end + out-of-orderness {wp99:.0f} ms "
        f"-> {_met(wp99 <= budget)}",
        f"theory with the 10 s production checkpoint: final latency = {ooo} ms slack + wait for the "
        f"next commit (uniform 0..10 s) + commit time: p50 ~ {ooo + 5000} ms, p99 ~ {ooo + 9900} ms + commit",
    ]


def live_lines(live: LivePhaseResult, cfg: LiveConfig) -> list[str]:
    head = (
        f"\nlive: {live.rate_events_per_s:g} events/s over {live.symbols} symbols, "
        f"{live.duration_s:g} s measured, provisional interval {cfg.provisional_interval_ms} ms, "
        f"forwarder linger {cfg.linger_ms} ms; {live.provisional_signals} provisional signals "
        f"({live.provisional_signals_per_s:.0f}/s)"
    )
    return [
        head,
        *latency_table(live),
        *_cpu_lines(live),
        *_final_lines(live, cfg),
        *_target_lines(live, cfg),
    ]


def _rate_lines(tp: ThroughputPhaseResult) -> list[str]:
    return [
        f"  job records_in slope   : {tp.events_per_s:>9,.0f} events/s = {tp.trades_per_s:>9,.0f} "
        f"trades/s ({tp.status_points} ta.status points)",
        f"  after its first second : {tp.events_per_s_after_first_s:>9,.0f} events/s = "
        f"{tp.trades_per_s_after_first_s:>9,.0f} trades/s",
        f"  warm (records {WARM_FROM:.0%}..95% of the backlog, JIT done): "
        f"{tp.events_per_s_warm:>9,.0f} events/s = {tp.trades_per_s_warm:>9,.0f} trades/s "
        f"({tp.warm_status_points} points)",
        f"  end to end             : {tp.end_to_end_trades_per_s:>9,.0f} trades/s (first record "
        f"processed -> last final bar committed+read, {tp.end_to_end_s:.1f} s)",
    ]


def _thread_lines(tp: ThroughputPhaseResult) -> list[str]:
    lines = [
        f"  job launch -> first record: {tp.job_launch_to_first_record_s:.1f} s; job process tree used "
        f"{tp.job_cpu_cores:.2f} cores while processing = {tp.job_cpu_us_per_event:.0f} us CPU "
        f"per event (JVM + embedded Python)"
    ]
    if tp.job_threads_cores:
        lines.append(
            "  busiest job threads (cores): "
            + ", ".join(
                f"{name!r} {cores:.2f}" for name, cores in tp.job_threads_cores if cores >= 0.01
            )
        )
    blocked = 1 - tp.slot_thread_on_cpu - tp.slot_thread_waiting_for_cpu
    lines += [
        f"  projection: busiest task thread used {tp.busiest_task_thread_cores:.2f} cores -> "
        f"~{tp.projected_trades_per_s_full_core:,.0f} trades/s if it had a whole core (estimate, "
        f"not a measurement)",
        f"  slot thread (schedstat): on a CPU {tp.slot_thread_on_cpu:.2f} of the time, "
        f"runnable but waiting for a CPU {tp.slot_thread_waiting_for_cpu:.2f}, blocked "
        f"{blocked:.2f} -> {tp.trades_per_slot_cpu_s:,.0f} trades per second of slot CPU time",
    ]
    return lines


def throughput_lines(tp: ThroughputPhaseResult) -> list[str]:
    head = (
        f"\nthroughput (parallelism 1, one slot): backlog of {tp.trades:,} trades + {tp.quotes:,} "
        f"quotes, provisional interval {tp.provisional_interval_ms} ms, checkpoint interval "
        f"{tp.checkpoint_interval_ms} ms"
    )
    target = (
        f"  target >= {THROUGHPUT_TARGET:,.0f} trades/s per slot: wall rate "
        f"{_met(tp.trades_per_s >= THROUGHPUT_TARGET)} (warm "
        f"{_met(tp.trades_per_s_warm >= THROUGHPUT_TARGET)}); per second of slot CPU time "
        f"{_met(tp.trades_per_slot_cpu_s >= THROUGHPUT_TARGET)}"
    )
    return [head, *_rate_lines(tp), *_thread_lines(tp), target]


def profile_lines(prof: ProfileResult) -> list[str]:
    return [
        f"\nPython work per trade, in process, no Flink ({prof.trades:,} trades, "
        f"{prof.events:,} events, {prof.emissions:,} emissions):",
        *(f"  {k:<22}{v:8.2f} us" for k, v in prof.us_per_trade.items()),
        f"  {'total':<22}{prof.total_us_per_trade:8.2f} us  -> at most "
        f"{prof.python_only_trades_per_s:,.0f} trades/s from the Python code alone",
    ]


def summary_lines(res: PipelineResult) -> list[str]:
    lines = [
        "",
        f"torghut bench pipeline — {res.timestamp}  ({os.cpu_count()} CPUs)",
        f"load: {res.uptime_start}",
    ]
    if res.live:
        lines += live_lines(res.live, res.live_config)
    if res.ladder:
        from torghut.bench.ladder import ladder_lines

        lines += ladder_lines(res.ladder)
    if res.throughput:
        lines += throughput_lines(res.throughput)
    if res.profile:
        lines += profile_lines(res.profile)
    lines.append(f"\nload at end: {res.uptime_end}")
    return lines


def print_summary(res: PipelineResult) -> None:
    for line in summary_lines(res):
        print(line)


def write_json(out_dir: Path, res: PipelineResult) -> Path:
    path = out_dir / f"pipeline-{res.timestamp}.json"
    path.write_text(json.dumps(to_json(res), indent=2, default=str))
    return path
