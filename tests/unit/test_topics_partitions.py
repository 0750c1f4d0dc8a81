"""The catalog's one partition setting (`shared.topics.catalog`, `TORGHUT_PARTITIONS`)."""

from __future__ import annotations

import pytest

from shared.topics import (
    ALL_TOPICS,
    MAX_PARTITIONS,
    QUOTES,
    STATUS,
    TA_STATUS,
    TRADES,
    catalog,
    partitions_from_env,
)


def test_the_default_catalog_is_one_partition_everywhere() -> None:
    assert catalog() == ALL_TOPICS
    assert {t.partitions for t in ALL_TOPICS} == {1}


def test_more_partitions_shard_the_symbol_keyed_topics_and_keep_the_rest() -> None:
    topics = {t.name: t for t in catalog(4)}
    assert topics[TRADES.name].partitions == topics[QUOTES.name].partitions == 4
    assert topics[STATUS.name].partitions == topics[TA_STATUS.name].partitions == 1
    # nothing else of a topic changes
    for t in ALL_TOPICS:
        assert topics[t.name].config() == t.config()
        assert (topics[t.name].key, topics[t.name].value_schema) == (t.key, t.value_schema)


@pytest.mark.parametrize("bad", [0, -1, MAX_PARTITIONS + 1])
def test_a_partition_count_out_of_range_is_refused_naming_the_setting(bad) -> None:
    with pytest.raises(ValueError, match=f"TORGHUT_PARTITIONS={bad}"):
        catalog(bad)


def test_the_setting_comes_from_the_environment_validated() -> None:
    assert partitions_from_env({}) == 1
    assert partitions_from_env({"TORGHUT_PARTITIONS": "4"}) == 4
    with pytest.raises(ValueError, match="whole number"):
        partitions_from_env({"TORGHUT_PARTITIONS": "four"})
    with pytest.raises(ValueError, match="1 to 64"):
        partitions_from_env({"TORGHUT_PARTITIONS": "100"})
