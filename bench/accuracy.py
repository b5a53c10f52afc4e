"""``qecd bench accuracy``: the same shots through several decoders, compared honestly.

Shots are sampled once (seeded) and decoded by every decoder; each gets its logical error
rate with a 95% Wilson interval, its decode time per shot and per round (construction and
warm-up excluded, reported apart), and its ratios to the reference decoder measured in the
same run: ``pymatching`` for graph-like DEMs, ldpc's BP+OSD-CS7 for qLDPC ones. The LER
ratio is paired (the same shots): its 95% interval comes from the shots where exactly one of
the two failed (:func:`qecd.bench.stats.paired_ratio_interval`).

Besides the registered backends (``uf``, ``bp-cluster``, ``pymatching-corr``, ``relay-bp``,
any with ``-w<W>c<C>``), the peers ``ldpc-bposd`` (BP+OSD-CS7) and ``ldpc-bplsd``
(BP+LSD-CS7) are accepted (:mod:`qecd.bench.ldpc_reference`).

Example
-------
>>> r = run_accuracy("repetition:d=3,r=3,p=0.02", ["pymatching", "pymatching-w2c1"],
...                  shots=500, seed=1)
>>> [d["name"] for d in r["decoders"]]
['pymatching', 'pymatching-w2c1']
>>> r["decoders"][0]["time_ratio_to_reference"]
1.0
>>> r["decoders"][1]["ler_ratio_ci95"] is not None
True
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from qecd.bench.machine import machine_info
from qecd.bench.stats import paired_ratio_interval, wilson_interval
from qecd.codes import build_experiment
from qecd.codes.external import ExternalExperiment
from qecd.decoder.registry import REFERENCE_GRAPH_DECODER, build_decoder, parse_decoder_name
from qecd.decoder.relay_bp_backend import RelayBpDecoder
from qecd.errors import DecoderError, QecdError

SCHEMA = "qecd.bench.accuracy/1"
REFERENCE_GRAPH = REFERENCE_GRAPH_DECODER
REFERENCE_QLDPC = "ldpc-bposd"
#: peers that are not qecd backends: name -> class in qecd.bench.ldpc_reference
PEERS = {"ldpc-bposd": "LdpcBpOsd", "ldpc-bplsd": "LdpcBpLsd"}
#: the reference decoders a qecd decoder is set against ("best peer" = fewest failures)
REFERENCE_PEERS = (REFERENCE_GRAPH, *PEERS, RelayBpDecoder.name)


def _check_name(name: str) -> None:
    """DecoderError unless ``name`` is a peer or a (windowed) backend name; the message
    lists both kinds."""
    if name in PEERS:
        return
    try:
        parse_decoder_name(name)
    except DecoderError as e:
        raise DecoderError(f"{e} (or a peer: {', '.join(PEERS)})") from None


def _build(name: str, exp) -> tuple[Any, bool]:
    """Decoder object and whether it takes bit-packed batches; a decoder that refuses the
    experiment's DEM says which decoder it was."""
    try:
        if name in PEERS:
            from qecd.bench import ldpc_reference

            return getattr(ldpc_reference, PEERS[name])(exp.dem), False
        return build_decoder(name, exp.dem, exp.layout), True
    except QecdError as e:
        raise type(e)(f"decoder {name!r} on {exp.spec}: {e}") from None


def window_note(name: str, rounds: int) -> str | None:
    """A note when ``name``'s window covers the whole shot (it then decodes whole shots: the
    same corrections as the backend alone, at the window machinery's cost), else None.

    >>> window_note("uf-w10c5", 6)
    "uf-w10c5: window 10 >= the shot's 6 detector rounds: it decodes whole shots"
    >>> window_note("uf-w4c2", 6) is None
    True
    """
    if name in PEERS:
        return None
    dn = parse_decoder_name(name)
    if dn.window is None or dn.window < rounds:
        return None
    return (f"{name}: window {dn.window} >= the shot's {rounds} detector rounds: it decodes "
            f"whole shots")


def _decode(dec: Any, takes_packed: bool, dets: np.ndarray, packed: np.ndarray,
            num_observables: int) -> tuple[np.ndarray, int, int]:
    """Predictions, wall ns and CPU ns of the calling thread (every decoder here decodes in
    the calling thread: the Numba kernels, ldpc's C++, relay-bp's Rust with parallel=False)."""
    c0 = time.thread_time_ns()
    t0 = time.perf_counter_ns()
    if takes_packed:
        pred = np.unpackbits(dec.decode_batch_packed(packed), axis=1, count=num_observables,
                             bitorder="little")
    else:
        pred = dec.decode_batch(dets)
    return pred, time.perf_counter_ns() - t0, time.thread_time_ns() - c0


def run_accuracy(spec: str | ExternalExperiment, decoders: list[str], *, shots: int,
                 seed: int = 0, reference: str | None = None, time_repeats: int = 1) -> dict:
    """Sample ``shots`` of ``spec`` once and decode them with each decoder.

    Parameters
    ----------
    spec : str or ExternalExperiment
        Experiment spec string, or a researcher's own stim circuit
        (:func:`qecd.codes.external.circuit_file_experiment`; the report's ``spec`` is then
        its label and ``circuit`` its source, ``rounds`` its detector time slices minus one
        unless given).
    decoders : list of str
        Decoder names (``uf``, ``pymatching-w10c5``, ``bp-cluster``, ``ldpc-bposd``...).
        The reference is added if missing.
    shots, seed : int
    reference : str, optional
        Defaults to pymatching for graph-like DEMs and ldpc-bposd otherwise.
    time_repeats : int
        Decode time is the least of this many passes over the same shots, the decoders taking
        turns (pass 1 is the accuracy pass); more than 1 keeps a load spike on a shared
        machine from landing on one decoder only. ``decode_s_passes`` lists every pass (wall
        time), ``cpu_s_passes`` the decoding thread's CPU time of each (``cpu_s``,
        ``cpu_us_per_shot``, ``cpu_us_per_round``: the least of them), which waiting for a CPU
        on a loaded machine does not inflate.

    Returns
    -------
    dict
        The ``qecd.bench.accuracy/1`` report (see docs/benchmarks.md); each decoder's
        ``failed_shots`` lists the indices of its failed shots (the same seed and count
        sample the same shots again, to look at them).
    """
    exp = spec if isinstance(spec, ExternalExperiment) else build_experiment(spec)
    ref = reference or (REFERENCE_GRAPH if exp.graph_like else REFERENCE_QLDPC)
    names = list(dict.fromkeys([ref, *decoders]))
    for name in names:
        _check_name(name)
    dets, obs = exp.sample(shots, seed=seed)
    packed = np.packbits(dets, axis=1, bitorder="little")
    rounds = exp.rounds if isinstance(exp, ExternalExperiment) else int(exp.spec["r"])
    if isinstance(time_repeats, bool) or not isinstance(time_repeats, int) or time_repeats < 1:
        raise ValueError(f"time_repeats: expected an integer >= 1, got {time_repeats!r}")
    rows = []
    fails_of: dict[str, np.ndarray] = {}
    built: dict[str, tuple[Any, bool]] = {}
    for name in names:
        t0 = time.perf_counter()
        dec, takes_packed = _build(name, exp)
        build_s = time.perf_counter() - t0
        built[name] = (dec, takes_packed)
        pred, decode_ns, cpu_ns = _decode(dec, takes_packed, dets, packed,
                                          exp.dem.num_observables)
        failed = np.any(pred != obs, axis=1)
        fails_of[name] = failed
        fails = int(failed.sum())
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
            "decode_s_passes": [decode_ns / 1e9],
            "cpu_s_passes": [cpu_ns / 1e9],
            "failed_shots": np.flatnonzero(failed).tolist(),
            "window_note": (window_note(name, exp.layout.num_rounds)
                            if exp.layout is not None else None),
        })
    for _ in range(time_repeats - 1):
        for row in rows:
            dec, takes_packed = built[row["name"]]
            _, ns, cpu_ns = _decode(dec, takes_packed, dets, packed, exp.dem.num_observables)
            row["decode_s_passes"].append(ns / 1e9)
            row["cpu_s_passes"].append(cpu_ns / 1e9)
    for row in rows:
        best = min(row["decode_s_passes"])
        row["decode_s"] = best
        row["us_per_shot"] = best * 1e6 / shots
        row["us_per_round"] = best * 1e6 / shots / rounds
        cpu = min(row["cpu_s_passes"])
        row["cpu_s"] = cpu
        row["cpu_us_per_shot"] = cpu * 1e6 / shots
        row["cpu_us_per_round"] = cpu * 1e6 / shots / rounds
    base = rows[0]
    ref_failed = fails_of[ref]
    for row in rows:
        row["time_ratio_to_reference"] = row["decode_s"] / base["decode_s"]
        row["cpu_ratio_to_reference"] = row["cpu_s"] / max(base["cpu_s"], 1e-12)
        mine = fails_of[row["name"]]
        both = int((mine & ref_failed).sum())
        only_me = int((mine & ~ref_failed).sum())
        only_ref = int((~mine & ref_failed).sum())
        ratio, lo, hi = paired_ratio_interval(both, only_me, only_ref)
        row["failed_with_reference"] = both
        row["failed_alone"] = only_me
        row["reference_failed_alone"] = only_ref
        row["ler_ratio_to_reference"] = ratio
        row["ler_ratio_ci95"] = None if ratio is None else [lo, hi]
        if row["name"] == ref:
            row["ler_ratio_ci95"] = None if ratio is None else [1.0, 1.0]
    # each qecd decoder against the strongest peer in the run (fewest failures on these shots)
    peers = [r for r in rows if r["name"] in REFERENCE_PEERS]
    best = min(peers, key=lambda r: r["failures"]) if peers else None
    for row in rows:
        if best is None or row["name"] in REFERENCE_PEERS:
            row.update(best_peer=None, ler_ratio_to_best_peer=None,
                       ler_ratio_best_peer_ci95=None, time_ratio_to_best_peer=None,
                       cpu_ratio_to_best_peer=None)
            continue
        mine, theirs = fails_of[row["name"]], fails_of[best["name"]]
        ratio, lo, hi = paired_ratio_interval(int((mine & theirs).sum()),
                                              int((mine & ~theirs).sum()),
                                              int((~mine & theirs).sum()))
        row["best_peer"] = best["name"]
        row["ler_ratio_to_best_peer"] = ratio
        row["ler_ratio_best_peer_ci95"] = None if ratio is None else [lo, hi]
        row["time_ratio_to_best_peer"] = row["decode_s"] / best["decode_s"]
        row["cpu_ratio_to_best_peer"] = row["cpu_s"] / max(best["cpu_s"], 1e-12)
    rows = [r for r in rows if r["name"] in decoders or r["name"] == ref]
    order = {n: i for i, n in enumerate(decoders)}
    rows.sort(key=lambda r: order.get(r["name"], -1))
    return {
        "schema": SCHEMA,
        "spec": str(exp.spec),
        "circuit": ({"label": exp.spec, "graph_like": exp.graph_like,
                     "layout_error": exp.layout_error}
                    if isinstance(exp, ExternalExperiment) else None),
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
    if report.get("circuit"):
        c = report["circuit"]
        head += (f"\ncircuit {c['label']}: {report['num_detectors']} detectors, "
                 f"{'graph-like (decomposed)' if c['graph_like'] else 'undecomposed'} DEM, "
                 f"per-round figures over {report['rounds']} rounds"
                 + ("" if c["layout_error"] is None else
                    f"; no round layout, so no windows ({c['layout_error']})"))
    lines = [head, f"{'decoder':<22}{'fails':>7}{'LER':>10}  {'95% CI':<21}{'us/shot':>10}"
             f"{'us/round':>10}{'cpu us/sh':>10}{'time/ref':>9}{'LER/ref':>8}  "
             f"{'paired 95% CI':<14}"]
    for r in report["decoders"]:
        ci = f"[{r['ler_ci95'][0]:.1e}, {r['ler_ci95'][1]:.1e}]"
        if r["ler_ratio_to_reference"] is None:
            lr, rci = "-", "-"
        else:
            lr = f"{r['ler_ratio_to_reference']:.2f}"
            rci = f"[{r['ler_ratio_ci95'][0]:.2f}, {r['ler_ratio_ci95'][1]:.2f}]"
        lines.append(f"{r['name']:<22}{r['failures']:>7}{r['ler']:>10.2e}  {ci:<21}"
                     f"{r['us_per_shot']:>10.2f}{r['us_per_round']:>10.3f}"
                     f"{r['cpu_us_per_shot']:>10.2f}{r['time_ratio_to_reference']:>9.3f}"
                     f"{lr:>8}  {rci:<14}")
    for r in report["decoders"]:
        if r.get("window_note"):
            lines.append(f"note: {r['window_note']}")
    for r in report["decoders"]:
        if r.get("ler_ratio_to_best_peer") is not None:
            lo, hi = r["ler_ratio_best_peer_ci95"]
            lines.append(f"{r['name']} vs best peer {r['best_peer']}: LER ratio "
                         f"{r['ler_ratio_to_best_peer']:.2f} [{lo:.2f}, {hi:.2f}] (paired 95%), "
                         f"time ratio {r['time_ratio_to_best_peer']:.3f} "
                         f"(CPU {r['cpu_ratio_to_best_peer']:.3f})")
    return "\n".join(lines)
