"""Every built-in object in k8s/ validates against Kubernetes' own schemas, offline.

Built-in means an apiVersion whose group Kubernetes itself serves (core ``v1``, ``apps``,
``batch``, ``networking.k8s.io``, ``policy``, ``rbac.authorization.k8s.io``,
``scheduling.k8s.io``...), read from the schemas the PyPI package kubernetes-validate bundles
per Kubernetes version. The version is the lowest docs/deploy.md supports
(``KUBERNETES_VERSION``), so a field added after it fails here. Validation is strict: an
unknown field is an error, as with ``kubectl apply --validate=strict``. Custom resources are
test_k8s_crds.py's (the operators' vendored CRDs); the Flink Pod templates they carry are
checked here too, as ``v1`` ``Pod``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate  # a pinned dev dependency: missing, this module fails, not skips
import pytest

from tests.support.k8s import built, one
from torghut.k8s_render import (
    BASE_DIR,
    CRD_RELEASES,
    K8S_DIR,
    KUBERNETES_VERSION,
    OVERLAYS,
    REPO_ROOT,
    api_group,
    base_resource_docs,
    builtin_api_groups,
    core_schema_errors,
    embedded_builtin_objects,
    is_builtin,
    kustomize_bin,
    kustomize_build,
    load_yaml_docs,
)

# custom resources no vendored CRD covers: the Prometheus Operator's monitors and rules
UNVALIDATED_GROUPS = frozenset({"monitoring.coreos.com"})
# what the base and every overlay render, by kind: a kind leaving this list fails the
# coverage test below, so a renamed or dropped kind is noticed rather than silently unchecked
EXPECTED_BUILTIN_KINDS = {
    "ConfigMap",
    "Deployment",
    "Job",
    "Namespace",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "PriorityClass",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
}


def _base_built() -> list[dict]:
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    return kustomize_build(BASE_DIR)


def _sources() -> list[tuple[str, dict]]:
    """(file, document) of every YAML document under k8s/base and k8s/overlays (no CRDs)."""
    out = []
    for root in (K8S_DIR / "base", K8S_DIR / "overlays", K8S_DIR / "components"):
        for path in sorted(root.rglob("*.yaml")):
            for doc in load_yaml_docs(path):
                out.append((str(path.relative_to(REPO_ROOT)), doc))
    return out


def all_errors(docs: list[dict]) -> list[str]:
    problems = []
    for d in docs:
        if is_builtin(d):
            problems += core_schema_errors(d)
        for path, obj in embedded_builtin_objects(d):
            problems += [f"{d['metadata']['name']} {path}: {e}" for e in core_schema_errors(obj)]
    return problems


# --- the version and the package --------------------------------------------------------------


def test_the_version_is_the_one_docs_deploy_md_states_as_the_lowest_supported() -> None:
    text = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    row = re.search(r"^\| Kubernetes \| ([0-9.]+) or later \|.*$", text, re.MULTILINE)
    assert row, "docs/deploy.md 'Supported versions' has no '| Kubernetes | X.Y or later |' row"
    assert row.group(1) == KUBERNETES_VERSION
    assert "tests/unit/test_k8s_core_schemas.py" in row.group(0)


def test_kubernetes_validate_is_a_pinned_dev_dependency() -> None:
    assert kubernetes_validate.__version__ == "1.37.0"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^\s*"kubernetes-validate==1\.37\.0",', pyproject, re.MULTILINE)


def test_the_builtin_groups_come_from_the_bundled_schemas() -> None:
    groups = builtin_api_groups()
    assert {"", "apps", "batch", "policy", "networking.k8s.io"} <= groups
    assert {"rbac.authorization.k8s.io", "scheduling.k8s.io"} <= groups
    assert not groups & (set(CRD_RELEASES) | UNVALIDATED_GROUPS)
    assert api_group({"apiVersion": "v1"}) == ""
    assert api_group({"apiVersion": "rbac.authorization.k8s.io/v1"}) == "rbac.authorization.k8s.io"
    assert api_group({"apiVersion": "builtin"}) == "builtin"  # kustomize's, not the core group


# --- everything rendered ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_builtin_object_of_the_overlay_validates(overlay: str) -> None:
    docs = built(overlay)
    assert {d["kind"] for d in docs if is_builtin(d)} == EXPECTED_BUILTIN_KINDS
    assert all_errors(docs) == []


def test_every_builtin_object_of_the_base_validates() -> None:
    docs = _base_built()
    assert {d["kind"] for d in docs if is_builtin(d)} == EXPECTED_BUILTIN_KINDS
    assert all_errors(docs) == []
    # the plain resource files too (what the CRD tests read), before kustomize touches them
    assert all_errors(base_resource_docs()) == []


def test_every_source_document_is_builtin_custom_or_kustomize_config() -> None:
    """Nothing under k8s/base, k8s/overlays, k8s/components escapes both checks: each document is
    a built-in object (validated here, the overlay inputs' local-config ConfigMap included), a
    custom resource of a vendored CRD (test_k8s_crds.py), a monitor (no CRD vendored) or
    kustomize's own configuration."""
    kustomize_groups = {"kustomize.config.k8s.io", "builtin"}
    sources = _sources()
    assert any(Path(p).name == "inputs.yaml" and is_builtin(d) for p, d in sources)
    unclaimed, problems = [], []
    for path, doc in sources:
        group = api_group(doc)
        if "apiVersion" not in doc or group in kustomize_groups:
            continue  # kustomizeconfig.yaml, kustomization.yaml, transformers, components
        if is_builtin(doc):
            problems += [f"{path}: {e}" for e in core_schema_errors(doc)]
        elif group not in set(CRD_RELEASES) | UNVALIDATED_GROUPS:
            unclaimed.append(f"{path}: {doc['apiVersion']} {doc['kind']}")
    assert unclaimed == []
    assert problems == []


def test_the_flink_pod_templates_are_checked_as_pods() -> None:
    fd = one(built("prod"), "FlinkDeployment", "torghut-ta")
    paths = [p for p, _ in embedded_builtin_objects(fd)]
    assert paths == [
        "spec.podTemplate",
        "spec.jobManager.podTemplate",
        "spec.taskManager.podTemplate",
    ]
    for _, obj in embedded_builtin_objects(fd):
        assert (obj["apiVersion"], obj["kind"]) == ("v1", "Pod")


# --- the check catches what it should --------------------------------------------------------


def _forwarder() -> dict:
    return copy.deepcopy(one(built("prod"), "Deployment", "torghut-forwarder"))


def _container(d: dict) -> dict:
    return d["spec"]["template"]["spec"]["containers"][0]


def _break_spec_field(d: dict) -> None:
    d["spec"]["replica"] = d["spec"].pop("replicas")


def _break_port(d: dict) -> None:
    _container(d)["ports"][0]["containerPort"] = "8080"


def _break_metadata(d: dict) -> None:
    d["metadata"]["lables"] = d["metadata"].pop("labels")


def _break_container_field(d: dict) -> None:
    _container(d)["readinessprobe"] = _container(d)["readinessProbe"]


def _break_run_as_user(d: dict) -> None:
    d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = "10001"


def _drop_selector(d: dict) -> None:
    del d["spec"]["selector"]


@pytest.mark.parametrize(
    ("breaks", "where"),
    [
        (_break_spec_field, "'replica' was unexpected"),
        (_break_port, "containerPort: '8080' is not of type 'integer'"),
        (_break_metadata, "'lables' was unexpected"),
        (_break_container_field, "'readinessprobe' was unexpected"),
        (_break_run_as_user, "runAsUser: '10001' is not of type"),
        (_drop_selector, "'selector' is a required property"),
    ],
)
def test_a_broken_deployment_is_refused(breaks, where: str) -> None:
    d = _forwarder()
    assert core_schema_errors(d) == []
    breaks(d)
    (error,) = core_schema_errors(d)
    assert error.startswith(f"Deployment/torghut-forwarder [Kubernetes {KUBERNETES_VERSION}] at /")
    assert where in error, error


def test_a_field_newer_than_the_lowest_version_is_refused() -> None:
    """Pod ``securityContext.supplementalGroupsPolicy`` is in the API from Kubernetes 1.31 on."""
    d = _forwarder()
    d["spec"]["template"]["spec"]["securityContext"]["supplementalGroupsPolicy"] = "Strict"
    (error,) = core_schema_errors(d, "1.30")
    assert "'supplementalGroupsPolicy' was unexpected" in error, error
    assert core_schema_errors(d, "1.31") == []


def test_a_kind_the_version_does_not_serve_is_refused() -> None:
    pdb = copy.deepcopy(one(built("prod"), "PodDisruptionBudget", "torghut-ta-jobmanager"))
    pdb["apiVersion"] = "policy/v1beta1"  # removed in 1.25
    (error,) = core_schema_errors(pdb)
    assert "Couldn't find schema" in error, error


def test_a_broken_flink_pod_template_is_refused() -> None:
    fd = copy.deepcopy(one(built("prod"), "FlinkDeployment", "torghut-ta"))
    fd["spec"]["taskManager"]["podTemplate"]["spec"]["topologySpreadConstraint"] = []
    errors = all_errors([fd])
    assert len(errors) == 1 and "spec.taskManager.podTemplate" in errors[0], errors
    assert "'topologySpreadConstraint' was unexpected" in errors[0]


def test_configmap_values_must_be_strings() -> None:
    cm = copy.deepcopy(one(built("prod"), "ConfigMap", "torghut-forwarder-config"))
    cm["data"]["TORGHUT_FWD_LINGER_MS"] = 5
    assert any("is not of type 'string'" in e for e in core_schema_errors(cm))
