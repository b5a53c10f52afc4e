"""Time and accuracy of the ``uf`` backend against PyMatching, on the same shots in one run.

For each rotated surface code memory experiment (rounds = d, uniform circuit-level
depolarizing noise p), sample shots with stim (bit-packed), decode them with
``PyMatchingDecoder.decode_batch_packed`` and ``UnionFindDecoder.decode_batch_packed`` (both
warmed up first), alternating the two ``--repeats`` times, and print per round: the median
decode time of each, their ratio, and the logical error rate of each. Benchmarks are not
tests: nothing here asserts.

Usage::

    .venv/bin/python bench/bench_union_find.py                  # d=5,7,9,11 x p=0.001,0.003
    .venv/bin/python bench/bench_union_find.py --d 7 11 --p 0.003 --shots 50000 --repeats 7

Timings on a shared machine are noisy: compare the ratio column, measured in the same run.
"""

from __future__ import annotations

import time

import numpy as np
import stim

from qecd.decoder import make_decoder
from qecd.decoder.pymatching_backend import PyMatchingDecoder
from qecd.decoder.union_find import UnionFindDecoder

PM, UF = PyMatchingDecoder.name, UnionFindDecoder.name


def surface_circuit(d: int, p: float) -> stim.Circuit:
    return stim.Circuit.generated(
        "surface_code:rotated_memory_z", distance=d, rounds=d,
        after_clifford_depolarization=p, before_round_data_depolarization=p,
        before_measure_flip_probability=p, after_reset_flip_probability=p)


def measure(d: int, p: float, shots: int, repeats: int, seed: int, options: dict) -> dict:
    c = surface_circuit(d, p)
    dem = c.detector_error_model(decompose_errors=True)
    dets, obs = c.compile_detector_sampler(seed=seed).sample(
        shots, separate_observables=True, bit_packed=True)
    decs = {PM: make_decoder(PM, dem), UF: make_decoder(UF, dem, **options)}
    times: dict[str, list[float]] = {k: [] for k in decs}
    fails = {}
    for _ in range(repeats):
        for name, dec in decs.items():
            t0 = time.perf_counter()
            pred = dec.decode_batch_packed(dets)
            times[name].append(time.perf_counter() - t0)
            fails[name] = int((pred != obs).any(axis=1).sum())
    per_round = {k: float(np.median(v)) / shots / d * 1e6 for k, v in times.items()}
    return {"d": d, "p": p, "shots": shots, "pm_us": per_round[PM],
            "uf_us": per_round[UF], "ratio": per_round[UF] / per_round[PM],
            "pm_ler": fails[PM] / shots, "uf_ler": fails[UF] / shots,
            "pm_fail": fails[PM], "uf_fail": fails[UF]}


def command(args) -> int:
    """``qecd bench uf-vs-pymatching``: the flags ``qecd/cli.py`` defines, parsed."""
    options: dict = {}
    if args.weight_resolution is not None:
        options["weight_resolution"] = args.weight_resolution
    if args.no_prematch:
        options["prematch"] = False
    print(f"# uf options: {options or 'defaults'}; shots={args.shots}, median of "
          f"{args.repeats} alternating repeats; time = decode_batch_packed per round")
    print(f"{'d':>3} {'p':>6} {'pm us/rnd':>10} {'uf us/rnd':>10} {'uf/pm':>6} "
          f"{'pm LER':>9} {'uf LER':>9} {'pm fails':>8} {'uf fails':>8}")
    for d in args.d:
        for p in args.p:
            r = measure(d, p, args.shots, args.repeats, args.seed, options)
            print(f"{d:>3} {p:>6} {r['pm_us']:>10.3f} {r['uf_us']:>10.3f} {r['ratio']:>6.2f} "
                  f"{r['pm_ler']:>9.2e} {r['uf_ler']:>9.2e} {r['pm_fail']:>8} "
                  f"{r['uf_fail']:>8}", flush=True)
    return 0
