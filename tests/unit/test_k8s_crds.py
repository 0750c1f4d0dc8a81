"""Every custom resource in k8s/ validates against the CRDs of the targeted operator releases.

The schemas are the operators' released CRDs, vendored byte-exact under k8s/crds/ (provenance
in k8s/crds/PROVENANCE.md, digests in k8s/crds/SHA256SUMS), never hand-written. Validation is
strict: a field the API server would prune (not in the structural schema) is an error, as with
`kubectl apply --validate=strict`. KafkaTopic/KafkaUser validate against both ends of the
supported Strimzi range, FlinkDeployment against the targeted operator release.
"""

from __future__ import annotations

import copy
import re

import pytest
from jsonschema import Draft4Validator

from shared.topics import ALL_TOPICS
from torghut.k8s_render import (
    BASE_DIR,
    CRD_RELEASES,
    CRDS_DIR,
    FLINK_OPERATOR_RELEASES,
    K8S_DIR,
    OVERLAYS,
    REPO_ROOT,
    STRIMZI_RELEASES,
    base_resource_docs,
    crd_checksum_problems,
    crd_documents,
    crd_files,
    crd_schema,
    custom_resource_errors,
    find,
    kustomize_bin,
    kustomize_build,
    load_yaml_docs,
    served_versions,
    strict_json_schema,
)

CUSTOM_KINDS = ("FlinkDeployment", "KafkaTopic", "KafkaUser")
STRIMZI_KINDS = ("KafkaTopic", "KafkaUser")
ALL_RELEASES = tuple(r for releases in CRD_RELEASES.values() for r in releases)


def _base(kind: str, name: str | None = None) -> dict:
    return copy.deepcopy(find(base_resource_docs(), kind, name)[0])


def _built(overlay: str) -> list[dict]:
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    return kustomize_build(K8S_DIR / "overlays" / overlay)


def _release_group(release: str) -> str:
    return next(g for g, rels in CRD_RELEASES.items() if release in rels)


# --- the vendored files --------------------------------------------------------------------


def test_vendored_crds_match_sha256sums() -> None:
    assert crd_checksum_problems() == []


def test_sha256sums_catch_an_edited_a_missing_and_an_unlisted_file(tmp_path) -> None:
    import shutil

    copy_dir = tmp_path / "crds"
    shutil.copytree(CRDS_DIR, copy_dir)
    edited = copy_dir / "strimzi-1.2.0" / "043-Crd-kafkatopic.yaml"
    edited.write_bytes(edited.read_bytes().replace(b"integer", b"string", 1))
    (copy_dir / "strimzi-0.51.0" / "044-Crd-kafkauser.yaml").unlink()
    (copy_dir / "strimzi-1.2.0" / "045-Crd-extra.yaml").write_text("kind: X\n")
    problems = crd_checksum_problems(copy_dir)
    assert len(problems) == 3, problems
    assert "strimzi-0.51.0/044-Crd-kafkauser.yaml: listed in SHA256SUMS but missing" in problems
    assert any(p.startswith("strimzi-1.2.0/043-Crd-kafkatopic.yaml: content") for p in problems)
    assert any(p.startswith("strimzi-1.2.0/045-Crd-extra.yaml: not listed") for p in problems)


def test_every_release_is_vendored_and_documented() -> None:
    provenance = (CRDS_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    for release in ALL_RELEASES:
        assert crd_files(release), release
        assert f"`{release}/`" in provenance, f"{release} has no section in PROVENANCE.md"
    on_disk = {p.name for p in CRDS_DIR.iterdir() if p.is_dir()}
    assert on_disk == set(ALL_RELEASES), "a vendored folder is not in CRD_RELEASES (or v.v.)"


def test_crds_are_read_from_the_repository_only() -> None:
    assert CRDS_DIR.resolve().is_relative_to(REPO_ROOT.resolve())
    outside = ("/work/" + "shared", "../" + "shared/crds")  # a user's clone has neither
    for path in [
        *K8S_DIR.rglob("*.md"),
        REPO_ROOT / "torghut" / "k8s_render.py",
        REPO_ROOT / "docs" / "deploy.md",
        REPO_ROOT / "Makefile",
    ]:
        text = path.read_text(encoding="utf-8")
        assert not any(o in text for o in outside), path


def test_each_strimzi_release_serves_the_api_version_the_manifests_use() -> None:
    # 0.51 serves v1 and v1beta2 (deprecated); 1.x serves only v1: v1 is the whole range's
    common = {
        kind: set.intersection(
            *(set(served_versions(r, "kafka.strimzi.io", kind)) for r in STRIMZI_RELEASES)
        )
        for kind in STRIMZI_KINDS
    }
    assert common == {"KafkaTopic": {"v1"}, "KafkaUser": {"v1"}}
    for doc in base_resource_docs():
        if doc["kind"] in STRIMZI_KINDS:
            assert doc["apiVersion"] == "kafka.strimzi.io/v1", doc["metadata"]["name"]


def test_flink_operator_serves_flinkdeployment_v1beta1() -> None:
    for release in FLINK_OPERATOR_RELEASES:
        assert "v1beta1" in served_versions(release, "flink.apache.org", "FlinkDeployment")


def _cel_rules(node: object, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        found = [(path, r["rule"]) for r in node.get("x-kubernetes-validations", [])]
        for key, child in node.items():
            found += _cel_rules(child, f"{path}/{key}")
        return found
    if isinstance(node, list):
        return [r for child in node for r in _cel_rules(child, path)]
    return []


def test_the_only_cel_rules_are_the_known_kafkauser_and_kafka_ones_and_ours_meet_them() -> None:
    """jsonschema does not run CEL (x-kubernetes-validations): list every rule, check by hand."""
    rules = {
        (release, crd["spec"]["names"]["kind"], v["name"], path.split("/")[-1], rule)
        for release in ALL_RELEASES
        for crd in crd_documents(release)
        for v in crd["spec"]["versions"]
        for path, rule in _cel_rules(v.get("schema", {}))
    }
    user_rules = {r for r in rules if r[1] == "KafkaUser"}
    assert {r[:4] for r in user_rules} == {("strimzi-1.2.0", "KafkaUser", "v1", "authentication")}
    assert len(user_rules) == 3
    assert all("validityDays" in r[4] or "renewalDays" in r[4] for r in user_rules)
    # the Kafka CRD's rules only constrain metricsConfig and rack, which the listeners file of
    # k8s/kafka-cluster/ (the one Kafka CR we validate) does not set
    kafka_rules = rules - user_rules
    assert {r[1] for r in kafka_rules} == {"Kafka"}
    assert {r[3] for r in kafka_rules} == {"metricsConfig", "rack"}
    (kafka,) = load_yaml_docs(K8S_DIR / "kafka-cluster" / "listeners.yaml")
    assert set(kafka["spec"]) == {"kafka"}
    # no metricsConfig, rack (template: the cluster CA Secret's reflector annotations)
    assert set(kafka["spec"]["kafka"]) == {"listeners", "config", "template"}
    # those rules only constrain validityDays/renewalDays, which belong to `type: tls`
    for doc in find(base_resource_docs(), "KafkaUser"):
        auth = doc["spec"]["authentication"]
        assert auth["type"] == "scram-sha-512"
        assert "validityDays" not in auth and "renewalDays" not in auth


# --- the manifests against every release ---------------------------------------------------


@pytest.mark.parametrize("release", ALL_RELEASES)
def test_base_custom_resources_validate_against_each_release(release: str) -> None:
    group = _release_group(release)
    docs = [d for d in base_resource_docs() if d["apiVersion"].split("/")[0] == group]
    expected = {
        "flink.apache.org": {"FlinkDeployment"},
        "kafka.strimzi.io": set(STRIMZI_KINDS),
        "argoproj.io": set(),  # the Applications are in k8s/argocd/ (test_k8s_argocd.py)
    }
    assert {d["kind"] for d in docs} == expected[group], BASE_DIR
    assert [e for d in docs for e in custom_resource_errors(d, release)] == []


@pytest.mark.parametrize("release", ALL_RELEASES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_custom_resources_validate_against_each_release(overlay: str, release: str) -> None:
    custom = [d for d in _built(overlay) if d["kind"] in CUSTOM_KINDS]
    assert len(find(custom, "FlinkDeployment")) == 1
    assert (
        len(find(custom, "KafkaUser")) == 5
    )  # forwarder, TA job, ClickHouse, minute check, canary
    assert len(find(custom, "KafkaTopic")) == len(ALL_TOPICS)
    group = _release_group(release)
    mine = [d for d in custom if d["apiVersion"].split("/")[0] == group]
    assert [e for d in mine for e in custom_resource_errors(d, release)] == []


def test_the_runbook_flinkstatesnapshot_validates() -> None:
    import yaml

    runbook = (REPO_ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<<'YAML'[^\n]*\n(.*?)\n\s*YAML\n", runbook, flags=re.DOTALL)
    snapshots = [
        d for b in blocks for d in yaml.safe_load_all(b) if d and d["kind"] == "FlinkStateSnapshot"
    ]
    assert snapshots, "docs/runbooks.md no longer shows a FlinkStateSnapshot"
    assert [e for d in snapshots for e in custom_resource_errors(d)] == []


# --- strict: what the API server would prune is an error -----------------------------------


def test_strict_validation_rejects_a_misspelled_field() -> None:
    flink = _base("FlinkDeployment", "torghut-ta")
    flink["spec"]["job"]["upgradeMod"] = flink["spec"]["job"].pop("upgradeMode")
    assert any("upgradeMod" in e for e in custom_resource_errors(flink))


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("FlinkDeployment", ()),
        ("FlinkDeployment", ("metadata",)),
        ("FlinkDeployment", ("spec",)),
        ("FlinkDeployment", ("spec", "taskManager", "resource")),
        ("FlinkDeployment", ("spec", "podTemplate", "spec", "containers", 0, "securityContext")),
        ("FlinkDeployment", ("spec", "podTemplate", "metadata")),
        ("KafkaTopic", ()),
        ("KafkaTopic", ("metadata",)),
        ("KafkaTopic", ("spec",)),
        ("KafkaUser", ("spec", "authorization", "acls", 0, "resource")),
        ("KafkaUser", ("spec", "authentication")),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else v,
)
def test_a_made_up_field_is_reported_in_each_release(kind: str, path: tuple) -> None:
    doc = _base(kind)
    node = doc
    for key in path:
        node = node[key]
    node["bogusField"] = "x"
    group = doc["apiVersion"].split("/")[0]
    for release in CRD_RELEASES[group]:
        errors = custom_resource_errors(doc, release)
        assert len(errors) == 1 and "bogusField" in errors[0], (release, errors)
        where = "/" + "/".join(map(str, path))
        assert f" at {where}:" in errors[0], errors


def test_an_object_the_schema_leaves_empty_takes_no_fields() -> None:
    # FlinkStateSnapshot spec.checkpoint is `type: object` without properties: pruned to {}
    spec: dict = {"jobReference": {"kind": "FlinkDeployment", "name": "torghut-ta"}}
    snap = {
        "apiVersion": "flink.apache.org/v1beta1",
        "kind": "FlinkStateSnapshot",
        "metadata": {"name": "cp"},
        "spec": spec,
    }
    spec["checkpoint"] = {}
    assert custom_resource_errors(snap) == []
    spec["checkpoint"] = {"bogus": 1}
    assert any("bogus" in e for e in custom_resource_errors(snap))


def test_flink_configuration_is_preserved_and_accepts_structured_values() -> None:
    # operator 1.13: flinkConfiguration is x-kubernetes-preserve-unknown-fields (FLINK-37406)
    flink = _base("FlinkDeployment", "torghut-ta")
    flink["spec"]["flinkConfiguration"].update(
        {
            "any.made.up.key": "v",
            "taskmanager.numberOfTaskSlots": 1,
            "nested": {"deeper": {"list": [1, "two", {"three": None}]}},
        }
    )
    assert custom_resource_errors(flink) == []


@pytest.mark.parametrize("release", STRIMZI_RELEASES)
def test_kafkatopic_config_is_preserved_so_any_key_passes(release: str) -> None:
    topic = _base("KafkaTopic")
    topic["spec"]["config"]["bogus.made.up"] = "1"
    topic["spec"]["config"]["structured"] = {"a": [1, 2]}
    assert custom_resource_errors(topic, release) == []


@pytest.mark.parametrize("release", STRIMZI_RELEASES)
def test_v1_dropped_the_single_acl_operation_field(release: str) -> None:
    user = _base("KafkaUser", "torghut-ta")
    acl = user["spec"]["authorization"]["acls"][0]
    acl["operation"] = acl.pop("operations")[0]
    errors = custom_resource_errors(user, release)
    assert any("operation" in e and "Additional properties" in e for e in errors), errors
    assert any("'operations' is a required property" in e for e in errors), errors


@pytest.mark.parametrize("release", STRIMZI_RELEASES)
def test_v1_requires_spec(release: str) -> None:
    topic = _base("KafkaTopic")
    del topic["spec"]
    assert any("'spec' is a required property" in e for e in custom_resource_errors(topic, release))


def test_strict_validation_rejects_an_unknown_acl_operation() -> None:
    user = _base("KafkaUser", "torghut-ta")
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Produce"]
    for release in STRIMZI_RELEASES:
        assert custom_resource_errors(user, release)


def test_v1beta2_is_no_longer_served_at_the_top_of_the_range() -> None:
    topic = _base("KafkaTopic")
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert custom_resource_errors(topic, STRIMZI_RELEASES[0]) == []
    assert any(
        "serves no kafka.strimzi.io/v1beta2" in e
        for e in custom_resource_errors(topic, "strimzi-1.2.0")
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [(2, True), ("500m", True), (1.5, False), (True, False), ({"a": 1}, False), (None, False)],
)
def test_int_or_string_admits_only_integers_and_strings(value: object, ok: bool) -> None:
    flink = _base("FlinkDeployment", "torghut-ta")
    container = flink["spec"]["podTemplate"]["spec"]["containers"][0]
    container["resources"] = {"limits": {"cpu": value}}
    assert (custom_resource_errors(flink) == []) is ok


# --- strict_json_schema on small schemas (the pruning rules themselves) --------------------

_SMALL = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "known": {"type": "string"},
                "empty": {"type": "object"},
                "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "bare": {"x-kubernetes-int-or-string": True},
                "maybe": {"type": "string", "nullable": True, "enum": ["a"]},
                "kept": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"typed": {"type": "object", "properties": {"x": {}}}},
                },
                "keptList": {
                    "type": "array",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "items": {"type": "object", "properties": {"x": {"type": "string"}}},
                },
                "oneOfBranches": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"properties": {"b": {}}, "required": ["b"]}],
                },
            },
        }
    },
}


def _small_ok(spec: dict) -> bool:
    doc = {"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"}, "spec": spec}
    return Draft4Validator(strict_json_schema(_SMALL)).is_valid(doc)


@pytest.mark.parametrize(
    ("spec", "ok"),
    [
        ({"known": "k"}, True),
        ({"bogus": 1}, False),
        ({"empty": {}}, True),
        ({"empty": {"x": 1}}, False),
        ({"map": {"any-key": 1}}, True),
        ({"map": {"any-key": "s"}}, False),
        ({"port": 80}, True),
        ({"port": "http"}, True),
        ({"port": 1.5}, False),
        ({"bare": 80}, True),
        ({"bare": "http"}, True),
        ({"bare": [80]}, False),
        ({"maybe": None}, True),
        ({"maybe": "b"}, False),
        ({"kept": {"anything": {"at": ["all", 1]}}}, True),
        ({"kept": {"typed": {"x": 1}}}, True),
        ({"kept": {"typed": {"pruned": 1}}}, False),
        ({"keptList": [{"x": "s", "unknown": 1}]}, True),
        ({"keptList": [{"x": 1}]}, False),
        ({"oneOfBranches": {"b": "only b"}}, True),
    ],
)
def test_strict_json_schema_follows_the_api_server_pruning_rules(spec: dict, ok: bool) -> None:
    assert _small_ok(spec) is ok


def test_strict_json_schema_does_not_change_its_input() -> None:
    before = copy.deepcopy(_SMALL)
    strict_json_schema(_SMALL)
    assert before == _SMALL


def test_strict_json_schema_checks_root_metadata_as_object_meta() -> None:
    schema = strict_json_schema(crd_schema("kafka.strimzi.io", "KafkaTopic", "v1", "strimzi-1.2.0"))
    validator = Draft4Validator(schema)
    doc = _base("KafkaTopic")
    assert validator.is_valid(doc)
    doc["metadata"]["label"] = {"typo": "of labels"}
    assert not validator.is_valid(doc)
    doc["metadata"].pop("label")
    doc["metadata"]["labels"]["n"] = 1  # label values are strings
    assert not validator.is_valid(doc)
