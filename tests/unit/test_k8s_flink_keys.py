"""No FlinkDeployment key is one Flink 1.20 deprecated. The deprecated keys are not a list kept
here: they are read from the PyFlink wheel's flink-dist (and flink-python) jar, whose
ConfigOption fields declare them (`withDeprecatedKeys`), by a one-file Java program run with
the JDK (torghut.k8s_render.flink_deprecated_keys; docs/deploy.md, "Flink configuration keys")."""

from __future__ import annotations

import pytest

from tests.support.k8s import built, one
from torghut.k8s_render import OVERLAYS, ManifestError, flink_deprecated_keys


def deprecated() -> dict[str, tuple[str, ...]]:
    try:
        return flink_deprecated_keys()
    except ManifestError as exc:
        pytest.skip(f"cannot read Flink's ConfigOptions: {exc}")


def test_the_jar_reader_finds_the_renames_flink_1_20_made() -> None:
    """The check cannot pass vacuously: the reader sees the renames we know of."""
    keys = deprecated()
    assert keys["state.checkpoints.dir"] == ("execution.checkpointing.dir",)
    assert keys["state.savepoints.dir"] == ("execution.checkpointing.savepoint-dir",)
    assert keys["state.checkpoints.num-retained"] == ("execution.checkpointing.num-retained",)
    assert keys["execution.buffer-timeout"] == ("execution.buffer-timeout.interval",)
    assert keys["state.storage.fs.memory-threshold"] == (
        "execution.checkpointing.data-inline-threshold",
    )
    assert len(keys) > 100


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_flink_deployment_key_is_deprecated_in_flink_1_20(overlay: str) -> None:
    conf = one(built(overlay), "FlinkDeployment", "torghut-ta")["spec"]["flinkConfiguration"]
    keys = deprecated()
    used = {k: keys[k] for k in conf if k in keys}
    assert used == {}, f"deprecated keys (-> their Flink 1.20 names): {used}"


def test_no_key_the_job_or_the_local_cluster_sets_is_deprecated_in_flink_1_20(tmp_path) -> None:
    """The Python side too: the job's own job-level configuration (every optional branch of
    `flink_config` switched on, plus the restore path) and the `config.yaml` the standalone
    cluster (`torghut flink-cluster`) writes, distribution defaults and its ZooKeeper HA
    keys included."""
    from flink_job.environment import job_config
    from flink_job.settings import TaSettings
    from torghut.flink_cluster import ZooKeeperHA, cluster_config

    settings = TaSettings(
        s3_endpoint="http://127.0.0.1:9000",
        s3_access_key="key-id",
        s3_secret_key="secret",
        parallelism=2,
        metrics_port=9249,
    )
    job = job_config(settings, restore_from="s3a://bucket/torghut-ta/checkpoints/chk-1")
    assert {"execution.checkpointing.dir", "execution.state-recovery.path"} <= set(job)
    assert {"s3.endpoint", "metrics.reporter.prom.port", "parallelism.default"} <= set(job)
    cluster = cluster_config(settings, tmp_path, rest_port=18081, rpc_port=16123)
    cluster |= ZooKeeperHA("127.0.0.1:2181").config(settings.checkpoint_dir)  # the HA option
    keys = deprecated()
    used = {k: keys[k] for k in {*job, *cluster} if k in keys}
    assert used == {}, f"deprecated keys (-> their Flink 1.20 names): {used}"
