"""Statistics for honest reports: binomial intervals.

>>> lo, hi = wilson_interval(10, 1000)
>>> round(lo, 4), round(hi, 4)
(0.0054, 0.0183)
>>> r, lo, hi = paired_ratio_interval(both=50, only_a=30, only_b=10)
>>> round(r, 3), round(lo, 3), round(hi, 3)
(1.333, 1.115, 1.595)
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
    lo = 0.0 if failures <= 0 else max(0.0, mid - half)  # (rounding left ~1e-19 at 0)
    hi = 1.0 if failures >= shots else min(1.0, mid + half)
    return lo, hi


def paired_ratio_interval(both: int, only_a: int, only_b: int,
                          z: float = 1.96) -> tuple[float | None, float | None, float | None]:
    """Ratio of two failure rates measured on the same shots, with a 95% interval.

    Decoder A failed on ``both + only_a`` shots, decoder B on ``both + only_b``; the ratio
    ``R = (both + only_a) / (both + only_b)``. Its interval is the delta-method one for paired
    binomial proportions (Bonett & Price, Stat. Med. 2006, without their small-count
    adjustment): ``log R +- z sqrt((only_a + only_b) / ((both + only_a) (both + only_b)))``.
    Only the shots where the two differ widen it, so a paired interval is much tighter than
    one from two independent intervals. When a count is zero, 0.5 is added to each
    discordant count for the width (the ratio itself is unadjusted).

    Returns
    -------
    (ratio, low, high) : floats, or (None, None, None) when B never failed (R undefined);
        ``(0, 0, high)`` when A never failed.
    """
    a_fail, b_fail = both + only_a, both + only_b
    if b_fail == 0:
        return None, None, None
    ratio = a_fail / b_fail
    oa, ob = float(only_a), float(only_b)
    if oa == 0 or ob == 0:
        oa, ob = oa + 0.5, ob + 0.5
    fa, fb = both + oa, both + ob
    half = z * math.sqrt((oa + ob) / (fa * fb))
    centre = math.log(fa / fb)
    if a_fail == 0:
        return 0.0, 0.0, math.exp(centre + half)
    return ratio, math.exp(math.log(ratio) - half), math.exp(math.log(ratio) + half)
