"""The `torghut` command. Each subcommand lives in its own module, imported only when used.

A subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("torghut.stack.cli", "start, inspect and stop the local Kafka/MinIO/registry stack"),
    "clickhouse": ("torghut.clickhouse.cli", "apply the ClickHouse schema (embedded or a server)"),
    "sim": ("torghut.sim.cli", "run the Alpaca-compatible market-data simulator"),
    "forwarder": ("forwarder.cli", "run the Alpaca WebSocket -> Kafka forwarder"),
    "ta": ("torghut.ta_cli", "run the PyFlink technical-analysis job"),
    "flink-cluster": (
        "torghut.flink_cluster",
        "the TA job on a local standalone Flink cluster (JobManager + TaskManager JVMs)",
    ),
    "check-bars": (
        "torghut.barcheck.cli",
        "compare the job's 1 s bars, rolled up per minute, with Alpaca's minute bars",
    ),
    "canary": (
        "torghut.canary.cli",
        "how far the TA job's output is behind its raw input, per symbol (/metrics)",
    ),
    "run": ("torghut.pipeline", "run the whole local pipeline with a live terminal view"),
    "backfill": (
        "torghut.backfill.cli",
        "a past range from Alpaca's historical API into the ClickHouse tables (resumable)",
    ),
    "sql": (
        "torghut.sql_cli",
        "query the local ClickHouse tables (while `torghut run` runs, or after)",
    ),
    "bench": ("torghut.bench.cli", "benchmarks that print numbers and save plots"),
    "k8s": ("torghut.k8s_cli", "render Kubernetes objects generated from the contracts"),
    "recording": ("torghut.recording_cli", "inspect forwarder recordings"),
    "consume": (
        "torghut.consume_cli",
        "print the decoded records of a TA topic, read with the consumer profile",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torghut",
        description="torghut-ta: Alpaca market data -> Kafka -> PyFlink TA -> ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or a usage error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    sub_parser = argparse.ArgumentParser(prog=f"torghut {name}", description=help_text)
    module.add_arguments(sub_parser)
    args = sub_parser.parse_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
