"""The TA job's per-symbol event-time rules, tested without Flink."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest

from flink_job.symbol_processor import (
    QUOTE_BUCKETS_SOFT_CAP,
    SYMBOL_STATE_LAYOUT,
    SymbolCounters,
    SymbolProcessor,
    SymbolState,
    SymbolStateError,
    invalid_reason,
)
from shared.indicators import SignalState
from tests.support.bar_oracle import assert_same_bars, oracle_bars
from tests.support.signal_oracle import assert_series_signals

S = 1_000_000_000
T0 = 1_767_362_400 * S  # 2026-01-02 14:00:00 UTC
NO_WM = -(1 << 63)


def trade(ts_ns: int, price: float, size: float = 1.0, seq: int = 1, sym: str = "AAPL") -> tuple:
    return ("t", sym, ts_ns, seq, ts_ns + 1000, f"tr{seq}", price, size, seq)


def quote(
    ts_ns: int, bid: float, ask: float, seq: int = 1, bs: float = 3.0, asz: float = 1.0
) -> tuple:
    return ("q", "AAPL", ts_ns, seq, ts_ns, "q", bid, bs, ask, asz)


def wm_ms(ts_ns: int) -> int:
    return ts_ns // 1_000_000


@pytest.fixture
def proc() -> SymbolProcessor:
    return SymbolProcessor(provisional_interval_ns=0)


def test_out_of_order_trade_inside_the_bound_lands_in_its_own_second(proc):
    st, sig = SymbolState(), SignalState()
    r1 = proc.on_trade(st, sig, trade(T0 + S + 100, 101.0, seq=1), NO_WM, 0)
    r2 = proc.on_trade(
        st, sig, trade(T0 + 900_000_000, 100.0, seq=2), wm_ms(T0 + S + 100) - 1000, 0
    )
    assert r1.new_timer_ms == (T0 + 2 * S) // 1_000_000 - 1
    assert r2.new_timer_ms == (T0 + S) // 1_000_000 - 1
    assert sorted(st.bars) == [T0, T0 + S]
    assert st.counters.out_of_order == 1 and st.counters.late == 0
    closed = proc.on_watermark(st, sig, wm_ms(T0 + 2 * S))
    assert [(e.bar.start_ns, e.bar.close, e.is_final) for e in closed] == [
        (T0, 100.0, True),
        (T0 + S, 101.0, True),
    ]


def test_trade_behind_the_watermark_is_counted_late_and_never_makes_a_bar(proc):
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + 5 * S, 100.0, seq=1), NO_WM, 0)
    proc.on_watermark(st, sig, wm_ms(T0 + 6 * S))
    result = proc.on_trade(st, sig, trade(T0 + 5 * S + 10, 99.0, seq=2), wm_ms(T0 + 6 * S), 0)
    assert result.late and result.emissions == [] and result.new_timer_ms is None
    assert st.bars == {} and st.counters.late == 1
    assert proc.on_watermark(st, sig, wm_ms(T0 + 10 * S)) == []


def test_watermark_closes_only_bars_whose_end_it_passed(proc):
    st, sig = SymbolState(), SignalState()
    for i, p in enumerate([100.0, 101.0, 102.0]):
        proc.on_trade(st, sig, trade(T0 + i * S + 1, p, seq=i + 1), NO_WM, 0)
    closed = proc.on_watermark(st, sig, wm_ms(T0 + 2 * S) - 2)
    assert [e.bar.start_ns for e in closed] == [T0]
    assert sorted(st.bars) == [T0 + S, T0 + 2 * S]


def test_provisional_output_is_rate_limited_and_marked_not_final():
    proc = SymbolProcessor(provisional_interval_ns=200_000_000)
    st, sig = SymbolState(), SignalState()
    wall = 10 * S
    first = proc.on_trade(st, sig, trade(T0 + 1, 100.0, seq=1), NO_WM, wall)
    second = proc.on_trade(st, sig, trade(T0 + 2, 100.5, seq=2), NO_WM, wall + 100_000_000)
    third = proc.on_trade(st, sig, trade(T0 + 3, 101.0, seq=3), NO_WM, wall + 250_000_000)
    assert len(first.emissions) == 1 and not first.emissions[0].is_final
    assert second.emissions == []
    assert third.emissions[0].bar.close == 101.0 and third.emissions[0].bar.trade_count == 3
    assert sig.bars_committed == 0  # provisional output never commits indicator state


def test_quote_used_for_a_bar_is_the_latest_before_its_end_not_a_later_one(proc):
    st, sig = SymbolState(), SignalState()
    proc.on_quote(st, quote(T0 + 200, 99.0, 101.0, seq=1))
    proc.on_quote(st, quote(T0 + 900_000_000, 99.5, 100.5, seq=2))
    proc.on_quote(st, quote(T0 + S + 5, 90.0, 110.0, seq=3))  # after the bar end: look-ahead
    proc.on_trade(st, sig, trade(T0 + 10, 100.0), NO_WM, 0)
    (em,) = proc.on_watermark(st, sig, wm_ms(T0 + S))
    assert em.signals.spread == pytest.approx(1.0)
    assert em.signals.imbalance == pytest.approx((3.0 - 1.0) / 4.0)


def test_a_symbol_that_only_quotes_keeps_a_bounded_quote_history(proc):
    st, sig = SymbolState(), SignalState()
    for i in range(600):  # 10 minutes of one quote per second, watermark 1 s behind
        ts = T0 + i * S
        proc.on_quote(st, quote(ts, 99.0, 101.0, seq=i + 1), wm_ms(ts - S), wm_ms(ts - S))
    assert len(st.quotes) <= QUOTE_BUCKETS_SOFT_CAP + 1
    # a bar still to close finds the latest quote before its end
    last = T0 + 599 * S
    proc.on_trade(st, sig, trade(last + 10, 100.0), wm_ms(last - S), 0)
    (em,) = proc.on_watermark(st, sig, wm_ms(last + S))
    assert em.signals.spread == pytest.approx(2.0)


def test_out_of_order_quote_stragglers_do_not_grow_the_history_without_bound(proc):
    st = SymbolState()
    for i in range(2000):
        ts = T0 + i * S
        if i % 7 == 0:
            ts -= 60 * S  # a straggler a minute behind, inserted after newer buckets
        # no lateness limit: the stragglers are kept, pruning alone bounds the history
        proc.on_quote(st, quote(ts, 99.0, 101.0, seq=i + 1), None, wm_ms(T0 + i * S - S))
    assert len(st.quotes) <= 4 * QUOTE_BUCKETS_SOFT_CAP + 1


def test_a_trade_late_by_its_mark_is_late_even_while_its_bar_is_still_open(proc):
    """The limit is the partition mark stamped on the record, not the (lagging) watermark:
    whether the bar has closed yet depends on timing; the mark does not."""
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + 5 * S, 100.0, seq=1), NO_WM, 0)
    result = proc.on_trade(st, sig, trade(T0 + 5 * S + 10, 50.0, seq=2), wm_ms(T0 + 6 * S), 0)
    assert result.late and st.counters.late == 1
    (em,) = proc.on_watermark(st, sig, wm_ms(T0 + 6 * S))
    assert (em.bar.trade_count, em.bar.low) == (1, 100.0)


def test_a_quote_late_by_its_mark_is_dropped_and_counted(proc):
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + 5 * S, 100.0, seq=1), NO_WM, 0)
    proc.on_quote(st, quote(T0 + 5 * S + 1, 90.0, 110.0, seq=1), wm_ms(T0 + 6 * S), NO_WM)
    assert st.counters.late_quotes == 1 and st.quotes == {}
    (em,) = proc.on_watermark(st, sig, wm_ms(T0 + 6 * S))
    assert em.signals.spread is None


@pytest.mark.parametrize(
    ("ev", "needle"),
    [
        (trade(T0, 0.0), "trade price 0.0"),
        (trade(T0, -1.5), "trade price -1.5"),
        (trade(T0, float("nan")), "trade price nan"),
        (trade(T0, float("inf")), "trade price inf"),
        (trade(T0, float("-inf")), "trade price -inf"),
        (trade(T0, 10.0, size=-1.0), "trade size -1.0"),
        (trade(T0, 10.0, size=float("nan")), "trade size nan"),
        (trade(T0, 10.0, size=float("inf")), "trade size inf"),
        (quote(T0, -0.01, 10.0), "quote bid_price -0.01"),
        (quote(T0, 9.0, float("nan")), "quote ask_price nan"),
        (quote(T0, 9.0, 10.0, bs=float("inf")), "quote bid_size inf"),
        (quote(T0, 9.0, 10.0, asz=-3.0), "quote ask_size -3.0"),
    ],
)
def test_bad_values_are_refused_with_a_reason_naming_the_field(ev, needle):
    reason = invalid_reason(ev, 2_000_000_000)
    assert reason is not None and needle in reason


def test_an_event_time_past_ingest_plus_the_tolerance_is_refused(proc):
    ahead = ("t", "AAPL", T0 + 3 * S, 1, T0, "x", 10.0, 1.0, 1)
    assert "ms past ingest_ts" in invalid_reason(ahead, 2 * S)
    assert invalid_reason(ahead, 3 * S) is None


def test_good_values_pass_including_size_zero_and_a_one_sided_quote():
    assert invalid_reason(trade(T0, 0.0001, size=0.0), 0) is None
    assert invalid_reason(quote(T0, 0.0, 10.0), 0) is None


def test_counters_of_an_older_state_layout_restore_with_the_new_counter_at_zero():
    old = (1, 2, 3, 4, 5)  # layout 1: no late_quotes
    assert SymbolCounters(*old).to_state() == (1, 2, 3, 4, 5, 0, 0, 0, 0)
    layout2 = (1, 2, 3, 4, 5, 6, 7)  # layout 2: no gaps/late_gaps
    assert SymbolCounters(*layout2).to_state() == (1, 2, 3, 4, 5, 6, 7, 0, 0)


def test_a_bar_the_indicators_refuse_is_dropped_and_counted_not_raised(proc):
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + 5 * S, 100.0, seq=1), NO_WM, 0)
    proc.on_watermark(st, sig, wm_ms(T0 + 6 * S))
    # a bar behind the last committed one (no checked input can make one): refused
    proc.on_trade(st, sig, trade(T0 + 2 * S, 100.0, seq=2), NO_WM, 0)
    proc.on_trade(st, sig, trade(T0 + 7 * S, 101.0, seq=3), NO_WM, 0)
    closed = proc.on_watermark(st, sig, wm_ms(T0 + 8 * S))
    assert [e.bar.start_ns for e in closed] == [T0 + 7 * S]
    assert st.counters.refused_bars == 1 and st.bars == {}


def test_seq_gaps_and_regressions_are_counted_per_channel(proc):
    st, sig = SymbolState(), SignalState()
    for seq in (1, 2, 5, 5, 6):
        proc.on_trade(st, sig, trade(T0 + seq, 100.0, seq=seq), NO_WM, 0)
    proc.on_quote(st, quote(T0, 1.0, 2.0, seq=100))
    proc.on_quote(st, quote(T0, 1.0, 2.0, seq=101))
    assert st.counters.seq_gaps == 1 and st.counters.seq_regressions == 1


def test_state_round_trips_through_pickle_mid_stream_and_continues_identically(proc):
    rng = random.Random(7)
    events = [
        trade(
            T0 + int(i * 0.37 * S) + rng.randrange(1000),
            100 + rng.random(),
            rng.random() * 10,
            seq=i + 1,
        )
        for i in range(200)
    ]
    a, sa = SymbolState(), SignalState()
    b, sb = SymbolState(), SignalState()
    out_a, out_b = [], []
    for i, ev in enumerate(events):
        wm = wm_ms(ev[2]) - 1000
        proc.on_trade(a, sa, ev, wm, 0)
        out_a += proc.on_watermark(a, sa, wm)
        if i == 100:  # checkpoint + restore
            b = SymbolState.from_state(pickle.loads(pickle.dumps(a.to_state())))
            sb = SignalState.from_state(pickle.loads(pickle.dumps(sa.to_state())))
            out_b = list(out_a)
        elif i > 100:
            proc.on_trade(b, sb, ev, wm, 0)
            out_b += proc.on_watermark(b, sb, wm)
    assert [(e.bar.to_state(), e.signals.as_dict()) for e in out_a] == [
        (e.bar.to_state(), e.signals.as_dict()) for e in out_b
    ]


def test_final_bars_equal_the_batch_oracle_and_signals_equal_talib(proc):
    rng = random.Random(11)
    trades, price = [], 100.0
    for i in range(6000):
        ts = T0 + i * 50_000_000 + rng.randrange(-300_000_000, 300_000_000)  # shuffled inside 0.3 s
        price *= 1 + rng.gauss(0, 0.0005)
        trades.append(trade(ts, round(price, 4), round(rng.uniform(0.1, 50), 3), seq=i + 1))
    st, sig = SymbolState(), SignalState()
    finals, max_seen = [], 0
    for ev in trades:
        max_seen = max(max_seen, ev[2])
        wm = wm_ms(max_seen) - 1000 - 1  # 1 s bounded out-of-orderness
        proc.on_trade(st, sig, ev, wm, 0)
        finals += proc.on_watermark(st, sig, wm)
    assert st.counters.late == 0
    oracle = oracle_bars([(e[1], e[2], e[6], e[7]) for e in trades], S)  # regular sales
    got = [e.bar for e in finals]
    assert_same_bars(got, oracle[: len(got)])
    # every value against the signal oracle (no quotes here: spread and imbalance None)
    assert_series_signals("AAPL", oracle[: len(got)], [e.signals.as_dict() for e in finals])


def test_a_record_in_the_log_twice_is_applied_once_and_counted(proc):
    """A delivery the forwarder re-produced can reach the log twice (same seq)."""
    st, sig = SymbolState(), SignalState()
    for seq in (1, 2, 3):
        proc.on_trade(st, sig, trade(T0 + seq, 100.0, size=2.0, seq=seq), NO_WM, 0)
    again = proc.on_trade(st, sig, trade(T0 + 2, 100.0, size=2.0, seq=2), NO_WM, 0)
    assert again.duplicate and st.bars[T0].volume == 6.0 and st.bars[T0].trade_count == 3
    assert st.counters.seq_regressions == 1
    proc.on_quote(st, quote(T0 + 1, 99.0, 101.0, seq=7))
    proc.on_quote(st, quote(T0 + 2, 1.0, 2.0, seq=7))  # a duplicate quote changes nothing
    assert st.quotes[T0][1] == 99.0 and st.counters.seq_regressions == 2


def test_a_late_first_copy_fills_its_gap_and_is_applied(proc):
    """The original of a re-produced delivery may land after newer records: it is new."""
    st, sig = SymbolState(), SignalState()
    for seq in (1, 2, 4, 5):
        proc.on_trade(st, sig, trade(T0 + seq, 100.0, seq=seq), NO_WM, 0)
    assert st.applied["t"] == [1, 2, 4, 5] and st.counters.seq_gaps == 1
    late = proc.on_trade(st, sig, trade(T0 + 3, 100.0, seq=3), NO_WM, 0)
    assert not late.duplicate and st.bars[T0].trade_count == 5
    assert st.applied["t"] == [1, 5]
    assert proc.on_trade(st, sig, trade(T0 + 3, 100.0, seq=3), NO_WM, 0).duplicate


def test_applied_seqs_stay_bounded_and_a_layout_1_state_restores():
    proc = SymbolProcessor(provisional_interval_ns=0)
    st, sig = SymbolState(), SignalState()
    for k in range(2000):  # every other seq: one interval each
        proc.on_trade(st, sig, trade(T0 + k, 100.0, seq=2 * k), NO_WM, 0)
    assert len(st.applied["t"]) <= 2 * 256


GOLDEN = Path(__file__).resolve().parents[1] / "data"


def test_golden_states_of_every_layout_restore_to_the_same_symbol():
    """tests/data/symbol_state_layout*.pickle: one symbol's state as each layout wrote it
    (layout 1: the previous release's, untagged, last seq per kind, five counters; layout
    2: no gap windows, seven counters; layout 3: one gap window [T0+0.2 s, T0+0.7 s]). Keep
    them; a new layout adds its own file and a migration."""
    v1, v2, v3 = (
        SymbolState.from_state(
            pickle.loads((GOLDEN / f"symbol_state_layout{n}.pickle").read_bytes())
        )
        for n in (1, 2, 3)
    )
    assert v3.to_state()[0] == SYMBOL_STATE_LAYOUT == 3
    assert v1.bars == v2.bars == v3.bars and v1.quotes == v2.quotes == v3.quotes
    assert v1.latest == v2.latest == v3.latest
    assert v2.applied == {"t": [1, 5], "q": [1, 1]}
    assert v3.applied == {"t": [1, 5], "q": [1, 1], "g": [7, 7]}
    assert v1.applied == {"t": [5, 5], "q": [1, 1]}  # the last seq becomes one interval
    assert v1.counters == v2.counters == SymbolCounters()
    assert v3.counters == SymbolCounters(gaps=1)
    assert v1.gaps == v2.gaps == []  # layouts 1 and 2 knew no gaps
    assert v3.gaps == [[T0 + S // 5, T0 + 7 * S // 10, T0 // 1_000_000 - 2000]]
    for st in (v1, v2, v3):  # a migrated state writes the current layout and reads it back
        again = SymbolState.from_state(pickle.loads(pickle.dumps(st.to_state())))
        assert again == st and again.to_state()[0] == SYMBOL_STATE_LAYOUT
    proc = SymbolProcessor(provisional_interval_ns=0)
    closed = []
    for st in (v1, v2, v3):  # all continue the same way; only layout 3 knew of the gap
        sig = SignalState()
        assert proc.on_trade(st, sig, trade(T0 + 5, 1.0, seq=5, sym="GOLD"), NO_WM, 0).duplicate
        assert not proc.on_trade(st, sig, trade(T0 + 6, 1.0, seq=6, sym="GOLD"), NO_WM, 0).late
        closed.append(proc.on_watermark(st, sig, wm_ms(T0 + S)))
    assert [[e.bar for e in c] for c in closed[1:]] == [[e.bar for e in closed[0]]] * 2
    assert [[e.gap for e in c] for c in closed] == [[False], [False], [True]]


def test_a_state_layout_from_a_newer_release_is_refused_not_misread():
    newer = (SYMBOL_STATE_LAYOUT + 1, *SymbolState().to_state()[1:])
    with pytest.raises(SymbolStateError, match="newer release"):
        SymbolState.from_state(newer)


def gap(from_ns: int, to_ns: int, seq: int = 1, sym: str = "AAPL") -> tuple:
    return ("g", sym, from_ns, seq, to_ns, f"gap{seq}", from_ns, to_ns)


def test_bars_overlapping_a_gap_window_carry_gap_and_the_others_do_not(proc):
    """A reconnect lost messages in [T0+2.5 s, T0+4.2 s]: the bars [2,3), [3,4) and [4,5)
    overlap it, [1,2) and [5,6) do not; provisional and final records agree."""
    proc = SymbolProcessor(provisional_interval_ns=1)
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + S + 1, 100.0, seq=1), NO_WM, 1)
    proc.on_trade(st, sig, trade(T0 + 2 * S + 1, 100.0, seq=2), NO_WM, 2)
    assert proc.on_gap(st, gap(T0 + 2 * S + S // 2, T0 + 4 * S + S // 5), wm_ms(T0 + S) - 1001)
    provisional = []
    for k, t in enumerate((3, 4, 5)):
        r = proc.on_trade(st, sig, trade(T0 + t * S + 1, 100.0, seq=3 + k), NO_WM, 3 + k)
        provisional += [(e.bar.start_ns, e.gap) for e in r.emissions]
    finals = proc.on_watermark(st, sig, wm_ms(T0 + 6 * S))
    assert [(e.bar.start_ns - T0) // S for e in finals] == [1, 2, 3, 4, 5]
    assert [e.gap for e in finals] == [False, True, True, True, False]
    assert provisional == [(T0 + 3 * S, True), (T0 + 4 * S, True), (T0 + 5 * S, False)]
    assert st.counters.gaps == 1 and st.counters.late_gaps == 0
    assert st.gaps == []  # pruned: no bar still to close overlaps it


def test_a_gap_marker_behind_its_partitions_mark_never_flags_a_bar_that_may_be_final(proc):
    """The marker's mark has passed the bar [1,2) (timer T0+2 s - 1 ms): that bar may
    already be final, so it is never flagged, whether or not it has closed yet; the bar
    [2,3) is still open by the mark and is flagged. The marker is counted as late."""
    st, sig = SymbolState(), SignalState()
    proc.on_trade(st, sig, trade(T0 + S + 1, 100.0, seq=1), NO_WM, 0)
    proc.on_trade(st, sig, trade(T0 + 2 * S + 1, 100.0, seq=2), NO_WM, 0)
    mark = wm_ms(T0 + 2 * S)  # the bar [1,2) is behind it, [2,3) is not
    proc.on_gap(st, gap(T0 + S + 1, T0 + 2 * S + 5), mark)
    finals = proc.on_watermark(st, sig, wm_ms(T0 + 3 * S))
    assert [e.gap for e in finals] == [False, True]
    assert st.counters.late_gaps == 1


def test_a_gap_marker_in_the_log_twice_is_applied_once(proc):
    st = SymbolState()
    assert proc.on_gap(st, gap(T0, T0 + S, seq=9), NO_WM)
    assert not proc.on_gap(st, gap(T0, T0 + S, seq=9), NO_WM)
    assert st.counters.gaps == 1 and len(st.gaps) == 1 and st.counters.seq_regressions == 1


def test_gap_windows_are_pruned_once_the_watermark_passed_every_bar_they_overlap(proc):
    """Bounded state: a window stays while a bar that may still close overlaps it."""
    st, sig = SymbolState(), SignalState()
    for k in range(50):  # a reconnect a second, no trade at all (a symbol that only quotes)
        proc.on_gap(st, gap(T0 + k * S, T0 + k * S + S // 2, seq=k + 1), NO_WM, wm_ms(T0 + k * S))
    assert len(st.gaps) <= 2
    proc.on_trade(st, sig, trade(T0 + 49 * S + 1, 100.0, seq=1), NO_WM, 0)
    (final,) = proc.on_watermark(st, sig, wm_ms(T0 + 51 * S))
    assert final.gap and st.gaps == []
