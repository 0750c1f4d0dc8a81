"""Alpaca's historical stock trades and quotes (market data v2 REST) in the simulator.

Served on the simulator's own port (websockets' ``process_request`` answers plain HTTP GETs
under ``/v2/stocks``; the WebSocket paths stay as they are):

- ``GET /v2/stocks/trades|quotes?symbols=A,B``: ``{"trades": {"A": [...]}, "next_page_token": ...}``
- ``GET /v2/stocks/{symbol}/trades|quotes``: ``{"trades": [...], "symbol": "A", "next_page_token": ...}``

Parameters as Alpaca takes them: ``start``/``end`` (RFC 3339 or a date; both inclusive),
``limit`` (1..10000, default 1000; over a multi-symbol request it counts every symbol's
records), ``page_token`` (opaque), ``feed`` (iex, sip, delayed_sip, otc, boats; a key whose
feeds lack it gets 403), ``asof``, ``sort`` (asc, desc), ``currency`` (USD only here).
A multi-symbol answer goes through the symbols in alphabetical order, each in time order
(``sort``), so pages of any size concatenate to the same records. Auth by the
``APCA-API-KEY-ID``/``APCA-API-SECRET-KEY`` headers (missing: 401, wrong: 403); a per-key
limit of ``history_rate_limit`` requests per ``history_rate_window_s`` (200 per minute, like
Alpaca's basic plan) answers 429 beyond it, and every answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (unix seconds). Bad parameters: 400
(unparseable) or 422 (out of range) with Alpaca's ``{"code": ..., "message": ...}`` body.

The history itself (`History`) is generated once per feed from `HistoryConfig` with
`SyntheticMarket` advanced over the range (IEX history reports exchange "V", the other
feeds SIP exchanges), without late, out-of-order or corrected records, and kept as the
JSON of each record, so an answer is a join of stored bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import re
import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from torghut.sim.config import HISTORY_FEEDS, ApiKey, HistoryConfig, SimConfig, SyntheticConfig
from torghut.sim.synthetic import SyntheticMarket
from torghut.sim.timestamps import (
    NS_PER_S,
    TimestampFormatError,
    format_rfc3339_ns,
    parse_rfc3339_ns,
)

PREFIX = "/v2/stocks"
KINDS = ("trades", "quotes")
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
KEY_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"
_PATH = re.compile(r"^/v2/stocks/(?:(?P<symbol>[^/?]+)/)?(?P<kind>trades|quotes)/?$")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./-]{0,20}$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_PARAMS = frozenset(("start", "end", "limit", "page_token", "feed", "asof", "sort", "currency"))
_CHUNK_NS = 3600 * NS_PER_S  # the market is advanced an hour at a time while generating


def is_history_path(target: str) -> bool:
    """Whether a request target (path + query) is for the historical endpoints."""
    path = target.split("?", 1)[0]
    return path == PREFIX or path.startswith(PREFIX + "/")


# --- the history ---------------------------------------------------------------------


@dataclass
class Tape:
    """One feed's history: per (kind, symbol) the event times (ns, sorted) and each
    record's JSON in Alpaca's REST shape."""

    times: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    rows: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)

    def get(self, kind: str, symbol: str) -> tuple[list[int], list[bytes]]:
        return self.times.get((kind, symbol), []), self.rows.get((kind, symbol), [])

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.times.values())


def rest_trade(m: Mapping[str, Any]) -> dict[str, Any]:
    """A stream trade message (int ns ``t``) in the REST shape (RFC 3339 ``t``)."""
    return {
        "t": format_rfc3339_ns(m["t"]),
        "x": m["x"],
        "p": m["p"],
        "s": m["s"],
        "c": m["c"],
        "i": m["i"],
        "z": m["z"],
    }


def rest_quote(m: Mapping[str, Any]) -> dict[str, Any]:
    """A stream quote message in the REST shape."""
    return {
        "t": format_rfc3339_ns(m["t"]),
        "ax": m["ax"],
        "ap": m["ap"],
        "as": m["as"],
        "bx": m["bx"],
        "bp": m["bp"],
        "bs": m["bs"],
        "c": m["c"],
        "z": m["z"],
    }


def generate(config: HistoryConfig, feed: str) -> Tape:
    """The history of ``feed`` (a function of the config and the feed's exchange codes)."""
    syn = SyntheticConfig(
        symbols=config.symbols,
        trades_per_sec=config.trades_per_sec,
        quotes_per_sec=config.quotes_per_sec,
        seed=config.seed,
        feed="iex" if feed == "iex" else "sip",
        volatility=config.volatility,
        fractional_sizes=config.fractional_sizes,
        out_of_order_rate=0.0,
        late_rate=0.0,
        correction_rate=0.0,
        cancel_error_rate=0.0,
        daily_bars=False,
        statuses=False,
        lulds=False,
    )
    start, end = config.start_ns, config.end_ns
    market = SyntheticMarket(syn, start, config.seed)
    tape = Tape()
    dumps = orjson.dumps
    t = start
    while t < end:
        t = min(t + _CHUNK_NS, end)
        for m in market.advance(t - 1):  # [start, end): an event at `end` is not history
            kind = m["T"]
            if kind == "t":
                key, row = ("trades", m["S"]), rest_trade(m)
            elif kind == "q":
                key, row = ("quotes", m["S"]), rest_quote(m)
            else:
                continue
            tape.times.setdefault(key, []).append(m["t"])
            tape.rows.setdefault(key, []).append(dumps(row))
    return tape


class History:
    """The configured history, generated per feed on first use (thread-safe)."""

    def __init__(self, config: HistoryConfig) -> None:
        self.config = config
        self._tapes: dict[str, Tape] = {}
        self._lock = threading.Lock()

    @staticmethod
    def tape_feed(feed: str) -> str:
        """Feeds that share one history: IEX is its own, every other feed is SIP-like."""
        return "iex" if feed == "iex" else "sip"

    def ready(self, feed: str) -> bool:
        return self.tape_feed(feed) in self._tapes

    def tape(self, feed: str) -> Tape:
        key = self.tape_feed(feed)
        with self._lock:
            tape = self._tapes.get(key)
            if tape is None:
                tape = self._tapes[key] = generate(self.config, key)
            return tape

    def records(
        self,
        feed: str,
        kind: str,
        symbol: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[dict[str, Any]]:
        """The REST records of ``symbol`` with ``start_ns <= t < end_ns`` (tests, oracles)."""
        times, rows = self.tape(feed).get(kind, symbol)
        a = 0 if start_ns is None else bisect_left(times, start_ns)
        b = len(times) if end_ns is None else bisect_left(times, end_ns)
        return [orjson.loads(r) for r in rows[a:b]]


# --- answers ---------------------------------------------------------------------------


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _Refused(Exception):
    """A request answered with an error status and Alpaca's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", ""))
        self.status = status
        self.body = body


def _bad_format(name: str, text: str, what: str) -> _Refused:
    return _Refused(
        400,
        {
            "code": 40010001,
            "message": f"Invalid format for parameter {name}: error parsing '{text}' as {what}",
        },
    )


def _invalid(message: str) -> _Refused:
    return _Refused(422, {"code": 42210000, "message": message})


def _instant(name: str, text: str) -> int:
    text = text.strip().replace(" ", "+")  # an unencoded '+' of an offset reads as a space
    m = _DATE.match(text)
    try:
        if m is not None:
            day = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
            return int(day.timestamp()) * NS_PER_S
        return parse_rfc3339_ns(text)
    except (TimestampFormatError, ValueError):
        raise _bad_format(name, text, "RFC3339 or 2006-01-02 time") from None


class RateLimiter:
    """Per key: ``limit`` requests per fixed window of ``window_s`` starting at the first
    request after the previous window ended (``reset``: when the window ends, unix s)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.time):
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._windows: dict[str, list[float]] = {}  # key -> [window start, count]

    def _window(self, key: str, now: float) -> list[float]:
        w = self._windows.get(key)
        if w is None or now >= w[0] + self.window_s:
            w = self._windows[key] = [now, 0]
        return w

    def take(self, key: str) -> tuple[bool, int, int]:
        """Count one request: (allowed, remaining, reset unix seconds)."""
        now = self.clock()
        w = self._window(key, now)
        reset = int(-(-(w[0] + self.window_s) // 1))
        if w[1] >= self.limit:
            return False, 0, reset
        w[1] += 1
        return True, self.limit - int(w[1]), reset

    def peek(self, key: str) -> tuple[int, int]:
        now = self.clock()
        w = self._windows.get(key)
        if w is None or now >= w[0] + self.window_s:
            return self.limit, int(-(-(now + self.window_s) // 1))
        return self.limit - int(w[1]), int(-(-(w[0] + self.window_s) // 1))


@dataclass(frozen=True)
class _Query:
    endpoint: str  # trades, quotes, symbol_trades, symbol_quotes
    kind: str
    symbols: tuple[str, ...]
    single: bool
    start_ns: int
    end_ns: int  # inclusive, as Alpaca's `end`
    limit: int
    desc: bool
    feed: str
    currency: str | None
    token: tuple[str, int] | None


def _token(kind: str, desc: bool, symbol: str, index: int) -> str:
    raw = f"{kind}|{'d' if desc else 'a'}|{symbol}|{index}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read_token(text: str, kind: str, desc: bool) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        k, d, symbol, index = raw.split("|")
        if k != kind or d != ("d" if desc else "a"):
            raise ValueError(raw)
        return symbol, int(index)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _Refused(400, {"code": 40010001, "message": "invalid page_token"}) from None


class HistoryApi:
    """Answers the historical endpoints; `answer` is pure apart from the rate limiter and
    the counters (unit-tested without sockets), `respond` is the websockets hook."""

    def __init__(
        self, config: SimConfig, counters: Any, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.counters = counters
        self.history = History(config.history) if config.history is not None else None
        self.limiter = RateLimiter(config.history_rate_limit, config.history_rate_window_s, clock)
        self.clock = clock
        self._lock = threading.Lock()  # answers run in worker threads

    # --- the websockets hook ---------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        answer = await asyncio.to_thread(self.answer, request.path, request.headers)
        headers = Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(answer.body))),
                *answer.headers.items(),
            ]
        )
        reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}
        more = {404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests"}
        phrase = {**reason, **more}.get(answer.status, "Error")
        return Response(answer.status, phrase, headers, answer.body)

    # --- the answer --------------------------------------------------------------------

    def answer(self, target: str, headers: Mapping[str, str]) -> HttpAnswer:
        split = urlsplit(target)
        m = _PATH.match(split.path)
        key_id, secret = headers.get(KEY_HEADER) or "", headers.get(SECRET_HEADER) or ""
        with self._lock:
            if m is None:
                return self._error(
                    404,
                    {
                        "code": 40410000,
                        "message": f"endpoint not found: {split.path}; the simulator serves "
                        "/v2/stocks/trades, /v2/stocks/quotes and /v2/stocks/{symbol}/trades|quotes",
                    },
                    key_id,
                )
            if not key_id or not secret:
                return self._error(401, {"message": "unauthorized."}, key_id)
            key = self._key(key_id, secret)
            if key is False:
                return self._error(403, {"message": "forbidden."}, key_id)
            allowed, remaining, reset = self.limiter.take(key_id)
            rate = self._rate_headers(remaining, reset)
            if not allowed:
                endpoint = f"symbol_{m['kind']}" if m["symbol"] else m["kind"]
                self.counters.history_rate_limited[endpoint] += 1
                limited = {"code": 42910000, "message": "rate limit exceeded"}
                return HttpAnswer(429, orjson.dumps(limited), rate)
            try:
                query = self._parse(m["kind"], m["symbol"], split.query, key)
            except _Refused as exc:
                self.counters.history_errors[exc.status] += 1
                return HttpAnswer(exc.status, orjson.dumps(exc.body), rate)
            if self.history is None:
                self.counters.history_errors[404] += 1
                missing = {
                    "code": 40410000,
                    "message": "this simulator has no history: start it with --history-start "
                    "and --history-end (SimConfig.history)",
                }
                return HttpAnswer(404, orjson.dumps(missing), rate)
        # generating a feed's history takes a while the first time: outside the lock
        tape = self.history.tape(query.feed)
        try:
            body = self._body(tape, query)
        except _Refused as exc:
            with self._lock:
                self.counters.history_errors[exc.status] += 1
            return HttpAnswer(exc.status, orjson.dumps(exc.body), rate)
        with self._lock:
            self.counters.history_requests[query.endpoint] += 1
            if query.token is None:
                first = (
                    f"{query.endpoint} {','.join(query.symbols)} "
                    f"{format_rfc3339_ns(query.start_ns)} {format_rfc3339_ns(query.end_ns)}"
                )
                self.counters.history_first_pages[first] += 1
        return HttpAnswer(200, body, rate)

    def _error(self, status: int, body: dict[str, Any], key_id: str) -> HttpAnswer:
        self.counters.history_errors[status] += 1
        remaining, reset = self.limiter.peek(key_id)
        return HttpAnswer(status, orjson.dumps(body), self._rate_headers(remaining, reset))

    def _rate_headers(self, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limiter.limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset),
        }

    def _key(self, key_id: str, secret: str) -> ApiKey | bool | None:
        """The matching configured key, None when any key is accepted, False if refused."""
        if not self.config.keys:
            return None
        match = next((k for k in self.config.keys if k.key == key_id and k.secret == secret), None)
        return match if match is not None else False

    def _parse(
        self, kind: str, path_symbol: str | None, text: str, key: ApiKey | bool | None
    ) -> _Query:
        params: dict[str, str] = {}
        for name, value in parse_qsl(text, keep_blank_values=True):
            params[name] = value
        allowed = _PARAMS if path_symbol else _PARAMS | {"symbols"}
        unexpected = sorted(set(params) - allowed)
        if unexpected:
            raise _Refused(
                400,
                {
                    "code": 40010001,
                    "message": f"unexpected query parameter(s): {', '.join(unexpected)}",
                },
            )
        if path_symbol is not None:
            symbols: tuple[str, ...] = (path_symbol,)
        else:
            raw = params.get("symbols", "")
            symbols = tuple(sorted({s.strip() for s in raw.split(",") if s.strip()}))
            if not symbols:
                raise _Refused(400, {"code": 40010001, "message": "symbols is required"})
        bad = [s for s in symbols if not _SYMBOL.match(s)]
        if bad:
            raise _invalid(f"invalid symbol(s): {', '.join(bad)}")
        now_ns = int(self.clock() * NS_PER_S)
        day_ns = now_ns - now_ns % (86_400 * NS_PER_S)
        start = _instant("start", params["start"]) if params.get("start") else day_ns
        end = _instant("end", params["end"]) if params.get("end") else now_ns
        if end < start:
            raise _invalid("end should not be before start")
        limit = DEFAULT_LIMIT
        if params.get("limit"):
            try:
                limit = int(params["limit"])
            except ValueError:
                raise _bad_format("limit", params["limit"], "an integer") from None
            if not 1 <= limit <= MAX_LIMIT:
                raise _invalid(f"invalid limit: must be between 1 and {MAX_LIMIT}, got {limit}")
        sort = params.get("sort") or "asc"
        if sort not in ("asc", "desc"):
            raise _invalid(f"invalid sort: {sort!r}, use asc or desc")
        feeds = key.allowed_history_feeds() if isinstance(key, ApiKey) else HISTORY_FEEDS
        feed = params.get("feed") or ("sip" if "sip" in feeds else "iex")
        if feed not in HISTORY_FEEDS:
            raise _invalid(f"invalid feed: {feed!r}, use one of {', '.join(HISTORY_FEEDS)}")
        if feed not in feeds:
            what = "recent SIP data" if feed in ("sip", "delayed_sip") else f"{feed} data"
            raise _Refused(403, {"message": f"subscription does not permit querying {what}"})
        asof = params.get("asof")
        if asof and asof != "-" and not _DATE.match(asof):
            raise _bad_format("asof", asof, "2006-01-02")
        currency = params.get("currency") or None
        if currency is not None:
            if not _CURRENCY.match(currency):
                raise _invalid(f"invalid currency: {currency!r}, use an ISO 4217 code")
            if currency != "USD":
                raise _invalid(f"unsupported currency {currency}: the simulator serves USD")
        desc = sort == "desc"
        token = _read_token(params["page_token"], kind, desc) if params.get("page_token") else None
        return _Query(
            endpoint=f"symbol_{kind}" if path_symbol else kind,
            kind=kind,
            symbols=symbols,
            single=path_symbol is not None,
            start_ns=start,
            end_ns=end,
            limit=limit,
            desc=desc,
            feed=feed,
            currency=currency,
            token=token,
        )

    def _body(self, tape: Tape, q: _Query) -> bytes:
        pages, nxt = page(tape, q.kind, q.symbols, q.start_ns, q.end_ns, q.limit, q.desc, q.token)
        token = orjson.dumps(_token(q.kind, q.desc, *nxt) if nxt is not None else None)
        tail = b',"currency":' + orjson.dumps(q.currency) if q.currency else b""
        kind = q.kind.encode()
        if q.single:
            rows = b",".join(b",".join(r) for _, r in pages)
            return b"".join(
                (b'{"', kind, b'":[', rows, b'],"symbol":', orjson.dumps(q.symbols[0]),
                 b',"next_page_token":', token, tail, b"}")
            )  # fmt: skip
        parts = b",".join(orjson.dumps(s) + b":[" + b",".join(r) + b"]" for s, r in pages)
        return b"".join((b'{"', kind, b'":{', parts, b'},"next_page_token":', token, tail, b"}"))


def page(
    tape: Tape,
    kind: str,
    symbols: tuple[str, ...],
    lo_ns: int,
    hi_ns: int,
    limit: int,
    desc: bool,
    token: tuple[str, int] | None,
) -> tuple[list[tuple[str, list[bytes]]], tuple[str, int] | None]:
    """One page: (symbol, rows) in answer order and the position of the next record.

    Records of ``symbols`` (sorted) with ``lo_ns <= t <= hi_ns``, each symbol's in time
    order (descending with ``desc``), from ``token`` (symbol, index into the symbol's whole
    history) on, at most ``limit`` of them.
    """
    spans = []
    for s in symbols:
        times, _ = tape.get(kind, s)
        a, b = bisect_left(times, lo_ns), bisect_right(times, hi_ns)
        if a < b:
            spans.append((s, a, b))
    if token is not None:
        ts, ti = token
        at = next((i for i, (s, _, _) in enumerate(spans) if s == ts), None)
        if at is None or not spans[at][1] <= ti < spans[at][2]:
            raise _Refused(400, {"code": 40010001, "message": "invalid page_token"})
        s, a, b = spans[at]
        spans = [(s, a, ti + 1) if desc else (s, ti, b), *spans[at + 1 :]]
    out: list[tuple[str, list[bytes]]] = []
    n = 0
    for s, a, b in spans:
        room = limit - n
        if room == 0:
            return out, (s, b - 1 if desc else a)
        rows = tape.get(kind, s)[1]
        if desc:
            low = max(a, b - room)
            out.append((s, rows[low:b][::-1]))
            if low > a:
                return out, (s, low - 1)
        else:
            high = min(b, a + room)
            out.append((s, rows[a:high]))
            if high < b:
                return out, (s, high)
        n += len(out[-1][1])
    return out, None
