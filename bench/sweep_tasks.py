"""The unit of work of a distributed sweep: a task and its seeded shot chunks.

A :class:`SweepTask` is one (experiment spec, decoder) pair with its limits, as a
``sinter.Task`` is. Its shots are cut into chunks of ``chunk_shots``; chunk ``k`` is sampled
with :func:`chunk_seed` (spec, sweep seed, k), so the result of any chunk is a pure function
of (task, k): whichever worker runs it, however many workers there are, and however often it
is retried after a worker dies. Every decoder of a spec sees the same shots (the seed does
not depend on the decoder), so failure counts are paired across decoders; each chunk result
says which of its shots failed, for the paired LER ratios (:mod:`qecd.bench.sweep_paired`).

A task's result is the sum over its committed chunks ``0..K-1``, where ``K`` is the first
count at which the shots reach ``max_shots`` or the failures reach ``max_errors``
(:meth:`SweepTask.is_done`). Chunks are committed in order, so the totals do not depend on
which chunk finished first either.

Example
-------
>>> t = SweepTask("repetition:d=3,p=0.02", "pymatching", seed=1, max_shots=500,
...               chunk_shots=200)
>>> [t.chunk_size(k) for k in range(4)]
[200, 200, 100, 0]
>>> r = run_chunk(t, 0)
>>> r.shots, 0 < r.errors < 200, r == run_chunk(t, 0)
(200, True, True)
>>> t.sinter_decoder, t.json_metadata["d"], t.json_metadata["r"]
('qecd-pymatching', 3, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from qecd.bench.sweep_paired import pack_failures
from qecd.codes import build_experiment, parse_spec

#: The qLDPC reference decoder (ldpc's BP+OSD-CS7), not a qecd decoder name.
LDPC_REFERENCE = "ldpc-bposd"
#: Default shots per chunk: ~0.01-1 s of work at d = 3-11, small enough that a lost worker
#: loses little and ``max_errors`` stops a task close to its target.
DEFAULT_CHUNK_SHOTS = 10_000


def chunk_seed(spec: str, seed: int, k: int) -> int:
    """The 63-bit sampling seed of chunk ``k`` of every task of ``spec`` in a sweep seeded
    ``seed`` (the same for every decoder, so they decode the same shots).

    >>> chunk_seed("repetition:d=3", 1, 0) == chunk_seed("repetition:d=3", 1, 0)
    True
    >>> len({chunk_seed("repetition:d=3", 1, k) for k in range(100)})
    100
    """
    canon = str(parse_spec(spec))
    h = hashlib.sha256(f"qecd-sweep-chunk:{canon}:{int(seed)}:{int(k)}".encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


@dataclass(frozen=True)
class SweepTask:
    """One (spec, decoder) point of a sweep and its stopping rule.

    Parameters
    ----------
    spec : str
        Experiment spec (canonicalised on construction).
    decoder : str
        A qecd decoder name (``uf``, ``pymatching-w10c5``) or ``ldpc-bposd``.
    seed : int
        Sweep seed in [0, 2**63).
    max_shots : int
        Shots at most.
    max_errors : int or None
        Stop once this many failures are committed (None: run ``max_shots``).
    chunk_shots : int
        Shots per chunk (the last chunk is cut to ``max_shots``).
    time_repeats : int
        Decode each chunk this many times and keep the fastest decode time (failures are
        counted on the first pass).
    """

    spec: str
    decoder: str
    seed: int
    max_shots: int
    max_errors: int | None = None
    chunk_shots: int = DEFAULT_CHUNK_SHOTS
    time_repeats: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", str(parse_spec(self.spec)))
        for field, v, lo in (("max_shots", self.max_shots, 1), ("chunk_shots", self.chunk_shots, 1),
                             ("time_repeats", self.time_repeats, 1)):
            if not isinstance(v, int) or v < lo:
                raise ValueError(f"{field}: expected an integer >= {lo}, got {v!r}")
        if self.max_errors is not None and (not isinstance(self.max_errors, int)
                                            or self.max_errors < 1):
            raise ValueError(f"max_errors: expected an integer >= 1 or None, "
                             f"got {self.max_errors!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed: expected an integer in [0, 2**63), got {self.seed!r}")
        if self.decoder != LDPC_REFERENCE:
            from qecd.decoder.registry import parse_decoder_name

            parse_decoder_name(self.decoder)

    # -- identity ---------------------------------------------------------------------------
    @property
    def sinter_decoder(self) -> str:
        """The decoder column of the CSV (``qecd-<name>``; ``ldpc-bposd`` as is)."""
        return self.decoder if self.decoder == LDPC_REFERENCE else "qecd-" + self.decoder

    @cached_property
    def strong_id(self) -> str:
        """sha256 hex of (canonical spec, decoder column, seed, chunk_shots): the chunks'
        shots depend on exactly these, so rows with one id are one sequence of shots."""
        key = json.dumps({"spec": self.spec, "decoder": self.sinter_decoder,
                          "seed": self.seed, "chunk_shots": self.chunk_shots},
                         sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(key.encode()).hexdigest()

    @cached_property
    def json_metadata(self) -> dict[str, Any]:
        """sinter's ``json_metadata``: every spec field (basis spelled ``b``), the canonical
        spec, the seed and chunk size, and the decoder's settings."""
        s = parse_spec(self.spec)
        fields = s.as_dict()
        meta: dict[str, Any] = {"family": s.family,
                                **{k: v for k, v in fields.items() if k != "basis"},
                                "b": fields.get("basis", "z"), "spec": self.spec,
                                "sample_seed": self.seed, "chunk_shots": self.chunk_shots}
        meta.update(decoder_settings(self.decoder))
        return meta

    # -- the chunk schedule -------------------------------------------------------------------
    def chunk_size(self, k: int) -> int:
        """Shots of chunk ``k`` (0 past ``max_shots``)."""
        return max(0, min(self.chunk_shots, self.max_shots - k * self.chunk_shots))

    def is_done(self, shots: int, errors: int) -> bool:
        """Whether committed totals meet the stopping rule."""
        return shots >= self.max_shots or (self.max_errors is not None
                                           and errors >= self.max_errors)


def decoder_settings(name: str) -> dict[str, Any]:
    """The settings a decoder name stands for (they go into sinter's ``json_metadata``).

    >>> decoder_settings("uf-w10c5")
    {'backend': 'uf', 'window': 10, 'commit': 5}
    """
    if name == LDPC_REFERENCE:
        import inspect

        from qecd.bench.ldpc_reference import LdpcBpOsd

        sig = inspect.signature(LdpcBpOsd.__init__)
        opts = {k: p.default for k, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
        return {"backend": name, "bp_method": "minimum_sum", "osd_method": "osd_cs", **opts}
    from qecd.decoder.registry import parse_decoder_name

    dn = parse_decoder_name(name)
    return {"backend": dn.backend, "window": dn.window, "commit": dn.commit}


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk contributes: counts and times (ns), which shots failed (a blob of
    :func:`qecd.bench.sweep_paired.pack_failures`; None from older code), and where it ran."""

    strong_id: str
    k: int
    shots: int
    errors: int
    decode_ns: int
    sample_ns: int
    worker: str = ""
    failed: bytes | None = None

    def _key(self) -> tuple:  # times and where it ran are not part of the result
        return (self.strong_id, self.k, self.shots, self.errors, self.failed)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChunkResult) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@lru_cache(maxsize=16)
def _compiled(spec: str, decoder: str):
    """(experiment, decode function of bit-packed shots) built once per worker process."""
    exp = build_experiment(spec)
    if decoder == LDPC_REFERENCE:
        from qecd.bench.ldpc_reference import LdpcBpOsd

        dec = LdpcBpOsd(exp.dem)
        nd = exp.dem.num_detectors

        def decode(packed: np.ndarray) -> np.ndarray:
            dets = np.unpackbits(packed, axis=1, count=nd, bitorder="little")
            return np.packbits(dec.decode_batch(dets), axis=1, bitorder="little")
        return exp, decode
    from qecd.decoder.sinter_plugin import QecdSinterDecoder

    compiled = QecdSinterDecoder(decoder).compile_decoder_for_dem(dem=exp.dem)

    def decode(packed: np.ndarray) -> np.ndarray:
        return compiled.decode_shots_bit_packed(bit_packed_detection_event_data=packed)
    return exp, decode


def run_chunk(task: SweepTask, k: int) -> ChunkResult:
    """Sample chunk ``k`` of ``task`` (seed :func:`chunk_seed`) and decode it.

    The decoder is built once per process and spec (an LRU cache of 16), so a worker pays
    for compilation once per task it meets.

    Returns
    -------
    ChunkResult
        ``errors`` counts shots whose predicted observable flips differ from the true ones
        in any observable, ``failed`` says which (:func:`~qecd.bench.sweep_paired.pack_failures`
        of that per-shot vector); ``decode_ns`` is the fastest of ``task.time_repeats``
        decodes.

    Examples
    --------
    >>> from qecd.bench.sweep_paired import unpack_failures
    >>> t = SweepTask("repetition:d=3,p=0.05", "pymatching", seed=2, max_shots=300)
    >>> r = run_chunk(t, 0)
    >>> n, idx = unpack_failures(r.failed)
    >>> n == r.shots == 300, idx.size == r.errors > 0
    (True, True)
    """
    n = task.chunk_size(k)
    exp, decode = _compiled(task.spec, task.decoder)
    t0 = time.perf_counter_ns()
    dets, obs = exp.sample(n, seed=chunk_seed(task.spec, task.seed, k), bit_packed=True)
    sample_ns = time.perf_counter_ns() - t0
    best = None
    failed = np.zeros(n, dtype=bool)
    for i in range(task.time_repeats):
        t0 = time.perf_counter_ns()
        pred = decode(dets)
        dt = time.perf_counter_ns() - t0
        best = dt if best is None else min(best, dt)
        if i == 0 and n:
            failed = np.any(pred != obs, axis=1)
    return ChunkResult(task.strong_id, k, n, int(failed.sum()), int(best or 0), sample_ns,
                       worker=_worker_name(), failed=pack_failures(failed))


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid:{os.getpid()}"
