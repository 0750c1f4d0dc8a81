"""The TA job over the local broker's SASL_SSL listener: SCRAM-SHA-512, the stack's own CA,
host-name verification on (the broker certificate carries 127.0.0.1/localhost SANs,
torghut/stack/tls.py). The Kubernetes settings (k8s/base/flink/ta.env) are the same switch.

Not skippable: a stack without the SASL_SSL listener fails here (the testcontainers stack
has none; `torghut stack up`, which every test run uses by default, has it)."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.support.bar_oracle import oracle_bars
from tests.support.oracle import assert_final_bars_equal, start_us
from tests.support.relay import relay_to
from tests.support.ta_job import EnvelopeProducer, TaJobProcess, read_topic
from torghut.stack.tls import write_ca_and_broker_cert

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    assert fresh_stack.kafka_sasl_ssl_bootstrap and fresh_stack.kafka_ca_file, (
        "the stack serves no SASL_SSL listener: this test needs the local stack "
        "(`torghut stack up`), not TORGHUT_TESTCONTAINERS=1"
    )
    return fresh_stack


def _sasl_ssl(stack, password: str) -> dict[str, object]:
    return {
        "kafka_bootstrap": stack.kafka_sasl_ssl_bootstrap,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": stack.kafka_scram_user,
        "kafka_sasl_password": password,
        "kafka_ssl_ca_location": stack.kafka_ca_file,
        "kafka_ssl_endpoint_identification_algorithm": "https",
    }


def _logs(workdir: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in sorted(workdir.rglob("*")) if p.is_file()
    )


def _argvs(job: TaJobProcess) -> list[str]:
    """The command lines of every process in the job's process group (driver, JVM, Python)."""
    assert job.proc is not None
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            pgid = int(stat.rsplit(")", 1)[1].split()[2])
            if pgid == job.proc.pid:
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return out


def test_ta_job_reads_and_writes_over_sasl_ssl_with_scram_and_host_verification(
    stack, unique, tmp_path
):
    rng = random.Random(11)
    symbols = [unique("TLSA").upper(), unique("TLSB").upper()]
    prod = EnvelopeProducer(stack)
    t0 = (time.time_ns() // S - 120) * S
    trades: list[tuple[str, int, float, float]] = []
    tid = 0
    for sec in range(20):
        for s in symbols:
            for _ in range(5):
                tid += 1
                ts = t0 + sec * S + rng.randrange(S)
                p, q = round(100 + rng.random(), 4), round(rng.uniform(1, 9), 2)
                prod.trade(s, ts, p, q, tid)
                trades.append((s, ts, p, q))
            prod.quote(s, t0 + sec * S + 500_000_000, 99.0, 101.0, 10.0, 10.0)
    for s in symbols:  # move event time past second 20 on both raw topics
        prod.trade(s, t0 + 30 * S, 100.0, 1.0, 10_000_000 + tid)
        prod.quote(s, t0 + 30 * S, 99.0, 101.0, 10.0, 10.0)
    prod.flush()
    expected = {
        (b.symbol, b.start_ns // 1000): b
        for b in oracle_bars(trades, S)
        if b.start_ns < t0 + 20 * S
    }

    password = stack.kafka_scram_password
    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-tls"),
        unique("tx-tls"),
        unique("grp-tls"),
        settings=_sasl_ssl(stack, password),
    )
    job.start()
    try:
        wait_for(lambda: len(_argvs(job)) >= 2, 30, "the job's processes")
        argvs = _argvs(job)
        got = read_topic(  # read_committed: only what the job's transactions committed
            stack,
            "ta.bars.1s.v1",
            set(symbols),
            lambda recs: sum(r["is_final"] for r in recs) >= len(expected),
            timeout_s=90,
            job=job,
        )
        argvs += _argvs(job)
    finally:
        job.stop()
    assert_final_bars_equal(got, expected, rel=1e-12)
    assert {start_us(r) for r in got} <= {k[1] for k in expected} | {(t0 + 30 * S) // 1000}
    logs = _logs(tmp_path)
    # the Java clients ran with TLS, SCRAM and host-name verification (their logged config)
    assert "security.protocol = SASL_SSL" in logs
    assert "ssl.endpoint.identification.algorithm = https" in logs
    assert "sasl.mechanism = SCRAM-SHA-512" in logs
    assert password not in logs
    assert argvs and not [a for a in argvs if password in a]


def test_ta_job_with_a_wrong_scram_password_fails_authentication_and_never_logs_it(
    stack, unique, tmp_path
):
    """The start-up check (`flink_job.kafka_io.raw_partition_counts`, the source's own client
    settings) turns the broker's refusal into a typed error naming the setting and the Secret,
    and the job exits instead of retrying a password that cannot start working."""
    wrong = "wrong-" + unique("pw")
    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-badpw"),
        unique("tx-badpw"),
        unique("grp-badpw"),
        settings=_sasl_ssl(stack, wrong),
    )
    job.start()
    try:
        wait_for(lambda: len(_argvs(job)) >= 1, 30, "the job's processes")
        argvs = _argvs(job)
        wait_for(lambda: not job.alive(), 60, "the job to exit")
    finally:
        job.stop()
    assert job.proc.returncode != 0
    logs = _logs(tmp_path)
    assert "KafkaAuthenticationError" in logs
    assert "TORGHUT_TA_KAFKA_SASL_PASSWORD is not that user's password" in logs
    assert f"refused user {stack.kafka_scram_user!r} (SCRAM-SHA-512)" in logs
    assert wrong not in logs
    assert argvs and not [a for a in argvs if wrong in a]


def test_ta_job_trusting_another_ca_fails_the_tls_handshake_with_a_clear_error(
    stack, unique, tmp_path
):
    """Host verification has a real CA to check against: a CA that did not sign the broker's
    certificate is refused at the handshake, and the job says which setting to fix."""
    other_ca, _ = write_ca_and_broker_cert(tmp_path / "other-ca")
    job = TaJobProcess(
        stack,
        tmp_path / "job",
        unique("cp-badca"),
        unique("tx-badca"),
        unique("grp-badca"),
        settings={
            **_sasl_ssl(stack, stack.kafka_scram_password),
            "kafka_ssl_ca_location": str(other_ca),
        },
    )
    job.start()
    try:
        wait_for(lambda: not job.alive(), 60, "the job to exit")
    finally:
        job.stop()
    assert job.proc.returncode != 0
    logs = _logs(tmp_path / "job")
    assert "KafkaAuthenticationError" in logs
    assert "TLS handshake with Kafka at" in logs
    assert f"TORGHUT_TA_KAFKA_SSL_CA_LOCATION={str(other_ca)!r}" in logs
    assert stack.kafka_scram_password not in logs


def test_ta_job_reaching_the_broker_by_a_name_its_certificate_lacks_is_refused(
    stack, unique, tmp_path
):
    """Endpoint identification is on: the broker's own certificate (signed by the trusted CA)
    reached through 127.0.0.2, which it does not name, fails the handshake. With
    verification off the handshake would pass and the metadata would lead on to 127.0.0.1."""
    with relay_to(stack.kafka_sasl_ssl_bootstrap) as bootstrap:
        job = TaJobProcess(
            stack,
            tmp_path,
            unique("cp-badhost"),
            unique("tx-badhost"),
            unique("grp-badhost"),
            settings={
                **_sasl_ssl(stack, stack.kafka_scram_password),
                "kafka_bootstrap": bootstrap,
            },
        )
        job.start()
        try:
            wait_for(lambda: not job.alive(), 60, "the job to exit")
        finally:
            job.stop()
    assert job.proc.returncode != 0
    logs = _logs(tmp_path)
    assert f"TLS handshake with Kafka at {bootstrap} failed" in logs
    assert "No subject alternative names matching IP address 127.0.0.2" in logs
    assert stack.kafka_scram_password not in logs
