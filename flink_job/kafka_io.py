"""KafkaSource of raw bytes and the one EXACTLY_ONCE KafkaSink for every derived topic."""

from __future__ import annotations

import logging

from flink_job.errors import TaJobError
from flink_job.pyflink_internals import (
    java_stream,
    set_sink_record_serializer,
    set_source_deserializer,
    with_java_timestamp_assigner,
)
from flink_job.settings import TaSettings

log = logging.getLogger(__name__)

_OFFSETS = {
    "committed-earliest": ("committed_offsets", "EARLIEST"),
    "committed-latest": ("committed_offsets", "LATEST"),
    "earliest": ("earliest", None),
    "latest": ("latest", None),
}


def raw_bytes_source(settings: TaSettings, topics: list[str], group_id: str | None = None):
    """KafkaSource emitting each record value as `bytes`, read_committed."""
    from pyflink.common.serialization import DeserializationSchema
    from pyflink.java_gateway import get_gateway

    j_schema = get_gateway().jvm.dev.torghut.flink.RawBytesDeserializationSchema()
    builder = _source_builder(settings, topics, group_id)
    return builder.set_value_only_deserializer(DeserializationSchema(j_schema)).build()


def symbol_keyed_source(settings: TaSettings, topics: list[str], group_id: str | None = None):
    """KafkaSource emitting `Row(symbol, value bytes, split, event ms)`, read_committed.

    symbol = the record key; split = `topic-partition`; event ms = the record timestamp capped
    at the envelope's ingest time + `max_future_ms` (`SymbolKeyedDeserializationSchema`).
    Heartbeat records (shared/heartbeat.py) come out with the heartbeat key and are dropped
    by `batched_by_symbol`. The output goes into a Java `keyBy` (`keyed_by_symbol`): the
    source task runs no Python, so it never competes with the keyed function for the GIL.
    """
    from pyflink.java_gateway import get_gateway

    builder = _source_builder(settings, topics, group_id)
    set_source_deserializer(
        builder,
        get_gateway().jvm.dev.torghut.flink.SymbolKeyedDeserializationSchema(settings.max_future_ms),
    )
    return builder.build()


def event_time_watermarks(settings: TaSettings):
    """Bounded out-of-orderness watermarks on the source rows' event ms (field 3).

    Idleness is off unless `idleness_ms` > 0: an idle partition is skipped by wall-clock
    time, which makes which trades are late depend on processing speed; quiet partitions
    move on through the forwarder's heartbeats instead (docs/design.md, "Event time").
    """
    from pyflink.common import Duration, WatermarkStrategy
    from pyflink.java_gateway import get_gateway

    strategy = WatermarkStrategy.for_bounded_out_of_orderness(
        Duration.of_millis(settings.out_of_orderness_ms)
    )
    if settings.idleness_ms > 0:
        strategy = strategy.with_idleness(Duration.of_millis(settings.idleness_ms))
    assigner = get_gateway().jvm.dev.torghut.flink.RowEventTimeAssigner()
    return with_java_timestamp_assigner(strategy, assigner)


def batched_by_symbol(stream, batch_type, max_records: int, max_delay_ms: int, bound_ms: int):
    """`Row(symbol, batch)` from the source rows: each record stamped with its partition's
    event-time mark (the watermark that partition alone would have before it, with
    out-of-orderness `bound_ms`), consecutive records of a symbol framed together
    (u32 length + i64 mark + bytes each), heartbeats dropped; by
    `dev.torghut.flink.SymbolBatchOperator`, chained to the source. See
    `flink_job.functions.iter_batch` for the Python side."""
    from pyflink.datastream import DataStream
    from pyflink.java_gateway import get_gateway

    j_op = get_gateway().jvm.dev.torghut.flink.SymbolBatchOperator(
        max_records, max_delay_ms, bound_ms
    )
    return DataStream(
        java_stream(stream).transform("batch-by-symbol", batch_type.get_java_type_info(), j_op)
    )


def keyed_by_symbol(stream, value_type):
    """A PyFlink KeyedStream over `Row(symbol, value)` records, keyed in Java by field 0.

    This is what `DataStream.key_by` builds after its Python key-extraction map; the rows
    already carry the key, so that map (and its pickled hand-over) is skipped. The keyed
    function receives the value (field 1) and `ctx.get_current_key()` is the symbol.
    """
    from pyflink.common import Types
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    j_keyed = java_stream(stream).keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, value_type, stream)


def _source_builder(settings: TaSettings, topics: list[str], group_id: str | None):
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
    from pyflink.java_gateway import get_gateway

    try:
        how, reset = _OFFSETS[settings.starting_offsets]
    except KeyError:
        raise ValueError(
            f"TORGHUT_TA_STARTING_OFFSETS={settings.starting_offsets!r}; use one of {sorted(_OFFSETS)}"
        ) from None
    if how == "committed_offsets":
        # PyFlink's KafkaOffsetResetStrategy names the shaded class of flink-sql-connector-kafka;
        # we run the plain connector (Maven Central serves no 1.20 sql jar), so build it in Java
        jvm = get_gateway().jvm
        strategy = getattr(jvm.org.apache.kafka.clients.consumer.OffsetResetStrategy, reset)
        offsets = KafkaOffsetsInitializer(
            jvm.org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer.committedOffsets(
                strategy
            )
        )
    else:
        offsets = getattr(KafkaOffsetsInitializer, how)()
    builder = (
        KafkaSource.builder()
        .set_bootstrap_servers(settings.kafka_bootstrap)
        .set_topics(*topics)
        .set_group_id(group_id or settings.consumer_group)
        .set_starting_offsets(offsets)
        .set_property("isolation.level", "read_committed")
        .set_property("commit.offsets.on.checkpoint", "true")
        .set_property("partition.discovery.interval.ms", "60000")
    )
    for key, value in settings.kafka_properties().items():
        builder = builder.set_property(key, value)
    return builder


def framed_sink(settings: TaSettings):
    """KafkaSink for frames from `shared.framing.frame_record`, with the settings' delivery
    guarantee: EXACTLY_ONCE (transactions per checkpoint, the default) or AT_LEAST_ONCE
    (flushed at each checkpoint, no transactions; docs/flink-job.md, "Delivery")."""
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaSink
    from pyflink.java_gateway import get_gateway

    builder = KafkaSink.builder().set_bootstrap_servers(settings.kafka_bootstrap)
    if settings.delivery_guarantee == "exactly-once":
        builder = (
            builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .set_transactional_id_prefix(settings.transactional_id_prefix)
            .set_property("transaction.timeout.ms", str(settings.transaction_timeout_ms))
        )
    else:
        builder = builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    builder = (
        builder.set_property("compression.type", "lz4")
        .set_property("linger.ms", "0")
        .set_property("enable.idempotence", "true")
        .set_property("acks", "all")
    )
    for key, value in settings.kafka_properties().items():
        builder = builder.set_property(key, value)
    # set directly: PyFlink's set_record_serializer expects a builder-made schema
    set_sink_record_serializer(
        builder, get_gateway().jvm.dev.torghut.flink.FramedRecordSerializationSchema()
    )
    return builder.build()


class KafkaAuthenticationError(TaJobError, RuntimeError):
    """The brokers refused the job's credentials or its TLS trust (never worth a retry)."""


class PartitionCountError(TaJobError, RuntimeError):
    """The job's parallelism is above the partition count of a raw topic it reads."""


def raw_partition_counts(settings: TaSettings, topics: list[str]) -> dict[str, int] | None:
    """Partitions per topic, asked with the source's own client settings (Java AdminClient,
    so SASL/TLS are the same); None when Kafka does not answer within 30 s (the source
    then retries on its own, as it always did)."""
    from py4j.protocol import Py4JJavaError
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    props = jvm.java.util.Properties()
    props.setProperty("bootstrap.servers", settings.kafka_bootstrap)
    props.setProperty("default.api.timeout.ms", "30000")
    props.setProperty("request.timeout.ms", "30000")
    for key, value in settings.kafka_properties().items():
        props.setProperty(key, value)
    names = jvm.java.util.ArrayList()
    for t in topics:
        names.add(t)
    admin = jvm.org.apache.kafka.clients.admin.AdminClient.create(props)
    try:
        found = admin.describeTopics(names).allTopicNames()
        found = found.get(30, jvm.java.util.concurrent.TimeUnit.SECONDS)
        return {t: int(found.get(t).partitions().size()) for t in topics}
    except Py4JJavaError as exc:
        cause = str(exc.java_exception)
        if "SaslAuthenticationException" in cause:
            raise KafkaAuthenticationError(
                f"Kafka at {settings.kafka_bootstrap} refused user "
                f"{settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism}): "
                "TORGHUT_TA_KAFKA_SASL_PASSWORD is not that user's password. Check Secret "
                "torghut-ta (written by the Strimzi User Operator, reflected into torghut-ta; "
                "docs/runbooks.md, Secret rotation) and restart the job"
            ) from None
        if "SslAuthenticationException" in cause:
            raise KafkaAuthenticationError(
                f"TLS handshake with Kafka at {settings.kafka_bootstrap} failed: the broker's "
                "certificate is not signed by the CA in TORGHUT_TA_KAFKA_SSL_CA_LOCATION="
                f"{settings.kafka_ssl_ca_location!r} or does not name the host it was reached "
                "by (endpoint identification https). Mount the cluster's CA (docs/deploy.md, "
                f"Kafka security): {cause[:300]}"
            ) from None
        if "UnknownTopicOrPartition" in cause:
            raise PartitionCountError(
                f"a raw topic of {topics} does not exist on {settings.kafka_bootstrap} "
                f"({cause[:300]}): create the topics first (`torghut stack up`, or the "
                "KafkaTopic resources of k8s/base/kafka)"
            ) from None
        return None  # unreachable or slow: not this check's business
    finally:
        admin.close()


def check_parallelism(settings: TaSettings, topics: list[str], parallelism: int) -> None:
    """Refuse a parallelism above a raw topic's partition count: a source subtask with no
    partition never emits a watermark (idleness is off, docs/design.md), so event time would
    never move and no bar would ever close (Flink's Kafka source docs, "Idleness")."""
    counts = raw_partition_counts(settings, topics)
    if counts is None:
        log.warning("partition counts of %s unknown (Kafka did not answer): not checked", topics)
        return
    short = {t: n for t, n in counts.items() if n < parallelism}
    if short:
        raise PartitionCountError(
            f"the TA job's parallelism {parallelism} is above the partition count of "
            + ", ".join(f"{t} ({n})" for t, n in sorted(short.items()))
            + ": a source subtask without a partition would hold event time back forever. "
            "Run at most that parallelism (TORGHUT_TA_PARALLELISM, the FlinkDeployment's "
            "job.parallelism) or add partitions (torghut k8s render-topics --partitions, "
            "torghut stack up --partitions)"
        )
    log.info("raw partitions %s, parallelism %d: checked", counts, parallelism)
