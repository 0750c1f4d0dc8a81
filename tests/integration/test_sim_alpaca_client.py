"""Compatibility proof: the official alpaca-py ``StockDataStream`` (msgpack) against the
simulator receives trades, quotes, bars, statuses, corrections and cancel errors as
parsed models whose values equal what the simulator recorded."""

from __future__ import annotations

import asyncio
import threading
import warnings
from datetime import UTC, datetime

import msgpack
import pytest

from torghut.sim import ApiKey, SimConfig, SimServerThread, SyntheticConfig, read_jsonl

# a real simulator (and clients) on loopback sockets
pytestmark = pytest.mark.integration

with warnings.catch_warnings():  # alpaca-py imports the deprecated websockets.legacy client
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.data.live import StockDataStream
    from alpaca.data.models import (
        Bar,
        Quote,
        Trade,
        TradeCancel,
        TradeCorrection,
        TradingStatus,
    )

SYMBOLS = ("AAPL", "MSFT")


def _dt(ns: int) -> datetime:
    # alpaca-py turns msgpack Timestamps into datetimes: microsecond precision
    return datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC).replace(microsecond=ns // 1000 % 10**6)


def _config(tmp_path, max_trades: int) -> SimConfig:
    return SimConfig(
        synthetic=SyntheticConfig(
            symbols=(*SYMBOLS, "NVDA"),
            seed=11,
            trades_per_sec=200,
            quotes_per_sec=100,
            correction_rate=0.05,
            cancel_error_rate=0.05,
            out_of_order_rate=0.05,
        ),
        max_trades=max_trades,
        record_path=tmp_path / "sent.jsonl",
    )


class _StreamRunner:
    """Runs ``StockDataStream._run_forever`` on its own loop in a thread; stops it cleanly."""

    def __init__(self, stream: StockDataStream) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.stream._run_forever())
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> _StreamRunner:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self.stream._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self.stream.stop_ws(), loop).result(timeout=5)


def _stop(sim: SimServerThread, runner: _StreamRunner) -> None:
    runner.__exit__()
    sim.stop()  # closing the socket wakes the client's recv, so it exits without its 5 s poll
    runner.thread.join(10)
    assert not runner.thread.is_alive(), "alpaca-py stream did not stop"
    assert runner.error is None


def test_alpaca_py_stock_stream_receives_parsed_models_equal_to_what_was_sent(tmp_path):
    got: dict[str, list] = {k: [] for k in ("t", "q", "b", "s", "c", "x")}

    def collect(kind):
        async def handler(item):
            got[kind].append(item)

        return handler

    sim = SimServerThread(_config(tmp_path, max_trades=600)).start()
    stream = StockDataStream("key", "secret", url_override=sim.url)
    stream.subscribe_trades(collect("t"), *SYMBOLS)
    stream.subscribe_quotes(collect("q"), *SYMBOLS)
    stream.subscribe_bars(collect("b"), "*")
    stream.subscribe_trading_statuses(collect("s"), *SYMBOLS)
    stream.register_trade_corrections(collect("c"))
    stream.register_trade_cancels(collect("x"))
    runner = _StreamRunner(stream).__enter__()
    try:
        sim.wait_until(lambda: sim.source_done, 20, "the bounded source to finish")
        sent = read_jsonl(tmp_path / "sent.jsonl")
        want = {
            k: [m for m in sent if m["T"] == k and (k == "b" or m["S"] in SYMBOLS)] for k in got
        }
        sim.wait_until(
            lambda: all(len(got[k]) == len(want[k]) for k in got),
            15,
            "alpaca-py to receive everything sent",
        )
    finally:
        _stop(sim, runner)

    assert all(want[k] for k in got), {k: len(v) for k, v in want.items()}
    for model, msg in zip(got["t"], want["t"], strict=True):
        assert isinstance(model, Trade)
        assert (model.symbol, model.id, model.price, model.size) == (
            msg["S"],
            msg["i"],
            msg["p"],
            msg["s"],
        )
        assert model.timestamp == _dt(msg["t"]) and model.exchange == "V"
        assert model.conditions == msg["c"] and model.tape == msg["z"]
    for model, msg in zip(got["q"], want["q"], strict=True):
        assert isinstance(model, Quote)
        assert (model.bid_price, model.bid_size, model.ask_price, model.ask_size) == (
            msg["bp"],
            msg["bs"],
            msg["ap"],
            msg["as"],
        )
        assert model.timestamp == _dt(msg["t"])
    for model, msg in zip(got["b"], want["b"], strict=True):
        assert isinstance(model, Bar)
        assert (
            model.symbol,
            model.open,
            model.high,
            model.low,
            model.close,
            model.volume,
            model.trade_count,
            model.vwap,
        ) == (msg["S"], msg["o"], msg["h"], msg["l"], msg["c"], msg["v"], msg["n"], msg["vw"])
        assert model.timestamp == _dt(msg["t"])
    for model, msg in zip(got["c"], want["c"], strict=True):
        assert isinstance(model, TradeCorrection)
        assert (
            model.symbol,
            model.original_id,
            model.original_price,
            model.corrected_id,
            model.corrected_price,
            model.corrected_size,
        ) == (msg["S"], msg["oi"], msg["op"], msg["ci"], msg["cp"], msg["cs"])
    for model, msg in zip(got["x"], want["x"], strict=True):
        assert isinstance(model, TradeCancel)
        assert (model.id, model.price, model.size, model.action) == (
            msg["i"],
            msg["p"],
            msg["s"],
            "C",
        )
    assert all(isinstance(m, TradingStatus) and m.status_code == "T" for m in got["s"])
    counters = sim.counters
    assert counters.auths_total == 1 and counters.connections_total == 1
    assert counters.messages_sent["t"] == len(want["t"])


def test_alpaca_py_raw_mode_keeps_nanosecond_msgpack_timestamps(tmp_path):
    trades: list[dict] = []

    async def on_trade(raw):
        trades.append(raw)

    sim = SimServerThread(_config(tmp_path, max_trades=100)).start()
    stream = StockDataStream("key", "secret", raw_data=True, url_override=sim.url)
    stream.subscribe_trades(on_trade, "*")
    runner = _StreamRunner(stream).__enter__()
    try:
        sim.wait_until(lambda: sim.source_done, 20, "the bounded source to finish")
        sim.wait_until(lambda: len(trades) >= 100, 15, "100 raw trades")
    finally:
        _stop(sim, runner)
    sent = [m for m in read_jsonl(tmp_path / "sent.jsonl") if m["T"] == "t"]
    assert all(isinstance(m["t"], msgpack.Timestamp) for m in trades)
    assert [(m["S"], m["i"], m["t"].to_unix_nano()) for m in trades] == [
        (m["S"], m["i"], m["t"]) for m in sent
    ]


def test_alpaca_py_stops_on_insufficient_subscription():
    cfg = SimConfig(keys=(ApiKey(key="key", secret="secret", feeds=("iex",)),))
    with SimServerThread(cfg) as sim:
        stream = StockDataStream("key", "secret", url_override=sim.url_for("sip"))

        async def on_trade(_):
            pass

        stream.subscribe_trades(on_trade, "AAPL")
        runner = _StreamRunner(stream).__enter__()
        runner.thread.join(10)  # alpaca-py returns from _run_forever on error 409
        assert not runner.thread.is_alive()
        assert sim.counters.errors_sent[409] == 1
