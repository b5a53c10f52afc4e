"""How often does this machine take a CPU away from a spinning thread, and for how long?

A latency figure at the microsecond scale is only as good as the CPU it runs on: a timer
interrupt, a kernel thread or the hypervisor descheduling the vCPU stops a busy-polling loop
for microseconds to milliseconds, and nothing the loop does can avoid it. This meter spins a
Numba loop (no interpreter, no allocation, no system call but the vDSO clock) pinned to each
CPU at once, as the latency harness's server and emulator do, and records every gap between
two consecutive clock reads longer than a threshold. The in-loop cost of a read is ~22 ns,
so any longer gap is time the CPU was not running the loop.

The figure to compare with a latency percentile is the **wait** of a uniformly random
instant until the CPU runs the loop again: ``P(wait > w)`` is the sum over stalls of
``max(0, g - w)`` divided by the time measured (the **blocked share** is that at
``w = threshold``). A round arriving at a random instant waits at least that long for a
stalled server, more once the backlog built during the stall is counted. Its path crosses
both CPUs (the emulator sends, the server decodes), so the figure over both is the wait
until *both* run again: a random instant is more than ``w`` from that when either CPU is,
which is the union of the two CPUs' stall intervals, each shortened by ``w``
(:func:`union_wait_ccdf`; stalls that overlap in time are not counted twice).

This is a reference for a latency run, measured on the same CPUs just before it, not a
bound on it: the stalls come in bursts (on the development VM an agent process takes a
2-3 ms slice about once a second), so a run of a second or two can be luckier or unluckier
than the seconds measured before it.

Example
-------
>>> r = measure_stalls([None], seconds=0.05, threshold_us=10.0)
>>> c = r["cpus"][0]
>>> c["seconds"], 0.0 <= c["blocked_share"] <= c["lost_share"] < 1.0
(0.05, True)
"""

from __future__ import annotations

import os
import threading

import numba
import numpy as np

from qecd import _jit
from qecd.transport.shm import atomics as _atomics

_jit.invalidate_if_changed(__file__, [_atomics.__file__], __name__)

from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402


@numba.njit(**_jit.CACHED)
def spin_meter(duration_ns, threshold_ns, gap_at_ns, gap_ns):
    """Spin for ``duration_ns`` reading the clock; every gap longer than ``threshold_ns``
    goes to ``gap_at_ns`` (its start, on the monotonic clock) and ``gap_ns`` (its length),
    up to their size. Returns (gaps seen, clock reads)."""
    t0 = monotonic_ns()
    last = t0
    n = 0
    reads = 0
    while last - t0 < duration_ns:
        t = monotonic_ns()
        reads += 1
        if t - last > threshold_ns:
            if n < gap_ns.shape[0]:
                gap_at_ns[n] = last
                gap_ns[n] = t - last
            n += 1
        last = t
    return n, reads


def wait_quantile_ns(gaps_ns: np.ndarray, duration_ns: float, q: float) -> float:
    """The ``q`` quantile of how long a uniformly random instant waits for the CPU to run
    the loop again, from the stalls (gaps) seen in ``duration_ns``: ``P(wait > w) =
    sum(max(0, g - w)) / duration``. Only the recorded gaps count, so a result below the
    meter's threshold means "under the threshold".

    >>> round(wait_quantile_ns(np.array([1000.0, 30_000.0]), 1e6, 0.99))  # 3.1% in stalls
    20000
    """
    g = np.sort(np.asarray(gaps_ns, dtype=np.float64))[::-1]
    target = (1.0 - q) * duration_ns
    if g.size == 0 or (g.sum() <= target):
        return 0.0
    # with the k longest gaps above w: sum(g[:k]) - k * w = target
    csum = np.cumsum(g)
    for k in range(1, g.size + 1):
        w = (csum[k - 1] - target) / k
        if k == g.size or w >= g[k]:
            return float(max(w, 0.0))
    return 0.0


def _summary(cpu, seconds, threshold_ns, gaps, n_seen, reads) -> dict:
    g = gaps.astype(np.float64)
    dur = seconds * 1e9
    return {
        "wait_p99_us": wait_quantile_ns(g, dur, 0.99) / 1e3,
        "cpu": cpu,
        "seconds": seconds,
        "threshold_us": threshold_ns / 1e3,
        "stalls": int(n_seen),
        "stalls_per_s": n_seen / seconds,
        "stalls_over_100us": int((g > 100_000).sum()),
        "stalls_over_1ms": int((g > 1_000_000).sum()),
        "max_stall_us": float(g.max()) / 1e3 if g.size else 0.0,
        "lost_share": float(g.sum()) / dur,
        "blocked_share": float((g - threshold_ns).sum()) / dur,
        "clock_reads": int(reads),
    }


def measure_stalls(cpus: list[int | None], *, seconds: float = 1.0,
                   threshold_us: float = 10.0, max_gaps: int = 200_000) -> dict:
    """Spin on every CPU of ``cpus`` at the same time (``None``: unpinned) for ``seconds``
    and summarise the gaps longer than ``threshold_us`` per CPU.

    Returns ``{"threshold_us", "seconds", "cpus": [per-CPU summary, ...]}``; per CPU:
    ``stalls`` (count), ``stalls_per_s``, ``stalls_over_100us``, ``stalls_over_1ms``,
    ``max_stall_us``, ``lost_share`` (time in stalls / time), ``blocked_share`` and
    ``wait_p99_us`` (see the module docstring); ``wait_p99_us_all_cpus`` (over the union of
    all CPUs' stalls); and ``_stalls_ns``, every stall of every CPU as (start on the
    monotonic clock, length) arrays (for plots, not for JSON)."""
    thr = int(threshold_us * 1000)
    dur = int(seconds * 1e9)
    spin_meter(1000, thr, np.zeros(1, np.int64), np.zeros(1, np.int64))  # compile/load
    results: list = [None] * len(cpus)
    barrier = threading.Barrier(len(cpus))

    errors: list = []

    def run(i: int, cpu: int | None) -> None:
        if cpu is not None:
            try:
                os.sched_setaffinity(threading.get_native_id(), {cpu})
            except OSError as e:  # e.g. no such CPU: the others must not wait for this one
                errors.append(f"cpu {cpu}: {e}")
                barrier.abort()
                return
        at = np.zeros(max_gaps, np.int64)
        gap = np.zeros(max_gaps, np.int64)
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            return
        n, reads = spin_meter(dur, thr, at, gap)
        kept = min(n, max_gaps)
        results[i] = _summary(cpu, seconds, thr, gap[:kept], n, reads)
        results[i]["_starts"], results[i]["_gaps"] = at[:kept], gap[:kept]

    threads = [threading.Thread(target=run, args=(i, c), daemon=True)
               for i, c in enumerate(cpus)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(r is None for r in results):
        raise RuntimeError(f"stall meter: a spinning thread failed (cpus {cpus}): {errors}")
    starts = np.concatenate([r.pop("_starts") for r in results])
    gaps = np.concatenate([r.pop("_gaps") for r in results])
    dur = seconds * 1e9
    return {"threshold_us": threshold_us, "seconds": seconds, "cpus": results,
            "wait_p99_us_all_cpus": union_wait_quantile_ns(starts, gaps, dur, 0.99) / 1e3,
            "_stalls_ns": (starts, gaps)}


def union_wait_ccdf(starts_ns: np.ndarray, gaps_ns: np.ndarray, duration_ns: float,
                    waits_ns) -> np.ndarray:
    """For each ``w`` in ``waits_ns``: the fraction of instants from which some CPU stays
    away longer than ``w``, i.e. the measure of the union of ``[start, start + gap - w)``
    over all stalls (of all CPUs), divided by ``duration_ns``.

    >>> s, g = np.array([0.0, 10_000.0]), np.array([30_000.0, 30_000.0])  # two overlapping
    >>> union_wait_ccdf(s, g, 1e6, np.array([0.0, 20_000.0, 40_000.0])).tolist()
    [0.04, 0.02, 0.0]
    """
    s = np.asarray(starts_ns, dtype=np.float64)
    g = np.asarray(gaps_ns, dtype=np.float64)
    order = np.argsort(s)
    s, g = s[order], g[order]
    ws = np.asarray(waits_ns, dtype=np.float64)
    out = np.zeros(ws.size)
    for k, w in enumerate(ws):
        keep = g > w
        a, b = s[keep], s[keep] + g[keep] - w
        if a.size == 0:
            continue
        reach = np.maximum.accumulate(b)  # merge: a block starts past everything before it
        new = np.ones(a.size, dtype=bool)
        new[1:] = a[1:] > reach[:-1]
        block = np.cumsum(new) - 1
        hi = np.zeros(int(block[-1]) + 1)
        np.maximum.at(hi, block, b)
        out[k] = (hi - a[new]).sum() / duration_ns
    return out


def union_wait_quantile_ns(starts_ns: np.ndarray, gaps_ns: np.ndarray, duration_ns: float,
                           q: float) -> float:
    """The ``w`` at which :func:`union_wait_ccdf` falls to ``1 - q`` (bisection to 0.1 ns);
    0 when it is below ``1 - q`` already at ``w = 0``.

    >>> s, g = np.array([0.0, 10_000.0]), np.array([30_000.0, 30_000.0])
    >>> round(union_wait_quantile_ns(s, g, 1e6, 0.99))
    25000
    """
    g = np.asarray(gaps_ns, dtype=np.float64)
    target = 1.0 - q
    if g.size == 0 or union_wait_ccdf(starts_ns, g, duration_ns, [0.0])[0] <= target:
        return 0.0
    lo, hi = 0.0, float(g.max())
    while hi - lo > 0.1:
        mid = (lo + hi) / 2
        if union_wait_ccdf(starts_ns, g, duration_ns, [mid])[0] > target:
            lo = mid
        else:
            hi = mid
    return hi


def format_stalls(r: dict) -> str:
    """One line per CPU."""
    lines = []
    for c in r["cpus"]:
        lines.append(
            f"  cpu {c['cpu'] if c['cpu'] is not None else '-'}: {c['stalls']} stalls "
            f"> {c['threshold_us']:g} us in {c['seconds']:g} s ({c['stalls_over_1ms']} > 1 ms, "
            f"max {c['max_stall_us']:.0f} us); blocked share {100 * c['blocked_share']:.2f}%, "
            f"wait p99 {c['wait_p99_us']:.1f} us")
    if len(r["cpus"]) > 1:
        lines.append(f"  both CPUs: a random instant waits p99 {r['wait_p99_us_all_cpus']:.1f} "
                     "us until both run again (a reference for the reaction-time p99)")
    return "\n".join(lines)
