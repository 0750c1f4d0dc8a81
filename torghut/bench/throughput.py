"""Phase 3 of ``torghut bench pipeline``: trades/s per slot on a backlog.

A backlog of trades (+ quotes) is produced straight into the raw topics, then a fresh job
(parallelism 1, fresh consumer group) works it off while this process samples its CPU and
reads its ``ta.status.v1`` counters and the committed final bars.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from torghut.bench.backlog import backlog_conditions, backlog_events, backlog_span_ns
from torghut.bench.children import Procs, launch_job, throughput_checkpoint_ms
from torghut.bench.collect import Collector, record_counts, start_collectors
from torghut.bench.common import (
    NS_PER_MS,
    NS_PER_S,
    SENTINEL,
    WARM_FROM,
    end_ns,
    load,
    say,
    symbols_of,
    uptime,
)
from torghut.bench.results import ThroughputPhaseResult
from torghut.bench.sampling import cores_between, group_cpu_s, slot_schedstat, thread_cpu_s
from torghut.bench.stats import ratio
from torghut.envelopes import EnvelopeProducer

Status = dict[str, Any]  # one ta.status.v1 record: recv, emit (ns), records_in, records_out
ThreadSample = tuple[int, dict[str, float]]  # (wall ns, CPU s per thread name)


@dataclass(frozen=True)
class Backlog:
    trades: int
    quotes: int
    total_in: int  # raw records the job will read, including what the topics held before
    trade_share: float
    produce_s: float
    last_end: dict[str, int]  # per symbol: the end (ns) of its last bar
    base_ns: int = 0  # event time of the first trade (the generator's base)
    sentinel_ns: int = 0  # event time of the sentinel trade and quote that close the last bars


def pending_before_last_status(statuses: list[Status], total_in: int) -> bool:
    """True while the job has records left (per its last status)."""
    return statuses[-1]["records_in"] < total_in * 0.95


def produce_backlog(state: Any, args: argparse.Namespace, symbols: list[str]) -> Backlog:
    from shared.topics import QUOTES, TRADES

    n = args.throughput_trades
    pre = record_counts(state.kafka_bootstrap, [TRADES.name, QUOTES.name])
    span_ns = backlog_span_ns(symbols, n)
    base_ns = (time.time_ns() - span_ns - 120 * NS_PER_S) // NS_PER_S * NS_PER_S
    say(
        f"throughput: producing {n:,} trades (+{args.throughput_quote_ratio:g} quotes/trade) over "
        f"{len(symbols)} symbols, {span_ns / NS_PER_S:.0f} s of event time"
    )
    prod = EnvelopeProducer(state)
    mix = bool(getattr(args, "throughput_conditions", False))
    t_prod = time.monotonic()
    last_end: dict[str, int] = {}
    trades = quotes = 0
    max_ts = base_ns
    for kind, sym, ts, a, b, c, d in backlog_events(
        symbols, n, args.throughput_quote_ratio, base_ns
    ):
        if kind == "t":
            prod.trade(sym, ts, a, b, int(c), conditions=backlog_conditions(int(c), mix))
            trades += 1
            last_end[sym] = (ts // NS_PER_S + 1) * NS_PER_S
            if trades % 100_000 == 0:
                say(f"throughput: produced {trades:,} trades")
        else:
            prod.quote(sym, ts, a, b, c, d)
            quotes += 1
        max_ts = ts
    # one trade and one quote past every bar end + slack move both partitions' watermarks on
    sentinel_ns = (
        (max_ts // NS_PER_S + 1) * NS_PER_S + args.out_of_orderness_ms * NS_PER_MS + NS_PER_S
    )
    prod.trade(SENTINEL, sentinel_ns, 1.0, 1.0, 1)
    prod.quote(SENTINEL, sentinel_ns, 0.99, 1.01, 100.0, 100.0)
    prod.flush()
    produce_s = time.monotonic() - t_prod
    total_in = trades + quotes + 2 + pre[TRADES.name] + pre[QUOTES.name]
    say(
        f"throughput: backlog of {total_in:,} raw records ready ({produce_s:.1f} s to produce"
        f"{'; includes ' + str(pre) + ' already in the topics' if any(pre.values()) else ''})"
    )
    trade_share = (trades + 1 + pre[TRADES.name]) / total_in
    return Backlog(trades, quotes, total_in, trade_share, produce_s, last_end, base_ns, sentinel_ns)


@dataclass
class _Watch:
    """What the throughput run samples while the job works off the backlog."""

    job_pid: int
    total_in: int
    pending: dict[str, int]  # symbols without their last final bar -> that bar's end
    cpu: list[tuple[int, float]] = field(default_factory=list)  # (wall ns, job CPU s)
    threads_a: ThreadSample | None = None  # at the first status
    threads_b: ThreadSample | None = None  # at the last status before the tail
    sched_a: tuple[int, int] | None = None
    sched_b: tuple[int, int] | None = None
    statuses: list[Status] = field(default_factory=list)
    done_ns: int = 0  # receive time of the last awaited final bar
    _si: int = 0
    _bi: int = 0

    def sample(self) -> None:
        self.cpu.append((time.time_ns(), group_cpu_s(self.job_pid)))
        if self.statuses and self.threads_a is None:
            self.threads_a = (time.time_ns(), thread_cpu_s(self.job_pid))
            self.sched_a = slot_schedstat(self.job_pid)
        if self.statuses and not pending_before_last_status(self.statuses, self.total_in):
            self.threads_b = (time.time_ns(), thread_cpu_s(self.job_pid))
            self.sched_b = slot_schedstat(self.job_pid)

    def read(self, status: Collector, bars: Collector, decode: Any) -> None:
        for recv, value in status.items[self._si :]:
            rec = decode(value)
            self.statuses.append(
                {
                    "recv": recv,
                    "emit": rec["emit_ts"],
                    "records_in": rec["records_in"],
                    "records_out": rec["records_out"],
                }
            )
        self._si = len(status.items)
        for recv, value in bars.items[self._bi :]:
            rec = decode(value)
            sym = rec["symbol"]
            if (
                rec["is_final"]
                and sym in self.pending
                and end_ns(rec["window"]["end"]) >= self.pending[sym]
            ):
                del self.pending[sym]
                self.done_ns = max(self.done_ns, recv)
        self._bi = len(bars.items)

    def progress(self, n_symbols: int) -> None:
        last = self.statuses[-1] if self.statuses else None
        msg = f"{last['records_in']:,}/{self.total_in:,} records in" if last else "no status yet"
        say(
            f"throughput: {msg}; {n_symbols - len(self.pending)}/{n_symbols} symbols done; "
            f"load {load()}"
        )


def _launch_job(
    state: Any, args: argparse.Namespace, procs: Procs, run_id: str, group: str | None
) -> tuple[int, int]:
    launched = launch_job(
        state, args, procs, run_id, "throughput", args.throughput_provisional_interval_ms, group
    )
    say(
        f"throughput: job started (parallelism 1, fresh group, provisional every >= "
        f"{args.throughput_provisional_interval_ms} ms); waiting for the final bar of every symbol's last second"
    )
    return launched


def _watch_until_done(
    watch: _Watch, collectors: tuple[Collector, Collector], decode: Any, procs: Procs, n: int
) -> None:
    """Until every symbol's last final bar is read and the job has sent two status records
    (deadline: max(300 s, 1 ms per trade)). A small backlog can be worked off within one
    status interval; the job's status heartbeat (every interval, idle or not) then brings
    the second record the rate needs."""
    status, bars = collectors
    n_symbols = len(watch.pending)
    deadline = time.monotonic() + max(300.0, n / 1000)
    next_progress = time.monotonic() + 5
    while watch.pending or len(watch.statuses) < 2:
        procs.check("ta-throughput")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"throughput run incomplete after the deadline: {len(watch.pending)} symbols "
                f"without their last final bar, {len(watch.statuses)} status records; see "
                f"{procs.log_dir}"
            )
        time.sleep(0.2)
        watch.sample()
        watch.read(status, bars, decode)
        if time.monotonic() >= next_progress:
            next_progress += 5
            watch.progress(n_symbols)


def throughput_phase(
    state: Any, args: argparse.Namespace, procs: Procs, run_id: str
) -> ThroughputPhaseResult:
    backlog = produce_backlog(state, args, symbols_of(args.symbols))
    return work_off_backlog(state, args, procs, run_id, backlog).result


@dataclass
class JobRun:
    """One job's run over a backlog: its numbers, and the records it committed to
    ta.bars.1s.v1 and (with ``keep_signals``) ta.signals.v1, as (receive ns, bytes)."""

    result: ThroughputPhaseResult
    bars: list[tuple[int, bytes]]
    signals: list[tuple[int, bytes]]


def work_off_backlog(
    state: Any,
    args: argparse.Namespace,
    procs: Procs,
    run_id: str,
    backlog: Backlog,
    group: str | None = None,
    keep_signals: bool = False,
) -> JobRun:
    """A fresh job (``group``: its consumer group, default one per ``run_id``) works off the
    raw topics from the start until every symbol's last final bar of ``backlog`` is read."""
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer
    from shared.topics import TA_BARS_1S, TA_SIGNALS, TA_STATUS

    readers = [(TA_STATUS.name, "read_uncommitted"), (TA_BARS_1S.name, "read_committed")]
    if keep_signals:
        readers.append((TA_SIGNALS.name, "read_committed"))
    collectors = start_collectors(state.kafka_bootstrap, *readers)
    load_before = uptime()
    t_launch, job_pid = _launch_job(state, args, procs, run_id, group)
    decode = AvroDeserializer(SchemaRegistryClient(state.registry_url)).decode
    watch = _Watch(job_pid, backlog.total_in, dict(backlog.last_end))
    _watch_until_done(watch, (collectors[0], collectors[1]), decode, procs, args.throughput_trades)
    load_after = uptime()
    if keep_signals:  # the signals of the same transactions as the bars read so far
        _await_signals(collectors[2], len(collectors[1].items), decode)
    procs.stop("ta-throughput")
    for c in collectors:
        c.stop()
    watch.statuses.sort(key=lambda s: s["emit"])
    if len(watch.statuses) < 2:
        raise RuntimeError("fewer than two ta.status records: cannot compute a rate")
    result = throughput_result(args, backlog, watch, t_launch, (load_before, load_after))
    return JobRun(
        result,
        list(collectors[1].items),
        list(collectors[2].items) if keep_signals else [],
    )


def _await_signals(signals: Collector, bars_read: int, decode: Any, timeout_s: float = 60) -> None:
    """Until ta.signals.v1 holds a record for every bar record read (the job writes one of
    each per bar, in the same transaction)."""
    deadline = time.monotonic() + timeout_s
    while len(signals.items) < bars_read:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"ta.signals.v1 has {len(signals.items)} committed records after {timeout_s:.0f} s,"
                f" ta.bars.1s.v1 {bars_read}: the job's transactions are incomplete"
            )
        time.sleep(0.1)


# --- the numbers, from what the run sampled --------------------------------------------------


def records_in_rate(statuses: list[Status]) -> float:
    """Slope of the job's records_in between the first and the last status (records/s)."""
    first, last = statuses[0], statuses[-1]
    return (last["records_in"] - first["records_in"]) / ((last["emit"] - first["emit"]) / NS_PER_S)


def warm_statuses(statuses: list[Status], total_in: int) -> list[Status]:
    """Past the first third of the backlog (JIT compiled the hot paths; the C2 compiler thread
    alone takes ~0.3 of this machine's 2 cores in the first 20 s), before the tail."""
    return [s for s in statuses if total_in * WARM_FROM <= s["records_in"] <= total_in * 0.95]


def busiest_threads(a: ThreadSample | None, b: ThreadSample | None) -> list[tuple[str, float]]:
    """The eight busiest thread names between two samples (cores), busiest first."""
    if a is None or b is None or b[0] <= a[0]:
        return []
    return sorted(cores_between(a, b).items(), key=lambda kv: -kv[1])[:8]


def slot_shares(watch: _Watch) -> tuple[float, float]:
    """(share of time on a CPU, share runnable but waiting for one) of the slot thread."""
    a, b, sa, sb = watch.threads_a, watch.threads_b, watch.sched_a, watch.sched_b
    if not (a and b and sa and sb and b[0] > a[0]):
        return float("nan"), float("nan")
    span = b[0] - a[0]
    return (sb[0] - sa[0]) / span, (sb[1] - sa[1]) / span


def _job_cpu(watch: _Watch, rate_all: float) -> tuple[float, float]:
    """(cores, µs per event) of the job's process tree between the first and last status."""

    def cpu_at(t_ns: int) -> tuple[int, float]:
        return min(watch.cpu, key=lambda c: abs(c[0] - t_ns))

    (ca_t, ca), (cb_t, cb) = cpu_at(watch.statuses[0]["emit"]), cpu_at(watch.statuses[-1]["emit"])
    cpu_window_s = (cb_t - ca_t) / NS_PER_S
    events_in_window = rate_all * cpu_window_s
    return ratio(cb - ca, cpu_window_s), ratio(cb - ca, events_in_window) * 1e6


def throughput_result(
    args: argparse.Namespace,
    backlog: Backlog,
    watch: _Watch,
    t_launch: int,
    loads: tuple[str, str],
) -> ThroughputPhaseResult:
    statuses = watch.statuses
    first = statuses[0]
    share = backlog.trade_share
    rate_all = records_in_rate(statuses)
    rate_steady = records_in_rate(statuses[1:] if len(statuses) > 2 else statuses)
    warm = warm_statuses(statuses, backlog.total_in)
    rate_warm = records_in_rate(warm) if len(warm) >= 3 else float("nan")
    e2e_s = (watch.done_ns - first["emit"]) / NS_PER_S
    job_cores, us_per_event = _job_cpu(watch, rate_all)
    threads = busiest_threads(watch.threads_a, watch.threads_b)
    busiest = max(
        (c for name, c in threads if name.startswith(("Source", "bars-signals"))), default=0.0
    )
    on_cpu, waiting = slot_shares(watch)
    return ThroughputPhaseResult(
        trades=backlog.trades,
        quotes=backlog.quotes,
        raw_records=backlog.total_in,
        trade_share=share,
        produce_s=backlog.produce_s,
        job_launch_to_first_record_s=(first["emit"] - t_launch) / NS_PER_S,
        status_points=len(statuses),
        events_per_s=rate_all,
        trades_per_s=rate_all * share,
        events_per_s_after_first_s=rate_steady,
        events_per_s_warm=rate_warm,
        trades_per_s_warm=rate_warm * share,
        warm_status_points=len(warm),
        trades_per_s_after_first_s=rate_steady * share,
        end_to_end_s=e2e_s,
        end_to_end_trades_per_s=ratio(backlog.trades, e2e_s),
        job_cpu_cores=job_cores,
        job_threads_cores=threads,
        busiest_task_thread_cores=busiest,
        projected_trades_per_s_full_core=ratio(rate_all * share, busiest),
        job_cpu_us_per_event=us_per_event,
        slot_thread_on_cpu=on_cpu,
        slot_thread_waiting_for_cpu=waiting,
        trades_per_slot_cpu_s=ratio(rate_all * share, on_cpu),
        checkpoint_interval_ms=throughput_checkpoint_ms(args),
        provisional_interval_ms=args.throughput_provisional_interval_ms,
        load_before=loads[0],
        load_after=loads[1],
        points=[((s["emit"] - first["emit"]) / NS_PER_S, s["records_in"]) for s in statuses],
    )
