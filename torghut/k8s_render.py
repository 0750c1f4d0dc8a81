"""Build and load the k8s/ manifests without a cluster (for tests and `torghut k8s`).

``kustomize`` is a pinned binary in ``.artifacts/bin`` (k8s/TOOLS.md). The CRD schemas are the
operators' released CRDs, vendored byte-exact under ``k8s/crds/<project>-<version>/`` (checked
against ``k8s/crds/SHA256SUMS``; where they come from: ``k8s/crds/PROVENANCE.md``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
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
CRDS_DIR = K8S_DIR / "crds"
CRD_SUMS = CRDS_DIR / "SHA256SUMS"
# Every custom resource validates against each release listed for its API group: the one
# operator release targeted, or both ends of the supported range (docs/deploy.md).
FLINK_OPERATOR_RELEASES = ("flink-operator-1.13.0",)
STRIMZI_RELEASES = ("strimzi-0.51.0", "strimzi-1.2.0")
# the Argo CD Applications under k8s/argocd/ (not in base or the overlays)
ARGO_CD_RELEASES = ("argo-cd-3.5.1",)
CRD_RELEASES: dict[str, tuple[str, ...]] = {
    "flink.apache.org": FLINK_OPERATOR_RELEASES,
    "kafka.strimzi.io": STRIMZI_RELEASES,
    "argoproj.io": ARGO_CD_RELEASES,
}
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


def _yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in {".yaml", ".yml"})


def crd_files(release: str | None = None) -> list[Path]:
    """The vendored CRD files (of one release folder under ``k8s/crds/``, or of all)."""
    root = CRDS_DIR / release if release else CRDS_DIR
    files = _yaml_files(root)
    if not files:
        raise ManifestError(f"no CRDs under {root} (see k8s/crds/PROVENANCE.md)")
    return files


def crd_checksum_problems(root: Path = CRDS_DIR) -> list[str]:
    """Differences between the CRD files under ``root`` and its ``SHA256SUMS``; empty if none."""
    listed: dict[str, str] = {}
    for line in (root / CRD_SUMS.name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            listed[rel.lstrip("*")] = digest
    problems = []
    for rel, digest in sorted(listed.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in SHA256SUMS but missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{rel}: content differs from SHA256SUMS (edited?)")
    for path in _yaml_files(root):
        if path.relative_to(root).as_posix() not in listed:
            problems.append(f"{path.relative_to(root)}: not listed in SHA256SUMS")
    return problems


def crd_releases(group: str) -> tuple[str, ...]:
    """The vendored releases a custom resource of API ``group`` must validate against."""
    try:
        return CRD_RELEASES[group]
    except KeyError:
        raise ManifestError(f"no vendored CRDs for API group {group!r} (CRD_RELEASES)") from None


@functools.cache
def crd_documents(release: str) -> tuple[dict[str, Any], ...]:
    """The CustomResourceDefinitions of one vendored release folder."""
    docs: list[dict[str, Any]] = []
    for path in crd_files(release):
        docs += load_yaml_docs(path)
    return tuple(d for d in docs if d.get("kind") == "CustomResourceDefinition")


def served_versions(release: str, group: str, kind: str) -> tuple[str, ...]:
    """The versions of ``kind`` that ``release``'s CRD serves."""
    for doc in crd_documents(release):
        spec = doc["spec"]
        if spec["group"] == group and spec["names"]["kind"] == kind:
            return tuple(v["name"] for v in spec["versions"] if v.get("served", True))
    return ()


def crd_schema(group: str, kind: str, version: str, release: str) -> dict[str, Any]:
    """The openAPIV3Schema that ``release`` serves for ``group/version`` ``kind``."""
    for doc in crd_documents(release):
        spec = doc["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for v in spec["versions"]:
            if v["name"] == version and v.get("served", True) and "schema" in v:
                return v["schema"]["openAPIV3Schema"]
    raise ManifestError(f"{release} serves no {group}/{version} {kind} ({CRDS_DIR / release})")


def custom_resource_errors(doc: dict[str, Any], release: str | None = None) -> list[str]:
    """Why the API server would refuse or prune parts of ``doc``, per vendored release.

    Checks every release of ``crd_releases`` for the document's group unless ``release`` is
    given. CEL rules (``x-kubernetes-validations``) are not evaluated.
    """
    from jsonschema import Draft4Validator

    group, version = doc["apiVersion"].split("/")
    name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
    problems = []
    for rel in (release,) if release else crd_releases(group):
        try:
            schema = crd_schema(group, doc["kind"], version, rel)
        except ManifestError as exc:
            problems.append(f"{name}: {exc}")
            continue
        problems += [
            f"{name} [{rel}] at /{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft4Validator(strict_json_schema(schema)).iter_errors(doc)
        ]
    return problems


# ObjectMeta as the API server decodes a custom resource's metadata (its unknown fields are
# dropped); the CRD's own ``metadata`` schema, if any, only narrows name/generateName.
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
}
_META_FIELDS = ("apiVersion", "kind", "metadata")


def strict_json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema (draft 4) that rejects what the API server would prune or refuse.

    Mirrors the structural-schema pruning of apiextensions-apiserver: a field that no
    ``properties`` or ``additionalProperties`` of its object names is an error (like
    ``kubectl apply --validate=strict``), also in an object the schema leaves empty, except
    directly under ``x-kubernetes-preserve-unknown-fields: true`` (and in the items of such an
    array) -- the properties a preserving object does name are still checked. Value-only
    ``anyOf``/``allOf``/``oneOf``/``not`` branches are left as they are.
    ``x-kubernetes-int-or-string`` admits exactly integers and strings, ``nullable`` admits
    null, and the root ``metadata`` is checked as ObjectMeta.
    """
    schema = _strict(copy.deepcopy(openapi), keep_unknown=False)
    root = schema.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    meta = copy.deepcopy(_OBJECT_META)
    for field, narrowing in root.get("metadata", {}).get("properties", {}).items():
        meta["properties"][field] = {"allOf": [meta["properties"].get(field, {}), narrowing]}
    meta["additionalProperties"] = False
    root["metadata"] = meta
    schema["additionalProperties"] = False
    return schema


def _strict(node: dict[str, Any], keep_unknown: bool) -> dict[str, Any]:
    preserve = keep_unknown or node.get("x-kubernetes-preserve-unknown-fields") is True
    props = node.get("properties")
    if isinstance(props, dict):
        for child in props.values():
            _strict(child, keep_unknown=False)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        _strict(extra, keep_unknown=False)
    elif extra is None and not preserve and (props is not None or node.get("type") == "object"):
        node["additionalProperties"] = False
    if node.get("x-kubernetes-embedded-resource"):
        for field in _META_FIELDS:
            node.setdefault("properties", {}).setdefault(field, {"type": "object"})
        node["properties"]["apiVersion"]["type"] = "string"
        node["properties"]["kind"]["type"] = "string"
        node["properties"]["metadata"] = copy.deepcopy(_OBJECT_META)
    if isinstance(node.get("items"), dict):
        # the API server keeps unknown fields in the items of a preserving array too
        _strict(node["items"], keep_unknown=preserve)
    if node.get("x-kubernetes-int-or-string") and "type" not in node:
        node["type"] = ["integer", "string"]
    if node.get("nullable"):
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            node["type"] = [*kind, "null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
    return node


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
