"""`torghut clickhouse apply`: create/upgrade the ClickHouse schema before sinks start."""

from __future__ import annotations

import argparse
import os
import sys

from torghut.clickhouse.client import ClickHouseError, connect
from torghut.clickhouse.schema import SchemaApplyError, SchemaParams, apply


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = sub.add_parser("apply", help="apply schemas/clickhouse/*.sql idempotently")
    ap.add_argument(
        "--url",
        help="clickhouse://user:pass@host:9000/db for a server; "
        "default: the embedded engine at --data-dir",
    )
    ap.add_argument(
        "--data-dir",
        default=".stack/clickhouse",
        help="embedded (chdb) data dir (default: %(default)s)",
    )
    ap.add_argument(
        "--kafka-broker",
        help="bootstrap servers the Kafka engine reads (default: the running local stack)",
    )
    ap.add_argument(
        "--registry-url",
        help="schema registry URL for AvroConfluent (default: the running local stack)",
    )
    ap.add_argument(
        "--kafka-security-protocol",
        default=os.environ.get("TORGHUT_CH_KAFKA_SECURITY_PROTOCOL", ""),
        help="e.g. SASL_PLAINTEXT or SASL_SSL for the Kafka engine (env TORGHUT_CH_KAFKA_SECURITY_PROTOCOL)",
    )
    ap.add_argument(
        "--kafka-sasl-username",
        default=os.environ.get("TORGHUT_CH_KAFKA_SASL_USERNAME", ""),
        help="SCRAM-SHA-512 user (env TORGHUT_CH_KAFKA_SASL_USERNAME); the password is "
        "read from env TORGHUT_CH_KAFKA_SASL_PASSWORD only",
    )
    ap.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for the server to answer (default: %(default)s)",
    )


def kafka_security_settings(protocol: str, username: str, password: str) -> str:
    """Extra Kafka-engine SETTINGS for an authenticated listener ('' for PLAINTEXT)."""
    if not protocol or protocol.upper() == "PLAINTEXT":
        return ""
    parts = [f"kafka_security_protocol = '{protocol.lower()}'"]
    if protocol.upper().startswith("SASL"):
        if not (username and password):
            raise SchemaApplyError(
                f"{protocol} needs --kafka-sasl-username and TORGHUT_CH_KAFKA_SASL_PASSWORD"
            )
        parts += [
            "kafka_sasl_mechanism = 'SCRAM-SHA-512'",
            f"kafka_sasl_username = '{username}'",
            f"kafka_sasl_password = '{password}'",
        ]
    return ", " + ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    broker, registry = args.kafka_broker, args.registry_url
    if not (broker and registry):
        from torghut.stack.state import StackState

        state = StackState.load()
        broker = broker or state.kafka_bootstrap
        registry = registry or state.registry_url
    target = args.url or args.data_dir
    try:
        client = connect(target)
        params = SchemaParams(
            kafka_broker=broker,
            registry_url=registry,
            ingest_db_engine="Atomic" if args.url else "Memory",
            kafka_security_settings=kafka_security_settings(
                args.kafka_security_protocol,
                args.kafka_sasl_username,
                os.environ.get("TORGHUT_CH_KAFKA_SASL_PASSWORD", ""),
            ),
        )
        n = apply(client, params, wait_s=args.wait, verbose=True)
    except (SchemaApplyError, ClickHouseError) as exc:
        print(f"torghut clickhouse apply: {exc}", file=sys.stderr)
        return 1
    print(f"applied {n} statements to {client.kind} ({target})")
    return 0
