"""Gap marking through the real engines: a WebSocket reconnect, or a forwarder process
restart (kill -9), that lost messages is marked in the raw log (forwarder/gaps.py) and every
final bar overlapping the gap carries `gap` (docs/design.md, "Gaps"): simulator -> forwarder
-> Kafka -> TA job -> read_committed ta.bars.1s.v1, equal to the batch oracle of the raw log."""

from __future__ import annotations

import datetime
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from forwarder.app import ForwarderThread
from forwarder.metrics import CHANNEL_INDEX
from shared.logs import RECORD_FIELDS
from shared.topics import QUOTES, TRADES
from tests.conftest import REPO_ROOT, wait_for
from tests.support.forwarder import RAW, envelopes, fwd_settings, market, status_events, symbols_for
from tests.support.oracle import (
    assert_final_bars_equal,
    assert_gap_flags,
    expected_output,
    start_us,
)
from tests.support.ta_job import EnvelopeProducer, job_finals, read_raw_log
from torghut.sim import FaultConfig, SimConfig, SimServerThread, read_jsonl
from torghut.stack import procs

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


def _job_over_the_log(stack, tmp_path, unique, syms, sent, n_raw, min_bars_per_symbol):
    """Close the session's last bars (heartbeats past its last trade on both raw topics),
    compute the batch oracle of the raw log, run the TA job over it from the beginning and
    check its final bars and `gap` flags against the oracle's; returns (oracle, final bars
    by (symbol, start µs), how many of them are flagged, every bar record read)."""
    prod = EnvelopeProducer(stack)
    prod.heartbeat(max(x["t"] for x in sent) + 3 * S)
    prod.flush()
    log = read_raw_log(stack, {TRADES.name: n_raw, QUOTES.name: 1}, settle_s=2.0)
    oracle = expected_output(log)
    expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items() if sym in syms}
    gap_bars = {(sym, start) for sym, start in oracle.gap_bars if sym in syms}
    assert len(expected) >= min_bars_per_symbol * len(syms)
    records = job_finals(stack, tmp_path, unique("gap"), set(syms), len(expected))
    finals = assert_final_bars_equal(records, expected)
    flagged = assert_gap_flags(records, gap_bars)
    return oracle, finals, flagged, records


def _overlapping(finals, windows) -> set:
    """The final bars whose [start, end) overlaps one of `windows` ([from, to] ns)."""
    return {
        key
        for key in finals
        for lo, hi in windows
        if key[1] * 1000 <= hi and lo < key[1] * 1000 + S
    }


def test_bars_overlapping_a_reconnect_gap_carry_gap_and_equal_the_oracle(
    stack, tmp_path, unique, caplog
):
    """The simulator drops every connection 3 s after it authenticated (2 drops in an 8 s
    session) and goes on publishing, so what it sends until the forwarder has subscribed
    again (0.5-1 s of backoff) is lost. The forwarder writes one gap marker per symbol and
    gap into the raw trades topic before the symbol's first trade of the new connection,
    and one record-level log line per marker with its correlation fields (shared/logs.py);
    the job flags exactly the final bars whose [start, end) overlaps a marker's window, and
    its final bars and flags equal the batch oracle of the raw log."""
    caplog.set_level(logging.WARNING, "forwarder")
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
    lines = [r for r in caplog.records if r.getMessage().startswith("gap marker for")]
    assert {tuple(getattr(r, k) for k in RECORD_FIELDS) for r in lines} == {
        (e["symbol"], "gap", e["event_ts"], e["seq"], "forwarder", e["trace_id"]) for e in markers
    }
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

    _, finals, flagged, records = _job_over_the_log(
        stack, tmp_path, unique, syms, sent, len(raw), 6
    )
    # the property itself, from the markers: flagged exactly when [start, end) overlaps a
    # window (with heartbeats held during the gap no marker comes after its bars closed)
    overlap = _overlapping(finals, windows)
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


def test_a_gap_longer_than_the_hold_is_marked_before_its_bars_close_and_no_marker_is_late(
    stack, tmp_path, unique
):
    """Alpaca unreachable for longer than `TORGHUT_FWD_GAP_HOLD_S` (scaled: a 1 s hold, a
    4-8 s reconnect backoff, heartbeats that run on with wall time after 0.5 s of quiet).
    When the hold runs out with the gap open, the forwarder marks the window so far before
    its heartbeats resume; the subscription marks the rest. The bars the gap began in are
    flagged (a single marker at the subscription would have come after the resumed
    heartbeats had closed them: the drill checks that its mark had passed them), no marker
    is late, and the final bars and flags equal the batch oracle of the raw log."""
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(
            syms, trades_per_sec=200, quotes_per_sec=100, correction_rate=0, cancel_error_rate=0
        ),
        duration_s=14.0,  # data before the first gap and after its reconnect (<= 11 s)
        record_path=tmp_path / "sent.jsonl",
        faults=FaultConfig(drop_every_s=3.0, seed=2),
    )
    with SimServerThread(cfg) as sim:
        settings = fwd_settings(
            stack,
            sim.url,
            backoff_base_s=8.0,
            backoff_cap_s=8.0,
            gap_hold_s=1.0,
            heartbeat_quiet_s=0.5,
            heartbeat_lag_s=0.5,
            seq_scan_records=0,  # no restart gap for the earlier tests' symbols in the tail
        )
        with ForwarderThread(settings) as fwd:
            m, gaps = fwd.metrics, fwd.forwarder._gaps
            sim.wait_until(lambda: sim.source_done, 40, "the bounded source")
            wait_for(
                lambda: (
                    gaps.open_from_ns is None
                    and m.gap_markers == 2 * m.gaps * len(syms)
                    and m.messages[GAP_IDX] == m.gap_markers
                ),
                30,
                "every gap closed, its interim and final markers written and acked",
            )
    assert m.gaps >= 1
    sent = [x for x in read_jsonl(tmp_path / "sent.jsonl") if x["T"] == "t"]
    raw = envelopes(stack, (TRADES,), set(syms))
    markers = [e for e in raw if e["channel"] == "gap"]
    assert len(markers) == m.gap_markers
    by_symbol: dict[str, list[tuple[int, int]]] = {}
    for e in markers:
        by_symbol.setdefault(e["symbol"], []).append(
            (_ns(e["window"]["start"]), _ns(e["window"]["end"]))
        )
    for pieces in by_symbol.values():  # interim then final, each starting where the last ended
        assert len(pieces) == 2 * m.gaps
        for (_, interim_to), (final_from, _) in zip(pieces[::2], pieces[1::2], strict=True):
            assert final_from >= interim_to
    windows = sorted({w for pieces in by_symbol.values() for w in pieces})

    oracle, finals, flagged, _ = _job_over_the_log(stack, tmp_path, unique, syms, sent, len(raw), 4)
    mine = [g for g in oracle.gap_windows if g[0] in by_symbol]
    assert len(mine) == len(markers)
    late = [g for g in mine if (g[1] // S + 1) * 1000 - 1 <= g[3]]
    assert not late, f"late gap markers: {late[:3]}"
    # what the interim markers were for: by each final marker, the resumed heartbeats had
    # moved its partition's mark past the first bar of the gap (one marker would be late)
    starts = {(sym, lo): mark for sym, lo, _, mark in mine}
    for sym, pieces in by_symbol.items():
        for (gap_from, _), (final_from, _) in zip(pieces[::2], pieces[1::2], strict=True):
            assert (gap_from // S + 1) * 1000 - 1 <= starts[(sym, final_from)], (sym, gap_from)
    overlap = _overlapping(finals, windows)
    assert {k for k, r in finals.items() if r["gap"]} == overlap
    assert len(syms) <= flagged < len(finals)
    print(
        f"{m.gaps} gaps, windows {[(hi - lo) / 1e9 for lo, hi in windows]} s, "
        f"{flagged} of {len(finals)} final bars flagged, 0 late markers"
    )


def _acked_trades(port: int) -> float:
    """The subprocess forwarder's acked trade envelopes (0 until /metrics answers)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
    except (OSError, urllib.error.URLError):
        return 0.0
    line = 'torghut_forwarder_messages_total{channel="trades"} '
    return sum(float(x[len(line) :]) for x in text.decode().splitlines() if x.startswith(line))


def test_bars_overlapping_a_forwarder_restart_gap_carry_gap_and_equal_the_oracle(
    stack, tmp_path, unique
):
    """A forwarder process is killed (SIGKILL) mid-stream and a new one started while the
    simulator goes on publishing: what was published until the new process subscribed is
    lost. The new process finds the old one's market data in the tail of the raw topics
    (its start-up seq scan) and opens a gap from its last ingest time; at its first
    subscription, before any message, it writes a gap marker for each symbol of the tail.
    The job flags exactly the final bars overlapping [old process's last ingest, new
    subscription], and its final bars and flags equal the batch oracle of the raw log."""
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(
            syms,
            trades_per_sec=200,
            quotes_per_sec=100,
            correction_rate=0,
            cancel_error_rate=0,
            late_rate=0,
        ),
        duration_s=10.0,
        record_path=tmp_path / "sent.jsonl",
    )
    port = procs.free_port()
    with SimServerThread(cfg) as sim:
        env = {
            **os.environ,
            "TORGHUT_FWD_ALPACA_KEY_ID": "key",
            "TORGHUT_FWD_ALPACA_SECRET_KEY": "secret",
            "TORGHUT_FWD_ALPACA_URL": sim.url,
            "TORGHUT_FWD_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "TORGHUT_FWD_REGISTRY_URL": stack.registry_url,
            "TORGHUT_FWD_HTTP_PORT": str(port),
            "TORGHUT_FWD_LINGER_MS": "5",
        }
        with (tmp_path / "forwarder-old.log").open("wb") as out:
            old = subprocess.Popen(
                [sys.executable, "-m", "torghut.cli", "forwarder"],
                env=env,
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(lambda: _acked_trades(port) >= 300, 60, "the old process's trades acked")
            finally:
                old.kill()  # SIGKILL: no flush, no status event, no goodbye
                old.wait(10)
        assert not sim.source_done, "the source ended before the kill; the drill proves nothing"
        with ForwarderThread(fwd_settings(stack, sim.url)) as fwd:
            m = fwd.metrics
            wait_for(
                lambda: m.gap_markers >= len(syms) and m.messages[GAP_IDX] == m.gap_markers,
                30,
                "the restart gap's markers written and acked",
            )
            sim.wait_until(lambda: sim.source_done, 40, "the bounded source")
    assert m.gaps == 1  # the restart's; the 406 of a lingering old session would be none
    gap_events = [e for e in status_events(stack, fwd) if e["payload"]["event"] == "gap"]
    assert [e["payload"]["reason"] for e in gap_events] == ["forwarder restart"]
    sent = [x for x in read_jsonl(tmp_path / "sent.jsonl") if x["T"] == "t"]

    everything = envelopes(stack, RAW)
    prefix = fwd.forwarder._trace.prefix.decode()
    all_markers = [
        e for e in everything if e["channel"] == "gap" and e["trace_id"].startswith(prefix)
    ]
    assert len(all_markers) == m.gap_markers  # one per symbol of the tail, ours among them
    raw = envelopes(stack, (TRADES,), set(syms))
    markers = [e for e in raw if e["channel"] == "gap"]
    trades = [e for e in raw if e["channel"] == "trades"]
    assert sorted(e["symbol"] for e in markers) == sorted(syms)
    windows = {(_ns(e["window"]["start"]), _ns(e["window"]["end"])) for e in markers}
    assert len(windows) == 1
    ((lo, hi),) = windows
    # the window starts at the old process's last market-data ingest time in the log (µs)
    before = [
        e["ingest_ts"]
        for e in everything
        if e["channel"] not in ("status", "gap") and e["ingest_ts"] < hi
    ]
    last_old = max(before)
    assert lo == last_old // 1000 * 1000
    old_trades = [t for t in trades if t["ingest_ts"] <= last_old]
    new_trades = [t for t in trades if t["ingest_ts"] > hi]
    assert old_trades and new_trades and len(old_trades) + len(new_trades) == len(trades)
    lost = {(x["S"], x["i"]) for x in sent} - {(e["symbol"], e["payload"]["id"]) for e in trades}
    assert lost, "the restart must lose trades"
    order = {id(e): i for i, e in enumerate(raw)}
    for mk in markers:
        assert mk["_key"] == mk["symbol"].encode() and mk["payload"]["event"] == "gap"
        # stamped no later than its symbol's last trade in the log: never moves event time
        last = max(t["event_ts"] for t in old_trades if t["symbol"] == mk["symbol"])
        assert mk["_timestamp_ms"] <= last // 1_000_000
        mine = [order[id(t)] for t in trades if t["symbol"] == mk["symbol"]]
        assert all((i < order[id(mk)]) == (raw[i]["ingest_ts"] <= last_old) for i in mine)

    _, finals, flagged, _ = _job_over_the_log(stack, tmp_path, unique, syms, sent, len(raw), 4)
    assert {k for k, r in finals.items() if r["gap"]} == _overlapping(finals, [(lo, hi)])
    assert len(syms) <= flagged < len(finals)
    print(
        f"restart gap {(hi - lo) / 1e9:.3f} s, {len(lost)} trades lost, {m.gap_markers} "
        f"markers ({len(syms)} ours), {flagged} of {len(finals)} final bars flagged"
    )
