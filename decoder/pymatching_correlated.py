"""The ``pymatching-corr`` backend: PyMatching's two-pass correlated matching.

PyMatching >= 2.3 re-weights edges after a first matching pass using the DEM's hyperedges
that decompose into edges (``^``-separated components, e.g. a Y error in the surface code)
and matches again (Fowler, arXiv 1310.0863). The DEM must carry those decompositions
(``circuit.detector_error_model(decompose_errors=True)``, as qecd's surface and repetition
experiments do); a DEM without ``^`` gives plain matching.

Inside a sliding window (``pymatching-corr-w10c5``) each window's DEM is rebuilt from the
fault table one component per line, so the decompositions are lost there and a window
decodes like plain ``pymatching``; whole-shot decoding, streamed or not, keeps them (the
whole-shot window hands the backend the DEM itself: ``uses_decompositions``).

Example
-------
>>> import numpy as np, stim
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
...                            after_clifford_depolarization=0.001)
>>> dec = CorrelatedPyMatchingDecoder.from_dem(c.detector_error_model(decompose_errors=True))
>>> dec.decode(np.zeros(dec.num_detectors, np.uint8)).tolist()
[0]
"""

from __future__ import annotations

import numpy as np
import pymatching
import stim

from qecd.decoder.pymatching_backend import PyMatchingDecoder
from qecd.errors import DecoderError

__all__ = ["CorrelatedPyMatchingDecoder"]


class CorrelatedPyMatchingDecoder(PyMatchingDecoder):
    """:class:`PyMatchingDecoder` with ``enable_correlations=True`` at construction and at
    every decode."""

    name = "pymatching-corr"
    #: a matching backend: the window builds graph-like (decomposed) fault tables for it
    graph_like = True
    #: reads the DEM's ``^`` decompositions: a whole-shot window hands it the DEM itself
    uses_decompositions = True
    #: correlated matching needs the whole decomposed DEM per window: decoded from Python
    compiles_streams = False

    @classmethod
    def compile_stream(cls, stream: object) -> None:
        return None

    def __init__(self, dem: stim.DetectorErrorModel) -> None:
        super().__init__(dem)
        self._dem = dem  # correlations are read from the DEM: a pickle carries its text
        try:
            self.matching = pymatching.Matching.from_detector_error_model(
                dem, enable_correlations=True)
        except ValueError as e:  # e.g. an error of probability > 0.5 (PyMatching's rule)
            raise DecoderError(f"pymatching-corr: PyMatching refused the DEM for correlated "
                               f"matching: {e}; plain pymatching takes it") from None
        self.matching.decode(np.zeros(self.faults.num_detectors, dtype=np.uint8),
                             enable_correlations=True)

    def __getstate__(self) -> dict:
        """The DEM text: correlated matching is built from the DEM's hyperedges, which the
        edge list of :meth:`PyMatchingDecoder.__getstate__` does not keep. The receiving
        process rebuilds with ``from_detector_error_model`` (holding its GIL for the build:
        bounded only by the DEM limits, see docs/server.md)."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("matching", "_dem")}
        state["_dem_text"] = str(self._dem)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        dem = stim.DetectorErrorModel(state.pop("_dem_text"))
        self.__dict__.update(state)
        self._dem = dem
        self.matching = pymatching.Matching.from_detector_error_model(
            dem, enable_correlations=True)
        self.matching.decode(np.zeros(self.faults.num_detectors, dtype=np.uint8),
                             enable_correlations=True)

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel,
                 **options: object) -> CorrelatedPyMatchingDecoder:
        if options:
            raise DecoderError(f"pymatching-corr: unknown options {sorted(options)}; "
                               "allowed: none")
        return cls(dem)

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        s = self._check_syndrome(syndrome)
        return np.asarray(self.matching.decode(s, enable_correlations=True), dtype=np.uint8)

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        s = self._check_syndrome(syndrome)
        edges = self.matching.decode_to_edges_array(s, enable_correlations=True)
        return self._faults_of_edges(edges)

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        d = self._check_batch(dets)
        return np.asarray(self.matching.decode_batch(d, enable_correlations=True),
                          dtype=np.uint8)

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        p = np.asarray(packed, dtype=np.uint8)
        nbytes = (self.num_detectors + 7) // 8
        if p.ndim != 2 or p.shape[1] != nbytes:
            raise DecoderError(f"packed batch: expected shape (shots, {nbytes}), got {p.shape}")
        return self.matching.decode_batch(p, bit_packed_shots=True, bit_packed_predictions=True,
                                          enable_correlations=True)
