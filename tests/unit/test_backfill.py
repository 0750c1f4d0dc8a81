"""`torghut backfill`'s parts that need no engine: the command's refusals (keys, ranges),
the plan (whole seconds, chunks, state dir name), the validation of REST records (the
forwarder's and the job's rules, refusals counted by reason), the saved position (states
round-trip exactly) and the client's retries of 5xx answers and 429s without headers.
Against the simulator and an embedded ClickHouse: tests/integration/test_backfill.py."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest

from flink_job.symbol_processor import QUOTE, TRADE, SymbolProcessor, SymbolState
from shared.indicators import SignalState
from torghut.backfill.alpaca import AlpacaUnavailable, HistoricalClient
from torghut.backfill.convert import Refusals, chunk_events
from torghut.backfill.position import Position, PositionError, load, plain, save, unplain
from torghut.backfill.run import Backfill, BackfillRangeError, Plan
from torghut.cli import main
from torghut.timearg import iso, parse_instant

S = 1_000_000_000
NOW = time.time_ns()
DAY = NOW - NOW % (86_400 * S) - 86_400 * S  # yesterday 00:00 UTC


def _t(ns: int) -> str:
    return iso(ns)


@pytest.mark.parametrize(
    ("env", "args", "message"),
    [
        ({}, [], "set APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment"),
        ({"k": 1}, ["--start", "2026-12-04T10:00", "--end", "2026-12-04T10:00"], "must be before end"),
        ({"k": 1}, ["--start", "2020-01-02", "--end", "2020-01-03"], "ta_signals has a TTL of 14 days and ta_microbars of 30"),
        ({"k": 1}, ["--start", "tuesday", "--end", "now"], "'tuesday' is not a time"),
        ({"k": 1}, ["--start", _t(DAY), "--end", _t(NOW + 3600 * S)], "is in the future"),
        ({"k": 1}, ["--start", _t(DAY), "--end", "now", "--chunk", "30 minutes"], "is not a duration"),
    ],
)  # fmt: skip
def test_the_command_refuses_in_one_line_and_exits_2(
    monkeypatch, capsys, env: dict, args: list[str], message: str
) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    if env:
        monkeypatch.setenv("APCA_API_KEY_ID", "key-id-7")
        monkeypatch.setenv("APCA_API_SECRET_KEY", "secret-7")
    argv = ["backfill", "--symbols", "AAPL", "--start", _t(DAY), "--end", "now", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("torghut backfill: ") and message in err[0]
    assert "secret-7" not in err[0]


def test_a_plan_is_whole_seconds_in_chunks_named_after_symbols_range_and_feed() -> None:
    start = parse_instant("2026-12-04T09:30")
    plan = Plan.make(("msft", "AAPL", "MSFT"), start + 123, start + 3 * 3600 * S + 5, "iex",
                     chunk_ns=3600 * S + 7, now_ns=start + 86_400 * S)  # fmt: skip
    assert (plan.symbols, plan.start_ns, plan.end_ns) == (
        ("AAPL", "MSFT"),
        start,
        start + 10_801 * S,
    )
    assert plan.chunk_ns == 3600 * S
    assert plan.chunks_from(start) == [
        (start + i * 3600 * S, min(start + (i + 1) * 3600 * S, plan.end_ns)) for i in range(4)
    ]
    assert plan.name == "AAPL-MSFT_20261204T143000Z_20261204T173001Z_iex"
    many = Plan.make(tuple(f"S{i}" for i in range(9)), start, start + S, now_ns=start + S)
    assert many.name.startswith("S0+8-") and many.name.endswith("_iex")


def _trade(t: int, i: int, p: object = 10.0, s: object = 5) -> dict:
    return {"t": iso(t), "x": "V", "p": p, "s": s, "c": ["@"], "i": i, "z": "C"}


def _quote(t: int, bp: float = 9.99) -> dict:
    return {"t": iso(t), "ax": "V", "ap": 10.01, "as": 3, "bx": "V", "bp": bp, "bs": 2, "c": ["R"], "z": "C"}  # fmt: skip


def test_records_take_the_forwarders_and_the_jobs_checks_and_refusals_are_counted_by_reason() -> (
    None
):
    t0 = DAY + 10 * S
    st = SymbolState(applied={TRADE: [1, 40]})  # a previous chunk applied trades 1..40
    trades = [
        _trade(t0 + 5, 1),
        _trade(t0 + 2, 2),
        _trade(t0 + 3, 2),  # the same trade id: a duplicate, as the forwarder drops it
        _trade(t0 + 4, 3, p=0.0),  # invalid_price
        _trade(t0 + 6, 4, s=-1),  # invalid_size
        _trade(t0 + 7, 5, p="10"),  # a string price: invalid_field
        {**_trade(t0 + 8, 6), "t": "yesterday"},  # bad_timestamp
        _trade(NOW + 3600 * S, 7),  # an hour ahead of this clock: event_ts_in_future
    ]
    quotes = [_quote(t0 + 2), _quote(t0 + 2, 9.98), _quote(t0 + 1, bp=-1.0)]
    refusals = Refusals()
    events = chunk_events("AAPL", trades, quotes, st, "iex", NOW, 2_000_000_000, refusals)
    assert [(e[0], e[2], e[3]) for e in events] == [
        (TRADE, t0 + 2, 41),  # trades first at equal times, seqs continue the state's
        (QUOTE, t0 + 2, 1),
        (TRADE, t0 + 5, 42),
    ]
    assert events[0][4] == t0 + 2 and events[0][5] == "backfill:t:41"  # ingest = event time
    assert refusals.counts == {
        "duplicate": 2,
        "invalid_price": 2,
        "invalid_size": 1,
        "invalid_field": 1,
        "bad_timestamp": 1,
        "event_ts_in_future": 1,
    }
    assert (
        "bp=-1.0" in refusals.examples["invalid_price"]
        or "p=0.0" in refusals.examples["invalid_price"]
    )


def test_the_saved_position_restores_symbol_and_signal_state_exactly(tmp_path: Path) -> None:
    proc = SymbolProcessor(provisional_interval_ns=0)
    st, sig = SymbolState(), SignalState()
    t0 = DAY
    for i in range(60):
        ev = (TRADE, "AAPL", t0 + i * S // 2, i + 1, t0, "x", 100.0 + (i % 7) * 0.25, 1.5, i)
        proc.on_trade(st, sig, ev, -1, 0)
        proc.on_quote(
            st, (QUOTE, "AAPL", t0 + i * S // 2 + 1, i + 1, t0, "x", 99.0, 1.0, 101.0, 2.0)
        )
    proc.on_watermark(st, sig, (t0 + 20 * S) // 1_000_000 - 1)  # some bars closed, some open
    assert st.bars and st.quotes and sig.bars_committed
    pos = Position("n", ["AAPL"], "iex", None, t0, t0 + 60 * S, t0 + 20 * S, 1, 3)
    pos.put_states({"AAPL": (st, sig)})
    save(tmp_path / "position.json", pos)
    back = load(tmp_path / "position.json")
    assert back is not None and back.same_run(pos)
    st2, sig2 = back.get_states(sig.config)["AAPL"]
    assert st2.to_state() == st.to_state() and sig2.to_state() == sig.to_state()
    # and they continue identically
    a = proc.on_watermark(st, sig, (t0 + 60 * S) // 1_000_000)
    b = proc.on_watermark(st2, sig2, (t0 + 60 * S) // 1_000_000)
    assert [(e.bar, e.signals) for e in a] == [(e.bar, e.signals) for e in b] and len(a) > 5
    assert unplain(plain({1: (2, [3, {4: 5}])})) == {1: (2, (3, {4: 5}))}


def test_a_position_of_another_backfill_is_refused(tmp_path: Path) -> None:
    plan = Plan.make(("AAPL",), DAY, DAY + 60 * S, now_ns=NOW)
    other = Plan.make(("MSFT",), DAY, DAY + 60 * S, now_ns=NOW)
    bf = Backfill(other, None, None, tmp_path)  # type: ignore[arg-type]
    save(tmp_path / "position.json", Backfill(plan, None, None, tmp_path)._fresh())  # type: ignore[arg-type]
    with pytest.raises(PositionError, match="belongs to another backfill"):
        bf.position()
    assert bf.position(restart=True).chunks_done == 0
    with pytest.raises(BackfillRangeError, match="at least one symbol"):
        Plan.make((" ",), DAY, DAY + S, now_ns=NOW)


class _Flaky(http.server.BaseHTTPRequestHandler):
    """503, 503, a 429 without rate headers, then a page: what a bad minute of a real
    server may answer."""

    answers: ClassVar[list[tuple[int, bytes]]] = []

    def do_GET(self) -> None:
        status, body = (
            self.answers.pop(0) if self.answers else (200, b'{"trades":{},"next_page_token":null}')
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_5xx_answers_are_retried_with_backoff_and_a_429_is_waited_out() -> None:
    _Flaky.answers = [(503, b"down"), (502, b"bad gateway"), (429, b'{"message":"slow down"}')]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    slept: list[float] = []
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        client = HistoricalClient("k", "s", url, sleep=slept.append, max_retry_s=30)
        assert client.fetch("trades", ("AAPL",), DAY, DAY + S) == {}
        assert (client.stats.retries, client.stats.rate_limited, client.stats.requests) == (2, 1, 4)
        assert slept == [1.0]  # no X-RateLimit-Reset: a second
        _Flaky.answers = [(500, b"")] * 50
        client = HistoricalClient("k", "s", url, max_retry_s=1)
        with pytest.raises(AlpacaUnavailable, match="HTTP 500"):
            client.fetch("trades", ("AAPL",), DAY, DAY + S)
    finally:
        server.shutdown()
