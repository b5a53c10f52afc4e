"""The one decoder interface every backend implements.

A decoder is built once from a stim DEM (construction compiles and warms every kernel: no
later call compiles) and then decodes many syndromes. Arrays follow stim's conventions:

- a syndrome is ``uint8``/``bool`` of shape ``(num_detectors,)``, one entry per detector;
- a batch is ``(shots, num_detectors)``; bit-packed batches are ``uint8`` of shape
  ``(shots, ceil(num_detectors / 8))`` with stim's little bit order (detector ``k`` is bit
  ``k % 8`` of byte ``k // 8``), as ``stim.CompiledDetectorSampler.sample(bit_packed=True)``;
- predictions are ``uint8`` of shape ``(num_observables,)`` (or packed likewise).

``decode_to_faults`` returns ids into the decoder's :class:`FaultTable` (``self.faults``);
XOR-ing those faults' detectors reproduces the syndrome, which is what the sliding-window
decoder needs to carry committed faults across a window boundary.

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder import make_decoder
>>> c = stim.Circuit.generated("repetition_code:memory", distance=3, rounds=2,
...                            after_clifford_depolarization=0.01)
>>> dec = make_decoder("pymatching", c.detector_error_model(decompose_errors=True))
>>> dec.decode(np.zeros(dec.num_detectors, dtype=np.uint8)).tolist()
[0]
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np
import stim

from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a 0/1 array with stim's little bit order.

    >>> pack_bits(np.array([1, 0, 0, 0, 0, 0, 0, 0, 1], dtype=np.uint8)).tolist()
    [1, 1]
    """
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=-1, bitorder="little")


def unpack_bits(packed: np.ndarray, count: int) -> np.ndarray:
    """Unpack ``count`` bits of the last axis (stim's little bit order) to uint8 0/1.

    >>> unpack_bits(np.array([1, 1], dtype=np.uint8), 9).tolist()
    [1, 0, 0, 0, 0, 0, 0, 0, 1]
    """
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=count,
                         bitorder="little")


def _zero_one(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as uint8 after checking every detection event is 0 or 1 (a 2 was decoded as a
    1 before, silently; packed input is bits and needs no such check). A bool array is 0/1
    by its type: it comes back as a uint8 view, unchecked and uncopied (the windows pass
    their own syndromes so, which keeps the check off the per-window path).

    >>> _zero_one(np.array([0, 1, 1], np.int64), "syndrome").tolist()
    [0, 1, 1]
    >>> _zero_one(np.array([[0, 2]]), "batch")
    Traceback (most recent call last):
    ...
    qecd.errors.DecoderError: batch: detection events must be 0 or 1, got 2 at index (0, 1)
    """
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    if a.size:
        if a.dtype.kind == "u":  # the usual case: one pass, no temporary array
            ok = a.max() <= 1
        elif a.dtype.kind == "i":
            ok = a.max() <= 1 and a.min() >= 0
        else:
            ok = bool(np.all((a == 0) | (a == 1)))
        if not ok:
            bad = (a != 0) & (a != 1)
            at = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
            at_text = at if len(at) > 1 else at[0]
            raise DecoderError(f"{what}: detection events must be 0 or 1, got {a[at]} at index "
                               f"{at_text}")
    return a.astype(np.uint8, copy=False)


class Decoder(abc.ABC):
    """Abstract base class of qecd decoders. Subclasses implement ``_decode_faults`` or
    override ``decode``/``decode_batch`` with something faster."""

    #: backend name used in spec strings and reports (``"pymatching"``, ``"uf"``, ...)
    name: ClassVar[str] = "abstract"
    #: the backend decodes matching graphs: its DEMs (and its windows' fault tables) are
    #: decomposed into edges; others take hyperedges as they are
    graph_like: ClassVar[bool] = False
    #: :meth:`compile_stream` returns an engine that runs whole streams inside Numba
    compiles_streams: ClassVar[bool] = False
    #: a process that receives this decoder pickled rebuilds or warms its graph in calls that
    #: hold the GIL throughout (C++ or Rust behind Python), for a time that grows with the
    #: number of faults: a server bounds it (``SessionLimits.max_gil_graph_faults``)
    builds_holding_gil: ClassVar[bool] = False

    faults: FaultTable

    @classmethod
    @abc.abstractmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object) -> Decoder:
        """Build (and warm up) a decoder for ``dem``. Unknown options raise DecoderError."""

    @property
    def num_detectors(self) -> int:
        return self.faults.num_detectors

    @property
    def num_observables(self) -> int:
        return self.faults.num_observables

    @classmethod
    def compile_stream(cls, stream: object) -> object | None:
        """A compiled engine for a :class:`~qecd.decoder.window.StreamDecoder` plan of this
        backend (one that runs the window logic inside Numba), or None when the backend is
        decoded from Python. Backends that set :attr:`compiles_streams` override this."""
        return None

    # -- checks ---------------------------------------------------------------------------
    def _check_syndrome(self, syndrome: np.ndarray) -> np.ndarray:
        s = np.asarray(syndrome)
        if s.shape != (self.num_detectors,):
            raise DecoderError(
                f"syndrome: expected shape ({self.num_detectors},), got {s.shape}"
            )
        return _zero_one(s, "syndrome")

    def _check_batch(self, dets: np.ndarray) -> np.ndarray:
        d = np.asarray(dets)
        if d.ndim != 2 or d.shape[1] != self.num_detectors:
            raise DecoderError(
                f"batch: expected shape (shots, {self.num_detectors}), got {d.shape}"
            )
        return _zero_one(d, "batch")

    # -- the interface --------------------------------------------------------------------
    @abc.abstractmethod
    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids (int64, into ``self.faults``) explaining ``syndrome``."""

    def decode(self, syndrome: np.ndarray) -> np.ndarray:
        """Predicted observable flips (uint8, shape (num_observables,)) for one shot."""
        return self.faults.observables_of(self.decode_to_faults(syndrome))

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        """Predictions (uint8, shape (shots, num_observables)) for unpacked detection events."""
        d = self._check_batch(dets)
        out = np.zeros((d.shape[0], self.num_observables), dtype=np.uint8)
        for i in range(d.shape[0]):
            out[i] = self.decode(d[i])
        return out

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        """Bit-packed in, bit-packed out (stim's little bit order; see module docs)."""
        p = np.asarray(packed, dtype=np.uint8)
        nbytes = (self.num_detectors + 7) // 8
        if p.ndim != 2 or p.shape[1] != nbytes:
            raise DecoderError(f"packed batch: expected shape (shots, {nbytes}), got {p.shape}")
        return pack_bits(self.decode_batch(unpack_bits(p, self.num_detectors)))
