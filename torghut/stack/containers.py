"""Opt-in alternative for machines with a Docker engine: the same engines via testcontainers.

`TORGHUT_TESTCONTAINERS=1 make test` makes the session fixture use this instead of the local
processes. The default path (and CI on machines without Docker) never imports it. Without a
SASL_SSL listener here, the SCRAM tests skip in this mode.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

from torghut.stack import kafka, minio
from torghut.stack.state import StackState

KAFKA_IMAGE = "apache/kafka:4.1.1"
MINIO_IMAGE = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
REGISTRY_IMAGE = "apicurio/apicurio-registry-mem:2.6.13.Final"


@contextlib.contextmanager
def container_stack() -> Iterator[StackState]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.minio import MinioContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    from shared.topics import ALL_TOPICS
    from torghut.stack.registry import CCOMPAT

    with contextlib.ExitStack() as stack:
        k = stack.enter_context(KafkaContainer(KAFKA_IMAGE).with_kraft())
        m = stack.enter_context(MinioContainer(MINIO_IMAGE))
        r = DockerContainer(REGISTRY_IMAGE).with_exposed_ports(8080)
        stack.enter_context(r)
        wait_for_logs(r, "started in", timeout=120)
        cfg = m.get_config()
        state = StackState(
            run_dir=tempfile.mkdtemp(prefix="torghut-tc-"),
            kafka_bootstrap=k.get_bootstrap_server(),
            s3_endpoint=f"http://{cfg['endpoint']}",
            s3_access_key=cfg["access_key"],
            s3_secret_key=cfg["secret_key"],
            s3_bucket=minio.CHECKPOINT_BUCKET,
            registry_url=f"http://{r.get_container_host_ip()}:{r.get_exposed_port(8080)}{CCOMPAT}",
        )
        minio.ensure_bucket(
            state.s3_endpoint, state.s3_access_key, state.s3_secret_key, state.s3_bucket
        )
        kafka.create_topics(
            state.kafka_bootstrap,
            [
                (t.name, t.partitions, {**t.config(), "min.insync.replicas": "1"})
                for t in ALL_TOPICS
            ],
        )
        yield state
