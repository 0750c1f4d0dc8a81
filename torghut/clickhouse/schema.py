"""Apply `schemas/clickhouse/*.sql` idempotently, after the server answers.

Files run in name order. `{{name}}` placeholders are filled from `SchemaParams`. Storage
tables use IF NOT EXISTS; the Kafka-engine tables and their materialized views live in
their own database that every apply re-creates (a `Memory` database under chdb, where a
persisted Kafka table would break reopening the data dir).

The Kafka-engine tables take their connection (brokers, security protocol, SASL user and
password, CA, isolation level) from the named collection `kafka_collection`: no credential is
ever part of the DDL. On a server the collection is defined in a config.d file whose password
comes from the environment (k8s/base/clickhouse/torghut-kafka.xml, docs/deploy.md); `apply`
only checks that it exists. Without one, and only for a PLAINTEXT broker (the local stack,
tests), `apply` creates it in SQL from `kafka_broker`: there is no secret to put in it.

The consumer profile (`shared/consumer_profile.py`, `SchemaParams.profile`) shapes the ingest
database: the topic versions its Kafka tables read, whether they exist at all (`enabled`: off,
the ingest files run only their database statements, so nothing consumes and the consumer
groups keep their committed offsets), and, for `at-least-once`, the provisional path of
`25_ingest_provisional.sql` through a second named collection, `<kafka_collection>_uncommitted`
(`isolation.level=read_uncommitted`). `apply_ingest` re-creates only the ingest database (what
`torghut clickhouse flags` runs): the storage tables, which hold the data, are never touched.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.consumer_profile import ConsumerProfile
from torghut.clickhouse.client import ClickHouseClient, ClickHouseError

REPO_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = REPO_ROOT / "schemas" / "clickhouse"
# The server config.d snippet defining the Kafka named collection (SASL_SSL, SCRAM-SHA-512,
# endpoint identification); every value that differs per install comes `from_env`.
KAFKA_COLLECTION_XML = REPO_ROOT / "k8s" / "base" / "clickhouse" / "torghut-kafka.xml"
KAFKA_COLLECTION_ENV = {
    "broker": "TORGHUT_CH_KAFKA_BROKER",
    "username": "TORGHUT_CH_KAFKA_SASL_USERNAME",
    "password": "TORGHUT_CH_KAFKA_SASL_PASSWORD",
    "ca": "TORGHUT_CH_KAFKA_SSL_CA_LOCATION",
}
# the files that make up the ingest database (Kafka tables + MVs), re-created by every apply
INGEST_FILES = ("20_ingest.sql", "25_ingest_provisional.sql")
PROVISIONAL_FILE = "25_ingest_provisional.sql"  # the at-least-once profile's extra path
UNCOMMITTED_SUFFIX = "_uncommitted"  # the read_uncommitted named collection's name suffix
# what consumes: a Kafka-engine table, a materialized view (left out when `enabled` is off)
# The local (SQL-created) collections' consumer session timeout. Under chdb a dropped Kafka
# table's consumer does not leave its group, so the re-created table's consumer waits for the
# old member's session to expire before it gets partitions: librdkafka's 45 s default per
# apply or flag switch, 10 s with this. A server's config.d keeps the default.
LOCAL_SESSION_TIMEOUT_MS = 10_000
_CONSUMING = re.compile(
    r"^CREATE\s+(TABLE\s+\S+\s*\(.*\)\s*ENGINE\s*=\s*Kafka|MATERIALIZED VIEW)", re.S
)
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BROKER_LIST = re.compile(r"[A-Za-z0-9_.:\[\],-]+")


class SchemaApplyError(RuntimeError):
    """The schema could not be applied; writers must not start."""


@dataclass(frozen=True)
class SchemaParams:
    # PLAINTEXT bootstrap for a collection `apply` creates in SQL when the server config
    # defines none; "" = the collection must come from the server config (SASL_SSL)
    kafka_broker: str
    registry_url: str
    database: str = "torghut"
    ingest_db: str = "torghut_ingest"
    ingest_db_engine: str = "Atomic"  # "Memory" under chdb
    consumer_group: str = "torghut-clickhouse"
    kafka_collection: str = "torghut_kafka"  # named collection of the Kafka connection
    # which topic versions the Kafka tables read, at which isolation, and whether they exist
    profile: ConsumerProfile = field(default_factory=ConsumerProfile)

    @property
    def kafka_collection_uncommitted(self) -> str:
        return self.kafka_collection + UNCOMMITTED_SUFFIX

    def values(self) -> dict[str, str]:
        """Every `{{name}}` the SQL files may use."""
        out = {k: str(v) for k, v in asdict(self).items() if k != "profile"}
        out.update(
            kafka_collection_uncommitted=self.kafka_collection_uncommitted,
            bars_topic=self.profile.bars_topic,
            signals_topic=self.profile.signals_topic,
        )
        return out


def render(text: str, params: SchemaParams) -> str:
    values = params.values()

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


def profile_statements(path: Path, params: SchemaParams) -> list[str]:
    """The statements of one SQL file that the consumer profile runs: the provisional file
    only for `at-least-once`; with `enabled` off, no Kafka table and no materialized view."""
    if path.name == PROVISIONAL_FILE and not params.profile.at_least_once:
        return []
    stmts = split_statements(render(path.read_text(), params))
    if path.name in INGEST_FILES and not params.profile.enabled:
        stmts = [s for s in stmts if not _CONSUMING.match(s)]
    return stmts


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


def kafka_collection_source(client: ClickHouseClient, name: str) -> str | None:
    """'CONFIG' or 'SQL' for an existing named collection, None if there is none."""
    rows = client.rows(f"SELECT source FROM system.named_collections WHERE name = '{name}'")
    return str(rows[0][0]) if rows else None


def plaintext_collection_statements(name: str, broker: str, ingest_db: str) -> list[str]:
    """(Re)create the PLAINTEXT collections in SQL (`name` read_committed, its `_uncommitted`
    twin read_uncommitted for the at-least-once profile); they hold no credential by
    construction. ClickHouse refuses to drop a collection that tables use: the ingest database
    (re-created by 20_ingest.sql anyway) goes first."""
    if not _BROKER_LIST.fullmatch(broker):
        raise SchemaApplyError(f"not a broker list: {broker!r}")
    if not _IDENTIFIER.fullmatch(ingest_db):
        raise SchemaApplyError(f"not a database name: {ingest_db!r}")
    common = (
        f"kafka_broker_list = '{broker}', kafka_security_protocol = 'plaintext', "
        f"`kafka.session_timeout_ms` = {LOCAL_SESSION_TIMEOUT_MS}"
    )
    return [
        f"DROP DATABASE IF EXISTS {ingest_db} SYNC",
        f"DROP NAMED COLLECTION IF EXISTS {name}",
        f"CREATE NAMED COLLECTION {name} AS {common}, `kafka.isolation_level` = 'read_committed'",
        f"DROP NAMED COLLECTION IF EXISTS {name}{UNCOMMITTED_SUFFIX}",
        f"CREATE NAMED COLLECTION {name}{UNCOMMITTED_SUFFIX} AS {common}, "
        "`kafka.isolation_level` = 'read_uncommitted'",
    ]


def ensure_kafka_collection(client: ClickHouseClient, params: SchemaParams) -> list[str]:
    """Make sure the Kafka named collection exists; returns the statements it ran."""
    name = params.kafka_collection
    if not _IDENTIFIER.fullmatch(name):
        raise SchemaApplyError(f"not a named collection name: {name!r}")
    source = kafka_collection_source(client, name)
    if source == "CONFIG":
        # the server's config.d owns it (and its credentials), and its read_uncommitted twin
        # when the at-least-once profile needs one
        twin = params.kafka_collection_uncommitted
        if params.profile.at_least_once and kafka_collection_source(client, twin) != "CONFIG":
            raise SchemaApplyError(
                f"the at-least-once consumer profile reads through the named collection "
                f"{twin!r} (isolation_level read_uncommitted), which the server config does "
                f"not define: install the current {KAFKA_COLLECTION_XML.name} in config.d and "
                "restart ClickHouse, or keep TORGHUT_CONSUMER_PROFILE=exactly-once"
            )
        return []
    if not params.kafka_broker:
        raise SchemaApplyError(
            f"the server config defines no named collection {name!r} for the Kafka engine "
            f"(found: {source or 'none'}); install {KAFKA_COLLECTION_XML.name} in config.d with "
            f"its environment (docs/deploy.md, 'ClickHouse Kafka credentials') and restart "
            "ClickHouse, or pass a PLAINTEXT --kafka-broker for a local server"
        )
    stmts = plaintext_collection_statements(name, params.kafka_broker, params.ingest_db)
    for stmt in stmts:
        try:
            client.execute(stmt)
        except ClickHouseError as exc:
            raise SchemaApplyError(f"named collection {name}: {exc}") from exc
    return stmts


def _run_files(
    client: ClickHouseClient, params: SchemaParams, paths: list[Path], verbose: bool
) -> int:
    """The Kafka collections ensured, then every statement of `paths` for the profile;
    returns the number of statements run."""
    count = len(ensure_kafka_collection(client, params))
    for path in paths:
        for stmt in profile_statements(path, params):
            try:
                client.execute(stmt)
            except ClickHouseError as exc:
                raise SchemaApplyError(f"{path.name}: {exc}") from exc
            count += 1
            if verbose:
                print(f"[clickhouse] {path.name}: {stmt.splitlines()[0][:90]}", file=sys.stderr)
    return count


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
    return _run_files(client, params, files, verbose)


def apply_ingest(
    client: ClickHouseClient,
    params: SchemaParams,
    sql_dir: Path = SQL_DIR,
    wait_s: float = 60.0,
    verbose: bool = False,
) -> int:
    """Re-create only the ingest database for `params.profile` (the storage tables and views,
    which hold the data, are not touched); returns the number of statements run. The named
    collections are ensured as by `apply`; the consumer groups keep their offsets."""
    wait_until_ready(client, wait_s)
    return _run_files(client, params, [sql_dir / name for name in INGEST_FILES], verbose)
