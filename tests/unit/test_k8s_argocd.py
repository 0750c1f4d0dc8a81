"""The Argo CD Applications under k8s/argocd/: one app-of-apps per overlay, the rollout order
of docs/runbooks.md ("Rollout order") as sync waves, every path they name renders."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from tests.support.k8s import ARGOCD_DIR, WAVE, app_for_path, built, child_apps, one, root_app, wave
from torghut.k8s_render import (
    OVERLAYS,
    REPO_ROOT,
    custom_resource_errors,
    kustomize_build,
)

REPO_PLACEHOLDER = "https://git.example.com/REPLACE-ME/torghut-ta.git"


def git_sourced(apps: list[dict]) -> list[dict]:
    return [a for a in apps if "path" in a["spec"]["source"]]


def operator_app(apps: list[dict]) -> dict:
    found = [a for a in apps if a["spec"]["source"].get("chart") == "flink-kubernetes-operator"]
    assert len(found) == 1, "one Application for the Flink Kubernetes Operator chart"
    return found[0]


def rollout_steps(overlay: str, apps: list[dict], rendered: list[dict]) -> dict[str, list[tuple]]:
    """Each rollout step's objects as (wave of their Application, their own wave) keys, the
    order Argo CD creates them in (the parent finishes a child before its next wave)."""
    pipe = wave(app_for_path(apps, f"k8s/overlays/{overlay}"))
    op = wave(operator_app(apps))
    job = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Job"}
    return {
        # the operator app syncs as a whole before the pipeline app's first object
        "operator": [(op, math.inf)],
        "topics and schemas": [
            *[(pipe, wave(d)) for d in rendered if d["kind"] in ("KafkaTopic", "KafkaUser")],
            (pipe, wave(job["torghut-register-schemas"])),
        ],
        "forwarder": [(pipe, wave(one(rendered, "Deployment", "torghut-forwarder")))],
        "TA job": [(pipe, wave(one(rendered, "FlinkDeployment", "torghut-ta")))],
    }


def order_problems(steps: dict[str, list[tuple]]) -> list[str]:
    names = list(steps)
    return [
        f"{a} (latest {max(steps[a])}) is not before {b} (earliest {min(steps[b])})"
        for a, b in itertools.pairwise(names)
        if not max(steps[a]) < min(steps[b])
    ]


# --- one Application per overlay, valid against Argo CD's CRD --------------------------------


def test_every_overlay_has_its_application_and_nothing_else_is_there() -> None:
    assert sorted(p.name for p in ARGOCD_DIR.iterdir()) == sorted(OVERLAYS)
    for overlay in OVERLAYS:
        app = root_app(overlay)
        assert app["metadata"]["name"] == f"torghut-{overlay}"
        assert app["metadata"]["namespace"] == "argocd"
        assert app["spec"]["source"]["path"] == f"k8s/argocd/{overlay}/apps"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_application_validates_against_the_argo_cd_crd(overlay: str) -> None:
    apps = [root_app(overlay), *child_apps(overlay)]
    assert {a["kind"] for a in apps} == {"Application"}
    assert [e for a in apps for e in custom_resource_errors(a)] == []


def test_a_field_the_application_crd_does_not_have_is_refused() -> None:
    app = root_app("prod")
    app["spec"]["syncPolicy"]["automated"]["selfheal"] = True  # spelled wrong
    assert any("selfheal" in e for e in custom_resource_errors(app))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_application_points_at_a_path_in_the_repo_that_kustomize_renders(overlay) -> None:
    apps = [root_app(overlay), *child_apps(overlay)]
    for app in git_sourced(apps):
        src = app["spec"]["source"]
        # one placeholder to replace (docs/deploy.md, "Argo CD"), the same in every file
        assert src["repoURL"] == REPO_PLACEHOLDER, app["metadata"]["name"]
        assert (REPO_ROOT / src["path"] / "kustomization.yaml").is_file(), src["path"]
        assert kustomize_build(REPO_ROOT / src["path"]), src["path"]
    pipeline = app_for_path(apps, f"k8s/overlays/{overlay}")
    assert pipeline["spec"]["destination"]["namespace"] == "torghut"
    # the pipeline Application renders exactly what the overlay tests check
    assert kustomize_build(REPO_ROOT / pipeline["spec"]["source"]["path"]) == built(overlay)


def test_only_dev_prunes_the_pipeline() -> None:
    """Pruning a removed KafkaTopic CR deletes the topic and its data: stage and prod do not."""
    for overlay in OVERLAYS:
        pipeline = app_for_path(child_apps(overlay), f"k8s/overlays/{overlay}")
        assert pipeline["spec"]["syncPolicy"]["automated"]["prune"] is (overlay == "dev")


# --- the rollout order as sync waves ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sync_waves_follow_the_rollout_order(overlay: str) -> None:
    steps = rollout_steps(overlay, child_apps(overlay), built(overlay))
    assert list(steps) == ["operator", "topics and schemas", "forwarder", "TA job"]
    assert order_problems(steps) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_swapping_two_waves_breaks_the_order(overlay: str) -> None:
    """The order check can fail: the forwarder's and the TA job's waves exchanged."""
    rendered = [dict(d, metadata=dict(d["metadata"])) for d in built(overlay)]
    fwd = one(rendered, "Deployment", "torghut-forwarder")
    ta = one(rendered, "FlinkDeployment", "torghut-ta")
    fwd["metadata"]["annotations"] = {WAVE: str(wave(ta))}
    ta["metadata"]["annotations"] = {WAVE: "0"}
    problems = order_problems(rollout_steps(overlay, child_apps(overlay), rendered))
    assert problems and "forwarder" in problems[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_a_workload_needs_is_in_an_earlier_or_the_same_wave(overlay: str) -> None:
    """Our Namespace before everything (torghut is the trading service's and not rendered:
    test_k8s_sharing.py); every ConfigMap a Job, the forwarder or the TA job reads no later
    than that workload (else a wave waits for a pod that cannot start)."""
    rendered = built(overlay)
    assert [d["metadata"]["name"] for d in rendered if d["kind"] == "Namespace"] == ["torghut-ta"]
    ns = one(rendered, "Namespace", "torghut-ta")
    later = [d for d in rendered if d["kind"] != "Namespace" and wave(d) <= wave(ns)]
    assert later == [], "objects not after their Namespace"
    cm_wave = {d["metadata"]["name"]: wave(d) for d in rendered if d["kind"] == "ConfigMap"}
    for d in rendered:
        if d["kind"] not in ("Job", "Deployment", "FlinkDeployment"):
            continue
        text = repr(d["spec"])
        refs = set(re.findall(r"'configMapRef': \{'name': '([^']+)'", text))
        refs |= set(re.findall(r"'configMap': \{'name': '([^']+)'", text))
        assert refs, d["metadata"]["name"]
        for name in refs:
            assert cm_wave[name] <= wave(d), f"{d['metadata']['name']} reads {name}"
