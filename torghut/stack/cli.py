"""`torghut stack up | status | down`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from torghut.stack import supervisor
from torghut.stack.errors import StackError
from torghut.stack.state import StackState


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Each `up` gets its own run dir (.stack/run-*), free loopback ports and logs; "
        ".stack/current points at the latest. `status` and `down` read its state.json "
        "(or the run dir given by --dir / $TORGHUT_STACK_DIR)."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = sub.add_parser("up", help="start Kafka (KRaft), MinIO and the schema registry")
    up.add_argument("--dir", type=Path, help="run dir to use (default: a new .stack/run-*)")
    up.add_argument("--no-topics", action="store_true", help="skip creating catalog topics")
    up.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="partitions of every symbol-keyed topic (trades, quotes, bars, derived bars and "
        "signals; status topics keep 1): the symbols are sharded by key and the TA job's "
        "parallelism should match (default $TORGHUT_PARTITIONS or 1)",
    )
    st = sub.add_parser("status", help="health of each component (exit 1 if any is down)")
    st.add_argument("--dir", type=Path)
    st.add_argument("--json", action="store_true", help="print the state and health as JSON")
    dn = sub.add_parser("down", help="stop exactly what `up` started")
    dn.add_argument("--dir", type=Path)
    dn.add_argument("--purge", action="store_true", help="also delete the run dir")
    env = sub.add_parser("env", help="print shell exports for the running stack")
    env.add_argument("--dir", type=Path)


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            state = supervisor.up(
                args.dir, with_topics=not args.no_topics, partitions=args.partitions
            )
            _print_env(state)
            return 0
        state = StackState.load(args.dir)
        if args.action == "status":
            report = supervisor.status(state)
            if args.json:
                print(json.dumps({"state": state.model_dump(), "health": report}, indent=2))
            else:
                for name, h in report.items():
                    mark = "ok  " if h["healthy"] else "DOWN"
                    print(
                        f"{mark} {name:<9} pid {h['pid']:<8} ports {h['ports']}  log {h['log_file']}"
                    )
            return 0 if all(h["healthy"] for h in report.values()) else 1
        if args.action == "down":
            stopped = supervisor.down(state, purge=args.purge)
            print(f"stopped: {', '.join(stopped) or 'nothing'}")
            return 0
        if args.action == "env":
            _print_env(state)
            return 0
    except StackError as exc:
        print(f"torghut stack {args.action}: {exc}", file=sys.stderr)
        return 1
    return 2


def _print_env(state: StackState) -> None:
    print(f"export TORGHUT_STACK_DIR={state.run_dir}")
    print(f"export KAFKA_BOOTSTRAP={state.kafka_bootstrap}")
    print(f"export S3_ENDPOINT={state.s3_endpoint}")
    print(f"export REGISTRY_URL={state.registry_url}")
