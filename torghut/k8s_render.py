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


# --- built-in kinds against Kubernetes' own schemas (kubernetes-validate) ---------------------

# The lowest Kubernetes minor docs/deploy.md ("Supported versions") supports: every built-in
# object (Deployment, Service, NetworkPolicy, Job...) validates against its schemas, strictly.
KUBERNETES_VERSION = "1.30"


def _kv_schema_dir(version: str) -> str:
    return f"kubernetes-json-schema/v{version}.0-local-strict"


@functools.cache
def builtin_api_groups(version: str = KUBERNETES_VERSION) -> frozenset[str]:
    """The API groups Kubernetes ``version`` itself serves ("" is the core group), read from the
    schemas kubernetes-validate bundles for it (not a hand-kept list)."""
    from kubernetes_validate.utils import schema_contents

    defs = schema_contents(f"{_kv_schema_dir(version)}/_definitions.json", version)["$defs"]
    return frozenset(
        gvk["group"] for d in defs.values() for gvk in d.get("x-kubernetes-group-version-kind", [])
    )


def api_group(doc: dict[str, Any]) -> str:
    """``apps`` for ``apps/v1``, "" (the core group) for ``v1``."""
    import re

    api_version = str(doc.get("apiVersion", ""))
    if "/" in api_version:
        return api_version.rsplit("/", 1)[0]
    # the core group's versions; any other bare word (kustomize's `builtin`) is its own group
    return "" if re.fullmatch(r"v[0-9]+((alpha|beta)[0-9]+)?", api_version) else api_version


def is_builtin(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> bool:
    return api_group(doc) in builtin_api_groups(version)


def embedded_builtin_objects(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, object) of the built-in objects a custom resource carries whole: the
    FlinkDeployment's ``v1`` ``Pod`` templates (the operator merges them into its pods)."""
    if doc.get("kind") != "FlinkDeployment":
        return
    spec = doc.get("spec") or {}
    for path, holder in (
        ("spec.podTemplate", spec),
        ("spec.jobManager.podTemplate", spec.get("jobManager") or {}),
        ("spec.taskManager.podTemplate", spec.get("taskManager") or {}),
    ):
        template = holder.get("podTemplate")
        if template is not None:
            yield path, template


def core_schema_errors(doc: dict[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Why Kubernetes ``version``'s schema refuses the built-in object ``doc``, strictly (an
    unknown field is an error, like ``kubectl apply --validate=strict``): empty if it passes,
    else the first error kubernetes-validate meets (it stops there).

    kubernetes-validate's schemas come from the API's OpenAPI: types, required fields and
    unknown fields are checked; enums, formats and the API server's own validation (name
    syntax, immutable fields, cross-field rules) are not. A kind the version does not serve
    (removed or not yet added) is an error too.
    """
    import kubernetes_validate

    name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
    try:
        used = kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = "/".join(map(str, e.absolute_path))
        return [f"{name} [Kubernetes {e.version}] at /{where}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [f"{name}: {e.message}"]
    if used != version:  # the package fell back to an older bundled version
        return [f"{name}: validated against Kubernetes {used}, not {version}"]
    return []


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


# --- sharing namespace torghut (docs/deploy.md, "Sharing namespace torghut") -----------------

SHARED_NAMESPACE = "torghut"  # the trading service's; we add objects to it, never own it
OWN_NAMESPACE = "torghut-ta"  # the TA job's, ours
# every pod this project runs carries it; every selector of ours requires it
PROJECT_LABEL = ("torghut.dev/pipeline", "torghut-ta")
# objects that act on a whole namespace whatever their selectors
NAMESPACE_WIDE_KINDS = frozenset({"ResourceQuota", "LimitRange"})
CLUSTER_WIDE_KINDS = frozenset(
    {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    | {"ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy"}
)
_POD_SELECTORS = {
    "NetworkPolicy": ("spec", "podSelector"),
    "PodDisruptionBudget": ("spec", "selector"),
    "PodMonitor": ("spec", "selector"),
    "ServiceMonitor": ("spec", "selector"),  # selects Services, which carry the label too
}


def pod_templates(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(object name, namespace, pod template metadata) of every workload's pod template."""
    for d in docs:
        kind, meta = d.get("kind"), d.get("metadata", {})
        if kind in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            template = d["spec"]["template"]
        elif kind == "FlinkDeployment":
            template = d["spec"]["podTemplate"]
        else:
            continue
        yield (
            f"{kind}/{meta.get('name', '')}",
            meta.get("namespace", ""),
            template.get("metadata", {}),
        )


def _selector_problem(selector: dict[str, Any] | None) -> str | None:
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return "selects every pod of its namespace (empty selector)"
    key, value = PROJECT_LABEL
    if (selector.get("matchLabels") or {}).get(key) != value:
        return f"does not require the project label {key}={value}"
    return None


def shared_namespace_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Why rendered ``docs`` would select, restrict or own more than this project's pods.

    Empty when: no Namespace ``torghut`` is rendered (its owner creates and labels it), nothing
    namespace- or cluster-wide is (ResourceQuota, LimitRange, ClusterRole...; a PriorityClass
    only if it is no global default and never preempts), every pod template carries
    ``PROJECT_LABEL``, every NetworkPolicy, PodDisruptionBudget, Service, PodMonitor and
    ServiceMonitor selector requires it (no ``podSelector: {}``), monitors watch only their own
    namespace, and every Role rule in the shared namespace names its resources.
    """
    problems: list[str] = []
    key, value = PROJECT_LABEL
    for d in docs:
        kind, meta = d.get("kind", ""), d.get("metadata", {})
        name, ns = f"{kind}/{meta.get('name', '?')}", meta.get("namespace")
        if kind == "Namespace" and meta.get("name") == SHARED_NAMESPACE:
            problems.append(f"{name}: the shared namespace is its owner's; do not render it")
        if kind in NAMESPACE_WIDE_KINDS:
            problems.append(f"{name} in {ns}: acts on the whole namespace")
        if kind in CLUSTER_WIDE_KINDS:
            problems.append(f"{name}: cluster-wide")
        if kind == "PriorityClass":
            if d.get("globalDefault"):
                problems.append(f"{name}: globalDefault sets every other pod's priority")
            if d.get("preemptionPolicy") != "Never":
                problems.append(f"{name}: may preempt other pods (preemptionPolicy)")
        if kind in _POD_SELECTORS:
            section, field = _POD_SELECTORS[kind]
            why = _selector_problem(d.get(section, {}).get(field))
            if why:
                problems.append(f"{name} in {ns}: {why}")
            if kind in {"PodMonitor", "ServiceMonitor"} and d["spec"].get("namespaceSelector"):
                problems.append(f"{name} in {ns}: watches other namespaces (namespaceSelector)")
        selector = d.get("spec", {}).get("selector") if kind == "Service" else None
        if selector is not None and selector.get(key) != value:
            problems.append(f"{name} in {ns}: selector lacks {key}={value}")
        if kind == "Role" and ns == SHARED_NAMESPACE:
            for rule in d.get("rules", []):
                if not rule.get("resourceNames"):
                    problems.append(f"{name} in {ns}: a rule without resourceNames")
    for obj, ns, template_meta in pod_templates(docs):
        if (template_meta.get("labels") or {}).get(key) != value:
            problems.append(f"{obj} in {ns}: pod template lacks {key}={value}")
    return problems


# --- overlay inputs (docs/deploy.md, "Overlay inputs") -----------------------------------------

INPUTS_COMPONENT = K8S_DIR / "components" / "overlay-inputs"
INPUTS_CONFIGMAP = "torghut-overlay-inputs"
OUR_IMAGES = ("torghut-forwarder", "torghut-flink")
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
# values an overlay ships until its cluster is known; `torghut k8s check-inputs` refuses them
PLACEHOLDER_INPUTS = {"APISERVER_CIDR": "192.0.2.1/32"}


def required_inputs(root: Path = K8S_DIR) -> tuple[str, ...]:
    """The keys of ConfigMap torghut-overlay-inputs the component's replacements read."""
    import yaml

    path = root / INPUTS_COMPONENT.relative_to(K8S_DIR) / "kustomization.yaml"
    comp = yaml.safe_load(path.read_text(encoding="utf-8"))
    keys = []
    for r in comp["replacements"]:
        src = r["source"]
        assert src["kind"] == "ConfigMap" and src["name"] == INPUTS_CONFIGMAP, src
        keys.append(src["fieldPath"].removeprefix("data."))
    return tuple(keys)


def overlay_inputs(overlay: str, root: Path = K8S_DIR) -> dict[str, str]:
    """ConfigMap torghut-overlay-inputs of ``overlay`` (its inputs.yaml) as a dict."""
    (doc,) = load_yaml_docs(root / "overlays" / overlay / "inputs.yaml")
    return {k: str(v) for k, v in (doc.get("data") or {}).items()}


def image_digest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Our images in ``docs`` that are not pinned by a sha256 digest."""
    import re

    problems = []
    refs: dict[str, list[str]] = {}
    for d in docs:
        if d.get("kind") == "FlinkDeployment":
            refs.setdefault("torghut-flink", []).append(d["spec"]["image"])
        for _, spec in pod_specs([d]):
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                if "image" not in c:  # flink-main-container: the FlinkDeployment's spec.image
                    continue
                repo = c["image"].split("@")[0].split(":")[0].rsplit("/", 1)[-1]
                if repo in OUR_IMAGES:
                    refs.setdefault(repo, []).append(c["image"])
    for repo in OUR_IMAGES:
        if not refs.get(repo):
            problems.append(f"{repo}: not used")
        for ref in refs.get(repo, []):
            if not re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", ref):
                problems.append(f"{ref}: not pinned by a sha256 digest")
    return sorted(set(problems))


def overlay_input_problems(
    overlay: str, docs: list[dict[str, Any]] | None = None, root: Path = K8S_DIR
) -> list[str]:
    """Inputs of ``overlay`` that are missing or still the shipped placeholders.

    A missing key already fails ``kustomize build``; this also refuses the placeholders (the
    TEST-NET API-server CIDR, the all-zero image digest) that build but cannot run.
    """
    values = overlay_inputs(overlay, root)
    problems = [f"{k}: missing from inputs.yaml" for k in required_inputs(root) if k not in values]
    problems += [
        f"{k}: still the placeholder {v}"
        for k, v in PLACEHOLDER_INPUTS.items()
        if values.get(k) == v
    ]
    docs = kustomize_build(root / "overlays" / overlay) if docs is None else docs
    problems += image_digest_problems(docs)
    images = [d["spec"]["image"] for d in docs if d.get("kind") == "FlinkDeployment"]
    images += [c.get("image", "") for _, spec in pod_specs(docs) for c in spec["containers"]]
    problems += [
        f"{ref}: the placeholder digest" for ref in images if ref.endswith(PLACEHOLDER_DIGEST)
    ]
    return sorted(set(problems))


# --- Flink's deprecated configuration keys, read from the flink-dist jar ---------------------

_DEPRECATED_KEYS_JAVA = r"""
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

/** Prints "deprecated-key TAB key" for every ConfigOption a *Options class of the jars declares. */
public class FlinkDeprecatedKeys {
    public static void main(String[] args) throws Exception {
        List<URL> urls = new ArrayList<>();
        for (String a : args) urls.add(Path.of(a).toUri().toURL());
        try (URLClassLoader cl = new URLClassLoader(urls.toArray(new URL[0]), null)) {
            Class<?> option = Class.forName("org.apache.flink.configuration.ConfigOption", false, cl);
            Class<?> fallback = Class.forName("org.apache.flink.configuration.FallbackKey", false, cl);
            var fallbackKeys = option.getMethod("fallbackKeys");
            var key = option.getMethod("key");
            var fbKey = fallback.getMethod("getKey");
            var fbDeprecated = fallback.getMethod("isDeprecated");
            for (String a : args) {
                try (JarFile jar = new JarFile(a)) {
                    for (Enumeration<JarEntry> e = jar.entries(); e.hasMoreElements(); ) {
                        String name = e.nextElement().getName();
                        if (!name.startsWith("org/apache/flink/") || !name.endsWith("Options.class")
                                || name.contains("$")) continue;
                        Class<?> c;
                        try {
                            c = Class.forName(name.replace('/', '.').replace(".class", ""), true, cl);
                        } catch (Throwable t) { continue; }
                        for (Field f : c.getDeclaredFields()) {
                            if (!Modifier.isStatic(f.getModifiers())
                                    || !option.isAssignableFrom(f.getType())) continue;
                            Object opt;
                            try { f.setAccessible(true); opt = f.get(null); }
                            catch (Throwable t) { continue; }
                            if (opt == null) continue;
                            for (Object fb : (Iterable<?>) fallbackKeys.invoke(opt)) {
                                if ((Boolean) fbDeprecated.invoke(fb)) {
                                    System.out.println(fbKey.invoke(fb) + "\t" + key.invoke(opt));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
"""


def flink_jars() -> list[Path]:
    """flink-dist and flink-python of the installed PyFlink wheel (Flink 1.20)."""
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError("PyFlink is not installed in this environment")
    root = Path(next(iter(spec.submodule_search_locations)))
    jars = sorted(root.glob("lib/flink-dist*.jar")) + sorted(root.glob("opt/flink-python*.jar"))
    if not jars or not jars[0].name.startswith("flink-dist"):
        raise ManifestError(f"no flink-dist jar under {root}/lib")
    return jars


def java_bin() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return Path(home) / "bin" / "java"
    found = shutil.which("java")
    return Path(found) if found else None


@functools.cache
def flink_deprecated_keys() -> dict[str, tuple[str, ...]]:
    """Deprecated key -> the key(s) that replace it, as Flink's own ConfigOptions declare them
    (``withDeprecatedKeys``), read by loading the PyFlink wheel's jars in a JVM (Java 11+
    runs the one-file program above directly). Raises ManifestError without Java or PyFlink."""
    import tempfile

    java = java_bin()
    if java is None:
        raise ManifestError("no java on PATH (or JAVA_HOME): needed to read Flink's ConfigOptions")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "FlinkDeprecatedKeys.java"
        src.write_text(_DEPRECATED_KEYS_JAVA, encoding="utf-8")
        proc = subprocess.run(
            [str(java), str(src), *map(str, flink_jars())],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    if proc.returncode != 0:
        raise ManifestError(f"reading Flink's ConfigOptions failed:\n{proc.stderr}")
    out: dict[str, set[str]] = {}
    for line in proc.stdout.splitlines():
        if "\t" in line:
            old, new = line.split("\t", 1)
            out.setdefault(old, set()).add(new)
    if not out:
        raise ManifestError("no deprecated keys found: the jar layout changed?")
    return {k: tuple(sorted(v)) for k, v in out.items()}
