"""Apply `schemas/clickhouse/*.sql` idempotently, after the server answers.

Files run in name order. `{{name}}` placeholders are filled from `SchemaParams`. Storage
tables use IF NOT EXISTS; the Kafka-engine tables and their materialized views live in
their own database that every apply re-creates (a `Memory` database under chdb, where a
persisted Kafka table would break reopening the data dir).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from torghut.clickhouse.client import ClickHouseClient, ClickHouseError

SQL_DIR = Path(__file__).resolve().parents[2] / "schemas" / "clickhouse"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")


class SchemaApplyError(RuntimeError):
    """The schema could not be applied; writers must not start."""


@dataclass(frozen=True)
class SchemaParams:
    kafka_broker: str
    registry_url: str
    database: str = "torghut"
    ingest_db: str = "torghut_ingest"
    ingest_db_engine: str = "Atomic"  # "Memory" under chdb
    consumer_group: str = "torghut-clickhouse"
    kafka_security_settings: str = ""  # extra `, kafka_security_protocol = ...` settings


def render(text: str, params: SchemaParams) -> str:
    values = {k: str(v) for k, v in asdict(params).items()}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise SchemaApplyError(f"unknown placeholder {{{{{name}}}}}; known: {sorted(values)}")
        return values[name]

    return _PLACEHOLDER.sub(sub, text)


def split_statements(text: str) -> list[str]:
    """Split on `;` that ends a line; `--` comment lines are dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*(?:\n|$)", body) if s.strip()]


def wait_until_ready(client: ClickHouseClient, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    delay, last = 0.2, None
    while True:
        try:
            client.rows("SELECT 1")
            return
        except ClickHouseError as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise SchemaApplyError(
                f"ClickHouse did not answer within {timeout_s:.0f}s: {last}. "
                "Check the URL/credentials and that the server is up; sinks stay stopped."
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def apply(
    client: ClickHouseClient,
    params: SchemaParams,
    sql_dir: Path = SQL_DIR,
    wait_s: float = 60.0,
    verbose: bool = False,
) -> int:
    """Apply every SQL file; returns the number of statements run."""
    wait_until_ready(client, wait_s)
    files = sorted(sql_dir.glob("*.sql"))
    if not files:
        raise SchemaApplyError(f"no .sql files in {sql_dir}")
    count = 0
    for path in files:
        for stmt in split_statements(render(path.read_text(), params)):
            try:
                client.execute(stmt)
            except ClickHouseError as exc:
                raise SchemaApplyError(f"{path.name}: {exc}") from exc
            count += 1
            if verbose:
                print(f"[clickhouse] {path.name}: {stmt.splitlines()[0][:90]}", file=sys.stderr)
    return count
