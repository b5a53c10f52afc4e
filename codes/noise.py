"""Circuit-level noise models for stim circuits.

- ``uniform``: stim's generated-circuit parameters, all equal to ``p``
  (``after_clifford_depolarization``, ``before_round_data_depolarization``,
  ``before_measure_flip_probability``, ``after_reset_flip_probability``).
- ``si1000``: the superconducting-inspired model of Gidney, Newman, Fowler & Broughton
  ("A fault-tolerant honeycomb memory", arXiv 2108.10457, Table 2), inserted into a noiseless
  circuit moment by moment (moments are separated by ``TICK``):

  ==========================  ==========================================
  location                    noise
  ==========================  ==========================================
  two-qubit gate              ``DEPOLARIZE2(p)`` after
  one-qubit Clifford          ``DEPOLARIZE1(p/10)`` after
  reset                       ``X_ERROR(2p)`` after (``Z_ERROR`` for RX)
  measurement                 ``X_ERROR(5p)`` before (``Z_ERROR`` for MX)
  idle in a measure/reset     ``DEPOLARIZE1(2p)``
  moment
  idle in any other moment    ``DEPOLARIZE1(p/10)``
  ==========================  ==========================================

  The model was written for CZ-native hardware; stim's generated circuits use CX, which gets
  the same two-qubit noise (``DEPOLARIZE2(p)``), so the DEM has the same shape of faults.

Example
-------
>>> import stim
>>> c = stim.Circuit("R 0 1\\nTICK\\nH 0\\nTICK\\nCX 0 1\\nTICK\\nM 0 1")
>>> print(si1000(c, 0.001))
R 0 1
X_ERROR(0.002) 0 1
TICK
H 0
DEPOLARIZE1(0.0001) 0 1
TICK
CX 0 1
DEPOLARIZE2(0.001) 0 1
TICK
X_ERROR(0.005) 0 1
M 0 1
"""

from __future__ import annotations

import stim

_ANNOTATIONS = {"DETECTOR", "OBSERVABLE_INCLUDE", "QUBIT_COORDS", "SHIFT_COORDS", "TICK"}
_CHANNELS = {
    "DEPOLARIZE1", "DEPOLARIZE2", "X_ERROR", "Y_ERROR", "Z_ERROR", "PAULI_CHANNEL_1",
    "PAULI_CHANNEL_2", "E", "CORRELATED_ERROR", "ELSE_CORRELATED_ERROR",
}
_RESETS = {"R": "X_ERROR", "RZ": "X_ERROR", "RX": "Z_ERROR", "RY": "X_ERROR"}
_MEASURES = {"M": "X_ERROR", "MZ": "X_ERROR", "MX": "Z_ERROR", "MY": "X_ERROR"}
_MEASURE_RESETS = {"MR": "X_ERROR", "MRZ": "X_ERROR", "MRX": "Z_ERROR", "MRY": "X_ERROR"}


def _qubits(inst: stim.CircuitInstruction) -> list[int]:
    return [t.value for t in inst.targets_copy() if t.is_qubit_target]


def _noisy_moment(moment: list[stim.CircuitInstruction], p: float, all_q: list[int],
                  out: stim.Circuit) -> None:
    touched: set[int] = set()
    measure_or_reset = False
    for inst in moment:
        name = inst.name
        qs = _qubits(inst)
        if name in _ANNOTATIONS or name in _CHANNELS:
            out.append(inst)
            continue
        touched.update(qs)
        if name in _MEASURES or name in _MEASURE_RESETS:
            measure_or_reset = True
            flip = _MEASURES.get(name) or _MEASURE_RESETS[name]
            out.append(flip, qs, 5 * p)
            out.append(inst)
            if name in _MEASURE_RESETS:
                out.append(flip, qs, 2 * p)
        elif name in _RESETS:
            measure_or_reset = True
            out.append(inst)
            out.append(_RESETS[name], qs, 2 * p)
        elif stim.gate_data(name).is_two_qubit_gate:
            out.append(inst)
            out.append("DEPOLARIZE2", qs, p)
        elif stim.gate_data(name).is_unitary:
            out.append(inst)
            out.append("DEPOLARIZE1", qs, p / 10)
        else:
            raise ValueError(f"si1000: no noise rule for gate {name}")
    idle = [q for q in all_q if q not in touched]
    if idle:
        out.append("DEPOLARIZE1", idle, 2 * p if measure_or_reset else p / 10)


def si1000(circuit: stim.Circuit, p: float) -> stim.Circuit:
    """Insert SI1000 noise of strength ``p`` into a noiseless circuit (REPEAT blocks kept).

    Parameters
    ----------
    circuit : stim.Circuit
        A noiseless circuit whose moments are separated by ``TICK``.
    p : float
        The model's base error rate (0.001 is the "SI1000 at 0.1%" of the literature).
    """
    used: set[int] = set()
    for inst in circuit.flattened():
        if inst.name not in ("QUBIT_COORDS",):
            used.update(_qubits(inst))
    all_q = sorted(used)

    def walk(block: stim.Circuit) -> stim.Circuit:
        out = stim.Circuit()
        moment: list[stim.CircuitInstruction] = []
        for inst in block:
            if isinstance(inst, stim.CircuitRepeatBlock):
                _noisy_moment(moment, p, all_q, out)
                moment = []
                out.append(stim.CircuitRepeatBlock(inst.repeat_count, walk(inst.body_copy())))
            elif inst.name == "TICK":
                _noisy_moment(moment, p, all_q, out)
                moment = []
                out.append("TICK")
            else:
                moment.append(inst)
        _noisy_moment(moment, p, all_q, out)
        return out

    return walk(circuit)
