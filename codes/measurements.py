"""Raw measurements to detection events, one round at a time (measurement input, protocol §6.3.1).

A control system measures qubits; the decoder wants detection events. A stim circuit's
``DETECTOR`` instructions say which measurement results each detector XORs (``rec[-k]``
targets); its reference sample (a noiseless run) gives the parity each detector has without
errors. :class:`MeasurementLayout` compiles this once per circuit into XOR tables in the
round layout's order:

- **measurement slices**: round ``t`` of a shot carries the measurements recorded after the
  point where round ``t - 1``'s last detector is declared, up to the point where round
  ``t``'s last detector is declared (circuit order); the last round also takes any trailing
  measurements. So round ``t``'s detectors depend only on rounds ``0 .. t``;
- **XOR table**: for each detector in wire order (round by round, increasing DEM id), the
  shot-relative indices of its measurements and its reference parity.

:func:`convert_round` (Numba) turns round ``t`` into its detection events from a shot's
measurement buffer holding rounds ``0 .. t``; it reads only the measurements the round's
detectors name, so its cost is the detectors' total fan-in (two measurements per bulk
surface-code detector).

Example
-------
>>> import numpy as np, stim
>>> from qecd.codes import build_experiment
>>> exp = build_experiment("repetition:d=3,r=2,p=0.01")
>>> ml = MeasurementLayout.from_circuit(exp.circuit, exp.layout)
>>> ml.slice_sizes, ml.num_measurements
((2, 2, 3), 7)
>>> meas = exp.circuit.compile_sampler(seed=1).sample(4).astype(np.uint8)
>>> ref = exp.circuit.compile_m2d_converter().convert(measurements=meas.astype(bool),
...                                                   append_observables=False)
>>> np.array_equal(ml.convert_shots(meas), ref.astype(np.uint8))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import stim

from qecd import _jit
from qecd.codes.layout import RoundLayout

__all__ = ["MeasurementLayout", "convert_round"]


@numba.njit(**_jit.KERNEL)
def convert_round(shot_meas, t, round_det_start, det_ptr, det_meas, det_flip, out):
    """Detection events of round ``t`` into ``out[:n_t]`` (wire order) from ``shot_meas``
    (uint8 0/1, the shot's measurements, rounds ``0 .. t`` filled). Returns ``n_t``."""
    d0 = round_det_start[t]
    d1 = round_det_start[t + 1]
    for i in range(d1 - d0):
        d = d0 + i
        v = det_flip[d]
        for k in range(det_ptr[d], det_ptr[d + 1]):
            v ^= shot_meas[det_meas[k]]
        out[i] = v & 1
    return d1 - d0


@dataclass(frozen=True)
class MeasurementLayout:
    """Which measurements each round carries, and the XOR tables that make its detectors.

    Attributes
    ----------
    slice_sizes : tuple of int
        Measurements per round of a shot (what a measurement-input SYNDROME carries).
    offsets : numpy.ndarray of int64, shape (R + 1,)
        Shot-relative index of each round's first measurement (``offsets[R]`` = all).
    round_det_start : numpy.ndarray of int64, shape (R + 1,)
        Wire-order index of each round's first detector.
    det_ptr, det_meas : numpy.ndarray of int64
        CSR table: detector ``j`` (wire order) XORs measurements
        ``det_meas[det_ptr[j]:det_ptr[j + 1]]`` (shot-relative indices).
    det_flip : numpy.ndarray of uint8
        Each detector's parity in the noiseless reference run (XOR-ed in).
    """

    slice_sizes: tuple[int, ...]
    offsets: np.ndarray
    round_det_start: np.ndarray
    det_ptr: np.ndarray
    det_meas: np.ndarray
    det_flip: np.ndarray

    @property
    def num_measurements(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def from_circuit(cls, circuit: stim.Circuit, layout: RoundLayout) -> MeasurementLayout:
        """Compile the tables of ``circuit`` for the rounds of ``layout`` (its DEM's layout).

        Raises
        ------
        ValueError
            The circuit's detectors are not those of the layout, or a round's detectors
            need measurements recorded after a later round's detectors (no round order).
        """
        n_det = circuit.num_detectors
        if n_det != layout.num_detectors:
            raise ValueError(f"circuit: expected {layout.num_detectors} detectors (the "
                             f"layout's), got {n_det}")
        meas_of: list[list[int]] = []
        declared_at = np.zeros(n_det, dtype=np.int64)
        count = 0
        for inst in circuit.flattened():
            if inst.name == "DETECTOR":
                recs = [count + t.value for t in inst.targets_copy()
                        if t.is_measurement_record_target]
                declared_at[len(meas_of)] = count
                meas_of.append(recs)
            else:
                count += inst.num_measurements
        total = count
        ref = np.asarray(circuit.reference_sample(), dtype=np.uint8)
        R = layout.num_rounds
        ends = np.zeros(R, dtype=np.int64)
        for t, ids in enumerate(layout.detectors):
            ends[t] = int(declared_at[ids].max()) if len(ids) else 0
        ends = np.maximum.accumulate(ends)
        ends[-1] = total
        offsets = np.concatenate([[0], ends]).astype(np.int64)
        ptr, flat, flip = [0], [], []
        for t, ids in enumerate(layout.detectors):
            for d in ids:
                ms = meas_of[int(d)]
                if ms and max(ms) >= offsets[t + 1]:
                    raise ValueError(f"circuit: detector D{int(d)} of round {t} needs "
                                     f"measurement {max(ms)}, recorded after the round ends")
                flat.extend(ms)
                ptr.append(len(flat))
                flip.append(int(np.bitwise_xor.reduce(ref[ms])) if ms else 0)
        starts = np.concatenate([[0], np.cumsum(layout.round_sizes)]).astype(np.int64)
        return cls(tuple(int(x) for x in np.diff(offsets)), offsets, starts,
                   np.asarray(ptr, dtype=np.int64), np.asarray(flat, dtype=np.int64),
                   np.asarray(flip, dtype=np.uint8))

    def convert_round(self, shot_meas: np.ndarray, t: int, out: np.ndarray) -> int:
        """Round ``t``'s detection events into ``out`` (see :func:`convert_round`)."""
        return convert_round(shot_meas, t, self.round_det_start, self.det_ptr, self.det_meas,
                             self.det_flip, out)

    def convert_shots(self, meas: np.ndarray) -> np.ndarray:
        """Whole shots: uint8 (shots, num_measurements) -> (shots, num_detectors) detection
        events in wire order (round by round; for layouts whose rounds are contiguous id
        ranges, as every spec family's, that is DEM order)."""
        m = np.ascontiguousarray(meas, dtype=np.uint8)
        n_det = int(self.round_det_start[-1])
        out = np.zeros((m.shape[0], n_det), dtype=np.uint8)
        for s in range(m.shape[0]):
            for t in range(len(self.slice_sizes)):
                a, b = self.round_det_start[t], self.round_det_start[t + 1]
                convert_round(m[s], t, self.round_det_start, self.det_ptr, self.det_meas,
                              self.det_flip, out[s, a:b])
        return out
