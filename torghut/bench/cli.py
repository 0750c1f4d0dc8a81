"""``torghut bench``: benchmarks that print numbers and save plots.

Each benchmark is a module with ``add_arguments(parser)`` and ``run(args) -> int``; add one
by adding a line to ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    "forwarder": (
        "torghut.bench.forwarder",
        "simulator -> forwarder -> acked Kafka records (msgs/s), vs alpaca-py parsing",
    ),
    "pipeline": (
        "torghut.bench.pipeline",
        "sim -> forwarder -> TA job: signal/final-bar latency, trades/s per slot",
    ),
    "flood": (
        "torghut.bench.flood",
        "N symbols (some rotating idle) for M minutes: forwarder RSS, job heap, checkpoint "
        "size/duration stay flat?",
    ),
    "peers": (
        "torghut.bench.peers",
        "the same backlog, bars and indicators: this job vs Quix Streams, Bytewax and a bare "
        "Python loop (trades/s, CPU-µs per trade, outputs checked equal)",
    ),
    "kernels": (
        "torghut.bench.kernels",
        "µs per indicator update: SignalState and its window kernels vs TA-Lib's streaming API",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_bench_module=module_name)
        importlib.import_module(module_name).add_arguments(p)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(args._bench_module).run(args) or 0)
