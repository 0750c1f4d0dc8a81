"""Trading-session boundaries in America/New_York, DST-correct (zoneinfo)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000
_ONE_DAY = timedelta(days=1)
_ONE_US = timedelta(microseconds=1)


class SessionCalendar:
    """Maps an event time to its session [start_ns, next_start_ns).

    A session begins every New York calendar day at `start` local time, so a session
    lasts 23 or 25 hours across a DST change. A start that falls into the spring-forward
    gap resolves with the pre-transition offset (zoneinfo's fold=0 rule).
    The last answer is cached: the per-bar cost is two integer comparisons.
    """

    __slots__ = ("_hi", "_lo", "start")

    def __init__(self, start: time = time(4, 0)) -> None:
        if start.tzinfo is not None:
            raise ValueError(
                f"session start {start!r} must be a naive local time; "
                "the zone is always America/New_York"
            )
        self.start = start
        self._lo = 0
        self._hi = 0

    def bounds(self, ts_ns: int) -> tuple[int, int]:
        """(session start ns, next session start ns) of the session holding `ts_ns`."""
        if self._lo <= ts_ns < self._hi:
            return self._lo, self._hi
        local = datetime.fromtimestamp(ts_ns // _NS, NEW_YORK)
        day = local.date()
        if local.time() < self.start:
            day -= _ONE_DAY
        lo = self._start_ns(day)
        while lo > ts_ns:  # only for a start with sub-second precision
            day -= _ONE_DAY
            lo = self._start_ns(day)
        hi = self._start_ns(day + _ONE_DAY)
        while hi <= ts_ns:
            day += _ONE_DAY
            lo, hi = hi, self._start_ns(day + _ONE_DAY)
        self._lo, self._hi = lo, hi
        return lo, hi

    def _start_ns(self, day: date) -> int:
        local = datetime.combine(day, self.start, tzinfo=NEW_YORK)
        return (local - _EPOCH) // _ONE_US * 1000
