"""Gap markers: messages lost while the WebSocket reconnects, made visible downstream.

Alpaca does not replay what it published while a client was disconnected. When a connection
that had delivered data drops, the forwarder knows a window in which messages may have been
lost: from the ingest time of the last data frame of that connection to the moment the next
subscription is confirmed. At that confirmation, before any message of the new connection
is routed, it writes one **gap marker** per symbol it has seen (every (type, symbol) slot of
the router) into the raw trades topic, keyed by the symbol, so the marker sits in the
symbol's partition before every post-reconnect trade of it (docs/design.md, "Gaps").

A marker is an envelope of channel ``gap`` with the existing ``ForwarderStatus`` payload
(event ``gap``) and the window [from, to] in the envelope's ``window`` (µs): no change to
``envelope.avsc`` (docs/topics-and-schemas.md says why). Its ``ingest_ts`` is ``to``, its
``event_ts`` (the record timestamp) the forwarder's event-time clock, capped at ``to``:
a marker never moves a partition's event time (a replay of an old recording must not get
wall-clock event times), so it is never late because of itself.

While a gap is open, heartbeats hold (up to ``TORGHUT_FWD_GAP_HOLD_S``): otherwise the
event-time clock would run on with wall time and close the gap's bars before the marker
reaches them; a marker can only flag bars its partition's mark has not passed.

**Across a process restart** (a crash, ``kill -9``, a deploy, and a clean stop too: Alpaca
does not replay), the new process does not remember the old one, so it reads it from the log:
the start-up tail scan of the raw topics (``forwarder.sequence.scan_tail``, the last
``TORGHUT_FWD_SEQ_SCAN_RECORDS`` records per partition, read_committed) also returns the
highest ingest time of a market-data envelope (not a heartbeat, status event or gap marker)
and the symbols of the market data there. When it found market data, the process opens a
gap at start-up (``GapTracker.restarted``, reason ``forwarder restart``) from that ingest
time; its first confirmed subscription closes it like a reconnect's, and the markers go to
the router's symbols (none yet) and the tail's symbols. Limits: a symbol with no envelope in
the scanned tails gets no marker; what the old process read but Kafka never acked is not in
the log, and the gap (from the last *logged* ingest time) covers it. A first start on empty
topics, or with ``TORGHUT_FWD_SEQ_SCAN_RECORDS=0``, opens no gap.

``GapTracker`` is the pure bookkeeping (unit-tested); ``Forwarder`` calls it from its
status events and writes the markers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GapTracker:
    """When a gap opens (a data connection dropped) and closes (the next subscription)."""

    #: ingest time (ns) of the last data frame, and whether the current connection had one
    last_data_ns: int = 0
    data_in_connection: bool = False
    #: the open gap's start (ns), None when no gap is open
    open_from_ns: int | None = None

    def data(self, ingest_ns: int) -> None:
        """A data frame was read (the forwarder calls this per frame: keep it cheap)."""
        self.last_data_ns = ingest_ns
        self.data_in_connection = True

    def restarted(self, last_data_ns: int) -> bool:
        """Start-up found data an earlier process read until ``last_data_ns`` (its last
        market-data ingest time in the log): open the gap from there, closed by the first
        subscription. True when that opened it (not when a gap is already open)."""
        if self.open_from_ns is not None:
            return False
        self.last_data_ns = last_data_ns
        self.open_from_ns = last_data_ns
        return True

    def disconnected(self, now_ns: int) -> bool:
        """The connection dropped; True when that opened a gap. A connection that delivered
        nothing leaves an open gap open (it still runs from the last data frame)."""
        had_data, self.data_in_connection = self.data_in_connection, False
        if not had_data or self.open_from_ns is not None:
            return False
        self.open_from_ns = self.last_data_ns or now_ns
        return True

    def subscribed(self, now_ns: int) -> tuple[int, int] | None:
        """A subscription was confirmed: the gap it closes, (from ns, to ns), or None."""
        self.data_in_connection = False
        start, self.open_from_ns = self.open_from_ns, None
        if start is None:
            return None
        return start, max(start, now_ns)
