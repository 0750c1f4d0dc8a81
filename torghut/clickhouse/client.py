"""The ClickHouse client interface and its two implementations.

`ChdbClient` embeds the ClickHouse engine (chdb-core) for local runs and tests;
`ServerClient` talks to a real server with clickhouse-driver. Both run the same SQL.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson


class ClickHouseError(RuntimeError):
    """A statement failed; the message names the statement.

    `server_message`: ClickHouse's own message ("Code: 62. DB::Exception: Syntax error ..."),
    without the statement, for a user who typed the query.
    """

    def __init__(self, message: str, server_message: str = "") -> None:
        super().__init__(message)
        self.server_message = server_message or message


class ClickHouseClient(Protocol):
    kind: str

    def execute(self, sql: str) -> None: ...

    def rows(self, sql: str) -> list[list[Any]]: ...

    def query(self, sql: str, fmt: str) -> bytes:
        """The result of `sql` in ClickHouse output format `fmt` (CSVWithNames, JSONEachRow,
        Parquet, PrettyCompactMonoBlock, ...), as ClickHouse writes it."""
        ...

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert `rows` (column -> value, JSON-serialisable; DateTime64 as
        'YYYY-MM-DD hh:mm:ss.ffffff' strings) into `table` (database.table)."""
        ...

    def close(self) -> None: ...


def json_compact_rows(raw: bytes) -> list[list[Any]]:
    """The rows of a JSONCompact answer (none for an empty one)."""
    if not raw.strip():
        return []
    return list(orjson.loads(raw)["data"])


def json_each_row(table: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """An `INSERT ... FORMAT JSONEachRow` statement with its rows inline."""
    body = b"\n".join(orjson.dumps(dict(r)) for r in rows).decode()
    return f"INSERT INTO {table} FORMAT JSONEachRow\n{body}"


# chdb raises this after a Kafka-engine CREATE TABLE that did succeed (docs/design.md, "Engines for development and tests").
_CHDB_KAFKA_SHUTDOWN_QUIRK = "Code: 49. DB::Exception: Shutdown was called"


class ChdbClient:
    """Embedded ClickHouse on a data dir this process owns (chdb allows one owner).

    `config_file`: a server config file the engine loads (e.g. the config.d snippet with the
    Kafka named collection; its `from_env` values come from this process's environment).
    """

    kind = "chdb"

    def __init__(self, data_dir: str | Path, config_file: str | Path | None = None) -> None:
        from chdb import session

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        target = str(self.data_dir)
        if config_file is not None:
            target += f"?config-file={Path(config_file).resolve()}"
        self._session = session.Session(target)
        self._lock = threading.Lock()  # the session is not safe for concurrent queries

    def execute(self, sql: str) -> None:
        with self._lock:
            try:
                self._session.query(sql)
            except Exception as exc:
                if _CHDB_KAFKA_SHUTDOWN_QUIRK in str(exc) and "ENGINE = Kafka" in _norm(sql):
                    return
                raise ClickHouseError(f"{exc}\n-- statement:\n{sql.strip()}", str(exc)) from exc

    def rows(self, sql: str) -> list[list[Any]]:
        return json_compact_rows(self.query(sql, "JSONCompact"))

    def query(self, sql: str, fmt: str) -> bytes:
        with self._lock:
            try:
                res = self._session.query(sql, fmt)
            except Exception as exc:
                raise ClickHouseError(f"{exc}\n-- query:\n{sql.strip()}", str(exc)) from exc
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.query(json_each_row(table, rows), "CSV")

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._session.close()


def _norm(sql: str) -> str:
    return " ".join(sql.split()).replace("ENGINE=Kafka", "ENGINE = Kafka")


class ServerClient:
    """A ClickHouse server over the native protocol (clickhouse-driver)."""

    kind = "server"

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        self._client = Client.from_url(url)

    def execute(self, sql: str) -> None:
        try:
            self._client.execute(sql)
        except Exception as exc:
            raise ClickHouseError(f"{exc}\n-- statement:\n{sql.strip()}", str(exc)) from exc

    def rows(self, sql: str) -> list[list[Any]]:
        try:
            return [list(r) for r in self._client.execute(sql)]
        except Exception as exc:
            raise ClickHouseError(f"{exc}\n-- query:\n{sql.strip()}", str(exc)) from exc

    def query(self, sql: str, fmt: str) -> bytes:
        """The native protocol (clickhouse-driver) carries rows, not output formats."""
        raise ClickHouseError(
            f"formatted output ({fmt}) needs the embedded engine or ClickHouse's HTTP "
            "interface; use clickhouse-client against a server",
        )

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            # the server parses the inline JSONEachRow data after FORMAT
            self.execute(json_each_row(table, rows))

    def close(self) -> None:
        self._client.disconnect()


def connect(target: str) -> ClickHouseClient:
    """`clickhouse://...` -> server; anything else is an embedded data dir path."""
    if target.startswith(("clickhouse://", "clickhouses://")):
        return ServerClient(target)
    return ChdbClient(target)
