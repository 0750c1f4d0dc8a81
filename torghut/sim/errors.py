"""Typed errors of the Alpaca simulator."""


class SimError(RuntimeError):
    """Base class for simulator failures."""


class ReplayFileError(SimError):
    """A replay JSONL file is missing or holds a line that is not an Alpaca message."""


class SimNotRunningError(SimError):
    """The server was used (url, port) before ``start()`` returned."""
