"""`torghut clickhouse apply`: create/upgrade the ClickHouse schema before sinks start.

Secrets never travel in argv: the ClickHouse URL (with its password) may come from env
TORGHUT_CH_URL, the Kafka password only from env TORGHUT_CH_KAFKA_SASL_PASSWORD (or the local
stack's state file). The Kafka engine reads its connection from a named collection
(torghut/clickhouse/schema.py): on a server the one in its config.d; with the embedded engine
and --kafka-security-protocol SASL_SSL, the same config.d snippet loaded into chdb with its
`from_env` values set in this process's environment.
"""

from __future__ import annotations

import argparse
import os
import sys

from torghut.clickhouse.client import ChdbClient, ClickHouseError, connect
from torghut.clickhouse.schema import (
    KAFKA_COLLECTION_ENV,
    KAFKA_COLLECTION_XML,
    SchemaApplyError,
    SchemaParams,
    apply,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = sub.add_parser("apply", help="apply schemas/clickhouse/*.sql idempotently")
    ap.add_argument(
        "--url",
        default=os.environ.get("TORGHUT_CH_URL") or None,
        help="clickhouse://user:pass@host:9000/db for a server (env TORGHUT_CH_URL, which "
        "keeps the password out of argv); default: the embedded engine at --data-dir",
    )
    ap.add_argument(
        "--data-dir",
        default=".stack/clickhouse",
        help="embedded (chdb) data dir (default: %(default)s)",
    )
    ap.add_argument(
        "--kafka-broker",
        help="bootstrap servers the Kafka engine reads. PLAINTEXT: apply creates the named "
        "collection from it (default with the embedded engine: the running local stack; "
        "with --url: none, the server's config.d must define the collection)",
    )
    ap.add_argument(
        "--registry-url",
        help="schema registry URL for AvroConfluent (default: the running local stack)",
    )
    ap.add_argument(
        "--kafka-collection",
        default=os.environ.get("TORGHUT_CH_KAFKA_COLLECTION", "torghut_kafka"),
        help="named collection of the Kafka connection (default: %(default)s)",
    )
    ap.add_argument(
        "--kafka-security-protocol",
        default=os.environ.get("TORGHUT_CH_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        choices=["PLAINTEXT", "SASL_SSL"],
        type=str.upper,
        help="SASL_SSL: the collection comes from config.d (a server's own; for the embedded "
        f"engine {KAFKA_COLLECTION_XML.name}, env TORGHUT_CH_KAFKA_SECURITY_PROTOCOL)",
    )
    ap.add_argument(
        "--kafka-sasl-username",
        default=os.environ.get(KAFKA_COLLECTION_ENV["username"], ""),
        help="embedded engine, SASL_SSL: SCRAM-SHA-512 user (default: the local stack's); "
        f"the password is read from env {KAFKA_COLLECTION_ENV['password']} only",
    )
    ap.add_argument(
        "--kafka-ssl-ca-location",
        default=os.environ.get(KAFKA_COLLECTION_ENV["ca"], ""),
        help="embedded engine, SASL_SSL: CA PEM of the brokers (default: the local stack's)",
    )
    ap.add_argument(
        "--wait",
        type=float,
        default=120.0,
        help="seconds to wait for the server to answer (default: %(default)s)",
    )


def chdb_sasl_ssl_environment(
    broker: str, username: str, password: str, ca_location: str
) -> dict[str, str]:
    """The `from_env` values of the config.d snippet, for an embedded engine in this process."""
    values = {"broker": broker, "username": username, "password": password, "ca": ca_location}
    missing = [KAFKA_COLLECTION_ENV[k] for k, v in values.items() if not v]
    if missing:
        raise SchemaApplyError(f"SASL_SSL for the embedded engine needs {', '.join(missing)}")
    return {KAFKA_COLLECTION_ENV[k]: v for k, v in values.items()}


def run(args: argparse.Namespace) -> int:
    sasl = args.kafka_security_protocol == "SASL_SSL"
    broker, registry = args.kafka_broker or "", args.registry_url
    try:
        state = None
        if not registry or (not args.url and not broker):
            from torghut.stack.state import StackState

            state = StackState.load()
            registry = registry or state.registry_url
        config_file = None
        if sasl and not args.url:
            os.environ.update(
                chdb_sasl_ssl_environment(
                    broker or (state.kafka_sasl_ssl_bootstrap if state else ""),
                    args.kafka_sasl_username or (state.kafka_scram_user if state else ""),
                    os.environ.get(KAFKA_COLLECTION_ENV["password"])
                    or (state.kafka_scram_password if state else ""),
                    args.kafka_ssl_ca_location or (state.kafka_ca_file if state else ""),
                )
            )
            config_file, broker = KAFKA_COLLECTION_XML, ""
        elif sasl:
            broker = ""  # the server's config.d defines the collection
        elif not args.url and not broker and state is not None:
            broker = state.kafka_bootstrap
        target = args.url or args.data_dir
        client = connect(target) if config_file is None else ChdbClient(target, config_file)
        params = SchemaParams(
            kafka_broker=broker,
            registry_url=registry,
            ingest_db_engine="Atomic" if args.url else "Memory",
            kafka_collection=args.kafka_collection,
        )
        n = apply(client, params, wait_s=args.wait, verbose=True)
    except (SchemaApplyError, ClickHouseError) as exc:
        print(f"torghut clickhouse apply: {exc}", file=sys.stderr)
        return 1
    shown = "server" if args.url else target  # the URL may hold a password
    print(f"applied {n} statements to {client.kind} ({shown})")
    return 0
