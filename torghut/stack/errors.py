"""Typed errors of the local stack supervisor."""


class StackError(RuntimeError):
    """Base class for local-stack failures."""


class ComponentStartError(StackError):
    """A component did not become healthy; the message names it and its log file."""

    def __init__(self, component: str, log_file: str, reason: str) -> None:
        tail = _tail(log_file)
        super().__init__(
            f"{component} failed to start: {reason}. Log: {log_file}"
            + (f"\n--- last lines of {log_file} ---\n{tail}" if tail else "")
        )
        self.component = component
        self.log_file = log_file


class MissingArtifactError(StackError):
    """A jar or binary the stack needs has not been built; run `make setup`."""


class NoStackError(StackError):
    """No running stack state was found where one was expected."""


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
