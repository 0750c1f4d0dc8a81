"""The backfill's row mapping (torghut/backfill/rows.py) is the materialized views' mapping:
the same MicroBar and Signal records, once through `clickhouse_row` into the storage tables
and once through the very `ta_microbars_mv`/`ta_signals_mv` of schemas/clickhouse/20_ingest.sql
(their Kafka queue tables replaced by Null tables of the same columns), give the same rows
in an embedded ClickHouse."""

from __future__ import annotations

import re

import orjson
import pytest

from flink_job.records import microbar_record, signal_record
from flink_job.symbol_processor import Emission
from shared.bars import MicroBar
from shared.indicators import SignalValues
from torghut.backfill.rows import clickhouse_row, datetime64
from torghut.backfill.run import ensure_tables
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SQL_DIR, SchemaParams, render, split_statements

pytestmark = pytest.mark.integration

S = 1_000_000_000
T0 = 1_796_394_600 * S + 17 * S


def _queue_and_views(params: SchemaParams) -> list[str]:
    """20_ingest.sql's queue tables as Null tables (plus the Kafka engine's `_error` column
    the views filter on) and its two materialized views into the storage tables."""
    out = []
    for stmt in split_statements(render((SQL_DIR / "20_ingest.sql").read_text(), params)):
        if re.search(r"CREATE TABLE \S+\.ta_(microbars|signals)_queue", stmt):
            out.append(
                re.sub(
                    r"\)\s*ENGINE = Kafka.*",
                    ",\n    _error String DEFAULT ''\n) ENGINE = Null",
                    stmt,
                    flags=re.S,
                )
            )
        elif re.search(r"CREATE MATERIALIZED VIEW \S+\.ta_(microbars|signals)_mv ", stmt):
            out.append(stmt)
        elif stmt.startswith("CREATE DATABASE"):
            out.append(stmt.replace("ENGINE = Memory", "ENGINE = Atomic"))
    assert len(out) == 5, out
    return out


def _avro_json(record: dict) -> dict:
    """The record as the Kafka engine reads it from AvroConfluent: timestamp-micros window
    bounds as DateTime64(6), the rest as they are."""
    w = record["window"]
    window = {**w, "start": datetime64(w["start"] * 1000, 6), "end": datetime64(w["end"] * 1000, 6)}
    return {**record, "window": window}


def _emissions() -> list[Emission]:
    bar = MicroBar("RWS", T0, T0 + S, 10.5, 11.25, 10.125, 11.0, 3.5, 10.875, 4, T0 + 1, T0 + S - 7)
    full = SignalValues(*[0.1 * i + 1 / 3 for i in range(15)])
    partial = SignalValues(ema12=11.0, rsi14=0.0, spread=0.01)
    later = MicroBar(
        "RWS", T0 + S, T0 + 2 * S, 11.0, 11.0, 11.0, 11.0, 0.0, 11.0, 1, T0 + S, T0 + S, 0.0, 1
    )
    return [
        Emission(bar, full, True, T0 + S - 7, T0 + S - 7, 41, "backfill:t:41", False),
        Emission(later, partial, True, T0 + S + 123_456_789, T0 + S + 999, 42, "tr-42", True),
    ]


def test_the_backfills_rows_equal_what_the_materialized_views_write(tmp_path) -> None:
    client = ChdbClient(tmp_path / "ch")
    try:
        ensure_tables(client, "bf_direct")
        ensure_tables(client, "bf_views")
        params = SchemaParams(
            kafka_broker="", registry_url="", database="bf_views", ingest_db="bf_ingest"
        )
        for stmt in _queue_and_views(params):
            client.execute(stmt)
        for em in _emissions():
            emit = em.bar.end_ns + 5
            for table, make in (("ta_microbars", microbar_record), ("ta_signals", signal_record)):
                record = make(em, emit, "backfill")
                client.insert_rows(f"bf_direct.{table}", [clickhouse_row(record)])
                client.insert_rows(f"bf_ingest.{table}_queue", [_avro_json(record)])
        for table in ("ta_microbars", "ta_signals"):

            def rows(db: str, table: str = table) -> list[dict]:
                raw = client.query(
                    f"SELECT * EXCEPT loaded_at FROM {db}.{table} ORDER BY window_start",
                    "JSONEachRow",
                )
                return [orjson.loads(line) for line in raw.splitlines()]

            direct, views = rows("bf_direct"), rows("bf_views")
            assert len(direct) == 2
            assert direct == views
        bars = {r["trace_id"]: r for r in rows("bf_direct", "ta_microbars")}
        assert bars["tr-42"]["gap"] is True and bars["tr-42"]["window_start"].endswith(".000000")
        assert (bars["tr-42"]["price_basis"], bars["backfill:t:41"]["price_basis"]) == (1, 2)
        signals = rows("bf_direct", "ta_signals")
        assert signals[1]["ema26"] is None and signals[1]["rsi14"] == 0
    finally:
        client.close()
