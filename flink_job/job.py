"""The TA job topology, top to bottom:

raw trades+quotes (KafkaSource, read_committed; event-time watermarks with bounded
  out-of-orderness + idleness per partition; Row(symbol = record key, value bytes))
  -> batch by symbol (in Java: consecutive records of a symbol, <= 1 ms, flushed before
  watermarks and barriers) -> keyBy symbol (in Java) -> SymbolTaFunction (Avro decode via
  the shared serde, 1 s bars, signals, status) -> one EXACTLY_ONCE KafkaSink.

Only the keyed function runs Python. In thread mode every Python operator of a slot shares
one interpreter (one GIL); a Python decode step in the source task made the two task
threads take turns on it (docs/benchmarks.md).

`python -m flink_job.job` is the cluster entry (the image has the jars); `torghut ta` runs
it on a local MiniCluster.
"""

from __future__ import annotations

from flink_job.environment import create_environment
from flink_job.kafka_io import (
    batched_by_symbol,
    framed_exactly_once_sink,
    keyed_by_symbol,
    symbol_keyed_source,
)
from flink_job.settings import TaSettings
from shared.topics import QUOTES, TRADES


def build(env, settings: TaSettings) -> None:
    from pyflink.common import Duration, Types, WatermarkStrategy

    from flink_job.functions import SymbolTaFunction

    raw_type = Types.PRIMITIVE_ARRAY(Types.BYTE())
    # Event time = the Kafka record timestamp, which the forwarder sets to the Alpaca event
    # time (ms). Assigning it in the source gives per-partition watermarks (a partition
    # catching up cannot make another one's records late) and per-split idleness.
    watermarks = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(settings.out_of_orderness_ms)
    ).with_idleness(Duration.of_millis(settings.idleness_ms))
    row_type = Types.ROW([Types.STRING(), raw_type])
    raw = env.from_source(
        symbol_keyed_source(settings, [TRADES.name, QUOTES.name]),
        watermarks,
        "raw-trades-quotes",
        type_info=row_type,
    ).uid("source-raw")
    batches = batched_by_symbol(
        raw, row_type, settings.batch_max_records, settings.batch_max_delay_ms
    ).uid("batch-by-symbol")
    opts = {
        "registry_url": settings.registry_url,
        "bar_size_ms": settings.bar_size_ms,
        "provisional_interval_ms": settings.provisional_interval_ms,
        "quote_max_age_ms": settings.quote_max_age_ms,
        "session_start_local": settings.session_start_local,
        "status_interval_ms": settings.status_interval_ms,
        "job_name": settings.job_name,
    }
    frames = (
        keyed_by_symbol(batches, raw_type)
        .process(SymbolTaFunction(opts), output_type=raw_type)
        .name("bars-signals")
        .uid("bars-signals")
    )
    frames.sink_to(framed_exactly_once_sink(settings)).name("derived-topics").uid("sink-derived")


def main(
    local: bool = False, settings: TaSettings | None = None, restore_from: str | None = None
) -> None:
    settings = settings or TaSettings()
    env = create_environment(settings, local=local, restore_from=restore_from)
    build(env, settings)
    env.execute(settings.job_name)


if __name__ == "__main__":
    main(local=False)
