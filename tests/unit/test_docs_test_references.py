"""The docs name tests as `tests/<path>.py::test_name` (runbooks.md's "drilled:" marks,
deploy.md, test-harness.md, ...): every such name must be a test function in that file, so
a renamed or deleted test makes this fail instead of leaving the docs pointing at nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(test_\w+)")


def references(text: str) -> list[tuple[str, str]]:
    return REFERENCE.findall(text)


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def problems(text: str, root: Path = REPO_ROOT) -> list[str]:
    out = []
    for rel, name in references(text):
        path = root / rel
        if not path.is_file():
            out.append(f"{rel}: no such file")
        elif name not in defined_tests(path):
            out.append(f"{rel}::{name}: no such test function")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    assert problems(doc.read_text(encoding="utf-8")) == []


def test_the_runbooks_mark_drilled_steps() -> None:
    text = (REPO_ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    assert len(references(text)) >= 5, "runbooks.md lost its (drilled: ...) marks"


def test_a_made_up_or_misplaced_name_is_reported() -> None:
    real = "tests/unit/test_docs_test_references.py::test_every_test_a_doc_names_exists"
    assert problems(real) == []
    assert problems("tests/unit/test_docs_test_references.py::test_made_up") == [
        "tests/unit/test_docs_test_references.py::test_made_up: no such test function"
    ]
    assert problems("tests/unit/test_nothing_here.py::test_x") == [
        "tests/unit/test_nothing_here.py: no such file"
    ]
    # a test that exists, but in another file
    assert problems("tests/unit/test_k8s_argocd.py::test_every_test_a_doc_names_exists")
