"""Repetition-code memory experiments (bit-flip code, Z-basis memory) as stim circuits.

Example
-------
>>> c = repetition_code_circuit(d=3, rounds=2, p=0.01)
>>> c.num_detectors, c.num_observables
(6, 1)
"""

from __future__ import annotations

import stim

from qecd.codes.experiment import circuit_experiment
from qecd.codes.family import Family, register
from qecd.codes.fields import choice_field, int_field, prob_field
from qecd.codes.surface import NOISE_MODELS, generated_memory


def repetition_code_circuit(*, d: int, rounds: int, p: float,
                            noise: str = "uniform") -> stim.Circuit:
    """``d`` data qubits, ``d - 1`` ZZ checks measured ``rounds`` times, then data measured."""
    return generated_memory("repetition_code:memory", distance=d, rounds=rounds, p=p, noise=noise)


def _build(spec):
    d = spec["d"]
    circuit = repetition_code_circuit(d=d, rounds=spec["r"], p=spec["p"], noise=spec["noise"])
    return circuit_experiment(spec, circuit, name=f"repetition code d={d}", n=d, k=1, d=d)


def _rounds_default_d(values: dict) -> None:
    values.setdefault("r", values["d"])


#: ``repetition:d=..,r=..,p=..,noise=..``: ``d`` >= 2; ``r`` (default d); ``p`` (0.001);
#: ``noise`` uniform|si1000 (uniform)
FAMILY = register(Family(
    name="repetition",
    fields={"d": (int_field("d", 2), None),
            "r": (int_field("r", 1), None),
            "p": (prob_field("p"), 0.001),
            "noise": (choice_field("noise", NOISE_MODELS), "uniform")},
    required=("d",),
    build=_build,
    graph_like=True,
    derive=_rounds_default_d,
    window=lambda spec: (2 * spec["d"], spec["d"]),
    catalog=tuple(f"repetition:d={d}" for d in (3, 5, 7)),
))
