"""Per-symbol event-time logic of the TA job, as plain Python (no Flink), so it is unit-tested
directly and the KeyedProcessFunction stays a thin adapter.

Rules (docs/design.md, "Event time" and "Bad input"):
- a trade goes to its own 1 s bucket; several buckets may be open at once; its sale
  conditions say what it may set there (docs/design.md, "Condition-aware bars"): a trade
  that may update nothing is in no bar, a bar with no price-eligible trade carries the
  symbol's previous close (and is not emitted while the symbol has none);
- a trade or quote is late when its bucket's timer is at or below its *limit*: the event-time
  mark of its partition as the source stamped it (the watermark that partition alone would
  have had just before the record), or Flink's current watermark if that is higher (only
  with idleness on). The mark is a function of the partition's record order, so lateness
  is the same at any consumption speed and across restores. Late: counted and reported,
  never a bar and never a bar's quote;
- a bucket closes when the watermark passes its end: final bar + signals, in start order;
- while a bucket is open a provisional bar + signals (is_final=false) is emitted at most
  every `provisional_interval_ns` of wall time;
- a trade with price <= 0 or non-finite, size < 0 or non-finite, a quote with a negative or
  non-finite price or size, any price or size outside the plausibility limits
  (shared/limits.py) and any event time more than `max_future_ns` past its ingest time is
  refused (`invalid_reason`): the job counts and skips it;
- the emit guard: a bar (final or provisional) with a non-finite or implausible field is
  never emitted, nor its signals (`bar_problem`; a final one is counted in `refused_bars`
  and never reaches the indicators), and a non-finite indicator value is emitted as null
  (`null_non_finite`);
- a record whose (symbol, kind, seq) was already applied is a duplicate (a delivery the
  forwarder re-produced that reached the log twice): counted, never applied again;
- corrections and cancelErrors are counted and reported; bars are not rewritten (Alpaca
  re-sends corrected minute bars as updatedBars; 1 s bars stay a record of what traded);
- a gap marker (the forwarder lost its WebSocket and may have missed messages in
  [from, to]) is kept as a gap window; every bar whose [start, end) overlaps it carries
  `gap`. Like a trade, it can only reach bars its partition's mark has not passed: bars
  whose timer is at or below the marker's limit may already be final, so the window never
  flags them (a marker that starts in such a bar is counted as `late_gaps`). The flag is a
  function of the log: every marker that may flag a bar is applied before the bar closes.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flink_job.errors import TaJobError
from shared.bars import MicroBar, bucket_start_ns
from shared.indicators import IndicatorError, Quote, SignalState, SignalValues
from shared.limits import DEFAULT_LIMITS, PlausibleLimits
from shared.logs import record_fields
from shared.sale_conditions import ALL, FORM_T, resolve

log = logging.getLogger("torghut.ta")

NS_PER_MS = 1_000_000

# Decoded raw events (flink_job.decode): (kind, symbol, event_ns, seq, ingest_ns, trace_id, *fields);
# a trade's fields are (price, size, trade_id, flags): flags = what its sale conditions let it
# update (shared.sale_conditions; a tuple without them is a regular sale)
TRADE, QUOTE, CORRECTION, CANCEL = "t", "q", "c", "x"
# a gap marker: (GAP, symbol, event_ns, seq, ingest_ns, trace_id, from_ns, to_ns)
GAP = "g"
# more quote buckets than a bar's lookback needs: prune on the quote path too
QUOTE_BUCKETS_SOFT_CAP = 64
# SymbolState.to_state layout: 2 adds the tag, applied seq intervals (1: last seq per kind)
# and the late_quotes/refused_bars counters; 3 adds the gap windows and the gaps/late_gaps
# counters; from_state migrates 1 and 2 (no gap windows)
SYMBOL_STATE_LAYOUT = 3


class SymbolStateError(TaJobError, ValueError):
    """Keyed state this release cannot read (a layout from a newer release)."""


# applied-seq intervals kept per (symbol, kind): a duplicate older than the oldest one is
# applied again (the forwarder re-produces within its delivery timeout, so this is far)
SEQ_INTERVALS_MAX = 256


@dataclass
class SymbolCounters:
    late: int = 0
    out_of_order: int = 0
    seq_gaps: int = 0
    seq_regressions: int = 0
    corrections: int = 0
    late_quotes: int = 0  # added in state layout 2 (with refused_bars); older snapshots: 0
    refused_bars: int = 0
    gaps: int = 0  # added in state layout 3: gap markers applied
    late_gaps: int = 0  # gap markers whose window starts in a bar the mark had passed

    def to_state(self) -> tuple[int, ...]:
        return (
            self.late,
            self.out_of_order,
            self.seq_gaps,
            self.seq_regressions,
            self.corrections,
            self.late_quotes,
            self.refused_bars,
            self.gaps,
            self.late_gaps,
        )


@dataclass
class SymbolState:
    """Everything mutable about one symbol except its SignalState."""

    bars: dict[int, MicroBar] = field(default_factory=dict)  # bucket start ns -> open bar
    latest: dict[int, tuple[int, int, int, str]] = field(
        default_factory=dict
    )  # start -> (event, ingest, seq, trace) of the bar's latest trade
    quotes: dict[int, tuple[int, float, float, float, float]] = field(
        default_factory=dict
    )  # bucket -> latest quote in it
    # event kind -> the seqs applied so far, as sorted disjoint intervals flattened to
    # [lo0, hi0, lo1, hi1, ...] (usually one interval); the newest SEQ_INTERVALS_MAX kept
    applied: dict[str, list[int]] = field(default_factory=dict)
    last_trade_ns: int = 0
    last_provisional_wall_ns: int = 0
    counters: SymbolCounters = field(default_factory=SymbolCounters)
    # known gap windows (layout 3): [from_ns, to_ns, limit_ms], flagging bars that overlap
    # [from, to] and whose timer is above limit (the marker's lateness limit); pruned once
    # the watermark has passed every bar they overlap
    gaps: list[list[int]] = field(default_factory=list)

    def to_state(self) -> tuple[Any, ...]:
        """Plain values for Flink keyed state, layout `SYMBOL_STATE_LAYOUT` first."""
        return (
            SYMBOL_STATE_LAYOUT,
            {k: b.to_state() for k, b in self.bars.items()},
            dict(self.latest),
            dict(self.quotes),
            {k: list(v) for k, v in self.applied.items()},
            self.last_trade_ns,
            self.last_provisional_wall_ns,
            self.counters.to_state(),
            [list(g) for g in self.gaps],
        )

    @classmethod
    def from_state(cls, t: tuple[Any, ...]) -> SymbolState:
        """Inverse of `to_state`, for this layout and every older one (migrated); a layout
        from a newer release is refused with what to do, never read as something else."""
        if t and isinstance(t[0], int):
            layout, t = t[0], t[1:]
        else:
            layout = 1  # layout 1 had no tag: (bars, latest, quotes, last seq per kind, ...)
        if layout > SYMBOL_STATE_LAYOUT or len(t) != (8 if layout >= 3 else 7):
            raise SymbolStateError(
                f"symbol state layout {layout} with {len(t)} fields is not one this release "
                f"reads (layouts 1..{SYMBOL_STATE_LAYOUT}); it was written by a newer "
                "release: restore that release's savepoint with that release"
            )
        bars, latest, quotes, applied, last_trade, last_prov, counters = t[:7]
        gaps = t[7] if layout >= 3 else ()  # layouts 1 and 2 knew no gap windows
        return cls(
            bars={k: MicroBar.from_state(b) for k, b in bars.items()},
            latest=dict(latest),
            quotes=dict(quotes),
            # layout 1 kept the last seq per kind (an int): it becomes one applied interval
            applied={
                k: list(v) if isinstance(v, (list, tuple)) else [v, v] for k, v in applied.items()
            },
            last_trade_ns=last_trade,
            last_provisional_wall_ns=last_prov,
            counters=SymbolCounters(*counters),
            gaps=[list(g) for g in gaps],
        )


@dataclass(frozen=True)
class Emission:
    """One output: a bar and its signals at one moment, final or provisional."""

    bar: MicroBar
    signals: SignalValues
    is_final: bool
    event_ns: int
    ingest_ns: int
    seq: int
    trace_id: str
    gap: bool = False  # the bar overlaps a known WebSocket gap (SymbolState.gaps)


@dataclass
class StepResult:
    emissions: list[Emission] = field(default_factory=list)
    new_timer_ms: int | None = None  # register an event-time timer at this timestamp
    late: bool = False
    duplicate: bool = False


_INF = math.inf


def invalid_reason(
    ev: tuple, max_future_ns: int, limits: PlausibleLimits = DEFAULT_LIMITS
) -> str | None:
    """Why the event cannot be applied to a bar or a quote, or None if it can.

    Trades: price in [price_min, price_max], size in [0, size_max] (`limits`; NaN and the
    infinities are outside every range). Quotes: prices 0 (an empty side) or in the price
    range, sizes in the size range. Any kind: event time at most `max_future_ns` after the
    envelope's ingest time (the forwarder refuses these first; this guards the job against
    any other writer).
    """
    kind = ev[0]
    if ev[2] - ev[4] > max_future_ns:
        return f"event_ts {ev[2]} is {(ev[2] - ev[4]) // NS_PER_MS} ms past ingest_ts {ev[4]}"
    if kind == TRADE:
        price, size = ev[6], ev[7]
        lim = limits
        if lim.price_min <= price <= lim.price_max and 0.0 <= size <= lim.size_max:
            return None  # the common case: two chained comparisons
        if not 0.0 < price < _INF:
            return f"trade price {price!r} is not a positive finite number"
        if not lim.price_min <= price <= lim.price_max:
            return f"trade price {price!r} is {lim.price_problem(price)}"
        if not 0.0 <= size < _INF:
            return f"trade size {size!r} is not a finite number >= 0"
        return f"trade size {size!r} is {lim.size_problem(size)}"
    if kind == QUOTE:
        for name, v in zip(
            ("bid_price", "bid_size", "ask_price", "ask_size"), ev[6:10], strict=True
        ):
            if not 0.0 <= v < _INF:
                return f"quote {name} {v!r} is not a finite number >= 0"
            problem = (
                limits.size_problem(v)
                if name.endswith("size")
                else limits.price_problem(v, zero_ok=True)
            )
            if problem is not None:
                return f"quote {name} {v!r} is {problem}"
    return None


# the emit guard's slack for a VWAP at the edge of the plausible range (it is a mean of
# plausible prices, computed in floating point: a few ulps outside are rounding)
VWAP_SLACK = 1e-9
NO_PRICE = "no trade in it may set a price and the symbol has no earlier close to carry"

# on_refuse(symbol, bar start ns, is_final, what, detail, record=...): what the emit guard
# held back, `what` = "bar" (the bar and its signals were not emitted) or "values"
# (indicator values that were not finite, emitted as null; `detail` names them); `record`:
# (event_ns, seq, trace_id) of the trade it concerns (a provisional bar: the trade just
# applied; a final bar: its latest trade, the one whose trace_id its row would carry)
RefuseHook = Callable[..., None]


def bar_problem(bar: MicroBar, limits: PlausibleLimits = DEFAULT_LIMITS) -> str | None:
    """Why the emit guard holds this bar back (None if it may be emitted): open, high, low
    and close must be plausible prices (`limits`), the volume a finite number >= 0 and the
    VWAP a plausible price too (give or take `VWAP_SLACK`, relative: a mean of the volume
    trades, which odd lots and average-price prints can put outside [low, high]). NaN
    fails every test."""
    lo, hi = limits.price_min, limits.price_max
    if not (
        lo <= bar.low <= hi
        and lo <= bar.high <= hi
        and lo <= bar.open <= hi
        and lo <= bar.close <= hi
    ):
        for name in ("open", "high", "low", "close"):
            v = getattr(bar, name)
            if not lo <= v <= hi:
                return f"{name} {v!r} is outside the plausible range [{lo:g}, {hi:g}]"
    if not 0.0 <= bar.volume < _INF:
        return f"volume {bar.volume!r} is not a finite number >= 0"
    if not lo * (1.0 - VWAP_SLACK) <= bar.vwap <= hi * (1.0 + VWAP_SLACK):
        return f"vwap {bar.vwap!r} is outside the plausible range [{lo:g}, {hi:g}]"
    return None


_VALUE_NAMES = tuple(SignalValues().as_dict())


def null_non_finite(values: SignalValues) -> list[str]:
    """Set every indicator value that is not a finite number to None; the names set."""
    bad = []
    for name in _VALUE_NAMES:
        v = getattr(values, name)
        if v is not None and not -_INF < v < _INF:
            setattr(values, name, None)
            bad.append(name)
    return bad


def _log_refusal(
    symbol: str,
    start_ns: int,
    is_final: bool,
    what: str,
    detail: str,
    record: tuple[int, int, str] | None = None,
) -> None:
    kind = "final" if is_final else "provisional"
    event_ns, seq, trace_id = record if record is not None else (None, None, None)
    extra = record_fields(symbol, "trades", event_ns, seq, None, trace_id)
    if what == "bar":
        log.warning(
            "%s: held back the %s bar starting %d: %s",
            symbol,
            kind,
            start_ns,
            detail,
            extra=extra,
        )
    else:
        log.warning(
            "%s: the %s bar starting %d: non-finite %s emitted as null",
            symbol,
            kind,
            start_ns,
            detail,
            extra=extra,
        )


class SymbolProcessor:
    """Applies one event (or a watermark advance) to a symbol's state."""

    def __init__(
        self,
        bar_size_ns: int = 1_000_000_000,
        provisional_interval_ns: int = 200_000_000,
        quote_max_age_ns: int = 5_000_000_000,
        limits: PlausibleLimits = DEFAULT_LIMITS,
        on_refuse: RefuseHook | None = None,
    ) -> None:
        self.size = bar_size_ns
        self.provisional_interval_ns = provisional_interval_ns
        self.quote_max_age_ns = quote_max_age_ns
        # the emit guard's ranges (bar_problem) and where its refusals are reported (the
        # keyed function counts and rate-limits them; default: a warning each)
        self.limits = limits
        self.on_refuse = on_refuse if on_refuse is not None else _log_refusal

    @staticmethod
    def timer_for(bar_end_ns: int) -> int:
        """Flink event-time timer (ms) that fires once every event < bar end was seen."""
        return bar_end_ns // NS_PER_MS - 1

    def _is_duplicate(self, st: SymbolState, kind: str, seq: int) -> bool:
        """Book `seq` as applied for `kind`; True if it already was (a re-produced record
        that is in the log twice: counted as a regression, never applied again). A jump
        past the highest seq counts as a gap; a lower seq not seen yet (the first copy of a
        re-produced delivery, arriving late) fills its gap and is applied."""
        iv = st.applied.get(kind)
        if iv is None:
            st.applied[kind] = [seq, seq]
            return False
        hi = iv[-1]
        if seq == hi + 1:  # the common case
            iv[-1] = seq
            return False
        if seq > hi:
            st.counters.seq_gaps += 1
            iv += (seq, seq)
            if len(iv) > 2 * SEQ_INTERVALS_MAX:
                del iv[:2]  # bounded: the oldest interval is forgotten
            return False
        i = bisect_right(iv, seq)
        if i % 2 or (i and iv[i - 1] == seq):
            st.counters.seq_regressions += 1
            return True
        joins_left = i > 0 and iv[i - 1] == seq - 1
        joins_right = i < len(iv) and iv[i] == seq + 1
        if joins_left and joins_right:
            del iv[i - 1 : i + 1]
        elif joins_left:
            iv[i - 1] = seq
        elif joins_right:
            iv[i] = seq
        else:
            iv[i:i] = (seq, seq)
        return False

    def on_trade(
        self, st: SymbolState, signals: SignalState, ev: tuple, limit_ms: int, wall_ns: int
    ) -> StepResult:
        """`limit_ms`: the record's lateness limit (module doc), a watermark in ms."""
        symbol, event_ns, seq, ingest_ns, trace_id, price, size = ev[1:8]
        flags = ev[9] if len(ev) > 9 else ALL
        if flags & FORM_T:  # an extended-hours trade: priced outside the regular session
            flags = resolve(flags, event_ns)
        result = StepResult()
        if self._is_duplicate(st, TRADE, seq):
            result.duplicate = True
            return result
        start = bucket_start_ns(event_ns, self.size)
        end = start + self.size
        if self.timer_for(end) <= limit_ms:
            st.counters.late += 1
            result.late = True
            return result
        if event_ns < st.last_trade_ns:
            st.counters.out_of_order += 1
        else:
            st.last_trade_ns = event_ns
        if not flags:  # a market center's official open or close: in no bar
            return result
        bar = st.bars.get(start)
        if bar is None:
            bar = st.bars[start] = MicroBar.open_with(
                symbol, start, self.size, price, size, event_ns, flags
            )
            result.new_timer_ms = self.timer_for(end)
        else:
            bar.add_trade(price, size, event_ns, flags)
        prev = st.latest.get(start)
        if prev is None or event_ns >= prev[0]:
            st.latest[start] = (event_ns, ingest_ns, seq, trace_id)
        if (
            self.provisional_interval_ns
            and wall_ns - st.last_provisional_wall_ns >= self.provisional_interval_ns
        ):
            st.last_provisional_wall_ns = wall_ns
            record = (event_ns, seq, trace_id)
            if not bar.price_basis:  # its view as if it closed now: carrying the latest close
                bar = MicroBar.from_state(bar.to_state())
                if not self._carry(bar, signals):
                    self.on_refuse(symbol, start, False, "bar", NO_PRICE, record=record)
                    return result
            problem = bar_problem(bar, self.limits)
            if problem is not None:  # the emit guard: never emitted (the final bar is refused)
                self.on_refuse(symbol, start, False, "bar", problem, record=record)
                return result
            # the provisional view of the bar this trade went into, as if it closed now
            try:
                values = (
                    signals.peek(bar, self._quote_before(st, bar.end_ns))
                    if self._peekable(signals, bar)
                    else SignalValues()
                )
            except (
                IndicatorError,
                ArithmeticError,
            ) as exc:  # limits wider than the kernels' domain
                self.on_refuse(symbol, start, False, "bar", str(exc), record=record)
                return result
            nulled = null_non_finite(values)
            if nulled:
                self.on_refuse(symbol, start, False, "values", ", ".join(nulled), record=record)
            gap = self._in_gap(st, bar.start_ns, bar.end_ns)
            result.emissions.append(
                Emission(bar, values, False, event_ns, ingest_ns, seq, trace_id, gap)
            )
        return result

    @staticmethod
    def _carry(bar: MicroBar, signals: SignalState) -> bool:
        """Give a bar without a price of its own the symbol's previous close; False if
        there is none yet."""
        previous = signals.last_close
        if previous is None:
            return False
        bar.carry(previous)
        return True

    @staticmethod
    def _peekable(signals: SignalState, bar: MicroBar) -> bool:
        last_end = signals.last_bar_end_ns
        return last_end is None or bar.end_ns > last_end

    def on_quote(
        self,
        st: SymbolState,
        ev: tuple,
        limit_ms: int | None = None,
        watermark_ms: int | None = None,
    ) -> None:
        """`limit_ms`: the record's lateness limit (module doc); a late quote is dropped.
        `watermark_ms`: Flink's watermark, the only safe horizon for pruning (it never
        passes the end of a bar that can still close)."""
        _, _symbol, event_ns, seq, _ingest, _trace, bid, bid_size, ask, ask_size = ev
        if self._is_duplicate(st, QUOTE, seq):
            return
        bucket = bucket_start_ns(event_ns, self.size)
        if limit_ms is not None and self.timer_for(bucket + self.size) <= limit_ms:
            st.counters.late_quotes += 1
            return
        prev = st.quotes.get(bucket)
        if prev is None or event_ns >= prev[0]:
            st.quotes[bucket] = (event_ns, bid, bid_size, ask, ask_size)
        if watermark_ms is not None and len(st.quotes) > QUOTE_BUCKETS_SOFT_CAP:
            # bars prune quotes when they close; a symbol that only quotes never closes one
            self.prune_quotes(st, watermark_ms)

    def prune_quotes(self, st: SymbolState, watermark_ms: int) -> None:
        """Drop quote buckets no open or future bar can use (older than its lookback).

        Cheap when called per quote: buckets are inserted in about event-time order, so it
        drops from the oldest insertion until one is still needed; only a history far over
        the cap (out-of-order stragglers behind a newer bucket) gets a full scan.
        """
        # any bar still to close ends after the watermark, and looks back quote_max_age
        horizon = watermark_ms * NS_PER_MS - self.quote_max_age_ns - self.size
        quotes = st.quotes
        while quotes:
            oldest = next(iter(quotes))
            if oldest >= horizon:
                break
            del quotes[oldest]
        if len(quotes) > 4 * QUOTE_BUCKETS_SOFT_CAP:
            for bucket in [b for b in quotes if b < horizon]:
                del quotes[bucket]

    def on_gap(
        self, st: SymbolState, ev: tuple, limit_ms: int, watermark_ms: int | None = None
    ) -> bool:
        """A gap marker `(GAP, symbol, event_ns, seq, ingest_ns, trace, from_ns, to_ns)`:
        keep its window for the bars it may still flag (module doc). Returns False for a
        duplicate. A window whose first bar's timer is at or below `limit_ms` is counted
        as `late_gaps` (that bar may already be final; it is not flagged)."""
        if self._is_duplicate(st, GAP, ev[3]):
            return False
        from_ns, to_ns = ev[6], ev[7]
        st.counters.gaps += 1
        if self.timer_for(bucket_start_ns(from_ns, self.size) + self.size) <= limit_ms:
            st.counters.late_gaps += 1
        st.gaps.append([from_ns, to_ns, limit_ms])
        if watermark_ms is not None:
            self.prune_gaps(st, watermark_ms)
        return True

    def _in_gap(self, st: SymbolState, start_ns: int, end_ns: int) -> bool:
        """Whether the bar [start, end) overlaps a gap window that may flag it."""
        if not st.gaps:
            return False
        timer = self.timer_for(end_ns)
        return any(lo < end_ns and start_ns <= hi and timer > limit for lo, hi, limit in st.gaps)

    def prune_gaps(self, st: SymbolState, watermark_ms: int) -> None:
        """Drop windows that end before every bar still to close: such a bar ends after
        the watermark, so it starts after `watermark - size`."""
        horizon = (watermark_ms + 1) * NS_PER_MS - self.size
        if st.gaps and any(hi < horizon for _, hi, _ in st.gaps):
            st.gaps = [g for g in st.gaps if g[1] >= horizon]

    def on_correction(self, st: SymbolState, ev: tuple) -> None:
        if not self._is_duplicate(st, ev[0], ev[3]):
            st.counters.corrections += 1

    def _quote_before(self, st: SymbolState, bar_end_ns: int) -> Quote | None:
        """Latest quote with event time < bar end and not older than the limit."""
        oldest = bar_end_ns - self.quote_max_age_ns
        bucket = bucket_start_ns(bar_end_ns - 1, self.size)
        while bucket + self.size > oldest:
            q = st.quotes.get(bucket)
            if q is not None and q[0] < bar_end_ns:
                return Quote(bid=q[1], bid_size=q[2], ask=q[3], ask_size=q[4], event_ns=q[0])
            bucket -= self.size
        return None

    def on_watermark(
        self, st: SymbolState, signals: SignalState, watermark_ms: int
    ) -> list[Emission]:
        """Close, in start order, every open bar the watermark has passed."""
        out: list[Emission] = []
        for start in sorted(st.bars):
            bar = st.bars[start]
            if self.timer_for(bar.end_ns) > watermark_ms:
                break
            event_ns, ingest_ns, seq, trace_id = st.latest.pop(start)
            del st.bars[start]
            record = (event_ns, seq, trace_id)
            if not bar.price_basis and not self._carry(bar, signals):
                st.counters.refused_bars += 1
                self.on_refuse(bar.symbol, start, True, "bar", NO_PRICE, record=record)
                continue
            problem = bar_problem(bar, self.limits)
            if problem is not None:
                # the emit guard (docs/design.md, "Bad input"): a bar with a non-finite or
                # implausible field is not emitted and never reaches the indicators
                st.counters.refused_bars += 1
                self.on_refuse(bar.symbol, start, True, "bar", problem, record=record)
                continue
            try:
                values = signals.update(bar, self._quote_before(st, bar.end_ns))
            except (IndicatorError, ArithmeticError):
                # a bar the indicators refuse (a bug upstream: the checks in invalid_reason
                # keep bad values out) is dropped and counted, never a restart loop
                log.exception(
                    "%s: dropped the bar starting %d",
                    bar.symbol,
                    start,
                    extra=record_fields(bar.symbol, "trades", event_ns, seq, None, trace_id),
                )
                st.counters.refused_bars += 1
                continue
            nulled = null_non_finite(values)
            if nulled:
                self.on_refuse(bar.symbol, start, True, "values", ", ".join(nulled), record=record)
            gap = self._in_gap(st, bar.start_ns, bar.end_ns)
            out.append(Emission(bar, values, True, event_ns, ingest_ns, seq, trace_id, gap))
        if st.gaps:
            self.prune_gaps(st, watermark_ms)
        if out:
            horizon = out[-1].bar.end_ns - self.quote_max_age_ns - self.size
            for bucket in [b for b in st.quotes if b < horizon]:
                del st.quotes[bucket]
        return out
