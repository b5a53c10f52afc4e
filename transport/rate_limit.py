"""A per-key budget of events per whole second (the server's ERROR and STATS budgets).

Example
-------
>>> lim = RateLimiter(2)
>>> [lim.allow("peer", 5_000_000_000) for _ in range(3)], lim.allow("peer", 6_000_000_000)
([True, True, False], True)
"""

from __future__ import annotations

__all__ = ["RateLimiter"]

_SEC = 1_000_000_000


class RateLimiter:
    """At most ``rate`` events per key in each whole second (of a ns clock).

    Parameters
    ----------
    rate : int
        Events allowed per key per second; 0 allows none.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._win: dict[object, list[int]] = {}

    def allow(self, key: object, now_ns: int) -> bool:
        """Count one event for ``key`` at ``now_ns``; False when its second's budget is spent."""
        sec = now_ns // _SEC
        w = self._win.get(key)
        if w is None or w[0] != sec:
            self._win[key] = [sec, 1]
            return self.rate > 0
        if w[1] >= self.rate:
            return False
        w[1] += 1
        return True

    def prune(self, now_ns: int) -> None:
        """Forget keys whose window is not the current second (bounds the memory)."""
        sec = now_ns // _SEC
        for k in [k for k, w in self._win.items() if w[0] != sec]:
            del self._win[k]
