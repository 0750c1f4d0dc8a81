"""The minute check drill on the real stack: the TA job's final 1 s bars, rolled up per
minute, against the simulator's minute bars (the vendor's stand-in) built from the same
trades; one minute bar corrupted by the simulator's knob is the one disagreement.

Regular sales only here; test_bar_check_conditions.py sends a mix of sale conditions.
"""

from __future__ import annotations

import random
import time

import pytest

from forwarder.envelope import to_envelope
from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import BARS_1M, TA_BAR_CHECKS
from tests.support.ta_job import EnvelopeProducer, TaJobProcess, read_topic
from torghut.barcheck.logic import (
    AGREE,
    DISAGREE,
    NS_PER_MIN,
    micros_to_ns,
)
from torghut.barcheck.runner import BarChecker
from torghut.barcheck.settings import BarCheckSettings
from torghut.sim.bars import MinuteBarBuilder, MinuteBarCorruption

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000
MINUTES = 3


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    return fresh_stack


def test_the_minute_check_agrees_on_clean_minutes_and_finds_the_one_corrupted_bar(
    stack, unique, tmp_path
):
    rng = random.Random(11)
    clean, corrupted = unique("MCA").upper(), unique("MCB").upper()
    t0 = (time.time_ns() // NS_PER_MIN - MINUTES - 2) * NS_PER_MIN
    knob = MinuteBarCorruption.parse(f"{corrupted}@2")  # its second minute: t0 + 1 min
    vendor = MinuteBarBuilder(daily_bars=False, corrupt=knob)
    prod = EnvelopeProducer(stack)  # regular sales (conditions ["@"], tape C)
    price = {clean: 100.0, corrupted: 250.0}
    tid = 0
    for sec in range(MINUTES * 60):
        for sym in (clean, corrupted):
            for _ in range(2):
                ts = t0 + sec * S + rng.randrange(S)
                price[sym] = round(price[sym] * (1 + rng.gauss(0, 0.0005)), 2)
                size = float(rng.randint(1, 300))
                tid += 1
                prod.trade(sym, ts, price[sym], size, tid)
                vendor.add_trade(sym, ts, price[sym], size, ["@"], "C")
    # the clean symbol trades on into the next minute (its own later final bar completes
    # its minutes); the corrupted one falls quiet: the job's watermark completes its minutes
    prod.trade(clean, t0 + MINUTES * NS_PER_MIN + S, price[clean], 1.0, tid + 1)
    prod.heartbeat(t0 + MINUTES * NS_PER_MIN + 10 * S)
    prod.flush()

    bars = SchemaRegistryClient(stack.registry_url)
    ser = AvroSerializer(bars, BARS_1M)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    sent = vendor.close_until(t0 + MINUTES * NS_PER_MIN)
    assert len(sent) == 2 * MINUTES and knob.minute_ns == t0 + NS_PER_MIN
    for seq, msg in enumerate(sent, 1):
        env = to_envelope(msg, feed="test", seq=seq, ingest_ts=time.time_ns(), trace_id="")
        p.produce(BARS_1M.name, ser.encode(env), key=msg["S"].encode(), timestamp=msg["t"] // 10**6)
    assert p.flush(30) == 0

    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-mc"),
        unique("tx-mc"),
        unique("grp-mc"),
        settings={"status_interval_ms": 300},
    )
    started = time.monotonic()
    job.start()
    checker = BarChecker(
        BarCheckSettings(
            kafka_bootstrap=stack.kafka_bootstrap,
            registry_url=stack.registry_url,
            consumer_group=unique("mc"),
            from_beginning=True,
            http_port=0,
        )
    )
    try:
        mine = {clean, corrupted}
        deadline = time.monotonic() + 150
        while sum(c.symbol in mine for c in checker.checks) < 2 * MINUTES:
            assert time.monotonic() < deadline, f"checks so far: {checker.checks}"
            assert job.alive(), f"job died; logs in {tmp_path}"
            checker.step(0.2)
        elapsed = time.monotonic() - started
    finally:
        checker.close()
        job.stop()

    got = {(c.symbol, (c.minute_ns - t0) // NS_PER_MIN): c for c in checker.checks}
    assert set(got) == {(s, m) for s in mine for m in range(MINUTES)}
    bad = {k: c.disagreements for k, c in got.items() if c.result != AGREE}
    assert bad == {(corrupted, 1): ("high",)}, f"{bad} ({elapsed:.0f}s)"
    assert got[(corrupted, 1)].result == DISAGREE
    assert got[(corrupted, 1)].theirs.high == pytest.approx(got[(corrupted, 1)].ours.high * 1.01)
    m = checker.metrics
    assert m.value("torghut_bar_check_minutes_total", result="agree") == 2 * MINUTES - 1
    assert m.value("torghut_bar_check_minutes_total", result="disagree") == 1
    assert m.value("torghut_bar_check_disagreements_total", field="high") == 1
    assert (
        sum(
            m.value("torghut_bar_check_disagreements_total", field=f)
            for f in ("open", "low", "close", "volume", "trade_count", "vwap")
        )
        == 0
    )
    rows = read_topic(
        stack,
        TA_BAR_CHECKS.name,
        mine,
        lambda recs: len(recs) >= 2 * MINUTES,
        timeout_s=30,
    )
    row = next(r for r in rows if r["result"] == DISAGREE)
    assert (row["symbol"], micros_to_ns(row["minute"]), row["disagreements"]) == (
        corrupted,
        t0 + NS_PER_MIN,
        ["high"],
    )
    assert row["high_agrees"] is False and row["open_agrees"] is True
