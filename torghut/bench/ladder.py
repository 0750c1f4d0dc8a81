"""The load ladder of ``torghut bench pipeline --ladder``: the live phase at rising rates.

Each rung is one live phase (``live.live_phase``: a fresh job, the paced simulator, the
forwarder, a warm-up until caught up, ``--duration`` s measured) at a rate and a symbol
count, once per provisional interval of ``--ladder-provisional`` (the job's default, and
``1`` = on practically every trade). All rungs run on one stack, one after another, so the
rungs of one run compare on the same machine at the same hour.

Per rung: p50/p99 frame read -> provisional readable, the final bar's latency after the
watermark could close it, the CPU of every component and, where the rung misses its
target, the component that saturates: a single-threaded stage pinned near one core (the
job's Python operator, the forwarder's loop), else the machine when all cores are busy.
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import dataclass
from typing import Any

from torghut.bench.children import Procs
from torghut.bench.common import say
from torghut.bench.live import live_phase
from torghut.bench.results import LivePhaseResult

#: the design's budget with room, per rate (events/s): p99 frame read -> provisional readable
P99_TARGET_MS = {1000: 20.0, 5000: 100.0, 10000: 300.0}
DEFAULT_RUNGS = "1000x20,5000x100,10000x200"
#: a process group using more than this many cores is a saturated single-threaded stage
SATURATED_CORES = 0.85
#: and the machine is saturated when all components together use this share of its cores
MACHINE_SHARE = 0.9


class LadderSpecError(ValueError):
    """``--ladder`` or ``--ladder-provisional`` is not what the flag's help describes."""


@dataclass(frozen=True)
class Rung:
    rate: float
    symbols: int
    provisional_interval_ms: int

    @property
    def label(self) -> str:
        every = (
            "every trade"
            if self.provisional_interval_ms <= 1
            else f"{self.provisional_interval_ms} ms"
        )
        return f"{self.rate:g}/s x {self.symbols} sym, provisional {every}"


@dataclass(frozen=True)
class RungResult:
    rung: Rung
    p99_target_ms: float | None
    final_target_ms: float  # checkpoint interval + 1 s after the watermark
    saturated: str  # the component that saturates ("" when none does)
    live: LivePhaseResult

    @property
    def p99_ms(self) -> float:
        return float(self.live.live_recv_minus_ingest_ms.get("p99"))

    @property
    def final_p99_ms(self) -> float:
        return float(self.live.final_recv_minus_watermark_ms.get("p99"))

    @property
    def met(self) -> bool:
        live_ok = self.p99_target_ms is None or self.p99_ms <= self.p99_target_ms
        return live_ok and self.final_p99_ms <= self.final_target_ms


def parse_rungs(spec: str, provisional: str) -> list[Rung]:
    """``RATExSYMBOLS,...`` times ``MS,...`` -> the rungs, rate by rate."""
    try:
        pairs = [tuple(part.lower().split("x")) for part in spec.split(",") if part.strip()]
        rates = [(float(r), int(s)) for r, s in pairs]
        intervals = [int(p) for p in provisional.split(",") if p.strip()]
    except ValueError:
        raise LadderSpecError(
            f"--ladder {spec!r} / --ladder-provisional {provisional!r}: use RATExSYMBOLS,... "
            f"(e.g. {DEFAULT_RUNGS}) and milliseconds,... (e.g. 200,1)"
        ) from None
    if not rates or not intervals or any(r <= 0 or s <= 0 for r, s in rates) or min(intervals) < 1:
        raise LadderSpecError(
            f"--ladder {spec!r} / --ladder-provisional {provisional!r}: rates, symbol counts "
            "and intervals must be positive (an interval of 1 ms = every trade)"
        )
    return [Rung(rate, n, ms) for rate, n in rates for ms in intervals]


def p99_target(rate: float) -> float | None:
    """The target of the highest ladder rate at or below ``rate`` (none below 1k/s)."""
    below = [r for r in P99_TARGET_MS if r <= rate]
    return P99_TARGET_MS[max(below)] if below else None


def saturating_component(component_cores: dict[str, float], cpus: int) -> str:
    """The busiest component if it is pinned near a core, else "machine" when every core
    is busy, else "" (then the time goes to waiting: commits, linger, buffer timeouts)."""
    if not component_cores:
        return ""
    name, cores = max(component_cores.items(), key=lambda kv: kv[1])
    if cores >= SATURATED_CORES:
        return f"{name} ({cores:.2f} cores)"
    total = sum(component_cores.values())
    if total >= MACHINE_SHARE * cpus:
        return f"machine ({total:.2f} of {cpus} cores)"
    return ""


def run_ladder(state: Any, args: argparse.Namespace, procs: Procs, run_id: str) -> list[RungResult]:
    """Every rung's live phase on this stack, in order (one run id: each new job aborts the
    previous job's lingering transactions, so read_committed readers are never held)."""
    rungs = parse_rungs(args.ladder, args.ladder_provisional)
    cpus = os.cpu_count() or 1
    out = []
    for i, rung in enumerate(rungs, 1):
        say(f"ladder: rung {i}/{len(rungs)}: {rung.label}")
        rung_args = copy.copy(args)
        rung_args.rate = rung.rate
        rung_args.symbols = str(rung.symbols)
        rung_args.provisional_interval_ms = rung.provisional_interval_ms
        live = live_phase(state, rung_args, procs, run_id)
        result = RungResult(
            rung=rung,
            p99_target_ms=p99_target(rung.rate),
            final_target_ms=args.checkpoint_interval_ms + 1000.0,
            saturated=saturating_component(live.component_cores, cpus),
            live=live,
        )
        say(
            f"ladder: rung {i}: p99 {result.p99_ms:.1f} ms, final p99 after the watermark "
            f"{result.final_p99_ms:.0f} ms -> {'MET' if result.met else 'MISSED'}"
        )
        out.append(result)
    return out


def ladder_lines(rungs: list[RungResult]) -> list[str]:
    head = (
        f"{'rung':<44}{'p50':>8}{'p99':>8}{'target':>8}{'final':>8}{'f.tgt':>8}"
        f"{'job':>6}  result / saturates"
    )
    lines = [
        "\nload ladder (ms; final = final bar readable after the watermark could close it, p99;"
        " job = cores of the job's process tree)",
        head,
    ]
    for r in rungs:
        live = r.live
        target = f"{r.p99_target_ms:8.0f}" if r.p99_target_ms is not None else f"{'-':>8}"
        verdict = "MET" if r.met else "MISSED"
        if r.saturated and not r.met:
            verdict += f"; saturates: {r.saturated}"
        lines.append(
            f"{r.rung.label:<44}{live.live_recv_minus_ingest_ms.get('p50'):8.1f}{r.p99_ms:8.1f}"
            f"{target}{r.final_p99_ms:8.0f}{r.final_target_ms:8.0f}{live.job_cpu_cores:6.2f}  "
            f"{verdict}"
        )
        lines.append(
            f"{'':<4}load {live.load_before.split('load average:')[-1].strip()}; CPU: "
            + ", ".join(
                f"{k} {v:.2f}"
                for k, v in sorted(live.component_cores.items(), key=lambda kv: -kv[1])
            )
        )
    return lines


def plot_ladder(ax: Any, rungs: list[RungResult]) -> None:
    """p50/p99 per rung (log scale) with each rung's target."""
    xs = list(range(len(rungs)))
    ax.plot(xs, [r.live.live_recv_minus_ingest_ms.get("p50") for r in rungs], "o-", label="p50")
    ax.plot(xs, [r.p99_ms for r in rungs], "s-", label="p99")
    targets = [(x, r.p99_target_ms) for x, r in zip(xs, rungs, strict=True) if r.p99_target_ms]
    if targets:
        ax.plot(*zip(*targets, strict=True), "r_", markersize=22, mew=2, label="p99 target")
    ax.set_xticks(xs, [r.rung.label.replace(", ", "\n") for r in rungs], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("frame read -> provisional readable (ms)")
    ax.set_title("load ladder", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
