"""Every custom resource in k8s/ validates against the CRDs of the targeted operator releases.

The schemas come from released jars on Maven Central (jvm/crds/pom.xml -> .artifacts/crds),
never hand-written; unknown fields are errors, as with `kubectl apply --validate=strict`.
"""

from __future__ import annotations

import pytest
from jsonschema import Draft4Validator

from torghut.k8s_render import (
    BASE_DIR,
    CRDS_DIR,
    OVERLAYS,
    ManifestError,
    base_resource_docs,
    crd_files,
    crd_schema,
    find,
    kustomize_bin,
    kustomize_build,
    strict_json_schema,
)

CUSTOM_KINDS = ("FlinkDeployment", "KafkaTopic", "KafkaUser")


def _validator(doc: dict) -> Draft4Validator:
    group, version = doc["apiVersion"].split("/")
    try:
        schema = crd_schema(group, doc["kind"], version)
    except ManifestError as exc:
        pytest.fail(str(exc))
    return Draft4Validator(strict_json_schema(schema))


def _errors(doc: dict) -> list[str]:
    return [
        f"{doc['kind']}/{doc['metadata']['name']} at /{'/'.join(map(str, e.absolute_path))}: "
        f"{e.message}"
        for e in _validator(doc).iter_errors(doc)
    ]


def test_released_crds_are_unpacked() -> None:
    try:
        files = crd_files()
    except ManifestError as exc:
        pytest.fail(str(exc))
    names = {p.name for p in files}
    assert "flinkdeployments.flink.apache.org-v1.yml" in names, CRDS_DIR
    assert "043-Crd-kafkatopic.yaml" in names and "044-Crd-kafkauser.yaml" in names, CRDS_DIR


def test_base_custom_resources_validate_against_the_released_crds() -> None:
    docs = [d for d in base_resource_docs() if d["kind"] in CUSTOM_KINDS]
    assert {d["kind"] for d in docs} == set(CUSTOM_KINDS), BASE_DIR
    problems = [e for d in docs for e in _errors(d)]
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_custom_resources_validate_against_the_released_crds(overlay: str) -> None:
    if kustomize_bin() is None:
        pytest.skip("kustomize not installed (.artifacts/bin/kustomize); run `make setup`")
    docs = kustomize_build(BASE_DIR.parent / "overlays" / overlay)
    custom = [d for d in docs if d["kind"] in CUSTOM_KINDS]
    assert len(find(custom, "FlinkDeployment")) == 1
    assert len(find(custom, "KafkaUser")) == 3
    problems = [e for d in custom for e in _errors(d)]
    assert problems == []


def test_strict_validation_rejects_a_misspelled_field() -> None:
    flink = find(base_resource_docs(), "FlinkDeployment", "torghut-ta")[0]
    flink["spec"]["job"]["upgradeMod"] = flink["spec"]["job"].pop("upgradeMode")
    assert any("upgradeMod" in e for e in _errors(flink))


def test_strict_validation_rejects_an_unknown_acl_operation() -> None:
    user = find(base_resource_docs(), "KafkaUser", "torghut-ta")[0]
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Produce"]
    assert _errors(user)
