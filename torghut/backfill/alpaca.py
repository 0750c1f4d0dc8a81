"""Alpaca's historical stock trades and quotes (market data v2 REST) for a backfill.

One `requests.Session` with the key in its headers (never in a URL, an argument or a log
line). `fetch` reads a time range of several symbols through every page (``page_token``,
``limit=10000``, ``sort=asc``). The rate limit: before a request, when the last answer said
``X-RateLimit-Remaining: 0``, it waits until ``X-RateLimit-Reset``; an answer 429 (another
client of the same key used the budget) waits until that reset too; 5xx answers and
connection errors are retried with exponential backoff (the ``backoff`` library) for up to
``max_retry_s``. Every wait is logged and counted in `FetchStats`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import backoff
import requests

from torghut.timearg import iso

log = logging.getLogger("torghut.backfill")

DATA_URL = "https://data.alpaca.markets"
PAGE_LIMIT = 10_000
KEY_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"
_MAX_WAIT_S = 120.0  # a reset further away than this is a clock problem: wait this long


class AlpacaError(RuntimeError):
    """Alpaca refused or failed a request; `status` and Alpaca's own `message`."""

    def __init__(self, status: int, message: str, what: str) -> None:
        super().__init__(f"HTTP {status}: {message} ({what})")
        self.status = status
        self.message = message


class AlpacaAuthError(AlpacaError):
    """401/403: the key is missing, wrong, or its subscription lacks the feed."""


class AlpacaRequestError(AlpacaError):
    """Another 4xx: a parameter Alpaca refuses."""


class AlpacaUnavailable(AlpacaError):
    """5xx answers or no connection for longer than the retry budget."""


class _ServerError(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


@dataclass
class FetchStats:
    requests: int = 0  # answered requests, every status
    pages: int = 0
    records: int = 0
    rate_limited: int = 0  # 429 answers waited out
    throttled: int = 0  # waits because X-RateLimit-Remaining was 0
    retries: int = 0  # 5xx / connection errors retried
    waited_s: float = 0.0


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return (response.text or response.reason or "").strip()[:300]


class HistoricalClient:
    """``fetch(kind, symbols, start_ns, end_ns)`` -> {symbol: [REST records]} over [start, end)."""

    def __init__(
        self,
        key_id: str,
        secret_key: str,
        base_url: str = DATA_URL,
        feed: str = "iex",
        asof: str | None = None,
        page_limit: int = PAGE_LIMIT,
        timeout_s: float = 30.0,
        max_retry_s: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.feed, self.asof, self.page_limit, self.timeout_s = feed, asof, page_limit, timeout_s
        self.sleep, self.clock = sleep, clock
        self.stats = FetchStats()
        self.session = requests.Session()
        host = urlsplit(self.base_url).hostname or ""
        if host in ("localhost", "127.0.0.1", "::1"):
            self.session.trust_env = False  # a local simulator: never through HTTP(S)_PROXY
        self.session.headers.update(
            {KEY_HEADER: key_id, SECRET_HEADER: secret_key, "User-Agent": "torghut-backfill"}
        )
        self._remaining: int | None = None
        self._reset: float | None = None
        self._send = backoff.on_exception(
            backoff.expo,
            (requests.ConnectionError, requests.Timeout, _ServerError),
            max_time=max_retry_s,
            factor=0.5,
            max_value=30,
            on_backoff=self._on_backoff,
            logger=None,
        )(self._send_once)

    def close(self) -> None:
        self.session.close()

    # --- one request ------------------------------------------------------------------

    def _send_once(self, url: str, params: dict[str, Any]) -> requests.Response:
        response = self.session.get(url, params=params, timeout=self.timeout_s)
        self.stats.requests += 1
        self._note_rate(response)
        if response.status_code >= 500:
            raise _ServerError(response)
        return response

    def _on_backoff(self, details: Any) -> None:
        exc = details.get("exception")
        what = f"HTTP {exc.response.status_code}" if isinstance(exc, _ServerError) else repr(exc)
        self.stats.retries += 1
        self.stats.waited_s += details["wait"]
        log.warning(
            "Alpaca answered %s; retry %d in %.1f s (backoff)",
            what,
            details["tries"],
            details["wait"],
        )

    def _note_rate(self, response: requests.Response) -> None:
        try:
            self._remaining = int(response.headers["X-RateLimit-Remaining"])
            self._reset = float(response.headers["X-RateLimit-Reset"])
        except (KeyError, ValueError):
            self._remaining = self._reset = None

    def _wait_for_reset(self, why: str) -> None:
        now = self.clock()
        wait = 1.0 if self._reset is None else min(max(self._reset - now, 0.0) + 0.05, _MAX_WAIT_S)
        log.info("%s: waiting %.1f s until X-RateLimit-Reset", why, wait)
        self.stats.waited_s += wait
        self.sleep(wait)
        self._remaining = None

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """One answer of ``GET {base_url}{path}`` as JSON, after any rate-limit wait."""
        url = self.base_url + path
        while True:
            if self._remaining == 0 and self._reset is not None and self._reset > self.clock():
                self.stats.throttled += 1
                self._wait_for_reset("rate limit: no requests left in this window")
            try:
                response = self._send(url, params)
            except _ServerError as exc:
                raise AlpacaUnavailable(
                    exc.response.status_code, _message(exc.response), f"GET {path}"
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise AlpacaUnavailable(0, str(exc), f"GET {path}") from None
            status = response.status_code
            if status == 429:
                self.stats.rate_limited += 1
                self._wait_for_reset(f"HTTP 429 ({_message(response)})")
                continue
            if status == 200:
                return response.json()
            cls = AlpacaAuthError if status in (401, 403) else AlpacaRequestError
            raise cls(status, _message(response), f"GET {path}")

    def probe(self, symbol: str, start_ns: int) -> None:
        """One small request (a second of one symbol's trades), so that a refused key or
        feed fails before anything else is opened."""
        params: dict[str, Any] = {
            "start": iso(start_ns),
            "end": iso(start_ns + 999_999_999),
            "limit": 1,
            "feed": self.feed,
        }
        if self.asof:
            params["asof"] = self.asof
        self.get(f"/v2/stocks/{symbol}/trades", params)

    # --- a range ----------------------------------------------------------------------

    def fetch(
        self, kind: str, symbols: tuple[str, ...], start_ns: int, end_ns: int
    ) -> dict[str, list[dict[str, Any]]]:
        """Every ``kind`` ("trades" or "quotes") record of ``symbols`` with start <= t < end."""
        params: dict[str, Any] = {
            "symbols": ",".join(symbols),
            "start": iso(start_ns),
            "end": iso(end_ns - 1),  # Alpaca's end is inclusive
            "limit": self.page_limit,
            "feed": self.feed,
            "sort": "asc",
        }
        if self.asof:
            params["asof"] = self.asof
        out: dict[str, list[dict[str, Any]]] = {}
        while True:
            body = self.get(f"/v2/stocks/{kind}", params)
            self.stats.pages += 1
            for symbol, rows in (body.get(kind) or {}).items():
                out.setdefault(symbol, []).extend(rows or ())
                self.stats.records += len(rows or ())
            token = body.get("next_page_token")
            if not token:
                return out
            params["page_token"] = token
