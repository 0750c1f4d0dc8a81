"""``torghut bench flood``: many symbols for many minutes; do the resources stay flat?

simulator (``--symbols`` always-active symbols plus ``--rotating-symbols`` that take turns:
one of ``--rotation-groups`` groups sends for ``--rotation-period`` s, the others are idle,
so caches must drop them and rebuild them when they return) -> forwarder -> Kafka -> TA job
(parallelism 1, its per-symbol cache idle time ``--cache-idle-s``).

Every ``--interval`` s it samples: forwarder RSS; the job's JVM heap used (Flink's Prometheus
reporter), the RSS of the JVM process (in thread mode the Python of the keyed function runs
inside it) and of Python workers (process mode); the last checkpoint's size and duration;
the forwarder's acked records/s and the job's records_in/s; the symbols holding a batch
buffer in Java (``symbolBuffers``) and in the keyed function's cache (the symbols listed on
``ta.status.v1``). It prints a row per sample, then a table of each series over minutes
1..end (the first minute is warm-up): mean of the first and of the last minute, their
ratio, max/min and the least-squares slope in % of the mean per minute; it saves a plot and
a JSON result. ``FloodRun`` is also what the scaled drill in ``make test`` runs
(``tests/integration/test_symbol_flood.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torghut.bench.children import Procs, torghut_cmd
from torghut.bench.common import load, say, uptime

MB = 1 << 20
SERIES = (
    ("forwarder_rss_mb", "forwarder RSS (MB)"),
    ("job_heap_mb", "job JVM heap used (MB)"),
    ("job_heap_committed_mb", "job JVM heap committed (MB)"),
    ("job_jvm_rss_mb", "job JVM process RSS (MB, thread-mode Python inside)"),
    ("job_python_rss_mb", "job Python workers RSS (MB, process mode)"),
    ("checkpoint_size_mb", "last checkpoint size (MB)"),
    ("checkpoint_duration_ms", "last checkpoint duration (ms)"),
    ("forwarder_records_per_s", "forwarder acked records/s"),
    ("job_records_per_s", "job records_in/s"),
    ("symbol_buffers", "Java symbolBuffers"),
    ("cached_symbols", "Python cached symbols"),
)


@dataclass(frozen=True)
class FloodConfig:
    symbols: int = 10_000
    rotating_symbols: int = 2_000
    rotation_groups: int = 4
    rotation_period_s: float = 15.0
    trades_per_sec: float = 0.1  # per symbol
    quotes_per_sec: float = 0.1
    cache_idle_s: float = 30.0
    checkpoint_interval_ms: int = 10_000
    python_execution_mode: str = "thread"
    seed: int = 11
    # the job's first run reads from here (`latest`: a shared stack's history is not read)
    starting_offsets: str = "latest"
    # -Xmx of the job's local JVM, like a TaskManager's fixed heap ("" = the JVM default,
    # a quarter of RAM, which lets G1 grow the committed heap and the RSS with it)
    job_max_heap: str = "1g"


@dataclass
class Sample:
    t_s: float
    forwarder_rss_mb: float | None = None
    job_heap_mb: float | None = None
    job_heap_committed_mb: float | None = None
    job_jvm_rss_mb: float | None = None
    job_python_rss_mb: float | None = None
    checkpoint_size_mb: float | None = None
    checkpoint_duration_ms: float | None = None
    checkpoints: int | None = None
    forwarder_records_per_s: float | None = None
    job_records_per_s: float | None = None
    symbol_buffers: float | None = None
    cached_symbols: int | None = None
    load: str = ""


# --- /proc --------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """Resident set size of one process (MB), None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            out.append(c)
            todo.append(c)
    return out


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def job_processes(launcher_pid: int) -> tuple[list[int], list[int]]:
    """(JVM pids, Python worker pids) started by a ``torghut ta`` launcher."""
    jvms, workers = [], []
    for p in descendants(launcher_pid):
        comm = _comm(p)
        if comm == "java":
            jvms.append(p)
        elif comm.startswith("python"):
            workers.append(p)
    return jvms, workers


# --- Prometheus -----------------------------------------------------------------------


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of one ``/metrics`` scrape ({} while not up)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def metric(scraped: dict, suffix: str, how: str = "max") -> float | None:
    """One number of the samples whose name ends with ``suffix`` (max or sum), or None."""
    vals = [v for name, ss in scraped.items() if name.endswith(suffix) for _, v in ss]
    vals = [v for v in vals if v == v and v >= 0]  # NaN and Flink's -1 "none yet"
    if not vals:
        return None
    return sum(vals) if how == "sum" else max(vals)


# --- ta.status.v1 ---------------------------------------------------------------------


class StatusWatcher:
    """The job's newest status frame (read_uncommitted): symbols listed, records_in."""

    def __init__(self, state: Any, job_name: str) -> None:
        self.state, self.job_name = state, job_name
        self.cached_symbols: int | None = None
        self.records_in: int | None = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood-status", daemon=True)

    def start(self) -> StatusWatcher:
        self._thread.start()
        return self

    def _run(self) -> None:
        from confluent_kafka import Consumer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroDeserializer
        from shared.topics import TA_STATUS
        from torghut.bench.common import quiet_kafka_logger

        deser = AvroDeserializer(SchemaRegistryClient(self.state.registry_url))
        c = Consumer(
            {
                "bootstrap.servers": self.state.kafka_bootstrap,
                "group.id": f"flood-status-{time.time_ns()}",
                "auto.offset.reset": "latest",
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
                "logger": quiet_kafka_logger,
            }
        )
        c.subscribe([TA_STATUS.name])
        try:
            while not self._stop.is_set():
                msg = c.poll(0.5)
                if msg is None or msg.error() or msg.value() is None:
                    continue
                rec = deser.decode(msg.value())
                if rec.get("job") != self.job_name:
                    continue
                self.cached_symbols = len(rec["symbols"])
                self.records_in = rec["records_in"]
                self.frames += 1
        finally:
            c.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# --- the run --------------------------------------------------------------------------


@dataclass
class FloodRun:
    """Starts job, simulator and forwarder on ``state``'s stack; ``sample()`` measures."""

    state: Any
    procs: Procs
    cfg: FloodConfig
    run_id: str
    job_name: str = "flood"
    samples: list[Sample] = field(default_factory=list)

    def start(self, ready_timeout_s: float = 300.0) -> None:
        from torghut.stack import apps
        from torghut.stack.procs import free_port, port_open

        cfg = self.cfg
        self.metrics_port = free_port()
        env = apps.ta_job_env(
            self.state,
            checkpoint_dir=f"s3a://{self.state.s3_bucket}/bench-flood/{self.run_id}",
            checkpoint_interval_ms=cfg.checkpoint_interval_ms,
            starting_offsets=cfg.starting_offsets,
            consumer_group=f"bench-flood-{self.run_id}",
            transactional_id_prefix=f"bench-flood-{self.run_id}",
            transaction_timeout_ms=60_000,
            job_name=self.job_name,
            metrics_port=self.metrics_port,
            symbol_cache_idle_s=cfg.cache_idle_s,
            python_execution_mode=cfg.python_execution_mode,
        )
        if cfg.job_max_heap:
            env["TORGHUT_TA_LOCAL_JVM_OPTS"] = (
                f"{env.get('TORGHUT_TA_LOCAL_JVM_OPTS', '-XX:TieredStopAtLevel=1')} "
                f"-Xmx{cfg.job_max_heap}"
            ).strip()
        env["FLINK_LOG_DIR"] = str(self.procs.log_dir / "flink-flood")
        self.job_pid = self.procs.spawn("ta-flood", torghut_cmd("ta", "--no-stack"), env)
        self.status = StatusWatcher(self.state, self.job_name).start()
        say(f"flood: TA job starting (metrics on :{self.metrics_port}); waiting for it to run")
        self._wait(
            lambda: (
                metric(scrape(self.metrics_port), "_numRunningJobs") == 1
                or metric(scrape(self.metrics_port), "job_uptime") is not None
            ),
            ready_timeout_s,
            "the TA job to report a running job",
        )
        # the source reads from `latest`: let it get its partitions before the feed starts
        time.sleep(3)
        sim_port = free_port()
        argv = ["sim", "--port", str(sim_port), "--symbols", str(cfg.symbols)]
        argv += ["--rotating-symbols", str(cfg.rotating_symbols)]
        argv += ["--rotation-groups", str(cfg.rotation_groups)]
        argv += ["--rotation-period", f"{cfg.rotation_period_s:g}"]
        argv += ["--trades-per-sec", f"{cfg.trades_per_sec:g}"]
        argv += ["--quotes-per-sec", f"{cfg.quotes_per_sec:g}"]
        argv += ["--out-of-order-rate", "0", "--late-rate", "0", "--seed", str(cfg.seed)]
        argv += ["--correction-rate", "0", "--cancel-error-rate", "0"]
        self.procs.spawn("sim", torghut_cmd(*argv, "--progress-every", "0"), {})
        self._wait(lambda: port_open(sim_port), 30, "the simulator to open its port")
        self.fwd_http = free_port()
        self.fwd_pid = self.procs.spawn(
            "forwarder",
            list(apps.FORWARDER),
            apps.forwarder_env(
                self.state,
                f"ws://127.0.0.1:{sim_port}/v2/iex",
                alpaca_key_id="bench",
                alpaca_secret_key="bench-secret",
                symbols="*",
                http_port=self.fwd_http,
                linger_ms=5,
            ),
        )
        self.t0 = time.monotonic()
        self._prev: tuple[float, float | None, int | None] | None = None
        rate = (cfg.symbols + cfg.rotating_symbols / cfg.rotation_groups) * (
            cfg.trades_per_sec + cfg.quotes_per_sec
        )
        say(
            f"flood: {cfg.symbols} symbols + {cfg.rotating_symbols} rotating "
            f"({cfg.rotation_groups} groups x {cfg.rotation_period_s:g} s), ~{rate:,.0f} "
            f"events/s -> forwarder -> job (cache idle {cfg.cache_idle_s:g} s, checkpoints "
            f"every {cfg.checkpoint_interval_ms} ms)"
        )

    def _wait(self, cond, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.procs.check()
            with contextlib.suppress(Exception):
                if cond():
                    return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def sample(self) -> Sample:
        self.procs.check()
        now = time.monotonic()
        flink = scrape(self.metrics_port)
        fwd = scrape(self.fwd_http)
        jvms, workers = job_processes(self.job_pid)
        acked = metric(fwd, "torghut_forwarder_messages_total", "sum")
        records_in = self.status.records_in
        s = Sample(t_s=round(now - self.t0, 1), load=load())
        s.forwarder_rss_mb = rss_mb(self.fwd_pid)
        heap = metric(flink, "Status_JVM_Memory_Heap_Used")
        s.job_heap_mb = heap / MB if heap is not None else None
        committed = metric(flink, "Status_JVM_Memory_Heap_Committed")
        s.job_heap_committed_mb = committed / MB if committed is not None else None
        s.job_jvm_rss_mb = sum(rss_mb(p) or 0.0 for p in jvms) or None
        s.job_python_rss_mb = sum(rss_mb(p) or 0.0 for p in workers) or None
        size = metric(flink, "job_lastCheckpointSize")
        s.checkpoint_size_mb = size / MB if size is not None else None
        s.checkpoint_duration_ms = metric(flink, "job_lastCheckpointDuration")
        done = metric(flink, "job_numberOfCompletedCheckpoints")
        s.checkpoints = int(done) if done is not None else None
        s.symbol_buffers = metric(flink, "_symbolBuffers", "sum")
        s.cached_symbols = self.status.cached_symbols
        if self._prev is not None:
            t_prev, acked_prev, in_prev = self._prev
            dt = now - t_prev
            if acked is not None and acked_prev is not None:
                s.forwarder_records_per_s = round((acked - acked_prev) / dt, 1)
            if records_in is not None and in_prev is not None:
                s.job_records_per_s = round(max(0, records_in - in_prev) / dt, 1)
        self._prev = (now, acked, records_in)
        self.samples.append(s)
        return s

    def stop(self) -> None:
        self.status.stop()


# --- flatness -------------------------------------------------------------------------


def flatness(samples: list[Sample], name: str, warmup_s: float = 60.0) -> dict[str, Any] | None:
    """A series over t >= warmup_s: mean of its first and last minute, last/first, max/min,
    and the least-squares slope in % of the mean per minute. None without values."""
    pts = [(s.t_s, v) for s in samples if s.t_s >= warmup_s and (v := getattr(s, name)) is not None]
    if len(pts) < 2:
        return None
    ts, vs = zip(*pts, strict=True)
    end = ts[-1]
    first = [v for t, v in pts if t < warmup_s + 60] or [vs[0]]
    last = [v for t, v in pts if t >= end - 60] or [vs[-1]]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mt) ** 2 for t in ts)
    slope_per_s = sum((t - mt) * (v - mv) for t, v in pts) / var if var else 0.0
    f, la = sum(first) / len(first), sum(last) / len(last)
    lo, hi = min(vs), max(vs)
    return {
        "samples": len(pts),
        "first_minute": round(f, 3),
        "last_minute": round(la, 3),
        "last_over_first": round(la / f, 3) if f else None,
        "min": round(lo, 3),
        "max": round(hi, 3),
        "max_over_min": round(hi / lo, 3) if lo else None,
        "slope_pct_per_min": round(100 * slope_per_s * 60 / mv, 2) if mv else None,
    }


def _fmt(v: Any, width: int = 8) -> str:
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        return f"{v:{width}.1f}"
    return str(v).rjust(width)


ROW = (
    ("t_s", "t s"),
    ("forwarder_rss_mb", "fwd MB"),
    ("job_heap_mb", "heap MB"),
    ("job_jvm_rss_mb", "jvm MB"),
    ("checkpoint_size_mb", "ckpt MB"),
    ("checkpoint_duration_ms", "ckpt ms"),
    ("forwarder_records_per_s", "fwd r/s"),
    ("job_records_per_s", "job r/s"),
    ("symbol_buffers", "buffers"),
    ("cached_symbols", "cached"),
)


def row_header() -> str:
    return " ".join(h.rjust(8) for _, h in ROW) + "  load"


def row(s: Sample) -> str:
    return " ".join(_fmt(getattr(s, k)) for k, _ in ROW) + f"  {s.load}"


def _ratio(v: float | None) -> str:
    return "-".rjust(8) if v is None else f"{v:8.3f}"


def flatness_table(flat: dict[str, Any], from_s: float) -> str:
    lines = [
        f"{f'series (from minute {from_s / 60:g} to the end)':52} {'1st min':>9} "
        f"{'last min':>9} {'last/1st':>8} {'max/min':>8} {'%/min':>7}"
    ]
    for name, label in SERIES:
        f = flat.get(name)
        if f is None:
            continue
        lines.append(
            f"{label:52} {f['first_minute']:9.1f} {f['last_minute']:9.1f} "
            f"{_ratio(f['last_over_first'])} {_ratio(f['max_over_min'])} "
            f"{_fmt(f['slope_pct_per_min'], 7)}"
        )
    return "\n".join(lines)


def plot(out_dir: Path, res: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = res["samples"]
    names = [(n, lab) for n, lab in SERIES if any(s.get(n) is not None for s in samples)]
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 3.2 * rows), squeeze=False)
    for ax, (name, label) in zip(axes.flat, names, strict=False):
        pts = [(s["t_s"] / 60, s[name]) for s in samples if s.get(name) is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", ms=2, color="#27a")
        ax.axvline(res["warmup_s"] / 60, ls="--", color="#c33", lw=1)
        f = res["flatness"].get(name)
        sub = (
            f"\nlast/1st {f['last_over_first']}, max/min {f['max_over_min']}, "
            f"{f['slope_pct_per_min']} %/min"
            if f
            else ""
        )
        ax.set_title(label + sub, fontsize=9)
        ax.set_xlabel("minutes")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    c = res["config"]
    fig.suptitle(
        f"torghut bench flood {res['timestamp']}: {c['symbols']} symbols + "
        f"{c['rotating_symbols']} rotating, {res['minutes']} min — {os.cpu_count()} CPUs, "
        f"load {res['load_start']} -> {res['load_end']}",
        fontsize=10,
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"flood-{res['timestamp']}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- CLI ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    d = FloodConfig()
    parser.add_argument(
        "--symbols",
        type=int,
        default=d.symbols,
        help="always-active symbols (default: %(default)s)",
    )
    parser.add_argument(
        "--rotating-symbols",
        type=int,
        default=d.rotating_symbols,
        help="symbols that take turns going idle (default: %(default)s)",
    )
    parser.add_argument(
        "--rotation-groups",
        type=int,
        default=d.rotation_groups,
        help="groups of the rotating symbols, one sends at a time (default: %(default)s)",
    )
    parser.add_argument(
        "--rotation-period",
        type=float,
        default=d.rotation_period_s,
        help="seconds each rotating group sends (default: %(default)s)",
    )
    parser.add_argument(
        "--trades-per-sec",
        type=float,
        default=d.trades_per_sec,
        help="trades per second per symbol (default: %(default)s)",
    )
    parser.add_argument(
        "--quotes-per-sec",
        type=float,
        default=d.quotes_per_sec,
        help="quotes per second per symbol (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-idle-s",
        type=float,
        default=d.cache_idle_s,
        help="the job's TORGHUT_TA_SYMBOL_CACHE_IDLE_S (default: %(default)s; below the "
        "rotating symbols' idle time, so they are evicted and rebuilt)",
    )
    parser.add_argument(
        "--checkpoint-interval-ms",
        type=int,
        default=d.checkpoint_interval_ms,
        help="job checkpoint interval (default: %(default)s, the job default)",
    )
    parser.add_argument(
        "--python-execution-mode",
        choices=("thread", "process"),
        default=d.python_execution_mode,
        help="PyFlink execution mode of the job (default: %(default)s)",
    )
    parser.add_argument(
        "--job-max-heap",
        default=d.job_max_heap,
        help="-Xmx of the job's JVM, like a TaskManager's fixed heap; '' = the JVM default "
        "(a quarter of RAM) (default: %(default)s)",
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="measured minutes (default: %(default)s)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="seconds between samples (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="seconds left out of the flatness numbers (default: %(default)s)",
    )
    parser.add_argument(
        "--windows-full",
        type=float,
        default=300.0,
        help="also report the flatness from this second on, when every symbol's indicator "
        "windows (5 min rolling VWAP) are full (default: %(default)s)",
    )
    parser.add_argument(
        "--stack-dir",
        default=None,
        help="use this running stack (default: start a temporary one and stop it)",
    )
    parser.add_argument("--out", default="bench-results", help="directory of the PNG and JSON")
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="run nothing: print the tables and plot again from a saved result",
    )


def report(res: dict[str, Any], args: argparse.Namespace) -> tuple[Path, Path]:
    """Flatness tables (printed) of a result, its JSON and PNG under ``--out``."""
    samples = [Sample(**s) for s in res["samples"]]
    res["flatness"] = {n: flatness(samples, n, args.warmup) for n, _ in SERIES}
    # per-symbol indicator windows (5 min VWAP, 20 closes) fill for minutes at a low
    # per-symbol rate: the same numbers once they are full
    long_enough = samples and samples[-1].t_s >= args.windows_full + 120
    res["flatness_after_windows"] = (
        {n: flatness(samples, n, args.windows_full) for n, _ in SERIES} if long_enough else None
    )
    res["warmup_s"], res["windows_full_s"] = args.warmup, args.windows_full
    print()
    print(flatness_table(res["flatness"], args.warmup))
    if res["flatness_after_windows"]:
        print()
        print(flatness_table(res["flatness_after_windows"], args.windows_full))
    print(f"load {res['load_start']} -> {res['load_end']}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    js = out_dir / f"flood-{res['timestamp']}.json"
    js.write_text(json.dumps(res, indent=1))
    return js, plot(out_dir, res)


def run(args: argparse.Namespace) -> int:
    from torghut.bench.pipeline import _stack

    if args.from_json:
        js, png = report(json.loads(Path(args.from_json).read_text()), args)
        print(f"plot      : {png}\nnumbers   : {js}")
        return 0
    if args.minutes <= 0 or args.interval <= 0 or args.symbols < 1:
        raise SystemExit("--minutes, --interval and --symbols must be positive")
    cfg = FloodConfig(
        symbols=args.symbols,
        rotating_symbols=args.rotating_symbols,
        rotation_groups=args.rotation_groups,
        rotation_period_s=args.rotation_period,
        trades_per_sec=args.trades_per_sec,
        quotes_per_sec=args.quotes_per_sec,
        cache_idle_s=args.cache_idle_s,
        checkpoint_interval_ms=args.checkpoint_interval_ms,
        python_execution_mode=args.python_execution_mode,
        job_max_heap=args.job_max_heap,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{os.getpid()}"
    load_start, uptime_start = load(), uptime()
    with _stack(args, run_id) as (state, procs):
        flood = FloodRun(state, procs, cfg, run_id)
        flood.start()
        try:
            print(row_header(), flush=True)
            end = flood.t0 + args.minutes * 60
            next_at = flood.t0
            while True:
                next_at += args.interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                print(row(flood.sample()), flush=True)
                if time.monotonic() >= end:
                    break
        finally:
            flood.stop()
    samples = flood.samples
    res: dict[str, Any] = {
        "timestamp": stamp,
        "config": asdict(cfg),
        "minutes": args.minutes,
        "interval_s": args.interval,
        "warmup_s": args.warmup,
        "load_start": load_start,
        "load_end": load(),
        "uptime_start": uptime_start,
        "uptime_end": uptime(),
        "status_frames": flood.status.frames,
        "samples": [asdict(s) for s in samples],
    }
    js, png = report(res, args)
    print(f"plot      : {png}\nnumbers   : {js}")
    return 0
