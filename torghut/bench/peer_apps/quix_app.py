"""The Quix Streams peer: the raw trades topic -> 1 s tumbling windows (RocksDB state) ->
indicators (keyed state) -> ta.bars/ta.signals records in the peer's own topics, exactly once.

Written in Quix Streams' own idiom: an ``Application`` with
``processing_guarantee="exactly-once"``, a ``tumbling_window(1 s, grace)`` whose ``reduce``
folds each trade into the project's ``MicroBar`` (the same sale-condition rules), ``final()``
with partition closing (the backlog is in event-time order), a stateful ``apply`` that keeps
each symbol's ``SignalState`` in its state store, and ``to_topic`` with an Avro serializer
of the job's schemas. State values are pickled (``RocksDBOptions(dumps, loads)``): the bar
and indicator states are tuples with NaN, which JSON does not keep.

It reads trades only: the quote-derived indicators (spread, imbalance) are not computed.
It stops once the backlog's sentinel trade has closed every other window, and writes its
result file (``common.PeerResult``). Run with the peers venv's interpreter.
"""

from __future__ import annotations

import argparse
import pickle
from typing import Any

from torghut.bench.peer_apps.common import PeerResult, close_bar, open_bar, records, trade_flags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--bars-topic", required=True)
    ap.add_argument("--signals-topic", required=True)
    ap.add_argument("--grace-ms", type=int, default=1000)
    ap.add_argument("--sentinel", required=True)
    ap.add_argument("--result", required=True)
    args = ap.parse_args(argv)

    from quixstreams import Application
    from quixstreams.models.serializers import Deserializer, Serializer
    from quixstreams.state.rocksdb import RocksDBOptions

    from flink_job.decode import decode_event
    from flink_job.symbol_processor import TRADE
    from shared.bars import MicroBar
    from shared.indicators import SignalState
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer, AvroSerializer
    from shared.topics import TA_BARS_1S, TA_SIGNALS, TRADES

    registry = SchemaRegistryClient(args.registry)
    result = PeerResult("quix")

    class EnvelopeDeserializer(Deserializer):
        """Raw envelope -> the job's trade tuple (kind, symbol, ns, seq, ingest, trace,
        price, size, id, flags); other records -> None (filtered out)."""

        def __init__(self) -> None:
            super().__init__()
            self._d = AvroDeserializer(registry)

        def __call__(self, value: bytes, ctx: Any) -> Any:
            if not result.first_ns:
                result.start()
            ev = decode_event(self._d, value)
            return ev if ev is not None and ev[0] == TRADE else None

    class AvroOut(Serializer):
        def __init__(self, topic: Any) -> None:
            super().__init__()
            self._s = AvroSerializer(registry, topic)

        def __call__(self, value: Any, ctx: Any) -> bytes:
            return self._s.encode(value)

    done = {"sentinel": False}

    def on_processed(topic: str, partition: int, offset: int) -> None:
        if done["sentinel"]:  # its record closed every window before it
            app.stop()

    app = Application(
        on_message_processed=on_processed,
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=args.state_dir,
        rocksdb_options=RocksDBOptions(dumps=pickle.dumps, loads=pickle.loads),
        loglevel="WARNING",
    )
    trades = app.topic(TRADES.name, value_deserializer=EnvelopeDeserializer())
    bars_out = app.topic(args.bars_topic, value_serializer=AvroOut(TA_BARS_1S))
    signals_out = app.topic(args.signals_topic, value_serializer=AvroOut(TA_SIGNALS))

    def in_a_bar(ev: Any) -> bool:
        if ev is None:
            return False
        result.trades += 1
        if ev[1] == args.sentinel:
            done["sentinel"] = True
        return bool(trade_flags(ev[9], ev[2]))

    def initializer(ev: tuple) -> tuple:
        return open_bar(ev[1], ev[6], ev[7], ev[2], trade_flags(ev[9], ev[2])).to_state()

    def reducer(state: tuple, ev: tuple) -> tuple:
        bar = MicroBar.from_state(state)
        bar.add_trade(ev[6], ev[7], ev[2], trade_flags(ev[9], ev[2]))
        return bar.to_state()

    def indicators(window: dict, state: Any) -> list[tuple[dict, dict]]:
        bar = MicroBar.from_state(window["value"])
        saved = state.get("signals")
        signals = SignalState() if saved is None else SignalState.from_state(saved)
        values = close_bar(signals, bar)
        if values is None:
            return []
        state.set("signals", signals.to_state())
        result.bars += 1
        return [records(bar, values, "quix")]

    sdf = app.dataframe(trades)
    sdf = sdf.filter(in_a_bar)
    sdf = (
        sdf.tumbling_window(duration_ms=1000, grace_ms=args.grace_ms)
        .reduce(reducer=reducer, initializer=initializer)
        .final(closing_strategy="partition")
    )
    sdf = sdf.apply(indicators, stateful=True, expand=True)
    sdf.apply(lambda pair: pair[0]).to_topic(bars_out)
    sdf.apply(lambda pair: pair[1]).to_topic(signals_out)

    app.run()
    result.stop()
    result.write(args.result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
