"""Deadline-aware logical error rates: LER(t) = P(a shot's correction is late or wrong).

For real-time decoding a correction that arrives after the deadline ``t`` is as useless as a
wrong one, so the figure of merit is ``LER(t) = P(latency > t or logical error)`` (as GPU
real-time decoders now report). The latency of a shot is the **streaming tail latency**:
from the send of the shot's final round (its scheduled time when the stream is paced, so
queueing behind a backlog counts) to the receipt of the last of the shot's corrections. A
shot whose corrections did not all arrive is late at every deadline.

:func:`shot_latencies` derives per-shot latencies from the per-correction records of
``qecd bench latency``; :func:`ler_vs_deadline` gives LER(t) with Wilson intervals over a
range of deadlines; :func:`plot_ler_vs_deadline` draws one or more runs.

Example
-------
>>> import numpy as np
>>> lat = np.array([5_000, 8_000, 20_000, 3_000])        # ns, per shot
>>> failed = np.array([False, True, False, False])        # logical errors
>>> rows = ler_vs_deadline(lat, failed, [4, 10, 50])      # deadlines in µs
>>> [(r["t_us"], r["late"], r["late_or_wrong"]) for r in rows]
[(4.0, 3, 3), (10.0, 1, 2), (50.0, 0, 1)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from qecd.bench.stats import wilson_interval

DEFINITION = ("LER(t) = P(streaming tail latency > t or logical error); the latency of a shot "
              "runs from the send of its final round (scheduled time when paced) to the receipt "
              "of its last correction; a shot missing a correction is late at every t")


def _percentiles_us(ns: np.ndarray, pcts: tuple[float, ...]) -> dict[str, float]:
    """``{"p50": µs, ...}`` (linear interpolation; NaN when there are no samples)."""
    if ns.size == 0:
        return {f"p{q:g}": float("nan") for q in pcts}
    return {f"p{q:g}": float(v) / 1e3 for q, v in zip(pcts, np.percentile(ns, pcts),
                                                      strict=True)}


def shot_latencies(corr_round: np.ndarray, corr_ts_ns: np.ndarray, corr_recv_ns: np.ndarray,
                   *, rounds_per_shot: int, shots: int, first_round: int = 0) -> np.ndarray:
    """Streaming tail latency of each shot from per-correction records.

    Parameters
    ----------
    corr_round : numpy.ndarray
        int, per correction: the absolute round index (from the stream's start) of the round
        that triggered it.
    corr_ts_ns : numpy.ndarray
        int64, per correction: send time (ns) of that round.
    corr_recv_ns : numpy.ndarray
        int64, per correction: receipt time (ns).
    rounds_per_shot : int
    shots : int
        Shots measured.
    first_round : int
        Absolute index of the first measured round (rounds before it, e.g. warm-up, ignored).

    Returns
    -------
    numpy.ndarray
        float64 (shots,): ns from the send of the shot's final round to its last correction's
        receipt; ``inf`` for a shot whose final round triggered no correction that arrived.

    Examples
    --------
    Shot 1's window over rounds 2-3 answers after its final round's correction:

    >>> shot_latencies(np.array([1, 2, 3]), np.array([100, 300, 400]),
    ...                np.array([150, 460, 420]), rounds_per_shot=2, shots=3).tolist()
    [50.0, 60.0, inf]
    """
    R = int(rounds_per_shot)
    if R < 1 or shots < 0:
        raise ValueError(f"rounds_per_shot/shots: expected >= 1 / >= 0, got {R} / {shots}")
    r = np.asarray(corr_round, dtype=np.int64) - int(first_round)
    ts = np.asarray(corr_ts_ns, dtype=np.int64)
    recv = np.asarray(corr_recv_ns, dtype=np.int64)
    if not (r.shape == ts.shape == recv.shape):
        raise ValueError(f"corr_round/corr_ts_ns/corr_recv_ns: expected equal shapes, got "
                         f"{r.shape}, {ts.shape}, {recv.shape}")
    keep = (r >= 0) & (r < shots * R)
    r, ts, recv = r[keep], ts[keep], recv[keep]
    shot = r // R
    last_recv = np.full(shots, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last_recv, shot, recv)
    final = (r % R) == R - 1
    final_ts = np.full(shots, -1, dtype=np.int64)
    final_ts[shot[final]] = ts[final]
    out = np.full(shots, np.inf)
    ok = final_ts >= 0
    out[ok] = (last_recv[ok] - final_ts[ok]).astype(np.float64)
    return out


def default_deadlines_us(latency_ns: np.ndarray, cycle_us: float = 0.0, n: int = 40
                         ) -> np.ndarray:
    """Deadlines from just under the fastest shot to past the slowest (log-spaced, µs), with
    the round-number deadlines 1, 2, 5, 10, ... µs in that range and one ``cycle_us``.

    >>> default_deadlines_us(np.array([2_000.0, 30_000.0]), n=3).round(2).tolist()
    [1.8, 2.0, 5.0, 7.35, 10.0, 20.0, 30.0]
    """
    finite = np.asarray(latency_ns, dtype=np.float64)
    finite = finite[np.isfinite(finite)] / 1e3
    if finite.size == 0:
        return np.array([1.0, 10.0, 100.0, 1000.0])
    lo, hi = max(1e-3, finite.min() * 0.9), finite.max()
    grid = np.geomspace(lo, max(hi, lo * 1.01), n)
    nice = np.array([m * 10.0**e for e in range(-1, 7) for m in (1, 2, 5)])
    extra = [x for x in nice if lo <= x <= hi] + ([cycle_us] if cycle_us > 0 else [])
    t = np.unique(np.round(np.concatenate([grid, extra]), 6))
    t[-1] = max(t[-1], math.ceil(hi * 1e6) / 1e6)  # the last deadline lets every arrival in
    return t


def ler_vs_deadline(latency_ns: np.ndarray, failed: np.ndarray,
                    deadlines_us: Sequence[float] | np.ndarray) -> list[dict]:
    """LER(t) at each deadline, with 95% Wilson intervals.

    Parameters
    ----------
    latency_ns : numpy.ndarray
        float (shots,): per-shot latency in ns (``inf``: never arrived).
    failed : numpy.ndarray
        bool (shots,): the shot's correction was wrong (a logical error).
    deadlines_us : sequence of float

    Returns
    -------
    list of dict
        One per deadline: ``t_us``, ``shots``, ``late`` (latency > t), ``wrong`` (logical
        errors), ``late_or_wrong``, ``ler`` = late_or_wrong / shots, ``ler_ci95``.
    """
    lat = np.asarray(latency_ns, dtype=np.float64)
    bad = np.asarray(failed, dtype=bool)
    if lat.shape != bad.shape or lat.ndim != 1:
        raise ValueError(f"latency_ns/failed: expected equal 1-d shapes, got {lat.shape} / "
                         f"{bad.shape}")
    n = lat.size
    rows = []
    for t in deadlines_us:
        late = lat > float(t) * 1e3
        k = int(np.count_nonzero(late | bad))
        rows.append({"t_us": float(t), "shots": n, "late": int(np.count_nonzero(late)),
                     "wrong": int(np.count_nonzero(bad)), "late_or_wrong": k,
                     "ler": k / n if n else float("nan"),
                     "ler_ci95": list(wilson_interval(k, n))})
    return rows


def deadline_summary(latency_ns: np.ndarray, failed: np.ndarray, *, cycle_us: float = 0.0,
                     deadlines_us: Sequence[float] | None = None) -> dict:
    """The report section: definition, tail-latency percentiles, LER without a deadline and
    LER(t) over :func:`default_deadlines_us` (or the given deadlines).

    >>> s = deadline_summary(np.array([5e3, 8e3, np.inf]), np.array([False, True, False]),
    ...                      deadlines_us=[10])
    >>> s["missing"], s["ler_no_deadline"], s["rows"][0]["late_or_wrong"]
    (1, 0.3333333333333333, 2)
    """
    lat = np.asarray(latency_ns, dtype=np.float64)
    bad = np.asarray(failed, dtype=bool)
    finite = lat[np.isfinite(lat)]
    ts = deadlines_us if deadlines_us is not None else default_deadlines_us(lat, cycle_us)
    n = int(lat.size)
    return {
        "definition": DEFINITION,
        "shots": n,
        "missing": int(n - finite.size),
        "tail_latency_us": _percentiles_us(finite, (50, 90, 99, 99.9, 100)),
        "ler_no_deadline": float(bad.mean()) if n else float("nan"),
        "ler_no_deadline_ci95": list(wilson_interval(int(bad.sum()), n)),
        "rows": ler_vs_deadline(lat, bad, ts),
    }


def format_deadline(s: dict, deadlines_us: Sequence[float] | None = None) -> str:
    """A short text block: the tail latency and LER(t) at round-number deadlines (1, 2, 5,
    10, ... µs within the measured range, unless ``deadlines_us`` names others).

    >>> print(format_deadline(deadline_summary(np.array([5e3, 8e3]), np.array([False, True]),
    ...                                        deadlines_us=[1])))  # doctest: +ELLIPSIS
    streaming tail latency (final round sent -> last correction received), 2 shots: p50 6.5 µs...
    """
    tl = s["tail_latency_us"]
    lines = [f"streaming tail latency (final round sent -> last correction received), "
             f"{s['shots']} shots: p50 {tl['p50']:.3g} µs, p99 {tl['p99']:.3g} µs, "
             f"p99.9 {tl['p99.9']:.3g} µs, max {tl['p100']:.3g} µs"
             + (f"; {s['missing']} shots missing a correction" if s["missing"] else ""),
             f"LER without a deadline {s['ler_no_deadline']:.2e} "
             f"[{s['ler_no_deadline_ci95'][0]:.1e}, {s['ler_no_deadline_ci95'][1]:.1e}]"]
    if deadlines_us is None:
        deadlines_us = [m * 10.0**e for e in range(-1, 7) for m in (1, 2, 5)]
    wanted = {float(t) for t in deadlines_us}
    parts = [f"t={r['t_us']:g} µs {r['ler']:.2e}" for r in s["rows"] if r["t_us"] in wanted]
    if parts:
        lines.append("LER(t) = P(late or wrong): " + ", ".join(parts))
    return "\n".join(lines)


def plot_ler_vs_deadline(curves: dict[str, dict], path: str | os.PathLike, *,
                         title: str = "", cycle_us: float | None = None) -> str:
    """LER(t) vs deadline t (log-log) for one or more :func:`deadline_summary` sections.

    Each curve is drawn with its 95% Wilson band and a dotted line at its LER without a
    deadline (the floor it approaches once every correction is on time); ``cycle_us`` adds
    a vertical line at one cycle.

    Parameters
    ----------
    curves : dict
        ``{label: deadline_summary(...)}``.
    path : str or path-like
        PNG to write.
    title : str, optional
    cycle_us : float, optional

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> s = deadline_summary(np.array([5e3, 8e3, 2e4, 3e3] * 50),
    ...                      np.array([False, True, False, False] * 50))
    >>> p = plot_ler_vs_deadline({"d=5": s}, os.path.join(tempfile.mkdtemp(), "l.png"))
    >>> os.path.getsize(p) > 5000
    True
    """
    from qecd.bench.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for i, (label, s) in enumerate(curves.items()):
        color = f"C{i % 10}"
        t = np.array([r["t_us"] for r in s["rows"]])
        y = np.array([r["ler"] for r in s["rows"]])
        lo = np.array([r["ler_ci95"][0] for r in s["rows"]])
        hi = np.array([r["ler_ci95"][1] for r in s["rows"]])
        p99 = s["tail_latency_us"].get("p99")
        ax.step(t, y, where="post", color=color,
                label=f"{label}: {s['shots']} shots, tail p99 {p99:.3g} µs")
        ax.fill_between(t, lo, hi, step="post", color=color, alpha=0.2, linewidth=0)
        ax.axhline(s["ler_no_deadline"], color=color, linestyle=":", linewidth=1,
                   label=f"{label}: LER without a deadline {s['ler_no_deadline']:.2e}")
    if cycle_us:
        ax.axvline(cycle_us, color="grey", linestyle="--", linewidth=1,
                   label=f"one cycle ({cycle_us:g} µs)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("deadline t (µs after the shot's final round was sent)")
    ax.set_ylabel("LER(t) = P(late or wrong) per shot")
    ax.set_title(title or "deadline-aware logical error rate per shot, 95% Wilson bands",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def command(a) -> int:
    """``qecd bench deadline-plot A.json B.json --out ler_t.png``: overlay the LER(t)
    sections of ``qecd bench latency --json`` reports (labelled by spec and decoder)."""
    import json

    curves, cycles = {}, set()
    for path in a.reports:
        with open(path) as f:
            r = json.load(f)
        if "deadline" not in r:
            print(f"{path}: no 'deadline' section (not a shared-memory latency report?)")
            return 2
        curves[f"{r['spec'].split(',noise')[0]} {r['decoder']}"] = r["deadline"]
        cycles.add(r.get("cycle_us") or 0)
    cycle = cycles.pop() if len(cycles) == 1 else None
    print(plot_ler_vs_deadline(curves, a.out, title=a.title, cycle_us=cycle or None))
    return 0

