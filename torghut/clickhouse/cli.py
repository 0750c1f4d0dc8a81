"""`torghut clickhouse apply`: create/upgrade the ClickHouse schema before sinks start."""

from __future__ import annotations

import argparse
import sys

from torghut.clickhouse.client import ClickHouseError, connect
from torghut.clickhouse.schema import SchemaApplyError, SchemaParams, apply


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = sub.add_parser("apply", help="apply schemas/clickhouse/*.sql idempotently")
    ap.add_argument("--url", help="clickhouse://user:pass@host:9000/db for a server; "
                    "default: the embedded engine at --data-dir")
    ap.add_argument("--data-dir", default=".stack/clickhouse",
                    help="embedded (chdb) data dir (default: %(default)s)")
    ap.add_argument("--kafka-broker", help="bootstrap servers the Kafka engine reads "
                    "(default: the running local stack)")
    ap.add_argument("--registry-url", help="schema registry URL for AvroConfluent "
                    "(default: the running local stack)")
    ap.add_argument("--wait", type=float, default=120.0,
                    help="seconds to wait for the server to answer (default: %(default)s)")


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
        params = SchemaParams(kafka_broker=broker, registry_url=registry,
                              ingest_db_engine="Atomic" if args.url else "Memory")
        n = apply(client, params, wait_s=args.wait, verbose=True)
    except (SchemaApplyError, ClickHouseError) as exc:
        print(f"torghut clickhouse apply: {exc}", file=sys.stderr)
        return 1
    print(f"applied {n} statements to {client.kind} ({target})")
    return 0
