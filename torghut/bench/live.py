"""Phases 1+2 of ``torghut bench pipeline``: live provisional-signal and final-bar latency.

A paced simulator -> forwarder -> TA job (all subprocesses) against a job that is already
up (probed), an adaptive warm-up, ``--duration`` s measured; receive times are stamped by
the collectors and records decoded after the phase.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torghut.bench.children import Procs, launch_job, torghut_cmd
from torghut.bench.collect import Collector, start_collectors
from torghut.bench.common import (
    CAUGHT_UP_MS,
    NS_PER_MS,
    NS_PER_S,
    PROBE,
    end_ns,
    load,
    say,
    symbols_of,
    uptime,
)
from torghut.bench.results import LivePhaseResult
from torghut.bench.sampling import component_groups, components_cpu_s, cores_between, group_cpu_s
from torghut.bench.stats import Dist, pct, worst_seconds
from torghut.envelopes import EnvelopeProducer

Decode = Callable[[bytes], dict[str, Any]]
Items = list[tuple[int, bytes]]  # (receive ns, value) as a Collector keeps them
LIVE_PROCS = ("ta-live", "sim", "forwarder")


@dataclass(frozen=True)
class Window:
    """The measured interval (wall ns) and the CPU used in it."""

    t0: int
    t1: int
    job_cores: float
    component_cores: dict[str, float]


@dataclass
class SignalLatencies:
    """Per measured provisional signal (ms; ``at_s``: receive s since the window start)."""

    recv_minus_ingest: list[float] = field(default_factory=list)
    recv_minus_event: list[float] = field(default_factory=list)
    emit_minus_ingest: list[float] = field(default_factory=list)
    recv_minus_emit: list[float] = field(default_factory=list)
    at_s: list[float] = field(default_factory=list)
    warmup: list[float] = field(default_factory=list)  # recv - ingest_ts during the warm-up
    finals: int = 0  # final signals in the window (not measured)


@dataclass
class FinalLatencies:
    """Per final bar whose window ends in the measured interval (ms)."""

    recv_minus_end: list[float] = field(default_factory=list)
    recv_minus_watermark: list[float] = field(default_factory=list)
    recv_minus_emit: list[float] = field(default_factory=list)
    distinct: set[tuple[str, int]] = field(default_factory=set)


def signal_latencies(
    items: Items, decode: Decode, warm_from: int, t0: int, t1: int
) -> SignalLatencies:
    """Split the signals read into warm-up [warm_from, t0) and measured [t0, t1); probes and
    final signals are not measured."""
    out = SignalLatencies()
    for recv, value in items:
        if warm_from <= recv < t0:
            rec = decode(value)
            if rec["symbol"] != PROBE and not rec["is_final"]:
                out.warmup.append((recv - rec["ingest_ts"]) / NS_PER_MS)
            continue
        if not t0 <= recv < t1:
            continue
        rec = decode(value)
        if rec["symbol"] == PROBE:
            continue
        if rec["is_final"]:
            out.finals += 1
            continue
        out.recv_minus_ingest.append((recv - rec["ingest_ts"]) / NS_PER_MS)
        out.at_s.append((recv - t0) / NS_PER_S)
        out.recv_minus_event.append((recv - rec["event_ts"]) / NS_PER_MS)
        out.emit_minus_ingest.append((rec["emit_ts"] - rec["ingest_ts"]) / NS_PER_MS)
        out.recv_minus_emit.append((recv - rec["emit_ts"]) / NS_PER_MS)
    return out


def final_latencies(
    items: Items, decode: Decode, t0: int, t1: int, out_of_orderness_ms: int
) -> FinalLatencies:
    """Final bars (not probes) whose window ends in [t0, t1)."""
    out = FinalLatencies()
    for recv, value in items:
        rec = decode(value)
        if not rec["is_final"] or rec["symbol"] == PROBE:
            continue
        end = end_ns(rec["window"]["end"])
        if not t0 <= end < t1:
            continue
        out.distinct.add((rec["symbol"], end))
        out.recv_minus_end.append((recv - end) / NS_PER_MS)
        out.recv_minus_watermark.append((recv - end) / NS_PER_MS - out_of_orderness_ms)
        out.recv_minus_emit.append((recv - rec["emit_ts"]) / NS_PER_MS)
    return out


def commit_gaps_ms(recv_ns: list[int], t0: int, t1: int, burst_gap_ms: float = 150) -> list[float]:
    """Gaps between the bursts a read_committed reader gets (one per transaction commit =
    checkpoint): receive times more than ``burst_gap_ms`` apart start a new burst."""
    batch_times = sorted({recv for recv in recv_ns if t0 <= recv < t1})
    bursts = [
        t
        for i, t in enumerate(batch_times)
        if i == 0 or t - batch_times[i - 1] > burst_gap_ms * NS_PER_MS
    ]
    return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(bursts)]


def _wait_until(
    done: Callable[[], bool],
    procs: Procs,
    names: tuple[str, ...],
    timeout_s: float,
    what: str,
    poll_s: float,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        procs.check(*names)
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(poll_s)


def _launch_job(state: Any, args: argparse.Namespace, procs: Procs, run_id: str) -> tuple[int, int]:
    launched = launch_job(state, args, procs, run_id, "live", args.provisional_interval_ms)
    say(
        f"live: job started (provisional every >= {args.provisional_interval_ms} ms, checkpoint "
        f"{args.checkpoint_interval_ms} ms, out-of-orderness {args.out_of_orderness_ms} ms); "
        f"probing until it answers"
    )
    return launched


def _probe_until_answered(state: Any, procs: Procs, sig: Collector) -> int:
    """The job starts at the topics' end ("latest"): probe trades until one comes back as a
    signal, so the simulator starts against a running, idle job (no start-up backlog).
    Returns the receive ns of the first answer."""
    probe = EnvelopeProducer(state)
    deadline = time.monotonic() + 300
    next_probe = 0.0
    while not sig.items:
        procs.check("ta-live")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the job did not answer a probe within 300 s; see {procs.log_dir}")
        if time.monotonic() >= next_probe:
            now = time.time_ns()
            probe.trade(PROBE, now, 1.0, 1.0, now // 1000)
            probe.p.flush(5)
            next_probe = time.monotonic() + 0.5
        time.sleep(0.05)
    return sig.items[0][0]


def _start_feed(state: Any, args: argparse.Namespace, procs: Procs, symbols: list[str]) -> None:
    """The paced simulator and the forwarder reading it."""
    from torghut.stack.procs import free_port, port_open

    per_symbol = args.rate / 2 / len(symbols)
    sim_port = free_port()
    sim_argv = ["sim", "--port", str(sim_port), "--symbols", ",".join(symbols)]
    sim_argv += ["--trades-per-sec", f"{per_symbol:g}", "--quotes-per-sec", f"{per_symbol:g}"]
    sim_argv += ["--out-of-order-rate", "0", "--late-rate", "0", "--seed", "7"]
    procs.spawn("sim", torghut_cmd(*sim_argv, "--progress-every", "0"), {})
    _wait_until(
        lambda: port_open(sim_port),
        procs,
        ("sim",),
        20,
        "the simulator did not open its port",
        0.05,
    )
    from torghut.stack import apps

    procs.spawn(
        "forwarder",
        list(apps.FORWARDER),
        apps.forwarder_env(
            state,
            f"ws://127.0.0.1:{sim_port}/v2/iex",
            alpaca_key_id="bench",
            alpaca_secret_key="bench-secret",
            symbols="*",
            http_port=free_port(),
            linger_ms=args.linger_ms,
        ),
    )
    say(
        f"live: simulator {args.rate:g} events/s ({per_symbol:g} trades/s + {per_symbol:g} quotes/s "
        f"x {len(symbols)} symbols) -> forwarder (linger {args.linger_ms} ms); waiting for the first signal"
    )


def _warm_up(
    args: argparse.Namespace, procs: Procs, sig: Collector, decode: Decode
) -> tuple[float, bool]:
    """At least ``--warmup`` s and until the last second's p50 < CAUGHT_UP_MS, at most
    ``--warmup-max`` s. Returns (seconds, caught up)."""
    w_start = time.monotonic()
    caught_up = False
    while time.monotonic() - w_start < args.warmup_max:
        procs.check(*LIVE_PROCS)
        time.sleep(0.5)
        now_ns = time.time_ns()
        recent = [
            (r - decode(v)["ingest_ts"]) / NS_PER_MS
            for r, v in sig.items[-600:]
            if r >= now_ns - NS_PER_S
        ]
        caught_up = bool(recent) and pct(recent, 50) < CAUGHT_UP_MS
        if time.monotonic() - w_start >= args.warmup and caught_up:
            break
    warmup_s = time.monotonic() - w_start
    if not caught_up:
        say(
            f"live: WARNING: not caught up after {warmup_s:.0f} s (last second's p50 >= {CAUGHT_UP_MS:.0f} ms); "
            f"measuring anyway"
        )
    return warmup_s, caught_up


def _progress(sig: Collector, bars: Collector, decode: Decode, measuring: bool) -> None:
    recent = sig.items[-200:]
    lat = [(r - decode(v)["ingest_ts"]) / NS_PER_MS for r, v in recent]
    say(
        f"live ({'measuring' if measuring else 'warm-up'}): {len(sig.items)} signals, "
        f"{len(bars.items)} committed bar records; last {len(lat)} signals p50 "
        f"{pct(lat, 50):.1f} ms max {max(lat, default=0):.1f} ms; load {load()}"
    )


def _measure(
    state: Any,
    args: argparse.Namespace,
    procs: Procs,
    job_pid: int,
    collectors: tuple[Collector, Collector],
    decode: Decode,
) -> Window:
    """``--duration`` s of the running feed, with the job's and every component's CPU."""
    sig, bars = collectors
    t0 = time.time_ns()
    t1 = t0 + int(args.duration * NS_PER_S)
    cpu_t0: tuple[int, float] | None = None
    groups = component_groups(state, procs.started)
    comp_t0 = (time.time_ns(), components_cpu_s(groups))
    next_progress = time.monotonic() + 5
    while time.time_ns() < t1:
        procs.check(*LIVE_PROCS)
        time.sleep(0.2)
        if cpu_t0 is None and time.time_ns() >= t0:
            cpu_t0 = (time.time_ns(), group_cpu_s(job_pid))
        if time.monotonic() >= next_progress:
            next_progress += 5
            _progress(sig, bars, decode, time.time_ns() >= t0)
    cpu_t1 = (time.time_ns(), group_cpu_s(job_pid))
    comp_t1 = (time.time_ns(), components_cpu_s(groups))
    job_cores = (
        (cpu_t1[1] - cpu_t0[1]) / ((cpu_t1[0] - cpu_t0[0]) / NS_PER_S)
        if cpu_t0 is not None and cpu_t1[0] > cpu_t0[0]
        else float("nan")
    )
    return Window(t0, t1, job_cores, cores_between(comp_t0, comp_t1))


def _drain(args: argparse.Namespace, procs: Procs) -> None:
    """The finals of the last measured seconds need the watermark slack and one more commit."""
    drain_s = (args.out_of_orderness_ms + 2 * args.checkpoint_interval_ms) / 1000 + 3
    say(f"live: measured; draining {drain_s:.1f} s for the last final bars")
    end = time.monotonic() + drain_s
    while time.monotonic() < end:
        procs.check(*LIVE_PROCS)
        time.sleep(0.2)


@dataclass(frozen=True)
class _Run:
    """What the live run observed, before the records are decoded."""

    n_symbols: int
    t_launch: int
    ready: int
    warmup_start_ns: int
    warmup_s: float
    caught_up: bool
    window: Window
    load_before: str
    load_after: str


def live_phase(state: Any, args: argparse.Namespace, procs: Procs, run_id: str) -> LivePhaseResult:
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer
    from shared.topics import TA_BARS_1S, TA_SIGNALS

    symbols = symbols_of(args.symbols)
    load_before = uptime()
    sig, bars = start_collectors(
        state.kafka_bootstrap,
        (TA_SIGNALS.name, "read_uncommitted"),
        (TA_BARS_1S.name, "read_committed"),
    )
    t_launch, job_pid = _launch_job(state, args, procs, run_id)
    decode: Decode = AvroDeserializer(SchemaRegistryClient(state.registry_url)).decode
    ready = _probe_until_answered(state, procs, sig)
    say(f"live: job answered {(ready - t_launch) / NS_PER_S:.1f} s after launch")
    _start_feed(state, args, procs, symbols)
    _wait_until(
        lambda: any(decode(v)["symbol"] != PROBE for _, v in sig.items[-50:]),
        procs,
        LIVE_PROCS,
        120,
        f"no market-data signal within 120 s; see {procs.log_dir}",
        0.1,
    )
    say(
        f"live: first market-data signal; warming up at least {args.warmup:g} s (until the last second's "
        f"p50 < {CAUGHT_UP_MS:.0f} ms, at most {args.warmup_max:g} s), then measuring {args.duration:g} s"
    )
    w_start_ns = time.time_ns()
    warmup_s, caught_up = _warm_up(args, procs, sig, decode)
    window = _measure(state, args, procs, job_pid, (sig, bars), decode)
    _drain(args, procs)
    load_after = uptime()
    for name in ("forwarder", "sim", "ta-live"):
        procs.stop(name)
    sig.stop()
    bars.stop()
    run = _Run(
        len(symbols),
        t_launch,
        ready,
        w_start_ns,
        warmup_s,
        caught_up,
        window,
        load_before,
        load_after,
    )
    return live_result(args, run, sig.items, bars.items, decode)


def live_result(
    args: argparse.Namespace, run: _Run, signals: Items, bars: Items, decode: Decode
) -> LivePhaseResult:
    """Decode what the collectors read and reduce it to the phase's numbers."""
    w = run.window
    s = signal_latencies(signals, decode, run.warmup_start_ns, w.t0, w.t1)
    f = final_latencies(bars, decode, w.t0, w.t1, args.out_of_orderness_ms)
    return LivePhaseResult(
        symbols=run.n_symbols,
        rate_events_per_s=args.rate,
        duration_s=args.duration,
        job_launch_to_ready_s=(run.ready - run.t_launch) / NS_PER_S,
        warmup_s=run.warmup_s,
        caught_up=run.caught_up,
        job_cpu_cores=w.job_cores,
        provisional_signals=len(s.recv_minus_ingest),
        provisional_signals_per_s=len(s.recv_minus_ingest) / args.duration,
        final_signals=s.finals,
        live_recv_minus_ingest_ms=Dist.of(s.recv_minus_ingest),
        live_recv_minus_event_ms=Dist.of(s.recv_minus_event),
        warmup_recv_minus_ingest_ms=Dist.of(s.warmup),
        live_emit_minus_ingest_ms=Dist.of(s.emit_minus_ingest),
        live_recv_minus_emit_ms=Dist.of(s.recv_minus_emit),
        final_bars=len(f.recv_minus_end),
        final_bars_expected_about=run.n_symbols * int((w.t1 - w.t0) // NS_PER_S),
        final_distinct=len(f.distinct),
        final_recv_minus_window_end_ms=Dist.of(f.recv_minus_end),
        final_recv_minus_watermark_ms=Dist.of(f.recv_minus_watermark),
        final_recv_minus_emit_ms=Dist.of(f.recv_minus_emit),
        commit_interval_ms=Dist.of(commit_gaps_ms([recv for recv, _ in bars], w.t0, w.t1)),
        load_before=run.load_before,
        load_after=run.load_after,
        component_cores=w.component_cores,
        worst_seconds=worst_seconds(s.at_s, s.recv_minus_ingest),
        live_ms=s.recv_minus_ingest,
        live_at_s=s.at_s,
        live_event_ms=s.recv_minus_event,
        final_ms=f.recv_minus_end,
    )
