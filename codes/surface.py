"""Rotated surface-code memory experiments as noisy stim circuits.

Example
-------
>>> c = surface_code_circuit(d=3, rounds=2, p=0.001, noise="si1000", basis="x")
>>> c.num_detectors, c.num_observables
(16, 1)
"""

from __future__ import annotations

import stim

from qecd.codes.experiment import circuit_experiment
from qecd.codes.family import Family, register
from qecd.codes.fields import choice_field, int_field, prob_field
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


#: noise models of the stim-generated memory circuits (surface, repetition)
NOISE_MODELS = ("uniform", "si1000")


def _build(spec):
    d = spec["d"]
    circuit = surface_code_circuit(d=d, rounds=spec["r"], p=spec["p"], noise=spec["noise"],
                                   basis=spec["basis"])
    return circuit_experiment(spec, circuit, name=f"rotated surface code d={d}", n=d * d, k=1,
                              d=d)


def _rounds_default_d(values: dict) -> None:
    values.setdefault("r", values["d"])


#: ``surface:d=..,r=..,p=..,noise=..,basis=..``: ``d`` odd >= 3; ``r`` rounds (default d);
#: ``p`` (0.001); ``noise`` uniform|si1000 (uniform); ``basis`` z|x (z)
FAMILY = register(Family(
    name="surface",
    fields={"d": (int_field("d", 3, odd=True), None),
            "r": (int_field("r", 1), None),
            "p": (prob_field("p"), 0.001),
            "noise": (choice_field("noise", NOISE_MODELS), "uniform"),
            "basis": (choice_field("basis", ("z", "x")), "z")},
    required=("d",),
    build=_build,
    graph_like=True,
    derive=_rounds_default_d,
    window=lambda spec: (2 * spec["d"], spec["d"]),
    catalog=tuple(f"surface:d={d}" for d in (3, 5, 7, 9, 11)),
))
