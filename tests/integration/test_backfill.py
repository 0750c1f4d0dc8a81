"""`torghut backfill` of a simulated trading day through the simulator's historical endpoints
into an embedded ClickHouse (docs/design.md, "Backfill").

09:30-16:00 New York of the last weekday, 3 symbols at a low rate, chunks of 30 min, a rate
limit of 4 requests a second that another client of the same key (Alpaca's limit is per
account) keeps using up, so the backfill waits out 429s and empty windows. The backfill runs
as `torghut backfill` subprocesses (`torghut.stack.apps.launch`): the first is SIGKILLed once
its saved position says >= 60 %, the same command then continues. The sim's counters show no
chunk fetched twice (only the one in flight at the kill), the final views hold every bar once,
equal to the bar oracle (tests/support/bar_oracle.py) over the sim's history with each trade's
conditions and tape, with every indicator equal to the signal oracle (TA-Lib's values and the
VWAPs, volatility, spread and imbalance with the latest quote), and the seed file holds each
symbol's state after the last bar.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import orjson
import pytest
import requests

from flink_job.seed import read_seed
from shared.indicators import SignalState
from tests.conftest import wait_for
from tests.support.bar_oracle import alpaca_trade, oracle_bars
from tests.support.oracle import assert_bar_equals
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals, bar_quotes
from torghut.clickhouse.client import ChdbClient
from torghut.sim import ApiKey, SimConfig, SimServerThread
from torghut.sim.config import HistoryConfig
from torghut.sim.timestamps import format_rfc3339_ns, parse_rfc3339_ns
from torghut.stack.apps import launch
from torghut.timearg import NEW_YORK

pytestmark = pytest.mark.integration

S = 1_000_000_000
SYMBOLS = ("AAPL", "MSFT", "NVDA")
KEY, SECRET = "bf-key", "bf-secret"
BACKFILL = (sys.executable, "-m", "torghut.cli", "backfill")


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * S


def _last_trading_day() -> tuple[int, int]:
    """09:30-16:00 New York of the last weekday before today (inside the tables' TTL)."""
    day: date = datetime.now(NEW_YORK).date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return (
        _ns(datetime.combine(day, time(9, 30), NEW_YORK)),
        _ns(datetime.combine(day, time(16, 0), NEW_YORK)),
    )


class Neighbour(threading.Thread):
    """Another client of the key: it uses up each window of the rate limit as it opens until
    the backfill got a 429 (every 429 the sim counted that was not its own)."""

    def __init__(self, sim: SimServerThread) -> None:
        super().__init__(daemon=True)
        self.sim, self.stop = sim, threading.Event()
        self.own_429s = 0
        self.before = self.all_429s()

    def all_429s(self) -> int:
        return sum(self.sim.counters.history_rate_limited.copy().values())

    def backfill_429s(self) -> int:
        return self.all_429s() - self.before - self.own_429s

    def run(self) -> None:
        with requests.Session() as s:
            s.trust_env = False
            s.headers.update({"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET})
            url = f"{self.sim.http_url}/v2/stocks/ZZZZ/trades"
            while not self.stop.is_set() and self.backfill_429s() == 0:
                r = s.get(url, params={"start": "2026-01-02", "limit": 1}, timeout=10)
                if r.status_code == 429:  # used up: again as soon as the next window opens
                    self.own_429s += 1
                    reset = int(r.headers["X-RateLimit-Reset"])
                    self.stop.wait(max(0.0, reset - datetime.now(UTC).timestamp()))


def _position(state: Path) -> dict | None:
    try:
        return orjson.loads((state / "position.json").read_bytes())
    except FileNotFoundError:
        return None


def _run_with_neighbour(sim, argv, env, log: Path):  # type: ignore[no-untyped-def]
    neighbour = Neighbour(sim)
    neighbour.start()
    proc = launch(argv, env, log)
    return proc, neighbour


def test_a_backfill_killed_at_60_percent_resumes_without_refetching_and_equals_the_oracle_and_talib(
    tmp_path: Path,
) -> None:
    start, end = _last_trading_day()
    history = HistoryConfig(
        start=datetime.fromtimestamp(start // S, UTC),
        end=datetime.fromtimestamp(end // S, UTC),
        symbols=SYMBOLS,
        trades_per_sec=0.3,
        quotes_per_sec=0.3,
        seed=5,
    )
    cfg = SimConfig(
        history=history,
        keys=(ApiKey(key=KEY, secret=SECRET, feeds=("iex",)),),
        history_rate_limit=4,
        history_rate_window_s=1.0,
    )
    ch, state = tmp_path / "clickhouse", tmp_path / "state"
    argv = (
        *BACKFILL,
        "--symbols",
        ",".join(SYMBOLS),
        "--start",
        format_rfc3339_ns(start),
        "--end",
        format_rfc3339_ns(end),
        "--chunk",
        "30m",
        "--data-dir",
        str(ch),
        "--state-dir",
        str(state),
        "--quiet",
    )
    with SimServerThread(cfg) as sim:
        hist = sim.server.history_api.history
        assert hist is not None
        hist.tape("iex")  # generated before the clock runs
        env = {
            "APCA_API_KEY_ID": KEY,
            "APCA_API_SECRET_KEY": SECRET,
            "APCA_API_DATA_URL": sim.http_url,
            "TORGHUT_DATA_HOME": str(tmp_path / "data-home"),
        }
        proc, neighbour = _run_with_neighbour(sim, argv, env, tmp_path / "run1.log")
        try:
            pos = wait_for(
                lambda: (
                    proc.poll() is not None
                    or (
                        (p := _position(state))
                        and p["chunks_done"] / p["chunks_total"] >= 0.6
                        and p
                    )
                ),
                120,
                "the first run's position at 60 %",
                interval_s=0.02,
            )
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            neighbour.stop.set()
            proc.wait(30)
        assert isinstance(pos, dict), (tmp_path / "run1.log").read_text()
        killed = _position(state)
        assert killed is not None and 0.6 <= killed["chunks_done"] / killed["chunks_total"] < 1
        assert killed["chunks_total"] == 13

        proc, neighbour = _run_with_neighbour(sim, argv, env, tmp_path / "run2.log")
        try:
            assert proc.wait(120) == 0, (tmp_path / "run2.log").read_text()
        finally:
            neighbour.stop.set()
        out = (tmp_path / "run2.log").read_text()
        first_pages = dict(sim.counters.history_first_pages)

    # resumed: after the kill only the chunk in flight was fetched again
    assert f"resumed after chunk {killed['chunks_done']}" in out
    assert "refused records: none" in out
    waits_429 = int(out.split(" 429 waits")[0].rsplit(" ", 1)[1])
    assert waits_429 >= 1
    for kind in ("trades", "quotes"):
        mine = {k: n for k, n in first_pages.items() if k.startswith(kind + " ")}
        assert len(mine) == 13, sorted(mine)
        again = {k for k, n in mine.items() if n > 1}
        assert max(mine.values()) <= 2
        assert all(format_rfc3339_ns(killed["next_ns"]) in k for k in again), again
    seed_path = state / "seed.json"
    assert f"seed file: {seed_path}" in out

    client = ChdbClient(ch)
    try:
        for table in ("ta_microbars_final", "ta_signals_final"):
            (dupes,) = client.rows(
                f"SELECT toString(count()) FROM (SELECT symbol, window_start, count() AS c "
                f"FROM torghut.{table} GROUP BY symbol, window_start, window_size_ms, is_final "
                "HAVING c > 1)"
            )
            assert dupes == ["0"], table
        seed = read_seed(seed_path)
        for sym in SYMBOLS:
            trades = hist.records("iex", "trades", sym, start, end)
            oracle = oracle_bars(
                [alpaca_trade(t, parse_rfc3339_ns(t["t"]), sym) for t in trades], S
            )
            rows = client.rows(
                "SELECT toString(toUnixTimestamp64Nano(window_start)), open, high, low, close, "
                "volume, vwap, toString(trade_count), toString(version), source "
                f"FROM torghut.ta_microbars_final WHERE symbol = '{sym}' ORDER BY window_start"
            )
            assert [int(r[0]) for r in rows] == [b.start_ns for b in oracle]
            for r, b in zip(rows, oracle, strict=True):
                o, h, lo, c, v, vw, n, version, source = r[1:]
                row = {"open": o, "high": h, "low": lo, "close": c, "volume": v, "vwap": vw}
                assert_bar_equals({**row, "trade_count": int(n)}, b, (sym, b.start_ns))
                assert (int(version), source) == (b.end_ns, "backfill")
            _assert_signals(client, hist, sym, oracle, start, end)
            # the seed: the indicator state after the day's last bar
            sig = SignalState()
            for b in oracle:
                sig.update(b)
            assert seed.symbols[sym].signal_state == sig.to_state()
            assert (seed.symbols[sym].end_ns, seed.symbols[sym].bars) == (end, len(oracle))
    finally:
        client.close()


def _assert_signals(client, hist, sym: str, oracle, start: int, end: int) -> None:  # type: ignore[no-untyped-def]
    """Every indicator equals the signal oracle over the day's bars: TA-Lib's values, the
    VWAPs and the volatility; spread and imbalance from the latest quote before the bar's
    end and at most 5 s older (the backfill reads quotes from its start)."""
    rows = client.rows(
        f"SELECT {', '.join(SIGNAL_VALUE_FIELDS)} "
        f"FROM torghut.ta_signals_final WHERE symbol = '{sym}' ORDER BY window_start"
    )
    assert len(rows) == len(oracle)
    quotes = [
        (ts, q["bp"], float(q["bs"]), q["ap"], float(q["as"]))
        for q in hist.records("iex", "quotes", sym, start - 5 * S, end)
        if (ts := parse_rfc3339_ns(q["t"])) >= start
    ]
    got = [dict(zip(SIGNAL_VALUE_FIELDS, row, strict=True)) for row in rows]
    assert_series_signals(sym, oracle, got, bar_quotes(oracle, quotes))


def test_a_backfill_while_a_pipeline_owns_the_data_dir_goes_through_its_query_server(
    tmp_path: Path,
) -> None:
    """`torghut run` owns the embedded engine's data dir (chdb allows one process) and serves
    it on loopback (torghut/clickhouse/local.py): the backfill writes through that server;
    run again, a finished range is not fetched again and names its seed file."""
    from torghut.clickhouse.local import QueryServer

    start, _ = _last_trading_day()
    end = start + 20 * 60 * S
    cfg = SimConfig(
        history=HistoryConfig(
            start=datetime.fromtimestamp(start // S, UTC),
            end=datetime.fromtimestamp(end // S, UTC),
            symbols=("AAPL",),
        ),
        keys=(ApiKey(key=KEY, secret=SECRET),),
    )
    ch, state = tmp_path / "clickhouse", tmp_path / "state"
    owner = ChdbClient(ch)  # the pipeline's engine
    server = QueryServer(owner, ch)
    server.start()
    argv = (*BACKFILL, "--symbols", "AAPL", "--start", format_rfc3339_ns(start))
    argv += ("--end", format_rfc3339_ns(end), "--data-dir", str(ch), "--state-dir", str(state))
    try:
        with SimServerThread(cfg) as sim:
            env = {
                "APCA_API_KEY_ID": KEY,
                "APCA_API_SECRET_KEY": SECRET,
                "APCA_API_DATA_URL": sim.http_url,
                "TORGHUT_DATA_HOME": str(tmp_path / "data-home"),
            }
            for n in (1, 2):
                proc = launch((*argv, "--quiet"), env, tmp_path / f"run{n}.log")
                assert proc.wait(120) == 0, (tmp_path / f"run{n}.log").read_text()
            fetched = dict(sim.counters.history_first_pages)
            trades = sim.server.history_api.history.records("iex", "trades", "AAPL")  # type: ignore[union-attr]
        first, second = ((tmp_path / f"run{n}.log").read_text() for n in (1, 2))
        assert "attached to the running pipeline's query server" in first
        assert "this range is already done" in second and f"seed file: {state}/seed.json" in second
        assert sorted((k.split()[0], n) for k, n in fetched.items()) == [
            ("quotes", 1),
            ("symbol_trades", 2),  # each run's key check (one trade)
            ("trades", 1),
        ]
        (rows,) = owner.rows(
            "SELECT toString(count()) FROM torghut.ta_microbars_final WHERE source = 'backfill'"
        )
        assert int(rows[0]) == len({parse_rfc3339_ns(t["t"]) // S for t in trades}) > 600
    finally:
        server.stop()
        owner.close()
