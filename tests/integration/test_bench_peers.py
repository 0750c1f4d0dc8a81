"""`torghut bench peers`, scaled down to a smoke test: one run of each peer on a small backlog.

4,000 trades (+ quotes) over 4 symbols with the sale-condition mix (odd lots,
out-of-sequence, average-price trades, official closes) are worked off by this job at
parallelism 1, the Quix Streams application, the Bytewax dataflow (both in the peers venv
that `make test` builds: `make bench-peers-setup`) and the bare loop over the kernels.
What the scaled run still proves: every peer reads the same backlog and its final bars
(OHLC, volume, VWAP, trade count, price basis) and indicators equal the job's, bar for
bar, as the full benchmark checks at 200k trades; and every peer's numbers (trades/s,
CPU-µs per trade from /proc) come out of the run. Not the speed: that is the benchmark's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from torghut.bench.children import Procs
from torghut.bench.peers import PEERS, PeerRun, add_arguments, run_peers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRADES, SYMBOLS = 4_000, 4
# 25 trades/s of event time per symbol: 40 s of bars per symbol; the last second of each
# closes on the sentinel
MIN_BARS = SYMBOLS * (TRADES // (25 * SYMBOLS) - 1)


@pytest.fixture(scope="module")
def peer_runs(fresh_stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[PeerRun]]:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(
        ["--throughput-trades", str(TRADES), "--symbols", str(SYMBOLS), "--runs", "1"]
    )
    args.throughput_checkpoint_interval_ms = None
    work = tmp_path_factory.mktemp("bench-peers")
    procs = Procs(Path(work) / "logs")
    try:
        yield run_peers(fresh_stack, args, procs, "smoke", Path(work))
    finally:
        procs.stop()


def test_every_peer_final_bars_and_indicators_equal_the_jobs(peer_runs: list[PeerRun]) -> None:
    assert sorted(r.peer for r in peer_runs) == sorted(PEERS)
    for r in peer_runs:
        if r.peer == "job":
            continue
        assert r.equal, f"{r.peer}: {r.first_mismatch}"
        assert r.bars_compared >= MIN_BARS, (r.peer, r.bars_compared)
        assert r.values_compared > 0, r.peer
    quix = next(r for r in peer_runs if r.peer == "quix")
    bare = next(r for r in peer_runs if r.peer == "bare-loop")
    assert quix.compared == "bars, every indicator but spread, imbalance"
    assert bare.compared == "bars, every indicator"


def test_every_peer_reports_its_rate_and_cpu_per_trade(peer_runs: list[PeerRun]) -> None:
    for r in peer_runs:
        assert r.trades >= TRADES, r
        assert r.trades_per_s > 0, r
        assert r.load, r
        # /proc counts CPU in 10 ms ticks: more than the bare loop spends on 4k trades
        assert r.cpu_us_per_trade >= 0 if r.peer == "bare-loop" else r.cpu_us_per_trade > 0, r
