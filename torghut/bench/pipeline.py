"""``torghut bench pipeline``: end-to-end latency and per-slot throughput of the TA job.

Three numbers from one run, on this machine, against a real stack (Kafka, registry, MinIO):

1. **live** — paced synthetic simulator (subprocess, ``--rate`` events/s over ``--symbols``,
   half trades, half quotes, no synthetic disorder) -> forwarder (subprocess, linger
   ``--linger-ms``) -> TA job (subprocess, parallelism 1, ``--provisional-interval-ms``) ->
   a ``read_uncommitted`` consumer of ``ta.signals.v1`` in this process. Per provisional signal
   (``is_final=false``): ``receive wall time - ingest_ts`` (``ingest_ts`` = the forwarder's
   clock when it read the WebSocket frame carrying the triggering trade; the simulator sends
   that frame a loopback hop earlier) and ``receive - event_ts`` (the synthetic trade time,
   <= the frame's send time by up to one simulator tick, 5 ms).
2. **final** — the same run, a ``read_committed`` consumer of ``ta.bars.1s.v1``: per final bar
   ``receive - window.end``. Its floor is the watermark slack (``--out-of-orderness-ms``), then
   the wait for the checkpoint that commits the transaction (<= ``--checkpoint-interval-ms``).
3. **throughput** — a backlog of ``--throughput-trades`` trades (+ quotes) produced straight
   into the raw topics, then a fresh job (parallelism 1, fresh consumer group) consumes it:
   trades/s from the slope of the job's own ``records_in`` counter in ``ta.status.v1``, and
   end to end (first record processed -> final bar of the last second readable committed).
   An in-process breakdown of the job's Python work per trade (decode, pickling, state,
   indicators, Avro encode) says where the time goes.

Receive times are stamped when ``poll`` returns a record; records are decoded after the phase
so decoding does not compete with the measurement.

This module parses the flags and runs the phases in order; the package holds one concern
per module: ``live`` and ``throughput`` (the phases), ``profile`` (in process), ``results``
(what each phase returns), ``report`` and ``plots`` (the summary, JSON and PNG),
``collect`` (Kafka readers), ``sampling`` (CPU from /proc), ``children`` (the processes it
starts), ``backlog`` (synthetic events), ``stats`` and ``common``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torghut.bench.children import Procs
from torghut.bench.common import CAUGHT_UP_MS, load, say, symbols_of, uptime
from torghut.bench.ladder import DEFAULT_RUNGS, parse_rungs, run_ladder
from torghut.bench.live import live_phase
from torghut.bench.plots import plot
from torghut.bench.profile import profile_breakdown
from torghut.bench.report import print_summary, write_json
from torghut.bench.results import LiveConfig, PipelineResult
from torghut.bench.throughput import throughput_phase

__all__ = ["add_arguments", "live_phase", "profile_breakdown", "run", "throughput_phase"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_live_arguments(parser)
    _add_throughput_arguments(parser)
    _add_run_arguments(parser)


def _add_live_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="measured seconds of the live phase (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=30.0,
        help="min seconds after the first signal that are not measured: the stack and the job "
        "are fresh, and the JVMs' JIT compilers (the broker's C2 above all) compete for the two "
        "cores for ~15 s; their latency is reported separately as warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup-max",
        type=float,
        default=90.0,
        help="max warm-up: it lasts until the job has caught up with the start-up "
        f"backlog (last second's p50 < {CAUGHT_UP_MS:.0f} ms) (default: %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="live events/s over all symbols, half trades half quotes (default: %(default)s)",
    )
    parser.add_argument(
        "--symbols",
        default="20",
        help="a count (tickers are chosen) or a comma list (default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint-interval-ms",
        type=int,
        default=1000,
        help="job checkpoint interval = transaction commit cadence (default: %(default)s)",
    )
    parser.add_argument(
        "--out-of-orderness-ms",
        type=int,
        default=1000,
        help="watermark slack of the job (default: %(default)s, the job default)",
    )
    parser.add_argument(
        "--provisional-interval-ms",
        type=int,
        default=1,
        help="live phase: min wall time between provisional emissions per symbol; "
        "1 = practically every trade (0 would disable them) (default: %(default)s)",
    )
    parser.add_argument(
        "--linger-ms", type=int, default=1, help="forwarder producer linger (default: %(default)s)"
    )


def _add_throughput_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--throughput-trades",
        type=int,
        default=600_000,
        help="trades in the throughput backlog (default: %(default)s)",
    )
    parser.add_argument(
        "--throughput-quote-ratio",
        type=float,
        default=0.2,
        help="quotes per trade in the backlog, so spread/imbalance are computed "
        "too (default: %(default)s)",
    )
    parser.add_argument(
        "--throughput-checkpoint-interval-ms",
        type=int,
        default=None,
        help="throughput phase checkpoint interval (default: --checkpoint-interval-ms)",
    )
    parser.add_argument(
        "--throughput-provisional-interval-ms",
        type=int,
        default=200,
        help="throughput phase provisional interval (default: %(default)s, the job default)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ladder",
        nargs="?",
        const=DEFAULT_RUNGS,
        default=None,
        metavar="RATExSYMBOLS,...",
        help="load ladder: instead of one live phase, one per rung (events/s x symbols) and per "
        "--ladder-provisional interval, each with its p99 target, final-bar latency, the CPU "
        f"of every component and what saturates (bare --ladder: {DEFAULT_RUNGS})",
    )
    parser.add_argument(
        "--ladder-provisional",
        default="200,1",
        metavar="MS,...",
        help="provisional intervals of each ladder rung: 200 = the job's default, 1 = on "
        "practically every trade (default: %(default)s)",
    )
    parser.add_argument("--skip-throughput", action="store_true", help="live/final latency only")
    parser.add_argument("--skip-live", action="store_true", help="throughput only")
    parser.add_argument(
        "--skip-profile", action="store_true", help="no in-process per-trade cost breakdown"
    )
    parser.add_argument(
        "--stack-dir",
        default=None,
        help="use this running stack (default: start a temporary one and stop it)",
    )
    parser.add_argument("--out", default="bench-results", help="directory of the PNG and JSON")


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: run the finally blocks that stop what we started


@contextlib.contextmanager
def _stack(args: argparse.Namespace, run_id: str) -> Iterator[tuple[Any, Procs]]:
    """The stack (``--stack-dir``'s, or a temporary one) and the registry of the processes
    the phases start; on the way out (errors and SIGTERM too) every process started is
    stopped, then a temporary stack; its logs are kept unless the run succeeded."""
    from torghut.stack import supervisor
    from torghut.stack.state import StackState

    prev_term = signal.signal(signal.SIGTERM, _interrupt)
    own_stack = None
    tmp_dir: Path | None = None
    ok = False
    if args.stack_dir:
        state = StackState.load(args.stack_dir)
        log_dir = Path(state.run_dir) / "logs" / f"bench-pipeline-{run_id}"
    else:
        tmp_dir = Path(tempfile.mkdtemp(prefix="torghut-bench-pipeline-"))
        say(f"starting a stack in {tmp_dir}")
        state = own_stack = supervisor.up(tmp_dir)
        log_dir = tmp_dir / "logs"
    procs = Procs(log_dir)
    try:
        yield state, procs
        ok = True
    finally:
        procs.stop()
        if own_stack is not None:
            say("stopping the stack")
            supervisor.down(own_stack)
            if ok and tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            elif tmp_dir is not None:
                say(f"logs kept in {tmp_dir}")
        signal.signal(signal.SIGTERM, prev_term)


def _live_config(args: argparse.Namespace) -> LiveConfig:
    return LiveConfig(
        rate=args.rate,
        provisional_interval_ms=args.provisional_interval_ms,
        linger_ms=args.linger_ms,
        checkpoint_interval_ms=args.checkpoint_interval_ms,
        out_of_orderness_ms=args.out_of_orderness_ms,
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    if args.duration <= 0 or args.rate <= 0:
        raise SystemExit("--duration and --rate must be positive")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{os.getpid()}"
    uptime_start, loadavg_start = uptime(), load()
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)}
    if args.ladder:
        parse_rungs(args.ladder, args.ladder_provisional)  # a bad spec fails before the stack
    tp = live = prof = ladder = None
    with _stack(args, run_id) as (state, procs):
        if not args.skip_throughput:
            tp = throughput_phase(state, args, procs, run_id)
        if args.ladder:
            ladder = run_ladder(state, args, procs, run_id)
        elif not args.skip_live:
            live = live_phase(state, args, procs, run_id)
        if not args.skip_profile:
            say("profiling the job's Python work per trade in process")
            prof = profile_breakdown(
                state.registry_url,
                symbols_of(args.symbols),
                quote_ratio=args.throughput_quote_ratio,
                provisional_interval_ms=args.throughput_provisional_interval_ms,
            )
    res = PipelineResult(
        timestamp=stamp,
        uptime_start=uptime_start,
        loadavg_start=loadavg_start,
        settings=settings,
        live_config=_live_config(args),
        throughput=tp,
        live=live,
        profile=prof,
        uptime_end=uptime(),
        ladder=ladder,
    )
    print_summary(res)
    out_dir = Path(args.out)
    png = plot(out_dir, res)
    js = write_json(out_dir, res)
    print(f"plot      : {png}\nnumbers   : {js}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_arguments(p)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run(p.parse_args()))
