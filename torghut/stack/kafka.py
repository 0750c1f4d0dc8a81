"""Apache Kafka 4.1 in KRaft mode, single node, from the Maven-fetched jars.

Two client listeners: PLAINTEXT for the pipeline and tests, and SASL_SSL with
SCRAM-SHA-512 (a generated CA, a SCRAM user created at format time) so the security
settings of every client have a real target. The SASL_SSL listener also takes PLAIN for one
user of its own (`plain_user`), for the embedded ClickHouse engine only: chdb-core's
librdkafka has no SCRAM (tests/integration/test_clickhouse_sasl_ssl.py), everything else
about its connection (TLS, the CA, host verification) is production's.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from torghut.stack import procs
from torghut.stack.errors import ComponentStartError, MissingArtifactError
from torghut.stack.paths import KAFKA_LIBS
from torghut.stack.tls import write_ca_and_broker_cert

LOG4J2 = """\
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.state.name = state.change.logger
logger.state.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
"""

# librdkafka logs every refused connect while the broker boots; readiness is our job here
_QUIET = logging.getLogger("torghut.stack.rdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# what a PLAIN user name or password may hold inside the listener's JAAS line
_JAAS_SAFE = re.compile(r"[A-Za-z0-9_-]+")

# A transaction may stay open up to this long; Flink's transaction.timeout.ms must be below it.
TRANSACTION_MAX_TIMEOUT_MS = 3_600_000


@dataclass
class KafkaPorts:
    plaintext: int
    sasl_ssl: int
    controller: int


def classpath() -> str:
    if not KAFKA_LIBS.is_dir() or not any(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        raise MissingArtifactError(
            f"Kafka jars not found in {KAFKA_LIBS}; run `make setup` (Maven fetch) first"
        )
    return f"{KAFKA_LIBS}/*"


def server_properties(
    data_dir: Path,
    ports: KafkaPorts,
    broker_pem: Path,
    transaction_max_timeout_ms: int = TRANSACTION_MAX_TIMEOUT_MS,
    plain_user: tuple[str, str] = ("", ""),
) -> str:
    """`plain_user`: (name, password) PLAIN accepts on the SASL_SSL listener; none if ""."""
    name, password = plain_user
    plain = ""
    if name:
        if not _JAAS_SAFE.fullmatch(name) or not _JAAS_SAFE.fullmatch(password):
            raise ValueError(
                f"PLAIN user {name!r}: its name and password may hold only letters, digits, "
                "'_' and '-' (they are quoted into the listener's JAAS line)"
            )
        plain = (
            "listener.name.sasl_ssl.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{name}="{password}";\n'
        )
    mechanisms = "SCRAM-SHA-512,PLAIN" if name else "SCRAM-SHA-512"
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{ports.controller}
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:{ports.plaintext},SASL_SSL://127.0.0.1:{ports.sasl_ssl},CONTROLLER://127.0.0.1:{ports.controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{ports.plaintext},SASL_SSL://127.0.0.1:{ports.sasl_ssl}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms={mechanisms}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
{plain}ssl.keystore.type=PEM
ssl.keystore.location={broker_pem}
log.dirs={data_dir}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
transaction.max.timeout.ms={transaction_max_timeout_ms}
# a timed-out transaction is aborted within 1 s of its timeout (Kafka's default sweep: 10 s)
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=9223372036854775807
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
"""


def new_cluster_id() -> str:
    """A KRaft cluster id (22 chars of URL-safe base64), never starting with '-'.

    `kafka-storage format -t -abc...` reads such an id as an option and fails ("expected one
    argument"), one start in 64; Kafka's own `Uuid.randomUuid()` redraws those ids too.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def java_cmd(main: str, *args: str, heap: str = "512m", log4j: Path | None = None) -> list[str]:
    cmd = ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
    if log4j is not None:
        cmd.append(f"-Dlog4j2.configurationFile={log4j}")
    return [*cmd, "-cp", classpath(), main, *args]


def start(
    run_dir: Path, transaction_max_timeout_ms: int = TRANSACTION_MAX_TIMEOUT_MS
) -> dict[str, object]:
    """Format storage (with the SCRAM user), start the broker, return its connection facts.

    `transaction_max_timeout_ms`: the broker's `transaction.max.timeout.ms` (a drill scales
    it down together with the job's transaction timeout, as in production)."""
    cp = classpath()  # fail early with a clear message
    del cp
    home = run_dir / "kafka"
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    ca_file, broker_pem = write_ca_and_broker_cert(home / "tls")
    ports = KafkaPorts(procs.free_port(), procs.free_port(), procs.free_port())
    user, password = "torghut", secrets.token_urlsafe(18)
    # the ClickHouse KafkaUser's name in k8s/base/kafka/users.yaml
    plain_user, plain_password = "torghut-clickhouse", secrets.token_urlsafe(18)
    props = home / "server.properties"
    props.touch()
    props.chmod(0o600)  # it holds the PLAIN password
    props.write_text(
        server_properties(
            data, ports, broker_pem, transaction_max_timeout_ms, (plain_user, plain_password)
        )
    )
    log4j = home / "log4j2.properties"
    log4j.write_text(LOG4J2)
    log_file = run_dir / "logs" / "kafka.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)

    cluster_id = new_cluster_id()
    fmt = subprocess.run(
        java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
            "--add-scram",
            f"SCRAM-SHA-512=[name={user},password={password}]",
            heap="256m",
            log4j=log4j,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if fmt.returncode != 0:
        log_file.write_text(fmt.stdout + fmt.stderr)
        raise ComponentStartError("kafka", str(log_file), "storage format failed")

    pid = procs.spawn(java_cmd("kafka.Kafka", str(props), log4j=log4j), log_file)
    return {
        "pid": pid,
        "log_file": log_file,
        "ports": {
            "plaintext": ports.plaintext,
            "sasl_ssl": ports.sasl_ssl,
            "controller": ports.controller,
        },
        "bootstrap": f"127.0.0.1:{ports.plaintext}",
        "sasl_ssl_bootstrap": f"127.0.0.1:{ports.sasl_ssl}",
        "ca_file": str(ca_file),
        "user": user,
        "password": password,
        "plain_user": plain_user,
        "plain_password": plain_password,
    }


def wait_ready(bootstrap: str, pid: int, log_file: Path, timeout_s: float = 90.0) -> None:
    """Ready = the broker answers a metadata request with itself as a live broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "logger": _QUIET}
    )

    def check() -> bool:
        md = admin.list_topics(timeout=2)
        return len(md.brokers) == 1

    procs.wait_until("kafka", log_file, pid, check, timeout_s, f"broker at {bootstrap}")


def create_topics(bootstrap: str, topics: list[tuple[str, int, dict[str, str]]]) -> None:
    """Create topics (name, partitions, config) with RF 1; existing ones are left alone."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=1, config=cfg)
        for name, parts, cfg in topics
        if name not in existing
    ]
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result(timeout=60)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"creating topic {name!r} failed: {exc}") from exc
