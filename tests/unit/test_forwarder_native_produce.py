"""The librdkafka bridge (``forwarder/_rdkbridge.c``): the router's native path produces
straight into librdkafka, and failed deliveries come back through the plugin's
acknowledgement interceptor.

No broker: ``127.0.0.1:9`` refuses connections, so with a 1 s ``message.timeout.ms`` every
record fails and is reported back whole. That is how the records librdkafka was given are
read here, and it is the failure path of production (tested against a real broker restart
in ``tests/integration/test_forwarder_resilience.py``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer, libversion

from forwarder import _fastroute
from forwarder.metrics import ForwarderMetrics
from forwarder.producer import NATIVE_PLUGIN, EnvelopeProducer
from forwarder.settings import ForwarderSettings
from tests.support.fastroute import INGEST, T0, Side, pack

NOWHERE = "127.0.0.1:9"


def _good(k: int) -> dict[str, Any]:
    if k % 2:
        return {"T": "t", "S": f"S{k % 3}", "i": k, "x": "V", "p": 10.5, "s": 3, "t": T0 + k,
                "c": ["@"], "z": "C"}  # fmt: skip
    return {"T": "q", "S": f"S{k % 3}", "bx": "V", "bp": 10.0, "bs": 1, "ax": "V", "ap": 10.5,
            "as": 2, "t": T0 + k, "c": ["R"], "z": "C"}  # fmt: skip


def _bar(k: int) -> dict[str, Any]:
    return {"T": "b", "S": "S0", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 10, "t": T0 + k,
            "n": 3, "vw": 1.2}  # fmt: skip


def _real_producer(**kw: Any) -> EnvelopeProducer:
    settings = ForwarderSettings(kafka_bootstrap=NOWHERE, message_timeout_ms=1000, **kw)
    return EnvelopeProducer(settings, ForwarderMetrics(), {"log_level": 0})


def _wait(cond: Any, what: str, p: EnvelopeProducer, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        p.poll(0.05)


def test_the_bridge_is_bound_to_confluent_kafkas_librdkafka():
    assert _fastroute.__file__ == NATIVE_PLUGIN
    path = _fastroute.bind_librdkafka(libversion()[1])
    assert "librdkafka" in path
    with pytest.raises(OSError, match="no loaded librdkafka of version 0x7fffffff"):
        # bound once per process: a second call returns the path; an unbound module would
        # refuse a version nobody loaded (checked through a fresh find in a subprocess below)
        _fastroute_fresh_bind(0x7FFFFFFF)


def _fastroute_fresh_bind(version: int) -> None:
    import subprocess
    import sys

    code = (
        "import confluent_kafka\n"
        "from forwarder import _fastroute\n"
        f"_fastroute.bind_librdkafka({version})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode:
        raise OSError(r.stderr.strip().splitlines()[-1])


def test_natively_produced_records_equal_the_python_paths_and_failures_come_back_whole():
    """The same frames through route_raw with the bridge and through decode + route with a
    recorder: the records librdkafka reports back as failed (topic, value, key, and the
    event time the forwarder re-produces them with) equal the Python path's records."""
    frames = [[_good(k) for k in range(j * 50, j * 50 + 50)] for j in range(4)]
    frames[1].insert(10, _bar(1))  # a message the native path hands to Python in order

    ref = Side(b"c0ffee01", 0x1000, 1_000_000)
    for frame in frames:
        ref.feed(pack(frame), INGEST, native=False)
    expected = sorted(ref.prod.records)

    side = Side(b"c0ffee01", 0x1000, 1_000_000)
    p = _real_producer()
    assert p.native is not None
    side.router.producer = p
    for frame in frames:
        side.feed(pack(frame), INGEST, native=True)
    assert side.paths == ["native"] * 4
    # every record is in librdkafka (its queue length also counts pending events), none is
    # settled (acked) without a broker
    assert p.produced == len(expected) == 201 and len(p) >= len(expected)
    assert p.settle() == 0
    _wait(lambda: len(p._retry) == len(expected), "every delivery to fail", p)
    assert sorted(p._retry) == expected
    assert p.metrics.produce_errors == len(expected)
    assert p.settle() == 0 and sum(p.metrics.messages) == 0  # failed is not acked
    assert _fastroute.pending(p.native) == 0 and _fastroute.lost(p.native) == 0


def test_a_full_librdkafka_queue_falls_back_to_the_blocking_produce():
    """librdkafka refuses a native record when its queue is full: that record takes
    confluent-kafka's produce (BufferError -> wait for room), none is lost, and the
    failures come back from both paths."""
    frame = [_good(k) for k in range(30)]
    ref = Side(b"c0ffee01", 0x1000, 1_000_000)
    ref.feed(pack(frame), INGEST, native=False)
    expected = sorted(ref.prod.records)

    side = Side(b"c0ffee01", 0x1000, 1_000_000)
    settings = ForwarderSettings(kafka_bootstrap=NOWHERE, message_timeout_ms=1000)
    # room for 12 records: the rest waits for the first ones to time out (1 s)
    p = EnvelopeProducer(
        settings, ForwarderMetrics(), {"log_level": 0, "queue.buffering.max.messages": 12}
    )
    assert p.native is not None
    refused: list[int] = []
    confluent_produce = p.raw_produce

    def raw_produce(topic: str, value: bytes, key: bytes, timestamp: int) -> None:
        refused.append(timestamp)  # only records the bridge could not queue come here
        confluent_produce(topic, value, key, timestamp=timestamp)

    p.raw_produce = raw_produce  # type: ignore[method-assign]
    side.router.producer = p
    side.feed(pack(frame), INGEST, native=True)
    assert side.paths == ["native"] and p.produced == 30
    assert 1 <= len(refused) < 30  # the queue was full at least once, not for every record
    _wait(lambda: len(p._retry) == 30, "every delivery to fail", p)
    assert sorted(p._retry) == expected


def test_a_record_refused_for_good_is_dropped_and_counted_not_retried():
    p = _real_producer()
    assert p.native is not None
    value = pack([_good(1)])  # any bytes: not an envelope, so no channel to deduct
    p._on_failure("torghut.trades.v1", value, b"S1", KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert not p._retry and p.metrics.frames_rejected["broker_refused"] == 1


def test_failures_of_confluent_kafkas_own_produce_are_not_reported_twice():
    p = _real_producer()
    assert p.native is not None
    p.produce_blocking("torghut.status.v1", b"status", b"iex", 1_700_000_000_000)
    assert (
        _fastroute.produce(p.native, "torghut.trades.v1", b"native", b"S", 1_700_000_000_001) == 0
    )
    _wait(lambda: len(p._retry) == 2, "both deliveries to fail", p)
    # the native one through the bridge, the other through confluent-kafka's on_delivery;
    # a record that is not an envelope is re-produced with timestamp 0 (librdkafka: now)
    assert sorted(p._retry) == [
        ("torghut.status.v1", b"status", b"iex", 0),
        ("torghut.trades.v1", b"native", b"S", 0),
    ]
    p.flush(0.1)
    assert _fastroute.pending(p.native) == 0


def test_native_produce_can_be_switched_off():
    p = _real_producer(native_produce=False)
    assert p.native is None
    side = Side(b"c0ffee01", 0x1000, 1_000_000)
    side.router.producer = p
    side.feed(pack([_good(1), _good(2)]), INGEST, native=True)
    assert side.paths == ["native"] and p.produced == 2
    _wait(lambda: len(p._retry) == 2, "both deliveries to fail (confluent-kafka)", p)


def test_a_destroyed_producer_falls_back_and_many_come_and_go():
    handles = []
    for _ in range(20):
        kafka = Producer(
            {"bootstrap.servers": NOWHERE, "log_level": 0, "plugin.library.paths": NATIVE_PLUGIN}
        )
        h = _fastroute.claim()
        assert h is not None and _fastroute.claim() is None  # claimed once
        assert _fastroute.produce(h, "t", b"v", None, 1) == 0
        assert len(kafka) >= 1  # the record (and any pending client events)
        kafka.purge()
        kafka.poll(0)
        del kafka  # rd_kafka_destroy: the bridge forgets the client
        handles.append(h)
    for h in handles:
        assert _fastroute.produce(h, "t", b"v", None, 1) == KafkaError._FAIL
    # a router whose producer handle is gone takes confluent-kafka's produce
    side = Side(b"c0ffee01", 0x1000, 1_000_000)
    side.router.producer.native = handles[0]  # type: ignore[attr-defined]
    side.feed(pack([_good(1)]), INGEST, native=True)
    assert side.paths == ["native"] and len(side.prod.records) == 1


def test_a_producer_without_the_plugin_has_no_handle_to_claim():
    Producer({"bootstrap.servers": NOWHERE, "log_level": 0})
    assert _fastroute.claim() is None
    with pytest.raises(TypeError, match="not a producer handle"):
        _fastroute.take_failures(object())
