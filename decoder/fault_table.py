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
        merged: dict[tuple, list] = {}
        error_index = -1
        for inst in flat:
            if inst.type != "error":
                continue
            error_index += 1
            p = float(inst.args_copy()[0])
            if p <= 0.0:
                continue
            components: list[tuple[set[int], set[int]]] = [(set(), set())]
            for t in inst.targets_copy():
                if t.is_separator():
                    components.append((set(), set()))
                elif t.is_relative_detector_id():
                    components[-1][0].symmetric_difference_update({t.val})
                elif t.is_logical_observable_id():
                    components[-1][1].symmetric_difference_update({t.val})
            if not graph:
                dets: set[int] = set()
                obs: set[int] = set()
                for d, o in components:
                    dets ^= d
                    obs ^= o
                components = [(dets, obs)]
            for dets, obs in components:
                if not dets:
                    continue  # an undetectable fault: no decoder can see it
                if graph and len(dets) > 2:
                    raise DemError(
                        f"error #{error_index} has a component flipping {len(dets)} detectors "
                        f"{sorted(dets)}; a matching graph allows 1 or 2. Generate the DEM "
                        "with decompose_errors=True or use the bp-cluster backend"
                    )
                dkey = tuple(sorted(dets))
                okey = tuple(sorted(obs))
                key = dkey if graph else (dkey, okey)
                if key not in merged:
                    merged[key] = [dkey, okey, p, error_index, p]
                    continue
                entry = merged[key]
                if entry[1] == okey:
                    q = entry[2]
                    entry[2] = q * (1 - p) + p * (1 - q)
                    if p > entry[4]:
                        entry[3], entry[4] = error_index, p
                elif p > entry[2]:
                    merged[key] = [dkey, okey, p, error_index, p]
        entries = sorted(merged.values(), key=lambda e: (e[0], e[1]))
        n_obs = flat.num_observables
        indptr = np.zeros(len(entries) + 1, dtype=np.int32)
        indices: list[int] = []
        obs_mask = np.zeros((len(entries), n_obs), dtype=np.uint8)
        probs = np.zeros(len(entries), dtype=np.float64)
        dem_index = np.zeros(len(entries), dtype=np.int64)
        for f, (dkey, okey, p, idx, _) in enumerate(entries):
            indices.extend(dkey)
            indptr[f + 1] = len(indices)
            obs_mask[f, list(okey)] = 1
            probs[f] = min(p, 0.5 - 1e-12) if p >= 0.5 else p
            dem_index[f] = idx
        return FaultTable(
            num_detectors=flat.num_detectors,
            num_observables=n_obs,
            det_indptr=indptr,
            det_indices=np.asarray(indices, dtype=np.int32),
            obs_mask=obs_mask,
            probabilities=probs,
            dem_index=dem_index,
        )
