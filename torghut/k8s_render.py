"""Build and load the k8s/ manifests without a cluster (for tests and `torghut k8s`).

``kustomize`` is a pinned binary in ``.artifacts/bin`` (k8s/TOOLS.md); CRD schemas are the
released ones that ``jvm/crds/pom.xml`` unpacks into ``.artifacts/crds``.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = REPO_ROOT / "k8s"
BASE_DIR = K8S_DIR / "base"
OVERLAYS = ("dev", "stage", "prod")
ARTIFACTS = REPO_ROOT / ".artifacts"
CRDS_DIR = ARTIFACTS / "crds"
KUSTOMIZE_VERSION = "v5.7.1"


class ManifestError(RuntimeError):
    """A manifest could not be built, or a CRD schema is missing."""


def kustomize_bin() -> Path | None:
    """The pinned kustomize (``$KUSTOMIZE`` overrides), or None when it is not installed."""
    override = os.environ.get("KUSTOMIZE")
    candidates = [Path(override)] if override else [ARTIFACTS / "bin" / "kustomize"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("kustomize") if not override else None
    return Path(found) if found else None


def kustomize_build(path: Path) -> list[dict[str, Any]]:
    """``kustomize build path`` parsed into documents."""
    import yaml

    binary = kustomize_bin()
    if binary is None:
        raise ManifestError("kustomize is not installed; run `make setup` (see k8s/TOOLS.md)")
    proc = subprocess.run(
        [str(binary), "build", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    if proc.returncode != 0:
        raise ManifestError(f"kustomize build {path} failed:\n{proc.stderr}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader) if d]


def base_resource_docs() -> list[dict[str, Any]]:
    """Every document of the base's plain resource files (no generators, no kustomize)."""
    import yaml

    kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for rel in kustomization["resources"]:
        docs += load_yaml_docs(BASE_DIR / rel)
    return docs


def crd_files() -> list[Path]:
    files = sorted(p for p in CRDS_DIR.rglob("*") if p.suffix in {".yaml", ".yml"})
    if not files:
        raise ManifestError(
            f"no CRDs under {CRDS_DIR}; run `make setup` "
            "(mvn -q -f jvm/crds/pom.xml package unpacks them from Maven Central)"
        )
    return files


@functools.cache
def _crds() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in crd_files():
        # the Kafka/KafkaConnect CRDs are large and never validated here
        if path.name.startswith(("040-", "041-", "045-", "046-", "048-")):
            continue
        docs += load_yaml_docs(path)
    return tuple(docs)


def crd_schema(group: str, kind: str, version: str) -> dict[str, Any]:
    """The openAPIV3Schema served for ``group/version`` ``kind`` by the released CRDs."""
    for doc in _crds():
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for v in spec["versions"]:
            if v["name"] == version and v.get("served", True) and "schema" in v:
                return v["schema"]["openAPIV3Schema"]
    raise ManifestError(f"no CRD serving {group}/{version} {kind} under {CRDS_DIR}")


def strict_json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema that rejects what the API server would prune or refuse.

    Unknown fields are errors (like ``kubectl apply --validate=strict``) except where the CRD
    preserves them; ``nullable`` admits null.
    """
    schema = copy.deepcopy(openapi)
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})
    for node in _walk(schema):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
    return schema


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d.get("kind") == kind and (name is None or d.get("metadata", {}).get("name") == name)
    ]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(object name, pod spec) for every Deployment, Job and FlinkDeployment pod template."""
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name", "")
        if kind in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield f"{kind}/{name}", d["spec"]["template"]["spec"]
        elif kind == "FlinkDeployment":
            yield f"{kind}/{name}", d["spec"]["podTemplate"]["spec"]
