"""Driving the real forwarder in tests: its settings against the stack, the envelopes it
wrote, test symbols and markets."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from forwarder.app import ForwarderThread
from forwarder.settings import ForwarderSettings
from shared.registry import SchemaRegistryClient
from shared.serde import AvroDeserializer
from shared.topics import BARS_1M, QUOTES, STATUS, TRADES
from tests.support.kafka import consume
from torghut.sim import ReplayConfig, SimConfig, SimServerThread, SyntheticConfig

RAW = (TRADES, QUOTES, BARS_1M, STATUS)


def fwd_settings(stack, url: str, **kw) -> ForwarderSettings:
    """Forwarder settings against `stack` reading `url`, with the drills' short backoffs
    (0.05 s doubling to 0.5 s, 1 s after a 406); `kw` overrides any of them."""
    base = dict(
        alpaca_key_id="key",
        alpaca_secret_key="secret",
        alpaca_url=url,
        kafka_bootstrap=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        http_port=0,
        linger_ms=5,
        backoff_base_s=0.05,
        backoff_cap_s=0.5,
        conflict_backoff_s=1.0,
        status_interval_s=0.5,
    )
    base.update(kw)
    return ForwarderSettings(**base)


def envelopes(stack, topics=RAW, symbols=None, settle_s=1.0) -> list[dict]:
    """Every envelope on `topics` (optionally only these symbols), in offset order."""
    deser = AvroDeserializer(SchemaRegistryClient(stack.registry_url))
    out = []
    for topic in topics:
        # the forwarder's event-time heartbeats (no value) are not envelopes
        for m in consume(
            stack, topic.name, 1, timeout_s=10, settle_s=settle_s, skip_heartbeats=True
        ):
            env = deser.decode(m.value(), m.topic(), m.partition(), m.offset())
            env["_key"] = m.key()
            env["_timestamp_ms"] = m.timestamp()[1]
            if symbols is None or env["symbol"] in symbols:
                out.append(env)
    return out


def status_events(stack, fwd: ForwarderThread) -> list[dict]:
    """ForwarderStatus envelopes of one forwarder (its trace-id prefix is per instance)."""
    prefix = fwd.forwarder._trace.prefix.decode()
    return [
        e
        for e in envelopes(stack, (STATUS,))
        if e["channel"] == "status" and e["trace_id"].startswith(prefix)
    ]


def symbols_for(unique, n=2) -> tuple[str, ...]:
    """`n` symbols no other test uses (from the `unique` fixture)."""
    tag = unique("x")[-6:].upper()
    return tuple(f"Z{tag}{i}" for i in range(n))


def market(symbols, **kw) -> SyntheticConfig:
    """A seeded synthetic market of `symbols` with corrections, cancels and late trades."""
    args = dict(
        symbols=symbols,
        seed=5,
        trades_per_sec=300,
        quotes_per_sec=200,
        correction_rate=0.02,
        cancel_error_rate=0.02,
        late_rate=0.02,
    )
    args.update(kw)
    return SyntheticConfig(**args)


@contextlib.contextmanager
def replayed_through_forwarder(
    stack, replay_jsonl: Path, sent_jsonl: Path, **settings
) -> Iterator[tuple[SimServerThread, ForwarderThread]]:
    """The simulator replays `replay_jsonl` as fast as a forwarder against `stack` reads it
    (writing what it sent to `sent_jsonl`); yields (sim, forwarder) once all is sent.
    `settings`: more `ForwarderSettings` fields."""
    cfg = SimConfig(
        source="replay",
        replay=ReplayConfig(path=replay_jsonl, pace="fast"),
        record_path=sent_jsonl,
    )
    settings = ForwarderSettings(
        alpaca_key_id="key",
        alpaca_secret_key="secret",
        kafka_bootstrap=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        http_port=0,
        linger_ms=5,
        **settings,
    )
    with SimServerThread(cfg) as sim:  # noqa: SIM117 - the forwarder needs sim.url
        with ForwarderThread(settings.model_copy(update={"alpaca_url": sim.url})) as fwd:
            sim.wait_until(lambda: sim.source_done, 60, "the replay")
            yield sim, fwd
