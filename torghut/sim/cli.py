"""`torghut sim`: run the Alpaca-compatible market-data simulator.

Examples:
  torghut sim                                   # 5 symbols, 50 trades/s + 50 quotes/s each
  torghut sim --port 8765 --record /tmp/run.jsonl --max-trades 10000
  torghut sim --fast --max-messages 5000000     # benchmark: as fast as the client reads
  torghut sim --replay /tmp/run.jsonl --pace original
  torghut sim --replay .data/recordings --pace original --speed 10   # a forwarder recording
  torghut sim --drop-every 30 --resend-last 50 --duplicate-rate 0.01
  torghut sim --symbols AAPL,MSFT --history-start 2026-12-04 --history-end 2026-12-05
                                                # + Alpaca's historical trades/quotes (REST)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from shared.logs import LogSettingsError, configure
from torghut.sim.config import (
    ApiKey,
    FaultConfig,
    HistoryConfig,
    ReplayConfig,
    SimConfig,
    SyntheticConfig,
)
from torghut.sim.errors import SimError
from torghut.sim.protocol import FEEDS
from torghut.sim.server import AlpacaSimServer
from torghut.timearg import TimeArgError, parse_instant

log = logging.getLogger("torghut.sim")

_DEFAULTS_SYN = SyntheticConfig()
_DEFAULTS_SIM = SimConfig()


def generated_symbols(count: int, prefix: str = "S") -> tuple[str, ...]:
    """``count`` distinct tickers: prefix + zero-padded index (S00000, S00001, ...)."""
    width = max(4, len(str(max(0, count - 1))))
    return tuple(f"{prefix}{i:0{width}d}" for i in range(count))


def _symbols(text: str) -> tuple[str, ...]:
    if text.strip().isdigit():
        return generated_symbols(int(text))
    symbols = tuple(s.strip().upper() for s in text.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError("give at least one symbol, e.g. AAPL,MSFT")
    return symbols


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(",")
    try:
        return float(lo), float(hi or lo)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX seconds, got {text!r}") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    net = parser.add_argument_group("server")
    net.add_argument(
        "--host", default=_DEFAULTS_SIM.host, help="listen address (default: %(default)s)"
    )
    net.add_argument(
        "--port", type=int, default=8765, help="port, 0 = any free (default: %(default)s)"
    )
    net.add_argument(
        "--feed",
        choices=FEEDS,
        default="iex",
        help="feed of the printed URL; all /v2/{feed} paths are served (default: %(default)s)",
    )
    net.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="accepted credentials (repeatable); default: any non-empty key/secret",
    )
    net.add_argument(
        "--auth-timeout",
        type=float,
        default=_DEFAULTS_SIM.auth_timeout_s,
        help="seconds a client has to authenticate (default: %(default)s)",
    )
    net.add_argument(
        "--connection-limit",
        type=int,
        default=_DEFAULTS_SIM.connection_limit,
        help="concurrent connections per key, more get error 406 (default: %(default)s)",
    )
    net.add_argument(
        "--symbol-limit",
        type=int,
        default=None,
        help="symbols per connection, more get error 405 (default: unlimited)",
    )
    net.add_argument(
        "--frame-max",
        type=int,
        default=_DEFAULTS_SIM.frame_max_messages,
        help="messages batched per frame (default: %(default)s)",
    )
    net.add_argument(
        "--send-queue",
        type=int,
        default=_DEFAULTS_SIM.send_queue_frames,
        help="frames queued per client before a paced client is dropped as slow "
        "(default: %(default)s)",
    )
    net.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate like Alpaca (costs throughput)",
    )

    syn = parser.add_argument_group("synthetic source")
    syn.add_argument(
        "--symbols",
        type=_symbols,
        default=_DEFAULTS_SYN.symbols,
        help="comma-separated symbols, or a count N for N generated ones S0000.. "
        "(default: AAPL,MSFT,NVDA,TSLA,SPY)",
    )
    syn.add_argument(
        "--rotating-symbols",
        type=int,
        default=0,
        metavar="N",
        help="N more generated symbols (R0000..) that take turns in --rotation-groups groups: "
        "one group sends for --rotation-period seconds, the others are idle (default: 0)",
    )
    syn.add_argument(
        "--rotation-groups",
        type=int,
        default=_DEFAULTS_SYN.rotation_groups,
        help="groups of the rotating symbols (default: %(default)s)",
    )
    syn.add_argument(
        "--rotation-period",
        type=float,
        default=_DEFAULTS_SYN.rotation_period_s,
        help="seconds of event time each rotating group sends (default: %(default)s)",
    )
    syn.add_argument(
        "--trades-per-sec",
        type=float,
        default=_DEFAULTS_SYN.trades_per_sec,
        help="trades per second per symbol (default: %(default)s)",
    )
    syn.add_argument(
        "--quotes-per-sec",
        type=float,
        default=_DEFAULTS_SYN.quotes_per_sec,
        help="quotes per second per symbol (default: %(default)s)",
    )
    syn.add_argument("--seed", type=int, default=None, help="random seed (default: random, logged)")
    syn.add_argument(
        "--fractional-sizes", action="store_true", help="some trades get fractional sizes"
    )
    syn.add_argument(
        "--out-of-order-rate",
        type=float,
        default=_DEFAULTS_SYN.out_of_order_rate,
        help="share of trades stamped before the previous one (default: %(default)s)",
    )
    syn.add_argument(
        "--late-rate",
        type=float,
        default=_DEFAULTS_SYN.late_rate,
        help="share of trades arriving late (default: %(default)s)",
    )
    syn.add_argument(
        "--late-delay",
        type=_range,
        default=_DEFAULTS_SYN.late_delay_s,
        metavar="MIN,MAX",
        help="lateness range in seconds (default: 2,20)",
    )
    syn.add_argument(
        "--correction-rate",
        type=float,
        default=_DEFAULTS_SYN.correction_rate,
        help="corrections per trade (default: %(default)s)",
    )
    syn.add_argument(
        "--cancel-error-rate",
        type=float,
        default=_DEFAULTS_SYN.cancel_error_rate,
        help="cancel errors per trade (default: %(default)s)",
    )
    syn.add_argument(
        "--sale-conditions",
        choices=("realistic", "regular"),
        default=_DEFAULTS_SYN.sale_conditions,
        help="realistic: a consolidated tape's mix of sale conditions (odd lots, sweeps, "
        "average-price and out-of-sequence prints; Form T outside the NYSE regular session); "
        "regular: every trade a regular sale (default: %(default)s)",
    )
    syn.add_argument(
        "--corrupt-minute-bar",
        metavar="SYMBOL@N",
        help="shift the high of SYMBOL's N-th minute bar (and its updatedBars) by 1 %%: "
        "a drill for torghut check-bars, which must report exactly that minute",
    )
    syn.add_argument(
        "--fast",
        action="store_true",
        help="as fast as the client reads (ignores the rates; use with --max-messages)",
    )

    rep = parser.add_argument_group("replay source")
    rep.add_argument(
        "--replay",
        type=Path,
        metavar="PATH",
        help="replay instead of the synthetic market: a JSONL file of messages (--record), "
        "or a forwarder's frame recording (TORGHUT_FWD_RECORD_DIR: its directory, one "
        ".tfr.zst segment, or a quoted glob), replayed frame by frame, each frame byte-exact "
        "to a client of the recorded encoding whose subscription selects all of it",
    )
    rep.add_argument(
        "--pace",
        choices=("original", "fast"),
        default="original",
        help="original: paced like the recording (JSONL: by 't'; frame recordings: by each "
        "frame's receive time); fast: as fast as the client reads, with backpressure "
        "(default: %(default)s)",
    )
    rep.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="original pacing sped up by this factor (default: %(default)s)",
    )

    run = parser.add_argument_group("run bounds and recording")
    run.add_argument("--max-trades", type=int, help="stop the source after N trades")
    run.add_argument("--max-messages", type=int, help="stop the source after exactly N messages")
    run.add_argument("--duration", type=float, help="stop the source after S seconds")
    run.add_argument(
        "--start-immediately",
        action="store_true",
        help="start the source at once instead of at the first subscription",
    )
    run.add_argument(
        "--record",
        type=Path,
        metavar="JSONL",
        help="write every message the source publishes to this file",
    )
    run.add_argument(
        "--exit-when-done",
        action="store_true",
        help="exit once a bounded source finished and clients drained",
    )
    run.add_argument(
        "--progress-every",
        type=float,
        default=5.0,
        help="seconds between progress lines on stderr, 0 = off (default: %(default)s)",
    )

    his = parser.add_argument_group(
        "historical REST endpoints (GET /v2/stocks/trades|quotes on the same port; history.py)"
    )
    his.add_argument(
        "--history-start",
        metavar="TIME",
        help="start of the history (a date is midnight New York, or RFC 3339); with "
        "--history-end, serves the --symbols' trades and quotes in that range",
    )
    his.add_argument("--history-end", metavar="TIME", help="end of the history (exclusive)")
    his.add_argument(
        "--history-trades-per-sec",
        type=float,
        default=1.0,
        help="history trades per second per symbol (default: %(default)s)",
    )
    his.add_argument(
        "--history-quotes-per-sec",
        type=float,
        default=1.0,
        help="history quotes per second per symbol (default: %(default)s)",
    )
    his.add_argument(
        "--history-rate-limit",
        type=int,
        default=_DEFAULTS_SIM.history_rate_limit,
        help="history requests per key per window before 429 (default: %(default)s, "
        "Alpaca's basic plan)",
    )
    his.add_argument(
        "--history-rate-window",
        type=float,
        default=_DEFAULTS_SIM.history_rate_window_s,
        help="seconds of the rate limit's window (default: %(default)s)",
    )

    flt = parser.add_argument_group("fault injection")
    flt.add_argument(
        "--drop-every",
        type=float,
        metavar="S",
        help="drop every connection S seconds after it authenticated",
    )
    flt.add_argument(
        "--resend-last",
        type=int,
        default=0,
        metavar="K",
        help="after a reconnect re-send the last K messages (default: %(default)s)",
    )
    flt.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.0,
        help="probability a data frame is sent twice (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _history(args: argparse.Namespace) -> HistoryConfig | None:
    if not (args.history_start or args.history_end):
        return None
    if not (args.history_start and args.history_end):
        raise SimError("give both --history-start and --history-end")
    try:
        start, end = parse_instant(args.history_start), parse_instant(args.history_end)
    except TimeArgError as exc:
        raise SimError(str(exc)) from None
    return HistoryConfig(
        start=datetime.fromtimestamp(start / 1e9, UTC),
        end=datetime.fromtimestamp(end / 1e9, UTC),
        symbols=args.symbols,
        trades_per_sec=args.history_trades_per_sec,
        quotes_per_sec=args.history_quotes_per_sec,
        seed=args.seed if args.seed is not None else 1,
    )


def build_config(args: argparse.Namespace) -> SimConfig:
    keys = []
    for item in args.key:
        key, sep, secret = item.partition(":")
        if not sep:
            raise SimError(f"--key {item!r}: expected KEY:SECRET")
        keys.append(ApiKey(key=key, secret=secret))
    return SimConfig(
        host=args.host,
        port=args.port,
        feed=args.feed,
        source="replay" if args.replay else "synthetic",
        synthetic=SyntheticConfig(
            symbols=args.symbols,
            trades_per_sec=args.trades_per_sec,
            quotes_per_sec=args.quotes_per_sec,
            seed=args.seed,
            feed=args.feed,
            fractional_sizes=args.fractional_sizes,
            out_of_order_rate=args.out_of_order_rate,
            late_rate=args.late_rate,
            sale_conditions=args.sale_conditions,
            corrupt_minute_bar=args.corrupt_minute_bar,
            late_delay_s=args.late_delay,
            correction_rate=args.correction_rate,
            cancel_error_rate=args.cancel_error_rate,
            rotating_symbols=generated_symbols(args.rotating_symbols, "R"),
            rotation_groups=args.rotation_groups,
            rotation_period_s=args.rotation_period,
        ),
        replay=ReplayConfig(path=args.replay, pace=args.pace, speed=args.speed)
        if args.replay
        else None,
        faults=FaultConfig(
            drop_every_s=args.drop_every,
            resend_last=args.resend_last,
            duplicate_rate=args.duplicate_rate,
        ),
        keys=tuple(keys),
        auth_timeout_s=args.auth_timeout,
        connection_limit=args.connection_limit,
        symbol_limit=args.symbol_limit,
        fast=args.fast,
        max_trades=args.max_trades,
        max_messages=args.max_messages,
        duration_s=args.duration,
        wait_for_subscriber=not args.start_immediately,
        frame_max_messages=args.frame_max,
        send_queue_frames=args.send_queue,
        compression=args.compression,
        record_path=args.record,
        history=_history(args),
        history_rate_limit=args.history_rate_limit,
        history_rate_window_s=args.history_rate_window,
    )


def run(args: argparse.Namespace) -> int:
    try:
        configure("simulator", level="DEBUG" if args.verbose else None)
        config = build_config(args)
    except (ValidationError, SimError, LogSettingsError) as exc:
        print(f"torghut sim: invalid settings: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(config, args.progress_every, args.exit_when_done))
    except KeyboardInterrupt:
        return 130
    except (SimError, OSError) as exc:
        print(f"torghut sim: {exc}", file=sys.stderr)
        return 1


async def _serve(config: SimConfig, progress_every: float, exit_when_done: bool) -> int:
    server = AlpacaSimServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"torghut sim: serving {server.url}", file=sys.stderr, flush=True)
    if config.history is not None:
        h = config.history
        print(
            f"torghut sim: historical trades/quotes of {','.join(h.symbols)} from {h.start} to "
            f"{h.end} at {server.http_url}/v2/stocks (APCA_API_DATA_URL={server.http_url})",
            file=sys.stderr,
            flush=True,
        )
    if config.wait_for_subscriber:
        print("torghut sim: the source starts at the first subscription", file=sys.stderr)
    progress = asyncio.create_task(_progress(server, progress_every)) if progress_every else None
    try:
        while not stop.is_set():
            if exit_when_done and server.source_done.is_set() and server.clients_drained:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        if progress is not None:
            progress.cancel()
        await server.stop()
        c = server.counters
        print(
            f"torghut sim: stopped; published {sum(c.source_messages.values())} messages, "
            f"sent {c.market_messages_sent} in {c.frames_sent} frames, "
            f"{c.connections_total} connections",
            file=sys.stderr,
        )
    return 0


async def _progress(server: AlpacaSimServer, every: float) -> None:
    c = server.counters
    last_n, last_t = c.market_messages_sent, time.monotonic()
    while True:
        await asyncio.sleep(every)
        n, t = c.market_messages_sent, time.monotonic()
        print(
            f"torghut sim: {(n - last_n) / (t - last_t):,.0f} msgs/s sent, total {n:,}, "
            f"clients {c.connections_active}, published {sum(c.source_messages.values()):,}",
            file=sys.stderr,
            flush=True,
        )
        last_n, last_t = n, t
