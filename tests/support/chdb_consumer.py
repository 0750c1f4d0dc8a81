"""One embedded ClickHouse in a process of its own, reading the TA topics through a config
file's Kafka named collection: `python -m tests.support.chdb_consumer SPEC.json`.

A process of its own because chdb loads a config file once per process (and one process owns
a data dir), and because the collection's `from_env` values (broker, user, password, CA) come
from the environment, which only this child gets, as only the ClickHouse server pod does.

It applies schemas/clickhouse the way `torghut clickhouse apply` does for the embedded engine
with SASL_SSL (the collection comes from the config, apply creates none), waits for the spec's
condition within its deadline and writes what it saw to `spec["out"]` as JSON: the rows of
the spec's symbols, every DDL text the engine holds, the consumers' exceptions and the named
collection's source. The caller asserts.

Spec keys: data_dir, config_file, log_file, registry_url, consumer_group, symbols,
await ("rows": `expected_bars` bars and `expected_signals` signals under FINAL; or "error":
`error_marker` in a consumer exception or the engine's log, and an exception in each of the
two consumers), deadline_s, out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SchemaParams, apply


def _in(symbols: list[str]) -> str:
    return "(" + ", ".join(f"'{s}'" for s in symbols) + ")"


def snapshot(client: ChdbClient, spec: dict[str, Any]) -> dict[str, Any]:
    syms = _in(spec["symbols"])
    bars = client.rows(
        "SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), is_final, "
        f"toString(version), close FROM torghut.ta_microbars FINAL WHERE symbol IN {syms}"
    )
    signals = client.rows(
        "SELECT symbol, toString(toUnixTimestamp64Micro(window_start)), is_final, "
        f"toString(version), close FROM torghut.ta_signals FINAL WHERE symbol IN {syms}"
    )
    raw = {
        t: int(client.rows(f"SELECT count() FROM torghut.{t} WHERE symbol IN {syms}")[0][0])
        for t in ("ta_microbars", "ta_signals")
    }
    marks = " OR ".join(f"position(raw_message, '{s}') > 0" for s in spec["symbols"])
    dead = int(client.rows(f"SELECT count() FROM torghut.ta_dead_letters WHERE {marks}")[0][0])
    consumers = client.rows(
        "SELECT table, arrayDistinct(exceptions.text), num_messages_read "
        "FROM system.kafka_consumers ORDER BY table"
    )
    return {
        "bars": bars,
        "signals": signals,
        "raw": raw,
        "dead_letters": dead,
        "consumers": consumers,
        "ddl": client.rows(
            "SELECT database, name, engine, create_table_query FROM system.tables "
            "WHERE database NOT IN ('system', 'INFORMATION_SCHEMA', 'information_schema')"
        ),
        "collections": client.rows(
            "SELECT name, source, toString(collection) FROM system.named_collections"
        ),
    }


def _done(snap: dict[str, Any], spec: dict[str, Any]) -> bool:
    if spec["await"] == "rows":
        return (
            len(snap["bars"]) >= spec["expected_bars"]
            and len(snap["signals"]) >= spec["expected_signals"]
        )
    # both Kafka tables' consumers are there, each with an exception to be looked at
    if len(snap["consumers"]) < 2 or not all(errors for _, errors, _ in snap["consumers"]):
        return False
    marker = spec["error_marker"]
    log = Path(spec["log_file"])
    in_log = log.exists() and marker in log.read_text(errors="replace")
    return in_log or any(marker in e for _, errors, _ in snap["consumers"] for e in errors)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    client = ChdbClient(spec["data_dir"], config_file=spec["config_file"])
    try:
        params = SchemaParams(
            kafka_broker="",  # SASL_SSL: the collection must come from the config
            registry_url=spec["registry_url"],
            ingest_db_engine="Memory",
            consumer_group=spec["consumer_group"],
        )
        statements = apply(client, params, wait_s=30)
        deadline = time.monotonic() + spec["deadline_s"]
        while True:
            snap = snapshot(client, spec)
            done = _done(snap, spec)
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        snap.update(statements=statements, reached=done)
        Path(spec["out"]).write_text(json.dumps(snap))
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
