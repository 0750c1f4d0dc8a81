"""Writes k8s/base/monitoring/tests/symbol-stale.yaml: promtool tests of TorghutSymbolStale
whose `torghut_market_session_open` series are the library's answer
(`shared.market_calendar.session_open`, exchange_calendars XNYS), minute by minute, around
each session boundary: the open, the close, an early close, a holiday, a weekend and the
first sessions after both daylight-saving switches.

promtool's clock starts at 0 in every test; each case maps its 0 to a real New York time
`start`, so the session series is the calendar's for `start + k min`, and the symbols' last
event timestamps are on promtool's clock: AAPL last traded 10 min before `start` (stale
throughout), MSFT trades every minute (never stale).

    .venv/bin/python -m tests.support.session_rule_tests      # rewrite the file

tests/unit/test_symbol_stale_rule_tests.py regenerates it and fails if the committed file
differs (then run the command above and commit).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from shared.market_calendar import session_open

NY = ZoneInfo("America/New_York")
UTC = ZoneInfo("UTC")
OUT = Path(__file__).resolve().parents[2] / "k8s/base/monitoring/tests/symbol-stale.yaml"
ALERT = "TorghutSymbolStale"
SERIES = (
    'torghut_market_session_open{namespace="torghut", pod="torghut-canary-6c9f", calendar="XNYS"}'
)
STALE = 'torghut_symbol_last_event_timestamp_seconds{namespace="torghut", pod="torghut-canary-6c9f", symbol="AAPL"}'
FRESH = 'torghut_symbol_last_event_timestamp_seconds{namespace="torghut", pod="torghut-canary-6c9f", symbol="MSFT"}'
FIRING = {
    "exp_labels": {"symbol": "AAPL", "severity": "warning", "team": "torghut"},
    "exp_annotations": {
        "summary": "No trade or quote of AAPL for more than 5 min in the session",
        "runbook_url": "docs/runbooks.md#alert-torghutsymbolstale",
    },
}


@dataclass(frozen=True)
class Case:
    name: str
    start: datetime  # promtool's 0, New York time
    minutes: int
    checks: tuple[tuple[datetime, bool], ...]  # (New York time, fires)


def ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# grace: the session open for the last 10 min; then `for: 5m` => first firing at open + 15 min
CASES: tuple[Case, ...] = (
    Case(
        "open 09:30 New York (2026-12-08): silent before the open and in the grace, fires after",
        ny("2026-12-08T09:00"),
        60,
        (
            (ny("2026-12-08T09:29"), False),
            (ny("2026-12-08T09:31"), False),
            (ny("2026-12-08T09:44"), False),
            (ny("2026-12-08T09:46"), True),
        ),
    ),
    Case(
        "close 16:00 New York (2026-12-08): fires before the close, silent after",
        ny("2026-12-08T15:00"),
        90,
        ((ny("2026-12-08T15:59"), True), (ny("2026-12-08T16:01"), False)),
    ),
    Case(
        "early close 13:00 New York (2026-11-27, the day after Thanksgiving)",
        ny("2026-11-27T12:00"),
        240,
        (
            (ny("2026-11-27T12:59"), True),
            (ny("2026-11-27T13:01"), False),
            (ny("2026-11-27T15:59"), False),
        ),
    ),
    Case(
        "holiday (2026-12-25): silent all day",
        ny("2026-12-25T09:00"),
        480,
        (
            (ny("2026-12-25T09:46"), False),
            (ny("2026-12-25T12:00"), False),
            (ny("2026-12-25T15:59"), False),
        ),
    ),
    Case(
        "weekend (Saturday 2026-12-05): silent all day",
        ny("2026-12-05T09:00"),
        480,
        ((ny("2026-12-05T09:46"), False), (ny("2026-12-05T15:59"), False)),
    ),
    Case(
        "daylight saving starts (2026-03-08): Monday's open is 13:30 UTC, not 14:30",
        utc("2026-03-09T13:00"),
        60,
        ((utc("2026-03-09T13:44"), False), (utc("2026-03-09T13:46"), True)),
    ),
    Case(
        "daylight saving ends (2026-11-01): Monday's open is 14:30 UTC, not 13:30",
        utc("2026-11-02T13:00"),
        120,
        (
            (utc("2026-11-02T13:46"), False),
            (utc("2026-11-02T14:44"), False),
            (utc("2026-11-02T14:46"), True),
        ),
    ),
)


def runs(values: list[int]) -> str:
    """promtool's expanding notation: `vxn` is n + 1 samples of v."""
    out: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        out.append(f"{values[i]}x{j - i}" if j > i else str(values[i]))
        i = j + 1
    return " ".join(out)


def session_values(case: Case) -> list[int]:
    return [
        int(session_open(int((case.start + timedelta(minutes=k)).timestamp()) * 10**9))
        for k in range(case.minutes + 1)
    ]


def offset(case: Case, when: datetime) -> str:
    minutes = (when - case.start) / timedelta(minutes=1)
    assert minutes == int(minutes) and 0 <= minutes <= case.minutes, (case.name, when)
    return f"{int(minutes)}m"


def document() -> dict:
    tests = []
    for case in CASES:
        tests.append(
            {
                "name": case.name,
                "interval": "1m",
                "input_series": [
                    {"series": SERIES, "values": runs(session_values(case))},
                    {"series": STALE, "values": f"-600x{case.minutes}"},
                    {"series": FRESH, "values": f"0+60x{case.minutes}"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": offset(case, when),
                        "alertname": ALERT,
                        "exp_alerts": [copy.deepcopy(FIRING)] if fires else [],
                    }
                    for when, fires in case.checks
                ],
            }
        )
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


def render() -> str:
    header = (
        "# GENERATED by `.venv/bin/python -m tests.support.session_rule_tests` from the\n"
        "# library's sessions (shared/market_calendar.py, exchange_calendars XNYS): do not edit;\n"
        "# tests/unit/test_symbol_stale_rule_tests.py fails when it differs from a regeneration.\n"
    )
    return header + yaml.safe_dump(document(), sort_keys=False, width=100)


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
