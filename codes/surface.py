"""Rotated surface-code memory experiments as noisy stim circuits.

Example
-------
>>> c = surface_code_circuit(d=3, rounds=2, p=0.001, noise="si1000", basis="x")
>>> c.num_detectors, c.num_observables
(16, 1)
"""

from __future__ import annotations

import stim

from qecd.codes.noise import si1000


def generated_memory(task: str, *, distance: int, rounds: int, p: float,
                     noise: str) -> stim.Circuit:
    """A stim generated memory circuit of ``task`` under noise model ``noise``.

    ``uniform`` uses stim's own noise parameters (all equal to ``p``); ``si1000`` starts from
    the noiseless circuit and inserts :func:`qecd.codes.noise.si1000`.
    """
    if noise == "uniform":
        return stim.Circuit.generated(
            task,
            distance=distance,
            rounds=rounds,
            after_clifford_depolarization=p,
            before_round_data_depolarization=p,
            before_measure_flip_probability=p,
            after_reset_flip_probability=p,
        )
    if noise == "si1000":
        return si1000(stim.Circuit.generated(task, distance=distance, rounds=rounds), p)
    raise ValueError(f"noise: expected uniform|si1000, got {noise!r}")


def surface_code_circuit(
    *, d: int, rounds: int, p: float, noise: str = "uniform", basis: str = "z"
) -> stim.Circuit:
    """Rotated surface-code memory in the ``basis`` basis: ``d*d`` data qubits,
    ``d*d - 1`` measure qubits, ``rounds`` rounds of stabilizer measurement, then a final
    transversal data measurement. One logical observable."""
    return generated_memory(
        f"surface_code:rotated_memory_{basis}", distance=d, rounds=rounds, p=p, noise=noise
    )
