"""The stack state file: what `up` started, where, and how to reach it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

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

    def kafka_client_config(self) -> dict[str, str]:
        """confluent-kafka settings for the PLAINTEXT listener."""
        return {"bootstrap.servers": self.kafka_bootstrap}

    def kafka_scram_config(self) -> dict[str, str]:
        """confluent-kafka settings for the SASL_SSL/SCRAM-SHA-512 listener."""
        return {
            "bootstrap.servers": self.kafka_sasl_ssl_bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": self.kafka_scram_user,
            "sasl.password": self.kafka_scram_password,
            "ssl.ca.location": self.kafka_ca_file,
        }
