"""Plots for latency reports (matplotlib, Agg backend; PNG files).

- :func:`plot_latency_distribution`: the distribution of each latency on log axes, as a
  complementary CDF (fraction of samples slower than x), with the budget as a vertical line:
  the p99 is where a curve crosses 1e-2.
- :func:`plot_time_series`: per-round service time against round number, with the rounds
  that triggered a window decode marked, so one sees where decodes land.

Example
-------
>>> import numpy as np, tempfile, os
>>> d = tempfile.mkdtemp()
>>> p = plot_latency_distribution({"service": np.array([900, 1200, 5000])}, 10.0,
...                               os.path.join(d, "lat.png"))
>>> os.path.getsize(p) > 1000
True
"""

from __future__ import annotations

import numpy as np


def pyplot():
    """matplotlib's pyplot on the headless Agg backend (no display needed), for every plot
    qecd writes.

    >>> pyplot().get_backend().lower()
    'agg'
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path: str, title: str, legend_loc: str) -> str:
    """Title, legend, grid; write the PNG and free the figure."""
    ax.set_title(title)
    ax.legend(fontsize=8, loc=legend_loc)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency_distribution(samples_ns: dict[str, np.ndarray], budget_us: float | None,
                              path: str, title: str = "",
                              floor: tuple[str, np.ndarray, np.ndarray] | None = None) -> str:
    """CCDF of each named latency (µs, log-log) with the budget line; ``floor`` adds a dashed
    reference curve ``(label, x_us, fraction above x)``. Returns ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if floor is not None:
        label, x, y = floor
        keep = y > 0
        ax.plot(np.asarray(x)[keep], np.asarray(y)[keep], color="black", linestyle=":",
                label=label)
    for name, s in samples_ns.items():
        a = np.sort(np.asarray(s, dtype=np.float64)) / 1e3
        if a.size == 0:
            continue
        ccdf = 1.0 - np.arange(a.size) / a.size
        p99 = np.percentile(a, 99)
        ax.step(a, ccdf, where="post", label=f"{name} (n={a.size}, p99={p99:.2f} µs)")
    if budget_us:
        ax.axvline(budget_us, color="red", linestyle="--", label=f"budget {budget_us:g} µs")
    ax.axhline(1e-2, color="grey", linewidth=0.5)
    ax.text(ax.get_xlim()[0] if ax.has_data() else 1, 1.1e-2, "p99", color="grey", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency (µs)")
    ax.set_ylabel("fraction of samples slower")
    return _finish(plt, fig, ax, path, title or "latency distribution", "lower left")


def plot_time_series(service_ns: np.ndarray, decoded: np.ndarray, path: str,
                     budget_us: float | None = None, max_points: int = 3000,
                     title: str = "") -> str:
    """Service time per round (µs, log y) for the first ``max_points`` rounds; rounds that
    triggered a window decode are drawn in a second colour."""
    plt = pyplot()
    s = np.asarray(service_ns[:max_points], dtype=np.float64) / 1e3
    d = np.asarray(decoded[:max_points], dtype=bool)
    x = np.arange(s.size)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(x[~d], s[~d], ".", markersize=2, label="round appended only")
    ax.plot(x[d], s[d], ".", markersize=4, color="C3", label="round triggered a decode")
    if budget_us:
        ax.axhline(budget_us, color="red", linestyle="--", label=f"budget {budget_us:g} µs")
    ax.set_yscale("log")
    ax.set_xlabel("round (arrival order)")
    ax.set_ylabel("service time (µs)")
    shown = (f"the first {s.size:,} of {len(service_ns):,} rounds" if s.size < len(service_ns)
             else f"all {s.size:,} rounds")
    return _finish(plt, fig, ax, path, f"{title or 'per-round service time'}: {shown} reported",
                   "upper right")
