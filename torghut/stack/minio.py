"""MinIO (built from source with `go install`) as the S3 checkpoint store."""

from __future__ import annotations

import secrets
import urllib.request
from pathlib import Path
from typing import cast

from torghut.stack import procs
from torghut.stack.errors import MissingArtifactError, StackError
from torghut.stack.paths import MINIO_BIN

CHECKPOINT_BUCKET = "flink-checkpoints"


def start(
    run_dir: Path,
    port: int | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> dict[str, object]:
    """Start `minio server` on `run_dir`'s `minio/data`; a free port and a new root
    password unless given (`restart` gives the ones it had)."""
    if not MINIO_BIN.exists():
        raise MissingArtifactError(
            f"MinIO binary not found at {MINIO_BIN}; run `make setup` (go install) first"
        )
    port = port or procs.free_port()
    console = procs.free_port()
    data = run_dir / "minio" / "data"
    data.mkdir(parents=True, exist_ok=True)
    access, secret = access_key or "torghut", secret_key or secrets.token_urlsafe(18)
    log_file = run_dir / "logs" / "minio.log"
    pid = procs.spawn(
        [
            str(MINIO_BIN),
            "server",
            str(data),
            "--address",
            f"127.0.0.1:{port}",
            "--console-address",
            f"127.0.0.1:{console}",
            "--quiet",
        ],
        log_file,
        env={
            "MINIO_ROOT_USER": access,
            "MINIO_ROOT_PASSWORD": secret,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
        },
    )
    return {
        "pid": pid,
        "log_file": log_file,
        "ports": {"s3": port},
        "endpoint": f"http://127.0.0.1:{port}",
        "access_key": access,
        "secret_key": secret,
    }


def wait_ready(endpoint: str, pid: int, log_file: Path, timeout_s: float = 60.0) -> None:
    def check() -> bool:
        with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as resp:
            return bool(resp.status == 200)

    procs.wait_until("minio", log_file, pid, check, timeout_s, f"S3 API at {endpoint}")


def restart(
    run_dir: Path, endpoint: str, access_key: str, secret_key: str, timeout_s: float = 60.0
) -> dict[str, object]:
    """Start MinIO again after it was stopped (or killed): the same S3 address, data dir and
    credentials, so clients that knew it reach the same buckets and objects. Returns once
    its readiness endpoint answers (`timeout_s`); the result has the new pid. Fails with a
    `StackError` naming the port if the old process still holds it."""
    port = int(endpoint.rsplit(":", 1)[1])
    if procs.port_open(port):
        raise StackError(
            f"cannot restart MinIO on {endpoint}: port {port} still accepts connections; "
            "stop the old MinIO (its pid is in the stack's state.json) first"
        )
    m = start(run_dir, port=port, access_key=access_key, secret_key=secret_key)
    wait_ready(endpoint, cast(int, m["pid"]), cast(Path, m["log_file"]), timeout_s)
    return m


def client(endpoint: str, access_key: str, secret_key: str):
    from minio import Minio

    return Minio(
        endpoint.split("://", 1)[1],
        access_key=access_key,
        secret_key=secret_key,
        secure=endpoint.startswith("https"),
    )


def ensure_bucket(endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
    s3 = client(endpoint, access_key, secret_key)
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
