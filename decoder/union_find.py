"""The ``uf`` backend: weighted union-find + peeling, compiled with Numba.

The decoder reads the DEM's matching graph (:meth:`FaultTable.from_dem` with ``graph=True``:
every fault is an edge between two detectors, or between one detector and the boundary node
``num_detectors``), turns fault probabilities into small integer weights
``round(scale * log((1 - p) / p))`` with the largest weight equal to ``weight_resolution``, and
decodes with the kernels of :mod:`qecd.decoder._uf_kernels`: all odd clusters grow together in
one global time, event by event, merge on fully grown edges, and the growth forest is peeled
into a correction. A returned fault set always reproduces the syndrome exactly. Isolated
pairs of neighbouring events (most events at low ``p``) are pre-matched where that is provably
union-find's own first move, tentatively, so the output is exactly plain union-find's
(``prematch=False`` runs without it; the tests check both give the same fault sets).

Accuracy: union-find is not minimum-weight matching. Two isolated detection events meet along
a shortest path (uniform growth is a bidirectional Dijkstra), but within a cluster of three or
more events the peeling forest, not a matching, decides the pairing. Measured on the rotated
surface code memory experiment (rounds = d, uniform circuit-level noise, 100k shots, same
shots for both): logical error rate 1.07-1.10x PyMatching's at d=5 and 1.15-1.28x at d=7,
p = 0.3% and 0.5%. With measurement-dominated noise the gap is wider: 571 failures against
PyMatching's 432 (1.32x) on stim's ``surface_code:rotated_memory_z``, d = 5, 5 rounds,
``after_clifford_depolarization=5e-4, before_measure_flip_probability=0.03`` (60,000 shots,
seed 99), and 1.51x on a d = 9 repetition code with 10% measurement flips (docs/accuracy.md).
``weight_resolution`` is not neutral above 16: on the same 60,000 shots, 16/32/128/1024/4096
gave 573/571/571/609/571 failures there, and 928/914/897/892/891 at uniform p = 0.5%
(PyMatching 841); 12 starts to cost accuracy.

Speed (``qecd bench uf-vs-pymatching``, same shots, this 2-core VM): ``decode_batch_packed``
takes 0.3-0.5x PyMatching's ``decode_batch`` time at d = 5..11, p = 0.1% and 0.3%.

No solution: if a connected component of the graph has no boundary edge and the syndrome has
odd parity on it, no set of faults explains the syndrome. The kernels then return
``UF_NO_BOUNDARY`` (-1) and never loop; the Python methods raise :class:`DecoderError`.

Real-time use: :meth:`UnionFindDecoder.kernel_args` returns the arrays the single-shot kernel
:func:`uf_decode_into` (re-exported here from :mod:`qecd.decoder._uf_kernels`) takes, so a
Numba server loop can call it without Python. One workspace serves one decode at a time:
give each thread its own (``kernel_args(fresh_workspace=True)``); the kernels are ``nogil``.

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder import make_decoder
>>> c = stim.Circuit.generated("repetition_code:memory", distance=3, rounds=2,
...                            after_clifford_depolarization=0.01)
>>> dec = make_decoder("uf", c.detector_error_model(decompose_errors=True))
>>> syndrome = dec.faults.syndrome_of([0])
>>> bool((dec.faults.syndrome_of(dec.decode_to_faults(syndrome)) == syndrome).all())
True
>>> dec.decode(syndrome).tolist() == dec.faults.obs_mask[0].tolist()
True
"""

from __future__ import annotations

import numpy as np
import stim

from qecd.decoder import _uf_kernels as _k
from qecd.decoder._uf_kernels import UF_NO_BOUNDARY, uf_decode_into
from qecd.decoder.base import Decoder
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError

__all__ = ["UF_NO_BOUNDARY", "UnionFindDecoder", "integer_weights", "uf_decode_into"]

#: default integer weight of the least likely edge (resolution of the weight rounding)
DEFAULT_WEIGHT_RESOLUTION = 32
_MAX_WEIGHT_RESOLUTION = 1 << 12  # growth times are int32 in the kernels: keep them small
#: the keyword options :meth:`UnionFindDecoder.from_dem` accepts
OPTIONS = ("weight_resolution", "prematch")


def integer_weights(probabilities: np.ndarray, resolution: int) -> np.ndarray:
    """Integer edge weights: ``log((1-p)/p)`` scaled so the largest is ``resolution``.

    Every weight is at least 1 (an edge with ``p`` near 1/2 still costs one step of growth).

    Parameters
    ----------
    probabilities : numpy.ndarray of float64, shape (E,)
        Edge probabilities in (0, 1/2).
    resolution : int
        The weight of the least likely edge.

    Returns
    -------
    numpy.ndarray of int32, shape (E,)

    Examples
    --------
    >>> integer_weights(np.array([0.01, 0.1, 0.001]), 10).tolist()
    [7, 3, 10]
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 0.5 - 1e-12)
    llr = np.log1p(-p) - np.log(p)
    if llr.size == 0:
        return np.zeros(0, dtype=np.int32)
    scale = resolution / float(llr.max())
    return np.maximum(1, np.rint(llr * scale)).astype(np.int32)


def _writable(a: np.ndarray) -> np.ndarray:
    # Numba types read-only arrays separately: copying keeps every call on the warmed kernels
    return a if a.flags.writeable else a.copy()


class UnionFindDecoder(Decoder):
    """Weighted union-find decoder over a stim DEM's matching graph.

    Parameters
    ----------
    dem : stim.DetectorErrorModel
        Graph-like (every error component flips 1 or 2 detectors), e.g. generated with
        ``decompose_errors=True``; ``repeat`` blocks are flattened.
    weight_resolution : int, optional
        Integer weight given to the least likely edge (default 32, at most 4096); the others
        scale with their log-likelihood ratio. Larger is more faithful to the probabilities;
        accuracy stops improving around 16 on circuit-level surface-code noise.
    prematch : bool, optional
        Pre-match isolated pairs where provably exact (default True). Only speed changes.

    Raises
    ------
    DemError
        If the DEM is not graph-like.
    DecoderError
        On a bad option.

    Examples
    --------
    >>> import numpy as np, stim
    >>> dem = stim.DetectorErrorModel('''
    ...     error(0.1) D0 L0
    ...     error(0.1) D0 D1
    ...     error(0.1) D1 D2
    ...     error(0.1) D2
    ... ''')
    >>> dec = UnionFindDecoder.from_dem(dem)
    >>> dec.decode_to_faults(np.array([1, 1, 0], np.uint8)).tolist()
    [1]
    >>> dec.decode_batch(np.array([[1, 0, 0], [0, 0, 1]], np.uint8)).tolist()
    [[1], [0]]
    """

    name = "uf"
    graph_like = True
    compiles_streams = True

    @classmethod
    def compile_stream(cls, stream):
        """The stream's plan compiled for the Numba loops
        (:class:`~qecd.decoder.compiled_stream.CompiledStream`, every window decoded by
        :mod:`qecd.decoder._uf_windows`)."""
        from qecd.decoder._uf_windows import compile_uf_windows
        from qecd.decoder.compiled_stream import CompiledStream

        return CompiledStream(stream.plan, compile_uf_windows(stream.plan,
                                                              **stream.backend_options))

    def __init__(self, dem: stim.DetectorErrorModel, *,
                 weight_resolution: int = DEFAULT_WEIGHT_RESOLUTION,
                 prematch: bool = True) -> None:
        if (isinstance(weight_resolution, bool) or not isinstance(weight_resolution, int)
                or not 1 <= weight_resolution <= _MAX_WEIGHT_RESOLUTION):
            raise DecoderError(
                f"uf: option 'weight_resolution' expected an int in 1..{_MAX_WEIGHT_RESOLUTION},"
                f" got {weight_resolution!r}"
            )
        if not isinstance(prematch, bool):
            raise DecoderError(f"uf: option 'prematch' expected a bool, got {prematch!r}")
        self.weight_resolution = weight_resolution
        self.faults = FaultTable.from_dem(dem, graph=True)
        t = self.faults
        nd = t.num_detectors
        ne = t.num_faults
        edge_uv = np.full((ne, 2), nd, dtype=np.int32)  # boundary edges end at node nd
        sizes = np.diff(t.det_indptr)
        first = t.det_indices[t.det_indptr[:-1]] if ne else np.zeros(0, np.int32)
        edge_uv[:, 0] = first
        two = np.nonzero(sizes == 2)[0]
        edge_uv[two, 1] = t.det_indices[t.det_indptr[two] + 1]
        self.edge_uv = edge_uv
        self.edge_weights = integer_weights(t.probabilities, weight_resolution)
        self.prematch = prematch
        self._args = _k.build_kernel_args(nd, edge_uv, self.edge_weights, prematch)
        self._out_faults = np.zeros(nd + 1, dtype=np.int64)
        self._obs_dense = np.ascontiguousarray(t.obs_mask, dtype=np.uint8).reshape(
            ne, t.num_observables)
        self._obs_packed = np.ascontiguousarray(
            np.packbits(self._obs_dense, axis=1, bitorder="little").reshape(
                ne, (t.num_observables + 7) // 8))
        self._warm_up()

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object) -> UnionFindDecoder:
        """Build and warm a decoder; ``options``: ``weight_resolution`` (int), ``prematch``.

        >>> import stim
        >>> UnionFindDecoder.from_dem(stim.DetectorErrorModel("error(0.1) D0"), colour=1)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        qecd.errors.DecoderError: uf: unknown options ['colour']; allowed: prematch, ...
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise DecoderError(
                f"uf: unknown options {unknown}; allowed: {', '.join(sorted(OPTIONS))}")
        return cls(dem, **options)  # type: ignore[arg-type]

    # -- kernels for callers that stay in Numba ----------------------------------------------
    def kernel_args(self, fresh_workspace: bool = False) -> tuple:
        """The arrays :func:`~qecd.decoder._uf_kernels.uf_decode_into` takes after the syndrome.

        Call as ``uf_decode_into(syndrome_u8, *dec.kernel_args(), out_faults)`` with
        ``out_faults`` int64 of length ``num_detectors + 1``; it returns the number of fault
        ids written, or ``UF_NO_BOUNDARY`` (-1).

        Parameters
        ----------
        fresh_workspace : bool
            False: this decoder's own workspace (not for use concurrently with its methods).
            True: the same (read-only) graph arrays with a new workspace, for another thread.

        Returns
        -------
        tuple of 15 numpy arrays
            The graph (``adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd``) then the workspace
            (``parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack``), laid
            out as :mod:`qecd.decoder._uf_kernels` documents.

        Examples
        --------
        >>> import numpy as np, stim
        >>> from qecd.decoder._uf_kernels import uf_decode_into
        >>> dec = UnionFindDecoder.from_dem(stim.DetectorErrorModel("error(0.1) D0 L0"))
        >>> out = np.zeros(dec.num_detectors + 1, np.int64)
        >>> n = uf_decode_into(np.array([1], np.uint8), *dec.kernel_args(), out)
        >>> out[:n].tolist()
        [0]
        """
        if not fresh_workspace:
            return self._args
        return self._args[:6] + _k.new_workspace(self.num_detectors, self.edge_weights)

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        # an unpickled decoder (e.g. in a sinter worker) warms up again: no later call compiles
        self.__dict__.update(state)
        self._warm_up()

    def _warm_up(self) -> None:
        nd = self.num_detectors
        zero = np.zeros(nd, dtype=np.uint8)
        one = zero.copy()
        if self.faults.num_faults:
            one = self.faults.syndrome_of([0])
        for s in (zero, one):
            _k.uf_decode_into(s, *self._args, self._out_faults)
            self._run_batch(s.reshape(1, nd))
            self._run_batch_packed(np.packbits(s.reshape(1, nd), axis=1, bitorder="little"))

    # -- raw batch runners (arrays already checked and contiguous) ---------------------------
    def _run_batch(self, dets: np.ndarray) -> np.ndarray:
        dets = _writable(dets)
        out = np.zeros((dets.shape[0], self.num_observables), dtype=np.uint8)
        bad = _k.uf_decode_batch(dets, *self._args, self._out_faults, self._obs_dense, out)
        if bad >= 0:
            raise self._no_solution(bad)
        return out

    def _run_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        packed = _writable(packed)
        out = np.zeros((packed.shape[0], (self.num_observables + 7) // 8), dtype=np.uint8)
        bad = _k.uf_decode_batch_packed(packed, self.num_detectors, *self._args,
                                        self._out_faults, self._obs_packed, out)
        if bad >= 0:
            raise self._no_solution(bad)
        return out

    @classmethod
    def _no_solution(cls, shot: int) -> DecoderError:
        return DecoderError(
            f"{cls.name}: shot {shot}: the syndrome has odd parity on a connected component of "
            "the matching graph that has no boundary edge, so no set of faults explains it"
        )

    # -- the Decoder interface ----------------------------------------------------------------
    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids (int64, sorted) whose detectors XOR to ``syndrome`` (uint8 (D,))."""
        s = _writable(np.ascontiguousarray(self._check_syndrome(syndrome)))
        n = _k.uf_decode_into(s, *self._args, self._out_faults)
        if n < 0:
            raise self._no_solution(0)
        return np.sort(self._out_faults[:n])

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        """Predicted observable flips (uint8, shape (num_observables,)) for one shot."""
        s = np.ascontiguousarray(self._check_syndrome(syndrome))
        return self._run_batch(s.reshape(1, -1))[0]

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        """Predictions (uint8, (shots, num_observables)) for uint8/bool (shots, D) events."""
        return self._run_batch(np.ascontiguousarray(self._check_batch(dets)))

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        """uint8 (shots, ceil(D/8)) in, uint8 (shots, ceil(O/8)) out, little bit order."""
        p = np.asarray(packed)
        nbytes = (self.num_detectors + 7) // 8
        if p.ndim != 2 or p.shape[1] != nbytes or p.dtype not in (np.uint8, np.int8):
            raise DecoderError(
                f"packed batch: expected uint8 of shape (shots, {nbytes}), got {p.dtype} "
                f"{p.shape}"
            )
        return self._run_batch_packed(np.ascontiguousarray(p.view(np.uint8)))


class PackedCoreRunner:
    """Batch runners of a union-find variant whose kernel decodes bit-packed shots only:
    mixed in before :class:`UnionFindDecoder`, it turns the variant's
    ``_run_packed_core(packed)`` (C-contiguous uint8 shots in, packed observable flips out)
    into ``_run_batch`` and ``_run_batch_packed``; ``_obs_packed_1`` is the packed
    observable table with at least one column, as the kernels index it."""

    @property
    def _obs_packed_1(self) -> np.ndarray:
        op = self._obs_packed
        if op.shape[1] == 0:
            return np.zeros((op.shape[0], 1), np.uint8)
        return op

    def _run_batch(self, dets: np.ndarray) -> np.ndarray:
        packed = np.packbits(np.asarray(dets, np.uint8), axis=1, bitorder="little")
        out = self._run_packed_core(np.ascontiguousarray(packed))
        return np.unpackbits(out, axis=1, count=self.num_observables,
                             bitorder="little").astype(np.uint8)

    def _run_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        return self._run_packed_core(np.ascontiguousarray(packed, dtype=np.uint8))
