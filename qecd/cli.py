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
    The control-system emulator (:func:`qecd.bench.emulator.run_emulation`), ending with
    the verdict block of :mod:`qecd.bench.verdict`; exits 3 unless every correction arrived
    once and matched the offline decode, 1 when a budget (``--budget-us``, backlog in paced
    mode) was not met.

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
import os
import sys
from collections.abc import Callable

from qecd.exit_codes import ExitCode


def _cmd_codes(args: argparse.Namespace) -> int:
    from qecd.codes.catalog import catalog

    rows = catalog(args.only or None)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<48}{'n':>5}{'k':>4}{'d':>4}  {'dets/round':>10}  {'first/final':>11}  "
          f"{'window':>7}  d is")
    for r in rows:
        ff = f"{r['first_round_detectors']}/{r['final_round_detectors']}"
        wc = "w{}c{}".format(*r["default_window"])
        print(f"{r['spec']:<48}{r['n']:>5}{r['k']:>4}{r['d'] or '?':>4}  "
              f"{r['detectors_per_round']:>10}  {ff:>11}  {wc:>7}  {r['d_note']}")
    return 0


def _cmd_bench_latency(args: argparse.Namespace) -> int:
    from qecd.bench.latency_report import LATENCY_DEFAULTS, latency_report

    return latency_report(**{k: getattr(args, k) for k in LATENCY_DEFAULTS})


def _cmd_bench_sweep(args: argparse.Namespace) -> int:
    from qecd.bench.sweep_command import sweep_main

    return sweep_main(args)


def _int_list(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,5,7, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return out


def _cpu_list(text: str) -> list[int]:
    """CPU numbers as ``taskset`` writes them: ``1``, ``0,2``, ``2-3``."""
    out: list[int] = []
    try:
        for part in (t.strip() for t in text.split(",")):
            if not part:
                continue
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 1 or 1,2-3, got {text!r}")
    return out


def _float_list(text: str) -> list[float]:
    try:
        out = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers like 0.001,0.003, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    return out


def _positive_int(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text.replace("_", ""))
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return v


def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``qecd bench sweep`` flags to ``parser`` and set ``func``; returns ``parser``."""
    from qecd.bench.sweep_tasks import DEFAULT_CHUNK_SHOTS
    from qecd.decoder.registry import DEFAULT_STREAM_DECODER, REFERENCE_GRAPH_DECODER

    default_decoders = f"{REFERENCE_GRAPH_DECODER},{DEFAULT_STREAM_DECODER}"
    a = parser.add_argument
    a("--spec", required=True,
      help="base experiment spec; d and p are replaced, e.g. surface:d=3,p=0.001")
    a("--distances", type=_int_list, default=[3, 5, 7], help="comma-separated (default 3,5,7)")
    a("--ps", type=_float_list, default=[0.001, 0.003, 0.005],
      help="comma-separated physical error rates (default 0.001,0.003,0.005)")
    a("--decoders", default=default_decoders,
      help=f"comma-separated decoder names (default {default_decoders}); the reference "
           "always runs")
    a("--max_shots", "--max-shots", "--shots", dest="max_shots", type=_positive_int,
      default=10_000, help="shots per task at most (default 10000)")
    a("--max_errors", "--max-errors", type=_positive_int, default=None,
      help="stop a task once it has this many failures")
    a("--seed", type=_seed, default=0, help="sweep seed >= 0 (default 0)")
    a("--rounds_factor", "--rounds-factor", type=_positive_int, default=None,
      help="r = d * ROUNDS_FACTOR (default: the spec's r, or the family default r = d)")
    a("--chunk_shots", "--chunk-shots", type=_positive_int, default=DEFAULT_CHUNK_SHOTS,
      help=f"shots per chunk, the unit of work and of retry (default {DEFAULT_CHUNK_SHOTS}); "
           "part of a task's identity")
    a("--time_repeats", "--time-repeats", type=_positive_int, default=1,
      help="decode each chunk this many times and keep the fastest time (default 1)")
    a("--csv", "--save_resume_filepath", "--save-resume-filepath", dest="csv", default="-",
      help="sinter CSV; an existing file is resumed: finished work is skipped "
           "(default '-': stdout, no resume)")
    a("--json", default=None, help="write the qecd.bench.sweep/2 JSON report here")
    a("--plot", default=None, metavar="DIR",
      help="write ler_per_shot_vs_p.png, ler_per_round_vs_p.png and time_vs_distance.png "
           "into this directory")
    a("--quiet", action="store_true", help="no progress display")
    c = parser.add_argument_group("cluster (default: an embedded Dask LocalCluster)")
    c.add_argument("--workers", type=_positive_int, default=None,
                   help="LocalCluster worker processes (default: this machine's CPUs)")
    c.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="join a running Dask scheduler instead")
    c.add_argument("--slurm", action="store_true",
                   help="start Dask workers as Slurm jobs (dask-jobqueue)")
    c.add_argument("--slurm_queue", "--slurm-queue", default=None, help="partition")
    c.add_argument("--slurm_account", "--slurm-account", default=None)
    c.add_argument("--slurm_cores", "--slurm-cores", type=_positive_int, default=1,
                   help="cores per job = worker threads (default 1)")
    c.add_argument("--slurm_memory", "--slurm-memory", default="2GB",
                   help="memory per job (default 2GB)")
    c.add_argument("--slurm_walltime", "--slurm-walltime", default="01:00:00",
                   help="walltime per job (default 01:00:00)")
    c.add_argument("--slurm_jobs", "--slurm-jobs", type=_positive_int, default=1,
                   help="jobs (one worker each) to submit (default 1)")
    c.add_argument("--slurm_interface", "--slurm-interface", default=None,
                   help="network interface of scheduler and workers (e.g. ib0; lo on one host)")
    c.add_argument("--slurm_log_directory", "--slurm-log-directory", default=None)
    c.add_argument("--slurm_job_extra", "--slurm-job-extra", action="append", default=[],
                   help="extra #SBATCH directive, e.g. --qos=short (repeatable)")
    c.add_argument("--wait_timeout", "--wait-timeout", type=float, default=120.0,
                   help="seconds to wait for the first worker (default 120)")
    parser.set_defaults(func=_cmd_bench_sweep)
    return parser


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Define the ``sweep`` subcommand (for ``qecd bench``) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "sweep", help="d x p sweep of LER and decode time on Dask; sinter CSV, JSON, PNGs",
        description="Sweep d and p over a base spec on Dask (embedded LocalCluster, "
                    "--scheduler or --slurm); every decoder decodes the same shots at each "
                    "point. Writes sinter CSV (resumable), a JSON report and plots.")
    return add_sweep_arguments(p)


def _bench_command(module: str) -> Callable[[argparse.Namespace], int]:
    """The ``command(args)`` of ``qecd.bench.<module>``, imported when the command runs."""
    def run(args: argparse.Namespace) -> int:
        import importlib

        return importlib.import_module(f"qecd.bench.{module}").command(args)
    return run


def _add_research_bench_parsers(bsub: argparse._SubParsersAction) -> None:
    """The research benchmarks: each module's ``command(args)`` gets the flags defined here."""
    u = bsub.add_parser("uf-vs-pymatching",
                        help="time and LER of union-find against PyMatching, same shots")
    u.add_argument("--d", type=int, nargs="+", default=[5, 7, 9, 11])
    u.add_argument("--p", type=float, nargs="+", default=[0.001, 0.003])
    u.add_argument("--shots", type=int, default=20000)
    u.add_argument("--repeats", type=int, default=5)
    u.add_argument("--seed", type=int, default=1)
    u.add_argument("--weight-resolution", type=int, default=None)
    u.add_argument("--no-prematch", action="store_true")
    u.set_defaults(func=_bench_command("bench_union_find"))

    c = bsub.add_parser("bp-cluster-vs-ldpc",
                        help="bp-cluster against ldpc's BP+OSD-CS (and BP+LSD) on BB codes")
    c.add_argument("--codes", default="72,144", help="BB code sizes n, comma-separated")
    c.add_argument("--p", default="0.003,0.005", help="physical error rates")
    c.add_argument("--rounds", type=int, default=0, help="noisy rounds (0: the distance)")
    c.add_argument("--shots", type=int, default=10000)
    c.add_argument("--max-iter", type=int, default=5, help="BP iterations, both decoders")
    c.add_argument("--lsd-order", type=int, default=7)
    c.add_argument("--lsd-min-free", type=int, default=0)
    c.add_argument("--seed", type=int, default=2024)
    c.add_argument("--ldpc-lsd", action="store_true", help="also run ldpc's BpLsdDecoder")
    c.set_defaults(func=_bench_command("bench_bp_cluster"))

    r = bsub.add_parser("ring-pingpong",
                        help="64-byte round trips over a shared-memory ring pair (JSON)")
    r.add_argument("--round-trips", type=int, default=200_000)
    r.add_argument("--warmup", type=int, default=20_000)
    r.add_argument("--mode", choices=("both", "numba", "python"), default="both")
    r.add_argument("--n-slots", type=int, default=64)
    r.add_argument("--no-pin", action="store_true", help="do not pin the two processes")
    r.set_defaults(func=_bench_command("bench_shm_pingpong"))

    i = bsub.add_parser("idle-rings", help="server CPU of idle ring streams and the wake-up "
                        "latency of the first packet after idling")
    i.add_argument("--spec", default="surface:d=5,p=0.001")
    i.add_argument("--streams", type=int, default=4)
    i.add_argument("--seconds", type=float, default=3.0, help="idle CPU measured over this")
    i.add_argument("--idle-ms", type=float, nargs="+", default=[0.5, 5, 50, 500],
                   help="idle spells before a timed wake-up")
    i.add_argument("--trials", type=int, default=40, help="wake-ups timed per idle spell")
    i.add_argument("--no-pin", action="store_true", help="do not pin the two processes")
    i.add_argument("--json", default=None, help="write the report here")
    i.set_defaults(func=_bench_command("idle_rings"))

    g = bsub.add_parser("ring-drain", help="CPU per round of a ring loop serving a backlog "
                        "(the request ring filled before it starts), beside the batch floor")
    g.add_argument("--spec", default="surface:d=5,p=0.001")
    g.add_argument("--shots", type=int, default=4000)
    g.add_argument("--repeats", type=int, default=7)
    g.add_argument("--json", default=None, help="write the report here")
    g.add_argument("--same-core", action="store_true",
                   help="fill the ring and read the replies on the loop's own CPU (slots in "
                        "its cache: a floor); default: from another CPU, as the emulator does")
    g.set_defaults(func=_bench_command("ring_drain"))

    d = bsub.add_parser("deadline-plot", help="overlay LER(t) of qecd bench latency reports")
    d.add_argument("reports", nargs="+", help="qecd.bench.latency JSON files")
    d.add_argument("--out", required=True, help="PNG to write")
    d.add_argument("--title", default="")
    d.set_defaults(func=_bench_command("deadline"))

    q = bsub.add_parser("pqc-handshake", help="the post-quantum handshake's cost per HELLO "
                        "against plain HELLOs, in one run (docs/security.md)")
    q.add_argument("--hellos", type=int, default=200, help="HELLOs per kind (default "
                   "%(default)s)")
    q.add_argument("--json", default=None, help="also write the figures as JSON here")
    q.set_defaults(func=_bench_command("pqc_handshake"))

    t = bsub.add_parser("sinter-suite", help="sinter's decoder tests with qecd's decoders added")
    t.add_argument("dir", help="scratch directory for the edited copies")
    t.add_argument("--run", action="store_true", help="run them and count the outcomes")
    t.set_defaults(func=_bench_command("sinter_suite"))

    h = bsub.add_parser("hostile", help="hostile traffic beside a valid stream (JSON; exit 3 "
                        "when a must-hold figure fails): fuzz, or HEARTBEAT under large HELLOs")
    h.add_argument("which", choices=["fuzz", "build-stall"])
    h.add_argument("--frames", type=int, default=200_000, help="fuzz: hostile frames")
    h.add_argument("--seconds", type=float, default=90.0, help="fuzz: least run length (s)")
    h.add_argument("--baseline-s", type=float, default=20.0,
                   help="the runs without hostile traffic (s)")
    h.add_argument("--cycle-us", type=int, default=1000,
                   help="fuzz: the valid stream's round period (us)")
    h.add_argument("--identities", type=int, default=64, help="fuzz: hostile DEALERs")
    h.add_argument("--big", type=int, default=4, help="fuzz: distinct 5-8 MB DEMs in the mix")
    h.add_argument("--max-frame-share", type=float, default=1e-4,
                   help="fuzz: share of frames extended to max_frame (16 MiB) or just over: a "
                        "bandwidth flood the server must read before refusing (0: none)")
    h.add_argument("--hellos", type=int, default=10, help="build-stall: large HELLOs")
    h.add_argument("--period-us", type=int, default=2000,
                   help="build-stall: HEARTBEAT period (us)")
    h.add_argument("--decoder", default=None,
                   help="build-stall: the large HELLOs' decoder (default: the protocol's)")
    h.add_argument("--serve-arg", action="append", default=[],
                   help="an argument for the qecd serve it starts (repeat; --serve-arg=--flag)")
    h.set_defaults(func=_bench_command("hostile"))


def _cmd_bench_gate(args: argparse.Namespace) -> int:
    from qecd.bench.gate import gate_main

    return gate_main(args.baseline, write=args.write_baseline, shots=args.shots,
                     repeats=args.repeats, json_path=args.json, check_only=args.check_baseline)


def _cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from qecd.bench.accuracy import format_accuracy, run_accuracy

    source = args.spec
    if args.circuit is not None:
        from qecd.codes.external import circuit_file_experiment

        source = circuit_file_experiment(args.circuit, time_coord=args.time_coord,
                                         rounds=args.rounds)
    report = run_accuracy(source, [d for d in args.decoders.split(",") if d],
                          shots=args.shots, seed=args.seed, reference=args.reference,
                          time_repeats=args.time_repeats)
    print(format_accuracy(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qecd.run import main_job

    return main_job(quick=args.quick, shots=args.shots)


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
    pq = None
    if args.pq_required and not args.pq_secret_key:
        print("qecd serve: error: --pq-required needs --pq-secret-key", file=sys.stderr)
        return 2
    if args.pq_secret_key:
        from qecd.transport.pqc import PqServer, PqUnavailable

        try:
            pq = PqServer.from_file(args.pq_secret_key, token_lifetime_s=args.pq_token_lifetime)
        except (PqUnavailable, ValueError, OSError) as e:
            print(f"qecd serve: error: {e}", file=sys.stderr)
            return 2
    if args.build_cpus and hasattr(os, "sched_getaffinity"):
        outside = sorted(set(args.build_cpus) - os.sched_getaffinity(0))
        if outside:
            print(f"qecd serve: error: --build-cpus: expected CPUs this process may run on "
                  f"({sorted(os.sched_getaffinity(0))}), got {outside}", file=sys.stderr)
            return 2
    limits = SessionLimits(timeout_ms=int(args.stream_timeout * 1000),
                           heartbeat_ms=max(1, int(args.stream_timeout * 1000) // 5),
                           max_backlog=args.max_backlog,
                           **({} if args.max_gil_graph_faults is None else
                              {"max_gil_graph_faults": args.max_gil_graph_faults}))
    config = ServerConfig(binds=tuple(args.bind or ["tcp://127.0.0.1:5555"]), limits=limits,
                          max_streams=args.max_streams,
                          max_streams_per_client=args.max_streams_per_client,
                          max_ring_streams_per_client=args.max_ring_streams_per_client,
                          sndhwm=args.hwm, rcvhwm=args.hwm,
                          record_capacity=args.record_capacity, curve=curve, pq=pq,
                          pq_required=args.pq_required, fast_path=not args.no_fast_path,
                          oversize_replies=args.oversize_replies,
                          io_thread_nice=args.io_thread_nice, rcvbuf=args.rcvbuf,
                          build_timeout_s=args.build_timeout,
                          build_worker_idle=args.build_worker_idle,
                          build_cpus=frozenset(args.build_cpus) if args.build_cpus else None,
                          max_plan_bytes=int(args.max_plan_mb * (1 << 20)),
                          plan_cache_bytes=int(args.plan_cache_mb * (1 << 20)),
                          plan_cache_idle_s=args.plan_cache_idle_s,
                          max_builds_per_client=args.max_builds_per_client,
                          builds_per_minute_per_client=args.builds_per_minute_per_client)
    return run_server(config, metrics_port=args.metrics_port, metrics_addr=args.metrics_addr,
                      metrics_streams=args.metrics_streams, record_path=args.record,
                      cpu=args.cpu)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from qecd.transport.auth import create_keypair

    for path in create_keypair(args.directory, args.name):
        print(path)
    if args.pq:
        from qecd.transport.pqc import PqUnavailable, create_pq_keypair

        try:
            paths = create_pq_keypair(args.directory, args.name)
        except PqUnavailable as e:
            print(f"qecd keygen: error: {e}", file=sys.stderr)
            return 2
        for path in paths:
            print(path)
    return 0


def _cmd_conformance(args: argparse.Namespace) -> int:
    from qecd.conformance import format_table, run_conformance

    results = run_conformance(args.connect, spec=args.spec, timeout_s=args.timeout,
                              shm=not args.no_shm, only=args.only)
    print(format_table(results))
    return 0 if results and all(r.passed for r in results) else 1


def _cmd_emulate(args: argparse.Namespace) -> int:
    from qecd.bench.emulator import EmulateConfig, format_report, run_emulation, write_report
    from qecd.bench.verdict import LoadProbe, emulate_verdict, format_verdict
    from qecd.transport.auth import CurveClientKeys
    from qecd.transport.wire import DEFAULT_DECODER

    if (args.spec is None) == (args.dem is None):
        print("qecd emulate: error: give exactly one of --spec and --dem", file=sys.stderr)
        return 2
    curve = None
    if args.curve_secret_key or args.curve_server_key:
        curve = CurveClientKeys.from_files(args.curve_secret_key, args.curve_server_key)
    probe = LoadProbe()
    report = run_emulation(EmulateConfig(
        connect=args.connect, spec=args.spec, dem_path=args.dem, time_coord=args.time_coord,
        decoder=args.decoder or DEFAULT_DECODER, window=args.window, commit=args.commit,
        shots=args.shots,
        streams=args.streams, cycle_us=args.cycle_us, rounds_per_packet=args.rounds_per_packet,
        seed=args.seed,
        max_inflight=args.max_inflight, rtt_samples=args.rtt_samples, timeout_s=args.timeout,
        curve=curve, cpu=args.cpu, emulator=args.emulator))
    verdict = emulate_verdict(report, args.budget_us, probe.stop())
    report["verdict"] = verdict.as_dict()
    print(format_report(report))
    print(format_verdict(verdict))
    if args.json:
        write_report(report, args.json)
    return int(verdict.exit_code)


def _add_latency_arguments(p: argparse.ArgumentParser) -> None:
    from qecd.bench.latency_report import LATENCY_DEFAULTS as D

    p.add_argument("--spec", default=D["spec"], help="experiment spec (default %(default)s)")
    p.add_argument("--decoder", default=D["decoder"],
                   help="uf (compiled into the shm loop), pymatching, bp-cluster, ... "
                        "(default %(default)s)")
    p.add_argument("--transport", default=D["transport"], choices=["shm", "zmq"],
                   help="shm: shared-memory rings with a Numba server loop; "
                        "zmq: qecd serve over tcp loopback")
    p.add_argument("--shots", type=int, default=D["shots"], help="shots to stream")
    p.add_argument("--seed", type=int, default=D["seed"], help="stim sampling seed")
    p.add_argument("--cycle-us", "--cycle_us", dest="cycle_us", type=float, default=D["cycle_us"],
                   help="paced mode: one round every CYCLE_US microseconds (0 = as fast as "
                        "possible)")
    p.add_argument("--rounds-per-packet", "--rounds_per_packet", dest="rounds_per_packet",
                   type=int, default=D["rounds_per_packet"],
                   help="rounds per SYNDROME packet (zmq): K rounds every K cycles when paced "
                        "(default %(default)s)")
    p.add_argument("--window", type=int, default=None,
                   help="sliding window in rounds (default: the stream decoder's)")
    p.add_argument("--commit", type=int, default=None,
                   help="rounds committed per window (default: the decoder's)")
    p.add_argument("--ping", type=int, default=D["ping"], help="bare round trips to measure")
    p.add_argument("--no-pin", "--no_pin", dest="pin", action="store_false",
                   help="do not pin server and emulator to separate CPUs")
    p.add_argument("--budget-us", "--budget_us", dest="budget_us", type=float,
                   default=D["budget_us"],
                   help="judge the p99 service and reaction times against this (the platform "
                        "stall reference is printed beside; exit 1 if not met)")
    p.add_argument("--stall-s", "--stall_s", dest="stall_s", type=float, default=D["stall_s"],
                   help="seconds of the platform's own stalls to measure on the same CPUs "
                        "before streaming (0 skips; default %(default)s)")
    p.add_argument("--ring-slots", "--ring_slots", dest="ring_slots", type=int,
                   default=D["ring_slots"],
                   help="slots per shared-memory ring, a power of two (default %(default)s)")
    p.add_argument("--emulator", default=D["emulator"], choices=["native", "python"],
                   help="zmq: the compiled emulator (Numba calling libzmq) or the Python one "
                        "(default: native when libzmq can be driven from compiled code here)")
    p.add_argument("--serve-arg", dest="serve_args", action="append", default=[],
                   help="zmq: an argument for the qecd serve it starts (repeat; e.g. "
                        "--serve-arg=--io-thread-nice=0)")
    p.add_argument("--json", default=None, help="write the report (schema qecd.bench.latency/1)")
    p.add_argument("--plot", default=None, help="write PNGs into this directory")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    from qecd import __version__

    p = argparse.ArgumentParser(prog="qecd", description="qecd: a real-time QEC decoder service")
    p.add_argument("--version", action="version", version=f"qecd {__version__}")
    sub = p.add_subparsers(dest="command")

    c = sub.add_parser("codes", help="list the code catalog")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.add_argument("--only", action="append", help="only this spec (repeatable)")
    c.set_defaults(func=_cmd_codes)

    r = sub.add_parser("run", help="the main job on the embedded default")
    r.add_argument("--quick", action="store_true", help="a smaller run (for smoke tests)")
    r.add_argument("--shots", type=int, default=None,
                   help="shots to stream (default: 200,000; 2,000 with --quick)")
    r.set_defaults(func=_cmd_run)

    v = sub.add_parser("serve", help="run the decoder service (ZeroMQ ROUTER)",
                       description="Run the decoder service. SIGTERM or SIGINT (Ctrl-C) stops "
                                   "it gracefully: queued packets are answered, every open "
                                   "stream gets SYNDROMES_DROPPED for rounds no CORRECTION "
                                   "covers and a BYE, then it exits (docs/protocol.md §9 "
                                   "step 5).")
    v.add_argument("--bind", action="append", help="endpoint to bind (repeatable; default "
                   "tcp://127.0.0.1:5555), e.g. ipc:///tmp/qecd.sock")
    v.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on METRICS_ADDR:PORT/metrics")
    v.add_argument("--metrics-addr", default="127.0.0.1",
                   help="address the metrics endpoint listens on (0.0.0.0: every interface)")
    v.add_argument("--metrics-streams", type=int, default=16,
                   help="streams with their own label in the per-stream metrics (the first to "
                        "open; a closing stream's label goes to the next new one); the rest "
                        "are summed as stream=\"other\"")
    v.add_argument("--curve-secret-key", default=None,
                   help="server CURVE secret key file (zmq.auth .key_secret)")
    v.add_argument("--curve-allow", default=None,
                   help="directory of allowed client public keys (.key)")
    v.add_argument("--pq-secret-key", default=None,
                   help="opt-in post-quantum control plane: the server's ML-DSA-65 secret key "
                        "(qecd keygen --pq); HELLOs may then run the hybrid X25519 + ML-KEM-768 "
                        "handshake and get signed session tokens (docs/security.md)")
    v.add_argument("--pq-required", action="store_true",
                   help="refuse HELLOs without the post-quantum handshake")
    v.add_argument("--pq-token-lifetime", type=int, default=3600,
                   help="seconds a session token can resume its stream (default %(default)s)")
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
    v.add_argument("--max-gil-graph-faults", type=_non_negative_int, default=None,
                   help="largest window graph (faults) of a backend the server rebuilds "
                        "holding the GIL (pymatching, relay-bp), which stalls every live "
                        "stream while it builds; 0: no limit (default: "
                        "SessionLimits.max_gil_graph_faults)")
    v.add_argument("--hwm", type=int, default=10_000, help="ZeroMQ SNDHWM/RCVHWM (messages)")
    v.add_argument("--cpu", type=int, default=None, help="pin the server to this CPU")
    v.add_argument("--oversize-replies", action="store_true",
                   help="answer a packet above max_frame (up to twice it) with OVERSIZE; by "
                        "default ZeroMQ drops the sender's connection before reading it")
    v.add_argument("--no-fast-path", action="store_true",
                   help="serve every ZeroMQ packet on the Python path (no compiled fast path)")
    v.add_argument("--io-thread-nice", type=int, default=19,
                   help="nice value of the ZeroMQ I/O thread when pinned with --cpu (0 leaves "
                        "it alone; default %(default)s)")
    v.add_argument("--rcvbuf", type=_non_negative_int, default=0,
                   help="kernel receive buffer of each TCP connection, bytes (ZMQ_RCVBUF; 0 "
                        "keeps the system's autotuned size): bounds how long one read of a "
                        "large message keeps the I/O thread from other streams")
    v.add_argument("--build-worker-idle", action="store_true",
                   help="run the decoder build worker in the SCHED_IDLE class (Linux) instead "
                        "of at nice 10: builds never delay a live stream's wake-ups, and wait "
                        "(up to --build-timeout) on a host kept busy")
    v.add_argument("--build-cpus", type=_cpu_list, default=None, metavar="LIST",
                   help="CPUs (e.g. 1 or 1,2-3) for the decoder build thread and worker; "
                        "default with --cpu: the server's other CPUs, so a build never "
                        "shares the serving loop's CPU; without --cpu: anywhere")
    v.add_argument("--build-timeout", type=float, default=30.0,
                   help="time budget of one decoder build, s (BAD_HELLO beyond)")
    v.add_argument("--max-plan-mb", type=float, default=128.0,
                   help="size budget of one decoder plan, MB (BAD_HELLO beyond)")
    v.add_argument("--plan-cache-idle-s", type=float, default=60.0,
                   help="drop a cached plan no HELLO or open stream used for this long (s)")
    v.add_argument("--plan-cache-mb", type=float, default=256.0,
                   help="decoder plans kept for reuse, MB (least recently used evicted)")
    v.add_argument("--max-builds-per-client", type=int, default=2,
                   help="HELLOs one client may have waiting for a build at once")
    v.add_argument("--builds-per-minute-per-client", type=int, default=30,
                   help="builds one client may start per minute")
    v.set_defaults(func=_cmd_serve)

    kg = sub.add_parser("keygen", help="write a CURVE key pair (and, with --pq, an ML-DSA-65 "
                        "one) for qecd serve and its clients")
    kg.add_argument("directory", help="where to write the key files")
    kg.add_argument("name", help="file stem: NAME.key/NAME.key_secret (CURVE), "
                    "NAME.mldsa/NAME.mldsa_secret (--pq)")
    kg.add_argument("--pq", action="store_true",
                    help="also an ML-DSA-65 pair for the post-quantum control plane")
    kg.set_defaults(func=_cmd_keygen)

    k = sub.add_parser("conformance", help="check a server against docs/protocol.md's rules")
    k.add_argument("--connect", required=True, help="server endpoint, e.g. tcp://127.0.0.1:5555")
    k.add_argument("--spec", default="repetition:d=3,r=6,p=0.01", help="experiment to open")
    k.add_argument("--timeout", type=float, default=5.0, help="longest wait for a reply (s)")
    k.add_argument("--no-shm", action="store_true", help="skip the shared-memory ring rules")
    k.add_argument("--only", default=None, help="only rules whose id contains this text")
    k.set_defaults(func=_cmd_conformance)

    e = sub.add_parser("emulate", help="stream sampled shots to a server and check them")
    e.add_argument("--connect", required=True, help="server endpoint, e.g. tcp://127.0.0.1:5555")
    e.add_argument("--spec", default=None, help="experiment spec, e.g. surface:d=5,p=0.003")
    e.add_argument("--dem", default=None, help="stim DEM file with detector coordinates")
    e.add_argument("--time-coord", type=int, default=-1,
                   help="with --dem: which detector coordinate is time")
    e.add_argument("--decoder", default=None,
                   help="a decoder name as HELLO's (docs/protocol.md 6.1.2; default: the "
                        "protocol's default decoder)")
    e.add_argument("--window", type=int, default=None, help="sliding window (rounds)")
    e.add_argument("--commit", type=int, default=None, help="rounds committed per window")
    e.add_argument("--shots", type=int, default=1000, help="shots in all (split over streams)")
    e.add_argument("--streams", type=int, default=1, help="concurrent streams")
    e.add_argument("--rounds-per-packet", type=int, default=1,
                   help="rounds per SYNDROME packet; paced: K rounds every K cycles "
                        "(default %(default)s)")
    e.add_argument("--cycle-us", type=float, default=None,
                   help="send one round per stream every X us (default: as fast as possible)")
    e.add_argument("--seed", type=int, default=0, help="stim sampling seed")
    e.add_argument("--max-inflight", type=int, default=None,
                   help="rounds per stream sent and not yet corrected")
    e.add_argument("--rtt-samples", type=int, default=1000,
                   help="HEARTBEAT round trips measured first")
    e.add_argument("--timeout", type=float, default=30.0, help="longest wait for a reply (s)")
    e.add_argument("--curve-secret-key", default=None, help="client CURVE secret key file")
    e.add_argument("--curve-server-key", default=None, help="server CURVE public key file")
    e.add_argument("--cpu", type=int, default=None, help="pin the emulator to this CPU")
    e.add_argument("--emulator", default=None, choices=["native", "python"],
                   help="the compiled emulator (Numba calling libzmq) or the Python one "
                        "(default: native when libzmq can be driven from compiled code here)")
    e.add_argument("--budget-us", type=float, default=None,
                   help="judge the p99 service time of this run's streams and the p99 reaction "
                        "time against this (the bare round trip is printed beside; exit 1 if "
                        "not met)")
    e.add_argument("--json", default=None, help="write the JSON report (qecd.emulate/1) here")
    e.set_defaults(func=_cmd_emulate)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command")
    lat = bsub.add_parser("latency", help="service/reaction latency, throughput, backlog, LER")
    _add_latency_arguments(lat)
    lat.set_defaults(func=_cmd_bench_latency)
    add_sweep_parser(bsub)
    _add_research_bench_parsers(bsub)
    g = bsub.add_parser("gate", help="CI gate on ratios measured in one run")
    g.add_argument("--baseline", default=None,
                   help="baseline file (default: the one shipped with qecd for this Python "
                        "and machine, bench/baseline/ratios-KEY.json)")
    g.add_argument("--write-baseline", "--write_baseline", dest="write_baseline",
                   action="store_true", help="measure and write the baseline instead")
    g.add_argument("--check-baseline", action="store_true",
                   help="only say whether the baselines for this Python and machine exist "
                        "(exit 0) or not (exit 5)")
    g.add_argument("--shots", type=int, default=5000, help="shots per timing")
    g.add_argument("--repeats", type=int, default=7, help="alternating timings per ratio")
    g.add_argument("--json", default=None, help="write the gate report here")
    g.set_defaults(func=_cmd_bench_gate)
    a = bsub.add_parser("accuracy", help="LER and decode time of decoders on the same shots")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--spec", help="experiment spec, e.g. surface:d=5,p=0.003")
    src.add_argument("--circuit", metavar="FILE.stim",
                     help="your own stim circuit instead of a spec: its DEM as sinter builds "
                          "it, decomposed when stim can (then pymatching is the reference)")
    a.add_argument("--time-coord", "--time_coord", type=int, default=-1,
                   help="with --circuit: which detector coordinate is the round, for windowed "
                        "decoders (default: the last; 2 for (x, y, t, basis))")
    a.add_argument("--rounds", type=_positive_int, default=None,
                   help="with --circuit: rounds to divide per-round times by (default: the "
                        "detectors' time slices minus one, a memory experiment's rounds)")
    a.add_argument("--decoders", default="pymatching,uf",
                   help="comma-separated decoder names (e.g. uf,uf-w10c5,ldpc-bposd)")
    a.add_argument("--shots", type=int, default=10_000, help="shots, the same for every decoder")
    a.add_argument("--seed", type=int, default=0, help="stim sampling seed")
    a.add_argument("--reference", default=None,
                   help="reference decoder (default: pymatching, or ldpc-bposd for qLDPC)")
    a.add_argument("--time_repeats", "--time-repeats", type=_positive_int, default=1,
                   help="decode time (wall and CPU) is the least of this many passes over the "
                        "same shots, decoders taking turns (default 1)")
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help`` (unless it has none, is an on/off flag, or the help
    states it), and only the dashed spelling of a flag whose underscored twin is kept as a
    hidden alias."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default is None or action.default is argparse.SUPPRESS
                or action.nargs == 0 or not action.option_strings or "default" in text):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"

    def _format_action_invocation(self, action: argparse.Action) -> str:
        every = action.option_strings
        action.option_strings = [o for o in every if "_" not in o] or every
        try:
            return super()._format_action_invocation(action)
        finally:
            action.option_strings = every


def spell_flags(parser: argparse.ArgumentParser) -> None:
    """Give every ``--long-flag`` of ``parser`` and its subcommands the underscored alias
    ``--long_flag`` (and the reverse), dashed spelling first; help shows the dashed one.

    >>> p = argparse.ArgumentParser(); _ = p.add_argument("--max-errors", type=int)
    >>> spell_flags(p); p.parse_args(["--max_errors", "3"]).max_errors
    3
    """
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                spell_flags(sub)
            continue
        for opt in list(action.option_strings):
            if not opt.startswith("--"):
                continue
            for twin in ("--" + opt[2:].replace("_", "-"), "--" + opt[2:].replace("-", "_")):
                if twin not in parser._option_string_actions:
                    action.option_strings.append(twin)
                    parser._option_string_actions[twin] = action
        action.option_strings.sort(key=lambda o: "_" in o)


def main(argv: list[str] | None = None) -> int:
    """Run ``qecd`` with ``argv``; returns the exit code (see README, "Exit codes")."""
    import os

    for var in SINGLE_THREAD_POOLS:
        os.environ.setdefault(var, "1")
    parser = build_parser()
    spell_flags(parser)
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    from qecd.errors import QecdError
    from qecd.extras import RESEARCH_MODULES, install_hint

    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except QecdError as e:
        print(f"qecd: error: {e}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokenPipeError:
        # the reader went away (`qecd codes | head -1`): no traceback, and no second one at
        # exit when Python flushes stdout into the closed pipe
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.BROKEN_PIPE
    except ModuleNotFoundError as e:  # a research tool reached without its extra
        if (e.name or "").split(".")[0] not in RESEARCH_MODULES:
            raise
        what = " ".join(filter(None, ("qecd", args.command, getattr(args, "bench_command", None))))
        print(f"qecd: error: {install_hint(e.name, what)}", file=sys.stderr)
        return ExitCode.USAGE


if __name__ == "__main__":
    sys.exit(main())
