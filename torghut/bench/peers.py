"""``torghut bench peers``: this job against the Python stream processors a user would pick
instead, on the same work in one run on one machine.

One backlog of trades (+ quotes) is produced once into the raw topics of one local broker
(the throughput phase of ``torghut bench pipeline``: ``throughput.produce_backlog``). Then,
``--runs`` times, each peer works it off from the start, in an order that rotates per run:

* ``job``: this job at parallelism 1, a fresh consumer group (``throughput.work_off_backlog``):
  trades/s from the slope of its ``records_in`` (ta.status.v1), CPU of its process group
  (the JVM and the Python worker) between its first and last status.
* ``quix``: a Quix Streams application (``peer_apps/quix_app.py``: tumbling 1 s windows,
  RocksDB state, ``processing_guarantee="exactly-once"``), trades only.
* ``bytewax``: a Bytewax dataflow (``peer_apps/bytewax_app.py``: ``fold_window`` on an event
  clock, SQLite recovery snapshots; its Kafka sink is at least once), trades only.
* ``bare-loop``: a plain Python loop over the same events in a list with the project's
  kernels (``peer_apps/bare_loop.py``): no Kafka, no Flink — the limit.

Quix and Bytewax run with the peers venv's interpreter (``make bench-peers-setup``: their
pins conflict with PyFlink's, e.g. quixstreams wants confluent-kafka < 2.13); the peers time
themselves from their first record to their exit (output flushed, committed where they
commit) and take their process group's CPU from /proc (``sampling.group_cpu_s``).

Every peer's final bars are checked equal to the job's (same symbol and second: open, high,
low, close, volume, vwap, trade count, price basis) and so are their indicators: all of them
for the bare loop; for the trades-only peers all but the quote-derived spread and imbalance.
A peer whose output differs is reported as such, and the benchmark exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torghut.bench.children import Procs
from torghut.bench.common import SENTINEL, end_ns, load, say, symbols_of
from torghut.bench.peer_apps.common import (
    BAR_FIELDS,
    QUOTE_SIGNALS,
    TRADE_SIGNALS,
    bar_key,
)
from torghut.bench.throughput import Backlog, produce_backlog, work_off_backlog

PEERS = ("job", "quix", "bytewax", "bare-loop")
KAFKA_PEERS = {
    "quix": "torghut.bench.peer_apps.quix_app",
    "bytewax": "torghut.bench.peer_apps.bytewax_app",
}
PEERS_VENV = Path(".artifacts/peers-venv")
REPO = Path(__file__).resolve().parents[2]


class PeersVenvMissingError(RuntimeError):
    """The peers venv (Quix Streams, Bytewax) is not there."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--throughput-trades",
        type=int,
        default=200_000,
        help="trades in the backlog (default: %(default)s)",
    )
    parser.add_argument(
        "--throughput-quote-ratio",
        type=float,
        default=0.2,
        help="quotes per trade in the backlog (default: %(default)s)",
    )
    parser.add_argument(
        "--regular-only",
        dest="throughput_conditions",
        action="store_false",
        help="regular sales only, as `torghut bench pipeline` (default: a mix of sale "
        "conditions, backlog.CONDITION_MIX, so the bar rules are compared too)",
    )
    parser.add_argument(
        "--symbols", default="20", help="a count or a comma list (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of every peer (default: %(default)s)"
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma list of {', '.join(PEERS)} (default: all; the job always runs: it is the reference)",
    )
    parser.add_argument(
        "--peers-python",
        default=None,
        help=f"the interpreter of the Quix/Bytewax peers (default: {PEERS_VENV}/bin/python of the repo)",
    )
    parser.add_argument(
        "--checkpoint-interval-ms",
        type=int,
        default=1000,
        help="the job's checkpoint interval (default: %(default)s)",
    )
    parser.add_argument(
        "--out-of-orderness-ms",
        type=int,
        default=1000,
        help="the job's watermark slack; the peers' window grace (default: %(default)s)",
    )
    parser.add_argument(
        "--throughput-provisional-interval-ms",
        type=int,
        default=200,
        help="the job's provisional interval (default: %(default)s, the job default)",
    )
    parser.add_argument(
        "--stack-dir", default=None, help="use this running stack (default: a temporary one)"
    )
    parser.add_argument("--out", default="bench-results", help="directory of the PNG and JSON")


@dataclass
class PeerRun:
    peer: str
    run: int
    trades: int
    trades_per_s: float
    cpu_us_per_trade: float
    span_s: float
    load: str  # /proc/loadavg after the run
    bars_compared: int = 0
    values_compared: int = 0  # indicator values (not None) among the compared fields
    mismatches: int = 0
    missing: int = 0
    extra: int = 0
    first_mismatch: str = ""
    compared: str = ""  # which fields were compared
    note: str = ""

    @property
    def equal(self) -> bool:
        return (
            self.bars_compared > 0
            and self.values_compared > 0
            and not (self.mismatches or self.missing or self.extra)
        )


@dataclass
class PeersResult:
    timestamp: str
    loadavg_start: str
    settings: dict[str, Any]
    runs: list[PeerRun] = field(default_factory=list)
    loadavg_end: str = ""


# --- the peers' processes ---------------------------------------------------------------


def peers_python(args: argparse.Namespace) -> Path:
    py = Path(args.peers_python) if args.peers_python else REPO / PEERS_VENV / "bin" / "python"
    if not py.exists():
        raise PeersVenvMissingError(
            f"{py} does not exist: the Quix Streams and Bytewax peers run in their own venv; "
            "build it with `make bench-peers-setup` (or pass --peers without quix,bytewax)"
        )
    return py


def _wait_exit(procs: Procs, name: str, pid: int, deadline_s: float) -> None:
    from torghut.stack import procs as stack_procs

    deadline = time.monotonic() + deadline_s
    while stack_procs.alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"peer {name} still running after {deadline_s:.0f} s; see {procs.log_dir}"
            )
        time.sleep(0.1)


def _create_topics(state: Any, names: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(state.kafka_client_config())
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names]).values():
        fut.result(30)


def read_topic(state: Any, topic: str) -> list[bytes]:
    """Every committed record of a topic, from the start to its end now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from torghut.bench.common import quiet_kafka_logger

    c = Consumer(
        {
            **state.kafka_client_config(),
            "group.id": f"bench-peers-read-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "logger": quiet_kafka_logger,
        }
    )
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out: list[bytes] = []
        deadline = time.monotonic() + 120
        # offsets, not record counts: a transactional topic's commit markers take offsets too
        while any(
            ends[tp.partition] > 0 and tp.offset < ends[tp.partition]
            for tp in c.position([TopicPartition(topic, p) for p in parts])
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: not read to its end ({ends}) within 120 s")
            out.extend(m.value() for m in c.consume(10_000, 0.5) if m.error() is None)
        return out
    finally:
        c.close()


def decode_final(decode: Any, bars: list[bytes], signals: list[bytes]) -> dict[str, list[Any]]:
    """bar key -> [bar fields..., trade signals..., quote signals...] of the final records."""
    out: dict[str, list[Any]] = {}
    sig: dict[str, dict[str, Any]] = {}
    for value in signals:
        rec = decode(value)
        if rec["is_final"]:
            sig[bar_key(rec["symbol"], end_ns(rec["window"]["start"]) // 1000)] = rec
    for value in bars:
        rec = decode(value)
        if not rec["is_final"]:
            continue
        key = bar_key(rec["symbol"], end_ns(rec["window"]["start"]) // 1000)
        s = sig.get(key, {})
        out[key] = [
            *(rec[f] for f in BAR_FIELDS),
            *(s.get(f) for f in TRADE_SIGNALS + QUOTE_SIGNALS),
        ]
    return out


def compare(
    reference: dict[str, list[Any]], peer: dict[str, list[Any]], fields: int, run: PeerRun
) -> None:
    """Books into ``run`` how ``peer``'s final bars differ from the job's (the sentinel's
    bars left out): the first ``fields`` values of each are compared, exactly."""
    ref = {k: v for k, v in reference.items() if not k.startswith(SENTINEL + "@")}
    got = {k: v for k, v in peer.items() if not k.startswith(SENTINEL + "@")}
    run.bars_compared = len(ref.keys() & got.keys())
    run.missing = len(ref.keys() - got.keys())
    run.extra = len(got.keys() - ref.keys())
    names = [*BAR_FIELDS, *TRADE_SIGNALS, *QUOTE_SIGNALS][:fields]
    every = len(BAR_FIELDS) + len(TRADE_SIGNALS) + len(QUOTE_SIGNALS)
    run.compared = "bars, every indicator" + ("" if fields == every else " but spread, imbalance")
    for k in sorted(ref.keys() & got.keys()):
        a, b = ref[k][:fields], got[k][:fields]
        run.values_compared += sum(v is not None for v in a[len(BAR_FIELDS) :])
        if a != b:
            run.mismatches += 1
            if not run.first_mismatch:
                diff = {n: (x, y) for n, x, y in zip(names, a, b, strict=True) if x != y}
                run.first_mismatch = f"{k}: {diff} (job, peer)"
    if not run.first_mismatch and (run.missing or run.extra):
        run.first_mismatch = f"missing {sorted(ref.keys() - got.keys())[:3]}, extra {sorted(got.keys() - ref.keys())[:3]}"


def _run_kafka_peer(
    peer: str, state: Any, args: argparse.Namespace, procs: Procs, tag: str, work_dir: Path
) -> tuple[dict[str, Any], list[bytes], list[bytes]]:
    bars_topic, signals_topic = f"bench.peers.{tag}.bars", f"bench.peers.{tag}.signals"
    _create_topics(state, [bars_topic, signals_topic])
    result_file = work_dir / f"{tag}.json"
    cmd = [
        str(peers_python(args)),
        "-m",
        KAFKA_PEERS[peer],
        "--bootstrap",
        state.kafka_bootstrap,
        "--registry",
        state.registry_url,
        "--bars-topic",
        bars_topic,
        "--signals-topic",
        signals_topic,
        "--result",
        str(result_file),
    ]
    if peer == "quix":
        cmd += ["--group", f"bench-peers-{tag}", "--state-dir", str(work_dir / f"{tag}-state")]
        cmd += ["--grace-ms", str(args.out_of_orderness_ms), "--sentinel", SENTINEL]
    else:
        cmd += [
            "--recovery-dir",
            str(work_dir / f"{tag}-recovery"),
            "--wait-ms",
            str(args.out_of_orderness_ms),
        ]
    pid = procs.spawn(tag, cmd, {"PYTHONPATH": str(REPO)})
    _wait_exit(procs, tag, pid, max(300.0, args.throughput_trades / 200))
    procs.stop(tag)
    if not result_file.exists():
        raise RuntimeError(
            f"peer {peer} exited without its result file; see {procs.log_dir / (tag + '.log')}"
        )
    return (
        json.loads(result_file.read_text()),
        read_topic(state, bars_topic),
        read_topic(state, signals_topic),
    )


def _run_bare_loop(
    args: argparse.Namespace, backlog: Backlog, procs: Procs, tag: str, work_dir: Path
) -> dict[str, Any]:
    result_file = work_dir / f"{tag}.json"
    cmd = [
        sys.executable,
        "-m",
        "torghut.bench.peer_apps.bare_loop",
        "--symbols",
        ",".join(symbols_of(args.symbols)),
        "--trades",
        str(args.throughput_trades),
        "--quote-ratio",
        str(args.throughput_quote_ratio),
        "--base-ns",
        str(backlog.base_ns),
        "--sentinel-ns",
        str(backlog.sentinel_ns),
        "--sentinel",
        SENTINEL,
        "--out-of-orderness-ms",
        str(args.out_of_orderness_ms),
        *(["--conditions"] if args.throughput_conditions else []),
        "--result",
        str(result_file),
    ]
    pid = procs.spawn(tag, cmd, {"PYTHONPATH": str(REPO)})
    _wait_exit(procs, tag, pid, max(300.0, args.throughput_trades / 1000))
    procs.stop(tag)
    if not result_file.exists():
        raise RuntimeError(
            f"bare loop exited without its result file; see {procs.log_dir / (tag + '.log')}"
        )
    return json.loads(result_file.read_text())


def _from_peer_result(peer: str, run: int, res: dict[str, Any]) -> PeerRun:
    span_s = (res["last_ns"] - res["first_ns"]) / 1e9
    return PeerRun(
        peer=peer,
        run=run,
        trades=res["trades"],
        trades_per_s=res["trades"] / span_s if span_s > 0 else float("nan"),
        cpu_us_per_trade=res["cpu_s"] / res["trades"] * 1e6 if res["trades"] else float("nan"),
        span_s=span_s,
        load=load(),
        note=res.get("note", ""),
    )


def run_peers(
    state: Any, args: argparse.Namespace, procs: Procs, run_id: str, work_dir: Path
) -> list[PeerRun]:
    """Produce the backlog, then ``--runs`` rounds of every peer (order rotating per run);
    each peer's final bars and indicators compared with the same round's job's."""
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer

    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"--peers: unknown {sorted(unknown)}; choose from {', '.join(PEERS)}")
    if {"quix", "bytewax"} & set(peers):
        peers_python(args)  # fail before anything starts
    others = [p for p in PEERS if p in peers and p != "job"]
    decode = AvroDeserializer(SchemaRegistryClient(state.registry_url)).decode
    backlog = produce_backlog(state, args, symbols_of(args.symbols))
    out: list[PeerRun] = []
    for r in range(args.runs):
        order = ["job", *others]
        order = order[r % len(order) :] + order[: r % len(order)]
        # the timing order rotates; the comparison waits for the round's end: the same
        # round's job output is every peer's reference
        runs: dict[str, PeerRun] = {}
        finals: dict[str, dict[str, list[Any]]] = {}
        for peer in order:
            tag = f"{run_id}-r{r}-{peer}"
            say(f"peers: run {r + 1}/{args.runs}: {peer} (load {load()})")
            if peer == "job":
                jr = work_off_backlog(
                    state,
                    args,
                    procs,
                    run_id,
                    backlog,
                    group=f"bench-peers-{tag}",
                    keep_signals=True,
                )
                tp = jr.result
                runs[peer] = PeerRun(
                    peer="job",
                    run=r,
                    trades=tp.trades,
                    trades_per_s=tp.trades_per_s,
                    cpu_us_per_trade=tp.job_cpu_us_per_event / tp.trade_share,
                    span_s=(tp.points[-1][0] - tp.points[0][0]) if tp.points else float("nan"),
                    load=load(),
                    note=f"end to end {tp.end_to_end_trades_per_s:,.0f} trades/s",
                )
                finals[peer] = decode_final(
                    decode, [v for _, v in jr.bars], [v for _, v in jr.signals]
                )
            elif peer == "bare-loop":
                res = _run_bare_loop(args, backlog, procs, tag, work_dir)
                runs[peer] = _from_peer_result(peer, r, res)
                finals[peer] = res["final"]
            else:
                res, bars, signals = _run_kafka_peer(peer, state, args, procs, tag, work_dir)
                runs[peer] = _from_peer_result(peer, r, res)
                finals[peer] = decode_final(decode, bars, signals)
            pr = runs[peer]
            say(
                f"peers: {peer}: {pr.trades_per_s:,.0f} trades/s, {pr.cpu_us_per_trade:.1f} CPU-µs/trade"
            )
        ref = finals["job"]
        n_all = len(BAR_FIELDS) + len(TRADE_SIGNALS) + len(QUOTE_SIGNALS)
        for peer in others:
            fields = n_all if peer == "bare-loop" else len(BAR_FIELDS) + len(TRADE_SIGNALS)
            compare(ref, finals[peer], fields, runs[peer])
            pr = runs[peer]
            say(
                f"peers: {peer}: {pr.bars_compared} final bars compared with the job's: "
                + ("equal" if pr.equal else f"DIFFERENT ({pr.first_mismatch})")
            )
        out.extend(runs[p] for p in order)
    return out


# --- the report -------------------------------------------------------------------------


def summary(runs: list[PeerRun]) -> dict[str, dict[str, float]]:
    """Per peer: min/median/max of trades/s and CPU-µs per trade, and the job's ratios."""
    by: dict[str, list[PeerRun]] = {}
    for pr in runs:
        by.setdefault(pr.peer, []).append(pr)
    out: dict[str, dict[str, float]] = {}
    for peer, rs in by.items():
        tps = [r.trades_per_s for r in rs]
        cpu = [r.cpu_us_per_trade for r in rs]
        out[peer] = {
            "runs": len(rs),
            "tps_min": min(tps),
            "tps_median": statistics.median(tps),
            "tps_max": max(tps),
            "cpu_us_min": min(cpu),
            "cpu_us_median": statistics.median(cpu),
            "cpu_us_max": max(cpu),
        }
    job = out.get("job")
    if job:
        for s in out.values():
            # the job's multiple of the peer: trades/s, and trades per CPU-second
            s["job_tps_ratio"] = job["tps_median"] / s["tps_median"]
            s["job_per_cpu_ratio"] = s["cpu_us_median"] / job["cpu_us_median"]
    return out


def print_summary(res: PeersResult) -> None:
    s = summary(res.runs)
    print(
        f"\ntorghut bench peers {res.timestamp}: {os.cpu_count()} CPUs, load {res.loadavg_start} -> {res.loadavg_end}"
    )
    print(
        f"{'peer':<10} {'trades/s min/median/max':>28} {'CPU-µs/trade min/median/max':>30} {'job ×(trades/s)':>16} {'job ×(per CPU-s)':>17}"
    )
    for peer, v in s.items():
        print(
            f"{peer:<10} {v['tps_min']:>9,.0f}/{v['tps_median']:>8,.0f}/{v['tps_max']:>8,.0f} "
            f"{v['cpu_us_min']:>11.1f}/{v['cpu_us_median']:>8.1f}/{v['cpu_us_max']:>8.1f} "
            f"{v.get('job_tps_ratio', float('nan')):>16.2f} {v.get('job_per_cpu_ratio', float('nan')):>17.2f}"
        )
    for pr in res.runs:
        eq = (
            "" if pr.peer == "job" else ("equal" if pr.equal else f"DIFFERENT: {pr.first_mismatch}")
        )
        print(
            f"  run {pr.run + 1} {pr.peer:<10} {pr.trades_per_s:>9,.0f} trades/s {pr.cpu_us_per_trade:>7.1f} µs/trade "
            f"load {pr.load}  {pr.bars_compared or ''} {eq} {pr.note}"
        )
    targets = []
    if "quix" in s:
        targets.append(
            f"job vs Quix per CPU-second: {s['quix']['job_per_cpu_ratio']:.2f}× (target ≥ 1.5×)"
        )
    if "bare-loop" in s:
        bl = s["bare-loop"]
        targets.append(
            f"job vs bare loop: {bl['job_tps_ratio']:.2f}× trades/s, {bl['job_per_cpu_ratio']:.2f}× per CPU-second (target ≥ 0.6×)"
        )
    for t in targets:
        print(t)


def plot(out_dir: Path, res: PeersResult) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(res.runs)
    peers = list(s)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in (
        (axes[0], "tps", "trades/s (median; bars: min-max)"),
        (axes[1], "cpu_us", "CPU-µs per trade, process tree (median; min-max)"),
    ):
        med = [s[p][f"{key}_median"] for p in peers]
        lo = [m - s[p][f"{key}_min"] for p, m in zip(peers, med, strict=True)]
        hi = [s[p][f"{key}_max"] - m for p, m in zip(peers, med, strict=True)]
        colours = ["#2a7" if p == "job" else "#888" for p in peers]
        ax.bar(peers, med, yerr=[lo, hi], color=colours, capsize=4)
        for i, m in enumerate(med):
            ax.annotate(
                f"{m:,.0f}" if key == "tps" else f"{m:.1f}",
                (i, m),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_title(label, fontsize=10)
        ax.set_yscale("log")
        ax.grid(alpha=0.3, axis="y")
    trades = res.runs[0].trades if res.runs else 0
    fig.suptitle(
        f"torghut bench peers {res.timestamp}: {trades:,} trades, {s.get('job', {}).get('runs', 0):.0f} runs each; "
        f"{os.cpu_count()} CPUs, load {res.loadavg_start} -> {res.loadavg_end}",
        fontsize=10,
    )
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"peers-{res.timestamp}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    import logging
    import shutil
    import tempfile

    from torghut.bench.pipeline import _stack

    logging.basicConfig(level=logging.WARNING)
    if args.runs < 1 or args.throughput_trades < 1:
        raise SystemExit("--runs and --throughput-trades must be positive")
    args.throughput_checkpoint_interval_ms = None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{os.getpid()}"
    settings = {k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)}
    res = PeersResult(timestamp=stamp, loadavg_start=load(), settings=settings)
    work_dir = Path(tempfile.mkdtemp(prefix="torghut-bench-peers-"))
    try:
        with _stack(args, run_id) as (state, procs):
            res.runs = run_peers(state, args, procs, run_id, work_dir)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    res.loadavg_end = load()
    print_summary(res)
    out_dir = Path(args.out)
    png = plot(out_dir, res)
    js = out_dir / f"peers-{stamp}.json"
    js.write_text(
        json.dumps(
            {
                **asdict(res),
                "summary": summary(res.runs),
                "equal": {
                    f"{p.peer} run {p.run + 1}": p.equal for p in res.runs if p.peer != "job"
                },
            },
            indent=2,
            default=str,
        )
    )
    print(f"plot      : {png}\nnumbers   : {js}")
    return 0 if all(p.equal for p in res.runs if p.peer != "job") else 1


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    add_arguments(p)
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(run(p.parse_args()))
