"""The test tree's one import rule: no module under tests/ imports another test module
(`tests.unit.*`, `tests.integration.*`). What two test modules share lives in tests/support/
(docs/test-harness.md, "Shared helpers"); the modules of tests/support/ and the conftest
files are the only ones the rule does not check."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
TEST_PACKAGES = ("tests.unit", "tests.integration")


def _is_test_package(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in TEST_PACKAGES)


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])


def _resolved(node: ast.ImportFrom, path: Path) -> str:
    """The absolute module of a `from ... import` (relative ones resolved against `path`)."""
    if not node.level:
        return node.module or ""
    parts = _package_of(path).split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of_test_modules(source: str, path: Path) -> list[str]:
    """`file:line: module` for each import of a test module in `source` (read from `path`)."""
    where = path.relative_to(REPO)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _resolved(node, path)
            # `from tests import unit` / `from tests.unit import test_x` name the module last
            names = [module, *(f"{module}.{a.name}" for a in node.names)]
        else:
            continue
        bad = next((n for n in names if _is_test_package(n)), None)
        if bad is not None:
            found.append((node.lineno, f"{where}:{node.lineno}: imports {bad}"))
    return [text for _, text in sorted(found)]


def checked_files() -> list[Path]:
    """Every Python file under tests/ except tests/support/ and the conftest files."""
    return sorted(
        p
        for p in TESTS.rglob("*.py")
        if "support" not in p.relative_to(TESTS).parts[:1] and p.name != "conftest.py"
    )


def test_no_test_module_imports_another_test_module() -> None:
    files = checked_files()
    assert len(files) > 100 and TESTS / "unit" / "test_test_tree.py" in files
    problems = [
        p for path in files for p in imports_of_test_modules(path.read_text(encoding="utf-8"), path)
    ]
    assert not problems, (
        "test modules import other test modules; move what they share into tests/support/:\n"
        + "\n".join(problems)
    )


def test_the_check_names_file_and_line_of_every_form_of_such_an_import() -> None:
    path = TESTS / "unit" / "test_example.py"
    source = "\n".join(
        [
            "import os",
            "from tests.support.k8s import built",
            "from tests.conftest import wait_for",
            "from tests.unit.test_k8s_manifests import built",
            "import tests.integration.test_metrics_scrape",
            "from tests.unit import test_k8s_argocd",
            "from tests import integration",
            "def f():",
            "    from tests.unit.test_ta_state_replay import Harness",
            "from .test_forwarder_router import TRADE",
            "from ..integration import test_ta_job",
            "from ..support import forwarder",
            "import tests.unit_helpers",
        ]
    )
    assert imports_of_test_modules(source, path) == [
        "tests/unit/test_example.py:4: imports tests.unit.test_k8s_manifests",
        "tests/unit/test_example.py:5: imports tests.integration.test_metrics_scrape",
        "tests/unit/test_example.py:6: imports tests.unit",
        "tests/unit/test_example.py:7: imports tests.integration",
        "tests/unit/test_example.py:9: imports tests.unit.test_ta_state_replay",
        "tests/unit/test_example.py:10: imports tests.unit.test_forwarder_router",
        "tests/unit/test_example.py:11: imports tests.integration",
    ]


def test_support_and_conftest_are_not_checked_and_everything_else_is() -> None:
    files = set(checked_files())
    assert TESTS / "conftest.py" not in files
    assert not any(p.is_relative_to(TESTS / "support") for p in files)
    assert TESTS / "integration" / "jobs" / "passthrough.py" in files
    assert TESTS / "unit" / "test_k8s_manifests.py" in files
