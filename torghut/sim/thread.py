"""``SimServerThread``: the simulator on its own event loop in a background thread, for
synchronous tests and tools."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from torghut.sim.config import SimConfig
from torghut.sim.errors import SimError
from torghut.sim.server import AlpacaSimServer, SimCounters


class SimServerThread:
    """``with SimServerThread(config) as sim: client(sim.url)``; stops cleanly on exit."""

    def __init__(self, config: SimConfig | None = None, start_timeout_s: float = 10.0) -> None:
        self.config = config or SimConfig()
        self._start_timeout_s = start_timeout_s
        self._server: AlpacaSimServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="alpaca-sim", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the caller of start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = AlpacaSimServer(self.config)
        await self._server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()

    def start(self) -> SimServerThread:
        self._thread.start()
        if not self._ready.wait(self._start_timeout_s) or self._error is not None:
            raise SimError(f"simulator did not start: {self._error!r}")
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)

    def __enter__(self) -> SimServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def server(self) -> AlpacaSimServer:
        if self._server is None:
            raise SimError("SimServerThread used before start()")
        return self._server

    @property
    def url(self) -> str:
        return self.server.url

    def url_for(self, feed: str) -> str:
        return self.server.url_for(feed)

    @property
    def http_url(self) -> str:
        """Base URL of the historical REST endpoints (history.py)."""
        return self.server.http_url

    @property
    def counters(self) -> SimCounters:
        return self.server.counters

    @property
    def source_done(self) -> bool:
        return self.server.source_done.is_set()

    def wait_until(
        self, condition: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition"
    ) -> None:
        """Poll ``condition`` (cheap, thread-safe reads) until true or raise TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
            time.sleep(0.01)
