"""`torghut consume TOPIC`: print the decoded records of a TA topic, read with a consumer profile.

The reading is `shared/ta_consumer.py` (the profile's isolation, the registry's writer schema,
dedup in at-least-once); this module only parses the command line and prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import IO, Any

import orjson
from pydantic import ValidationError

from shared.consumer_profile import PROFILES, ConsumerProfile
from shared.registry import SchemaRegistryClient
from shared.settings import KafkaConnection, SettingsError
from shared.ta_consumer import ConsumedRecord, Start, TaConsumer, TaConsumerError
from torghut.timearg import TimeArgError, parse_instant

# columns of --format table, in this order, when the records have them
TABLE_COLUMNS = (
    "symbol",
    "window_start",
    "is_final",
    "version",
    "close",
    "volume",
    "rsi14",
    "macd",
    "gap",
    "job",
    "watermark",
)

EPILOG = """\
examples:
  # the committed final signals of the last 5 minutes, as a table
  torghut consume ta.signals.v1 --from "$(date -u -d '-5 min' +%Y-%m-%dT%H:%M:%SZ)" --format table
  # the next 20 bars as they are written, provisional ones included (read_uncommitted)
  torghut consume ta.bars.1s.v1 --profile at-least-once --from latest --max 20
  # the job's heartbeats
  torghut consume ta.status.v1 --max 5

profiles (env TORGHUT_CONSUMER_PROFILE, default exactly-once):
  exactly-once   read_committed: final records of committed transactions only
  at-least-once  read_uncommitted: provisional and final records at once, duplicates
                 dropped by (symbol, window start, is_final, version), a final's version
                 left out (a restore repeats it with a newer one); a record of a
                 transaction aborted later may show

It stops after --max records or when nothing came for --idle seconds; it joins no consumer
group and commits nothing. An unknown topic or one without a registered schema is an error
(exit 1); records that do not decode are counted on stderr.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Print the decoded Avro records of a TA topic (ta.signals.v1, ta.bars.1s.v1, "
        "ta.status.v1, or a later version), read with the consumer profile."
    )
    parser.epilog = EPILOG
    parser.add_argument("topic", metavar="TOPIC", help="the topic, e.g. ta.signals.v1")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        help="exactly-once or at-least-once (default: env TORGHUT_CONSUMER_PROFILE, else "
        "exactly-once)",
    )
    parser.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="earliest|latest|TIME",
        help="where to start: the beginning, the end, or the first record at or after TIME "
        "(2026-12-04T14:30:00Z, a New York local 2026-12-04T09:30, a date, 'now'); "
        "default: %(default)s",
    )
    parser.add_argument("--max", type=int, default=None, help="stop after N records")
    parser.add_argument(
        "--idle",
        type=float,
        default=5.0,
        help="stop when nothing came for this many seconds (default: %(default)s)",
    )
    parser.add_argument("--format", choices=("json", "table"), default="json")
    parser.add_argument(
        "--bootstrap",
        help="PLAINTEXT Kafka bootstrap servers (default: the running local stack's)",
    )
    parser.add_argument(
        "--registry-url", help="schema registry URL (default: the running local stack's)"
    )


def parse_start(text: str) -> Start:
    if text in ("earliest", "latest"):
        return text  # type: ignore[return-value]
    return parse_instant(text)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _row(rec: ConsumedRecord) -> dict[str, Any]:
    v = dict(rec.value)
    window = v.get("window")
    if isinstance(window, dict):
        v["window_start"] = window.get("start")
    return {"partition": rec.partition, "offset": rec.offset, **v}


class TablePrinter:
    """Fixed columns chosen from the first record; values as text."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.columns: list[str] = []

    def print(self, rec: ConsumedRecord) -> None:
        row = _row(rec)
        if not self.columns:
            self.columns = ["partition", "offset"] + [c for c in TABLE_COLUMNS if c in row]
            self.out.write(" ".join(f"{c:>12}" for c in self.columns) + "\n")
        cells = []
        for c in self.columns:
            val = _plain(row.get(c))
            text = "" if val is None else f"{val:.6g}" if isinstance(val, float) else str(val)
            cells.append(f"{text:>12}")
        self.out.write(" ".join(cells) + "\n")


def run(args: argparse.Namespace) -> int:
    try:
        profile = ConsumerProfile(**({"profile": args.profile} if args.profile else {}))
        start = parse_start(args.start)
        bootstrap, registry_url = args.bootstrap, args.registry_url
        if not bootstrap or not registry_url:
            from torghut.stack.state import StackState

            state = StackState.load()
            bootstrap = bootstrap or state.kafka_bootstrap
            registry_url = registry_url or state.registry_url
        consumer = TaConsumer(
            KafkaConnection(bootstrap=bootstrap),
            SchemaRegistryClient(registry_url, wait_s=10),
            args.topic,
            profile,
            start,
        )
    except (TaConsumerError, TimeArgError, SettingsError, ValidationError) as exc:
        print(f"torghut consume: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the local stack's state file missing, and the like
        print(
            f"torghut consume: {exc} (pass --bootstrap and --registry-url, or start the "
            "local stack: torghut stack up)",
            file=sys.stderr,
        )
        return 1
    table = TablePrinter(sys.stdout) if args.format == "table" else None
    try:
        with consumer:
            for rec in consumer.records(args.max, args.idle):
                if table is not None:
                    table.print(rec)
                else:
                    sys.stdout.write(orjson.dumps(_row(rec), default=str).decode() + "\n")
                sys.stdout.flush()
    except TaConsumerError as exc:
        print(f"torghut consume: {exc}", file=sys.stderr)
        return 1
    s = consumer.stats
    print(
        f"{s.yielded} records ({profile.profile}, {consumer.isolation}); read {s.read}, "
        f"duplicates dropped {s.duplicates}, provisional skipped {s.provisional_skipped}, "
        f"undecodable {s.undecodable}",
        file=sys.stderr,
    )
    for err in s.errors:
        print(f"  undecodable: {err}", file=sys.stderr)
    return 0
