"""The ``qecd bench sweep`` command line: a d x p sweep scheduled on Dask.

Flags follow ``sinter collect`` (snake_case, dashed spellings accepted): ``--max_shots``,
``--max_errors``, ``--save_resume_filepath``. The cluster is an embedded LocalCluster
(``--workers N``), an existing scheduler (``--scheduler tcp://HOST:PORT``) or Slurm
(``--slurm`` with ``--slurm_queue``, ``--slurm_cores``, ``--slurm_memory``,
``--slurm_walltime``, ``--slurm_jobs``...). See docs/sweeps.md.

Exit codes: 0 done; 2 bad input or a chunk that failed for a reason other than a lost
worker (the message says which); 130 interrupted (the CSV keeps what was committed: rerun
the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import Counter

from qecd.bench.sweep_tasks import DEFAULT_CHUNK_SHOTS


def _int_list(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 3,5,7, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
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


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63), got {text!r}")
    return v


def add_sweep_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the sweep flags to ``parser`` and set ``func=sweep_main``; returns ``parser``."""
    a = parser.add_argument
    a("--spec", required=True,
      help="base experiment spec; d and p are replaced, e.g. surface:d=3,p=0.001")
    a("--distances", type=_int_list, default=[3, 5, 7], help="comma-separated (default 3,5,7)")
    a("--ps", type=_float_list, default=[0.001, 0.003, 0.005],
      help="comma-separated physical error rates (default 0.001,0.003,0.005)")
    a("--decoders", default="pymatching,uf",
      help="comma-separated decoder names (default pymatching,uf); the reference always runs")
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
    parser.set_defaults(func=sweep_main)
    return parser


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Define the ``sweep`` subcommand (for ``qecd bench``) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "sweep", help="d x p sweep of LER and decode time on Dask; sinter CSV, JSON, PNGs",
        description="Sweep d and p over a base spec on Dask (embedded LocalCluster, "
                    "--scheduler or --slurm); every decoder decodes the same shots at each "
                    "point. Writes sinter CSV (resumable), a JSON report and plots.")
    return add_sweep_arguments(p)


def cluster_options(args: argparse.Namespace):
    """The :class:`~qecd.bench.sweep_dask.ClusterOptions` the flags name."""
    from qecd.bench.sweep_dask import ClusterOptions, SlurmOptions

    slurm = None
    if args.slurm:
        slurm = SlurmOptions(queue=args.slurm_queue, account=args.slurm_account,
                             cores=args.slurm_cores, memory=args.slurm_memory,
                             walltime=args.slurm_walltime, jobs=args.slurm_jobs,
                             interface=args.slurm_interface,
                             log_directory=args.slurm_log_directory,
                             job_extra=tuple(args.slurm_job_extra))
    return ClusterOptions(workers=args.workers, scheduler=args.scheduler, slurm=slurm,
                          wait_timeout=args.wait_timeout)


def sweep_main(args: argparse.Namespace) -> int:
    """Run the sweep the parsed flags describe (see the module docs for exit codes)."""
    from qecd.bench.sweep import (
        format_sweep,
        plot_ler_vs_p,
        plot_time_vs_distance,
        rows_from_progress,
        sweep_report,
        sweep_tasks,
    )
    from qecd.bench.sweep_dask import SweepOutcome, open_client, run_sweep_tasks
    from qecd.bench.sweep_store import CsvWriter, read_progress

    if args.slurm and args.scheduler:
        print("qecd bench sweep: error: --slurm and --scheduler: give at most one",
              file=sys.stderr)
        return 2
    from qecd.bench.sweep_dask import PURPOSE
    from qecd.extras import require

    require("distributed", purpose=PURPOSE)  # a missing extra: one line, before any output
    require("sinter", purpose=PURPOSE)
    if args.slurm:
        require("dask_jobqueue", purpose=f"{PURPOSE} --slurm")
    decoders = [d.strip() for d in args.decoders.split(",") if d.strip()]
    tasks = sweep_tasks(args.spec, distances=args.distances, ps=args.ps, decoders=decoders,
                        max_shots=args.max_shots, seed=args.seed,
                        rounds_factor=args.rounds_factor, max_errors=args.max_errors,
                        chunk_shots=args.chunk_shots, time_repeats=args.time_repeats)
    to_stdout = args.csv in (None, "-")
    info = sys.stderr if to_stdout else sys.stdout
    prior = {} if to_stdout else read_progress(args.csv)
    mine = {t.strong_id for t in tasks}
    resumed = sum(1 for i in prior if i in mine)
    options = cluster_options(args)
    writer = (CsvWriter(sys.stdout, write_header=True) if to_stdout
              else CsvWriter.open(args.csv))
    print(f"sweep: {len(tasks)} tasks on {options.describe()}"
          + (f"; resuming {resumed} from {args.csv}" if resumed else ""), file=info)
    t0 = time.monotonic()
    try:
        if all(t.is_done(prior[t.strong_id].shots, prior[t.strong_id].errors)
               for t in tasks if t.strong_id in prior) and resumed == len(tasks):
            out = SweepOutcome({t.strong_id: prior[t.strong_id] for t in tasks}, 0, 0,
                               Counter(), f"{len(tasks)}/{len(tasks)} tasks done; nothing to run")
        else:
            with open_client(options) as client:
                out = run_sweep_tasks(client, tasks, writer, prior=prior, quiet=args.quiet)
    except KeyboardInterrupt:
        print("qecd bench sweep: interrupted; committed chunks are in the CSV: rerun the same "
              "command to resume", file=sys.stderr)
        return 130
    finally:
        writer.close()
    wall = time.monotonic() - t0
    rows = rows_from_progress(tasks, out.progress)
    print(format_sweep(rows), file=info)
    workers = ", ".join(f"{w}: {n}" for w, n in sorted(out.chunks_by_worker.items()))
    print(f"{out.summary}; wall {wall:.1f} s; {out.new_chunks} chunks run now "
          f"({out.resubmitted} resubmitted after a lost worker); chunks by worker: "
          f"{workers or 'none'}", file=info)
    if args.json:
        report = sweep_report(
            rows, base_spec=args.spec, distances=args.distances, ps=args.ps,
            decoders=decoders, max_shots=args.max_shots, max_errors=args.max_errors,
            seed=args.seed, rounds_factor=args.rounds_factor, chunk_shots=args.chunk_shots,
            time_repeats=args.time_repeats, cluster=options.describe(), wall_s=wall,
            new_chunks=out.new_chunks, resubmitted=out.resubmitted,
            chunks_by_worker=dict(out.chunks_by_worker), command=shlex.join(sys.argv))
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}", file=info)
    if args.plot:
        os.makedirs(args.plot, exist_ok=True)
        for per in ("shot", "round"):
            path = os.path.join(args.plot, f"ler_per_{per}_vs_p.png")
            print(f"wrote {plot_ler_vs_p(rows, path, per=per)}", file=info)
        path = os.path.join(args.plot, "time_vs_distance.png")
        print(f"wrote {plot_time_vs_distance(rows, path)}", file=info)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qecd.bench.sweep_cli [flags]``: the same as ``qecd bench sweep``."""
    from qecd.errors import QecdError

    parser = add_sweep_arguments(argparse.ArgumentParser(
        prog="qecd bench sweep", description="qecd bench sweep (stand-alone)"))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QecdError as e:
        print(f"qecd: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
