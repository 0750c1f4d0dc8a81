"""`torghut clickhouse apply`: create/upgrade the ClickHouse schema before sinks start.

Secrets never travel in argv: the ClickHouse URL (with its password) may come from env
TORGHUT_CH_URL, the Kafka password only from env TORGHUT_CH_KAFKA_SASL_PASSWORD (or the local
stack's state file). The Kafka engine reads its connection from a named collection
(torghut/clickhouse/schema.py): on a server the one in its config.d; with the embedded engine
and --kafka-security-protocol SASL_SSL, the same config.d snippet loaded into chdb with its
`from_env` values set in this process's environment.

`torghut clickhouse flags` re-creates only the ingest database (Kafka tables and views, no
data) for a consumer profile: `--disabled` stops consumption keeping the groups' offsets,
`--enabled` resumes from them, `--profile` switches exactly-once / at-least-once and
`--signals-version`/`--bars-version` the topic version read (docs/runbooks.md, "Consumer
profile"). Both actions take the profile from env `TORGHUT_CONSUMER_*`
(shared/consumer_profile.py), each option overriding its variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pydantic import ValidationError

from shared.consumer_profile import PROFILES, ConsumerProfile
from shared.settings import SettingsError
from torghut.clickhouse.client import ChdbClient, ClickHouseError, connect
from torghut.clickhouse.schema import (
    KAFKA_COLLECTION_ENV,
    KAFKA_COLLECTION_XML,
    SchemaApplyError,
    SchemaParams,
    apply,
    apply_ingest,
)


def add_profile_arguments(ap: argparse.ArgumentParser) -> None:
    """The consumer profile's options; each left out keeps its `TORGHUT_CONSUMER_*` value."""
    ap.add_argument(
        "--profile",
        choices=PROFILES,
        help="exactly-once: read_committed only; at-least-once: also provisional rows "
        "read_uncommitted at once (env TORGHUT_CONSUMER_PROFILE, default exactly-once)",
    )
    ap.add_argument(
        "--enabled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--no-enabled: no Kafka table and no view, nothing consumed, the consumer "
        "groups' committed offsets kept; --enabled resumes from them (env "
        "TORGHUT_CONSUMER_ENABLED, default on)",
    )
    ap.add_argument(
        "--bars-version",
        type=int,
        help="read ta.bars.1s.v<N> (env TORGHUT_CONSUMER_BARS_VERSION, default 1)",
    )
    ap.add_argument(
        "--signals-version",
        type=int,
        help="read ta.signals.v<N> (env TORGHUT_CONSUMER_SIGNALS_VERSION, default 1)",
    )


def profile_from(args: argparse.Namespace) -> ConsumerProfile:
    """The profile from the environment, with the options given on the command line over it."""
    given: dict[str, Any] = {
        k: getattr(args, k)
        for k in ("profile", "enabled", "bars_version", "signals_version")
        if getattr(args, k, None) is not None
    }
    try:
        return ConsumerProfile(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SchemaApplyError(
            f"consumer profile: {problems} (TORGHUT_CONSUMER_* or the options)"
        ) from None
    except SettingsError as exc:
        raise SchemaApplyError(f"consumer profile: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = sub.add_parser("apply", help="apply schemas/clickhouse/*.sql idempotently")
    _add_target_arguments(ap)
    fl = sub.add_parser(
        "flags",
        help="switch the consumer profile at runtime: re-create only the ingest database "
        "(Kafka tables and views), never the tables that hold data",
        description="Re-create the ingest database for a consumer profile. Storage tables are "
        "untouched; the consumer groups keep their committed offsets, so disabling loses "
        "nothing and enabling resumes where consumption stopped.",
    )
    _add_target_arguments(fl)


def _add_target_arguments(ap: argparse.ArgumentParser) -> None:
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
    add_profile_arguments(ap)


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
            profile=profile_from(args),
        )
        action = apply_ingest if args.action == "flags" else apply
        n = action(client, params, wait_s=args.wait, verbose=True)
    except (SchemaApplyError, ClickHouseError) as exc:
        print(f"torghut clickhouse {args.action}: {exc}", file=sys.stderr)
        return 1
    shown = "server" if args.url else target  # the URL may hold a password
    print(
        f"applied {n} statements to {client.kind} ({shown}); consumer profile: "
        f"{params.profile.describe()}"
    )
    return 0
