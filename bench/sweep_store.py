"""The sweep's results file: sinter's CSV, appended chunk by chunk, read back to resume.

Every committed chunk becomes one line, ``sinter.TaskStats(...).to_csv_line()`` under
``sinter.CSV_HEADER``, so ``sinter plot``/``combine`` read the file as it grows. Integer extras
are ``custom_counts`` (they add up when sinter merges lines): ``decode_ns`` and ``sample_ns``
(time), and ``chunks`` = 1 per line. A task's chunks are committed in order, so a strong id
with ``chunks = K`` holds exactly chunks ``0..K-1``: :func:`read_progress` gives where each
task resumes, as ``sinter collect --save_resume_filepath`` does. ``seconds`` is the chunk's
decode time (sampling excluded, as in ``qecd bench sweep``'s other outputs).

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
import os
from dataclasses import dataclass
from typing import IO

from qecd.bench.sweep_tasks import ChunkResult, SweepTask
from qecd.extras import require


def _sinter():
    return require("sinter", purpose="qecd bench sweep (sinter's CSV)")


@dataclass(frozen=True)
class TaskProgress:
    """Committed totals of one task: the next chunk to run is ``chunks``."""

    shots: int = 0
    errors: int = 0
    chunks: int = 0
    decode_ns: int = 0
    sample_ns: int = 0

    def plus(self, r: ChunkResult) -> TaskProgress:
        return TaskProgress(self.shots + r.shots, self.errors + r.errors, self.chunks + 1,
                            self.decode_ns + r.decode_ns, self.sample_ns + r.sample_ns)


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
    """What an existing sweep CSV already holds (empty if the file does not exist).

    A last line cut short by a crash is dropped from the file first (its chunk is rerun).

    Raises
    ------
    ValueError
        The file exists but is not sinter CSV (its first line is not ``sinter.CSV_HEADER``).
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
    return progress_from_stats(sinter.read_stats_from_csv_files(str(path)))


class CsvWriter:
    """Appends committed chunks to a sinter CSV, one flushed line each.

    Parameters
    ----------
    file : text file
        Open for writing or appending.
    write_header : bool
        Write ``sinter.CSV_HEADER`` first (a new file).
    owns : bool
        Close ``file`` in :meth:`close` (files opened by :meth:`open`).
    """

    def __init__(self, file: IO[str], *, write_header: bool, owns: bool = False) -> None:
        self._f = file
        self._owns = owns
        if write_header:
            file.write(_sinter().CSV_HEADER + "\n")
            file.flush()

    @classmethod
    def open(cls, path: str | os.PathLike) -> CsvWriter:
        """Append to ``path``, writing the header if the file is new or empty."""
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        return cls(open(path, "a"), write_header=new, owns=True)

    def write(self, task: SweepTask, r: ChunkResult) -> None:
        self._f.write(chunk_stats(task, r).to_csv_line() + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._owns:
            self._f.close()
