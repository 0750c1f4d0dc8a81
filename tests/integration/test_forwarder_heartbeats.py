"""Event-time heartbeats against the real local Kafka: after the first trades, every
partition of both raw topics gets heartbeats (no key, no value, the header) whose
timestamps increase, run on while the feed is quiet and never pass the wall clock; they
never count as envelopes (acks, queue depth, /readyz)."""

from __future__ import annotations

import time

import msgpack
import pytest
from confluent_kafka import Consumer, TopicPartition

from forwarder.app import ForwarderThread
from forwarder.metrics import CHANNEL_INDEX
from forwarder.sequence import _watermarks
from shared.heartbeat import HEADER, HEADER_VALUE, is_heartbeat
from shared.topics import QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.forwarder import fwd_settings, symbols_for
from tests.support.hostile import HostileServer
from tests.support.kafka import QUIET

pytestmark = pytest.mark.integration
S = 10**9
MS = 10**6
LAG_S = 0.5


def _consumer(stack) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-heartbeats-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "logger": QUIET,
        }
    )


def _ends(stack) -> dict[tuple[str, int], int]:
    """The end offset of every partition of both raw topics."""
    c = _consumer(stack)
    try:
        out = {}
        for topic in (TRADES.name, QUOTES.name):
            for p in c.list_topics(topic, timeout=10).topics[topic].partitions:
                # retried while a fresh topic's partition has no leader yet
                tp = TopicPartition(topic, p)
                out[(topic, p)] = _watermarks(c, tp, time.monotonic() + 30)[1]
        return out
    finally:
        c.close()


def _read_since(stack, start: dict[tuple[str, int], int]) -> dict[tuple[str, int], list]:
    """Every record after ``start`` up to the current end, per partition, with the wall
    time (ms) it was read at."""
    end = _ends(stack)
    c = _consumer(stack)
    out: dict[tuple[str, int], list] = {tp: [] for tp in start}
    try:
        c.assign([TopicPartition(t, p, start[(t, p)]) for t, p in start])
        left = {tp for tp in start if end[tp] > start[tp]}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for m in c.consume(500, timeout=0.5):
                if m.error():
                    continue
                tp = (m.topic(), m.partition())
                out[tp].append((m, time.time_ns() // MS))
                if m.offset() + 1 >= end[tp]:
                    left.discard(tp)
        assert not left, f"partitions not read to their end: {sorted(left)}"
    finally:
        c.close()
    return out


def test_heartbeats_reach_every_raw_partition_and_run_on_while_the_feed_is_quiet(stack, unique):
    server = HostileServer()
    settings = fwd_settings(
        stack,
        f"ws://127.0.0.1:{server.port}/v2/iex",
        heartbeat_interval_s=0.1,
        heartbeat_lag_s=LAG_S,
        heartbeat_quiet_s=0.3,
    )
    sym_t, sym_q = symbols_for(unique)
    start = _ends(stack)
    with ForwarderThread(settings) as fwd:
        hb = fwd.forwarder._heartbeats
        assert hb is not None
        wait_for(lambda: fwd.forwarder.ready()[0], 20, "the forwarder to subscribe")
        # subscribed and ticking, but no trade or quote yet: no heartbeat
        wait_for(lambda: hb.ticks >= 5 and len(hb.partitions) == 2, 20, "five heartbeat ticks")
        assert fwd.metrics.heartbeats == 0
        # a feed 10 s behind the wall clock: 40 trades and a quote, then nothing
        t0 = time.time_ns() - 10 * S
        trades = [
            {"T": "t", "S": sym_t, "i": k, "x": "V", "p": 10.0, "s": 1, "c": ["@"], "z": "C"}
            | {"t": msgpack.Timestamp.from_unix_nano(t0 + k * MS)}
            for k in range(40)
        ]
        quote = {"T": "q", "S": sym_q, "bx": "V", "bp": 9.9, "bs": 1, "ax": "Q", "ap": 10.1}
        quote |= {"as": 2, "t": msgpack.Timestamp.from_unix_nano(t0 + 40 * MS)}
        server.send(msgpack.packb([*trades, quote], datetime=False))
        top_ms = (t0 + 40 * MS - int(LAG_S * S)) // MS  # the clock at the last event - lag
        # quiet feed: the clock runs on from the last event with wall time, 2 s and more
        wait_for(lambda: fwd.metrics.heartbeat_ms >= top_ms + 2000, 20, "heartbeats to run on")
        m = fwd.metrics
        assert (
            m.messages[CHANNEL_INDEX["trades"]] == 40 and m.messages[CHANNEL_INDEX["quotes"]] == 1
        )
        # heartbeats keep flowing through the same producer: only envelopes must be settled
        assert fwd.forwarder.ready()[0]
        assert m.heartbeat_errors == 0
        done_ms = time.time_ns() // MS
    records = _read_since(stack, start)
    assert {tp[0] for tp in records} == {TRADES.name, QUOTES.name}
    envelopes = 0
    for tp, got in records.items():
        beats = [(msg, read_ms) for msg, read_ms in got if is_heartbeat(msg.value(), msg.headers())]
        envelopes += len(got) - len(beats)
        assert len(beats) >= 3, f"{tp}: {len(beats)} heartbeats"
        stamps = [msg.timestamp()[1] for msg, _ in beats]
        assert stamps == sorted(set(stamps)), f"{tp}: heartbeat timestamps not increasing"
        # from the highest event time produced (minus the lag), running on while quiet
        assert stamps[0] >= top_ms and stamps[-1] >= top_ms + 2000
        for msg, read_ms in beats:
            assert msg.key() is None and msg.value() is None
            assert msg.headers() == [(HEADER, HEADER_VALUE)]
            # never ahead of the wall clock: clock <= wall at production, before it was read
            assert msg.timestamp()[1] + LAG_S * 1000 <= read_ms
        assert stamps[-1] <= done_ms
        # the same producer as the envelopes: a heartbeat carrying their time follows them
        last_envelope = max(
            (msg.offset() for msg, _ in got if not is_heartbeat(msg.value(), msg.headers())),
            default=-1,
        )
        assert all(msg.offset() > last_envelope for msg, _ in beats), f"{tp}: overtaken"
    # the trades and the quote, nothing else but, on a log that already held market data,
    # the restart gap markers of its symbols written at the subscription (forwarder/gaps.py)
    assert envelopes == 41 + fwd.metrics.gap_markers
