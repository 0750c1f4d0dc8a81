"""Contracts: every record type in schemas/avro round-trips through Avro unchanged.

Decisions these tests pin down (see docs/topics-and-schemas.md):
- epoch-nanosecond fields are plain `long`s and come back as the same int, to the nanosecond;
- `window.start`/`window.end` are `timestamp-micros`: writers pass int microseconds (or a
  datetime), readers get a UTC `datetime` with the same microsecond;
- NaN is carried bit-for-bit as NaN and is never turned into null (nor null into NaN): "no
  value yet" is null by contract, so producers map a kernel's NaN to None before encoding.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schemas import all_schemas, parsed, schema_json
from tests.support.records import (
    PAYLOADS,
    SIGNAL_INDICATORS,
    decoded_window,
    envelope,
    microbar,
    micros,
    signal,
    ta_status,
    window,
)

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def roundtrip(full_name: str, record: dict[str, Any], **read_opts: Any) -> Any:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed(full_name), record)
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, parsed(full_name), None, **read_opts)
    assert buf.tell() == len(buf.getvalue()), "reader must consume exactly what the writer wrote"
    return out


# one example per Envelope payload branch: (branch name, channel, payload)


def test_every_envelope_payload_variant_is_covered_by_these_tests() -> None:
    branches = [b["name"] for b in schema_json("torghut.Envelope")["fields"][6]["type"]]
    assert sorted(f"torghut.{b}" for b in branches) == sorted(name for name, _, _ in PAYLOADS)


@pytest.mark.parametrize(("branch", "channel", "payload"), PAYLOADS, ids=[p[0] for p in PAYLOADS])
def test_envelope_round_trips_each_payload_variant_into_its_own_union_branch(
    branch: str, channel: str, payload: dict[str, Any]
) -> None:
    rec = envelope(channel, payload)
    assert roundtrip("torghut.Envelope", rec) == rec
    # a plain dict must be written as the branch it was meant to be, not a look-alike record
    tagged = roundtrip("torghut.Envelope", rec, return_record_name=True)
    assert tagged["payload"] == (branch, payload)


def test_envelope_with_a_bar_window_returns_the_window_as_utc_datetimes() -> None:
    w = window(start_us=1_767_364_200_000_000, size_ms=60_000)
    rec = envelope("bars", PAYLOADS[2][2], window=w, is_final=False)
    out = roundtrip("torghut.Envelope", rec)
    assert out["window"] == decoded_window(w)
    assert out["is_final"] is False


def test_envelope_optional_fields_take_their_defaults_when_absent() -> None:
    rec = envelope("trades", {"id": 1, "exchange": "V", "price": 1.0, "size": 1.0})
    for name in ("is_final", "source", "window", "trace_id"):
        del rec[name]
    out = roundtrip("torghut.Envelope", rec)
    assert (out["is_final"], out["source"], out["window"], out["trace_id"]) == (
        True,
        "alpaca",
        None,
        "",
    )
    assert out["payload"]["conditions"] == [] and out["payload"]["tape"] == ""


def test_forwarder_status_code_may_be_null() -> None:
    rec = envelope(
        "status",
        {"event": "connected", "reason": "", "attempt": 0, "code": None, "detail": ""},
        symbol="",
    )
    assert roundtrip("torghut.Envelope", rec)["payload"]["code"] is None


def test_microbar_round_trips_with_nanosecond_timestamps_exact() -> None:
    rec = microbar()
    assert roundtrip("torghut.ta.MicroBar", rec) == {**rec, "window": decoded_window(rec["window"])}


def test_signal_round_trips_with_every_indicator_null_during_warm_up() -> None:
    rec = signal()
    out = roundtrip("torghut.ta.Signal", rec)
    assert all(out[name] is None for name in SIGNAL_INDICATORS)
    assert out == {**rec, "window": decoded_window(rec["window"])}


def test_signal_round_trips_with_every_indicator_set_including_zero_and_negative() -> None:
    values = {name: (i - 7) * 1.25 for i, name in enumerate(SIGNAL_INDICATORS)}
    values["rsi14"] = 0.0  # RSI of a flat series is 0, which is a value, not null
    rec = signal(**values, is_final=True)
    out = roundtrip("torghut.ta.Signal", rec)
    assert {k: out[k] for k in SIGNAL_INDICATORS} == values
    assert out["rsi14"] == 0.0 and out["rsi14"] is not None


def test_signal_indicator_defaults_to_null_when_the_field_is_omitted() -> None:
    rec = signal()
    for name in SIGNAL_INDICATORS:
        del rec[name]
    out = roundtrip("torghut.ta.Signal", rec)
    assert all(out[name] is None for name in SIGNAL_INDICATORS)


def test_ta_status_round_trips_with_per_symbol_counters_and_null_lags() -> None:
    rec = ta_status()
    assert roundtrip("torghut.ta.TaStatus", rec) == rec
    idle = ta_status(watermark_ts=None, watermark_lag_ms=None, source_lag_ms=None, symbols=[])
    assert roundtrip("torghut.ta.TaStatus", idle) == idle


def test_nan_is_carried_as_nan_and_never_becomes_null() -> None:
    """Decision: the Avro layer is transparent for IEEE-754 values. NaN and +/-inf survive
    bit-for-bit; null stays null. Producers emit null (not NaN) for "no value yet"."""
    rec = signal(ema12=math.nan, ema26=math.inf, macd=-math.inf, rsi14=None)
    out = roundtrip("torghut.ta.Signal", rec)
    assert math.isnan(out["ema12"]) and out["ema12"] is not None
    assert struct.pack(">d", out["ema12"]) == struct.pack(">d", math.nan)
    assert (out["ema26"], out["macd"], out["rsi14"]) == (math.inf, -math.inf, None)
    bar = roundtrip("torghut.ta.MicroBar", microbar(vwap=math.nan))
    assert math.isnan(bar["vwap"])


def test_window_is_one_shared_named_type_identical_in_every_schema() -> None:
    """`torghut.Window` is defined inline in three files; a drift would make two different
    types with one full name (a registry and every Avro parser reject that)."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == "Window" and node.get("type") == "record":
                found.append({k: v for k, v in node.items() if k != "namespace"})
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for schema in all_schemas().values():
        walk(schema)
    assert len(found) == 3
    assert all(w == found[0] for w in found)
    assert [f["name"] for f in found[0]["fields"]] == ["size_ms", "step_ms", "start", "end"]


# ---- generated values -------------------------------------------------------------------

symbols = st.text(st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=24)
near_2_62 = st.integers(2**62 - 10_000, 2**62 + 10_000)
ns = st.one_of(near_2_62, st.integers(0, I64_MAX), st.just(I64_MAX))
longs = st.integers(I64_MIN, I64_MAX)
finite = st.floats(allow_nan=False, allow_infinity=False)
sizes = st.one_of(
    st.floats(0, 1e9, allow_nan=False, exclude_min=True),
    st.sampled_from([1e-9, 0.0001, 0.5, 1.0 / 3.0, 2.5e-7]),
)
# timestamp-micros decodes to datetime: stay inside datetime's range (years 1970..9998)
window_start = st.integers(0, 253_000_000_000_000_000)
nullable = st.one_of(st.none(), finite)


@st.composite
def windows(draw: st.DrawFn) -> dict[str, int]:
    return window(
        start_us=draw(window_start), size_ms=draw(st.sampled_from([1000, 60_000, 86_400_000]))
    )


@settings(max_examples=200, deadline=None)
@given(
    symbol=symbols,
    w=windows(),
    prices=st.lists(finite, min_size=5, max_size=5),
    volume=sizes,
    trade_count=st.integers(0, I64_MAX),
    version=st.integers(0, I64_MAX),
    event_ts=ns,
    ingest_ts=ns,
    emit_ts=ns,
    seq=longs,
    is_final=st.booleans(),
    trace_id=symbols,
    gap=st.booleans(),
    price_basis=st.sampled_from([0, 1, 2]),
)
def test_generated_microbars_round_trip_exactly(
    symbol,
    w,
    prices,
    volume,
    trade_count,
    version,
    event_ts,
    ingest_ts,
    emit_ts,
    seq,
    is_final,
    trace_id,
    gap,
    price_basis,
) -> None:
    o, h, lo, c, vwap = prices
    rec = microbar(
        symbol=symbol,
        window=w,
        open=o,
        high=h,
        low=lo,
        close=c,
        vwap=vwap,
        volume=volume,
        trade_count=trade_count,
        version=version,
        event_ts=event_ts,
        ingest_ts=ingest_ts,
        emit_ts=emit_ts,
        seq=seq,
        is_final=is_final,
        trace_id=trace_id,
        gap=gap,
        price_basis=price_basis,
    )
    assert roundtrip("torghut.ta.MicroBar", rec) == {**rec, "window": decoded_window(w)}


@settings(max_examples=200, deadline=None)
@given(
    symbol=symbols,
    w=windows(),
    close=finite,
    indicators=st.lists(nullable, min_size=len(SIGNAL_INDICATORS), max_size=len(SIGNAL_INDICATORS)),
    event_ts=ns,
    version=st.integers(0, I64_MAX),
    is_final=st.booleans(),
)
def test_generated_signals_round_trip_with_any_mix_of_nulls_and_values(
    symbol, w, close, indicators, event_ts, version, is_final
) -> None:
    rec = signal(
        symbol=symbol,
        window=w,
        close=close,
        event_ts=event_ts,
        version=version,
        is_final=is_final,
        **dict(zip(SIGNAL_INDICATORS, indicators, strict=True)),
    )
    assert roundtrip("torghut.ta.Signal", rec) == {**rec, "window": decoded_window(w)}


@settings(max_examples=200, deadline=None)
@given(
    symbol=symbols,
    trade_id=longs,
    price=finite,
    size=sizes,
    event_ts=ns,
    ingest_ts=ns,
    seq=st.integers(0, I64_MAX),
    conditions=st.lists(symbols, max_size=4),
)
def test_generated_trade_envelopes_keep_fractional_sizes_and_nanoseconds(
    symbol, trade_id, price, size, event_ts, ingest_ts, seq, conditions
) -> None:
    payload = {
        "id": trade_id,
        "exchange": "V",
        "price": price,
        "size": size,
        "conditions": conditions,
        "tape": "C",
    }
    rec = envelope(
        "trades", payload, symbol=symbol, event_ts=event_ts, ingest_ts=ingest_ts, seq=seq
    )
    out = roundtrip("torghut.Envelope", rec)
    assert out == rec
    assert out["payload"]["size"] == size  # a crypto size like 0.0123 is never truncated


@settings(max_examples=100, deadline=None)
@given(
    job=symbols,
    subtask=st.integers(-(2**31), 2**31 - 1),
    lag=st.one_of(st.none(), longs),
    counters=st.lists(st.integers(0, I64_MAX), min_size=6, max_size=6),
    per_symbol=st.lists(st.tuples(symbols, ns), max_size=5),
)
def test_generated_ta_status_round_trips(job, subtask, lag, counters, per_symbol) -> None:
    names = (
        "records_in",
        "records_out",
        "late_events",
        "out_of_order_events",
        "seq_gaps",
        "rejected_records",
    )
    rec = ta_status(
        job=job,
        subtask=subtask,
        watermark_lag_ms=lag,
        **dict(zip(names, counters, strict=True)),
        symbols=[
            {
                "symbol": s,
                "last_event_ts": t,
                "late_events": 0,
                "out_of_order_events": 1,
                "seq_gaps": 2,
            }
            for s, t in per_symbol
        ],
    )
    assert roundtrip("torghut.ta.TaStatus", rec) == rec


@settings(max_examples=100, deadline=None)
@given(start=window_start)
def test_window_accepts_a_datetime_or_int_micros_and_both_encode_identically(start: int) -> None:
    as_int = microbar(window=window(start_us=start))
    as_dt = microbar(
        window={**as_int["window"], "start": micros(start), "end": micros(as_int["window"]["end"])}
    )
    a, b = io.BytesIO(), io.BytesIO()
    fastavro.schemaless_writer(a, parsed("torghut.ta.MicroBar"), as_int)
    fastavro.schemaless_writer(b, parsed("torghut.ta.MicroBar"), as_dt)
    assert a.getvalue() == b.getvalue()
