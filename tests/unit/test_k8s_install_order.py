"""The install order docs/deploy.md states ("Argo CD") is the one the sync waves make.

Two tables there are read: the Applications' waves in their parent (the operator before the
pipeline) and, inside the pipeline Application, one row per sync wave with the hook of its
objects and the objects themselves (`Kind/name`, `Kind/*` for all of a kind). Every object of
every rendered overlay must be named in exactly one row, with that row's wave
(`argocd.argoproj.io/sync-wave`, 0 when absent) and hook (`argocd.argoproj.io/hook`), and the
rows must be in the order Argo CD applies them: by phase (PreSync, Sync, PostSync), then wave.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import pytest

from tests.support.k8s import ARGOCD_DIR, WAVE, built, child_apps, one, wave
from torghut.k8s_render import OVERLAYS, REPO_ROOT, load_yaml_docs

DEPLOY_MD = REPO_ROOT / "docs" / "deploy.md"
HOOK = "argocd.argoproj.io/hook"
# Argo CD's phases in the order it runs them; a resource without a hook is in Sync
PHASES = ("PreSync", "Sync", "PostSync")
WAVE_TABLE_HEADER = "| wave | hook | objects | rollout step"
APPS_TABLE_HEADER = "| file | Application | what it syncs | its wave in the parent |"
NO_HOOK = "—"


@dataclass
class WaveRow:
    wave: int
    hook: str | None
    objects: list[tuple[str, str]] = field(default_factory=list)  # (kind, name or "*")

    @property
    def phase(self) -> int:
        return PHASES.index(self.hook or "Sync")


def _table(text: str, header: str) -> list[list[str]]:
    """The cells of each body row of the markdown table that starts with ``header``."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(starts) == 1, f"{len(starts)} tables start with {header!r} in docs/deploy.md"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def documented_waves(text: str) -> list[WaveRow]:
    rows = []
    for cells in _table(text, WAVE_TABLE_HEADER):
        wave_cell, hook_cell, objects_cell = cells[:3]
        hook = None if hook_cell == NO_HOOK else hook_cell.strip("`")
        row = WaveRow(int(wave_cell), hook)
        for kind, name in re.findall(r"`([A-Z][A-Za-z]+)/([a-z0-9.*-]+)`", objects_cell):
            row.objects.append((kind, name))
        rows.append(row)
    return rows


def documented_app_waves(text: str, overlay: str) -> dict[str, int | None]:
    """File of each Application (for ``overlay``) -> its documented wave in the parent."""
    out = {}
    for cells in _table(text, APPS_TABLE_HEADER):
        path = cells[0].strip("`").replace("<env>", overlay)
        value = cells[-1]
        if value.startswith(NO_HOOK):  # the root: created by hand, no parent
            out[path] = None
        else:
            number = re.fullmatch(r"`(-?[0-9]+)`", value)
            assert number, f"{path}: wave cell {value!r} is neither `N` nor {NO_HOOK}"
            out[path] = int(number.group(1))
    return out


def hook(doc: dict) -> str | None:
    return ((doc.get("metadata") or {}).get("annotations") or {}).get(HOOK)


def _label(doc: dict) -> str:
    meta = doc["metadata"]
    where = f" in {meta['namespace']}" if meta.get("namespace") else ""
    return f"{doc['kind']}/{meta['name']}{where}"


def order_problems(rows: list[WaveRow], rendered: list[dict]) -> list[str]:
    """How the documented rows and the rendered objects' waves and hooks disagree."""
    problems = []
    keys = [(r.phase, r.wave) for r in rows]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        problems.append(f"rows not in apply order (phase, wave): {keys}")
    for r in rows:
        if r.hook is not None and r.hook not in PHASES:
            problems.append(f"wave {r.wave}: unknown hook {r.hook!r}")
    named = {(k, n) for r in rows for k, n in r.objects if n != "*"}
    matched: set[tuple[str, str]] = set()
    for d in rendered:
        kind, name = d["kind"], d["metadata"]["name"]
        hits = [r for r in rows if (kind, name) in r.objects]
        if not hits:  # a name is more specific than its kind's `*`
            hits = [r for r in rows if (kind, "*") in r.objects]
        if len(hits) != 1:
            problems.append(f"{_label(d)}: named in {len(hits)} rows of the table")
            continue
        row = hits[0]
        matched.add((kind, name) if (kind, name) in named else (kind, "*"))
        if wave(d) != row.wave:
            problems.append(f"{_label(d)}: wave {wave(d)}, the table says {row.wave}")
        if hook(d) != row.hook:
            problems.append(f"{_label(d)}: hook {hook(d)}, the table says {row.hook}")
    for r in rows:
        for obj in r.objects:
            if obj not in matched:
                problems.append(f"wave {r.wave}: {'/'.join(obj)} matches no rendered object")
    return problems


# --- the documented order against the rendered waves -----------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_documented_install_order_is_what_the_waves_do(overlay: str) -> None:
    rows = documented_waves(DEPLOY_MD.read_text(encoding="utf-8"))
    assert [r.wave for r in rows] == [-5, -4, -3, -2, -1, 0, 1]
    assert order_problems(rows, built(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_documented_application_waves_are_the_parents(overlay: str) -> None:
    """The operator's Application before the pipeline's, as the first table says; the root is
    created by hand and has no wave."""
    documented = documented_app_waves(DEPLOY_MD.read_text(encoding="utf-8"), overlay)
    root = f"k8s/argocd/{overlay}/root.yaml"
    assert documented.pop(root) is None
    assert WAVE not in (load_yaml_docs(REPO_ROOT / root)[0]["metadata"].get("annotations") or {})
    apps = {
        f.relative_to(REPO_ROOT).as_posix(): f
        for f in (ARGOCD_DIR / overlay / "apps").glob("*.yaml")
    }
    apps.pop(f"k8s/argocd/{overlay}/apps/kustomization.yaml")
    assert set(documented) == set(apps)
    actual = {path: wave(load_yaml_docs(f)[0]) for path, f in apps.items()}
    assert actual == documented
    # and what the root renders carries those waves
    rendered = {a["metadata"]["name"]: wave(a) for a in child_apps(overlay)}
    assert sorted(rendered.values()) == sorted(documented.values())
    operator = f"k8s/argocd/{overlay}/apps/flink-operator.yaml"
    pipeline = f"k8s/argocd/{overlay}/apps/pipeline.yaml"
    assert documented[operator] < documented[pipeline]


# --- the comparison can fail ------------------------------------------------------------------


def _rows() -> list[WaveRow]:
    return documented_waves(DEPLOY_MD.read_text(encoding="utf-8"))


def _moved(rendered: list[dict], kind: str, name: str, annotations: dict) -> list[dict]:
    out = copy.deepcopy(rendered)
    meta = one(out, kind, name)["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return out


def test_an_object_in_another_wave_than_documented_is_reported() -> None:
    rendered = _moved(built("prod"), "Deployment", "torghut-bar-check", {WAVE: "1"})
    assert order_problems(_rows(), rendered) == [
        "Deployment/torghut-bar-check in torghut: wave 1, the table says 0"
    ]


def test_a_hook_the_table_does_not_state_is_reported() -> None:
    rendered = _moved(built("prod"), "ConfigMap", "torghut-schema-registry", {HOOK: "PreSync"})
    assert order_problems(_rows(), rendered) == [
        "ConfigMap/torghut-schema-registry in torghut: hook PreSync, the table says None"
    ]


def test_an_object_the_table_does_not_name_and_a_stale_name_are_reported() -> None:
    rendered = copy.deepcopy(built("prod"))
    one(rendered, "Service", "torghut-forwarder-metrics")["metadata"]["name"] = "torghut-fwd"
    problems = order_problems(_rows(), rendered)
    assert problems == [
        "Service/torghut-fwd in torghut: named in 0 rows of the table",
        "wave 0: Service/torghut-forwarder-metrics matches no rendered object",
    ]


def test_rows_out_of_order_are_reported() -> None:
    rows = _rows()
    rows[0], rows[1] = rows[1], rows[0]
    problems = order_problems(rows, built("prod"))
    assert problems and problems[0].startswith("rows not in apply order"), problems


def test_the_parser_reads_kinds_names_and_hooks() -> None:
    text = (
        f"{WAVE_TABLE_HEADER} |\n|---|---|---|---|\n"
        "| -2 | `Sync` | `Job/a-b`, the `ConfigMap/c.d` | x |\n"
        "| 3 | — | `NetworkPolicy/*` (`k8s/base/x.yaml`) | y |\n\nafter\n"
    )
    assert documented_waves(text) == [
        WaveRow(-2, "Sync", [("Job", "a-b"), ("ConfigMap", "c.d")]),
        WaveRow(3, None, [("NetworkPolicy", "*")]),
    ]
