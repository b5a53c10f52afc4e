"""Statistics for honest reports: binomial intervals.

>>> lo, hi = wilson_interval(10, 1000)
>>> round(lo, 4), round(hi, 4)
(0.0054, 0.0183)
"""

from __future__ import annotations

import math


def wilson_interval(failures: int, shots: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (95% for z = 1.96); (0, 1) for no shots."""
    if shots <= 0:
        return 0.0, 1.0
    p = failures / shots
    den = 1 + z * z / shots
    mid = (p + z * z / (2 * shots)) / den
    half = z * math.sqrt(p * (1 - p) / shots + z * z / (4 * shots * shots)) / den
    return max(0.0, mid - half), min(1.0, mid + half)

