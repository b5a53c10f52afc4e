"""Command-line body of ``qecd bench latency`` (arguments, progress, JSON, plots, exit code).

The JSON schema ``qecd.bench.latency/1`` is documented in docs/benchmarks.md; the report
ends with the verdict block of :mod:`qecd.bench.verdict` (also under ``verdict`` in the JSON).
Exit codes: 0 = every budget judged held, 1 = a budget not met (service time, reaction time
against budget + platform stall reference, backlog), 3 = lost, duplicated or mismatched
corrections (a correctness failure outranks a latency one).

>>> import argparse
>>> p = argparse.ArgumentParser(); add_latency_arguments(p)
>>> p.parse_args(["--budget-us", "10"]).budget_us
10.0
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

DEFAULT_SPEC = "surface:d=5,p=0.001"


def add_latency_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", default=DEFAULT_SPEC, help="experiment spec (default %(default)s)")
    p.add_argument("--decoder", default="uf",
                   help="uf (compiled into the shm loop), pymatching, bp-cluster, ... "
                        "(default %(default)s)")
    p.add_argument("--transport", default="shm", choices=["shm", "zmq"],
                   help="shm: shared-memory rings with a Numba server loop; "
                        "zmq: qecd serve over tcp loopback")
    p.add_argument("--shots", type=int, default=20_000, help="shots to stream")
    p.add_argument("--seed", type=int, default=2026, help="stim sampling seed")
    p.add_argument("--cycle-us", "--cycle_us", dest="cycle_us", type=float, default=0.0,
                   help="paced mode: one round every CYCLE_US microseconds (0 = as fast as "
                        "possible)")
    p.add_argument("--rounds-per-packet", "--rounds_per_packet", dest="rounds_per_packet",
                   type=int, default=1,
                   help="rounds per SYNDROME packet (zmq): K rounds every K cycles when paced "
                        "(default %(default)s)")
    p.add_argument("--window", type=int, default=None,
                   help="sliding window in rounds (default: the stream decoder's)")
    p.add_argument("--commit", type=int, default=None,
                   help="rounds committed per window (default: the decoder's)")
    p.add_argument("--ping", type=int, default=20_000, help="bare round trips to measure")
    p.add_argument("--no-pin", "--no_pin", dest="pin", action="store_false",
                   help="do not pin server and emulator to separate CPUs")
    p.add_argument("--budget-us", "--budget_us", dest="budget_us", type=float, default=None,
                   help="judge the p99 service and reaction times against this (the platform "
                        "stall reference is printed beside; exit 1 if not met)")
    p.add_argument("--stall-s", "--stall_s", dest="stall_s", type=float, default=1.0,
                   help="seconds of the platform's own stalls to measure on the same CPUs "
                        "before streaming (0 skips; default %(default)s)")
    p.add_argument("--ring-slots", "--ring_slots", dest="ring_slots", type=int, default=4096,
                   help="slots per shared-memory ring, a power of two (default %(default)s)")
    p.add_argument("--json", default=None, help="write the report (schema qecd.bench.latency/1)")
    p.add_argument("--plot", default=None, help="write PNGs into this directory")


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


def latency_main(args: argparse.Namespace) -> int:
    from qecd.bench.latency import format_latency, run_latency
    from qecd.bench.verdict import LoadProbe, format_verdict, latency_verdict

    def progress(msg) -> None:
        if isinstance(msg, float):
            bar = "#" * int(40 * msg)
            end = "\n" if msg >= 1 else ""
            print(f"\r[qecd bench latency] [{bar:<40}] {100 * msg:5.1f}%", end=end,
                  file=sys.stderr, flush=True)
            return
        print(f"[qecd bench latency] {msg}", file=sys.stderr, flush=True)

    progress(f"{args.spec}: {args.shots} shots, {args.transport}, {args.decoder}; "
             "starting the service and the emulator")
    probe = LoadProbe()
    r = run_latency(args.spec, decoder=args.decoder, transport=args.transport, shots=args.shots,
                    seed=args.seed, cycle_us=args.cycle_us, window=args.window,
                    commit=args.commit, ping=args.ping, pin=args.pin, budget_us=args.budget_us,
                    stall_s=args.stall_s, ring_slots=args.ring_slots,
                    rounds_per_packet=args.rounds_per_packet, progress=progress)
    verdict = latency_verdict(r, probe.stop())
    r["verdict"] = verdict.as_dict()
    print(format_latency(r))
    if "deadline" in r:
        from qecd.bench.deadline import format_deadline

        print(format_deadline(r["deadline"]))
    print(format_verdict(verdict))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(_jsonable(r), f, indent=2, default=lambda o: o.tolist()
                      if isinstance(o, np.ndarray) else str(o))
        progress(f"wrote {args.json}")
    if args.plot:
        for path in write_plots(r, args.plot):
            progress(f"wrote {path}")
    return int(verdict.exit_code)
