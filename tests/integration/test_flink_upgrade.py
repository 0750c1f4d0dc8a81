"""Upgrade through a savepoint written by an older build: the fixture in
`tests/data/savepoint-*` (`tests/support/savepoint_fixture.py` says what it holds and how to
regenerate it) is restored into the job of this tree on a standalone cluster
(`torghut.flink_cluster`), at parallelism 2 where the old job ran at 1.

The raw log the old job read is written back first, into the same partitions at the same
offsets, so the savepoint's source offsets mean the same place; then the feed goes on. The
old job's final bars (kept in the fixture) and the restored job's `read_committed` final bars
together must be exactly the batch oracle of the whole log — none missing, none emitted by
both, equal values — and the final signals of the whole series equal TA-Lib. The bars that
were open at the savepoint hold trades from both sides of it, so a job that restored no
keyed state (or misread it) could not produce them; the indicators, warmed up over the old
job's 40 bars, would differ from TA-Lib too.
"""

from __future__ import annotations

import gzip
import json
import time
from itertools import chain

import pytest

from flink_job.symbol_processor import SYMBOL_STATE_LAYOUT
from tests.conftest import REPO_ROOT
from tests.support.flink_drill import Run, cluster_values, drill_stack
from tests.support.oracle import (
    assert_bar_equals,
    assert_final_bars_equal,
    assert_signals_equal_talib,
    expected_output,
    final_bar_counts,
    start_us,
)
from tests.support.savepoint_fixture import (
    RAW_TOPICS,
    SIGNAL_FIELDS,
    LogWriter,
    S,
    closing_heartbeats,
    feed,
    keep_raw_topics_forever,
    load_raw,
    upload_savepoint,
)
from tests.support.ta_job import read_finals, read_raw_log

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIXTURES = sorted((REPO_ROOT / "tests" / "data").glob("savepoint-*"))
MORE_S = 20  # event-time seconds fed after the restore


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from drill_stack(tmp_path_factory)


def test_there_is_an_upgrade_fixture_from_an_older_build():
    assert FIXTURES, "tests/data/savepoint-* is missing: see tests/support/savepoint_fixture.py"
    for fixture in FIXTURES:
        manifest = json.loads((fixture / "manifest.json").read_text())
        assert (fixture / "savepoint" / "_metadata").is_file(), fixture
        assert manifest["symbol_state_layout"] <= SYMBOL_STATE_LAYOUT, manifest
        assert not manifest["tree_dirty"], f"{fixture.name}: made from uncommitted job code"


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.name)
def test_a_savepoint_of_an_older_build_restores_at_parallelism_2_and_continues_the_output(
    fixture, stack, unique, tmp_path
):
    t_test = time.monotonic()
    manifest = json.loads((fixture / "manifest.json").read_text())
    symbols = set(manifest["symbols"])
    partitions = manifest["partitions"]
    emitted = json.loads(gzip.decompress((fixture / "emitted.json.gz").read_bytes()))
    old_bars = {(b["symbol"], b["start_us"]): b for b in emitted["bars"]}
    old_signals = {(s["symbol"], s["start_us"]): s for s in emitted["signals"]}
    assert len(old_bars) == manifest["final_bars"] >= 30 * len(symbols)

    # the old job's input, at the same offsets: its savepoint's source positions hold here
    keep_raw_topics_forever(stack)
    writer = LogWriter(stack)
    old_log = load_raw(fixture / "raw.jsonl.gz")
    placed = writer.write(old_log)
    assert [(r.topic, r.partition, r.offset) for r in placed] == [
        (r.topic, r.partition, r.offset) for r in old_log
    ], "the fixture's raw log did not land at its offsets (the stack's raw topics were not empty?)"

    savepoint = upload_savepoint(stack, fixture / "savepoint", unique("upgrade") + "/savepoint")
    values = cluster_values(stack, unique, "upgrade")
    run = Run(tmp_path / "run", values, parallelism=2)
    try:
        took = run.start(savepoint)  # asserts: restored from `savepoint`, parallelism 2
        end = manifest["end_ns"] + MORE_S * S
        more = writer.write(
            chain(
                feed(manifest["end_ns"], end, partitions, seed=15),
                closing_heartbeats(end + 3 * S, partitions),
            )
        )

        counts = {t: sum(r.topic == t for r in chain(old_log, more)) for t in RAW_TOPICS}
        log = read_raw_log(stack, counts)
        assert len(log) == sum(counts.values())
        oracle = expected_output(log)
        assert oracle.rejected == oracle.duplicates == oracle.late_trades == 0
        expected = {(sym, start // 1000): b for (sym, start), b in oracle.bars.items()}
        assert set(old_bars) < set(expected)
        rest = {k: b for k, b in expected.items() if k not in old_bars}
        # the bars open at the savepoint: in the restored keyed state, the last one holding
        # trades from both sides of it
        cut_us = manifest["end_ns"] // 1000
        open_at_cut = {k for k in rest if k[1] < cut_us}
        assert {k[0] for k in open_at_cut} == symbols, open_at_cut

        records = read_finals(stack, "ta.bars.1s.v1", symbols, len(rest))
        assert not set(final_bar_counts(records)) & set(old_bars), "a final bar emitted twice"
        assert_final_bars_equal(records, rest)
        for key, bar in old_bars.items():  # the old job's finals were right too
            assert_bar_equals(bar, expected[key], key)

        signals = read_finals(stack, "ta.signals.v1", symbols, len(rest), timeout_s=60)
        new_signals = {(r["symbol"], start_us(r)): r for r in signals if r["is_final"]}
        assert set(new_signals) == set(rest)
        # the old job's signals as the fixture kept them (SIGNAL_FIELDS), the new job's whole,
        # both against the oracle over the whole series
        assert_signals_equal_talib(
            old_signals, expected, oracle.quotes, fields=SIGNAL_FIELDS, only=set(old_signals)
        )
        assert_signals_equal_talib(new_signals, expected, oracle.quotes, only=set(rest))
        assert run.cluster.job_state(run.job) == "RUNNING"
    finally:
        run.cluster.stop()
    print(
        f"{fixture.name} (layout {manifest['symbol_state_layout']} -> {SYMBOL_STATE_LAYOUT}, "
        f"p{manifest['parallelism']} -> p2): {took}; {len(old_bars)} final bars before the "
        f"savepoint, {len(rest)} after ({len(open_at_cut)} of them open at the savepoint) equal the oracle; "
        f"test {time.monotonic() - t_test:.0f}s"
    )
