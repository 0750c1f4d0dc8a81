"""Contracts end to end: MicroBar and Signal records in the Confluent wire format (ids from
the real registry) on the catalog topics, read by the very DDL in schemas/clickhouse (Kafka
engine, AvroConfluent, materialized views) into ReplacingMergeTree tables of an embedded
ClickHouse, and read back through the views.

The topics are shared with other tests: every assertion filters on symbols unique to this
module, and the consumer group is unique so no other test moves its offsets.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS
from tests.conftest import REPO_ROOT, wait_for
from tests.integration.kafka_helpers import QUIET, producer
from tests.unit.test_contracts_avro import SIGNAL_INDICATORS, microbar, signal, window
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SchemaParams, apply

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8].upper()
A, B, C = f"CT{RUN}A", f"CT{RUN}B", f"CT{RUN}-ü"  # one symbol with non-ASCII on purpose
SYMBOLS = (A, B, C)
IN_SYMBOLS = "(" + ", ".join(f"'{s}'" for s in SYMBOLS) + ")"
T0 = 1_767_364_200_000_000  # window starts, epoch microseconds
T1, T2 = T0 + 1_000_000, T0 + 2_000_000
NS = 1_767_364_200_123_456_789  # an event time that needs all nine decimals


def bar(symbol: str, start: int, version: int, is_final: bool, **over: Any) -> dict[str, Any]:
    return microbar(symbol=symbol, window=window(start), version=version, is_final=is_final,
                    event_ts=NS + version, ingest_ts=NS + 1000 + version,
                    emit_ts=NS + 2000 + version, **{"close": 100.0 + version, **over})


def sig(symbol: str, start: int, version: int, is_final: bool, **over: Any) -> dict[str, Any]:
    return signal(symbol=symbol, window=window(start), version=version, is_final=is_final,
                  event_ts=NS + version, ingest_ts=NS + 1000 + version,
                  emit_ts=NS + 2000 + version, **{"close": 100.0 + version, **over})


BARS = [
    bar(A, T0, 1, False), bar(A, T0, 2, False),  # two provisional updates of one bar
    bar(A, T0, 3, True), bar(A, T0, 3, True),  # its final, delivered twice (a replay)
    bar(A, T1, 1, True), bar(A, T1, 1, True),  # another final, duplicated
    bar(A, T2, 1, False),  # a bar still open: provisional only
    bar(C, T0, 1, True, volume=0.0123),  # fractional size, unicode symbol
]
BARS_FINAL = {  # (symbol, window start, is_final) -> version that survives FINAL
    (A, T0, False): 2, (A, T0, True): 3, (A, T1, True): 1, (A, T2, False): 1, (C, T0, True): 1}
WARM = {name: float(i) + 0.5 for i, name in enumerate(SIGNAL_INDICATORS)}
SIGNALS = [
    sig(A, T0, 1, False),  # warm-up: every indicator null
    sig(A, T0, 2, True, **{**WARM, "macd": None, "macd_signal": None, "macd_hist": None}),
    sig(A, T0, 2, True, **{**WARM, "macd": None, "macd_signal": None, "macd_hist": None}),
    sig(A, T1, 1, False, **WARM),  # A's newest bar is only provisional so far
    sig(B, T0, 1, True, **WARM),
    sig(C, T1, 1, False, **WARM), sig(C, T1, 2, True, **WARM),  # final beats provisional
]
ABORTED_BAR = bar(A, T0, 99, True, close=-1.0)  # written in an aborted transaction


def produce_committed_and_aborted(stack) -> None:
    """Like the TA job: transactional writes; one transaction aborted must never show."""
    from confluent_kafka import Producer

    registry = SchemaRegistryClient(stack.registry_url)
    bars, sigs = AvroSerializer(registry, TA_BARS_1S), AvroSerializer(registry, TA_SIGNALS)
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap, "logger": QUIET,
                  "transactional.id": f"contracts-{RUN}"})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(TA_BARS_1S.name, bars.encode(ABORTED_BAR), key=A.encode())
    p.abort_transaction(30)
    p.begin_transaction()
    for r in BARS:
        p.produce(TA_BARS_1S.name, bars.encode(r), key=r["symbol"].encode())
    for r in SIGNALS:
        p.produce(TA_SIGNALS.name, sigs.encode(r), key=r["symbol"].encode())
    p.commit_transaction(30)


@pytest.fixture(scope="module")
def loaded(stack, tmp_path_factory) -> Iterator[ChdbClient]:
    """Records on the topics first, then a fresh ClickHouse that must catch up from them."""
    produce_committed_and_aborted(stack)
    client = ChdbClient(tmp_path_factory.mktemp("chdb-contracts"))
    try:
        params = SchemaParams(kafka_broker=stack.kafka_bootstrap, registry_url=stack.registry_url,
                              ingest_db_engine="Memory",
                              consumer_group=f"contracts-ch-{uuid.uuid4().hex[:8]}")
        apply(client, params, wait_s=30)
        # keep every inserted row visible, so the test sees duplicates before FINAL
        client.execute("SYSTEM STOP MERGES torghut.ta_microbars")
        client.execute("SYSTEM STOP MERGES torghut.ta_signals")

        def arrived() -> bool:
            n_bars = client.rows(f"SELECT count() FROM torghut.ta_microbars WHERE symbol IN {IN_SYMBOLS}")
            n_sigs = client.rows(f"SELECT count() FROM torghut.ta_signals WHERE symbol IN {IN_SYMBOLS}")
            return n_bars[0][0] >= len(BARS) and n_sigs[0][0] >= len(SIGNALS)

        wait_for(arrived, 120, f"{len(BARS)} bars and {len(SIGNALS)} signals in ClickHouse")
        yield client
    finally:
        client.close()


# ---- micro-bars --------------------------------------------------------------------------

def test_every_committed_record_lands_once_per_delivery_and_aborted_ones_never(loaded) -> None:
    rows = loaded.rows(f"SELECT count(), countIf(close < 0) FROM torghut.ta_microbars "
                       f"WHERE symbol IN {IN_SYMBOLS}")
    assert rows == [[len(BARS), 0]]


def test_final_collapses_duplicates_to_the_highest_version_per_bar_and_finality(loaded) -> None:
    rows = loaded.rows(
        "SELECT symbol, toUnixTimestamp64Micro(window_start), is_final, version, close "
        f"FROM torghut.ta_microbars FINAL WHERE symbol IN {IN_SYMBOLS}")
    got = {(s, int(w), bool(f)): (int(v), float(c)) for s, w, f, v, c in rows}
    assert len(rows) == len(got) == len(BARS_FINAL)
    assert got == {k: (v, 100.0 + v) for k, v in BARS_FINAL.items()}


def test_final_and_provisional_rows_of_one_bar_are_both_queryable(loaded) -> None:
    rows = loaded.rows(
        "SELECT is_final, version FROM torghut.ta_microbars FINAL "
        f"WHERE symbol = '{A}' AND toUnixTimestamp64Micro(window_start) = {T0} ORDER BY is_final")
    assert [(bool(f), int(v)) for f, v in rows] == [(False, 2), (True, 3)]


def test_microbars_final_view_holds_only_final_bars(loaded) -> None:
    rows = loaded.rows(
        "SELECT symbol, toUnixTimestamp64Micro(window_start), version FROM torghut.ta_microbars_final "
        f"WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol, window_start")
    assert [(s, int(w), int(v)) for s, w, v in rows] == [(A, T0, 3), (A, T1, 1), (C, T0, 1)]


def test_timestamps_equal_the_produced_values_to_the_nanosecond(loaded) -> None:
    rows = loaded.rows(
        "SELECT toString(toUnixTimestamp64Nano(event_ts)), toString(toUnixTimestamp64Nano(ingest_ts)), "
        "toString(toUnixTimestamp64Nano(emit_ts)), toUnixTimestamp64Micro(window_start), "
        "toUnixTimestamp64Micro(window_end), window_size_ms, toTypeName(event_ts) "
        f"FROM torghut.ta_microbars_final WHERE symbol = '{A}' AND version = 3")
    assert rows == [[str(NS + 3), str(NS + 1003), str(NS + 2003), T0, T0 + 1_000_000, 1000,
                     "DateTime64(9, 'UTC')"]]
    assert loaded.rows(f"SELECT toString(event_ts) FROM torghut.ta_microbars_final "
                       f"WHERE symbol = '{A}' AND version = 3") == [["2026-01-02 14:30:00.123456792"]]


def test_every_field_of_a_bar_survives_the_trip(loaded) -> None:
    rows = loaded.rows(
        "SELECT open, high, low, close, volume, vwap, trade_count, seq, source, trace_id "
        f"FROM torghut.ta_microbars_final WHERE symbol = '{C}'")
    r = BARS[-1]
    assert rows == [[r["open"], r["high"], r["low"], r["close"], 0.0123, r["vwap"],
                     r["trade_count"], r["seq"], r["source"], r["trace_id"]]]


def test_optimize_final_merges_duplicates_away_and_keeps_what_final_showed(loaded) -> None:
    before = loaded.rows("SELECT symbol, window_start, is_final, version FROM torghut.ta_microbars "
                         f"FINAL WHERE symbol IN {IN_SYMBOLS} ORDER BY ALL")
    loaded.execute("SYSTEM START MERGES torghut.ta_microbars")
    loaded.execute("OPTIMIZE TABLE torghut.ta_microbars FINAL")
    after = loaded.rows("SELECT symbol, window_start, is_final, version FROM torghut.ta_microbars "
                        f"WHERE symbol IN {IN_SYMBOLS} ORDER BY ALL")
    assert after == before and len(after) == len(BARS_FINAL)


# ---- signals -----------------------------------------------------------------------------

def test_signals_final_collapses_the_replayed_final(loaded) -> None:
    raw = loaded.rows(f"SELECT count() FROM torghut.ta_signals WHERE symbol IN {IN_SYMBOLS}")
    final = loaded.rows(f"SELECT count() FROM torghut.ta_signals FINAL WHERE symbol IN {IN_SYMBOLS}")
    assert (raw[0][0], final[0][0]) == (len(SIGNALS), len(SIGNALS) - 1)


def test_null_indicators_stay_null_and_values_stay_values(loaded) -> None:
    cols = ", ".join(SIGNAL_INDICATORS)
    rows = loaded.rows(f"SELECT is_final, {cols} FROM torghut.ta_signals FINAL "
                       f"WHERE symbol = '{A}' AND toUnixTimestamp64Micro(window_start) = {T0} "
                       "ORDER BY is_final")
    assert len(rows) == 2
    provisional, final = (dict(zip(SIGNAL_INDICATORS, r[1:], strict=True)) for r in rows)
    assert all(v is None for v in provisional.values())
    assert final == {**WARM, "macd": None, "macd_signal": None, "macd_hist": None}
    types = loaded.rows("SELECT toTypeName(ema12) FROM torghut.ta_signals LIMIT 1")
    assert types == [["Nullable(Float64)"]]


def test_signals_final_view_holds_only_finals(loaded) -> None:
    rows = loaded.rows(f"SELECT symbol, toUnixTimestamp64Micro(window_start), version "
                       f"FROM torghut.ta_signals_final WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol")
    assert [(s, int(w), int(v)) for s, w, v in rows] == [(A, T0, 2), (B, T0, 1), (C, T1, 2)]


def test_signals_latest_returns_one_row_per_symbol_the_newest_bar_final_first(loaded) -> None:
    rows = loaded.rows(f"SELECT symbol, toUnixTimestamp64Micro(window_start), is_final, version "
                       f"FROM torghut.ta_signals_latest WHERE symbol IN {IN_SYMBOLS} ORDER BY symbol")
    assert [(s, int(w), bool(f), int(v)) for s, w, f, v in rows] == [
        (A, T1, False, 1),  # newest bar wins even while provisional
        (B, T0, True, 1),
        (C, T1, True, 2),  # same bar: the final row beats the provisional one
    ]
    timestamps = loaded.rows(f"SELECT toString(toUnixTimestamp64Nano(event_ts)) "
                             f"FROM torghut.ta_signals_latest WHERE symbol = '{B}'")
    assert timestamps == [[str(NS + 1)]]


def test_no_row_was_rejected_by_the_avro_confluent_parser(loaded) -> None:
    """The MV drops rows with a parse `_error`; our records must never be among them."""
    got = loaded.rows(f"SELECT count() FROM torghut.ta_signals FINAL WHERE symbol IN {IN_SYMBOLS}")
    assert got[0][0] == len({(r["symbol"], r["window"]["start"], r["is_final"]) for r in SIGNALS})


# ---- `torghut clickhouse apply` ----------------------------------------------------------

def _python(code: str, timeout: float = 180) -> str:
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_clickhouse_apply_cli_is_idempotent_and_keeps_data(stack, tmp_path) -> None:
    """Each step runs in its own process: one process owns a chdb data dir at a time. The
    Kafka engine points at the stack broker with a unique group and no records match it."""
    data_dir = tmp_path / "ch"
    cli = [sys.executable, "-m", "torghut.cli", "clickhouse", "apply", "--data-dir", str(data_dir),
           "--kafka-broker", stack.kafka_bootstrap, "--registry-url", stack.registry_url]
    first = subprocess.run(cli, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "applied" in first.stdout
    _python(
        "from torghut.clickhouse.client import ChdbClient\n"
        f"c = ChdbClient({str(data_dir)!r})\n"
        "c.execute(\"INSERT INTO torghut.ta_microbars (symbol, window_start, window_end, "
        "window_size_ms, is_final, open, high, low, close, volume, vwap, trade_count, version, "
        "event_ts, ingest_ts, emit_ts, seq, source, trace_id) VALUES ('KEEP', "
        "'2026-01-02 14:30:00', '2026-01-02 14:30:01', 1000, 1, 1, 1, 1, 1, 1, 1, 1, 1, "
        "'2026-01-02 14:30:00.123456789', '2026-01-02 14:30:00.123456789', "
        "'2026-01-02 14:30:00.123456789', 1, 't', '')\")\n"
        "c.close()\n")
    second = subprocess.run(cli, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.split(" statements")[0] == first.stdout.split(" statements")[0]
    out = _python(
        "from torghut.clickhouse.client import ChdbClient\n"
        f"c = ChdbClient({str(data_dir)!r})\n"
        "print(c.rows(\"SELECT symbol, toString(event_ts) FROM torghut.ta_microbars_final\"))\n"
        "print(c.rows(\"SELECT name FROM system.tables WHERE database = 'torghut_ingest' "
        "ORDER BY name\"))\n"
        "c.close()\n")
    assert out.splitlines() == [
        "[['KEEP', '2026-01-02 14:30:00.123456789']]",
        "[['ta_microbars_mv'], ['ta_microbars_queue'], ['ta_signals_mv'], ['ta_signals_queue']]",
    ]
