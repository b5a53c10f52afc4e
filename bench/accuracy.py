"""``qecd bench accuracy``: the same shots through several decoders, compared honestly.

Shots are sampled once (seeded) and decoded by every decoder; each gets its logical error
rate with a 95% Wilson interval, its decode time per shot and per round (construction and
warm-up excluded, reported apart), and its ratios to the reference decoder measured in the
same run: ``pymatching`` for graph-like DEMs, ldpc's BP+OSD-CS7 for qLDPC ones.

Example
-------
>>> r = run_accuracy("repetition:d=3,r=3,p=0.02", ["pymatching", "pymatching-w2c1"],
...                  shots=500, seed=1)
>>> [d["name"] for d in r["decoders"]]
['pymatching', 'pymatching-w2c1']
>>> r["decoders"][0]["time_ratio_to_reference"]
1.0
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from qecd.bench.machine import machine_info
from qecd.bench.stats import wilson_interval
from qecd.codes import build_experiment
from qecd.decoder.registry import build_decoder

SCHEMA = "qecd.bench.accuracy/1"
REFERENCE_GRAPH = "pymatching"
REFERENCE_QLDPC = "ldpc-bposd"


def _build(name: str, exp) -> tuple[Any, bool]:
    """Decoder object and whether it takes bit-packed batches."""
    if name == REFERENCE_QLDPC:
        from qecd.bench.ldpc_reference import LdpcBpOsd

        return LdpcBpOsd(exp.dem), False
    return build_decoder(name, exp.dem, exp.layout), True


def run_accuracy(spec: str, decoders: list[str], *, shots: int, seed: int = 0,
                 reference: str | None = None) -> dict:
    """Sample ``shots`` of ``spec`` once and decode them with each decoder.

    Parameters
    ----------
    spec : str
        Experiment spec string.
    decoders : list of str
        Decoder names (``uf``, ``pymatching-w10c5``, ``bp-cluster``, ``ldpc-bposd``...).
        The reference is added if missing.
    shots, seed : int
    reference : str, optional
        Defaults to pymatching for graph-like DEMs and ldpc-bposd otherwise.

    Returns
    -------
    dict
        The ``qecd.bench.accuracy/1`` report (see docs/benchmarks.md).
    """
    exp = build_experiment(spec)
    ref = reference or (REFERENCE_GRAPH if exp.graph_like else REFERENCE_QLDPC)
    names = list(dict.fromkeys([ref, *decoders]))
    dets, obs = exp.sample(shots, seed=seed)
    packed = np.packbits(dets, axis=1, bitorder="little")
    rounds = int(exp.spec["r"])
    rows = []
    for name in names:
        t0 = time.perf_counter()
        dec, takes_packed = _build(name, exp)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter_ns()
        if takes_packed:
            pred = np.unpackbits(dec.decode_batch_packed(packed), axis=1,
                                 count=exp.dem.num_observables, bitorder="little")
        else:
            pred = dec.decode_batch(dets)
        decode_ns = time.perf_counter_ns() - t0
        fails = int(np.any(pred != obs, axis=1).sum())
        lo, hi = wilson_interval(fails, shots)
        rows.append({
            "name": name,
            "failures": fails,
            "shots": shots,
            "ler": fails / shots,
            "ler_ci95": [lo, hi],
            "build_s": build_s,
            "decode_s": decode_ns / 1e9,
            "us_per_shot": decode_ns / 1e3 / shots,
            "us_per_round": decode_ns / 1e3 / shots / rounds,
        })
    base = rows[0]
    for row in rows:
        row["time_ratio_to_reference"] = row["decode_s"] / base["decode_s"]
        row["ler_ratio_to_reference"] = (
            row["failures"] / base["failures"] if base["failures"] else None
        )
    rows = [r for r in rows if r["name"] in decoders or r["name"] == ref]
    order = {n: i for i, n in enumerate(decoders)}
    rows.sort(key=lambda r: order.get(r["name"], -1))
    return {
        "schema": SCHEMA,
        "spec": str(exp.spec),
        "code": {"name": exp.name, "n": exp.n, "k": exp.k, "d": exp.d, "d_note": exp.d_note},
        "shots": shots,
        "seed": seed,
        "rounds": rounds,
        "num_detectors": exp.dem.num_detectors,
        "num_observables": exp.dem.num_observables,
        "reference": ref,
        "machine": machine_info(),
        "decoders": rows,
    }


def format_accuracy(report: dict) -> str:
    """A fixed-width table of an accuracy report."""
    head = (f"{report['spec']}  shots={report['shots']} seed={report['seed']} "
            f"reference={report['reference']}")
    lines = [head, f"{'decoder':<22}{'LER':>10}  {'95% CI':<23}{'us/shot':>10}"
             f"{'us/round':>10}{'time/ref':>10}{'LER/ref':>9}"]
    for r in report["decoders"]:
        ci = f"[{r['ler_ci95'][0]:.2e}, {r['ler_ci95'][1]:.2e}]"
        lr = "-" if r["ler_ratio_to_reference"] is None else f"{r['ler_ratio_to_reference']:.2f}"
        lines.append(f"{r['name']:<22}{r['ler']:>10.2e}  {ci:<23}{r['us_per_shot']:>10.2f}"
                     f"{r['us_per_round']:>10.3f}{r['time_ratio_to_reference']:>10.3f}{lr:>9}")
    return "\n".join(lines)
