"""Time windows over closed bars: items keyed by a time, kept while key > now - length.

Both classes answer in O(1) amortized per bar and stay exact to a few ulps however
long they run: an item leaving the window leaves no floating-point residue behind
(a plain running sum keeps ~1 ulp of every outlier it ever held).
Each offers `commit` (evict, add, answer) and `peek` (the same answer, no change).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque


def _add(s: float, c: float, x: float) -> tuple[float, float]:
    """Neumaier step: s + c tracks the exact sum; c collects each rounding error exactly."""
    t = s + x
    if abs(s) >= abs(x):
        c += (s - t) + x
    else:
        c += (x - t) + s
    return t, c


def _ratio(pv: float, v: float) -> float | None:
    """pv / v, or None when that is no finite number: volumes more than ~2^100 apart in one
    window (1e-300 next to 1e15) exceed what the compensated sums resolve, and the sum left
    after evictions can cancel to 0 or below. The answer is then inexact, never a division
    by zero or an infinity (shared/indicators/signals.py, "Finite by construction")."""
    if v > 0.0:
        r = pv / v
        if -_INF < r < _INF:
            return r
    return None


_INF = math.inf


class RollingVwap:
    """sum(pv) / sum(v) over the items keyed in (now - length, now].

    Compensated running sums: adding and removing a bar is O(1), and removing a
    volume spike a trillion times the rest leaves the remaining sum exact to ~1e-16.
    """

    __slots__ = ("_cpv", "_cv", "_keys", "_npos", "_peeked", "_pvs", "_spv", "_sv", "_vs")

    def __init__(self) -> None:
        self._keys: deque[int] = deque()
        self._pvs: deque[float] = deque()
        self._vs: deque[float] = deque()
        self._spv = self._cpv = self._sv = self._cv = 0.0
        self._npos = 0  # items with v > 0: when none is left the sums are exactly 0
        # peek's evictions for its last cutoff: an open bar is peeked many times
        self._peeked: tuple[int, float, float, float, float, int] | None = None

    def commit(self, cutoff: int, key: int, pv: float, v: float) -> float | None:
        """Drop items keyed <= cutoff, add (key, pv, v), return the VWAP (None if no volume)."""
        self._peeked = None
        keys, pvs, vs = self._keys, self._pvs, self._vs
        spv, cpv, sv, cv, npos = self._spv, self._cpv, self._sv, self._cv, self._npos
        if keys and keys[-1] <= cutoff:  # everything leaves
            keys.clear()
            pvs.clear()
            vs.clear()
            npos = 0
        # Neumaier steps written out (the same arithmetic as `_add`): this is the hot path
        while keys and keys[0] <= cutoff:
            keys.popleft()
            x = -pvs.popleft()
            t = spv + x
            cpv += ((spv - t) + x) if abs(spv) >= abs(x) else ((x - t) + spv)
            spv = t
            ov = vs.popleft()
            x = -ov
            t = sv + x
            cv += ((sv - t) + x) if abs(sv) >= abs(x) else ((x - t) + sv)
            sv = t
            if ov > 0.0:
                npos -= 1
        if npos == 0:
            spv = cpv = sv = cv = 0.0
        if key > cutoff:
            keys.append(key)
            pvs.append(pv)
            vs.append(v)
            t = spv + pv
            cpv += ((spv - t) + pv) if abs(spv) >= abs(pv) else ((pv - t) + spv)
            spv = t
            t = sv + v
            cv += ((sv - t) + v) if abs(sv) >= abs(v) else ((v - t) + sv)
            sv = t
            if v > 0.0:
                npos += 1
        self._spv, self._cpv, self._sv, self._cv, self._npos = spv, cpv, sv, cv, npos
        return _ratio(spv + cpv, sv + cv) if npos else None

    def peek(self, cutoff: int, key: int, pv: float, v: float) -> float | None:
        """What `commit` would return, without changing the window."""
        peeked = self._peeked
        if peeked is not None and peeked[0] == cutoff:
            _, spv, cpv, sv, cv, npos = peeked
        else:
            spv, cpv, sv, cv, npos = self._spv, self._cpv, self._sv, self._cv, self._npos
            keys = self._keys
            if keys and keys[-1] <= cutoff:
                npos = 0
            else:
                for okey, opv, ov in zip(keys, self._pvs, self._vs, strict=True):
                    if okey > cutoff:
                        break
                    spv, cpv = _add(spv, cpv, -opv)
                    sv, cv = _add(sv, cv, -ov)
                    if ov > 0.0:
                        npos -= 1
            if npos == 0:
                spv = cpv = sv = cv = 0.0
            self._peeked = (cutoff, spv, cpv, sv, cv, npos)
        if key > cutoff:
            spv, cpv = _add(spv, cpv, pv)
            sv, cv = _add(sv, cv, v)
            if v > 0.0:
                npos += 1
        return _ratio(spv + cpv, sv + cv) if npos else None

    def to_state(self) -> tuple:
        return (
            tuple(self._keys),
            tuple(self._pvs),
            tuple(self._vs),
            self._spv,
            self._cpv,
            self._sv,
            self._cv,
            self._npos,
        )

    @classmethod
    def from_state(cls, state: tuple) -> RollingVwap:
        keys, pvs, vs, spv, cpv, sv, cv, npos = state
        if not len(keys) == len(pvs) == len(vs):
            raise ValueError("rolling VWAP state columns differ in length")
        window = cls()
        window._keys, window._pvs, window._vs = deque(keys), deque(pvs), deque(vs)
        window._spv, window._cpv, window._sv, window._cv, window._npos = spv, cpv, sv, cv, npos
        return window


def _welford(n: int, mean: float, m2: float, x: float) -> tuple[int, float, float]:
    n += 1
    d = x - mean
    mean += d / n
    return n, mean, m2 + d * (x - mean)


def _sample_sd(na: int, ma: float, m2a: float, nb: int, mb: float, m2b: float) -> float | None:
    """Sample sd (ddof=1) of two merged Welford aggregates (Chan et al.)."""
    n = na + nb
    if n < 2:
        return None
    if na == 0:
        m2 = m2b
    elif nb == 0:
        m2 = m2a
    else:
        d = mb - ma
        m2 = m2a + m2b + d * d * na * nb / n
    return math.sqrt(m2 / (n - 1)) if m2 > 0.0 else 0.0


class RollingVolatility:
    """Sample standard deviation (ddof=1) of the values keyed in (now - length, now].

    Two-stack sliding window of Welford aggregates: the front stack holds, per item,
    the aggregate of itself and every newer front item; the back stack holds one
    running aggregate. Nothing is ever subtracted, so no outlier leaves a residue,
    and each item is aggregated at most twice (O(1) amortized).
    """

    __slots__ = ("_bk", "_bm2", "_bmean", "_bn", "_bv", "_fk", "_fm2", "_fmean")

    def __init__(self) -> None:
        # front: oldest item last; its aggregate count is its index + 1
        self._fk: list[int] = []
        self._fmean: list[float] = []
        self._fm2: list[float] = []
        # back: oldest item first, aggregated in push order
        self._bk: list[int] = []
        self._bv: list[float] = []
        self._bn = 0
        self._bmean = 0.0
        self._bm2 = 0.0

    def commit(self, cutoff: int, key: int, x: float | None) -> float | None:
        """Drop items keyed <= cutoff, add (key, x) unless x is None, return the sd."""
        fk, fmean, fm2 = self._fk, self._fmean, self._fm2
        for attempt in (0, 1):
            while fk and fk[-1] <= cutoff:
                fk.pop()
                fmean.pop()
                fm2.pop()
            if fk or attempt or not self._bk or self._bk[0] > cutoff:
                break
            self._flip()  # the front ran out and the back holds items to drop
        bn, bmean, bm2 = self._bn, self._bmean, self._bm2
        if x is not None and key > cutoff:
            self._bk.append(key)
            self._bv.append(x)
            bn, bmean, bm2 = _welford(bn, bmean, bm2, x)
            self._bn, self._bmean, self._bm2 = bn, bmean, bm2
        if fk:
            return _sample_sd(len(fk), fmean[-1], fm2[-1], bn, bmean, bm2)
        return _sample_sd(0, 0.0, 0.0, bn, bmean, bm2)

    def peek(self, cutoff: int, key: int, x: float | None) -> float | None:
        """What `commit` would return, without changing anything."""
        add = x is not None and key > cutoff
        fk, bk = self._fk, self._bk
        newest = bk[-1] if bk else (fk[0] if fk else None)
        if newest is not None and newest <= cutoff:  # everything leaves
            return None  # at most the new item is left: fewer than 2 values
        top = len(fk) - 1
        while top >= 0 and fk[top] <= cutoff:
            top -= 1
        drop = bisect_right(bk, cutoff) if top < 0 else 0
        if drop == 0:
            bn, bmean, bm2 = self._bn, self._bmean, self._bm2
            if add:
                bn, bmean, bm2 = _welford(bn, bmean, bm2, x)  # type: ignore[arg-type]
            if top >= 0:
                return _sample_sd(top + 1, self._fmean[top], self._fm2[top], bn, bmean, bm2)
            return _sample_sd(0, 0.0, 0.0, bn, bmean, bm2)
        # commit would flip the back stack into the front and pop `drop` items:
        # rebuild the surviving front top's aggregate in the same (newest-first) order
        n, mean, m2 = 0, 0.0, 0.0
        bv = self._bv
        for j in range(len(bv) - 1, drop - 1, -1):
            n, mean, m2 = _welford(n, mean, m2, bv[j])
        bn, bmean, bm2 = 0, 0.0, 0.0
        if add:
            bn, bmean, bm2 = _welford(0, 0.0, 0.0, x)  # type: ignore[arg-type]
        return _sample_sd(n, mean, m2, bn, bmean, bm2)

    def _flip(self) -> None:
        fk, fmean, fm2 = self._fk, self._fmean, self._fm2
        bk, bv = self._bk, self._bv
        n, mean, m2 = 0, 0.0, 0.0
        for j in range(len(bv) - 1, -1, -1):
            n, mean, m2 = _welford(n, mean, m2, bv[j])
            fk.append(bk[j])
            fmean.append(mean)
            fm2.append(m2)
        bk.clear()
        bv.clear()
        self._bn, self._bmean, self._bm2 = 0, 0.0, 0.0

    def to_state(self) -> tuple:
        return (
            tuple(self._fk),
            tuple(self._fmean),
            tuple(self._fm2),
            tuple(self._bk),
            tuple(self._bv),
            self._bn,
            self._bmean,
            self._bm2,
        )

    @classmethod
    def from_state(cls, state: tuple) -> RollingVolatility:
        fk, fmean, fm2, bk, bv, bn, bmean, bm2 = state
        window = cls()
        window._fk, window._fmean, window._fm2 = list(fk), list(fmean), list(fm2)
        window._bk, window._bv = list(bk), list(bv)
        window._bn, window._bmean, window._bm2 = bn, bmean, bm2
        return window
