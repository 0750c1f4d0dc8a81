"""Contracts end to end: MicroBar and Signal records in the Confluent wire format (ids from
the real registry) on the catalog topics, read by the very DDL in schemas/clickhouse (Kafka
engine, AvroConfluent, materialized views) into ReplacingMergeTree tables of an embedded
ClickHouse, and read back through the views.

The topics are shared with other tests: every assertion filters on symbols unique to this
module, and the consumer group is unique so no other test moves its offsets.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS
from tests.conftest import REPO_ROOT, wait_for
from tests.support.kafka import QUIET
from tests.support.records import SIGNAL_INDICATORS, microbar, signal, window
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SchemaParams, apply

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8].upper()
A, B, C = f"CT{RUN}A", f"CT{RUN}B", f"CT{RUN}-ü"  # one symbol with non-ASCII on purpose
SYMBOLS = (A, B, C)
IN_SYMBOLS = "(" + ", ".join(f"'{s}'" for s in SYMBOLS) + ")"
# window starts in epoch microseconds, a minute ago: inside the TTL, which a TTL merge enforces
# within seconds (a bar older than the topic's retention is dropped, even on replay)
T0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000
T1, T2 = T0 + 1_000_000, T0 + 2_000_000
NS = T0 * 1000 + 123_456_789  # an event time that needs all nine decimals


def bar(symbol: str, start: int, version: int, is_final: bool, **over: Any) -> dict[str, Any]:
    return microbar(
        symbol=symbol,
        window=window(start),
        version=version,
        is_final=is_final,
        event_ts=NS + version,
        ingest_ts=NS + 1000 + version,
        emit_ts=NS + 2000 + version,
        **{"close": 100.0 + version, **over},
    )


def sig(symbol: str, start: int, version: int, is_final: bool, **over: Any) -> dict[str, Any]:
    return signal(
        symbol=symbol,
        window=window(start),
        version=version,
        is_final=is_final,
        event_ts=NS + version,
        ingest_ts=NS + 1000 + version,
        emit_ts=NS + 2000 + version,
        **{"close": 100.0 + version, **over},
    )


MACD_WARMING = {
    **{n: float(i) + 0.5 for i, n in enumerate(SIGNAL_INDICATORS)},
    "macd": None,
    "macd_signal": None,
    "macd_hist": None,
}
WARM = {n: float(i) + 0.5 for i, n in enumerate(SIGNAL_INDICATORS)}

# first delivery: what the job commits in normal operation
BARS = [
    bar(A, T0, 1, False),
    bar(A, T0, 2, False),  # two provisional updates of one bar
    bar(A, T0, 3, True),  # its final
    bar(A, T1, 1, True),
    bar(A, T2, 1, False),  # a bar still open: provisional only
    bar(C, T0, 1, True, volume=0.0123),  # fractional size, non-ASCII symbol
]
SIGNALS = [
    sig(A, T0, 1, False),  # warm-up: every indicator null
    sig(A, T0, 2, True, **MACD_WARMING),  # MACD still warming up: those three stay null
    sig(A, T1, 1, False, **WARM),  # A's newest bar is only provisional so far
    sig(B, T0, 1, True, **WARM),
    sig(C, T1, 1, False, **WARM),
    sig(C, T1, 2, True, **WARM),  # final beats provisional
]
# a replay after a restore, in a later transaction: identical records (same key fields, same
# version) and a stale provisional update that must not beat the newer one
BARS_REPLAY = [bar(A, T0, 3, True), bar(A, T1, 1, True), bar(A, T0, 1, False)]
SIGNALS_REPLAY = [sig(A, T0, 2, True, **MACD_WARMING), sig(C, T1, 1, False, **WARM)]
ABORTED_BAR = bar(A, T0, 99, True, close=-1.0)  # written in an aborted transaction

# (symbol, window start, is_final) -> the version FINAL keeps
BARS_FINAL = {
    (A, T0, False): 2,
    (A, T0, True): 3,
    (A, T1, True): 1,
    (A, T2, False): 1,
    (C, T0, True): 1,
}
SIGNALS_FINAL = {
    (A, T0, False): 1,
    (A, T0, True): 2,
    (A, T1, False): 1,
    (B, T0, True): 1,
    (C, T1, False): 1,
    (C, T1, True): 2,
}


class TransactionalWriter:
    """Writes like the TA job: Confluent-framed Avro (ids from the real registry) in Kafka
    transactions, which ClickHouse must read `read_committed`."""

    def __init__(self, stack) -> None:
        from confluent_kafka import Producer

        registry = SchemaRegistryClient(stack.registry_url)
        self.bars = AvroSerializer(registry, TA_BARS_1S)
        self.signals = AvroSerializer(registry, TA_SIGNALS)
        self._p = Producer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "logger": QUIET,
                "transactional.id": f"contracts-{RUN}",
            }
        )
        self._p.init_transactions(30)

    def write(
        self, bars: list[dict[str, Any]], signals: list[dict[str, Any]], commit: bool = True
    ) -> None:
        self._p.begin_transaction()
        for r in bars:
            self._p.produce(TA_BARS_1S.name, self.bars.encode(r), key=r["symbol"].encode())
        for r in signals:
            self._p.produce(TA_SIGNALS.name, self.signals.encode(r), key=r["symbol"].encode())
        if commit:
            self._p.commit_transaction(30)
        else:
            self._p.abort_transaction(30)


def final_versions(client: ChdbClient, table: str) -> dict[tuple[str, int, bool], int]:
    rows = client.rows(
        f"SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), is_final, "
        f"toString(version) FROM torghut.{table} FINAL WHERE symbol IN {IN_SYMBOLS}"
    )
    return {(s, int(w), bool(f)): int(v) for s, w, f, v in rows}


def raw_count(client: ChdbClient, table: str) -> int:
    return int(
        client.rows(f"SELECT count() FROM torghut.{table} WHERE symbol IN {IN_SYMBOLS}")[0][0]
    )


@pytest.fixture(scope="module")
def params(stack) -> SchemaParams:
    """This module's schema parameters: its own consumer group on the shared stack."""
    return SchemaParams(
        kafka_broker=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        ingest_db_engine="Memory",
        consumer_group=f"contracts-ch-{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture(scope="module")
def loaded(stack, params, tmp_path_factory) -> Iterator[tuple[ChdbClient, dict[str, int]]]:
    """First delivery on the topics before ClickHouse exists (a fresh ClickHouse catches up
    from the earliest offset), then a replay while merges are stopped so its duplicates stay
    visible as separate rows. Yields the client and the raw row counts before the replay."""
    writer = TransactionalWriter(stack)
    writer.write([ABORTED_BAR], [], commit=False)
    writer.write(BARS, SIGNALS)
    client = ChdbClient(tmp_path_factory.mktemp("chdb-contracts"))
    try:
        apply(client, params, wait_s=30)
        wait_for(
            lambda: (
                final_versions(client, "ta_microbars") == BARS_FINAL
                and final_versions(client, "ta_signals") == SIGNALS_FINAL
            ),
            120,
            "the first delivery of bars and signals in ClickHouse",
        )
        for table in ("ta_microbars", "ta_signals"):
            client.execute(f"SYSTEM STOP MERGES torghut.{table}")
        before = {t: raw_count(client, t) for t in ("ta_microbars", "ta_signals")}
        writer.write(BARS_REPLAY, SIGNALS_REPLAY)
        wait_for(
            lambda: (
                raw_count(client, "ta_microbars") == before["ta_microbars"] + len(BARS_REPLAY)
                and raw_count(client, "ta_signals") == before["ta_signals"] + len(SIGNALS_REPLAY)
            ),
            120,
            "the replayed records in ClickHouse",
        )
        yield client, before
    finally:
        client.close()


@pytest.fixture
def ch(loaded) -> ChdbClient:
    return loaded[0]


# ---- micro-bars --------------------------------------------------------------------------


def test_a_replay_lands_as_extra_rows_and_an_aborted_transaction_never_does(loaded) -> None:
    client, before = loaded
    assert raw_count(client, "ta_microbars") == before["ta_microbars"] + len(BARS_REPLAY)
    assert client.rows(
        f"SELECT countIf(close < 0), countIf(version = 99) FROM torghut.ta_microbars "
        f"WHERE symbol IN {IN_SYMBOLS}"
    ) == [[0, 0]]


def test_final_collapses_duplicates_to_the_highest_version_per_bar_and_finality(ch) -> None:
    assert final_versions(ch, "ta_microbars") == BARS_FINAL
    closes = ch.rows(
        f"SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), is_final, close "
        f"FROM torghut.ta_microbars FINAL WHERE symbol IN {IN_SYMBOLS}"
    )
    assert {(s, int(w), bool(f)): c for s, w, f, c in closes} == {
        k: 100.0 + v for k, v in BARS_FINAL.items()
    }


def test_final_and_provisional_rows_of_one_bar_are_both_queryable(ch) -> None:
    rows = ch.rows(
        f"SELECT is_final, toString(version) FROM torghut.ta_microbars FINAL "
        f"WHERE symbol = '{A}' AND toUnixTimestamp64Micro(window_start) = {T0} "
        "ORDER BY is_final"
    )
    assert [(bool(f), int(v)) for f, v in rows] == [(False, 2), (True, 3)]


def test_microbars_final_view_holds_only_final_bars_once(ch) -> None:
    rows = ch.rows(
        "SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), "
        "toString(version) FROM torghut.ta_microbars_final "
        f"WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol, window_start"
    )
    assert sorted((s, int(w), int(v)) for s, w, v in rows) == sorted(
        [(A, T0, 3), (A, T1, 1), (C, T0, 1)]
    )


def test_timestamps_equal_the_produced_values_to_the_nanosecond(ch) -> None:
    rows = ch.rows(
        "SELECT toString(toUnixTimestamp64Nano(event_ts)), "
        "toString(toUnixTimestamp64Nano(ingest_ts)), toString(toUnixTimestamp64Nano(emit_ts)), "
        "toString(toUnixTimestamp64Micro(window_start)), "
        "toString(toUnixTimestamp64Micro(window_end)), window_size_ms, toTypeName(event_ts), "
        "toString(event_ts) "
        f"FROM torghut.ta_microbars_final WHERE symbol = '{A}' AND version = 3"
    )
    wall = dt.datetime.fromtimestamp(T0 // 1_000_000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert rows == [
        [
            str(NS + 3),
            str(NS + 1003),
            str(NS + 2003),
            str(T0),
            str(T0 + 1_000_000),
            1000,
            "DateTime64(9, 'UTC')",
            f"{wall}.123456792",
        ]
    ]


def test_every_field_of_a_bar_survives_the_trip(ch) -> None:
    rows = ch.rows(
        "SELECT open, high, low, close, volume, vwap, toString(trade_count), toString(seq), "
        f"source, trace_id FROM torghut.ta_microbars_final WHERE symbol = '{C}'"
    )
    r = BARS[-1]
    assert rows == [
        [
            r["open"],
            r["high"],
            r["low"],
            r["close"],
            0.0123,
            r["vwap"],
            str(r["trade_count"]),
            str(r["seq"]),
            r["source"],
            r["trace_id"],
        ]
    ]


def test_optimize_final_merges_duplicates_away_and_keeps_what_final_showed(ch) -> None:
    before = final_versions(ch, "ta_microbars")
    ch.execute("SYSTEM START MERGES torghut.ta_microbars")
    ch.execute("OPTIMIZE TABLE torghut.ta_microbars FINAL")
    assert raw_count(ch, "ta_microbars") == len(BARS_FINAL)
    assert final_versions(ch, "ta_microbars") == before == BARS_FINAL


# ---- signals -----------------------------------------------------------------------------


def test_signals_final_collapses_the_replay(loaded) -> None:
    client, before = loaded
    assert raw_count(client, "ta_signals") == before["ta_signals"] + len(SIGNALS_REPLAY)
    assert final_versions(client, "ta_signals") == SIGNALS_FINAL


def test_null_indicators_stay_null_and_values_stay_values(ch) -> None:
    cols = ", ".join(SIGNAL_INDICATORS)
    rows = ch.rows(
        f"SELECT is_final, {cols} FROM torghut.ta_signals FINAL "
        f"WHERE symbol = '{A}' AND toUnixTimestamp64Micro(window_start) = {T0} "
        "ORDER BY is_final"
    )
    assert len(rows) == 2
    provisional, final = (dict(zip(SIGNAL_INDICATORS, r[1:], strict=True)) for r in rows)
    assert all(v is None for v in provisional.values())
    assert final == MACD_WARMING
    types = ch.rows("SELECT toTypeName(ema12), toTypeName(rsi14) FROM torghut.ta_signals LIMIT 1")
    assert types == [["Nullable(Float64)", "Nullable(Float64)"]]


def test_signals_final_view_holds_only_finals(ch) -> None:
    rows = ch.rows(
        "SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), toString(version) "
        f"FROM torghut.ta_signals_final WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol"
    )
    assert sorted((s, int(w), int(v)) for s, w, v in rows) == sorted(
        [(A, T0, 2), (B, T0, 1), (C, T1, 2)]
    )


def test_signals_latest_returns_one_row_per_symbol_the_newest_bar_final_first(ch) -> None:
    rows = ch.rows(
        "SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), is_final, "
        "toString(version), toString(toUnixTimestamp64Nano(event_ts)) "
        f"FROM torghut.ta_signals_latest WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol"
    )
    assert sorted((s, int(w), bool(f), int(v), int(e)) for s, w, f, v, e in rows) == sorted(
        [
            (A, T1, False, 1, NS + 1),  # the newest bar wins even while provisional
            (B, T0, True, 1, NS + 1),
            (C, T1, True, 2, NS + 2),  # same bar: the final row beats the provisional one
        ]
    )


# ---- `torghut clickhouse apply` ----------------------------------------------------------


def test_gap_and_price_basis_arrive_and_a_bar_of_the_first_schema_loads_as_no_gap_and_basis_2(ch, stack) -> None:
    """MicroBar's `gap` (schema v2, default false) and `price_basis` (v3, default 2)
    reach their columns, and a bar written with the first schema (neither field,
    registered under a scratch subject) loads too, as gap = false and basis 2: after an
    upgrade the topic still holds v1 records (`input_format_avro_allow_missing_fields`;
    the queue's nullable `price_basis` is how a missing int reaches its default)."""
    import copy
    import io
    import json

    import fastavro
    from confluent_kafka import Producer

    from shared.schemas import schema_json

    sym = f"GP{RUN}"
    registry = SchemaRegistryClient(stack.registry_url)
    ser = AvroSerializer(registry, TA_BARS_1S)
    released = copy.deepcopy(schema_json(TA_BARS_1S.value_schema))  # the cached dict is shared
    released["fields"] = [
        f for f in released["fields"] if f["name"] not in ("gap", "price_basis")
    ]
    old_id = registry.register(f"gap-v1-{RUN}-value", json.dumps(released))
    buf = io.BytesIO()
    old = {k: v for k, v in bar(sym, T0, 1, True).items() if k not in ("gap", "price_basis")}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(released), old)
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap, "logger": QUIET})
    v1 = b"\x00" + old_id.to_bytes(4, "big") + buf.getvalue()
    p.produce(TA_BARS_1S.name, v1, key=sym.encode())
    p.produce(
        TA_BARS_1S.name,
        ser.encode(bar(sym, T1, 1, True, gap=True, price_basis=0)),
        key=sym.encode(),
    )
    p.produce(TA_BARS_1S.name, ser.encode(bar(sym, T2, 1, True, price_basis=1)), key=sym.encode())
    signals = AvroSerializer(registry, TA_SIGNALS)
    p.produce(TA_SIGNALS.name, signals.encode(sig(sym, T1, 1, True, gap=True)), key=sym.encode())
    assert p.flush(30) == 0

    def rows() -> list[list[Any]]:
        return ch.rows(
            "SELECT toString(toUnixTimestamp64Micro(window_start)), gap, toTypeName(gap), "
            "price_basis "
            f"FROM torghut.ta_microbars_final WHERE symbol = '{sym}' ORDER BY window_start"
        )

    wait_for(lambda: len(rows()) == 3, 90, "the three bars, the v1 one included")
    assert [(int(w), bool(g), t, int(b)) for w, g, t, b in rows()] == [
        (T0, False, "Bool", 2),
        (T1, True, "Bool", 0),
        (T2, False, "Bool", 1),
    ]
    # signals carry the flag of their bar too (Signal v2)
    q = f"SELECT gap FROM torghut.ta_signals_final WHERE symbol = '{sym}'"
    wait_for(lambda: ch.rows(q), 60, "the signal")
    assert ch.rows(q) == [[True]]


def test_minute_checks_land_one_row_per_symbol_and_minute_the_latest_check_winning(
    ch, stack
) -> None:
    """The minute check's records (ta.bar-checks.v1, `torghut.barcheck.runner.check_record`)
    load into ta_bar_checks: both sides per field, nulls for a missing side, and a re-check
    (an updatedBar) replaces the first check of its minute."""
    from confluent_kafka import Producer

    from shared.topics import TA_BAR_CHECKS
    from torghut.barcheck.logic import MinuteBar, compare
    from torghut.barcheck.runner import check_record

    sym = f"MC{RUN}"
    minute = T0 * 1000 - T0 * 1000 % (60 * 10**9)  # recent: the table's TTL keeps 30 days
    ours = MinuteBar(10.0, 11.0, 9.0, 10.5, 100.0, 4, 10.2, price_basis=2, seconds=9)
    wrong = MinuteBar(10.0, 11.11, 9.0, 10.5, 100.0, 4, 10.2)
    ser = AvroSerializer(SchemaRegistryClient(stack.registry_url), TA_BAR_CHECKS)
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap, "logger": QUIET})
    records = [
        check_record(compare(sym, minute, ours, wrong), 1),
        check_record(compare(sym, minute, ours, ours, revision=1), 2),  # the updatedBar
        check_record(compare(sym, minute + 60 * 10**9, None, wrong), 3),
    ]
    for rec in records:
        p.produce(TA_BAR_CHECKS.name, ser.encode(rec), key=sym.encode())
    assert p.flush(30) == 0
    q = (
        "SELECT toString(toUnixTimestamp64Nano(minute)), result, disagreements, price_basis, "
        "seconds, ours_high, theirs_high, high_agrees, ours_trade_count, revision "
        f"FROM torghut.ta_bar_checks_latest WHERE symbol = '{sym}' ORDER BY minute"
    )

    def settled() -> bool:
        rows = ch.rows(q)
        return len(rows) == 2 and rows[0][9] == 1

    wait_for(settled, 90, "the minute checks, the re-check replacing the first")
    assert ch.rows(q) == [
        [str(minute), "agree", [], 2, 9, 11.0, 11.0, True, 4, 1],
        [str(minute + 60 * 10**9), "only_vendor", [], None, 0, None, 11.11, None, None, 0],
    ]


# ---- dead letters and consumer restarts ---------------------------------------------------


def _count(client: ChdbClient, where: str) -> int:
    return int(client.rows(f"SELECT count() FROM {where}")[0][0])


def test_a_record_the_queue_cannot_parse_goes_to_the_dead_letters_and_the_rest_loads(
    ch, stack
) -> None:
    """Garbage and a record with an unknown schema id in ta.bars.1s.v1, between two good
    bars: both bad records are kept with their offset and parse error, both bars load."""
    from confluent_kafka import Producer

    sym = f"DL{RUN}"
    registry = SchemaRegistryClient(stack.registry_url)
    ser = AvroSerializer(registry, TA_BARS_1S)
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap, "logger": QUIET})
    bad = {b"not avro at all", b"\x00\x7f\xff\xff\xf0" + b"\x02" * 40}  # unknown schema id
    p.produce(TA_BARS_1S.name, ser.encode(bar(sym, T0, 1, True)), key=sym.encode())
    for value in sorted(bad):
        p.produce(TA_BARS_1S.name, value, key=sym.encode())
    p.produce(TA_BARS_1S.name, ser.encode(bar(sym, T1, 1, True)), key=sym.encode())
    assert p.flush(30) == 0

    def dead() -> list[list[Any]]:
        return ch.rows(
            "SELECT topic, hex(raw_message), error, toString(offset) "
            f"FROM torghut.ta_dead_letters WHERE key = '{sym}' ORDER BY offset"
        )

    wait_for(lambda: len(dead()) == 2, 90, "two dead letters")
    rows = dead()
    assert {r[0] for r in rows} == {TA_BARS_1S.name}
    assert {r[1] for r in rows} == {v.hex().upper() for v in bad}
    assert all(r[2] for r in rows), "each dead letter carries its parse error"
    wait_for(
        lambda: _count(ch, f"torghut.ta_microbars_final WHERE symbol = '{sym}'") == 2,
        60,
        "both good bars around the bad records",
    )
    counts = dict(ch.rows("SELECT topic, toString(records) FROM torghut.ta_dead_letter_counts"))
    assert int(counts[TA_BARS_1S.name]) >= 2


def test_kafka_tables_recreated_mid_stream_lose_nothing_and_final_shows_every_bar_once(
    ch, stack, params
) -> None:
    """The consumer restart of a schema apply (the ingest database is dropped and
    re-created) while bars are being written: every bar lands, FINAL shows each once."""
    import threading

    sym = f"RS{RUN}"
    writer = TransactionalWriter(stack)
    n = 120
    done = threading.Event()

    def write() -> None:
        for i in range(n):
            writer.write([bar(sym, T0 - (n - i) * 1_000_000, 1, True)], [])
            time.sleep(0.02)
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    wait_for(
        lambda: _count(ch, f"torghut.ta_microbars WHERE symbol = '{sym}'") > 0,
        60,
        "the first bars loaded",
    )
    apply(ch, params, wait_s=30)  # mid-stream: the Kafka tables and MVs are re-created
    t.join(60)
    assert done.is_set()

    def final() -> list[list[Any]]:
        return ch.rows(
            "SELECT toString(window_start), toString(count()) FROM torghut.ta_microbars FINAL "
            f"WHERE symbol = '{sym}' GROUP BY window_start"
        )

    wait_for(lambda: len(final()) == n, 90, f"all {n} bars after the restart")
    assert {int(c) for _, c in final()} == {1}


def _python(code: str, timeout: float = 180) -> str:
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_clickhouse_apply_cli_is_idempotent_and_keeps_data(tmp_path) -> None:
    """Each step runs in its own process: one process owns a chdb data dir at a time. The
    CLI has no consumer-group flag, so its Kafka tables point at a closed port: they must not
    commit offsets of the default group on the shared stack topics."""
    data_dir = tmp_path / "ch"
    cli = [
        sys.executable,
        "-m",
        "torghut.cli",
        "clickhouse",
        "apply",
        "--data-dir",
        str(data_dir),
        "--kafka-broker",
        "127.0.0.1:9",
        "--registry-url",
        "http://127.0.0.1:9",
    ]
    first = subprocess.run(cli, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "applied" in first.stdout
    _python(
        "from torghut.clickhouse.client import ChdbClient\n"
        f"c = ChdbClient({str(data_dir)!r})\n"
        'c.execute("INSERT INTO torghut.ta_microbars (symbol, window_start, window_end, '
        "window_size_ms, is_final, open, high, low, close, volume, vwap, trade_count, version, "
        "event_ts, ingest_ts, emit_ts, seq, source, trace_id) VALUES ('KEEP', "
        "now64(6), now64(6), 1000, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
        f"fromUnixTimestamp64Nano(toInt64({NS})), fromUnixTimestamp64Nano(toInt64({NS})), "
        f"fromUnixTimestamp64Nano(toInt64({NS})), 1, 't', '')\")\n"
        "c.close()\n"
    )
    second = subprocess.run(cli, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    # every statement ran again (the ingest database is re-created), nothing failed
    assert second.stdout.split(" statements")[0] == first.stdout.split(" statements")[0]
    # 24 of schemas/clickhouse (the ALTERs that add `gap` and `price_basis`, and the minute
    # check's table, queue and views included; the default exactly-once profile runs none of
    # 25_ingest_provisional.sql) plus 5 for the PLAINTEXT named collections (drop the ingest
    # database that uses them, drop and create the read_committed one and its read_uncommitted
    # twin)
    assert "applied 29 statements" in second.stdout
    out = _python(
        "from torghut.clickhouse.client import ChdbClient\n"
        f"c = ChdbClient({str(data_dir)!r})\n"
        'print(c.rows("SELECT symbol, toString(toUnixTimestamp64Nano(event_ts)) '
        'FROM torghut.ta_microbars_final"))\n'
        "c.close()\n"
    )
    assert out.strip() == f"[['KEEP', '{NS}']]"
