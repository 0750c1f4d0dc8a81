"""``DedupCache``: remembers message keys for a time horizon, up to an entry cap."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable


class DedupCache:
    """Answers "seen before?" for keys inserted within ``horizon_s`` among the last
    ``max_entries`` keys. Pure: the caller passes the clock (monotonic seconds), so one
    ``now`` serves a whole frame and tests control time.

    Memory is bounded by ``max_entries``; a key older than the horizon or pushed out by
    the cap is forgotten (a re-send that late is forwarded again, counted downstream).
    """

    __slots__ = ("_keys", "_order", "horizon_s", "max_entries")

    def __init__(self, max_entries: int, horizon_s: float) -> None:
        if max_entries < 1 or horizon_s <= 0:
            raise ValueError(
                f"need max_entries >= 1 and horizon_s > 0, got {max_entries}, {horizon_s}"
            )
        self.max_entries = max_entries
        self.horizon_s = horizon_s
        self._keys: set[Hashable] = set()
        self._order: deque[tuple[float, Hashable]] = deque()

    def seen(self, key: Hashable, now: float) -> bool:
        """True if ``key`` is a duplicate; otherwise remember it and return False."""
        if key in self._keys:
            return True
        self._keys.add(key)
        self._order.append((now, key))
        if len(self._order) > self.max_entries or self._order[0][0] <= now - self.horizon_s:
            self.expire(now)
        return False

    def expire(self, now: float) -> None:
        order, keys = self._order, self._keys
        cutoff = now - self.horizon_s
        while order and (len(order) > self.max_entries or order[0][0] <= cutoff):
            keys.discard(order.popleft()[1])

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys
