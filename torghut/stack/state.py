"""The stack state file: what `up` started, where, and how to reach it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from shared.settings import KafkaConnection
from torghut.stack.errors import NoStackError
from torghut.stack.paths import STACK_HOME

STATE_FILE = "state.json"


class Component(BaseModel):
    name: str
    pid: int
    log_file: str
    ports: dict[str, int]


class StackState(BaseModel):
    """Everything a client needs to use a running local stack."""

    run_dir: str
    components: dict[str, Component] = {}
    kafka_bootstrap: str = ""  # PLAINTEXT listener
    kafka_sasl_ssl_bootstrap: str = ""  # SASL_SSL + SCRAM-SHA-512 listener
    kafka_ca_file: str = ""
    kafka_scram_user: str = ""
    kafka_scram_password: str = ""
    # PLAIN on the same SASL_SSL listener, for the embedded ClickHouse engine's drill only
    # (chdb-core's librdkafka has no SCRAM; torghut/stack/kafka.py)
    kafka_plain_user: str = ""
    kafka_plain_password: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_bucket: str = ""
    registry_url: str = ""

    def save(self) -> Path:
        path = Path(self.run_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, run_dir: str | Path | None = None) -> StackState:
        """Load a stack's state: the given run dir, $TORGHUT_STACK_DIR, or `.stack/current`."""
        base = Path(run_dir or os.environ.get("TORGHUT_STACK_DIR") or STACK_HOME / "current")
        path = base / STATE_FILE
        if not path.exists():
            raise NoStackError(
                f"no stack state at {path}; start one with `torghut stack up` "
                "(or point TORGHUT_STACK_DIR at a run dir)"
            )
        return cls.model_validate(json.loads(path.read_text()))

    def kafka_connection(self) -> KafkaConnection:
        """The PLAINTEXT listener, as the shared connection model."""
        return KafkaConnection(bootstrap=self.kafka_bootstrap)

    def kafka_scram_connection(self) -> KafkaConnection:
        """The SASL_SSL/SCRAM-SHA-512 listener, as the shared connection model."""
        return KafkaConnection(
            bootstrap=self.kafka_sasl_ssl_bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=self.kafka_scram_user,
            sasl_password=SecretStr(self.kafka_scram_password),
            ssl_ca_location=self.kafka_ca_file,
        )

    def kafka_client_config(self) -> dict[str, Any]:
        """confluent-kafka settings for the PLAINTEXT listener."""
        return self.kafka_connection().as_librdkafka_dict()

    def kafka_scram_config(self) -> dict[str, Any]:
        """confluent-kafka settings for the SASL_SSL/SCRAM-SHA-512 listener."""
        return self.kafka_scram_connection().as_librdkafka_dict()
