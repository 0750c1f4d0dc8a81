"""The forwarder against the real simulator and the real local Kafka and registry: every
channel as Avro envelopes, dedup under a disconnect storm, 406, seq across restarts,
hostile frames, SCRAM over SASL_SSL and secrets that never leak."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter, defaultdict

import msgpack
import pytest

from forwarder.app import ForwarderThread
from forwarder.envelope import CHANNEL_BY_TYPE
from forwarder.metrics import CHANNEL_INDEX
from forwarder.settings import ForwarderSettings
from shared.registry import SchemaRegistryClient
from shared.serde import AvroSerializer
from shared.topics import QUOTES, TRADES
from tests.conftest import wait_for
from tests.support.forwarder import envelopes, fwd_settings, market, status_events, symbols_for
from tests.support.hostile import HostileServer, hostile_frames
from torghut.sim import (
    ApiKey,
    FaultConfig,
    JsonlRecorder,
    ReplayConfig,
    SimConfig,
    SimServerThread,
    SyntheticMarket,
    read_jsonl,
)

pytestmark = pytest.mark.integration


def test_every_channel_arrives_as_avro_envelopes_with_monotonic_seq(stack, tmp_path, unique):
    syms = symbols_for(unique)
    # 130 s of synthetic market (minutes close: bars, updated bars, LULD bands), replayed fast;
    # it ends before now (event times more than max_future_s ahead are refused)
    t0 = time.time_ns() - 135 * 10**9
    mkt = SyntheticMarket(market(syms, trades_per_sec=20, quotes_per_sec=5, late_rate=0.05), t0, 5)
    rec = JsonlRecorder(tmp_path / "replay.jsonl")
    rec.write(mkt.advance(t0 + 130 * 10**9) + mkt.finish())
    rec.close()
    cfg = SimConfig(
        source="replay",
        replay=ReplayConfig(path=tmp_path / "replay.jsonl", pace="fast"),
        record_path=tmp_path / "sent.jsonl",
    )
    with SimServerThread(cfg) as sim, ForwarderThread(fwd_settings(stack, sim.url)) as fwd:
        sim.wait_until(lambda: sim.source_done, 30, "the replay")
        sent = read_jsonl(tmp_path / "sent.jsonl")
        wait_for(lambda: sum(fwd.metrics.messages[:-1]) >= len(sent), 30, "all acks")
    got = [e for e in envelopes(stack, symbols=set(syms)) if e["channel"] != "status"]
    assert Counter(e["channel"] for e in got) == Counter(CHANNEL_BY_TYPE[m["T"]] for m in sent)
    assert {e["channel"] for e in got} == set(CHANNEL_BY_TYPE.values())
    sent_trades = {(m["S"], m["i"]): m for m in sent if m["T"] == "t"}
    for e in got:
        assert e["feed"] == "iex" and e["source"] == "alpaca" and e["trace_id"]
        assert e["_key"] == (
            b"iex" if e["channel"] in ("statuses", "lulds") else e["symbol"].encode()
        )
        if e["channel"] == "trades":
            m = sent_trades[(e["symbol"], e["payload"]["id"])]
            assert e["event_ts"] == m["t"]  # nanoseconds, exactly
            assert e["payload"]["price"] == m["p"] and e["payload"]["size"] == m["s"]
        if e["channel"] in ("trades", "quotes"):
            # the TA job's watermarks are the Kafka record timestamps: event time in ms
            assert e["_timestamp_ms"] == e["event_ts"] // 1_000_000
        if e["channel"] in ("bars", "dailyBars"):
            assert e["window"]["size_ms"] in (60_000, 86_400_000) and e["is_final"]
    last: dict = {}
    for e in got:
        k = (e["channel"], e["symbol"])
        assert e["seq"] > last.get(k, 0)
        last[k] = e["seq"]


def test_disconnect_storm_with_resends_and_duplicates_leaves_no_duplicate(stack, tmp_path, unique):
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(syms),
        duration_s=6.0,
        record_path=tmp_path / "sent.jsonl",
        faults=FaultConfig(drop_every_s=0.8, resend_last=300, duplicate_rate=0.1, seed=3),
    )
    with SimServerThread(cfg) as sim, ForwarderThread(fwd_settings(stack, sim.url)) as fwd:
        sim.wait_until(lambda: sim.source_done, 30, "the bounded source")
        time.sleep(1.5)  # let the last reconnect re-send
        counters = sim.counters.snapshot()
    m = fwd.metrics
    assert counters["drops_injected_total"] >= 3 and counters["resent_messages_total"] > 0
    assert m.reconnects >= 3 and m.dedup_dropped[CHANNEL_INDEX["trades"]] > 0
    sent_ids = {(x["S"], x["i"]) for x in read_jsonl(tmp_path / "sent.jsonl") if x["T"] == "t"}
    got = [e for e in envelopes(stack, (TRADES,), set(syms)) if e["channel"] == "trades"]
    ids = [(e["symbol"], e["payload"]["id"]) for e in got]
    assert ids and len(ids) == len(set(ids)), "a trade id reached Kafka twice"
    assert set(ids) <= sent_ids
    events = Counter(e["payload"]["event"] for e in status_events(stack, fwd))
    assert events["disconnected"] >= 3 and events["reconnecting"] >= 3
    assert events["subscribed"] >= 4


def test_a_second_forwarder_on_the_same_key_gets_406_and_backs_off(stack, unique):
    cfg = SimConfig(
        synthetic=market(symbols_for(unique), trades_per_sec=5, quotes_per_sec=0),
        keys=(ApiKey(key="key", secret="secret"),),
        connection_limit=1,
    )
    with SimServerThread(cfg) as sim, ForwarderThread(fwd_settings(stack, sim.url)) as first:
        wait_for(lambda: first.forwarder.ready()[0], 20, "the first forwarder to be ready")
        with ForwarderThread(fwd_settings(stack, sim.url)) as second:
            wait_for(lambda: second.metrics.reconnects >= 2, 20, "the second to retry")
            assert not second.forwarder.ready()[0]
            assert first.forwarder.ready()[0]
    status = status_events(stack, second)
    codes = [e["payload"]["code"] for e in status if e["payload"]["event"] == "error"]
    assert codes and set(codes) == {406}
    delays = [
        float(e["payload"]["detail"].split("=")[1])
        for e in status
        if e["payload"]["event"] == "reconnecting"
    ]
    assert delays and min(delays) >= 0.5  # the conflict backoff, not the 0.05 s base


def test_bad_credentials_are_fatal_with_exit_code_2(stack, unique):
    cfg = SimConfig(synthetic=market(symbols_for(unique)), keys=(ApiKey(key="a", secret="b"),))
    with SimServerThread(cfg) as sim:
        fwd = ForwarderThread(fwd_settings(stack, sim.url))
        fwd.start()
        assert fwd.join(30) == 2


def test_seq_is_monotonic_across_a_restart_and_above_the_kafka_tail(stack, tmp_path, unique):
    syms = symbols_for(unique)
    for run in range(2):
        cfg = SimConfig(
            synthetic=market(syms, seed=run),
            max_trades=300,
            record_path=tmp_path / f"sent{run}.jsonl",
        )
        with SimServerThread(cfg) as sim, ForwarderThread(fwd_settings(stack, sim.url)) as fwd:
            sim.wait_until(lambda: sim.source_done, 30, "the bounded source")
            n = len(read_jsonl(tmp_path / f"sent{run}.jsonl"))
            wait_for(lambda f=fwd, n=n: sum(f.metrics.messages[:-1]) >= n, 30, "acks")
        if run == 0:
            # a record far in the future (as from a host whose clock ran ahead)
            ser = AvroSerializer(SchemaRegistryClient(stack.registry_url), TRADES)
            future = int(time.time() * 1e6) + 10**12
            rec = {
                "ingest_ts": 1,
                "event_ts": 1,
                "feed": "iex",
                "channel": "trades",
                "symbol": syms[0] + "F",
                "seq": future,
                "payload": (
                    "torghut.Trade",
                    {
                        "id": 1,
                        "exchange": "V",
                        "price": 1.0,
                        "size": 1.0,
                        "conditions": [],
                        "tape": "",
                    },
                ),
                "is_final": True,
                "source": "test",
                "window": None,
                "trace_id": "",
            }
            from tests.support.kafka import producer

            p = producer(stack)
            p.produce(TRADES.name, ser.encode(rec), rec["symbol"].encode())
            p.flush(10)
    got = envelopes(stack, (TRADES, QUOTES), set(syms))
    by_key: dict = defaultdict(list)
    for e in got:
        by_key[(e["channel"], e["symbol"])].append(e["seq"])
    for (channel, _), seqs in by_key.items():
        assert all(a < b for a, b in itertools.pairwise(seqs)), "seq regressed"
        if channel in ("trades", "quotes"):  # both runs sent these
            assert min(seqs) < future < max(seqs)  # run 2 started above the Kafka tail


# --- hostile frames ----------------------------------------------------------------------

VALID_TRADE = {
    "T": "t",
    "S": "HOST",
    "i": 1,
    "x": "V",
    "p": 1.0,
    "s": 1,
    "c": ["@"],
    "z": "C",
    "t": msgpack.Timestamp.from_unix_nano(1_700_000_000_000_000_000),
}


@pytest.fixture(scope="module")
def hostile(stack):
    server = HostileServer()
    fwd = ForwarderThread(fwd_settings(stack, f"ws://127.0.0.1:{server.port}/v2/iex")).start()
    wait_for(lambda: fwd.forwarder.ready()[0], 20, "forwarder subscribed to the hostile server")
    yield server, fwd
    fwd.stop()


def test_ten_thousand_hostile_frames_leave_the_forwarder_alive_and_counting(hostile):
    server, fwd = hostile
    stream = fwd.forwarder._stream
    frames = hostile_frames(10_000, seed=20240301)
    before = stream.frames_read
    for frame in frames:
        server.send(frame)
    wait_for(lambda: stream.frames_read >= before + len(frames), 90, "the forwarder to read all")
    assert fwd.forwarder.healthy()[0] and fwd.forwarder.ready()[0]
    rejected = fwd.metrics.frames_rejected
    assert {"malformed_frame", "invalid_field", "unknown_type", "not_an_object"} <= set(rejected)
    # far-future event times never reach the broker (it would refuse them as timestamps)
    assert rejected["event_ts_in_future"] > 0 and rejected["broker_refused"] == 0
    assert sum(rejected.values()) > 5000


def test_after_the_hostile_frames_a_valid_trade_still_reaches_kafka(hostile):
    server, fwd = hostile
    assert sum(fwd.metrics.frames_rejected.values()) > 1000
    assert fwd.forwarder._stream.frames_read >= 10_000
    acked = fwd.metrics.messages[CHANNEL_INDEX["trades"]]
    server.send(msgpack.packb([{**VALID_TRADE, "S": "ALIVE", "i": time.time_ns()}]))
    wait_for(lambda: fwd.metrics.messages[CHANNEL_INDEX["trades"]] > acked, 20, "the ack")
    assert fwd.forwarder.ready()[0]


# --- security ----------------------------------------------------------------------------


def test_scram_sasl_ssl_listener_and_no_secret_in_logs_or_metrics(
    stack, monkeypatch, caplog, unique
):
    if os.environ.get("TORGHUT_TESTCONTAINERS") == "1":  # the only stack without the listener
        pytest.skip("the testcontainers stack has no SASL_SSL listener")
    assert stack.kafka_sasl_ssl_bootstrap, "`torghut stack up` must serve SASL_SSL"
    alpaca_secret = "alpaca-" + unique("secret")
    monkeypatch.setenv("TORGHUT_FWD_ALPACA_KEY_ID", "key")
    monkeypatch.setenv("TORGHUT_FWD_ALPACA_SECRET_KEY", alpaca_secret)
    monkeypatch.setenv("TORGHUT_FWD_KAFKA_SASL_PASSWORD", stack.kafka_scram_password)
    syms = symbols_for(unique)
    cfg = SimConfig(
        synthetic=market(syms), max_trades=200, keys=(ApiKey(key="key", secret=alpaca_secret),)
    )
    caplog.set_level(logging.DEBUG)
    with SimServerThread(cfg) as sim:
        s = ForwarderSettings(
            alpaca_url=sim.url,
            registry_url=stack.registry_url,
            http_port=0,
            linger_ms=5,
            kafka_bootstrap=stack.kafka_sasl_ssl_bootstrap,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=stack.kafka_scram_user,
            kafka_ssl_ca_location=stack.kafka_ca_file,
        )
        with ForwarderThread(s) as fwd:
            sim.wait_until(lambda: sim.source_done, 30, "the bounded source")
            wait_for(lambda: fwd.metrics.messages[CHANNEL_INDEX["trades"]] >= 200, 30, "acks")
            import urllib.request

            port = fwd.forwarder.http_port
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz").read().decode()
    assert ready.startswith("ok")
    assert "torghut_forwarder_event_lag_seconds_bucket" in metrics
    text = caplog.text + metrics + repr(s) + str(s.model_dump())
    for secret in (alpaca_secret, stack.kafka_scram_password):
        assert secret not in text
    got = [e for e in envelopes(stack, (TRADES,), set(syms)) if e["channel"] == "trades"]
    assert len(got) == 200
