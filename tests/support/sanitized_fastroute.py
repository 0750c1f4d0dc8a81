"""pytest plugin of ``make test-sanitizers``: load ``forwarder._fastroute`` from the
ASan/UBSan build in ``$TORGHUT_FASTROUTE_BUILD`` instead of the in-place one.

Loaded with ``-p tests.support.sanitized_fastroute`` (before any conftest or test module
imports the forwarder): the build directory goes first on the ``forwarder`` package's path,
so ``from forwarder import _fastroute`` (router, producer, tests) finds the sanitized shared
object, and librdkafka loads that same file as its plugin (``producer.NATIVE_PLUGIN``). A
run that would silently test the normal build fails here instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_BUILD = os.environ.get("TORGHUT_FASTROUTE_BUILD", "")
if not _BUILD:
    raise pytest.UsageError(
        "tests.support.sanitized_fastroute needs TORGHUT_FASTROUTE_BUILD (run `make test-sanitizers`)"
    )
if "forwarder._fastroute" in sys.modules:
    raise pytest.UsageError("forwarder._fastroute was imported before the sanitized build")
_PKG = Path(_BUILD, "forwarder").resolve()

import forwarder  # noqa: E402

forwarder.__path__.insert(0, str(_PKG))

from forwarder import _fastroute  # noqa: E402

FILE = Path(_fastroute.__file__).resolve()
if FILE.parent != _PKG:
    raise pytest.UsageError(f"forwarder._fastroute came from {FILE}, not the build in {_PKG}")
if "libasan" not in os.environ.get("LD_PRELOAD", ""):
    raise pytest.UsageError("the sanitized build needs LD_PRELOAD of gcc's libasan (make target)")


def pytest_report_header() -> str:
    return f"forwarder._fastroute (ASan/UBSan): {FILE}"


@pytest.fixture(autouse=True)
def _sanitized_fastroute_is_loaded() -> None:
    """Every test of the run: the module in use is still the sanitized build."""
    assert Path(sys.modules["forwarder._fastroute"].__file__ or "").resolve() == FILE
