"""The tests' bar oracle: condition-aware 1 s bars and minute roll-ups, from the contract.

Written from docs/design.md ("Condition-aware bars"; "Bad input" for the VWAP of extreme
prices and sizes) and the consolidated tape's table in `shared/sale_conditions.py`, which
is the specification's data and the only project module this one reads. It does not use
`shared/bars.py`, `flink_job` or `shared/indicators`: it is the thing the job's bars are
checked against, so it must not share their code.

The rules, one trade at a time:

- **flags**: the AND over the trade's conditions of the table's bits (HIGH_LOW, LAST,
  VOLUME) for its tape (`"C"`: the UTP table; anything else, `""` included: CTA's); no
  conditions is a regular sale (every bit); a code in neither table restricts nothing; a
  blank code is CTA's regular sale, `@` (the table module's docstring).
- **Form T**: outside the NYSE regular session (exchange_calendars' XNYS: holidays and
  early closes) the condition `T` restricts nothing, the trade's other conditions still
  apply; inside it `T` is the table's volume-only code. This rule is stated by README
  ("Form T prices bars only outside the NYSE regular session") and the table module
  (`resolve`); docs/design.md's "Condition-aware bars" still lists `T` among the
  volume-only codes and says the bar builder needs no clock, and should say it too.
- a trade with flags 0 is in no bar; a bucket has a bar as soon as one trade in it has a
  flag;
- **rank** 2 if LAST, else 1 if HIGH_LOW, else 0; a bar's `price_basis` is the highest rank
  in it;
- **open / close**: the earliest / latest trade (event time; ties by arrival) whose rank is
  the bar's `price_basis`; **high / low** over the trades of rank >= 1;
- **volume / trade_count** over the VOLUME trades; **vwap** = sum(price x size) / volume
  over the same trades, summed in arrival order (the job's order), and when that pv is no
  normal finite number (it overflowed or underflowed) or the ratio overflows, the exact
  rational VWAP rounded once; a bar without volume has vwap = close;
- a bar of `price_basis` 0 takes open = high = low = close = the close of the symbol's
  previous bar (in start order), or of `carry[symbol]` before its first bar; with neither
  it is not a bar (the job refuses it: "counted in refused_outputs").

`oracle_minute_bars` rolls 1 s bars up to a minute by the same rules, each 1 s bar being a
"trade" of rank = its `price_basis`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from fractions import Fraction
from functools import lru_cache
from zoneinfo import ZoneInfo

from shared import sale_conditions as table

S = 1_000_000_000
MINUTE = 60 * S
_INF = float("inf")
_TINY = sys.float_info.min  # the smallest normal double: below it pv lost precision
NEW_YORK = ZoneInfo("America/New_York")

HIGH_LOW, LAST, VOLUME = table.HIGH_LOW, table.LAST, table.VOLUME
ALL = HIGH_LOW | LAST | VOLUME

#: (symbol, event_ts_ns, price, size, tape, conditions); a 4-tuple is a regular sale on ""
Trade = tuple[str, int, float, float, str, Sequence[str]]


@dataclass
class OracleBar:
    """A bar as the contract defines it; the attribute names are the job's MicroBar's."""

    symbol: str
    start_ns: int
    end_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    trade_count: int
    price_basis: int


def bucket_start(event_ts_ns: int, size_ns: int) -> int:
    """floor(event_ts / size) * size, for negative times too."""
    if size_ns <= 0:
        raise ValueError(f"bucket size must be positive, got {size_ns}")
    return (event_ts_ns // size_ns) * size_ns


@lru_cache(maxsize=512)
def _nyse_session(day: date) -> tuple[int, int] | None:
    """[open, close) ns of the NYSE regular session on New York day `day` (exchange_calendars'
    XNYS: holidays and early closes), None on a day without one; outside the calendar's
    range the weekday rule 09:30-16:00 New York."""
    import exchange_calendars  # type: ignore[import-untyped]

    cal = exchange_calendars.get_calendar("XNYS")
    if cal.first_session.date() <= day <= cal.last_session.date():
        if not cal.is_session(day.isoformat()):
            return None
        open_, close = cal.session_open_close(day.isoformat())
        return int(open_.value), int(close.value)
    if day.weekday() >= 5:
        return None
    bounds = (datetime.combine(day, t, NEW_YORK) for t in (time(9, 30), time(16, 0)))
    open_ns, close_ns = (int(b.timestamp()) * S for b in bounds)
    return open_ns, close_ns


def in_regular_session(event_ns: int) -> bool:
    """Whether `event_ns` lies in an NYSE regular session."""
    day = datetime.fromtimestamp(event_ns // S, NEW_YORK).date()
    session = _nyse_session(day)
    return session is not None and session[0] <= event_ns < session[1]


def trade_flags(tape: str, conditions: Iterable[str], event_ns: int | None = None) -> int:
    """HIGH_LOW | LAST | VOLUME bits a trade with `conditions` on `tape` may update.

    With `event_ns`, the Form T rule: outside the NYSE regular session the condition `T`
    restricts nothing (the trade's other conditions still apply); inside it, and without a
    time, `T` is the table's volume-only code."""
    rules = table.UTP if tape == "C" else table.CTA
    codes = [code.strip() or "@" for code in conditions]
    if event_ns is not None and "T" in codes and not in_regular_session(event_ns):
        codes = [code for code in codes if code != "T"]
    flags = ALL
    for code in codes:
        rule = rules.get(code)
        if rule is not None:  # an unknown code restricts nothing
            flags &= rule[1]
    return flags


def rank(flags: int) -> int:
    """2: may set the last sale; 1: only high/low; 0: neither."""
    return 2 if flags & LAST else 1 if flags & HIGH_LOW else 0


def normalize(trade: Sequence) -> Trade:
    """A 6-tuple as given; a 4-tuple (symbol, ts, price, size) is a regular sale on tape ""."""
    if len(trade) == 4:
        sym, ts, price, size = trade
        return (sym, ts, price, size, "", ())
    sym, ts, price, size, tape, conditions = trade
    return (sym, ts, price, size, tape or "", tuple(conditions or ()))


def alpaca_trade(m: Mapping, ts: int | None = None, symbol: str | None = None) -> Trade:
    """An Alpaca trade message (`S`, `t`, `p`, `s`, `z`, `c`) as the oracle's trade; `ts`
    replaces `t` when the message's time is not an integer (REST history's RFC 3339) and
    `symbol` gives the symbol of a REST history trade (which has no `S`)."""
    return (
        m["S"] if symbol is None else symbol,
        m["t"] if ts is None else ts,
        m["p"],
        float(m["s"]),
        m.get("z") or "",
        tuple(m.get("c") or ()),
    )


def _vwap(items: Sequence[tuple[float, float]], volume: float) -> float | None:
    """sum(p*s)/volume in the given order; the exact VWAP rounded once when pv is unusable.
    None when there is no volume (the caller uses the close)."""
    if not volume > 0.0:
        return None
    pv = 0.0
    for p, s in items:
        pv += p * s
    if _TINY <= pv < _INF:
        v = pv / volume
        if v < _INF:
            return v
    exact = sum((Fraction(p) * Fraction(s) for p, s in items), Fraction(0))
    return float(exact / sum((Fraction(s) for _, s in items), Fraction(0)))


@dataclass(frozen=True)
class _Item:
    """One input of a bar: a trade, or a 1 s bar when rolling up."""

    ts: int  # event time (a trade) or start (a bar)
    arrival: int
    rank: int
    volume_counts: bool
    open: float
    high: float
    low: float
    close: float
    size: float  # a trade's size, a bar's volume
    price: float  # a trade's price, a bar's vwap (the VWAP's weight base)
    count: int  # 1 for a trade, a bar's trade_count


def _build(
    symbol: str, start: int, size_ns: int, items: list[_Item], prev_close: float | None
) -> OracleBar | None:
    basis = max(i.rank for i in items)
    vol_items = [i for i in items if i.volume_counts]
    volume = 0.0
    for i in vol_items:
        volume += i.size
    count = sum(i.count for i in vol_items)
    if basis == 0:
        if prev_close is None:
            return None
        o = h = lo = c = prev_close
    else:
        priced = [i for i in items if i.rank == basis]
        first = min(priced, key=lambda i: (i.ts, i.arrival))
        last = max(priced, key=lambda i: (i.ts, i.arrival))
        o, c = first.open, last.close
        ranged = [i for i in items if i.rank >= 1]
        h = max(i.high for i in ranged)
        lo = min(i.low for i in ranged)
    vwap = _vwap([(i.price, i.size) for i in vol_items], volume)
    return OracleBar(
        symbol,
        start,
        start + size_ns,
        o,
        h,
        lo,
        c,
        volume,
        c if vwap is None else vwap,
        count,
        basis,
    )


def _assemble(
    groups: dict[tuple[str, int], list[_Item]],
    size_ns: int,
    carry: Mapping[str, float] | None,
) -> list[OracleBar]:
    bars: list[OracleBar] = []
    prev: dict[str, float] = dict(carry or {})
    for (sym, start), items in sorted(groups.items()):
        bar = _build(sym, start, size_ns, items, prev.get(sym))
        if bar is not None:
            bars.append(bar)
            prev[sym] = bar.close
    return bars


def oracle_bars(
    trades: Iterable[Sequence], size_ns: int = S, carry: Mapping[str, float] | None = None
) -> list[OracleBar]:
    """The bars of `trades` (in arrival order), sorted by (symbol, start).

    Each trade is (symbol, event_ts_ns, price, size, tape, conditions), or the old
    (symbol, event_ts_ns, price, size) meaning a regular sale. `carry` maps a symbol to
    the close of its bar before these trades (a flat bar before the symbol's first bar here
    takes it; without it such a bar is dropped)."""
    groups: dict[tuple[str, int], list[_Item]] = {}
    for arrival, raw in enumerate(trades):
        sym, ts, price, size, tape, conditions = normalize(raw)
        flags = trade_flags(tape, conditions, ts)
        if flags == 0:
            continue
        item = _Item(
            ts,
            arrival,
            rank(flags),
            bool(flags & VOLUME),
            price,
            price,
            price,
            price,
            size,
            price,
            1,
        )
        groups.setdefault((sym, bucket_start(ts, size_ns)), []).append(item)
    return _assemble(groups, size_ns, carry)


def oracle_minute_bars(
    bars: Iterable[OracleBar], size_ns: int = MINUTE, carry: Mapping[str, float] | None = None
) -> list[OracleBar]:
    """1 s bars (`OracleBar`s, or anything with the same attributes) rolled up to `size_ns`
    by the same rules: open / close from the earliest / latest bar of the highest basis,
    high / low over the bars of basis >= 1, volume and trade_count summed, vwap weighted by
    volume (summed in start order); a minute of basis 0 carries the previous minute's close.
    """
    groups: dict[tuple[str, int], list[_Item]] = {}
    ordered = sorted(bars, key=lambda b: (b.symbol, b.start_ns))
    for arrival, b in enumerate(ordered):
        item = _Item(
            b.start_ns,
            arrival,
            b.price_basis,
            True,
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            b.vwap,
            b.trade_count,
        )
        groups.setdefault((b.symbol, bucket_start(b.start_ns, size_ns)), []).append(item)
    return _assemble(groups, size_ns, carry)


#: the contract's fields of a bar, in the order the comparisons print them
BAR_FIELDS = (
    "symbol",
    "start_ns",
    "end_ns",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
)


def contract_fields(bar: object) -> tuple:
    """The contract's fields of `bar` (an `OracleBar`, the job's MicroBar, ...), plus its
    `price_basis` when it has one (None otherwise): the job's internal bookkeeping (first
    and last event time, pv) is no part of the contract."""
    return (*(getattr(bar, f) for f in BAR_FIELDS), getattr(bar, "price_basis", None))


def assert_same_bars(got: Sequence[object], want: Sequence[OracleBar]) -> None:
    """`got` (the job's bars) equal the oracle's `want` field by field, in order;
    `price_basis` too once the job's bars carry it."""
    basis = all(hasattr(b, "price_basis") for b in got)
    cut = None if basis else -1
    mine = [contract_fields(b)[:cut] for b in got]
    theirs = [contract_fields(b)[:cut] for b in want]
    if mine != theirs:
        diff = next(
            (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
            min(len(mine), len(theirs)),
        )
        names = (*BAR_FIELDS, "price_basis")
        raise AssertionError(
            f"{len(mine)} bars vs the oracle's {len(theirs)}; first difference at {diff}: "
            f"job {dict(zip(names, mine[diff], strict=False)) if diff < len(mine) else None} "
            f"oracle {dict(zip(names, theirs[diff], strict=False)) if diff < len(theirs) else None}"
        )
