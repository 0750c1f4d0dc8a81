"""Regular trading hours by the NYSE calendar (`exchange_calendars`' XNYS): holidays, early
closes and daylight saving included, never a fixed UTC window.

Used by the bar builder's Form T rule (docs/design.md, "Condition-aware bars"), the
simulator (which conditions a trade carries) and the views' market-hours hints. A US
equity regular session (09:30-16:00 New York) lies inside one UTC day, so sessions are
looked up, and cached, by UTC day. Days outside the calendar's range (it covers twenty
years back to one year ahead of the day the process starts) fall back to the weekday
rule without holidays, and say so once in the log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

log = logging.getLogger("torghut.calendar")

NS_PER_DAY = 86_400 * 1_000_000_000
_NEW_YORK = ZoneInfo("America/New_York")
_calendar = None


def _xnys():  # type: ignore[no-untyped-def]
    global _calendar
    if _calendar is None:
        import exchange_calendars  # ~1 s to import (pandas): only where a session is asked for

        _calendar = exchange_calendars.get_calendar("XNYS")
    return _calendar


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000_000


@lru_cache(maxsize=1024)
def regular_session(utc_day: int) -> tuple[int, int] | None:
    """[open, close) in epoch ns of the NYSE regular session on UTC day `utc_day` (days
    since the epoch), or None on a weekend or holiday."""
    date = datetime.fromtimestamp(utc_day * 86_400, tz=UTC).date()
    cal = _xnys()
    label = date.isoformat()
    if cal.first_session.date() <= date <= cal.last_session.date():
        if not cal.is_session(label):
            return None
        open_, close = cal.session_open_close(label)
        return _ns(open_.to_pydatetime()), _ns(close.to_pydatetime())
    log.warning(
        "%s is outside the NYSE calendar's range (%s..%s): weekdays 09:30-16:00 New York, "
        "no holidays",
        label,
        cal.first_session.date(),
        cal.last_session.date(),
    )
    if date.weekday() >= 5:
        return None
    open_ = datetime.combine(date, time(9, 30), tzinfo=_NEW_YORK)
    close = datetime.combine(date, time(16, 0), tzinfo=_NEW_YORK)
    return _ns(open_), _ns(close)


def is_regular_hours(event_ns: int) -> bool:
    """Whether `event_ns` falls in an NYSE regular session."""
    session = regular_session(event_ns // NS_PER_DAY)
    return session is not None and session[0] <= event_ns < session[1]


#: the calendar the deployments use; any `exchange_calendars` name works (``24/7``: always
#: open, what the drills use to exercise session-gated alerts at any hour)
DEFAULT_CALENDAR = "XNYS"


def session_open(event_ns: int, calendar: str = DEFAULT_CALENDAR) -> bool:
    """Whether the exchange `calendar` (an `exchange_calendars` name) is in its regular
    session at `event_ns`: XNYS through `is_regular_hours` (cached per day), any other
    calendar through `exchange_calendars` itself. An unknown name raises
    `exchange_calendars.errors.InvalidCalendarName`."""
    if calendar == DEFAULT_CALENDAR:
        return is_regular_hours(event_ns)
    import exchange_calendars
    import pandas as pd

    cal = exchange_calendars.get_calendar(calendar)
    minute = pd.Timestamp(event_ns - event_ns % 60_000_000_000, unit="ns", tz="UTC")
    if not cal.first_minute <= minute <= cal.last_minute:
        return False
    return bool(cal.is_open_on_minute(minute))
