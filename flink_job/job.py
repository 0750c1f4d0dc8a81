"""The TA job topology, top to bottom:

raw trades+quotes (KafkaSource, read_committed; event-time watermarks with bounded
  out-of-orderness per partition; Row(symbol = record key, value bytes, split, event ms))
  -> partition marks + batch by symbol (in Java: each record stamped with its partition's
  event-time mark, heartbeats dropped; consecutive records of a symbol, <= 1 ms, flushed
  before watermarks and barriers) -> keyBy symbol (in Java) -> SymbolTaFunction (Avro decode via
  the shared serde, 1 s bars, signals, status) -> one EXACTLY_ONCE KafkaSink.

Only the keyed function runs Python. In thread mode every Python operator of a slot shares
one interpreter (one GIL); a Python decode step in the source task made the two task
threads take turns on it (docs/benchmarks.md).

`python -m flink_job` is the cluster entry (the image has the jars; the FlinkDeployment runs
it with `-pym flink_job`); `torghut ta` runs it on a local MiniCluster.
"""

from __future__ import annotations

from flink_job.environment import create_environment
from flink_job.kafka_io import (
    batched_by_symbol,
    check_parallelism,
    event_time_watermarks,
    framed_sink,
    keyed_by_symbol,
    symbol_keyed_source,
)
from flink_job.pyflink_internals import check as check_pyflink_internals
from flink_job.settings import TaSettings
from shared.topics import QUOTES, TRADES


def build(env, settings: TaSettings) -> None:
    from pyflink.common import Types

    from flink_job.functions import SymbolTaFunction

    check_pyflink_internals()
    raw_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    # Event time = the Kafka record timestamp (the forwarder sets it to the Alpaca event time,
    # ms), capped at the envelope's ingest time + max_future_ms. Assigned in the source:
    # per-partition watermarks, and the partition marks that decide lateness follow exactly
    # the records of each partition (docs/design.md, "Event time").
    source_type = Types.ROW([Types.STRING(), raw_type, Types.STRING(), Types.LONG()])
    raw = env.from_source(
        symbol_keyed_source(settings, [TRADES.name, QUOTES.name]),
        event_time_watermarks(settings),
        "raw-trades-quotes",
        type_info=source_type,
    ).uid("source-raw")
    batches = batched_by_symbol(
        raw,
        Types.ROW([Types.STRING(), raw_type]),
        settings.batch_max_records,
        settings.batch_max_delay_ms,
        settings.out_of_orderness_ms,
    ).uid("batch-by-symbol")
    frames = (
        keyed_by_symbol(batches, raw_type)
        .process(SymbolTaFunction(settings.function_config()), output_type=raw_type)
        .name("bars-signals")
        .uid("bars-signals")
    )
    frames.sink_to(framed_sink(settings)).name("derived-topics").uid("sink-derived")


def main(
    local: bool = False, settings: TaSettings | None = None, restore_from: str | None = None
) -> None:
    settings = settings or TaSettings()
    env = create_environment(settings, local=local, restore_from=restore_from)
    check_parallelism(settings, [TRADES.name, QUOTES.name], env.get_parallelism())
    build(env, settings)
    env.execute(settings.job_name)


if __name__ == "__main__":
    main(local=False)
