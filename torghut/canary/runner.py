"""The canary's Kafka loop and metrics (docs/design.md, "The canary").

Two consumers, both from the topics' end, offsets never committed:
- `read_uncommitted` on the raw trades and quotes and on the job's `ta.bars.1s.v1` and
  `ta.signals.v1`: the raw newest event time, and the derived output's newest as soon as
  the job writes it (provisional records and records of a transaction not yet committed
  included: the lag measures whether the operators keep up, not the checkpoint cadence);
- `read_committed` on `ta.bars.1s.v1`: the newest *final* bar a consumer can read.
Heartbeats and records of other channels (corrections, gap markers) are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.heartbeat import is_heartbeat
from shared.market_calendar import session_open
from shared.topics import QUOTES, TA_BARS_1S, TA_SIGNALS, TRADES
from torghut.barcheck.logic import micros_to_ns
from torghut.canary.book import CanaryBook
from torghut.canary.settings import CanarySettings

log = logging.getLogger(__name__)

RAW_CHANNELS = {TRADES.name: "trades", QUOTES.name: "quotes"}
DERIVED_TOPICS = (TA_BARS_1S.name, TA_SIGNALS.name)


class CanaryMetrics:
    """The canary's Prometheus metrics, in their own registry. Labels carry only the
    configured symbols (bounded); other symbols are one counter."""

    def __init__(self, calendar: str = "XNYS") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calendar = calendar
        self.last_event = Gauge(
            "torghut_symbol_last_event_timestamp_seconds",
            "newest raw event time (trade or quote) of a configured symbol, epoch seconds",
            ["symbol"],
            registry=r,
        )
        self.session_open = Gauge(
            "torghut_market_session_open",
            "1 while the exchange calendar is in its regular session (exchange_calendars)",
            ["calendar"],
            registry=r,
        )
        self.raw_ts = Gauge(
            "torghut_canary_raw_event_timestamp_seconds",
            "newest raw event time read, per raw topic, partition and configured symbol",
            ["topic", "partition", "symbol"],
            registry=r,
        )
        self.derived_ts = Gauge(
            "torghut_canary_derived_event_timestamp_seconds",
            "newest event_ts of the job's bars/signals (provisional or final, read_uncommitted)",
            ["topic", "partition", "symbol"],
            registry=r,
        )
        self.final_ts = Gauge(
            "torghut_canary_final_bar_timestamp_seconds",
            "newest final 1 s bar's window end (read_committed), epoch seconds",
            ["partition", "symbol"],
            registry=r,
        )
        self.lag = Gauge(
            "torghut_canary_lag_seconds",
            "newest raw trade event time minus newest derived event time, per symbol",
            ["symbol"],
            registry=r,
        )
        self.final_lag = Gauge(
            "torghut_canary_final_lag_seconds",
            "newest raw trade event time minus newest final bar end (read_committed)",
            ["symbol"],
            registry=r,
        )
        self.input_idle = Gauge(
            "torghut_canary_input_idle_seconds",
            "wall seconds since the newest raw event time of the configured symbols moved",
            registry=r,
        )
        self.input_stalled = Gauge(
            "torghut_canary_input_stalled",
            "1 while the raw input has been idle longer than TORGHUT_CANARY_INPUT_STALL_S",
            registry=r,
        )
        self.lagging = Gauge(
            "torghut_canary_lagging",
            "1 while a symbol lags more than TORGHUT_CANARY_LAG_THRESHOLD_S and the input "
            "is not stalled",
            registry=r,
        )
        self.records = Counter(
            "torghut_canary_records",
            "records read, per topic",
            ["topic"],
            registry=r,
        )
        self.other_symbols = Counter(
            "torghut_canary_other_symbol_records",
            "records of symbols that are not configured (one aggregate, no symbol label)",
            registry=r,
        )
        self.undecodable = Counter(
            "torghut_canary_undecodable_records",
            "records that could not be decoded (skipped)",
            registry=r,
        )
        self.session_open.labels(calendar).set(0)
        self.input_idle.set(0)
        self.input_stalled.set(0)
        self.lagging.set(0)
        for topic in (*RAW_CHANNELS, *DERIVED_TOPICS):
            self.records.labels(topic)


@dataclass
class Canary:
    """One canary over Kafka. `run(stop)` until `stop` is set; `step()` is one poll."""

    settings: CanarySettings
    clock: Callable[[], int] = time.time_ns
    metrics: CanaryMetrics = field(init=False)

    def __post_init__(self) -> None:
        from confluent_kafka import Consumer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroDeserializer

        s = self.settings
        self.metrics = CanaryMetrics(s.calendar)
        self.book = CanaryBook(frozenset(s.symbols), self.clock())
        self._derived: dict[tuple[str, str, str], int] = {}  # (topic, partition, symbol)
        self._deser = AvroDeserializer(SchemaRegistryClient(s.registry_url))
        kafka = s.kafka.as_librdkafka_dict()
        common = {
            **kafka,
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
        self._live = Consumer(
            {**common, "group.id": s.consumer_group, "isolation.level": "read_uncommitted"}
        )
        self._live.subscribe([*RAW_CHANNELS, *DERIVED_TOPICS])
        self._final = Consumer(
            {**common, "group.id": s.consumer_group + "-final", "isolation.level": "read_committed"}
        )
        self._final.subscribe([TA_BARS_1S.name])
        self.update(self.clock())

    def _decode(self, msg: Any) -> dict[str, Any] | None:
        try:
            return self._deser.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
        except Exception as exc:  # a bad record is counted and skipped, never fatal
            self.metrics.undecodable.inc()
            log.warning(
                "skipped an undecodable record",
                extra={"topic": msg.topic(), "partition": msg.partition(), "error": str(exc)},
            )
            return None

    def _on_live(self, msg: Any, now_ns: int) -> None:
        if is_heartbeat(msg.value(), msg.headers()) or msg.value() is None:
            return
        topic, part = msg.topic(), str(msg.partition())
        self.metrics.records.labels(topic).inc()
        rec = self._decode(msg)
        if rec is None:
            return
        symbol, event_ns = rec.get("symbol"), rec.get("event_ts")
        if not isinstance(symbol, str) or not isinstance(event_ns, int):
            return
        m = self.metrics
        channel = RAW_CHANNELS.get(topic)
        if channel is not None:
            if rec.get("channel") != channel:
                return  # corrections, cancelErrors, gap markers: not new market events
            if self.book.on_raw(channel, symbol, event_ns, now_ns):
                newest = self.book.times[symbol].raw_ns[channel]
                m.raw_ts.labels(topic, part, symbol).set(newest / 1e9)
            else:
                m.other_symbols.inc()
        elif self.book.on_derived(symbol, event_ns):
            key = (topic, part, symbol)
            if event_ns > self._derived.get(key, 0):
                self._derived[key] = event_ns
                m.derived_ts.labels(topic, part, symbol).set(event_ns / 1e9)
        else:
            m.other_symbols.inc()

    def _on_final(self, msg: Any) -> None:
        if msg.value() is None:
            return
        rec = self._decode(msg)
        if rec is None or not rec.get("is_final"):
            return
        window = rec["window"]
        end_ns = micros_to_ns(window["start"]) + int(window["size_ms"]) * 1_000_000
        symbol = rec["symbol"]
        if self.book.on_final(symbol, end_ns):
            self.metrics.final_ts.labels(str(msg.partition()), symbol).set(
                self.book.times[symbol].final_ns / 1e9
            )

    def update(self, now_ns: int) -> None:
        """The gauges that depend on the clock and on every symbol."""
        s, m, book = self.settings, self.metrics, self.book
        m.session_open.labels(s.calendar).set(1 if session_open(now_ns, s.calendar) else 0)
        idle = book.input_idle_s(now_ns)
        m.input_idle.set(idle)
        stalled = idle > s.input_stall_s
        m.input_stalled.set(1 if stalled else 0)
        for symbol, t in book.times.items():
            if t.last_event_ns:
                m.last_event.labels(symbol).set(t.last_event_ns / 1e9)
            lag = t.lag_ns()
            if lag is not None:
                m.lag.labels(symbol).set(lag / 1e9)
            final_lag = t.final_lag_ns()
            if final_lag is not None:
                m.final_lag.labels(symbol).set(final_lag / 1e9)
        m.lagging.set(1 if not stalled and book.max_lag_s() > s.lag_threshold_s else 0)

    def step(self, timeout_s: float = 0.2) -> None:
        for msg in self._live.consume(1000, timeout_s):
            if not msg.error():
                self._on_live(msg, self.clock())
        for msg in self._final.consume(1000, 0):
            if not msg.error():
                self._on_final(msg)
        self.update(self.clock())

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        self._live.close()
        self._final.close()
