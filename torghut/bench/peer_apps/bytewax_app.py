"""The Bytewax peer: the raw trades topic -> ``fold_window`` over 1 s tumbling windows of an
``EventClock`` (event time, waiting the out-of-orderness bound) -> ``stateful_map`` with each
symbol's ``SignalState`` -> ta.bars/ta.signals records (the job's Avro) in the peer's topics.

Bytewax's idiom: a ``Dataflow`` of operators, ``KafkaSource`` with ``tail=False`` (the
dataflow ends at the end of the backlog, closing its last windows), recovery snapshots in
SQLite every epoch (``RecoveryConfig``), ``KafkaSink``. Bytewax's Kafka sink is not
transactional: its guarantee is at least once, not exactly once. The fold uses the
project's ``MicroBar`` (the same sale-condition rules). Trades only: the quote-derived
indicators (spread, imbalance) are not computed. Run with the peers venv's interpreter.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from torghut.bench.peer_apps.common import PeerResult, close_bar, open_bar, records, trade_flags


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--registry", required=True)
    ap.add_argument("--recovery-dir", required=True)
    ap.add_argument("--bars-topic", required=True)
    ap.add_argument("--signals-topic", required=True)
    ap.add_argument("--wait-ms", type=int, default=1000)
    ap.add_argument("--result", required=True)
    args = ap.parse_args(argv)

    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main

    from flink_job.decode import decode_event
    from flink_job.symbol_processor import TRADE
    from shared.bars import MicroBar
    from shared.indicators import SignalState
    from shared.registry import SchemaRegistryClient
    from shared.serde import AvroDeserializer, AvroSerializer
    from shared.topics import TA_BARS_1S, TA_SIGNALS, TRADES

    registry = SchemaRegistryClient(args.registry)
    decoder = AvroDeserializer(registry)
    bars_enc = AvroSerializer(registry, TA_BARS_1S)
    signals_enc = AvroSerializer(registry, TA_SIGNALS)
    result = PeerResult("bytewax")

    def decode(msg: Any) -> tuple | None:
        if not result.first_ns:
            result.start()
        ev = decode_event(decoder, msg.value)
        if ev is None or ev[0] != TRADE:
            return None
        result.trades += 1
        return ev if trade_flags(ev[9], ev[2]) else None

    def event_time(ev: tuple) -> datetime:
        return datetime.fromtimestamp(ev[2] / 1e9, tz=UTC)

    def fold(bar: MicroBar | None, ev: tuple) -> MicroBar:
        flags = trade_flags(ev[9], ev[2])
        if bar is None:
            return open_bar(ev[1], ev[6], ev[7], ev[2], flags)
        bar.add_trade(ev[6], ev[7], ev[2], flags)
        return bar

    def no_merge(a: MicroBar, b: MicroBar) -> MicroBar:
        raise AssertionError("tumbling windows never merge")

    def indicators(
        signals: SignalState | None, window: tuple[int, MicroBar]
    ) -> tuple[SignalState, list[KafkaSinkMessage]]:
        signals = signals or SignalState()
        bar = window[1]
        values = close_bar(signals, bar)
        if values is None:
            return signals, []
        result.bars += 1
        bar_rec, signal_rec = records(bar, values, "bytewax")
        key = bar.symbol.encode()
        return signals, [
            KafkaSinkMessage(key, bars_enc.encode(bar_rec), topic=args.bars_topic),
            KafkaSinkMessage(key, signals_enc.encode(signal_rec), topic=args.signals_topic),
        ]

    flow = Dataflow("torghut_peer_bytewax")
    raw = op.input("trades", flow, KafkaSource([args.bootstrap], [TRADES.name], tail=False))
    trades = op.filter_map("decode", raw, decode)
    keyed = op.key_on("by_symbol", trades, lambda ev: ev[1])
    clock = EventClock(event_time, wait_for_system_duration=timedelta(milliseconds=args.wait_ms))
    windower = TumblingWindower(
        length=timedelta(seconds=1), align_to=datetime(2020, 1, 1, tzinfo=UTC)
    )
    bars = fold_window("bars_1s", keyed, clock, windower, lambda: None, fold, no_merge)
    out = op.stateful_map("signals", bars.down, indicators)
    msgs = op.flat_map("records", out, lambda key_msgs: key_msgs[1])
    op.output("out", msgs, KafkaSink([args.bootstrap], topic=None))

    db = Path(args.recovery_dir)
    db.mkdir(parents=True, exist_ok=True)
    init_db_dir(db, 1)
    cli_main(flow, workers_per_process=1, recovery_config=RecoveryConfig(str(db)))
    result.stop()
    result.write(args.result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
