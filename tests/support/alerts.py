"""The monitoring's alert rules and dashboards in tests: the PrometheusRule's groups (base and
per overlay), every dashboard `expr`, the PromQL selectors an expression uses (the metrics,
label matchers and grouping labels the scrape test checks against real `/metrics`), and
the pinned promtool (`make setup`: .artifacts/bin/promtool; skips without it locally,
fails in CI)."""

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

from torghut.k8s_render import ARTIFACTS, BASE_DIR, K8S_DIR, find, kustomize_build

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
    """The rule groups of the base PrometheusRule (`k8s/base/monitoring/prometheusrule.yaml`)."""
    return rule_groups(list(yaml.safe_load_all(RULES_CR.read_text(encoding="utf-8"))))


def overlay_rule_groups(overlay: str) -> list[dict[str, Any]]:
    """The rule groups of the PrometheusRule as `overlay` renders it (its thresholds)."""
    return rule_groups(kustomize_build(K8S_DIR / "overlays" / overlay))


def alerts(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The alerting rules of `groups` (recording rules left out)."""
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
    """What `promql_selectors` finds in one expression."""

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
    """promtool's output for `args` run in `cwd`; fails the test naming the output if it fails."""
    proc = subprocess.run(
        [str(promtool()), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}"
    return out


def write_rule_file(groups: list[dict[str, Any]], path: Path) -> Path:
    """`groups` as a Prometheus rule file at `path` (what promtool reads)."""
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path
