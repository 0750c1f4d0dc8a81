"""Foundation: ClickHouse's Kafka engine + materialized view load Kafka rows into a
ReplacingMergeTree table (embedded engine via chdb; the same SQL runs on a server)."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import wait_for
from tests.support.kafka import create_topic, producer
from torghut.clickhouse.client import ChdbClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chdb(tmp_path_factory) -> ChdbClient:
    client = ChdbClient(tmp_path_factory.mktemp("chdb-foundation"))
    yield client
    client.close()


def test_kafka_engine_and_mv_load_rows_and_replacing_merge_tree_collapses_replays(
    stack, chdb, unique
):
    topic = create_topic(stack, unique("ch-rows"))
    chdb.execute("CREATE DATABASE IF NOT EXISTS foundation")
    chdb.execute("DROP DATABASE IF EXISTS foundation_ingest")
    chdb.execute("CREATE DATABASE foundation_ingest ENGINE = Memory")
    chdb.execute(
        "CREATE TABLE IF NOT EXISTS foundation.prices (symbol LowCardinality(String), "
        "ts DateTime64(3, 'UTC'), price Float64, version UInt64) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY (symbol, ts)"
    )
    chdb.execute(
        "CREATE TABLE foundation_ingest.prices_queue (symbol String, ts DateTime64(3, 'UTC'), "
        "price Float64, version UInt64) ENGINE = Kafka SETTINGS "
        f"kafka_broker_list = '{stack.kafka_bootstrap}', kafka_topic_list = '{topic}', "
        f"kafka_group_name = '{unique('ch')}', kafka_format = 'JSONEachRow', "
        "kafka_flush_interval_ms = 200"
    )
    chdb.execute(
        "CREATE MATERIALIZED VIEW foundation_ingest.prices_mv TO foundation.prices AS "
        "SELECT symbol, ts, price, version FROM foundation_ingest.prices_queue"
    )
    p = producer(stack)
    rows = [
        {"symbol": s, "ts": f"2026-01-02 14:30:0{i}.000", "price": 100.0 + i, "version": 1}
        for s in ("AAPL", "MSFT")
        for i in range(5)
    ]
    replay = [dict(r, price=r["price"] + 0.5, version=2) for r in rows[:3]]
    for r in rows + replay:
        p.produce(topic, orjson.dumps(r), key=r["symbol"].encode())
    assert p.flush(20) == 0

    expected = {(r["symbol"], r["ts"], r["price"]) for r in rows[3:]} | {
        (r["symbol"], r["ts"], r["price"]) for r in replay
    }

    def final_rows() -> set[tuple[str, str, float]]:
        got = chdb.rows("SELECT symbol, toString(ts), price FROM foundation.prices FINAL")
        return {(s, t, float(p)) for s, t, p in got}

    # background merges may collapse the replayed rows at any moment, so await the FINAL view
    wait_for(lambda: final_rows() == expected, 90, "the replayed rows to replace the originals")
    assert chdb.rows("SELECT count() FROM foundation.prices FINAL")[0][0] == 10
