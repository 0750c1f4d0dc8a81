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

**A gap longer than the hold** (Alpaca unreachable for minutes) is marked in two steps, so
no bar it may have cut is closed unflagged and the hold never delays final bars for longer
than itself. When the hold runs out with the gap still open, the forwarder writes
*interim* markers for the window so far, [start, now] (``GapTracker.interim``), and only
then lets heartbeats resume: the bars the gap began in are flagged before the clock can
close them. The subscription that ends the gap writes the rest, from where the interim
window ended, or from the event time the resumed heartbeats had reached if that is later
(the bars before it are closed, and the connection was down: none holds a trade), so the
last marker is never late because of the wait. Each interim and final marker is one per
symbol; a gap longer than the hold writes two per symbol.

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
    #: where the open gap's interim markers ended (ns), None when none was written
    marked_to_ns: int | None = None

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

    def interim(self, now_ns: int) -> tuple[int, int] | None:
        """The hold ran out with the gap still open: the window to mark now, (from ns,
        to ns), from the gap's start (or the previous interim window's end) to ``now_ns``;
        None when no gap is open. The gap stays open."""
        start = self.open_from_ns if self.marked_to_ns is None else self.marked_to_ns
        if start is None:
            return None
        self.marked_to_ns = max(start, now_ns)
        return start, self.marked_to_ns

    def subscribed(self, now_ns: int, floor_ns: int = 0) -> tuple[int, int] | None:
        """A subscription was confirmed: the gap it closes, (from ns, to ns), or None.
        After interim markers the window starts where they ended, or at ``floor_ns`` (the
        event time heartbeats have reached since) if that is later."""
        self.data_in_connection = False
        start, self.open_from_ns = self.open_from_ns, None
        marked, self.marked_to_ns = self.marked_to_ns, None
        if start is None:
            return None
        if marked is not None:
            start = max(marked, min(floor_ns, now_ns))
        return start, max(start, now_ns)
