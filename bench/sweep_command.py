"""The ``qecd bench sweep`` command: a d x p sweep scheduled on Dask, from the parsed flags
(``qecd/cli.py`` defines them; :func:`sweep_main` takes the namespace it parses).

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

import json
import os
import shlex
import sys
import time
from collections import Counter


def cluster_options(args):
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


def sweep_main(args) -> int:
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
    from qecd.bench.sweep_paired import failures_path
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
            chunks_by_worker=dict(out.chunks_by_worker),
            failures_file=None if to_stdout else failures_path(args.csv),
            command=shlex.join(sys.argv))
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
