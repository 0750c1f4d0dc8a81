"""The PyFlink TA job on the real stack: oracle equality, exactly-once across kill -9, and
the at-least-once fallback profile."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
import requests

from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer
from shared.topics import QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.bar_oracle import oracle_bars
from tests.support.kafka import consume, wait_past_event_time_marks
from tests.support.oracle import assert_bar_equals, assert_final_bars_equal, start_us
from tests.support.signal_oracle import assert_series_signals, bar_quotes
from tests.support.ta_job import (
    EnvelopeProducer,
    TaJobProcess,
    latest_checkpoint,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    return fresh_stack


def _final_bars(records: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["symbol"], start_us(r)): r for r in records if r["is_final"]}


def test_final_bars_equal_batch_oracle_signals_equal_talib_and_late_trades_are_only_counted(
    stack, unique, tmp_path
):
    rng = random.Random(5)
    symbols = [unique("E2EA").upper(), unique("E2EB").upper()]
    prod = EnvelopeProducer(stack)
    t0 = (time.time_ns() // S - 300) * S
    # regular sales (EnvelopeProducer.trade sends `@` on tape C): the oracle's 4-tuples
    trades: list[tuple[str, int, float, float]] = []
    quotes: dict[str, list[tuple[int, float, float, float, float]]] = {s: [] for s in symbols}
    price = {s: 100.0 + 50 * i for i, s in enumerate(symbols)}
    tid = 0
    for sec in range(80):
        for _ in range(12):
            for s in symbols:
                ts = (
                    t0 + sec * S + rng.randrange(S) - rng.randrange(300_000_000)
                )  # out of order inside 1 s
                price[s] = round(price[s] * (1 + rng.gauss(0, 0.001)), 4)
                size = round(rng.uniform(0.5, 40), 3)
                tid += 1
                prod.trade(s, max(ts, t0), price[s], size, tid)
                trades.append((s, max(ts, t0), price[s], size))
        for s in symbols:
            q = (t0 + sec * S + 500_000_000, price[s] - 0.01, 300.0, price[s] + 0.02, 100.0)
            prod.quote(s, q[0], q[1], q[3], q[2], q[4])
            quotes[s].append(q)
    prod.flush()

    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-e2e"),
        unique("tx-e2e"),
        unique("grp-e2e"),
        settings={"status_interval_ms": 300},
    )
    job.start()
    try:
        # once second 70 is final the watermark has passed second 60 for good
        read_topic(
            stack,
            "ta.bars.1s.v1",
            set(symbols),
            lambda recs: any(k[1] == (t0 + 70 * S) // 1000 for k in _final_bars(recs)),
            timeout_s=240,
            isolation="read_uncommitted",
            job=job,
        )
        for s in symbols:  # a trade far behind the watermark: late, counted, never a bar
            prod.trade(s, t0 + 60 * S + 123, 1.0, 1.0, 10_000_000 + tid)
        for s in symbols:  # advance the watermark past second 80 on both raw topics
            prod.trade(s, t0 + 95 * S, price[s], 1.0, 20_000_000 + tid)
            prod.quote(s, t0 + 95 * S, price[s] - 0.01, price[s] + 0.02, 300.0, 100.0)
        prod.flush()
        oracle = [b for b in oracle_bars(trades, S) if b.start_ns < t0 + 80 * S]
        expected = {(b.symbol, b.start_ns // 1000): b for b in oracle}
        got = read_topic(
            stack,
            "ta.bars.1s.v1",
            set(symbols),
            lambda recs: len(_final_bars(recs)) >= len(expected),
            timeout_s=240,
            job=job,
        )
        assert job.alive(), "job died"
        assert_final_bars_equal(got, expected, rel=1e-12)
        assert any(not r["is_final"] for r in got), "no provisional bars were emitted"

        signals = read_topic(
            stack,
            "ta.signals.v1",
            set(symbols),
            lambda recs: len(_final_bars(recs)) >= len(expected),
            timeout_s=60,
        )
        by_sym: dict[str, list[dict]] = {}
        for r in sorted(_final_bars(signals).values(), key=start_us):
            by_sym.setdefault(r["symbol"], []).append(r)
        for sym, rows in by_sym.items():
            bars = [expected[(sym, start_us(r))] for r in rows]
            assert [b.start_ns for b in bars] == sorted(
                b.start_ns for b in oracle if b.symbol == sym
            )
            # every value: TA-Lib's, the VWAPs' and volatility's, and the quote's
            assert_series_signals(sym, bars, rows, bar_quotes(bars, quotes[sym]))
            assert rows[-1]["spread"] == pytest.approx(0.03, abs=1e-9)

        deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))

        def late_counted() -> bool:
            msgs = consume(stack, "ta.status.v1", expected=1, timeout_s=5, settle_s=0.5)
            for m in msgs:
                for s in deser.decode(m.value())["symbols"]:
                    if s["symbol"] in symbols and s["late_events"] >= 1:
                        return True
            return False

        wait_for(late_counted, 60, "late trades reported on ta.status.v1", interval_s=1)
    finally:
        job.stop()


def _kill9_drill(stack, unique, tmp_path, name: str, kills: int, settings=None, restore=None):
    """Trades of three symbols flow while the job is `kill -9`-ed `kills` times (each after two
    new completed checkpoints, at an arbitrary moment) and restored from the latest one
    (`restore(job)` instead of `job.start(restore=True)` when given). Returns the final-bar
    records read back, the oracle's bars and the times from the restore (from `restore`'s
    return) to the next completed checkpoint."""
    symbols = [unique(f"{name}A").upper(), unique(f"{name}B").upper(), unique(f"{name}C").upper()]
    prod = EnvelopeProducer(stack)
    sent: list[tuple[str, int, float, float]] = []
    stop = threading.Event()

    def feed() -> None:
        rng = random.Random(9)
        tid = 0
        while not stop.is_set():
            now = time.time_ns()
            for s in symbols:
                tid += 1
                p, q = round(100 + rng.random(), 4), round(rng.uniform(1, 9), 2)
                prod.trade(s, now, p, q, tid)
                sent.append((s, now, p, q))
            if tid % 150 < 3:  # ~every 0.5 s: the quotes partition gets no quotes here
                prod.heartbeat(now - S)
            time.sleep(0.01)
        prod.flush()

    cp_prefix = unique(f"cp-{name}")
    job = TaJobProcess(
        stack, tmp_path, cp_prefix, unique(f"tx-{name}"), unique(f"grp-{name}"), settings=settings
    )
    # earlier drills on this stack closed their last bars with trades 3 s ahead of the clock
    wait_past_event_time_marks(stack, [TRADES.name, QUOTES.name], bound_ms=1000, bar_ms=1000)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    job.start()
    restore_times = []
    try:
        for _ in range(kills):
            before = latest_checkpoint(stack, cp_prefix)
            wait_for(
                lambda b=before: latest_checkpoint(stack, cp_prefix) >= b + 2,
                180,
                "two new completed checkpoints",
                interval_s=0.5,
            )
            time.sleep(random.Random(before).uniform(0.1, 0.9))  # kill at an arbitrary moment
            job.kill9()
            after = latest_checkpoint(stack, cp_prefix)
            if restore is None:
                job.start(restore=True)
            else:
                restore(job)
            t = time.monotonic()
            wait_for(
                lambda a=after: latest_checkpoint(stack, cp_prefix) > a,
                180,
                "a checkpoint after restore (no InitProducerId stall)",
                interval_s=0.5,
            )
            restore_times.append(time.monotonic() - t)
        stop.set()
        feeder.join(30)
        last = max(ts for _, ts, _, _ in sent)
        for s in symbols:  # close every second that was traded
            prod.trade(s, last + 3 * S, 1.0, 1.0, 99_999_999)
        prod.heartbeat(last + 3 * S)
        prod.flush()
        oracle = [b for b in oracle_bars(sent, S) if b.end_ns <= last + S - 1]
        expected = {(b.symbol, b.start_ns // 1000): b for b in oracle}
        got = read_topic(
            stack,
            "ta.bars.1s.v1",
            set(symbols),
            lambda recs: len(_final_bars(recs)) >= len(expected),
            timeout_s=240,
            job=job,
        )
        assert job.alive()
        return [r for r in got if r["is_final"]], expected, restore_times
    finally:
        stop.set()
        job.stop()


def test_exactly_once_across_three_kill9_restarts_no_loss_no_duplicate_no_stall(
    stack, unique, tmp_path
):
    finals, expected, restore_times = _kill9_drill(stack, unique, tmp_path, "EOS", kills=3)
    assert_final_bars_equal(finals, expected, rel=1e-12)
    print(f"restore-to-checkpoint times (s): {[round(t, 1) for t in restore_times]}")


def test_at_least_once_profile_kill9_loses_nothing_and_repeats_only_identical_final_bars(
    stack, unique, tmp_path
):
    """The fallback profile (`delivery_guarantee=at-least-once`, no transactions): a restore
    may emit a final bar again, but only as the same record (the output is a function of
    the log), which ReplacingMergeTree collapses; none is missing."""
    finals, expected, _ = _kill9_drill(
        stack, unique, tmp_path, "ALO", kills=1, settings={"delivery_guarantee": "at-least-once"}
    )
    copies: dict[tuple[str, int], set[str]] = {}
    for r in finals:
        # emit_ts and version (the emit time: ReplacingMergeTree keeps the newest) differ
        fields = repr(
            sorted((k, v) for k, v in r.items() if k not in ("emit_ts", "version", "_recv_ns"))
        )
        copies.setdefault((r["symbol"], start_us(r)), set()).add(fields)
    missing = set(expected) - set(copies)
    assert not missing, f"{len(missing)} final bars missing"
    differing = {k: len(v) for k, v in copies.items() if len(v) > 1}
    assert not differing, f"final bars emitted again with other values: {differing}"
    by_key = _final_bars(finals)
    for key, b in expected.items():
        assert_bar_equals(by_key[key], b, key, rel=1e-12)
    repeated = len(finals) - len(copies)
    print(f"at-least-once: {len(copies)} final bars, {repeated} emitted again after the restore")


REGISTRY_OUTAGE_S = 40  # longer than a registry client's wait before the job's (20 s here)


def test_a_restore_while_the_registry_is_down_waits_and_recovers_once_it_is_back(
    stack, unique, tmp_path
):
    """The registry stops answering (SIGSTOP: connections hang, as in a partition) right
    after a `kill -9`; the job is restored meanwhile. Its keyed task waits in INITIALIZING
    for the registry (TORGHUT_TA_REGISTRY_WAIT_S, 20 s here: past it the task fails and
    Flink's restart strategy starts it again); once the registry answers the job completes
    a checkpoint within 60 s, and the final bars equal the oracle: none missing, none
    duplicated."""
    pid = stack.components["registry"].pid

    def restore_during_outage(job: TaJobProcess) -> None:
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(requests.Timeout):  # the outage is real
                requests.get(f"{stack.registry_url}/subjects", timeout=2)
            print(f"registry stopped at {time.strftime('%H:%M:%S')}")
            job.start(restore=True)
            time.sleep(REGISTRY_OUTAGE_S)  # the outage itself: nothing to wait for
            assert job.alive(), "the job process gave up while the registry was down"
        finally:
            os.kill(pid, signal.SIGCONT)
            print(f"registry resumed at {time.strftime('%H:%M:%S')}")

    finals, expected, times = _kill9_drill(
        stack,
        unique,
        tmp_path,
        "REG",
        kills=1,
        # the restored task re-commits the last checkpoint's transaction as it initializes its
        # sink (before the keyed function waits for the registry); 180 s keeps the broker's
        # transaction timeout out of this drill on a loaded machine
        settings={"registry_wait_s": 20, "transaction_timeout_ms": 180_000},
        restore=restore_during_outage,
    )
    assert_final_bars_equal(finals, expected, rel=1e-12)
    print(f"registry back -> next completed checkpoint: {times[0]:.1f} s")
    assert times[0] <= 60, f"recovered {times[0]:.0f} s after the registry came back"
