"""Confluent-compatible schema registry: Apicurio Registry 2.6 (in-memory storage, its
`ccompat` API), unpacked from Maven Central by jvm/registry. Global compatibility is set
to BACKWARD at start (Apicurio defaults to NONE)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from torghut.stack import procs
from torghut.stack.errors import ComponentStartError, MissingArtifactError
from torghut.stack.paths import REGISTRY_JAR

CCOMPAT = "/apis/ccompat/v7"


def start(run_dir: Path, kafka_bootstrap: str) -> dict[str, object]:
    del kafka_bootstrap  # in-memory storage; Karapace in production keeps schemas in Kafka
    if not REGISTRY_JAR.exists():
        raise MissingArtifactError(
            f"schema registry not unpacked at {REGISTRY_JAR}; run `make setup` (Maven fetch)"
        )
    port = procs.free_port()
    log_file = run_dir / "logs" / "registry.log"
    pid = procs.spawn(
        [
            "java",
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "-XX:ReservedCodeCacheSize=48m",
            "-Xss512k",
            f"-Dquarkus.http.port={port}",
            "-Dquarkus.http.host=127.0.0.1",
            "-Dquarkus.datasource.jdbc.initial-size=2",
            "-Dquarkus.datasource.jdbc.min-size=2",
            "-jar",
            str(REGISTRY_JAR),
        ],
        log_file,
        cwd=REGISTRY_JAR.parent,
    )
    return {
        "pid": pid,
        "log_file": log_file,
        "ports": {"http": port},
        "url": f"http://127.0.0.1:{port}{CCOMPAT}",
    }


def wait_ready(url: str, pid: int, log_file: Path, timeout_s: float = 120.0) -> None:
    base = url.removesuffix(CCOMPAT)

    def check() -> bool:
        with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    procs.wait_until("registry", log_file, pid, check, timeout_s, f"registry at {base}")
    req = urllib.request.Request(
        f"{url}/config",
        method="PUT",
        data=json.dumps({"compatibility": "BACKWARD"}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise ComponentStartError(
                "registry", str(log_file), f"setting BACKWARD got {resp.status}"
            )
