"""A per-key budget of events per whole second (the server's ERROR and STATS budgets).

Example
-------
>>> lim = RateLimiter(2)
>>> [lim.allow("peer", 5_000_000_000) for _ in range(3)], lim.allow("peer", 6_000_000_000)
([True, True, False], True)
>>> lim.prune(7_000_000_000), len(lim)
(1, 0)
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
        self._pruned_sec = -1

    def __len__(self) -> int:
        """Keys held (each with its current window)."""
        return len(self._win)

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

    def prune(self, now_ns: int) -> int:
        """Forget keys whose window is not the current second (their budget is whole
        again anyway), which bounds the memory by the keys seen in about two seconds. Does the
        work at most once per second, so call it as often as convenient (the server does
        from every housekeeping). Returns the number of keys forgotten.

        Examples
        --------
        >>> lim = RateLimiter(5)
        >>> _ = [lim.allow(peer, 1_200_000_000) for peer in range(3)]
        >>> lim.prune(1_900_000_000), lim.prune(2_000_000_000), len(lim)
        (0, 3, 0)
        """
        sec = now_ns // _SEC
        if sec == self._pruned_sec:
            return 0
        self._pruned_sec = sec
        old = [k for k, w in self._win.items() if w[0] != sec]
        for k in old:
            del self._win[k]
        return len(old)
