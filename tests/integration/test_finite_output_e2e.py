"""End to end on the real stack, one seeded session through simulator replay -> forwarder ->
Kafka -> TA job, shared by the tests of this module (one job run):

- trades at 1e308, 1e-308, 5e-324 and of huge sizes: the forwarder refuses each implausible
  trade by reason (docs/design.md, "Bad input": plausibility limits); every final bar and
  signal the job commits is finite (the reported defect was a final bar with vwap = inf
  and an ATR of 7e306 decaying over the next signals);
- every sale condition of every tape (CTA's on symbols of tapes A and B, UTP's on tape C,
  alone and combined): the final bars equal the bar oracle written from the specification's
  table (tests/support/bar_oracle.py, docs/design.md "Condition-aware bars"), and every
  signal value equals the signal oracle (TA-Lib's values and the numpy ones). The session
  runs at wall-clock time, so Form T follows whichever side of the NYSE session the clock
  is on (the oracle decides the same way); both sides are unit-tested
  (tests/unit/test_condition_bars.py, tests/unit/test_bars_against_oracle.py);
- one trade followed by its `trace_id` through the JSON log lines (shared/logs.py): the
  forwarder's line for it (its symbol is in TORGHUT_FWD_TRACE_SYMBOLS, so this module's
  forwarder routes every frame in Python: the native path's refusals are
  tests/unit/test_forwarder_fastroute.py's), the job's line refusing the provisional bar it
  opened (`NO_PRICE`: an odd lot, first of its symbol), and the ClickHouse row of the final
  bar that carries its trace_id (the bar's latest trade by event time). A rejected or late
  trade is in no row, so the followed trade is one the job logs and still puts in a bar.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.limits import DEFAULT_LIMITS
from shared.logs import LINE_FIELDS, RECORD_FIELDS, handler
from shared.sale_conditions import CTA, HIGH_LOW, LAST, UTP, VOLUME
from tests.conftest import wait_for
from tests.support.bar_oracle import alpaca_trade, oracle_bars
from tests.support.forwarder import replayed_through_forwarder
from tests.support.oracle import assert_bar_equals, start_us
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals
from tests.support.ta_job import TaJobProcess, read_topic
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


# the codes each tape's table knows, each alone, and combinations a tape prints
COMBINATIONS = (("@", "F", "I"), ("@", "Z", "I"), ("@", "T"), ("@", "T", "I"), ("@", "4", "7"))


def _condition_cycles(tape: str) -> tuple[Iterator, Iterator, Iterator]:
    """Per tape: regular sales with every code of its table in turn between them; the codes
    that may set only high/low; the codes that add only volume."""
    table = UTP if tape == "C" else CTA
    special = [(code,) for code in table] + list(COMBINATIONS)
    main = itertools.chain.from_iterable(zip(itertools.repeat(("@",)), itertools.cycle(special)))
    high_low = [(c,) for c, (_, f) in table.items() if f & HIGH_LOW and not f & LAST]
    volume = [(c,) for c, (_, f) in table.items() if f == VOLUME and c not in ("T", "U")]
    return main, itertools.cycle(high_low), itertools.cycle(volume)


def _conditions(cycles: tuple[Iterator, Iterator, Iterator], ts: int) -> list[str]:
    """Most seconds mix everything; every sixth has only high/low prints (a bar of price
    basis 1) and the next only volume prints (a flat bar of basis 0)."""
    main, high_low, volume = cycles
    second = ts // S % 6
    return list(next(high_low if second == 4 else volume if second == 5 else main))


@dataclass
class Session:
    symbols: tuple[str, ...]
    tapes: dict[str, str]
    sent: list[dict]
    rejected: dict[str, int]
    bars: list[dict]
    signals: list[dict]
    oracle: dict
    alive: bool
    logs: Path
    trace_symbol: str
    forwarder_log: Path


@pytest.fixture(scope="module")
def clickhouse(stack, tmp_path_factory):
    """An embedded ClickHouse reading this module's derived topics (the schema applied
    before the job starts, so its Kafka engine tables consume while the session runs)."""
    client = ChdbClient(tmp_path_factory.mktemp("chdb-finite"))
    apply(
        client,
        SchemaParams(
            kafka_broker=stack.kafka_bootstrap,
            registry_url=stack.registry_url,
            ingest_db_engine="Memory",
            consumer_group=f"ch-fin-{uuid.uuid4().hex[:6]}",
        ),
    )
    yield client
    client.close()


def _traced_trades(out: list[dict], symbol: str, s0: int) -> None:
    """Insert two trades of `symbol` (tape A) into `out` before its first message at or after
    `s0` + 0.9 s (so neither is late): an odd lot at `s0` + 0.9 s, the first trade of its
    symbol (its provisional bar has no price and no close to carry: refused, `NO_PRICE`),
    then a regular sale at `s0` + 0.1 s that prices the bar. The final bar's latest trade,
    whose trace_id its row carries, is the odd lot."""
    at = next(i for i, m in enumerate(out) if m["t"] >= s0 + 900_000_000)
    base = {"T": "t", "S": symbol, "x": "V", "z": "A"}
    out[at:at] = [
        {**base, "i": 1, "p": 50.25, "s": 30, "c": ["@", "I"], "t": s0 + 900_000_000},
        {**base, "i": 2, "p": 50.5, "s": 100, "c": ["@"], "t": s0 + 100_000_000},
    ]


@contextlib.contextmanager
def _json_lines_of(logger_name: str, component: str, path: Path) -> Iterator[None]:
    """`logger_name`'s records (INFO and up) as shared/logs.py JSON lines into `path`."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    with open(path, "w", encoding="utf-8") as stream:
        h = handler(component, "json", stream)
        logger.addHandler(h)
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(h)
            logger.setLevel(level)


def _json_lines(path: Path) -> list[dict]:
    """The JSON objects among a log file's lines (a process's output may mix in others)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


@pytest.fixture(scope="module")
def session(stack, clickhouse, tmp_path_factory) -> Session:
    """The module's one run: the session's messages sent, what the forwarder refused, and
    the job's final bars and signals once it committed as many as the oracle has."""
    tmp_path = tmp_path_factory.mktemp("finite-conditions")
    tag = uuid.uuid4().hex[:6].upper()
    tapes = {f"F{tag}A": "A", f"F{tag}B": "B", f"F{tag}C": "C"}
    symbols = tuple(tapes)
    trace = f"F{tag}T"
    t0 = (time.time_ns() // S - 90) * S
    market = SyntheticMarket(
        # no trades late by the mark: the oracle here is the bars of every plausible trade
        SyntheticConfig(
            symbols=symbols, seed=7, trades_per_sec=12, quotes_per_sec=3, late_rate=0.0
        ),
        t0,
        7,
    )
    msgs = market.advance(t0 + 50 * S) + market.finish()
    cycles = {sym: _condition_cycles(tape) for sym, tape in tapes.items()}
    # each trade takes its symbol's tape and the next conditions of its cycle; every 40th
    # is followed by an implausible copy (a new trade id, same second)
    out, k = [], 0
    for m in msgs:
        if m.get("S") in tapes and "z" in m:
            m = {**m, "z": tapes[m["S"]]}
        if m["T"] == "t":
            m = {**m, "c": _conditions(cycles[m["S"]], m["t"])}
        out.append(m)
        if m["T"] == "t":
            k += 1
            if k % 40 == 0:
                p, s = POISON[(k // 40) % len(POISON)]
                out.append({**m, "i": m["i"] + 10**12, "p": p, "s": s, "c": ["@"]})
    _traced_trades(out, trace, t0 + 5 * S)
    rec = JsonlRecorder(tmp_path / "replay.jsonl")
    rec.write(out)
    rec.close()
    job = TaJobProcess(stack, tmp_path, f"cp-fin-{tag}", f"tx-fin-{tag}", f"grp-fin-{tag}")
    job.start()
    forwarder_log = tmp_path / "forwarder.jsonl"
    try:
        with (
            _json_lines_of("forwarder", "forwarder", forwarder_log),
            replayed_through_forwarder(
                stack, tmp_path / "replay.jsonl", tmp_path / "sent.jsonl", trace_symbols=(trace,)
            ) as (_sim, fwd),
        ):
            sent = read_jsonl(tmp_path / "sent.jsonl")
            wait_for(
                lambda: (
                    sum(fwd.metrics.messages[:-1]) + sum(fwd.metrics.frames_rejected.values())
                    >= len(sent)
                ),
                60,
                "every message acked or rejected",
            )
            rejected = dict(fwd.metrics.frames_rejected)
            good = [
                alpaca_trade(m) for m in sent if m["T"] == "t" and m["S"] in tapes and _plausible(m)
            ]
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
            return Session(
                symbols,
                tapes,
                sent,
                rejected,
                bars,
                signals,
                oracle,
                job.alive(),
                tmp_path,
                trace,
                forwarder_log,
            )
    finally:
        job.stop()


def test_1e308_and_subnormal_trades_are_refused_and_every_committed_record_is_finite(
    session: Session,
):
    poison = [m for m in session.sent if m["T"] == "t" and not _plausible(m)]
    assert len(poison) >= 5
    assert session.rejected["invalid_price"] + session.rejected["invalid_size"] == len(poison)
    assert session.alive, f"job died; logs in {session.logs}"
    for r in session.bars + session.signals:
        bad = {k: v for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, (r["symbol"], r["window"], bad)


def test_every_sale_condition_on_every_tape_gives_the_bars_and_signals_of_the_oracle(
    session: Session,
):
    trades = [m for m in session.sent if m["T"] == "t" and _plausible(m)]
    for sym, tape in session.tapes.items():
        seen = {c for m in trades if m["S"] == sym for c in m["c"]}
        assert seen == set(UTP if tape == "C" else CTA), (sym, tape)
    got = {(r["symbol"], start_us(r) * 1000): r for r in session.bars}
    oracle = session.oracle
    assert set(got) == set(oracle)
    for key, b in oracle.items():
        assert_bar_equals(got[key], b, key, rel=1e-12)
    # the rules made a difference here: bars priced only by high/low prints, flat bars of
    # volume only, and vwaps outside [low, high] (odd lots and average-price prints)
    assert {b.price_basis for b in oracle.values()} == {0, 1, 2}
    assert any(not b.low <= b.vwap <= b.high for b in oracle.values())
    for sym in session.symbols:
        sig = sorted((r for r in session.signals if r["symbol"] == sym), key=start_us)
        ob = [b for (s, _), b in sorted(oracle.items()) if s == sym]
        assert len(sig) == len(ob)
        assert [start_us(r) * 1000 for r in sig] == [b.start_ns for b in ob]
        # every value but the quote's (this test keeps no quote oracle)
        fields = [f for f in SIGNAL_VALUE_FIELDS if f not in ("spread", "imbalance")]
        assert_series_signals(sym, ob, sig, fields=fields)


def test_one_trades_trace_id_leads_from_the_forwarders_json_line_to_the_jobs_to_its_clickhouse_row(
    session: Session, clickhouse: ChdbClient
):
    sym = session.trace_symbol
    odd_lot = next(m for m in session.sent if m.get("S") == sym and "I" in m["c"])
    # the forwarder: the traced symbol's lines, every one with the six correlation fields
    fwd = [r for r in _json_lines(session.forwarder_log) if r.get("symbol") == sym]
    assert fwd, f"no forwarder line for {sym} in {session.forwarder_log}"
    for r in fwd:
        assert set(LINE_FIELDS) | set(RECORD_FIELDS) <= r.keys(), r
        assert (r["app"], r["component"], r["channel"]) == ("torghut-ta", "forwarder", "trades")
    (first,) = [r for r in fwd if r["event_ts"] == odd_lot["t"]]
    trace_id = first["trace_id"]
    assert first["source"] == "alpaca" and isinstance(first["seq"], int) and trace_id
    # the job (its Python side writes JSON lines to the process's output): the provisional
    # bar that trade opened is refused, with the same record's fields
    job = [r for p in sorted(session.logs.glob("ta-*.log")) for r in _json_lines(p)]
    refused = [r for r in job if r.get("trace_id") == trace_id]
    assert refused, f"no job line carries {trace_id}; logs in {session.logs}"
    (line,) = refused
    assert {k: line[k] for k in RECORD_FIELDS} == {k: first[k] for k in RECORD_FIELDS}
    assert (line["component"], line["level"], line["logger"]) == ("ta-job", "WARNING", "torghut.ta")
    assert "no trade in it may set a price" in line["message"]
    # the Flink JVM's own lines: JSON with the same top-level keys, next to its text log
    jvm = [r for p in (session.logs / "flink-logs").glob("*.log.jsonl") for r in _json_lines(p)]
    assert jvm, f"no JSON lines of the Flink JVM in {session.logs / 'flink-logs'}"
    assert all(set(LINE_FIELDS) <= r.keys() and r["component"] == "ta-job" for r in jvm)
    # ClickHouse: the final bar of that second carries the trade's trace_id
    second = odd_lot["t"] // S * S

    def row() -> list:
        return clickhouse.rows(
            "SELECT trace_id, toString(seq) FROM torghut.ta_microbars_final "
            f"WHERE symbol = '{sym}' AND is_final "
            f"AND toUnixTimestamp64Nano(window_start) = {second}"
        )

    rows = wait_for(row, 120, f"the final bar of {sym} in ClickHouse", interval_s=0.5)
    assert rows == [[trace_id, str(first["seq"])]]
