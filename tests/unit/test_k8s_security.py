"""k8s/ security contracts: every Kafka client of every overlay speaks
SASL_SSL with SCRAM, a mounted cluster CA and host-name verification; the TA job's Roles are
exactly what Flink's native Kubernetes mode with Kubernetes HA calls; the TA job's namespace
holds no pod that can name the Alpaca key or a MinIO admin credential."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from pydantic import ValidationError

from flink_job.settings import TaSettings
from forwarder.settings import ForwarderSettings
from tests.support.k8s import NAMESPACE, TA_NAMESPACE, built, one
from torghut.barcheck.settings import BarCheckSettings
from torghut.k8s_render import (
    K8S_DIR,
    OVERLAYS,
    STRIMZI_RELEASES,
    custom_resource_errors,
    find,
    load_yaml_docs,
    pod_specs,
)

CA_SECRET = "torghut-kafka-cluster-ca-cert"
# (workload, its settings ConfigMap, its settings class, its variables' prefix)
CLIENTS = [
    ("Deployment/torghut-forwarder", "torghut-forwarder-config", ForwarderSettings, "TORGHUT_FWD_"),
    ("FlinkDeployment/torghut-ta", "torghut-ta-config", TaSettings, "TORGHUT_TA_"),
    (
        "Deployment/torghut-bar-check",
        "torghut-bar-check-config",
        BarCheckSettings,
        "TORGHUT_CHECK_",
    ),
]

# Role torghut-ta, rule by rule: (apiGroup, resource, resourceNames, verbs). Each is a call of
# Flink 1.20's Fabric8FlinkKubeClient / KubernetesLeaderElector / KubernetesHaServices:
JOBMANAGER_RULES = {
    # createTaskManagerPod, stopPod, getPodsWithLabels (recovery), watchPodsAndDoCallback
    ("", "pods", (), ("create", "delete", "get", "list", "watch")),
    # leader election and job pointers: get, create, replace under a resourceVersion lock
    # (update), the shared informer (list, watch), deleteConfigMap (delete) and
    # deleteConfigMapsByLabels on cleanup (deletecollection)
    (
        "",
        "configmaps",
        (),
        ("create", "delete", "deletecollection", "get", "list", "update", "watch"),
    ),
    # its own Services (rest endpoint lookups)
    ("", "services", ("torghut-ta", "torghut-ta-rest"), ("get",)),
    # its own Deployment, made the owner of the TaskManager pods
    ("apps", "deployments", ("torghut-ta",), ("get",)),
    ("apps", "deployments/finalizers", ("torghut-ta",), ("update",)),
}
TASKMANAGER_RULES = {("", "configmaps", (), ("get", "list", "watch"))}
# what a pod in the TA job's namespace may name: its own KafkaUser password, the MinIO user
# scoped to the checkpoint bucket, the Kafka cluster CA certificate
TA_NAMESPACE_SECRETS = {"torghut-ta", "torghut-minio", CA_SECRET}
FORBIDDEN_IN_TA_NAMESPACE = {"torghut-alpaca", "torghut-minio-admin", "torghut-minio-root"}


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


# --- helpers (each returns problems; the tests below also feed them broken manifests) -------


def _rules(role: dict) -> set[tuple]:
    out = set()
    for r in role["rules"]:
        for group in r.get("apiGroups", []):
            for res in r.get("resources", []):
                out.add(
                    (
                        group,
                        res,
                        tuple(sorted(r.get("resourceNames", []))),
                        tuple(sorted(r["verbs"])),
                    )
                )
    return out


def rbac_problems(docs: list[dict]) -> list[str]:
    """Wildcards, Secrets access and privilege verbs in any Role or ClusterRole."""
    problems = []
    for role in find(docs, "Role") + find(docs, "ClusterRole"):
        name = f"{role['kind']}/{role['metadata']['name']}"
        for r in role.get("rules", []):
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                if "*" in r.get(field, []):
                    problems.append(f"{name}: wildcard in {field}")
            if "secrets" in r.get("resources", []):
                problems.append(f"{name}: grants access to secrets")
            if {"escalate", "bind", "impersonate"} & set(r.get("verbs", [])):
                problems.append(f"{name}: privilege verbs {r['verbs']}")
    return problems


def _secret_refs(spec: dict) -> set[str]:
    refs = set()
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add(ref["name"])
        for src in c.get("envFrom", []):
            if "secretRef" in src:
                refs.add(src["secretRef"]["name"])
    for v in spec.get("volumes", []):
        if "secret" in v:
            refs.add(v["secret"]["secretName"])
        for p in v.get("projected", {}).get("sources", []):
            if "secret" in p:
                refs.add(p["secret"]["name"])
    return refs


def ta_namespace_problems(docs: list[dict]) -> list[str]:
    """Pods of the TA job's namespace that can name a Secret beyond the job's own."""
    problems = []
    for name, spec in pod_specs(docs):
        kind, obj = name.split("/")
        if one(docs, kind, obj)["metadata"].get("namespace") != TA_NAMESPACE:
            continue
        refs = _secret_refs(spec)
        if refs & FORBIDDEN_IN_TA_NAMESPACE:
            problems.append(f"{name} references {sorted(refs & FORBIDDEN_IN_TA_NAMESPACE)}")
        if refs - TA_NAMESPACE_SECRETS:
            problems.append(
                f"{name} references Secrets beyond the job's own: {sorted(refs - TA_NAMESPACE_SECRETS)}"
            )
    return problems


def kafka_client_settings(docs: list[dict], workload: str, cm: str, cls, prefix: str):
    """The workload's settings as its process would build them (ConfigMap env plus a stand-in
    for each secret env), and the CA mount paths of its pod."""
    data = dict(one(docs, "ConfigMap", cm)["data"])
    kind, name = workload.split("/")
    doc = one(docs, kind, name)
    spec = dict(pod_specs([doc]))[workload]
    (container,) = [c for c in spec["containers"] if "envFrom" in c]
    env = {k: v for k, v in data.items() if k.startswith(prefix)}
    for e in container.get("env", []):
        if e["name"].startswith(prefix) and "valueFrom" in e:
            env[e["name"]] = "from-a-secret"
    if cls is ForwarderSettings:
        env |= {"TORGHUT_FWD_ALPACA_KEY_ID": "k", "TORGHUT_FWD_ALPACA_SECRET_KEY": "s"}
    vols = {
        v["name"]
        for v in spec.get("volumes", [])
        if v.get("secret", {}).get("secretName") == CA_SECRET
        and {"key": "ca.crt", "path": "ca.crt"} in v["secret"].get("items", [])
    }
    ca_files = {
        f"{m['mountPath']}/ca.crt"
        for m in container.get("volumeMounts", [])
        if m["name"] in vols and m.get("readOnly")
    }
    return env, ca_files


def _build_settings(cls, env: dict[str, str], monkeypatch):
    for k in list(os.environ):
        if k.startswith(("TORGHUT_FWD_", "TORGHUT_TA_", "TORGHUT_CHECK_")):
            monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return cls()


# --- Kafka: SASL_SSL everywhere -------------------------------------------------------------


@pytest.mark.parametrize(("workload", "cm", "cls", "prefix"), CLIENTS)
def test_every_kafka_client_is_sasl_ssl_scram_with_the_mounted_ca_and_host_verification(
    overlay, workload, cm, cls, prefix, monkeypatch
):
    env, ca_files = kafka_client_settings(built(overlay), workload, cm, cls, prefix)
    s = _build_settings(cls, env, monkeypatch)
    assert s.kafka.security_protocol == "SASL_SSL"
    assert s.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert s.kafka.bootstrap.endswith(":9093")
    assert s.kafka.ssl_ca_location in ca_files, f"{workload}: CA file is not the mounted cluster CA"
    rd = s.kafka.as_librdkafka_dict()
    assert rd["ssl.endpoint.identification.algorithm"] == "https"
    java = s.kafka.as_java_properties()
    assert java["ssl.endpoint.identification.algorithm"] == "https"
    assert java["ssl.truststore.type"] == "PEM"
    assert java["ssl.truststore.location"] == s.kafka.ssl_ca_location


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"KAFKA_SSL_CA_LOCATION": ""}, "KAFKA_SSL_CA_LOCATION is empty"),
        ({"KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": ""}, "only 'https'"),
    ],
)
@pytest.mark.parametrize(("workload", "cm", "cls", "prefix"), CLIENTS)
def test_prod_settings_without_a_ca_or_with_host_verification_off_fail_clearly(
    workload, cm, cls, prefix, change, message, monkeypatch
):
    env, _ = kafka_client_settings(built("prod"), workload, cm, cls, prefix)
    env |= {prefix + k: v for k, v in change.items()}
    with pytest.raises(ValidationError, match=message) as info:
        _build_settings(cls, env, monkeypatch)
    assert prefix + next(iter(change)) in str(info.value)


def test_clickhouse_consumes_over_sasl_ssl_on_9093(overlay):
    data = one(built(overlay), "ConfigMap", "torghut-clickhouse-kafka")["data"]
    assert data["TORGHUT_CH_KAFKA_BROKER"].endswith(":9093")
    xml = data["torghut-kafka.xml"]
    assert "<kafka_security_protocol>sasl_ssl</kafka_security_protocol>" in xml
    assert "<kafka_sasl_mechanism>SCRAM-SHA-512</kafka_sasl_mechanism>" in xml
    assert "<ssl_endpoint_identification_algorithm>https</" in xml


def test_kafka_egress_is_the_sasl_ssl_port_only_for_the_clients_we_configure(overlay):
    docs = built(overlay)
    for ns, name in (
        (NAMESPACE, "torghut-forwarder"),
        (TA_NAMESPACE, "torghut-ta"),
        (NAMESPACE, "torghut-bar-check"),
    ):
        (pol,) = [p for p in find(docs, "NetworkPolicy", name) if p["metadata"]["namespace"] == ns]
        kafka = [
            r
            for r in pol["spec"]["egress"]
            if r["to"][0]
            .get("namespaceSelector", {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name")
            == "kafka"
        ]
        assert [p["port"] for r in kafka for p in r["ports"]] == [9093], name


# --- RBAC ----------------------------------------------------------------------------------


def test_the_jobmanager_role_is_exactly_what_native_kubernetes_ha_calls(overlay):
    docs = built(overlay)
    role = one(docs, "Role", "torghut-ta")
    assert role["metadata"]["namespace"] == TA_NAMESPACE
    assert _rules(role) == JOBMANAGER_RULES
    assert _rules(one(docs, "Role", "torghut-ta-taskmanager")) == TASKMANAGER_RULES
    assert rbac_problems(docs) == []


def test_each_flink_service_account_is_bound_to_its_own_role_in_the_ta_namespace(overlay):
    docs = built(overlay)
    fd = one(docs, "FlinkDeployment", "torghut-ta")
    assert fd["spec"]["serviceAccount"] == "torghut-ta"
    conf = fd["spec"]["flinkConfiguration"]
    assert conf["kubernetes.taskmanager.service-account"] == "torghut-ta-taskmanager"
    for name in ("torghut-ta", "torghut-ta-taskmanager"):
        rb = one(docs, "RoleBinding", name)
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": name, "namespace": TA_NAMESPACE}
        ]
        assert one(docs, "ServiceAccount", name)["metadata"]["namespace"] == TA_NAMESPACE
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}, "wildcard in verbs"),
        ({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, "wildcard in resources"),
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, "wildcard in apiGroups"),
        ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}, "secrets"),
        (
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"]},
            "privilege",
        ),
    ],
)
def test_a_wildcard_secrets_access_or_privilege_verb_in_a_role_is_caught(rule, problem):
    docs = copy.deepcopy(built("prod"))
    one(docs, "Role", "torghut-ta")["rules"].append(rule)
    problems = rbac_problems(docs)
    assert len(problems) == 1 and problem in problems[0]
    assert _rules(one(docs, "Role", "torghut-ta")) != JOBMANAGER_RULES


# --- namespaces ----------------------------------------------------------------------------


def test_no_pod_in_the_ta_namespace_references_the_alpaca_key_or_a_minio_admin(overlay):
    docs = built(overlay)
    ta_pods = [
        n
        for n, _ in pod_specs(docs)
        if one(docs, *n.split("/"))["metadata"]["namespace"] == TA_NAMESPACE
    ]
    assert ta_pods == ["FlinkDeployment/torghut-ta"]
    assert ta_namespace_problems(docs) == []
    # and what those Secrets are for still lives in torghut
    refs = {n: _secret_refs(s) for n, s in pod_specs(docs)}
    assert "torghut-alpaca" in refs["Deployment/torghut-forwarder"]
    assert "torghut-minio-admin" in refs["Job/torghut-checkpoint-bucket"]
    assert one(docs, "Job", "torghut-checkpoint-bucket")["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize("secret", ["torghut-alpaca", "torghut-minio-admin", "torghut-forwarder"])
def test_a_ta_pod_naming_another_workloads_secret_is_caught(secret):
    docs = copy.deepcopy(built("prod"))
    spec = one(docs, "FlinkDeployment", "torghut-ta")["spec"]["podTemplate"]["spec"]
    spec["containers"][0]["env"].append(
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}
    )
    problems = ta_namespace_problems(docs)
    assert problems and secret in problems[-1]


def test_the_flink_operator_watches_only_the_ta_namespace_and_creates_no_job_role():
    for overlay in OVERLAYS:
        app = yaml.safe_load(
            (K8S_DIR / "argocd" / overlay / "apps" / "flink-operator.yaml").read_text()
        )
        values = app["spec"]["source"]["helm"]["valuesObject"]
        assert values["watchNamespaces"] == [TA_NAMESPACE]
        assert values["jobServiceAccount"] == {"create": False}
        assert values["rbac"] == {"jobRole": {"create": False}, "jobRoleBinding": {"create": False}}


# --- the broker side: the listener the clients need ------------------------------------------

LISTENERS_FILE = K8S_DIR / "kafka-cluster" / "listeners.yaml"


def _kafka_cr() -> dict:
    (doc,) = load_yaml_docs(LISTENERS_FILE)
    return doc


def test_the_kafka_listeners_validate_against_both_strimzi_kafka_crds():
    doc = _kafka_cr()
    assert (doc["kind"], doc["metadata"]["name"], doc["metadata"]["namespace"]) == (
        "Kafka",
        "torghut-kafka",
        "kafka",
    )
    for release in STRIMZI_RELEASES:
        assert custom_resource_errors(doc, release) == []
    # the strict check would catch a misspelt field of a listener
    bad = copy.deepcopy(doc)
    bad["spec"]["kafka"]["listeners"][0]["authentication"]["mechanism"] = "scram-sha-512"
    assert all(custom_resource_errors(bad, r) for r in STRIMZI_RELEASES)


def test_the_clients_port_is_the_tls_scram_listener(overlay):
    by_port = {x["port"]: x for x in _kafka_cr()["spec"]["kafka"]["listeners"]}
    docs = built(overlay)
    ports = {
        int(one(docs, "ConfigMap", cm)["data"][var].rsplit(":", 1)[1])
        for cm, var in (
            ("torghut-forwarder-config", "TORGHUT_FWD_KAFKA_BOOTSTRAP"),
            ("torghut-ta-config", "TORGHUT_TA_KAFKA_BOOTSTRAP"),
            ("torghut-clickhouse-kafka", "TORGHUT_CH_KAFKA_BROKER"),
        )
    }
    assert ports == {9093}
    listener = by_port[9093]
    assert listener["tls"] is True and listener["type"] == "internal"
    assert listener["authentication"] == {"type": "scram-sha-512"}
    # the KafkaUsers are SCRAM users of the same cluster
    for user in find(docs, "KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == _kafka_cr()["metadata"]["name"]
