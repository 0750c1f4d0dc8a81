"""Canary drills on the real engines: the TA job (`torghut ta`, MiniCluster) reads a feed of
trades, the canary (`torghut canary`, its own process) reads the raw and TA topics, and its
`/metrics` is scraped once a second. The shipped alert rules, with their numbers scaled down
(`SCALED`), are evaluated by `promtool test rules` on the scraped series themselves (one
promtool sample per scrape, one second apart; the scrape's target labels added as
Prometheus adds them).

(a) The job's process group is stopped (SIGSTOP: JVM and Python operators freeze, trades keep
    arriving): the scraped lag grows, TorghutTaLagging fires and TorghutInputStalled does not;
    after SIGCONT the lag falls under the threshold and TorghutTaLagging clears.
(b) The feed stops instead: the raw input and the output both stop, the lag stays small, the
    canary says `input_stalled`, TorghutInputStalled fires and TorghutTaLagging never does.

Scaled (docs/test-harness.md, "Scaled drills"): the rules' 30 s lag threshold is 3 s, its
2 min `for` 3 s, the input's 120 s idle threshold 4 s (`for` 1 min: 2 s), the 10 min session
grace 5 s, and the canary's session calendar is exchange_calendars' `24/7` so the
session-gated alert can fire at any hour. What the scaled drill still proves: the canary's
lag and idle series move the way the rules need when the job or the feed stops, and the
rules' expressions (unchanged but for those numbers) tell the two apart. One job run, one
canary and one feed serve both drills ((b) ends the feed, so it runs second).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.support.alerts import alerts, base_rule_groups, run_promtool, write_rule_file
from tests.support.flink_drill import Feed
from tests.support.scrape import scrape_text, series
from tests.support.ta_job import TaJobProcess
from torghut.stack import apps, procs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYMBOLS = ("CNRYA", "CNRYB")  # configured in the canary
UNLISTED = "CNRYZ"  # traded, not configured: one aggregate counter, never a label
LAG_S = 3.0  # TorghutTaLagging's threshold here (30 s shipped)
FOR_LAG_S = 3  # its `for` (2m)
IDLE_S = 4.0  # TorghutInputStalled's threshold here (120 s)
FOR_IDLE_S = 2  # its `for` (1m)
TARGET = {"namespace": "torghut", "pod": "torghut-canary-drill"}
#: per alert: (text in the shipped rule, the drill's text); each must occur in the shipped rule
SCALED: dict[str, list[tuple[str, str]]] = {
    "TorghutTaLagging": [
        ("> 30", f"> {LAG_S:g}"),
        ("< 60", f"< {IDLE_S:g}"),
    ],
    "TorghutInputStalled": [
        ("> 120", f"> {IDLE_S:g}"),
        ("[10m]", "[5s]"),
    ],
}
FOR = {"TorghutTaLagging": f"{FOR_LAG_S}s", "TorghutInputStalled": f"{FOR_IDLE_S}s"}
METRICS = (
    "torghut_canary_lag_seconds",
    "torghut_canary_input_idle_seconds",
    "torghut_market_session_open",
)


def scaled_rules() -> list[dict[str, Any]]:
    """The shipped canary group with the drill's numbers; annotations left out (their
    summaries print the value, which promtool would compare to the digit)."""
    (group,) = [g for g in base_rule_groups() if g["name"] == "torghut-canary"]
    rules = []
    for rule in group["rules"]:
        if rule["alert"] not in SCALED:
            continue
        expr = rule["expr"]
        for shipped, drill in SCALED[rule["alert"]]:
            assert shipped in expr, f"{rule['alert']}: {shipped!r} not in {expr!r}"
            expr = expr.replace(shipped, drill)
        rules.append(
            {
                "alert": rule["alert"],
                "expr": expr,
                "for": FOR[rule["alert"]],
                "labels": rule["labels"],
            }
        )
    assert {r["alert"] for r in rules} == set(SCALED)
    assert {a["alert"] for a in alerts(base_rule_groups())} >= set(SCALED)
    return [{"name": "torghut-canary-drill", "rules": rules}]


@dataclass
class Scrapes:
    """The canary's `/metrics`, scraped on a one-second schedule."""

    port: int
    samples: list[dict[str, list[tuple[dict[str, str], float]]]] = field(default_factory=list)
    _next: float = 0.0

    def take(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
        self._next = max(now, self._next) + 1.0
        got = series(scrape_text(self.port))
        self.samples.append(got)
        return got

    def until(self, condition, timeout_s: float, what: str) -> None:
        """Scrape once a second until `condition(latest)`; fail naming `what` at the deadline."""
        deadline = time.monotonic() + timeout_s
        while not condition(self.take()):
            assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s: {what}"

    def mark(self) -> int:
        return len(self.samples)


def value(scrape, name: str, **labels: str) -> float | None:
    for got, v in scrape.get(name, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def lags(scrape) -> dict[str, float]:
    return {labels["symbol"]: v for labels, v in scrape.get("torghut_canary_lag_seconds", [])}


def promtool_input(samples: list) -> list[dict[str, str]]:
    """One promtool series per scraped series of `METRICS`, one sample per scrape ("_" where
    the scrape did not have it), with the target labels Prometheus would add."""
    keys: dict[str, list[str]] = {}
    for i, scrape in enumerate(samples):
        for name in METRICS:
            for labels, v in scrape.get(name, []):
                sel = (
                    name
                    + "{"
                    + ", ".join(f'{k}="{x}"' for k, x in sorted({**labels, **TARGET}.items()))
                    + "}"
                )
                keys.setdefault(sel, ["_"] * len(samples))[i] = f"{v:g}"
    return [{"series": k, "values": " ".join(v)} for k, v in keys.items()]


def promtool_expect(
    samples: list, checks: list[tuple[int, str, list[dict[str, str]]]], tmp_path: Path, name: str
) -> None:
    """`promtool test rules` of the scaled rules on `samples`: at scrape index i, alert
    `alertname` has exactly the label sets given."""
    write_rule_file(scaled_rules(), tmp_path / "rules.yaml")
    rule_labels = {r["alert"]: r["labels"] for r in scaled_rules()[0]["rules"]}
    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": promtool_input(samples),
                "alert_rule_test": [
                    {
                        "eval_time": f"{i}s",
                        "alertname": alert,
                        "exp_alerts": [
                            {"exp_labels": {**labels, **rule_labels[alert]}} for labels in firing
                        ],
                    }
                    for i, alert, firing in checks
                ],
            }
        ],
    }
    (tmp_path / f"{name}.json").write_text(json.dumps(test, indent=1))
    (tmp_path / f"{name}.yaml").write_text(json.dumps(test))  # JSON is YAML
    run_promtool("test", "rules", f"{name}.yaml", cwd=tmp_path)


@dataclass
class Run:
    job: TaJobProcess
    feed: Feed
    canary: Any
    scrapes: Scrapes
    logs: Path


@pytest.fixture(scope="module")
def run(stack, tmp_path_factory) -> Iterator[Run]:
    """The job, the canary and a feed of three symbols (two configured), until the canary
    sees the job's output follow the trades of both configured symbols."""
    tmp = tmp_path_factory.mktemp("canary")
    tag = os.urandom(4).hex()
    job = TaJobProcess(stack, tmp, f"cp-canary-{tag}", f"tx-canary-{tag}", f"grp-canary-{tag}")
    port = procs.free_port()
    env = apps.canary_env(
        stack,
        symbols=",".join(SYMBOLS),
        calendar="24/7",
        lag_threshold_s=LAG_S,
        input_stall_s=IDLE_S,
        http_port=port,
        http_host="127.0.0.1",
        consumer_group=f"canary-drill-{tag}",
    )
    canary = apps.launch(list(apps.CANARY), env, tmp / "canary.log")
    feed = Feed(stack, [*SYMBOLS, UNLISTED])
    scrapes = Scrapes(port)
    try:
        wait_for(lambda: scrape_text(port), 60, f"the canary's /metrics (log {tmp}/canary.log)")
        job.start()
        feed.start()

        def following(scrape) -> bool:
            assert job.alive(), f"TA job exited; logs in {tmp}"
            assert canary.poll() is None, f"the canary exited; see {tmp}/canary.log"
            got = lags(scrape)
            return (
                set(got) == set(SYMBOLS)
                and max(got.values()) < 1.0
                and bool(scrape.get("torghut_canary_final_bar_timestamp_seconds"))
            )

        scrapes.until(following, 240, "the job's output to follow the trades of both symbols")
        yield Run(job, feed, canary, scrapes, tmp)
    finally:
        feed.stop.set()
        if job.proc is not None and job.alive():
            os.killpg(job.proc.pid, signal.SIGCONT)
        job.stop()
        procs.stop(canary.pid)
        feed.join(30)


def test_the_canary_labels_only_the_configured_symbols_and_counts_the_others(run) -> None:
    scrape = run.scrapes.take()
    labelled = {
        labels["symbol"]
        for name, samples in scrape.items()
        for labels, _ in samples
        if "symbol" in labels
    }
    assert labelled == set(SYMBOLS)
    assert (value(scrape, "torghut_canary_other_symbol_records_total") or 0) > 0
    assert value(scrape, "torghut_market_session_open", calendar="24/7") == 1
    for symbol in SYMBOLS:  # raw, derived and final times all there, per partition
        assert value(scrape, "torghut_canary_raw_event_timestamp_seconds", symbol=symbol)
        assert value(scrape, "torghut_canary_derived_event_timestamp_seconds", symbol=symbol)
        assert value(scrape, "torghut_canary_final_bar_timestamp_seconds", symbol=symbol)
        assert value(scrape, "torghut_symbol_last_event_timestamp_seconds", symbol=symbol)


def test_a_stopped_job_with_trades_flowing_fires_ta_lagging_and_clears_after_sigcont(
    run, tmp_path
) -> None:
    s = run.scrapes
    start = s.mark()
    for _ in range(3):
        s.take()  # healthy before the stop
    assert run.job.proc is not None
    os.killpg(run.job.proc.pid, signal.SIGSTOP)
    over: list[int] = []
    try:
        # stopped until the scraped lag has been over the threshold for `for` + 2 scrapes
        def held(scrape) -> bool:
            if min(lags(scrape).values(), default=0) > LAG_S:
                over.append(s.mark() - 1)
            return len(over) >= FOR_LAG_S + 2

        s.until(held, 30, f"the scraped lag to stay over {LAG_S} s while the job is stopped")
    finally:
        os.killpg(run.job.proc.pid, signal.SIGCONT)
    stopped_at = s.mark() - 1
    assert value(s.samples[-1], "torghut_canary_input_stalled") == 0  # trades kept coming
    assert value(s.samples[-1], "torghut_canary_lagging") == 1
    below: list[int] = []

    def recovered(scrape) -> bool:
        assert run.job.alive(), f"TA job exited after SIGCONT; logs in {run.logs}"
        below.append(1 if max(lags(scrape).values()) < LAG_S else 0)
        return below[-FOR_LAG_S:] == [1] * FOR_LAG_S

    s.until(recovered, 90, f"the lag to fall under {LAG_S} s after SIGCONT")
    samples = s.samples[start:]
    stopped, end = stopped_at - start, len(samples) - 1
    promtool_expect(
        samples,
        [
            (2, "TorghutTaLagging", []),
            (stopped, "TorghutTaLagging", [{"symbol": sym} for sym in SYMBOLS]),
            (stopped, "TorghutInputStalled", []),
            (end, "TorghutTaLagging", []),
        ],
        tmp_path,
        "job-stopped",
    )


def test_a_stopped_feed_is_input_stalled_not_ta_lagging(run, tmp_path) -> None:
    s = run.scrapes
    s.until(lambda x: max(lags(x).values()) < 1.0, 60, "the job's output to follow the feed")
    start = s.mark() - 1
    run.feed.stop.set()  # the feed's last trades come 3 quiet seconds later
    s.until(lambda _: not run.feed.is_alive(), 30, "the feed to end")
    assert run.feed.error is None, run.feed.error
    ended = s.mark() - 1
    idle: list[int] = []

    def stalled(scrape) -> bool:
        if (value(scrape, "torghut_canary_input_idle_seconds") or 0) > IDLE_S:
            idle.append(1)
        return len(idle) >= FOR_IDLE_S + 2

    s.until(stalled, 60, f"the canary's input idle time to pass {IDLE_S} s")
    samples = s.samples[start:]
    last = samples[-1]
    assert value(last, "torghut_canary_input_stalled") == 1
    assert value(last, "torghut_canary_lagging") == 0
    # both sides stopped: the lag stays under the threshold from the feed's end on
    after = range(ended - start, len(samples))
    assert max(max(lags(samples[i]).values()) for i in after) < LAG_S
    promtool_expect(
        samples,
        [(len(samples) - 1, "TorghutInputStalled", [{}])]
        + [(i, "TorghutTaLagging", []) for i in after],
        tmp_path,
        "feed-stopped",
    )


def test_the_scaled_rules_differ_from_the_shipped_only_in_the_named_numbers() -> None:
    shipped = {a["alert"]: a for a in alerts(base_rule_groups())}
    for rule in scaled_rules()[0]["rules"]:
        number = re.compile(r"\d+(?:\.\d+)?[smh]?")
        assert number.sub("N", rule["expr"]) == number.sub("N", shipped[rule["alert"]]["expr"])
