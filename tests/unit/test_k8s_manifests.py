"""k8s/: every overlay builds, and the objects keep the security, config and alert contracts."""

from __future__ import annotations

import json
import re

import pytest

from shared.topics import ALL_TOPICS, CHECK_TOPICS, DERIVED_TOPICS, RAW_TOPICS
from tests.support.k8s import NAMESPACE, TA_NAMESPACE, built, one
from torghut.k8s_render import (
    BASE_DIR,
    K8S_DIR,
    OVERLAYS,
    base_resource_docs,
    find,
    kustomize_bin,
    kustomize_build,
    pod_specs,
)

SECRET_WORDS = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)


def configmap(docs: list[dict], name: str) -> dict[str, str]:
    return one(docs, "ConfigMap", name)["data"]


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


# --- build ---------------------------------------------------------------------------------


def test_overlay_builds_and_everything_lands_in_torghut_or_the_ta_namespace(overlay) -> None:
    docs = built(overlay)
    ta = set()
    for d in docs:
        if d["kind"] in ("Namespace", "PriorityClass"):  # cluster-scoped
            # only the TA job's own: torghut is the trading service's (test_k8s_sharing.py)
            assert (d["kind"], d["metadata"]["name"]) in {
                ("Namespace", TA_NAMESPACE),
                ("PriorityClass", "torghut-pipeline"),
            }
            assert "namespace" not in d["metadata"]
        elif d["metadata"].get("namespace") == TA_NAMESPACE:
            ta.add((d["kind"], d["metadata"]["name"]))
        else:
            assert d["metadata"].get("namespace") == NAMESPACE, d["metadata"]["name"]
    assert ta == {
        ("FlinkDeployment", "torghut-ta"),
        ("ConfigMap", "torghut-ta-config"),
        ("ServiceAccount", "torghut-ta"),
        ("ServiceAccount", "torghut-ta-taskmanager"),
        ("Role", "torghut-ta"),
        ("Role", "torghut-ta-taskmanager"),
        ("RoleBinding", "torghut-ta"),
        ("RoleBinding", "torghut-ta-taskmanager"),
        ("NetworkPolicy", "torghut-pipeline-default-deny"),
        ("NetworkPolicy", "torghut-pipeline-allow-dns"),
        ("NetworkPolicy", "torghut-ta"),
        ("NetworkPolicy", "torghut-ta-apiserver"),
        ("PodMonitor", "torghut-ta"),
        ("PodDisruptionBudget", "torghut-ta-jobmanager"),
    }
    kinds = {d["kind"] for d in docs}
    assert {
        "FlinkDeployment",
        "Deployment",
        "Service",
        "KafkaTopic",
        "KafkaUser",
        "Job",
        "NetworkPolicy",
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
    } <= kinds


def test_base_builds() -> None:
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    assert kustomize_build(BASE_DIR)


def test_no_secret_objects_or_inline_secret_values_in_git(overlay) -> None:
    docs = built(overlay)
    assert not find(docs, "Secret"), "secrets are created out of band (docs/deploy.md)"
    for name, spec in pod_specs(docs):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for env in c.get("env", []):
                if SECRET_WORDS.search(env["name"]) and "value" in env:
                    assert "$(" in env["value"], f"{name}: {env['name']} has an inline value"
    for cm in find(docs, "ConfigMap"):
        for key in cm.get("data", {}):
            assert not SECRET_WORDS.search(key) or key.endswith(".json"), (cm, key)


# --- forwarder -----------------------------------------------------------------------------


def test_forwarder_is_a_single_recreate_replica_with_probes(overlay) -> None:
    dep = one(built(overlay), "Deployment", "torghut-forwarder")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "forwarder"]
    assert c["image"].split("@")[0].split(":")[0].endswith("torghut-forwarder")
    assert c["ports"][0]["containerPort"] == 8080
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_forwarder_reads_secrets_only_from_secrets(overlay) -> None:
    docs = built(overlay)
    dep = one(docs, "Deployment", "torghut-forwarder")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
    assert refs["TORGHUT_FWD_ALPACA_KEY_ID"]["name"] == "torghut-alpaca"
    assert refs["TORGHUT_FWD_ALPACA_SECRET_KEY"]["name"] == "torghut-alpaca"
    assert refs["TORGHUT_FWD_KAFKA_SASL_PASSWORD"] == {
        "name": "torghut-forwarder",
        "key": "password",
    }
    cfg = configmap(docs, "torghut-forwarder-config")
    assert all(k.startswith("TORGHUT_FWD_") for k in cfg)
    assert not {
        "TORGHUT_FWD_ALPACA_KEY_ID",
        "TORGHUT_FWD_ALPACA_SECRET_KEY",
        "TORGHUT_FWD_KAFKA_SASL_PASSWORD",
    } & set(cfg)
    assert cfg["TORGHUT_FWD_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert cfg["TORGHUT_FWD_KAFKA_SECURITY_PROTOCOL"] in {"SASL_PLAINTEXT", "SASL_SSL"}
    assert cfg["TORGHUT_FWD_KAFKA_SASL_USERNAME"] == "torghut-forwarder"


def test_every_pod_is_non_root_read_only_and_drops_all_capabilities(overlay) -> None:
    specs = dict(pod_specs(built(overlay)))
    assert {
        "Deployment/torghut-forwarder",
        "FlinkDeployment/torghut-ta",
        "Job/torghut-clickhouse-schema",
        "Job/torghut-register-schemas",
        "Job/torghut-checkpoint-bucket",
    } <= set(specs)
    for name, spec in specs.items():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert "add" not in sc["capabilities"], (name, c["name"])
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}/{c['name']}: read-only root needs an emptyDir /tmp"
        tmp_volumes = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp_volumes and "emptyDir" in tmp_volumes[0], name


def test_forwarder_metrics_are_scraped_through_a_service(overlay) -> None:
    docs = built(overlay)
    svc = one(docs, "Service", "torghut-forwarder-metrics")
    assert svc["spec"]["ports"][0]["port"] == 8080
    sm = one(docs, "ServiceMonitor", "torghut-forwarder")
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


# --- Flink -----------------------------------------------------------------------------------


def test_flink_deployment_runs_the_python_job_with_savepoint_upgrades(overlay) -> None:
    fd = one(built(overlay), "FlinkDeployment", "torghut-ta")
    spec = fd["spec"]
    assert spec["flinkVersion"] == "v1_20"
    assert spec["image"].split("@")[0].split(":")[0].endswith("torghut-flink")
    job = spec["job"]
    assert job["upgradeMode"] == "savepoint"
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert re.fullmatch(r"local:///opt/flink/opt/flink-python-1\.20\.\d+\.jar", job["jarURI"])
    assert job["args"][job["args"].index("-pym") + 1] == "flink_job"  # python -m flink_job


_DURATION = re.compile(r"(\d+)\s*(ms|s|min)")
_MS = {"ms": 1, "s": 1000, "min": 60_000}


def _normalized(value: str) -> str:
    m = _DURATION.fullmatch(value.strip())
    return f"{int(m.group(1)) * _MS[m.group(2)]} ms" if m else value


def test_flink_configuration_agrees_with_the_local_job_settings(overlay) -> None:
    # the job applies flink_job.environment.flink_config (job-level configuration) over the
    # cluster's: every key both set must agree, or the FlinkDeployment says one thing and the
    # job does another (it said a 60 s checkpoint timeout while the job applied 120 s)
    from flink_job.environment import flink_config
    from flink_job.settings import TaSettings

    docs = built(overlay)
    conf = one(docs, "FlinkDeployment", "torghut-ta")["spec"]["flinkConfiguration"]
    env = configmap(docs, "torghut-ta-config")  # the job's environment in that overlay
    job = TaSettings(**{k.removeprefix("TORGHUT_TA_").lower(): v for k, v in env.items()})
    local = flink_config(job.model_copy(update={"s3_endpoint": conf["s3.endpoint"]}))
    # both use Flink 1.20's names (test_k8s_flink_keys.py), so a key is compared as spelled
    paths = {"python.executable", "python.client.executable"}  # the image's, not this venv's
    both = sorted(set(conf) & set(local) - paths)
    assert len(both) >= 25, both
    differ = {k: (conf[k], local[k]) for k in both if _normalized(conf[k]) != _normalized(local[k])}
    assert not differ, differ
    assert "parallelism.default" not in local, "the job must take the spec's job.parallelism"


def test_flink_configuration_has_the_contracted_settings(overlay) -> None:
    conf = one(built(overlay), "FlinkDeployment", "torghut-ta")["spec"]["flinkConfiguration"]
    assert conf["execution.checkpointing.interval"] == "10 s"
    assert conf["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert conf["restart-strategy.type"] == "exponential-delay"
    assert conf["high-availability.type"] == "kubernetes"
    assert conf["s3.path.style.access"] == "true"
    assert conf["python.execution-mode"] == "thread"
    assert conf["python.fn-execution.bundle.time"] == "5"
    assert int(conf["python.fn-execution.bundle.size"]) >= 1000
    assert conf["execution.buffer-timeout.interval"] == "1 ms"
    assert conf["pipeline.auto-watermark-interval"] == "50 ms"
    assert conf["pipeline.object-reuse"] == "true"
    assert conf["metrics.reporter.prom.factory.class"] == (
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    )
    assert conf["metrics.reporter.prom.port"] == "9249"
    bucket = conf["execution.checkpointing.dir"].removeprefix("s3a://").split("/")[0]
    assert conf["execution.checkpointing.dir"] == f"s3a://{bucket}/torghut-ta/checkpoints"
    assert conf["execution.checkpointing.savepoint-dir"] == f"s3a://{bucket}/torghut-ta/savepoints"
    # the HA store shares the checkpoints' bucket on purpose (docs/deploy.md, "JobManager HA")
    assert conf["high-availability.storageDir"] == f"s3a://{bucket}/torghut-ta/ha"
    assert not any(SECRET_WORDS.search(k) for k in conf), "S3 keys come from the pod env"


def test_flink_bucket_matches_the_provisioning_job_and_its_policy(overlay) -> None:
    docs = built(overlay)
    conf = one(docs, "FlinkDeployment", "torghut-ta")["spec"]["flinkConfiguration"]
    bucket = conf["execution.checkpointing.dir"].removeprefix("s3a://").split("/")[0]
    store = configmap(docs, "torghut-checkpoint-store")
    assert store["CHECKPOINT_BUCKET"] == bucket
    assert conf["s3.endpoint"].endswith(store["MINIO_HOSTPORT"])
    policy = json.loads(configmap(docs, "torghut-checkpoint-policy")["checkpoint-policy.json"])
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}


def test_flink_pods_get_secrets_from_secrets_and_settings_from_the_configmap(overlay) -> None:
    docs = built(overlay)
    fd = one(docs, "FlinkDeployment", "torghut-ta")
    (c,) = fd["spec"]["podTemplate"]["spec"]["containers"]
    assert c["name"] == "flink-main-container"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert refs["TORGHUT_TA_KAFKA_SASL_PASSWORD"] == {"name": "torghut-ta", "key": "password"}
    assert refs["AWS_ACCESS_KEY_ID"] == {"name": "torghut-minio", "key": "access-key"}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "torghut-minio", "key": "secret-key"}
    cfg = configmap(docs, "torghut-ta-config")
    assert cfg["TORGHUT_TA_TRANSACTIONAL_ID_PREFIX"] == f"torghut-ta-{overlay}"
    assert cfg["TORGHUT_TA_KAFKA_SASL_USERNAME"] == "torghut-ta"
    assert {
        "TORGHUT_TA_KAFKA_BOOTSTRAP",
        "TORGHUT_TA_REGISTRY_URL",
        "TORGHUT_TA_OUT_OF_ORDERNESS_MS",
        "TORGHUT_TA_IDLENESS_MS",
    } <= set(cfg)


# --- Kafka -----------------------------------------------------------------------------------


def _acls(user: dict) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        r = acl["resource"]
        out.setdefault((r["type"], r.get("name", "")), set()).update(acl["operations"])
    return out


def test_kafka_users_are_scram_and_scoped_to_the_catalog_topics() -> None:
    docs = base_resource_docs()
    raw, derived = {t.name for t in RAW_TOPICS}, {t.name for t in DERIVED_TOPICS}
    users = {u["metadata"]["name"]: u for u in find(docs, "KafkaUser")}
    assert set(users) == {
        "torghut-forwarder",
        "torghut-ta",
        "torghut-clickhouse",
        "torghut-bar-check",
        "torghut-canary",
    }
    for u in users.values():
        assert u["spec"]["authentication"]["type"] == "scram-sha-512"
    fwd, ta, ch = (
        _acls(users[n]) for n in ("torghut-forwarder", "torghut-ta", "torghut-clickhouse")
    )

    def topics(acls, op):
        return {name for (kind, name), ops in acls.items() if kind == "topic" and op in ops}

    assert topics(fwd, "Write") == raw and "IdempotentWrite" in fwd[("cluster", "")]
    assert not any(kind == "group" for kind, _ in fwd)
    assert topics(ta, "Read") == raw and topics(ta, "Write") == derived
    assert ta[("transactionalId", "torghut-ta-")] >= {"Write", "Describe"}
    assert "Read" in ta[("group", "torghut-ta")]
    checks = {t.name for t in CHECK_TOPICS}
    assert topics(ch, "Read") == derived | checks and topics(ch, "Write") == set()
    assert "Read" in ch[("group", "torghut-clickhouse")]
    # the minute check reads the job's bars and status and Alpaca's minute bars, writes checks
    bc = _acls(users["torghut-bar-check"])
    assert topics(bc, "Read") == {"ta.bars.1s.v1", "ta.status.v1", "torghut.bars.1m.v1"}
    assert topics(bc, "Write") == checks
    assert "Read" in bc[("group", "torghut-bar-check")]
    # the canary reads the raw trades and quotes and the job's bars and signals, writes nothing
    canary = _acls(users["torghut-canary"])
    assert topics(canary, "Read") == {
        "torghut.trades.v1",
        "torghut.quotes.v1",
        "ta.bars.1s.v1",
        "ta.signals.v1",
    }
    assert not any("Write" in ops for ops in canary.values())
    assert "Read" in canary[("group", "torghut-canary")]  # a prefix: its two groups


def test_topic_and_user_crs_name_the_same_strimzi_cluster(overlay) -> None:
    docs = built(overlay)
    crs = find(docs, "KafkaTopic") + find(docs, "KafkaUser")
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in crs} == {"torghut-kafka"}
    assert {d["spec"]["topicName"] for d in find(docs, "KafkaTopic")} == {
        t.name for t in ALL_TOPICS
    }


def test_replication_follows_the_environment(overlay) -> None:
    topics = find(built(overlay), "KafkaTopic")
    expected = 1 if overlay == "dev" else 3
    assert {t["spec"]["replicas"] for t in topics} == {expected}
    assert {t["spec"]["config"]["min.insync.replicas"] for t in topics} == {str(min(2, expected))}


def test_the_ta_job_parallelism_fits_the_raw_partitions_and_symbol_topics_agree(overlay) -> None:
    """The partition count is one setting (`shared.topics.catalog`): every symbol-keyed
    KafkaTopic of an overlay has the same count, the status topics one, and the TA job's
    parallelism is not above it (a source subtask without a partition idles: a slot and a
    TaskManager's Python workers for nothing)."""
    from shared.topics import BY_NAME, TRADES

    docs = built(overlay)
    parts = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in find(docs, "KafkaTopic")}
    keyed = {n: p for n, p in parts.items() if BY_NAME[n].key == "symbol"}
    assert len(set(keyed.values())) == 1, f"symbol topics disagree: {keyed}"
    assert {p for n, p in parts.items() if n not in keyed} == {1}
    fd = one(docs, "FlinkDeployment", "torghut-ta")["spec"]
    parallelism = fd["job"].get("parallelism", 1)
    assert 1 <= parallelism <= parts[TRADES.name], (parallelism, parts[TRADES.name])


def test_the_minute_check_waits_for_a_watermark_from_every_subtask_of_the_job(overlay) -> None:
    """The check applies the lowest watermark of `TORGHUT_CHECK_TA_SUBTASKS` subtasks
    (docs/design.md, "The minute check"): fewer than the job's parallelism would complete
    minutes on one subtask's word."""
    docs = built(overlay)
    fd = one(docs, "FlinkDeployment", "torghut-ta")["spec"]
    cfg = one(docs, "ConfigMap", "torghut-bar-check-config")["data"]
    assert int(cfg["TORGHUT_CHECK_TA_SUBTASKS"]) == fd["job"].get("parallelism", 1)


def test_the_canary_labels_the_symbols_the_forwarder_subscribes(overlay) -> None:
    """The canary's metric labels are its configured symbols (bounded cardinality): they
    must be the forwarder's, or a subscribed symbol goes unwatched."""
    docs = built(overlay)
    fwd = one(docs, "ConfigMap", "torghut-forwarder-config")["data"]["TORGHUT_FWD_SYMBOLS"]
    canary = one(docs, "ConfigMap", "torghut-canary-config")["data"]["TORGHUT_CANARY_SYMBOLS"]
    assert canary.split(",") == fwd.split(",")


# --- overlays differ only where they should ----------------------------------------------------


def test_overlays_vary_alpaca_endpoint_bucket_and_thresholds() -> None:
    def fingerprint(overlay: str) -> tuple[str, str, str]:
        docs = built(overlay)
        alpaca = configmap(docs, "torghut-forwarder-config")["TORGHUT_FWD_ALPACA_URL"]
        conf = one(docs, "FlinkDeployment", "torghut-ta")["spec"]["flinkConfiguration"]
        rule = one(docs, "PrometheusRule", "torghut")
        return alpaca, conf["execution.checkpointing.dir"], json.dumps(rule["spec"])

    prints = {o: fingerprint(o) for o in OVERLAYS}
    for field in range(3):
        assert len({p[field] for p in prints.values()}) == 3, field
    assert "sandbox" in prints["dev"][0] and "sandbox" not in prints["prod"][0]
    assert prints["prod"][0].endswith("/v2/sip")
    assert prints["prod"][1] == "s3a://flink-checkpoints/torghut-ta/checkpoints"


def test_overlays_only_patch_allowed_kinds() -> None:
    allowed = {"FlinkDeployment", "NetworkPolicy", "PrometheusRule", "KafkaTopic"}
    base = {(d["kind"], d["metadata"]["name"]): d for d in built("prod")}
    for overlay in ("dev", "stage"):
        docs = {(d["kind"], d["metadata"]["name"]): d for d in built(overlay)}
        assert docs.keys() == base.keys()
        changed = {k[0] for k, d in docs.items() if _strip(d) != _strip(base[k])}
        assert changed - {"ConfigMap"} <= allowed, changed


def _strip(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["metadata"].get("labels", {}).pop("torghut.dev/env", None)
    for _, spec in pod_specs([doc]):
        for c in spec.get("containers", []):
            c.pop("image", None)
    doc.get("spec", {}).pop("image", None) if doc["kind"] == "FlinkDeployment" else None
    return doc


# --- alerts --------------------------------------------------------------------------------

THRESHOLDS = {"dev": ("10", "2.0"), "stage": ("5", "1.0"), "prod": ("3", "0.5")}


def test_prometheus_rule_carries_the_seed_alerts_with_env_thresholds(overlay) -> None:
    rule = one(built(overlay), "PrometheusRule", "torghut")
    rules = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    reconnect, lag = THRESHOLDS[overlay]
    assert "torghut_forwarder_reconnects_total" in rules["TorghutForwarderReconnectRateHigh"]
    assert rules["TorghutForwarderReconnectRateHigh"].endswith(f"> {reconnect}")
    assert "torghut_forwarder_event_lag_seconds_bucket" in rules["TorghutForwarderLagP99High"]
    assert rules["TorghutForwarderLagP99High"].endswith(f"> {lag}")
    assert "torghut_forwarder_produce_errors_total" in rules["TorghutForwarderProduceErrors"]
    assert "lastCompletedCheckpointId" in rules["TorghutTaCheckpointStale"]
    assert "[20s]" in rules["TorghutTaCheckpointStale"]  # 2 x the 10 s interval
    assert "numberOfFailedCheckpoints" in rules["TorghutTaCheckpointFailures"]
    assert "[5m]" in rules["TorghutTaSinkTransactionFailures"]
    assert "flink_jobmanager_job_numRestarts" in rules["TorghutTaJobRestarts"]
    assert "kube_pod_container_status_restarts_total" in rules["TorghutTaPodRestarts"]


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    runbook = (K8S_DIR.parent / "docs" / "runbooks.md").read_text(encoding="utf-8")
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbook, flags=re.MULTILINE)
    }
    rule = find(base_resource_docs(), "PrometheusRule", "torghut")[0]
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            anchor = r["annotations"]["runbook_url"].split("runbooks.md", 1)[1]
            assert anchor in anchors, (r["alert"], anchor)


def test_dashboards_are_valid_json_configmaps_with_the_seed_panels(overlay) -> None:
    cm = one(built(overlay), "ConfigMap", "torghut-dashboards")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    titles = " | ".join(
        p["title"].lower() for body in cm["data"].values() for p in json.loads(body)["panels"]
    )
    for needle in (
        "lag histogram",
        "consumer lag",
        "watermark",
        "checkpoint duration",
        "checkpoint age",
        "sink transaction failure",
    ):
        assert needle in titles, needle


# --- network ---------------------------------------------------------------------------------


def _policies(docs: list[dict], namespace: str = NAMESPACE) -> dict[str, dict]:
    return {
        p["metadata"]["name"]: p["spec"]
        for p in find(docs, "NetworkPolicy")
        if p["metadata"]["namespace"] == namespace
    }


def _egress_ports(spec: dict) -> set[int]:
    return {p["port"] for rule in spec.get("egress", []) for p in rule.get("ports", [])}


def test_our_pods_are_default_deny_with_dns_allowed(overlay) -> None:
    # in both namespaces: every pod of ours (the project label), never the namespace as a whole
    ours = {"matchLabels": {"torghut.dev/pipeline": "torghut-ta"}}
    for namespace in (NAMESPACE, TA_NAMESPACE):
        pol = _policies(built(overlay), namespace)
        deny = pol["torghut-pipeline-default-deny"]
        assert deny == {"podSelector": ours, "policyTypes": ["Ingress", "Egress"]}
        assert pol["torghut-pipeline-allow-dns"]["podSelector"] == ours
        assert _egress_ports(pol["torghut-pipeline-allow-dns"]) == {53}


def test_forwarder_egress_is_only_alpaca_kafka_and_registry(overlay) -> None:
    spec = _policies(built(overlay))["torghut-forwarder"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "torghut-forwarder",
        "torghut.dev/pipeline": "torghut-ta",
    }
    assert _egress_ports(spec) == {443, 9093, 8081}  # Kafka: the SASL_SSL listener only
    (internet,) = [r for r in spec["egress"] if "ipBlock" in r["to"][0]]
    assert [p["port"] for p in internet["ports"]] == [443]
    assert "10.0.0.0/8" in internet["to"][0]["ipBlock"]["except"]
    assert [p["port"] for r in spec["ingress"] for p in r["ports"]] == [8080]


def test_flink_egress_is_only_kafka_minio_registry_and_the_api_server(overlay) -> None:
    pol = _policies(built(overlay), TA_NAMESPACE)
    assert _egress_ports(pol["torghut-ta"]) == {9093, 9000, 443, 8081}
    minio_rules = [
        r
        for r in pol["torghut-ta"]["egress"]
        if r["to"][0]
        .get("namespaceSelector", {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == "minio"
    ]
    assert minio_rules, "Flink must reach MinIO"
    api = pol["torghut-ta-apiserver"]["egress"][0]
    assert api["to"][0]["ipBlock"]["cidr"] != "0.0.0.0/0"
    ingress_ports = {p["port"] for r in pol["torghut-ta"]["ingress"] for p in r.get("ports", [])}
    assert 9249 in ingress_ports


def test_every_workload_pod_is_selected_by_a_specific_network_policy(overlay) -> None:
    docs = built(overlay)
    for name, _spec in pod_specs(docs):
        doc_kind, doc_name = name.split("/")
        pol = _policies(docs, one(docs, doc_kind, doc_name)["metadata"]["namespace"])
        selectors = [
            s["podSelector"].get("matchLabels", {}) for s in pol.values() if s["podSelector"]
        ]
        if doc_kind == "FlinkDeployment":
            # the operator sets app=<name> on JM and TM pods, over the pod template's labels
            template = one(docs, doc_kind, doc_name)["spec"]["podTemplate"]
            labels = {**template["metadata"]["labels"], "app": doc_name}
        else:
            labels = one(docs, doc_kind, doc_name)["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in selectors), name
