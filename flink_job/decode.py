"""Raw envelope bytes -> compact event tuples for the keyed processor."""

from __future__ import annotations

import datetime
from typing import Any

from flink_job.symbol_processor import CANCEL, CORRECTION, GAP, QUOTE, TRADE
from shared.sale_conditions import trade_updates
from shared.serde import AvroDeserializer, SerdeError

REJECTED = "!"
# the source's key for records without a Kafka key (SymbolKeyedDeserializationSchema.NO_KEY)
REJECTED_KEY = "__rejected__"
#: the forwarder's gap markers (forwarder/gaps.py): a ForwarderStatus payload, the window
#: [from, to] in which messages may have been lost in `window`
GAP_CHANNEL = "gap"
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _ns(t: Any) -> int:
    """A `timestamp-micros` value as fastavro returns it (an aware datetime) in epoch ns."""
    if isinstance(t, datetime.datetime):
        return (t - _EPOCH) // datetime.timedelta(microseconds=1) * 1000
    return int(t) * 1000


def envelope_event(env: dict[str, Any]) -> tuple | None:
    """(kind, symbol, event_ns, seq, ingest_ns, trace_id, *fields), or None if not for TA."""
    ch, p = env["channel"], env["payload"]
    head = (env["symbol"], env["event_ts"], env["seq"], env["ingest_ts"], env["trace_id"])
    if ch == "trades":
        flags = trade_updates(p.get("tape") or "", tuple(p.get("conditions") or ()))
        return (TRADE, *head, p["price"], p["size"], p["id"], flags)
    if ch == "quotes":
        return (QUOTE, *head, p["bid_price"], p["bid_size"], p["ask_price"], p["ask_size"])
    if ch == "corrections":
        return (CORRECTION, *head)
    if ch == "cancelErrors":
        return (CANCEL, *head)
    if ch == GAP_CHANNEL:
        w = env["window"]
        if w is None or p.get("event") != "gap":
            raise TypeError("a gap marker needs event 'gap' and its window [from, to]")
        return (GAP, *head, _ns(w["start"]), _ns(w["end"]))
    return None


def rejected(reason: str) -> tuple:
    """The marker tuple for a raw record the job cannot use; `reason` says why."""
    return (REJECTED, REJECTED_KEY, 0, 0, 0, "", reason)


def decode_event(
    deserializer: AvroDeserializer, data: bytes, key: str | None = None
) -> tuple | None:
    """The event of one raw record, a `rejected(...)` marker, or None (a channel TA ignores).

    `key`: the Kafka record key the job keyed the record by; it must be the envelope's
    symbol (the forwarder keys by symbol), else the event would update another symbol's
    state, so a mismatch is rejected too. None skips that check.
    """
    if key == REJECTED_KEY:
        return rejected("raw record has no Kafka key (the forwarder keys every record by symbol)")
    try:
        env = deserializer.decode(data, topic="torghut.raw")
    except SerdeError as exc:
        return rejected(str(exc))
    if key is not None and env["symbol"] != key:
        return rejected(f"record key {key!r} is not the envelope symbol {env['symbol']!r}")
    try:
        return envelope_event(env)
    except (KeyError, TypeError) as exc:
        return rejected(
            f"{env['channel']} envelope with a payload of another type: "
            f"{sorted(env['payload']) if isinstance(env['payload'], dict) else env['payload']!r}"
            f" ({exc})"
        )
