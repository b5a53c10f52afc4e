"""Live progress of a sweep: tasks done, shots, errors, rate and time left (tqdm, stderr).

Time left is estimated per task, as sinter does: a task stopped by ``max_errors`` needs about
``(max_errors - errors) / (errors / shots)`` more shots, otherwise ``max_shots - shots``. Each
task's remaining shots are weighted by its own measured cost per shot (sampling + decoding on
a worker; tasks not yet measured count at the mean), and the sum is converted to wall time at
the rate this run has achieved so far (wall seconds per worker-second of committed work), which
folds in the number of workers, their start-up and compilation, and a busy machine.

Example
-------
>>> from qecd.bench.sweep_tasks import SweepTask
>>> from qecd.bench.sweep_store import TaskProgress
>>> t = SweepTask("repetition:d=3,p=0.02", "pymatching", seed=0, max_shots=1000,
...               max_errors=10)
>>> remaining_shots(t, TaskProgress(shots=200, errors=5, chunks=1))
200
>>> remaining_shots(t, TaskProgress(shots=200, errors=0, chunks=1))
800
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO

from qecd.bench.sweep_store import TaskProgress
from qecd.bench.sweep_tasks import SweepTask


def remaining_shots(task: SweepTask, p: TaskProgress) -> int:
    """Shots a task is expected to still need under its stopping rule."""
    if task.is_done(p.shots, p.errors):
        return 0
    left = task.max_shots - p.shots
    if task.max_errors is not None and p.errors > 0:
        left = min(left, math.ceil((task.max_errors - p.errors) * p.shots / p.errors))
    return max(0, left)


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepProgress:
    """A tqdm bar over tasks with shots, errors, shots/s and an estimate of time left.

    Parameters
    ----------
    tasks : list of SweepTask
    prior : dict
        ``{strong_id: TaskProgress}`` already in the CSV (a resumed sweep).
    file : text file, optional
        Default ``sys.stderr``.
    disable : bool
        No display (``--quiet``); :meth:`summary` still works.
    """

    def __init__(self, tasks: list[SweepTask], prior: dict[str, TaskProgress], *,
                 file: IO[str] | None = None, disable: bool = False) -> None:
        from tqdm import tqdm

        self._tasks = {t.strong_id: t for t in tasks}
        self._state = {t.strong_id: prior.get(t.strong_id, TaskProgress()) for t in tasks}
        self._done = {i for i, t in self._tasks.items() if self._finished(i)}
        self._start = time.monotonic()
        self.new_shots = 0
        self.new_errors = 0
        self.new_work_ns = 0
        self.workers = 1
        self._last_refresh = 0.0
        self._bar = tqdm(total=len(tasks), initial=len(self._done), unit="task",
                         desc="sweep", file=file or sys.stderr, disable=disable,
                         dynamic_ncols=True, mininterval=0.5, smoothing=0)
        self._refresh()

    def _finished(self, sid: str) -> bool:
        p, t = self._state[sid], self._tasks[sid]
        return t.is_done(p.shots, p.errors)

    def update(self, task: SweepTask, p: TaskProgress, new_shots: int, new_errors: int,
               work_ns: int, *, finished: bool) -> None:
        """A chunk of ``task`` was committed (``work_ns`` of sampling and decoding); ``p`` is
        the task's new total."""
        self._state[task.strong_id] = p
        self.new_shots += new_shots
        self.new_errors += new_errors
        self.new_work_ns += work_ns
        if finished and task.strong_id not in self._done:
            self._done.add(task.strong_id)
            self._bar.update(1)
            self._refresh()
        elif time.monotonic() - self._last_refresh >= 0.5:
            self._refresh()

    def seconds_left(self) -> float:
        costs = {i: (p.sample_ns + p.decode_ns) / p.shots for i, p in self._state.items()
                 if p.shots > 0}
        mean = sum(costs.values()) / len(costs) if costs else float("nan")
        ns = sum(remaining_shots(t, self._state[i]) * costs.get(i, mean)
                 for i, t in self._tasks.items() if i not in self._done)
        if ns == 0:
            return 0.0
        if self.new_work_ns == 0:
            return float("nan")
        wall_per_work = (time.monotonic() - self._start) / (self.new_work_ns / 1e9)
        return ns / 1e9 * wall_per_work

    def _refresh(self) -> None:
        el = time.monotonic() - self._start
        shots = sum(p.shots for p in self._state.values())
        errors = sum(p.errors for p in self._state.values())
        rate = self.new_shots / el if el > 0 else 0.0
        self._bar.set_postfix_str(
            f"shots {shots:,} errors {errors:,} {rate:,.0f} shots/s "
            f"left ~{_fmt_seconds(self.seconds_left())} ({self.workers} workers)",
            refresh=False)
        self._bar.refresh()
        self._last_refresh = time.monotonic()

    def summary(self) -> str:
        el = time.monotonic() - self._start
        return (f"{len(self._done)}/{len(self._tasks)} tasks done; this run: "
                f"{self.new_shots:,} shots, {self.new_errors:,} errors in {el:.1f} s")

    def close(self) -> None:
        self._bar.close()
