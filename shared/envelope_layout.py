"""The binary layout of ``torghut.Envelope`` (``schemas/avro/envelope.avsc``), described once.

Every hand-written encoder and reader of envelope bytes takes its layout from here: the
Python encoder (``forwarder.avro_writer``, which the router's Python path uses), the C
encoder (``forwarder/_fastroute.c``, whose union tags and tail ``forwarder.router`` passes to
``_fastroute.configure``) and the job's fast reader (``flink_job.envelope_reader``).

Layout: the head fields, the payload union (one record branch per channel), the trailer
(``is_final``, ``source``, the ``window`` union, ``trace_id``) and then ``TAIL``: the fields
added after ``trace_id``, which every writer here writes as their defaults (derived from the
schema, so adding such a field needs no encoder change; none today).

``check_schema`` is the one guard, run at start-up by the forwarder and the job: the
schema's parsing canonical form must have the fingerprint pinned below, and the schema
must match this description field by field (names and types); when it does not, the
message says where they disagree and which files follow that part of the layout
(``tests/unit/test_contracts_envelope_layout.py``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from itertools import zip_longest
from typing import Any

from shared.schemas import schema_json

SCHEMA_NAME = "torghut.Envelope"
#: sha256 of the parsing canonical form of the envelope.avsc this module describes
CANONICAL_SHA256 = "509ecccded97a77fea5c4b3e1e7187a235b35123461842658b431ead8d571361"

# (name, type): types as ``avro_type`` renders them
HEAD = (
    ("ingest_ts", "long"),
    ("event_ts", "long"),
    ("feed", "string"),
    ("channel", "string"),
    ("symbol", "string"),
    ("seq", "long"),
)
PAYLOAD_FIELD = "payload"
TRAILER = (
    ("is_final", "boolean"),
    ("source", "string"),
    ("window", "null|Window"),
    ("trace_id", "string"),
)
#: the Window branch of ``window``: set for bars
WINDOW = (
    ("size_ms", "long"),
    ("step_ms", "long"),
    ("start", "long/timestamp-micros"),
    ("end", "long/timestamp-micros"),
)
#: the payload union's branches in union order, each with its fields in order
PAYLOAD_BRANCHES: dict[str, tuple[tuple[str, str], ...]] = {
    "Trade": (
        ("id", "long"),
        ("exchange", "string"),
        ("price", "double"),
        ("size", "double"),
        ("conditions", "[string]"),
        ("tape", "string"),
    ),
    "Quote": (
        ("bid_exchange", "string"),
        ("bid_price", "double"),
        ("bid_size", "double"),
        ("ask_exchange", "string"),
        ("ask_price", "double"),
        ("ask_size", "double"),
        ("conditions", "[string]"),
        ("tape", "string"),
    ),
    "Bar": (
        ("open", "double"),
        ("high", "double"),
        ("low", "double"),
        ("close", "double"),
        ("volume", "double"),
        ("trade_count", "long"),
        ("vwap", "double"),
    ),
    "TradingStatus": (
        ("status_code", "string"),
        ("status_message", "string"),
        ("reason_code", "string"),
        ("reason_message", "string"),
        ("tape", "string"),
    ),
    "Luld": (
        ("limit_up_price", "double"),
        ("limit_down_price", "double"),
        ("indicator", "string"),
        ("tape", "string"),
    ),
    "Correction": (
        ("exchange", "string"),
        ("original_id", "long"),
        ("original_price", "double"),
        ("original_size", "double"),
        ("original_conditions", "[string]"),
        ("corrected_id", "long"),
        ("corrected_price", "double"),
        ("corrected_size", "double"),
        ("corrected_conditions", "[string]"),
        ("tape", "string"),
    ),
    "CancelError": (
        ("id", "long"),
        ("exchange", "string"),
        ("price", "double"),
        ("size", "double"),
        ("action", "string"),
        ("tape", "string"),
    ),
    "ForwarderStatus": (
        ("event", "string"),
        ("reason", "string"),
        ("attempt", "int"),
        ("code", "null|int"),
        ("detail", "string"),
    ),
}
#: the payload's type in ENVELOPE: a union of records, compared branch by branch
PAYLOAD_UNION = "union"
ENVELOPE = (*HEAD, (PAYLOAD_FIELD, PAYLOAD_UNION), *TRAILER)
BRANCH_INDEX = {name: i for i, name in enumerate(PAYLOAD_BRANCHES)}
TRADE_BRANCH, QUOTE_BRANCH = BRANCH_INDEX["Trade"], BRANCH_INDEX["Quote"]
#: the window union's branches (TRAILER: null|Window)
WINDOW_NULL, WINDOW_RECORD = 0, 1

# The files that follow each part of the layout field by field (named when it changes).
#: write or read every envelope field in order
FIELD_ORDER_FILES = (
    "forwarder/avro_writer.py (envelope), forwarder/_fastroute.c (encode), "
    "flink_job/envelope_reader.py (_read_fast)"
)
#: name the envelope and payload fields (dicts for fastavro)
FIELD_NAME_FILES = "forwarder/envelope.py (to_envelope), flink_job/decode.py"
#: encode or read a payload branch's fields: every branch, and Trade and Quote
BRANCH_FILES = "forwarder/avro_writer.py (BODIES)"
TRADE_QUOTE_FILES = "forwarder/_fastroute.c (encode), flink_job/envelope_reader.py (_read_fast)"
#: write the Window record of bars
WINDOW_FILES = "forwarder/avro_writer.py (trailer)"


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def union_tag(index: int) -> bytes:
    """A union branch index as Avro writes it (a long)."""
    return _zigzag(index)


def branch_tag(branch: str) -> bytes:
    """The payload union's tag of ``branch`` (a record name of ``PAYLOAD_BRANCHES``)."""
    return union_tag(BRANCH_INDEX[branch])


def avro_type(t: Any) -> str:
    """A field type as this description writes it: ``long``, ``[string]`` (array),
    ``null|int`` (union), ``Window`` (record, by short name), ``long/timestamp-micros``."""
    if isinstance(t, str):
        return t.rsplit(".", 1)[-1]
    if isinstance(t, list):
        return "|".join(avro_type(b) for b in t)
    kind = t["type"]
    if "logicalType" in t:
        return f"{avro_type(kind)}/{t['logicalType']}"
    if kind == "array":
        return f"[{avro_type(t['items'])}]"
    if kind == "map":
        return f"{{{avro_type(t['values'])}}}"
    if kind in ("record", "enum", "fixed"):
        return str(t["name"]).rsplit(".", 1)[-1]
    return avro_type(kind)


def _default_bytes(ftype: Any, default: Any) -> bytes:
    """The Avro bytes of a field's default (the types a defaulted tail field may have)."""
    if isinstance(ftype, list):  # a union's default is of its first branch
        return union_tag(0) + _default_bytes(ftype[0], default)
    if isinstance(ftype, dict):
        if ftype["type"] in ("array", "map") and not default:
            return b"\x00"  # no blocks
        if ftype["type"] in ("array", "map", "record", "enum", "fixed"):
            raise ValueError(avro_type(ftype))
        ftype = ftype["type"]  # a primitive, maybe with a logical type
    if ftype == "null":
        return b""
    if ftype == "boolean":
        return b"\x01" if default else b"\x00"
    if ftype in ("int", "long"):
        return _zigzag(int(default))
    if ftype in ("float", "double"):
        return struct.pack("<f" if ftype == "float" else "<d", float(default))
    if ftype == "string":
        s = str(default).encode()
        return _zigzag(len(s)) + s
    raise ValueError(avro_type(ftype))


def tail_of(schema: Mapping[str, Any]) -> tuple[tuple[str, ...], bytes, list[str]]:
    """The fields after trace_id, the bytes of their defaults (what the writers write after
    every trace id), and what stops writing them (no default, a type the writers do not
    write defaults of; the bytes are then empty)."""
    fields = schema["fields"]
    names = [f["name"] for f in fields]
    if "trace_id" not in names:
        return (), b"", []
    after = fields[names.index("trace_id") + 1 :]
    out, problems = b"", []
    for f in after:
        if "default" not in f:
            problems.append(
                f"field {f['name']} after trace_id has no default (the writers write the "
                "defaults of the fields after trace_id)"
            )
            continue
        try:
            out += _default_bytes(f["type"], f["default"])
        except ValueError as exc:
            problems.append(
                f"field {f['name']} after trace_id: the writers write defaults of null, "
                f"boolean, int, long, float, double, string and empty arrays or maps, not {exc}"
            )
    return tuple(f["name"] for f in after), (b"" if problems else out), problems


#: the fields after trace_id and their defaults' bytes, written after every trace id
TAIL_FIELDS, TAIL, _ = tail_of(schema_json(SCHEMA_NAME))


def canonical_sha256(schema: Any) -> str:
    """sha256 of a schema's parsing canonical form (its JSON or fastavro's parsed form)."""
    import fastavro

    return hashlib.sha256(fastavro.schema.to_parsing_canonical_form(schema).encode()).hexdigest()


def _fields(fields: Any) -> tuple[tuple[str, str], ...]:
    return tuple((f["name"], avro_type(f["type"])) for f in fields)


def _envelope_fields(fields: Any) -> tuple[tuple[str, str], ...]:
    """Like ``_fields``; a union-typed payload is ``PAYLOAD_UNION`` (its branches are
    compared on their own)."""
    return tuple(
        (f["name"], PAYLOAD_UNION)
        if f["name"] == PAYLOAD_FIELD and isinstance(f["type"], list)
        else (f["name"], avro_type(f["type"]))
        for f in fields
    )


def _show(x: Any) -> str:
    return ":".join(x) if isinstance(x, tuple) else str(x)


def _compare(what: str, got: tuple[Any, ...], want: tuple[Any, ...], files: str) -> list[str]:
    """The first place ``got`` (the schema) and ``want`` (this description) differ."""
    if got == want:
        return []
    at = next(i for i, (g, w) in enumerate(zip_longest(got, want)) if g != w)
    have = _show(got[at]) if at < len(got) else "nothing"
    described = _show(want[at]) if at < len(want) else "nothing"
    return [
        f"{what} #{at + 1} is {have} in the schema, {described} in shared/envelope_layout.py "
        f"(to update with it: {files})"
    ]


def differences(schema: Mapping[str, Any]) -> list[str]:
    """Where the schema (its JSON or parsed form) and this description disagree, each with
    the files that follow that part of the layout; empty when they agree."""
    fields = schema["fields"]
    tail_names, _, tail_problems = tail_of(schema)
    got = _envelope_fields(fields[: len(fields) - len(tail_names)])
    out = _compare("envelope field", got, ENVELOPE, f"{FIELD_ORDER_FILES}; {FIELD_NAME_FILES}")
    payload: list[Any] = next((f["type"] for f in fields if f["name"] == PAYLOAD_FIELD), [])
    branches = {avro_type(b): _fields(b.get("fields", ())) for b in payload if isinstance(b, dict)}
    out += _compare(
        "payload branch",
        tuple(branches),
        tuple(PAYLOAD_BRANCHES),
        "nothing else, every encoder and reader takes the union tags from PAYLOAD_BRANCHES",
    )
    for name, want in PAYLOAD_BRANCHES.items():
        files = BRANCH_FILES + (f", {TRADE_QUOTE_FILES}" if name in ("Trade", "Quote") else "")
        if name in branches:
            out += _compare(f"{name} field", branches[name], want, f"{files}; {FIELD_NAME_FILES}")
    window: list[Any] = next((f["type"] for f in fields if f["name"] == "window"), [])
    record = next((b for b in window if isinstance(b, dict)), None)
    if record is not None:
        out += _compare("Window field", _fields(record["fields"]), WINDOW, WINDOW_FILES)
    return out + tail_problems


def check_schema(schema: Any) -> None:
    """The one guard: refuse to run on an Envelope schema this layout does not describe."""
    got = canonical_sha256(schema)
    diffs = differences(schema)
    if got != CANONICAL_SHA256 or diffs:
        tail = tail_of(schema)[0]
        if not diffs:
            diffs = ["the layout matches field by field"]
            if tail:
                diffs[0] += f" (after trace_id, written as their defaults: {', '.join(tail)})"
        raise RuntimeError(
            "schemas/avro/envelope.avsc is not the one shared/envelope_layout.py describes: "
            + "; ".join(diffs)
            + f"; update shared/envelope_layout.py, then its CANONICAL_SHA256 to {got!r}"
        )
