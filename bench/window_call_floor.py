"""Per-window decode cost of a compiled stream beside the backend's own one-call floor,
timed on the same windows in the same run.

For every window a stream decodes (the same shots, the same carry across windows), this
times, one call each, from Python with the clock around the call:

- ``engine``: :meth:`~qecd.decoder.compiled_stream.CompiledStream.decode_due`, what a
  serving loop pays per window (gather and commit in Numba; for ``pymatching`` the call to
  PyMatching in between);
- ``backend_decode``: the window backend's own ``decode(syndrome)`` on that window's
  syndrome (for ``pymatching``: ``pymatching.Matching.decode``, PyMatching's public one-shot
  call, the floor the design notes quote);
- ``binding``: for a backend decoded on the host, the bare PyMatching binding call the
  engine makes (``decode_to_edges_array`` on the detection events), the least a call to
  PyMatching from Python costs;
- ``python_stream``: the Python :class:`~qecd.decoder.window.StreamDecoder`'s
  ``decode_due`` for the same window (the path streams took before the engine).

Example
-------
>>> r = window_call_floor("repetition:d=3,r=4,p=0.05", "pymatching", shots=20)
>>> sorted(r["calls"]) == ["backend_decode", "binding", "engine", "python_stream"]
True

Run it as ``python -c "from qecd.bench.window_call_floor import *;
print(format_floor(window_call_floor('surface:d=5,p=0.001', 'pymatching', shots=5000)))"``.
"""

from __future__ import annotations

import gc
import time

import numpy as np

from qecd.codes import build_experiment
from qecd.decoder.registry import REFERENCE_GRAPH_DECODER
from qecd.decoder.window import StreamDecoder


def _stats(ns: list[int]) -> dict:
    a = np.asarray(ns, dtype=np.float64) / 1e3
    return {"n": int(a.size), "p50_us": float(np.percentile(a, 50)),
            "p99_us": float(np.percentile(a, 99)), "p999_us": float(np.percentile(a, 99.9)),
            "mean_us": float(a.mean())}


def window_call_floor(spec: str, decoder: str = REFERENCE_GRAPH_DECODER, *, shots: int = 2000,
                      seed: int = 1, window: int | None = None,
                      commit: int | None = None) -> dict:
    """Time every window of ``shots`` sampled shots four ways (module docs); returns
    ``{"spec", "decoder", "window", "commit", "windows_per_shot", "rounds_per_window",
    "calls": {name: {n, p50_us, p99_us, p999_us, mean_us}}}``."""
    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, decoder, window=window, commit=commit)
    cs = sd.compile()
    if cs is None:
        raise ValueError(f"{decoder} does not compile streams: nothing to compare")
    state, plan = cs.new_state(), cs.kernel_args()
    ctx = cs.context(state)
    order = np.concatenate(exp.layout.detectors)
    dets, _ = exp.sample(shots, seed=seed)
    trig = [(t, int(w)) for t, w in enumerate(plan.trigger) if w >= 0]
    graphs = [getattr(getattr(d, "matching", None), "_matching_graph", None)
              for d in cs.windows.decoders] if cs.decodes_on_host else []
    calls: dict[str, list[int]] = {"engine": [], "backend_decode": [], "binding": [],
                                   "python_stream": []}
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for shot in dets:
            state.shot_bits[:len(order)] = shot[order]
            sd.shot_buffer[:] = shot[order]
            for t, w in trig:
                t0 = clock()
                cs.decode_due(ctx, t)
                t1 = clock()
                n_det = int(plan.win_det_ptr[w + 1] - plan.win_det_ptr[w])
                syn = plan.window_syn[:n_det].copy()
                k = int(plan.win_tmpl[w])
                decs = cs.windows.decoders  # per template (uf: one union decoder instead)
                if k < len(decs) and decs[k].num_detectors == n_det:
                    t2 = clock()
                    decs[k].decode(syn)
                    calls["backend_decode"].append(clock() - t2)
                if k < len(graphs) and graphs[k] is not None:
                    events = np.flatnonzero(syn).astype(np.uint64)
                    t4 = clock()
                    graphs[k].decode_to_edges_array(events)
                    calls["binding"].append(clock() - t4)
                t6 = clock()
                sd.decode_due(t)
                t7 = clock()
                calls["engine"].append(t1 - t0)
                calls["python_stream"].append(t7 - t6)
    finally:
        gc.enable()
    spans = [w.commit_stop - w.start for w in cs.plan.windows]
    return {"spec": str(exp.spec), "decoder": decoder, "window": sd.window,
            "commit": sd.commit, "windows_per_shot": len(trig),
            "rounds_per_window": float(np.mean(spans)),
            "calls": {k: _stats(v) for k, v in calls.items() if v}}


def format_floor(r: dict) -> str:
    """The report as a small table, with the engine's gap to each floor."""
    lines = [f"{r['spec']}  decoder={r['decoder']} window={r['window']} commit={r['commit']}"
             f"  ({r['windows_per_shot']} windows per shot, {r['rounds_per_window']:.1f} "
             "rounds committed per window)",
             f"{'per window call':<16}{'n':>8}{'p50 µs':>10}{'p99 µs':>10}{'p99.9 µs':>10}"
             f"{'mean µs':>10}"]
    for name, s in r["calls"].items():
        lines.append(f"{name:<16}{s['n']:>8}{s['p50_us']:>10.2f}{s['p99_us']:>10.2f}"
                     f"{s['p999_us']:>10.2f}{s['mean_us']:>10.2f}")
    e = r["calls"]["engine"]
    for floor in ("backend_decode", "binding"):
        if floor in r["calls"]:
            f = r["calls"][floor]
            lines.append(f"engine - {floor}: p50 {e['p50_us'] - f['p50_us']:+.2f} µs, "
                         f"p99 {e['p99_us'] - f['p99_us']:+.2f} µs")
    return "\n".join(lines)
