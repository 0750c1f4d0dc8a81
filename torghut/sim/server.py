"""``AlpacaSimServer``: an Alpaca market-data v2 stock-stream compatible WebSocket server.

Every client gets the handshake, auth (message or headers), subscriptions and errors the
way Alpaca sends them, then the market-data batches its subscription selects, as JSON
text frames or, with ``Content-Type: application/msgpack``, msgpack binary frames.
Each client has a bounded send queue: with a paced source a client that cannot keep up
is disconnected (error 407, as Alpaca does); an as-fast-as-possible source waits instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import Counter, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from torghut.sim.config import SimConfig
from torghut.sim.errors import SimNotRunningError
from torghut.sim.history import HistoryApi, is_history_path
from torghut.sim.protocol import (
    Subscription,
    SubscriptionRequestError,
    decode_client_message,
    encode_json,
    encode_msgpack,
    error,
    success,
)
from torghut.sim.recording import JsonlRecorder
from torghut.sim.sources import (
    RecordedFrame,
    check_replay,
    generate_synthetic,
    pregenerates,
    run_replay,
    run_synthetic,
)

log = logging.getLogger("torghut.sim")

_PATH = re.compile(r"^/v2/(iex|sip|delayed_sip|test)/?$")
_KEY_HEADER = "APCA-API-KEY-ID"
_SECRET_HEADER = "APCA-API-SECRET-KEY"


@dataclass
class SimCounters:
    """What the server did; ``messages_sent`` counts every message put on a client socket
    (duplicates and re-sends included), ``source_messages`` what the source published."""

    messages_sent: Counter[str] = field(default_factory=Counter)
    source_messages: Counter[str] = field(default_factory=Counter)
    errors_sent: Counter[int] = field(default_factory=Counter)
    frames_sent: int = 0
    bytes_sent: int = 0
    connections_total: int = 0
    connections_active: int = 0
    auths_total: int = 0
    auth_failures_total: int = 0
    drops_injected_total: int = 0
    resent_messages_total: int = 0
    duplicated_frames_total: int = 0
    duplicated_messages_total: int = 0
    slow_client_disconnects_total: int = 0
    # historical REST endpoints (history.py): 200 answers and 429s by endpoint, other errors
    # by status, and the first pages served ("endpoint symbols start end": a range fetched
    # twice counts 2)
    history_requests: Counter[str] = field(default_factory=Counter)
    history_rate_limited: Counter[str] = field(default_factory=Counter)
    history_errors: Counter[int] = field(default_factory=Counter)
    history_first_pages: Counter[str] = field(default_factory=Counter)
    replay_exact_frames_total: int = 0  # recorded frames sent to a client byte-exact

    @property
    def market_messages_sent(self) -> int:
        return sum(
            n
            for t, n in self.messages_sent.copy().items()
            if t not in ("success", "error", "subscription")
        )

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            # copy(): the server thread may add keys while another thread reads
            out[name] = dict(value.copy()) if isinstance(value, Counter) else value
        return out


@dataclass(slots=True)
class _Frame:
    payload: bytes
    text: bool
    counts: dict[str, int]
    market_data: bool


@dataclass(slots=True)
class _Close:
    code: int
    reason: str


# (msgpack?, subscription signature) -> (messages selected, their frames)
_Encoded = dict[tuple[Any, ...], tuple[list[dict[str, Any]], list[_Frame]]]


class _Session:
    """One client connection: its negotiated encoding, auth state, subscription and queue."""

    def __init__(self, ws: ServerConnection, feed: str, msgpack: bool, queue_frames: int) -> None:
        self.ws = ws
        self.feed = feed
        self.msgpack = msgpack
        self.key: str | None = None
        self.authenticated = False
        self.subscription = Subscription()
        self.queue: asyncio.Queue[_Frame | _Close] = asyncio.Queue(maxsize=queue_frames)
        self.resend: list[dict[str, Any]] = []
        self.closing = False
        self.sending = False  # a frame is taken off the queue but not yet written
        self.timers: list[asyncio.Task[None]] = []
        self.peer = "%s:%s" % (ws.remote_address[:2] if ws.remote_address else ("?", "?"))

    def encode(self, msgs: list[dict[str, Any]], market_data: bool) -> _Frame:
        payload = encode_msgpack(msgs) if self.msgpack else encode_json(msgs)
        counts: dict[str, int] = {}
        for m in msgs:
            counts[m["T"]] = counts.get(m["T"], 0) + 1
        return _Frame(payload, not self.msgpack, counts, market_data)


class AlpacaSimServer:
    """The simulator: ``port = await start()``, ``url``, ``counters``, ``await stop()``.

    The source (synthetic or replay) starts when the first client subscribes (or at
    ``start()`` with ``wait_for_subscriber=False``); ``source_done`` is set when a bounded
    run (``max_trades`` / ``max_messages`` / ``duration_s``) or a replay has published all.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.counters = SimCounters()
        self.source_done = asyncio.Event()
        self._server: Server | None = None
        self._port: int | None = None
        self._sessions: set[_Session] = set()
        self._by_key: dict[str, set[_Session]] = {}
        self._history: dict[str, deque[dict[str, Any]]] = {}
        self._subscribed = asyncio.Event()
        self._stop = asyncio.Event()
        self._source_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recorder: JsonlRecorder | None = None
        self._fault_rng = random.Random(self.config.faults.seed)
        self.history_api = HistoryApi(self.config, self.counters)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> int:
        """Listen, start the source, return the port (a free one when ``port=0``)."""
        cfg = self.config
        if cfg.source == "replay" and cfg.replay is not None:
            check_replay(cfg.replay)  # a JSONL file or a frame recording, readable
        if cfg.record_path is not None:
            self._recorder = JsonlRecorder(cfg.record_path)
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression="deflate" if cfg.compression else None,
            max_size=1 << 20,
            close_timeout=5,
            ping_interval=20,
            ping_timeout=60,
        )
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        self._source_task = asyncio.create_task(self._run_source(), name="sim-source")
        log.info("alpaca simulator listening on %s", self.url)
        return self._port

    async def stop(self) -> None:
        """Stop the source, close every connection, flush the recording."""
        self._stop.set()
        if self._source_task is not None:
            self._source_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._source_task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._recorder is not None:
            self._recorder.close()

    async def __aenter__(self) -> AlpacaSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise SimNotRunningError("AlpacaSimServer.port read before start(); await start()")
        return self._port

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v2/{feed}`` of the configured feed."""
        return self.url_for(self.config.feed)

    def url_for(self, feed: str) -> str:
        return f"ws://{self.config.host}:{self.port}/v2/{feed}"

    @property
    def http_url(self) -> str:
        """Base URL of the historical REST endpoints (``{http_url}/v2/stocks/trades``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def clients_drained(self) -> bool:
        """True when no connected client has frames waiting to be written."""
        return all(s.queue.empty() and not s.sending for s in self._sessions)

    # --- source ------------------------------------------------------------------

    async def _run_source(self) -> None:
        try:
            if pregenerates(self.config):
                await self._run_pregenerated()  # waits for the subscriber itself
            else:
                if self.config.wait_for_subscriber:
                    await self._subscribed.wait()
                if self.config.source == "replay":
                    await run_replay(self.config, self._publish, self._stop)
                else:
                    await run_synthetic(self.config, self._publish, self._stop)
            if self._recorder is not None:
                self._recorder.flush()
            log.info(
                "source finished: %d messages published",
                sum(self.counters.source_messages.values()),
            )
        except Exception:
            log.exception("simulator source failed")
            raise
        finally:
            self.source_done.set()

    async def _run_pregenerated(self) -> None:
        """Fast bounded synthetic run: generate every batch now, encode the frames for the
        subscribers once they are there, then only send (the same frames, in the same
        order, as the streaming source; event times are those of the generation)."""
        batches = await generate_synthetic(self.config, self._stop)
        if self.config.wait_for_subscriber:
            await self._subscribed.wait()
        caches: list[_Encoded] = [{} for _ in batches]
        for n, (batch, cache) in enumerate(zip(batches, caches, strict=True)):
            for session in self._targets():
                self._encode_for(session, batch, cache)
            if n % 8 == 0:
                await asyncio.sleep(0)  # the subscription answer goes out meanwhile
        log.info("pre-encoded %d batches; sending", len(batches))
        for batch, cache in zip(batches, caches, strict=True):
            if self._stop.is_set():
                return
            await self._publish(batch, True, cache)
            await asyncio.sleep(0)

    def _targets(self) -> list[_Session]:
        return [
            s
            for s in list(self._sessions)
            if s.authenticated and not s.closing and not s.subscription.is_empty
        ]

    def _encode_for(
        self,
        session: _Session,
        batch: list[dict[str, Any]],
        encoded: _Encoded,
        raw: RecordedFrame | None = None,
    ) -> tuple[list[dict[str, Any]], list[_Frame]]:
        group = (session.msgpack, session.subscription.signature())
        found = encoded.get(group)
        if found is None:
            step = self.config.frame_max_messages
            selected = session.subscription.filter(batch)
            if raw is not None and raw.fits(session.msgpack, len(selected)):
                frames = [_Frame(raw.payload, raw.text, raw.counts, True)]  # as recorded
            else:
                frames = [
                    session.encode(selected[i : i + step], True)
                    for i in range(0, len(selected), step)
                ]
            found = encoded[group] = (selected, frames)
        return found

    async def _publish(
        self,
        batch: list[dict[str, Any]],
        backpressure: bool,
        encoded: _Encoded | None = None,
        *,
        raw: RecordedFrame | None = None,
    ) -> None:
        """Deliver one batch to every subscribed client (one encoding per equal subscription;
        ``encoded`` may hold encodings made in advance; ``raw``: the recorded frame the batch
        came from, sent as recorded where it fits, sources.py)."""
        if not batch and raw is None:
            return
        self.counters.source_messages.update(m["T"] for m in batch)
        if self._recorder is not None:
            self._recorder.write(batch)
        if encoded is None:
            encoded = {}
        for session in self._targets():
            selected, frames = self._encode_for(session, batch, encoded, raw)
            if not frames:
                continue
            if raw is not None and frames[0].payload is raw.payload:
                self.counters.replay_exact_frames_total += 1
            self._remember(session, selected)
            for frame in frames:
                if backpressure:
                    if not await self._put_waiting(session, frame):
                        break
                elif not self._offer(session, frame):
                    break

    async def _put_waiting(self, session: _Session, frame: _Frame) -> bool:
        """Backpressure: wait for queue space, giving up once the connection is going away."""
        if not session.closing and not session.queue.full():
            session.queue.put_nowait(frame)
            return True
        while not session.closing:
            try:
                await asyncio.wait_for(session.queue.put(frame), 0.5)
                return True
            except TimeoutError:
                continue
        return False

    def _remember(self, session: _Session, msgs: list[dict[str, Any]]) -> None:
        history = self._history.get(session.key or "")
        if history is not None and history.maxlen:
            history.extend(msgs)

    def _offer(self, session: _Session, item: _Frame | _Close) -> bool:
        try:
            session.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self._drop_slow_client(session)
            return False

    def _drop_slow_client(self, session: _Session) -> None:
        if session.closing:
            return
        session.closing = True
        self.counters.slow_client_disconnects_total += 1
        log.warning(
            "disconnecting slow client %s (key=%s): send queue full (%d frames)",
            session.peer,
            session.key,
            session.queue.maxsize,
        )
        self._spawn(self._abort_slow(session))

    async def _abort_slow(self, session: _Session) -> None:
        while not session.queue.empty():
            session.queue.get_nowait()
        frame = session.encode(error(407), False)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(session.ws.send(frame.payload, text=frame.text), 1.0)
        self.counters.errors_sent[407] += 1
        with contextlib.suppress(ConnectionClosed):
            await session.ws.close(1008, "slow client")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- connections -------------------------------------------------------------

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if is_history_path(request.path):  # plain HTTP GETs of the historical endpoints
            return await self.history_api.respond(request)
        return self._check_path(connection, request)

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if _PATH.match(request.path.split("?", 1)[0]) is None:
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                f"unknown path {request.path}; use /v2/{{iex|sip|delayed_sip|test}}\n",
            )
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        headers = ws.request.headers
        m = _PATH.match(ws.request.path.split("?", 1)[0])
        feed = m.group(1) if m else self.config.feed
        is_msgpack = "msgpack" in headers.get("Content-Type", "").lower()
        session = _Session(ws, feed, is_msgpack, self.config.send_queue_frames)
        self._sessions.add(session)
        self.counters.connections_total += 1
        self.counters.connections_active += 1
        writer = asyncio.create_task(self._write(session), name=f"sim-writer-{session.peer}")
        try:
            self._control(session, success("connected"))
            if _KEY_HEADER in headers or _SECRET_HEADER in headers:
                key, secret = headers.get(_KEY_HEADER, ""), headers.get(_SECRET_HEADER, "")
                if not self._authenticate(session, key, secret):
                    self._close(session, 1008, "auth failed")
            session.timers.append(asyncio.create_task(self._auth_deadline(session)))
            async for raw in ws:
                if session.closing:
                    break
                self._on_client_message(session, raw)
            if ws.state is State.OPEN:  # let the writer flush a queued error and close frame
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writer), 1.0)
        except ConnectionClosed:
            pass
        finally:
            for task in (*session.timers, writer):
                task.cancel()
            self._sessions.discard(session)
            if session.key is not None and session.authenticated:
                self._by_key.get(session.key, set()).discard(session)
            self.counters.connections_active -= 1

    async def _write(self, session: _Session) -> None:
        ws, counters, faults = session.ws, self.counters, self.config.faults
        try:
            while True:
                session.sending = False
                item = await session.queue.get()
                session.sending = True
                if isinstance(item, _Close):
                    session.closing = True
                    await ws.close(item.code, item.reason)
                    return
                await ws.send(item.payload, text=item.text)
                counters.frames_sent += 1
                counters.bytes_sent += len(item.payload)
                counters.messages_sent.update(item.counts)
                if (
                    item.market_data
                    and faults.duplicate_rate
                    and (self._fault_rng.random() < faults.duplicate_rate)
                ):
                    await ws.send(item.payload, text=item.text)
                    n = sum(item.counts.values())
                    counters.frames_sent += 1
                    counters.duplicated_frames_total += 1
                    counters.duplicated_messages_total += n
                    counters.messages_sent.update(item.counts)
        except ConnectionClosed:
            session.closing = True
        finally:
            session.sending = False

    def _control(self, session: _Session, msgs: list[dict[str, Any]]) -> None:
        """Queue a control message; control frames always hold a single message."""
        if msgs[0]["T"] == "error":
            self.counters.errors_sent[msgs[0]["code"]] += 1
        self._offer(session, session.encode(msgs, False))

    def _close(self, session: _Session, code: int, reason: str) -> None:
        self._offer(session, _Close(code, reason))
        session.closing = True

    async def _auth_deadline(self, session: _Session) -> None:
        await asyncio.sleep(self.config.auth_timeout_s)
        if not session.authenticated and not session.closing:
            log.info(
                "client %s did not authenticate within %.1fs",
                session.peer,
                self.config.auth_timeout_s,
            )
            self._control(session, error(404))
            self._close(session, 1008, "auth timeout")

    async def _drop_after(self, session: _Session) -> None:
        await asyncio.sleep(self.config.faults.drop_every_s or 0)
        if session.closing:
            return
        session.closing = True
        self.counters.drops_injected_total += 1
        log.info("fault injection: dropping connection %s (key=%s)", session.peer, session.key)
        if session.ws.transport is not None:
            session.ws.transport.abort()

    # --- client messages ---------------------------------------------------------

    def _on_client_message(self, session: _Session, raw: str | bytes) -> None:
        try:
            msg = decode_client_message(raw)
        except ValueError:
            self._control(session, error(400))
            return
        if not isinstance(msg, dict):
            self._control(session, error(400))
            return
        action = msg.get("action")
        try:
            if action == "auth":
                if session.authenticated:
                    self._control(session, error(403))
                    return
                key, secret = msg.get("key"), msg.get("secret")
                if not isinstance(key, str) or not isinstance(secret, str):
                    self._control(session, error(400))
                    return
                self._authenticate(session, key, secret)
            elif action in ("subscribe", "unsubscribe"):
                self._on_subscription(session, action, msg)
            else:
                self._control(session, error(400))
        except Exception:
            log.exception("internal error handling %r from %s", action, session.peer)
            self._control(session, error(500))

    def _authenticate(self, session: _Session, key: str, secret: str) -> bool:
        cfg = self.config
        if cfg.keys:
            match = next((k for k in cfg.keys if k.key == key and k.secret == secret), None)
            ok = match is not None
        else:
            match, ok = None, bool(key) and bool(secret)
        if not ok:
            self.counters.auth_failures_total += 1
            self._control(session, error(402))
            return False
        if match is not None and session.feed not in match.feeds:
            self.counters.auth_failures_total += 1
            self._control(session, error(409))
            self._close(session, 1008, "insufficient subscription")
            return False
        active = self._by_key.setdefault(key, set())
        # a connection whose close handshake started no longer counts (its handler may lag)
        active -= {s for s in active if s.ws.state is not State.OPEN}
        if len(active) >= cfg.connection_limit:
            self.counters.auth_failures_total += 1
            log.info(
                "rejecting %s: key %s already has %d connection(s)", session.peer, key, len(active)
            )
            self._control(session, error(406))
            self._close(session, 1008, "connection limit exceeded")
            return False
        active.add(session)
        session.key = key
        session.authenticated = True
        self.counters.auths_total += 1
        history = self._history.get(key)
        if history is None:
            self._history[key] = deque(maxlen=cfg.faults.resend_last)
        elif history:
            session.resend = list(history)
        self._control(session, success("authenticated"))
        if cfg.faults.drop_every_s:
            session.timers.append(asyncio.create_task(self._drop_after(session)))
        return True

    def _on_subscription(self, session: _Session, action: str, msg: dict[str, Any]) -> None:
        if not session.authenticated:
            self._control(session, error(401))
            return
        try:
            request = Subscription.parse_request(msg)
        except SubscriptionRequestError:
            self._control(session, error(400))
            return
        limit = self.config.symbol_limit
        if limit is not None and len(session.subscription.symbols_after(action, request)) > limit:
            self._control(session, error(405))
            return
        session.subscription.apply(action, request)
        self._control(session, session.subscription.answer())
        if not session.subscription.is_empty:
            self._subscribed.set()
            if session.resend:
                self._resend(session)

    def _resend(self, session: _Session) -> None:
        selected = session.subscription.filter(session.resend)
        session.resend = []
        step = self.config.frame_max_messages
        for i in range(0, len(selected), step):
            self._offer(session, session.encode(selected[i : i + step], True))
        self.counters.resent_messages_total += len(selected)
        log.info(
            "fault injection: re-sent %d messages to %s after reconnect",
            len(selected),
            session.peer,
        )
