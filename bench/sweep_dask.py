"""Sweeps on Dask distributed: an embedded LocalCluster, an existing scheduler, or Slurm.

:func:`open_client` gives a ``distributed.Client`` on one of three clusters (see
:class:`ClusterOptions`); :func:`run_sweep_tasks` schedules the tasks' chunks on it
(:mod:`qecd.bench.sweep_tasks`) and commits their results in order into sinter's CSV
(:mod:`qecd.bench.sweep_store`). Why Dask, and how to run it on a real cluster:
docs/sweeps.md.

Scheduling. Up to ``in_flight`` chunks (default twice the workers' threads) are submitted at
once, taken round-robin from the unfinished tasks; a task stops taking new chunks once its
stopping rule is expected to be met by what it has in flight. Results are committed in chunk
order per task; chunks past the one that meets the rule are cancelled or discarded, so the
totals are those of chunks ``0..K-1`` whatever the number of workers or the finishing order.

Failures. When a worker dies, the scheduler reruns the chunks it held on another worker
(Dask's ``allowed-failures``); a chunk that still fails for a lost worker or connection is
resubmitted up to ``retries`` more times. A chunk that raises anything else (a decoder
refusing a DEM, bad input) stops the sweep with that error: it would fail again. Everything
committed before stays in the CSV, and a rerun resumes.

Example
-------
>>> from qecd.bench.sweep_tasks import SweepTask
>>> import io
>>> tasks = [SweepTask("repetition:d=3,p=0.03", "pymatching", seed=1, max_shots=600,
...                    chunk_shots=200)]
>>> with open_client(ClusterOptions(workers=1)) as client:
...     out = run_sweep_tasks(client, tasks, io.StringIO(), quiet=True)
>>> out.progress[tasks[0].strong_id].shots, out.new_chunks
(600, 3)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from qecd.bench.sweep_progress import SweepProgress, remaining_shots
from qecd.bench.sweep_store import CsvWriter, TaskProgress
from qecd.bench.sweep_tasks import ChunkResult, SweepTask, run_chunk
from qecd.errors import QecdError
from qecd.extras import require

PURPOSE = "qecd bench sweep (Dask distributed)"


class SweepError(QecdError):
    """A sweep could not finish (a chunk failed for a reason a retry would not fix)."""


@dataclass(frozen=True)
class SlurmOptions:
    """A Slurm cluster through dask-jobqueue's ``SLURMCluster``: ``jobs`` batch jobs, each
    one Dask worker with ``cores`` threads.

    Parameters
    ----------
    queue : str or None
        Partition (``#SBATCH -p``); None: the cluster's default.
    cores : int
        CPUs per job (and worker threads).
    memory : str
        Memory per job, e.g. ``"4GB"``.
    walltime : str
        ``HH:MM:SS`` per job.
    jobs : int
        Jobs (workers) to request.
    account : str or None
        ``#SBATCH -A``.
    interface : str or None
        Network interface for the scheduler and workers (``ib0`` on many HPC systems;
        ``lo`` on one machine); None: the host's default address.
    log_directory : str or None
        Where the jobs' stdout/stderr go.
    job_extra : tuple of str
        More ``#SBATCH`` directives, e.g. ``("--qos=short",)``.
    """

    queue: str | None = None
    cores: int = 1
    memory: str = "2GB"
    walltime: str = "01:00:00"
    jobs: int = 1
    account: str | None = None
    interface: str | None = None
    log_directory: str | None = None
    job_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterOptions:
    """Where the sweep runs: exactly one of an embedded LocalCluster (the default),
    ``scheduler`` (``tcp://HOST:PORT`` of a running ``dask scheduler``) or ``slurm``.

    Parameters
    ----------
    workers : int or None
        LocalCluster worker processes (one thread each); default: the CPUs of this machine.
    scheduler : str or None
    slurm : SlurmOptions or None
    wait_timeout : float
        Seconds to wait for the first worker (a Slurm job may queue).
    """

    workers: int | None = None
    scheduler: str | None = None
    slurm: SlurmOptions | None = None
    wait_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.scheduler is not None and self.slurm is not None:
            raise ValueError("scheduler/slurm: expected at most one of them, got both")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ValueError(f"workers: expected an integer >= 1, got {self.workers!r}")

    def describe(self) -> str:
        if self.scheduler:
            return f"Dask scheduler {self.scheduler}"
        if self.slurm:
            return f"Slurm via dask-jobqueue ({self.slurm.jobs} job(s) x {self.slurm.cores} cores)"
        return f"embedded Dask LocalCluster ({self.workers or os.cpu_count()} worker processes)"


@contextlib.contextmanager
def open_client(options: ClusterOptions) -> Iterator:
    """A ``distributed.Client`` on the cluster ``options`` names; the cluster (if this
    function started it) and the client are closed on exit.

    Raises
    ------
    MissingExtraError
        dask/distributed (or dask-jobqueue for Slurm) is not installed.
    """
    distributed = require("distributed", purpose=PURPOSE)
    if options.scheduler is not None:
        client = distributed.Client(options.scheduler, timeout=options.wait_timeout)
        try:
            client.wait_for_workers(1, timeout=options.wait_timeout)
            yield client
        finally:
            client.close()
        return
    if options.slurm is not None:
        cluster = _slurm_cluster(options.slurm)
    else:
        cluster = distributed.LocalCluster(
            n_workers=options.workers or os.cpu_count() or 1, threads_per_worker=1,
            processes=True, dashboard_address=None, silence_logs=logging.ERROR,
            host="127.0.0.1")
    try:
        client = distributed.Client(cluster)
        try:
            client.wait_for_workers(1, timeout=options.wait_timeout)
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _slurm_cluster(s: SlurmOptions):
    jobqueue = require("dask_jobqueue", purpose=f"{PURPOSE} --slurm")
    kwargs = dict(queue=s.queue, account=s.account, cores=s.cores, processes=1,
                  memory=s.memory, walltime=s.walltime, python=sys.executable,
                  job_extra_directives=list(s.job_extra), silence_logs="error",
                  scheduler_options={"dashboard_address": None})
    if s.interface is not None:
        kwargs["interface"] = s.interface
    if s.log_directory is not None:
        kwargs["log_directory"] = s.log_directory
    cluster = jobqueue.SLURMCluster(**kwargs)
    cluster.scale(jobs=s.jobs)
    return cluster


# --------------------------------------------------------------------------- scheduling

@dataclass
class _TaskState:
    task: SweepTask
    committed: TaskProgress
    next_k: int
    pending: dict[int, ChunkResult] = field(default_factory=dict)
    in_flight: dict[int, object] = field(default_factory=dict)  # k -> future
    finished: bool = False

    def wants_more(self) -> bool:
        t, c = self.task, self.committed
        if self.finished or t.chunk_size(self.next_k) == 0:
            return False
        queued = sum(t.chunk_size(k) for k in self.in_flight) + sum(
            r.shots for r in self.pending.values())
        return queued < remaining_shots(t, c)


@dataclass
class SweepOutcome:
    """What :func:`run_sweep_tasks` did: totals per task (CSV included), chunks run now,
    chunks resubmitted after a lost worker, and committed chunks per worker address."""

    progress: dict[str, TaskProgress]
    new_chunks: int
    resubmitted: int
    chunks_by_worker: Counter
    summary: str = ""


def _retryable(exc: BaseException) -> bool:
    distributed = require("distributed", purpose=PURPOSE)
    from distributed.comm.core import CommClosedError

    return isinstance(exc, (distributed.KilledWorker, CommClosedError, OSError,
                            TimeoutError))


def run_sweep_tasks(client, tasks: list[SweepTask], csv: IO[str] | CsvWriter | None = None,
                    *, prior: dict[str, TaskProgress] | None = None,
                    in_flight: int | None = None, retries: int = 3, quiet: bool = False,
                    progress_file: IO[str] | None = None) -> SweepOutcome:
    """Run every task's remaining chunks on ``client`` and commit them in order.

    Parameters
    ----------
    client : distributed.Client
    tasks : list of SweepTask
        Distinct strong ids.
    csv : text file, CsvWriter or None
        Where committed chunks go (a bare file gets sinter's header first).
    prior : dict, optional
        ``{strong_id: TaskProgress}`` already committed (from :func:`read_progress`): those
        chunks are skipped and count toward the stopping rules.
    in_flight : int, optional
        Chunks submitted at once; default twice the cluster's threads (at least 2).
    retries : int
        Resubmissions of a chunk lost with its worker, after Dask's own.
    quiet : bool
        No progress display.

    Returns
    -------
    SweepOutcome
    """
    distributed = require("distributed", purpose=PURPOSE)
    ids = [t.strong_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("tasks: expected distinct tasks (strong ids), got duplicates")
    prior = prior or {}
    writer = csv if isinstance(csv, CsvWriter) or csv is None else CsvWriter(
        csv, write_header=True)
    states = {t.strong_id: _TaskState(t, prior.get(t.strong_id, TaskProgress()),
                                      prior.get(t.strong_id, TaskProgress()).chunks)
              for t in tasks}
    for s in states.values():
        s.finished = s.task.is_done(s.committed.shots, s.committed.errors)
    bar = SweepProgress(tasks, prior, disable=quiet, file=progress_file)
    futures: dict[object, tuple[_TaskState, int, int]] = {}
    ac = distributed.as_completed()
    order = list(states.values())
    rr = 0
    new_chunks = resubmitted = 0
    by_worker: Counter = Counter()

    def threads() -> int:
        return max(1, sum(client.nthreads().values()))

    def submit(s: _TaskState, k: int, attempt: int) -> None:
        fut = client.submit(run_chunk, s.task, k, pure=False)
        s.in_flight[k] = fut
        futures[fut] = (s, k, attempt)
        ac.add(fut)

    def fill() -> None:
        nonlocal rr
        limit = in_flight or 2 * threads()
        bar.workers = threads()
        idle = 0
        while len(futures) < limit and idle < len(order):
            s = order[rr % len(order)]
            rr += 1
            if s.wants_more():
                submit(s, s.next_k, 0)
                s.next_k += 1
                idle = 0
            else:
                idle += 1

    try:
        fill()
        for fut in ac:
            s, k, attempt = futures.pop(fut)
            s.in_flight.pop(k, None)
            if s.finished or fut.cancelled():
                fill()
                continue
            if fut.status == "error":
                exc = fut.exception()
                if _retryable(exc) and attempt < retries:
                    resubmitted += 1
                    submit(s, k, attempt + 1)
                    continue
                raise SweepError(f"chunk {k} of task {s.task.spec} / {s.task.decoder} failed "
                                 f"after {attempt + 1} attempt(s): "
                                 f"{type(exc).__name__}: {exc}") from exc
            s.pending[k] = fut.result()
            while s.committed.chunks in s.pending and not s.finished:
                r = s.pending.pop(s.committed.chunks)
                s.committed = s.committed.plus(r)
                new_chunks += 1
                by_worker[r.worker] += 1
                if writer is not None:
                    writer.write(s.task, r)
                s.finished = s.task.is_done(s.committed.shots, s.committed.errors)
                bar.update(s.task, s.committed, r.shots, r.errors, r.sample_ns + r.decode_ns,
                           finished=s.finished)
            if s.finished:
                for f in list(s.in_flight.values()):
                    f.cancel()
                s.pending.clear()
            fill()
    finally:
        for f in list(futures):
            f.cancel()
        bar.close()
    return SweepOutcome({i: s.committed for i, s in states.items()}, new_chunks, resubmitted,
                        by_worker, bar.summary())
