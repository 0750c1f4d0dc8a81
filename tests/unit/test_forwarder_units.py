"""Forwarder pure logic: dedup, envelope mapping, Avro bytes, backoff, seq, settings."""

from __future__ import annotations

import io
import random
import time

import fastavro
import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.avro_writer import EnvelopeWriter, write_long
from forwarder.dedup import DedupCache
from forwarder.envelope import (
    CHANNEL_BY_TYPE,
    dedup_key,
    event_ts_ns,
    parse_rfc3339_ns,
    to_envelope,
)
from forwarder.exceptions import InvalidMessageError
from forwarder.reconnect import ReconnectPolicy
from forwarder.sequence import SequenceNumbers, seq_floor
from forwarder.settings import ForwarderSettings
from shared.schemas import parsed
from torghut.sim import SyntheticConfig, SyntheticMarket
from torghut.sim.protocol import encode_json, encode_msgpack
from torghut.sim.timestamps import format_rfc3339_ns

ENVELOPE = parsed("torghut.Envelope")
T0 = 1_709_303_400_123_456_789  # 2024-03-01T14:30:00.123456789Z


def _market_messages() -> list[dict]:
    cfg = SyntheticConfig(
        symbols=("AAPL", "SPY"),
        seed=3,
        trades_per_sec=20,
        quotes_per_sec=5,
        correction_rate=0.05,
        cancel_error_rate=0.05,
        out_of_order_rate=0.05,
        late_rate=0.05,
    )
    m = SyntheticMarket(cfg, T0, 3)
    msgs = m.advance(T0 + 130 * 10**9) + m.finish()
    assert {x["T"] for x in msgs} == set(CHANNEL_BY_TYPE)
    return msgs


MSGS = _market_messages()


# --- dedup -----------------------------------------------------------------------------


def test_dedup_cache_drops_a_key_seen_within_the_horizon():
    c = DedupCache(100, 10.0)
    assert not c.seen(("AAPL", 1), 0.0)
    assert c.seen(("AAPL", 1), 5.0)
    assert not c.seen(("AAPL", 2), 5.0)


def test_dedup_cache_forgets_keys_older_than_the_horizon():
    c = DedupCache(100, 10.0)
    c.seen("a", 0.0)
    c.seen("b", 10.5)  # expires "a"
    assert "a" not in c
    assert not c.seen("a", 11.0)


def test_dedup_cache_memory_is_bounded_by_the_entry_cap():
    c = DedupCache(1000, 1e9)
    for i in range(50_000):
        c.seen(i, float(i))
    assert len(c) == 1000
    assert 49_999 in c and 48_999 not in c


def test_dedup_keys_follow_the_message_type():
    t = {"T": "t", "S": "AAPL", "i": 5, "t": 1}
    assert dedup_key(t) == ("AAPL", 5)
    assert dedup_key({"T": "q", "S": "AAPL", "t": 9}) == ("AAPL", 9)
    u1 = {"T": "u", "S": "A", "t": 60, "n": 3, "v": 10.0}
    u2 = {**u1, "n": 4, "v": 12.0}
    assert dedup_key(u1) != dedup_key(u2)  # a real update is not a duplicate


# --- timestamps and envelope mapping ---------------------------------------------------


@given(st.integers(min_value=1, max_value=4_102_444_800 * 10**9))
def test_rfc3339_and_msgpack_timestamps_parse_to_exact_nanoseconds(ns):
    assert parse_rfc3339_ns(format_rfc3339_ns(ns)) == ns
    packed = msgpack.packb(msgpack.Timestamp.from_unix_nano(ns))
    assert event_ts_ns(msgpack.unpackb(packed, timestamp=2)) == ns
    assert event_ts_ns(msgpack.unpackb(packed)) == ns  # a Timestamp object too


def test_rfc3339_offsets_and_bad_strings():
    assert parse_rfc3339_ns("2024-03-01T15:30:00.5+01:00") == parse_rfc3339_ns(
        "2024-03-01T14:30:00.5Z"
    )
    for bad in ("2024-03-01", "2024-13-01T00:00:00Z", "yesterday", "2024-03-01T14:30:00.Z"):
        with pytest.raises(InvalidMessageError):
            parse_rfc3339_ns(bad)


@pytest.mark.parametrize("kind", sorted(CHANNEL_BY_TYPE))
def test_every_message_type_maps_to_an_envelope_from_json_and_msgpack(kind):
    msg = next(m for m in MSGS if m["T"] == kind)
    from_json = orjson.loads(encode_json([msg]))[0]
    from_mp = msgpack.unpackb(encode_msgpack([msg]), timestamp=2, use_list=False)[0]
    envs = [
        to_envelope(m, feed="iex", seq=7, ingest_ts=T0, trace_id="x") for m in (from_json, from_mp)
    ]
    assert envs[0] == envs[1]
    env = envs[0]
    assert env["event_ts"] == msg["t"]
    assert env["channel"] == CHANNEL_BY_TYPE[kind]
    assert env["symbol"] == msg["S"]
    assert env["is_final"] is (kind != "u")
    if kind in "bud":
        size = 86_400_000 if kind == "d" else 60_000
        assert env["window"] == {
            "size_ms": size,
            "step_ms": size,
            "start": msg["t"] // 1000,
            "end": msg["t"] // 1000 + size * 1000,
        }
    else:
        assert env["window"] is None
    fastavro.validation.validate(env, ENVELOPE, raise_errors=True)


def test_trade_sizes_stay_fractional_and_ids_exact():
    msg = {
        "T": "t",
        "S": "BTC",
        "i": 2**53 + 1,
        "x": "V",
        "p": 1.5,
        "s": 0.000123,
        "c": ["@"],
        "z": "C",
        "t": T0,
    }
    env = to_envelope(msg, feed="iex", seq=1, ingest_ts=T0, trace_id="")
    assert env["payload"][1]["size"] == 0.000123
    assert env["payload"][1]["id"] == 2**53 + 1


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"T": "zz", "S": "A", "t": T0}, "unknown_type"),
        ({"T": "t", "S": "A", "i": "1", "x": "V", "p": 1.0, "s": 1, "t": T0}, "invalid_field"),
        ({"T": "t", "S": "A", "i": 1, "x": "V", "p": 1.0, "s": 1, "t": "noon"}, "bad_timestamp"),
        ({"T": "q", "S": 5, "t": T0}, "invalid_field"),
    ],
)
def test_invalid_messages_raise_with_a_reason(bad, reason):
    with pytest.raises(InvalidMessageError) as info:
        to_envelope(bad, feed="iex", seq=1, ingest_ts=T0, trace_id="")
    assert info.value.reason == reason


# --- the fast writer equals fastavro ---------------------------------------------------


def _fastavro_bytes(writer: EnvelopeWriter, env: dict) -> bytes:
    buf = io.BytesIO()
    buf.write(writer.header)
    fastavro.schemaless_writer(buf, ENVELOPE, env)
    return buf.getvalue()


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_envelope_writer_bytes_equal_fastavro_for_every_message(wire):
    w = EnvelopeWriter(42, "iex")
    frame = encode_json(MSGS) if wire == "json" else encode_msgpack(MSGS)
    decoded = (
        orjson.loads(frame)
        if wire == "json"
        else msgpack.unpackb(frame, timestamp=2, use_list=False)
    )
    for i, m in enumerate(decoded):
        env = to_envelope(m, feed="iex", seq=10**15 + i, ingest_ts=T0 + i, trace_id=f"ab{i:x}")
        assert w.encode(
            m, seq=env["seq"], ingest_ts=env["ingest_ts"], trace_id=env["trace_id"]
        ) == _fastavro_bytes(w, env)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_write_long_is_avro_zigzag(n):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert write_long(n) == buf.getvalue()


def test_write_long_refuses_values_beyond_64_bits():
    with pytest.raises(OverflowError):
        write_long(2**63)


# --- backoff ---------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    p = ReconnectPolicy(0.5, 30.0, 60.0, rng=random.Random(1))
    assert [p.ceiling(a) for a in (1, 2, 3, 4, 10, 100)] == [0.5, 1, 2, 4, 30, 30]
    for attempt in range(1, 20):
        d = p.delay(attempt)
        assert p.ceiling(attempt) / 2 <= d <= p.ceiling(attempt)
    assert len({round(p.delay(5), 6) for _ in range(20)}) > 1  # jittered


def test_backoff_after_406_is_at_least_the_conflict_delay():
    p = ReconnectPolicy(0.5, 30.0, 60.0, rng=random.Random(2))
    assert all(30.0 <= p.delay(1, conflict=True) <= 60.0 for _ in range(50))


# --- seq -------------------------------------------------------------------------------


def test_seq_counts_per_channel_and_symbol_from_the_floor():
    s = SequenceNumbers(1000)
    assert [s.next(("t", "A")) for _ in range(3)] == [1000, 1001, 1002]
    b = s.next(("t", "B"))
    assert b >= 1000
    assert s.next(("t", "B")) == b + 1
    assert s.next(("t", "A")) == 1003


def test_seq_floor_is_wall_clock_or_above_what_kafka_holds():
    assert seq_floor(5_000, None) == 5_000
    assert seq_floor(5_000, 9_000) == 9_001
    assert seq_floor(10_000, 9_000) == 10_000


def test_seq_stays_monotonic_when_the_key_table_is_dropped():
    s = SequenceNumbers(0, max_keys=10)
    last: dict = {}
    for i in range(1000):
        key = ("t", f"S{i % 37}")
        v = s.next(key)
        assert v > last.get(key, -1)
        last[key] = v
    assert len(s) <= 10


def test_seq_survives_a_restart_without_regression():
    first = SequenceNumbers(seq_floor(time.time_ns() // 1000, None))
    issued = [first.next(("t", "A")) for _ in range(10_000)]
    restarted = SequenceNumbers(seq_floor(time.time_ns() // 1000, max(issued)))
    assert restarted.next(("t", "A")) > issued[-1]


# --- settings --------------------------------------------------------------------------


def test_settings_read_env_comma_lists_and_derive_the_feed(monkeypatch):
    monkeypatch.setenv("TORGHUT_FWD_SYMBOLS", "AAPL, MSFT")
    monkeypatch.setenv("TORGHUT_FWD_CHANNELS", "trades,quotes")
    monkeypatch.setenv("TORGHUT_FWD_ALPACA_URL", "wss://stream.data.alpaca.markets/v2/sip")
    s = ForwarderSettings()
    assert s.symbols == ("AAPL", "MSFT")
    assert s.channels == ("trades", "quotes")
    assert s.feed == "sip"
    assert s.linger_ms == 20
    assert s.subscription() == {"trades": ["AAPL", "MSFT"], "quotes": ["AAPL", "MSFT"]}


def test_settings_reject_unknown_channels_and_underivable_feeds():
    with pytest.raises(ValueError, match="unknown channels"):
        ForwarderSettings(channels="trades,ticks")
    with pytest.raises(ValueError, match="TORGHUT_FWD_FEED"):
        ForwarderSettings(alpaca_url="wss://example.com/stream")


def test_secrets_never_appear_in_repr_or_errors(monkeypatch):
    secret = "s3cr3t-value-123"
    monkeypatch.setenv("TORGHUT_FWD_ALPACA_SECRET_KEY", secret)
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SASL_PASSWORD", secret)
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SSL_CA_LOCATION", "/etc/torghut/kafka-ca/ca.crt")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SASL_USERNAME", "u")
    s = ForwarderSettings()
    assert secret not in repr(s) and secret not in str(s) and secret not in s.model_dump_json()
    assert s.kafka_config()["sasl.password"] == secret
    monkeypatch.setenv("TORGHUT_FWD_LINGER_MS", "-1")
    with pytest.raises(ValueError) as info:
        ForwarderSettings()
    assert secret not in str(info.value)


def test_tune_gc_sets_the_forwarder_threshold_and_returns_the_previous_one():
    import gc

    from forwarder.app import GC_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        assert tune_gc() == before
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 0  # start-up objects are out of collection
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
