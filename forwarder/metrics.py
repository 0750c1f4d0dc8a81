"""``ForwarderMetrics``: Prometheus metrics of one forwarder.

The hot path bumps plain ints and a bucket array (no locks, no label lookups per message);
a custom collector turns them into Prometheus families at scrape time. Each forwarder has
its own ``CollectorRegistry``, so several can run in one process (tests).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from forwarder.envelope import CHANNEL_BY_TYPE, GAP_CHANNEL, STATUS_CHANNEL

# the status channel stays last (callers sum messages[:-1] for market data)
CHANNELS: tuple[str, ...] = (*CHANNEL_BY_TYPE.values(), GAP_CHANNEL, STATUS_CHANNEL)
CHANNEL_INDEX: dict[str, int] = {c: i for i, c in enumerate(CHANNELS)}
TYPE_INDEX: dict[str, int] = {t: CHANNEL_INDEX[c] for t, c in CHANNEL_BY_TYPE.items()}
LAG_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS_NS = tuple(int(b * 1e9) for b in LAG_BUCKETS_S)
PREFIX = "torghut_forwarder"


class ForwarderMetrics:
    """Counters the forwarder updates; read by ``/metrics`` through ``render()``."""

    def __init__(self) -> None:
        n = len(CHANNELS)
        self.messages = [0] * n  # acked by the broker
        self.received = [0] * n  # read from the socket, before dedup
        self.dedup_dropped = [0] * n
        self.lag_buckets = [0] * (len(LAG_BUCKETS_NS) + 1)
        self.lag_sum_ns = 0
        self.reconnects = 0
        self.produce_errors = 0
        self.frames = 0
        self.frames_rejected: Counter[str] = Counter()
        self.queue_depth = 0
        self.connected = 0
        self.ready = 0
        self.heartbeats = 0  # heartbeat records produced (forwarder/heartbeat.py)
        self.heartbeat_errors = 0  # heartbeats not produced or not delivered
        self.heartbeat_ms = 0  # record timestamp of the last heartbeats (event time, ms)
        self.gaps = 0  # reconnects after a connection that had delivered data (forwarder/gaps.py)
        self.gap_markers = 0  # gap markers produced (one per symbol seen and gap)
        # the frame recording (forwarder/recorder.py; TORGHUT_FWD_RECORD_DIR): counters of
        # the writer thread, except queue_full drops (the event loop's)
        self.recorded_frames = 0  # frames in flushed zstd frames of the recording
        self.record_bytes = 0  # compressed bytes written to segments
        self.record_dropped_queue_full = 0  # frames left out: the writer's queue was full
        self.record_dropped_write_error = 0  # frames lost by failed writes (disk full)
        self.record_segments = 0  # segment files in the recording directory
        self.record_queue_bytes = 0  # frame bytes waiting for the writer
        #: what the forwarder's memory is made of, read at scrape time (set by the app once
        #: its router exists): {"dedup_<family>": keys held, "symbol_slots": slots}
        self.sizes: Callable[[], dict[str, int]] = dict
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def observe_lag(self, lag_ns: int) -> None:
        self.lag_buckets[bisect_left(LAG_BUCKETS_NS, lag_ns)] += 1
        self.lag_sum_ns += lag_ns

    @property
    def acked_total(self) -> int:
        return sum(self.messages)

    def collect(self) -> Iterator[Metric]:
        def per_channel(name: str, doc: str, values: list[int]) -> Metric:
            fam = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["channel"])
            for ch, v in zip(CHANNELS, values, strict=True):
                fam.add_metric([ch], v)
            return fam

        yield per_channel("messages", "envelopes acked by Kafka (acks=all)", self.messages)
        yield per_channel(
            "received_messages", "market-data messages read from Alpaca", self.received
        )
        yield per_channel("dedup_dropped", "duplicate messages dropped", self.dedup_dropped)
        yield CounterMetricFamily(
            f"{PREFIX}_reconnects", "WebSocket reconnect attempts", value=self.reconnects
        )
        yield CounterMetricFamily(
            f"{PREFIX}_produce_errors",
            "failed deliveries (re-produced) and producer errors",
            value=self.produce_errors,
        )
        yield CounterMetricFamily(f"{PREFIX}_frames", "WebSocket frames read", value=self.frames)
        rejected = CounterMetricFamily(
            f"{PREFIX}_frames_rejected", "frames or messages rejected", labels=["reason"]
        )
        for reason, v in sorted(self.frames_rejected.items()):
            rejected.add_metric([reason], v)
        yield rejected
        buckets, acc = [], 0
        for bound, count in zip((*LAG_BUCKETS_S, float("inf")), self.lag_buckets, strict=True):
            acc += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        yield HistogramMetricFamily(
            f"{PREFIX}_event_lag_seconds",
            "now - event_ts when Kafka acked the envelope",
            buckets=buckets,
            sum_value=self.lag_sum_ns / 1e9,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_depth", "envelopes produced but not yet acked", value=self.queue_depth
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_connected", "1 while connected and subscribed", value=self.connected
        )
        yield GaugeMetricFamily(f"{PREFIX}_ready", "1 while /readyz answers 200", value=self.ready)
        yield CounterMetricFamily(
            f"{PREFIX}_heartbeats",
            "event-time heartbeats produced (one per raw trades/quotes partition and tick)",
            value=self.heartbeats,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_heartbeat_errors",
            "heartbeats not produced or not delivered (never re-produced: the next supersedes)",
            value=self.heartbeat_errors,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_heartbeat_event_time_seconds",
            "record timestamp of the last heartbeats: the event-time clock minus the lag",
            value=self.heartbeat_ms / 1000,
        )

        yield CounterMetricFamily(
            f"{PREFIX}_gaps",
            "reconnects after a connection that had delivered data: messages may be lost",
            value=self.gaps,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_gap_markers",
            "gap markers produced into the raw trades topic (one per symbol seen and gap)",
            value=self.gap_markers,
        )
        yield from self._recording()
        sizes = self.sizes()
        dedup = GaugeMetricFamily(
            f"{PREFIX}_dedup_entries",
            "message keys held for dedup per message family (TORGHUT_FWD_DEDUP_MAX_ENTRIES "
            "and _DEDUP_HORIZON_S bound them): most of the forwarder's memory",
            labels=["family"],
        )
        for name, v in sorted(sizes.items()):
            if name.startswith("dedup_"):
                dedup.add_metric([name.removeprefix("dedup_")], v)
        yield dedup
        if "symbol_slots" in sizes:
            yield GaugeMetricFamily(
                f"{PREFIX}_symbol_slots",
                "(type, symbol) slots routed (seq, prefix, key; dropped at the key cap)",
                value=sizes["symbol_slots"],
            )

    def _recording(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            f"{PREFIX}_recorded_frames",
            "WebSocket frames written to the recording (TORGHUT_FWD_RECORD_DIR), exactly as "
            "received",
            value=self.recorded_frames,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_record_bytes",
            "compressed bytes written to the recording's segments",
            value=self.record_bytes,
        )
        dropped = CounterMetricFamily(
            f"{PREFIX}_record_dropped_frames",
            "frames missing from the recording (a loss marker stands in their place): "
            "queue_full = the writer fell behind, write_error = a segment write failed",
            labels=["reason"],
        )
        dropped.add_metric(["queue_full"], self.record_dropped_queue_full)
        dropped.add_metric(["write_error"], self.record_dropped_write_error)
        yield dropped
        yield GaugeMetricFamily(
            f"{PREFIX}_record_segments",
            "segment files in the recording directory (after retention)",
            value=self.record_segments,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_record_queue_bytes",
            "frame bytes waiting for the recording's writer thread "
            "(TORGHUT_FWD_RECORD_QUEUE_BYTES bounds it)",
            value=self.record_queue_bytes,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
