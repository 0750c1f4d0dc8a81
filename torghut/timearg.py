"""Instants and durations as the command line spells them (`torghut backfill`, `torghut sim`).

An instant is a date (``2026-12-04``: midnight in New York, where the trading day and the
indicators' session live), a local date and time without offset (``2026-12-04T09:30``, New
York), an RFC 3339 timestamp with ``Z`` or an offset (``2026-12-04T14:30:00Z``), or ``now``.
A duration is a number with a unit: ``90s``, ``30m``, ``1h``, ``1d``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class TimeArgError(ValueError):
    """An instant or a duration the command line cannot read; the message shows the forms."""


def parse_instant(text: str, now_ns: int | None = None) -> int:
    """Epoch ns of ``text`` (module doc)."""
    t = text.strip()
    if t.lower() == "now":
        return time.time_ns() if now_ns is None else now_ns
    try:
        dt = datetime.fromisoformat(t.replace("z", "Z"))
    except ValueError:
        raise TimeArgError(
            f"{text!r} is not a time: use a date (2026-12-04, midnight New York), a New York "
            "local time (2026-12-04T09:30), RFC 3339 (2026-12-04T14:30:00Z) or 'now'"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=NEW_YORK)
    us = (dt - _EPOCH).days * 86_400_000_000 + (dt - _EPOCH).seconds * 1_000_000
    ns = (us + (dt - _EPOCH).microseconds) * 1000
    frac = re.search(r"\.(\d{7,9})", t)  # fromisoformat keeps microseconds only
    if frac is not None:
        ns += int(frac.group(1).ljust(9, "0")[6:])
    return ns


def parse_duration(text: str) -> int:
    """Nanoseconds of ``90s``, ``30m``, ``1h``, ``1d``."""
    m = _DURATION.match(text)
    if m is None:
        raise TimeArgError(f"{text!r} is not a duration: use e.g. 90s, 30m, 1h or 1d")
    ns = round(float(m.group(1)) * _UNIT_S[m.group(2)] * NS_PER_S)
    if ns <= 0:
        raise TimeArgError(f"{text!r}: a duration must be more than 0")
    return ns


def iso(ns: int) -> str:
    """``2026-12-04T14:30:00Z`` (fraction only when there is one) for messages."""
    s, frac = divmod(ns, NS_PER_S)
    head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
    return head + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"
