"""Deployable as is: images by digest, overlay inputs that fail the build when unset and are
refused while placeholders, alert thresholds set by rule name, the Secrets pods need declared
for the reflector, NetworkPolicies before any Job, Jobs as idempotent Argo CD Sync hooks.
docs/deploy.md, "Overlay inputs", "Secrets" and "Argo CD"."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.support.k8s import built, one, wave
from torghut import k8s_cli
from torghut.k8s_render import (
    K8S_DIR,
    OVERLAYS,
    PLACEHOLDER_DIGEST,
    ManifestError,
    base_resource_docs,
    find,
    image_digest_problems,
    kustomize_bin,
    kustomize_build,
    load_yaml_docs,
    overlay_input_problems,
    overlay_inputs,
    pod_specs,
    required_inputs,
)

# alert -> the overlay input holding its threshold
THRESHOLD_INPUTS = {
    "TorghutForwarderReconnectRateHigh": "ALERT_FORWARDER_RECONNECTS_PER_MIN",
    "TorghutForwarderLagP99High": "ALERT_FORWARDER_LAG_P99_SECONDS",
    "TorghutTaConsumerLagHigh": "ALERT_TA_CONSUMER_LAG_MAX",
}
REFLECT = "reflector.v1.k8s.emberstack.com/"


def _k8s_copy(tmp_path: Path) -> Path:
    """k8s/ copied (without the vendored CRDs, which no build reads)."""
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    dst = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, dst, ignore=shutil.ignore_patterns("crds"))
    return dst


def _alert_exprs(docs: list[dict]) -> dict[str, str]:
    (rule,) = find(docs, "PrometheusRule", "torghut")
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


# --- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_our_images_are_pinned_by_digest_in_every_overlay(overlay: str) -> None:
    docs = built(overlay)
    assert image_digest_problems(docs) == []
    kust = yaml.safe_load((K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text())
    images = {i["name"]: i for i in kust["images"]}
    assert set(images) == {"torghut-forwarder", "torghut-flink"}
    assert all("newTag" not in i and i["digest"].startswith("sha256:") for i in images.values())


def test_a_tagged_image_is_caught() -> None:
    docs = [dict(d) for d in built("prod")]
    fd = one(docs, "FlinkDeployment", "torghut-ta")
    fd["spec"] = {**fd["spec"], "image": "torghut-flink:0.1.0"}
    assert image_digest_problems(docs) == ["torghut-flink:0.1.0: not pinned by a sha256 digest"]


# --- overlay inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_declares_every_input_and_the_render_uses_them(overlay: str) -> None:
    values = overlay_inputs(overlay)
    assert set(values) == set(required_inputs())
    docs = built(overlay)
    assert not find(docs, "ConfigMap", "torghut-overlay-inputs")  # local-config: never applied
    api = one(docs, "NetworkPolicy", "torghut-ta-apiserver")
    assert api["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] == values["APISERVER_CIDR"]
    exprs = _alert_exprs(docs)
    for alert, key in THRESHOLD_INPUTS.items():
        assert exprs[alert].rsplit(" > ", 1)[1] == values[key], alert
    text = (K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text()
    assert "/spec/groups/" not in text and "ipBlock" not in text  # no index patches left


def test_an_unset_input_fails_the_build_naming_it(tmp_path: Path) -> None:
    k8s = _k8s_copy(tmp_path)
    inputs = k8s / "overlays" / "prod" / "inputs.yaml"
    original = inputs.read_text()
    for key in required_inputs():
        inputs.write_text(re.sub(rf"^  {key}: .*\n", "", original, flags=re.MULTILINE))
        with pytest.raises(ManifestError, match=rf"data\.{key}` is missing"):
            kustomize_build(k8s / "overlays" / "prod")
    inputs.write_text(original)
    assert kustomize_build(k8s / "overlays" / "prod")


def _set_inputs(k8s: Path, overlay: str, cidr: str, digests: list[str]) -> None:
    d = k8s / "overlays" / overlay
    inputs = d / "inputs.yaml"
    inputs.write_text(
        re.sub(r"APISERVER_CIDR: .*", f"APISERVER_CIDR: {cidr}", inputs.read_text(), count=1)
    )
    kust = yaml.safe_load((d / "kustomization.yaml").read_text())
    for image, digest in zip(kust["images"], digests, strict=True):
        image["digest"] = digest
    (d / "kustomization.yaml").write_text(yaml.safe_dump(kust, sort_keys=False))


def test_check_inputs_refuses_the_placeholders_and_accepts_real_values(
    tmp_path: Path, capsys
) -> None:
    k8s = _k8s_copy(tmp_path)
    _set_inputs(k8s, "prod", "192.0.2.1/32", [PLACEHOLDER_DIGEST, PLACEHOLDER_DIGEST])
    problems = overlay_input_problems("prod", root=k8s)
    assert any(p.startswith("APISERVER_CIDR: still the placeholder") for p in problems)
    assert any(p.endswith("the placeholder digest") and "torghut-flink" in p for p in problems)
    assert any(p.endswith("the placeholder digest") and "torghut-forwarder" in p for p in problems)
    assert k8s_cli.run(k8s_cli_args("check-inputs", "prod", "--k8s-dir", str(k8s))) == 1
    assert "not deployable" in capsys.readouterr().err

    _set_inputs(k8s, "prod", "10.96.0.1/32", ["sha256:" + "a" * 64, "sha256:" + "b" * 64])
    assert overlay_input_problems("prod", root=k8s) == []
    assert k8s_cli.run(k8s_cli_args("check-inputs", "prod", "--k8s-dir", str(k8s))) == 0
    assert "every input is set" in capsys.readouterr().out


def k8s_cli_args(*argv: str):
    import argparse

    parser = argparse.ArgumentParser()
    k8s_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_thresholds_follow_their_rule_by_name_when_the_rules_are_reordered(tmp_path: Path) -> None:
    """Reverse the base's groups and every group's rules: each alert keeps its own threshold
    (a patch by list index would now write them into other rules)."""
    k8s = _k8s_copy(tmp_path)
    path = k8s / "base" / "monitoring" / "prometheusrule.yaml"
    (rule,) = load_yaml_docs(path)
    rule["spec"]["groups"] = [
        {**g, "rules": list(reversed(g["rules"]))} for g in reversed(rule["spec"]["groups"])
    ]
    path.write_text(yaml.safe_dump(rule, sort_keys=False))
    for overlay in OVERLAYS:
        values = overlay_inputs(overlay, k8s)
        moved = _alert_exprs(kustomize_build(k8s / "overlays" / overlay))
        assert moved == _alert_exprs(built(overlay)), overlay
        for alert, key in THRESHOLD_INPUTS.items():
            assert moved[alert].endswith(f" > {values[key]}"), (overlay, alert)


# --- Secrets the pods need, declared ------------------------------------------------------------


def _reflection(annotations: dict) -> dict[str, str]:
    return {k.removeprefix(REFLECT): v for k, v in annotations.items() if k.startswith(REFLECT)}


def test_the_secrets_pods_mount_from_elsewhere_are_declared_for_the_reflector() -> None:
    users = {u["metadata"]["name"]: u for u in find(base_resource_docs(), "KafkaUser")}
    ta = _reflection(users["torghut-ta"]["spec"]["template"]["secret"]["metadata"]["annotations"])
    assert ta == {
        "reflection-allowed": "true",
        "reflection-allowed-namespaces": "torghut-ta",
        "reflection-auto-enabled": "true",
        "reflection-auto-namespaces": "torghut-ta",
    }
    # the forwarder's and ClickHouse's passwords stay where Strimzi writes them (torghut)
    for name in ("torghut-forwarder", "torghut-clickhouse"):
        assert "template" not in users[name]["spec"], name
    (kafka,) = load_yaml_docs(K8S_DIR / "kafka-cluster" / "listeners.yaml")
    ca_meta = kafka["spec"]["kafka"]["template"]["clusterCaCert"]["metadata"]
    ca = _reflection(ca_meta["annotations"])
    assert ca["reflection-auto-enabled"] == ca["reflection-allowed"] == "true"
    # exactly the namespaces of the pods that mount it
    mounting = set()
    for overlay in OVERLAYS:
        docs = built(overlay)
        for name, spec in pod_specs(docs):
            secrets = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
            if "torghut-kafka-cluster-ca-cert" in secrets:
                mounting.add(one(docs, *name.split("/", 1))["metadata"]["namespace"])
    for key in ("reflection-allowed-namespaces", "reflection-auto-namespaces"):
        assert set(ca[key].split(",")) == mounting == {"torghut", "torghut-ta"}, key


# --- Argo CD: policies first, Jobs as idempotent hooks -----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_sync_before_any_job_configmap_or_workload(overlay: str) -> None:
    docs = built(overlay)
    policies = find(docs, "NetworkPolicy")
    assert policies
    last_policy = max(wave(p) for p in policies)
    later = [d for d in docs if d["kind"] in ("Job", "ConfigMap", "Deployment", "FlinkDeployment")]
    assert later and all(wave(d) > last_policy for d in later), [
        (d["kind"], d["metadata"]["name"], wave(d)) for d in later if wave(d) <= last_policy
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_are_sync_hooks_recreated_on_each_sync_without_a_ttl(overlay: str) -> None:
    jobs = find(built(overlay), "Job")
    assert {j["metadata"]["name"] for j in jobs} == {
        "torghut-register-schemas",
        "torghut-clickhouse-schema",
        "torghut-checkpoint-bucket",
    }
    for job in jobs:
        ann = job["metadata"]["annotations"]
        assert ann["argocd.argoproj.io/hook"] == "Sync", job["metadata"]["name"]
        policy = set(ann["argocd.argoproj.io/hook-delete-policy"].split(","))
        assert policy == {"BeforeHookCreation", "HookSucceeded"}, job["metadata"]["name"]
        assert "ttlSecondsAfterFinished" not in job["spec"], job["metadata"]["name"]


# mc ignores MinIO's "policy change already in effect" on attach since minio/mc#5058
MC_IDEMPOTENT_ATTACH = "2024-10-08"


def test_the_bucket_job_is_idempotent_step_by_step() -> None:
    job = one(built("prod"), "Job", "torghut-checkpoint-bucket")
    spec = job["spec"]["template"]["spec"]
    steps = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    assert steps["make-bucket"]["args"][:2] == ["mb", "--ignore-existing"]
    assert steps["create-policy"]["args"][:3] == ["admin", "policy", "create"]  # overwrites
    assert steps["add-user"]["args"][:3] == ["admin", "user", "add"]  # sets the same key again
    assert steps["attach-policy"]["args"][:3] == ["admin", "policy", "attach"]
    for c in steps.values():
        release = re.fullmatch(
            r"quay\.io/minio/mc:RELEASE\.(\d{4}-\d{2}-\d{2})T[\d-]+Z", c["image"]
        )
        assert release and release.group(1) >= MC_IDEMPOTENT_ATTACH, c["image"]
