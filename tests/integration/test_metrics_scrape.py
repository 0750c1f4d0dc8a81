"""The alerts and dashboards query what our processes really expose: the real forwarder
(against the simulator), the real TA job (local MiniCluster with Flink's Prometheus
reporter on) and the canary (`torghut canary`) are scraped, and every metric name and label
that a rule expression (base and every overlay) or a dashboard `expr` uses must be in those
scrapes.

What is not ours is listed explicitly, with the reason:
- EXTERNAL_METRICS come from Prometheus itself or from exporters (kube-state-metrics, the
  Kafka exporter), never from the forwarder or the job;
- TARGET_LABELS are added by the Prometheus scrape in Kubernetes (ServiceMonitor /
  PodMonitor target labels such as `namespace="torghut"`), not by the process, so a local
  scrape cannot have them.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest
from prometheus_client import generate_latest

from forwarder.app import ForwarderThread
from forwarder.settings import ForwarderSettings
from tests.conftest import wait_for
from tests.support.alerts import (
    DASHBOARDS,
    alerts,
    base_rule_groups,
    dashboard_exprs,
    overlay_rule_groups,
    promql_selectors,
)
from tests.support.scrape import free_port, scrape_text, series
from tests.support.ta_job import TaJobProcess
from torghut.barcheck.runner import BarCheckMetrics
from torghut.k8s_render import OVERLAYS
from torghut.sim import SimConfig, SimServerThread, SyntheticConfig
from torghut.stack import apps, procs

pytestmark = [pytest.mark.integration]

EXTERNAL_METRICS = {
    "up": "Prometheus' own per-target health series",
    "kube_pod_container_status_restarts_total": "kube-state-metrics (pod restarts)",
    "kafka_consumergroup_lag": "Strimzi's Kafka Exporter (the ClickHouse consumer groups)",
}
TARGET_LABELS = {
    "namespace": "target label of the ServiceMonitor/PodMonitor scrape (pod's namespace)",
    "pod": "target label of the scrape",
    "service": "target label of the ServiceMonitor scrape (the Service's name)",
    "job": "target label of the scrape (scrape job)",
    "instance": "target label of the scrape (host:port)",
    "container": "target label of the scrape",
    "endpoint": "target label of the ServiceMonitor scrape (port name)",
}
# PromQL-made labels: `le` is part of every histogram's _bucket series
BUILTIN_LABELS = {"le"}


def label_sets(scraped: dict[str, list[tuple[dict[str, str], float]]]):
    return {name: [labels for labels, _ in samples] for name, samples in scraped.items()}


def describe(label_sets: list[dict[str, str]]) -> str:
    """A scraped metric's labels with their values (ids cut short), for the failure report."""
    values: dict[str, set[str]] = defaultdict(set)
    for labels in label_sets:
        for k, v in labels.items():
            values[k].add(v if len(v) <= 40 else v[:12] + "...")
    return " ".join(f"{k}={sorted(v)[:4]}" for k, v in sorted(values.items()))


def used_expressions() -> dict[str, str]:
    """Every expression the monitoring uses, by where it comes from."""
    exprs = {f"base:{a['alert']}": a["expr"] for a in alerts(base_rule_groups())}
    for overlay in OVERLAYS:
        exprs |= {
            f"{overlay}:{a['alert']}": a["expr"] for a in alerts(overlay_rule_groups(overlay))
        }
    for d in DASHBOARDS:
        exprs |= {f"{d.name}[{i}]": e for i, e in enumerate(dashboard_exprs(d))}
    return exprs


def mismatches(exprs: dict[str, str], scraped: dict[str, list[dict[str, str]]]) -> list[str]:
    """Each metric, label or label value an expression uses that the scrape does not have."""
    problems = []
    for where, expr in exprs.items():
        parsed = promql_selectors(expr)
        ours = [s for s in parsed.selectors if s.metric not in EXTERNAL_METRICS]
        for sel in ours:
            series = scraped.get(sel.metric)
            if not series:
                problems.append(f"{where}: metric {sel.metric} is not exposed")
                continue
            for label, op, value in sel.matchers:
                if label in TARGET_LABELS:
                    continue
                values = {s[label] for s in series if label in s}
                if not values:
                    problems.append(f"{where}: {sel.metric} has no label {label}")
                elif op == "=" and value not in values:
                    problems.append(f"{where}: {sel.metric}{{{label}={value!r}}}: has {values}")
                elif op == "=~" and not any(re.fullmatch(value, v) for v in values):
                    problems.append(f"{where}: {sel.metric}{{{label}=~{value!r}}}: has {values}")
        if ours and len(ours) == len(parsed.selectors):
            have = {k for s in ours for series in scraped.get(s.metric, []) for k in series}
            for label in parsed.grouping_labels - set(TARGET_LABELS) - BUILTIN_LABELS:
                if label not in have:
                    problems.append(f"{where}: groups by {label}, which no selected metric has")
    return problems


def test_mismatches_reports_missing_metrics_labels_and_values() -> None:
    scraped = {"m": [{"job_name": "torghut-ta", "topic": "t"}]}
    exprs = {
        "ok": 'max by (topic) (m{job_name="torghut-ta", namespace="torghut"}) + up{x="y"}',
        "name": "n > 0",
        "label": 'm{subtask="0"}',
        "value": 'm{job_name="other"}',
        "group": "max by (partition) (m)",
    }
    assert mismatches(exprs, scraped) == [
        "name: metric n is not exposed",
        "label: m has no label subtask",
        "value: m{job_name='other'}: has {'torghut-ta'}",
        "group: groups by partition, which no selected metric has",
    ]


def test_every_metric_and_label_the_alerts_and_dashboards_use_is_in_the_real_scrapes(
    stack, tmp_path, unique
) -> None:
    exprs = used_expressions()
    needed = {
        s.metric
        for e in exprs.values()
        for s in promql_selectors(e).selectors
        if s.metric not in EXTERNAL_METRICS
    }
    tag = unique("m")[-6:].upper()
    symbols = (f"M{tag}A", f"M{tag}B")
    flink_port = free_port()
    job = TaJobProcess(
        stack,
        tmp_path,
        unique("cp-metrics"),
        unique("tx-metrics"),
        unique("grp-metrics"),
        settings={"metrics_port": flink_port},
    )
    job.start()
    # the canary (torghut canary) as its own process, watching the simulator's symbols
    canary_port = free_port()
    canary = apps.launch(
        list(apps.CANARY),
        apps.canary_env(
            stack,
            symbols=",".join(symbols),
            http_port=canary_port,
            http_host="127.0.0.1",
            consumer_group=unique("canary-metrics"),
        ),
        tmp_path / "canary.log",
    )
    # the minute check's metrics as its /metrics serves them (torghut check-bars)
    checker_series = series(generate_latest(BarCheckMetrics().registry).decode())
    sim_cfg = SimConfig(
        synthetic=SyntheticConfig(symbols=symbols, seed=3, trades_per_sec=20, quotes_per_sec=10)
    )
    fwd_settings = ForwarderSettings(
        alpaca_key_id="key",
        alpaca_secret_key="secret",
        kafka_bootstrap=stack.kafka_bootstrap,
        registry_url=stack.registry_url,
        http_port=0,
        linger_ms=5,
    )
    try:
        with SimServerThread(sim_cfg) as sim:  # noqa: SIM117 - the forwarder needs sim.url
            with ForwarderThread(fwd_settings.model_copy(update={"alpaca_url": sim.url})) as fwd:
                wait_for(lambda: fwd.metrics.acked_total > 50, 60, "the forwarder to produce")
                fwd_port = fwd.forwarder.http_port
                assert fwd_port

                def both() -> dict[str, list[tuple[dict[str, str], float]]]:
                    return {
                        **series(scrape_text(fwd_port)),
                        **series(scrape_text(flink_port)),
                        **series(scrape_text(canary_port)),
                        **checker_series,
                    }

                def ready() -> bool:
                    assert job.alive(), f"TA job exited; logs in {tmp_path}"
                    got = both()
                    checkpoint = got.get("flink_jobmanager_job_lastCompletedCheckpointId", [])
                    return any(v >= 1 for _, v in checkpoint) and needed <= set(got)

                # every metric is there once the job runs, has fetched and checkpointed;
                # past the deadline the comparison below names what is still missing
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline and not ready():
                    time.sleep(2)
                scraped = label_sets(both())
        assert any(k.startswith("torghut_forwarder_") for k in scraped), "no forwarder metrics"
        assert any(k.startswith("flink_") for k in scraped), "no Flink reporter metrics"
        names = tmp_path / "scraped.txt"
        names.write_text("".join(f"{k} {describe(scraped[k])}\n" for k in sorted(scraped)))
        problems = mismatches(exprs, scraped)
        assert not problems, (
            f"the monitoring uses what the real processes do not expose (all in {names}):\n"
            + "\n".join(problems)
        )
    finally:
        procs.stop(canary.pid)
        job.stop()
