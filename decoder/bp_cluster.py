"""The ``bp-cluster`` backend: Numba belief propagation, then BP-guided clusters (qLDPC codes).

Min-sum BP (scaling 0.625 by default) runs on the Tanner graph of the DEM's check matrix
(detectors x faults, hyperedges allowed) and stops as soon as its hard decision reproduces the
syndrome. When it does not converge, clusters grow from the flagged detectors, most likely
fault (BP posterior) first, each with incremental GF(2) elimination until its local syndrome is
in the span of its columns; each cluster is then solved like OSD-0 on its own columns (with an
optional combination sweep, ``lsd_order``). This is the idea of BP+LSD (Hillmann et al.,
arXiv 2406.18655) with global best-first growth; see :mod:`qecd.decoder._bp_kernels`.

Options use ldpc's vocabulary: ``max_iter``, ``bp_method``, ``ms_scaling_factor``,
``schedule``, ``lsd_order`` (plus ``lsd_min_free`` and the relay stage's ``relay_legs``,
``relay_iter``, ``relay_stop``, ``relay_gamma``, ``relay_pre_iter``, ``relay_pre_gamma``,
``relay_scaling``, ``seed``, see :class:`BpClusterOptions`). The
answer always reproduces the syndrome exactly; a syndrome no
set of faults can explain raises :class:`~qecd.errors.DecoderError` (never a silent guess).

Defaults depend on the DEM: a *sparse* one (at most :data:`SPARSE_FAULTS_PER_DETECTOR` faults
per detector: phenomenological and code-capacity noise) gets :data:`SPARSE_DEM_DEFAULTS`
(longer BP, an OSD-CS over each connected component of the flagged detectors, more relay
legs); circuit-level DEMs keep :class:`BpClusterOptions`' defaults. Options given explicitly
always win.

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder.bp_cluster import BpClusterDecoder
>>> dem = stim.DetectorErrorModel('''
...     error(0.1) D0 L0
...     error(0.1) D0 D1 D2
...     error(0.1) D1 D2 L0
...     error(0.1) D2
... ''')
>>> dec = BpClusterDecoder.from_dem(dem)
>>> dec.decode(np.array([1, 1, 1], np.uint8)).tolist()
[0]
>>> dec.decode_to_faults(np.array([1, 1, 1], np.uint8)).tolist()
[1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.decoder import _bp_kernels as K
from qecd.decoder.base import Decoder, pack_bits
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError

__all__ = ["BpClusterDecoder", "BpClusterOptions", "SPARSE_DEM_DEFAULTS",
           "SPARSE_FAULTS_PER_DETECTOR", "is_sparse_dem"]

#: why a syndrome has no decoding (the error texts of the decoder and of its compiled windows)
NOT_EXPLAINED = ("is not explained by any set of faults of this DEM (not in the column space "
                 "of its check matrix)")

_BP_METHODS = {"minimum_sum": 0, "min_sum": 0, "ms": 0, "product_sum": 1, "ps": 1}
_SCHEDULES = {"parallel": 0, "serial": 1}


@dataclass(frozen=True)
class BpClusterOptions:
    """Settings of :class:`BpClusterDecoder` (ldpc's names and meanings).

    Attributes
    ----------
    max_iter : int
        BP iterations before the cluster stage takes over (>= 1). Default 5: on circuit-level
        DEMs late BP convergence is often to a wrong heavy solution that the cluster and relay
        stages beat, and it bounds the worst case (``qecd bench bp-cluster-vs-ldpc``). Sparse
        DEMs get 30 (:data:`SPARSE_DEM_DEFAULTS`).
    bp_method : str
        ``"minimum_sum"`` (default) or ``"product_sum"`` (aliases ``"ms"``, ``"ps"``).
    ms_scaling_factor : float
        Min-sum scaling of check-to-fault messages, in (0, 1]. Default 0.625 (ldpc's default
        1.0 is several times worse on qLDPC codes).
    schedule : str
        ``"parallel"`` (flooding, default) or ``"serial"`` (fault by fault, ldpc's serial).
    lsd_order : int
        Combination-sweep order inside each cluster, as ldpc's OSD-CS: flip each free column
        alone and each pair among the first ``lsd_order`` free columns, keep the lightest.
        0 = OSD-0 per cluster. Default 7 (costs little: clusters are small).
    lsd_min_free : int
        Keep growing a valid cluster until it holds this many free (dependent) columns, so the
        sweep has candidates (0 = stop at validity, default). ``lsd_min_free = lsd_order``
        lowered the LER of BB [[72,12,6]] code capacity at p = 4% (464 -> 445 failures in
        5000 shots against ldpc OSD-CS7's 434) but grew clusters from ~6 to ~120 faults on
        BB [[144,12,12]] phenomenological noise (2-3x the cluster stage's time).
    relay_legs : int
        Relay stage (after Relay-BP, Müller et al. arXiv 2506.01779; see
        :mod:`qecd.decoder._bp_kernels`): when BP does not converge, up to this many further
        min-sum legs with disordered memory run after the cluster stage and the lightest valid
        solution wins. 0 turns it off. Default 60 (Relay-BP's ``num_sets``; 20 before the
        ``relay_scaling`` ramp, when legs 21-60 seldom helped): on circuit-level
        BB [[144,12,12]] at p = 0.3% with the ramp on every leg, 32 failures in 20,000 shots
        (seed 51) with 20 legs, 24 with 40, 22 with 60 (Relay-BP: 23), at no more CPU time
        (later legs run only on the shots no earlier leg solved). Earlier, at 0.625 scaling: on
        phenomenological BB [[144,12,12]] at p = 2.5% (400 shots) 20 legs took failures from
        36 to 8 (ldpc BP+OSD-CS7: 7). Shots where BP converges never pay.
    relay_iter : int
        Iterations per leg (default 30).
    relay_stop : int
        Stop after this many legs converged (default 1).
    relay_min_free : int
        When fewer than ``relay_stop`` legs converged, the cluster stage runs again on the
        last leg's posteriors, growing each cluster to this many free columns (0 = until
        valid, default; a huge value makes it an OSD-CS over each connected component).
        On phenomenological BB [[144,12,12]] at p = 2% (1500 shots, ldpc BP+OSD-CS7: 2
        failures) it took failures from 7 to 6 (7, 16, 32 or 10^6 alike; 4 with
        ``max_iter=30`` as well): not the default.
    relay_gamma : (float, float)
        Interval of the memory strengths, drawn once per decoder (seeded by ``seed``);
        default (-0.24, 0.66), the Relay-BP authors' setting for BB codes.
    relay_pre_iter : int
        When > 0, the relay stage starts with one leg of up to this many iterations whose
        memory strength is ``relay_pre_gamma`` for every fault (Relay-BP's ``pre_iter``,
        80 in its authors' gross-code settings); it counts as a leg for ``relay_stop``.
        0 = none (default): on circuit-level BB [[144,12,12]] at p = 0.3% an 80-iteration
        first leg (``relay_pre_gamma=0.125``) made more failures with the ramp (28 against
        25 on 2,044 of 20,000 shots that hold the 52 either bp-cluster or Relay-BP failed)
        and cost 1.2x.
    relay_pre_gamma : float
        The uniform memory strength of that first leg, in [0, 1) (Relay-BP's ``gamma0``;
        default 0.125).
    relay_scaling : float or None
        Min-sum scaling inside the relay legs, in [0, 1]: None = ``ms_scaling_factor`` (the
        setting before, kept by :data:`SPARSE_DEM_DEFAULTS`); 0 (default) = the ramp
        ``1 - 2^-t`` at a leg's iteration ``t`` (0.5, 0.75, 0.875, ...: Relay-BP's
        ``alpha=None``). On circuit-level BB [[144,12,12]] at p = 0.3% (20 legs, 20,000 shots,
        seed 51) the ramp took failures from 39 to 32 at 0.82x the CPU time; a fixed 0.8,
        0.9 or 1.0 did less (31, 28, 27 failures against the ramp's 25 on 2,044 of those
        shots that hold the 52 either bp-cluster or Relay-BP failed; docs/accuracy.md).
    relay_scaling_from : int
        The first disordered leg (0-based) that uses ``relay_scaling``; the legs before it
        use ``ms_scaling_factor`` (default 20: the 20 legs of the setting before, then 40
        more with the ramp). On circuit-level BB [[72,12,6]] at p = 0.2% the ramp from the
        first leg made 112 failures against 103 (30,000 shots, seed 45; 546 against 516 in
        150,000, seed 42): there the first legs converge, and at 0.625 to lighter solutions.
        From leg 20 on: 102, 516, and 386 against 387 at p = 0.3% (from leg 5: 394), while
        BB [[144,12,12]] at p = 0.3% keeps the ramp's gain: 45 failures in 40,000 shots
        against the setting before's 80 and Relay-BP's 45, at about half Relay-BP's time.
    seed : int
        Seed of the memory strengths (default 0).

    >>> BpClusterOptions(max_iter=10).lsd_order
    7
    """

    max_iter: int = 5
    bp_method: str = "minimum_sum"
    ms_scaling_factor: float = 0.625
    schedule: str = "parallel"
    lsd_order: int = 7
    lsd_min_free: int = 0
    relay_legs: int = 60
    relay_iter: int = 30
    relay_stop: int = 1
    relay_min_free: int = 0
    relay_gamma: tuple[float, float] = (-0.24, 0.66)
    relay_pre_iter: int = 0
    relay_pre_gamma: float = 0.125
    relay_scaling: float | None = 0.0
    relay_scaling_from: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) \
                or self.max_iter < 1:
            raise DecoderError(f"bp-cluster: max_iter must be an integer >= 1, got "
                               f"{self.max_iter!r}")
        if self.bp_method not in _BP_METHODS:
            raise DecoderError(f"bp-cluster: bp_method must be one of "
                               f"{sorted(_BP_METHODS)}, got {self.bp_method!r}")
        f = self.ms_scaling_factor
        if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) \
                or not 0.0 < float(f) <= 1.0:
            raise DecoderError(f"bp-cluster: ms_scaling_factor must be a number in (0, 1], "
                               f"got {f!r}")
        if self.schedule not in _SCHEDULES:
            raise DecoderError(f"bp-cluster: schedule must be one of {sorted(_SCHEDULES)}, "
                               f"got {self.schedule!r}")
        for name in ("lsd_order", "lsd_min_free", "relay_legs", "seed", "relay_min_free",
                     "relay_pre_iter", "relay_scaling_from"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise DecoderError(f"bp-cluster: {name} must be an integer >= 0, got {v!r}")
        for name in ("relay_iter", "relay_stop"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise DecoderError(f"bp-cluster: {name} must be an integer >= 1, got {v!r}")
        g = self.relay_gamma
        if not (isinstance(g, tuple | list) and len(g) == 2 and float(g[0]) <= float(g[1])):
            raise DecoderError(f"bp-cluster: relay_gamma must be (low, high) with low <= high, "
                               f"got {g!r}")
        g0 = self.relay_pre_gamma
        if isinstance(g0, bool) or not isinstance(g0, (int, float, np.floating)) \
                or not 0.0 <= float(g0) < 1.0:
            raise DecoderError(f"bp-cluster: relay_pre_gamma must be a number in [0, 1), got "
                               f"{g0!r}")
        a = self.relay_scaling
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float, np.floating))
                              or not 0.0 <= float(a) <= 1.0):
            raise DecoderError(f"bp-cluster: relay_scaling must be None or a number in [0, 1], "
                               f"got {a!r}")

    def params(self) -> tuple[int, int, int, float, int, int, int, int, int, int, int,
                              float, float, int]:
        """The kernels' ``params`` tuple ``(max_iter, bp_method, schedule, ms_scaling,
        lsd_order, lsd_min_free, relay_legs, relay_iter, relay_stop, relay_min_free,
        relay_pre_iter, relay_pre_gamma, relay_scaling, relay_scaling_from)``
        (``relay_scaling`` resolved: None becomes ``ms_scaling_factor``)."""
        scaling = self.ms_scaling_factor if self.relay_scaling is None else self.relay_scaling
        return (int(self.max_iter), _BP_METHODS[self.bp_method], _SCHEDULES[self.schedule],
                float(self.ms_scaling_factor), int(self.lsd_order), int(self.lsd_min_free),
                int(self.relay_legs), int(self.relay_iter), int(self.relay_stop),
                int(self.relay_min_free), int(self.relay_pre_iter),
                float(self.relay_pre_gamma), float(scaling), int(self.relay_scaling_from))


_OPTION_NAMES = tuple(BpClusterOptions.__dataclass_fields__)

#: A DEM with at most this many faults per detector is *sparse* (phenomenological and
#: code-capacity BB/HGP DEMs: 2.6-2.8; circuit-level BB: 8.9-9.4, surface code: ~15).
SPARSE_FAULTS_PER_DETECTOR = 4.0

#: Defaults that replace :class:`BpClusterOptions`' for a sparse DEM (options given
#: explicitly still win): 30 BP iterations, then an OSD-CS over each connected component of
#: the flagged detectors (``lsd_min_free`` huge), then 60 relay legs; the lightest candidate
#: wins. On phenomenological BB [[144,12,12]] (r = 12, 800 shots, seed 22) at p = 2.5% this
#: made 10 failures where ldpc's BP+OSD-CS7 made 15 and the circuit-level defaults 18, at a
#: quarter of BP+OSD-CS7's time; on circuit-level BB [[72,12,6]] at p = 0.3% the same
#: settings cost 2.5x the defaults' time for no fewer failures (58 vs 56 of 3000), hence
#: the split (docs/accuracy.md). Sparse DEMs keep the relay legs' scaling at
#: ``ms_scaling_factor`` (``relay_scaling=None``): the ramp, the circuit-level default, was
#: measured on circuit-level DEMs only.
SPARSE_DEM_DEFAULTS: dict[str, int | None] = {"max_iter": 30, "lsd_min_free": 1 << 30,
                                              "relay_legs": 60, "relay_scaling": None}


def is_sparse_dem(faults: FaultTable) -> bool:
    """Whether :data:`SPARSE_DEM_DEFAULTS` apply to this fault table (see there).

    >>> from qecd.codes.bivariate_bicycle import bb_code
    >>> from qecd.codes.phenomenological import phenomenological_dem
    >>> is_sparse_dem(FaultTable.from_dem(phenomenological_dem(bb_code(72), rounds=2, p=0.01),
    ...                                   graph=False))
    True
    """
    return faults.num_faults <= SPARSE_FAULTS_PER_DETECTOR * max(faults.num_detectors, 1)


class BpClusterDecoder(Decoder):
    """BP + BP-guided cluster decoding over a DEM's faults (hypergraph columns).

    Build with :meth:`from_dem` (or :meth:`from_fault_table`); construction compiles (or loads
    from Numba's cache) and warms every kernel, so no later call compiles. One decoder owns one
    workspace: use one decoder per thread (the kernels release the GIL).

    Parameters
    ----------
    faults : FaultTable
        Hypergraph fault table (``FaultTable.from_dem(dem, graph=False)``).
    options : BpClusterOptions

    Examples
    --------
    >>> import numpy as np, stim
    >>> c = stim.Circuit.generated("repetition_code:memory", distance=5, rounds=3,
    ...                            after_clifford_depolarization=0.02)
    >>> dec = BpClusterDecoder.from_dem(c.detector_error_model(), lsd_order=2)
    >>> shots = c.compile_detector_sampler(seed=1).sample(64, bit_packed=True)
    >>> dec.decode_batch_packed(shots).shape
    (64, 1)
    """

    name = "bp-cluster"
    compiles_streams = True

    def __init__(self, faults: FaultTable, options: BpClusterOptions | None = None) -> None:
        self.faults = faults
        self.options = options if options is not None else BpClusterOptions()
        n = faults.num_faults
        obs_packed = pack_bits(faults.obs_mask) if faults.num_observables else \
            np.zeros((n, 1), np.uint8)
        if obs_packed.shape[1] == 0:
            obs_packed = np.zeros((n, 1), np.uint8)
        self._params = self.options.params()
        self._graph = K.build_graph(faults.det_indptr, faults.det_indices, faults.num_detectors,
                                    faults.probabilities, obs_packed,
                                    bp_method=self._params[1], ms_scaling=self._params[3],
                                    relay_legs=self._params[6],
                                    gamma_interval=tuple(map(float, self.options.relay_gamma)),
                                    seed=int(self.options.seed))
        self._ws = K.make_workspace(self._graph)
        self._out_faults = np.zeros(max(n, 1), np.int64)
        self._warm_up()

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object) -> BpClusterDecoder:
        """Build and warm a decoder for ``dem`` (hyperedges and ``repeat`` blocks allowed).

        Parameters
        ----------
        dem : stim.DetectorErrorModel
        **options
            Fields of :class:`BpClusterOptions`; anything else raises DecoderError.

        >>> dem = stim.DetectorErrorModel("error(0.1) D0 L0\\nerror(0.1) D0 D1")
        >>> BpClusterDecoder.from_dem(dem, max_iter=5).options.max_iter
        5
        """
        return cls.from_fault_table(FaultTable.from_dem(dem, graph=False), **options)

    @classmethod
    def from_fault_table(cls, faults: FaultTable, **options: object) -> BpClusterDecoder:
        """Build and warm a decoder for an existing hypergraph :class:`FaultTable`; a sparse
        one (:func:`is_sparse_dem`) gets :data:`SPARSE_DEM_DEFAULTS` for the options not
        given."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise DecoderError(f"bp-cluster: unknown options {unknown}; allowed: "
                               f"{', '.join(_OPTION_NAMES)}")
        if is_sparse_dem(faults):
            options = {**SPARSE_DEM_DEFAULTS, **options}
        return cls(faults, BpClusterOptions(**options))  # type: ignore[arg-type]

    def _warm_up(self) -> None:
        """Compile/load every kernel with the real argument types and run each path once: a
        zero syndrome, a fault's syndrome, the cluster stage on BP's prior, both batch
        kernels."""
        m, n = self.num_detectors, self.faults.num_faults
        zero = np.zeros(m, np.uint8)
        K.decode_shot(zero, self._out_faults, self._graph, self._params, self._ws)
        if n:
            one = self.faults.syndrome_of(np.array([0]))
            K.decode_shot(one, self._out_faults, self._graph, self._params, self._ws)
            self._ws[K.WS_FIELDS.index("post")][:] = self._graph[5]
            K.cluster_decode(one, self._graph, self._params, self._ws, self._out_faults)
            batch = np.stack([zero, one])
        else:
            batch = zero[None, :]
        self.decode_batch(batch)
        self.decode_batch_packed(pack_bits(batch))

    # -- Numba server loop hooks ----------------------------------------------------------
    @staticmethod
    def kernel():  # noqa: ANN205 (a Numba dispatcher)
        """The single-shot kernel ``decode_shot(syndrome, out_faults, graph, params, ws) ->
        int64``: ``syndrome`` uint8 (m,), ``out_faults`` int64 (>= num_faults,); returns the
        fault count or a negative status (see :mod:`qecd.decoder._bp_kernels`)."""
        return K.decode_shot

    def kernel_args(self, fresh_workspace: bool = False) -> tuple[tuple, tuple, tuple]:
        """``(graph, params, ws)`` for :meth:`kernel`; ``ws`` is this decoder's workspace (do
        not call the kernel concurrently with this decoder's methods), or with
        ``fresh_workspace`` a new one of its own for another thread or loop.

        >>> import stim
        >>> dec = BpClusterDecoder.from_dem(stim.DetectorErrorModel("error(0.1) D0 L0"))
        >>> graph, params, ws = dec.kernel_args()
        >>> out = np.zeros(dec.faults.num_faults, np.int64)
        >>> int(dec.kernel()(np.array([1], np.uint8), out, graph, params, ws)), out[:1].tolist()
        (1, [0])
        """
        ws = K.make_workspace(self._graph) if fresh_workspace else self._ws
        return self._graph, self._params, ws

    @classmethod
    def compile_stream(cls, stream):
        """The stream's plan compiled for the Numba loops
        (:class:`~qecd.decoder.compiled_stream.CompiledStream`, every window decoded by
        :mod:`qecd.decoder._bp_windows`), or None for a plan with too many distinct windows
        (it then decodes from Python)."""
        from qecd.decoder._bp_windows import compile_bp_windows
        from qecd.decoder.compiled_stream import CompiledStream

        windows = compile_bp_windows(stream.plan, **stream.backend_options)
        return None if windows is None else CompiledStream(stream.plan, windows)

    @property
    def last_info(self) -> dict[str, int]:
        """Statistics of the last decoded shot: BP iterations (0 = BP did not converge),
        whether the cluster stage ran, the biggest cluster (faults) and how many relay legs
        converged."""
        info = self._ws[K.WS_FIELDS.index("info")]
        return {"bp_iterations": int(info[0]), "cluster_stage": int(info[1]),
                "max_cluster_faults": int(info[2]), "relay_converged": int(info[3])}

    # -- decoding ---------------------------------------------------------------------------
    def _raise_status(self, status: int, shot: int | None = None) -> None:
        where = "" if shot is None else f" (shot {shot})"
        if status == K.STATUS_NOT_IN_SPAN:
            raise DecoderError(f"bp-cluster: syndrome{where} {NOT_EXPLAINED}")
        raise DecoderError(f"bp-cluster: a cluster{where} outgrew the elimination buffers "
                           f"(status {status})")

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids (int64, sorted) whose detectors XOR exactly to ``syndrome``.

        Raises
        ------
        DecoderError
            On a wrong shape, or a syndrome that no set of faults explains.
        """
        s = np.ascontiguousarray(self._check_syndrome(syndrome))
        cnt = K.decode_shot(s, self._out_faults, self._graph, self._params, self._ws)
        if cnt < 0:
            self._raise_status(cnt)
        return np.sort(self._out_faults[:cnt])

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        """Predicted observable flips (uint8, shape (num_observables,)) for one shot."""
        s = np.ascontiguousarray(self._check_syndrome(syndrome))
        out = np.zeros((1, self.num_observables), np.uint8)
        status = np.zeros(1, np.int64)
        K.decode_batch(s[None, :], out, status, self._out_faults, self._graph, self._params,
                       self._ws)
        if status[0] < 0:
            self._raise_status(int(status[0]))
        return out[0]

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        """Predictions (uint8, (shots, num_observables)) for unpacked detection events
        (uint8/bool, (shots, num_detectors)); the whole batch runs in one Numba call."""
        d = np.ascontiguousarray(self._check_batch(dets))
        out = np.zeros((d.shape[0], self.num_observables), np.uint8)
        status = np.zeros(d.shape[0], np.int64)
        K.decode_batch(d, out, status, self._out_faults, self._graph, self._params, self._ws)
        self._check_statuses(status)
        return out

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        """Bit-packed in (uint8, (shots, ceil(D/8)), stim's little bit order), bit-packed out
        (uint8, (shots, ceil(O/8))); the whole batch runs in one Numba call."""
        p = np.asarray(packed)
        nbytes = (self.num_detectors + 7) // 8
        if p.ndim != 2 or p.shape[1] != nbytes or p.dtype != np.uint8:
            raise DecoderError(f"packed batch: expected uint8 of shape (shots, {nbytes}), got "
                               f"{p.dtype} {p.shape}")
        p = np.ascontiguousarray(p)
        obytes = (self.num_observables + 7) // 8
        out = np.zeros((p.shape[0], max(obytes, 1)), np.uint8)
        status = np.zeros(p.shape[0], np.int64)
        K.decode_batch_packed(p, out, status, self._out_faults, self._graph, self._params,
                              self._ws)
        self._check_statuses(status)
        return out[:, :obytes]

    def _check_statuses(self, status: np.ndarray) -> None:
        bad = np.flatnonzero(status < 0)
        if bad.size:
            self._raise_status(int(status[bad[0]]), int(bad[0]))
