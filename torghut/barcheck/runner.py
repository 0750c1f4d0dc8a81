"""The minute check's loop: read the job's final 1 s bars, Alpaca's minute bars and the job's
status (read_committed), hand them to `logic.MinuteCheck`, and report every check as
Prometheus metrics and a `torghut.ta.BarCheck` record on `ta.bar-checks.v1` (ClickHouse
loads it into `ta_bar_checks` through its Kafka engine queue, like the bars).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.logs import record_fields
from shared.topics import BARS_1M, TA_BAR_CHECKS, TA_BARS_1S, TA_STATUS
from torghut.barcheck.logic import (
    DISAGREE,
    FIELDS,
    NS_PER_MIN,
    RESULTS,
    Check,
    MinuteBar,
    MinuteCheck,
    SecondBar,
    micros_to_ns,
    minute_of,
)
from torghut.barcheck.settings import BarCheckSettings

log = logging.getLogger("torghut.barcheck")

VENDOR_CHANNELS = {"bars": False, "updatedBars": True}  # channel -> is an update
SOURCE = "torghut-bar-check"


class BarCheckMetrics:
    """`torghut_bar_check_*` in a registry of their own (several checkers per process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.minutes = Counter(
            "torghut_bar_check_minutes",
            "(symbol, minute)s checked, by result (a re-check after an updatedBar counts again)",
            ["result"],
            registry=self.registry,
        )
        self.disagreements = Counter(
            "torghut_bar_check_disagreements",
            "fields outside the tolerance in disagreeing minutes",
            ["field"],
            registry=self.registry,
        )
        self.records = Counter(
            "torghut_bar_check_records",
            "records read, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.undecodable = Counter(
            "torghut_bar_check_undecodable_records",
            "records that did not decode (skipped)",
            registry=self.registry,
        )
        self.pending = Gauge(
            "torghut_bar_check_pending_minutes",
            "(symbol, minute)s waiting for a side",
            registry=self.registry,
        )
        self.complete_until = Gauge(
            "torghut_bar_check_watermark_seconds",
            "the job's watermark the check has applied (epoch s): our side is complete before it",
            registry=self.registry,
        )
        for result in RESULTS:
            self.minutes.labels(result)
        for name in FIELDS:
            self.disagreements.labels(name)

    def count(self, check: Check) -> None:
        self.minutes.labels(check.result).inc()
        if check.result == DISAGREE:  # late trades explain the others (LATE_TRADES)
            for name in check.disagreements:
                self.disagreements.labels(name).inc()

    def value(self, name: str, **labels: str) -> float:
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


def check_record(check: Check, check_ns: int) -> dict[str, Any]:
    """The `torghut.ta.BarCheck` record of one check."""
    rec: dict[str, Any] = {
        "symbol": check.symbol,
        "minute": check.minute_ns // 1000,
        "result": check.result,
        "disagreements": list(check.disagreements),
        "price_basis": check.ours.price_basis if check.ours else None,
        "seconds": check.ours.seconds if check.ours else 0,
        "gap": bool(check.ours and check.ours.gap),
        "revision": check.revision,
        "check_ts": check_ns,
        "source": SOURCE,
    }
    for name in FIELDS:
        cast = int if name == "trade_count" else float
        rec[f"ours_{name}"] = cast(getattr(check.ours, name)) if check.ours else None
        rec[f"theirs_{name}"] = cast(getattr(check.theirs, name)) if check.theirs else None
        rec[f"{name}_agrees"] = check.agrees(name)
    return rec


@dataclass
class _PendingWatermark:
    """A status watermark waiting until the bar consumer has read what it covers."""

    watermark_ns: int
    ends: dict[int, int]  # bars partition -> high-water offset when the status was read


@dataclass
class BarChecker:
    """One minute check over Kafka. `run(stop)` until `stop` is set; `step()` is one poll."""

    settings: BarCheckSettings
    metrics: BarCheckMetrics = field(default_factory=BarCheckMetrics)
    on_check: Callable[[Check], None] | None = None
    clock: Callable[[], int] = time.time_ns

    def __post_init__(self) -> None:
        from confluent_kafka import Consumer, Producer

        from shared.registry import SchemaRegistryClient
        from shared.serde import AvroDeserializer, AvroSerializer

        s = self.settings
        registry = SchemaRegistryClient(s.registry_url)
        self._deser = AvroDeserializer(registry)
        kafka = s.kafka.as_librdkafka_dict()
        self._consumer = Consumer(
            {
                **kafka,
                "group.id": s.consumer_group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest" if s.from_beginning else "latest",
            }
        )
        self._consumer.subscribe([TA_BARS_1S.name, BARS_1M.name, TA_STATUS.name])
        self._producer = Producer({**kafka, "linger.ms": 100}) if s.produce else None
        self._serializer = AvroSerializer(registry, TA_BAR_CHECKS) if s.produce else None
        start = self.clock()
        floor = 0 if s.from_beginning else minute_of(start) + NS_PER_MIN
        self.check = MinuteCheck(vendor_wait_ns=int(s.vendor_wait_s * 1e9), floor_ns=floor)
        self._status: dict[int, int] = {}  # subtask -> latest watermark (ns)
        self._late_events: dict[str, int] = {}  # symbol -> the job's late trades so far
        self._pending_wm: deque[_PendingWatermark] = deque(maxlen=1000)
        self.checks: deque[Check] = deque(maxlen=10_000)  # the latest, for tests and debugging

    # --- input -----------------------------------------------------------------------

    def _decode(self, msg: Any) -> dict[str, Any] | None:
        try:
            return self._deser.decode(msg.value(), msg.topic(), msg.partition(), msg.offset())
        except Exception as exc:  # a bad record is counted and skipped, never fatal
            self.metrics.undecodable.inc()
            log.warning("skipped an undecodable record: %s", exc)
            return None

    def _on_record(self, msg: Any) -> None:
        if msg.value() is None:
            return
        topic = msg.topic()
        self.metrics.records.labels(topic).inc()
        rec = self._decode(msg)
        if rec is None:
            return
        if topic == TA_BARS_1S.name:
            if rec.get("is_final"):
                self.check.add_second(rec["symbol"], SecondBar.from_record(rec))
        elif topic == BARS_1M.name:
            updated = VENDOR_CHANNELS.get(rec.get("channel", ""))
            payload = rec.get("payload")
            if updated is None or not isinstance(payload, dict):
                return  # dailyBars
            window = rec.get("window")
            start_ns = micros_to_ns(window["start"]) if window else minute_of(rec["event_ts"])
            self.check.add_vendor(rec["symbol"], start_ns, MinuteBar.from_vendor(payload), updated)
        elif topic == TA_STATUS.name:
            self._on_status(rec)

    def _on_status(self, rec: dict[str, Any]) -> None:
        s = self.settings
        wm = rec.get("watermark_ts")
        if wm is None or (s.ta_job and rec.get("job") != s.ta_job):
            return
        self._status[int(rec["subtask"])] = int(wm)
        for entry in rec.get("symbols") or ():
            symbol, late = entry["symbol"], int(entry["late_events"])
            seen = self._late_events.get(symbol)
            if seen is not None and late > seen:
                self.check.note_late(symbol, int(wm))
            self._late_events[symbol] = late  # the first sighting is the baseline
        if len(self._status) < s.ta_subtasks:
            return
        # every final bar the status covers was committed with it or before; it is read
        # once the bar consumer has reached the bars topic's end as of now
        ends: dict[int, int] = {}
        for tp in self._bar_partitions():
            _, high = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            ends[tp.partition] = high
        self._pending_wm.append(_PendingWatermark(min(self._status.values()), ends))

    def _bar_partitions(self) -> list[Any]:
        return [tp for tp in self._consumer.assignment() if tp.topic == TA_BARS_1S.name]

    def _apply_watermarks(self) -> None:
        if not self._pending_wm:
            return
        positions = {
            tp.partition: tp.offset
            for tp in self._consumer.position(self._bar_partitions())
            if tp.offset >= 0
        }
        keep: deque[_PendingWatermark] = deque(maxlen=1000)
        for p in self._pending_wm:
            if all(positions.get(part, 0) >= end or end <= 0 for part, end in p.ends.items()):
                self.check.set_watermark(p.watermark_ns)
                self.metrics.complete_until.set(self.check.watermark_ns / 1e9)
            else:
                keep.append(p)
        self._pending_wm = keep

    # --- output ----------------------------------------------------------------------

    def _report(self, check: Check) -> None:
        self.checks.append(check)
        self.metrics.count(check)
        if check.result == DISAGREE and self.settings.log_disagreements:
            log.warning(
                "%s minute %s: %s disagree (ours %s, Alpaca's %s)",
                check.symbol,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(check.minute_ns // 10**9)),
                ", ".join(check.disagreements),
                {n: getattr(check.ours, n) for n in check.disagreements},
                {n: getattr(check.theirs, n) for n in check.disagreements},
                # record-level: the minute is the event time; no single record's seq or trace
                extra={
                    **record_fields(check.symbol, "bars", check.minute_ns, None, None, None),
                    "result": check.result,
                    "revision": check.revision,
                },
            )
        if self._producer is not None and self._serializer is not None:
            value = self._serializer.encode(check_record(check, self.clock()))
            self._producer.produce(TA_BAR_CHECKS.name, value, key=check.symbol.encode())
            self._producer.poll(0)
        if self.on_check is not None:
            self.on_check(check)

    def step(self, timeout_s: float = 0.5) -> list[Check]:
        """One poll of up to 500 records, then the checks that became ready."""
        for msg in self._consumer.consume(500, timeout_s):
            if msg.error():
                continue
            self._on_record(msg)
        self._apply_watermarks()
        ready = self.check.ready(self.clock())
        for check in ready:
            self._report(check)
        self.metrics.pending.set(self.check.pending)
        return ready

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(30)
        self._consumer.close()
