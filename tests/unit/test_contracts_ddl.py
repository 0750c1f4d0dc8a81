"""Contracts: the topic catalog, the Avro schemas and the ClickHouse DDL agree on every field.

The chain checked, all derived from the files themselves:
Kafka-engine queue table (`kafka_topic_list`) -> catalog topic -> its Avro value schema
(every field maps to a queue column of a compatible type and back), queue -> materialized
view -> storage table (every storage column is produced by the MV or has a DEFAULT, every MV
output lands in a column) and the storage TTL equals the topic's retention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.schemas import all_schemas, schema_json
from shared.topics import ALL_TOPICS, BY_NAME, TA_BAR_CHECKS, TA_BARS_1S, TA_SIGNALS
from torghut.clickhouse.schema import SQL_DIR, SchemaParams, render, split_statements

PARAMS = SchemaParams(kafka_broker="broker:9092", registry_url="http://registry:8081")
COLUMN_OPTIONS = ("DEFAULT", "MATERIALIZED", "ALIAS", "EPHEMERAL", "CODEC", "COMMENT", "TTL")


# ---- a small parser for the DDL we write ------------------------------------------------


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def closing_paren(text: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses in {text[:80]!r}")


def norm_type(t: str) -> str:
    return re.sub(r"\s+", " ", t).replace("( ", "(").replace(" )", ")").strip()


@dataclass
class Column:
    name: str
    type: str
    default: str | None = None


@dataclass
class Table:
    name: str
    columns: dict[str, Column]
    tail: str  # ENGINE ... SETTINGS ...

    def setting(self, key: str) -> str | None:
        m = re.search(rf"\b{key}\s*=\s*'([^']*)'", self.tail)
        return m.group(1) if m else None


@dataclass
class MaterializedView:
    name: str
    target: str
    source: str
    outputs: dict[str, str] = field(default_factory=dict)  # output column -> expression


def parse_column(text: str) -> Column:
    name, rest = text.split(None, 1)
    words = split_top_level(rest, " ")
    type_words, default = [], None
    for i, w in enumerate(words):
        if w.upper() in COLUMN_OPTIONS:
            if w.upper() == "DEFAULT":
                default = " ".join(words[i + 1 :])
            break
        type_words.append(w)
    return Column(name.strip("`"), norm_type(" ".join(type_words)), default)


def parse_create_table(stmt: str) -> Table:
    m = re.match(r"CREATE TABLE (?:IF NOT EXISTS )?(\S+)\s*\(", stmt)
    assert m, stmt[:80]
    start = m.end() - 1
    end = closing_paren(stmt, start)
    cols = [parse_column(c) for c in split_top_level(stmt[start + 1 : end])]
    return Table(m.group(1), {c.name: c for c in cols}, stmt[end + 1 :])


def parse_mv(stmt: str) -> MaterializedView:
    m = re.match(
        r"CREATE MATERIALIZED VIEW (?:IF NOT EXISTS )?(\S+) TO (\S+) AS\s+SELECT\s+(.*?)\s+"
        r"FROM\s+(\S+)",
        stmt,
        re.S,
    )
    assert m, stmt[:80]
    mv = MaterializedView(m.group(1), m.group(2), m.group(4))
    for item in split_top_level(m.group(3)):
        alias = re.match(r"(.*)\s+AS\s+(\w+)$", item, re.S | re.I)
        expr, name = (alias.group(1), alias.group(2)) if alias else (item, item.split(".")[-1])
        mv.outputs[name] = expr.strip()
    return mv


def statements() -> list[str]:
    out = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        out += [" ".join(s.split()) for s in split_statements(render(path.read_text(), PARAMS))]
    return out


TABLES = {
    t.name: t
    for t in map(parse_create_table, (s for s in statements() if s.startswith("CREATE TABLE")))
}
VIEWS = {
    v.name: v
    for v in map(parse_mv, (s for s in statements() if s.startswith("CREATE MATERIALIZED VIEW")))
}
# the committed (read_committed) queue of each topic; the at-least-once profile's provisional
# twins (25_ingest_provisional.sql) are checked against these below
PROVISIONAL = "_provisional_"
QUEUES = {
    t.setting("kafka_topic_list"): t
    for t in TABLES.values()
    if "ENGINE = Kafka" in t.tail and PROVISIONAL not in t.name
}


DEAD_LETTERS = "torghut.ta_dead_letters"


def storage_for(topic_name: str) -> tuple[Table, MaterializedView, Table]:
    queue = QUEUES[topic_name]
    (mv,) = [v for v in VIEWS.values() if v.source == queue.name and v.target != DEAD_LETTERS]
    return queue, mv, TABLES[mv.target]


# ---- Avro -> ClickHouse type mapping ----------------------------------------------------

PRIMITIVES = {
    "long": {"Int64"},
    "int": {"Int32"},
    "double": {"Float64"},
    "float": {"Float32"},
    "boolean": {"Bool", "UInt8"},
    "string": {"String", "LowCardinality(String)"},
}
LOGICAL = {
    "timestamp-micros": {"DateTime64(6, 'UTC')"},
    "timestamp-millis": {"DateTime64(3, 'UTC')"},
}


def compatible(avro: Any, ch: str) -> bool:
    """Whether ClickHouse's AvroConfluent input can read this Avro type into this column."""
    ch = norm_type(ch)
    if isinstance(avro, str):
        return ch in PRIMITIVES.get(avro, set())
    if (
        isinstance(avro, dict)
        and avro.get("default") is not None
        and (inner := re.fullmatch(r"Nullable\((.*)\)", ch))
    ):
        # a field added with a default: older records lack it and read NULL (a Kafka table
        # has no DEFAULT expressions), which the view maps to the Avro default
        return compatible(avro["type"], inner.group(1))
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            return False
        if "null" in avro:
            inner = re.fullmatch(r"Nullable\((.*)\)", ch)
            return bool(inner) and compatible(branches[0], inner.group(1))
        return compatible(branches[0], ch)
    if "logicalType" in avro:
        return ch in LOGICAL.get(avro["logicalType"], set())
    if avro["type"] == "array":
        inner = re.fullmatch(r"Array\((.*)\)", ch)
        return bool(inner) and compatible(avro["items"], inner.group(1))
    if avro["type"] == "record":
        inner = re.fullmatch(r"Tuple\((.*)\)", ch)
        if not inner:
            return False
        elements = [e.split(None, 1) for e in split_top_level(inner.group(1))]
        return [n for n, _ in elements] == [f["name"] for f in avro["fields"]] and all(
            compatible(f["type"], t) for f, (_, t) in zip(avro["fields"], elements, strict=True)
        )
    return compatible(avro["type"], ch)


# ---- the contract ------------------------------------------------------------------------


def test_every_catalog_value_schema_exists_in_schemas_avro() -> None:
    for t in ALL_TOPICS:
        assert t.value_schema in all_schemas(), f"{t.name}: no schema {t.value_schema}"
        assert t.subject == f"{t.name}-value"


def test_every_avro_schema_is_used_by_some_topic() -> None:
    assert set(all_schemas()) == {t.value_schema for t in ALL_TOPICS}


def test_clickhouse_reads_exactly_the_bars_the_signals_and_the_minute_checks() -> None:
    assert set(QUEUES) == {TA_BARS_1S.name, TA_SIGNALS.name, TA_BAR_CHECKS.name}
    assert all(name in BY_NAME for name in QUEUES)


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_queue_reads_avro_confluent_from_the_registry_with_a_per_table_group(topic) -> None:
    queue, _, _ = storage_for(topic.name)
    assert queue.setting("kafka_format") == "AvroConfluent"
    assert queue.setting("format_avro_schema_registry_url") == PARAMS.registry_url
    # the connection (brokers, SASL, CA) is the named collection's, never the DDL's
    assert f"ENGINE = Kafka({PARAMS.kafka_collection})" in queue.tail
    for key in ("kafka_broker_list", "kafka_security_protocol", "kafka_sasl_", "kafka_ssl"):
        assert key not in queue.tail, key
    assert queue.setting("kafka_group_name").startswith(PARAMS.consumer_group)
    assert "kafka_handle_error_mode = 'stream'" in queue.tail


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_every_avro_field_maps_to_a_queue_column_of_a_compatible_type_and_back(topic) -> None:
    queue, _, _ = storage_for(topic.name)
    fields = {
        f["name"]: ({"type": f["type"], "default": f["default"]} if "default" in f else f["type"])
        for f in schema_json(topic.value_schema)["fields"]
    }
    assert set(fields) == set(queue.columns), "queue columns and Avro fields differ"
    bad = {
        n: (fields[n], queue.columns[n].type)
        for n in fields
        if not compatible(fields[n], queue.columns[n].type)
    }
    assert not bad, f"incompatible Avro -> ClickHouse types: {bad}"


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_every_storage_column_is_produced_by_the_view_or_has_a_default(topic) -> None:
    _, mv, table = storage_for(topic.name)
    missing = [
        c.name for c in table.columns.values() if c.name not in mv.outputs and c.default is None
    ]
    assert not missing, f"{table.name} columns nobody writes: {missing}"
    unknown = [n for n in mv.outputs if n not in table.columns]
    assert not unknown, f"{mv.name} writes columns {table.name} lacks: {unknown}"


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_every_queue_column_reaches_storage(topic) -> None:
    """Nothing the job sends is silently dropped by the view."""
    queue, mv, _ = storage_for(topic.name)
    used = " ".join(mv.outputs.values())
    unused = [c for c in queue.columns if not re.search(rf"\b{c}\b", used)]
    assert not unused, f"{mv.name} ignores {unused}"


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_nullable_indicators_stay_nullable_in_storage(topic) -> None:
    queue, _, table = storage_for(topic.name)
    nullable = {
        f["name"]
        for f in schema_json(topic.value_schema)["fields"]
        if isinstance(f["type"], list) and "null" in f["type"]
    }
    for name, col in queue.columns.items():
        if col.type.startswith("Nullable(") and name in table.columns and name in nullable:
            assert table.columns[name].type == col.type, name


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS], ids=lambda t: t.name)
def test_nanosecond_epoch_fields_are_stored_as_datetime64_9_from_nanos(topic) -> None:
    _, mv, table = storage_for(topic.name)
    for name in ("event_ts", "ingest_ts", "emit_ts"):
        assert table.columns[name].type == "DateTime64(9, 'UTC')"
        assert mv.outputs[name] == f"fromUnixTimestamp64Nano({name}, 'UTC')"


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS], ids=lambda t: t.name)
def test_storage_ttl_equals_the_catalog_retention(topic) -> None:
    _, _, table = storage_for(topic.name)
    m = re.search(r"\bTTL toDateTime\((\w+)\) \+ INTERVAL (\d+) DAY", table.tail)
    assert m, f"{table.name} has no TTL"
    assert (m.group(1), int(m.group(2))) == ("window_start", topic.retention_days)
    assert {TA_BARS_1S.name: 30, TA_SIGNALS.name: 14}[topic.name] == topic.retention_days


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS], ids=lambda t: t.name)
def test_storage_is_replacing_merge_tree_by_version_keyed_by_topic_key_bar_and_finality(
    topic,
) -> None:
    _, _, table = storage_for(topic.name)
    assert "ENGINE = ReplacingMergeTree(version)" in table.tail
    order = re.search(r"ORDER BY \(([^)]*)\)", table.tail)
    assert order and [c.strip() for c in order.group(1).split(",")] == [
        topic.key,
        "window_start",
        "window_size_ms",
        "is_final",
    ]
    assert table.columns["version"].type == "UInt64"
    assert all(
        c in table.columns for c in (topic.key, "window_start", "window_size_ms", "is_final")
    )


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS, TA_BAR_CHECKS], ids=lambda t: t.name)
def test_records_a_queue_cannot_parse_go_to_the_dead_letters_and_only_those(topic) -> None:
    queue, mv, _ = storage_for(topic.name)
    assert queue.setting("kafka_handle_error_mode") == "stream"
    stmt = next(s for s in statements() if s.startswith(f"CREATE MATERIALIZED VIEW {mv.name} "))
    assert stmt.endswith("WHERE length(_error) = 0")
    (dead,) = [v for v in VIEWS.values() if v.source == queue.name and v.target == DEAD_LETTERS]
    stmt = next(s for s in statements() if s.startswith(f"CREATE MATERIALIZED VIEW {dead.name} "))
    assert stmt.endswith("WHERE length(_error) > 0")
    assert dead.outputs == {
        "topic": "_topic",
        "partition": "_partition",
        "offset": "_offset",
        "key": "_key",
        "raw_message": "_raw_message",
        "error": "_error",
    }
    table = TABLES[DEAD_LETTERS]
    assert set(dead.outputs) | {"loaded_at"} == set(table.columns)
    assert table.columns["loaded_at"].default


def test_the_parser_sees_every_statement_it_should() -> None:
    kinds = [s.split(" (")[0].split(" AS ")[0] for s in statements()]
    # 7 tables and 6 views, plus the 2 provisional queues and their 2 views
    assert len(TABLES) == 9 and len(VIEWS) == 8
    assert sum(k.startswith("CREATE OR REPLACE VIEW") for k in kinds) == 5


def test_minute_checks_are_kept_per_symbol_and_minute_latest_check_wins_for_the_catalog_days() -> (
    None
):
    _, mv, table = storage_for(TA_BAR_CHECKS.name)
    assert "ENGINE = ReplacingMergeTree(version)" in table.tail
    order = re.search(r"ORDER BY \(([^)]*)\)", table.tail)
    assert order and [c.strip() for c in order.group(1).split(",")] == [TA_BAR_CHECKS.key, "minute"]
    m = re.search(r"\bTTL toDateTime\((\w+)\) \+ INTERVAL (\d+) DAY", table.tail)
    assert m and (m.group(1), int(m.group(2))) == ("minute", TA_BAR_CHECKS.retention_days)
    # the version is the check's wall time: a re-check (an updatedBar) replaces the row
    assert mv.outputs["version"] == "toUInt64(check_ts)"
    assert mv.outputs["check_ts"] == "fromUnixTimestamp64Nano(check_ts, 'UTC')"


@pytest.mark.parametrize("topic", [TA_BARS_1S, TA_SIGNALS], ids=lambda t: t.name)
def test_the_provisional_queue_is_its_committed_twin_read_uncommitted_loading_provisional_rows(
    topic,
) -> None:
    """25_ingest_provisional.sql: the same columns, topic and format as the committed queue,
    through the read_uncommitted collection in a group of its own; its view maps like the
    committed one and keeps only `NOT is_final` (finals come only through read_committed)."""
    queue, mv, table = storage_for(topic.name)
    (twin,) = [
        t
        for t in TABLES.values()
        if PROVISIONAL in t.name and t.setting("kafka_topic_list") == topic.name
    ]
    assert twin.columns == queue.columns
    assert f"Kafka({PARAMS.kafka_collection_uncommitted})" in twin.tail
    assert f"Kafka({PARAMS.kafka_collection})" in queue.tail
    for s in ("kafka_format", "format_avro_schema_registry_url", "kafka_handle_error_mode"):
        assert twin.setting(s) == queue.setting(s)
    assert twin.setting("kafka_group_name") == queue.setting("kafka_group_name") + "-provisional"
    (twin_mv,) = [v for v in VIEWS.values() if v.source == twin.name]
    assert twin_mv.target == table.name and twin_mv.outputs == mv.outputs
    stmt = next(
        s for s in statements() if s.startswith(f"CREATE MATERIALIZED VIEW {twin_mv.name} ")
    )
    assert stmt.endswith("WHERE length(_error) = 0 AND NOT is_final")
