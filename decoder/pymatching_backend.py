"""The ``pymatching`` backend: minimum-weight perfect matching via PyMatching 2 (sparse blossom).

Batches go through ``Matching.decode_batch`` (bit-packed in and out when the input is packed),
which is PyMatching's fastest path; ``decode_to_faults`` maps the matched edges
(``decode_to_edges_array``, boundary = -1) onto this decoder's fault table.

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder.pymatching_backend import PyMatchingDecoder
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
...                            after_clifford_depolarization=0.001)
>>> dec = PyMatchingDecoder.from_dem(c.detector_error_model(decompose_errors=True))
>>> dec.decode(np.zeros(dec.num_detectors, np.uint8)).tolist()
[0]
"""

from __future__ import annotations

import numpy as np
import pymatching
import stim

from qecd.decoder.base import Decoder
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError

#: edges rebuilt per slice when a pickled decoder is loaded (each slice a short stretch of
#: Python holding the GIL, so a server loop waiting for it gets it within ~1 ms)
_EDGE_CHUNK = 1024


class PyMatchingDecoder(Decoder):
    """Thin wrapper over :class:`pymatching.Matching` with the qecd decoder interface."""

    name = "pymatching"
    builds_holding_gil = True  # the search graph: one C++ call (see _warm_up)
    graph_like = True
    compiles_streams = True

    @classmethod
    def compile_stream(cls, stream):
        """The stream's plan compiled for the Numba loops, which leave Numba only to call
        PyMatching for a due window (:mod:`qecd.decoder._pymatching_windows`); None when
        this PyMatching lacks the binding that takes detection events."""
        from qecd.decoder._pymatching_windows import compile_pymatching_windows
        from qecd.decoder.compiled_stream import CompiledStream

        windows = compile_pymatching_windows(stream.plan, stream.window_decoders)
        return None if windows is None else CompiledStream(stream.plan, windows)

    def __init__(self, dem: stim.DetectorErrorModel) -> None:
        self.faults = FaultTable.from_dem(dem, graph=True)
        self.matching = pymatching.Matching.from_detector_error_model(dem)
        self._edge_index()
        self._warm_up()

    def _edge_index(self) -> None:
        """The lookup from a matched edge to its fault: sorted int64 keys (``lo * (N + 1) +
        hi + 1``, ``hi`` = -1 for a boundary edge) and their fault ids. Arrays, built with
        numpy: a dict of tuples is 24k small objects per 5 MB DEM, rebuilt by pickle in one
        C call holding the GIL, and left fragmenting the heap when the plan is dropped."""
        t = self.faults
        n = np.diff(t.det_indptr)
        f = np.flatnonzero(n >= 1)  # a fault with no detector is never matched
        first = t.det_indices[t.det_indptr[f]].astype(np.int64)
        second = np.where(n[f] == 2, t.det_indices[np.minimum(t.det_indptr[f] + 1,
                                                               len(t.det_indices) - 1)], -1)
        lo = np.where(second < 0, first, np.minimum(first, second))
        hi = np.where(second < 0, -1, np.maximum(first, second))
        keys = lo * (t.num_detectors + 1) + hi + 1
        order = np.argsort(keys, kind="stable")  # duplicates: the last fault wins, as before
        self._edge_keys, self._edge_fault = keys[order], f[order].astype(np.int64)

    def _faults_of_edges(self, edges: np.ndarray) -> np.ndarray:
        """Fault ids (sorted) of PyMatching's matched ``edges`` ((k, 2), -1 = boundary)."""
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        u, v = e[:, 0], e[:, 1]
        boundary = (u < 0) | (v < 0)
        lo = np.where(boundary, np.maximum(u, v), np.minimum(u, v))
        hi = np.where(boundary, -1, np.maximum(u, v))
        keys = lo * (self.faults.num_detectors + 1) + hi + 1
        pos = np.searchsorted(self._edge_keys, keys, side="right") - 1
        if len(keys) and (pos.min() < 0 or (self._edge_keys[pos] != keys).any()):
            bad = int(np.flatnonzero((pos < 0) | (self._edge_keys[pos] != keys))[0])
            raise KeyError(f"matched edge {tuple(e[bad].tolist())} is no fault of this DEM")
        return np.sort(self._edge_fault[pos])

    def __getstate__(self) -> dict:
        """The matching graph as edge arrays (``pymatching.Matching`` does not pickle): a
        plan built in another process arrives as arrays and :meth:`__setstate__` rebuilds
        the graph edge by edge, each call short, so the receiving process's other threads
        keep getting the GIL (``from_detector_error_model`` holds it for the whole build:
        0.8 s for an 8.8 MB DEM here)."""
        state = dict(self.__dict__)
        m = state.pop("matching")
        edges = m.edges()
        n = len(edges)
        uv = np.full((n, 2), -1, dtype=np.int64)
        wp = np.zeros((n, 2), dtype=np.float64)
        obs_ptr = np.zeros(n + 1, dtype=np.int64)  # arrays, not tuples: see _edge_index
        obs: list[int] = []
        for i, (u, v, d) in enumerate(edges):
            uv[i] = (u, -1 if v is None else v)
            wp[i] = (d["weight"], d.get("error_probability", -1.0))
            obs.extend(sorted(d["fault_ids"]))
            obs_ptr[i + 1] = len(obs)
        state["_edges"] = (uv, wp, obs_ptr, np.asarray(obs, dtype=np.int64), m.num_detectors,
                           sorted(m.boundary))
        return state

    def __setstate__(self, state: dict) -> None:
        uv, wp, obs_ptr, obs, num_detectors, boundary = state.pop("_edges")
        self.__dict__.update(state)
        m = pymatching.Matching()
        add_edge, add_boundary = m.add_edge, m.add_boundary_edge
        for a in range(0, len(uv), _EDGE_CHUNK):  # chunks: no long call holds the GIL
            b = min(a + _EDGE_CHUNK, len(uv))
            ptr = obs_ptr[a:b + 1].tolist()
            ids = obs[ptr[0]:ptr[-1]].tolist()
            for k, ((u, v), (w, p)) in enumerate(zip(uv[a:b].tolist(), wp[a:b].tolist(),
                                                     strict=True)):
                f = set(ids[ptr[k] - ptr[0]:ptr[k + 1] - ptr[0]])
                if v < 0:
                    add_boundary(u, fault_ids=f, weight=w, error_probability=p)
                else:
                    add_edge(u, v, fault_ids=f, weight=w, error_probability=p)
        if boundary:
            m.set_boundary_nodes(set(boundary))
        if m.num_detectors < num_detectors:
            # trailing detectors no error touches (a degenerate DEM): add_edge cannot make
            # their nodes, so build from the fault table's DEM as from_dem did (small DEMs)
            m = pymatching.Matching.from_detector_error_model(self._fault_dem())
        self.matching = m
        self._warm_up()

    def _warm_up(self) -> None:
        """PyMatching builds its search graph on the first decode (one C++ call holding the
        GIL, ~15 ms for a 24k-edge graph here): make it now, not on a stream's first window.
        The edge-returning decode builds what both it and ``decode`` need, once; ``decode``
        first would build part of it twice."""
        zeros = np.zeros(self.faults.num_detectors, dtype=np.uint8)
        getattr(self.matching, "decode_to_edges_array", self.matching.decode)(zeros)

    def _fault_dem(self) -> stim.DetectorErrorModel:
        """This decoder's faults as a DEM (one ``error`` per fault, every detector declared)."""
        t = self.faults
        lines = [f"detector D{t.num_detectors - 1}"] if t.num_detectors else []
        lines += [f"logical_observable L{o}" for o in range(t.num_observables)]
        for f in range(t.num_faults):
            targets = [f"D{d}" for d in t.detectors_of(f).tolist()]
            targets += [f"L{o}" for o in np.nonzero(t.obs_mask[f])[0].tolist()]
            lines.append(f"error({float(t.probabilities[f])!r}) " + " ".join(targets))
        return stim.DetectorErrorModel("\n".join(lines))

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object) -> PyMatchingDecoder:
        if options:
            raise DecoderError(f"pymatching: unknown options {sorted(options)}; allowed: none")
        return cls(dem)

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        s = self._check_syndrome(syndrome)
        return np.asarray(self.matching.decode(s), dtype=np.uint8)

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        s = self._check_syndrome(syndrome)
        return self._faults_of_edges(self.matching.decode_to_edges_array(s))

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        d = self._check_batch(dets)
        return np.asarray(self.matching.decode_batch(d), dtype=np.uint8)

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        p = np.asarray(packed, dtype=np.uint8)
        nbytes = (self.num_detectors + 7) // 8
        if p.ndim != 2 or p.shape[1] != nbytes:
            raise DecoderError(f"packed batch: expected shape (shots, {nbytes}), got {p.shape}")
        return self.matching.decode_batch(p, bit_packed_shots=True, bit_packed_predictions=True)
