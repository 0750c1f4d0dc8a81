"""The JSON wire protocol with a plain websockets client: handshake, auth by message and by
headers, subscription answers, every Alpaca error code, and the msgpack negotiation."""

from __future__ import annotations

from contextlib import contextmanager

import msgpack
import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from torghut.sim import ApiKey, SimConfig, SimServerThread, SyntheticConfig
from torghut.sim.timestamps import parse_rfc3339_ns

# a real simulator (and clients) on loopback sockets
pytestmark = pytest.mark.integration

KEYS = (
    ApiKey(key="good", secret="s3cret"),
    ApiKey(key="iexonly", secret="s", feeds=("iex",)),
    ApiKey(key="other", secret="s"),
)


@pytest.fixture(scope="module")
def sim():
    cfg = SimConfig(
        keys=KEYS,
        symbol_limit=3,
        auth_timeout_s=0.5,
        wait_for_subscriber=False,
        synthetic=SyntheticConfig(
            symbols=("AAPL", "MSFT", "SPY"), trades_per_sec=100, quotes_per_sec=100, seed=5
        ),
    )
    with SimServerThread(cfg) as server:
        yield server


def recv(ws: ClientConnection, timeout: float = 5.0) -> list[dict]:
    return orjson.loads(ws.recv(timeout))


def send(ws: ClientConnection, msg: dict) -> list[dict]:
    ws.send(orjson.dumps(msg).decode())
    return recv(ws)


def control(ws: ClientConnection, msg: dict) -> list[dict]:
    """Send and return the next control answer, skipping market data already in flight."""
    ws.send(orjson.dumps(msg).decode())
    while True:
        frame = recv(ws)
        if frame[0]["T"] in ("success", "error", "subscription"):
            return frame


@contextmanager
def authed(sim, key: str = "good", secret: str = "s3cret", feed: str = "iex"):
    with connect(sim.url_for(feed)) as ws:
        assert recv(ws) == [{"T": "success", "msg": "connected"}]
        assert send(ws, {"action": "auth", "key": key, "secret": secret}) == [
            {"T": "success", "msg": "authenticated"}
        ]
        yield ws


def err(code: int, msg: str) -> list[dict]:
    return [{"T": "error", "code": code, "msg": msg}]


def test_auth_by_message_then_subscribe_answers_full_state(sim):
    with authed(sim) as ws:
        answer = control(
            ws, {"action": "subscribe", "trades": ["AAPL"], "quotes": ["*"], "bars": ["*"]}
        )
        assert answer == [
            {
                "T": "subscription",
                "trades": ["AAPL"],
                "quotes": ["*"],
                "bars": ["*"],
                "updatedBars": [],
                "dailyBars": [],
                "statuses": [],
                "lulds": [],
                "corrections": ["AAPL"],
                "cancelErrors": ["AAPL"],
            }
        ]
        data = []
        while len(data) < 50:
            data += [m for m in recv(ws) if m["T"] in ("t", "q")]
        assert {m["S"] for m in data if m["T"] == "t"} == {"AAPL"}
        assert {m["S"] for m in data if m["T"] == "q"} >= {"MSFT", "SPY"}
        for m in data:
            assert parse_rfc3339_ns(m["t"]) > 0 and m["t"].endswith("Z")
        answer = control(ws, {"action": "unsubscribe", "trades": ["AAPL"], "quotes": ["*"]})
        assert answer[0]["trades"] == [] and answer[0]["corrections"] == []
        assert answer[0]["quotes"] == [] and answer[0]["bars"] == ["*"]


def test_auth_by_headers(sim):
    headers = {"APCA-API-KEY-ID": "good", "APCA-API-SECRET-KEY": "s3cret"}
    with connect(sim.url, additional_headers=headers) as ws:
        assert recv(ws) == [{"T": "success", "msg": "connected"}]
        assert recv(ws) == [{"T": "success", "msg": "authenticated"}]
        assert send(ws, {"action": "auth", "key": "good", "secret": "s3cret"}) == err(
            403, "already authenticated"
        )


def test_bad_header_credentials_fail_and_close(sim):
    headers = {"APCA-API-KEY-ID": "good", "APCA-API-SECRET-KEY": "wrong"}
    with connect(sim.url, additional_headers=headers) as ws:
        assert recv(ws)[0]["msg"] == "connected"
        assert recv(ws) == err(402, "auth failed")
        with pytest.raises(ConnectionClosed):
            recv(ws)


def test_error_400_invalid_syntax_and_401_not_authenticated(sim):
    with connect(sim.url) as ws:
        recv(ws)
        answer = send(ws, {"action": "subscribe", "trades": ["AAPL"]})
        assert answer == err(401, "not authenticated")
        ws.send("{not json")
        assert recv(ws) == err(400, "invalid syntax")
        assert send(ws, {"action": "dance"}) == err(400, "invalid syntax")
        assert send(ws, {"action": "auth", "key": 1, "secret": 2}) == err(400, "invalid syntax")


def test_error_402_auth_failed_keeps_the_connection_for_a_retry(sim):
    with connect(sim.url) as ws:
        recv(ws)
        assert send(ws, {"action": "auth", "key": "good", "secret": "nope"}) == err(
            402, "auth failed"
        )
        assert send(ws, {"action": "auth", "key": "good", "secret": "s3cret"})[0]["msg"] == (
            "authenticated"
        )


def test_error_403_already_authenticated(sim):
    with authed(sim) as ws:
        assert send(ws, {"action": "auth", "key": "good", "secret": "s3cret"}) == err(
            403, "already authenticated"
        )


def test_error_404_auth_timeout_closes(sim):
    with connect(sim.url) as ws:
        recv(ws)
        assert recv(ws, timeout=3) == err(404, "auth timeout")
        with pytest.raises(ConnectionClosed):
            recv(ws)


def test_error_405_symbol_limit_exceeded_leaves_subscription_unchanged(sim):
    with authed(sim) as ws:
        assert control(ws, {"action": "subscribe", "bars": ["A", "B"], "trades": ["*"]})[0][
            "bars"
        ] == ["A", "B"]
        assert control(ws, {"action": "subscribe", "quotes": ["C", "D"]}) == err(
            405, "symbol limit exceeded"
        )
        assert control(ws, {"action": "subscribe", "quotes": ["C"]})[0]["quotes"] == ["C"]


def test_error_406_second_connection_for_the_same_key_is_closed(sim):
    with authed(sim, key="other", secret="s") as first:
        with connect(sim.url) as second:
            recv(second)
            assert send(second, {"action": "auth", "key": "other", "secret": "s"}) == err(
                406, "connection limit exceeded"
            )
            with pytest.raises(ConnectionClosed):
                recv(second)
        assert control(first, {"action": "subscribe", "bars": ["AAPL"]})[0]["T"] == "subscription"


def test_error_409_insufficient_subscription_for_the_feed(sim):
    with connect(sim.url_for("sip")) as ws:
        recv(ws)
        assert send(ws, {"action": "auth", "key": "iexonly", "secret": "s"}) == err(
            409, "insufficient subscription"
        )
        with pytest.raises(ConnectionClosed):
            recv(ws)
    with authed(sim, key="iexonly", secret="s", feed="iex"):
        pass


def test_all_feed_paths_are_served_and_others_are_404(sim):
    for feed in ("iex", "sip", "delayed_sip", "test"):
        with connect(sim.url_for(feed)) as ws:
            assert recv(ws)[0]["msg"] == "connected"
    with pytest.raises(InvalidStatus) as info:
        connect(sim.url_for("crypto"))
    assert info.value.response.status_code == 404


def test_msgpack_content_type_switches_to_binary_frames_with_timestamp_ext(sim):
    headers = {"Content-Type": "application/msgpack"}
    with connect(sim.url, additional_headers=headers) as ws:
        assert msgpack.unpackb(ws.recv(5)) == [{"T": "success", "msg": "connected"}]
        ws.send(msgpack.packb({"action": "auth", "key": "good", "secret": "s3cret"}))
        assert msgpack.unpackb(ws.recv(5))[0]["msg"] == "authenticated"
        ws.send(msgpack.packb({"action": "subscribe", "trades": ["*"]}))
        assert msgpack.unpackb(ws.recv(5))[0]["T"] == "subscription"
        frame = ws.recv(5)
        assert isinstance(frame, bytes)
        trades = [m for m in msgpack.unpackb(frame) if m["T"] == "t"]
        assert trades and all(isinstance(m["t"], msgpack.Timestamp) for m in trades)


def test_counters_track_connections_auths_and_errors(sim):
    counters = sim.counters
    assert counters.connections_total >= 10
    assert counters.auths_total >= 5
    assert {400, 401, 402, 403, 404, 405, 406, 409} <= set(counters.errors_sent)
