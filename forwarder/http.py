"""``HealthServer``: ``/metrics``, ``/healthz`` and ``/readyz`` on a tiny asyncio HTTP server
(it runs on the forwarder's own loop, so an answer proves the loop is responsive)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("forwarder.http")

Probe = Callable[[], tuple[bool, str]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """GET /metrics (Prometheus text), /healthz (alive), /readyz (stream and producer ready)."""

    def __init__(
        self, host: str, port: int, metrics: Callable[[], bytes], healthy: Probe, ready: Probe
    ) -> None:
        self.host, self.port = host, port
        self._metrics, self._healthy, self._ready = metrics, healthy, ready
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("http on %s:%d (/metrics /healthz /readyz)", self.host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self._metrics()
        if path in ("/healthz", "/readyz"):
            ok, why = (self._healthy if path == "/healthz" else self._ready)()
            return (
                (200 if ok else 503),
                "text/plain",
                f"{'ok' if ok else 'not ok'}: {why}\n".encode(),
            )
        return 404, "text/plain", b"try /metrics /healthz /readyz\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("GET", "/")
            status, ctype, body = self.answer(method, path)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
