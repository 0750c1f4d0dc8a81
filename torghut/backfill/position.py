"""A backfill's saved position: where it is, and every symbol's state there.

``<state dir>/position.json``, written atomically (temp file, fsync, rename) after each
chunk's rows are inserted: the run's arguments, the chunks done, where the next starts,
cumulative totals, and per symbol its `SymbolState.to_state()` and `SignalState.to_state()`
(as the job keeps them in keyed state; dicts, whose keys may be ints, as ``{"__dict__":
[[key, value], ...]}``). A run started again with the same arguments continues from there.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flink_job.symbol_processor import SymbolState
from shared.indicators import SignalConfig, SignalState

POSITION_VERSION = 1
POSITION_FILE = "position.json"


class PositionError(ValueError):
    """A position file this run cannot continue from; the message says what to do."""


def plain(value: Any) -> Any:
    """A `to_state()` value as JSON (tuples as lists, dicts as key/value pairs)."""
    if isinstance(value, dict):
        return {"__dict__": [[plain(k), plain(v)] for k, v in value.items()]}
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def unplain(value: Any) -> Any:
    """Inverse of `plain` (sequences come back as tuples, as `to_state()` gives them)."""
    if isinstance(value, dict):
        return {unplain(k): unplain(v) for k, v in value["__dict__"]}
    if isinstance(value, list):
        return tuple(unplain(v) for v in value)
    return value


@dataclass
class Position:
    name: str
    symbols: list[str]
    feed: str
    asof: str | None
    start_ns: int
    end_ns: int
    next_ns: int  # start of the next chunk (end_ns: done)
    chunks_done: int = 0
    chunks_total: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    states: dict[str, Any] = field(default_factory=dict)  # symbol -> [symbol, signal state]
    seed_file: str | None = None
    version: int = POSITION_VERSION

    @property
    def done(self) -> bool:
        return self.next_ns >= self.end_ns

    def same_run(self, other: Position) -> bool:
        keys = ("symbols", "feed", "asof", "start_ns", "end_ns")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def put_states(self, states: dict[str, tuple[SymbolState, SignalState]]) -> None:
        self.states = {
            sym: [plain(st.to_state()), plain(sig.to_state())] for sym, (st, sig) in states.items()
        }

    def get_states(self, config: SignalConfig) -> dict[str, tuple[SymbolState, SignalState]]:
        out = {}
        for sym, (st, sig) in self.states.items():
            out[sym] = (
                SymbolState.from_state(unplain(st)),
                SignalState.from_state(unplain(sig), config),
            )
        return out


def save(path: Path, pos: Position) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".position-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(pos), f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def load(path: Path) -> Position | None:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PositionError(
            f"{path} is not a readable backfill position ({exc}); remove it (or pass "
            "--restart) to start the backfill over"
        ) from None
    if doc.get("version") != POSITION_VERSION:
        raise PositionError(
            f"{path} has position version {doc.get('version')!r}, this release writes "
            f"{POSITION_VERSION}: pass --restart to start over"
        )
    return Position(**doc)
