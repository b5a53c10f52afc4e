"""``qecd bench latency`` as a library call: run, print the report and verdict, write JSON and
plots, return the exit code (the CLI's arguments are parsed in :mod:`qecd.cli`).

The JSON schema ``qecd.bench.latency/1`` is documented in docs/benchmarks.md; the report
ends with the verdict block of :mod:`qecd.bench.verdict` (also under ``verdict`` in the JSON).
Exit codes: 0 = every budget judged held, 1 = a budget not met (service time, reaction time
against budget + platform stall reference, backlog), 3 = lost, duplicated or mismatched
corrections (a correctness failure outranks a latency one).

>>> sorted(LATENCY_DEFAULTS)[:3]
['budget_us', 'commit', 'cycle_us']
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from qecd.decoder.registry import DEFAULT_STREAM_DECODER

DEFAULT_SPEC = "surface:d=5,p=0.001"
#: the run's settings and their defaults (``qecd bench latency`` shows the same in --help)
LATENCY_DEFAULTS: dict = {
    "spec": DEFAULT_SPEC, "decoder": DEFAULT_STREAM_DECODER, "transport": "shm",
    "shots": 20_000, "seed": 2026,
    "cycle_us": 0.0, "rounds_per_packet": 1, "window": None, "commit": None, "ping": 20_000,
    "pin": True, "budget_us": None, "stall_s": 1.0, "ring_slots": 4096, "json": None,
    "plot": None, "emulator": None, "serve_args": (),
}


def _jsonable(report: dict) -> dict:
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write_plots(report: dict, out_dir: str) -> list[str]:
    """The latency CCDF (with the budget) and the per-round time series."""
    from qecd.bench.plots import plot_latency_distribution, plot_time_series

    os.makedirs(out_dir, exist_ok=True)
    s = report["_series"]
    budget = (report.get("budget") or {}).get("budget_us") or 10.0
    title = f"{report['spec']}  {report['decoder']}  {report['transport']}"
    floor = None
    stalls = report.get("platform_stalls")
    if stalls and s.get("platform_gaps_ns") is not None:
        from qecd.bench.stall_meter import union_wait_ccdf

        starts, gaps = s["platform_gaps_ns"]
        x_us = np.geomspace(stalls["threshold_us"], 1e5, 200)
        floor = ("platform (measured before the run): a random instant's wait for both CPUs",
                 x_us, union_wait_ccdf(starts, gaps, stalls["seconds"] * 1e9, x_us * 1e3))
    a = plot_latency_distribution(
        {"service time / round": s["service_ns"], "reaction time": s["reaction_ns"],
         "bare transport RTT": s["rtt_ns"]}, budget,
        os.path.join(out_dir, "latency_ccdf.png"), title=title, floor=floor)
    b = plot_time_series(s["service_ns"], s["decoded"], os.path.join(out_dir, "service_series.png"),
                         budget_us=budget, title=title)
    if "deadline" not in report:
        return [a, b]
    from qecd.bench.deadline import plot_ler_vs_deadline

    c = plot_ler_vs_deadline({f"{report['spec'].split(',noise')[0]} {report['decoder']}":
                              report["deadline"]}, os.path.join(out_dir, "ler_vs_deadline.png"),
                             cycle_us=report.get("cycle_us") or None,
                             title=f"{title}, {report.get('cycle_us') or 'unpaced'} µs cycle: "
                                   "P(correction late or wrong) per shot, 95% Wilson bands")
    return [a, b, c]


def measure_latency(**settings: object):
    """Run one latency experiment (:func:`~qecd.bench.latency.run_latency`) with ``settings``
    (the keys of :data:`LATENCY_DEFAULTS`; unknown keys are refused), print the report, the
    LER(t) block and the verdict, write ``json``/``plot`` when given; returns the report
    (with its ``verdict`` as a dict) and the :class:`~qecd.bench.verdict.Verdict`."""
    from qecd.bench.latency import format_latency, run_latency
    from qecd.bench.verdict import LoadProbe, format_verdict, latency_verdict

    unknown = set(settings) - set(LATENCY_DEFAULTS)
    if unknown:
        raise TypeError(f"latency_report: unknown settings {sorted(unknown)}; allowed: "
                        f"{sorted(LATENCY_DEFAULTS)}")
    s = {**LATENCY_DEFAULTS, **settings}

    def progress(msg) -> None:
        if isinstance(msg, float):
            bar = "#" * int(40 * msg)
            end = "\n" if msg >= 1 else ""
            print(f"\r[qecd bench latency] [{bar:<40}] {100 * msg:5.1f}%", end=end,
                  file=sys.stderr, flush=True)
            return
        print(f"[qecd bench latency] {msg}", file=sys.stderr, flush=True)

    progress(f"{s['spec']}: {s['shots']} shots, {s['transport']}, {s['decoder']}; "
             "starting the service and the emulator")
    probe = LoadProbe()
    json_path, plot_dir = s.pop("json"), s.pop("plot")
    r = run_latency(s.pop("spec"), **s, progress=progress)
    verdict = latency_verdict(r, probe.stop())
    r["verdict"] = verdict.as_dict()
    print(format_latency(r))
    if "deadline" in r:
        from qecd.bench.deadline import format_deadline

        print(format_deadline(r["deadline"]))
    print(format_verdict(verdict))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(_jsonable(r), f, indent=2, default=lambda o: o.tolist()
                      if isinstance(o, np.ndarray) else str(o))
        progress(f"wrote {json_path}")
    if plot_dir:
        for path in write_plots(r, plot_dir):
            progress(f"wrote {path}")
    return r, verdict


def latency_report(**settings: object) -> int:
    """:func:`measure_latency`, returning the exit code (:class:`~qecd.exit_codes.ExitCode`)."""
    return int(measure_latency(**settings)[1].exit_code)
