"""Latency summaries in HdrHistogram form, and the budget verdict.

Timestamps are buffered as integer nanoseconds on the hot path (numpy arrays written in
place) and recorded into an HdrHistogram afterwards: recording costs ~1 µs per value in
Python, which must never land on the path being measured.

Example
-------
>>> import numpy as np
>>> s = summarize_ns(np.array([1_000, 2_000, 3_000, 50_000]))
>>> s["count"], s["p50_us"], s["max_us"]
(4, 2.0, 50.0)
>>> budget_verdict({"service": s}, budget_us=10.0, metric="service")["met"]
False
"""

from __future__ import annotations

import numpy as np

#: HdrHistogram range: 1 ns .. 60 s at 3 significant digits (0.1% resolution)
HDR_LOWEST_NS = 1
HDR_HIGHEST_NS = 60 * 10**9
HDR_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def histogram_ns(samples_ns: np.ndarray):
    """An ``hdrh.histogram.HdrHistogram`` of the samples (values clipped to its range)."""
    from hdrh.histogram import HdrHistogram

    h = HdrHistogram(HDR_LOWEST_NS, HDR_HIGHEST_NS, HDR_DIGITS)
    vals, counts = np.unique(
        np.clip(np.asarray(samples_ns, dtype=np.int64), HDR_LOWEST_NS, HDR_HIGHEST_NS),
        return_counts=True,
    )
    for v, c in zip(vals.tolist(), counts.tolist(), strict=True):
        h.record_value(v, c)
    return h


def summarize_ns(samples_ns: np.ndarray, *, include_hdr: bool = False) -> dict:
    """count, mean, p50, p90, p99, p99.9 and max in microseconds (HdrHistogram values,
    0.1% resolution); with ``include_hdr`` also the histogram, HdrHistogram-encoded (base64),
    so reports can be merged or re-plotted by standard tools."""
    a = np.asarray(samples_ns)
    if a.size == 0:
        out = {"count": 0, "mean_us": None, "max_us": None}
        out.update({f"p{q:g}_us": None for q in PERCENTILES})
        return out
    h = histogram_ns(a)
    out = {"count": int(a.size), "mean_us": float(a.mean()) / 1e3}
    for q in PERCENTILES:
        out[f"p{q:g}_us"] = h.get_value_at_percentile(q) / 1e3
    out["max_us"] = float(a.max()) / 1e3
    if include_hdr:
        out["hdr"] = h.encode().decode() if isinstance(h.encode(), bytes) else h.encode()
    return out


def budget_verdict(summaries: dict[str, dict], *, budget_us: float, metric: str = "service",
                   percentile: str = "p99") -> dict:
    """Whether ``summaries[metric][percentile]`` is under the budget, naming what missed."""
    s = summaries.get(metric) or {}
    value = s.get(f"{percentile}_us")
    met = value is not None and value < budget_us
    reason = (
        f"{metric} {percentile} = {value:.3f} us {'<' if met else '>='} budget {budget_us} us"
        if value is not None else f"{metric}: no samples"
    )
    return {"budget_us": budget_us, "metric": metric, "percentile": percentile,
            "value_us": value, "met": bool(met), "reason": reason}
