"""The Alpaca market-data WebSocket client: connect, authenticate, subscribe, dispatch,
reconnect. One base class (as alpaca-py's live client) and a thin stock-stream subclass.

Frames are decoded here (msgpack with ``timestamp=2`` gives exact int ns; JSON via orjson);
control messages are handled here, market data goes to ``StreamHandler.on_data``, which
may await (backpressure: while it waits, the socket is not read).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import msgpack
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.frames import CloseCode

from forwarder.exceptions import (
    ConnectionLimitError,
    FatalStreamError,
    StreamProtocolError,
)
from forwarder.reconnect import ReconnectPolicy
from forwarder.settings import ForwarderSettings
from forwarder.wire import unpack_frame, unpack_json_frame

log = logging.getLogger("forwarder.ws")

FATAL_CODES = {
    402: "auth failed: check the key id and secret (TORGHUT_FWD_ALPACA_KEY_ID / "
    "TORGHUT_FWD_ALPACA_SECRET_KEY, or APCA_API_KEY_ID / APCA_API_SECRET_KEY)",
    409: "insufficient subscription: the account's plan does not include this feed "
    "(use the iex feed or upgrade the market-data subscription)",
    405: "symbol limit exceeded: subscribe fewer symbols (TORGHUT_FWD_SYMBOLS)",
    400: "invalid syntax: the subscription request was refused (check TORGHUT_FWD_CHANNELS)",
}


class StreamHandler(Protocol):
    """What the stream calls; implemented by the app."""

    def on_data(self, msgs: Sequence[Any], ingest_ns: int) -> bool:
        """Forward one frame's messages; True when the reader must ``await drain()``."""
        ...

    def on_frame(self, raw: bytes, ingest_ns: int) -> bool | None:
        """An undecoded msgpack frame (the native fast path): forwarded as ``on_data`` would
        (True/False as there), or None when declined untouched (then it is decoded and
        passed to ``on_data``)."""
        ...

    async def drain(self) -> None:
        """Backpressure: return once the producer has room again."""
        ...

    def on_status(
        self,
        event: str,
        *,
        reason: str = "",
        attempt: int = 0,
        code: int | None = None,
        detail: str = "",
    ) -> None: ...

    def on_reject(self, reason: str, detail: str, msg: Any) -> None: ...

    def on_connected(self, connected: bool) -> None: ...


class FrameSink(Protocol):
    """Where frames are recorded exactly as received (forwarder/recorder.py); never blocks."""

    def frame(self, raw: str | bytes, receive_ns: int) -> None: ...

    def marker(self, info: Mapping[str, Any], receive_ns: int | None = None) -> None: ...


class BaseDataStream:
    """Connect/auth/subscribe/dispatch with reconnects; ``run`` returns when ``stop`` is set
    and raises ``FatalStreamError`` for errors a retry cannot fix (402, 409). With a
    ``recorder`` every data frame is recorded as received, before it is decoded, with the
    ingest time the router stamps, and each subscription and disconnect as a marker."""

    def __init__(
        self,
        settings: ForwarderSettings,
        handler: StreamHandler,
        policy: ReconnectPolicy,
        recorder: FrameSink | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.policy = policy
        self.recorder = recorder
        self.msgpack = settings.wire_format == "msgpack"
        self.attempt = 0
        self.connected_at: float | None = None
        self.subscribed = False
        self.frames_read = 0
        #: monotonic time the first market-data frame was read (benchmarks)
        self.first_data_at: float | None = None
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None

    # --- wire --------------------------------------------------------------------

    def url(self) -> str:
        return self.settings.alpaca_url

    def encode(self, msg: Mapping[str, Any]) -> str | bytes:
        return msgpack.packb(msg) if self.msgpack else orjson.dumps(msg).decode()

    def decode(self, raw: str | bytes) -> Any:
        """One frame -> a list of messages; raises ValueError for a malformed frame."""
        try:
            if isinstance(raw, bytes) and self.msgpack:
                return unpack_frame(raw, self.settings.max_envelope_bytes)  # wire.py: bounded
            return unpack_json_frame(raw, self.settings.max_envelope_bytes)
        except (
            msgpack.ExtraData,
            msgpack.FormatError,
            msgpack.StackError,
            orjson.JSONDecodeError,
            ValueError,
            TypeError,
        ) as exc:
            raise ValueError(f"undecodable frame ({type(exc).__name__}: {exc})"[:300]) from None

    async def _recv_control(self, ws: ClientConnection, expect: str) -> Mapping[str, Any]:
        try:
            raw = await asyncio.wait_for(ws.recv(), self.settings.connect_timeout_s)
        except TimeoutError:
            raise StreamProtocolError(
                f"no answer within {self.settings.connect_timeout_s}s while waiting for {expect}"
            ) from None
        try:
            msgs = self.decode(raw)
        except ValueError as exc:
            raise StreamProtocolError(f"{exc} while waiting for {expect}") from None
        if not isinstance(msgs, (list, tuple)) or not msgs or not isinstance(msgs[0], dict):
            raise StreamProtocolError(f"unexpected frame while waiting for {expect}")
        msg = msgs[0]
        if msg.get("T") == "error":
            self._raise_error(msg)
        return msg

    @staticmethod
    def _raise_error(msg: Mapping[str, Any]) -> None:
        code = msg.get("code")
        text = f"Alpaca error {code} {msg.get('msg', '')!r}"
        if code in FATAL_CODES:
            raise FatalStreamError(code, f"{text}: {FATAL_CODES[code]}")
        if code == 406:
            raise ConnectionLimitError(
                f"{text}: another connection uses this Alpaca account; only one is allowed"
            )
        raise StreamProtocolError(text, code if isinstance(code, int) else None)

    async def _handshake(self, ws: ClientConnection) -> None:
        s = self.settings
        first = await self._recv_control(ws, "the connected message")
        if first.get("T") != "success" or first.get("msg") != "connected":
            raise StreamProtocolError(f"expected success/connected, got {first.get('T')!r}")
        await ws.send(
            self.encode(
                {
                    "action": "auth",
                    "key": s.alpaca_key_id.get_secret_value(),
                    "secret": s.alpaca_secret_key.get_secret_value(),
                }
            )
        )
        auth = await self._recv_control(ws, "the auth answer")
        if auth.get("T") != "success" or auth.get("msg") != "authenticated":
            raise StreamProtocolError(f"expected success/authenticated, got {auth.get('T')!r}")
        self.handler.on_status("authenticated", attempt=self.attempt)
        await ws.send(self.encode({"action": "subscribe", **s.subscription()}))
        sub = await self._recv_control(ws, "the subscription answer")
        if sub.get("T") != "subscription":
            raise StreamProtocolError(f"expected a subscription answer, got {sub.get('T')!r}")
        channels = {k: len(v) for k, v in sub.items() if k != "T" and isinstance(v, list | tuple)}
        if self.recorder is not None:
            self.recorder.marker(
                {"event": "subscribed", "attempt": self.attempt, "channels": channels}
            )
        self.handler.on_status(
            "subscribed", attempt=self.attempt, detail=orjson.dumps(channels).decode()
        )

    # --- loop --------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and forward until ``stop()``; reconnect with backoff on any drop."""
        while not self._stop.is_set():
            reason, code, conflict = "", None, False
            try:
                await self._session()
                reason = "closed by server" if not self._stop.is_set() else "stopping"
            except FatalStreamError as exc:
                self.handler.on_status(
                    "error", reason=str(exc), attempt=self.attempt, code=exc.code
                )
                raise
            except ConnectionLimitError as exc:
                reason, code, conflict = str(exc), 406, True
                self.handler.on_status("error", reason=reason, attempt=self.attempt, code=406)
                log.warning(
                    "%s; retrying in at least %.0fs", reason, self.settings.conflict_backoff_s
                )
            except StreamProtocolError as exc:
                reason, code = str(exc), exc.code
            except ConnectionClosed as exc:
                rcvd, sent = exc.rcvd, exc.sent
                code = rcvd.code if rcvd is not None else None
                if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
                    # websockets refused a frame over max_size and closed with 1009: that
                    # frame is lost (everything before it was forwarded); counted, reconnect
                    code = int(CloseCode.MESSAGE_TOO_BIG)
                    reason = (
                        f"frame larger than TORGHUT_FWD_MAX_FRAME_BYTES="
                        f"{self.settings.max_frame_bytes} refused, connection closed (1009 "
                        f"{sent.reason}); its messages are lost, the others were forwarded"
                    )
                    self.handler.on_reject("frame_too_large", reason, None)
                else:
                    reason = (
                        f"connection closed ({rcvd.code} {rcvd.reason})"
                        if rcvd
                        else "connection lost (no close frame)"
                    )
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must cost a reconnect, not the process
                log.exception("unexpected error in the stream; reconnecting")
                reason = f"internal error {type(exc).__name__}: {exc}"[:300]
            finally:
                was_connected = self._ws is not None
                self._ws = None
                self.subscribed = False
                self.handler.on_connected(False)
            if was_connected:
                self.handler.on_status(
                    "disconnected", reason=reason, attempt=self.attempt, code=code
                )
                if self.recorder is not None:
                    self.recorder.marker(
                        {
                            "event": "disconnected",
                            "attempt": self.attempt,
                            "code": code,
                            "reason": reason[:300],
                        }
                    )
            if self._stop.is_set():
                return
            self.attempt += 1
            delay = self.policy.delay(self.attempt, conflict=conflict)
            log.info("reconnecting in %.2fs (attempt %d): %s", delay, self.attempt, reason)
            self.handler.on_status(
                "reconnecting",
                reason=reason,
                attempt=self.attempt,
                code=code,
                detail=f"delay_s={delay:.2f}",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _session(self) -> None:
        s = self.settings
        headers = {"Content-Type": "application/msgpack"} if self.msgpack else {}
        async with connect(
            self.url(),
            additional_headers=headers,
            max_size=s.max_frame_bytes,
            open_timeout=s.connect_timeout_s,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            user_agent_header="torghut-forwarder",
        ) as ws:
            self._ws = ws
            self.handler.on_status("connected", attempt=self.attempt)
            await self._handshake(ws)
            self.subscribed = True
            self.handler.on_connected(True)
            if self._stop.is_set():
                return
            await self._read(ws)

    async def _read(self, ws: ClientConnection) -> None:
        handler = self.handler
        data_seen = False
        # msgpack: each binary frame is first offered undecoded to the native fast path
        on_frame = handler.on_frame if self.msgpack else None
        record = self.recorder.frame if self.recorder is not None else None
        # after stop() closes the socket, recv() still yields the frames already received
        while True:
            raw = await ws.recv()
            ingest_ns = time.time_ns()
            if record is not None:  # exactly as received, before any decoding
                record(raw, ingest_ns)
            self.frames_read += 1
            if self.first_data_at is None:
                self.first_data_at = time.monotonic()
            # A frame allocates thousands of short-lived, acyclic objects (decoded dicts,
            # envelope bytes). With the cyclic GC on, a gen-0 collection every 700
            # allocations scans the frame's live messages again and again and promotes
            # them; off for the frame, one cheap collection follows once they are freed.
            gc_paused = gc.isenabled()
            msgs: Any = None
            if gc_paused:
                gc.disable()
            try:
                full = None
                if on_frame is not None and type(raw) is bytes:
                    full = on_frame(raw, ingest_ns)
                if full is None:
                    try:
                        msgs = self.decode(raw)
                    except ValueError as exc:
                        handler.on_reject("malformed_frame", str(exc), None)
                        continue
                    if not isinstance(msgs, (tuple, list, Iterator)):
                        handler.on_reject(
                            "malformed_frame",
                            f"frame holds a {type(msgs).__name__}, not an array of messages",
                            None,
                        )
                        continue
                if not data_seen:
                    data_seen = True
                    self.attempt = 0  # data flows: the next drop starts the backoff afresh
                if full is None:
                    full = handler.on_data(msgs, ingest_ns)
            finally:
                msgs = None
                if gc_paused:
                    gc.enable()
            if full:
                await handler.drain()

    def on_control(self, msg: Mapping[str, Any]) -> None:
        """A control message inside the data stream (e.g. 407 slow client before a close)."""
        if msg.get("T") == "error":
            code = msg.get("code")
            self.handler.on_status(
                "error",
                reason=f"Alpaca error {code} {msg.get('msg', '')!r}",
                attempt=self.attempt,
                code=code if isinstance(code, int) else None,
            )
        else:
            log.info("control message while streaming: %s", str(msg)[:200])

    def stop(self) -> None:
        """Stop reading: close the socket (frames already received are still forwarded)."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            self._closing = asyncio.get_running_loop().create_task(
                ws.close(1000, "forwarder stopping")
            )


class StockDataStream(BaseDataStream):
    """Alpaca v2 stock stream (``/v2/{iex|sip|delayed_sip|test}``)."""
