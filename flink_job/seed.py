"""Seed files: indicator state a backfill hands to the live job (docs/design.md, "Backfill").

`torghut backfill` writes one at the end of a run: per symbol the `SignalState` as of the
backfill's end (`SignalState.to_state()`, plain numbers, so the file is JSON), the end time,
the range and the feed. The job reads it through `TaSettings.seed_file`
(`TORGHUT_TA_SEED_FILE`); a key without keyed signal state starts from its seed instead of
an empty `SignalState` (`SymbolTaFunction._load`). The settings the state was computed with
(bar size, session start, quote age) must be the job's: a seed computed otherwise is refused.

Format (version 1)::

    {"format": "torghut-ta-seed", "version": 1, "feed": "iex",
     "start_ns": ..., "end_ns": ..., "start": "2026-12-04T14:30:00Z", "end": "...",
     "bar_size_ms": 1000, "session_start_local": "04:00", "quote_max_age_ms": 5000,
     "symbols": {"AAPL": {"end_ns": ..., "range": ["...", "..."], "feed": "iex", "bars": 23400,
                          "last_bar_end_ns": ..., "signal_state": [1, ...]}}}
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flink_job.errors import TaJobError
from shared.indicators import SignalConfig, SignalState

SEED_FORMAT = "torghut-ta-seed"
SEED_VERSION = 1


class SeedFileError(TaJobError, ValueError):
    """A seed file the job cannot use; the message names the file and the fix."""


@dataclass(frozen=True)
class SymbolSeed:
    end_ns: int  # the backfill's end: live bars must start at or after it
    bars: int
    last_bar_end_ns: int | None
    signal_state: tuple


@dataclass(frozen=True)
class Seed:
    feed: str
    start_ns: int
    end_ns: int
    bar_size_ms: int
    session_start_local: str
    quote_max_age_ms: int
    symbols: dict[str, SymbolSeed] = field(default_factory=dict)


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples `to_state()` gives (the job pickles them)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _iso(ns: int) -> str:
    s, frac = divmod(ns, 1_000_000_000)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return head + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def write_seed(path: Path, seed: Seed) -> Path:
    """Write `seed` atomically (a reader never sees half a file)."""
    doc = {
        "format": SEED_FORMAT,
        "version": SEED_VERSION,
        "feed": seed.feed,
        "start_ns": seed.start_ns,
        "end_ns": seed.end_ns,
        "start": _iso(seed.start_ns),
        "end": _iso(seed.end_ns),
        "bar_size_ms": seed.bar_size_ms,
        "session_start_local": seed.session_start_local,
        "quote_max_age_ms": seed.quote_max_age_ms,
        "symbols": {
            sym: {
                "end_ns": s.end_ns,
                "range": [_iso(seed.start_ns), _iso(s.end_ns)],
                "feed": seed.feed,
                "bars": s.bars,
                "last_bar_end_ns": s.last_bar_end_ns,
                "signal_state": s.signal_state,
            }
            for sym, s in sorted(seed.symbols.items())
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".seed-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_seed(path: str | Path) -> Seed:
    """The seed in `path`, checked (format, version, every state readable)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise SeedFileError(
            f"seed file {p} does not exist; `torghut backfill` prints the path of the seed it "
            "wrote (unset TORGHUT_TA_SEED_FILE to start without one)"
        ) from None
    except (OSError, ValueError) as exc:
        raise SeedFileError(f"seed file {p} is not readable JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != SEED_FORMAT:
        raise SeedFileError(f"{p} is not a torghut seed file (format {SEED_FORMAT!r})")
    if doc.get("version") != SEED_VERSION:
        raise SeedFileError(
            f"seed file {p} has version {doc.get('version')!r}; this release reads version "
            f"{SEED_VERSION}: run `torghut backfill` of this release again"
        )
    try:
        symbols = {
            sym: SymbolSeed(
                end_ns=int(s["end_ns"]),
                bars=int(s["bars"]),
                last_bar_end_ns=s["last_bar_end_ns"],
                signal_state=_tuples(s["signal_state"]),
            )
            for sym, s in doc["symbols"].items()
        }
        seed = Seed(
            feed=str(doc["feed"]),
            start_ns=int(doc["start_ns"]),
            end_ns=int(doc["end_ns"]),
            bar_size_ms=int(doc["bar_size_ms"]),
            session_start_local=str(doc["session_start_local"]),
            quote_max_age_ms=int(doc["quote_max_age_ms"]),
            symbols=symbols,
        )
        for s in symbols.values():
            SignalState.from_state(s.signal_state)  # refuses a state of another layout
    except (KeyError, TypeError, ValueError) as exc:
        raise SeedFileError(
            f"seed file {p}: {exc!r}; write it again with `torghut backfill`"
        ) from None
    return seed


def seed_states(
    path: str | Path, bar_size_ms: int, session_start_local: str, quote_max_age_ms: int
) -> tuple[tuple[str, int, tuple], ...]:
    """(symbol, end ns, SignalState.to_state()) of each symbol of the seed file, for
    `TaFunctionConfig.seed`; refused unless computed with the job's own settings."""
    seed = read_seed(path)
    mine = (bar_size_ms, session_start_local, quote_max_age_ms)
    theirs = (seed.bar_size_ms, seed.session_start_local, seed.quote_max_age_ms)
    if mine != theirs:
        raise SeedFileError(
            f"seed file {path} was computed with bar_size_ms, session_start_local, "
            f"quote_max_age_ms = {theirs}, the job runs with {mine}: its indicators would not "
            "continue the same series; backfill again with the job's TORGHUT_TA_* settings"
        )
    SignalConfig.parse(session_start_local, quote_max_age_ms)
    return tuple((sym, s.end_ns, s.signal_state) for sym, s in sorted(seed.symbols.items()))
