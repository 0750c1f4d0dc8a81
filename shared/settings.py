"""What every service's settings share: the Kafka connection and strict environment names.

`KafkaConnection` is the one typed description of how a client reaches Kafka (security
protocol as a `Literal`, the password as a `SecretStr`), rendered for librdkafka (forwarder,
tools) and for the Java clients (the TA job's source and sink). `KafkaConnectionFields` puts
its fields into a settings class under the flat names the deployments use
(`<PREFIX>KAFKA_BOOTSTRAP`, ...). `StrictEnvSettings` refuses environment variables that
carry the class's prefix but name no setting, suggesting the nearest valid one: a misspelt
variable fails at start instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator
from pydantic_settings import BaseSettings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


class SettingsError(ValueError):
    """A setting or an environment variable is wrong; the message names it and the fix."""


class KafkaConnection(BaseModel):
    """How a client reaches the brokers (one model for producer, consumer, admin, Flink)."""

    model_config = ConfigDict(frozen=True)

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_ca_location: str = ""
    # host-name verification of the broker certificate; there is no switch to turn it off
    ssl_endpoint_identification_algorithm: str = "https"

    @model_validator(mode="after")
    def _tls_is_verified(self) -> KafkaConnection:
        problem = tls_problem(
            self.security_protocol, self.ssl_ca_location, self.ssl_endpoint_identification_algorithm
        )
        if problem:
            raise SettingsError(problem.format(prefix=""))
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    def as_librdkafka_dict(self) -> dict[str, Any]:
        """confluent-kafka / librdkafka configuration (secrets in clear: never log it)."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.security_protocol,
        }
        if self.uses_sasl:
            cfg["sasl.mechanism"] = self.sasl_mechanism
            cfg["sasl.username"] = self.sasl_username
            cfg["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_tls:
            cfg["ssl.endpoint.identification.algorithm"] = (
                self.ssl_endpoint_identification_algorithm
            )
            if self.ssl_ca_location:
                cfg["ssl.ca.location"] = self.ssl_ca_location
        return cfg

    def as_java_properties(self) -> dict[str, str]:
        """Kafka Java client security properties (the job's KafkaSource and KafkaSink)."""
        props: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.uses_sasl:
            user, pw = self.sasl_username, self.sasl_password.get_secret_value()
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            props["sasl.mechanism"] = self.sasl_mechanism
            props["sasl.jaas.config"] = f'{module} required username="{user}" password="{pw}";'
        if self.uses_tls:
            props["ssl.endpoint.identification.algorithm"] = (
                self.ssl_endpoint_identification_algorithm
            )
            if self.ssl_ca_location:
                props["ssl.truststore.type"] = "PEM"
                props["ssl.truststore.location"] = self.ssl_ca_location
        return props


class KafkaConnectionFields(BaseModel):
    """The Kafka connection as flat settings fields (`kafka_bootstrap`, ...)."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_ca_location: str = ""
    kafka_ssl_endpoint_identification_algorithm: str = "https"

    @model_validator(mode="after")
    def _kafka_tls_is_verified(self) -> KafkaConnectionFields:
        problem = tls_problem(
            self.kafka_security_protocol,
            self.kafka_ssl_ca_location,
            self.kafka_ssl_endpoint_identification_algorithm,
        )
        if problem:
            prefix = str(getattr(self, "model_config", {}).get("env_prefix") or "")
            raise SettingsError(problem.format(prefix=prefix.upper() + "KAFKA_"))
        return self

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_ca_location=self.kafka_ssl_ca_location,
            ssl_endpoint_identification_algorithm=self.kafka_ssl_endpoint_identification_algorithm,
        )


def tls_problem(protocol: str, ca_location: str, endpoint_identification: str) -> str:
    """Why a TLS Kafka connection would not verify its broker ('' when it would).

    The message is a template: `{prefix}` becomes the settings' variable prefix
    (`TORGHUT_TA_KAFKA_`), or nothing for the bare connection model.
    """
    if not protocol.endswith("SSL"):
        return ""
    if not ca_location:
        return (
            f"{{prefix}}SSL_CA_LOCATION is empty but {{prefix}}SECURITY_PROTOCOL={protocol}: "
            "set it to the file of the CA that signed the broker certificates (Kubernetes: "
            "the Strimzi cluster CA mounted at /etc/torghut/kafka-ca/ca.crt, docs/deploy.md "
            '"Kafka security")'
        )
    if endpoint_identification != "https":
        return (
            f"{{prefix}}SSL_ENDPOINT_IDENTIFICATION_ALGORITHM={endpoint_identification!r} would "
            "accept any certificate the CA signed, for any host; only 'https' (verify the "
            "broker's host name against its certificate) is allowed"
        )
    return ""


def unknown_env(
    prefix: str, fields: Iterable[str], environ: Mapping[str, str] | None = None
) -> list[str]:
    """One message per `prefix*` variable that names no field, with the nearest valid name."""
    valid = sorted(prefix + f.upper() for f in fields)
    env = os.environ if environ is None else environ
    out = []
    for name in sorted(k for k in env if k.startswith(prefix) and k not in valid):
        near = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]}?" if near else f"; valid names start with {prefix}"
        out.append(f"{name} is not a setting{hint}")
    return out


class StrictEnvSettings(BaseSettings):
    """BaseSettings that refuses unknown variables of its `env_prefix` (module doc)."""

    @model_validator(mode="after")
    def _no_unknown_env(self) -> StrictEnvSettings:
        prefix = str(self.model_config.get("env_prefix") or "")
        if prefix:
            problems = unknown_env(prefix, type(self).model_fields)
            if problems:
                raise SettingsError("; ".join(problems))
        return self
