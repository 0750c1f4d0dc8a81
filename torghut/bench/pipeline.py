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

Receive times are stamped once per consumer batch, right after ``consume`` returns; records
are decoded after the phase so decoding does not compete with the measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import logging
import os
import pickle
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from torghut.envelopes import EnvelopeProducer

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
TICKERS = (
    "AAPL",
    "MSFT",
    "NVDA",
    "TSLA",
    "SPY",
    "AMZN",
    "GOOG",
    "META",
    "AMD",
    "NFLX",
    "QQQ",
    "IWM",
    "INTC",
    "ORCL",
    "CRM",
    "ADBE",
    "AVGO",
    "JPM",
    "BAC",
    "XOM",
)
SENTINEL = "ZZZZ"  # closes the backlog's last bars (watermark) without being measured
PROBE = "ZPROBE"  # live phase: trades that tell when the job is up, not measured
LIVE_TARGET_P99_MS = 50.0
CAUGHT_UP_MS = 250.0  # live warm-up ends when the last second's p50 is below this
THROUGHPUT_TARGET = 20_000.0
WARM_FROM = 1 / 3  # the warm throughput is measured past this share of the backlog
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_quiet = logging.getLogger("torghut.bench.rdkafka")
_quiet.setLevel(logging.CRITICAL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


# --- small helpers -----------------------------------------------------------------------


def _say(msg: str) -> None:
    print(f"[bench pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"loadavg {_load()}"


def _symbols(spec: str) -> list[str]:
    if spec.strip().isdigit():
        n = int(spec)
        return [*TICKERS[:n], *(f"S{i:03d}" for i in range(max(0, n - len(TICKERS))))]
    return [s.strip().upper() for s in spec.split(",") if s.strip()]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _dist(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": _pct(values, 50),
        "p90": _pct(values, 90),
        "p99": _pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _end_ns(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // dt.timedelta(microseconds=1) * 1_000
    return int(value) * 1_000


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds (user+system) of every live process in a process group (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _group_tasks(pgid: int) -> list[Path]:
    """/proc/<pid>/task/<tid> of every thread of every process in a process group."""
    out: list[Path] = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.extend((d / "task").iterdir())
        except OSError:
            continue
    return out


def _thread_cpu_s(pgid: int) -> dict[str, float]:
    """CPU seconds per thread name (digits folded) over a process group: JVM task threads
    ("Source: raw-tra", "bars-signals ->"), Kafka clients, GC, JIT compiler, ..."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for t in _group_tasks(pgid):
        try:
            raw = (t / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")].rstrip("0123456789")
        fields = raw.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _slot_schedstat(pgid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of the keyed task thread
    ("bars-signals -> ..."), from /proc/<pid>/task/<tid>/schedstat; None if not found."""
    for t in _group_tasks(pgid):
        try:
            if (t / "comm").read_text().startswith("bars-signals"):
                run_ns, wait_ns, _ = (t / "schedstat").read_text().split()
                return int(run_ns), int(wait_ns)
        except (OSError, ValueError):
            continue
    return None


def _component_groups(state: Any, procs: _Procs) -> dict[str, int]:
    """Process group per component: the stack's (kafka, minio, registry, each its own
    session) and this benchmark's children (job, simulator, forwarder)."""
    groups = {name: comp.pid for name, comp in state.components.items()}
    groups.update({name: pid for name, pid in procs.started})
    return groups


def _components_cpu_s(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds per component (process group), plus this benchmark process."""
    out = {name: _group_cpu_s(pgid) for name, pgid in groups.items()}
    t = os.times()
    out["bench"] = t.user + t.system
    return out


def _worst_seconds(at_s: list[float], lat_ms: list[float], n: int = 5) -> list[dict[str, float]]:
    """The ``n`` one-second windows of the measurement with the highest latency: when the
    tail happens (periodic, e.g. with checkpoints, or a burst) says more than its size."""
    per: dict[int, list[float]] = {}
    for t, v in zip(at_s, lat_ms, strict=True):
        per.setdefault(int(t), []).append(v)
    worst = sorted(per.items(), key=lambda kv: max(kv[1]), reverse=True)[:n]
    return [
        {"second": float(s), "max_ms": max(v), "p50_ms": _pct(v, 50), "n": float(len(v))}
        for s, v in sorted(worst)
    ]


class _Procs:
    """Every process this benchmark starts; stopped in reverse order (by pid/group)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[tuple[str, int]] = []

    def spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> int:
        from torghut.stack import procs

        pid = procs.spawn(cmd, self.log_dir / f"{name}.log", env=env)
        self.started.append((name, pid))
        return pid

    def check(self, *names: str) -> None:
        from torghut.stack import procs

        for name, pid in self.started:
            if (not names or name in names) and not procs.alive(pid):
                raise RuntimeError(
                    f"{name} (pid {pid}) exited; see {self.log_dir / (name + '.log')}"
                )

    def stop(self, name: str | None = None) -> None:
        from torghut.stack import procs

        for entry in reversed(list(self.started)):
            if name is None or entry[0] == name:
                procs.stop(entry[1])
                self.started.remove(entry)


class _Collector(threading.Thread):
    """Reads a topic from its end (assign, no group join); keeps (receive ns, value bytes)."""

    def __init__(self, bootstrap: str, topic: str, isolation: str) -> None:
        super().__init__(name=f"collect-{topic}", daemon=True)
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        self.topic = topic
        self.c = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-pipeline-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "fetch.wait.max.ms": 10,
                "logger": _quiet,
            }
        )
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.c.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
        self.items: list[tuple[int, bytes]] = []
        self._halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                # poll returns as soon as one record is there (consume(n, t) would wait for
                # n records or t and add that wait to every latency measured); then take
                # what else has already arrived without waiting
                first = self.c.poll(0.05)
                now = time.time_ns()
                self.ready.set()
                if first is None:
                    continue
                for m in [first, *self.c.consume(1000, 0)]:
                    if m.error() is None:
                        self.items.append((now, m.value()))
        finally:
            self.c.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _job_env(
    state: Any,
    *,
    run_id: str,
    phase: str,
    group: str,
    offsets: str,
    provisional_ms: int,
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, str]:
    return {
        "TORGHUT_TA_KAFKA_BOOTSTRAP": state.kafka_bootstrap,
        "TORGHUT_TA_REGISTRY_URL": state.registry_url,
        "TORGHUT_TA_S3_ENDPOINT": state.s3_endpoint,
        "TORGHUT_TA_S3_ACCESS_KEY": state.s3_access_key,
        "TORGHUT_TA_S3_SECRET_KEY": state.s3_secret_key,
        "TORGHUT_TA_CHECKPOINT_DIR": f"s3a://{state.s3_bucket}/bench-pipeline/{run_id}/{phase}",
        "TORGHUT_TA_CHECKPOINT_INTERVAL_MS": str(
            args.throughput_checkpoint_interval_ms or args.checkpoint_interval_ms
            if phase == "throughput"
            else args.checkpoint_interval_ms
        ),
        "TORGHUT_TA_STARTING_OFFSETS": offsets,
        "TORGHUT_TA_CONSUMER_GROUP": group,
        # one prefix for both phases: a fresh job aborts the lingering transactions of the
        # previous (killed) one, which would otherwise hold read_committed readers back
        "TORGHUT_TA_TRANSACTIONAL_ID_PREFIX": f"bench-pipeline-{run_id}",
        "TORGHUT_TA_TRANSACTION_TIMEOUT_MS": "60000",
        "TORGHUT_TA_PROVISIONAL_INTERVAL_MS": str(provisional_ms),
        "TORGHUT_TA_OUT_OF_ORDERNESS_MS": str(args.out_of_orderness_ms),
        "TORGHUT_TA_STATUS_INTERVAL_MS": "1000",
        "TORGHUT_TA_JOB_NAME": f"bench-pipeline-{phase}",
        "FLINK_LOG_DIR": str(log_dir / f"flink-{phase}"),
    }


def _spawn_job(procs: _Procs, name: str, env: dict[str, str]) -> int:
    return procs.spawn(name, [sys.executable, "-m", "torghut.cli", "ta", "--no-stack"], env)


# --- phase 1+2: live latency ----------------------------------------------------------------


def live_phase(state: Any, args: argparse.Namespace, procs: _Procs, run_id: str) -> dict[str, Any]:
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer
    from shared.topics import TA_BARS_1S, TA_SIGNALS
    from torghut.stack.procs import free_port, port_open

    symbols = _symbols(args.symbols)
    per_symbol = args.rate / 2 / len(symbols)
    load_before = _uptime()
    sig = _Collector(state.kafka_bootstrap, TA_SIGNALS.name, "read_uncommitted")
    bars = _Collector(state.kafka_bootstrap, TA_BARS_1S.name, "read_committed")
    sig.start()
    bars.start()
    sig.ready.wait(10)
    bars.ready.wait(10)
    env = _job_env(
        state,
        run_id=run_id,
        phase="live",
        group=f"bench-live-{run_id}",
        offsets="latest",
        provisional_ms=args.provisional_interval_ms,
        args=args,
        log_dir=procs.log_dir,
    )
    t_launch = time.time_ns()
    job_pid = _spawn_job(procs, "ta-live", env)
    _say(
        f"live: job started (provisional every >= {args.provisional_interval_ms} ms, checkpoint "
        f"{args.checkpoint_interval_ms} ms, out-of-orderness {args.out_of_orderness_ms} ms); "
        f"probing until it answers"
    )
    # the job starts at the topics' end ("latest"): probe trades until one comes back as a
    # signal, so the simulator starts against a running, idle job (no start-up backlog)
    deser = AvroDeserializer(SchemaRegistryClient(state.registry_url))
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
    ready = sig.items[0][0]
    _say(f"live: job answered {(ready - t_launch) / NS_PER_S:.1f} s after launch")
    sim_port = free_port()
    procs.spawn(
        "sim",
        [
            sys.executable,
            "-m",
            "torghut.cli",
            "sim",
            "--port",
            str(sim_port),
            "--symbols",
            ",".join(symbols),
            "--trades-per-sec",
            f"{per_symbol:g}",
            "--quotes-per-sec",
            f"{per_symbol:g}",
            "--out-of-order-rate",
            "0",
            "--late-rate",
            "0",
            "--seed",
            "7",
            "--progress-every",
            "0",
        ],
        {},
    )
    deadline = time.monotonic() + 20
    while not port_open(sim_port):
        procs.check("sim")
        if time.monotonic() > deadline:
            raise RuntimeError("the simulator did not open its port")
        time.sleep(0.05)
    procs.spawn(
        "forwarder",
        [sys.executable, "-m", "torghut.cli", "forwarder"],
        {
            "TORGHUT_FWD_ALPACA_URL": f"ws://127.0.0.1:{sim_port}/v2/iex",
            "TORGHUT_FWD_ALPACA_KEY_ID": "bench",
            "TORGHUT_FWD_ALPACA_SECRET_KEY": "bench-secret",
            "TORGHUT_FWD_SYMBOLS": "*",
            "TORGHUT_FWD_KAFKA_BOOTSTRAP": state.kafka_bootstrap,
            "TORGHUT_FWD_REGISTRY_URL": state.registry_url,
            "TORGHUT_FWD_HTTP_PORT": str(free_port()),
            "TORGHUT_FWD_LINGER_MS": str(args.linger_ms),
        },
    )
    _say(
        f"live: simulator {args.rate:g} events/s ({per_symbol:g} trades/s + {per_symbol:g} quotes/s "
        f"x {len(symbols)} symbols) -> forwarder (linger {args.linger_ms} ms); waiting for the first signal"
    )
    deadline = time.monotonic() + 120
    while not any(deser.decode(v)["symbol"] != PROBE for _, v in sig.items[-50:]):
        procs.check("ta-live", "sim", "forwarder")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no market-data signal within 120 s; see {procs.log_dir}")
        time.sleep(0.1)
    _say(
        f"live: first market-data signal; warming up at least {args.warmup:g} s (until the last second's "
        f"p50 < {CAUGHT_UP_MS:.0f} ms, at most {args.warmup_max:g} s), then measuring {args.duration:g} s"
    )
    w_start = time.monotonic()
    w_start_ns = time.time_ns()
    caught_up = False
    while time.monotonic() - w_start < args.warmup_max:
        procs.check("ta-live", "sim", "forwarder")
        time.sleep(0.5)
        now_ns = time.time_ns()
        recent = [
            (r - deser.decode(v)["ingest_ts"]) / NS_PER_MS
            for r, v in sig.items[-600:]
            if r >= now_ns - NS_PER_S
        ]
        caught_up = bool(recent) and _pct(recent, 50) < CAUGHT_UP_MS
        if time.monotonic() - w_start >= args.warmup and caught_up:
            break
    warmup_s = time.monotonic() - w_start
    if not caught_up:
        _say(
            f"live: WARNING: not caught up after {warmup_s:.0f} s (last second's p50 >= {CAUGHT_UP_MS:.0f} ms); "
            f"measuring anyway"
        )
    t0 = time.time_ns()
    t1 = t0 + int(args.duration * NS_PER_S)
    cpu_t0: tuple[int, float] | None = None
    groups = _component_groups(state, procs)
    comp_t0 = (time.time_ns(), _components_cpu_s(groups))
    next_progress = time.monotonic() + 5
    while time.time_ns() < t1:
        procs.check("ta-live", "sim", "forwarder")
        time.sleep(0.2)
        if cpu_t0 is None and time.time_ns() >= t0:
            cpu_t0 = (time.time_ns(), _group_cpu_s(job_pid))
        if time.monotonic() >= next_progress:
            next_progress += 5
            recent = sig.items[-200:]
            lat = [(r - deser.decode(v)["ingest_ts"]) / NS_PER_MS for r, v in recent]
            phase = "measuring" if time.time_ns() >= t0 else "warm-up"
            _say(
                f"live ({phase}): {len(sig.items)} signals, {len(bars.items)} committed bar records; "
                f"last {len(lat)} signals p50 {_pct(lat, 50):.1f} ms max {max(lat, default=0):.1f} ms; "
                f"load {_load()}"
            )
    cpu_t1 = (time.time_ns(), _group_cpu_s(job_pid))
    comp_t1 = (time.time_ns(), _components_cpu_s(groups))
    wall_s = (comp_t1[0] - comp_t0[0]) / NS_PER_S
    component_cores = {
        name: (comp_t1[1][name] - comp_t0[1].get(name, 0.0)) / wall_s for name in comp_t1[1]
    }
    job_cores = (
        (cpu_t1[1] - cpu_t0[1]) / ((cpu_t1[0] - cpu_t0[0]) / NS_PER_S)
        if cpu_t0 is not None and cpu_t1[0] > cpu_t0[0]
        else float("nan")
    )
    # the finals of the last measured seconds need the watermark slack and one more commit
    drain_s = (args.out_of_orderness_ms + 2 * args.checkpoint_interval_ms) / 1000 + 3
    _say(f"live: measured; draining {drain_s:.1f} s for the last final bars")
    end = time.monotonic() + drain_s
    while time.monotonic() < end:
        procs.check("ta-live", "sim", "forwarder")
        time.sleep(0.2)
    load_after = _uptime()
    procs.stop("forwarder")
    procs.stop("sim")
    procs.stop("ta-live")
    sig.stop()
    bars.stop()

    live_ingest, live_event, emit_minus_ingest, recv_minus_emit = [], [], [], []
    live_at: list[float] = []  # receive time, s since the measurement started
    finals_per_signal = 0
    warm: list[float] = []
    for recv, value in sig.items:
        if w_start_ns <= recv < t0:
            rec = deser.decode(value)
            if rec["symbol"] != PROBE and not rec["is_final"]:
                warm.append((recv - rec["ingest_ts"]) / NS_PER_MS)
            continue
        if not t0 <= recv < t1:
            continue
        rec = deser.decode(value)
        if rec["symbol"] == PROBE:
            continue
        if rec["is_final"]:
            finals_per_signal += 1
            continue
        live_ingest.append((recv - rec["ingest_ts"]) / NS_PER_MS)
        live_at.append((recv - t0) / NS_PER_S)
        live_event.append((recv - rec["event_ts"]) / NS_PER_MS)
        emit_minus_ingest.append((rec["emit_ts"] - rec["ingest_ts"]) / NS_PER_MS)
        recv_minus_emit.append((recv - rec["emit_ts"]) / NS_PER_MS)
    final_end, final_wm, final_commit = [], [], []
    seen: set[tuple[str, int]] = set()
    for recv, value in bars.items:
        rec = deser.decode(value)
        if not rec["is_final"] or rec["symbol"] == PROBE:
            continue
        end_ns = _end_ns(rec["window"]["end"])
        if not t0 <= end_ns < t1:
            continue
        seen.add((rec["symbol"], end_ns))
        final_end.append((recv - end_ns) / NS_PER_MS)
        final_wm.append((recv - end_ns) / NS_PER_MS - args.out_of_orderness_ms)
        final_commit.append((recv - rec["emit_ts"]) / NS_PER_MS)
    # a read_committed reader gets records in bursts, one per transaction commit (= checkpoint)
    batch_times = sorted({recv for recv, _ in bars.items if t0 <= recv < t1})
    bursts = [
        t for i, t in enumerate(batch_times) if i == 0 or t - batch_times[i - 1] > 150 * NS_PER_MS
    ]
    commit_gaps = [(b - a) / NS_PER_MS for a, b in itertools.pairwise(bursts)]
    expected_bars = len(symbols) * int((t1 - t0) // NS_PER_S)
    return {
        "symbols": len(symbols),
        "rate_events_per_s": args.rate,
        "duration_s": args.duration,
        "job_launch_to_ready_s": (ready - t_launch) / NS_PER_S,
        "warmup_s": warmup_s,
        "caught_up": caught_up,
        "job_cpu_cores": job_cores,
        "provisional_signals": len(live_ingest),
        "provisional_signals_per_s": len(live_ingest) / args.duration,
        "final_signals": finals_per_signal,
        "live_recv_minus_ingest_ms": _dist(live_ingest),
        "live_recv_minus_event_ms": _dist(live_event),
        "warmup_recv_minus_ingest_ms": _dist(warm),
        "live_emit_minus_ingest_ms": _dist(emit_minus_ingest),
        "live_recv_minus_emit_ms": _dist(recv_minus_emit),
        "final_bars": len(final_end),
        "final_bars_expected_about": expected_bars,
        "final_distinct": len(seen),
        "final_recv_minus_window_end_ms": _dist(final_end),
        "final_recv_minus_watermark_ms": _dist(final_wm),
        "final_recv_minus_emit_ms": _dist(final_commit),
        "commit_interval_ms": _dist(commit_gaps),
        "load_before": load_before,
        "load_after": load_after,
        "component_cores": component_cores,
        "worst_seconds": _worst_seconds(live_at, live_ingest),
        "_live": live_ingest,
        "_live_at": live_at,
        "_live_event": live_event,
        "_final": final_end,
    }


# --- phase 3: throughput --------------------------------------------------------------------


def _backlog_events(
    symbols: list[str], trades: int, quote_ratio: float, base_ns: int, seed: int = 11
):
    """(kind, symbol, event_ns, a, b, c, d) in event-time order: 25 trades/s per symbol of event time."""
    rng = random.Random(seed)
    spacing = NS_PER_S // (25 * len(symbols))
    price = {s: 100.0 + 10 * i for i, s in enumerate(symbols)}
    quote_acc = 0.0
    for i in range(trades):
        sym = symbols[i % len(symbols)]
        ts = base_ns + i * spacing
        p = price[sym] = max(1.0, price[sym] * (1 + rng.gauss(0, 0.0004)))
        yield ("t", sym, ts, round(p, 4), float(rng.randint(1, 500)), 1_000_000 + i, 0.0)
        quote_acc += quote_ratio
        while quote_acc >= 1.0:
            quote_acc -= 1.0
            yield (
                "q",
                sym,
                ts + 1,
                round(p - 0.01, 4),
                round(p + 0.01, 4),
                float(rng.randint(1, 30) * 100),
                float(rng.randint(1, 30) * 100),
            )


def _end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-offsets-{time.time_ns()}",
            "logger": _quiet,
        }
    )
    try:
        out = {}
        for t in topics:
            parts = c.list_topics(t, timeout=10).topics[t].partitions
            total = 0
            for p in parts:
                for attempt in range(60):  # right after topic creation the leader may move
                    try:
                        lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
                        break
                    except KafkaException:
                        if attempt == 59:
                            raise
                        time.sleep(0.5)
                total += hi - lo
            out[t] = total
        return out
    finally:
        c.close()


def pending_before_last_status(statuses: list[dict[str, Any]], total_in: int) -> bool:
    """True while the job has records left (per its last status)."""
    return statuses[-1]["records_in"] < total_in * 0.95


def throughput_phase(
    state: Any, args: argparse.Namespace, procs: _Procs, run_id: str
) -> dict[str, Any]:
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer
    from shared.topics import QUOTES, TA_BARS_1S, TA_STATUS, TRADES

    symbols = _symbols(args.symbols)
    n = args.throughput_trades
    pre = _end_offsets(state.kafka_bootstrap, [TRADES.name, QUOTES.name])
    span_ns = n * (NS_PER_S // (25 * len(symbols)))
    base_ns = (time.time_ns() - span_ns - 120 * NS_PER_S) // NS_PER_S * NS_PER_S
    _say(
        f"throughput: producing {n:,} trades (+{args.throughput_quote_ratio:g} quotes/trade) over "
        f"{len(symbols)} symbols, {span_ns / NS_PER_S:.0f} s of event time"
    )
    prod = EnvelopeProducer(state)
    t_prod = time.monotonic()
    last_end: dict[str, int] = {}
    trades = quotes = 0
    max_ts = base_ns
    for ev in _backlog_events(symbols, n, args.throughput_quote_ratio, base_ns):
        kind, sym, ts, a, b, c, d = ev
        if kind == "t":
            prod.trade(sym, ts, a, b, int(c))
            trades += 1
            last_end[sym] = (ts // NS_PER_S + 1) * NS_PER_S
            if trades % 100_000 == 0:
                _say(f"throughput: produced {trades:,} trades")
        else:
            prod.quote(sym, ts, a, b, c, d)
            quotes += 1
        max_ts = ts
    # one trade and one quote past every bar end + slack move both partitions' watermarks on
    sentinel_ts = (
        (max_ts // NS_PER_S + 1) * NS_PER_S + args.out_of_orderness_ms * NS_PER_MS + NS_PER_S
    )
    prod.trade(SENTINEL, sentinel_ts, 1.0, 1.0, 1)
    prod.quote(SENTINEL, sentinel_ts, 0.99, 1.01, 100.0, 100.0)
    prod.flush()
    produce_s = time.monotonic() - t_prod
    total_in = trades + quotes + 2 + pre[TRADES.name] + pre[QUOTES.name]
    trade_share = (trades + 1 + pre[TRADES.name]) / total_in
    _say(
        f"throughput: backlog of {total_in:,} raw records ready ({produce_s:.1f} s to produce"
        f"{'; includes ' + str(pre) + ' already in the topics' if any(pre.values()) else ''})"
    )

    status = _Collector(state.kafka_bootstrap, TA_STATUS.name, "read_uncommitted")
    bars = _Collector(state.kafka_bootstrap, TA_BARS_1S.name, "read_committed")
    status.start()
    bars.start()
    status.ready.wait(10)
    bars.ready.wait(10)
    load_before = _uptime()
    env = _job_env(
        state,
        run_id=run_id,
        phase="throughput",
        group=f"bench-tput-{run_id}",
        offsets="committed-earliest",
        provisional_ms=args.throughput_provisional_interval_ms,
        args=args,
        log_dir=procs.log_dir,
    )
    t_launch = time.time_ns()
    job_pid = _spawn_job(procs, "ta-throughput", env)
    cpu_samples: list[tuple[int, float]] = []
    threads_a: tuple[int, dict[str, float]] | None = None
    threads_b: tuple[int, dict[str, float]] | None = None
    sched_a: tuple[int, int] | None = None
    sched_b: tuple[int, int] | None = None
    _say(
        f"throughput: job started (parallelism 1, fresh group, provisional every >= "
        f"{args.throughput_provisional_interval_ms} ms); waiting for the final bar of every symbol's last second"
    )
    deser = AvroDeserializer(SchemaRegistryClient(state.registry_url))
    statuses: list[dict[str, Any]] = []
    pending = dict(last_end)
    done_ns = 0
    si = bi = 0
    deadline = time.monotonic() + max(300.0, n / 1000)
    next_progress = time.monotonic() + 5
    while pending:
        procs.check("ta-throughput")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"throughput run incomplete after the deadline: {len(pending)} symbols "
                f"without their last final bar; see {procs.log_dir}"
            )
        time.sleep(0.2)
        cpu_samples.append((time.time_ns(), _group_cpu_s(job_pid)))
        if statuses and threads_a is None:
            threads_a = (time.time_ns(), _thread_cpu_s(job_pid))
            sched_a = _slot_schedstat(job_pid)
        if statuses and not pending_before_last_status(statuses, total_in):
            threads_b = (time.time_ns(), _thread_cpu_s(job_pid))
            sched_b = _slot_schedstat(job_pid)
        for recv, value in status.items[si:]:
            rec = deser.decode(value)
            statuses.append(
                {
                    "recv": recv,
                    "emit": rec["emit_ts"],
                    "records_in": rec["records_in"],
                    "records_out": rec["records_out"],
                }
            )
        si = len(status.items)
        for recv, value in bars.items[bi:]:
            rec = deser.decode(value)
            sym = rec["symbol"]
            if rec["is_final"] and sym in pending and _end_ns(rec["window"]["end"]) >= pending[sym]:
                del pending[sym]
                done_ns = max(done_ns, recv)
        bi = len(bars.items)
        if time.monotonic() >= next_progress:
            next_progress += 5
            last = statuses[-1] if statuses else None
            msg = f"{last['records_in']:,}/{total_in:,} records in" if last else "no status yet"
            _say(
                f"throughput: {msg}; {len(last_end) - len(pending)}/{len(last_end)} symbols done; "
                f"load {_load()}"
            )
    load_after = _uptime()
    procs.stop("ta-throughput")
    status.stop()
    bars.stop()
    statuses.sort(key=lambda s: s["emit"])
    if len(statuses) < 2:
        raise RuntimeError("fewer than two ta.status records: cannot compute a rate")
    first, last = statuses[0], statuses[-1]
    rate_all = (last["records_in"] - first["records_in"]) / (
        (last["emit"] - first["emit"]) / NS_PER_S
    )
    steady = statuses[1:] if len(statuses) > 2 else statuses
    rate_steady = (steady[-1]["records_in"] - steady[0]["records_in"]) / (
        (steady[-1]["emit"] - steady[0]["emit"]) / NS_PER_S
    )
    # warm: past the first third of the backlog (JIT compiled the hot paths; the C2 compiler
    # thread alone takes ~0.3 of this machine's 2 cores in the first 20 s), before the tail
    warm = [s for s in statuses if total_in * WARM_FROM <= s["records_in"] <= total_in * 0.95]
    rate_warm = (
        (warm[-1]["records_in"] - warm[0]["records_in"])
        / ((warm[-1]["emit"] - warm[0]["emit"]) / NS_PER_S)
        if len(warm) >= 3
        else float("nan")
    )
    e2e_s = (done_ns - first["emit"]) / NS_PER_S

    def cpu_at(t_ns: int) -> tuple[int, float]:
        return min(cpu_samples, key=lambda c: abs(c[0] - t_ns))

    (ca_t, ca), (cb_t, cb) = cpu_at(first["emit"]), cpu_at(last["emit"])
    cpu_window_s = (cb_t - ca_t) / NS_PER_S
    job_cores = (cb - ca) / cpu_window_s if cpu_window_s > 0 else float("nan")
    events_in_window = rate_all * cpu_window_s
    threads: list[tuple[str, float]] = []
    busiest = 0.0
    slot_on_cpu = slot_waiting = float("nan")
    if threads_a and threads_b and sched_a and sched_b and threads_b[0] > threads_a[0]:
        span = threads_b[0] - threads_a[0]
        slot_on_cpu = (sched_b[0] - sched_a[0]) / span
        slot_waiting = (sched_b[1] - sched_a[1]) / span
    if threads_a is not None and threads_b is not None and threads_b[0] > threads_a[0]:
        wall = (threads_b[0] - threads_a[0]) / NS_PER_S
        threads = sorted(
            ((k, (v - threads_a[1].get(k, 0.0)) / wall) for k, v in threads_b[1].items()),
            key=lambda kv: -kv[1],
        )[:8]
    busiest = max(
        (c for name, c in threads if name.startswith(("Source", "bars-signals"))), default=0.0
    )
    points = [((s["emit"] - first["emit"]) / NS_PER_S, s["records_in"]) for s in statuses]
    return {
        "trades": trades,
        "quotes": quotes,
        "raw_records": total_in,
        "trade_share": trade_share,
        "produce_s": produce_s,
        "job_launch_to_first_record_s": (first["emit"] - t_launch) / NS_PER_S,
        "status_points": len(statuses),
        "events_per_s": rate_all,
        "trades_per_s": rate_all * trade_share,
        "events_per_s_after_first_s": rate_steady,
        "events_per_s_warm": rate_warm,
        "trades_per_s_warm": rate_warm * trade_share,
        "warm_status_points": len(warm),
        "trades_per_s_after_first_s": rate_steady * trade_share,
        "end_to_end_s": e2e_s,
        "end_to_end_trades_per_s": (trades / e2e_s) if e2e_s > 0 else float("nan"),
        "job_cpu_cores": job_cores,
        "job_threads_cores": threads,
        # the busiest task thread (a pipeline stage; PyFlink thread mode runs Python in it) is the
        # bottleneck; on a contended machine it gets < 1 core, so project it onto a full core
        "busiest_task_thread_cores": busiest,
        "projected_trades_per_s_full_core": (rate_all * trade_share / busiest)
        if busiest > 0
        else float("nan"),
        "job_cpu_us_per_event": (cb - ca) / events_in_window * 1e6
        if events_in_window > 0
        else float("nan"),
        "slot_thread_on_cpu": slot_on_cpu,
        "slot_thread_waiting_for_cpu": slot_waiting,
        # the slot's capacity: trades per second the slot thread spent on a CPU (schedstat)
        "trades_per_slot_cpu_s": rate_all * trade_share / slot_on_cpu
        if slot_on_cpu > 0
        else float("nan"),
        "checkpoint_interval_ms": args.throughput_checkpoint_interval_ms
        or args.checkpoint_interval_ms,
        "provisional_interval_ms": args.throughput_provisional_interval_ms,
        "load_before": load_before,
        "load_after": load_after,
        "_points": points,
    }


# --- in-process cost breakdown of the job's Python work per trade -----------------------------


def profile_breakdown(
    registry_url: str,
    symbols: list[str],
    trades: int = 20_000,
    quote_ratio: float = 0.2,
    provisional_interval_ms: int = 200,
) -> dict[str, Any]:
    """Time each Python step the job does per event, as the job does it (same code, no Flink)."""
    from flink_job.envelope_reader import EventReader
    from flink_job.records import microbar_record, signal_record
    from flink_job.symbol_processor import SymbolProcessor, SymbolState
    from shared.framing import frame_record
    from shared.indicators import SignalConfig, SignalState
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer, AvroSerializer
    from shared.topics import QUOTES, TA_BARS_1S, TA_SIGNALS, TRADES

    reg = SchemaRegistryClient(registry_url)
    enc_t, enc_q = AvroSerializer(reg, TRADES), AvroSerializer(reg, QUOTES)
    base = (time.time_ns() - 3600 * NS_PER_S) // NS_PER_S * NS_PER_S
    raw: list[bytes] = []
    seq: dict[tuple[str, str], int] = {}
    for kind, sym, ts, a, b, c, d in _backlog_events(symbols, trades, quote_ratio, base, seed=3):
        seq[(kind, sym)] = seq.get((kind, sym), 0) + 1
        common = {
            "ingest_ts": ts,
            "event_ts": ts,
            "feed": "iex",
            "symbol": sym,
            "seq": seq[(kind, sym)],
            "is_final": True,
            "source": "bench",
            "window": None,
            "trace_id": f"{sym}-{c}",
        }
        if kind == "t":
            raw.append(
                enc_t.encode(
                    {
                        **common,
                        "channel": "trades",
                        "payload": {
                            "id": int(c),
                            "exchange": "V",
                            "price": a,
                            "size": b,
                            "conditions": ["@"],
                            "tape": "C",
                        },
                    }
                )
            )
        else:
            raw.append(
                enc_q.encode(
                    {
                        **common,
                        "channel": "quotes",
                        "payload": {
                            "bid_exchange": "V",
                            "bid_price": a,
                            "bid_size": c,
                            "ask_exchange": "V",
                            "ask_price": b,
                            "ask_size": d,
                            "conditions": ["R"],
                            "tape": "C",
                        },
                    }
                )
            )
    deser = AvroDeserializer(reg, "torghut.Envelope")
    bars_out, signals_out = AvroSerializer(reg, TA_BARS_1S), AvroSerializer(reg, TA_SIGNALS)
    cost = dict.fromkeys(
        (
            "decode",
            "on_trade_quote",
            "state_log_append",
            "on_watermark",
            "snapshot_pickle",
            "records_build",
            "avro_encode",
            "frame",
        ),
        0,
    )
    clock = time.perf_counter_ns
    # what SymbolTaFunction does per record, step by step (flink_job/functions.py)
    t = clock()
    reader = EventReader(deser)
    decoded = [(reader.read(data, None), data) for data in raw]
    cost["decode"] = clock() - t
    events = [(ev, data) for ev, data in decoded if ev is not None]
    proc = SymbolProcessor(provisional_interval_ns=provisional_interval_ms * NS_PER_MS)
    cfg = SignalConfig.parse("04:00", 5000)
    states = {s: (SymbolState(), SignalState(cfg)) for s in symbols}
    emissions_n = finals = 0
    wm_ms = 0
    cur_sec = events[0][0][2] // NS_PER_S if events else 0
    ooo_ns = 1000 * NS_PER_MS

    def emit(ems: list[Any], key: bytes) -> None:
        nonlocal emissions_n
        for em in ems:
            now = time.time_ns()
            t0 = clock()
            mb, sg = microbar_record(em, now), signal_record(em, now)
            t1 = clock()
            b1, b2 = bars_out.encode(mb), signals_out.encode(sg)
            t2 = clock()
            frame_record(TA_BARS_1S.name, key, b1)
            frame_record(TA_SIGNALS.name, key, b2)
            t3 = clock()
            cost["records_build"] += t1 - t0
            cost["avro_encode"] += t2 - t1
            cost["frame"] += t3 - t2
            emissions_n += 1

    for ev, data in events:
        kind, sym, ts = ev[0], ev[1], ev[2]
        if ts // NS_PER_S > cur_sec:  # watermark (1 s slack) moved: the bars' timers fire
            cur_sec = ts // NS_PER_S
            wm_ms = (ts - ooo_ns) // NS_PER_MS - 1
            for s, (st, sig) in states.items():
                t0 = clock()
                ems = proc.on_watermark(st, sig, wm_ms)
                t1 = clock()
                cost["on_watermark"] += t1 - t0
                if ems:
                    # a bar close compacts: both snapshots are pickled, the log cleared
                    t0 = clock()
                    pickle.dumps(sig.to_state())
                    pickle.dumps(st.to_state())
                    cost["snapshot_pickle"] += clock() - t0
                    finals += len(ems)
                    emit(ems, s.encode())
        st, sig = states[sym]
        t0 = clock()
        if kind == "t":
            res = proc.on_trade(st, sig, ev, wm_ms, time.time_ns())
        else:
            proc.on_quote(st, ev, wm_ms, wm_ms)
            res = None
        t1 = clock()
        # the log entry as the PICKLED_BYTE_ARRAY list state receives it
        pickle.dumps(wm_ms.to_bytes(8, "big", signed=True) + data)
        t2 = clock()
        cost["on_trade_quote"] += t1 - t0
        cost["state_log_append"] += t2 - t1
        if res is not None and res.emissions:
            emit(res.emissions, sym.encode())
    total = sum(cost.values())
    n_trades = sum(1 for e, _ in events if e[0] == "t")
    return {
        "trades": n_trades,
        "events": len(events),
        "emissions": emissions_n,
        "final_emissions": finals,
        "us_per_trade": {k: v / 1000 / n_trades for k, v in cost.items()},
        "total_us_per_trade": total / 1000 / n_trades,
        "python_only_trades_per_s": n_trades / (total / NS_PER_S),
    }


# --- report ---------------------------------------------------------------------------------


def _fmt(d: dict[str, float], key: str) -> str:
    v = d.get(key)
    return f"{v:8.1f}" if isinstance(v, float) else f"{'-':>8}"


def _print_summary(res: dict[str, Any]) -> None:
    args = res["settings"]
    print()
    print(f"torghut bench pipeline — {res['timestamp']}  ({os.cpu_count()} CPUs)")
    print(f"load: {res['uptime_start']}")
    live = res.get("live")
    if live:
        print(
            f"\nlive: {live['rate_events_per_s']:g} events/s over {live['symbols']} symbols, "
            f"{live['duration_s']:g} s measured, provisional interval {args['provisional_interval_ms']} ms, "
            f"forwarder linger {args['linger_ms']} ms; {live['provisional_signals']} provisional signals "
            f"({live['provisional_signals_per_s']:.0f}/s)"
        )
        print(f"{'latency (ms)':<58}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}{'n':>8}")
        rows = [
            ("provisional: recv - ingest_ts (frame read -> readable)", "live_recv_minus_ingest_ms"),
            ("provisional: recv - event_ts (synthetic trade time)", "live_recv_minus_event_ms"),
            ("  of which forwarder read -> job emit (emit - ingest)", "live_emit_minus_ingest_ms"),
            ("  of which job emit -> readable (recv - emit)", "live_recv_minus_emit_ms"),
            ("final bar: recv - window.end (read_committed)", "final_recv_minus_window_end_ms"),
            (
                "  minus out-of-orderness (watermark could close it)",
                "final_recv_minus_watermark_ms",
            ),
            ("  job emit -> committed readable (recv - emit)", "final_recv_minus_emit_ms"),
            ("warm-up, not measured: provisional recv - ingest_ts", "warmup_recv_minus_ingest_ms"),
        ]
        for label, key in rows:
            d = live.get(key) or {"n": 0}
            print(
                f"{label:<58}{_fmt(d, 'p50')}{_fmt(d, 'p90')}{_fmt(d, 'p99')}{_fmt(d, 'max')}{d['n']:>8}"
            )
        print(
            f"job process tree used {live['job_cpu_cores']:.2f} cores during the measurement; job ready "
            f"{live['job_launch_to_ready_s']:.1f} s after launch; warm-up {live['warmup_s']:.1f} s "
            f"({'caught up' if live['caught_up'] else 'NOT caught up'})"
        )
        cc = live.get("component_cores") or {}
        if cc:
            print(
                "CPU during the measurement (cores, of "
                f"{os.cpu_count()}): "
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cc.items(), key=lambda kv: -kv[1]))
            )
        ws = live.get("worst_seconds") or []
        if ws:
            print(
                "worst seconds of the measurement (s: max / p50 ms): "
                + ", ".join(f"{w['second']:.0f}: {w['max_ms']:.0f} / {w['p50_ms']:.0f}" for w in ws)
            )
        ci = live["commit_interval_ms"]
        print(
            f"observed commit cadence (bursts seen by the read_committed reader): median "
            f"{ci.get('p50', float('nan')):.0f} ms, max {ci.get('max', float('nan')):.0f} ms over "
            f"{ci['n']} gaps (configured checkpoint interval {args['checkpoint_interval_ms']} ms)"
        )
        print(
            f"final bars: {live['final_bars']} read ({live['final_distinct']} distinct) of about "
            f"{live['final_bars_expected_about']} expected; checkpoint interval "
            f"{args['checkpoint_interval_ms']} ms, out-of-orderness {args['out_of_orderness_ms']} ms"
        )
        p99 = live["live_recv_minus_ingest_ms"].get("p99", float("nan"))
        fp99 = live["final_recv_minus_window_end_ms"].get("p99", float("nan"))
        wp99 = live["final_recv_minus_watermark_ms"].get("p99", float("nan"))
        budget = args["checkpoint_interval_ms"] + 200
        print(
            f"target live p99 <= {LIVE_TARGET_P99_MS:.0f} ms: {p99:.1f} ms -> "
            f"{'MET' if p99 <= LIVE_TARGET_P99_MS else 'MISSED'}"
        )
        print(
            f"target final p99 <= checkpoint + 200 = {budget} ms: from window.end {fp99:.0f} ms -> "
            f"{'MET' if fp99 <= budget else 'MISSED'}; from window.end + out-of-orderness {wp99:.0f} ms "
            f"-> {'MET' if wp99 <= budget else 'MISSED'}"
        )
        ooo = args["out_of_orderness_ms"]
        print(
            f"theory with the 10 s production checkpoint: final latency = {ooo} ms slack + wait for the "
            f"next commit (uniform 0..10 s) + commit time: p50 ~ {ooo + 5000} ms, p99 ~ {ooo + 9900} ms + commit"
        )
    tp = res.get("throughput")
    if tp:
        print(
            f"\nthroughput (parallelism 1, one slot): backlog of {tp['trades']:,} trades + {tp['quotes']:,} "
            f"quotes, provisional interval {tp['provisional_interval_ms']} ms, checkpoint interval "
            f"{tp.get('checkpoint_interval_ms', '?')} ms"
        )
        print(
            f"  job records_in slope   : {tp['events_per_s']:>9,.0f} events/s = {tp['trades_per_s']:>9,.0f} "
            f"trades/s ({tp['status_points']} ta.status points)"
        )
        print(
            f"  after its first second : {tp['events_per_s_after_first_s']:>9,.0f} events/s = "
            f"{tp['trades_per_s_after_first_s']:>9,.0f} trades/s"
        )
        print(
            f"  warm (records {WARM_FROM:.0%}..95% of the backlog, JIT done): "
            f"{tp['events_per_s_warm']:>9,.0f} events/s = {tp['trades_per_s_warm']:>9,.0f} trades/s "
            f"({tp['warm_status_points']} points)"
        )
        print(
            f"  end to end             : {tp['end_to_end_trades_per_s']:>9,.0f} trades/s (first record "
            f"processed -> last final bar committed+read, {tp['end_to_end_s']:.1f} s)"
        )
        print(
            f"  job launch -> first record: {tp['job_launch_to_first_record_s']:.1f} s; job process tree used "
            f"{tp['job_cpu_cores']:.2f} cores while processing = {tp['job_cpu_us_per_event']:.0f} us CPU "
            f"per event (JVM + embedded Python)"
        )
        if tp["job_threads_cores"]:
            print(
                "  busiest job threads (cores): "
                + ", ".join(
                    f"{name!r} {cores:.2f}"
                    for name, cores in tp["job_threads_cores"]
                    if cores >= 0.01
                )
            )
        print(
            f"  projection: busiest task thread used {tp['busiest_task_thread_cores']:.2f} cores -> "
            f"~{tp['projected_trades_per_s_full_core']:,.0f} trades/s if it had a whole core (estimate, "
            f"not a measurement)"
        )
        print(
            f"  slot thread (schedstat): on a CPU {tp['slot_thread_on_cpu']:.2f} of the time, "
            f"runnable but waiting for a CPU {tp['slot_thread_waiting_for_cpu']:.2f}, blocked "
            f"{1 - tp['slot_thread_on_cpu'] - tp['slot_thread_waiting_for_cpu']:.2f} -> "
            f"{tp['trades_per_slot_cpu_s']:,.0f} trades per second of slot CPU time"
        )
        print(
            f"  target >= {THROUGHPUT_TARGET:,.0f} trades/s per slot: wall rate "
            f"{'MET' if tp['trades_per_s'] >= THROUGHPUT_TARGET else 'MISSED'} (warm "
            f"{'MET' if tp['trades_per_s_warm'] >= THROUGHPUT_TARGET else 'MISSED'}); "
            f"per second of slot CPU time "
            f"{'MET' if tp['trades_per_slot_cpu_s'] >= THROUGHPUT_TARGET else 'MISSED'}"
        )
    prof = res.get("profile")
    if prof:
        print(
            f"\nPython work per trade, in process, no Flink ({prof['trades']:,} trades, "
            f"{prof['events']:,} events, {prof['emissions']:,} emissions):"
        )
        for k, v in prof["us_per_trade"].items():
            print(f"  {k:<22}{v:8.2f} us")
        print(
            f"  {'total':<22}{prof['total_us_per_trade']:8.2f} us  -> at most "
            f"{prof['python_only_trades_per_s']:,.0f} trades/s from the Python code alone"
        )
    print(f"\nload at end: {res['uptime_end']}")


def _plot(out_dir: Path, stamp: str, res: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    live = res.get("live") or {}
    tp = res.get("throughput")
    args = res["settings"]
    ncol = 3 if tp else 2
    fig = plt.figure(figsize=(17 if tp else 12, 8.4))
    grid = fig.add_gridspec(2, ncol)
    axes = [fig.add_subplot(grid[0, i]) for i in range(ncol)]
    timeline = fig.add_subplot(grid[1, :])

    def hist(
        ax, series: list[tuple[str, list[float], str]], title: str, lines: list[tuple[float, str]]
    ) -> None:
        vals = [v for _, s, _ in series for v in s if v > 0]
        if not vals:
            ax.set_title(title + " (no data)")
            return
        bins = np.logspace(np.log10(max(0.1, min(vals))), np.log10(max(vals) * 1.05), 60)
        for label, s, color in series:
            pos = [v for v in s if v > 0]
            if pos:
                ax.hist(
                    pos,
                    bins=bins,
                    alpha=0.55,
                    color=color,
                    label=f"{label}: p50 {_pct(pos, 50):.1f}, p99 {_pct(pos, 99):.1f} ms",
                )
        for x, label in lines:
            ax.axvline(x, ls="--", color="#c33", lw=1)
            ax.text(
                x,
                ax.get_ylim()[1] * 0.9,
                f" {label}",
                color="#c33",
                fontsize=8,
                rotation=90,
                va="top",
            )
        ax.set_xscale("log")
        ax.set_xlabel("ms (log)")
        ax.set_ylabel("records")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    hist(
        axes[0],
        [
            ("recv - ingest_ts", live.get("_live", []), "#2a7"),
            ("recv - event_ts", live.get("_live_event", []), "#27a"),
        ],
        f"provisional signal readable (read_uncommitted)\n{args['rate']:g} ev/s, "
        f"{live.get('symbols', '?')} symbols, provisional >= {args['provisional_interval_ms']} ms",
        [(LIVE_TARGET_P99_MS, "target p99 50 ms")],
    )
    hist(
        axes[1],
        [("recv - window.end", live.get("_final", []), "#a72")],
        f"final 1 s bar readable (read_committed)\ncheckpoint {args['checkpoint_interval_ms']} ms, "
        f"out-of-orderness {args['out_of_orderness_ms']} ms",
        [
            (args["checkpoint_interval_ms"] + 200.0, "checkpoint+200"),
            (
                args["out_of_orderness_ms"] + args["checkpoint_interval_ms"] + 200.0,
                "ooo+checkpoint+200",
            ),
        ],
    )
    at, lat = live.get("_live_at", []), live.get("_live", [])
    if at:
        timeline.scatter(at, lat, s=2, color="#2a7", alpha=0.5, label="recv - ingest_ts")
        timeline.axhline(LIVE_TARGET_P99_MS, ls="--", color="#c33", lw=1, label="target p99 50 ms")
        timeline.set_yscale("log")
        timeline.set_xlabel("s since the measurement started (receive time)")
        timeline.set_ylabel("ms (log)")
        timeline.set_title("provisional signals over time: when the tail happens", fontsize=10)
        timeline.legend(fontsize=8, loc="upper right")
        timeline.grid(alpha=0.3)
    else:
        timeline.set_title("provisional signals over time (no data)")
    if tp:
        ax = axes[2]
        xs, ys = zip(*tp["_points"], strict=True)
        ax.plot(xs, ys, "o-", color="#2a7", ms=3)
        ax.set_xlabel("s since first record processed")
        ax.set_ylabel("job records_in (ta.status.v1)")
        ax.set_title(
            f"throughput, 1 slot: {tp['trades_per_s']:,.0f} trades/s "
            f"({tp['events_per_s']:,.0f} events/s)\nend to end {tp['end_to_end_trades_per_s']:,.0f} "
            f"trades/s; target 20k trades/s\nprojected on a full core: "
            f"~{tp['projected_trades_per_s_full_core']:,.0f} trades/s "
            f"(busiest task thread {tp['busiest_task_thread_cores']:.2f} cores)",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"torghut bench pipeline {stamp} — {os.cpu_count()} CPUs, load {res.get('loadavg_start')}",
        fontsize=10,
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"pipeline-{stamp}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not k.startswith("_")}
    return obj


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: run the finally blocks that stop what we started


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    from torghut.stack import supervisor
    from torghut.stack.state import StackState

    if args.duration <= 0 or args.rate <= 0:
        raise SystemExit("--duration and --rate must be positive")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{os.getpid()}"
    res: dict[str, Any] = {
        "timestamp": stamp,
        "uptime_start": _uptime(),
        "loadavg_start": _load(),
        "settings": {
            k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)
        },
    }
    prev_term = signal.signal(signal.SIGTERM, _interrupt)
    own_stack = None
    tmp_dir: Path | None = None
    ok = False
    if args.stack_dir:
        state = StackState.load(args.stack_dir)
        log_dir = Path(state.run_dir) / "logs" / f"bench-pipeline-{run_id}"
    else:
        tmp_dir = Path(tempfile.mkdtemp(prefix="torghut-bench-pipeline-"))
        _say(f"starting a stack in {tmp_dir}")
        state = own_stack = supervisor.up(tmp_dir)
        log_dir = tmp_dir / "logs"
    procs = _Procs(log_dir)
    try:
        if not args.skip_throughput:
            res["throughput"] = throughput_phase(state, args, procs, run_id)
        if not args.skip_live:
            res["live"] = live_phase(state, args, procs, run_id)
        if not args.skip_profile:
            _say("profiling the job's Python work per trade in process")
            res["profile"] = profile_breakdown(
                state.registry_url,
                _symbols(args.symbols),
                quote_ratio=args.throughput_quote_ratio,
                provisional_interval_ms=args.throughput_provisional_interval_ms,
            )
        ok = True
    finally:
        procs.stop()
        if own_stack is not None:
            _say("stopping the stack")
            supervisor.down(own_stack)
            if ok and tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            elif tmp_dir is not None:
                _say(f"logs kept in {tmp_dir}")
        signal.signal(signal.SIGTERM, prev_term)
    res["uptime_end"] = _uptime()
    _print_summary(res)
    out_dir = Path(args.out)
    png = _plot(out_dir, stamp, res)
    js = out_dir / f"pipeline-{stamp}.json"
    js.write_text(json.dumps(_strip(res), indent=2, default=str))
    print(f"plot      : {png}\nnumbers   : {js}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_arguments(p)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run(p.parse_args()))
