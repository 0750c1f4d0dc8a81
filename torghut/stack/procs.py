"""Starting, probing and stopping the stack's background processes."""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from torghut.stack.errors import ComponentStartError


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1
_TIED: contextvars.ContextVar[bool] = contextvars.ContextVar("tied", default=False)


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """`preexec_fn`: a session of its own, and SIGKILL when the spawning thread dies (the
    kernel's PR_SET_PDEATHSIG: also when the parent is killed -9)."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def tied_to_this_process() -> Iterator[None]:
    """Processes `spawn`ed inside die with this process (`die_with_parent`): for commands
    that own their stack for their lifetime (`torghut run`, the test session), not for
    `torghut stack up`, whose stack outlives it. Use from the thread that lives as long."""
    token = _TIED.set(True)
    try:
        yield
    finally:
        _TIED.reset(token)


def spawn(
    cmd: Sequence[str], log_file: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> int:
    """Start a detached process (own session, so `down` can stop its whole group); inside
    `tied_to_this_process` it also dies with this process."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tied = _TIED.get()
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=str(cwd) if cwd else None,
            start_new_session=not tied,
            preexec_fn=die_with_parent if tied else None,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process counts as dead
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop(pid: int, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid) and not _group_alive(pid):
                return
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(
    component: str, log_file: Path, pid: int, check: Callable[[], bool], timeout_s: float, what: str
) -> None:
    """Poll `check` until it is true; fail fast if the process died."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while time.monotonic() < deadline:
        if not alive(pid):
            raise ComponentStartError(component, str(log_file), f"process {pid} exited")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise ComponentStartError(component, str(log_file), f"{what} not ready after {timeout_s:.0f}s")
