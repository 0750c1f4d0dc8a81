"""The private PyFlink attributes the job builds on, all behind flink_job/pyflink_internals.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from flink_job import pyflink_internals
from flink_job.errors import TaJobError

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("flink_job", "forwarder", "shared")


def test_every_private_attribute_the_job_uses_exists_on_the_installed_pyflink():
    assert pyflink_internals.missing() == []
    pyflink_internals.check()


def test_a_moved_attribute_fails_loudly_naming_it_and_the_module_to_port(monkeypatch):
    moved = (*pyflink_internals.USED, ("pyflink.datastream.data_stream", "DataStream", "_j_moved"))
    monkeypatch.setattr(pyflink_internals, "USED", moved)
    with pytest.raises(pyflink_internals.PyFlinkInternalsError) as err:
        pyflink_internals.check()
    assert "pyflink.datastream.data_stream.DataStream._j_moved" in str(err.value)
    assert "flink_job/pyflink_internals.py" in str(err.value)
    assert isinstance(err.value, TaJobError)


def _private_pyflink_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_j_")
    ]


def test_no_runtime_module_but_the_adapter_touches_a_private_pyflink_attribute():
    found = [
        use
        for package in RUNTIME
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "pyflink_internals.py"
        for use in _private_pyflink_uses(path)
    ]
    assert found == []


def test_the_adapter_uses_exactly_the_attributes_it_checks():
    used = {
        u.rsplit(".", 1)[1] for u in _private_pyflink_uses(ROOT / "flink_job/pyflink_internals.py")
    }
    assert used == {attr for _, _, attr in pyflink_internals.USED}


def test_every_error_the_job_raises_on_purpose_has_the_one_root():
    import flink_job

    roots = []
    for path in sorted(Path(flink_job.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if "TaJobError" not in bases and node.name != "TaJobError":
                    roots.append(f"{path.name}:{node.name}")
    assert roots == []
