"""Pure helpers of ``torghut bench pipeline``'s report (no engines)."""

from __future__ import annotations

import os
import subprocess
import sys

from torghut.bench.sampling import components_cpu_s
from torghut.bench.stats import worst_seconds


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
