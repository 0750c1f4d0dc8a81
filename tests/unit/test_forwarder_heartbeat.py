"""The event-time clock and the heartbeat writer (forwarder/heartbeat.py), without Kafka."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import msgpack
import pytest
from confluent_kafka import KafkaError

from forwarder.avro_writer import EnvelopeWriter
from forwarder.envelope import CHANNEL_BY_TYPE
from forwarder.heartbeat import EventClock, HeartbeatWriter
from forwarder.metrics import ForwarderMetrics
from forwarder.router import NATIVE, EnvelopeRouter, TraceIds
from forwarder.sequence import SequenceNumbers
from forwarder.settings import ForwarderSettings
from shared.heartbeat import HEADER, HEADER_VALUE, is_heartbeat
from shared.topics import CHANNEL_TOPICS, QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.heartbeat import FakeKafka, heartbeat_writer

S = 10**9
E0 = 1_709_303_400 * S  # an event time
WALL = E0 + 5 * S  # wall clock in these tests (unless a test says otherwise)


# --- EventClock -----------------------------------------------------------------------------


def test_the_clock_has_no_value_before_the_first_trade_or_quote():
    clock = EventClock(quiet_s=1.0)
    assert not clock.started
    assert clock.now_ns(100.0, WALL) is None
    assert clock.now_ns(10_000.0, WALL) is None  # however long the wait: no wall-clock time


def test_the_clock_is_the_highest_event_time_produced_and_never_moves_back():
    clock = EventClock(quiet_s=1.0)
    clock.observe(E0, 10.0)
    assert clock.now_ns(10.0, WALL) == E0
    clock.observe(E0 - 3 * S, 10.5)  # an older (late) trade: the clock stays
    assert clock.now_ns(10.6, WALL) == E0
    clock.observe(E0 + S, 10.7)
    assert clock.now_ns(10.8, WALL) == E0 + S


def test_a_quiet_feed_runs_the_clock_on_with_monotonic_time_from_the_highest_event():
    clock = EventClock(quiet_s=1.0)
    clock.observe(E0, 10.0)
    clock.observe(E0 - S, 10.5)  # the last trade produced, older than the highest
    # 0.9 s since the last trade: not quiet yet
    assert clock.now_ns(11.4, WALL) == E0
    # quiet for 1 s: highest event + time since it was produced (1.5 s)
    assert clock.now_ns(11.5, WALL) == E0 + int(1.5 * S)
    assert clock.now_ns(12.0, WALL) == E0 + 2 * S


def test_the_run_on_clock_is_capped_at_the_wall_clock_and_never_moves_back():
    clock = EventClock(quiet_s=1.0)
    clock.observe(E0, 10.0)
    assert clock.now_ns(20.0, E0 + 3 * S) == E0 + 3 * S  # 10 s quiet, but wall is 3 s on
    assert clock.now_ns(21.0, E0 + 2 * S) == E0 + 3 * S  # the wall clock stepped back
    # trades again, with event times below the clock: it stays where it was
    clock.observe(E0 + S, 21.5)
    assert clock.now_ns(21.6, E0 + 4 * S) == E0 + 3 * S
    # data ahead of the wall clock (within max_future_s) moves it: only the run-on is capped
    clock.observe(E0 + 6 * S, 22.0)
    assert clock.now_ns(22.1, E0 + 4 * S) == E0 + 6 * S


def test_a_replay_of_an_old_recording_never_gets_wall_clock_heartbeats():
    clock = EventClock(quiet_s=0.5)
    old = E0 - 86_400 * S * 365  # a year ago
    clock.observe(old, 100.0)
    assert clock.now_ns(160.0, WALL) == old + 60 * S  # a minute later: a minute on


def test_quiet_must_be_positive():
    with pytest.raises(ValueError, match="TORGHUT_FWD_HEARTBEAT_QUIET_S"):
        EventClock(quiet_s=0)


# --- HeartbeatWriter ------------------------------------------------------------------------


def test_heartbeats_go_to_every_partition_of_both_raw_topics_with_clock_minus_lag():
    hb, clock, kafka, metrics = heartbeat_writer()
    assert hb.tick(10.0, WALL) == 0 and kafka.records == []  # no trade yet: nothing
    clock.observe(E0 + 123_456_789, 10.0)
    assert hb.tick(10.1, WALL) == 5
    ts = (E0 + 123_456_789 - 2 * S) // 1_000_000
    assert sorted((r["topic"], r["partition"]) for r in kafka.records) == sorted(
        [(TRADES.name, p) for p in range(3)] + [(QUOTES.name, p) for p in range(2)]
    )
    for r in kafka.records:
        assert r["value"] is None and r["key"] is None and r["timestamp"] == ts
        assert r["headers"] == [(HEADER, HEADER_VALUE)]
        assert is_heartbeat(r["value"], r["headers"])
    assert metrics.heartbeats == 5 and metrics.heartbeat_ms == ts


def test_a_heartbeat_is_sent_only_when_its_timestamp_moved_forward():
    hb, clock, kafka, _ = heartbeat_writer()
    clock.observe(E0, 10.0)
    assert hb.tick(10.1, WALL) == 5
    assert hb.tick(10.2, WALL) == 0  # same clock (not quiet yet)
    clock.observe(E0 + 500_000, 10.3)  # 0.5 ms later: the same millisecond
    assert hb.tick(10.4, WALL) == 0
    assert hb.tick(12.0, WALL) == 5  # quiet: the clock ran on from the highest event
    ran_on = E0 + 500_000 + int((12.0 - 10.3) * 1e9)
    stamps = [r["timestamp"] for r in kafka.records]
    assert stamps == [(E0 - 2 * S) // 10**6] * 5 + [(ran_on - 2 * S) // 10**6] * 5


def test_a_topic_without_metadata_is_skipped_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, "forwarder.heartbeat")
    hb, clock, kafka, _ = heartbeat_writer({TRADES.name: 2, QUOTES.name: None})
    hb.refresh_partitions()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert QUOTES.name in caplog.records[0].message
    assert hb.refresh_due(0.0)  # retried on the next tick
    clock.observe(E0, 10.0)
    assert hb.tick(10.1, WALL) == 2
    assert {r["topic"] for r in kafka.records} == {TRADES.name}
    kafka.partitions[QUOTES.name] = 4  # created meanwhile
    hb.refresh_partitions()
    assert hb.tick(12.0, WALL) == 6


def test_a_failed_heartbeat_is_counted_and_never_re_produced():
    hb, clock, kafka, metrics = heartbeat_writer()
    clock.observe(E0, 10.0)
    hb.tick(10.1, WALL)
    msg = SimpleNamespace(topic=lambda: TRADES.name, partition=lambda: 1)
    hb._delivered(KafkaError(KafkaError._MSG_TIMED_OUT), msg)
    hb._delivered(None, msg)  # an ack (only with error-only reports off): nothing to do
    assert metrics.heartbeat_errors == 1
    assert hb.tick(10.2, WALL) == 0 and len(kafka.records) == 5
    assert "torghut_forwarder_heartbeat_errors_total 1.0" in metrics.render().decode()
    assert "torghut_forwarder_heartbeats_total 5.0" in metrics.render().decode()


# --- the router feeds the clock ---------------------------------------------------------------


class _Sink:
    def raw_produce(self, topic: str, value: bytes, key: bytes, timestamp: int) -> None:
        pass

    def produce_blocking(self, topic: str, value: bytes, key: bytes, ts_ms: int) -> None:
        pass

    def track(self, n: int, per_channel: list[int], event_ts: list[int]) -> None:
        self.tracked = (n, event_ts)


def _router(clock: EventClock) -> tuple[EnvelopeRouter, _Sink]:
    sink = _Sink()
    router = EnvelopeRouter(
        EnvelopeWriter(42, "iex"),
        SequenceNumbers(1),
        sink,  # type: ignore[arg-type]
        ForwarderMetrics(),
        1000,
        300.0,
        on_reject=lambda *a: None,
        on_control=lambda m: None,
        trace_ids=TraceIds(),
        clock=clock,
    )
    router.set_schema_ids({CHANNEL_TOPICS[c].name: 42 for c in CHANNEL_BY_TYPE.values()})
    return router, sink


TRADE = {"T": "t", "S": "A", "i": 1, "x": "V", "p": 1.0, "s": 1, "t": E0}
QUOTE = {"T": "q", "S": "A", "bx": "V", "bp": 1.0, "bs": 1, "ax": "Q", "ap": 2.0, "as": 1}
STATUS = {"T": "s", "S": "A", "sc": "H", "sm": "Halt", "rc": "", "rm": "", "t": E0 + S}


@pytest.mark.parametrize("native", [False, True] if NATIVE else [False])
def test_only_produced_trades_and_quotes_move_the_clock_on_both_paths(native):
    clock = EventClock(quiet_s=1.0)
    router, sink = _router(clock)
    frame = [STATUS, {**TRADE, "p": -1.0, "t": E0 + 2 * S}, TRADE, {**QUOTE, "t": E0 - S}]
    if native:
        raw = msgpack.packb(
            [{**m, "t": msgpack.Timestamp.from_unix_nano(m["t"])} for m in frame], datetime=False
        )
        assert router.route_raw(raw, E0 + S)
    else:
        router.route(frame, E0 + S)
    # the status (1 s later) and the rejected trade (2 s later) do not count
    assert clock.max_event_ns == E0
    assert sink.tracked[0] == 3 and sorted(sink.tracked[1]) == [E0 - S, E0, E0 + S]
    router.route([STATUS | {"t": E0 + 2 * S}], E0 + S)  # no trade or quote: no change
    assert clock.max_event_ns == E0
    # a trade the native path hands to Python (an odd extra field) has the highest time
    frame = [{**TRADE, "i": 2, "t": E0 + S}, {**TRADE, "i": 3, "r": [1], "t": E0 + 2 * S}]
    if native:
        raw = msgpack.packb(
            [{**m, "t": msgpack.Timestamp.from_unix_nano(m["t"])} for m in frame], datetime=False
        )
        assert router.route_raw(raw, E0 + S)
    else:
        router.route(frame, E0 + S)
    assert clock.max_event_ns == E0 + 2 * S and clock.mono_at_max > 0
    last = {**TRADE, "i": 4, "t": E0 + 3 * S}
    if native:  # a frame the native path encodes whole: its own max
        assert router.route_raw(msgpack.packb([last]), E0 + 2 * S)
    else:
        router.route([last], E0 + 2 * S)
    assert clock.max_event_ns == E0 + 3 * S


def test_heartbeats_are_booked_as_a_frame_of_no_envelopes_and_settle_with_the_acks():
    """They go through the envelopes' own producer (order per partition) and its ack
    accounting: settled like envelopes, never counted as messages, lag untouched."""
    from forwarder.producer import EnvelopeProducer

    s = ForwarderSettings(kafka_bootstrap="127.0.0.1:1", heartbeat_lag_s=2.0)
    metrics = ForwarderMetrics()
    prod = EnvelopeProducer(s, metrics, {"log_level": 0})
    clock = EventClock(s.heartbeat_quiet_s)
    kafka = FakeKafka({TRADES.name: 2, QUOTES.name: 1})
    hb = HeartbeatWriter(s, clock, metrics, producer=kafka, book=prod.book_heartbeats)
    hb.refresh_partitions()
    clock.observe(E0, 10.0)
    assert hb.tick(10.0, WALL) == 3
    assert all(r["on_delivery"] == hb._delivered for r in kafka.records)
    assert prod.produced == 3
    # no heartbeat is in librdkafka's queue (the fake took them), but its queue length also
    # counts librdkafka's own events (the refused connections to 127.0.0.1:1) until poll
    # serves them: poll as the forwarder's loop does until all three are settled
    wait_for(
        lambda: prod.poll(0.05) is not None and prod.produced - prod._settled == 0,
        10,
        "the three heartbeats settled",
        interval_s=0.01,
    )
    assert prod.produced == 3
    assert sum(metrics.messages) == 0 and sum(metrics.lag_buckets) == 0
