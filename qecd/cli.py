"""The ``qecd`` command line: argparse subcommands over library calls.

Subcommands
-----------
``qecd codes [--json]``
    The code catalog: n, k, d and detectors per round.
``qecd bench accuracy --spec S --decoders a,b [--shots N] [--seed S] [--json PATH]``
    The same shots through several decoders, with intervals and ratios to the reference.
``qecd run``
    The main job on the embedded default (see :mod:`qecd.run`).
``qecd serve --bind tcp://127.0.0.1:5555 [--bind ipc:///tmp/qecd.sock] [--metrics-port N] ...``
    The decoder service (:func:`qecd.transport.server.run_server`) until SIGINT/SIGTERM.
``qecd emulate --connect ADDR --spec S | --dem FILE [--decoder D] [--shots N] ...``
    The control-system emulator (:func:`qecd.bench.emulator.run_emulation`); exits 1
    unless every correction arrived once and matched the offline decode.

Example
-------
>>> main(["codes", "--json", "--only", "surface:d=3"])  # doctest: +ELLIPSIS
[
  {
    "spec": "surface:d=3,r=3,p=0.001,noise=uniform,basis=z",
...
0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def _cmd_codes(args: argparse.Namespace) -> int:
    from qecd.codes.catalog import DEFAULT_ENTRIES, catalog

    rows = catalog(args.only or DEFAULT_ENTRIES)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<48}{'n':>5}{'k':>4}{'d':>4}  {'dets/round':>10}  {'first/final':>11}  d is")
    for r in rows:
        ff = f"{r['first_round_detectors']}/{r['final_round_detectors']}"
        print(f"{r['spec']:<48}{r['n']:>5}{r['k']:>4}{r['d'] or '?':>4}  "
              f"{r['detectors_per_round']:>10}  {ff:>11}  {r['d_note']}")
    return 0


def _cmd_bench_latency(args: argparse.Namespace) -> int:
    from qecd.bench.latency_cli import latency_main

    return latency_main(args)


def _cmd_bench_gate(args: argparse.Namespace) -> int:
    from qecd.bench.gate import gate_main

    return gate_main(args.baseline, write=args.write_baseline, shots=args.shots,
                     repeats=args.repeats, json_path=args.json)


def _cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from qecd.bench.accuracy import format_accuracy, run_accuracy

    report = run_accuracy(args.spec, [d for d in args.decoders.split(",") if d],
                          shots=args.shots, seed=args.seed, reference=args.reference)
    print(format_accuracy(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qecd.run import main_job

    return main_job(quick=args.quick)


def _cmd_serve(args: argparse.Namespace) -> int:
    from qecd.transport.auth import CurveServerKeys
    from qecd.transport.server import ServerConfig, run_server
    from qecd.transport.server.session import SessionLimits

    if (args.curve_secret_key is None) != (args.curve_allow is None):
        print("qecd serve: error: --curve-secret-key and --curve-allow go together",
              file=sys.stderr)
        return 2
    curve = None
    if args.curve_secret_key:
        curve = CurveServerKeys.from_files(args.curve_secret_key, args.curve_allow)
    limits = SessionLimits(timeout_ms=int(args.stream_timeout * 1000),
                           heartbeat_ms=max(1, int(args.stream_timeout * 1000) // 5),
                           max_backlog=args.max_backlog)
    config = ServerConfig(binds=tuple(args.bind or ["tcp://127.0.0.1:5555"]), limits=limits,
                          max_streams=args.max_streams,
                          max_streams_per_client=args.max_streams_per_client,
                          max_ring_streams_per_client=args.max_ring_streams_per_client,
                          sndhwm=args.hwm, rcvhwm=args.hwm,
                          record_capacity=args.record_capacity, curve=curve)
    return run_server(config, metrics_port=args.metrics_port, record_path=args.record,
                      cpu=args.cpu)


def _cmd_emulate(args: argparse.Namespace) -> int:
    from qecd.bench.emulator import EmulateConfig, format_report, run_emulation, write_report
    from qecd.transport.auth import CurveClientKeys

    if (args.spec is None) == (args.dem is None):
        print("qecd emulate: error: give exactly one of --spec and --dem", file=sys.stderr)
        return 2
    curve = None
    if args.curve_secret_key or args.curve_server_key:
        curve = CurveClientKeys.from_files(args.curve_secret_key, args.curve_server_key)
    report = run_emulation(EmulateConfig(
        connect=args.connect, spec=args.spec, dem_path=args.dem, time_coord=args.time_coord,
        decoder=args.decoder, window=args.window, commit=args.commit, shots=args.shots,
        streams=args.streams, cycle_us=args.cycle_us, rounds_per_packet=args.rounds_per_packet,
        seed=args.seed,
        max_inflight=args.max_inflight, rtt_samples=args.rtt_samples, timeout_s=args.timeout,
        curve=curve, cpu=args.cpu))
    print(format_report(report))
    if args.json:
        write_report(report, args.json)
    return 0 if report["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(prog="qecd", description="qecd: a real-time QEC decoder service")
    sub = p.add_subparsers(dest="command")

    c = sub.add_parser("codes", help="list the code catalog")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.add_argument("--only", action="append", help="only this spec (repeatable)")
    c.set_defaults(func=_cmd_codes)

    r = sub.add_parser("run", help="the main job on the embedded default")
    r.add_argument("--quick", action="store_true", help="a smaller run (for smoke tests)")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("serve", help="run the decoder service (ZeroMQ ROUTER)")
    v.add_argument("--bind", action="append", help="endpoint to bind (repeatable; default "
                   "tcp://127.0.0.1:5555), e.g. ipc:///tmp/qecd.sock")
    v.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on 127.0.0.1:PORT/metrics")
    v.add_argument("--curve-secret-key", default=None,
                   help="server CURVE secret key file (zmq.auth .key_secret)")
    v.add_argument("--curve-allow", default=None,
                   help="directory of allowed client public keys (.key)")
    v.add_argument("--record", default=None,
                   help="write per-round service times to this .npz at shutdown")
    v.add_argument("--record-capacity", type=int, default=1 << 20,
                   help="rounds kept raw for --record (the newest)")
    v.add_argument("--stream-timeout", type=float, default=10.0,
                   help="seconds of silence after which a stream is freed")
    v.add_argument("--max-streams", type=int, default=1024, help="open streams in all")
    v.add_argument("--max-ring-streams-per-client", type=int, default=4,
                   help="shared-memory streams one client may hold (default %(default)s)")
    v.add_argument("--max-streams-per-client", type=int, default=256,
                   help="open streams one client (routing id or CURVE key) may hold")
    v.add_argument("--max-backlog", type=int, default=1024,
                   help="rounds a stream may have queued before SERVER_BUSY")
    v.add_argument("--hwm", type=int, default=10_000, help="ZeroMQ SNDHWM/RCVHWM (messages)")
    v.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    v.set_defaults(func=_cmd_serve)

    e = sub.add_parser("emulate", help="stream sampled shots to a server and check them")
    e.add_argument("--connect", required=True, help="server endpoint, e.g. tcp://127.0.0.1:5555")
    e.add_argument("--spec", default=None, help="experiment spec, e.g. surface:d=5,p=0.003")
    e.add_argument("--dem", default=None, help="stim DEM file with detector coordinates")
    e.add_argument("--time-coord", type=int, default=-1,
                   help="with --dem: which detector coordinate is time")
    e.add_argument("--decoder", default="pymatching", help="pymatching, uf, bp-cluster, ...")
    e.add_argument("--window", type=int, default=None, help="sliding window (rounds)")
    e.add_argument("--commit", type=int, default=None, help="rounds committed per window")
    e.add_argument("--shots", type=int, default=1000)
    e.add_argument("--streams", type=int, default=1, help="concurrent streams")
    e.add_argument("--rounds-per-packet", type=int, default=1,
                   help="rounds per SYNDROME packet; paced: K rounds every K cycles "
                        "(default %(default)s)")
    e.add_argument("--cycle-us", type=float, default=None,
                   help="send one round per stream every X us (default: as fast as possible)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--max-inflight", type=int, default=None,
                   help="rounds per stream sent and not yet corrected")
    e.add_argument("--rtt-samples", type=int, default=1000,
                   help="HEARTBEAT round trips measured first")
    e.add_argument("--timeout", type=float, default=30.0, help="longest wait for a reply (s)")
    e.add_argument("--curve-secret-key", default=None, help="client CURVE secret key file")
    e.add_argument("--curve-server-key", default=None, help="server CURVE public key file")
    e.add_argument("--cpu", type=int, default=None, help="pin the emulator to this CPU")
    e.add_argument("--json", default=None, help="write the JSON report (qecd.emulate/1) here")
    e.set_defaults(func=_cmd_emulate)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command")
    from qecd.bench.latency_cli import add_latency_arguments
    from qecd.bench.sweep_cli import add_sweep_parser

    lat = bsub.add_parser("latency", help="service/reaction latency, throughput, backlog, LER")
    add_latency_arguments(lat)
    lat.set_defaults(func=_cmd_bench_latency)
    add_sweep_parser(bsub)
    g = bsub.add_parser("gate", help="CI gate on ratios measured in one run")
    g.add_argument("--baseline", default="bench/baseline/ratios.json")
    g.add_argument("--write-baseline", "--write_baseline", dest="write_baseline",
                   action="store_true", help="measure and write the baseline instead")
    g.add_argument("--shots", type=int, default=5000)
    g.add_argument("--repeats", type=int, default=7)
    g.add_argument("--json", default=None, help="write the gate report here")
    g.set_defaults(func=_cmd_bench_gate)
    a = bsub.add_parser("accuracy", help="LER and decode time of decoders on the same shots")
    a.add_argument("--spec", required=True, help="experiment spec, e.g. surface:d=5,p=0.003")
    a.add_argument("--decoders", default="pymatching,uf",
                   help="comma-separated decoder names (e.g. uf,uf-w10c5,ldpc-bposd)")
    a.add_argument("--shots", type=int, default=10_000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--reference", default=None,
                   help="reference decoder (default: pymatching, or ldpc-bposd for qLDPC)")
    a.add_argument("--json", default=None, help="write the JSON report here")
    a.set_defaults(func=_cmd_bench_accuracy)
    return p


#: Thread pools that numpy/Numba/OpenMP start at import. qecd never needs them, and on a
#: small machine their workers steal whole scheduler slices (8 ms measured here) from the
#: cores the shared-memory loops spin on: a pinned ring server preempted every ~0.5 s lost
#: its 1 µs cycle for tens of ms. Set before anything imports numpy (the CLI imports it
#: lazily); a user's explicit setting wins. Spawned service/emulator processes inherit it.
SINGLE_THREAD_POOLS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                       "NUMBA_NUM_THREADS")


def main(argv: list[str] | None = None) -> int:
    import os

    for var in SINGLE_THREAD_POOLS:
        os.environ.setdefault(var, "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    from qecd.errors import QecdError
    from qecd.extras import RESEARCH_MODULES, install_hint

    try:
        return func(args)
    except QecdError as e:
        print(f"qecd: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # a research tool reached without its extra
        if (e.name or "").split(".")[0] not in RESEARCH_MODULES:
            raise
        what = " ".join(filter(None, ("qecd", args.command, getattr(args, "bench_command", None))))
        print(f"qecd: error: {install_hint(e.name, what)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
