"""Fault tables: the elementary fault mechanisms a decoder chooses from, read off a stim DEM.

A *fault* is one column of the decoding problem: the set of detectors it flips and the
logical observables it flips. Every backend decodes a syndrome to a set of fault ids in its
own table; XOR-ing the detectors of the returned faults reproduces the syndrome, and XOR-ing
their observables gives the predicted logical flips. ``dem_index`` maps each fault back to the
index of an ``error`` instruction in ``dem.flattened()`` (the most likely one, when several
DEM errors merge into one fault), which is what CORRECTION packets report.

Two flavours:

- ``graph=True`` (matching backends): every ``^``-separated component of a DEM error becomes
  an edge with one or two detectors (one detector = an edge to the boundary). Parallel edges
  merge: the same observables combine as independent errors, different observables keep the
  more likely one (as PyMatching does). A component with more than two detectors raises
  :class:`~qecd.errors.DemError`.
- ``graph=False`` (BP backends): each DEM error is one column, its components XOR-ed
  together; identical columns merge as independent errors.

Example
-------
>>> import stim
>>> from qecd.decoder.fault_table import FaultTable
>>> dem = stim.DetectorErrorModel('''
...     error(0.1) D0 D1
...     error(0.2) D1 L0
...     error(0.1) D0 D1
... ''')
>>> t = FaultTable.from_dem(dem, graph=True)
>>> t.num_faults, t.num_detectors, t.num_observables
(2, 2, 1)
>>> [t.detectors_of(f).tolist() for f in range(t.num_faults)]
[[0, 1], [1]]
>>> round(float(t.probabilities[0]), 4)
0.18
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.decoder import _dem_scan
from qecd.errors import DemError


@dataclass(frozen=True)
class FaultTable:
    """Faults as flat arrays (CSR detector lists), ready for Numba kernels.

    Attributes
    ----------
    num_detectors, num_observables : int
        Sizes of the DEM the table was read from.
    det_indptr, det_indices : numpy.ndarray of int32
        CSR: the detectors of fault ``f`` are ``det_indices[det_indptr[f]:det_indptr[f+1]]``
        (sorted, each 0..num_detectors-1).
    obs_mask : numpy.ndarray of uint8, shape (num_faults, num_observables)
        1 where fault ``f`` flips observable ``j``.
    probabilities : numpy.ndarray of float64, shape (num_faults,)
    dem_index : numpy.ndarray of int64, shape (num_faults,)
        Index of the representative ``error`` instruction in ``dem.flattened()``.
    """

    num_detectors: int
    num_observables: int
    det_indptr: np.ndarray
    det_indices: np.ndarray
    obs_mask: np.ndarray
    probabilities: np.ndarray
    dem_index: np.ndarray

    @property
    def num_faults(self) -> int:
        return int(self.probabilities.shape[0])

    def detectors_of(self, fault: int) -> np.ndarray:
        """Detector ids flipped by ``fault`` (int32 array)."""
        return self.det_indices[self.det_indptr[fault] : self.det_indptr[fault + 1]]

    def syndrome_of(self, faults: np.ndarray) -> np.ndarray:
        """The detection events (uint8, shape (num_detectors,)) caused by a set of faults."""
        out = np.zeros(self.num_detectors, dtype=np.uint8)
        for f in np.asarray(faults, dtype=np.int64):
            out[self.detectors_of(int(f))] ^= 1
        return out

    def observables_of(self, faults: np.ndarray) -> np.ndarray:
        """The logical flips (uint8, shape (num_observables,)) caused by a set of faults."""
        out = np.zeros(self.num_observables, dtype=np.uint8)
        for f in np.asarray(faults, dtype=np.int64):
            out ^= self.obs_mask[int(f)]
        return out

    @staticmethod
    def from_dem(dem: stim.DetectorErrorModel, *, graph: bool) -> FaultTable:
        """Read the faults of ``dem`` (repeat blocks and shifts are flattened first).

        Parameters
        ----------
        dem : stim.DetectorErrorModel
        graph : bool
            True for a matching graph (edges of 1-2 detectors, split at ``^``);
            False for hypergraph columns (components XOR-ed).

        Raises
        ------
        DemError
            If ``graph`` and some component flips more than two detectors.
        """
        flat = dem.flattened()
        if hasattr(flat, "without_tags"):  # stim >= 1.15: tags carry no meaning here
            flat = flat.without_tags()
        text = str(flat).encode()
        raw = np.frombuffer(text, np.uint8)
        none = np.zeros(0, np.int64)
        n_err, n_tgt, bad_at = _dem_scan.scan(raw, none, none, none)
        if bad_at >= 0:  # stim printed something this reader does not know
            raise DemError(f"cannot read the DEM text at byte {bad_at}: "
                           f"{text[bad_at:bad_at + 60]!r}")
        arg_at = np.empty(2 * n_err, np.int64)
        tgt_ptr = np.zeros(n_err + 1, np.int64)
        tgt = np.empty(n_tgt, np.int64)
        _dem_scan.scan(raw, arg_at, tgt_ptr, tgt)
        args = _dem_scan.arg_texts(raw, arg_at)
        # DEMs repeat few distinct probabilities: parse each distinct text once
        distinct, which = np.unique(args.view(f"S{args.shape[1]}").ravel(),
                                    return_inverse=True)
        probs = distinct.astype(np.float64)[which.ravel()]
        det_ptr, dets, obs_ptr, obs, err, pr, bad = _dem_scan.components(
            tgt_ptr, tgt, probs, 1 if graph else 0)
        if bad >= 0:
            ds = dets[det_ptr[bad]:det_ptr[bad + 1]].tolist()
            raise DemError(
                f"error #{int(err[bad])} has a component flipping {len(ds)} detectors "
                f"{ds}; a matching graph allows 1 or 2, so matching decoders (pymatching, uf "
                "and their variants) cannot take this DEM. DEMs with such hyperedges (qLDPC "
                "codes: bb, hgp; color codes) go to bp-cluster or relay-bp; a circuit whose "
                "errors do decompose (surface codes) can give a DEM with "
                "decompose_errors=True"
            )
        with_obs = 0 if graph else 1
        order = _dem_scan.sort_components(det_ptr, dets, obs_ptr, obs, with_obs)
        rep, p, dem_index = _dem_scan.merge(order, det_ptr, dets, obs_ptr, obs, err, pr,
                                            with_obs)
        n_obs = flat.num_observables
        indptr, indices, obs_mask = _dem_scan.gather(rep, det_ptr, dets, obs_ptr, obs, n_obs)
        probs = np.where(p >= 0.5, np.minimum(p, 0.5 - 1e-12), p)
        return FaultTable(
            num_detectors=flat.num_detectors,
            num_observables=n_obs,
            det_indptr=indptr,
            det_indices=indices,
            obs_mask=obs_mask,
            probabilities=probs,
            dem_index=dem_index,
        )
