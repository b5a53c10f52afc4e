"""Repetition-code memory experiments (bit-flip code, Z-basis memory) as stim circuits.

Example
-------
>>> c = repetition_code_circuit(d=3, rounds=2, p=0.01)
>>> c.num_detectors, c.num_observables
(6, 1)
"""

from __future__ import annotations

import stim

from qecd.codes.surface import generated_memory


def repetition_code_circuit(*, d: int, rounds: int, p: float,
                            noise: str = "uniform") -> stim.Circuit:
    """``d`` data qubits, ``d - 1`` ZZ checks measured ``rounds`` times, then data measured."""
    return generated_memory("repetition_code:memory", distance=d, rounds=rounds, p=p, noise=noise)
