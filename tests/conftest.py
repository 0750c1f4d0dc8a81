"""Session fixtures: one real local stack (Kafka, MinIO, registry) for all integration tests."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# what the local pipeline keeps between runs (.data/: ClickHouse tables, recordings, backfill
# positions) goes to a directory of this test session's, never into the checkout's own;
# set before torghut.stack.paths is imported, and inherited by every child process
if "TORGHUT_DATA_HOME" not in os.environ:
    os.environ["TORGHUT_DATA_HOME"] = tempfile.mkdtemp(prefix="torghut-test-data-")
    atexit.register(shutil.rmtree, os.environ["TORGHUT_DATA_HOME"], True)

from torghut.stack import procs, supervisor
from torghut.stack.state import StackState


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """Start the real stack once per session in its own run dir; stop it at the end.

    With TORGHUT_TESTCONTAINERS=1 (a machine with a Docker engine) the same engines come
    from testcontainers instead (torghut/stack/containers.py).
    """
    if os.environ.get("TORGHUT_TESTCONTAINERS") == "1":
        from torghut.stack.containers import container_stack

        with container_stack() as state:
            os.environ["TORGHUT_STACK_DIR"] = state.run_dir
            yield state
        return
    run_dir = tmp_path_factory.mktemp("stack")
    with procs.tied_to_this_process():  # a killed test run leaves no engine behind
        state = supervisor.up(run_dir)
    os.environ["TORGHUT_STACK_DIR"] = state.run_dir
    try:
        yield state
    finally:
        supervisor.down(state)


def module_stack(
    tmp_path_factory: pytest.TempPathFactory,
    partitions: int | None = None,
    transaction_max_timeout_ms: int | None = None,
) -> Iterator[StackState]:
    """A stack of its own (`yield from` it in a module fixture); `partitions` of every
    symbol-keyed topic (`torghut stack up --partitions`; default the catalog's);
    `transaction_max_timeout_ms` the broker's `transaction.max.timeout.ms` (default the
    stack's)."""
    if os.environ.get("TORGHUT_TESTCONTAINERS") == "1":
        from torghut.stack.containers import container_stack

        assert partitions in (None, 1), "the container stack creates the default catalog"
        assert transaction_max_timeout_ms is None, "the container stack has its own broker"
        with container_stack() as state:
            yield state
        return
    with procs.tied_to_this_process():
        more = {}
        if transaction_max_timeout_ms is not None:
            more["transaction_max_timeout_ms"] = transaction_max_timeout_ms
        state = supervisor.up(
            tmp_path_factory.mktemp("module-stack"), partitions=partitions, **more
        )
    try:
        yield state
    finally:
        supervisor.down(state)


@pytest.fixture(scope="module")
def fresh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackState]:
    """A stack of the module's own, for event-time tests: topics that other tests filled
    (with other event times) would move the job's watermark and make their records late."""
    yield from module_stack(tmp_path_factory)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A CLI run in process (`main([...])`) configures the root logger for its process
    (`shared.logs.configure` replaces its handlers); put it back after the test, so the next
    test's log records do not go to a stream captured for this one."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Unique names per test (topics, groups, prefixes) so tests never share state."""

    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    return make


def wait_for(
    condition: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1
) -> object:
    """Poll until `condition()` is truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


REPO_ROOT = Path(__file__).resolve().parents[1]
