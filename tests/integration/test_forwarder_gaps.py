"""Issue 13 item 8 through the real engines: a WebSocket reconnect that lost messages is
marked in the raw log (forwarder/gaps.py) and every final bar overlapping the gap carries
`gap` (docs/design.md, "Gaps"): simulator (forced disconnects) -> forwarder -> Kafka -> TA
job -> read_committed ta.bars.1s.v1, equal to the batch oracle of the raw log."""

from __future__ import annotations

import datetime

import pytest

from forwarder.app import ForwarderThread
from forwarder.metrics import CHANNEL_INDEX
from shared.topics import QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.forwarder import envelopes, fwd_settings, market, symbols_for
from tests.support.oracle import (
    assert_final_bars_equal,
    assert_gap_flags,
    expected_output,
    start_us,
)
from tests.support.ta_job import EnvelopeProducer, TaJobProcess, read_finals, read_raw_log
from torghut.sim import FaultConfig, SimConfig, SimServerThread, read_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: the job reads the raw topics from the beginning, and other
    tests' records there (other event times) would move its partitions' marks and make this
    session's trades late (docs/test-harness.md, "shared raw topics carry event-time marks")."""
    return fresh_stack


S = 1_000_000_000
GAP_IDX = CHANNEL_INDEX["gap"]
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _ns(t: datetime.datetime) -> int:
    return (t - _EPOCH) // datetime.timedelta(microseconds=1) * 1000


def test_bars_overlapping_a_reconnect_gap_carry_gap_and_equal_the_oracle(stack, tmp_path, unique):
    """The simulator drops every connection 3 s after it authenticated (2 drops in an 8 s
    session) and goes on publishing, so what it sends until the forwarder has subscribed
    again (0.5-1 s of backoff) is lost. The forwarder writes one gap marker per symbol and
    gap into the raw trades topic before the symbol's first trade of the new connection;
    the job flags exactly the final bars whose [start, end) overlaps a marker's window, and
    its final bars and flags equal the batch oracle of the raw log."""
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(
            syms, trades_per_sec=200, quotes_per_sec=100, correction_rate=0, cancel_error_rate=0
        ),
        duration_s=8.0,
        record_path=tmp_path / "sent.jsonl",
        faults=FaultConfig(drop_every_s=3.0, seed=1),
    )
    with SimServerThread(cfg) as sim:
        settings = fwd_settings(stack, sim.url, backoff_base_s=1.0, backoff_cap_s=1.0)
        with ForwarderThread(settings) as fwd:
            sim.wait_until(lambda: sim.source_done, 40, "the bounded source")
            # a drop near the end may still be reconnecting: wait for its markers too
            wait_for(
                lambda: (
                    fwd.metrics.gap_markers == fwd.metrics.gaps * len(syms)
                    and fwd.metrics.messages[GAP_IDX] == fwd.metrics.gap_markers
                ),
                20,
                "every gap's markers written and acked",
            )
        drops = sim.counters.snapshot()["drops_injected_total"]
    m = fwd.metrics
    assert drops >= 2 and m.gaps >= 2 and m.gap_markers == m.gaps * len(syms)
    sent = [x for x in read_jsonl(tmp_path / "sent.jsonl") if x["T"] == "t"]

    raw = envelopes(stack, (TRADES,), set(syms))
    markers = [e for e in raw if e["channel"] == "gap"]
    trades = [e for e in raw if e["channel"] == "trades"]
    lost = {(x["S"], x["i"]) for x in sent} - {(e["symbol"], e["payload"]["id"]) for e in trades}
    assert lost, "the disconnects must lose trades"
    assert len(markers) == m.gap_markers
    windows = sorted({(_ns(e["window"]["start"]), _ns(e["window"]["end"])) for e in markers})
    assert len(windows) == m.gaps
    for e in markers:
        assert e["_key"] == e["symbol"].encode() and e["payload"]["event"] == "gap"
        # never ahead of the event time already in the log: a marker does not move it
        assert e["_timestamp_ms"] <= _ns(e["window"]["end"]) // 1_000_000
    # in the log, a marker sits after every trade of its symbol read before the gap and
    # before every trade of the connection after it
    order = {id(e): i for i, e in enumerate(raw)}
    for mk in markers:
        lo, hi = _ns(mk["window"]["start"]), _ns(mk["window"]["end"])
        mine = [t for t in trades if t["symbol"] == mk["symbol"]]
        assert all(order[id(t)] < order[id(mk)] for t in mine if t["ingest_ts"] <= lo)
        assert all(order[id(t)] > order[id(mk)] for t in mine if t["ingest_ts"] > hi)

    # close the session's last bars: heartbeats past its last trade on both raw topics
    prod = EnvelopeProducer(stack)
    prod.heartbeat(max(x["t"] for x in sent) + 3 * S)
    prod.flush()
    log = read_raw_log(stack, {TRADES.name: len(raw), QUOTES.name: 1}, settle_s=2.0)
    oracle = expected_output(log)
    expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items() if sym in syms}
    gap_bars = {(sym, start) for sym, start in oracle.gap_bars if sym in syms}
    assert len(expected) >= 6 * len(syms)
    job = TaJobProcess(stack, tmp_path, unique("cp-gap"), unique("tx-gap"), unique("grp-gap"))
    job.start()
    try:
        records = read_finals(stack, "ta.bars.1s.v1", set(syms), len(expected), 240, job)
        assert job.alive(), f"job died; logs in {tmp_path}"
    finally:
        job.stop()
    finals = assert_final_bars_equal(records, expected)
    flagged = assert_gap_flags(records, gap_bars)
    # the property itself, from the markers: flagged exactly when [start, end) overlaps a
    # window (with heartbeats held during the gap no marker comes after its bars closed)
    overlap = {
        key
        for key in finals
        for lo, hi in windows
        if key[1] * 1000 <= hi and lo < key[1] * 1000 + S
    }
    assert {k for k, r in finals.items() if r["gap"]} == overlap
    assert 2 <= flagged < len(finals)
    assert all(
        not r["gap"]
        for r in records
        if not r["is_final"] and (r["symbol"], start_us(r)) not in overlap
    )
    print(
        f"{m.gaps} gaps, {len(lost)} trades lost, windows "
        f"{[(hi - lo) / 1e9 for lo, hi in windows]} s, {flagged} of {len(finals)} final bars flagged"
    )
