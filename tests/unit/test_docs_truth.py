"""What the docs cite must exist, and the repository must not point at what a reader of it
cannot see.

- a repo-relative path in backticks in README.md or docs/*.md (`forwarder/app.py`,
  `k8s/base/...yaml`, `tests/integration/test_x.py`) is a file or folder here; a bare
  `test_x.py` is a file somewhere under tests/; spans with placeholders (`<name>`, `...`,
  `*`, `{a,b}`, `$VAR`) are skipped;
- a test cited as `path::test_name` (anywhere in those files) is a test function in it;
- a `make <target>` in backticks or in a code block is a target of the Makefile;
- no "issue N", "session N" or "item N" anywhere in the docs, k8s/ YAML, the source and
  the tests: a reader has no issue tracker and no session log, so the text must say what
  it means (a date, the feature) instead.

Each problem is reported as `file:line: what is wrong`. No engines; reads files only."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Not part of the repository (ignored build outputs and local state).
IGNORED_DIRS = {
    ".git",
    ".venv",
    ".artifacts",
    ".data",
    "bench-results",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "node_modules",
    "build",
    "dist",
}
PATH_SUFFIXES = (
    ".py",
    ".md",
    ".sql",
    ".yaml",
    ".yml",
    ".avsc",
    ".json",
    ".c",
    ".h",
    ".xml",
    ".toml",
    ".txt",
    ".sh",
    ".cfg",
    ".ini",
    ".properties",
    ".conf",
    ".jar",
    ".pem",
    ".rules",
    ".promql",
    ".env",
    ".jsonl",
    ".zst",
    ".html",
    ".png",
)
PLACEHOLDER = re.compile(r"[<>*{}$|]|\.\.\.|…")


# Files whose prose the path, test and make checks read.
def doc_files(root: Path = REPO_ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


# Files that must not refer to issues, sessions or items by number.
TEXT_SUFFIXES = {
    ".md",
    ".py",
    ".pyi",
    ".c",
    ".h",
    ".yaml",
    ".yml",
    ".sql",
    ".avsc",
    ".toml",
    ".cfg",
    ".txt",
    ".sh",
    ".xml",
    ".properties",
    ".java",
}


def reference_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        # not walked: ignored outputs, and tests/data (fixtures: recorded logs, savepoints)
        dirs[:] = sorted(
            d for d in dirs if d not in IGNORED_DIRS and here / d != root / "tests" / "data"
        )
        for name in sorted(files):
            path = here / name
            if path.suffix in TEXT_SUFFIXES or name == "Makefile" or name.startswith("Dockerfile"):
                yield path


def top_level_entries(root: Path = REPO_ROOT) -> set[str]:
    return {p.name for p in root.iterdir() if p.name not in IGNORED_DIRS}


def numbered_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block) for each line of a markdown text."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        yield number, line, fenced


INLINE_CODE = re.compile(r"`([^`\n]+)`")


def inline_code(line: str) -> list[str]:
    return [span.strip() for span in INLINE_CODE.findall(line)]


# --- cited paths ----------------------------------------------------------------------


def cited_path(span: str, top: set[str]) -> str | None:
    """The repo-relative path a backticked span names, or None if it names none (a command,
    a setting, a placeholder, a path relative to somewhere else)."""
    candidate = span.split("::", 1)[0]
    if not candidate or any(c.isspace() for c in candidate) or PLACEHOLDER.search(candidate):
        return None
    first = candidate.split("/", 1)[0]
    if "/" in candidate and first in top:
        last = candidate.rstrip("/").rsplit("/", 1)[-1]
        # a file with a known suffix, a folder (trailing slash, or a last segment without a
        # dot: `k8s/base/flink`), a Dockerfile; not a module path like `shared.topics`
        if (
            candidate.endswith("/")
            or candidate.endswith(PATH_SUFFIXES)
            or "." not in last
            or last.startswith("Dockerfile")
        ):
            return candidate
        return None
    if "/" not in candidate and re.fullmatch(r"Dockerfile\.\w+|Makefile", candidate):
        return candidate  # a top-level build file
    if "/" not in candidate and re.fullmatch(r"test_\w+\.py", candidate):
        return candidate  # a bare test module name
    return None


# A doc may say its paths are relative to a folder (network-and-rbac.md: "all paths are
# under `k8s/base/`"); a cited path then exists either from the repo root or from there.
DECLARED_BASE = re.compile(r"all paths are\s+under\s+`([^`]+)`", re.IGNORECASE)


def path_problems(text: str, where: str, root: Path = REPO_ROOT) -> list[str]:
    top = top_level_entries(root)
    bases = [root] + [root / base for base in DECLARED_BASE.findall(text)]
    test_modules: set[str] | None = None
    out = []
    for number, line, fenced in numbered_lines(text):
        if fenced:
            continue
        for span in inline_code(line):
            path = cited_path(span, top)
            if path is None:
                continue
            if "/" in path or not path.startswith("test_"):
                if not any((base / path).exists() for base in bases):
                    out.append(f"{where}:{number}: `{span}` cites {path}, which does not exist")
            else:
                if test_modules is None:
                    test_modules = {p.name for p in (root / "tests").rglob("test_*.py")}
                if path not in test_modules:
                    out.append(
                        f"{where}:{number}: `{span}` names a test module that is "
                        "nowhere under tests/"
                    )
    return out


# --- cited tests ----------------------------------------------------------------------

TEST_REFERENCE = re.compile(r"((?:[\w.-]+/)*test_\w+\.py)::(test_\w+)")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def cited_test_problems(text: str, where: str, root: Path = REPO_ROOT) -> list[str]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        for rel, name in TEST_REFERENCE.findall(line):
            # a bare module name is looked up under tests/
            candidates = [root / rel] if "/" in rel else sorted((root / "tests").rglob(rel))
            files = [p for p in candidates if p.is_file()]
            if not files:
                out.append(f"{where}:{number}: {rel}::{name}: {rel} does not exist")
            elif not any(name in defined_tests(p) for p in files):
                out.append(f"{where}:{number}: {rel}::{name}: no test function {name} in {rel}")
    return out


# --- make targets ---------------------------------------------------------------------

MAKE_CALL = re.compile(r"(?:^|[\s;&|(=])make\s+([A-Za-z][\w.-]*)(?![\w.-]*=)")


def makefile_targets(root: Path = REPO_ROOT) -> set[str]:
    text = (root / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-$() /]+?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def make_problems(text: str, where: str, targets: set[str]) -> list[str]:
    out = []
    for number, line, fenced in numbered_lines(text):
        pieces = [line] if fenced else inline_code(line)
        for piece in pieces:
            for target in MAKE_CALL.findall(piece):
                if target not in targets:
                    out.append(
                        f"{where}:{number}: `make {target}`: no target {target!r} in the Makefile"
                    )
    return out


# --- issue / session / item numbers ---------------------------------------------------

# the word, optionally plural, and a number, also across a line break; not a clock time
# ("regular session" followed by "09:30-16:00" is the market's session).
TRACKER_REFERENCE = re.compile(r"\b(?:issues?|sessions?|items?)\s+#?\d+(?!\d|:\d)", re.IGNORECASE)


def tracker_problems(text: str, where: str) -> list[str]:
    out = []
    for match in TRACKER_REFERENCE.finditer(text):
        number = text.count("\n", 0, match.start()) + 1
        found = " ".join(match.group(0).split())
        out.append(
            f"{where}:{number}: {found!r} refers to an issue tracker or session log "
            "a reader of the repository does not have; say what is meant"
        )
    return out


# --- the README's measured numbers ---------------------------------------------------

MEASURED_HEADING = "## Measured here"
MEASURED_COLUMNS = ["what", "number", "benchmark", "date", "load"]
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
# what a benchmark cell may run: a make target, a `torghut` command, or pytest on a test file
BENCH_COMMAND = re.compile(r"^(?:\.venv/bin/)?(make|torghut|pytest)\s+(\S+)(?:\s+(\S+))?")


def measured_table(text: str) -> tuple[int, list[list[str]]]:
    """(line number of the heading, rows as cell lists) of the one table under the README's
    measured-numbers heading; the header row first."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(MEASURED_HEADING))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows, tables, in_table = [], 0, False
    for line in lines[start + 1 : end]:
        if line.startswith("|"):
            if not in_table:
                tables += 1
                in_table = True
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                rows.append(cells)
        else:
            in_table = False
    assert tables == 1, f"{tables} tables under {MEASURED_HEADING!r}: keep it one table"
    return start + 1, rows


def bench_command_problem(cell: str, make_targets: set[str], benchmarks: set[str]) -> str | None:
    commands = inline_code(cell)
    if not commands:
        return "names no benchmark command in backticks"
    for command in commands:
        match = BENCH_COMMAND.match(command)
        if not match:
            continue
        tool, first, second = match.groups()
        if tool == "make":
            return None if first in make_targets else f"`make {first}`: no such target"
        if tool == "torghut":
            if first == "bench" and second not in benchmarks:
                return f"`torghut bench {second}`: no such benchmark"
            return None
        path = first.split("::", 1)[0]
        return None if (REPO_ROOT / path).is_file() else f"`{command}`: {path} does not exist"
    return f"{commands[0]!r} is not a make, torghut or pytest command"


def measured_problems(text: str, make_targets: set[str], benchmarks: set[str]) -> list[str]:
    heading, rows = measured_table(text)
    header, body = rows[0], rows[1:]
    if [c.lower() for c in header] != MEASURED_COLUMNS:
        return [f"README.md:{heading}: columns {header}, expected {MEASURED_COLUMNS}"]
    out = []
    for cells in body:
        row = dict(zip(MEASURED_COLUMNS, cells, strict=False))
        what = row.get("what", "?")
        if len(cells) != len(MEASURED_COLUMNS):
            out.append(f"{what!r}: {len(cells)} cells, expected {len(MEASURED_COLUMNS)}")
            continue
        if not any(ch.isdigit() for ch in row["number"]):
            out.append(f"{what!r}: no number")
        problem = bench_command_problem(row["benchmark"], make_targets, benchmarks)
        if problem:
            out.append(f"{what!r}: {problem}")
        if not DATE.search(row["date"]):
            out.append(f"{what!r}: no date (YYYY-MM-DD) in {row['date']!r}")
        if not row["load"]:
            out.append(f"{what!r}: no load")
    return out


def bench_names() -> set[str]:
    from torghut.bench.cli import BENCHMARKS

    return set(BENCHMARKS)


# --- the tests ------------------------------------------------------------------------


def rel(path: Path, root: Path = REPO_ROOT) -> str:
    return str(path.relative_to(root))


def report(problems: Iterable[str]) -> str:
    problems = list(problems)
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_every_path_the_docs_cite_exists() -> None:
    problems = [
        p for doc in doc_files() for p in path_problems(doc.read_text(encoding="utf-8"), rel(doc))
    ]
    assert not problems, report(problems)


def test_every_test_the_docs_cite_exists_in_its_file() -> None:
    problems = [
        p
        for doc in doc_files()
        for p in cited_test_problems(doc.read_text(encoding="utf-8"), rel(doc))
    ]
    assert not problems, report(problems)


def test_every_make_target_the_docs_cite_is_in_the_makefile() -> None:
    targets = makefile_targets()
    assert {"run", "test", "bench"} <= targets, f"Makefile targets not parsed: {targets}"
    problems = [
        p
        for doc in doc_files()
        for p in make_problems(doc.read_text(encoding="utf-8"), rel(doc), targets)
    ]
    assert not problems, report(problems)


def test_nothing_refers_to_an_issue_session_or_item_by_number() -> None:
    files = list(reference_files())
    names = {rel(p) for p in files}
    assert {"README.md", "docs/benchmarks.md", "forwarder/app.py"} <= names
    problems = [
        p
        for path in files
        for p in tracker_problems(path.read_text(encoding="utf-8", errors="replace"), rel(path))
    ]
    assert not problems, report(problems)


def test_every_readme_measured_number_names_its_benchmark_command_a_date_and_the_load() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    _, rows = measured_table(text)
    assert len(rows) >= 6, "the measured-numbers table lost its rows"
    problems = measured_problems(text, makefile_targets(), bench_names())
    assert not problems, report(problems)


# --- the checks catch what they should ------------------------------------------------


def test_a_missing_path_is_reported_with_file_and_line() -> None:
    text = "ok: `forwarder/`, `docs/design.md`\nbad: `forwarder/nope.py` and `k8s/base/x.yaml`\n"
    assert path_problems(text, "X.md") == [
        "X.md:2: `forwarder/nope.py` cites forwarder/nope.py, which does not exist",
        "X.md:2: `k8s/base/x.yaml` cites k8s/base/x.yaml, which does not exist",
    ]


def test_folders_without_a_slash_and_top_level_build_files_are_checked_too() -> None:
    text = "`k8s/base/flink`, `Dockerfile.flink`, `Makefile`\n`k8s/base/nope`, `Dockerfile.nope`\n"
    assert path_problems(text, "X.md") == [
        "X.md:2: `k8s/base/nope` cites k8s/base/nope, which does not exist",
        "X.md:2: `Dockerfile.nope` cites Dockerfile.nope, which does not exist",
    ]
    top = top_level_entries()
    # a module path or a setting is no file path; alternatives are a placeholder
    for span in ["shared.topics", "k8s/overlays/dev|stage|prod", "flink_job/settings.TaSettings"]:
        assert cited_path(span, top) is None, span


def test_a_doc_may_declare_the_folder_its_paths_are_under() -> None:
    cited = "the CA volume of `forwarder/deployment.yaml`\n"
    assert path_problems(cited, "X.md")
    assert path_problems("All paths are\nunder `k8s/base/` here.\n" + cited, "X.md") == []


def test_placeholders_commands_and_foreign_paths_are_not_paths() -> None:
    top = top_level_entries()
    for span in [
        "k8s/overlays/<env>/kustomization.yaml",
        "tests/integration/*.py",
        "k8s/base/.../x.yaml",
        "python -m forwarder",
        ".data/recordings/run-1",
        "design.md",
        "s3a://bucket/x.json",
        "torghut.trades.v1",
    ]:
        assert cited_path(span, top) is None, span
    assert cited_path("tests/unit/test_x.py::test_y", top) == "tests/unit/test_x.py"
    assert path_problems("`test_docs_truth.py` and `test_no_such_module.py`", "X.md") == [
        "X.md:1: `test_no_such_module.py` names a test module that is nowhere under tests/"
    ]


def test_a_made_up_or_misplaced_test_name_is_reported() -> None:
    here = "tests/unit/test_docs_truth.py"
    assert cited_test_problems(f"{here}::test_every_path_the_docs_cite_exists", "X") == []
    assert cited_test_problems(f"a\n{here}::test_made_up", "X.md") == [
        f"X.md:2: {here}::test_made_up: no test function test_made_up in {here}"
    ]
    assert cited_test_problems("tests/unit/test_nothing.py::test_x", "X.md") == [
        "X.md:1: tests/unit/test_nothing.py::test_x: tests/unit/test_nothing.py does not exist"
    ]
    # a bare module name is looked up under tests/
    assert cited_test_problems("test_docs_truth.py::test_made_up", "X.md")


def test_an_unknown_make_target_is_reported() -> None:
    text = "Run `make test` or `make tset`.\n```bash\nmake run ARGS=x\nmake nope\n```\n"
    assert make_problems(text, "X.md", {"test", "run"}) == [
        "X.md:1: `make tset`: no target 'tset' in the Makefile",
        "X.md:4: `make nope`: no target 'nope' in the Makefile",
    ]
    # prose is not a make call: "make the Jobs hooks"
    assert make_problems("either drop it or make the Jobs hooks", "X.md", set()) == []


def test_tracker_numbers_are_reported_but_clock_times_are_not() -> None:
    # built from pieces so that this file itself does not hold what it looks for
    issue, session, item = "Issue", "session", "items"
    text = f"a\n({issue} 13 {item} 2 and 3)\nin {session}\n8; regular {session} 09:30-16:00\n"
    assert tracker_problems(text, "X.md") == [
        f"X.md:2: '{issue} 13' refers to an issue tracker or session log a reader of the "
        "repository does not have; say what is meant",
        f"X.md:2: '{item} 2' refers to an issue tracker or session log a reader of the "
        "repository does not have; say what is meant",
        f"X.md:3: '{session} 8' refers to an issue tracker or session log a reader of the "
        "repository does not have; say what is meant",
    ]


def test_the_runbooks_mark_drilled_steps() -> None:
    text = (REPO_ROOT / "docs" / "runbooks.md").read_text(encoding="utf-8")
    assert len(TEST_REFERENCE.findall(text)) >= 5, "runbooks.md lost its (drilled: ...) marks"


def test_a_measured_row_without_command_date_or_load_is_reported() -> None:
    table = (
        "## Measured here\n\n| what | number | benchmark | date | load |\n|---|---|---|---|---|\n"
        "| a | 1 ms | `torghut bench pipeline` | 2026-12-01 | 0.5 |\n"
        "| b | 2 ms | by hand | 2026-12-01 | 0.5 |\n"
        "| c | 3 ms | `torghut bench nope` | yesterday | |\n"
        "| d | 4 ms | `make nope` | 2026-12-01 | 1 |\n"
        "| e | 5 ms | `.venv/bin/pytest tests/unit/nope.py` | 2026-12-01 | 1 |\n"
        "\n## Next\n"
    )
    assert measured_problems(table, {"test"}, {"pipeline"}) == [
        "'b': names no benchmark command in backticks",
        "'c': `torghut bench nope`: no such benchmark",
        "'c': no date (YYYY-MM-DD) in 'yesterday'",
        "'c': no load",
        "'d': `make nope`: no such target",
        "'e': `.venv/bin/pytest tests/unit/nope.py`: tests/unit/nope.py does not exist",
    ]
    two_tables = table.replace("\n\n## Next", "\ntext\n| x |\n|---|\n| y |\n\n## Next")
    try:
        measured_table(two_tables)
    except AssertionError as exc:
        assert "keep it one table" in str(exc)
    else:
        raise AssertionError("two tables under the heading were accepted")
