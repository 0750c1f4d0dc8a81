"""The batch oracle of the TA job's final output, computed from the raw input log alone.

Written independently of the job's code (docs/design.md states the rules it follows):
- per raw partition, in offset order, event time is the record timestamp capped at the
  envelope's ingest time + `max_future_ms` (a heartbeat: its timestamp, uncapped); the
  partition's mark before a record is `max event ms so far - bound - 1`;
- a record the job cannot use (bad price or size, event time past ingest + tolerance) is
  rejected but its capped time still counts for the mark;
- a valid record whose `(symbol, channel, seq)` came earlier in the log is a duplicate (a
  re-produced delivery): skipped, late or not, its time still counting for the mark;
- a trade or quote is late when its 1 s bucket ends at or before `mark + 1` ms;
- final bars are those whose end the last watermark (minimum over the partitions' last
  marks) has passed; they are the condition-aware bars of the on-time trades in log order,
  each with its tape and sale conditions (`tests/support/bar_oracle.py`, written from
  docs/design.md "Condition-aware bars", not from the job's bar code); the quote of a bar is the latest on-time quote before its end (buckets back
  to `quote_max_age`), and spread/imbalance come from it;
- a gap marker (channel `gap`, a symbol's window [from, to] of a WebSocket reconnect) that
  is valid and not a duplicate flags the final bars of its symbol whose [start, end)
  overlaps [from, to] and whose end is after `mark + 1` ms (a bar the marker's mark has
  passed may already be final: never flagged); its window's first bar ending at or before
  `mark + 1` counts it as a late gap marker.

The signals of the final bars are checked by `assert_signals_equal_talib`: the TA-Lib
values against TA-Lib 0.8.2, the others against `tests/support/signal_oracle.py`.
"""

from __future__ import annotations

import datetime
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from tests.support.bar_oracle import OracleBar, bucket_start, oracle_bars
from tests.support.signal_oracle import SIGNAL_VALUE_FIELDS, assert_series_signals

S = 1_000_000_000
MS = 1_000_000
NO_MARK = -(1 << 63)


@dataclass(frozen=True)
class LogRecord:
    """One raw record as read back from its partition: a heartbeat has `envelope` None."""

    split: str
    offset: int
    timestamp_ms: int
    envelope: dict | None


@dataclass
class OracleResult:
    bars: dict[tuple[str, int], OracleBar]  # (symbol, start ns) -> final bar
    quotes: dict[tuple[str, int], tuple[float, float, float, float] | None]  # bar -> quote
    late_trades: int = 0
    late_quotes: int = 0
    rejected: int = 0
    duplicates: int = 0
    final_watermark_ms: int = NO_MARK
    #: (symbol, event ns, price, size, tape, conditions) in log order
    on_time_trades: list[tuple[str, int, float, float, str, tuple[str, ...]]] = field(
        default_factory=list
    )
    gap_bars: set[tuple[str, int]] = field(default_factory=set)  # final bars flagged gap
    gap_markers: int = 0
    late_gap_markers: int = 0
    #: every applied gap marker: (symbol, from ns, to ns, its partition's mark in ms)
    gap_windows: list[tuple[str, int, int, int]] = field(default_factory=list)


def _valid(env: dict, max_future_ns: int) -> bool:
    if env["event_ts"] - env["ingest_ts"] > max_future_ns:
        return False
    p = env["payload"]
    if env["channel"] == "gap":
        return env["window"] is not None and p.get("event") == "gap"
    if env["channel"] == "trades":
        return (
            math.isfinite(p["price"])
            and p["price"] > 0
            and math.isfinite(p["size"])
            and (p["size"] >= 0)
        )
    if env["channel"] == "quotes":
        vals = (p["bid_price"], p["bid_size"], p["ask_price"], p["ask_size"])
        return all(math.isfinite(v) and v >= 0 for v in vals)
    return True


def expected_output(
    log: Iterable[LogRecord],
    bound_ms: int = 1000,
    max_future_ms: int = 2000,
    bar_ns: int = S,
    quote_max_age_ns: int = 5 * S,
) -> OracleResult:
    """The final bars (and each bar's quote) the job must emit for this log."""
    by_split: dict[str, list[LogRecord]] = {}
    for rec in log:
        by_split.setdefault(rec.split, []).append(rec)
    high: dict[str, int] = {}
    trades: list[tuple[int, tuple]] = []  # (arrival, (sym, ts, price, size, tape, conds))
    quotes: dict[tuple[str, int], tuple[int, int, tuple]] = {}  # (sym, bucket) -> latest
    late_t = late_q = rejected = duplicates = late_gaps = 0
    gaps: list[tuple[str, int, int, int]] = []  # (symbol, from ns, to ns, mark)
    seen: set[tuple[str, str, int]] = set()
    arrival = 0
    for split, recs in sorted(by_split.items()):
        for rec in sorted(recs, key=lambda r: r.offset):
            env = rec.envelope
            ts = rec.timestamp_ms
            if env is not None:
                ts = min(ts, env["ingest_ts"] // MS + max_future_ms)
            before = high.get(split)
            mark = NO_MARK if before is None else before - bound_ms - 1
            high[split] = ts if before is None else max(before, ts)
            if env is None or env["channel"] not in ("trades", "quotes", "gap"):
                continue
            if not _valid(env, max_future_ms * MS):
                rejected += 1
                continue
            ident = (env["symbol"], env["channel"], env["seq"])
            if ident in seen:
                duplicates += 1
                continue
            seen.add(ident)
            if env["channel"] == "gap":
                lo, hi = (_epoch_ns(env["window"][k]) for k in ("start", "end"))
                gaps.append((env["symbol"], lo, hi, mark))
                if (bucket_start(lo, bar_ns) + bar_ns) // MS - 1 <= mark:
                    late_gaps += 1
                continue
            bucket = bucket_start(env["event_ts"], bar_ns)
            late = (bucket + bar_ns) // MS - 1 <= mark
            p = env["payload"]
            arrival += 1
            if env["channel"] == "trades":
                if late:
                    late_t += 1
                else:
                    trades.append((arrival, _trade(env)))
            elif late:
                late_q += 1
            else:
                q = (p["bid_price"], p["bid_size"], p["ask_price"], p["ask_size"])
                key = (env["symbol"], bucket)
                prev = quotes.get(key)
                if prev is None or env["event_ts"] >= prev[0]:
                    quotes[key] = (env["event_ts"], arrival, q)
    final_wm = min((h - bound_ms - 1 for h in high.values()), default=NO_MARK)
    # one partition per topic here: the trades partition's order is the arrival order
    ordered = [t for _, t in sorted(trades, key=lambda a: a[0])]
    bars = {
        (b.symbol, b.start_ns): b
        for b in oracle_bars(ordered, bar_ns)
        if b.end_ns // MS - 1 <= final_wm
    }
    bar_quotes: dict[tuple[str, int], tuple[float, float, float, float] | None] = {}
    for (sym, start), b in bars.items():
        found = None
        bucket = start
        while bucket + bar_ns > b.end_ns - quote_max_age_ns:
            hit = quotes.get((sym, bucket))
            if hit is not None:
                found = hit[2]
                break
            bucket -= bar_ns
        bar_quotes[(sym, start)] = found
    gap_bars = {
        (sym, start)
        for (sym, start), b in bars.items()
        for g_sym, lo, hi, mark in gaps
        if g_sym == sym and lo < b.end_ns and start <= hi and b.end_ns // MS - 1 > mark
    }
    return OracleResult(
        bars,
        bar_quotes,
        late_t,
        late_q,
        rejected,
        duplicates,
        final_wm,
        ordered,
        gap_bars,
        len(gaps),
        late_gaps,
        gaps,
    )


def _trade(env: dict) -> tuple[str, int, float, float, str, tuple[str, ...]]:
    """A trade envelope as the bar oracle takes it: its tape and conditions carried."""
    p = env["payload"]
    conds = tuple(p.get("conditions") or ())
    return (env["symbol"], env["event_ts"], p["price"], p["size"], p.get("tape") or "", conds)


def trades_of_envelopes(envelopes: Iterable[dict]) -> list[tuple]:
    """The bar oracle's trades (tape and conditions carried) of the trade envelopes among
    `envelopes`, in their order."""
    return [_trade(e) for e in envelopes if e is not None and e.get("channel") == "trades"]


def _epoch_ns(t: datetime.datetime | int) -> int:
    """A window bound (fastavro decodes timestamp-micros to an aware datetime) in epoch ns."""
    if isinstance(t, datetime.datetime):
        return (t - _EPOCH) // datetime.timedelta(microseconds=1) * 1000
    return int(t) * 1000


# ---- comparing the job's final bars (records decoded from ta.bars.1s.v1) with the oracle ----

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
BarKey = tuple[str, int]  # (symbol, window start in epoch µs)


def start_us(r: dict) -> int:
    """A decoded bar record's window start in epoch µs (fastavro decodes timestamp-micros to
    a datetime)."""
    return (r["window"]["start"] - _EPOCH) // datetime.timedelta(microseconds=1)


def final_bar_counts(records: Iterable[dict]) -> Counter[BarKey]:
    """How many times each final bar was emitted."""
    return Counter((r["symbol"], start_us(r)) for r in records if r["is_final"])


def assert_bar_equals(r: dict, b: Any, key: object, rel: float = 0.0) -> None:
    """OHLC and trade count exactly; volume and VWAP exactly, or within `rel` where the
    job sums trades in another order than the oracle (out-of-order input). `b` is an
    `OracleBar` (or anything with its attributes); `price_basis` is compared too when both
    the record and `b` have it."""
    got = (r["open"], r["high"], r["low"], r["close"], r["trade_count"])
    want = (b.open, b.high, b.low, b.close, b.trade_count)
    assert got == want, f"{key}: job (open, high, low, close, trade_count) {got}, oracle {want}"
    if "price_basis" in r and hasattr(b, "price_basis"):
        assert r["price_basis"] == b.price_basis, (key, r["price_basis"], b.price_basis)
    if rel:
        assert math.isclose(r["volume"], b.volume, rel_tol=rel), (key, r["volume"], b.volume)
        assert math.isclose(r["vwap"], b.vwap, rel_tol=rel), (key, r["vwap"], b.vwap)
    else:
        assert (r["volume"], r["vwap"]) == (b.volume, b.vwap), key


def assert_final_bars_equal(
    records: Iterable[dict], expected: Mapping[BarKey, Any], rel: float = 0.0
) -> dict[BarKey, dict]:
    """Every expected final bar exactly once, none the oracle does not have, each equal to
    the oracle's (`assert_bar_equals`). Returns the final bars by key."""
    records = list(records)
    counts = final_bar_counts(records)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    dupes = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} final bars missing, first {missing[:5]}"
    assert not extra, f"final bars the oracle does not have: {extra[:5]}"
    assert not dupes, f"duplicated final bars: {list(dupes.items())[:5]}"
    finals = {(r["symbol"], start_us(r)): r for r in records if r["is_final"]}
    for key, b in expected.items():
        assert_bar_equals(finals[key], b, key, rel)
    return finals


def assert_gap_flags(records: Iterable[dict], gap_bars: set[tuple[str, int]]) -> int:
    """Every final bar's `gap` is True exactly when the oracle flagged it (`gap_bars`:
    (symbol, start ns)). Returns how many final bars carry it."""
    flagged = {(r["symbol"], start_us(r) * 1000) for r in records if r["is_final"] and r["gap"]}
    finals = {(r["symbol"], start_us(r) * 1000) for r in records if r["is_final"]}
    assert flagged == gap_bars & finals, (
        f"gap flags differ from the oracle: job only {sorted(flagged - gap_bars)[:5]}, "
        f"oracle only {sorted((gap_bars & finals) - flagged)[:5]}"
    )
    return len(flagged)


def assert_signals_equal_talib(
    signals: Mapping[BarKey, Mapping[str, Any]],
    expected: Mapping[BarKey, Any],
    quotes: Mapping[tuple[str, int], tuple[float, float, float, float] | None],
    *,
    fields: Sequence[str] = SIGNAL_VALUE_FIELDS,
    only: Collection[BarKey] | None = None,
    session_start: time = time(4, 0),
) -> None:
    """The final signal of every expected bar (of `only`'s, if given) equals the oracle over
    the oracle's bar series of its symbol from its first bar (`expected`, keyed by
    (symbol, start µs)): EMA 12/26, MACD line, signal and histogram, RSI 14, the three
    Bollinger values and ATR 14 equal TA-Lib 0.8.2, and session VWAP, 5 min VWAP, 60 s
    realized volatility, spread and imbalance the numpy formulation of
    `tests/support/signal_oracle.py` with the oracle's quote of each bar
    (`OracleResult.quotes`); None exactly where the reference has no value. `fields`
    narrows the values compared (a fixture that kept only some of them)."""
    wanted = set(expected) if only is None else set(only)
    assert wanted <= set(expected), f"keys outside the oracle: {sorted(wanted - set(expected))[:5]}"
    missing = sorted(wanted - set(signals))
    assert not missing, f"{len(missing)} final signals missing, first {missing[:5]}"
    for sym in sorted({k[0] for k in wanted}):
        keys = sorted(k for k in expected if k[0] == sym)
        check = [i for i, k in enumerate(keys) if k in wanted]
        assert_series_signals(
            sym,
            [expected[k] for k in keys],
            [signals.get(k) for k in keys],
            [quotes[(k[0], k[1] * 1000)] for k in keys],
            fields=fields,
            session_start=session_start,
            check=check,
        )
