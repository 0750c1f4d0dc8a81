"""ClickHouse's Kafka engine consuming over SASL_SSL through the named collection as
production defines it: the config.d snippet k8s/base/clickhouse/
torghut-kafka.xml, loaded into the embedded engine from a config.d directory next to its main
config, its `from_env` values (broker, user, password, CA) in the engine process's environment
only, `ssl_ca_location` and `ssl_endpoint_identification_algorithm=https` as written. The one
difference from production is the SASL mechanism: PLAIN instead of SCRAM-SHA-512, because
chdb-core 26.9.0's librdkafka has no SCRAM provider (the last test here pins that down, so
it fails, and says so, the day chdb gains it). The local broker's SASL_SSL listener takes PLAIN
for the user `torghut-clickhouse` next to SCRAM (torghut/stack/kafka.py).

Each engine runs in a process of its own (tests/support/chdb_consumer.py), with the schema
applied as `torghut clickhouse apply` applies it. Bars and signals are produced over the
PLAINTEXT listener (as the TA job's output, on the shared catalog topics, symbols unique to
this module); each engine has its own consumer group and reads from the earliest offset.

Not skippable: a stack without the SASL_SSL listener fails here (the testcontainers stack has
none; `torghut stack up`, which every test run uses by default, has it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import TA_BARS_1S, TA_SIGNALS
from tests.conftest import REPO_ROOT
from tests.support.kafka import producer
from tests.support.records import microbar, signal, window
from tests.support.relay import relay_to
from torghut.clickhouse.schema import KAFKA_COLLECTION_ENV, KAFKA_COLLECTION_XML
from torghut.stack.tls import write_ca_and_broker_cert

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8].upper()
SYMBOLS = (f"CS{RUN}A", f"CS{RUN}B")
WINDOWS = 5
# a minute ago: inside the tables' TTL
T0 = (time.time_ns() // 1_000_000_000 - 60) * 1_000_000
PROD_MECHANISM = "<kafka_sasl_mechanism>SCRAM-SHA-512</kafka_sasl_mechanism>"
HTTPS = "<ssl_endpoint_identification_algorithm>https</ssl_endpoint_identification_algorithm>"
NO_SCRAM = (
    "No provider for SASL mechanism SCRAM-SHA-512: recompile librdkafka with libsasl2 or "
    "openssl support. Current build options: PLAIN"
)
CERT_REFUSED = "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"


def _start(i: int) -> int:
    return T0 + i * 1_000_000


BARS = [
    microbar(symbol=s, window=window(_start(i)), version=2, close=100.0 + i, seq=i)
    for s in SYMBOLS
    for i in range(WINDOWS)
]
SIGNALS = [
    signal(symbol=s, window=window(_start(i)), is_final=True, version=1, close=100.0 + i)
    for s in SYMBOLS
    for i in range(WINDOWS)
]


def _expected(records: list[dict[str, Any]]) -> set[tuple[str, int, bool, int, float]]:
    return {
        (r["symbol"], r["window"]["start"], r["is_final"], r["version"], r["close"])
        for r in records
    }


def _got(rows: list[list[Any]]) -> list[tuple[str, int, bool, int, float]]:
    return [(s, int(w), bool(f), int(v), float(c)) for s, w, f, v, c in rows]


@pytest.fixture(scope="module")
def sasl_stack(stack):
    assert stack.kafka_sasl_ssl_bootstrap and stack.kafka_ca_file, (
        "the stack serves no SASL_SSL listener: this test needs the local stack "
        "(`torghut stack up`), not TORGHUT_TESTCONTAINERS=1"
    )
    assert stack.kafka_plain_user and stack.kafka_plain_password, (
        "the stack's SASL_SSL listener has no PLAIN user: restart it with this "
        "torghut/stack/kafka.py (`torghut stack down && torghut stack up`)"
    )
    return stack


#: the Kafka engine tables `torghut clickhouse apply` creates, in the order chdb lists them
KAFKA_QUEUES = ("ta_bar_checks_queue", "ta_microbars_queue", "ta_signals_queue")


@pytest.fixture(scope="module")
def produced(sasl_stack) -> None:
    """The module's bars and signals, on the catalog topics, before any engine starts."""
    registry = SchemaRegistryClient(sasl_stack.registry_url)
    bars, signals = AvroSerializer(registry, TA_BARS_1S), AvroSerializer(registry, TA_SIGNALS)
    p = producer(sasl_stack, acks="all")
    for r in BARS:
        p.produce(TA_BARS_1S.name, bars.encode(r), key=r["symbol"].encode())
    for r in SIGNALS:
        p.produce(TA_SIGNALS.name, signals.encode(r), key=r["symbol"].encode())
    assert p.flush(30) == 0


def engine_config(where: Path, mechanism: str = "PLAIN", identification: str = "https") -> Path:
    """A main config (the engine's log file) and, in its config.d, the production collection
    with `mechanism` (and `identification`) swapped in; returns the main config's path."""
    text = KAFKA_COLLECTION_XML.read_text()
    # two collections: read_committed and its read_uncommitted twin (the at-least-once
    # profile's provisional tables), the same connection: both get the swapped values
    assert text.count(PROD_MECHANISM) == 2 and text.count(HTTPS) == 2
    text = text.replace(PROD_MECHANISM, PROD_MECHANISM.replace("SCRAM-SHA-512", mechanism))
    text = text.replace(HTTPS, HTTPS.replace("https", identification))
    (where / "config.d").mkdir(parents=True)
    (where / "config.d" / KAFKA_COLLECTION_XML.name).write_text(text)
    main = where / "config.xml"
    main.write_text(
        "<clickhouse><logger>"
        f"<log>{where / 'clickhouse.log'}</log><level>trace</level><console>0</console>"
        "</logger></clickhouse>\n"
    )
    return main


def collection_env(stack, **over: str) -> dict[str, str]:
    """The collection's `from_env` values: the PLAIN user on the SASL_SSL listener."""
    values = {
        "broker": stack.kafka_sasl_ssl_bootstrap,
        "username": stack.kafka_plain_user,
        "password": stack.kafka_plain_password,
        "ca": stack.kafka_ca_file,
        **over,
    }
    return {KAFKA_COLLECTION_ENV[k]: v for k, v in values.items()}


def run_engine(
    stack,
    where: Path,
    env: dict[str, str],
    config: Path | None = None,
    error_marker: str = "",
    deadline_s: float = 90.0,
) -> tuple[dict[str, Any], str]:
    """An embedded engine in its own process until the bars and signals arrived (or, with
    `error_marker`, until that error shows); returns what it saw and its log."""
    where.mkdir(parents=True, exist_ok=True)
    config = config or engine_config(where / "conf")
    spec = {
        "data_dir": str(where / "data"),
        "config_file": str(config),
        "log_file": str(config.parent / "clickhouse.log"),
        "registry_url": stack.registry_url,
        "consumer_group": f"torghut-clickhouse-sasl-{uuid.uuid4().hex[:8]}",
        "symbols": list(SYMBOLS),
        "await": "error" if error_marker else "rows",
        "error_marker": error_marker,
        "expected_bars": len(BARS),
        "expected_signals": len(SIGNALS),
        "deadline_s": deadline_s,
        "out": str(where / "result.json"),
    }
    (where / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.chdb_consumer", str(where / "spec.json")],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=deadline_s + 120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = Path(spec["log_file"])
    return json.loads(Path(spec["out"]).read_text()), log.read_text(errors="replace")


def _exceptions(seen: dict[str, Any]) -> list[str]:
    return [e for _, errors, _ in seen["consumers"] for e in errors]


def _assert_nothing_read(seen: dict[str, Any]) -> None:
    assert seen["bars"] == [] and seen["signals"] == []
    assert seen["raw"] == {"ta_microbars": 0, "ta_signals": 0}
    assert [n for _, _, n in seen["consumers"]] == [0] * len(KAFKA_QUEUES)


def test_chdb_consumes_bars_and_signals_over_sasl_ssl_through_the_config_collection_once_each(
    sasl_stack, produced, tmp_path
):
    config = engine_config(tmp_path / "conf")
    drill = (tmp_path / "conf" / "config.d" / KAFKA_COLLECTION_XML.name).read_text()
    prod = KAFKA_COLLECTION_XML.read_text()
    # the production collections (read_committed and its read_uncommitted twin) but for the
    # SASL mechanism
    changed = [(a, b) for a, b in zip(prod.splitlines(), drill.splitlines(), strict=True) if a != b]
    assert [(a.strip(), b.strip()) for a, b in changed] == [
        (PROD_MECHANISM, "<kafka_sasl_mechanism>PLAIN</kafka_sasl_mechanism>")
    ] * 2
    password = sasl_stack.kafka_plain_password
    seen, log = run_engine(sasl_stack, tmp_path, collection_env(sasl_stack), config)
    assert seen["reached"], seen

    # every bar and signal once, as produced: under FINAL and as raw rows (no re-delivery)
    assert sorted(_got(seen["bars"])) == sorted(_expected(BARS))
    assert sorted(_got(seen["signals"])) == sorted(_expected(SIGNALS))
    assert seen["raw"] == {"ta_microbars": len(BARS), "ta_signals": len(SIGNALS)}
    assert seen["dead_letters"] == 0
    assert [(t, e) for t, e, _ in seen["consumers"]] == [(q, []) for q in KAFKA_QUEUES]

    # the collections are the config's (apply created none), their values hidden
    assert sorted((n, s) for n, s, _ in seen["collections"]) == [
        ("torghut_kafka", "CONFIG"),
        ("torghut_kafka_uncommitted", "CONFIG"),
    ]
    assert all(password not in values for _, _, values in seen["collections"])
    # what the engine was given: SASL_SSL, PLAIN, the CA file, host verification
    for setting in (
        "Consumer set property security.protocol:sasl_ssl",
        "Consumer set property sasl.mechanisms:PLAIN",
        f"Consumer set property ssl.ca.location:{sasl_stack.kafka_ca_file}",
        "Consumer set property ssl.endpoint.identification.algorithm:https",
        "Consumer set property enable.ssl.certificate.verification:true",
        f"Consumer set property sasl.username:{sasl_stack.kafka_plain_user}",
    ):
        assert setting in log, setting
    assert not [line for line in log.splitlines() if "<Error> StorageKafka" in line]

    # the password is in no DDL text, no log of the engine (at `trace`, which lists the
    # consumer's librdkafka properties, the user name among them) or the broker, no config file
    kafka_tables = [q for _, _, engine, q in seen["ddl"] if engine == "Kafka"]
    assert len(kafka_tables) == len(KAFKA_QUEUES)
    for query in kafka_tables:
        assert "ENGINE = Kafka(torghut_kafka) SETTINGS kafka_topic_list" in query
        for key in ("kafka_broker_list", "kafka_sasl", "ssl", "password"):
            assert key not in query, key
    assert not [q for *_, q in seen["ddl"] if password in q]
    assert password not in log
    assert password not in Path(sasl_stack.components["kafka"].log_file).read_text()
    assert password not in drill + config.read_text()


def test_a_wrong_password_is_refused_in_the_consumers_exceptions_and_never_shown(
    sasl_stack, produced, tmp_path
):
    wrong = "wrong-" + uuid.uuid4().hex
    seen, log = run_engine(
        sasl_stack,
        tmp_path,
        collection_env(sasl_stack, password=wrong),
        error_marker="SASL authentication error: Authentication failed: "
        "Invalid username or password",
        deadline_s=60,
    )
    assert seen["reached"], seen
    _assert_nothing_read(seen)
    assert f"sasl_ssl://{sasl_stack.kafka_sasl_ssl_bootstrap}/bootstrap" in _exceptions(seen)[0]
    shown = json.dumps(seen) + log
    assert wrong not in shown and sasl_stack.kafka_plain_password not in shown


def test_a_ca_that_did_not_sign_the_broker_fails_the_handshake(sasl_stack, produced, tmp_path):
    """The other CA has the very subject name of the broker's issuer (as a renewed Strimzi
    cluster CA has): the signature check, not a name lookup, refuses it. The consumers'
    exceptions show the handshake failure or OpenSSL's signature errors ("rsa routines::invalid
    padding"), the log always the handshake failure."""
    other_ca, _ = write_ca_and_broker_cert(tmp_path / "other-ca")
    seen, log = run_engine(
        sasl_stack,
        tmp_path / "engine",
        collection_env(sasl_stack, ca=str(other_ca)),
        error_marker="SSL handshake failed",
        deadline_s=60,
    )
    assert seen["reached"], seen
    _assert_nothing_read(seen)
    assert f"Consumer set property ssl.ca.location:{other_ca}" in log
    assert f"sasl_ssl://{sasl_stack.kafka_sasl_ssl_bootstrap}/bootstrap: {CERT_REFUSED}" in log
    # the consumers keep the last few exceptions: the handshake, OpenSSL's reasons, "down"
    reasons = (CERT_REFUSED, " routines::", "1/1 brokers are down")
    assert _exceptions(seen)
    assert all(any(r in e for r in reasons) for e in _exceptions(seen)), _exceptions(seen)
    assert sasl_stack.kafka_plain_password not in json.dumps(seen) + log


def test_a_broker_reached_by_a_name_its_certificate_lacks_is_refused(
    sasl_stack, produced, tmp_path
):
    """The broker's own certificate, signed by the trusted CA, reached through 127.0.0.2,
    which it does not name: `https` refuses the handshake. librdkafka's reason is the generic
    "certificate verify failed" (no word of the host name); system.kafka_consumers keeps the
    last few exceptions, so after a while it shows only "1/1 brokers are down", the engine's log
    keeps the reason. The control, the same relay with endpoint identification `none`, reads
    every bar: the host name check is what refused."""
    with relay_to(sasl_stack.kafka_sasl_ssl_bootstrap) as bootstrap:
        env = collection_env(sasl_stack, broker=bootstrap)
        seen, log = run_engine(
            sasl_stack, tmp_path / "https", env, error_marker=CERT_REFUSED, deadline_s=60
        )
        control, _ = run_engine(
            sasl_stack,
            tmp_path / "none",
            env,
            engine_config(tmp_path / "none" / "conf", identification="none"),
        )
    assert seen["reached"], seen
    _assert_nothing_read(seen)
    assert f"sasl_ssl://{bootstrap}/bootstrap: {CERT_REFUSED}" in log
    # every consumer's exceptions say the handshake or the brokers failed (three consumers
    # under load also log librdkafka's shorter "SSL handshake failed" variants)
    reasons = (CERT_REFUSED, "SSL handshake failed", "1/1 brokers are down")
    assert _exceptions(seen)
    assert all(any(r in e for r in reasons) for e in _exceptions(seen)), _exceptions(seen)
    assert control["reached"], control
    assert sorted(_got(control["bars"])) == sorted(_expected(BARS))


def test_the_production_collection_as_is_has_no_scram_provider_in_chdb(
    sasl_stack, produced, tmp_path
):
    """What stays undrilled: SCRAM-SHA-512 itself. Should a chdb-core release bring SCRAM,
    this fails: then drill SCRAM here instead of PLAIN (and update docs/reliability.md)."""
    seen, log = run_engine(
        sasl_stack,
        tmp_path,
        collection_env(
            sasl_stack,
            username=sasl_stack.kafka_scram_user,
            password=sasl_stack.kafka_scram_password,
        ),
        engine_config(tmp_path / "conf", mechanism="SCRAM-SHA-512"),
        error_marker=NO_SCRAM,
        deadline_s=60,
    )
    assert seen["reached"], seen
    _assert_nothing_read(seen)
    assert _exceptions(seen) and all(NO_SCRAM in e for e in _exceptions(seen))
    assert sasl_stack.kafka_scram_password not in json.dumps(seen) + log
