"""Where build artifacts and stack run dirs live (one place, overridable by env)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TORGHUT_ARTIFACTS", REPO_ROOT / ".artifacts"))
KAFKA_LIBS = ARTIFACTS / "kafka" / "libs"
FLINK_LIB = ARTIFACTS / "flink" / "lib"
FLINK_PLUGINS = ARTIFACTS / "flink" / "plugins"
ZOOKEEPER_LIBS = ARTIFACTS / "zookeeper" / "libs"
REGISTRY_JAR = ARTIFACTS / "registry" / "quarkus-app" / "quarkus-run.jar"
MINIO_BIN = ARTIFACTS / "bin" / "minio"
STACK_HOME = Path(os.environ.get("TORGHUT_STACK_HOME", REPO_ROOT / ".stack"))
# What the local pipeline keeps between runs (the stack's Kafka/MinIO run dirs are per run):
# the embedded ClickHouse tables, the forwarder's recordings, backfill positions and seeds.
DATA_HOME = Path(os.environ.get("TORGHUT_DATA_HOME", REPO_ROOT / ".data"))
CLICKHOUSE_DIR = DATA_HOME / "clickhouse"
RECORDINGS_DIR = DATA_HOME / "recordings"
BACKFILL_DIR = DATA_HOME / "backfill"
