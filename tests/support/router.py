"""The forwarder's Python router in unit tests: a producer stand-in that records what the
router hands over, a synthetic market's messages of every type, those messages as JSON or
msgpack frames, one valid trade, quote and bar, and routers on the stand-in."""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from forwarder.avro_writer import EnvelopeWriter
from forwarder.envelope import CHANNEL_BY_TYPE
from forwarder.metrics import ForwarderMetrics
from forwarder.router import EnvelopeRouter, TraceIds
from forwarder.sequence import SequenceNumbers
from shared.topics import CHANNEL_TOPICS
from torghut.sim import SyntheticConfig, SyntheticMarket
from torghut.sim.protocol import encode_json, encode_msgpack

#: an event time; FLOOR the routers' seq floor
T0 = 1_709_303_400_123_456_789
FLOOR = 1_709_303_400_000_000


class FakeProducer:
    """What the router needs of ``EnvelopeProducer``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []
        self.tracked: list[tuple[int, list[int], list[int]]] = []

    def raw_produce(self, topic: str, value: bytes, key: bytes, timestamp: int) -> None:
        self.records.append((topic, value, key, timestamp))

    def produce_blocking(self, topic: str, value: bytes, key: bytes, ts_ms: int) -> None:
        self.raw_produce(topic, value, key, ts_ms)

    def track(self, n: int, per_channel: list[int], event_ts: list[int]) -> None:
        self.tracked.append((n, list(per_channel), list(event_ts)))


def _messages() -> list[dict[str, Any]]:
    cfg = SyntheticConfig(
        symbols=("AAPL", "SPY", "MSFT"),
        seed=11,
        trades_per_sec=30,
        quotes_per_sec=10,
        correction_rate=0.05,
        cancel_error_rate=0.05,
        out_of_order_rate=0.05,
        late_rate=0.05,
    )
    m = SyntheticMarket(cfg, T0, 11)
    msgs = m.advance(T0 + 130 * 10**9) + m.finish()
    assert {x["T"] for x in msgs} == set(CHANNEL_BY_TYPE)
    return msgs


#: 130 s of a synthetic market of three symbols: every message type, corrections, late ones
MSGS = _messages()
#: an ingest time after the synthetic market's 130 s (event times up to 2 s ahead only)
AFTER = T0 + 131 * 10**9


def new_router(
    rejects: list[tuple[str, Any]] | None = None,
) -> tuple[EnvelopeRouter, FakeProducer, ForwarderMetrics, SequenceNumbers]:
    """A router on a FakeProducer (schema id 42 for every topic); its rejects go to
    `rejects` as (reason, message) when given."""
    prod, metrics, seqs = FakeProducer(), ForwarderMetrics(), SequenceNumbers(FLOOR)
    writer = EnvelopeWriter(42, "iex")
    sink = rejects if rejects is not None else []
    router = EnvelopeRouter(
        writer,
        seqs,
        prod,  # type: ignore[arg-type]
        metrics,
        100_000,
        300.0,
        on_reject=lambda reason, detail, m: sink.append((reason, m)),
        on_control=lambda m: None,
        trace_ids=TraceIds(),
    )
    router.set_schema_ids({CHANNEL_TOPICS[c].name: 42 for c in CHANNEL_BY_TYPE.values()})
    return router, prod, metrics, seqs


def wire_frames(wire: str, msgs: list[dict[str, Any]], size: int = 97) -> list[Any]:
    """`msgs` in frames of `size` as the WebSocket client decodes them ("json" or "msgpack")."""
    out = []
    for i in range(0, len(msgs), size):
        chunk = msgs[i : i + size]
        if wire == "json":
            out.append(orjson.loads(encode_json(chunk)))
        else:
            out.append(msgpack.unpackb(encode_msgpack(chunk), timestamp=2, use_list=False))
    return out


#: one valid trade, quote and bar at T0
TRADE = {"T": "t", "S": "A", "i": 7, "x": "V", "p": 10.0, "s": 5, "c": ("@",), "z": "C", "t": T0}
QUOTE = {"T": "q", "S": "A", "bx": "V", "bp": 9.99, "bs": 2, "ax": "Q", "ap": 10.01, "as": 3}
QUOTE = {**QUOTE, "c": ("R",), "z": "C", "t": T0}
BAR = {"T": "b", "S": "A", "o": 10.0, "h": 11.0, "l": 9.0, "c": 10.5, "v": 100, "n": 4}
BAR = {**BAR, "vw": 10.2, "t": T0 - T0 % (60 * 10**9)}


def rejecting_router(
    **kw: Any,
) -> tuple[EnvelopeRouter, FakeProducer, list[tuple[str, str]], SequenceNumbers]:
    """A router on a FakeProducer whose rejects are kept as (reason, detail); `kw` goes to
    EnvelopeRouter (e.g. `max_future_ns`)."""
    prod, seqs = FakeProducer(), SequenceNumbers(FLOOR)
    rejects: list[tuple[str, str]] = []
    router = EnvelopeRouter(
        EnvelopeWriter(42, "iex"),
        seqs,
        prod,  # type: ignore[arg-type]
        ForwarderMetrics(),
        100_000,
        300.0,
        on_reject=lambda reason, detail, m: rejects.append((reason, detail)),
        on_control=lambda m: None,
        trace_ids=TraceIds(),
        **kw,
    )
    router.set_schema_ids({CHANNEL_TOPICS[c].name: 42 for c in CHANNEL_BY_TYPE.values()})
    return router, prod, rejects, seqs
