"""k8s/base/kafka/topics.yaml is generated from shared/topics.py and must not drift."""

from __future__ import annotations

import argparse

import pytest

from shared.topics import ALL_TOPICS
from torghut import k8s_cli
from torghut.k8s_render import load_yaml_docs


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    k8s_cli.add_arguments(parser)
    return k8s_cli.run(parser.parse_args(argv))


def test_committed_topics_yaml_matches_the_catalog() -> None:
    assert k8s_cli.check_topics() == [], "run `torghut k8s render-topics` and commit the result"


def test_render_topics_check_exits_zero_when_the_file_matches() -> None:
    assert _run(["render-topics", "--check"]) == 0


def test_render_topics_check_exits_nonzero_on_drift(tmp_path, capsys) -> None:
    drifted = tmp_path / "topics.yaml"
    drifted.write_text(k8s_cli.render_topics().replace("replicas: 3", "replicas: 2", 1))
    assert _run(["render-topics", "--check", "--path", str(drifted)]) == 1
    assert "drifted" in capsys.readouterr().err


def test_render_topics_check_exits_nonzero_when_the_file_is_missing(tmp_path) -> None:
    assert _run(["render-topics", "--check", "--path", str(tmp_path / "none.yaml")]) == 1


def test_render_topics_writes_a_file_that_then_passes_check(tmp_path) -> None:
    out = tmp_path / "k8s" / "topics.yaml"
    assert _run(["render-topics", "--path", str(out)]) == 0
    assert _run(["render-topics", "--check", "--path", str(out)]) == 0


def test_every_catalog_topic_becomes_one_strimzi_kafkatopic_with_its_settings() -> None:
    docs = load_yaml_docs(k8s_cli.TOPICS_YAML)
    assert [d["spec"]["topicName"] for d in docs] == [t.name for t in ALL_TOPICS]
    for doc, t in zip(docs, ALL_TOPICS, strict=True):
        assert doc["apiVersion"] == "kafka.strimzi.io/v1"
        assert doc["kind"] == "KafkaTopic"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == k8s_cli.STRIMZI_CLUSTER
        assert doc["spec"]["partitions"] == t.partitions
        assert doc["spec"]["replicas"] == t.replication_factor
        assert doc["spec"]["config"] == t.config()
        assert doc["spec"]["config"]["compression.type"] == "lz4"


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=lambda t: t.name)
def test_topic_resource_names_are_valid_kubernetes_names(topic) -> None:
    import re

    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", topic.name)


def test_render_topics_with_partitions_shards_only_the_symbol_keyed_topics(tmp_path) -> None:
    out = tmp_path / "topics.yaml"
    assert _run(["render-topics", "--partitions", "4", "--path", str(out)]) == 0
    docs = {d["spec"]["topicName"]: d for d in load_yaml_docs(out)}
    for t in ALL_TOPICS:
        want = 4 if t.key == "symbol" else 1
        assert docs[t.name]["spec"]["partitions"] == want, t.name
    assert docs["torghut.trades.v1"]["spec"]["partitions"] == 4
    assert docs["ta.status.v1"]["spec"]["partitions"] == 1
    # the committed base (1 partition) is not what --partitions 4 renders
    assert _run(["render-topics", "--check", "--partitions", "4"]) == 1
    assert _run(["render-topics", "--check", "--partitions", "4", "--path", str(out)]) == 0


def test_render_topics_refuses_a_partition_count_out_of_range(tmp_path, capsys) -> None:
    assert _run(["render-topics", "--partitions", "0", "--path", str(tmp_path / "t.yaml")]) == 2
    assert "TORGHUT_PARTITIONS=0" in capsys.readouterr().err
    assert not (tmp_path / "t.yaml").exists()
