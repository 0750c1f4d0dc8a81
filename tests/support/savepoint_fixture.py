"""The upgrade fixture: a savepoint written by an older build of the TA job, kept
in `tests/data/savepoint-<name>/` with what it needs to be restored on a fresh stack.

A savepoint holds the Kafka source's offsets and the job's keyed state; it does not hold the
log. So the fixture keeps, next to the savepoint:

- `raw.jsonl.gz` — every raw record the old job read (topic, partition, offset, Kafka
  timestamp, key, decoded envelope; `null` for an event-time heartbeat). Written back in
  order into the same partitions of a fresh stack's raw topics, the records get the same
  offsets, so the savepoint's source offsets point at the same place in the same log;
- `emitted.json.gz` — the `read_committed` final bars and signals the old job emitted before
  its savepoint (the restored job must emit exactly the rest);
- `manifest.json` — the build (commit, state layout), settings, symbols, end offsets;
- `savepoint/` — the savepoint's files (`_metadata` and any state files; relative paths, so
  it restores from wherever it is uploaded).

The feed is small and synthetic (8 symbols, a trade per symbol every 250 ms, a quote per
symbol and a heartbeat every 500 ms, event time from a fixed start) and 40.6 s long: enough
bars for every indicator's warm-up (MACD needs 34), so the restored indicator state matters.

Regenerate (with the build whose savepoint you want to keep — a release older than this
file needs this file copied into its tree; `docs/deploy.md`, "Upgrades"):

    git worktree add /tmp/torghut-old <commit>
    cp tests/support/savepoint_fixture.py /tmp/torghut-old/tests/support/   # if missing
    ln -s $PWD/.venv /tmp/torghut-old/.venv && ln -s $PWD/.artifacts /tmp/torghut-old/.artifacts
    cd /tmp/torghut-old && .venv/bin/python -m tests.support.savepoint_fixture \\
        --out <repo>/tests/data/savepoint-<name>

(`.artifacts` holds the glue jar built from `jvm/`: link it only if `jvm/` is the same in
both trees, else run `make setup` in the worktree.) It starts a stack and a standalone
cluster of the old tree's code, feeds the log, waits until the job committed its offsets at
the end of it, stops the job with a savepoint through REST and writes the fixture.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.topics import QUOTES, TRADES

S = 1_000_000_000
MS = 1_000_000
SYMBOLS = ["FCA", "FCB", "FCC", "FCD", "FCE", "FCF", "FCL", "FCX"]
START_NS = 1_796_342_400 * S  # 2026-12-04T00:00:00Z, fixed: the state holds event times
FIXTURE_S = 40.6  # the old job's log: 40 closed seconds and the open one at the cut
TRADE_EVERY_NS = 250 * MS
SLOW_EVERY_NS = 500 * MS  # quotes and heartbeats
INGEST_DELAY_NS = 3 * MS  # ingest_ts = event_ts + this: the log is the same on every replay
RAW_TOPICS = (TRADES.name, QUOTES.name)


@dataclass(frozen=True)
class RawRecord:
    """One raw record as written: `envelope` None is an event-time heartbeat into
    `partition`; otherwise keyed by its symbol (the partition is Kafka's murmur2 choice)."""

    topic: str
    timestamp_ms: int
    envelope: dict | None
    partition: int | None = None
    offset: int | None = None


def _envelope(channel: str, sym: str, event_ns: int, seq: int, payload: dict, trace: str):
    return {
        "ingest_ts": event_ns + INGEST_DELAY_NS,
        "event_ts": event_ns,
        "feed": "test",
        "channel": channel,
        "symbol": sym,
        "seq": seq,
        "payload": payload,
        "is_final": True,
        "source": "test",
        "window": None,
        "trace_id": trace,
    }


def feed(from_ns: int, until_ns: int, partitions: int, seed: int) -> Iterator[RawRecord]:
    """The synthetic feed between two event times, in event-time order: a trade per symbol
    every 250 ms, a quote per symbol and a heartbeat (at t - 1 s) into every raw partition
    every 500 ms. Seqs and trade ids continue from `from_ns` (a function of the time), so
    the continuation after the fixture is the same feed going on."""
    rng = random.Random(seed)
    t = from_ns + (START_NS - from_ns) % TRADE_EVERY_NS  # the first step on the 250 ms grid
    while t < until_ns:
        step = (t - START_NS) // TRADE_EVERY_NS
        for i, sym in enumerate(SYMBOLS):
            price = round(100 + 5 * i + rng.uniform(-1, 1), 4)
            payload = {
                "id": step * len(SYMBOLS) + i + 1,
                "exchange": "V",
                "price": price,
                "size": float(rng.randint(1, 9)),
                "conditions": ["@"],
                "tape": "C",
            }
            env = _envelope("trades", sym, t, step + 1, payload, f"{sym}-{payload['id']}")
            yield RawRecord(TRADES.name, t // MS, env)
        if (t - START_NS) % SLOW_EVERY_NS == 0:
            q_seq = (t - START_NS) // SLOW_EVERY_NS + 1
            for i, sym in enumerate(SYMBOLS):
                mid = 100 + 5 * i
                payload = {
                    "bid_exchange": "V",
                    "bid_price": mid - 0.05,
                    "bid_size": 300.0,
                    "ask_exchange": "V",
                    "ask_price": mid + 0.05,
                    "ask_size": 100.0,
                    "conditions": ["R"],
                    "tape": "C",
                }
                yield RawRecord(
                    QUOTES.name, t // MS, _envelope("quotes", sym, t, q_seq, payload, "")
                )
            for topic in RAW_TOPICS:
                for p in range(partitions):
                    yield RawRecord(topic, (t - S) // MS, None, partition=p)
        t += TRADE_EVERY_NS


def closing_heartbeats(at_ns: int, partitions: int) -> Iterator[RawRecord]:
    """A heartbeat at `at_ns` into every raw partition: every second before it closes."""
    for topic in RAW_TOPICS:
        for p in range(partitions):
            yield RawRecord(topic, at_ns // MS, None, partition=p)


class LogWriter:
    """Writes `RawRecord`s to the raw topics in order (one idempotent producer: offsets
    follow the order within a partition) and returns them with partition and offset."""

    def __init__(self, state: Any) -> None:
        from confluent_kafka import Producer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroSerializer

        reg = SchemaRegistryClient(state.registry_url)
        self.ser = {t.name: AvroSerializer(reg, t) for t in (TRADES, QUOTES)}
        self.p = Producer(
            {
                **state.kafka_client_config(),
                "linger.ms": 5,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
            }
        )

    def write(self, records: Iterable[RawRecord]) -> list[RawRecord]:
        from shared.heartbeat import HEADER, HEADER_VALUE

        done: list[RawRecord | None] = []
        errors: list[str] = []

        def report(i: int, rec: RawRecord):
            def cb(err, msg) -> None:
                if err is not None:
                    errors.append(f"{rec.topic}: {err}")
                    return
                done[i] = RawRecord(
                    rec.topic, rec.timestamp_ms, rec.envelope, msg.partition(), msg.offset()
                )

            return cb

        for i, rec in enumerate(records):
            done.append(None)
            kwargs: dict[str, Any] = {"timestamp": rec.timestamp_ms, "on_delivery": report(i, rec)}
            if rec.partition is not None:
                kwargs["partition"] = rec.partition
            if rec.envelope is None:
                value, kwargs["headers"] = None, [(HEADER, HEADER_VALUE)]
            else:
                value = self.ser[rec.topic].encode(rec.envelope)
                kwargs["key"] = rec.envelope["symbol"].encode()
            while True:
                try:
                    self.p.produce(rec.topic, value, **kwargs)
                    break
                except BufferError:
                    self.p.poll(0.05)
            self.p.poll(0)
        if self.p.flush(60) != 0:
            raise RuntimeError("raw records not acked within 60 s")
        if errors or any(r is None for r in done):
            raise RuntimeError(f"raw records not written: {errors[:3]}")
        return [r for r in done if r is not None]


def keep_raw_topics_forever(state: Any) -> None:
    """`retention.ms=-1` on the raw topics: the fixture's event times are in the past, and
    time retention (by record timestamp) could delete the restored job's input under it."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient(state.kafka_client_config())
    forever = ConfigEntry("retention.ms", "-1", incremental_operation=AlterConfigOpType.SET)
    res = [ConfigResource("topic", t, incremental_configs=[forever]) for t in RAW_TOPICS]
    for fut in admin.incremental_alter_configs(res).values():
        fut.result(30)


def end_offsets(records: Iterable[RawRecord]) -> dict[str, int]:
    """`topic-partition` -> the offset after its last record."""
    out: dict[str, int] = {}
    for r in records:
        key = f"{r.topic}-{r.partition}"
        out[key] = max(out.get(key, 0), int(r.offset) + 1)  # type: ignore[arg-type]
    return dict(sorted(out.items()))


# ---- the fixture's files ---------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def save_raw(path: Path, records: list[RawRecord]) -> None:
    with gzip.open(path, "wt") as f:
        for r in records:
            f.write(json.dumps([r.topic, r.partition, r.offset, r.timestamp_ms, r.envelope]) + "\n")


def load_raw(path: Path) -> list[RawRecord]:
    with gzip.open(path, "rt") as f:
        return [RawRecord(t, ts, env, p, o) for t, p, o, ts, env in map(json.loads, f)]


def upload_savepoint(state: Any, local: Path, prefix: str) -> str:
    """Upload `local` (a savepoint dir) under `prefix` in the checkpoint bucket; its s3a path."""
    from torghut.stack import minio

    s3 = minio.client(state.s3_endpoint, state.s3_access_key, state.s3_secret_key)
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.fput_object(state.s3_bucket, f"{prefix}/{f.relative_to(local).as_posix()}", str(f))
    return f"s3a://{state.s3_bucket}/{prefix}"


def download_savepoint(state: Any, location: str, local: Path) -> list[str]:
    from torghut.stack import minio

    s3 = minio.client(state.s3_endpoint, state.s3_access_key, state.s3_secret_key)
    prefix = location.split(f"s3a://{state.s3_bucket}/", 1)[1].rstrip("/") + "/"
    names = []
    for o in s3.list_objects(state.s3_bucket, prefix=prefix, recursive=True):
        rel = o.object_name[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue  # S3A's directory markers
        s3.fget_object(state.s3_bucket, o.object_name, str(local / rel))
        names.append(rel)
    return sorted(names)


def _finals(records: list[dict], fields: tuple[str, ...]) -> list[dict]:
    from tests.support.oracle import start_us

    return sorted(
        (
            {"symbol": r["symbol"], "start_us": start_us(r), **{k: r[k] for k in fields}}
            for r in records
            if r["is_final"]
        ),
        key=lambda d: (d["symbol"], d["start_us"]),
    )


BAR_FIELDS = ("open", "high", "low", "close", "volume", "vwap", "trade_count")
SIGNAL_FIELDS = ("ema12", "macd", "rsi14", "boll_upper", "atr14", "spread")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def generate(out: Path, delivery_guarantee: str) -> None:
    """Run the build of this tree on a fresh stack and standalone cluster and write the
    fixture to `out` (see the module docstring)."""
    from confluent_kafka.admin import AdminClient

    from flink_job.symbol_processor import SYMBOL_STATE_LAYOUT
    from tests.support.ta_job import read_topic
    from torghut.flink_cluster import FlinkCluster
    from torghut.stack import procs, supervisor

    partitions, group, prefix = 4, "upgrade-fixture", "upgrade-fixture"
    work = Path(tempfile.mkdtemp(prefix="savepoint-fixture-"))
    out.mkdir(parents=True, exist_ok=True)
    with procs.tied_to_this_process():
        state = supervisor.up(work / "stack", partitions=partitions)
    cluster = None
    try:
        keep_raw_topics_forever(state)
        values = {
            "kafka_bootstrap": state.kafka_bootstrap,
            "registry_url": state.registry_url,
            "s3_endpoint": state.s3_endpoint,
            "s3_access_key": state.s3_access_key,
            "s3_secret_key": state.s3_secret_key,
            "checkpoint_dir": f"s3a://{state.s3_bucket}/{prefix}",
            "checkpoint_interval_ms": 1000,
            "parallelism": 1,
            "starting_offsets": "committed-earliest",
            "consumer_group": group,
            "transactional_id_prefix": prefix,
            "transaction_timeout_ms": 60_000,
            "delivery_guarantee": delivery_guarantee,
            "job_name": "ta-upgrade-fixture",
        }
        cluster = FlinkCluster(work / "cluster", values, taskmanagers=1, slots=1)
        cluster.start(timeout_s=180)
        job = cluster.job_id(180)
        cluster.wait(lambda: cluster.all_tasks_running(job), 180, "all tasks RUNNING")
        print(f"job {job} running; writing the log", flush=True)
        until = START_NS + int(FIXTURE_S * S)
        written = LogWriter(state).write(feed(START_NS, until, partitions, seed=14))
        ends = end_offsets(written)

        admin = AdminClient(state.kafka_client_config())

        def committed_at_end() -> bool:
            from confluent_kafka import ConsumerGroupTopicPartitions

            fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
            got = {
                f"{tp.topic}-{tp.partition}": tp.offset
                for tp in fut[group].result(10).topic_partitions
            }
            return all(got.get(k, -1) >= v for k, v in ends.items())

        cluster.wait(committed_at_end, 240, "the job's committed offsets at the end of the log")
        symbols = set(SYMBOLS)
        location = cluster.stop_with_savepoint(job, f"s3a://{state.s3_bucket}/{prefix}/savepoints")
        cluster.wait(lambda: cluster.job_state(job) == "FINISHED", 60, "the job to finish")
        print(f"savepoint {location}", flush=True)
        # after the stop: the savepoint's transaction is committed, nothing else follows
        bars = read_topic(state, "ta.bars.1s.v1", symbols, lambda r: False, timeout_s=15)
        signals = read_topic(state, "ta.signals.v1", symbols, lambda r: False, timeout_s=15)
        sp_dir = out / "savepoint"
        sp_dir.mkdir(exist_ok=True)
        files = download_savepoint(state, location, sp_dir)
        save_raw(out / "raw.jsonl.gz", written)
        with gzip.open(out / "emitted.json.gz", "wt") as f:
            json.dump(
                {"bars": _finals(bars, BAR_FIELDS), "signals": _finals(signals, SIGNAL_FIELDS)}, f
            )
        from importlib.metadata import version

        manifest = {
            "what": "a savepoint of the TA job written by the build below (tests/support/savepoint_fixture.py)",
            "commit": _git("rev-parse", "HEAD"),
            "commit_date": _git("log", "-1", "--format=%cI"),
            "tree_dirty": bool(_git("status", "--porcelain", "--", "flink_job", "shared", "jvm")),
            "flink": version("apache-flink"),
            "symbol_state_layout": SYMBOL_STATE_LAYOUT,
            "delivery_guarantee": delivery_guarantee,
            "parallelism": 1,
            "partitions": partitions,
            "consumer_group": group,
            "transactional_id_prefix": prefix,
            "symbols": SYMBOLS,
            "start_ns": START_NS,
            "end_ns": until,
            "end_offsets": ends,
            "savepoint_files": files,
            "final_bars": len(_finals(bars, BAR_FIELDS)),
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        print(json.dumps(manifest, indent=2))
    finally:
        if cluster is not None:
            cluster.stop()
        supervisor.down(state)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Write the savepoint-upgrade fixture with the TA job of this tree "
        "(see the module docstring for how to regenerate it from an older release)."
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="fixture dir, e.g. tests/data/savepoint-<name>"
    )
    ap.add_argument(
        "--delivery-guarantee",
        default="exactly-once",
        choices=("exactly-once", "at-least-once"),
        help="the old job's sink mode (default: exactly-once, as deployed)",
    )
    args = ap.parse_args(argv)
    generate(args.out.resolve(), args.delivery_guarantee)
    return 0


if __name__ == "__main__":
    sys.exit(main())
