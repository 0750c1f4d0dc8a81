"""The load ladder of ``torghut bench pipeline --ladder``: rungs, targets, what saturates,
the report, the JSON and the plot (pure logic, no engines)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from torghut.bench.ladder import (
    DEFAULT_RUNGS,
    LadderSpecError,
    Rung,
    RungResult,
    ladder_lines,
    p99_target,
    parse_rungs,
    saturating_component,
)
from torghut.bench.plots import plot
from torghut.bench.results import LiveConfig, LivePhaseResult, PipelineResult, to_json
from torghut.bench.stats import Dist


def _live(
    latencies_ms: list[float], final_ms: list[float], cores: dict[str, float]
) -> LivePhaseResult:
    kw: dict[str, Any] = {f.name: None for f in dataclasses.fields(LivePhaseResult)}
    for f in dataclasses.fields(LivePhaseResult):
        if f.type == "Dist":
            kw[f.name] = Dist.of([])
    kw |= {
        "live_recv_minus_ingest_ms": Dist.of(latencies_ms),
        "final_recv_minus_watermark_ms": Dist.of(final_ms),
        "component_cores": cores,
        "job_cpu_cores": cores.get("ta-live", 0.0),
        "load_before": "12:00 up 1 day, load average: 0.50, 0.40, 0.30",
        "live_ms": [],
        "live_at_s": [],
        "live_event_ms": [],
        "final_ms": [],
        "worst_seconds": [],
    }
    return LivePhaseResult(**kw)


def test_the_default_ladder_is_three_rates_each_at_the_jobs_interval_and_on_every_trade() -> None:
    rungs = parse_rungs(DEFAULT_RUNGS, "200,1")
    assert [(r.rate, r.symbols, r.provisional_interval_ms) for r in rungs] == [
        (1000.0, 20, 200),
        (1000.0, 20, 1),
        (5000.0, 100, 200),
        (5000.0, 100, 1),
        (10000.0, 200, 200),
        (10000.0, 200, 1),
    ]
    assert rungs[1].label == "1000/s x 20 sym, provisional every trade"


@pytest.mark.parametrize(
    ("spec", "provisional"),
    [("1000-20", "200"), ("1000x20", "fast"), ("0x20", "200"), ("1000x20", "0"), ("", "200")],
)
def test_a_bad_ladder_spec_is_a_typed_error_naming_the_flags(spec: str, provisional: str) -> None:
    with pytest.raises(LadderSpecError, match="--ladder"):
        parse_rungs(spec, provisional)


def test_each_rate_takes_the_target_of_the_highest_ladder_rate_at_or_below_it() -> None:
    assert p99_target(500) is None
    assert p99_target(1000) == 20.0
    assert p99_target(7500) == 100.0
    assert p99_target(10000) == 300.0
    assert p99_target(20000) == 300.0


def test_the_saturating_component_is_a_stage_near_one_core_else_the_busy_machine() -> None:
    assert saturating_component({"ta-live": 0.95, "kafka": 0.3}, 2) == "ta-live (0.95 cores)"
    assert saturating_component({"ta-live": 0.7, "kafka": 0.6, "forwarder": 0.6}, 2) == (
        "machine (1.90 of 2 cores)"
    )
    assert saturating_component({"ta-live": 0.4, "kafka": 0.2}, 2) == ""
    assert saturating_component({}, 2) == ""


def _rung_result(
    rate: float, p99_ms: float, final_ms: float, cores: dict[str, float]
) -> RungResult:
    return RungResult(
        rung=Rung(rate, 20, 1),
        p99_target_ms=p99_target(rate),
        final_target_ms=2000.0,
        saturated=saturating_component(cores, 2),
        live=_live([p99_ms / 2] * 98 + [p99_ms] * 2, [final_ms] * 10, cores),
    )


def test_a_rung_meets_its_targets_only_when_both_live_and_final_p99_do() -> None:
    assert _rung_result(1000, 15.0, 1500.0, {"ta-live": 0.2}).met
    assert not _rung_result(1000, 25.0, 1500.0, {"ta-live": 0.2}).met
    assert not _rung_result(1000, 15.0, 2500.0, {"ta-live": 0.2}).met


def test_the_report_gives_each_rung_its_numbers_verdict_and_saturating_component() -> None:
    ok = _rung_result(1000, 15.0, 1500.0, {"ta-live": 0.2, "kafka": 0.1})
    busy = _rung_result(5000, 700.0, 2100.0, {"ta-live": 0.95, "kafka": 0.3})
    lines = ladder_lines([ok, busy])
    rows = [line for line in lines if "sym, provisional" in line]
    assert len(rows) == 2
    assert rows[0].rstrip().endswith("MET") and "   15.0      20" in rows[0]
    assert "MISSED; saturates: ta-live (0.95 cores)" in rows[1] and "  700.0     100" in rows[1]
    assert any("load 0.50, 0.40, 0.30; CPU: ta-live 0.95, kafka 0.30" in line for line in lines)


def test_a_ladder_run_writes_its_rungs_to_the_json_and_draws_its_own_plot(tmp_path) -> None:
    rungs = [
        _rung_result(1000, 15.0, 1500.0, {"ta-live": 0.2}),
        _rung_result(5000, 90.0, 1800.0, {}),
    ]
    res = PipelineResult(
        timestamp="20261208-040000",
        uptime_start="up 1",
        loadavg_start="0.1 0.2 0.3",
        settings={},
        live_config=LiveConfig(1000.0, 1, 1, 1000, 1000),
        throughput=None,
        live=None,
        profile=None,
        uptime_end="up 2",
        ladder=rungs,
    )
    out = json.loads(json.dumps(to_json(res)))
    assert [r["rung"]["rate"] for r in out["ladder"]] == [1000.0, 5000.0]
    assert out["ladder"][0]["live"]["live_recv_minus_ingest_ms"]["n"] == 100
    assert "live_ms" not in out["ladder"][0]["live"]  # per-record series stay out of the JSON
    png = plot(tmp_path, res)
    assert png.name == "pipeline-ladder-20261208-040000.png" and png.stat().st_size > 10_000
