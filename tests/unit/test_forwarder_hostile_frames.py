"""Oversized and hostile frames through the forwarder's real read path: a WebSocket server on localhost, the real ``StockDataStream`` (websockets client,
``max_size``, msgpack/orjson decoding, the native fast path), the real ``Forwarder`` as its
handler (rejects counted in ``frames_rejected{reason}``, the rate-limited status events),
a real ``EnvelopeRouter`` and a real ``EnvelopeProducer`` whose librdkafka has no broker
(records stay queued: what it accepted is what was forwarded; its ``message.max.bytes``
check runs at produce time, without a broker). Only the status topic is not written (no
schema registry): the status events are recorded where the Forwarder would produce them.
"""

from __future__ import annotations

import asyncio
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

import forwarder.router as router_mod
from forwarder.app import Forwarder
from forwarder.avro_writer import EnvelopeWriter
from forwarder.exceptions import EnvelopeTooLargeError, ProducerConfigError
from forwarder.metrics import CHANNEL_INDEX
from forwarder.producer import EnvelopeProducer
from forwarder.reconnect import ReconnectPolicy
from forwarder.router import EnvelopeRouter
from forwarder.sequence import SequenceNumbers
from forwarder.settings import ForwarderSettings
from forwarder.ws_client import StockDataStream

MiB = 1 << 20
TRADES = CHANNEL_INDEX["trades"]
QUOTES = CHANNEL_INDEX["quotes"]


def trade(sym: str, i: int, **kw: Any) -> dict[str, Any]:
    t = time.time_ns() - 10**9
    m = {"T": "t", "S": sym, "i": i, "x": "V", "p": 10.5, "s": 100, "c": ["@"], "z": "C"}
    return {**m, "t": msgpack.Timestamp.from_unix_nano(t), **kw}


def quote(sym: str, dt: int = 0, **kw: Any) -> dict[str, Any]:
    t = time.time_ns() - 10**9 + dt
    m = {"T": "q", "S": sym, "bx": "V", "bp": 10.0, "bs": 1, "ax": "V", "ap": 10.1, "as": 2}
    return {**m, "c": ["R"], "z": "C", "t": msgpack.Timestamp.from_unix_nano(t), **kw}


def huge_trade(sym: str, i: int, size: int) -> dict[str, Any]:
    """A well-formed trade whose conditions alone take ``size`` bytes."""
    return trade(sym, i, c=["X" * 1000] * (size // 1000))


class RecordingForwarder(Forwarder):
    """The real Forwarder as the stream's handler; status events recorded (no registry)."""

    def __init__(self, settings: ForwarderSettings) -> None:
        super().__init__(settings)
        self.events: list[dict[str, Any]] = []

    def on_status(self, event: str, **kw: Any) -> None:
        self.events.append({"event": event, **kw})
        super().on_status(event, **kw)


def forwarder_for(port: int, **kw: Any) -> tuple[RecordingForwarder, StockDataStream]:
    s = ForwarderSettings(
        alpaca_key_id="key",
        alpaca_secret_key="secret",
        alpaca_url=f"ws://127.0.0.1:{port}/v2/iex",
        kafka_bootstrap="127.0.0.1:1",  # nothing listens: produced records stay queued
        backoff_base_s=0.05,
        backoff_cap_s=0.1,
        status_interval_s=1e-9,  # every reject reported (the rate limit is tested elsewhere)
        **kw,
    )
    fwd = RecordingForwarder(s)
    fwd._producer = EnvelopeProducer(s, fwd.metrics, {"log_level": 0})
    fwd._seqs = SequenceNumbers(1000)
    fwd._router = EnvelopeRouter(
        EnvelopeWriter(1, s.feed),
        fwd._seqs,
        fwd._producer,
        fwd.metrics,
        s.dedup_max_entries,
        s.dedup_horizon_s,
        on_reject=fwd.on_reject,
        on_control=lambda m: None,
        max_envelope_bytes=s.max_envelope_bytes,
    )
    stream = StockDataStream(s, fwd, ReconnectPolicy(0.05, 0.1, 0.1))
    fwd._stream = stream
    fwd._router.on_control = stream.on_control
    return fwd, stream


def serve_sessions(sessions: list[list[bytes | str]], expect_read: int, **kw: Any) -> Any:
    """Run a forwarder against a server that speaks Alpaca's handshake and then sends the
    frames of ``sessions[k]`` on its k-th connection, then an end marker (a control
    message) on the last; returns (forwarder, stream) once the stream read ``expect_read``
    frames (the marker included) and stopped."""
    json = kw.get("wire_format") == "json"

    def control(msg: dict[str, Any]) -> bytes | str:
        return orjson.dumps([msg]).decode() if json else msgpack.packb([msg])

    async def main() -> tuple[RecordingForwarder, StockDataStream]:
        connections = 0

        async def handler(ws: ServerConnection) -> None:
            nonlocal connections
            frames = sessions[min(connections, len(sessions) - 1)]
            connections += 1
            await ws.send(control({"T": "success", "msg": "connected"}))
            await ws.recv()
            await ws.send(control({"T": "success", "msg": "authenticated"}))
            await ws.recv()
            await ws.send(control({"T": "subscription", "trades": ["*"], "quotes": ["*"]}))
            for frame in frames:
                await ws.send(frame)
            if connections >= len(sessions):
                await ws.send(control({"T": "success", "msg": "end of test"}))
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            fwd, stream = forwarder_for(port, **kw)
            task = asyncio.create_task(stream.run())
            deadline = time.monotonic() + 120
            while stream.frames_read < expect_read:
                assert time.monotonic() < deadline, f"read {stream.frames_read} frames"
                assert not task.done(), task
                await asyncio.sleep(0.01)
            stream.stop()
            await asyncio.wait_for(task, 30)
            assert stream.frames_read == expect_read
        return fwd, stream

    return asyncio.run(main())


def produced(fwd: Forwarder) -> int:
    p = fwd._producer
    assert p is not None
    p.poll(0)
    return p.produced


# --- (a) frames over the WebSocket client's max_size ----------------------------------


def test_a_frame_over_16_mib_is_refused_with_1009_counted_and_nothing_accepted_is_lost():
    limit = ForwarderSettings().max_frame_bytes
    assert limit == 16 * MiB
    before = [msgpack.packb([trade("AAA", i) for i in range(1, 4)])]
    # exactly 16 MiB: accepted and decoded (max_size is inclusive); its trades forwarded
    exact = _pad_to(limit, [trade("EXA", 1)])
    assert len(exact) == limit
    over = _pad_to(limit + 1, [trade("BIG", 1)])
    after = [msgpack.packb([trade("BBB", i) for i in range(1, 3)])]
    # read: the frame before, the 16 MiB one; then (new connection) the one after, the end
    fwd, _stream = serve_sessions([[*before, exact, over, b"never read"], after], expect_read=4)

    rejected = fwd.metrics.frames_rejected
    assert rejected["frame_too_large"] == 1
    # trades of the frames before, of the 16 MiB frame and of the next session; the
    # refused frame's trade only is missing; the 16 MiB padding message is over the
    # envelope limit, so it is counted without being decoded (forwarder/wire.py)
    assert fwd.metrics.received[TRADES] == 3 + 1 + 2
    assert produced(fwd) == 6
    assert rejected["message_too_large"] == 1
    assert fwd.metrics.reconnects == 1
    disconnected = [e for e in fwd.events if e["event"] == "disconnected"]
    assert disconnected[0]["code"] == 1009
    assert "TORGHUT_FWD_MAX_FRAME_BYTES=16777216" in disconnected[0]["reason"]
    reported = [e for e in fwd.events if e["event"] == "frame_rejected"]
    assert any("reason=frame_too_large" in e["detail"] for e in reported)
    assert fwd.healthy()[0]


def _pad_to(size: int, msgs: list[dict[str, Any]]) -> bytes:
    """A msgpack frame of exactly ``size`` bytes: ``msgs`` and an unknown-type message
    padded with one string (str32 header: the length does not change the header size)."""
    base = msgpack.packb([*msgs, {"T": "n", "pad": "x" * 70000}])
    frame = msgpack.packb([*msgs, {"T": "n", "pad": "x" * (70000 + size - len(base))}])
    assert len(frame) == size
    return frame


# --- (b) a message whose envelope exceeds the broker's message.max.bytes ----------------


def test_a_message_over_message_max_bytes_is_rejected_counted_and_the_rest_forwarded():
    limit = ForwarderSettings().max_envelope_bytes
    fits = _largest_fitting(_router(limit)[0], limit)
    frame = msgpack.packb(
        [
            trade("AAA", 1),
            huge_trade("AAA", 2, 2 * MiB),  # its bytes alone are over the limit: not decoded
            quote("AAA"),
            trade("AAA", 3),
            # decodable, but its envelope would be one byte over the limit
            quote("AAA", dt=1000),
            trade("EDGE", 5, c=["c" * (fits + 1)]),
        ]
    )
    fwd, _ = serve_sessions([[frame, msgpack.packb([trade("AAA", 4)])]], expect_read=3)
    rejected = fwd.metrics.frames_rejected
    assert rejected == {"message_too_large": 1, "envelope_too_large": 1}
    assert fwd.metrics.reconnects == 0
    assert produced(fwd) == 5  # trades 1, 3, 4 and both quotes: no produce error, no loop
    assert fwd.metrics.produce_errors == 0
    assert fwd._seqs is not None and fwd._seqs.issued == 5  # the rejects took no seq
    details = [e["detail"] for e in fwd.events if e["event"] == "frame_rejected"]
    assert len(details) == 2
    assert all("TORGHUT_FWD_MAX_ENVELOPE_BYTES=990000" in d for d in details)
    assert "reason=message_too_large" in details[0] and "not decoded" in details[0]
    assert "reason=envelope_too_large symbol=EDGE channel=trades" in details[1]


def _router(max_envelope_bytes: int, producer_config: dict[str, Any] | None = None):
    s = ForwarderSettings(kafka_bootstrap="127.0.0.1:1", max_envelope_bytes=max_envelope_bytes)
    fwd = Forwarder(s)
    p = EnvelopeProducer(s, fwd.metrics, {"log_level": 0, **(producer_config or {})})
    seqs = SequenceNumbers(1000)
    rejects: list[tuple[str, str]] = []
    router = EnvelopeRouter(
        EnvelopeWriter(1, "iex"),
        seqs,
        p,
        fwd.metrics,
        1000,
        60.0,
        on_reject=lambda reason, detail, m: rejects.append((reason, detail)),
        on_control=lambda m: None,
        max_envelope_bytes=max_envelope_bytes,
    )
    return router, p, seqs, rejects


@pytest.mark.parametrize("native", [True, False])
def test_the_size_check_is_exact_at_the_limit_on_both_paths(native):
    limit = 1 << 17
    router, p, seqs, rejects = _router(limit)
    router.native = native
    # largest conditions that fit, and the smallest that do not (binary search over the
    # router's own bound: payload + prefix + ENVELOPE_FIXED_MAX <= limit)
    fits = _largest_fitting(router, limit)
    frame = msgpack.packb(
        [trade("EDGE", 1, c=["c" * fits]), trade("EDGE", 2, c=["c" * (fits + 1)])]
    )
    if not router.route_raw(frame, time.time_ns()):
        router.route(msgpack.unpackb(frame, timestamp=2, use_list=False), time.time_ns())
    assert [r for r, _ in rejects] == ["envelope_too_large"]
    assert p.produced == 1 and seqs.issued == 1


def _largest_fitting(router: EnvelopeRouter, limit: int) -> int:
    from forwarder.avro_writer import BODIES

    prefix = router.writer.prefix("t", "EDGE")
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        size = len(BODIES["t"](trade("EDGE", 1, c=["c" * mid]))) + len(prefix)
        if size + router_mod.ENVELOPE_FIXED_MAX <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def test_a_librdkafka_limit_below_the_router_s_is_refused_at_start_up():
    # a producer_config override that would let librdkafka refuse, at produce time, an
    # envelope the router allows: the forwarder does not start
    with pytest.raises(ProducerConfigError, match=r"message\.max\.bytes=150000 is below"):
        _router(1 << 18, {"message.max.bytes": 150_000})


def test_the_producer_keeps_librdkafka_s_limit_above_the_router_s():
    s = ForwarderSettings(kafka_bootstrap="127.0.0.1:1", max_envelope_bytes=3_000_000)
    p = EnvelopeProducer(s, Forwarder(s).metrics, {"log_level": 0})
    value = b"\0" * 2_999_000
    # librdkafka takes it (its default message.max.bytes, 1000000, would refuse it)
    p.raw_produce("t", value, b"k", timestamp=0)
    with pytest.raises(ValueError):
        EnvelopeRouter(
            EnvelopeWriter(1, "iex"),
            SequenceNumbers(0),
            p,
            Forwarder(s).metrics,
            10,
            1.0,
            on_reject=lambda *a: None,
            on_control=lambda m: None,
            max_envelope_bytes=1000,
        )


def test_the_c_hand_over_span_equals_the_router_s():
    src = Path(router_mod.__file__).with_name("_fastroute.c").read_text()
    span = re.search(r"#define NATIVE_MAX_SPAN \(1 << (\d+)\)", src)
    assert span and 1 << int(span.group(1)) == router_mod.NATIVE_MAX_SPAN
    assert isinstance(EnvelopeTooLargeError("t", "A", 1, 2), ValueError)


# --- (c) deeply nested msgpack and JSON -------------------------------------------------

DEPTH = 100_000


def nested_msgpack(kind: str) -> bytes:
    if kind == "arrays":
        return b"\x91" * DEPTH + b"\xc0"
    if kind == "maps":
        return b"\x81\xa1a" * DEPTH + b"\xc0"
    # a valid trade, then a deeply nested element: the frame is one undecodable document
    return b"\x92" + msgpack.packb(trade("NST", 9)) + b"\x91" * DEPTH + b"\xc0"


def nested_json(kind: str) -> str:
    if kind == "arrays":
        return "[" * DEPTH + "]" * DEPTH
    return '[{"a":' * DEPTH + "1" + "}]" * DEPTH


@pytest.mark.parametrize("kind", ["arrays", "maps", "trade then arrays"])
def test_deeply_nested_msgpack_is_one_counted_bad_frame_and_memory_stays_bounded(kind):
    frame = nested_msgpack(kind)
    ok = msgpack.packb([trade("NST", 1), trade("NST", 2)])
    fwd, _ = serve_sessions([[frame, ok]], expect_read=3)
    if kind == "trade then arrays":
        # a large frame is decoded a message at a time (forwarder/wire.py): the trade before
        # the nesting is forwarded, the nested element is the one bad message
        assert fwd.metrics.frames_rejected == {"malformed_message": 1}
        assert produced(fwd) == 3
    else:
        assert fwd.metrics.frames_rejected == {"malformed_frame": 1}
        assert produced(fwd) == 2
    assert fwd.metrics.reconnects == 0
    detail = next(e["detail"] for e in fwd.events if e["event"] == "frame_rejected")
    assert "StackError" in detail


@pytest.mark.parametrize("kind", ["arrays", "maps"])
def test_deeply_nested_json_is_one_counted_bad_frame(kind):
    ok = orjson.dumps([_json_trade("NSJ", 1)]).decode()
    fwd, _ = serve_sessions([[nested_json(kind), ok]], expect_read=3, wire_format="json")
    assert fwd.metrics.frames_rejected == {"malformed_frame": 1}
    assert fwd.metrics.reconnects == 0
    assert produced(fwd) == 1
    detail = next(e["detail"] for e in fwd.events if e["event"] == "frame_rejected")
    assert "depth limit" in detail


def _json_trade(sym: str, i: int) -> dict[str, Any]:
    m = trade(sym, i)
    t = m.pop("t").to_unix_nano()
    secs, ns = divmod(t, 10**9)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"
    return {**m, "t": stamp}


def test_decoding_a_16_mib_nested_frame_allocates_a_bounded_amount():
    # the C fast path declines it (nesting > 32), msgpack stops at its stack limit: neither
    # allocates anything in proportion to the nesting (the walker of a large frame copies
    # the frame once into msgpack's Unpacker: forwarder/wire.py)
    router, p, _seqs, rejects = _router(990_000)
    frame = b"\x91" * (16 * MiB - 1) + b"\xc0"
    stream = StockDataStream(ForwarderSettings(), Forwarder(ForwarderSettings()), None)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        assert router.route_raw(frame, time.time_ns()) is False
        with pytest.raises(ValueError, match="StackError"):
            stream.decode(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(frame) + 4 * MiB
    assert p.produced == 0 and not rejects


@pytest.mark.parametrize("native", [True, False])
def test_a_wide_frame_of_tiny_objects_is_decoded_a_message_at_a_time(native):
    """4 MiB of empty maps inside 4000 messages: decoded at once that was 4 million dicts
    (~300 MB; a 15 MiB frame of bare empty maps measured 1.2 GB of RSS). The native path's
    hand-over and the Python path both decode one message at a time, so Python holds about
    one message's objects; every message is still routed (here: rejected, unknown type) and
    both trades forwarded."""
    router, p, _seqs, rejects = _router(990_000)
    router.native = native
    filler = {"T": "n", "p": [{}] * 1000}
    frame = msgpack.packb([trade("WID", 1), *[filler] * 4000, trade("WID", 2)])
    assert len(frame) > 4_000_000
    stream = StockDataStream(ForwarderSettings(), Forwarder(ForwarderSettings()), None)  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        if not router.route_raw(frame, time.time_ns()):
            assert not native
            router.route(stream.decode(frame), time.time_ns())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(frame) + 8 * MiB, peak
    assert p.produced == 2
    assert [r for r, _ in rejects] == ["unknown_type"] * 4000


def test_a_message_too_large_to_produce_is_not_decoded_and_the_rest_is_forwarded():
    router, p, _seqs, rejects = _router(1 << 17)
    frame = msgpack.packb([trade("MTL", 1), {"T": "n", "p": [{}] * 200_000}, trade("MTL", 2)])
    stream = StockDataStream(ForwarderSettings(), Forwarder(ForwarderSettings()), None)  # type: ignore[arg-type]
    router.native = False
    router.route(stream.decode(frame), time.time_ns())  # ForwarderSettings' limit: 990000
    assert p.produced == 2 and [r for r, _ in rejects] == ["unknown_type"]
    router2, p2, _s, rejects2 = _router(1 << 17)
    assert router2.route_raw(frame, time.time_ns())  # the native path: the router's 128 KiB
    assert p2.produced == 2
    assert [r for r, _ in rejects2] == ["message_too_large"]
    assert "TORGHUT_FWD_MAX_ENVELOPE_BYTES=131072" in rejects2[0][1]


def test_a_json_frame_over_64_kib_is_walked_its_too_large_message_counted_the_rest_forwarded():
    """The JSON wire format through the real stream: a 2.4 MB frame whose middle message
    is over TORGHUT_FWD_MAX_ENVELOPE_BYTES is walked a message at a time
    (``unpack_json_frame``): that message is not decoded (``message_too_large``), a broken
    one is ``malformed_message``, and the trades around them are forwarded."""
    frame = orjson.dumps(
        [
            _json_trade("JSW", 1),
            {"T": "n", "p": [{}] * 800_000},  # 2.4 MB: over the limit, never decoded
            _json_trade("JSW", 2),
        ]
    ).decode()
    broken = frame[:-1] + ',{"T":"t","S":"JSW",}]'  # one more message, undecodable
    fwd, _ = serve_sessions(
        [[frame, broken, orjson.dumps([_json_trade("JSW", 3)]).decode()]],
        expect_read=4,
        wire_format="json",
    )
    assert fwd.metrics.frames_rejected == {"message_too_large": 2, "malformed_message": 1}
    assert fwd.metrics.reconnects == 0
    assert produced(fwd) == 3  # trades 1, 2 (the second frame repeats them: deduplicated), 3
    details = [e["detail"] for e in fwd.events if e["event"] == "frame_rejected"]
    assert "TORGHUT_FWD_MAX_ENVELOPE_BYTES=990000" in details[0] and "not decoded" in details[0]
    assert "JSONDecodeError" in details[-1]
