"""The committed promtool tests of TorghutSymbolStale (k8s/base/monitoring/tests/
symbol-stale.yaml) are the generator's output from the library's sessions: the rule is
tested on exchange_calendars' answer for each boundary, not on a hand list."""

from __future__ import annotations

from tests.support import session_rule_tests as gen


def test_the_committed_symbol_stale_rule_tests_equal_a_regeneration_from_the_calendar() -> None:
    assert gen.OUT.read_text(encoding="utf-8") == gen.render(), (
        f"{gen.OUT} differs from the calendar's sessions: run "
        "`.venv/bin/python -m tests.support.session_rule_tests` and commit the file"
    )


def test_the_generated_sessions_hold_each_boundary_the_cases_name() -> None:
    by_name = {c.name.split(" ")[0] + c.start.date().isoformat(): c for c in gen.CASES}
    opening = gen.session_values(by_name["open2026-12-08"])
    assert opening[29:32] == [0, 1, 1]  # 09:29, 09:30, 09:31 New York
    closing = gen.session_values(by_name["close2026-12-08"])
    assert closing[59:62] == [1, 0, 0]  # 15:59, 16:00, 16:01
    early = gen.session_values(by_name["early2026-11-27"])
    assert early[59:61] == [1, 0] and not any(early[61:])  # closed from 13:00 on
    assert not any(gen.session_values(by_name["holiday2026-12-25"]))
    assert not any(gen.session_values(by_name["weekend2026-12-05"]))
    dst_start = gen.session_values(by_name["daylight2026-03-09"])
    assert dst_start[29:31] == [0, 1]  # 13:29 / 13:30 UTC = 09:30 EDT
    dst_end = gen.session_values(by_name["daylight2026-11-02"])
    assert dst_end[89:91] == [0, 1]  # 14:29 / 14:30 UTC = 09:30 EST


def test_runs_is_promtools_expanding_notation() -> None:
    assert gen.runs([0, 0, 0, 1, 0]) == "0x2 1 0"
