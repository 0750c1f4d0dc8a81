"""`torghut canary`: how far the TA job's output is behind its raw input (docs/design.md,
"The canary")."""

from __future__ import annotations

import argparse
import logging
import sys

from torghut.canary.settings import CanarySettings
from torghut.service import serve_until_signalled

HELP = """\
Read the raw trades and quotes and the TA job's output from the topics' end and serve on
/metrics, for the configured symbols only (other symbols: one aggregate counter):

  torghut_symbol_last_event_timestamp_seconds{symbol}     newest raw trade or quote
  torghut_canary_raw_event_timestamp_seconds{topic,partition,symbol}
  torghut_canary_derived_event_timestamp_seconds{topic,partition,symbol}
        newest bar/signal event_ts (read_uncommitted: provisional records too)
  torghut_canary_final_bar_timestamp_seconds{partition,symbol}
        newest final 1 s bar's end (read_committed: what consumers can read)
  torghut_canary_lag_seconds{symbol}          newest trade - newest derived output
  torghut_canary_final_lag_seconds{symbol}    newest trade - newest final bar end
  torghut_canary_input_idle_seconds           wall time since the raw input last moved
  torghut_canary_input_stalled, torghut_canary_lagging    the canary's own verdict (0/1)
  torghut_market_session_open{calendar}       1 in the calendar's regular session

Alerts (k8s/base/monitoring/prometheusrule.yaml): TorghutTaLagging (output behind while
the input moves), TorghutInputStalled (the input stopped, in the session),
TorghutSymbolStale (a configured symbol silent, in the session). docs/runbooks.md.

Settings come from TORGHUT_CANARY_* (torghut/canary/settings.py: Kafka connection as
TORGHUT_CANARY_KAFKA_*, TORGHUT_CANARY_SYMBOLS, ...); the flags below override them.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = HELP
    parser.add_argument(
        "--bootstrap", help="Kafka bootstrap servers (TORGHUT_CANARY_KAFKA_BOOTSTRAP)"
    )
    parser.add_argument("--registry-url", help="schema registry (TORGHUT_CANARY_REGISTRY_URL)")
    parser.add_argument(
        "--symbols", help="the forwarder's symbols, comma-separated (TORGHUT_CANARY_SYMBOLS)"
    )
    parser.add_argument(
        "--calendar", help="exchange_calendars name of the session gauge (default XNYS)"
    )
    parser.add_argument(
        "--lag-threshold-s", type=float, help="torghut_canary_lagging threshold (default 30)"
    )
    parser.add_argument(
        "--input-stall-s", type=float, help="torghut_canary_input_stalled after (default 120)"
    )
    parser.add_argument("--http-port", type=int, help="/metrics port, 0: none (default 8083)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def settings_from(args: argparse.Namespace) -> CanarySettings:
    given = {
        "kafka_bootstrap": args.bootstrap,
        "registry_url": args.registry_url,
        "symbols": args.symbols,
        "calendar": args.calendar,
        "lag_threshold_s": args.lag_threshold_s,
        "input_stall_s": args.input_stall_s,
        "http_port": args.http_port,
    }
    return CanarySettings(**{k: v for k, v in given.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from shared.logs import LogSettingsError, configure
    from shared.settings import SettingsError

    try:
        configure("canary", level="DEBUG" if args.verbose else None)
        settings = settings_from(args)
    except (SettingsError, LogSettingsError, ValidationError, ValueError) as exc:
        print(
            f"torghut canary: {exc}\n(the symbols: --symbols or TORGHUT_CANARY_SYMBOLS, the "
            "forwarder's TORGHUT_FWD_SYMBOLS list; every setting: torghut canary --help)",
            file=sys.stderr,
        )
        return 2
    from torghut.canary.runner import Canary

    canary = Canary(settings)
    logging.getLogger(__name__).info(
        "canary reading from the topics' end",
        extra={"symbols": list(settings.symbols), "http_port": settings.http_port},
    )
    serve_until_signalled(
        canary.run, canary.metrics.registry, settings.http_host, settings.http_port
    )
    return 0
