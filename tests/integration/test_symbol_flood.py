"""Symbol flood, scaled (bounded per-symbol memory; the full run is `torghut bench flood`, 10k symbols
for 10 minutes, docs/benchmarks.md).

2000 always-active symbols plus 800 rotating ones (4 groups of 200, each sending 10 s in
turn, idle 30 s) for 90 s through simulator -> forwarder -> Kafka -> TA job, with the job's
cache idle time at 20 s: every rotating symbol is evicted from the job's cache and rebuilt
from keyed state when its turn comes again. What it asserts is boundedness, with margins a
loaded 2-core machine cannot break (no speed or memory targets: those are the benchmark's):
the forwarder's RSS at the end within 50% of its value after the warm-up, the checkpoint
size within 2x (every symbol has state by then; its indicator windows still fill) and
below 4 KB per symbol, the job's live heap at the end within LIVE_HEAP_GROWTH of its value at
the end of the warm-up (each the heap a forced full GC leaves, `jcmd <pid> GC.run`: exact,
unlike heap used or RSS, which follow the allocation rate and the committed heap), the job's
cache below the symbols it has seen, the Java batch buffers within two flushes' worth, and
the final bars of 105 symbols (100 rotating ones, most evicted and back) equal to the oracle
of the raw log. The job's JVM runs with -Xms = -Xmx = 1 GB (FloodConfig), like a
TaskManager.
"""

from __future__ import annotations

import statistics

import pytest

from shared.topics import QUOTES, TRADES
from tests.support.oracle import assert_final_bars_equal, expected_output, final_bar_counts
from tests.support.ta_job import EnvelopeProducer, read_raw_log, read_topic
from torghut.bench.children import Procs
from torghut.bench.flood import FloodConfig, FloodRun

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACTIVE, ROTATING, GROUPS, PERIOD_S, IDLE_S = 2000, 800, 4, 10.0, 20.0
RUN_S, WARMUP_S, INTERVAL_S = 90.0, 45.0, 5.0
BATCH_MAX_RECORDS = 256  # TaSettings.batch_max_records
LIVE_HEAP_GROWTH = 1.5  # live heap at the end / after the warm-up


def test_2000_symbols_with_rotating_idle_ones_keep_memory_checkpoints_and_caches_bounded(
    fresh_stack, tmp_path
) -> None:
    import time

    cfg = FloodConfig(
        symbols=ACTIVE,
        rotating_symbols=ROTATING,
        rotation_groups=GROUPS,
        rotation_period_s=PERIOD_S,
        trades_per_sec=0.1,
        quotes_per_sec=0.1,
        cache_idle_s=IDLE_S,
        checkpoint_interval_ms=5_000,
        starting_offsets="committed-earliest",  # the module's own stack: this run's log only
    )
    procs = Procs(tmp_path / "logs")
    flood = FloodRun(fresh_stack, procs, cfg, run_id=tmp_path.name[-12:], job_name="flood-drill")
    try:
        flood.start()
        next_at = flood.t0
        live_warm: float | None = None
        while time.monotonic() - flood.t0 < RUN_S:
            next_at += INTERVAL_S
            time.sleep(max(0.0, next_at - time.monotonic()))
            s = flood.sample()
            print(s)
            if live_warm is None and s.t_s >= WARMUP_S:
                live_warm = flood.live_heap_after_full_gc_mb()
        live_end = flood.live_heap_after_full_gc_mb()
        print(
            f"live heap after a full GC: {live_warm} MB after the warm-up, {live_end} MB at the end"
        )
        assert live_warm is not None
        # Java: what the job keeps alive does not grow with time at a constant symbol count
        assert live_end <= LIVE_HEAP_GROWTH * live_warm, (live_warm, live_end, flood.samples)
        after = [s for s in flood.samples if s.t_s >= WARMUP_S]
        warm = after[:2]

        def first(name: str) -> float:
            vals = [getattr(s, name) for s in warm if getattr(s, name) is not None]
            assert vals, f"no {name} sampled after the warm-up: {flood.samples}"
            return statistics.mean(vals)

        last = flood.samples[-1]
        assert last.forwarder_rss_mb is not None
        assert last.forwarder_rss_mb <= 1.5 * first("forwarder_rss_mb"), flood.samples
        assert last.checkpoint_size_mb is not None and last.checkpoints
        # the indicator windows (5 min VWAP, 60 s volatility) still fill during the drill, so
        # state grows a little by design: at most 2x the warm-up's, and a few KB per symbol
        assert last.checkpoint_size_mb <= 2.0 * first("checkpoint_size_mb"), flood.samples
        assert last.checkpoint_size_mb * 1024 <= 4.0 * (ACTIVE + ROTATING), flood.samples
        # the job's cache: the active symbols and the rotating groups that sent within the
        # idle time (the current one and the two before: 2600), never all 2800 it has seen
        # (a sample a few seconds after an eviction is due may still hold a group: median)
        cached = [s.cached_symbols for s in after if s.cached_symbols is not None]
        assert len(cached) >= 5, flood.samples
        bound = ACTIVE + 3 * ROTATING // GROUPS
        assert statistics.median(cached) <= bound + 50, cached
        assert min(cached) < ACTIVE + ROTATING, cached
        # Java: a buffer only for symbols with records in the last two flushes
        buffers = [s.symbol_buffers for s in flood.samples if s.symbol_buffers is not None]
        assert buffers and max(buffers) <= 2 * BATCH_MAX_RECORDS, buffers

        # the output is still a function of the input log: stop the feed, close the last
        # bars with a heartbeat past them, and compare 25 symbols with the oracle
        procs.stop("sim")
        procs.stop("forwarder")
        log = read_raw_log(fresh_stack, {TRADES.name: 1, QUOTES.name: 1}, settle_s=2.0)
        last_event_ns = max(r.envelope["event_ts"] for r in log if r.envelope is not None)
        prod = EnvelopeProducer(fresh_stack)
        prod.heartbeat(last_event_ns + 3_000_000_000)
        prod.flush()
        log = read_raw_log(fresh_stack, {TRADES.name: 1, QUOTES.name: 1}, settle_s=2.0)
        oracle = expected_output(log)
        checked = {f"R{i:04d}" for i in range(100)} | {f"S{i:04d}" for i in range(5)}
        expected = {
            (sym, start // 1000): b for (sym, start), b in oracle.bars.items() if sym in checked
        }
        starts: dict[str, list[int]] = {}
        for sym, start in expected:
            starts.setdefault(sym, []).append(start)
        # bars before and after an idle stretch longer than the cache's idle time
        returned = {
            sym
            for sym, ss in starts.items()
            if sym.startswith("R") and max(ss) - min(ss) > (IDLE_S + PERIOD_S) * 1_000_000
        }
        assert len(returned) >= 15, (
            f"rotating symbols with bars before and after an idle time: {returned}"
        )
        assert len(expected) >= 100, len(expected)
        records = read_topic(
            fresh_stack,
            "ta.bars.1s.v1",
            checked,
            lambda recs: len(final_bar_counts(recs)) >= len(expected),
            timeout_s=120,
        )
        assert_final_bars_equal(records, expected, rel=1e-12)
    finally:
        flood.stop()
        procs.stop()
