"""End to end on the real stack: trades at 1e308, 1e-308, 5e-324 and of huge sizes among a
seeded session, simulator replay -> forwarder -> Kafka -> TA job. The forwarder refuses each
implausible trade by reason (docs/design.md, "Bad input": plausibility limits); every final
bar and signal the job commits is finite and equals the batch oracle of the plausible
trades (tests/support/bar_oracle.py, each trade's conditions and tape carried), and the
signals equal the signal oracle (TA-Lib's values, the ATR among them: the reported defect
was a final bar with vwap = inf and an ATR of 7e306 decaying over the next signals).
"""

from __future__ import annotations

import math
import time

import pytest

from shared.limits import DEFAULT_LIMITS
from tests.conftest import wait_for
from tests.support.bar_oracle import alpaca_trade, oracle_bars
from tests.support.forwarder import replayed_through_forwarder
from tests.support.oracle import assert_bar_equals, start_us
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals
from tests.support.ta_job import TaJobProcess, read_topic
from torghut.sim import (
    JsonlRecorder,
    SyntheticConfig,
    SyntheticMarket,
    read_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000
# (price, size) of the injected trades: each outside the default limits, finite
POISON = [
    (1e308, 100.0),
    (1.7976931348623157e308, 1.0),
    (1e-308, 100.0),
    (5e-324, 100.0),
    (100.0, 1e308),
    (100.0, 1e11),
    (1e8, 1.0),
]


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    return fresh_stack


def _plausible(m: dict) -> bool:
    return (
        DEFAULT_LIMITS.price_problem(m["p"]) is None
        and DEFAULT_LIMITS.size_problem(float(m["s"])) is None
    )


def test_1e308_and_subnormal_trades_are_refused_and_every_committed_record_is_finite(
    stack, unique, tmp_path
):
    tag = unique("f")[-6:].upper()
    symbols = (f"F{tag}A", f"F{tag}B")
    t0 = (time.time_ns() // S - 90) * S
    market = SyntheticMarket(
        # no trades late by the mark: the oracle here is the bars of every plausible trade
        SyntheticConfig(
            symbols=symbols, seed=7, trades_per_sec=10, quotes_per_sec=3, late_rate=0.0
        ),
        t0,
        7,
    )
    msgs = market.advance(t0 + 50 * S) + market.finish()
    # every 40th trade is followed by an implausible copy (a new trade id, same second)
    out, k = [], 0
    for m in msgs:
        out.append(m)
        if m["T"] == "t":
            k += 1
            if k % 40 == 0:
                p, s = POISON[(k // 40) % len(POISON)]
                out.append({**m, "i": m["i"] + 10**12, "p": p, "s": s})
    rec = JsonlRecorder(tmp_path / "replay.jsonl")
    rec.write(out)
    rec.close()
    job = TaJobProcess(stack, tmp_path, unique("cp-fin"), unique("tx-fin"), unique("grp-fin"))
    job.start()
    try:
        with replayed_through_forwarder(
            stack, tmp_path / "replay.jsonl", tmp_path / "sent.jsonl"
        ) as (_sim, fwd):
            sent = read_jsonl(tmp_path / "sent.jsonl")
            trades = [m for m in sent if m["T"] == "t"]
            poison = [m for m in trades if not _plausible(m)]
            assert len(poison) >= 5
            wait_for(
                lambda: (
                    sum(fwd.metrics.messages[:-1]) + sum(fwd.metrics.frames_rejected.values())
                    >= len(sent)
                ),
                60,
                "every message acked or rejected",
            )
            rejected = fwd.metrics.frames_rejected
            assert rejected["invalid_price"] + rejected["invalid_size"] == len(poison)

            good = [alpaca_trade(m) for m in trades if _plausible(m)]
            oracle = {(b.symbol, b.start_ns): b for b in oracle_bars(good, S)}

            def finals(topic: str) -> list[dict]:
                return [
                    r
                    for r in read_topic(
                        stack,
                        topic,
                        set(symbols),
                        lambda recs: sum(r["is_final"] for r in recs) >= len(oracle),
                        300,
                        job=job,
                    )
                    if r["is_final"]
                ]

            bars, signals = finals("ta.bars.1s.v1"), finals("ta.signals.v1")
            assert job.alive(), f"job died; logs in {tmp_path}"
            for r in bars + signals:
                bad = {k: v for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)}
                assert not bad, (r["symbol"], r["window"], bad)
            got = {(r["symbol"], start_us(r) * 1000): r for r in bars}
            assert set(got) == set(oracle)
            for key, b in oracle.items():
                assert_bar_equals(got[key], b, key, rel=1e-12)
            for sym in symbols:
                sig = sorted((r for r in signals if r["symbol"] == sym), key=start_us)
                ob = [b for (s, _), b in sorted(oracle.items()) if s == sym]
                assert len(sig) == len(ob)
                assert [start_us(r) * 1000 for r in sig] == [b.start_ns for b in ob]
                # every value but the quote's (this test keeps no quote oracle)
                fields = [f for f in SIGNAL_VALUE_FIELDS if f not in ("spread", "imbalance")]
                assert_series_signals(sym, ob, sig, fields=fields)
    finally:
        job.stop()
