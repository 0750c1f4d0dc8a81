"""`torghut check-bars`: the minute check (docs/design.md, "The minute check")."""

from __future__ import annotations

import argparse
import logging
import sys

from torghut.barcheck.settings import BarCheckSettings
from torghut.service import serve_until_signalled

HELP = """\
Roll the TA job's final 1 s bars (ta.bars.1s.v1, read_committed) up to the minute by the
condition-aware rules and compare each minute with Alpaca's own minute bar for the symbol
(torghut.bars.1m.v1; an updatedBar replaces the bar): open, high, low, close, vwap within
1e-9 relative, volume and trade count exactly. A minute is checked once the job's final
bars have passed its end (a later final bar of the symbol, or the job's watermark on
ta.status.v1 with every bar it covers read) and the vendor's bar is there (or a later
minute's is, or --vendor-wait-s passed).

Results: agree, disagree, late_trades (a disagreement while the job counted late trades
of the symbol that can be the minute's: the vendor's bar has trades the job refused as
late; not alerted on), only_ours, only_ours_no_price (a minute of volume-only trades: the
vendor sends no bar for it), only_vendor. Each check is counted in
torghut_bar_check_minutes_total{result} and torghut_bar_check_disagreements_total{field}
(served on /metrics) and written to ta.bar-checks.v1 (ClickHouse table ta_bar_checks).

Settings come from TORGHUT_CHECK_* (torghut/barcheck/settings.py: Kafka connection as
TORGHUT_CHECK_KAFKA_*, TORGHUT_CHECK_REGISTRY_URL, ...); the flags below override them.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = HELP
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (TORGHUT_CHECK_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument("--registry-url", help="schema registry (TORGHUT_CHECK_REGISTRY_URL)")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        default=None,
        help="read the topics from the beginning (default: from their end; the first "
        "minute checked is the one after the start)",
    )
    parser.add_argument(
        "--ta-subtasks", type=int, help="the TA job's parallelism (TORGHUT_CHECK_TA_SUBTASKS)"
    )
    parser.add_argument(
        "--vendor-wait-s",
        type=float,
        help="seconds to wait for Alpaca's bar of a minute before it is only_ours (default 120)",
    )
    parser.add_argument("--http-port", type=int, help="/metrics port, 0: none (default 8082)")
    parser.add_argument(
        "--no-produce",
        dest="produce",
        action="store_false",
        default=None,
        help="do not write the checks to ta.bar-checks.v1",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def settings_from(args: argparse.Namespace) -> BarCheckSettings:
    given = {
        "kafka_bootstrap": args.bootstrap,
        "registry_url": args.registry_url,
        "from_beginning": args.from_beginning,
        "ta_subtasks": args.ta_subtasks,
        "vendor_wait_s": args.vendor_wait_s,
        "http_port": args.http_port,
        "produce": args.produce,
    }
    return BarCheckSettings(**{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    from shared.logs import LogSettingsError, configure
    from shared.settings import SettingsError

    try:
        configure("bar-check", level="DEBUG" if args.verbose else None)
        settings = settings_from(args)
    except (SettingsError, LogSettingsError, ValueError) as exc:
        print(f"torghut check-bars: {exc}", file=sys.stderr)
        return 2
    from torghut.barcheck.runner import BarChecker

    checker = BarChecker(settings)
    logging.getLogger("torghut.barcheck").info(
        "checking minutes (from %s; metrics on :%s)",
        "the beginning" if settings.from_beginning else "now",
        settings.http_port or "-",
    )
    serve_until_signalled(
        checker.run, checker.metrics.registry, settings.http_host, settings.http_port
    )
    return 0
