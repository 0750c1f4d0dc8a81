"""Build the StreamExecutionEnvironment: checkpoints, S3A, restart strategy, low latency.

Locally (tests, `torghut ta`) it also points PyFlink's MiniCluster at the Maven-fetched
Kafka connector + glue jars and the `flink-s3-fs-hadoop` plugin. In Kubernetes the image
has them in /opt/flink/lib and /opt/flink/plugins, so `local=False` adds neither.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flink_job.errors import TaJobError
from flink_job.settings import TaSettings

ARTIFACTS = Path(
    os.environ.get("TORGHUT_ARTIFACTS", Path(__file__).resolve().parents[1] / ".artifacts")
)
FLINK_LIB = ARTIFACTS / "flink" / "lib"
FLINK_PLUGINS = ARTIFACTS / "flink" / "plugins"
#: the JVMs' log4j2 configuration: JSON lines (the FlinkDeployment's logConfiguration)
LOG4J_JSON = Path(__file__).with_name("log4j-json.properties")
LOG4J_JSON_LAYOUT_JAR = "log4j-layout-template-json-*.jar"


def local_log4j_properties(base: Path, target: Path) -> Path | None:
    """A log4j2 configuration for local JVMs, written to `target`: `base` (a distribution
    log4j file: its text log stays as it was) plus the JSON appender of `LOG4J_JSON` writing
    the same lines to a file next to the text log (``<log.file>.jsonl``). None when the
    JSON layout jar is not in the Maven-built lib (run `make setup`): `base` stays alone."""
    if not any(FLINK_LIB.glob(LOG4J_JSON_LAYOUT_JAR)):
        return None
    layout = [
        line
        for line in LOG4J_JSON.read_text().splitlines()
        if line.startswith("appender.json.layout.")
    ]
    text = base.read_text() + "\n".join(
        [
            "",
            "# torghut-ta: the same lines as JSON (flink_job/log4j-json.properties)",
            "rootLogger.appenderRef.json.ref = JsonFile",
            "appender.json.name = JsonFile",
            "appender.json.type = File",
            "appender.json.fileName = ${sys:log.file}.jsonl",
            "appender.json.append = false",
            *layout,
            "",
        ]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return target


PROMETHEUS_REPORTER = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"


class FlinkSetupError(TaJobError, RuntimeError):
    """Jars or plugins needed by the local job are missing; run `make setup`."""


def flink_config(settings: TaSettings) -> dict[str, str]:
    """Flink configuration keys for the job (also rendered into the FlinkDeployment)."""
    cfg = {
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.timeout": f"{settings.checkpoint_timeout_ms} ms",
        "execution.checkpointing.min-pause": f"{settings.min_pause_between_checkpoints_ms} ms",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.max-concurrent-checkpoints": "1",
        "execution.checkpointing.tolerable-failed-checkpoints": str(
            settings.tolerable_failed_checkpoints
        ),
        "execution.checkpointing.dir": settings.checkpoint_dir,
        # S3A bounds (fs.s3a.*): a hung store fails a checkpoint instead of completing it
        # after its transaction timed out (settings.py; docs/reliability.md, MinIO down)
        "s3.connection.timeout": str(settings.s3_socket_timeout_ms),
        "s3.attempts.maximum": str(settings.s3_attempts),
        "s3.retry.limit": str(settings.s3_retry_limit),
        "state.backend.type": "hashmap",
        # keyed state below this size travels inside the checkpoint's _metadata instead of
        # a file of its own: one S3 PUT less per checkpoint (65-200 kB for 20 symbols)
        "execution.checkpointing.data-inline-threshold": f"{settings.checkpoint_inline_state_kb} kb",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": f"{settings.restart_initial_backoff_ms} ms",
        "restart-strategy.exponential-delay.max-backoff": f"{settings.restart_max_backoff_ms} ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
        "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
        "restart-strategy.exponential-delay.jitter-factor": "0.1",
        "python.execution-mode": settings.python_execution_mode,
        "python.fn-execution.bundle.time": str(settings.bundle_time_ms),
        "python.fn-execution.bundle.size": str(settings.bundle_size),
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "execution.buffer-timeout.interval": f"{settings.buffer_timeout_ms} ms",
        "pipeline.auto-watermark-interval": f"{settings.watermark_interval_ms} ms",
        "pipeline.name": settings.job_name,
        # chained operators hand records over without a serializer copy; safe here: the
        # Python operator emits a new byte[] per record and the sink copies what it keeps
        "pipeline.object-reuse": "true",
    }
    if settings.parallelism is not None:
        cfg["parallelism.default"] = str(settings.parallelism)
    if settings.metrics_port:
        # the same reporter the FlinkDeployment configures (k8s/base/flink), on a local port
        cfg["metrics.reporter.prom.factory.class"] = PROMETHEUS_REPORTER
        cfg["metrics.reporter.prom.port"] = str(settings.metrics_port)
    if settings.s3_endpoint:
        cfg.update(
            {
                "s3.endpoint": settings.s3_endpoint,
                "s3.path.style.access": str(settings.s3_path_style_access).lower(),
                "s3.access-key": settings.s3_access_key,
                "s3.secret-key": settings.s3_secret_key.get_secret_value(),
                # S3A (Hadoop 3.3) deletes the parent "directory markers" after every file
                # it writes: extra LIST/DELETE round trips in each checkpoint; keep them
                "s3.directory.marker.retention": "keep",
            }
        )
    return cfg


def job_config(settings: TaSettings, restore_from: str | None = None) -> dict[str, str]:
    """`flink_config` plus, when resuming, the checkpoint or savepoint to restore."""
    cfg = flink_config(settings)
    if restore_from:
        cfg["execution.state-recovery.path"] = restore_from
    return cfg


def local_lib_dir() -> Path:
    """A FLINK_LIB_DIR for the local client JVM: PyFlink's lib + connector, glue and S3 jars.

    The local MiniCluster runs inside the client JVM and never loads filesystem plugins
    (FLINK-11470 was not merged), so the S3 filesystem goes on the system classpath here,
    next to the connector, and so does the Prometheus metrics reporter (used when
    `metrics_port` is set); in a real cluster both stay plugins.
    """
    import pyflink

    jars = sorted(FLINK_LIB.glob("*.jar"))
    names = {j.name for j in jars}
    if (
        not any(n.startswith("flink-connector-kafka") for n in names)
        or "torghut-flink-glue.jar" not in names
    ):
        raise FlinkSetupError(
            f"Kafka connector or glue jar missing in {FLINK_LIB}; run `make setup`"
        )
    s3 = sorted(FLINK_PLUGINS.glob("s3-fs-hadoop/*.jar"))
    if not s3:
        raise FlinkSetupError(f"flink-s3-fs-hadoop missing in {FLINK_PLUGINS}; run `make setup`")
    pyflink_lib = Path(pyflink.__file__).parent / "lib"
    # the Prometheus metrics reporter is a plugin too: on the classpath for the same reason
    prometheus = sorted((pyflink_lib.parent / "plugins").glob("metrics-prometheus/*.jar"))
    lib = ARTIFACTS / "flink" / "local-lib"
    lib.mkdir(parents=True, exist_ok=True)
    wanted = {j.name: j for j in [*pyflink_lib.glob("*.jar"), *jars, *s3, *prometheus]}
    for stale in lib.iterdir():
        if stale.name not in wanted or stale.resolve() != wanted[stale.name].resolve():
            stale.unlink()
    for name, target in wanted.items():
        link = lib / name
        if not link.exists():
            link.symlink_to(target)
    return lib


def create_environment(settings: TaSettings, local: bool = True, restore_from: str | None = None):
    """A configured StreamExecutionEnvironment (must be the first PyFlink call in a process).

    `restore_from`: a checkpoint or savepoint path to resume from.
    """
    cfg = job_config(settings, restore_from)
    if local:
        # read once, when the first PyFlink call launches the gateway JVM; PyFlink ignores
        # FLINK_LIB_DIR unless FLINK_HOME is set too
        import pyflink

        os.environ.setdefault("FLINK_HOME", str(Path(pyflink.__file__).parent))
        os.environ["FLINK_LIB_DIR"] = str(local_lib_dir())
        os.environ.setdefault("FLINK_LOG_DIR", str(ARTIFACTS.parent / ".stack" / "flink-logs"))
        # the gateway JVM (the MiniCluster) reads LOG4J_PROPERTIES, else log4j-cli.properties
        log4j = local_log4j_properties(
            Path(os.environ["FLINK_HOME"]) / "conf" / "log4j-cli.properties",
            ARTIFACTS / "flink" / "log4j-local.properties",
        )
        if log4j is not None:
            os.environ.setdefault("LOG4J_PROPERTIES", str(log4j))
        # the gateway JVM PyFlink launches hosts the MiniCluster; it reads JVM_ARGS
        if settings.local_jvm_opts:
            os.environ["JVM_ARGS"] = " ".join(
                filter(None, [settings.local_jvm_opts, os.environ.get("JVM_ARGS", "")])
            )
        # thread mode embeds CPython in the JVM (pemja); it must see this venv and the repo
        import sysconfig

        paths = [sysconfig.get_paths()["purelib"], str(Path(__file__).resolve().parents[1])]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    conf = Configuration()
    for key, value in cfg.items():
        conf.set_string(key, value)
    if local:
        _configure_local_filesystems(conf)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if settings.parallelism is not None or local:
        env.set_parallelism(settings.parallelism or 1)
    env.set_buffer_timeout(settings.buffer_timeout_ms)
    return env


def _configure_local_filesystems(conf) -> None:
    """Hand our `s3.*` settings to the filesystems of the client JVM hosting the MiniCluster.

    A local environment never passes its configuration to FileSystem (FLINK-11470 was
    not merged), so without this the S3 filesystem has no endpoint or credentials.
    """
    from pyflink.java_gateway import get_gateway

    from flink_job.pyflink_internals import java_configuration

    get_gateway().jvm.org.apache.flink.core.fs.FileSystem.initialize(java_configuration(conf), None)
