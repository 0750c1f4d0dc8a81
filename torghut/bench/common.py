"""Constants and small helpers shared by the modules of ``torghut bench pipeline``."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
TICKERS = (
    "AAPL",
    "MSFT",
    "NVDA",
    "TSLA",
    "SPY",
    "AMZN",
    "GOOG",
    "META",
    "AMD",
    "NFLX",
    "QQQ",
    "IWM",
    "INTC",
    "ORCL",
    "CRM",
    "ADBE",
    "AVGO",
    "JPM",
    "BAC",
    "XOM",
)
SENTINEL = "ZZZZ"  # closes the backlog's last bars (watermark) without being measured
PROBE = "ZPROBE"  # live phase: trades that tell when the job is up, not measured
LIVE_TARGET_P99_MS = 50.0
CAUGHT_UP_MS = 250.0  # live warm-up ends when the last second's p50 is below this
THROUGHPUT_TARGET = 20_000.0
WARM_FROM = 1 / 3  # the warm throughput is measured past this share of the backlog
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

quiet_kafka_logger = logging.getLogger("torghut.bench.rdkafka")
quiet_kafka_logger.setLevel(logging.CRITICAL)


def say(msg: str) -> None:
    print(f"[bench pipeline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"loadavg {load()}"


def symbols_of(spec: str) -> list[str]:
    """``--symbols``: a count (tickers are chosen, then S000, S001, ...) or a comma list."""
    if spec.strip().isdigit():
        n = int(spec)
        return [*TICKERS[:n], *(f"S{i:03d}" for i in range(max(0, n - len(TICKERS))))]
    return [s.strip().upper() for s in spec.split(",") if s.strip()]


def end_ns(value: Any) -> int:
    """A bar's ``window.end`` (timestamp-micros: a datetime or an int) in ns since the epoch."""
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // dt.timedelta(microseconds=1) * 1_000
    return int(value) * 1_000
