"""The local standalone cluster's FLINK_CONF_DIR and dist layout (`torghut.flink_cluster`):
its `config.yaml` is the job's `flink_config` (the FlinkDeployment's source) over the
distribution's defaults, on loopback, without S3 keys; the S3 filesystem is a plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from flink_job.environment import flink_config
from flink_job.settings import TaSettings
from torghut.flink_cluster import FlinkCluster, prepare_distribution, write_conf_dir
from torghut.stack.paths import FLINK_LIB, FLINK_PLUGINS

VALUES: dict[str, Any] = {
    "s3_endpoint": "http://127.0.0.1:9000",
    "s3_access_key": "key-id",
    "s3_secret_key": "very-secret",
    "parallelism": 2,
}


def test_config_yaml_is_the_jobs_flink_config_on_loopback_without_s3_keys(tmp_path: Path):
    cluster = FlinkCluster(tmp_path, VALUES, rest_port=18081, rpc_port=16123)
    cfg = cluster.config()
    job = flink_config(TaSettings(**VALUES))
    secret = {"s3.access-key", "s3.secret-key"}
    assert {k: cfg[k] for k in job if k not in secret} == {
        k: v for k, v in job.items() if k not in secret
    }
    assert not secret & set(cfg)
    assert "very-secret" not in yaml.safe_dump(cfg)
    assert cfg["python.execution-mode"] == "thread"
    assert cfg["parallelism.default"] == "2"
    assert cfg["rest.port"] == "18081" and cfg["jobmanager.rpc.port"] == "16123"
    for key in ("rest.bind-address", "jobmanager.bind-host", "taskmanager.bind-host"):
        assert cfg[key] == "127.0.0.1"
    assert cfg["taskmanager.numberOfTaskSlots"] == "1"
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in cfg["env.java.opts.all"]
    assert cfg["env.log.dir"] == str(tmp_path / "log")

    write_conf_dir(tmp_path / "conf", cfg)
    loaded = yaml.safe_load((tmp_path / "conf" / "config.yaml").read_text())
    assert loaded == cfg
    assert (tmp_path / "conf" / "log4j-console.properties").exists()


def test_s3_keys_reach_the_processes_as_aws_env_like_the_pods(tmp_path: Path):
    cluster = FlinkCluster(tmp_path, VALUES)
    cluster.lib_dir, cluster.plugins_dir = tmp_path / "lib", tmp_path / "plugins"
    env = cluster.process_env("taskmanager-1")
    assert env["AWS_ACCESS_KEY_ID"] == "key-id"
    assert env["AWS_SECRET_ACCESS_KEY"] == "very-secret"
    assert not any(k.startswith("TORGHUT_TA_S3_") and "KEY" in k for k in env)
    assert env["TORGHUT_TA_PARALLELISM"] == "2"
    assert env["FLINK_CONF_DIR"] == str(tmp_path / "conf")
    assert env["FLINK_PLUGINS_DIR"] == str(tmp_path / "plugins")


@pytest.mark.skipif(
    not list(FLINK_PLUGINS.glob("s3-fs-hadoop/*.jar")) or not list(FLINK_LIB.glob("*.jar")),
    reason="JVM artifacts not built (make setup)",
)
def test_lib_is_the_images_lib_and_s3_and_prometheus_are_plugins(tmp_path: Path):
    lib, plugins = prepare_distribution(tmp_path)
    names = {p.name for p in lib.iterdir()}
    assert any(n.startswith("flink-dist-") for n in names)
    assert any(n.startswith("flink-connector-kafka-") for n in names)
    assert "torghut-flink-glue.jar" in names
    assert not any("s3-fs" in n or "prometheus" in n or "flink-python" in n for n in names)
    assert next(p.name for p in (plugins / "s3-fs-hadoop").iterdir()).startswith(
        "flink-s3-fs-hadoop-"
    )
    assert list((plugins / "metrics-prometheus").glob("flink-metrics-prometheus-*.jar"))
    # idempotent: a second prepare keeps the same links
    prepare_distribution(tmp_path)
    assert {p.name for p in lib.iterdir()} == names
