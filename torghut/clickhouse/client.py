"""The ClickHouse client interface and its two implementations.

`ChdbClient` embeds the ClickHouse engine (chdb-core) for local runs and tests;
`ServerClient` talks to a real server with clickhouse-driver. Both run the same SQL.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Protocol

import orjson


class ClickHouseError(RuntimeError):
    """A statement failed; the message names the statement."""


class ClickHouseClient(Protocol):
    kind: str

    def execute(self, sql: str) -> None: ...

    def rows(self, sql: str) -> list[list[Any]]: ...

    def close(self) -> None: ...


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
                raise ClickHouseError(f"{exc}\n-- statement:\n{sql.strip()}") from exc

    def rows(self, sql: str) -> list[list[Any]]:
        with self._lock:
            try:
                res = self._session.query(sql, "JSONCompact")
            except Exception as exc:
                raise ClickHouseError(f"{exc}\n-- query:\n{sql.strip()}") from exc
        raw = res.bytes() if hasattr(res, "bytes") else bytes(res)
        if not raw.strip():
            return []
        return list(orjson.loads(raw)["data"])

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
            raise ClickHouseError(f"{exc}\n-- statement:\n{sql.strip()}") from exc

    def rows(self, sql: str) -> list[list[Any]]:
        try:
            return [list(r) for r in self._client.execute(sql)]
        except Exception as exc:
            raise ClickHouseError(f"{exc}\n-- query:\n{sql.strip()}") from exc

    def close(self) -> None:
        self._client.disconnect()


def connect(target: str) -> ClickHouseClient:
    """`clickhouse://...` -> server; anything else is an embedded data dir path."""
    if target.startswith(("clickhouse://", "clickhouses://")):
        return ServerClient(target)
    return ChdbClient(target)
