"""Benchmark: ``bp-cluster`` against ldpc's BP+OSD-CS (and optionally BP+LSD) on BB codes.

Both decoders see the same stim-sampled shots of a phenomenological-noise memory experiment
(:func:`qecd.codes.phenomenological.phenomenological_dem`) on the same check matrix and
priors (the DEM's fault table; identical columns merged). ldpc is configured as the reference
in ``docs``: ``BpOsdDecoder(H, error_channel=priors, max_iter=M, bp_method="minimum_sum",
ms_scaling_factor=0.625, osd_method="osd_cs", osd_order=7)``.

Reported per row: logical error rate (any observable wrong) with a Wilson 95% interval, the
paired disagreement counts (shots only we fail / only ldpc fails: McNemar's exact test says
whether the difference is significant), and time per shot. Time per shot is measured one shot
at a time for both (median and mean over shots, ns clock around each call: ours through the
single-shot Numba kernel, ldpc through ``decode``), plus our whole-batch time per shot
(``decode_batch_packed``, one Numba call). ldpc has no batch API; its per-call Python overhead
is part of its figure (about 1 µs of the total, negligible next to its tens of µs).

Run::

    .venv/bin/qecd bench bp-cluster-vs-ldpc --codes 72,144 --p 0.003,0.005 \\
        --shots 20000 --max-iter 5
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from qecd.codes.bivariate_bicycle import bb_code
from qecd.codes.phenomenological import phenomenological_dem
from qecd.decoder.base import pack_bits
from qecd.decoder.bp_cluster import BpClusterDecoder

#: rounds = code distance unless --rounds says otherwise
_DISTANCE = {72: 6, 90: 10, 108: 10, 144: 12, 288: 18}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    >>> [round(x, 4) for x in wilson(5, 1000)]
    [0.0021, 0.0117]
    """
    if n == 0:
        return (0.0, 1.0)
    ph = k / n
    den = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` vs ``c`` discordant pairs.

    >>> round(mcnemar_p(10, 2), 4)
    0.0386
    """
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2 * tail)


@dataclass
class Row:
    code: str
    rounds: int
    p: float
    shots: int
    fails: int
    ref_fails: int
    only_ours: int
    only_ref: int
    med_us: float
    mean_us: float
    batch_us: float
    ref_med_us: float
    ref_mean_us: float
    lsd_fails: int | None = None
    lsd_mean_us: float | None = None


def run_one(n: int, p: float, rounds: int, shots: int, max_iter: int, lsd_order: int,
            lsd_min_free: int, seed: int, with_lsd: bool) -> Row:
    from ldpc import BpLsdDecoder, BpOsdDecoder

    code = bb_code(n)
    dem = phenomenological_dem(code, rounds=rounds, p=p)
    dec = BpClusterDecoder.from_dem(dem, max_iter=max_iter, lsd_order=lsd_order,
                                    lsd_min_free=lsd_min_free)
    ft = dec.faults
    h = sp.csc_matrix((np.ones(ft.det_indices.size, np.uint8), ft.det_indices, ft.det_indptr),
                      shape=(ft.num_detectors, ft.num_faults))
    dets, obs, _ = dem.compile_sampler(seed=seed).sample(shots)
    dets = dets.astype(np.uint8)
    obs = obs.astype(np.uint8)

    # ours: batch (one Numba call), then shot by shot through the kernel for the median
    t0 = time.perf_counter()
    pred_packed = dec.decode_batch_packed(pack_bits(dets))
    batch_us = (time.perf_counter() - t0) / shots * 1e6
    pred = np.unpackbits(pred_packed, axis=1, count=ft.num_observables, bitorder="little")
    ours_fail = np.any(pred != obs, axis=1)
    kern = dec.kernel()
    graph, params, ws = dec.kernel_args()
    out = np.zeros(ft.num_faults, np.int64)
    times = np.empty(shots, np.int64)
    clock = time.perf_counter_ns
    for i in range(shots):
        s = dets[i]
        t = clock()
        kern(s, out, graph, params, ws)
        times[i] = clock() - t

    # ldpc BP+OSD-CS7, same shots
    osd = BpOsdDecoder(h, error_channel=list(ft.probabilities), max_iter=max_iter,
                       bp_method="minimum_sum", ms_scaling_factor=0.625, osd_method="osd_cs",
                       osd_order=7)
    lz = ft.obs_mask.T.astype(np.int64)
    ref_fail = np.zeros(shots, bool)
    ref_times = np.empty(shots, np.int64)
    for i in range(shots):
        s = dets[i]
        t = clock()
        e = osd.decode(s)
        ref_times[i] = clock() - t
        ref_fail[i] = np.any((lz @ e) % 2 != obs[i])
    row = Row(f"BB[[{n}]]", rounds, p, shots, int(ours_fail.sum()), int(ref_fail.sum()),
              int(np.sum(ours_fail & ~ref_fail)), int(np.sum(ref_fail & ~ours_fail)),
              float(np.median(times)) / 1e3, float(times.mean()) / 1e3, batch_us,
              float(np.median(ref_times)) / 1e3, float(ref_times.mean()) / 1e3)
    if with_lsd:
        lsd = BpLsdDecoder(h, error_channel=list(ft.probabilities), max_iter=max_iter,
                           bp_method="minimum_sum", ms_scaling_factor=0.625,
                           lsd_order=lsd_order, lsd_method="lsd_cs")
        fails = 0
        t0 = time.perf_counter()
        for i in range(shots):
            fails += int(np.any((lz @ lsd.decode(dets[i])) % 2 != obs[i]))
        row.lsd_fails = fails
        row.lsd_mean_us = (time.perf_counter() - t0) / shots * 1e6
    return row


def fmt_ler(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:.2e} [{lo:.1e}, {hi:.1e}]"


def command(args) -> int:
    """``qecd bench bp-cluster-vs-ldpc``: the flags ``qecd/cli.py`` defines, parsed."""
    rows = []
    for n in [int(x) for x in args.codes.split(",")]:
        for p in [float(x) for x in args.p.split(",")]:
            rounds = args.rounds or _DISTANCE[n]
            rows.append(run_one(n, p, rounds, args.shots, args.max_iter, args.lsd_order,
                                args.lsd_min_free, args.seed, args.ldpc_lsd))
    print(f"bp-cluster (max_iter={args.max_iter}, ms_scaling_factor=0.625, "
          f"lsd_order={args.lsd_order}, lsd_min_free={args.lsd_min_free}) vs ldpc "
          f"BpOsdDecoder osd_cs order 7 (max_iter={args.max_iter}, ms 0.625); "
          "phenomenological noise, basis z")
    head = ("| code | rounds | p | shots | LER ours [95%] | LER ldpc CS7 [95%] | only ours "
            "/ only ldpc (McNemar p) | µs/shot ours median (mean) | ours batch mean | "
            "ldpc median (mean) | ratio median (mean) |")
    if args.ldpc_lsd:
        head += " LER ldpc LSD | ldpc LSD mean µs |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = (f"| {r.code} | {r.rounds} | {r.p} | {r.shots} | {fmt_ler(r.fails, r.shots)} | "
                f"{fmt_ler(r.ref_fails, r.shots)} | {r.only_ours} / {r.only_ref} "
                f"({mcnemar_p(r.only_ours, r.only_ref):.2f}) | {r.med_us:.1f} ({r.mean_us:.1f}) "
                f"| {r.batch_us:.1f} | {r.ref_med_us:.1f} ({r.ref_mean_us:.1f}) | "
                f"{r.med_us / r.ref_med_us:.2f} ({r.mean_us / r.ref_mean_us:.2f}) |")
        if args.ldpc_lsd:
            line += f" {fmt_ler(r.lsd_fails or 0, r.shots)} | {r.lsd_mean_us:.1f} |"
        print(line)
    return 0
