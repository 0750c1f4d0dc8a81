"""`torghut bench peers`: how a peer's final output is compared with the job's, the summary's
ratios, and a missing peers venv (no engines: the smoke run is
tests/integration/test_bench_peers.py)."""

from __future__ import annotations

import argparse

import pytest

from torghut.bench.common import SENTINEL
from torghut.bench.peer_apps.common import BAR_FIELDS, QUOTE_SIGNALS, TRADE_SIGNALS
from torghut.bench.peers import PeerRun, PeersVenvMissingError, compare, peers_python, summary

N_BAR = len(BAR_FIELDS)
TRADES_ONLY = N_BAR + len(TRADE_SIGNALS)
EVERY = TRADES_ONLY + len(QUOTE_SIGNALS)


def _row(close: float, spread: float | None = 0.02) -> list:
    bar = [close, close + 1, close - 1, close, 100.0, close, 3, 2]
    return [*bar, *([close] * len(TRADE_SIGNALS)), spread, 0.1]


def _run(peer: str = "quix") -> PeerRun:
    return PeerRun(peer, 0, 10, 1.0, 1.0, 1.0, "0.1")


def test_equal_outputs_compare_equal_and_the_sentinels_bars_are_left_out() -> None:
    ref = {"AAPL@1": _row(10.0), "AAPL@2": _row(11.0), f"{SENTINEL}@3": _row(1.0)}
    run = _run()
    compare(ref, {"AAPL@1": _row(10.0), "AAPL@2": _row(11.0)}, EVERY, run)
    assert run.equal and run.bars_compared == 2 and run.values_compared > 0


def test_a_different_value_missing_or_extra_bar_is_not_equal() -> None:
    ref = {"AAPL@1": _row(10.0), "AAPL@2": _row(11.0)}
    run = _run()
    changed = _row(11.0)
    changed[BAR_FIELDS.index("vwap")] = 11.5
    compare(ref, {"AAPL@1": _row(10.0), "AAPL@2": changed, "AAPL@9": _row(1.0)}, EVERY, run)
    assert not run.equal
    assert (run.mismatches, run.missing, run.extra) == (1, 0, 1)
    assert "vwap" in run.first_mismatch and "AAPL@2" in run.first_mismatch
    run = _run()
    compare(ref, {"AAPL@1": _row(10.0)}, EVERY, run)
    assert not run.equal and run.missing == 1


def test_a_trades_only_peer_is_not_compared_on_spread_and_imbalance() -> None:
    ref = {"AAPL@1": _row(10.0, spread=0.02)}
    run = _run()
    compare(ref, {"AAPL@1": _row(10.0, spread=None)}, TRADES_ONLY, run)
    assert run.equal and run.compared == "bars, every indicator but spread, imbalance"
    run = _run("bare-loop")
    compare(ref, {"AAPL@1": _row(10.0, spread=None)}, EVERY, run)
    assert not run.equal and "spread" in run.first_mismatch


def test_a_comparison_without_any_indicator_value_is_not_equal() -> None:
    empty = [*_row(10.0)[:N_BAR], *([None] * (EVERY - N_BAR))]
    run = _run()
    compare({"AAPL@1": empty}, {"AAPL@1": list(empty)}, EVERY, run)
    assert run.bars_compared == 1 and not run.equal


def test_summary_gives_min_median_max_and_the_jobs_ratios() -> None:
    runs = [
        PeerRun("job", i, 100, tps, cpu, 1.0, "1")
        for i, (tps, cpu) in enumerate([(30_000, 60.0), (20_000, 50.0), (25_000, 40.0)])
    ] + [
        PeerRun("quix", i, 100, tps, cpu, 1.0, "1")
        for i, (tps, cpu) in enumerate([(5_000, 100.0), (4_000, 120.0), (6_000, 110.0)])
    ]
    s = summary(runs)
    assert (s["job"]["tps_min"], s["job"]["tps_median"], s["job"]["tps_max"]) == (
        20_000,
        25_000,
        30_000,
    )
    assert s["quix"]["job_tps_ratio"] == pytest.approx(25_000 / 5_000)
    # per CPU-second: the job's trades per CPU-s over the peer's = peer µs / job µs
    assert s["quix"]["job_per_cpu_ratio"] == pytest.approx(110.0 / 50.0)


def test_a_missing_peers_venv_is_an_error_naming_the_make_target(tmp_path) -> None:
    args = argparse.Namespace(peers_python=str(tmp_path / "nope" / "python"))
    with pytest.raises(PeersVenvMissingError, match="make bench-peers-setup"):
        peers_python(args)
