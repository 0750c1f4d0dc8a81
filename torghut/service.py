"""What every long-running consumer process of torghut (the minute check, the canary) does
around its loop: serve its metrics, stop on SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def serve_until_signalled(
    loop: Callable[[threading.Event], None], registry: Any, host: str, port: int
) -> None:
    """Serve `registry` on `host:port` (`/metrics`; port 0: none) and run `loop(stop)` until
    SIGINT or SIGTERM sets `stop`."""
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, host, registry=registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop(stop)
