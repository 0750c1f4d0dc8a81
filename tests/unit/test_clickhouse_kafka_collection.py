"""The ClickHouse Kafka engine's credentials live in a named collection, never in DDL text,
CLI errors, output or argv.

`torghut clickhouse apply` runs here against a recording fake client: every statement it
would send is checked for the SASL password.
"""

from __future__ import annotations

import argparse
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from torghut.clickhouse import cli
from torghut.clickhouse.schema import (
    KAFKA_COLLECTION_ENV,
    KAFKA_COLLECTION_XML,
    SchemaApplyError,
    SchemaParams,
    plaintext_collection_statements,
)

PASSWORD = "s3cr3t-KAFKA-pw-7f1e"
CH_PASSWORD = "s3cr3t-CH-pw-91ad"
URL = f"clickhouse://torghut_ddl:{CH_PASSWORD}@clickhouse.torghut.svc:9000/default"


class RecordingClient:
    """Answers like a server; `collection_source` is what system.named_collections says."""

    kind = "fake"

    def __init__(self, collection_source: str | None) -> None:
        self.collection_source = collection_source
        self.statements: list[str] = []

    def execute(self, sql: str) -> None:
        self.statements.append(sql)

    def rows(self, sql: str) -> list[list[Any]]:
        self.statements.append(sql)
        if "system.named_collections" in sql:
            return [[self.collection_source]] if self.collection_source else []
        return [[1]]

    def close(self) -> None:
        pass


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(["apply", *argv])


def run_cli(monkeypatch, capsys, client: RecordingClient, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv(KAFKA_COLLECTION_ENV["password"], PASSWORD)
    monkeypatch.setattr(cli, "connect", lambda target: client)
    monkeypatch.setattr(cli, "ChdbClient", lambda target, config_file: client)
    args = parse(*argv)
    assert PASSWORD not in repr(vars(args))
    rc = cli.run(args)
    out = capsys.readouterr()
    return rc, out.out + out.err


def kafka_tables(statements: list[str]) -> list[str]:
    return [s for s in statements if "ENGINE = Kafka" in " ".join(s.split())]


def test_sasl_ssl_ddl_references_the_named_collection_and_holds_no_password(
    monkeypatch, capsys
) -> None:
    """The k8s Job's invocation: URL from env, SASL_SSL, the collection from config.d."""
    monkeypatch.setenv("TORGHUT_CH_URL", URL)
    client = RecordingClient("CONFIG")
    argv = ("--registry-url=http://karapace:8081", "--kafka-security-protocol=SASL_SSL")
    rc, output = run_cli(monkeypatch, capsys, client, *argv)
    assert rc == 0, output
    assert len(kafka_tables(client.statements)) == 3  # bars, signals, minute checks
    for stmt in kafka_tables(client.statements):
        flat = " ".join(stmt.split())
        assert "ENGINE = Kafka(torghut_kafka) SETTINGS kafka_topic_list" in flat
        for key in ("kafka_broker_list", "kafka_security_protocol", "kafka_sasl", "ssl"):
            assert key not in flat, key
    # the config.d collection is used as it is: apply creates none
    assert not [s for s in client.statements if "NAMED COLLECTION" in s]
    everything = "\n".join(client.statements) + output + " ".join(argv)
    assert PASSWORD not in everything
    assert CH_PASSWORD not in output + " ".join(argv)


def test_sasl_ssl_without_a_config_collection_fails_naming_the_fix_not_the_password(
    monkeypatch, capsys
) -> None:
    client = RecordingClient(None)
    rc, output = run_cli(
        monkeypatch,
        capsys,
        client,
        f"--url={URL}",
        "--registry-url=http://karapace:8081",
        "--kafka-security-protocol=SASL_SSL",
    )
    assert rc == 1
    assert "defines no named collection 'torghut_kafka'" in output
    assert "torghut-kafka.xml" in output and "docs/deploy.md" in output
    assert PASSWORD not in output and CH_PASSWORD not in output
    assert not kafka_tables(client.statements)


def test_sasl_ssl_on_the_embedded_engine_loads_the_config_snippet_with_env_values(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    opened: dict[str, Any] = {}
    client = RecordingClient("CONFIG")

    def chdb(target, config_file):
        opened.update(target=target, config_file=config_file)
        return client

    for name in KAFKA_COLLECTION_ENV.values():  # recorded, so the CLI's values are undone
        monkeypatch.setenv(name, "")
    monkeypatch.setenv(KAFKA_COLLECTION_ENV["password"], PASSWORD)
    monkeypatch.setattr(cli, "ChdbClient", chdb)
    argv = [
        f"--data-dir={tmp_path}",
        "--registry-url=http://127.0.0.1:8081",
        "--kafka-broker=127.0.0.1:9093",
        "--kafka-security-protocol=sasl_ssl",
        "--kafka-sasl-username=torghut",
        "--kafka-ssl-ca-location=/tmp/ca.pem",
    ]
    assert cli.run(parse(*argv)) == 0
    assert opened == {"target": str(tmp_path), "config_file": KAFKA_COLLECTION_XML}
    assert os.environ[KAFKA_COLLECTION_ENV["broker"]] == "127.0.0.1:9093"
    assert os.environ[KAFKA_COLLECTION_ENV["ca"]] == "/tmp/ca.pem"
    out = capsys.readouterr()
    assert PASSWORD not in "\n".join(client.statements) + out.out + out.err + " ".join(argv)
    assert len(kafka_tables(client.statements)) == 3  # bars, signals, minute checks


def test_plaintext_local_path_creates_a_collection_without_credentials(monkeypatch, capsys):
    client = RecordingClient(None)
    rc, output = run_cli(
        monkeypatch,
        capsys,
        client,
        "--data-dir=/nonexistent",
        "--kafka-broker=127.0.0.1:9092",
        "--registry-url=http://127.0.0.1:8081",
    )
    assert rc == 0, output
    named = [s for s in client.statements if "NAMED COLLECTION" in s]
    assert client.statements.index(named[0]) > client.statements.index(
        "DROP DATABASE IF EXISTS torghut_ingest SYNC"  # no table uses it when it is dropped
    )
    created = [s for s in client.statements if s.startswith("CREATE NAMED COLLECTION")]
    # the read_committed collection and its read_uncommitted twin (the at-least-once profile)
    common = (
        "kafka_broker_list = '127.0.0.1:9092', kafka_security_protocol = 'plaintext', "
        "`kafka.session_timeout_ms` = 10000"
    )
    assert created == [
        f"CREATE NAMED COLLECTION torghut_kafka AS {common}, "
        "`kafka.isolation_level` = 'read_committed'",
        f"CREATE NAMED COLLECTION torghut_kafka_uncommitted AS {common}, "
        "`kafka.isolation_level` = 'read_uncommitted'",
    ]
    assert client.statements.index(created[0]) < client.statements.index(
        kafka_tables(client.statements)[0]
    )
    assert "sasl" not in "\n".join(client.statements).lower()


@pytest.mark.parametrize("broker", ["b:9092' , kafka_sasl_password = 'x", "b:9092\n"])
def test_a_plaintext_collection_takes_only_a_broker_list(broker: str) -> None:
    with pytest.raises(SchemaApplyError, match="not a broker list"):
        plaintext_collection_statements("torghut_kafka", broker, "torghut_ingest")


def test_schema_params_carry_no_kafka_credentials() -> None:
    fields = set(SchemaParams.__dataclass_fields__)
    assert not {f for f in fields if "sasl" in f or "password" in f or "security" in f}


def test_the_config_snippet_defines_a_sasl_ssl_collection_whose_secrets_come_from_env() -> None:
    root = ET.parse(KAFKA_COLLECTION_XML).getroot()
    coll, twin = root.find("named_collections")
    assert coll.tag == SchemaParams("", "").kafka_collection
    # the at-least-once profile's twin: the same connection, read_uncommitted
    assert twin.tag == SchemaParams("", "").kafka_collection_uncommitted
    strip = [(e.tag, e.text, e.attrib) for e in twin if e.tag != "kafka"]
    assert strip == [(e.tag, e.text, e.attrib) for e in coll if e.tag != "kafka"]
    twin_rdkafka = {e.tag: e.text for e in twin.find("kafka")}
    assert twin_rdkafka == {
        **{e.tag: e.text for e in coll.find("kafka")},
        "isolation_level": "read_uncommitted",
    }
    values = {e.tag: e for e in coll}
    assert values["kafka_security_protocol"].text == "sasl_ssl"
    assert values["kafka_sasl_mechanism"].text == "SCRAM-SHA-512"
    rdkafka = {e.tag: e for e in values["kafka"]}
    assert rdkafka["ssl_endpoint_identification_algorithm"].text == "https"
    assert rdkafka["isolation_level"].text == "read_committed"
    from_env = {
        "kafka_broker_list": KAFKA_COLLECTION_ENV["broker"],
        "kafka_sasl_username": KAFKA_COLLECTION_ENV["username"],
        "kafka_sasl_password": KAFKA_COLLECTION_ENV["password"],
    }
    for tag, env in from_env.items():
        assert values[tag].get("from_env") == env and not (values[tag].text or "").strip()
    ca = rdkafka["ssl_ca_location"]
    assert ca.get("from_env") == KAFKA_COLLECTION_ENV["ca"] and not (ca.text or "").strip()


def test_the_clickhouse_server_env_holds_everything_but_the_password() -> None:
    env_file = KAFKA_COLLECTION_XML.with_name("kafka.env")
    env = dict(line.split("=", 1) for line in env_file.read_text().split())
    assert set(env) == set(KAFKA_COLLECTION_ENV.values()) - {KAFKA_COLLECTION_ENV["password"]}
    assert env[KAFKA_COLLECTION_ENV["broker"]].endswith(":9093")  # the SASL_SSL listener
    assert env[KAFKA_COLLECTION_ENV["username"]] == "torghut-clickhouse"
