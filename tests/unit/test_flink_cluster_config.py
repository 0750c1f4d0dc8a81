"""The local standalone cluster's FLINK_CONF_DIR and dist layout (`torghut.flink_cluster`):
its `config.yaml` is the job's `flink_config` (the FlinkDeployment's source) over the
distribution's defaults, on loopback, without S3 keys; the S3 filesystem is a plugin."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from flink_job.environment import flink_config
from flink_job.settings import TaSettings
from torghut.flink_cluster import (
    FlinkCluster,
    FlinkClusterError,
    ZooKeeperHA,
    ha_job_id,
    prepare_distribution,
    write_conf_dir,
)
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


def test_ha_is_off_by_default_and_zookeeper_ha_keeps_its_store_beside_the_checkpoints(
    tmp_path: Path,
):
    """Without `ha` no `high-availability.*` key (the JobManager drill without HA is
    unchanged); with it Flink's ZooKeeper HA on the given quorum, the store `ha/` beside the
    checkpoint dir (as the FlinkDeployment: `.../torghut-ta/checkpoints` and `.../ha`), and
    `flink_overrides` over everything."""
    plain = FlinkCluster(tmp_path, VALUES).config()
    assert not any(k.startswith("high-availability") for k in plain)
    assert plain.get("high-availability.type", "NONE") == "NONE"

    cluster = FlinkCluster(
        tmp_path,
        {**VALUES, "checkpoint_dir": "s3a://flink-checkpoints/torghut-ta/checkpoints"},
        ha=ZooKeeperHA("127.0.0.1:2181", cluster_id="/drill"),
        flink_overrides={"taskmanager.slot.timeout": "6 min", "heartbeat.interval": "3 s"},
    )
    cfg = cluster.config()
    assert cfg["high-availability.type"] == "zookeeper"
    assert cfg["high-availability.zookeeper.quorum"] == "127.0.0.1:2181"
    assert cfg["high-availability.cluster-id"] == "/drill"
    assert cfg["high-availability.storageDir"] == "s3a://flink-checkpoints/torghut-ta/ha"
    assert cfg["high-availability.zookeeper.client.session-timeout"] == "15 s"
    assert cfg["taskmanager.slot.timeout"] == "6 min" and cfg["heartbeat.interval"] == "3 s"
    # the HA store names the checkpoint to restore: a path given by hand is refused
    with pytest.raises(FlinkClusterError, match=r"recovers the job .* from the HA store"):
        cluster.replace_jobmanager("s3a://flink-checkpoints/torghut-ta/checkpoints/0123/chk-1")


def test_the_ha_job_id_is_flinks_from_the_cluster_id_hash():
    """Application mode under HA: `new JobID(clusterId.hashCode(), 0).toHexString()`
    (Flink 1.20's ApplicationDispatcherBootstrap); the expected values were printed by
    flink-dist 1.20.5's own `JobID` (a negative hash widens with its sign)."""
    assert ha_job_id("/default") == "000000006e6b13320000000000000000"
    assert ha_job_id("torghut-ta") == "000000003df966e30000000000000000"
    assert ha_job_id("/torghut-ta") == "ffffffff93f638520000000000000000"


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


class _FakeProc:
    """Stands in for the Popen of a launched JVM: a pid, alive until `exit`."""

    def __init__(self, pid: int, argv: list[str]) -> None:
        self.pid, self.argv = pid, argv
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.returncode


def test_replace_jobmanager_restores_the_path_refuses_a_live_one_and_stop_reaps_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The local equivalent of a JobManager failover (`replace_jobmanager`): a second
    `standalone-job.sh` with `--fromSavepoint <checkpoint>` before the program's arguments,
    same ports (one config.yaml), its own name and log; refused while the old one lives;
    `stop` reaches the replaced JobManager and every TaskManager too."""
    import torghut.flink_cluster as fc

    launched: list[_FakeProc] = []

    def launch(argv, env, log_file, cwd=None, die_with_parent=True):
        launched.append(_FakeProc(100_000 + len(launched), list(argv)))
        return launched[-1]

    stopped: list[int] = []
    monkeypatch.setattr(fc.apps, "launch", launch)
    monkeypatch.setattr(fc.procs, "stop", lambda pid, timeout_s=20.0: stopped.append(pid))
    cluster = FlinkCluster(tmp_path, VALUES, rest_port=18081, rpc_port=16123)
    cluster.lib_dir, cluster.plugins_dir = tmp_path / "lib", tmp_path / "plugins"

    first = cluster.start_jobmanager()
    tms = [cluster.start_taskmanager() for _ in range(2)]
    assert first.name == "jobmanager" and "--fromSavepoint" not in launched[0].argv
    chk = "s3a://flink-checkpoints/cp/0123/chk-12"
    with pytest.raises(fc.FlinkClusterError, match="still running"):
        cluster.replace_jobmanager(chk)

    launched[0].returncode = -9  # kill -9
    second = cluster.replace_jobmanager(chk)
    argv = launched[-1].argv
    assert second.name == "jobmanager-2" and second.log_file.name == "jobmanager-2.out"
    assert argv[1].endswith("standalone-job.sh") and argv[2] == "start-foreground"
    i = argv.index("--fromSavepoint")
    assert argv[i + 1] == chk and argv.index("-pym") > i and argv[-1] == "flink_job"
    assert cluster.jobmanager is second and cluster.retired == [first]
    assert (cluster.rest_port, cluster.rpc_port) == (18081, 16123)

    # the TaskManagers restarted with it: the live ones kill -9-ed, as many fresh ones
    by_pid = {p.pid: p for p in launched}
    killed: list[tuple[int, int]] = []

    def killpg(pid: int, sig: int) -> None:
        killed.append((pid, sig))
        by_pid[pid].returncode = -sig

    monkeypatch.setattr(fc.os, "killpg", killpg)
    fresh = cluster.restart_taskmanagers()
    assert killed == [(tms[0].pid, signal.SIGKILL), (tms[1].pid, signal.SIGKILL)]
    assert [t.name for t in fresh] == ["taskmanager-3", "taskmanager-4"]
    assert all(t.alive() for t in fresh) and not any(t.alive() for t in tms)

    cluster.stop()
    assert stopped == [*(t.pid for t in reversed([*tms, *fresh])), second.pid, first.pid]
