"""Gap markers (forwarder/gaps.py): when a WebSocket gap opens and closes (also across a
process restart, from the Kafka tail scan), what a marker holds, that the job reads it as a
gap window, and that heartbeats hold while a gap is open."""

from __future__ import annotations

from flink_job.decode import decode_event
from flink_job.envelope_reader import EventReader
from flink_job.symbol_processor import GAP
from forwarder.envelope import GAP_CHANNEL, gap_envelope
from forwarder.gaps import GapTracker
from forwarder.metrics import CHANNEL_INDEX, CHANNELS, ForwarderMetrics
from forwarder.sequence import TailScan, recover_floor, scan_tail
from shared.serde import AvroDeserializer, AvroSerializer
from shared.topics import TRADES
from tests.support.heartbeat import heartbeat_writer
from tests.support.registry import InMemoryRegistry

S = 1_000_000_000
T0 = 1_767_362_400 * S


def test_a_gap_runs_from_the_last_data_frame_to_the_next_subscription():
    g = GapTracker()
    assert g.subscribed(T0) is None  # the first subscription closes no gap
    g.data(T0 + 5 * S + 123)
    g.data(T0 + 6 * S + 456)
    assert g.disconnected(T0 + 7 * S)
    assert g.subscribed(T0 + 9 * S) == (T0 + 6 * S + 456, T0 + 9 * S)
    assert g.subscribed(T0 + 10 * S) is None  # closed once


def test_a_connection_that_delivered_nothing_opens_no_gap_and_keeps_an_open_one_open():
    g = GapTracker()
    assert not g.disconnected(T0)  # the handshake failed before any data: nothing lost
    g.subscribed(T0 + S)
    g.data(T0 + 2 * S)
    assert g.disconnected(T0 + 3 * S)
    assert not g.disconnected(T0 + 4 * S)  # a reconnect that dropped before subscribing
    g.subscribed(T0 + 5 * S)  # ... that subscribed and then dropped before any data
    assert not g.disconnected(T0 + 6 * S)
    g.data(T0 + 7 * S)
    assert g.disconnected(T0 + 8 * S)
    assert g.subscribed(T0 + 9 * S) == (T0 + 7 * S, T0 + 9 * S)


def test_a_gap_longer_than_the_hold_is_marked_so_far_then_from_where_that_ended():
    g = GapTracker()
    assert g.interim(T0) is None  # no gap open: nothing to mark
    g.data(T0 + 6 * S + 456)
    assert g.disconnected(T0 + 7 * S)
    # the hold ran out at T0 + 37 s: the window so far; the gap stays open
    assert g.interim(T0 + 37 * S) == (T0 + 6 * S + 456, T0 + 37 * S)
    assert not g.disconnected(T0 + 40 * S)  # failed reconnects keep it open
    assert g.interim(T0 + 67 * S) == (T0 + 37 * S, T0 + 67 * S)  # a second hold: the next piece
    # the subscription marks the rest from where the interim window ended, or from the
    # event time resumed heartbeats reached if later (their bars are closed, no trade in them)
    assert g.subscribed(T0 + 90 * S, floor_ns=T0 + 60 * S) == (T0 + 67 * S, T0 + 90 * S)
    g.data(T0 + 91 * S)
    assert g.disconnected(T0 + 92 * S)
    g.interim(T0 + 100 * S)
    assert g.subscribed(T0 + 130 * S, floor_ns=T0 + 127 * S) == (T0 + 127 * S, T0 + 130 * S)
    # never past the subscription itself, and without an interim window the floor is unused
    g.data(T0 + 131 * S)
    assert g.disconnected(T0 + 132 * S)
    g.interim(T0 + 140 * S)
    assert g.subscribed(T0 + 150 * S, floor_ns=T0 + 155 * S) == (T0 + 150 * S, T0 + 150 * S)
    g.data(T0 + 151 * S)
    assert g.disconnected(T0 + 152 * S)
    assert g.subscribed(T0 + 153 * S, floor_ns=T0 + 153 * S) == (T0 + 151 * S, T0 + 153 * S)
    assert g.interim(T0 + 160 * S) is None and g.marked_to_ns is None


def test_a_restart_gap_runs_from_the_tails_last_ingest_to_the_first_subscription():
    g = GapTracker()
    assert g.restarted(T0 + 4 * S + 7)  # the earlier process's last market data in Kafka
    assert not g.restarted(T0 + 5 * S)  # already open: the start stays
    assert not g.disconnected(T0 + 6 * S)  # the first connection dropped before any data
    assert g.subscribed(T0 + 8 * S) == (T0 + 4 * S + 7, T0 + 8 * S)
    assert g.subscribed(T0 + 9 * S) is None
    g.data(T0 + 10 * S)  # later gaps are reconnect gaps as before
    assert g.disconnected(T0 + 11 * S)
    assert g.subscribed(T0 + 12 * S) == (T0 + 10 * S, T0 + 12 * S)


def test_a_restart_gap_never_ends_before_it_starts():
    g = GapTracker()
    g.restarted(T0 + 5 * S)  # the old pod's clock ran ahead of this one's
    assert g.subscribed(T0 + 3 * S) == (T0 + 5 * S, T0 + 5 * S)


def _env(channel, symbol, seq, ingest, event=None):
    return {
        "channel": channel,
        "symbol": symbol,
        "seq": seq,
        "ingest_ts": ingest,
        "event_ts": ingest - 1000 if event is None else event,
    }


def test_the_tail_scan_keeps_the_last_market_data_ingest_and_its_symbols():
    t = TailScan()
    t.add(_env("trades", "AAPL", 10, T0 + S))
    t.add(_env("quotes", "MSFT", 11, T0 + 2 * S, event=T0 + 2 * S - 5))
    t.add(_env("updatedBars", "NVDA", 3, T0 + S + 1, event=T0 - 60 * S))
    t.add(_env("lulds", "TSLA", 4, T0 + 3 * S))  # market data, keyed by feed: no marker
    # the forwarder's own envelopes are not market data: seq only
    t.add(_env("status", "", 99, T0 + 9 * S))
    t.add(_env("gap", "AMD", 98, T0 + 8 * S))
    assert t.highest_seq == 99
    assert t.last_ingest_ns == T0 + 3 * S
    assert t.last_event_ns == T0 + 2 * S - 5  # trades and quotes, like the event clock
    # symbol-keyed market data only; each with its last trade's event time (its marker's
    # timestamp at most: a marker never moves its partition's event time)
    assert t.symbols == {"AAPL": T0 + S - 1000, "MSFT": 0, "NVDA": 0}


def test_a_tail_of_status_events_only_opens_no_restart_gap():
    t = TailScan()
    t.add(_env("status", "", 5, T0))
    assert t.highest_seq == 5 and t.last_ingest_ns is None and not t.symbols


def test_a_skipped_scan_is_empty_and_recover_floor_still_answers_the_highest_seq():
    # TORGHUT_FWD_SEQ_SCAN_RECORDS=0: no broker is contacted, nothing is known
    assert scan_tail({"bootstrap.servers": "127.0.0.1:1"}, ["t"], None, 0) == TailScan()
    assert recover_floor({"bootstrap.servers": "127.0.0.1:1"}, ["t"], None, 0) is None


def test_a_gap_marker_is_an_envelope_the_job_reads_as_the_gap_window_of_its_symbol():
    reg = InMemoryRegistry()
    out = AvroSerializer(reg, TRADES)  # type: ignore[arg-type]
    rec = gap_envelope(
        "AAPL",
        feed="iex",
        seq=77,
        from_ns=T0 + 1_234_567,
        to_ns=T0 + 2 * S + 999,
        event_ts=T0 + S,
        trace_id="gap-1",
        reason="connection lost (no close frame)",
        attempt=1,
    )
    data = out.encode(rec)
    deser = AvroDeserializer(reg, "torghut.Envelope")  # type: ignore[arg-type]
    ev = decode_event(deser, data, "AAPL")
    # the window is in µs: `from` rounds down, `to` up, so it never shrinks
    assert ev == (
        GAP,
        "AAPL",
        T0 + S,
        77,
        T0 + 2 * S + 999,
        "gap-1",
        T0 + 1_234_000,
        T0 + 2 * S + 1000,
    )
    assert EventReader(deser).read(data, "AAPL") == ev  # the job's reader (general path)
    assert decode_event(deser, data, "MSFT")[0] == "!"  # keyed by its symbol, like a trade


def test_gap_markers_are_counted_in_their_own_channel_and_status_stays_last():
    assert CHANNELS[-1] == "status" and CHANNEL_INDEX[GAP_CHANNEL] == len(CHANNELS) - 2
    text = ForwarderMetrics().render().decode()
    assert "torghut_forwarder_gap_markers_total 0.0" in text
    assert "torghut_forwarder_gaps_total 0.0" in text


def test_heartbeats_hold_while_a_gap_is_open_and_resume_when_it_closes():
    hb, clock, _, _ = heartbeat_writer()
    clock.observe(T0, 10.0)
    assert hb.tick(10.1, T0) == 5
    hb.hold_until = 40.0  # a data connection dropped at 10.0 (TORGHUT_FWD_GAP_HOLD_S=30)
    # the feed is quiet: without the hold the clock would run on and close the gap's bars
    assert hb.tick(15.0, T0 + 5 * S) == 0 and hb.tick(39.9, T0 + 30 * S) == 0
    hb.hold_until = float("-inf")  # the markers are written
    assert hb.tick(40.0, T0 + 30 * S) == 5
