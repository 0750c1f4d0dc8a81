"""Raw envelopes exactly as the forwarder writes them (Avro, key = symbol, Kafka record
timestamp = event ms), produced straight to the raw topics: backlogs for benchmarks and
event-time scenarios for tests."""

from __future__ import annotations

import logging
import time
from typing import Any

_quiet = logging.getLogger("torghut.envelopes.rdkafka")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class EnvelopeProducer:
    """Trades and quotes with seq per (channel, symbol); blocks (never drops) when full."""

    def __init__(
        self, state: Any, source: str = "bench", feed: str = "iex", linger_ms: int = 20
    ) -> None:
        from confluent_kafka import Producer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroSerializer
        from shared.topics import QUOTES, TRADES

        reg = SchemaRegistryClient(state.registry_url)
        self.trades_topic, self.quotes_topic = TRADES.name, QUOTES.name
        self.trades = AvroSerializer(reg, TRADES)
        self.quotes = AvroSerializer(reg, QUOTES)
        self.source, self.feed = source, feed
        self.p = Producer(
            {
                **state.kafka_client_config(),
                "linger.ms": linger_ms,
                "batch.num.messages": 10_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 500_000,
                "enable.idempotence": True,
                "partitioner": "murmur2_random",
                "logger": _quiet,
            }
        )
        self.seq: dict[tuple[str, str], int] = {}
        self._partitions: dict[str, list[int]] = {}

    def _next(self, ch: str, sym: str) -> int:
        self.seq[(ch, sym)] = self.seq.get((ch, sym), 0) + 1
        return self.seq[(ch, sym)]

    def _produce(self, topic: str, value: bytes, sym: str, event_ns: int) -> None:
        while True:
            try:
                self.p.produce(topic, value, key=sym.encode(), timestamp=event_ns // 1_000_000)
                break
            except BufferError:
                self.p.poll(0.05)
        self.p.poll(0)

    def _envelope(
        self,
        channel: str,
        sym: str,
        event_ns: int,
        payload: dict,
        trace_id: str,
        seq: int | None = None,
    ) -> dict:
        return {
            "ingest_ts": time.time_ns(),
            "event_ts": event_ns,
            "feed": self.feed,
            "channel": channel,
            "symbol": sym,
            "seq": self._next(channel, sym) if seq is None else seq,
            "payload": payload,
            "is_final": True,
            "source": self.source,
            "window": None,
            "trace_id": trace_id,
        }

    def trade(
        self,
        sym: str,
        event_ns: int,
        price: float,
        size: float,
        trade_id: int,
        seq: int | None = None,
        conditions: tuple[str, ...] = ("@",),
    ) -> int:
        """Produce a trade (tape C, `conditions`); returns its seq. `seq` given: the record
        is a re-produced delivery (the forwarder re-sends one that timed out locally with the
        same seq)."""
        payload = {
            "id": trade_id,
            "exchange": "V",
            "price": price,
            "size": size,
            "conditions": list(conditions),
            "tape": "C",
        }
        env = self._envelope("trades", sym, event_ns, payload, f"{sym}-{trade_id}", seq)
        self._produce(self.trades_topic, self.trades.encode(env), sym, event_ns)
        return int(env["seq"])

    def quote(
        self, sym: str, event_ns: int, bid: float, ask: float, bid_size: float, ask_size: float
    ) -> None:
        payload = {
            "bid_exchange": "V",
            "bid_price": bid,
            "bid_size": bid_size,
            "ask_exchange": "V",
            "ask_price": ask,
            "ask_size": ask_size,
            "conditions": ["R"],
            "tape": "C",
        }
        env = self._envelope("quotes", sym, event_ns, payload, "")
        self._produce(self.quotes_topic, self.quotes.encode(env), sym, event_ns)

    def heartbeat(self, event_ns: int) -> None:
        """An event-time heartbeat (shared/heartbeat.py) into every partition of the raw
        trades and quotes topics: event time moves on there without a record."""
        from shared.heartbeat import HEADER, HEADER_VALUE

        for topic in (self.trades_topic, self.quotes_topic):
            parts = self._partitions.get(topic)
            if parts is None:
                meta = self.p.list_topics(topic, timeout=10).topics[topic]
                parts = self._partitions[topic] = sorted(meta.partitions)
            for partition in parts:
                self.p.produce(
                    topic,
                    None,
                    partition=partition,
                    timestamp=event_ns // 1_000_000,
                    headers=[(HEADER, HEADER_VALUE)],
                )
        self.p.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        if self.p.flush(timeout_s) != 0:
            raise RuntimeError(f"envelopes not fully acked within {timeout_s:.0f} s")
