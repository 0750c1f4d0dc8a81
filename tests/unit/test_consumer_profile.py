"""The consumer profile (`shared/consumer_profile.py`): its settings and what it renders into
the ClickHouse ingest DDL, and `torghut clickhouse flags` touching only the ingest database.

The runtime behaviour (ingestion off and on, profile and version switches against the real
Kafka and ClickHouse's engine) is drilled in `tests/integration/test_consumer_profile.py`.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

import pytest
from pydantic import ValidationError

from shared.consumer_profile import ConsumerProfile
from shared.ta_consumer import dedup_key
from torghut.clickhouse import cli
from torghut.clickhouse.schema import (
    INGEST_FILES,
    SQL_DIR,
    SchemaApplyError,
    SchemaParams,
    profile_statements,
)


@pytest.fixture(autouse=True)
def _no_consumer_env(monkeypatch) -> None:
    import os

    for name in [k for k in os.environ if k.startswith("TORGHUT_CONSUMER_")]:
        monkeypatch.delenv(name)


def ingest(profile: ConsumerProfile) -> list[str]:
    params = SchemaParams(kafka_broker="b:9092", registry_url="http://r:8081", profile=profile)
    out: list[str] = []
    for name in INGEST_FILES:
        out += [" ".join(s.split()) for s in profile_statements(SQL_DIR / name, params)]
    return out


def kafka_tables(stmts: list[str]) -> dict[str, tuple[str, str]]:
    """queue name -> (named collection, topic)."""
    out = {}
    for s in stmts:
        m = re.match(r"CREATE TABLE torghut_ingest\.(\w+) .*ENGINE = Kafka\((\w+)\)", s)
        if m:
            topic = re.search(r"kafka_topic_list = '([^']+)'", s)
            assert topic
            out[m.group(1)] = (m.group(2), topic.group(1))
    return out


def views(stmts: list[str]) -> set[str]:
    return {s.split()[3] for s in stmts if s.startswith("CREATE MATERIALIZED VIEW")}


def test_the_default_profile_is_exactly_once_enabled_on_the_v1_topics() -> None:
    p = ConsumerProfile()
    assert (p.profile, p.enabled, p.bars_topic, p.signals_topic, p.isolation) == (
        "exactly-once",
        True,
        "ta.bars.1s.v1",
        "ta.signals.v1",
        "read_committed",
    )


def test_every_field_comes_from_its_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("TORGHUT_CONSUMER_PROFILE", "at-least-once")
    monkeypatch.setenv("TORGHUT_CONSUMER_ENABLED", "false")
    monkeypatch.setenv("TORGHUT_CONSUMER_SIGNALS_VERSION", "2")
    p = ConsumerProfile()
    assert (p.profile, p.enabled, p.signals_topic, p.bars_topic, p.isolation) == (
        "at-least-once",
        False,
        "ta.signals.v2",
        "ta.bars.1s.v1",
        "read_uncommitted",
    )


def test_a_misspelt_variable_names_the_nearest_setting(monkeypatch) -> None:
    monkeypatch.setenv("TORGHUT_CONSUMER_PROFIL", "at-least-once")
    with pytest.raises(ValidationError, match="did you mean TORGHUT_CONSUMER_PROFILE"):
        ConsumerProfile()


@pytest.mark.parametrize(
    "over", [{"profile": "exactly-twice"}, {"signals_version": 0}, {"bars_version": 100}]
)
def test_an_unknown_profile_or_version_is_refused(over: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ConsumerProfile(**over)


def test_exactly_once_renders_only_the_read_committed_queues_on_the_v1_topics() -> None:
    stmts = ingest(ConsumerProfile())
    assert kafka_tables(stmts) == {
        "ta_microbars_queue": ("torghut_kafka", "ta.bars.1s.v1"),
        "ta_signals_queue": ("torghut_kafka", "ta.signals.v1"),
        "ta_bar_checks_queue": ("torghut_kafka", "ta.bar-checks.v1"),
    }
    assert not any("provisional" in v for v in views(stmts))


def test_at_least_once_adds_read_uncommitted_queues_whose_views_load_provisional_rows_only() -> (
    None
):
    stmts = ingest(ConsumerProfile(profile="at-least-once"))
    tables = kafka_tables(stmts)
    assert tables["ta_microbars_provisional_queue"] == (
        "torghut_kafka_uncommitted",
        "ta.bars.1s.v1",
    )
    assert tables["ta_signals_provisional_queue"] == ("torghut_kafka_uncommitted", "ta.signals.v1")
    # the final rows keep their read_committed path
    assert tables["ta_signals_queue"] == ("torghut_kafka", "ta.signals.v1")
    provisional = [
        s for s in stmts if s.startswith("CREATE MATERIALIZED VIEW") and "provisional" in s
    ]
    assert len(provisional) == 2
    assert all(s.endswith("WHERE length(_error) = 0 AND NOT is_final") for s in provisional)


@pytest.mark.parametrize("profile", ["exactly-once", "at-least-once"])
def test_disabled_renders_the_ingest_database_without_any_kafka_table_or_view(profile) -> None:
    stmts = ingest(ConsumerProfile(profile=profile, enabled=False))
    assert stmts == [
        "DROP DATABASE IF EXISTS torghut_ingest SYNC",
        "CREATE DATABASE torghut_ingest ENGINE = Atomic",
    ]


def test_the_signals_version_picks_the_topic_of_both_signal_queues() -> None:
    tables = kafka_tables(ingest(ConsumerProfile(profile="at-least-once", signals_version=2)))
    assert tables["ta_signals_queue"][1] == "ta.signals.v2"
    assert tables["ta_signals_provisional_queue"][1] == "ta.signals.v2"
    assert tables["ta_microbars_queue"][1] == "ta.bars.1s.v1"


def test_dedup_key_is_symbol_window_start_finality_and_the_version_of_a_provisional() -> None:
    rec = {"symbol": "AAPL", "window": {"start": 5}, "is_final": False, "version": 3, "close": 1}
    assert dedup_key(rec) == ("AAPL", 5, False, 3)
    assert dedup_key({**rec, "version": 4}) != dedup_key(rec)  # another update of the bar
    final = {**rec, "is_final": True}
    # a final repeated by a restore (same values, newer version) is the same record
    assert dedup_key(final) == dedup_key({**final, "version": 9}) == ("AAPL", 5, True, None)
    assert dedup_key({"job": "ta", "watermark": 1}) is None  # ta.status.v1: nothing to dedup


class RecordingClient:
    kind = "fake"

    def __init__(self) -> None:
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)

    def rows(self, sql: str) -> list[list[Any]]:
        if "system.named_collections" in sql:
            return [["CONFIG"]]
        return [[1]]

    def close(self) -> None:
        pass


def run(monkeypatch, capsys, *argv: str) -> tuple[int, str, list[str]]:
    client = RecordingClient()
    monkeypatch.setattr(cli, "connect", lambda target: client)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [*argv, "--url", "clickhouse://u:p@ch:9000/default", "--registry-url", "http://r:8081"]
    )
    rc = cli.run(args)
    out = capsys.readouterr()
    return rc, out.out + out.err, client.statements


def test_flags_recreates_only_the_ingest_database_never_the_tables_that_hold_data(
    monkeypatch, capsys
) -> None:
    rc, out, stmts = run(monkeypatch, capsys, "flags", "--no-enabled")
    assert rc == 0, out
    assert stmts == [
        "DROP DATABASE IF EXISTS torghut_ingest SYNC",
        "CREATE DATABASE torghut_ingest ENGINE = Atomic",
    ]
    assert "consumer profile: exactly-once, disabled" in out
    rc, out, stmts = run(
        monkeypatch, capsys, "flags", "--profile", "at-least-once", "--signals-version", "2"
    )
    assert rc == 0, out
    assert not [s for s in stmts if "torghut." in s.split("(")[0] and "ingest" not in s]
    assert sum("ENGINE = Kafka" in s for s in stmts) == 5
    assert "at-least-once, enabled, ta.bars.1s.v1, ta.signals.v2" in out


def test_the_options_override_the_environment_and_a_bad_value_is_a_clear_error(
    monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TORGHUT_CONSUMER_PROFILE", "at-least-once")
    rc, out, _ = run(monkeypatch, capsys, "apply")
    assert rc == 0 and "consumer profile: at-least-once" in out
    rc, out, _ = run(monkeypatch, capsys, "apply", "--profile", "exactly-once")
    assert rc == 0 and "consumer profile: exactly-once" in out
    rc, out, _ = run(monkeypatch, capsys, "flags", "--signals-version", "0")
    assert rc == 1
    assert "torghut clickhouse flags: consumer profile: signals_version" in out


def test_at_least_once_on_a_server_without_the_read_uncommitted_collection_is_refused(
    monkeypatch, capsys
) -> None:
    client = RecordingClient()
    client.rows = lambda sql: (  # type: ignore[method-assign]
        [] if "torghut_kafka_uncommitted" in sql else [["CONFIG"]]
    )
    monkeypatch.setattr(cli, "connect", lambda target: client)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(
        [
            "flags",
            "--profile",
            "at-least-once",
            "--url",
            "clickhouse://u:p@ch:9000/d",
            "--registry-url",
            "http://r",
        ]
    )
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert "'torghut_kafka_uncommitted'" in err and "torghut-kafka.xml" in err
    with pytest.raises(SchemaApplyError):
        from torghut.clickhouse.schema import ensure_kafka_collection

        ensure_kafka_collection(
            client,
            SchemaParams("", "", profile=ConsumerProfile(profile="at-least-once")),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("overlay", ["dev", "stage", "prod"])
def test_each_overlay_states_a_valid_consumer_profile_for_the_schema_job(overlay, monkeypatch):
    from tests.support.k8s import built, one

    data = one(built(overlay), "ConfigMap", "torghut-clickhouse-schema")["data"]
    env = {k: v for k, v in data.items() if k.startswith("TORGHUT_CONSUMER_")}
    assert set(env) == {f"TORGHUT_CONSUMER_{f.upper()}" for f in ConsumerProfile.model_fields}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    p = ConsumerProfile()
    # production default: exactly-once, consuming, the v1 topics
    assert p.describe() == "exactly-once, enabled, ta.bars.1s.v1, ta.signals.v1"
