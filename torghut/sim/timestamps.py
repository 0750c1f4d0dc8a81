"""Alpaca timestamps: RFC 3339 strings with nanoseconds (JSON) and msgpack Timestamp ext -1.

Inside the simulator every timestamp is an ``int`` of epoch nanoseconds; these helpers
convert at the wire edge only.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import msgpack

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


class TimestampFormatError(ValueError):
    """A timestamp string is not RFC 3339 (e.g. ``2024-03-01T14:30:00.123456789Z``)."""


@lru_cache(maxsize=4096)
def _second_prefix(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def format_rfc3339_ns(ns: int) -> str:
    """Format epoch nanoseconds like Go's ``time.RFC3339Nano`` (what Alpaca sends).

    Trailing zeros of the fraction are trimmed and a whole second has no fraction,
    so a minute bar reads ``2024-03-01T14:30:00Z`` and a trade
    ``2024-03-01T14:30:00.123456789Z``.
    """
    seconds, frac = divmod(ns, NS_PER_S)
    prefix = _second_prefix(seconds)
    if frac == 0:
        return prefix + "Z"
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


def parse_rfc3339_ns(text: str) -> int:
    """Parse an RFC 3339 timestamp (1-9 fraction digits, ``Z`` or offset) to epoch ns."""
    m = _RFC3339.match(text)
    if m is None:
        raise TimestampFormatError(
            f"not an RFC 3339 timestamp: {text!r}; expected e.g. 2024-03-01T14:30:00.123456789Z"
        )
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:  # the shape of one, not a date (month 13, second 61, ...)
        raise TimestampFormatError(f"not an RFC 3339 timestamp: {text!r} ({exc})") from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    frac_ns = int((frac or "0").ljust(9, "0"))
    return int(dt.timestamp()) * NS_PER_S + frac_ns


def to_msgpack_timestamp(ns: int) -> msgpack.Timestamp:
    """Epoch ns -> msgpack Timestamp (ext type -1), the form Alpaca's msgpack stream uses."""
    return msgpack.Timestamp.from_unix_nano(ns)


def from_wire_timestamp(value: object) -> int:
    """Any wire form of ``t`` (RFC 3339 string, msgpack Timestamp, int ns) -> epoch ns."""
    if isinstance(value, msgpack.Timestamp):
        return value.to_unix_nano()
    if isinstance(value, str):
        return parse_rfc3339_ns(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TimestampFormatError(f"unsupported timestamp value {value!r}")
