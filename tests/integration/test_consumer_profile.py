"""The consumer profile at runtime: the `enabled` flag, exactly-once <-> at-least-once and a
topic version switch, against the real Kafka, the real registry and ClickHouse's Kafka engine
(embedded, chdb) running the very DDL of schemas/clickhouse, plus the Python consumer
(`shared/ta_consumer.py`) and `torghut consume`.

Scaled: instead of the TA job, a transactional producer writes TA records the way the job's
EXACTLY_ONCE sink does (Confluent-framed Avro with registry ids, one Kafka transaction per
batch, committed or aborted). That is what the consumers see of the job (its records, its
transaction markers) at a fraction of a job run's time; the job's own delivery is drilled in
`tests/integration/test_ta_job.py`. One ClickHouse and one consumer group per module; the
profile is switched with `apply_ingest` (what `torghut clickhouse flags` runs). The catalog
topics are shared with other tests: every assertion filters on this module's symbols, and
offsets are those of this module's own consumer groups.

What "exact" means for the final view in every profile: each final bar written in a committed
transaction is in `ta_microbars_final` / `ta_signals_final` exactly once with its committed
values, and no final record of an aborted transaction is there. In at-least-once, provisional
records are read `read_uncommitted`: one of an open transaction is in the tables before the
commit, and one of an aborted transaction may stay as a provisional row (`is_final` false).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from shared.consumer_profile import ConsumerProfile
from shared.registry import SchemaRegistryClient
from shared.schemas import schema_json
from shared.serde import AvroSerializer
from shared.settings import KafkaConnection
from shared.ta_consumer import NoSchemaError, TaConsumer, UnknownTopicError
from shared.topics import TA_BARS_1S, TA_SIGNALS
from tests.conftest import REPO_ROOT, wait_for
from tests.support.kafka import QUIET, create_topic
from tests.support.records import microbar, signal, window
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SchemaParams, apply, apply_ingest

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6].upper()
SYM = f"CP{RUN}"
V2_SYM = f"CV{RUN}"
# window starts a few minutes ago (inside the tables' TTL), one second apart
T0 = (time.time_ns() // 1_000_000_000 - 300) * 1_000_000
SIGNALS_V2 = "ta.signals.v2"
DEADLINE_S = 90


def sec(i: int) -> int:
    return T0 + i * 1_000_000


def bar(i: int, version: int, is_final: bool, close: float, symbol: str = SYM) -> dict[str, Any]:
    return microbar(
        symbol=symbol, window=window(sec(i)), version=version, is_final=is_final, close=close
    )


def sig(i: int, version: int, is_final: bool, close: float, symbol: str = SYM) -> dict[str, Any]:
    return signal(
        symbol=symbol, window=window(sec(i)), version=version, is_final=is_final, close=close
    )


def v2_signal_schema() -> dict[str, Any]:
    """The next Signal version as a test states it: one added field with a default (BACKWARD
    compatible), on a topic of its own. Production stays on ta.signals.v1."""
    s = json.loads(json.dumps(schema_json(TA_SIGNALS.value_schema)))
    s["fields"].append({"name": "venue", "type": "string", "default": ""})
    return s


class Writer:
    """Writes like the TA job's EXACTLY_ONCE sink: framed Avro, one transaction per batch."""

    def __init__(self, stack) -> None:
        self.registry = SchemaRegistryClient(stack.registry_url)
        self.bars = AvroSerializer(self.registry, TA_BARS_1S)
        self.signals = AvroSerializer(self.registry, TA_SIGNALS)
        v2 = v2_signal_schema()
        self._v2 = fastavro.parse_schema(v2)
        self._v2_id = self.registry.register(f"{SIGNALS_V2}-value", json.dumps(v2))
        self.p = Producer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "logger": QUIET,
                "transactional.id": f"consumer-profile-{RUN}",
            }
        )
        self.p.init_transactions(30)

    def encode_v2(self, record: dict[str, Any]) -> bytes:
        import io
        import struct

        buf = io.BytesIO()
        buf.write(struct.pack(">bI", 0, self._v2_id))
        fastavro.schemaless_writer(buf, self._v2, record)
        return buf.getvalue()

    def begin(self) -> None:
        self.p.begin_transaction()

    def send(
        self, bars: list[dict[str, Any]], signals: list[dict[str, Any]], v2: bool = False
    ) -> None:
        for r in bars:
            self.p.produce(TA_BARS_1S.name, self.bars.encode(r), key=r["symbol"].encode())
        for r in signals:
            value = self.encode_v2(r) if v2 else self.signals.encode(r)
            self.p.produce(SIGNALS_V2 if v2 else TA_SIGNALS.name, value, key=r["symbol"].encode())
        self.p.flush(30)

    def end(self, commit: bool) -> None:
        if commit:
            self.p.commit_transaction(30)
        else:
            self.p.abort_transaction(30)

    def write(
        self,
        bars: list[dict[str, Any]],
        signals: list[dict[str, Any]],
        commit: bool = True,
        v2: bool = False,
    ) -> None:
        self.begin()
        self.send(bars, signals, v2)
        self.end(commit)


class Drill:
    """The module's ClickHouse, writer and consumer-group names, and what it expects."""

    def __init__(self, stack, client: ChdbClient, params: SchemaParams, writer: Writer) -> None:
        self.stack, self.ch, self.params, self.w = stack, client, params, writer
        # (window start, close) of every final bar committed so far: what the final views hold
        self.finals: dict[int, float] = {}

    def switch(self, **profile: Any) -> ConsumerProfile:
        """What `torghut clickhouse flags` does; then await every Kafka table's consumer
        having its partitions (so a record written next is read whatever the reset policy)."""
        p = self.params.profile.model_copy(update=profile)
        self.params = dataclasses.replace(self.params, profile=p)
        apply_ingest(self.ch, self.params, wait_s=30)
        queues = {n for n, e in self.ingest_tables().items() if e == "Kafka"}

        def assigned() -> bool:
            rows = self.ch.rows(
                "SELECT table, max(length(assignments.topic)) FROM system.kafka_consumers "
                f"WHERE database = '{self.params.ingest_db}' GROUP BY table"
            )
            return {str(t) for t, n in rows if int(n) > 0} >= queues

        wait_for(assigned, DEADLINE_S, f"the Kafka tables' consumers assigned ({p.describe()})")
        return p

    def commit_finals(self, seconds: list[int], close: float) -> None:
        """Provisional then final records of `seconds` in one committed transaction."""
        bars = [bar(i, 1, False, close - 0.5) for i in seconds]
        bars += [bar(i, 2, True, close) for i in seconds]
        sigs = [sig(i, 1, False, close - 0.5) for i in seconds]
        sigs += [sig(i, 2, True, close) for i in seconds]
        self.w.write(bars, sigs)
        self.finals.update({sec(i): close for i in seconds})

    def final_view(self, table: str, symbol: str = SYM) -> list[tuple[int, float]]:
        rows = self.ch.rows(
            f"SELECT toString(toUnixTimestamp64Micro(window_start)), close "
            f"FROM torghut.{table}_final WHERE symbol = '{symbol}' ORDER BY window_start"
        )
        return [(int(w), float(c)) for w, c in rows]

    def expected_finals(self) -> list[tuple[int, float]]:
        return sorted(self.finals.items())

    def finals_exact(self) -> bool:
        want = self.expected_finals()
        return self.final_view("ta_microbars") == want and self.final_view("ta_signals") == want

    def await_finals(self, what: str) -> None:
        wait_for(self.finals_exact, DEADLINE_S, what)

    def rows(self, table: str, where: str) -> int:
        return int(
            self.ch.rows(f"SELECT count() FROM torghut.{table} WHERE symbol = '{SYM}' AND {where}")[
                0
            ][0]
        )

    def ingest_tables(self) -> dict[str, str]:
        rows = self.ch.rows(
            f"SELECT name, engine FROM system.tables WHERE database = '{self.params.ingest_db}'"
        )
        return {str(n): str(e) for n, e in rows}

    def committed(self, stream: str, topic: str) -> list[int]:
        """The committed offsets of this module's consumer group of `stream` on `topic`."""
        c = Consumer(
            {
                "bootstrap.servers": self.stack.kafka_bootstrap,
                "group.id": f"{self.params.consumer_group}-{stream}",
                "enable.auto.commit": False,
                "logger": QUIET,
            }
        )
        try:
            parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
            got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
            return [tp.offset for tp in got]
        finally:
            c.close()


@pytest.fixture(scope="module")
def drill(stack, tmp_path_factory) -> Iterator[Drill]:
    create_topic(stack, SIGNALS_V2)
    params = SchemaParams(
        kafka_broker=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        ingest_db_engine="Memory",
        consumer_group=f"consumer-profile-{RUN.lower()}",
        profile=ConsumerProfile(profile="exactly-once", enabled=True),
    )
    client = ChdbClient(tmp_path_factory.mktemp("chdb-consumer-profile"))
    try:
        apply(client, params, wait_s=30)
        d = Drill(stack, client, params, Writer(stack))
        d.commit_finals([0, 1, 2], 100.0)
        d.await_finals("the first committed bars in the final views")
        yield d
    finally:
        client.close()


def test_disabled_ingests_nothing_and_keeps_the_offsets_enabled_resumes_every_bar_once(
    drill: Drill,
) -> None:
    wait_for(
        lambda: (
            all(o >= 0 for o in drill.committed("microbars", TA_BARS_1S.name))
            and all(o >= 0 for o in drill.committed("signals", TA_SIGNALS.name))
        ),
        DEADLINE_S,
        "the consumer groups' first committed offsets",
    )
    drill.switch(enabled=False)
    # no Kafka table and no materialized view: nothing can consume
    assert drill.ingest_tables() == {}
    assert drill.ch.rows("SELECT count() FROM system.kafka_consumers") == [[0]]
    held = {
        "microbars": drill.committed("microbars", TA_BARS_1S.name),
        "signals": drill.committed("signals", TA_SIGNALS.name),
    }
    before = {t: drill.rows(t, "1") for t in ("ta_microbars", "ta_signals")}
    start_ns = time.time_ns()
    drill.commit_finals([3, 4], 101.0)
    # the records are committed and readable by another consumer...
    with TaConsumer(
        KafkaConnection(bootstrap=drill.stack.kafka_bootstrap),
        drill.w.registry,
        TA_BARS_1S.name,
        "exactly-once",
        start_ns,
    ) as c:
        seen = [r.value for r in c.records(idle_s=3) if r.value["symbol"] == SYM]
    assert sorted(int(v["version"]) for v in seen) == [2, 2]
    # ...but ClickHouse loaded none and its groups' offsets did not move
    assert {t: drill.rows(t, "1") for t in ("ta_microbars", "ta_signals")} == before
    assert drill.committed("microbars", TA_BARS_1S.name) == held["microbars"]
    assert drill.committed("signals", TA_SIGNALS.name) == held["signals"]

    drill.switch(enabled=True)
    assert "Kafka" in drill.ingest_tables().values()
    drill.await_finals("the bars written while disabled, after enabling")
    # it resumed from the held offsets: they moved on, and nothing is in the final views twice
    assert all(
        a > b
        for a, b in zip(
            drill.committed("microbars", TA_BARS_1S.name), held["microbars"], strict=True
        )
    )
    twice = drill.ch.rows(
        "SELECT count() FROM (SELECT window_start FROM torghut.ta_microbars_final "
        f"WHERE symbol = '{SYM}' GROUP BY window_start HAVING count() > 1)"
    )
    assert twice == [[0]]


def test_profile_switched_exactly_once_to_at_least_once_and_back_keeps_the_final_views_exact(
    drill: Drill,
) -> None:
    # exactly-once: an aborted transaction's records never land, provisional or final
    drill.w.write(
        [bar(10, 9, False, -1.0), bar(10, 10, True, -1.0)], [sig(10, 10, True, -1.0)], commit=False
    )
    drill.commit_finals([5], 102.0)
    drill.await_finals("a committed bar after an aborted transaction (exactly-once)")
    assert drill.rows("ta_microbars", "close < 0") == 0
    assert drill.rows("ta_signals", "close < 0") == 0

    drill.switch(profile="at-least-once")
    tables = drill.ingest_tables()
    assert {"ta_microbars_provisional_queue", "ta_signals_provisional_queue"} <= set(tables)
    # a provisional record is in the tables while its transaction is still open
    drill.w.begin()
    drill.w.send([bar(6, 1, False, 103.0)], [sig(6, 1, False, 103.0)])
    wait_for(
        lambda: (
            drill.rows(
                "ta_microbars", f"toUnixTimestamp64Micro(window_start) = {sec(6)} AND NOT is_final"
            )
            == 1
            and drill.rows(
                "ta_signals", f"toUnixTimestamp64Micro(window_start) = {sec(6)} AND NOT is_final"
            )
            == 1
        ),
        DEADLINE_S,
        "provisional rows of an open transaction (read_uncommitted)",
    )
    drill.w.send([bar(6, 2, True, 103.5)], [sig(6, 2, True, 103.5)])
    drill.w.end(commit=True)
    drill.finals[sec(6)] = 103.5
    # an aborted transaction: its provisional record may land (as provisional), its finals not
    drill.w.write(
        [bar(11, 7, False, -2.0), bar(11, 8, True, -2.0), bar(5, 9, True, -2.0)],
        [sig(11, 7, False, -2.0), sig(11, 8, True, -2.0)],
        commit=False,
    )
    wait_for(
        lambda: drill.rows("ta_microbars", "close = -2 AND NOT is_final") >= 1,
        DEADLINE_S,
        "the aborted transaction's provisional record (read_uncommitted)",
    )
    drill.commit_finals([7], 104.0)  # a committed marker after the aborted transaction
    drill.await_finals("the final views after the aborted transaction (at-least-once)")
    assert drill.rows("ta_microbars", "close = -2 AND is_final") == 0
    assert drill.rows("ta_signals", "close = -2 AND is_final") == 0
    # what at-least-once may leave: provisional rows only, and FINAL keeps one row per key
    assert drill.ch.rows(
        "SELECT count() FROM (SELECT window_start, is_final FROM torghut.ta_microbars FINAL "
        f"WHERE symbol = '{SYM}' GROUP BY window_start, is_final HAVING count() > 1)"
    ) == [[0]]

    drill.switch(profile="exactly-once")
    assert not {n for n in drill.ingest_tables() if "provisional" in n}
    drill.w.write([bar(12, 9, False, -3.0), bar(12, 10, True, -3.0)], [], commit=False)
    drill.commit_finals([8], 105.0)
    drill.await_finals("the final views after switching back to exactly-once")
    assert drill.rows("ta_microbars", "close = -3") == 0


def test_a_consumer_switched_to_signals_v2_reads_its_added_field_and_drops_aborted_records(
    drill: Drill,
) -> None:
    start_ns = time.time_ns()
    v2 = [{**sig(i, 2, True, 200.0 + i, symbol=V2_SYM), "venue": "iex"} for i in range(3)]
    drill.w.write(
        [], [{**sig(9, 3, True, -4.0, symbol=V2_SYM), "venue": "x"}], commit=False, v2=True
    )
    drill.w.write([], v2, v2=True)
    drill.w.write([], v2[:1], v2=True)  # a repeat, as after a restore in at-least-once

    drill.switch(signals_version=2)
    assert any(
        "ta.signals.v2" in str(q)
        for (q,) in drill.ch.rows(
            f"SELECT create_table_query FROM system.tables WHERE database = "
            f"'{drill.params.ingest_db}' AND name = 'ta_signals_queue'"
        )
    )
    want = [(sec(i), 200.0 + i) for i in range(3)]
    wait_for(
        lambda: drill.final_view("ta_signals", V2_SYM) == want,
        DEADLINE_S,
        "the v2 signals in ClickHouse",
    )

    kafka = KafkaConnection(bootstrap=drill.stack.kafka_bootstrap)
    with TaConsumer(kafka, drill.w.registry, SIGNALS_V2, "exactly-once", start_ns) as c:
        got = [r.value for r in c.records(idle_s=3) if r.value["symbol"] == V2_SYM]
    assert [(g["close"], g["venue"]) for g in got] == [
        (200.0, "iex"),
        (201.0, "iex"),
        (202.0, "iex"),
        (200.0, "iex"),
    ]
    with TaConsumer(kafka, drill.w.registry, SIGNALS_V2, "at-least-once", start_ns) as c:
        got = [r.value for r in c.records(idle_s=3) if r.value["symbol"] == V2_SYM]
        assert c.stats.duplicates == 1  # the repeat, by (symbol, window start, is_final, version)
    # read_uncommitted: the aborted record comes too, the repeat does not
    assert sorted(g["close"] for g in got) == [-4.0, 200.0, 201.0, 202.0]


def _consume(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "torghut.cli", "consume", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_torghut_consume_prints_decoded_records_and_names_an_unknown_topic(drill: Drill) -> None:
    conn = ["--bootstrap", drill.stack.kafka_bootstrap, "--registry-url", drill.stack.registry_url]
    res = _consume(SIGNALS_V2, "--max", "3", "--idle", "3", "--format", "json", *conn)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 3 and all(r["is_final"] for r in lines)
    assert "venue" in lines[0] and "3 records (exactly-once, read_committed)" in res.stderr
    table = _consume(SIGNALS_V2, "--max", "2", "--idle", "3", "--format", "table", *conn)
    assert table.returncode == 0, table.stderr[-2000:]
    assert table.stdout.splitlines()[0].split()[:4] == [
        "partition",
        "offset",
        "symbol",
        "window_start",
    ]
    missing = _consume("ta.signals.v9", "--idle", "1", *conn)
    assert missing.returncode == 1
    assert "Kafka has no topic 'ta.signals.v9'" in missing.stderr


def test_a_topic_without_a_registered_schema_is_a_typed_error(drill: Drill, unique) -> None:
    topic = create_topic(drill.stack, unique("no-schema"))
    with pytest.raises(NoSchemaError, match=f"no schema under '{topic}-value'"):
        TaConsumer(KafkaConnection(bootstrap=drill.stack.kafka_bootstrap), drill.w.registry, topic)
    with pytest.raises(UnknownTopicError):
        TaConsumer(
            KafkaConnection(bootstrap=drill.stack.kafka_bootstrap),
            drill.w.registry,
            TA_SIGNALS.name.replace("v1", "v8"),
        )
