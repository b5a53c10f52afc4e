"""The sweep's results file: sinter's CSV, appended chunk by chunk, read back to resume.

Every committed chunk becomes one line, ``sinter.TaskStats(...).to_csv_line()`` under
``sinter.CSV_HEADER``, so ``sinter plot``/``combine`` read the file as it grows. Integer extras
are ``custom_counts`` (they add up when sinter merges lines): ``decode_ns`` and ``sample_ns``
(time), and ``chunks`` = 1 per line. A task's chunks are committed in order, so a strong id
with ``chunks = K`` holds exactly chunks ``0..K-1``: :func:`read_progress` gives where each
task resumes, as ``sinter collect --save_resume_filepath`` does. ``seconds`` is the chunk's
decode time (sampling excluded, as in ``qecd bench sweep``'s other outputs).

Which shots of each chunk failed (for the paired LER ratios) does not fit sinter's columns;
:meth:`CsvWriter.open` appends it to ``<csv>.failures.jsonl`` beside the CSV
(:mod:`qecd.bench.sweep_paired`) and :func:`read_progress` reads it back. A CSV without one
(written by older code) still loads; its chunks then have no failure blobs.

Example
-------
>>> import io, sinter
>>> from qecd.bench.sweep_tasks import SweepTask, run_chunk
>>> t = SweepTask("repetition:d=3,p=0.02", "pymatching", seed=1, max_shots=300,
...               chunk_shots=100)
>>> f = io.StringIO()
>>> w = CsvWriter(f, write_header=True)
>>> w.write(t, run_chunk(t, 0)); w.write(t, run_chunk(t, 1))
>>> f.getvalue().splitlines()[0] == sinter.CSV_HEADER
True
>>> progress = progress_from_stats(stats_from_csv_text(f.getvalue()))
>>> progress[t.strong_id].chunks, progress[t.strong_id].shots
(2, 200)
"""

from __future__ import annotations

import collections
import dataclasses
import os
from dataclasses import dataclass, field
from typing import IO

from qecd.bench.sweep_paired import FailureLog, failures_path, read_failures, unpack_failures
from qecd.bench.sweep_tasks import ChunkResult, SweepTask
from qecd.extras import require


def _sinter():
    return require("sinter", purpose="qecd bench sweep (sinter's CSV)")


@dataclass(frozen=True)
class TaskProgress:
    """Committed totals of one task: the next chunk to run is ``chunks``. ``failed[k]`` is
    chunk ``k``'s failure blob (:func:`~qecd.bench.sweep_paired.pack_failures`), None where
    the store has none (a CSV written before failures were kept); it is not part of equality.
    """

    shots: int = 0
    errors: int = 0
    chunks: int = 0
    decode_ns: int = 0
    sample_ns: int = 0
    failed: tuple[bytes | None, ...] = field(default=(), compare=False, repr=False)

    def plus(self, r: ChunkResult) -> TaskProgress:
        """These totals with chunk ``r`` (the next one) committed."""
        blobs = self.failed + (None,) * (self.chunks - len(self.failed))
        return TaskProgress(self.shots + r.shots, self.errors + r.errors, self.chunks + 1,
                            self.decode_ns + r.decode_ns, self.sample_ns + r.sample_ns,
                            blobs[:self.chunks] + (r.failed,))


def chunk_stats(task: SweepTask, r: ChunkResult):
    """One committed chunk as a ``sinter.TaskStats``."""
    sinter = _sinter()
    return sinter.TaskStats(
        strong_id=task.strong_id, decoder=task.sinter_decoder,
        json_metadata=task.json_metadata, shots=r.shots, errors=r.errors, discards=0,
        seconds=r.decode_ns / 1e9,
        custom_counts=collections.Counter({"decode_ns": r.decode_ns,
                                           "sample_ns": r.sample_ns, "chunks": 1}))


def stats_from_csv_text(text: str) -> list:
    """sinter's reader over CSV text (merges lines of one strong id)."""
    import tempfile

    sinter = _sinter()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.csv")
        with open(path, "w") as f:
            f.write(text)
        return sinter.read_stats_from_csv_files(path)


def progress_from_stats(stats: list) -> dict[str, TaskProgress]:
    """``{strong_id: TaskProgress}`` of merged ``sinter.TaskStats`` (other rows ignored)."""
    out: dict[str, TaskProgress] = {}
    for s in stats:
        if "chunks" not in s.custom_counts:
            continue
        prev = out.get(s.strong_id, TaskProgress())
        c = s.custom_counts
        out[s.strong_id] = TaskProgress(prev.shots + s.shots, prev.errors + s.errors,
                                        prev.chunks + c["chunks"],
                                        prev.decode_ns + c.get("decode_ns", 0),
                                        prev.sample_ns + c.get("sample_ns", 0))
    return out


def read_progress(path: str | os.PathLike) -> dict[str, TaskProgress]:
    """What an existing sweep CSV already holds (empty if the file does not exist), with
    each chunk's failure blob from the failures file beside it
    (:func:`~qecd.bench.sweep_paired.failures_path`).

    A last line cut short by a crash is dropped from the file first (its chunk is rerun).
    A task whose blobs do not add up to its CSV totals (a CSV replaced by hand) keeps none;
    without a failures file (a store of older code) every blob is None.

    Raises
    ------
    ValueError
        The file exists but is not sinter CSV (its first line is not ``sinter.CSV_HEADER``),
        or its failures file is not one.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return {}
    sinter = _sinter()
    with open(path, "rb") as f:
        data = f.read()
    if not data.decode("utf-8", "replace").startswith(sinter.CSV_HEADER):
        raise ValueError(f"{path}: expected a sinter CSV starting with sinter.CSV_HEADER "
                         f"({sinter.CSV_HEADER[:40]}...), got {data[:40]!r}")
    if not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    progress = progress_from_stats(sinter.read_stats_from_csv_files(str(path)))
    blobs = read_failures(failures_path(path))
    return {sid: with_failures(p, blobs.get(sid, {})) for sid, p in progress.items()}


def with_failures(p: TaskProgress, blobs: dict[int, bytes]) -> TaskProgress:
    """``p`` with the blobs of its chunks ``0..chunks-1`` (None where missing); none at all
    when the complete set does not add up to ``p``'s shots and errors.

    >>> import numpy as np
    >>> from qecd.bench.sweep_paired import pack_failures
    >>> b = {0: pack_failures(np.array([0, 1], bool)), 1: pack_failures(np.array([1, 1], bool))}
    >>> with_failures(TaskProgress(shots=4, errors=3, chunks=2), b).failed == (b[0], b[1])
    True
    >>> with_failures(TaskProgress(shots=4, errors=2, chunks=2), b).failed
    (None, None)
    """
    failed = tuple(blobs.get(k) for k in range(p.chunks))
    if all(f is not None for f in failed):
        found = [unpack_failures(f) for f in failed]
        if (sum(n for n, _ in found), sum(i.size for _, i in found)) != (p.shots, p.errors):
            failed = (None,) * p.chunks
    return dataclasses.replace(p, failed=failed)


class CsvWriter:
    """Appends committed chunks to a sinter CSV, one flushed line each, and their failure
    blobs to a :class:`~qecd.bench.sweep_paired.FailureLog` when given one (before the CSV
    line, so a chunk in the CSV always has its blob).

    Parameters
    ----------
    file : text file
        Open for writing or appending.
    write_header : bool
        Write ``sinter.CSV_HEADER`` first (a new file).
    owns : bool
        Close ``file`` (and ``failures``) in :meth:`close` (files opened by :meth:`open`).
    failures : FailureLog, optional
        Where the chunks' failure blobs go (:meth:`open` opens ``<path>.failures.jsonl``).
    """

    def __init__(self, file: IO[str], *, write_header: bool, owns: bool = False,
                 failures: FailureLog | None = None) -> None:
        self._f = file
        self._owns = owns
        self._failures = failures
        if write_header:
            file.write(_sinter().CSV_HEADER + "\n")
            file.flush()

    @classmethod
    def open(cls, path: str | os.PathLike) -> CsvWriter:
        """Append to ``path``, writing the header if the file is new or empty, and to its
        failures file (started over when the CSV is new)."""
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        log = FailureLog.open(failures_path(path), fresh=new)
        return cls(open(path, "a"), write_header=new, owns=True, failures=log)

    def write(self, task: SweepTask, r: ChunkResult) -> None:
        if self._failures is not None and r.failed is not None:
            self._failures.write(task.strong_id, r.k, r.failed)
        self._f.write(chunk_stats(task, r).to_csv_line() + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._owns:
            self._f.close()
            if self._failures is not None:
                self._failures.close()
