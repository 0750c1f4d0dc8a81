"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, then the
schemaless Avro body. Writer schemas come from the registry by id and are cached."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from typing import Any

import fastavro

from shared.registry import SchemaNotFoundError, SchemaRegistryClient
from shared.schemas import parsed, schema_text
from shared.topics import Topic

MAGIC = 0
_HEADER = struct.Struct(">BI")  # unsigned magic: 0xFF reads as 255, not -1


_OBJECT_AT = re.compile(r" (?:from|in) <[^>]* at 0x[0-9a-f]+>")


def _reason(exc: BaseException) -> str:
    """The decoder's complaint without object addresses, so the same input always gets the
    same message (they are logged, counted by reason and compared in tests)."""
    return f"{type(exc).__name__}: {_OBJECT_AT.sub('', str(exc))}"


class SerdeError(ValueError):
    """A record could not be decoded; names topic, partition and offset."""

    def __init__(
        self, reason: str, topic: str = "?", partition: int = -1, offset: int = -1
    ) -> None:
        super().__init__(f"{reason} (topic {topic}, partition {partition}, offset {offset})")
        self.reason, self.topic, self.partition, self.offset = reason, topic, partition, offset


class BadMagicByteError(SerdeError):
    """Not Confluent-framed Avro (first byte is not 0)."""


class TruncatedFrameError(SerdeError):
    """Shorter than the 5-byte header, or the body ends early."""


class TrailingBytesError(SerdeError):
    """The frame is longer than the record its header announces (bytes left after it)."""


class CorruptRecordError(SerdeError):
    """The body does not decode with its writer schema (bad UTF-8, out-of-range value, ...)."""


class UnknownSchemaIdError(SerdeError):
    """The registry has no schema with this id (a registry outage is not this error)."""


class AvroSerializer:
    """Encodes records of one topic with the catalog's schema, registered under `<topic>-value`."""

    def __init__(self, registry: SchemaRegistryClient, topic: Topic) -> None:
        self.topic = topic
        self._schema = parsed(topic.value_schema)
        self.schema_id = registry.register(topic.subject, schema_text(topic.value_schema))
        self._header = _HEADER.pack(MAGIC, self.schema_id)

    def encode(self, record: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self._header)
        fastavro.schemaless_writer(buf, self._schema, record)
        return buf.getvalue()


class AvroDeserializer:
    """Decodes Confluent-framed Avro, resolving writer schemas by id (cached).

    With a `reader_schema` (a full record name from schemas/avro), records written with an
    older or newer compatible schema are resolved to the reader's shape.
    """

    def __init__(self, registry: SchemaRegistryClient, reader_schema: str | None = None) -> None:
        self._registry = registry
        self._reader = parsed(reader_schema) if reader_schema else None
        self._reader_form = (
            fastavro.schema.to_parsing_canonical_form(self._reader) if self._reader else None
        )
        # schema id -> (writer schema, reader schema or None when they are the same)
        self._writers: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def _writer(self, schema_id: int, topic: str, partition: int, offset: int) -> tuple[Any, Any]:
        hit = self._writers.get(schema_id)
        if hit is not None:
            return hit
        try:
            text = self._registry.schema_by_id(schema_id)
        except SchemaNotFoundError as exc:
            raise UnknownSchemaIdError(
                f"unknown schema id {schema_id}: {exc}", topic, partition, offset
            ) from exc
        w = fastavro.parse_schema(json.loads(text))
        # schema resolution costs more than the decode itself: skip it when nothing differs
        same = self._reader_form == fastavro.schema.to_parsing_canonical_form(w)
        entry = (w, None if same else self._reader)
        with self._lock:
            self._writers[schema_id] = entry
        return entry

    def writer_is_reader(self, schema_id: int) -> bool:
        """True when records of `schema_id` are written with exactly the reader schema.

        Raises `UnknownSchemaIdError` for an id the registry does not know.
        """
        _, reader = self._writer(schema_id, "?", -1, -1)
        return self._reader is not None and reader is None

    def decode(
        self, data: bytes, topic: str = "?", partition: int = -1, offset: int = -1
    ) -> dict[str, Any]:
        if len(data) < 5:
            raise TruncatedFrameError(
                f"{len(data)} bytes, shorter than the 5-byte header", topic, partition, offset
            )
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadMagicByteError(f"magic byte {magic}, expected 0", topic, partition, offset)
        writer, reader = self._writer(schema_id, topic, partition, offset)
        buf = io.BytesIO(data)
        buf.seek(5)
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except (EOFError, StopIteration, IndexError, struct.error) as exc:
            raise TruncatedFrameError(
                f"Avro body ends early ({_reason(exc)})", topic, partition, offset
            ) from exc
        except (ValueError, OverflowError, TypeError) as exc:
            # corrupt bytes must surface as a SerdeError so consumers can count and skip them
            raise CorruptRecordError(
                f"Avro body does not decode ({_reason(exc)})", topic, partition, offset
            ) from exc
        if buf.tell() != len(data):
            # trailing garbage means the frame is not what the header claims
            raise TrailingBytesError(
                f"{len(data) - buf.tell()} unread bytes after the record", topic, partition, offset
            )
        if not isinstance(record, dict):
            raise CorruptRecordError(
                f"writer schema {schema_id} is not a record schema", topic, partition, offset
            )
        return record
