"""Statistics for honest reports: binomial intervals and latency percentiles.

>>> lo, hi = wilson_interval(10, 1000)
>>> round(lo, 4), round(hi, 4)
(0.0054, 0.0183)
>>> percentiles_us([1000, 2000, 3000, 4000], (50, 100))
{'p50': 2.5, 'p100': 4.0}
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def wilson_interval(failures: int, shots: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial rate (95% for z = 1.96); (0, 1) for no shots."""
    if shots <= 0:
        return 0.0, 1.0
    p = failures / shots
    den = 1 + z * z / shots
    mid = (p + z * z / (2 * shots)) / den
    half = z * math.sqrt(p * (1 - p) / shots + z * z / (4 * shots * shots)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def percentiles_us(samples_ns: Iterable[int] | np.ndarray,
                   pcts: tuple[float, ...] = (50, 90, 99, 99.9, 100)) -> dict[str, float]:
    """Percentiles (linear interpolation) of nanosecond samples, in microseconds."""
    a = np.asarray(samples_ns, dtype=np.float64)
    if a.size == 0:
        return {f"p{q:g}": float("nan") for q in pcts}
    vals = np.percentile(a, pcts)
    return {f"p{q:g}": float(v) / 1e3 for q, v in zip(pcts, vals, strict=True)}
