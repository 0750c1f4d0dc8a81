"""The job's fast envelope reader returns exactly what the general (fastavro) path returns:
on generated trades and quotes, on every other payload type, on corrupted and truncated
bytes, on records of another writer schema, and for key/symbol mismatches."""

from __future__ import annotations

import io
import json
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_job.decode import REJECTED, REJECTED_KEY, decode_event
from flink_job.envelope_reader import EventReader
from shared.sale_conditions import trade_updates
from shared.schemas import schema_text
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import QUOTES, TRADES
from tests.support.records import PAYLOADS, envelope
from tests.support.registry import InMemoryRegistry

I64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=12)
FLOATS = st.floats()  # NaN and infinities too
US_TS = st.integers(0, 4_102_444_800_000_000)  # timestamp-micros up to 2100


def _setup() -> tuple[InMemoryRegistry, AvroDeserializer, EventReader]:
    reg = InMemoryRegistry()
    deser = AvroDeserializer(reg, "torghut.Envelope")  # type: ignore[arg-type]
    return reg, deser, EventReader(deser)


REG, DESER, READER = _setup()
TRADES_OUT = AvroSerializer(REG, TRADES)  # type: ignore[arg-type]
QUOTES_OUT = AvroSerializer(REG, QUOTES)  # type: ignore[arg-type]


def same(a: Any, b: Any) -> bool:
    """Tuple equality where NaN equals NaN (the decoded doubles carry NaN through)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _head(draw: Any) -> dict[str, Any]:
    return {
        "ingest_ts": draw(I64),
        "event_ts": draw(I64),
        "feed": draw(TEXT),
        "symbol": draw(st.text(min_size=1, max_size=8)),
        "seq": draw(I64),
        "is_final": draw(st.booleans()),
        "source": draw(TEXT),
        "window": draw(
            st.none()
            | st.fixed_dictionaries({"size_ms": I64, "step_ms": I64, "start": US_TS, "end": US_TS})
        ),
        "trace_id": draw(TEXT),
    }


@st.composite
def trades(draw: Any) -> dict[str, Any]:
    payload = {
        "id": draw(I64),
        "exchange": draw(TEXT),
        "price": draw(FLOATS),
        "size": draw(FLOATS),
        "conditions": draw(st.lists(TEXT, max_size=3)),
        "tape": draw(TEXT),
    }
    return {**_head(draw), "channel": "trades", "payload": payload}


@st.composite
def quotes(draw: Any) -> dict[str, Any]:
    payload = {
        "bid_exchange": draw(TEXT),
        "bid_price": draw(FLOATS),
        "bid_size": draw(FLOATS),
        "ask_exchange": draw(TEXT),
        "ask_price": draw(FLOATS),
        "ask_size": draw(FLOATS),
        "conditions": draw(st.lists(TEXT, max_size=3)),
        "tape": draw(TEXT),
    }
    return {**_head(draw), "channel": "quotes", "payload": payload}


def _encode(env: dict[str, Any]) -> bytes:
    return (TRADES_OUT if env["channel"] == "trades" else QUOTES_OUT).encode(env)


@settings(max_examples=400, deadline=None)
@given(env=trades() | quotes())
def test_fast_path_equals_fastavro_on_generated_trades_and_quotes(env: dict[str, Any]) -> None:
    data = _encode(env)
    fast = READER.read(data, env["symbol"])
    assert same(fast, decode_event(DESER, data, env["symbol"]))
    assert fast is not None and fast[0] in ("t", "q")
    assert fast[1:6] == (
        env["symbol"],
        env["event_ts"],
        env["seq"],
        env["ingest_ts"],
        env["trace_id"],
    )


@settings(max_examples=400, deadline=None)
@given(
    env=trades() | quotes(),
    cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=3),
    truncate=st.integers(0, 400),
)
def test_corrupted_and_truncated_records_get_the_general_paths_answer(
    env: dict[str, Any], cuts: list[tuple[int, int]], truncate: int
) -> None:
    data = bytearray(_encode(env))
    for pos, value in cuts:
        if 5 <= pos < len(data):  # keep the header: a bad header never takes the fast path
            data[pos] = value
    for blob in (bytes(data), bytes(data[: max(6, truncate)]), bytes(data) + b"\x00"):
        assert same(READER.read(blob, None), decode_event(DESER, blob, None))


@pytest.mark.parametrize(("branch", "channel", "payload"), PAYLOADS)
def test_every_other_payload_type_takes_the_general_path(
    branch: str, channel: str, payload: dict[str, Any]
) -> None:
    data = TRADES_OUT.encode(envelope(channel, (branch, payload)))
    assert READER.read(data, "AAPL") == decode_event(DESER, data, "AAPL")


def test_channel_and_payload_mismatch_is_rejected_not_a_crash() -> None:
    branch, channel, payload = PAYLOADS[0]
    assert channel == "trades"
    data = TRADES_OUT.encode(envelope("quotes", (branch, payload)))
    ev = READER.read(data, "AAPL")
    assert ev is not None and ev[0] == REJECTED and "payload of another type" in ev[6]
    assert ev == decode_event(DESER, data, "AAPL")


def test_key_must_be_the_envelope_symbol_and_a_missing_key_is_rejected() -> None:
    data = TRADES_OUT.encode(envelope("trades", (PAYLOADS[0][0], PAYLOADS[0][2])))
    ok = READER.read(data, "AAPL")
    assert ok is not None and ok[0] == "t"
    wrong = READER.read(data, "MSFT")
    assert wrong is not None and wrong[0] == REJECTED and "'MSFT'" in wrong[6]
    assert wrong == decode_event(DESER, data, "MSFT")
    missing = READER.read(data, REJECTED_KEY)
    assert missing is not None and missing[0] == REJECTED and "no Kafka key" in missing[6]


def test_records_of_another_writer_schema_are_resolved_by_the_general_path() -> None:
    newer = json.loads(schema_text("torghut.Envelope"))
    newer["fields"].append({"name": "venue_note", "type": "string", "default": ""})
    reg, deser, reader = _setup()
    schema_id = reg.register("torghut.trades.v1-value", json.dumps(newer))
    env = envelope("trades", (PAYLOADS[0][0], PAYLOADS[0][2]), venue_note="x")
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(newer), env)
    data = buf.getvalue()
    ev = reader.read(data, "AAPL")
    assert ev == decode_event(deser, data, "AAPL")
    p = PAYLOADS[0][2]
    assert (
        ev is not None
        and ev[0] == "t"
        and ev[6:]
        == (
            p["price"],
            p["size"],
            p["id"],
            trade_updates(p["tape"], tuple(p["conditions"])),
        )
    )
    assert reader._fast == {data[:5]: False}
