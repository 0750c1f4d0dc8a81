"""``torghut bench flood``: many symbols for many minutes; do the resources stay flat?

simulator (``--symbols`` always-active symbols plus ``--rotating-symbols`` that take turns:
one of ``--rotation-groups`` groups sends for ``--rotation-period`` s, the others are idle,
so caches must drop them and rebuild them when they return) -> forwarder -> Kafka -> TA job
(parallelism 1, its per-symbol cache idle time ``--cache-idle-s``).

Every ``--interval`` s it samples: forwarder RSS; the job's JVM heap used and committed
(Flink's Prometheus reporter); the job's live heap, from ``jstat -gc <pid> 1000`` (one row a
second): the heap the last GC left (survivor + old generation used, which only a GC or a
humongous allocation changes), lowest in the interval and lowest in the last minute (an
upper bound of the live data: G1 leaves garbage in old regions until a concurrent cycle and
its mixed collections), the old generation alone and the share of time in GC pauses; the
RSS of the JVM process (in thread mode the Python of the keyed function runs inside it) and
of Python workers (process mode); the last checkpoint's size and duration;
the forwarder's acked records/s and the job's records_in/s; the symbols holding a batch
buffer in Java (``symbolBuffers``) and in the keyed function's cache (the symbols listed on
``ta.status.v1``). It prints a row per sample, then a table of each series over minutes
1..end (the first minute is warm-up): mean of the first and of the last minute, their
ratio, max/min and the least-squares slope in % of the mean per minute, and a table of the
means per minute. After the last sample it forces one full GC (``jcmd <pid> GC.run``) and
reports the heap it leaves, the exact live heap at the end; ``--full-gc-every`` does that
during the run too (it pauses the job for each collection: a run of its own, not the
default). It saves a plot and a JSON result (with the jstat rows). ``FloodRun`` is also
what the scaled drill in ``make test`` runs (``tests/integration/test_symbol_flood.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
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
    ("forwarder_dedup_keys", "forwarder dedup keys held (all families)"),
    ("job_heap_mb", "job JVM heap used (MB)"),
    ("job_heap_committed_mb", "job JVM heap committed (MB)"),
    ("job_live_heap_mb", "job live heap: least after GC in the last min (MB)"),
    ("job_heap_after_gc_mb", "job heap after GC, least in the interval (MB)"),
    ("job_old_gen_mb", "job old generation used (MB)"),
    ("job_live_heap_full_gc_mb", "job live heap after a forced full GC (MB)"),
    ("job_gc_pct", "job GC pauses (% of time)"),
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
    # also -Xms = -Xmx, as Flink starts a TaskManager's JVM (docs/reliability.md): the heap
    # is committed (reserved) at start; pages become resident as G1 first touches them
    job_fixed_heap: bool = True


@dataclass
class Sample:
    t_s: float
    forwarder_rss_mb: float | None = None
    forwarder_dedup_keys: float | None = None
    job_heap_mb: float | None = None
    job_heap_committed_mb: float | None = None
    job_live_heap_mb: float | None = None
    job_heap_after_gc_mb: float | None = None
    job_old_gen_mb: float | None = None
    job_live_heap_full_gc_mb: float | None = None
    job_gc_pct: float | None = None
    job_young_gcs: int | None = None
    job_concurrent_gc_pauses: int | None = None
    job_full_gcs: int | None = None
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


# --- jstat ----------------------------------------------------------------------------

JSTAT_KEEP = ("S0U", "S1U", "EU", "OU", "S0C", "S1C", "EC", "OC", "YGC", "CGC", "FGC", "GCT")


class JstatWatcher:
    """``jstat -gc <pid> 1000``: the heap spaces (KB) and GC counts of one JVM every second.

    ``rows`` are (monotonic time, {column: value}) for the columns of ``JSTAT_KEEP``. jstat
    reads the JVM's hsperfdata file; it does not stop or slow the JVM it watches."""

    def __init__(self, pid: int, jstat: str | None = None, period_ms: int = 1000) -> None:
        self.pid = pid
        self.jstat = jstat or shutil.which("jstat")
        if self.jstat is None:
            raise FileNotFoundError(
                "jstat not found on PATH: install a JDK (e.g. openjdk-17-jdk-headless) to "
                "measure the job's live heap"
            )
        self.period_ms = period_ms
        self.rows: list[tuple[float, dict[str, float]]] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name="flood-jstat", daemon=True)

    def start(self) -> JstatWatcher:
        self._proc = subprocess.Popen(
            [self.jstat, "-gc", str(self.pid), str(self.period_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        names: list[str] = []
        for line in self._proc.stdout:
            cols = line.split()
            if not cols:
                continue
            if cols[0] == "S0C":  # the header
                names = cols
                continue
            if len(cols) != len(names):
                continue
            try:
                vals = dict(zip(names, map(float, cols), strict=True))
            except ValueError:
                continue
            row = {k: vals[k] for k in JSTAT_KEEP if k in vals}
            with self._lock:
                self.rows.append((time.monotonic(), row))

    def since(self, t: float) -> list[dict[str, float]]:
        with self._lock:
            return [r for at, r in self.rows if at > t]

    def latest(self) -> dict[str, float] | None:
        with self._lock:
            return self.rows[-1][1] if self.rows else None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._thread.join(5)


def after_gc_kb(row: dict[str, float]) -> float:
    """What the last GC left: survivors + old generation (eden is empty after every GC)."""
    return row["S0U"] + row["S1U"] + row["OU"]


def full_gc_live_heap_mb(jvm_pid: int, jstat: JstatWatcher, timeout_s: float = 60.0) -> float:
    """Force a full GC in the JVM (``jcmd <pid> GC.run``, i.e. System.gc(), a G1 full
    collection) and return the heap it left (MB): the exact live heap. It stops the JVM for
    the collection: call it after the measurement."""
    before = jstat.latest()
    fgc = before["FGC"] if before else 0.0
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        raise FileNotFoundError("jcmd not found on PATH: install a JDK to force a full GC")
    subprocess.run(
        [jcmd, str(jvm_pid), "GC.run"], check=True, capture_output=True, timeout=timeout_s
    )
    # jcmd returns when the collection is over; a row taken during it already shows the
    # full GC counted (the counter goes up when a collection starts) but the spaces as
    # before it, so only rows sampled after the return count. A full G1 collection leaves
    # the live objects in the old generation and the survivor spaces empty; eden is what
    # was allocated since
    done = time.monotonic()
    deadline = done + timeout_s
    while time.monotonic() < deadline:
        for row in jstat.since(done):
            if row["FGC"] > fgc:
                return round(after_gc_kb(row) / 1024, 1)
        time.sleep(0.2)
    raise RuntimeError(f"no full GC of JVM {jvm_pid} seen by jstat within {timeout_s:.0f} s")


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
            heap = f"-Xmx{cfg.job_max_heap}"
            if cfg.job_fixed_heap:
                heap += f" -Xms{cfg.job_max_heap}"
            env["TORGHUT_TA_LOCAL_JVM_OPTS"] = (
                f"{env.get('TORGHUT_TA_LOCAL_JVM_OPTS', '-XX:TieredStopAtLevel=1')} {heap}"
            ).strip()
        self.jvm_opts = env.get("TORGHUT_TA_LOCAL_JVM_OPTS", "")
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
        jvms, _ = job_processes(self.job_pid)
        if len(jvms) != 1:
            raise RuntimeError(f"expected one JVM below the TA job {self.job_pid}, found {jvms}")
        self.jvm_pid = jvms[0]
        self.jstat = JstatWatcher(self.jvm_pid).start()
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
        self._prev_gc: tuple[float, float] | None = None  # (time, jstat GCT)
        self._after_gc: list[tuple[float, float]] = []  # (time, least after-GC KB)
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
        s.forwarder_dedup_keys = metric(fwd, "torghut_forwarder_dedup_entries", "sum")
        heap = metric(flink, "Status_JVM_Memory_Heap_Used")
        s.job_heap_mb = heap / MB if heap is not None else None
        committed = metric(flink, "Status_JVM_Memory_Heap_Committed")
        s.job_heap_committed_mb = committed / MB if committed is not None else None
        self._sample_jstat(s, now)
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

    def _sample_jstat(self, s: Sample, now: float) -> None:
        t_prev = self._prev[0] if self._prev is not None else self.t0
        rows = self.jstat.since(t_prev)
        if not rows:
            return
        least = min(after_gc_kb(r) for r in rows)
        self._after_gc.append((now, least))
        s.job_heap_after_gc_mb = round(least / 1024, 1)
        s.job_live_heap_mb = round(
            min(kb for at, kb in self._after_gc if at > now - 60.0) / 1024, 1
        )
        last = rows[-1]
        s.job_old_gen_mb = round(last["OU"] / 1024, 1)
        s.job_young_gcs = int(last["YGC"])
        s.job_concurrent_gc_pauses = int(last.get("CGC", 0))
        s.job_full_gcs = int(last["FGC"])
        if self._prev_gc is not None:
            t_gc, gct = self._prev_gc
            s.job_gc_pct = round(100 * (last["GCT"] - gct) / (now - t_gc), 2)
        self._prev_gc = (now, last["GCT"])

    def live_heap_after_full_gc_mb(self) -> float:
        """The exact live heap now (forces a full GC: after the measurement only)."""
        return full_gc_live_heap_mb(self.jvm_pid, self.jstat)

    def stop(self) -> None:
        self.status.stop()
        jstat = getattr(self, "jstat", None)
        if jstat is not None:
            jstat.stop()


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


MINUTE_COLS = (
    ("forwarder_rss_mb", "fwd RSS"),
    ("forwarder_dedup_keys", "fwd keys"),
    ("job_heap_mb", "heap"),
    ("job_live_heap_mb", "live"),
    ("job_old_gen_mb", "old gen"),
    ("job_live_heap_full_gc_mb", "full GC"),
    ("job_heap_committed_mb", "commit"),
    ("job_jvm_rss_mb", "JVM RSS"),
    ("job_gc_pct", "GC %"),
    ("checkpoint_size_mb", "ckpt MB"),
    ("checkpoint_duration_ms", "ckpt ms"),
    ("job_records_per_s", "job r/s"),
)


def per_minute(samples: list[Sample]) -> list[dict[str, Any]]:
    """Mean of every series over each minute of the run (minute m: m*60 < t <= (m+1)*60;
    the live heap of minute m is the least after-GC heap within it)."""
    out = []
    for m in range(int(max((s.t_s for s in samples), default=0) // 60) + 1):
        inside = [s for s in samples if m * 60 < s.t_s <= (m + 1) * 60]
        if not inside:
            continue
        row: dict[str, Any] = {"minute": m + 1, "load": inside[-1].load}
        for name, _ in SERIES:
            vals = [v for s in inside if (v := getattr(s, name)) is not None]
            if name == "job_live_heap_mb":
                vals = [v for s in inside if (v := s.job_heap_after_gc_mb) is not None]
                row[name] = round(min(vals), 1) if vals else None
            else:
                row[name] = round(sum(vals) / len(vals), 1) if vals else None
        last = inside[-1]
        row["gcs"] = (last.job_young_gcs, last.job_concurrent_gc_pauses, last.job_full_gcs)
        out.append(row)
    return out


def per_minute_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "per minute (MB unless noted; live = least after-GC heap in the minute; gcs = young,"
        " concurrent-cycle pauses, full, cumulative)",
        f"{'min':>3} " + " ".join(f"{h:>8}" for _, h in MINUTE_COLS) + "  gcs            load",
    ]
    for r in rows:
        gcs = "/".join("-" if g is None else str(g) for g in r.get("gcs") or ())
        lines.append(
            f"{r['minute']:>3} "
            + " ".join(_fmt(r.get(k)) for k, _ in MINUTE_COLS)
            + f"  {gcs:14} {r.get('load', '')}"
        )
    return "\n".join(lines)


def _fmt(v: Any, width: int = 8) -> str:
    if v is None:
        return "-".rjust(width)
    if isinstance(v, float):
        return f"{v:{width}.1f}"
    return str(v).rjust(width)


ROW = (
    ("t_s", "t s"),
    ("forwarder_rss_mb", "fwd MB"),
    ("forwarder_dedup_keys", "fwd keys"),
    ("job_heap_mb", "heap MB"),
    ("job_live_heap_mb", "live MB"),
    ("job_gc_pct", "gc %"),
    ("job_live_heap_full_gc_mb", "fgc MB"),
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
    from torghut.bench.plots import save_figure

    title = (
        f"torghut bench flood {res['timestamp']}: {c['symbols']} symbols + "
        f"{c['rotating_symbols']} rotating, {res['minutes']} min — {os.cpu_count()} CPUs, "
        f"load {res['load_start']} -> {res['load_end']}"
    )
    return save_figure(fig, out_dir / f"flood-{res['timestamp']}.png", title, dpi=100)


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
        "--job-fixed-heap",
        action=argparse.BooleanOptionalAction,
        default=d.job_fixed_heap,
        help="also -Xms = --job-max-heap, as Flink starts a TaskManager (default: %(default)s)",
    )
    parser.add_argument(
        "--full-gc-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="force a full GC of the job's JVM (jcmd GC.run) this often and record the heap "
        "it leaves, the exact live heap; it pauses the job for the collection (default: "
        "%(default)s = only once, after the last sample)",
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
    res["per_minute"] = per_minute(samples)
    print()
    print(per_minute_table(res["per_minute"]))
    print()
    print(flatness_table(res["flatness"], args.warmup))
    if res["flatness_after_windows"]:
        print()
        print(flatness_table(res["flatness_after_windows"], args.windows_full))
    if res.get("live_heap_after_full_gc_mb") is not None:
        print(
            f"live heap after a forced full GC at the end: {res['live_heap_after_full_gc_mb']} MB"
        )
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
        job_fixed_heap=args.job_fixed_heap,
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
            gc_at = flood.t0 + args.full_gc_every
            while True:
                next_at += args.interval
                time.sleep(max(0.0, next_at - time.monotonic()))
                s = flood.sample()
                if args.full_gc_every > 0 and time.monotonic() >= gc_at:
                    gc_at += args.full_gc_every
                    s.job_live_heap_full_gc_mb = flood.live_heap_after_full_gc_mb()
                print(row(s), flush=True)
                if time.monotonic() >= end:
                    break
            # after the last sample: it stops the JVM for a full collection
            live_end: float | None = None
            try:
                live_end = flood.live_heap_after_full_gc_mb()
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                say(f"flood: no live heap after a full GC at the end: {e}")
        finally:
            flood.stop()
    samples = flood.samples
    res: dict[str, Any] = {
        "timestamp": stamp,
        "config": asdict(cfg),
        "minutes": args.minutes,
        "interval_s": args.interval,
        "full_gc_every_s": args.full_gc_every,
        "warmup_s": args.warmup,
        "load_start": load_start,
        "load_end": load(),
        "uptime_start": uptime_start,
        "uptime_end": uptime(),
        "status_frames": flood.status.frames,
        "live_heap_after_full_gc_mb": live_end,
        "jvm_opts": flood.jvm_opts,
        "samples": [asdict(s) for s in samples],
        # jstat -gc of the job's JVM, one row a second (KB; t_s from the feed's start)
        "jstat": [{"t_s": round(at - flood.t0, 1), **row} for at, row in flood.jstat.rows],
    }
    js, png = report(res, args)
    print(f"plot      : {png}\nnumbers   : {js}")
    return 0
