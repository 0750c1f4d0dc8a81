"""Alerts checked by promtool: the PrometheusRule of the base and of every overlay passes
`promtool check rules`, and every alert has a `promtool test rules` case (a series on which
it fires with its labels/annotations, and a healthy one on which it stays silent) in
k8s/base/monitoring/tests/. Also the PromQL selector extraction the scrape test
(tests/integration/test_metrics_scrape.py) relies on.

promtool comes from `make setup` (.artifacts/bin/promtool: the Debian package, unpacked).
Without it the promtool tests skip locally and fail in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from torghut.k8s_render import ARTIFACTS, BASE_DIR, K8S_DIR, OVERLAYS, find, kustomize_build

MONITORING = BASE_DIR / "monitoring"
RULES_CR = MONITORING / "prometheusrule.yaml"
RULE_TESTS = MONITORING / "tests"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))


# --- loading the rules ---------------------------------------------------------------------


def rule_groups(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`spec.groups` of the one PrometheusRule `torghut` in `docs`."""
    (cr,) = find(docs, "PrometheusRule", "torghut")
    return cr["spec"]["groups"]


def base_rule_groups() -> list[dict[str, Any]]:
    return rule_groups(list(yaml.safe_load_all(RULES_CR.read_text(encoding="utf-8"))))


def overlay_rule_groups(overlay: str) -> list[dict[str, Any]]:
    return rule_groups(kustomize_build(K8S_DIR / "overlays" / overlay))


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"] if "alert" in r]


def dashboard_exprs(path: Path) -> list[str]:
    """Every `expr` of a Grafana dashboard (panels, nested rows, templating queries)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(path.read_text(encoding="utf-8")))
    return out


# --- PromQL selectors ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)"""
    r"|(?P<range>\[[^\]]*\])"
    r"|(?P<duration>\d+(?:ms|[smhdwy])(?![A-Za-z0-9_:]))"
    r"|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|==|>=|<=|[{}(),=<>+\-*/%^@])"
    r"|(?P<ws>\s+)"
)
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


@dataclass
class Selector:
    """One vector selector: `metric{label op "value", ...}`, plus the labels the enclosing
    expression groups or matches by (`by (...)`, `on (...)`, ...)."""

    metric: str
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Parsed:
    selectors: list[Selector]
    grouping_labels: set[str]


def _tokens(expr: str) -> list[tuple[str, str]]:
    # Grafana variables ($__rate_interval, $datasource) only ever stand inside [...] here
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos:]!r} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup or "", m.group()))
    return out


def promql_selectors(expr: str) -> Parsed:
    """The vector selectors of a PromQL expression and its grouping/matching labels."""
    toks = _tokens(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0

    def matchers(j: int) -> tuple[list[tuple[str, str, str]], int]:
        # toks[j] is "{"
        found, j = [], j + 1
        while toks[j][1] != "}":
            (_, label), (_, op), (kind, value) = toks[j], toks[j + 1], toks[j + 2]
            if kind != "str" or op not in {"=", "!=", "=~", "!~"}:
                raise ValueError(f"bad label matcher {label}{op}{value} in {expr!r}")
            found.append((label, op, value[1:-1]))
            j += 3
            if toks[j][1] == ",":
                j += 1
        return found, j + 1

    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "ident" and text in _GROUPING and nxt == "(":
            j = i + 2
            while toks[j][1] != ")":
                if toks[j][0] == "ident":
                    grouping.add(toks[j][1])
                j += 1
            i = j + 1
        elif kind == "ident" and (
            text in _KEYWORDS or nxt == "(" or (text in _AGGREGATIONS and nxt in _GROUPING)
        ):  # a keyword, a function call or `sum by (...) (...)`
            i += 1
        elif kind == "ident":
            sel = Selector(text)
            i += 1
            if nxt == "{":
                sel.matchers, i = matchers(i)
            selectors.append(sel)
        elif text == "{":  # a selector of matchers only: {__name__="..."}
            found, i = matchers(i)
            names = [v for label, op, v in found if label == "__name__" and op == "="]
            if not names:
                raise ValueError(f"selector without a metric name in {expr!r}")
            selectors.append(Selector(names[0], [m for m in found if m[0] != "__name__"]))
        else:
            i += 1
    return Parsed(selectors, grouping)


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


def promtool() -> Path:
    """The pinned promtool (`$PROMTOOL` overrides); skips without one, fails in CI."""
    override = os.environ.get("PROMTOOL")
    found = Path(override) if override else ARTIFACTS / "bin" / "promtool"
    if found.is_file() and os.access(found, os.X_OK):
        return found
    on_path = shutil.which("promtool") if not override else None
    if on_path:
        return Path(on_path)
    msg = f"promtool not found at {found}; run `make .artifacts/bin/promtool` (Makefile)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " - required in CI")
    pytest.skip(msg)


def run_promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [str(promtool()), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}"
    return out


def write_rule_file(groups: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


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
