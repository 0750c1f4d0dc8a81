"""`torghut backfill`: a past range from Alpaca's historical API into the ClickHouse tables,
through the TA job's own validation and indicators, resumable, with a seed file for the live
job (docs/design.md, "Backfill").

Examples:
  torghut backfill --symbols AAPL,MSFT --start 2026-12-04 --end 2026-12-05
  torghut backfill --symbols AAPL --start 2026-12-04T09:30 --end 2026-12-04T16:00 --feed sip
  TORGHUT_CH_URL=clickhouse://user:pass@host:9000/torghut torghut backfill ...  # a server
  APCA_API_DATA_URL=http://127.0.0.1:8765 torghut backfill ...  # `torghut sim --history-*`

The key comes from the environment only (APCA_API_KEY_ID, APCA_API_SECRET_KEY). A date is
midnight in New York; times without an offset are New York time. Killed or interrupted, the
same command continues after the last chunk it saved (the state dir is named after the
symbols, range and feed: give fixed times, not 'now', to resume). At the end it prints the seed
file:
`torghut run --seed PATH` (or TORGHUT_TA_SEED_FILE=PATH for the job) continues the indicators.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from shared.logs import LogSettingsError, configure
from torghut.timearg import TimeArgError, iso, parse_duration, parse_instant

FEEDS = ("iex", "sip", "delayed_sip", "otc", "boats")
log = logging.getLogger("torghut.backfill")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--symbols", required=True, help="comma-separated, e.g. AAPL,MSFT")
    parser.add_argument(
        "--start", required=True, help="first instant (a date is midnight New York)"
    )
    parser.add_argument("--end", required=True, help="end of the range (exclusive), or 'now'")
    parser.add_argument(
        "--feed", choices=FEEDS, default="iex", help="Alpaca data feed (default: %(default)s)"
    )
    parser.add_argument("--asof", help="Alpaca's asof date (YYYY-MM-DD) for renamed symbols")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="embedded ClickHouse data dir (a running `torghut run` on it is written through "
        "its query server); default: env TORGHUT_CH_URL's server if set, else .data/clickhouse",
    )
    parser.add_argument(
        "--data-url",
        default=os.environ.get("APCA_API_DATA_URL") or "https://data.alpaca.markets",
        help="Alpaca market data base URL (env APCA_API_DATA_URL; default: %(default)s)",
    )
    parser.add_argument(
        "--chunk", default="30m", help="fetched and inserted together (default: %(default)s)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="position and seed file (default: .data/backfill/<symbols_start_end_feed>)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore a saved position and start over"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


class _TqdmHandler(logging.Handler):
    """Log lines above the progress bar, not through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _fail(message: str, code: int = 2) -> int:
    print(f"torghut backfill: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    try:
        configure(
            "backfill",
            level="DEBUG" if args.verbose else "WARNING" if args.quiet else None,
            sink=_TqdmHandler(),
        )
    except LogSettingsError as exc:
        return _fail(str(exc))
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # never a URL or header line
    key_id = os.environ.get("APCA_API_KEY_ID", "")
    secret = os.environ.get("APCA_API_SECRET_KEY", "")
    if not key_id or not secret:
        return _fail(
            "set APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment (your Alpaca API "
            "key; never on the command line)"
        )
    from pydantic import ValidationError

    from flink_job.settings import TaSettings
    from torghut.backfill.alpaca import AlpacaError, HistoricalClient
    from torghut.backfill.position import PositionError
    from torghut.backfill.run import Backfill, BackfillRangeError, Plan
    from torghut.clickhouse.client import ClickHouseError

    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
        chunk = parse_duration(args.chunk)
        plan = Plan.make(tuple(args.symbols.split(",")), start, end, args.feed, args.asof, chunk)
        settings = TaSettings()
    except (TimeArgError, BackfillRangeError, ValidationError) as exc:
        return _fail(str(exc))
    from torghut.stack.paths import BACKFILL_DIR

    state_dir = (args.state_dir or BACKFILL_DIR / plan.name).resolve()
    client = HistoricalClient(key_id, secret, args.data_url, plan.feed, plan.asof)
    try:
        client.probe(plan.symbols[0], plan.start_ns)  # a refused key fails here, first
    except AlpacaError as exc:
        client.close()
        return _alpaca_failure(exc)
    try:
        target, where = _target(args)
    except ClickHouseError as exc:
        client.close()
        return _fail(f"ClickHouse: {exc.server_message}", 1)
    bar = None
    try:
        backfill = Backfill(plan, client, target, state_dir, settings)
        pos = backfill.position(args.restart)
        print(
            f"torghut backfill: {','.join(plan.symbols)} {iso(plan.start_ns)} .. "
            f"{iso(plan.end_ns)} ({plan.feed}), {pos.chunks_total} chunks of "
            f"{plan.chunk_ns // 10**9} s, {pos.chunks_done} done; state {state_dir}",
            file=sys.stderr,
        )
        print(f"torghut backfill: ClickHouse: {where}", file=sys.stderr, flush=True)
        if not args.quiet and not pos.done:
            from tqdm import tqdm

            bar = tqdm(
                total=pos.chunks_total,
                initial=pos.chunks_done,
                unit="chunk",
                desc="backfill",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )

            def progress(p) -> None:  # type: ignore[no-untyped-def]
                bar.update(p.chunks_done - bar.n)
                rate = p.records / p.elapsed_s if p.elapsed_s > 0 else 0.0
                bar.set_postfix_str(
                    f"{rate:,.0f} rec/s, {p.requests} requests, {p.rate_limited} 429 waits, "
                    f"{p.throttled} throttled"
                )

            backfill.on_progress = progress
        summary = backfill.run(args.restart)
    except AlpacaError as exc:
        return _alpaca_failure(exc)
    except (PositionError, BackfillRangeError) as exc:
        return _fail(str(exc))
    except ClickHouseError as exc:
        return _fail(f"ClickHouse: {exc.server_message}", 1)
    except KeyboardInterrupt:
        return _fail(
            f"interrupted; the chunks saved in {state_dir} stay done: run the same command "
            "again to continue",
            130,
        )
    finally:
        if bar is not None:
            bar.close()
        client.close()
        target.close()
    t = summary.totals
    if summary.already_done:
        print("torghut backfill: this range is already done (--restart to do it again)")
    else:
        st = client.stats
        resumed = f", resumed after chunk {summary.resumed_at}" if summary.resumed_at else ""
        print(
            f"torghut backfill: done: {summary.chunks} chunks ({summary.chunks_this_run} in "
            f"this run{resumed}), {st.requests} requests, {st.rate_limited} 429 waits, "
            f"{st.throttled} throttled waits"
        )
    print(
        f"torghut backfill: {t.get('trades', 0)} trades, {t.get('quotes', 0)} quotes, "
        f"{t.get('bars', 0)} final bars and their signals (torghut.ta_microbars, ta_signals)"
    )
    print(f"torghut backfill: refused records: {summary.refusals.summary()}")
    for reason, example in sorted(summary.refusals.examples.items()):
        print(f"torghut backfill:   {reason}: e.g. {example}")
    if summary.seed_file is not None:
        print(f"torghut backfill: seed file: {summary.seed_file}")
        print(
            f"torghut backfill: continue live with `torghut run --seed {summary.seed_file}` "
            f"(the job: TORGHUT_TA_SEED_FILE={summary.seed_file})"
        )
    else:
        print("torghut backfill: no bars in the range: no seed file")
    return 0


def _alpaca_failure(exc: Exception) -> int:
    """One line with Alpaca's status and message and what to do; 2 for a refusal."""
    from torghut.backfill.alpaca import AlpacaAuthError, AlpacaError

    assert isinstance(exc, AlpacaError)
    if isinstance(exc, AlpacaAuthError):
        hint = (
            "use --feed iex, end the range more than 15 minutes ago (recent SIP data needs a "
            "paid plan), or a plan whose data includes this feed"
            if "subscription" in exc.message
            else "check APCA_API_KEY_ID and APCA_API_SECRET_KEY (and --data-url)"
        )
        return _fail(f"Alpaca refused the request (HTTP {exc.status}: {exc.message}); {hint}")
    if 400 <= exc.status < 500:
        return _fail(f"Alpaca refused the request (HTTP {exc.status}: {exc.message})")
    what = f"HTTP {exc.status}: {exc.message}" if exc.status else exc.message
    return _fail(f"Alpaca is unavailable ({what}); run the same command again later", 1)


def _target(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(ClickHouse client, what it is) for --data-dir, TORGHUT_CH_URL or the default dir."""
    url = os.environ.get("TORGHUT_CH_URL")
    if args.data_dir is None and url:
        from torghut.clickhouse.client import connect

        return connect(url), "the ClickHouse server of TORGHUT_CH_URL"
    from torghut.stack.paths import CLICKHOUSE_DIR

    data_dir = (args.data_dir or CLICKHOUSE_DIR).resolve()
    try:
        from torghut.clickhouse.local import describe, open_local
    except ImportError:  # before the local query server existed
        from torghut.clickhouse.client import ChdbClient

        return ChdbClient(data_dir), f"the embedded ClickHouse at {data_dir}"
    client = open_local(data_dir, create=True)
    return client, describe(client, data_dir)
