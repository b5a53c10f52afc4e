"""The ``relay-bp`` backend: IBM's Relay-BP (Müller et al., arXiv 2506.01779) via ``relay-bp``.

Relay-BP runs min-sum BP with memory (``gamma0``), then a chain of ``num_sets`` further BP
runs whose memory strengths are drawn per fault from ``gamma_dist_interval``, each starting
from the previous run's marginals, until ``stop_nconv`` runs have converged (the lightest
solution is kept). It decodes the DEM's hypergraph columns (``FaultTable.from_dem(dem,
graph=False)``), batch by batch in Rust.

The defaults are the authors' settings for the [[144,12,12]] gross code under circuit noise
(the package README's Stim + Sinter example: ``gamma0=0.1, pre_iter=80, num_sets=60,
set_max_iter=60, gamma_dist_interval=(-0.24, 0.66), stop_nconv=1``). A shot on which no run
converges returns the last run's hard decision (usually a logical failure), as the package
does.

The package is an extra (``pip install qecd[relay]``, pinned ``relay-bp==0.2.1``: 0.2.2 is a
source release that cannot build here); without it, building this backend raises
:class:`~qecd.errors.DecoderError` with the install line.

Example
-------
>>> import numpy as np, stim
>>> dem = stim.DetectorErrorModel("error(0.1) D0 L0\\nerror(0.1) D0 D1\\nerror(0.1) D1")
>>> dec = RelayBpDecoder.from_dem(dem)
>>> dec.decode(np.array([1, 0], np.uint8)).tolist()
[1]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.decoder.base import Decoder
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError

__all__ = ["RelayBpDecoder", "RelayBpOptions", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'relay-bp==0.2.1' (or: pip install 'qecd[relay]')"


@dataclass(frozen=True)
class RelayBpOptions:
    """Relay-BP settings (the package's names; defaults: the authors' gross-code settings).

    >>> RelayBpOptions().num_sets
    60
    """

    gamma0: float = 0.1
    pre_iter: int = 80
    num_sets: int = 60
    set_max_iter: int = 60
    gamma_dist_interval: tuple[float, float] = (-0.24, 0.66)
    stop_nconv: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("pre_iter", "num_sets", "set_max_iter", "stop_nconv", "seed"):
            v = getattr(self, name)
            lo = 0 if name in ("num_sets", "seed") else 1
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < lo:
                raise DecoderError(f"relay-bp: {name} must be an integer >= {lo}, got {v!r}")
        lo, hi = self.gamma_dist_interval
        if not lo <= hi:
            raise DecoderError(f"relay-bp: gamma_dist_interval must be (low, high) with low <= "
                               f"high, got {self.gamma_dist_interval!r}")


_OPTION_NAMES = tuple(RelayBpOptions.__dataclass_fields__)


def _relay_module():
    try:
        import relay_bp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DecoderError(f"relay-bp backend: the relay_bp package is missing ({exc}); "
                           f"install it with {INSTALL_HINT}") from None
    return relay_bp


class RelayBpDecoder(Decoder):
    """Relay-BP over a DEM's hypergraph columns, with the qecd decoder interface.

    Parameters
    ----------
    faults : FaultTable
        Hypergraph fault table.
    options : RelayBpOptions
    """

    name = "relay-bp"
    builds_holding_gil = True

    def __init__(self, faults: FaultTable, options: RelayBpOptions | None = None) -> None:
        import scipy.sparse as sp

        relay_bp = _relay_module()
        self.faults = faults
        self.options = options if options is not None else RelayBpOptions()
        n = faults.num_faults
        cols = np.repeat(np.arange(n), np.diff(faults.det_indptr))
        self._h = sp.csr_matrix(
            (np.ones(len(faults.det_indices), np.uint8), (faults.det_indices, cols)),
            shape=(faults.num_detectors, n))
        self._obs = sp.csr_matrix(faults.obs_mask.T.astype(np.uint8))  # (obs, faults)
        o = self.options
        # the memory strengths are drawn here, once (seeded), and passed explicitly: the
        # package otherwise draws them from one generator that advances with every shot, so
        # the same syndrome could decode differently depending on what came before
        lo, hi = map(float, o.gamma_dist_interval)
        gammas = np.random.default_rng(int(o.seed)).uniform(
            lo, hi, size=(max(1, int(o.num_sets)), n))
        self._decoder = relay_bp.RelayDecoderF32(
            self._h, error_priors=np.asarray(faults.probabilities, np.float64),
            gamma0=float(o.gamma0), pre_iter=int(o.pre_iter), num_sets=int(o.num_sets),
            set_max_iter=int(o.set_max_iter), gamma_dist_interval=(lo, hi),
            explicit_gammas=gammas, stop_nconv=int(o.stop_nconv), seed=int(o.seed))
        self._checker = None  # a bp-cluster decoder, built on the first unconverged shot
        self.decode_batch(np.zeros((1, faults.num_detectors), np.uint8))  # warm up

    def __reduce__(self) -> tuple:
        # the package's decoder object does not pickle: a process that receives this decoder
        # builds it again from the fault table (the matrices and priors, seeded alike)
        return (RelayBpDecoder, (self.faults, self.options))

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object) -> RelayBpDecoder:
        """Build a decoder for ``dem``; ``options`` are fields of :class:`RelayBpOptions`."""
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise DecoderError(f"relay-bp: unknown options {unknown}; allowed: "
                               f"{', '.join(_OPTION_NAMES)}")
        return cls(FaultTable.from_dem(dem, graph=False),
                   RelayBpOptions(**options))  # type: ignore[arg-type]

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids of Relay-BP's correction (it reproduces the syndrome only when some run
        converged)."""
        s = self._check_syndrome(syndrome)
        if not s.any():
            return np.zeros(0, np.int64)
        err = np.asarray(self._decoder.decode_batch(np.ascontiguousarray(s)[None, :]),
                         dtype=np.uint8)
        self._check_unconverged(s[None, :], err)
        return np.flatnonzero(err[0]).astype(np.int64)

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        return self.decode_batch(self._check_syndrome(syndrome)[None, :])[0]

    def _check_unconverged(self, d: np.ndarray, errs: np.ndarray) -> None:
        """Raise DecoderError for the first shot whose syndrome no set of faults explains.

        Relay-BP's answer reproduces the syndrome only when some leg converged; for the other
        shots a bp-cluster decoder over the same fault table (which solves exactly, or
        proves the syndrome is outside the column space) tells a hard shot, whose Relay-BP
        guess is kept, from an impossible one."""
        import scipy.sparse as sp

        got = (self._h @ sp.csr_matrix(errs).T).toarray().T % 2
        bad = np.flatnonzero(np.any(got != (d != 0), axis=1))
        if bad.size == 0:
            return
        if self._checker is None:
            from qecd.decoder.bp_cluster import BpClusterDecoder

            # explainability only: the cheapest settings (no sweep, no relay, one BP sweep),
            # given explicitly so that a sparse DEM's heavier defaults do not apply
            self._checker = BpClusterDecoder.from_fault_table(
                self.faults, max_iter=1, lsd_order=0, lsd_min_free=0, relay_legs=0)
        for i in bad.tolist():
            try:
                self._checker.decode_to_faults(d[i])
            except DecoderError as exc:
                raise DecoderError(f"relay-bp: shot {i}: the syndrome is not explained by any "
                                   "set of faults of this DEM (not in the column space of its "
                                   "check matrix)") from exc

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        """Predictions (uint8, (shots, num_observables)) for unpacked detection events.

        Raises
        ------
        DecoderError
            On a wrong shape, or a syndrome that no set of faults explains.
        """
        d = np.ascontiguousarray(self._check_batch(dets))
        errs = np.asarray(self._decoder.decode_batch(d), dtype=np.uint8)
        self._check_unconverged(d, errs)
        if self.num_observables == 0:
            return np.zeros((d.shape[0], 0), np.uint8)
        import scipy.sparse as sp

        obs = (sp.csr_matrix(errs) @ self._obs.T).toarray() % 2
        return obs.astype(np.uint8).reshape(d.shape[0], self.num_observables)
