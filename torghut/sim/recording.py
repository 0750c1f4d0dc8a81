"""JSONL recordings: what the simulator sent, one Alpaca JSON message per line.

A recording doubles as a replay input and as the oracle tests compute from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from torghut.sim.errors import ReplayFileError
from torghut.sim.protocol import MARKET_DATA_TYPES, normalize_message, to_json_message
from torghut.sim.timestamps import TimestampFormatError


class JsonlRecorder:
    """Appends messages (``t`` as RFC 3339 ns, exactly the JSON wire form) to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = self.path.open("wb")
        self.count = 0

    def write(self, msgs: Iterable[dict[str, Any]]) -> None:
        if self._file is None:
            return
        lines = [orjson.dumps(to_json_message(m)) for m in msgs]
        if lines:
            self._file.write(b"\n".join(lines) + b"\n")
            self.count += len(lines)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Messages of a JSONL file (a message or a list of messages per line), ``t`` as int ns."""
    path = Path(path)
    if not path.is_file():
        raise ReplayFileError(f"replay file {path} does not exist; record one with --record")
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                for msg in item if isinstance(item, list) else [item]:
                    if not isinstance(msg, dict) or "T" not in msg:
                        raise ValueError("not an Alpaca message (a JSON object with 'T')")
                    yield normalize_message(msg)
            except (ValueError, TimestampFormatError) as exc:
                raise ReplayFileError(f"{path}:{lineno}: {exc}") from exc


def read_jsonl(path: str | Path, market_data_only: bool = True) -> list[dict[str, Any]]:
    """All messages of a JSONL file; control messages are skipped unless asked for."""
    return [m for m in iter_jsonl(path) if not market_data_only or m["T"] in MARKET_DATA_TYPES]
