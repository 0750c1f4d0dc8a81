"""``shared/envelope_layout.py``: the one description of the Envelope's bytes and its guard.

``check_schema`` accepts the bundled ``envelope.avsc``; for a changed schema it names what
disagrees and the files that follow that part of the layout. A field added after
``trace_id`` with a default needs no encoder change: the Python writer, the router's
Python path and the C path all write its default (``TAIL``), and the bytes stay equal to
fastavro's encoding of ``forwarder.envelope.to_envelope`` under that schema (with the
bundled schema too: the same checks, no tail).
"""

from __future__ import annotations

import copy
import io
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import msgpack
import pytest

import flink_job.envelope_reader as envelope_reader
import forwarder.avro_writer as avro_writer
import forwarder.router as router_mod
from forwarder.envelope import to_envelope
from shared import envelope_layout as L
from shared.schemas import parsed, schema_json
from tests.support.records import PAYLOADS, envelope
from tests.support.router import AFTER, MSGS, new_router, wire_frames
from torghut.sim.protocol import encode_msgpack

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = schema_json(L.SCHEMA_NAME)


def test_the_bundled_schema_is_the_one_described():
    L.check_schema(BUNDLED)
    L.check_schema(parsed(L.SCHEMA_NAME))  # the job checks fastavro's parsed form
    assert L.differences(BUNDLED) == []
    assert L.canonical_sha256(BUNDLED) == L.CANONICAL_SHA256
    assert L.tail_of(BUNDLED) == (L.TAIL_FIELDS, L.TAIL, [])
    payload = next(f for f in BUNDLED["fields"] if f["name"] == L.PAYLOAD_FIELD)
    assert [b["name"] for b in payload["type"]] == list(L.BRANCH_INDEX)
    assert (L.TRADE_BRANCH, L.QUOTE_BRANCH) == (0, 1)


def test_every_file_the_messages_name_exists_and_has_what_they_name():
    named = (L.FIELD_ORDER_FILES, L.FIELD_NAME_FILES, L.BRANCH_FILES, L.TRADE_QUOTE_FILES)
    places = re.findall(r"([\w/]+\.(?:py|c))(?: \((\w+)\))?", " ".join((*named, L.WINDOW_FILES)))
    assert {p for p, _ in places} == {*CODE_FILES, *NAME_FILES}
    for path, symbol in places:
        assert symbol in (ROOT / path).read_text(), f"{path} has no {symbol}"


def test_the_contract_tests_records_have_every_envelope_field():
    # the third place a field added after trace_id needs (after envelope.avsc and
    # CANONICAL_SHA256): the contract tests compare whole records
    rec = envelope("trades", PAYLOADS[0][2])
    missing = [f["name"] for f in BUNDLED["fields"] if f["name"] not in rec]
    assert not missing, f"add {missing} to envelope() in tests/support/records.py"


# --- a changed schema: the guard names what and where -------------------------------------


def _fields(s: dict[str, Any]) -> list[dict[str, Any]]:
    return s["fields"]


def _branch(s: dict[str, Any], name: str) -> dict[str, Any]:
    payload = next(f for f in _fields(s) if f["name"] == "payload")
    return next(b for b in payload["type"] if b["name"] == name)


def _swap(items: list[Any], i: int, j: int) -> None:
    items[i], items[j] = items[j], items[i]


def _window(s: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in _fields(s) if f["name"] == "window")["type"][1]


CODE_FILES = ("forwarder/avro_writer.py", "forwarder/_fastroute.c", "flink_job/envelope_reader.py")
NAME_FILES = ("forwarder/envelope.py", "flink_job/decode.py")

MUTATIONS: list[tuple[str, Callable[[dict[str, Any]], None], str, tuple[str, ...]]] = [
    (
        "head fields reordered",
        lambda s: _swap(_fields(s), 0, 1),
        "envelope field #1 is event_ts:long in the schema, ingest_ts:long in",
        CODE_FILES + NAME_FILES,
    ),
    (
        "a field inserted before trace_id",
        lambda s: _fields(s).insert(10, {"name": "venue", "type": "string", "default": ""}),
        "envelope field #11 is venue:string in the schema, trace_id:string in",
        CODE_FILES + NAME_FILES,
    ),
    (
        "payload branches reordered",
        lambda s: _swap(next(f for f in _fields(s) if f["name"] == "payload")["type"], 0, 1),
        "payload branch #1 is Quote in the schema, Trade in",
        ("PAYLOAD_BRANCHES",),
    ),
    (
        "a Trade field renamed",
        lambda s: _branch(s, "Trade")["fields"][1].update(name="venue"),
        "Trade field #2 is venue:string in the schema, exchange:string in",
        CODE_FILES + NAME_FILES,
    ),
    (
        "a Trade field's type changed",
        lambda s: _branch(s, "Trade")["fields"][3].update(type="long"),
        "Trade field #4 is size:long in the schema, size:double in",
        CODE_FILES + NAME_FILES,
    ),
    (
        "a Quote field added",
        lambda s: _branch(s, "Quote")["fields"].append({"name": "nbbo", "type": "boolean"}),
        "Quote field #9 is nbbo:boolean in the schema, nothing in",
        CODE_FILES + NAME_FILES,
    ),
    (
        "a Bar field removed",
        lambda s: _branch(s, "Bar")["fields"].pop(),
        "Bar field #7 is nothing in the schema, vwap:double in",
        ("forwarder/avro_writer.py (BODIES)", *NAME_FILES),
    ),
    (
        "a Window field renamed",
        lambda s: _window(s)["fields"][0].update(name="size"),
        "Window field #1 is size:long in the schema, size_ms:long in",
        ("forwarder/avro_writer.py (trailer)",),
    ),
    (
        "a field after trace_id without a default",
        lambda s: _fields(s).append({"name": "venue", "type": "string"}),
        "field venue after trace_id has no default",
        (),
    ),
    (
        "a field after trace_id of a type the writers do not write defaults of",
        lambda s: _fields(s).append({"name": "px", "type": "bytes", "default": ""}),
        "field px after trace_id: the writers write defaults of null",
        (),
    ),
]


@pytest.mark.parametrize(
    "mutate,what,files", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS]
)
def test_a_changed_schema_is_refused_with_what_disagrees_and_the_files_to_update(
    mutate, what, files
):
    changed = copy.deepcopy(BUNDLED)
    mutate(changed)
    with pytest.raises(RuntimeError) as info:
        L.check_schema(changed)
    message = str(info.value)
    assert what in message
    for f in files:
        assert f in message
    if "payload branch" in what:  # the union tags come from the description alone
        assert "forwarder/_fastroute.c" not in message
    if "Bar" in what:  # only the Python writer encodes bars
        assert "forwarder/_fastroute.c" not in message
    new_hash = L.canonical_sha256(changed)
    assert message.endswith(f"then its CANONICAL_SHA256 to {new_hash!r}")
    assert L.differences(fastavro.parse_schema(changed)) == L.differences(changed)


def test_a_change_the_description_does_not_see_is_refused_by_the_fingerprint():
    changed = copy.deepcopy(BUNDLED)
    changed["namespace"] = "torghut.v2"  # types are described by their short names
    assert L.differences(changed) == []
    with pytest.raises(RuntimeError, match="the layout matches field by field"):
        L.check_schema(changed)


# --- a field added after trace_id: every encoder writes its default -------------------------

WITH_TAIL = copy.deepcopy(BUNDLED)
WITH_TAIL["fields"] += [
    {"name": "test_note", "type": "string", "default": "n/a"},
    {"name": "test_revision", "type": "int", "default": 3},
    {"name": "test_audit", "type": ["null", "string"], "default": None},
    {"name": "test_tags", "type": {"type": "array", "items": "string"}, "default": []},
    {"name": "test_weight", "type": "double", "default": 0.5},
]
TAIL_DEFAULTS = {f["name"]: f["default"] for f in WITH_TAIL["fields"][len(BUNDLED["fields"]) :]}


def test_fields_after_trace_id_with_defaults_are_tail_bytes_not_differences():
    assert L.differences(WITH_TAIL) == []
    names, tail, problems = L.tail_of(WITH_TAIL)
    assert names == (*L.TAIL_FIELDS, *TAIL_DEFAULTS) and problems == []
    added = b"\x06n/a" + b"\x06" + b"\x00" + b"\x00" + struct.pack("<d", 0.5)
    assert tail == L.TAIL + added
    with pytest.raises(RuntimeError) as info:
        L.check_schema(WITH_TAIL)
    assert "the layout matches field by field" in str(info.value)
    assert "written as their defaults: " in str(info.value)
    assert "test_note, test_revision, test_audit, test_tags, test_weight)" in str(info.value)


@pytest.fixture(params=["bundled", "with a tail"])
def layout(request, monkeypatch):
    """The schema, and every encoder and the fast reader set to its tail as they would be
    had envelope.avsc had it at start-up (shared.envelope_layout.TAIL)."""
    schema = BUNDLED if request.param == "bundled" else WITH_TAIL
    _, tail, _ = L.tail_of(schema)
    monkeypatch.setattr(avro_writer, "TAIL", tail)
    monkeypatch.setattr(envelope_reader, "_TAIL", tail)
    router_mod.configure_native(tail)
    yield fastavro.parse_schema(schema)
    router_mod.configure_native()


def _expected(header: bytes, value: bytes, m: dict[str, Any], ingest: int, schema: Any) -> bytes:
    """fastavro's bytes of ``to_envelope`` for ``m`` with the seq and trace id ``value``
    carries (fastavro writes the defaults of fields the record leaves out)."""
    env = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, schema)
    assert isinstance(env, dict)
    for name, default in TAIL_DEFAULTS.items():
        assert env.get(name, default) == default
    rec = to_envelope(m, feed="iex", seq=env["seq"], ingest_ts=ingest, trace_id=env["trace_id"])
    buf = io.BytesIO(header)
    buf.seek(len(header))
    fastavro.schemaless_writer(buf, schema, rec)
    return buf.getvalue()


def test_the_writer_the_router_and_the_c_path_write_what_fastavro_writes(layout):
    schema = layout
    # the Python writer
    router, prod, _, _ = new_router()
    writer = router.writer
    for i, m in enumerate(wire_frames("msgpack", MSGS, size=len(MSGS))[0]):
        value = writer.encode(m, seq=10**15 + i, ingest_ts=AFTER, trace_id=f"ab{i:x}")
        assert value == _expected(writer.header, value, m, AFTER, schema)
    # the router's Python path (every message type), then the C path (trades and quotes;
    # the rest of each frame through the Python path)
    raws = [encode_msgpack(MSGS[i : i + 97]) for i in range(0, len(MSGS), 97)]
    frames = [msgpack.unpackb(raw, timestamp=2, use_list=False) for raw in raws]
    flat = [(m, AFTER + j) for j, frame in enumerate(frames) for m in frame]
    for path in ("python", "native"):
        router, prod, _, _ = new_router()
        for j, (raw, frame) in enumerate(zip(raws, frames, strict=True)):
            if path == "python":
                router.route(frame, AFTER + j)
            else:
                assert router.route_raw(raw, AFTER + j)
        assert len(prod.records) == len(flat)
        for (_, value, _, _), (m, ingest) in zip(prod.records, flat, strict=True):
            assert value == _expected(writer.header, value, m, ingest, schema), (path, m)
            if m["T"] in "tq":  # the job's fast reader takes them, tail and all
                assert envelope_reader._read_fast(value) is not None


def test_the_c_path_took_the_trades_and_quotes(layout):
    """The native path encoded these itself (nothing went through Python's loop)."""
    router, prod, _, _ = new_router()
    router._route = None  # type: ignore[assignment,method-assign]
    assert router.route_raw(encode_msgpack([m for m in MSGS if m["T"] in "tq"][:50]), AFTER)
    assert len(prod.records) == 50
