"""A user's workflows end to end, each the one command the README gives, against the
simulator standing in for Alpaca (its stream and its historical REST API, with keys):

1. `torghut backfill` loads a past range into ClickHouse and writes a seed;
2. `torghut run --source alpaca --record --seed` streams the live session, and `torghut sql`
   answers from the running pipeline: the final bars equal the batch oracle of what the
   stream sent (tests/support/bar_oracle.py, conditions and tape carried), and every
   indicator of the live bars equals the signal oracle (TA-Lib's values and the VWAPs and
   volatility; not the quote's) over the backfilled bars followed by the live ones (the
   indicators continue the history);
3. after Ctrl-C, `torghut sql` opens the stopped pipeline's data dir and gives the same rows;
   the run printed its latency/throughput PNG;
4. `torghut run --source replay` of the recording (as fast as possible, into another data
   dir) ends by itself with final bars and signals equal to the live run's.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, wait_for
from tests.support.bar_oracle import OracleBar, alpaca_trade, oracle_bars
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals
from torghut.sim import SimConfig, SimServerThread, SyntheticConfig, read_jsonl
from torghut.sim.config import ApiKey, HistoryConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

S = 1_000_000_000
KEY, SECRET = "PKWORKFLOW1", "workflow-secret-never-printed"
SYMBOLS = ("WFA", "WFB")
BAR_COLUMNS = "open, high, low, close, volume, vwap, trade_count, gap"
SIGNAL_COLUMNS = (
    "close, ema12, ema26, macd, macd_signal, macd_hist, rsi14, boll_mid, boll_upper, "
    "boll_lower, atr14, vwap_session, vwap_5m, realized_vol_60s, spread, imbalance, gap"
)


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / S, datetime.UTC)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    return {
        **env,
        "APCA_API_KEY_ID": KEY,
        "APCA_API_SECRET_KEY": SECRET,
        "TORGHUT_STACK_HOME": str(tmp_path / "stacks"),
    }


def _torghut(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torghut.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _sql(query: str, data_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """`torghut sql --format json` (JSONEachRow) as a user runs it."""
    out = _torghut("sql", query, "--data-dir", str(data_dir), "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def _finals(table: str, columns: str, data_dir: Path, env: dict[str, str], since_ns: int):
    rows = _sql(
        f"SELECT symbol, toUnixTimestamp64Nano(window_start) AS start, {columns} "
        f"FROM torghut.{table} FINAL WHERE is_final AND symbol IN {SYMBOLS!r} "
        f"AND window_start >= fromUnixTimestamp64Nano({since_ns}) ORDER BY symbol, window_start",
        data_dir,
        env,
    )
    return {(r.pop("symbol"), int(r.pop("start"))): r for r in rows}


def _start_run(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "torghut.cli", "run", "--no-view", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _assert_view_rows(log: str, canary: bool) -> None:
    """The view's last screen (printed at the end without a terminal): a row per symbol with
    its bar, its age and where it stands; with `canary` (a run that lists its symbols) the
    canary's line with each symbol's lag, else the line saying it was not started."""
    screen = log[log.rindex("torghut-ta local pipeline") :]
    for sym in SYMBOLS:
        row = next(line for line in screen.splitlines() if line.startswith(sym + " "))
        assert re.search(r"\d\d:\d\d:\d\d\s+\d+\s", row), row  # bar time, age in ms
        assert "final in ClickHouse" in row or "provisional" in row or "final, loading" in row
    line = next(line for line in screen.splitlines() if line.startswith("canary"))
    if canary:
        for sym in SYMBOLS:
            assert re.search(rf"{sym} \d+\.\d/", line), line  # its lag in seconds
        assert "input idle" in line, line
    else:
        assert line == "canary: not started", line


def _row_bar(key: tuple[str, int], row: dict[str, Any]) -> OracleBar:
    """A `ta_microbars` row (`_finals`) as a bar for the signal oracle."""
    sym, start = key
    return OracleBar(
        sym,
        start,
        start + S,
        row["open"],
        row["high"],
        row["low"],
        row["close"],
        row["volume"],
        row["vwap"],
        int(row["trade_count"]),
        0,  # not read by the signal oracle
    )


def test_backfill_then_live_with_record_and_sql_then_replay_equals_the_live_run(tmp_path):
    env = _env(tmp_path)
    now = time.time_ns() // S * S
    history_start, history_end = now - 150 * S, now
    cfg = SimConfig(
        keys=(ApiKey(key=KEY, secret=SECRET),),
        synthetic=SyntheticConfig(
            symbols=SYMBOLS,
            seed=7,
            trades_per_sec=12,
            quotes_per_sec=6,
            late_rate=0.0,
            out_of_order_rate=0.02,
            out_of_order_max_s=0.4,
        ),
        history=HistoryConfig(
            symbols=SYMBOLS,
            start=_utc(history_start),
            end=_utc(history_end),
            trades_per_sec=2,
            quotes_per_sec=1,
            seed=11,
        ),
        duration_s=14,
        record_path=tmp_path / "sent.jsonl",
    )
    live_dir, replay_dir = tmp_path / "live-ch", tmp_path / "replay-ch"
    recording = tmp_path / "recording"
    with SimServerThread(cfg) as sim:
        # 1. the past range, from the historical API into the live run's tables
        back = _torghut(
            "backfill",
            "--symbols",
            ",".join(SYMBOLS),
            "--start",
            _utc(history_start).isoformat(),
            "--end",
            _utc(history_end).isoformat(),
            "--data-url",
            sim.http_url,
            "--data-dir",
            str(live_dir),
            "--quiet",
            env=env,
        )
        assert back.returncode == 0, back.stderr
        seed = Path(re.search(r"seed[^:]*: (\S+)", back.stdout + back.stderr).group(1))  # type: ignore[union-attr]
        assert seed.is_file()
        backfilled = _finals("ta_microbars", BAR_COLUMNS, live_dir, env, 0)
        assert backfilled and all(start < history_end for _, start in backfilled)

        # 2. live, recorded, seeded; SQL while it runs
        live = _start_run(
            [
                "--source",
                "alpaca",
                "--alpaca-url",
                sim.url,
                "--symbols",
                ",".join(SYMBOLS),
                "--record",
                str(recording),
                "--seed",
                str(seed),
                "--data-dir",
                str(live_dir),
                "--checkpoint-interval-ms",
                "1000",
            ],
            env,
            tmp_path / "live.log",
        )
        try:
            sim.wait_until(lambda: sim.source_done, 240, "the live session")
            sent = read_jsonl(tmp_path / "sent.jsonl")
            trades = [alpaca_trade(m) for m in sent if m["T"] == "t"]
            # the live bars continue the backfilled ones: a flat first bar carries their close
            last_back = {k[0]: row["close"] for k, row in sorted(backfilled.items())}
            oracle = {(b.symbol, b.start_ns): b for b in oracle_bars(trades, S, last_back)}

            def live_bars() -> dict:
                return _finals("ta_microbars", BAR_COLUMNS, live_dir, env, history_end)

            # `torghut sql` answers from the running pipeline (its query server)
            wait_for(
                lambda: set(live_bars()) >= set(oracle) or live.poll() is not None,
                120,
                "every live final bar in ClickHouse, read with torghut sql while it runs",
                interval_s=1,
            )
            assert live.poll() is None, (tmp_path / "live.log").read_text()[-3000:]
            while_running = live_bars()
            wait_for(
                lambda: (
                    len(_finals("ta_signals", SIGNAL_COLUMNS, live_dir, env, history_end))
                    >= len(oracle)
                ),
                60,
                "every live final signal in ClickHouse",
                interval_s=1,
            )
        finally:
            live.send_signal(signal.SIGINT)  # Ctrl-C
            code = live.wait(120)
    log = (tmp_path / "live.log").read_text()
    assert code == 0, log[-3000:]
    assert SECRET not in log
    _assert_view_rows(log, canary=True)
    png = re.search(r"latency and throughput of this run: (\S+\.png)", log)
    assert png and Path(png.group(1)).stat().st_size > 10_000

    assert set(while_running) == set(oracle)
    for key, bar in oracle.items():
        row = while_running[key]
        assert row["trade_count"] == bar.trade_count, key
        for f in ("open", "high", "low", "close", "volume", "vwap"):
            assert row[f] == pytest.approx(getattr(bar, f), rel=1e-12), (key, f)

    # 3. after the stop: the same rows from the stopped pipeline's data dir
    after_bars = _finals("ta_microbars", BAR_COLUMNS, live_dir, env, 0)
    assert {k: v for k, v in after_bars.items() if k[1] >= history_end} == while_running
    live_signals = _finals("ta_signals", SIGNAL_COLUMNS, live_dir, env, history_end)

    # the live bars' indicators continue the backfilled history: the oracle over both
    # (spread and imbalance come from live quotes only: not checked here)
    all_signals = _finals("ta_signals", SIGNAL_COLUMNS, live_dir, env, 0)
    fields = [f for f in SIGNAL_VALUE_FIELDS if f not in ("spread", "imbalance")]
    for sym in SYMBOLS:
        keys = sorted(k for k in after_bars if k[0] == sym)
        n_back = sum(1 for k in keys if k[1] < history_end)
        assert 0 < n_back < len(keys)
        assert_series_signals(
            sym,
            [_row_bar(k, after_bars[k]) for k in keys],
            [all_signals.get(k) for k in keys],
            fields=fields,
            check=range(n_back, len(keys)),
        )
        # warm from the first live bar on: the seed carried the history's state
        assert all_signals[keys[n_back]]["macd_signal"] is not None

    # 4. replay the recording into a fresh data dir, as fast as possible: it ends by itself
    replay = _start_run(
        [
            "--source",
            "replay",
            str(recording),
            "--speed",
            "max",
            "--seed",
            str(seed),
            "--data-dir",
            str(replay_dir),
            "--checkpoint-interval-ms",
            "1000",
        ],
        env,
        tmp_path / "replay.log",
    )
    try:
        code = replay.wait(300)
    finally:
        if replay.poll() is None:
            replay.send_signal(signal.SIGINT)
            replay.wait(60)
    assert code == 0, (tmp_path / "replay.log").read_text()[-3000:]
    _assert_view_rows((tmp_path / "replay.log").read_text(), canary=False)
    assert _finals("ta_microbars", BAR_COLUMNS, replay_dir, env, 0) == while_running
    assert _finals("ta_signals", SIGNAL_COLUMNS, replay_dir, env, 0) == live_signals
