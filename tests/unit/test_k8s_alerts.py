"""Alerts checked by promtool: the PrometheusRule of the base and of every overlay passes
`promtool check rules`, and every alert has a `promtool test rules` case (a series on which
it fires with its labels/annotations, and a healthy one on which it stays silent) in
k8s/base/monitoring/tests/. Also the PromQL selector extraction (tests/support/alerts.py)
the scrape test (tests/integration/test_metrics_scrape.py) relies on.

promtool comes from `make setup` (.artifacts/bin/promtool: the Debian package, unpacked).
Without it the promtool tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.alerts import (
    DASHBOARDS,
    RULE_TESTS,
    alerts,
    base_rule_groups,
    dashboard_exprs,
    overlay_rule_groups,
    promql_selectors,
    run_promtool,
    write_rule_file,
)
from torghut.k8s_render import OVERLAYS


def test_promql_selectors_finds_metrics_matchers_and_grouping_labels() -> None:
    p = promql_selectors(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{namespace="torghut"}[5m]))) > 0.5'
        ' or max without (pod) (b{x=~"y.*", z!="w"}) * on (job) group_left c'
        ' and {__name__="d", e="f"} offset 5m'
    )
    assert [(s.metric, s.matchers) for s in p.selectors] == [
        ("a_bucket", [("namespace", "=", "torghut")]),
        ("b", [("x", "=~", "y.*"), ("z", "!=", "w")]),
        ("c", []),
        ("d", [("e", "=", "f")]),
    ]
    assert p.grouping_labels == {"le", "pod", "job"}
    grafana = promql_selectors("sum(increase(m_total[$__rate_interval])) * 60 > bool 3")
    assert [s.metric for s in grafana.selectors] == ["m_total"]


def test_every_rule_and_dashboard_expression_parses() -> None:
    exprs = [r["expr"] for r in alerts(base_rule_groups())]
    exprs += [e for d in DASHBOARDS for e in dashboard_exprs(d)]
    assert len(exprs) > 10
    for e in exprs:
        assert promql_selectors(e).selectors, e


# --- promtool ------------------------------------------------------------------------------


def test_base_rules_pass_promtool_check(tmp_path) -> None:
    rules = write_rule_file(base_rule_groups(), tmp_path / "rules.yaml")
    out = run_promtool("check", "rules", str(rules), cwd=tmp_path)
    assert f"SUCCESS: {len(alerts(base_rule_groups()))} rules found" in out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_rules_pass_promtool_check(overlay, tmp_path) -> None:
    groups = overlay_rule_groups(overlay)
    assert [a["alert"] for a in alerts(groups)] == [a["alert"] for a in alerts(base_rule_groups())]
    rules = write_rule_file(groups, tmp_path / "rules.yaml")
    run_promtool("check", "rules", str(rules), cwd=tmp_path)


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS.glob("*.yaml"))


def _rule_test_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, yaml.safe_load(p.read_text(encoding="utf-8"))) for p in rule_test_files()]


def test_rule_tests_pass_promtool_test_rules(tmp_path) -> None:
    # the tests name `rule_files: [rules.yaml]`: the base CR's groups, extracted next to them
    write_rule_file(base_rule_groups(), tmp_path / "rules.yaml")
    files = []
    for src in rule_test_files():
        dst = tmp_path / src.name
        shutil.copy(src, dst)
        files.append(dst.name)
    assert files, f"no rule tests in {RULE_TESTS}"
    run_promtool("test", "rules", *files, cwd=tmp_path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rule_tests_pass_on_every_overlays_thresholds(overlay, tmp_path) -> None:
    # overlays replace thresholds (dev is the loosest): the firing series are above every
    # env's threshold and the healthy ones below, so one set of tests holds for all of them
    write_rule_file(overlay_rule_groups(overlay), tmp_path / "rules.yaml")
    for src in rule_test_files():
        shutil.copy(src, tmp_path / src.name)
    run_promtool("test", "rules", *(p.name for p in rule_test_files()), cwd=tmp_path)


def test_every_alert_has_a_firing_and_a_silent_rule_test() -> None:
    fired: dict[str, int] = {}
    silent: dict[str, int] = {}
    for path, doc in _rule_test_docs():
        assert doc.get("rule_files") == ["rules.yaml"], f"{path.name}: rule_files: [rules.yaml]"
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                book = fired if check.get("exp_alerts") else silent
                book[name] = book.get(name, 0) + 1
    names = {a["alert"] for a in alerts(base_rule_groups())}
    assert not names - set(fired), f"alerts with no firing promtool test: {names - set(fired)}"
    assert not names - set(silent), f"alerts with no silent promtool test: {names - set(silent)}"
    assert not (set(fired) | set(silent)) - names, "rule tests name alerts that do not exist"


def test_firing_cases_expect_the_rules_labels_and_annotations() -> None:
    # promtool compares exp_labels/exp_annotations exactly; this also checks each firing case
    # carries severity/team and the runbook link, so a test cannot pass on a renamed label
    rules = {a["alert"]: a for a in alerts(base_rule_groups())}
    for path, doc in _rule_test_docs():
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                for exp in check.get("exp_alerts") or []:
                    rule = rules[check["alertname"]]
                    for k, v in rule["labels"].items():
                        assert exp["exp_labels"].get(k) == v, (path.name, check["alertname"], k)
                    assert (
                        exp["exp_annotations"]["runbook_url"] == rule["annotations"]["runbook_url"]
                    ), (path.name, check["alertname"])
