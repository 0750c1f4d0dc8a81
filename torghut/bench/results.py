"""What each phase of ``torghut bench pipeline`` measured: the numbers the report prints,
the plots draw and the JSON under ``bench-results/`` holds.

A field marked ``series`` (per-record samples for the plots) stays out of the JSON; the
JSON keys are the field names, in field order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torghut.bench.stats import Dist

SERIES = {"json": False}  # field metadata: per-record samples, not in the JSON


def _json_value(value: Any) -> Any:
    if isinstance(value, Dist):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def to_json(result: Any) -> dict[str, Any]:
    """A result as the JSON file holds it (``series`` fields and None phases left out)."""
    return {
        f.name: _json_value(getattr(result, f.name))
        for f in dataclasses.fields(result)
        if f.metadata.get("json", True) and getattr(result, f.name) is not None
    }


@dataclass(frozen=True)
class LiveConfig:
    """The settings the live report and plots quote (also when the live phase is skipped)."""

    rate: float
    provisional_interval_ms: int
    linger_ms: int
    checkpoint_interval_ms: int
    out_of_orderness_ms: int


@dataclass(frozen=True)
class LivePhaseResult:
    symbols: int
    rate_events_per_s: float
    duration_s: float
    job_launch_to_ready_s: float
    warmup_s: float
    caught_up: bool
    job_cpu_cores: float
    provisional_signals: int
    provisional_signals_per_s: float
    final_signals: int
    live_recv_minus_ingest_ms: Dist
    live_recv_minus_event_ms: Dist
    warmup_recv_minus_ingest_ms: Dist
    live_emit_minus_ingest_ms: Dist
    live_recv_minus_emit_ms: Dist
    final_bars: int
    final_bars_expected_about: int
    final_distinct: int
    final_recv_minus_window_end_ms: Dist
    final_recv_minus_watermark_ms: Dist
    final_recv_minus_emit_ms: Dist
    commit_interval_ms: Dist
    load_before: str
    load_after: str
    component_cores: dict[str, float]
    worst_seconds: list[dict[str, float]]
    live_ms: list[float] = field(
        default_factory=list, metadata=SERIES
    )  # recv - ingest_ts per measured provisional signal
    live_at_s: list[float] = field(
        default_factory=list, metadata=SERIES
    )  # its receive time, s since the measurement started
    live_event_ms: list[float] = field(default_factory=list, metadata=SERIES)  # recv - event_ts
    final_ms: list[float] = field(
        default_factory=list, metadata=SERIES
    )  # recv - window.end per final bar


@dataclass(frozen=True)
class ThroughputPhaseResult:
    trades: int
    quotes: int
    raw_records: int
    trade_share: float
    produce_s: float
    job_launch_to_first_record_s: float
    status_points: int
    events_per_s: float
    trades_per_s: float
    events_per_s_after_first_s: float
    events_per_s_warm: float
    trades_per_s_warm: float
    warm_status_points: int
    trades_per_s_after_first_s: float
    end_to_end_s: float
    end_to_end_trades_per_s: float
    job_cpu_cores: float
    job_threads_cores: list[tuple[str, float]]
    # the busiest task thread (a pipeline stage; PyFlink thread mode runs Python in it) is the
    # bottleneck; on a contended machine it gets < 1 core, so project it onto a full core
    busiest_task_thread_cores: float
    projected_trades_per_s_full_core: float
    job_cpu_us_per_event: float
    slot_thread_on_cpu: float
    slot_thread_waiting_for_cpu: float
    # the slot's capacity: trades per second the slot thread spent on a CPU (schedstat)
    trades_per_slot_cpu_s: float
    checkpoint_interval_ms: int
    provisional_interval_ms: int
    load_before: str
    load_after: str
    # (s since the first record processed, the job's records_in) per ta.status record
    points: list[tuple[float, int]] = field(default_factory=list, metadata=SERIES)


@dataclass(frozen=True)
class ProfileResult:
    trades: int
    events: int
    emissions: int
    final_emissions: int
    us_per_trade: dict[str, float]
    total_us_per_trade: float
    python_only_trades_per_s: float


@dataclass(frozen=True)
class PipelineResult:
    timestamp: str
    uptime_start: str
    loadavg_start: str
    settings: dict[str, Any]
    live_config: LiveConfig = field(metadata=SERIES)
    throughput: ThroughputPhaseResult | None
    live: LivePhaseResult | None
    profile: ProfileResult | None
    uptime_end: str
    ladder: list[Any] | None = None  # ladder.RungResult per rung of --ladder
