"""``DedupCache``: remembers message keys for a time horizon, up to an entry cap."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from itertools import islice

# never returned by deque.popleft: iter(popleft, _NEVER) is an endless popping iterator
_NEVER = object()


class DedupCache:
    """Answers "seen before?" for keys inserted within ``horizon_s`` among the last
    ``max_entries`` keys. Pure: the caller passes the clock (monotonic seconds), so one
    ``now`` serves a whole frame and tests control time.

    Memory is bounded by ``max_entries``; a key older than the horizon or pushed out by
    the cap is forgotten (a re-send that late is forwarded again, counted downstream).

    Keys sit in insertion order in ``keys``/``order``; ``marks`` holds one ``[time, count]``
    per run of keys inserted at the same ``now``, so the router's per-message work is a set
    test, a set add and a deque append (``mark`` then books the frame's keys at once).
    ``keys`` and ``order`` change in place and are never replaced: the router keeps them.
    """

    __slots__ = ("horizon_s", "keys", "marks", "max_entries", "order")

    def __init__(self, max_entries: int, horizon_s: float) -> None:
        if max_entries < 1 or horizon_s <= 0:
            raise ValueError(
                f"need max_entries >= 1 and horizon_s > 0, got {max_entries}, {horizon_s}"
            )
        self.max_entries = max_entries
        self.horizon_s = horizon_s
        self.keys: set[Hashable] = set()
        self.order: deque[Hashable] = deque()
        self.marks: deque[list[float]] = deque()  # [insert time, keys inserted then]

    def seen(self, key: Hashable, now: float) -> bool:
        """True if ``key`` is a duplicate; otherwise remember it and return False."""
        if key in self.keys:
            return True
        self.keys.add(key)
        self.order.append(key)
        self.mark(now, 1)
        return False

    def mark(self, now: float, added: int) -> None:
        """Book ``added`` keys just appended to ``order`` at time ``now``; enforce bounds."""
        if added:
            marks = self.marks
            if marks and marks[-1][0] == now:
                marks[-1][1] += added
            else:
                marks.append([now, added])
        if len(self.order) > self.max_entries or (
            self.marks and self.marks[0][0] <= now - self.horizon_s
        ):
            self.expire(now)

    def expire(self, now: float) -> None:
        # forgetting n keys pops n from the left of ``order`` and drops them from ``keys``
        # in one C-level pass (islice of a popping iterator), not a Python loop per key:
        # at the entry cap this runs for every frame, once per message it forwards
        order, marks = self.order, self.marks
        cutoff = now - self.horizon_s
        forget = self.keys.difference_update
        popping = iter(order.popleft, _NEVER)
        while marks and marks[0][0] <= cutoff:
            forget(islice(popping, int(marks.popleft()[1])))
        excess = len(order) - self.max_entries
        while excess > 0:
            head = marks[0]
            n = min(excess, int(head[1]))
            forget(islice(popping, n))
            excess -= n
            head[1] -= n
            if not head[1]:
                marks.popleft()

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.keys
