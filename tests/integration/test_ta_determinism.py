"""The final output is a function of the input log alone (docs/design.md, "Event time").

One recorded session (four symbols: out-of-order trades inside the bound, trades 0.9-1.6 s
late around the bound, trades 20-40 s late, re-produced duplicates (a trade written again
with its seq, as the forwarder re-sends a delivery that timed out locally — some of them
copies of late trades), a sparse symbol with a lone late trade in an
otherwise empty second, poison values and event times minutes in the future, written as a
misbehaving writer would, straight into the raw topic) is written into the raw topics at its
recorded pace, with event-time heartbeats as the forwarder writes them (the feed goes quiet
at the end: only heartbeats close the last bars). Three real TA jobs read that log:

- `live`: running while the log is written (records arrive at the recorded pace);
- `kill`: running while it is written, `kill -9`-ed and restored twice during the late stretch;
- `fast`: started after the log is complete (it catches up as fast as it can).

Their `read_committed` final bars and signals must be identical, field for field (emit
times aside), equal to a batch oracle computed from the log (`tests/support/oracle.py`),
with indicators equal to TA-Lib; every poison record is counted as rejected and the jobs
that were never killed never restarted.

Scaled for CI: a 64 s session (the issue's was 5 min); what it proves is the same, as every
kind of record whose fate used to depend on timing occurs many times in it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter

import pytest

from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer
from shared.topics import QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.kafka import consume
from tests.support.oracle import (
    assert_final_bars_equal,
    assert_signals_equal_talib,
    expected_output,
    start_us,
)
from tests.support.ta_job import (
    EnvelopeProducer,
    TaJobProcess,
    latest_checkpoint,
    read_raw_log,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000
MS = 1_000_000
BUSY = ("DETA", "DETB", "DETC")
SPARSE = "DETS"
SYMBOLS = {*BUSY, SPARSE}
DURATION_S = 64
LATE_FROM_S = 36  # the late-trade stretch: arrivals from here to the end
HEARTBEAT_LAG_S = 2.0


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: the raw log holds only the session below."""
    return fresh_stack


def _session(seed: int) -> list[tuple[float, str, tuple]]:
    """(arrival s, kind, fields) in arrival order; event times are offsets in ns from T0.

    kind "t": (symbol, event offset ns, price, size, trade id); "q": (symbol, event offset
    ns, bid, ask, bid size, ask size); "future": a trade stamped minutes ahead of now;
    "dup": the fields of an earlier "t", written again with that trade's seq.
    """
    rng = random.Random(seed)
    out: list[tuple[float, str, tuple]] = []
    price = {s: 50.0 + 40 * i for i, s in enumerate((*BUSY, SPARSE))}
    tid = 1000
    for k in range(DURATION_S * 24):  # 24 trades/s over the busy symbols
        arrival = k / 24 + rng.random() / 48
        sym = BUSY[k % 3]
        price[sym] = round(price[sym] * (1 + rng.gauss(0, 0.0008)), 4)
        event = arrival - rng.random() * 0.02
        r = rng.random()
        if r < 0.06:
            event = arrival - rng.uniform(0.2, 0.9)  # out of order, inside the 1 s bound
        elif r < 0.12 and arrival > 8:
            event = arrival - rng.uniform(0.9, 1.6)  # around the bound
        tid += 1
        fields = (sym, int(event * S), price[sym], round(rng.uniform(1, 50)), tid)
        out.append((arrival, "t", fields))
        if rng.random() < 0.03:  # re-produced: the copy lands 50 ms to 3 s later
            out.append((arrival + rng.uniform(0.05, 3.0), "dup", fields))
        if k % 8 == 0:
            p = price[sym]
            out.append((arrival, "q", (sym, int(event * S), p - 0.01, p + 0.02, 300.0, 100.0)))
    for a in range(2, DURATION_S, 7):  # the sparse symbol: one trade every 7 s
        tid += 1
        out.append((a + 0.3, "t", (SPARSE, int((a + 0.29) * S), price[SPARSE], 5.0, tid)))
    # its lone late trade: second 19 has no other sparse trade
    out.append((LATE_FROM_S + 14.5, "t", (SPARSE, int(19.5 * S), price[SPARSE] * 3, 7.0, 9_000)))
    a = LATE_FROM_S + 0.0
    while a < DURATION_S - 1:  # trades 20-40 s late, of every busy symbol
        tid += 1
        sym = BUSY[rng.randrange(3)]
        fields = (sym, int((a - rng.uniform(20, 40)) * S), 1.0, 99.0, tid)
        out.append((a, "t", fields))
        if tid % 5 == 0:  # a late trade's copy: a duplicate, not a second late trade
            out.append((a + 0.1, "dup", fields))
        if tid % 3 == 0:  # and quotes 3-15 s late: never a bar's quote
            ev = int((a - rng.uniform(3, 15)) * S)
            out.append((a, "q", (sym, ev, 0.5, 2.0, 1.0, 900.0)))
        a += rng.uniform(0.3, 0.7)
    poison = [(0.0, 1.0), (-5.0, 1.0), (math.nan, 1.0), (math.inf, 1.0), (-math.inf, 1.0)]
    poison += [(10.0, -1.0), (10.0, math.nan), (10.0, math.inf)]
    for i, (p, q) in enumerate(poison):
        sym = BUSY[i % 3]
        out.append((20.0 + i, "t", (sym, int((20.0 + i) * S), p, q, 50_000 + i)))
    out.append((29.5, "q", (BUSY[0], int(29.5 * S), math.nan, 10.0, 1.0, 1.0)))
    out.append((31.0, "future", (BUSY[1], 9 * 60 * S, 123.0, 1.0, 60_000)))
    out.sort(key=lambda e: e[0])
    return out


POISON = 10  # 8 trades + 1 quote + 1 trade from the future


class PacedWriter(threading.Thread):
    """Writes the session into the raw topics at its recorded pace, with heartbeats every
    0.5 s of `max event time - lag` (the forwarder's rule), extrapolated by wall time once
    the feed is quiet until the last bar can close."""

    def __init__(self, stack, session, t0_ns: int) -> None:
        super().__init__(daemon=True)
        self.prod = EnvelopeProducer(stack)
        self.session, self.t0 = session, t0_ns
        self.progress_s = 0.0
        self.heartbeats = 0
        self.seq_of: dict[int, int] = {}  # trade id -> the seq it was written with
        self.error: BaseException | None = None
        self.done_at_ns = 0

    def _heartbeat(self, ts_ns: int) -> None:
        self.prod.heartbeat(ts_ns)
        self.heartbeats += 1

    def run(self) -> None:
        try:
            start = time.monotonic()
            max_ev, next_hb = 0, 0.5
            for arrival, kind, f in self.session:
                while (now := time.monotonic() - start) < arrival:
                    if now >= next_hb and max_ev:
                        self._heartbeat(max_ev - int(HEARTBEAT_LAG_S * S))
                        next_hb += 0.5
                    due = next_hb - now if max_ev else 0.05
                    time.sleep(max(min(arrival - now, due, 0.05), 0.001))
                self.progress_s = arrival
                if kind == "q":
                    sym, ev, bid, ask, bs, asz = f
                    self.prod.quote(sym, self.t0 + ev, bid, ask, bs, asz)
                elif kind == "future":
                    sym, ahead, p, q, tid = f
                    self.prod.trade(sym, time.time_ns() + ahead, p, q, tid)
                    continue  # it cannot move the event-time clock of the heartbeats
                elif kind == "dup":
                    sym, ev, p, q, tid = f
                    self.prod.trade(sym, self.t0 + ev, p, q, tid, seq=self.seq_of[tid])
                else:
                    sym, ev, p, q, tid = f
                    self.seq_of[tid] = self.prod.trade(sym, self.t0 + ev, p, q, tid)
                max_ev = max(max_ev, self.t0 + f[1])
            # the feed goes quiet: the clock runs on with wall time until the last bar closes
            quiet_from, last = time.monotonic(), max_ev
            last_end = (last // S + 1) * S
            while True:
                ts = last + int((time.monotonic() - quiet_from) * S) - int(HEARTBEAT_LAG_S * S)
                if ts > max_ev:
                    self._heartbeat(ts)
                    max_ev = ts
                if ts >= last_end + S:
                    break
                time.sleep(0.5)
            self.prod.flush()
            self.done_at_ns = time.time_ns()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _strip(r: dict) -> tuple:
    return tuple(
        sorted(
            (k, v) for k, v in r.items() if k not in ("emit_ts", "version", "_recv_ns", "source")
        )
    )


def _finals_by_job(records: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for r in records:
        if r["is_final"]:
            out.setdefault(r["source"], Counter())[(r["symbol"], start_us(r))] += 1
    return out


def test_same_log_same_final_bars_and_signals_live_after_two_kill9_and_as_fast_as_possible(
    stack, unique, tmp_path
):
    session = _session(12)
    jobs = {
        name: TaJobProcess(
            stack,
            tmp_path / name,
            unique(f"cp-{name}"),
            unique(f"tx-{name}"),
            unique(f"grp-{name}"),
            settings={"status_interval_ms": 500, "job_name": f"det-{name}"},
        )
        for name in ("live", "kill", "fast")
    }
    for name in jobs:
        (tmp_path / name).mkdir()
    writer: PacedWriter | None = None
    try:
        jobs["live"].start()
        jobs["kill"].start()
        for name in ("live", "kill"):
            wait_for(
                lambda n=name: (
                    latest_checkpoint(stack, jobs[n].checkpoint_prefix) >= 1 or not jobs[n].alive()
                ),
                180,
                f"job {name} running (a completed checkpoint)",
                interval_s=0.5,
            )
            assert jobs[name].alive(), f"job {name} died; logs in {tmp_path / name}"
        t0 = (time.time_ns() // S + 1) * S  # event time 0 of the session: when writing starts
        writer = PacedWriter(stack, session, t0)
        wait_for(lambda: time.time_ns() >= t0, 5, "the session's start", interval_s=0.01)
        writer.start()
        kill = jobs["kill"]
        for at_s in (LATE_FROM_S + 2, LATE_FROM_S + 16):
            wait_for(
                lambda a=at_s: writer.progress_s >= a or not writer.is_alive(),
                120,
                "the late stretch",
            )
            before = latest_checkpoint(stack, kill.checkpoint_prefix)
            wait_for(
                lambda b=before: latest_checkpoint(stack, kill.checkpoint_prefix) > b,
                60,
                "a checkpoint before the kill",
                interval_s=0.2,
            )
            kill.kill9()
            kill.start(restore=True)
            after = latest_checkpoint(stack, kill.checkpoint_prefix)
            wait_for(
                lambda a=after: latest_checkpoint(stack, kill.checkpoint_prefix) > a,
                180,
                "a checkpoint after the restore",
                interval_s=0.5,
            )
        writer.join(DURATION_S + 120)
        assert writer.error is None, writer.error
        assert not writer.is_alive(), "the writer did not finish"
        jobs["fast"].start()

        n_trades = sum(1 for _, kind, _ in session if kind != "q")
        log = read_raw_log(
            stack,
            {
                TRADES.name: n_trades + writer.heartbeats,
                QUOTES.name: len(session) - n_trades + writer.heartbeats,
            },
            timeout_s=30,
        )
        assert len(log) == len(session) + 2 * writer.heartbeats
        oracle = expected_output(log)
        assert oracle.rejected == POISON
        dups = sum(1 for _, kind, _ in session if kind == "dup")
        assert oracle.duplicates == dups >= 20, "the session must hold re-produced copies"
        assert oracle.late_trades >= 40, "the session must hold trades late by the mark"
        assert oracle.late_quotes >= 10, "and quotes late by the mark"
        assert (SPARSE, t0 + 19 * S) not in oracle.bars, "the lone late trade made no bar"
        expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items()}
        assert len(expected) > 150

        records = read_topic(
            stack,
            "ta.bars.1s.v1",
            SYMBOLS,
            lambda recs: all(
                len(_finals_by_job(recs).get(f"det-{n}", ())) >= len(expected) for n in jobs
            ),
            timeout_s=300,
        )
        for name, job in jobs.items():
            assert job.alive(), f"job {name} died; logs in {tmp_path / name}"
        signals = read_topic(
            stack,
            "ta.signals.v1",
            SYMBOLS,
            lambda recs: all(
                len(_finals_by_job(recs).get(f"det-{n}", ())) >= len(expected) for n in jobs
            ),
            timeout_s=120,
        )
        bars_of: dict[str, dict] = {}
        signals_of: dict[str, dict] = {}
        for name in jobs:
            src = f"det-{name}"
            mine = [r for r in records if r["source"] == src]
            assert_final_bars_equal(mine, expected)  # each job on its own
            bars_of[name] = {(r["symbol"], start_us(r)): _strip(r) for r in mine if r["is_final"]}
            signals_of[name] = {
                (r["symbol"], start_us(r)): r
                for r in signals
                if r["is_final"] and r["source"] == src
            }
            assert set(signals_of[name]) == set(expected)
        # identical across the three consumption histories
        assert bars_of["kill"] == bars_of["live"]
        assert bars_of["fast"] == bars_of["live"]
        plain = {n: {k: _strip(v) for k, v in s.items()} for n, s in signals_of.items()}
        assert plain["kill"] == plain["live"]
        assert plain["fast"] == plain["live"]

        # equal to the oracle (bars: above): signals to TA-Lib, spread from the oracle's quote
        assert_signals_equal_talib(signals_of["live"], expected, oracle.quotes)

        # every poison record counted as rejected; the jobs never killed never restarted
        deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
        for name in ("live", "fast"):
            src = f"det-{name}"

            def status(n: str = src) -> list[dict]:
                msgs = consume(stack, "ta.status.v1", expected=1, timeout_s=10, settle_s=0.5)
                return [r for m in msgs if (r := deser.decode(m.value()))["job"] == n]

            late = oracle.late_trades + oracle.late_quotes
            # seq_gaps: each re-produced copy is a regression, and each refused record left
            # a gap (its seq was never applied; a valid record of its kind follows it)
            gaps = POISON + oracle.duplicates
            wait_for(
                lambda n=late, g=gaps: any(
                    (s["rejected_records"], s["late_events"], s["seq_gaps"]) == (POISON, n, g)
                    for s in status()
                ),
                60,
                f"{name}: {POISON} rejected, {late} late records and {gaps} seq gaps reported",
                interval_s=1,
            )
            seen = status()
            assert max(s["rejected_records"] for s in seen) == POISON
            ins = [s["records_in"] for s in seen]
            assert ins == sorted(ins), f"{name}: counters went back (a restart): {ins}"
        assert writer is not None
        last_final = max(
            r["_recv_ns"] for r in records if r["is_final"] and r["source"] == "det-live"
        )
        print(
            f"quiet feed: last live final bar readable {(last_final - writer.done_at_ns) / 1e9:+.1f} s "
            f"after the writer's last heartbeat; {len(expected)} final bars, "
            f"{oracle.late_trades} late trades, {oracle.late_quotes} late quotes"
        )
    finally:
        for job in jobs.values():
            job.stop()
