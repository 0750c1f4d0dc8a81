"""Pure helpers of ``torghut bench pipeline``'s report (no engines)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

from torghut.bench.report import latency_table, summary_lines
from torghut.bench.results import (
    LiveConfig,
    LivePhaseResult,
    PipelineResult,
    ProfileResult,
    to_json,
)
from torghut.bench.sampling import components_cpu_s
from torghut.bench.stats import Dist, worst_seconds


def test_worst_seconds_names_the_seconds_with_the_highest_latency_in_time_order() -> None:
    at = [0.1, 0.5, 1.2, 1.9, 2.0, 3.3, 3.4, 4.9]
    lat = [5.0, 7.0, 90.0, 6.0, 8.0, 40.0, 4.0, 200.0]
    worst = worst_seconds(at, lat, n=3)
    assert [w["second"] for w in worst] == [1.0, 3.0, 4.0]
    assert [w["max_ms"] for w in worst] == [90.0, 40.0, 200.0]
    assert [w["n"] for w in worst] == [2.0, 2.0, 1.0]


def test_worst_seconds_of_no_samples_is_empty() -> None:
    assert worst_seconds([], []) == []


def test_component_cpu_counts_a_busy_process_group_and_this_process() -> None:
    # a child in its own session burns ~0.3 s of CPU, then idles until it is killed
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nprint('done', flush=True)\ntime.sleep(30)"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        out = components_cpu_s({"busy": child.pid})
        assert set(out) == {"busy", "bench"}
        assert 0.25 <= out["busy"] < 5.0
        t = os.times()
        assert 0.0 < out["bench"] <= t.user + t.system
    finally:
        child.kill()
        child.wait()


def _profile() -> ProfileResult:
    return ProfileResult(
        trades=20_000,
        events=24_000,
        emissions=780,
        final_emissions=400,
        us_per_trade={"decode": 7.14, "frame": 0.04},
        total_us_per_trade=7.18,
        python_only_trades_per_s=139_275.8,
    )


def _pipeline(**kw: object) -> PipelineResult:
    base: dict[str, object] = {
        "timestamp": "20261203-120000",
        "uptime_start": "up 1",
        "loadavg_start": "0.1 0.2 0.3",
        "settings": {"rate": 1000.0},
        "live_config": LiveConfig(1000.0, 1, 1, 1000, 1000),
        "throughput": None,
        "live": None,
        "profile": _profile(),
        "uptime_end": "up 2",
    }
    return PipelineResult(**{**base, **kw})  # type: ignore[arg-type]


def test_json_leaves_out_skipped_phases_and_the_config() -> None:
    out = to_json(_pipeline())
    keys = ["timestamp", "uptime_start", "loadavg_start", "settings", "profile", "uptime_end"]
    assert list(out) == keys
    assert out["profile"]["us_per_trade"] == {"decode": 7.14, "frame": 0.04}


def test_summary_lines_of_a_profile_only_run() -> None:
    lines = summary_lines(_pipeline())
    assert lines[0] == "" and lines[2] == "load: up 1"
    assert lines[3:] == [
        "\nPython work per trade, in process, no Flink (20,000 trades, 24,000 events, 780 emissions):",
        "  decode                    7.14 us",
        "  frame                     0.04 us",
        "  total                     7.18 us  -> at most 139,276 trades/s from the Python code alone",
        "\nload at end: up 2",
    ]


def test_latency_table_prints_dashes_for_an_empty_distribution() -> None:
    d = Dist.of([1.0, 2.0, 3.0])
    fields = dataclasses.fields(LivePhaseResult)
    # the table reads only the distributions: every other field is None here
    kw: dict[str, Any] = {f.name: None for f in fields if f.type != "Dist"}
    kw |= {f.name: Dist.of([]) if "warmup" in f.name else d for f in fields if f.type == "Dist"}
    table = latency_table(LivePhaseResult(**kw))
    assert table[1].endswith("     2.0     3.0     3.0     3.0       3")
    assert table[-1].endswith("       -       -       -       -       0")
