"""Raw envelope bytes -> compact event tuples for the keyed processor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flink_job.symbol_processor import CANCEL, CORRECTION, QUOTE, TRADE
from shared.serde import AvroDeserializer, SerdeError

REJECTED = "!"
REJECTED_KEY = "__rejected__"


def envelope_event(env: dict[str, Any]) -> tuple | None:
    """(kind, symbol, event_ns, seq, ingest_ns, trace_id, *fields), or None if not for TA."""
    ch, p = env["channel"], env["payload"]
    head = (env["symbol"], env["event_ts"], env["seq"], env["ingest_ts"], env["trace_id"])
    if ch == "trades":
        return (TRADE, *head, p["price"], p["size"], p["id"])
    if ch == "quotes":
        return (QUOTE, *head, p["bid_price"], p["bid_size"], p["ask_price"], p["ask_size"])
    if ch == "corrections":
        return (CORRECTION, *head)
    if ch == "cancelErrors":
        return (CANCEL, *head)
    return None


def decode_raw(deserializer: AvroDeserializer, data: bytes) -> Iterator[tuple]:
    try:
        env = deserializer.decode(data, topic="torghut.raw")
    except SerdeError as exc:
        yield (REJECTED, REJECTED_KEY, 0, 0, 0, "", str(exc))
        return
    ev = envelope_event(env)
    if ev is not None:
        yield ev
