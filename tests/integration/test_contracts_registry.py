"""Contracts against the real schema registry (Confluent-compatible API) and Kafka of the stack:
registration under `<topic>-value`, BACKWARD compatibility per subject, what evolution the
registry accepts and rejects, and reader-schema resolution of records written by another
version of a schema.

Evolution experiments use scratch subjects (`unique(...)`), never the catalog's subjects, so
the catalog's "latest" version stays the one in schemas/avro.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import fastavro
import pytest

from shared import serde
from shared.registry import IncompatibleSchemaError, SchemaRegistryClient
from shared.schemas import all_schemas, schema_json, schema_text
from shared.serde import AvroDeserializer, AvroSerializer, UnknownSchemaIdError
from shared.topics import ALL_TOPICS, TA_BARS_1S, Topic
from tests.support.kafka import consume, create_topic, producer
from tests.support.records import microbar

pytestmark = pytest.mark.integration

V1 = "torghut.ta.MicroBar"  # the schema in schemas/avro
V2_ADDED_OPTIONAL = "evolution:added-optional"  # + venue: string, default ""
V2_ADDED_REQUIRED = "evolution:added-required"  # + venue: string, no default
V2_REMOVED_REQUIRED = "evolution:removed-required"  # - vwap (a double with no default)
V2_RETYPED = "evolution:retyped"  # trade_count: long -> string


def _evolved() -> dict[str, dict[str, Any]]:
    base = schema_json(V1)
    added_opt = copy.deepcopy(base)
    added_opt["fields"].append({"name": "venue", "type": "string", "default": ""})
    added_req = copy.deepcopy(base)
    added_req["fields"].append({"name": "venue", "type": "string"})
    removed = copy.deepcopy(base)
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "vwap"]
    retyped = copy.deepcopy(base)
    for f in retyped["fields"]:
        if f["name"] == "trade_count":
            f["type"] = "string"
    return {
        V2_ADDED_OPTIONAL: added_opt,
        V2_ADDED_REQUIRED: added_req,
        V2_REMOVED_REQUIRED: removed,
        V2_RETYPED: retyped,
    }


EVOLVED = _evolved()


def text(name: str) -> str:
    return json.dumps(EVOLVED[name]) if name in EVOLVED else schema_text(name)


@pytest.fixture(scope="module")
def registry(stack) -> SchemaRegistryClient:
    return SchemaRegistryClient(stack.registry_url)


@pytest.fixture
def evolved_schemas(monkeypatch) -> Iterator[None]:
    """Let the real serializer/deserializer use the evolved versions by name."""
    known = {**all_schemas(), **EVOLVED}
    monkeypatch.setattr(serde, "parsed", lambda name: fastavro.parse_schema(known[name]))
    monkeypatch.setattr(serde, "schema_text", lambda name: json.dumps(known[name]))
    yield


@pytest.fixture
def scratch(unique, registry) -> str:
    """A fresh subject holding v1 under BACKWARD, as the catalog subjects do."""
    subject = f"{unique('contracts-evo')}-value"
    registry.register(subject, schema_text(V1))
    registry.set_compatibility("BACKWARD", subject)
    return subject


# ---- registration and compatibility of the catalog ---------------------------------------


def test_every_catalog_schema_registers_under_its_topic_subject_and_resolves_by_id(
    registry,
) -> None:
    for t in ALL_TOPICS:
        schema_id = registry.register(t.subject, schema_text(t.value_schema))
        assert t.subject in registry.subjects()
        stored = json.loads(SchemaRegistryClient(registry.url).schema_by_id(schema_id))
        assert fastavro.schema.to_parsing_canonical_form(
            stored
        ) == fastavro.schema.to_parsing_canonical_form(schema_json(t.value_schema)), t.name


def test_registering_the_same_schema_again_returns_the_same_id_and_no_new_version(registry) -> None:
    t = TA_BARS_1S
    first = registry.register(t.subject, schema_text(t.value_schema))
    versions = registry.versions(t.subject)
    again = SchemaRegistryClient(registry.url).register(t.subject, schema_text(t.value_schema))
    assert again == first
    assert registry.versions(t.subject) == versions


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_backward_compatibility_is_set_and_read_back_for_every_subject(registry, topic) -> None:
    registry.register(topic.subject, schema_text(topic.value_schema))
    registry.set_compatibility("BACKWARD", topic.subject)
    assert registry.compatibility(topic.subject) == "BACKWARD"


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_every_subject_accepts_an_added_optional_field_and_rejects_an_added_required_one(
    registry, topic
) -> None:
    """Checked with the compatibility endpoint, so the catalog subjects stay unchanged."""
    registry.register(topic.subject, schema_text(topic.value_schema))
    registry.set_compatibility("BACKWARD", topic.subject)
    base = schema_json(topic.value_schema)
    optional = {
        **base,
        "fields": [*base["fields"], {"name": "x_new", "type": ["null", "long"], "default": None}],
    }
    required = {**base, "fields": [*base["fields"], {"name": "x_new", "type": "long"}]}
    assert registry.is_compatible(topic.subject, json.dumps(optional)) is True
    assert registry.is_compatible(topic.subject, json.dumps(required)) is False


# ---- evolution on a scratch subject ------------------------------------------------------


def test_an_added_optional_field_with_a_default_is_registered_as_a_new_version(
    registry, scratch
) -> None:
    v1_id = registry.register(scratch, schema_text(V1))
    v2_id = registry.register(scratch, text(V2_ADDED_OPTIONAL))
    assert v2_id != v1_id
    assert len(registry.versions(scratch)) == 2


def test_an_added_required_field_without_a_default_is_rejected(registry, scratch) -> None:
    with pytest.raises(IncompatibleSchemaError):
        registry.register(scratch, text(V2_ADDED_REQUIRED))
    assert len(registry.versions(scratch)) == 1


def test_a_retyped_field_is_rejected(registry, scratch) -> None:
    with pytest.raises(IncompatibleSchemaError):
        registry.register(scratch, text(V2_RETYPED))


def test_a_removed_required_field_is_rejected_where_old_readers_must_keep_working(
    registry, unique
) -> None:
    """Removing `vwap` (no default) breaks every reader still on v1: FORWARD and FULL reject
    it. BACKWARD (new readers read old data) allows it by the Avro rules, which is why
    docs/topics-and-schemas.md forbids removing a field ClickHouse or the job still reads."""
    for level in ("FORWARD", "FULL"):
        subject = f"{unique('contracts-rm')}-value"
        registry.register(subject, schema_text(V1))
        registry.set_compatibility(level, subject)
        assert registry.compatibility(subject) == level
        with pytest.raises(IncompatibleSchemaError):
            registry.register(subject, text(V2_REMOVED_REQUIRED))
        assert len(registry.versions(subject)) == 1


def test_backward_allows_removing_a_field_because_new_readers_skip_it(registry, scratch) -> None:
    assert registry.is_compatible(scratch, text(V2_REMOVED_REQUIRED)) is True


# ---- reader-schema resolution across versions, through Kafka -----------------------------


def test_records_of_both_versions_decode_with_either_reader_where_backward_allows(
    stack, registry, scratch, evolved_schemas, unique
) -> None:
    topic_name = scratch.removesuffix("-value")
    create_topic(stack, topic_name)
    old = AvroSerializer(registry, Topic(topic_name, "symbol", 1, V1, "scratch"))
    new = AvroSerializer(registry, Topic(topic_name, "symbol", 1, V2_ADDED_OPTIONAL, "scratch"))
    assert old.schema_id != new.schema_id
    p = producer(stack)
    p.produce(topic_name, old.encode(microbar(symbol="OLD")), key=b"OLD")
    p.produce(topic_name, new.encode({**microbar(symbol="NEW"), "venue": "IEX"}), key=b"NEW")
    assert p.flush(20) == 0
    msgs = consume(stack, topic_name, expected=2)
    assert [m.key() for m in msgs] == [b"OLD", b"NEW"]

    as_new = AvroDeserializer(registry, V2_ADDED_OPTIONAL)
    got = [as_new.decode(m.value(), m.topic(), m.partition(), m.offset()) for m in msgs]
    assert [(r["symbol"], r["venue"]) for r in got] == [("OLD", ""), ("NEW", "IEX")]  # default

    as_old = AvroDeserializer(registry, V1)
    got = [as_old.decode(m.value(), m.topic(), m.partition(), m.offset()) for m in msgs]
    assert [r["symbol"] for r in got] == ["OLD", "NEW"]
    assert all("venue" not in r for r in got)  # a v1 reader skips the field it does not know
    assert got[0]["event_ts"] == got[1]["event_ts"] == microbar()["event_ts"]


def test_a_reader_still_on_v1_cannot_read_records_without_a_field_it_requires(
    registry, scratch, evolved_schemas
) -> None:
    """Not a SerdeError on purpose: a consumer would count and skip every record; a reader
    behind its writer must fail loudly instead."""
    frame = AvroSerializer(registry, Topic("x", "symbol", 1, V2_REMOVED_REQUIRED, "x")).encode(
        {k: v for k, v in microbar().items() if k != "vwap"}
    )
    assert AvroDeserializer(registry, V2_REMOVED_REQUIRED).decode(frame)["symbol"] == "AAPL"
    with pytest.raises(fastavro.read.SchemaResolutionError):
        AvroDeserializer(registry, V1).decode(frame)


def test_an_id_the_registry_never_issued_is_an_unknown_schema_id_naming_the_record(
    registry,
) -> None:
    frame = b"\x00" + (2**31 - 7).to_bytes(4, "big") + b"\x00"
    with pytest.raises(UnknownSchemaIdError) as err:
        AvroDeserializer(registry).decode(frame, "ta.bars.1s.v1", 0, 42)
    assert "topic ta.bars.1s.v1, partition 0, offset 42" in str(err.value)
    assert str(2**31 - 7) in str(err.value)


def test_microbar_with_gap_registers_over_the_released_schema_and_reads_its_records_as_no_gap(
    registry, unique
) -> None:
    """Gap marking added `gap` (boolean, default false) to MicroBar: under BACKWARD the
    registry takes it as a new version of a subject holding the schema without it, and a
    record written with the old schema reads back through the new one with gap=False."""
    import io

    released = copy.deepcopy(schema_json(V1))  # schema_json's dict is shared: never mutate it
    released["fields"] = [f for f in released["fields"] if f["name"] != "gap"]
    assert len(released["fields"]) == len(schema_json(V1)["fields"]) - 1
    subject = f"{unique('contracts-gap')}-value"
    old_id = registry.register(subject, json.dumps(released))
    registry.set_compatibility("BACKWARD", subject)
    assert registry.is_compatible(subject, schema_text(V1)) is True
    new_id = registry.register(subject, schema_text(V1))
    assert new_id != old_id and len(registry.versions(subject)) == 2
    buf = io.BytesIO()
    old = {k: v for k, v in microbar().items() if k != "gap"}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(released), old)
    data = b"\x00" + old_id.to_bytes(4, "big") + buf.getvalue()
    rec = AvroDeserializer(registry, V1).decode(data)
    assert rec["gap"] is False and rec["trace_id"] == old["trace_id"]
