"""Namespace torghut is the trading service's: what we render there selects only our pods
(label torghut.dev/pipeline=torghut-ta), restricts nothing else, and owns no Namespace.
docs/deploy.md, "Sharing namespace torghut"."""

from __future__ import annotations

import copy

import pytest

from tests.support.k8s import app_for_path, built, child_apps, one
from torghut.k8s_render import (
    BASE_DIR,
    K8S_DIR,
    OVERLAYS,
    PROJECT_LABEL,
    SHARED_NAMESPACE,
    find,
    kustomize_bin,
    kustomize_build,
    pod_templates,
    shared_namespace_problems,
)

OURS = dict([PROJECT_LABEL])


def _base() -> list[dict]:
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    return kustomize_build(BASE_DIR)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_overlay_selects_restricts_or_owns_beyond_our_pods(overlay: str) -> None:
    """Every overlay rendered: no `podSelector: {}`, no selector without our label, nothing
    namespace- or cluster-wide, no Namespace torghut."""
    assert shared_namespace_problems(built(overlay)) == []


def test_the_base_renders_nothing_namespace_wide_either() -> None:
    assert shared_namespace_problems(_base()) == []


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            {
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny-all", "namespace": SHARED_NAMESPACE},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            },
            "empty selector",
        ),
        (
            {
                "kind": "NetworkPolicy",
                "metadata": {"name": "karapace", "namespace": SHARED_NAMESPACE},
                "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "karapace"}}},
            },
            "project label",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": SHARED_NAMESPACE,
                    "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
                },
            },
            "shared namespace",
        ),
        (
            {"kind": "ResourceQuota", "metadata": {"name": "q", "namespace": SHARED_NAMESPACE}},
            "whole namespace",
        ),
        (
            {"kind": "LimitRange", "metadata": {"name": "l", "namespace": SHARED_NAMESPACE}},
            "whole namespace",
        ),
        (
            {
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "all", "namespace": SHARED_NAMESPACE},
                "spec": {"selector": {}, "maxUnavailable": 1},
            },
            "empty selector",
        ),
        (
            {
                "kind": "Role",
                "metadata": {"name": "r", "namespace": SHARED_NAMESPACE},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
            },
            "resourceNames",
        ),
        ({"kind": "ClusterRole", "metadata": {"name": "c"}, "rules": []}, "cluster-wide"),
        (
            {
                "kind": "PriorityClass",
                "metadata": {"name": "p"},
                "value": 1,
                "globalDefault": True,
                "preemptionPolicy": "PreemptLowerPriority",
            },
            "globalDefault",
        ),
    ],
)
def test_the_check_catches_what_would_touch_other_pods(extra: dict, needle: str) -> None:
    """The check can fail: each of these, added to a clean render, is reported."""
    docs = [*built("prod"), extra]
    problems = shared_namespace_problems(docs)
    assert problems and any(needle in p for p in problems), problems


def test_a_pod_template_without_our_label_is_caught() -> None:
    docs = copy.deepcopy(built("prod"))
    dep = one(docs, "Deployment", "torghut-forwarder")
    del dep["spec"]["template"]["metadata"]["labels"][PROJECT_LABEL[0]]
    assert any("Deployment/torghut-forwarder" in p for p in shared_namespace_problems(docs))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_we_render_no_namespace_but_our_own_and_keep_it_on_prune(overlay: str) -> None:
    """No Pod Security (or any) labels on namespace torghut: we do not render it at all. Our
    own torghut-ta survives a prune or an Application deletion (its HA ConfigMaps)."""
    namespaces = find(built(overlay), "Namespace")
    assert [n["metadata"]["name"] for n in namespaces] == ["torghut-ta"]
    options = namespaces[0]["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert set(options.split(",")) == {"Prune=false", "Delete=false"}
    for path in K8S_DIR.rglob("*.yaml"):
        if "crds" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert "kind: Namespace\nmetadata:\n  name: torghut\n" not in text, path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pipeline_application_neither_creates_nor_labels_namespace_torghut(
    overlay: str,
) -> None:
    app = app_for_path(child_apps(overlay), f"k8s/overlays/{overlay}")
    policy = app["spec"].get("syncPolicy", {})
    assert "CreateNamespace=true" not in policy.get("syncOptions", [])
    assert "managedNamespaceMetadata" not in policy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_network_policy_is_for_pods_we_run(overlay: str) -> None:
    """No policy for somebody else's pods (Karapace, ClickHouse): each policy's selector
    matches the pod template of one of our workloads in its namespace."""
    docs = built(overlay)
    templates = []
    for obj, ns, meta in pod_templates(docs):
        labels = dict(meta.get("labels") or {})
        if obj.startswith("FlinkDeployment/"):
            labels["app"] = obj.split("/", 1)[1]  # the operator's label on JM and TM pods
        templates.append((ns, labels))
    for pol in find(docs, "NetworkPolicy"):
        sel = pol["spec"]["podSelector"]["matchLabels"]
        assert OURS.items() <= sel.items(), pol["metadata"]["name"]
        ns = pol["metadata"]["namespace"]
        assert any(n == ns and sel.items() <= lab.items() for n, lab in templates), pol["metadata"]
