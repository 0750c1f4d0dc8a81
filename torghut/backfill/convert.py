"""REST records -> the WebSocket message shape -> the job's event tuples, through the same
validation the forwarder and the job apply.

Per symbol and chunk, trades and quotes are merged in event time (ties: trades first, each
kind in Alpaca's order) and become the stream's messages (``{"T": "t", "S": symbol, ...}``:
the REST fields are the stream's). Each then takes the forwarder's steps: the payload checks
of its encoder (`forwarder.avro_writer.BODIES`: prices, sizes, types), the event-time check
(no more than the forwarder's ``max_future_s`` ahead of now), its dedup key
(`forwarder.envelope.DEDUP_KEY`: trades by id, quotes by time; within the chunk) and the
envelope (`forwarder.envelope.to_envelope`); then the job's (`flink_job.decode.envelope_event`
and `flink_job.symbol_processor.invalid_reason`). A refused record is counted by reason
(`Refusals`) and skipped, as live.

The envelope of a backfilled record: ``ingest_ts`` = its event time (there is no receive
time; deterministic, so a chunk computed twice gives the same rows), ``seq`` per symbol and
kind continuing from the symbol state's applied seqs, ``trace_id`` ``backfill:<kind>:<seq>``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flink_job.decode import envelope_event
from flink_job.symbol_processor import QUOTE, TRADE, SymbolState, invalid_reason
from forwarder.avro_writer import BODIES, ENCODE_ERRORS
from forwarder.envelope import DEDUP_KEY, event_ts_ns, to_envelope
from forwarder.exceptions import InvalidMessageError
from forwarder.settings import ForwarderSettings

#: the forwarder's tolerance for event times ahead of its clock (TORGHUT_FWD_MAX_FUTURE_S)
FORWARDER_MAX_FUTURE_NS = round(ForwarderSettings.model_fields["max_future_s"].default * 1e9)


@dataclass
class Refusals:
    """Records refused, by reason (the forwarder's reject reasons; ``duplicate``; ``job``),
    with the first detail of each reason."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        self.examples.setdefault(reason, detail[:300])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{r} {n}" for r, n in sorted(self.counts.items())) or "none"


def _next_seq(st: SymbolState, kind: str) -> int:
    applied = st.applied.get(kind)
    return applied[-1] + 1 if applied else 1


def chunk_events(
    symbol: str,
    trades: Sequence[Mapping[str, Any]],
    quotes: Sequence[Mapping[str, Any]],
    st: SymbolState,
    feed: str,
    now_ns: int,
    job_max_future_ns: int,
    refusals: Refusals,
) -> list[tuple]:
    """The valid event tuples of one symbol's chunk, in event time."""
    merged: list[tuple[int, int, int, dict[str, Any]]] = []
    for order, (kind, records) in enumerate((("t", trades), ("q", quotes))):
        for i, r in enumerate(records):
            msg = {"T": kind, "S": symbol, **r}
            try:
                ts = event_ts_ns(msg.get("t"))
            except InvalidMessageError as exc:
                refusals.add(exc.reason, exc.detail)
                continue
            merged.append((ts, order, i, msg))
    merged.sort(key=lambda e: (e[0], e[1], e[2]))
    seqs = {"t": _next_seq(st, TRADE), "q": _next_seq(st, QUOTE)}
    seen: set[Any] = set()
    future = now_ns + FORWARDER_MAX_FUTURE_NS
    out = []
    for ts, _order, _i, msg in merged:
        kind = msg["T"]
        seq = seqs[kind]
        try:
            BODIES[kind](msg)  # the forwarder's payload checks (prices, sizes, field types)
            if ts > future:
                raise InvalidMessageError(
                    "event_ts_in_future", f"t={ts} is ahead of this host's clock {now_ns}"
                )
            key = DEDUP_KEY[kind](msg)
            if key in seen:
                refusals.add("duplicate", f"{key!r} twice in the chunk")
                continue
            env = to_envelope(
                msg, feed=feed, seq=seq, ingest_ts=ts, trace_id=f"backfill:{kind}:{seq}"
            )
        except InvalidMessageError as exc:
            refusals.add(exc.reason, exc.detail)
            continue
        except ENCODE_ERRORS as exc:
            refusals.add("invalid_field", repr(exc))
            continue
        seen.add(key)
        ev = envelope_event({**env, "payload": env["payload"][1]})
        if ev is None:
            continue
        reason = invalid_reason(ev, job_max_future_ns)
        if reason is not None:
            refusals.add("job", reason)
            continue
        seqs[kind] = seq + 1
        out.append(ev)
    return out
