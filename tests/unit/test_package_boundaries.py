"""The folder tree is the architecture: runtime packages import only what their images ship.

`shared/` imports nothing outward; `forwarder/` only `shared/`; `flink_job/` only `shared/`;
the development tooling (`torghut/`) may import all of them, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"shared", "forwarder", "flink_job", "torghut"}
ALLOWED = {
    "shared": {"shared"},
    "forwarder": {"forwarder", "shared"},
    "flink_job": {"flink_job", "shared"},
}


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_runtime_package_imports_only_what_its_image_ships(package: str) -> None:
    bad = {
        str(p.relative_to(ROOT)): sorted(_imported_top_levels(p) - ALLOWED[package])
        for p in (ROOT / package).rglob("*.py")
    }
    assert not {k: v for k, v in bad.items() if v}, f"{package} reaches outside: {bad}"


@pytest.mark.parametrize("package", ["forwarder", "flink_job"])
def test_each_service_runs_as_python_dash_m(package: str) -> None:
    main = ROOT / package / "__main__.py"
    assert main.exists(), f"python -m {package} is the image entry; {main} is missing"
    assert "__main__" in main.read_text()


def test_every_integration_test_module_carries_the_integration_marker() -> None:
    missing = [
        p.name
        for p in (ROOT / "tests" / "integration").glob("test_*.py")
        if "pytest.mark.integration" not in p.read_text()
    ]
    assert not missing, f"mark these pytestmark = pytest.mark.integration: {missing}"
