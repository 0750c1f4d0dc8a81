"""Confluent-compatible schema registry (Apicurio Registry, ccompat API) — see jvm/registry."""

from __future__ import annotations

from pathlib import Path

from torghut.stack import procs
from torghut.stack.errors import MissingArtifactError
from torghut.stack.paths import REGISTRY_JAR


def start(run_dir: Path, kafka_bootstrap: str) -> dict[str, object]:
    if not REGISTRY_JAR.exists():
        raise MissingArtifactError(
            f"registry not built at {REGISTRY_JAR}; run `make setup` (Maven/Quarkus build)"
        )
    raise NotImplementedError("registry start is wired once jvm/registry lands")


def wait_ready(url: str, pid: int, log_file: Path, timeout_s: float = 120.0) -> None:
    del url, pid, log_file, timeout_s, procs
