"""``torghut forwarder``: run the Alpaca WebSocket -> Kafka forwarder.

Settings come from ``TORGHUT_FWD_*`` environment variables (docs/forwarder.md has the
table); the flags below override them. Secrets (Alpaca key id and secret, Kafka SASL
password) are read from the environment only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from pydantic import ValidationError

from forwarder.settings import ForwarderSettings
from shared.logs import LogSettingsError, configure

# flag -> settings field; values given on the command line beat the environment
FLAGS: dict[str, tuple[str, str]] = {
    "--url": ("alpaca_url", "Alpaca stream URL, e.g. wss://stream.data.alpaca.markets/v2/iex"),
    "--feed": ("feed", "feed name (default: the last path segment of the URL)"),
    "--symbols": ("symbols", "comma-separated symbols or * (TORGHUT_FWD_SYMBOLS)"),
    "--channels": (
        "channels",
        "comma-separated: trades,quotes,bars,updatedBars,dailyBars,"
        "statuses,lulds (corrections/cancelErrors come with trades)",
    ),
    "--wire-format": ("wire_format", "msgpack (default, like alpaca-py) or json"),
    "--kafka-bootstrap": ("kafka_bootstrap", "Kafka bootstrap servers"),
    "--kafka-security-protocol": (
        "kafka_security_protocol",
        "PLAINTEXT | SASL_PLAINTEXT | SASL_SSL",
    ),
    "--kafka-sasl-username": ("kafka_sasl_username", "SCRAM user (password: env only)"),
    "--kafka-ssl-ca-location": ("kafka_ssl_ca_location", "CA file for SASL_SSL"),
    "--registry-url": ("registry_url", "Confluent-compatible schema registry URL"),
    "--linger-ms": ("linger_ms", "producer linger (default 20; low-latency profile: 5)"),
    "--queue-limit": ("queue_limit", "unacked envelopes before reading stops (backpressure)"),
    "--http-port": ("http_port", "port of /metrics /healthz /readyz (0 = any free port)"),
    "--record-dir": (
        "record_dir",
        "record every WebSocket frame exactly as received into zstd segments in this "
        "directory (TORGHUT_FWD_RECORD_DIR; read with `torghut recording info`, replay with "
        "`torghut sim --replay DIR`)",
    ),
}
PROFILES = {"default": {}, "low-latency": {"linger_ms": 5}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Forward Alpaca market data (trades, quotes, bars, statuses, LULD, corrections, "
        "cancel errors) to Kafka as Avro envelopes: dedup, seq numbering monotonic across "
        "restarts, idempotent acks=all producer, reconnect with backoff, status events on "
        "torghut.status.v1, Prometheus /metrics, /healthz and /readyz. Configure with "
        "TORGHUT_FWD_* environment variables (see docs/forwarder.md); flags override them. "
        "Secrets (TORGHUT_FWD_ALPACA_KEY_ID, TORGHUT_FWD_ALPACA_SECRET_KEY, "
        "TORGHUT_FWD_KAFKA_SASL_PASSWORD) are read from the environment only. "
        "Exit codes: 0 clean stop (SIGTERM/SIGINT flush), 1 start-up failure, "
        "2 Alpaca refused the account (402/409), 3 Kafka did not ack everything."
    )
    for flag, (field, help_text) in FLAGS.items():
        parser.add_argument(flag, dest=field, default=None, help=help_text)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="tuning profile: low-latency sets linger.ms=5",
    )
    parser.add_argument(
        "--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (TORGHUT_LOG_LEVEL)"
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "text", "auto"),
        default=None,
        help="log lines as JSON or text; auto (the default): text on a terminal, JSON "
        "otherwise (TORGHUT_LOG_FORMAT)",
    )


def settings_from(args: argparse.Namespace) -> ForwarderSettings:
    overrides: dict[str, Any] = dict(PROFILES[args.profile])
    for field, _ in FLAGS.values():
        value = getattr(args, field, None)
        if value is not None:
            overrides[field] = value
    return ForwarderSettings(**overrides)


def run(args: argparse.Namespace) -> int:
    try:
        configure("forwarder", level=args.log_level, fmt=args.log_format)
    except LogSettingsError as exc:
        print(f"torghut forwarder: {exc}", file=sys.stderr)
        return 1
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"torghut forwarder: invalid settings:\n{exc}", file=sys.stderr)
        return 1
    from forwarder.app import tune_gc

    tune_gc()
    return asyncio.run(_main(settings))


async def _main(settings: ForwarderSettings) -> int:
    from forwarder.app import Forwarder

    fwd = Forwarder(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, fwd.stop)
    return await fwd.run()
