"""Contracts: the Confluent wire format (magic 0, 4-byte big-endian schema id, schemaless Avro)
and the typed errors a consumer gets for frames it cannot decode.

The registry here is an in-memory stand-in with the two calls the serde makes; the real
registry is exercised in tests/integration/test_contracts_registry.py.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schemas import parsed, schema_text
from shared.serde import (
    MAGIC,
    AvroDeserializer,
    AvroSerializer,
    BadMagicByteError,
    CorruptRecordError,
    SerdeError,
    TrailingBytesError,
    TruncatedFrameError,
    UnknownSchemaIdError,
)
from shared.topics import ALL_TOPICS, TA_BARS_1S, TA_SIGNALS, TA_STATUS, TRADES
from tests.support.records import envelope, microbar, signal, ta_status
from tests.support.registry import InMemoryRegistry

SAMPLES = [
    (
        TRADES,
        envelope(
            "trades",
            {"id": 1, "exchange": "V", "price": 1.5, "size": 0.25, "conditions": [], "tape": "C"},
        ),
    ),
    (TA_BARS_1S, microbar()),
    (TA_SIGNALS, signal(ema12=1.0)),
    (TA_STATUS, ta_status()),
]


@pytest.fixture
def registry() -> InMemoryRegistry:
    return InMemoryRegistry()


def bar_frame(registry: InMemoryRegistry) -> bytes:
    return AvroSerializer(registry, TA_BARS_1S).encode(microbar())  # type: ignore[arg-type]


@pytest.mark.parametrize(("topic", "record"), SAMPLES, ids=[t.name for t, _ in SAMPLES])
def test_frame_is_magic_zero_then_big_endian_id_then_the_schemaless_avro_body(
    registry, topic, record
) -> None:
    ser = AvroSerializer(registry, topic)
    frame = ser.encode(record)
    assert frame[0] == MAGIC == 0
    assert struct.unpack(">I", frame[1:5])[0] == ser.schema_id
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed(topic.value_schema), record)
    assert frame[5:] == body.getvalue()
    assert registry.subjects[topic.subject] == [ser.schema_id]
    assert registry.by_id[ser.schema_id] == schema_text(topic.value_schema)


@pytest.mark.parametrize(("topic", "record"), SAMPLES, ids=[t.name for t, _ in SAMPLES])
def test_frame_round_trips_through_the_deserializer_with_and_without_a_reader_schema(
    registry, topic, record
) -> None:
    frame = AvroSerializer(registry, topic).encode(record)
    plain = AvroDeserializer(registry).decode(frame, topic.name, 0, 0)
    resolved = AvroDeserializer(registry, topic.value_schema).decode(frame, topic.name, 0, 0)
    assert plain == resolved
    assert {k: v for k, v in plain.items() if k != "window"} == {
        k: v for k, v in record.items() if k != "window"
    }


def test_every_catalog_topic_can_build_a_serializer_under_its_topic_name_subject(registry) -> None:
    for t in ALL_TOPICS:
        AvroSerializer(registry, t)
    assert sorted(registry.subjects) == sorted(f"{t.name}-value" for t in ALL_TOPICS)


def test_writer_schemas_are_fetched_once_per_id(registry) -> None:
    frame = bar_frame(registry)
    de = AvroDeserializer(registry)
    for offset in range(5):
        de.decode(frame, "ta.bars.1s.v1", 0, offset)
    assert registry.lookups == 1


@settings(max_examples=200, deadline=None)
@given(schema_id=st.integers(0, 2**32 - 1))
def test_any_unsigned_32_bit_schema_id_is_framed_big_endian(schema_id: int) -> None:
    reg = InMemoryRegistry(first_id=schema_id)
    frame = AvroSerializer(reg, TA_BARS_1S).encode(microbar())  # type: ignore[arg-type]
    assert frame[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    assert AvroDeserializer(reg).decode(frame)["symbol"] == "AAPL"


# ---- typed errors ------------------------------------------------------------------------


def assert_names_the_record(exc: SerdeError) -> None:
    assert (exc.topic, exc.partition, exc.offset) == ("ta.bars.1s.v1", 3, 1234)
    assert "topic ta.bars.1s.v1, partition 3, offset 1234" in str(exc)


@pytest.mark.parametrize("magic", [1, 0x7F, 0x80, 0xFF])
def test_wrong_magic_byte_raises_bad_magic_byte_naming_topic_partition_offset(
    registry, magic
) -> None:
    frame = bytes([magic]) + bar_frame(registry)[1:]
    with pytest.raises(BadMagicByteError) as err:
        AvroDeserializer(registry).decode(frame, "ta.bars.1s.v1", 3, 1234)
    assert f"magic byte {magic}, expected 0" in str(err.value)
    assert_names_the_record(err.value)


def test_plain_json_on_an_avro_topic_is_a_bad_magic_byte(registry) -> None:
    with pytest.raises(BadMagicByteError):
        AvroDeserializer(registry).decode(b'{"symbol": "AAPL"}', "ta.bars.1s.v1", 3, 1234)


@pytest.mark.parametrize("length", [0, 1, 4])
def test_frame_shorter_than_the_header_raises_truncated_frame(registry, length) -> None:
    with pytest.raises(TruncatedFrameError) as err:
        AvroDeserializer(registry).decode(bar_frame(registry)[:length], "ta.bars.1s.v1", 3, 1234)
    assert "shorter than the 5-byte header" in str(err.value)
    assert_names_the_record(err.value)


def test_every_cut_inside_the_body_raises_truncated_frame(registry) -> None:
    frame = bar_frame(registry)
    de = AvroDeserializer(registry)
    for cut in range(5, len(frame)):
        with pytest.raises(TruncatedFrameError) as err:
            de.decode(frame[:cut], "ta.bars.1s.v1", 3, 1234)
        assert_names_the_record(err.value)


@pytest.mark.parametrize("extra", [b"\x00", b"garbage", bytes(64)])
def test_trailing_bytes_after_the_record_raise_trailing_bytes(registry, extra) -> None:
    with pytest.raises(TrailingBytesError) as err:
        AvroDeserializer(registry).decode(bar_frame(registry) + extra, "ta.bars.1s.v1", 3, 1234)
    assert f"{len(extra)} unread bytes" in str(err.value)
    assert_names_the_record(err.value)


def test_unknown_schema_id_raises_unknown_schema_id_naming_the_id_and_the_record(registry) -> None:
    frame = b"\x00" + (999_999).to_bytes(4, "big") + bar_frame(registry)[5:]
    with pytest.raises(UnknownSchemaIdError) as err:
        AvroDeserializer(registry).decode(frame, "ta.bars.1s.v1", 3, 1234)
    assert "unknown schema id 999999" in str(err.value)
    assert_names_the_record(err.value)


def test_a_registry_outage_is_not_reported_as_an_unknown_id() -> None:
    """Only a 404 means "unknown id" (count and skip); a failing registry must not make a
    consumer drop good records, so its error propagates unchanged."""

    class Down(InMemoryRegistry):
        def schema_by_id(self, schema_id: int) -> str:
            raise ConnectionError("registry unreachable")

    reg = Down()
    frame = bar_frame(reg)
    with pytest.raises(ConnectionError):
        AvroDeserializer(reg).decode(frame, "ta.bars.1s.v1", 3, 1234)


def test_invalid_utf8_in_a_string_raises_corrupt_record(registry) -> None:
    frame = bytearray(bar_frame(registry))
    frame[6] = 0xFF  # first byte of the symbol "AAPL" (after the length varint at offset 5)
    with pytest.raises(CorruptRecordError) as err:
        AvroDeserializer(registry).decode(bytes(frame), "ta.bars.1s.v1", 3, 1234)
    assert_names_the_record(err.value)


def test_serde_errors_are_value_errors_with_their_fields(registry) -> None:
    for cls in (
        BadMagicByteError,
        TruncatedFrameError,
        TrailingBytesError,
        CorruptRecordError,
        UnknownSchemaIdError,
    ):
        assert issubclass(cls, SerdeError) and issubclass(cls, ValueError)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=120), which=st.sampled_from(SAMPLES))
def test_arbitrary_bytes_after_a_valid_header_decode_or_raise_a_serde_error_never_anything_else(
    body: bytes, which: tuple[Any, dict[str, Any]]
) -> None:
    reg = InMemoryRegistry()
    header = AvroSerializer(reg, which[0]).encode(which[1])[:5]  # type: ignore[arg-type]
    try:
        AvroDeserializer(reg).decode(header + body, which[0].name, 0, 7)
    except SerdeError as exc:
        assert exc.offset == 7
