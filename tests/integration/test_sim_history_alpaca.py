"""Compatibility proof of the simulator's historical endpoints (torghut/sim/history.py): the
official alpaca-py `StockHistoricalDataClient(key, secret, url_override=sim.http_url)` reads
trades and quotes of two symbols across many pages, equal to the sim's history; the
backfill's own client pages through the same records at any page size, waiting whenever the
rate limit's window is used up; and `torghut backfill` with a refused key or feed says so in
one line and exits 2 before it opens anything else."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime

import pytest

from torghut.backfill.alpaca import AlpacaAuthError, HistoricalClient
from torghut.cli import main
from torghut.sim import ApiKey, SimConfig, SimServerThread
from torghut.sim.config import HistoryConfig
from torghut.sim.timestamps import parse_rfc3339_ns

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.data.requests import StockQuotesRequest, StockTradesRequest

# a real simulator on a loopback socket
pytestmark = pytest.mark.integration

S = 1_000_000_000
START = datetime(2026, 12, 4, 14, 30, tzinfo=UTC)
END = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
SYMBOLS = ("AAPL", "MSFT")
KEY = ApiKey(key="hist-key", secret="hist-secret", feeds=("iex",))


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        history=HistoryConfig(
            start=START, end=END, symbols=SYMBOLS, trades_per_sec=3.5, quotes_per_sec=3.5
        ),
        keys=(KEY,),
        history_rate_limit=8,
        history_rate_window_s=1.0,
    )
    with SimServerThread(cfg) as running:
        running.server.history_api.history.tape("iex")  # type: ignore[union-attr]
        yield running


def _us(t: str) -> datetime:
    ns = parse_rfc3339_ns(t)
    return datetime.fromtimestamp(ns // S, UTC).replace(microsecond=ns % S // 1000)


def _value(x: object) -> object:
    return getattr(x, "value", x)  # alpaca-py turns exchange codes into an enum


def test_alpaca_pys_historical_client_reads_every_page_equal_to_the_history(sim) -> None:
    client = StockHistoricalDataClient(KEY.key, KEY.secret, url_override=sim.http_url)
    hist = sim.server.history_api.history
    before = dict(sim.counters.history_requests)
    trades = client.get_stock_trades(
        StockTradesRequest(symbol_or_symbols=list(SYMBOLS), start=START, end=END, feed="iex")
    )
    quotes = client.get_stock_quotes(
        StockQuotesRequest(symbol_or_symbols=list(SYMBOLS), start=START, end=END, feed="iex")
    )
    pages = {k: n - before.get(k, 0) for k, n in sim.counters.history_requests.items()}
    assert pages["trades"] >= 3 and pages["quotes"] >= 3, pages  # 10,000 records a page
    for sym in SYMBOLS:
        want = hist.records("iex", "trades", sym)
        got = trades.data[sym]
        assert len(got) == len(want) > 10_000
        assert [
            (t.timestamp, _value(t.exchange), t.price, t.size, t.id, t.conditions, t.tape)
            for t in got
        ] == [(_us(w["t"]), w["x"], w["p"], w["s"], w["i"], w["c"], w["z"]) for w in want]
        want_q = hist.records("iex", "quotes", sym)
        got_q = quotes.data[sym]
        assert [
            (q.timestamp, q.bid_price, q.bid_size, q.ask_price, q.ask_size, _value(q.ask_exchange))
            for q in got_q
        ] == [(_us(w["t"]), w["bp"], w["bs"], w["ap"], w["as"], w["ax"]) for w in want_q]
    with pytest.raises(APIError) as info:  # the key has no SIP: Alpaca's 403
        client.get_stock_trades(
            StockTradesRequest(symbol_or_symbols="AAPL", start=START, end=END, feed="sip")
        )
    assert info.value.status_code == 403
    assert "subscription does not permit querying recent SIP data" in str(info.value)


def test_the_backfill_client_pages_through_the_same_records_and_waits_for_the_window(sim) -> None:
    client = HistoricalClient(KEY.key, KEY.secret, sim.http_url, feed="iex", page_limit=97)
    a = int(START.timestamp()) * S + 60 * S
    b = a + 180 * S
    try:
        got = client.fetch("trades", SYMBOLS, a, b)
    finally:
        client.close()
    hist = sim.server.history_api.history
    for sym in SYMBOLS:
        assert got[sym] == hist.records("iex", "trades", sym, a, b)
    n = sum(map(len, got.values()))
    assert client.stats.pages == -(-n // 97) > 8  # the limit (8 a second) is met: it waited
    assert client.stats.throttled >= 1 and client.stats.rate_limited == 0


@pytest.mark.parametrize(
    ("secret", "feed", "message"),
    [
        ("wrong", "iex", "Alpaca refused the request (HTTP 403: forbidden.); check APCA_API_KEY_ID"),
        (KEY.secret, "sip", "(HTTP 403: subscription does not permit querying recent SIP data); use --feed iex"),
    ],
)  # fmt: skip
def test_a_refused_key_or_feed_is_one_line_and_exit_2(
    sim, monkeypatch, capsys, tmp_path, secret: str, feed: str, message: str
) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY.key)
    monkeypatch.setenv("APCA_API_SECRET_KEY", secret)
    monkeypatch.setenv("APCA_API_DATA_URL", sim.http_url)
    now = datetime.now(UTC).replace(microsecond=0)
    argv = ["backfill", "--symbols", "AAPL", "--start", now.isoformat(), "--end", "now"]
    argv += ["--feed", feed, "--state-dir", str(tmp_path / "s"), "--data-dir", str(tmp_path / "d")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"torghut backfill: {err[0].split(': ', 1)[1]}"] and message in err[0]
    assert secret not in err[0] or secret == KEY.secret
    assert not (tmp_path / "d").exists()  # failed before ClickHouse was opened
    with pytest.raises(AlpacaAuthError):
        HistoricalClient(KEY.key, secret, sim.http_url, feed=feed).probe(
            "AAPL", int(now.timestamp()) * S
        )
