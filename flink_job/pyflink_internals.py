"""The one place the job reaches into PyFlink's private attributes.

PyFlink's Python API wraps Java objects and keeps them in `_j_*` attributes. Four things the
job needs have no public Python API in PyFlink 1.20; each helper below says which one is
missing. Everything else in `flink_job` uses only public PyFlink.

`check()` verifies that every attribute used here exists on the installed PyFlink and raises
`PyFlinkInternalsError` naming the ones that moved, so an upgrade fails at job start (and in
`tests/unit/test_pyflink_internals.py`) instead of with an AttributeError deep inside the
graph building.
"""

from __future__ import annotations

from typing import Any

from flink_job.errors import TaJobError


class PyFlinkInternalsError(TaJobError, RuntimeError):
    """The installed PyFlink no longer has a private attribute the job builds on."""


# (module, class, attribute set on instances by __init__ or a class attribute) — the
# attribute is checked on the class's __init__ source, as instances need a JVM to exist
USED: tuple[tuple[str, str, str], ...] = (
    ("pyflink.datastream.connectors.kafka", "KafkaSourceBuilder", "_j_builder"),
    ("pyflink.datastream.connectors.kafka", "KafkaSinkBuilder", "_j_builder"),
    ("pyflink.common.watermark_strategy", "WatermarkStrategy", "_j_watermark_strategy"),
    ("pyflink.datastream.data_stream", "DataStream", "_j_data_stream"),
    ("pyflink.common.configuration", "Configuration", "_j_configuration"),
)


def missing() -> list[str]:
    """`module.Class._attr` for each attribute `USED` names that the installed PyFlink lacks."""
    import importlib
    import inspect

    gone = []
    for module_name, class_name, attr in USED:
        name = f"{module_name}.{class_name}.{attr}"
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            source = inspect.getsource(cls.__init__)
        except (ImportError, AttributeError, OSError, TypeError):
            gone.append(name)
            continue
        if f"self.{attr} =" not in source:
            gone.append(name)
    return gone


def check() -> None:
    """Raise `PyFlinkInternalsError` if any private attribute used here has moved."""
    gone = missing()
    if gone:
        import pyflink.version

        raise PyFlinkInternalsError(
            f"PyFlink {pyflink.version.__version__} lacks {', '.join(gone)}, which "
            "flink_job/pyflink_internals.py uses; port that module to this PyFlink version "
            "(or pin apache-flink to 1.20.x in pyproject.toml)"
        )


def set_source_deserializer(builder: Any, j_deserializer: Any) -> None:
    """`KafkaSourceBuilder.setDeserializer` with a Java `KafkaRecordDeserializationSchema`.

    Missing API: PyFlink's builder only has `set_value_only_deserializer`, which sees the
    value bytes; the job's schema also reads the record key, partition and timestamp.
    """
    builder._j_builder.setDeserializer(j_deserializer)


def set_sink_record_serializer(builder: Any, j_serializer: Any) -> None:
    """`KafkaSinkBuilder.setRecordSerializer` with a Java `KafkaRecordSerializationSchema`.

    Missing API: PyFlink's `set_record_serializer` accepts only a schema made by its own
    `KafkaRecordSerializationSchema.builder()`, which cannot pick the topic per record.
    """
    builder._j_builder.setRecordSerializer(j_serializer)


def with_java_timestamp_assigner(strategy: Any, j_assigner: Any) -> Any:
    """The strategy with a Java `SerializableTimestampAssigner`, as a PyFlink strategy.

    Missing API: `WatermarkStrategy.with_timestamp_assigner` takes a Python assigner only,
    which would run Python in the source task for every record.
    """
    from pyflink.common import WatermarkStrategy

    return WatermarkStrategy(strategy._j_watermark_strategy.withTimestampAssigner(j_assigner))


def java_stream(stream: Any) -> Any:
    """The Java `DataStream` behind a PyFlink `DataStream`.

    Missing API: PyFlink has no `transform` with a Java operator and no `key_by` with a Java
    `KeySelector`; the job applies both to the Java stream and wraps the result again.
    """
    return stream._j_data_stream


def java_configuration(conf: Any) -> Any:
    """The Java `Configuration` behind a PyFlink `Configuration`.

    Missing API: nothing public hands a configuration to `FileSystem.initialize`, which a
    local environment needs for the S3 plugin's endpoint and credentials (FLINK-11470).
    """
    return conf._j_configuration
