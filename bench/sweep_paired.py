"""Paired LER ratios of a sweep: which shots failed, chunk by chunk, and the ratio's interval.

Every decoder of a sweep point decodes the same shots (chunk seeds do not depend on the
decoder), so its LER ratio to the reference decoder is a paired statistic, as in
``qecd bench accuracy``: :func:`qecd.bench.stats.paired_ratio_interval` of the shots where
both failed, only this decoder failed, and only the reference failed. Counting those needs
per-shot failures, so each chunk result carries its failing shots as a compact blob
(:func:`pack_failures`: bit-packed, or the failing indices when that is shorter) and a
resumable store keeps the blobs beside sinter's CSV, one JSON line per committed chunk
(:class:`FailureLog`, ``<csv>.failures.jsonl``; the CSV itself stays sinter's).

Pairing runs over the chunks both tasks committed (a task stopped by ``max_errors`` may hold
fewer chunks than the reference) and that both have a blob for: :func:`paired_fields`
reports those ``paired_shots``, and says in ``ler_ratio_note`` why an interval is missing
(a store written before failure blobs existed, say) instead of failing.

Example
-------
>>> import numpy as np
>>> ref = [pack_failures(np.array([1, 1, 0, 0, 0, 0], bool))]
>>> mine = [pack_failures(np.array([1, 0, 1, 1, 0, 0], bool))]
>>> paired_counts(mine, ref)
PairedCounts(shots=6, chunks=1, both=1, only_this=2, only_reference=1)
>>> unpack_failures(mine[0])
(6, array([0, 2, 3]))
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np

from qecd.bench.stats import paired_ratio_interval

#: First line of a failures file.
FAILURES_SCHEMA = "qecd.bench.sweep.failures/1"
_HEAD = struct.Struct("<cQ")  # encoding tag, shots


def pack_failures(failed: np.ndarray) -> bytes:
    """A per-shot failure vector as a blob: a tag, the shot count, then either the vector
    bit-packed (``numpy.packbits``, little bit order: ``shots / 8`` bytes) or the failing
    shots' indices as little-endian uint32 (4 bytes a failure), whichever is shorter.

    >>> import numpy as np
    >>> v = np.zeros(10_000, bool); v[[5, 70]] = True
    >>> len(pack_failures(v)), len(pack_failures(np.ones(10_000, bool)))
    (17, 1259)
    """
    failed = np.asarray(failed, dtype=bool).ravel()
    n = failed.size
    idx = np.flatnonzero(failed)
    if n <= 2**32 and idx.size * 4 < (n + 7) // 8:
        return _HEAD.pack(b"I", n) + idx.astype("<u4").tobytes()
    return _HEAD.pack(b"B", n) + np.packbits(failed, bitorder="little").tobytes()


def unpack_failures(blob: bytes) -> tuple[int, np.ndarray]:
    """``(shots, sorted indices of the failed shots)`` of a :func:`pack_failures` blob.

    Raises
    ------
    ValueError
        Not a blob of :func:`pack_failures`.
    """
    if len(blob) < _HEAD.size:
        raise ValueError(f"failure blob: expected at least {_HEAD.size} bytes, got {len(blob)}")
    tag, n = _HEAD.unpack_from(blob)
    body = blob[_HEAD.size:]
    if tag == b"I" and len(body) % 4 == 0:
        idx = np.frombuffer(body, dtype="<u4").astype(np.int64)
        if idx.size == 0 or (idx[-1] < n and np.all(np.diff(idx) > 0)):
            return n, idx
    elif tag == b"B" and len(body) == (n + 7) // 8:
        bits = np.unpackbits(np.frombuffer(body, np.uint8), count=n, bitorder="little")
        return n, np.flatnonzero(bits)
    raise ValueError(f"failure blob: tag {tag!r}, {n} shots and {len(body)} bytes do not fit")


@dataclass(frozen=True)
class PairedCounts:
    """Failures of two decoders on the shots both decoded (``chunks`` common chunks)."""

    shots: int
    chunks: int
    both: int
    only_this: int
    only_reference: int


def paired_counts(mine: Sequence[bytes | None], reference: Sequence[bytes | None]
                  ) -> PairedCounts:
    """Both/only counts over chunks ``k`` that both sequences hold a blob for with the same
    shot count (``mine[k]`` and ``reference[k]`` decode the same shots)."""
    shots = chunks = both = only_this = only_ref = 0
    for a, b in zip(mine, reference, strict=False):  # chunks past the shorter: unpaired
        if a is None or b is None:
            continue
        na, ia = unpack_failures(a)
        nb, ib = unpack_failures(b)
        if na != nb:
            continue
        common = np.intersect1d(ia, ib, assume_unique=True).size
        shots += na
        chunks += 1
        both += common
        only_this += ia.size - common
        only_ref += ib.size - common
    return PairedCounts(shots, chunks, both, only_this, only_ref)


class _Progress(Protocol):  # TaskProgress (qecd.bench.sweep_store) without importing it
    shots: int
    errors: int
    chunks: int
    failed: tuple[bytes | None, ...]


def paired_fields(mine: _Progress, reference: _Progress | None, *, is_reference: bool
                  ) -> dict[str, Any]:
    """A sweep row's LER ratio to the reference, paired over the shots both decoded.

    Returns
    -------
    dict
        ``ler_ratio_to_reference`` (on the paired shots; without failure blobs, the ratio of
        the two tasks' rates), ``ler_ratio_to_reference_ci95`` (``[lo, hi]``, 95%:
        :func:`~qecd.bench.stats.paired_ratio_interval`; ``[1, 1]`` for the reference's
        own row; None when it cannot be computed), ``paired_shots``, ``both_failed``,
        ``only_this_failed``, ``only_reference_failed`` (None without blobs) and
        ``ler_ratio_note`` (None, or why the interval is missing or covers fewer shots).

    Examples
    --------
    >>> from qecd.bench.sweep_store import TaskProgress
    >>> import numpy as np
    >>> ref = TaskProgress(shots=4, errors=2, chunks=1,
    ...                    failed=(pack_failures(np.array([1, 1, 0, 0], bool)),))
    >>> old = TaskProgress(shots=4, errors=1, chunks=1)  # a store without failure blobs
    >>> f = paired_fields(old, ref, is_reference=False)
    >>> f["ler_ratio_to_reference"], f["ler_ratio_to_reference_ci95"], f["paired_shots"]
    (0.5, None, None)
    >>> f["ler_ratio_note"]
    'no per-shot failures stored for this decoder: ratio of the two rates, no paired interval'
    >>> paired_fields(ref, ref, is_reference=True)["ler_ratio_to_reference_ci95"]
    [1.0, 1.0]
    >>> later = TaskProgress(shots=8, errors=3, chunks=2,  # chunk 0 from an older store
    ...                      failed=(None, pack_failures(np.array([0, 1, 1, 0], bool))))
    >>> paired_fields(later, ref, is_reference=False)["ler_ratio_note"]
    'no chunk with stored failures of both decoders: ratio of the two rates, no paired interval'
    """
    out: dict[str, Any] = dict(ler_ratio_to_reference=None, ler_ratio_to_reference_ci95=None,
                               paired_shots=None, both_failed=None, only_this_failed=None,
                               only_reference_failed=None, ler_ratio_note=None)
    if reference is None or reference.shots == 0:
        out["ler_ratio_note"] = "the reference decoder has no committed shots at this point"
        return out
    if is_reference:  # its own failures, exactly: no blobs needed
        if mine.errors == 0:
            out["ler_ratio_note"] = "the reference did not fail: ratio undefined"
        else:
            out.update(ler_ratio_to_reference=1.0, ler_ratio_to_reference_ci95=[1.0, 1.0],
                       paired_shots=mine.shots, both_failed=mine.errors, only_this_failed=0,
                       only_reference_failed=0)
        return out
    mine_failed = _blobs(mine)
    ref_failed = _blobs(reference)
    c = paired_counts(mine_failed, ref_failed)
    if c.shots == 0:  # nothing to pair: say why, and give the ratio of the two rates
        if not any(mine_failed) or not any(ref_failed):
            whose = "this decoder" if not any(mine_failed) else "the reference"
            why = f"no per-shot failures stored for {whose}"
        else:
            why = "no chunk with stored failures of both decoders"
        if reference.errors:
            out["ler_ratio_to_reference"] = (mine.errors / mine.shots) / (
                reference.errors / reference.shots)
        out["ler_ratio_note"] = f"{why}: ratio of the two rates, no paired interval"
        return out
    out.update(paired_shots=c.shots, both_failed=c.both, only_this_failed=c.only_this,
               only_reference_failed=c.only_reference)
    if c.shots < max(mine.shots, reference.shots):
        out["ler_ratio_note"] = (f"paired over the {c.shots} shots of the {c.chunks} chunks "
                                 f"both decoders committed with stored failures (this decoder "
                                 f"{mine.shots} shots, the reference {reference.shots})")
    ratio, lo, hi = paired_ratio_interval(c.both, c.only_this, c.only_reference)
    if ratio is None:
        out["ler_ratio_note"] = (f"the reference did not fail on the {c.shots} paired shots: "
                                 "ratio undefined")
        return out
    out["ler_ratio_to_reference"] = ratio
    out["ler_ratio_to_reference_ci95"] = [lo, hi]
    return out


def _blobs(p: _Progress) -> tuple[bytes | None, ...]:
    """Blobs of chunks ``0..chunks-1`` (None where missing)."""
    f = tuple(p.failed)[:p.chunks]
    return f + (None,) * (p.chunks - len(f))


# --------------------------------------------------------------------------- the store

def failures_path(csv_path: str | os.PathLike) -> str:
    """The failures file kept beside a sweep CSV.

    >>> failures_path("runs/sweep.csv")
    'runs/sweep.csv.failures.jsonl'
    """
    return os.fspath(csv_path) + ".failures.jsonl"


def read_failures(path: str | os.PathLike) -> dict[str, dict[int, bytes]]:
    """``{strong_id: {k: blob}}`` from a failures file (empty if it does not exist).

    A last line cut short by a crash is dropped from the file (its chunk's CSV line was not
    written either: :class:`FailureLog` writes the blob first). A chunk written twice (its
    CSV line was lost in a crash and the chunk rerun) keeps the later line; the blobs are the
    same, the chunk being a pure function of (task, k).

    Raises
    ------
    ValueError
        The file exists but is not a failures file.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return {}
    lines = _drop_partial_last_line(path).decode("utf-8", "replace").splitlines()
    try:
        head = json.loads(lines[0]) if lines else {}
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("schema") != FAILURES_SCHEMA:
        raise ValueError(f"{path}: expected a first line with schema {FAILURES_SCHEMA!r}, "
                         f"got {lines[0][:60] if lines else ''!r}")
    out: dict[str, dict[int, bytes]] = {}
    for line in lines[1:]:
        rec = json.loads(line)
        out.setdefault(rec["id"], {})[int(rec["k"])] = base64.b64decode(rec["failed"])
    return out


def _drop_partial_last_line(path: str | os.PathLike) -> bytes:
    """Cut a last line without its newline off the file; the file's remaining bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    return data


class FailureLog:
    """Appends committed chunks' failure blobs to a failures file, one flushed JSON line each:
    ``{"id": strong_id, "k": k, "shots": n, "errors": e, "failed": base64 blob}`` under a
    first line ``{"schema": "qecd.bench.sweep.failures/1", ...}``.

    Parameters
    ----------
    file : text file
        Open for writing or appending.
    write_header : bool
        Write the schema line first (a new file).
    owns : bool
        Close ``file`` in :meth:`close`.

    Examples
    --------
    >>> import io, numpy as np
    >>> f = io.StringIO()
    >>> log = FailureLog(f, write_header=True)
    >>> log.write("abc", 0, pack_failures(np.array([0, 1, 0], bool)))
    >>> json.loads(f.getvalue().splitlines()[1])["errors"]
    1
    """

    def __init__(self, file: IO[str], *, write_header: bool, owns: bool = False) -> None:
        self._f = file
        self._owns = owns
        if write_header:
            file.write(json.dumps({"schema": FAILURES_SCHEMA, "about": (
                "per-shot failures of each committed sweep chunk, beside the sinter CSV "
                "(qecd.bench.sweep_paired)")}) + "\n")
            file.flush()

    @classmethod
    def open(cls, path: str | os.PathLike, *, fresh: bool) -> FailureLog:
        """Append to ``path`` (start it over when ``fresh``: its CSV is new)."""
        new = fresh or not os.path.exists(path) or os.path.getsize(path) == 0
        if not new:
            _drop_partial_last_line(path)
        return cls(open(path, "w" if new else "a"), write_header=new, owns=True)

    def write(self, strong_id: str, k: int, blob: bytes) -> None:
        n, idx = unpack_failures(blob)
        self._f.write(json.dumps({"id": strong_id, "k": k, "shots": n, "errors": int(idx.size),
                                  "failed": base64.b64encode(blob).decode("ascii")}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._owns:
            self._f.close()
