"""The Alpaca market-data v2 stock-stream wire protocol: control messages, error codes,
channels, subscriptions and frame encoding (JSON text or msgpack binary).

Market-data messages are plain dicts in Alpaca's shape with ``t`` held as int epoch ns;
``encode_json`` / ``encode_msgpack`` turn a batch into one frame (a JSON/msgpack array).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import orjson

from torghut.sim.timestamps import format_rfc3339_ns, from_wire_timestamp

FEEDS = ("iex", "sip", "delayed_sip", "test")

# Alpaca's error codes and messages (docs "WebSocket Stream" -> Errors).
ERROR_MESSAGES: dict[int, str] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    409: "insufficient subscription",
    500: "internal error",
}

# Subscribable channels in the order Alpaca lists them in a subscription answer.
SUBSCRIBABLE = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
# Corrections and cancel errors cannot be subscribed: they follow ``trades``.
FOLLOW_TRADES = ("corrections", "cancelErrors")

# Message type ``T`` -> the subscription channel that carries it.
TYPE_CHANNEL: dict[str, str] = {
    "t": "trades",
    "q": "quotes",
    "b": "bars",
    "u": "updatedBars",
    "d": "dailyBars",
    "s": "statuses",
    "l": "lulds",
    "c": "trades",
    "x": "trades",
}
MARKET_DATA_TYPES = frozenset(TYPE_CHANNEL)


def success(msg: str) -> list[dict[str, Any]]:
    return [{"T": "success", "msg": msg}]


def error(code: int) -> list[dict[str, Any]]:
    return [{"T": "error", "code": code, "msg": ERROR_MESSAGES[code]}]


class SubscriptionRequestError(ValueError):
    """A subscribe/unsubscribe message is malformed (answered with error 400)."""


class Subscription:
    """The channels and symbols one connection is subscribed to, with ``*`` wildcards.

    Symbol order is insertion order, like the answers Alpaca sends.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, None]] = {ch: {} for ch in SUBSCRIBABLE}

    @staticmethod
    def parse_request(request: Mapping[str, Any]) -> dict[str, list[str]]:
        """The channel -> symbols part of a subscribe/unsubscribe message; raises on bad types."""
        parsed: dict[str, list[str]] = {}
        for channel in SUBSCRIBABLE:
            if channel not in request:
                continue
            symbols = request[channel]
            if symbols is None:
                continue
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise SubscriptionRequestError(f"{channel} must be a list of symbols")
            parsed[channel] = symbols
        return parsed

    def symbols_after(self, action: str, request: dict[str, list[str]]) -> set[str]:
        """Distinct concrete symbols (``*`` excluded) the subscription would hold."""
        out: set[str] = set()
        for channel in SUBSCRIBABLE:
            current = set(self._channels[channel])
            change = set(request.get(channel, ()))
            current = current | change if action == "subscribe" else current - change
            out |= current
        out.discard("*")
        return out

    def apply(self, action: str, request: dict[str, list[str]]) -> None:
        for channel, symbols in request.items():
            target = self._channels[channel]
            for symbol in symbols:
                if action == "subscribe":
                    target.setdefault(symbol, None)
                else:
                    target.pop(symbol, None)

    def answer(self) -> list[dict[str, Any]]:
        """The ``{"T":"subscription",...}`` control message with the full current state."""
        msg: dict[str, Any] = {"T": "subscription"}
        for channel in SUBSCRIBABLE:
            msg[channel] = list(self._channels[channel])
        trades = msg["trades"]
        msg["corrections"] = list(trades)
        msg["cancelErrors"] = list(trades)
        return [msg]

    def wants(self, msg: Mapping[str, Any]) -> bool:
        channel = TYPE_CHANNEL.get(msg["T"])
        if channel is None:
            return False
        symbols = self._channels[channel]
        return "*" in symbols or msg.get("S") in symbols

    def filter(self, msgs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [m for m in msgs if self.wants(m)]

    @property
    def is_empty(self) -> bool:
        return not any(self._channels.values())

    def signature(self) -> tuple[tuple[str, ...], ...]:
        """Hashable state, so connections with equal subscriptions share one encoding."""
        return tuple(tuple(self._channels[ch]) for ch in SUBSCRIBABLE)


# --- encoding -------------------------------------------------------------------------


def to_json_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A message as Alpaca's JSON stream carries it (``t`` as RFC 3339 ns string)."""
    t = msg.get("t")
    if type(t) is int:
        return {**msg, "t": format_rfc3339_ns(t)}
    return msg


def _to_msgpack_message(msg: dict[str, Any]) -> dict[str, Any]:
    t = msg.get("t")
    if type(t) is int:
        return {**msg, "t": msgpack.Timestamp.from_unix_nano(t)}
    return msg


def encode_json(msgs: Iterable[dict[str, Any]]) -> bytes:
    """One JSON text frame: an array of messages."""
    return orjson.dumps([to_json_message(m) for m in msgs])


def encode_msgpack(msgs: Iterable[dict[str, Any]]) -> bytes:
    """One msgpack binary frame: an array of messages, ``t`` as Timestamp ext type -1."""
    return msgpack.packb([_to_msgpack_message(m) for m in msgs], datetime=False)


def decode_client_message(frame: str | bytes) -> Any:
    """Decode what a client sent: JSON in a text frame, msgpack (or JSON) in a binary one."""
    if isinstance(frame, str):
        return orjson.loads(frame)
    try:
        return msgpack.unpackb(frame)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError):
        return orjson.loads(frame)


def normalize_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A received/recorded message with ``t`` back to int epoch ns (other fields as-is)."""
    if "t" in msg:
        return {**msg, "t": from_wire_timestamp(msg["t"])}
    return dict(msg)
