"""End to end on the real stack: seeded simulator replay -> forwarder -> TA job ->
Kafka -> ClickHouse (Kafka engine tables), checked against a batch oracle and TA-Lib, the
last bars closed by the forwarder's heartbeats alone (the feed goes quiet); and a symbol
that goes quiet for a minute never holds the others back."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import wait_for
from tests.support.bar_oracle import alpaca_trade, oracle_bars
from tests.support.forwarder import replayed_through_forwarder
from tests.support.oracle import assert_bar_equals
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals, bar_quotes
from tests.support.ta_job import EnvelopeProducer, TaJobProcess, read_topic
from torghut.clickhouse.client import ChdbClient
from torghut.clickhouse.schema import SchemaParams, apply
from torghut.sim import (
    JsonlRecorder,
    SyntheticConfig,
    SyntheticMarket,
    read_jsonl,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
S = 1_000_000_000


@pytest.fixture(scope="module")
def stack(fresh_stack):
    """This module's own stack: its raw topics hold only the event times its tests write."""
    return fresh_stack


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory):
    client = ChdbClient(tmp_path_factory.mktemp("chdb-e2e"))
    yield client
    client.close()


def test_seeded_replay_through_forwarder_and_job_lands_in_clickhouse_equal_to_oracle_and_talib(
    stack, clickhouse, unique, tmp_path
):
    tag = unique("e")[-6:].upper()
    symbols = (f"P{tag}A", f"P{tag}B")
    apply(
        clickhouse,
        SchemaParams(
            kafka_broker=stack.kafka_bootstrap,
            registry_url=stack.registry_url,
            ingest_db_engine="Memory",
            consumer_group=unique("ch-e2e"),
        ),
    )
    t0 = (time.time_ns() // S - 90) * S
    market = SyntheticMarket(
        SyntheticConfig(
            symbols=symbols,
            seed=42,
            trades_per_sec=15,
            quotes_per_sec=5,
            late_rate=0.0,
            out_of_order_rate=0.05,
            out_of_order_max_s=0.4,
            correction_rate=0.01,
            cancel_error_rate=0.01,
        ),
        t0,
        42,
    )
    rec = JsonlRecorder(tmp_path / "replay.jsonl")
    rec.write(market.advance(t0 + 60 * S) + market.finish())
    rec.close()
    job = TaJobProcess(stack, tmp_path, unique("cp-pipe"), unique("tx-pipe"), unique("grp-pipe"))
    job.start()
    try:
        with replayed_through_forwarder(
            stack, tmp_path / "replay.jsonl", tmp_path / "sent.jsonl"
        ) as (_sim, fwd):
            sent = read_jsonl(tmp_path / "sent.jsonl")
            wait_for(lambda: sum(fwd.metrics.messages[:-1]) >= len(sent), 60, "every message acked")

            trades = [alpaca_trade(m) for m in sent if m["T"] == "t"]
            last = max(t[1] for t in trades)
            # the feed is quiet now: only the forwarder's heartbeats move event time past the
            # replay's last bars (nothing else is written), so every bar below becomes final
            assert last < time.time_ns()
            oracle = {(b.symbol, b.start_ns): b for b in oracle_bars(trades, S)}

            def clickhouse_bars() -> dict:
                rows = clickhouse.rows(
                    "SELECT symbol, toString(toUnixTimestamp64Nano(window_start)), open, high, low, close, volume, "
                    "vwap, toString(trade_count) FROM torghut.ta_microbars_final "
                    f"WHERE symbol IN ('{symbols[0]}', '{symbols[1]}') ORDER BY symbol, window_start"
                )
                return {(r[0], int(r[1])): r[2:] for r in rows}

            def clickhouse_signals() -> int:
                (row,) = clickhouse.rows(
                    "SELECT toString(count()) FROM torghut.ta_signals_final "
                    f"WHERE symbol IN ('{symbols[0]}', '{symbols[1]}')"
                )
                return int(row[0])

            # the two Kafka engine tables consume independently: wait for both
            wait_for(
                lambda: (
                    (len(clickhouse_bars()) >= len(oracle) and clickhouse_signals() >= len(oracle))
                    or not job.alive()
                ),
                300,
                "every final bar and signal in ClickHouse",
                interval_s=1,
            )
            got = clickhouse_bars()
            assert job.alive(), f"job died; logs in {tmp_path}"
            assert set(got) == set(oracle)
            for key, b in oracle.items():
                o, h, lo, c, v, vw, n = got[key]
                row = {"open": o, "high": h, "low": lo, "close": c, "volume": v, "vwap": vw}
                assert_bar_equals({**row, "trade_count": int(n)}, b, key, rel=1e-12)

            for sym in symbols:
                rows = clickhouse.rows(
                    f"SELECT {', '.join(SIGNAL_VALUE_FIELDS)} FROM torghut.ta_signals_final "
                    f"WHERE symbol = '{sym}' ORDER BY window_start"
                )
                bars = [b for (s, _), b in sorted(oracle.items()) if s == sym]
                assert len(rows) == len(bars)
                # every value: TA-Lib's and the signal oracle's; the quotes (sent in order,
                # none late) give spread and imbalance
                quotes = [
                    (m["t"], m["bp"], float(m["bs"]), m["ap"], float(m["as"]))
                    for m in sent
                    if m["T"] == "q" and m["S"] == sym
                ]
                got = [dict(zip(SIGNAL_VALUE_FIELDS, row, strict=True)) for row in rows]
                assert_series_signals(sym, bars, got, bar_quotes(bars, quotes))
    finally:
        job.stop()


def test_a_symbol_quiet_for_a_minute_never_delays_the_final_bars_of_the_others(
    stack, unique, tmp_path
):
    busy, quiet = unique("BUSY").upper(), unique("QUIET").upper()
    prod = EnvelopeProducer(stack)
    stop = threading.Event()

    def feed() -> None:
        tid, started = 0, time.monotonic()
        while not stop.is_set():
            now = time.time_ns()
            tid += 1
            prod.trade(busy, now, 100.0 + (tid % 7) / 100, 1.0, tid)
            prod.quote(busy, now, 99.9, 100.1, 5.0, 5.0)
            if time.monotonic() - started < 5:  # then silent for the rest of the test
                prod.trade(quiet, now, 50.0, 1.0, tid)
            time.sleep(0.02)
        prod.flush()

    job = TaJobProcess(
        stack, tmp_path, unique("cp-sparse"), unique("tx-sparse"), unique("grp-sparse")
    )
    job.start()
    feeder = threading.Thread(target=feed, daemon=True)
    lags_ms: list[float] = []
    try:
        feeder.start()
        t_end = time.monotonic() + 65
        seen: set = set()

        def collect(recs: list[dict]) -> bool:
            for r in recs:
                k = (r["symbol"], r["window"]["end"])
                if r["is_final"] and k not in seen:
                    seen.add(k)
                    if r["symbol"] == busy:
                        end_ns = int(r["window"]["end"].timestamp()) * S
                        lags_ms.append((r["_recv_ns"] - end_ns) / 1e6)
            return time.monotonic() > t_end

        recs = read_topic(stack, "ta.bars.1s.v1", {busy, quiet}, collect, timeout_s=120, job=job)
        quiet_finals = [r for r in recs if r["symbol"] == quiet and r["is_final"]]
        busy_late = lags_ms[len(lags_ms) // 3 :]  # steady state: the other symbol quiet for > 20 s
        assert quiet_finals, "the quiet symbol's bars were never finalised"
        assert len(busy_late) >= 30, (
            f"only {len(busy_late)} busy final bars while the other was quiet"
        )
        # bound: 1 s out-of-orderness + 1 s checkpoint interval + slack for a loaded 2-core machine
        assert sorted(busy_late)[int(len(busy_late) * 0.9)] < 6000, [round(x) for x in lags_ms]
    finally:
        stop.set()
        job.stop()


def test_bars_keep_closing_when_the_quotes_topic_goes_silent(stack, unique, tmp_path):
    """Heartbeats: a raw partition without data (here: all quotes) must not hold the
    watermark; the forwarder's heartbeats (shared/heartbeat.py) move its event time, with
    idleness off (the default: it would make lateness depend on processing speed).

    Runs last in this module, after tests that wrote quotes, so the quotes partition has an
    old watermark.
    """
    sym = unique("NOQ").upper()
    prod = EnvelopeProducer(stack)
    job = TaJobProcess(stack, tmp_path, unique("cp-idle"), unique("tx-idle"), unique("grp-idle"))
    job.start()
    try:
        # wait until the job has read the module's backlog: it answers a first trade
        first = time.time_ns()
        stop = threading.Event()

        def feed() -> None:
            tid = 0
            while not stop.is_set():
                tid += 1
                now = time.time_ns()
                prod.trade(sym, now, 100.0 + (tid % 5) / 10, 1.0, tid)
                if tid % 25 == 0:  # every ~0.5 s, as the forwarder does: no quotes, no data
                    prod.heartbeat(now - 2 * S)
                time.sleep(0.02)
            prod.flush()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            recs = read_topic(
                stack,
                "ta.bars.1s.v1",
                {sym},
                lambda rs: sum(r["is_final"] for r in rs) >= 10,
                timeout_s=60,
                job=job,
            )
        finally:
            stop.set()
            feeder.join(10)
        finals = [r for r in recs if r["is_final"]]
        assert len(finals) >= 10, "bars stopped closing while the quotes topic was silent"
        assert min(int(r["window"]["start"].timestamp()) * S for r in finals) >= first - S
    finally:
        job.stop()
