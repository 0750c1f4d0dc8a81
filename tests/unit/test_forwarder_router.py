"""The frame router and the per-frame ack accounting, without Kafka.

The router inlines the Avro encoding of trades and quotes: its bytes must equal
``EnvelopeWriter.encode`` (itself proven equal to fastavro) for every message type and
both wire formats, with seq per (channel, symbol), unique trace ids, dedup and counts.
"""

from __future__ import annotations

import io
import time
import types
from collections import Counter
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder.avro_writer import EnvelopeWriter
from forwarder.envelope import CHANNEL_BY_TYPE, to_envelope
from forwarder.exceptions import InvalidMessageError
from forwarder.metrics import CHANNEL_INDEX, LAG_BUCKETS_NS, TYPE_INDEX, ForwarderMetrics
from forwarder.producer import EnvelopeProducer, channel_of
from forwarder.settings import ForwarderSettings
from shared.schemas import parsed
from shared.topics import CHANNEL_TOPICS
from tests.support.router import (
    AFTER,
    BAR,
    FLOOR,
    MSGS,
    QUOTE,
    T0,
    TRADE,
    new_router,
    rejecting_router,
    wire_frames,
)

ENVELOPE = parsed("torghut.Envelope")


def _fastavro(header: bytes, env: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(header)
    fastavro.schemaless_writer(buf, ENVELOPE, env)
    return buf.getvalue()


@pytest.mark.parametrize("wire", ["json", "msgpack"])
def test_routed_bytes_equal_fastavro_with_seq_per_channel_and_symbol(wire):
    router, prod, metrics, seqs = new_router()
    writer = router.writer
    frames = wire_frames(wire, MSGS)
    ingests = []
    for i, frame in enumerate(frames):
        ingests.append(AFTER + i)
        router.route(frame, ingests[-1])
    flat = [(m, ingests[i]) for i, frame in enumerate(frames) for m in frame]
    assert len(prod.records) == len(flat)
    next_seq: dict[tuple[str, str], int] = {}
    tids = set()
    for (topic, value, key, ts_ms), (m, ingest) in zip(prod.records, flat, strict=True):
        kind = m["T"]
        channel = CHANNEL_BY_TYPE[kind]
        assert topic == CHANNEL_TOPICS[channel].name
        assert key == (b"iex" if kind in "sl" else m["S"].encode())
        env = fastavro.schemaless_reader(io.BytesIO(value[5:]), ENVELOPE, ENVELOPE)
        assert isinstance(env, dict)
        seq = env["seq"]
        k = (kind, m["S"])
        if k in next_seq:
            assert seq == next_seq[k]
        else:
            assert seq >= FLOOR
        next_seq[k] = seq + 1
        tids.add(env["trace_id"])
        assert ts_ms == env["event_ts"] // 1_000_000
        expect = to_envelope(m, feed="iex", seq=seq, ingest_ts=ingest, trace_id=env["trace_id"])
        assert value == _fastavro(writer.header, expect)
        assert value == writer.encode(m, seq=seq, ingest_ts=ingest, trace_id=env["trace_id"])
    assert len(tids) == len(flat)
    assert seqs.issued == len(flat)
    per_channel = Counter(CHANNEL_BY_TYPE[m["T"]] for m, _ in flat)
    for ch, n in per_channel.items():
        assert metrics.received[CHANNEL_INDEX[ch]] == n
    # tracked once per frame, with per-channel counts and event times
    assert [t[0] for t in prod.tracked] == [len(f) for f in frames]
    tracked = [sum(t[1][CHANNEL_INDEX[ch]] for t in prod.tracked) for ch in per_channel]
    assert tracked == list(per_channel.values())
    assert sum(len(t[2]) for t in prod.tracked) == len(flat)


def test_duplicates_are_dropped_across_and_within_frames():
    router, prod, metrics, _ = new_router()
    frame = wire_frames("msgpack", MSGS, size=len(MSGS))[0]
    router.route(frame, AFTER)
    n = len(prod.records)
    router.route(frame, AFTER + 1)
    router.route(frame + frame, AFTER + 2)
    assert len(prod.records) == n
    trades = sum(1 for m in MSGS if m["T"] == "t")
    assert metrics.dedup_dropped[TYPE_INDEX["t"]] == 3 * trades
    assert metrics.received[TYPE_INDEX["t"]] == 4 * trades


def test_the_memory_gauges_count_the_dedup_keys_per_family_and_the_symbol_slots():
    """``/metrics`` says what the forwarder's memory is made of: the keys each dedup family
    holds (distinct messages within the horizon) and the (type, symbol) slots."""
    router, _prod, metrics, _ = new_router()
    metrics.sizes = router.sizes
    frame = wire_frames("msgpack", MSGS, size=len(MSGS))[0]
    router.route(frame, AFTER)
    router.route(frame, AFTER + 1)  # duplicates: no new keys
    text = metrics.render().decode()
    trades = len({(m["S"], m["i"]) for m in MSGS if m["T"] == "t"})
    quotes = len({(m["S"], m["t"]) for m in MSGS if m["T"] == "q"})
    assert f'torghut_forwarder_dedup_entries{{family="trades"}} {float(trades)}' in text
    assert f'torghut_forwarder_dedup_entries{{family="quotes"}} {float(quotes)}' in text
    slots = len({(m["T"], m["S"]) for m in MSGS})
    assert f"torghut_forwarder_symbol_slots {float(slots)}" in text


def test_invalid_messages_are_rejected_and_the_rest_forwarded():
    rejects: list[tuple[str, Any]] = []
    router, prod, _, _ = new_router(rejects)
    good = {"T": "t", "S": "A", "i": 1, "x": "V", "p": 1.0, "s": 1, "c": ("@",), "z": "C", "t": T0}
    frame = (
        42,
        {"T": "zz", "S": "A", "t": T0},
        {**good, "i": "1"},
        {**good, "t": "noon"},
        {**good, "t": T0 + 3600 * 10**9},
        {**good, "S": 5},
        {**good, "S": ""},
        {"T": "q", "S": "A", "t": T0},
        {"T": "success", "msg": "x"},
        good,
    )
    router.route(frame, T0)
    assert [r for r, _ in rejects] == [
        "not_an_object",
        "unknown_type",
        "invalid_field",
        "bad_timestamp",
        "event_ts_in_future",
        "invalid_field",
        "invalid_field",
        "invalid_field",
    ]
    assert len(prod.records) == 1


def test_a_new_key_starts_above_every_seq_issued_and_the_table_is_bounded():
    router, prod, _, seqs = new_router()
    seqs.max_keys = 5
    last: dict[str, int] = {}
    good = {"T": "t", "x": "V", "p": 1.0, "s": 1, "z": "C", "t": T0}
    for i in range(200):
        frame = [{**good, "S": f"S{(i * 7 + j) % 13}", "i": i * 10 + j} for j in range(10)]
        router.route(frame, T0 + 1)
    for _, value, _key, _ in prod.records:
        env = fastavro.schemaless_reader(io.BytesIO(value[5:]), ENVELOPE, ENVELOPE)
        assert isinstance(env, dict)
        assert env["seq"] > last.get(env["symbol"], -1)
        last[env["symbol"]] = env["seq"]
    assert router._nslots <= 5


# --- ack accounting -----------------------------------------------------------------------


class _FakeKafka:
    def __init__(self) -> None:
        self.queued = 0

    def __len__(self) -> int:
        return self.queued

    def produce(self, *a: Any, **kw: Any) -> None:
        self.queued += 1

    def poll(self, timeout: float = 0) -> int:
        return 0


def _producer() -> tuple[EnvelopeProducer, _FakeKafka, ForwarderMetrics]:
    metrics = ForwarderMetrics()
    p = EnvelopeProducer(ForwarderSettings(kafka_bootstrap="127.0.0.1:1"), metrics)
    fake = _FakeKafka()
    p._producer = fake  # type: ignore[assignment]
    return p, fake, metrics


def test_frames_are_credited_only_when_all_their_envelopes_are_acked():
    p, kafka, metrics = _producer()
    t, q = CHANNEL_INDEX["trades"], CHANNEL_INDEX["quotes"]
    now = time.time_ns()
    kafka.queued = 5
    p.track(3, [3 if i == t else 0 for i in range(len(metrics.messages))], [now] * 3)
    p.track(2, [2 if i == q else 0 for i in range(len(metrics.messages))], [now - 10**9] * 2)
    assert p.settle() == 0
    kafka.queued = 3  # two acked: not the whole first frame
    assert p.settle() == 0 and metrics.acked_total == 0
    kafka.queued = 2
    assert p.settle() == 3 and metrics.messages[t] == 3 and metrics.messages[q] == 0
    kafka.queued = 0
    assert p.settle() == 2 and metrics.messages[q] == 2
    assert sum(metrics.lag_buckets) == 5
    # the two quotes were a second old: they land in the 1-2.5 s bucket
    assert metrics.lag_buckets[LAG_BUCKETS_NS.index(2_500_000_000)] == 2


def test_a_failed_delivery_is_retried_and_a_refused_one_is_never_counted_as_acked():
    p, kafka, metrics = _producer()
    t = CHANNEL_INDEX["trades"]
    writer = EnvelopeWriter(1, "iex")
    value = writer.encode(
        {"T": "t", "S": "A", "i": 1, "x": "V", "p": 1.0, "s": 1, "t": T0},
        seq=1,
        ingest_ts=T0,
        trace_id="x",
    )
    assert channel_of(value) == t

    class Err:
        def __init__(self, code: int) -> None:
            self._code = code

        def code(self) -> int:
            return self._code

        def fatal(self) -> bool:
            return False

    class Msg:
        def topic(self) -> str:
            return "torghut.trades.v1"

        def value(self) -> bytes:
            return value

        def key(self) -> bytes:
            return b"A"

        def timestamp(self) -> tuple[int, int]:
            return (1, T0 // 1_000_000)

    from confluent_kafka import KafkaError

    per_channel = [0] * len(metrics.messages)
    per_channel[t] = 4
    kafka.queued = 4
    p.track(4, per_channel, [T0] * 4)
    # one transient failure (re-produced), one refused for good
    kafka.queued = 2
    p._failed(Err(KafkaError._MSG_TIMED_OUT), Msg())  # type: ignore[arg-type]
    p._failed(Err(KafkaError.MSG_SIZE_TOO_LARGE), Msg())  # type: ignore[arg-type]
    kafka.queued = 0
    assert p.settle() == 0  # the retry is still outstanding
    assert p.retry_failed(now=1e12) == 1 and kafka.queued == 1
    assert p.settle() == 0
    kafka.queued = 0
    assert p.settle() == 4
    assert metrics.messages[t] == 3  # the refused one is settled but not acked
    assert metrics.produce_errors == 2 and metrics.frames_rejected["broker_refused"] == 1


@settings(max_examples=300, deadline=None)
@given(
    lags=st.lists(
        st.integers(-(10**9), 10**11) | st.sampled_from([0, *LAG_BUCKETS_NS]),
        min_size=1,
        max_size=60,
    )
)
def test_a_frame_spread_over_lag_buckets_counts_as_one_observation_per_envelope(lags):
    import forwarder.producer as producer_mod

    p, kafka, metrics = _producer()
    now = 1_800_000_000 * 10**9
    event_ts = [now - lag for lag in lags]
    per_channel = [0] * len(metrics.messages)
    per_channel[CHANNEL_INDEX["trades"]] = len(lags)
    kafka.queued = 0
    p.track(len(lags), per_channel, event_ts)
    real = producer_mod.time
    producer_mod.time = types.SimpleNamespace(time_ns=lambda: now, monotonic=time.monotonic)  # type: ignore[assignment]
    try:
        assert p.settle() == len(lags)
    finally:
        producer_mod.time = real
    ref = ForwarderMetrics()
    for e in event_ts:
        ref.observe_lag(now - e if now > e else 0)
    assert metrics.lag_buckets == ref.lag_buckets
    assert metrics.lag_sum_ns == ref.lag_sum_ns


# --- bad values and future event times ------------------------------------------------------

NAN, INF = float("nan"), float("inf")


def _route_one_bad_then_the_good(bad: dict[str, Any], good: dict[str, Any]) -> Any:
    """Route ``bad`` alone, check it consumed nothing, then ``good`` (same dedup key)."""
    router, prod, rejects, seqs = rejecting_router()
    n0 = router.trace_ids._n
    router.route([bad], T0 + 10**9)
    assert prod.records == [] and prod.tracked == []
    assert seqs.issued == 0 and router.trace_ids._n == n0  # no seq, no trace id
    assert all(not c.keys for c in router._caches)  # no dedup entry
    router.route([good], T0 + 10**9)
    assert len(prod.records) == 1  # the same key, now valid: forwarded
    return rejects


@pytest.mark.parametrize("p", [0, 0.0, -0.0, -0.01, -5, NAN, INF, -INF])
def test_a_trade_price_at_or_below_zero_or_non_finite_is_rejected_as_invalid_price(p):
    rejects = _route_one_bad_then_the_good({**TRADE, "p": p}, TRADE)
    assert rejects == [("invalid_price", f"p={p!r} (must be > 0, finite)")]


@pytest.mark.parametrize("s", [-1, -0.5, -5e-324, NAN, INF, -INF])
def test_a_negative_or_non_finite_trade_size_is_rejected_as_invalid_size(s):
    rejects = _route_one_bad_then_the_good({**TRADE, "s": s}, TRADE)
    assert rejects == [("invalid_size", f"s={s!r} (must be >= 0, finite)")]


def test_a_trade_with_a_bad_price_and_size_is_rejected_for_its_price():
    rejects = _route_one_bad_then_the_good({**TRADE, "p": NAN, "s": -1}, TRADE)
    assert [r for r, _ in rejects] == ["invalid_price"]


@pytest.mark.parametrize("field", ["bp", "ap"])
@pytest.mark.parametrize("v", [-0.01, -1, NAN, INF, -INF])
def test_a_negative_or_non_finite_quote_price_is_rejected_as_invalid_price(field, v):
    rejects = _route_one_bad_then_the_good({**QUOTE, field: v}, QUOTE)
    assert rejects == [("invalid_price", f"{field}={v!r} (must be >= 0, finite)")]


@pytest.mark.parametrize("field", ["bs", "as"])
@pytest.mark.parametrize("v", [-0.01, -1, NAN, INF, -INF])
def test_a_negative_or_non_finite_quote_size_is_rejected_as_invalid_size(field, v):
    rejects = _route_one_bad_then_the_good({**QUOTE, field: v}, QUOTE)
    assert rejects == [("invalid_size", f"{field}={v!r} (must be >= 0, finite)")]


def test_zero_trade_sizes_and_one_sided_quotes_are_forwarded():
    router, prod, rejects, _ = rejecting_router()
    one_sided = {**QUOTE, "bp": 0.0, "bs": 0, "t": T0 + 1}
    router.route([{**TRADE, "s": 0}, one_sided, {**QUOTE, "ap": 0, "as": -0.0}], T0 + 10**9)
    assert rejects == [] and len(prod.records) == 3


@pytest.mark.parametrize("kind", ["b", "u", "d"])
@pytest.mark.parametrize("field", ["o", "h", "l", "c"])
@pytest.mark.parametrize("v", [0.0, -1.0, NAN, INF])
def test_a_bar_price_at_or_below_zero_or_non_finite_is_rejected_as_invalid_price(kind, field, v):
    rejects = _route_one_bad_then_the_good({**BAR, "T": kind, field: v}, {**BAR, "T": kind})
    assert rejects == [("invalid_price", f"{field}={v!r} (must be > 0, finite)")]


def test_the_reference_writer_refuses_the_same_values():
    writer = EnvelopeWriter(42, "iex")
    for bad, reason in [
        ({**TRADE, "p": 0.0}, "invalid_price"),
        ({**TRADE, "s": NAN}, "invalid_size"),
        ({**QUOTE, "ap": -1}, "invalid_price"),
        ({**QUOTE, "as": INF}, "invalid_size"),
        ({**BAR, "l": -INF}, "invalid_price"),
    ]:
        with pytest.raises(InvalidMessageError) as info:
            writer.encode(bad, seq=1, ingest_ts=T0, trace_id="x")
        assert info.value.reason == reason


@pytest.mark.parametrize("kind", ["t", "q", "b"])
def test_an_event_time_3s_ahead_is_rejected_and_1s_ahead_forwarded_by_default(kind):
    """max_future_s defaults to 2 s (ForwarderSettings); old event times stay accepted."""
    msg = {"t": TRADE, "q": QUOTE, "b": BAR}[kind]
    ingest = T0 + 10**9
    router, prod, rejects, seqs = rejecting_router()
    router.route([{**msg, "t": ingest + 3 * 10**9}], ingest)
    assert [r for r, _ in rejects] == ["event_ts_in_future"]
    assert "3.000s ahead" in rejects[0][1] and "TORGHUT_FWD_MAX_FUTURE_S=2" in rejects[0][1]
    assert prod.records == [] and seqs.issued == 0
    router.route([{**msg, "t": ingest + 10**9}, {**msg, "t": 1_000_000_000, "i": 8}], ingest)
    assert [r[3] for r in prod.records] == [(ingest + 10**9) // 10**6, 1000]


def test_max_future_is_a_setting_handed_to_the_router():
    s = ForwarderSettings(max_future_s=0.5)
    router, prod, rejects, _ = rejecting_router(max_future_ns=round(s.max_future_s * 1e9))
    router.route([{**TRADE, "t": T0 + 10**9}], T0)
    assert [r for r, _ in rejects] == ["event_ts_in_future"] and prod.records == []
    assert ForwarderSettings().max_future_s == 2.0
    for bad in (-1, 3601):
        with pytest.raises(ValueError, match="max_future_s"):
            ForwarderSettings(max_future_s=bad)
