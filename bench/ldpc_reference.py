"""ldpc's BP+OSD and BP+LSD as qLDPC reference decoders (benchmark-only dependency).

Settings follow design.md: min-sum with scaling 0.625 (ldpc's default 1.0 is far worse),
30 BP iterations, combination sweep of order 7 (``osd_cs`` / ``lsd_cs``). Decoding is ldpc's
per-shot Python call, as ldpc's own sinter integration does.

>>> import stim
>>> dem = stim.DetectorErrorModel("error(0.1) D0 L0\\nerror(0.1) D0 D1\\nerror(0.1) D1")
>>> LdpcBpOsd(dem).decode_batch([[1, 0], [1, 1]]).tolist()
[[1], [0]]
"""

from __future__ import annotations

import numpy as np
import stim

from qecd.decoder.fault_table import FaultTable


class LdpcBpOsd:
    """``ldpc.BpOsdDecoder`` (OSD-CS) over a DEM's hypergraph columns."""

    name = "ldpc-bposd"

    def __init__(self, dem: stim.DetectorErrorModel, *, max_iter: int = 30,
                 osd_order: int = 7, ms_scaling_factor: float = 0.625) -> None:
        from ldpc import BpOsdDecoder

        self._setup(dem)
        self._bposd = BpOsdDecoder(
            self.h, error_channel=list(self.priors), max_iter=max_iter,
            bp_method="minimum_sum", ms_scaling_factor=ms_scaling_factor,
            osd_method="osd_cs", osd_order=osd_order,
        )

    def _setup(self, dem: stim.DetectorErrorModel) -> None:
        import scipy.sparse as sp

        t = FaultTable.from_dem(dem, graph=False)
        cols = np.repeat(np.arange(t.num_faults), np.diff(t.det_indptr))
        self.h = sp.csc_matrix(
            (np.ones(len(t.det_indices), dtype=np.uint8), (t.det_indices, cols)),
            shape=(t.num_detectors, t.num_faults),
        )
        self.obs = t.obs_mask.T.astype(np.uint8)  # (num_obs, num_faults)
        self.num_detectors = t.num_detectors
        self.priors = t.probabilities

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        e = self._bposd.decode(np.asarray(syndrome, dtype=np.uint8))
        return (self.obs @ e % 2).astype(np.uint8)

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        d = np.asarray(dets, dtype=np.uint8)
        return np.array([self.decode(s) for s in d], dtype=np.uint8).reshape(
            d.shape[0], self.obs.shape[0])


class LdpcBpLsd(LdpcBpOsd):
    """``ldpc.BpLsdDecoder`` (LSD-CS, Hillmann et al. arXiv 2406.18655) over a DEM's
    hypergraph columns, with the same BP settings as :class:`LdpcBpOsd`.

    >>> import stim
    >>> dem = stim.DetectorErrorModel("error(0.1) D0 L0\\nerror(0.1) D0 D1\\nerror(0.1) D1")
    >>> LdpcBpLsd(dem).decode_batch([[1, 0], [1, 1]]).tolist()
    [[1], [0]]
    """

    name = "ldpc-bplsd"

    def __init__(self, dem: stim.DetectorErrorModel, *, max_iter: int = 30,
                 lsd_order: int = 7, ms_scaling_factor: float = 0.625) -> None:
        from ldpc import BpLsdDecoder

        self._setup(dem)
        self._bposd = BpLsdDecoder(
            self.h, error_channel=list(self.priors), max_iter=max_iter,
            bp_method="minimum_sum", ms_scaling_factor=ms_scaling_factor,
            lsd_method="lsd_cs", lsd_order=lsd_order,
        )
