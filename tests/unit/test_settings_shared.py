"""Shared settings: one typed Kafka connection, strict environment names, frozen objects."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flink_job.settings import TaFunctionConfig, TaSettings
from shared.settings import KafkaConnection, SettingsError, unknown_env


def test_a_misspelt_variable_is_an_error_naming_the_nearest_setting(monkeypatch):
    monkeypatch.setenv("TORGHUT_TA_CHECKPOINT_INTERVAL", "1000")
    with pytest.raises(ValidationError, match="did you mean TORGHUT_TA_CHECKPOINT_INTERVAL_MS"):
        TaSettings()


def test_a_variable_unlike_any_setting_is_an_error_too():
    problems = unknown_env("TORGHUT_TA_", ["kafka_bootstrap"], {"TORGHUT_TA_ZZZ": "1"})
    assert problems == ["TORGHUT_TA_ZZZ is not a setting; valid names start with TORGHUT_TA_"]
    assert unknown_env("TORGHUT_TA_", ["x"], {"TORGHUT_TA_X": "1", "OTHER": "2"}) == []


def test_settings_are_frozen_and_typed(monkeypatch):
    s = TaSettings()
    with pytest.raises(ValidationError):
        s.bar_size_ms = 5  # type: ignore[misc]
    monkeypatch.setenv("TORGHUT_TA_KAFKA_SECURITY_PROTOCOL", "SASL_SSLL")
    with pytest.raises(ValidationError, match="SASL_SSL"):
        TaSettings()


def test_settings_error_is_a_value_error_for_callers_that_catch_bad_input():
    assert issubclass(SettingsError, ValueError)


def test_one_kafka_connection_renders_for_librdkafka_and_for_java_without_leaking():
    conn = KafkaConnection(
        bootstrap="b:9093",
        security_protocol="SASL_SSL",
        sasl_username="ta",
        sasl_password="s3cret",  # type: ignore[arg-type]
        ssl_ca_location="/ca.pem",
    )
    rd = conn.as_librdkafka_dict()
    assert (
        rd["sasl.password"] == "s3cret" and rd["ssl.endpoint.identification.algorithm"] == "https"
    )
    java = conn.as_java_properties()
    assert java["ssl.endpoint.identification.algorithm"] == "https"
    assert 'username="ta" password="s3cret"' in java["sasl.jaas.config"]
    assert java["ssl.truststore.location"] == "/ca.pem"
    assert "s3cret" not in repr(conn)


def test_the_job_settings_use_the_shared_connection(monkeypatch):
    monkeypatch.setenv("TORGHUT_TA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TORGHUT_TA_KAFKA_SASL_USERNAME", "ta")
    s = TaSettings()
    assert s.kafka.security_protocol == "SASL_PLAINTEXT"
    assert s.kafka_properties() == s.kafka.as_java_properties()
    assert "ScramLoginModule" in s.kafka_properties()["sasl.jaas.config"]


def test_the_function_config_carries_what_the_keyed_function_needs():
    s = TaSettings(job_name="x", max_future_ms=500)
    assert s.function_config() == TaFunctionConfig(
        registry_url=s.registry_url, job_name="x", max_future_ms=500
    )


def test_sasl_ssl_without_a_ca_is_an_error_naming_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("TORGHUT_TA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TORGHUT_TA_KAFKA_SASL_USERNAME", "ta")
    with pytest.raises(ValidationError, match="TORGHUT_TA_KAFKA_SSL_CA_LOCATION is empty") as info:
        TaSettings()
    assert "/etc/torghut/kafka-ca/ca.crt" in str(info.value)
    with pytest.raises(ValidationError, match="SSL_CA_LOCATION is empty"):
        KafkaConnection(security_protocol="SASL_SSL", sasl_username="ta")
    # PLAINTEXT and SASL_PLAINTEXT need no CA
    assert KafkaConnection(security_protocol="SASL_PLAINTEXT").ssl_ca_location == ""


@pytest.mark.parametrize("value", ["", "none", "HTTPS "])
def test_endpoint_identification_cannot_be_turned_off(monkeypatch, value):
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SSL_CA_LOCATION", "/ca.pem")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SASL_USERNAME", "fwd")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", value)
    from forwarder.settings import ForwarderSettings

    with pytest.raises(
        ValidationError, match="TORGHUT_FWD_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM="
    ):
        ForwarderSettings(alpaca_key_id="k", alpaca_secret_key="s")
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "https")
    s = ForwarderSettings(alpaca_key_id="k", alpaca_secret_key="s")
    assert s.kafka_config()["ssl.endpoint.identification.algorithm"] == "https"
    assert s.kafka.as_java_properties()["ssl.truststore.location"] == "/ca.pem"
