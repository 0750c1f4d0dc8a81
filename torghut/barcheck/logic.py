"""The minute check's pure logic: roll 1 s bars up to a minute, compare it with the vendor's
minute bar, and decide when a (symbol, minute) is complete on both sides. No I/O.

docs/design.md ("Condition-aware bars", "The minute check") states the rules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

NS_PER_MIN = 60_000_000_000
#: a 1 s bar without `price_basis` (written before the field existed) counts as basis 2
DEFAULT_BASIS = 2
#: relative tolerance of the price fields (open, high, low, close, vwap)
PRICE_REL_TOL = 1e-9
FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume", "trade_count", "vwap")
PRICE_FIELDS = frozenset({"open", "high", "low", "close", "vwap"})

AGREE = "agree"
DISAGREE = "disagree"
ONLY_OURS = "only_ours"
#: our minute holds only volume trades (price_basis 0): the vendor sends no bar for it
ONLY_OURS_NO_PRICE = "only_ours_no_price"
ONLY_VENDOR = "only_vendor"
#: a disagreement while the job counted late trades of the symbol that can belong to the
#: minute: the vendor's bar holds trades the job's final bars refused as late (docs/design.md,
#: "The minute check"); reported, not alerted on
LATE_TRADES = "late_trades"
RESULTS: tuple[str, ...] = (
    AGREE,
    DISAGREE,
    LATE_TRADES,
    ONLY_OURS,
    ONLY_OURS_NO_PRICE,
    ONLY_VENDOR,
)


def minute_of(ts_ns: int) -> int:
    return ts_ns - ts_ns % NS_PER_MIN


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def micros_to_ns(value: int | datetime) -> int:
    """A `timestamp-micros` field as epoch ns (fastavro decodes it to an aware datetime)."""
    if isinstance(value, datetime):
        return (value - _EPOCH) // _US * 1000
    return int(value) * 1000


@dataclass(frozen=True, slots=True)
class SecondBar:
    """The fields of one final 1 s bar the roll-up uses."""

    start_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float
    trade_count: int
    price_basis: int = DEFAULT_BASIS
    gap: bool = False

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> SecondBar:
        """From a decoded `torghut.ta.MicroBar` (window start in µs)."""
        basis = rec.get("price_basis")
        return cls(
            start_ns=micros_to_ns(rec["window"]["start"]),
            open=float(rec["open"]),
            high=float(rec["high"]),
            low=float(rec["low"]),
            close=float(rec["close"]),
            volume=float(rec["volume"]),
            vwap=float(rec["vwap"]),
            trade_count=int(rec["trade_count"]),
            price_basis=DEFAULT_BASIS if basis is None else int(basis),
            gap=bool(rec.get("gap", False)),
        )


@dataclass(frozen=True, slots=True)
class MinuteBar:
    """A minute's OHLCV: ours (rolled up) or the vendor's."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    trade_count: int
    vwap: float
    price_basis: int = DEFAULT_BASIS  # ours: the highest basis of its 1 s bars
    seconds: int = 0  # ours: how many 1 s bars
    gap: bool = False  # ours: a 1 s bar of the minute overlaps a forwarder gap

    def value(self, name: str) -> float:
        return float(getattr(self, name))

    @classmethod
    def from_vendor(cls, payload: Mapping[str, Any]) -> MinuteBar:
        """From the `torghut.Bar` payload of a `bars` / `updatedBars` envelope."""
        return cls(
            open=float(payload["open"]),
            high=float(payload["high"]),
            low=float(payload["low"]),
            close=float(payload["close"]),
            volume=float(payload["volume"]),
            trade_count=int(payload["trade_count"]),
            vwap=float(payload["vwap"]),
        )


def roll_up(bars: Iterable[SecondBar]) -> MinuteBar | None:
    """The minute of these 1 s bars (one minute, one symbol; any order), or None if empty.

    The bar-building rules with the 1 s bars as the trades: open / close from the earliest
    / latest bar of the highest basis, high / low over the bars of basis >= 1 (over all of
    them when none has: then every price is the carried close), volume and trade_count
    summed, vwap weighted by volume (the close when there is no volume).
    """
    ordered = sorted(bars, key=lambda b: b.start_ns)
    if not ordered:
        return None
    basis = max(b.price_basis for b in ordered)
    top = [b for b in ordered if b.price_basis == basis]
    priced = [b for b in ordered if b.price_basis >= 1] or ordered
    volume = math.fsum(b.volume for b in ordered)
    close = top[-1].close
    vwap = math.fsum(b.vwap * b.volume for b in ordered if b.volume) / volume if volume else close
    return MinuteBar(
        open=top[0].open,
        high=max(b.high for b in priced),
        low=min(b.low for b in priced),
        close=close,
        volume=volume,
        trade_count=sum(b.trade_count for b in ordered),
        vwap=vwap,
        price_basis=basis,
        seconds=len(ordered),
        gap=any(b.gap for b in ordered),
    )


def field_agrees(name: str, ours: float, theirs: float) -> bool:
    """Prices within `PRICE_REL_TOL` relative; volume and trade_count exactly."""
    if name in PRICE_FIELDS:
        return abs(ours - theirs) <= PRICE_REL_TOL * max(abs(ours), abs(theirs))
    return ours == theirs


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome for one (symbol, minute); `revision` counts re-checks (an updatedBar)."""

    symbol: str
    minute_ns: int
    result: str
    ours: MinuteBar | None
    theirs: MinuteBar | None
    disagreements: tuple[str, ...] = ()
    revision: int = 0

    def agrees(self, name: str) -> bool | None:
        if self.ours is None or self.theirs is None:
            return None
        return name not in self.disagreements


def compare(
    symbol: str, minute_ns: int, ours: MinuteBar | None, theirs: MinuteBar | None, revision: int = 0
) -> Check:
    if ours is None and theirs is None:
        raise ValueError("nothing to compare")
    if theirs is None:
        assert ours is not None
        result = ONLY_OURS_NO_PRICE if ours.price_basis == 0 else ONLY_OURS
        return Check(symbol, minute_ns, result, ours, None, (), revision)
    if ours is None:
        return Check(symbol, minute_ns, ONLY_VENDOR, None, theirs, (), revision)
    bad = tuple(n for n in FIELDS if not field_agrees(n, ours.value(n), theirs.value(n)))
    return Check(symbol, minute_ns, DISAGREE if bad else AGREE, ours, theirs, bad, revision)


@dataclass(slots=True)
class _Vendor:
    bar: MinuteBar
    updated: bool  # from an updatedBar: a later plain bar does not replace it


@dataclass
class MinuteCheck:
    """Collects both sides and says which (symbol, minute) can be checked.

    Our side of (S, M) is complete once a final 1 s bar of S starting at or after M + 1 min
    was read (the job closes a symbol's bars in start order, into one partition) or the
    job's watermark (`set_watermark`, applied only once every bar it covers was read) passed
    M + 1 min. The vendor side is the latest `b` / `u` of (S, M), a `u` replacing a `b`; it
    is taken as complete when it is there, or when a vendor bar of a later minute (any
    symbol) was read or `vendor_wait_ns` passed since our side completed (then there is
    none). Minutes before `floor_ns` are never checked (a start in the middle of one).
    A `u` for a minute already checked re-checks it (revision + 1) while it is retained.

    A disagreement is `LATE_TRADES` instead when the job counted a late trade of the symbol
    (`note_late`, from its status) at a watermark in [M, M + 1 min + `late_window_ns`]: a
    trade is late once the watermark has passed its second, so such a trade can be one of
    M's, which the vendor's bar holds and the job's final bars do not.
    """

    vendor_wait_ns: int = 120 * 1_000_000_000
    late_window_ns: int = 10 * NS_PER_MIN
    retain_ns: int = 30 * NS_PER_MIN
    floor_ns: int = 0
    watermark_ns: int = 0
    _seconds: dict[tuple[str, int], dict[int, SecondBar]] = field(default_factory=dict)
    _vendor: dict[tuple[str, int], _Vendor] = field(default_factory=dict)
    _complete_since: dict[tuple[str, int], int] = field(default_factory=dict)
    _latest_start: dict[str, int] = field(default_factory=dict)
    _vendor_latest_minute: int = 0
    _checked: dict[tuple[str, int], Check] = field(default_factory=dict)
    _recheck: list[tuple[str, int]] = field(default_factory=list)
    _late_marks: dict[str, list[int]] = field(default_factory=dict)

    def note_late(self, symbol: str, watermark_ns: int) -> None:
        """The job counted late trades of `symbol` by the time its watermark was here."""
        marks = self._late_marks.setdefault(symbol, [])
        marks.append(watermark_ns)
        if len(marks) > 256:
            del marks[:128]  # bounded: the oldest marks are older than any pending minute

    def _classify(self, check: Check) -> Check:
        if check.result != DISAGREE:
            return check
        lo, hi = check.minute_ns, check.minute_ns + NS_PER_MIN + self.late_window_ns
        if any(lo <= m <= hi for m in self._late_marks.get(check.symbol, ())):
            return Check(
                check.symbol,
                check.minute_ns,
                LATE_TRADES,
                check.ours,
                check.theirs,
                check.disagreements,
                check.revision,
            )
        return check

    def add_second(self, symbol: str, bar: SecondBar) -> None:
        key = (symbol, minute_of(bar.start_ns))
        if key[1] < self.floor_ns or key in self._checked:
            return  # before the floor, or a final bar behind a checked minute (cannot be)
        self._seconds.setdefault(key, {})[bar.start_ns] = bar
        if bar.start_ns > self._latest_start.get(symbol, -1):
            self._latest_start[symbol] = bar.start_ns

    def add_vendor(self, symbol: str, minute_ns: int, bar: MinuteBar, updated: bool) -> None:
        key = (symbol, minute_ns)
        if minute_ns < self.floor_ns:
            return
        if not updated:
            self._vendor_latest_minute = max(self._vendor_latest_minute, minute_ns)
        held = self._vendor.get(key)
        if held is not None and held.updated and not updated:
            return  # a plain bar never replaces an updated one
        self._vendor[key] = _Vendor(bar, updated)
        if key in self._checked:
            self._recheck.append(key)

    def set_watermark(self, watermark_ns: int) -> None:
        self.watermark_ns = max(self.watermark_ns, watermark_ns)

    def _ours_complete(self, symbol: str, minute_ns: int) -> bool:
        done_until = max(self.watermark_ns, self._latest_start.get(symbol, -1))
        return minute_ns + NS_PER_MIN <= done_until

    def ready(self, now_ns: int) -> list[Check]:
        """Every (symbol, minute) that completed since the last call, oldest minute first."""
        out: list[Check] = []
        for key in sorted(set(self._seconds) | set(self._vendor), key=lambda k: (k[1], k[0])):
            if key in self._checked:
                continue
            symbol, minute = key
            if not self._ours_complete(symbol, minute):
                continue
            since = self._complete_since.setdefault(key, now_ns)
            vendor = self._vendor.get(key)
            if vendor is None and not (
                self._vendor_latest_minute > minute or now_ns - since >= self.vendor_wait_ns
            ):
                continue
            seconds = self._seconds.pop(key, {})
            ours = roll_up(seconds.values())
            check = self._classify(compare(symbol, minute, ours, vendor.bar if vendor else None))
            self._checked[key] = check
            self._complete_since.pop(key, None)
            out.append(check)
        for key in self._recheck:
            prev = self._checked.get(key)
            vendor = self._vendor.get(key)
            if prev is None or vendor is None:
                continue
            check = self._classify(
                compare(key[0], key[1], prev.ours, vendor.bar, prev.revision + 1)
            )
            self._checked[key] = check
            out.append(check)
        self._recheck.clear()
        self._expire()
        return out

    def _expire(self) -> None:
        latest = max(self.watermark_ns, max(self._latest_start.values(), default=0))
        horizon = latest - self.retain_ns
        for key in [k for k in self._checked if k[1] < horizon]:
            del self._checked[key]
            self._vendor.pop(key, None)

    @property
    def pending(self) -> int:
        """(symbol, minute)s waiting for a side."""
        return len(set(self._seconds) | (set(self._vendor) - set(self._checked)))
