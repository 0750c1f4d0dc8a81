"""Availability of the rendered workloads: a JobManager PodDisruptionBudget that never blocks a
drain, none for the single-replica forwarder, startup and liveness probes for JobManager and
TaskManager (in the fields the vendored operator 1.13 CRD has), a standby JobManager in prod,
TaskManagers spread over nodes, a declared priority class, memory requests = limits.
docs/deploy.md, "Availability" and "JobManager HA"."""

from __future__ import annotations

import pytest

from tests.support.k8s import built, one
from torghut.k8s_render import (
    BASE_DIR,
    K8S_DIR,
    OVERLAYS,
    crd_schema,
    custom_resource_errors,
    find,
    pod_specs,
)

JM_LABELS = {"app": "torghut-ta", "component": "jobmanager", "type": "flink-native-kubernetes"}
JM_REPLICAS = {"dev": 1, "stage": 1, "prod": 2}


def _fd(overlay: str) -> dict:
    return one(built(overlay), "FlinkDeployment", "torghut-ta")


def _main_container(template: dict) -> dict:
    (c,) = template["spec"]["containers"]
    assert c["name"] == "flink-main-container"
    return c


def _allowed_disruptions(pdb: dict, replicas: int) -> int:
    """disruptionsAllowed with all ``replicas`` expected pods healthy (integer budgets, as the
    disruption controller computes it: healthy - desiredHealthy)."""
    spec = pdb["spec"]
    if "minAvailable" in spec:
        desired = int(spec["minAvailable"])
    else:
        desired = max(0, replicas - int(spec["maxUnavailable"]))
    return max(0, replicas - desired)


# --- disruption budgets ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_jobmanager_budget_lets_one_go_and_never_blocks_a_drain(overlay: str) -> None:
    docs = built(overlay)
    (pdb,) = find(docs, "PodDisruptionBudget")
    assert pdb["metadata"]["name"] == "torghut-ta-jobmanager"
    assert pdb["metadata"]["namespace"] == "torghut-ta"
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    sel = pdb["spec"]["selector"]["matchLabels"]
    template_labels = _fd(overlay)["spec"]["podTemplate"]["metadata"]["labels"]
    assert sel.items() <= {**template_labels, **JM_LABELS}.items()
    assert sel["component"] == "jobmanager"  # never the TaskManagers (owned by the JM Deployment)
    replicas = _fd(overlay)["spec"]["jobManager"]["replicas"]
    assert _allowed_disruptions(pdb, replicas) == 1  # one at a time, and one even when alone


def test_no_budget_selects_the_single_replica_forwarder_and_the_reason_is_written_down() -> None:
    for overlay in OVERLAYS:
        docs = built(overlay)
        fwd = one(docs, "Deployment", "torghut-forwarder")["spec"]["template"]["metadata"]
        for pdb in find(docs, "PodDisruptionBudget"):
            sel = pdb["spec"]["selector"]["matchLabels"]
            assert not sel.items() <= fwd["labels"].items(), pdb["metadata"]["name"]
    text = (BASE_DIR / "forwarder" / "deployment.yaml").read_text(encoding="utf-8")
    assert "No PodDisruptionBudget, on purpose" in text
    assert "minAvailable: 1" in text and "drain" in text


# --- probes ------------------------------------------------------------------------------------


def test_the_vendored_operator_crd_has_role_pod_templates_with_probes() -> None:
    schema = crd_schema("flink.apache.org", "FlinkDeployment", "v1beta1", "flink-operator-1.13.0")
    for role in ("jobManager", "taskManager"):
        pod = schema["properties"]["spec"]["properties"][role]["properties"]["podTemplate"]
        container = pod["properties"]["spec"]["properties"]["containers"]["items"]
        assert {"startupProbe", "livenessProbe"} <= set(container["properties"]), role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobmanager_and_taskmanager_have_startup_and_liveness_probes(overlay: str) -> None:
    fd = _fd(overlay)
    conf = fd["spec"]["flinkConfiguration"]
    ports = {"jobManager": int(conf["rest.port"]), "taskManager": int(conf["taskmanager.rpc.port"])}
    for role, port in ports.items():
        c = _main_container(fd["spec"][role]["podTemplate"])
        startup, liveness = c["startupProbe"], c["livenessProbe"]
        probed = {p.get("httpGet", p.get("tcpSocket", {})).get("port") for p in (startup, liveness)}
        assert probed == {port}, role
        # bounded (the operator's own JM startup probe never fails: Integer.MAX_VALUE)
        assert startup["periodSeconds"] * startup["failureThreshold"] <= 600, role
        # a liveness restart needs a minute of silence, not one slow answer
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60, role
        assert "tcpSocket" in liveness, role  # a standby JM answers REST slowly; never kill it
    assert custom_resource_errors(fd) == []


# --- HA, spread, priority ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prod_runs_a_standby_jobmanager_under_kubernetes_ha(overlay: str) -> None:
    spec = _fd(overlay)["spec"]
    assert spec["flinkConfiguration"]["high-availability.type"] == "kubernetes"
    assert spec["jobManager"]["replicas"] == JM_REPLICAS[overlay]
    # the patch kept the base's JobManager pod template and resources
    assert spec["jobManager"]["resource"]["memory"] == "2048m"
    assert _main_container(spec["jobManager"]["podTemplate"])["livenessProbe"]


def test_the_ha_store_choice_is_deliberate_and_documented() -> None:
    conf = _fd("prod")["spec"]["flinkConfiguration"]
    bucket = conf["execution.checkpointing.dir"].removesuffix("/checkpoints")
    assert conf["high-availability.storageDir"] == f"{bucket}/ha"
    deploy = (K8S_DIR.parent / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = deploy.split("## JobManager HA", 1)[1].split("\n## ", 1)[0]
    assert "high-availability.storageDir" in section and "same MinIO" in section


_UNIT_S = {"ms": 0.001, "s": 1, "min": 60, "h": 3600}


def _seconds(value: str) -> float:
    number, unit = value.split()
    return float(number) * _UNIT_S[unit]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_taskmanagers_keep_the_jobs_slots_while_a_new_jobmanager_comes_up(overlay: str) -> None:
    """A TaskManager that lost its JobManager frees the job's slots (and with the last one the
    job's user-code classloader, in which pemja loaded libpython) after
    `taskmanager.slot.timeout`. It must outlast the longest a new JobManager may take before
    Kubernetes gives up on it (its startup probe window) plus the leader lease (Flink's default
    15 s unless set), so the restored job (same id under HA) finds the classloader it had."""
    spec = _fd(overlay)["spec"]
    conf = spec["flinkConfiguration"]
    assert conf["high-availability.type"] == "kubernetes"  # the job id survives the restart
    startup = _main_container(spec["jobManager"]["podTemplate"])["startupProbe"]
    window_s = startup["periodSeconds"] * startup["failureThreshold"]
    lease_s = _seconds(
        conf.get("high-availability.kubernetes.leader-election.lease-duration", "15 s")
    )
    assert _seconds(conf["taskmanager.slot.timeout"]) >= window_s + lease_s


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_operator_replaces_the_cluster_when_the_job_restarts_in_a_loop(overlay: str) -> None:
    """The operator's health check (operator 1.13: ClusterHealthEvaluator) redeploys the cluster,
    TaskManagers included, when more than `restarts.threshold` restarts fall in
    `restarts.window`. A loop at the restart strategy's maximum backoff must exceed it within
    one window; the quick restarts of one failover (1, 2, 4 .. s until the maximum) must not."""
    spec = _fd(overlay)["spec"]
    conf = spec["flinkConfiguration"]
    assert conf["kubernetes.operator.cluster.health-check.enabled"] == "true"
    # the operator restarts an unhealthy non-stateless job only with HA (last state)
    assert conf["high-availability.type"] == "kubernetes"
    assert spec["job"]["upgradeMode"] != "stateless"
    window = _seconds(conf["kubernetes.operator.cluster.health-check.restarts.window"])
    threshold = int(conf["kubernetes.operator.cluster.health-check.restarts.threshold"])
    assert conf["restart-strategy.type"] == "exponential-delay"
    initial = _seconds(conf["restart-strategy.exponential-delay.initial-backoff"])
    maximum = _seconds(conf["restart-strategy.exponential-delay.max-backoff"])
    factor = float(conf["restart-strategy.exponential-delay.backoff-multiplier"])
    jitter = float(conf["restart-strategy.exponential-delay.jitter-factor"])
    # a loop that never recovers, every delay stretched by the jitter
    t, delay, loop = 0.0, initial, 0
    while True:
        t += min(delay, maximum) * (1 + jitter)
        if t > window:
            break
        loop += 1
        delay *= factor
    assert loop > threshold, (loop, threshold)
    # the restarts before the backoff reaches its maximum, all squeezed together
    burst = 1
    delay = initial
    while delay < maximum:
        burst += 1
        delay *= factor
    assert burst < threshold, (burst, threshold)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_taskmanagers_spread_over_nodes_and_jobmanagers_too(overlay: str) -> None:
    spec = _fd(overlay)["spec"]
    for role, component in (("taskManager", "taskmanager"), ("jobManager", "jobmanager")):
        constraints = spec[role]["podTemplate"]["spec"]["topologySpreadConstraints"]
        by_key = {c["topologyKey"]: c for c in constraints}
        host = by_key["kubernetes.io/hostname"]
        assert host["maxSkew"] == 1
        # a small cluster still schedules the job
        assert host["whenUnsatisfiable"] == "ScheduleAnyway"
        assert host["labelSelector"]["matchLabels"] == {"app": "torghut-ta", "component": component}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_long_running_pods_use_the_declared_priority_class(overlay: str) -> None:
    docs = built(overlay)
    (pc,) = find(docs, "PriorityClass")
    assert pc["preemptionPolicy"] == "Never" and pc["globalDefault"] is False
    fwd = one(docs, "Deployment", "torghut-forwarder")["spec"]["template"]["spec"]
    ta = _fd(overlay)["spec"]["podTemplate"]["spec"]
    assert fwd["priorityClassName"] == ta["priorityClassName"] == pc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_memory_requests_equal_limits(overlay: str) -> None:
    docs = built(overlay)
    for name, spec in pod_specs(docs):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            if name.startswith("FlinkDeployment/"):
                assert "resources" not in c  # the operator sets them from spec.*.resource
                continue
            res = c["resources"]
            assert res["requests"]["memory"] == res["limits"]["memory"], (name, c["name"])
    conf = _fd(overlay)["spec"]["flinkConfiguration"]
    for role in ("jobmanager", "taskmanager"):
        assert float(conf.get(f"kubernetes.{role}.memory.limit-factor", "1.0")) == 1.0
