"""The rendered k8s/ tree in tests: overlays built by the pinned kustomize, one object by
kind and name, the namespaces, and the Argo CD Applications with their sync waves."""

from __future__ import annotations

from functools import cache

import pytest

from torghut.k8s_render import (
    K8S_DIR,
    REPO_ROOT,
    find,
    kustomize_bin,
    kustomize_build,
    load_yaml_docs,
)

NAMESPACE = "torghut"
TA_NAMESPACE = "torghut-ta"  # the TA job alone (docs/network-and-rbac.md, "Namespaces")
ARGOCD_DIR = K8S_DIR / "argocd"
WAVE = "argocd.argoproj.io/sync-wave"


@cache
def built(overlay: str) -> list[dict]:
    """Every object of `k8s/overlays/<overlay>` as kustomize renders it (skips without
    kustomize)."""
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    return kustomize_build(K8S_DIR / "overlays" / overlay)


def one(docs: list[dict], kind: str, name: str) -> dict:
    """The one object of `kind` named `name` in `docs` (fails on none or several)."""
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def wave(doc: dict) -> int:
    """A resource's Argo CD sync wave (0 when it has none, as Argo CD takes it)."""
    return int(((doc.get("metadata") or {}).get("annotations") or {}).get(WAVE, "0"))


def root_app(overlay: str) -> dict:
    """The overlay's app-of-apps Application (`k8s/argocd/<overlay>/root.yaml`)."""
    docs = load_yaml_docs(ARGOCD_DIR / overlay / "root.yaml")
    assert [d["kind"] for d in docs] == ["Application"], overlay
    return docs[0]


def child_apps(overlay: str) -> list[dict]:
    """The Applications the overlay's root app renders (skips without kustomize)."""
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    return kustomize_build(REPO_ROOT / root_app(overlay)["spec"]["source"]["path"])


def app_for_path(apps: list[dict], path: str) -> dict:
    """The one Application of `apps` whose git source is `path`."""
    found = [a for a in apps if a["spec"]["source"].get("path") == path]
    assert len(found) == 1, f"{len(found)} Applications with source.path {path}"
    return found[0]
