"""What the CSS code families (``bb``, ``hgp``) share: their noise fields, derived fields and
how a spec becomes an experiment (a phenomenological DEM, or a memory circuit with the
family's syndrome cycle).

Example
-------
>>> from qecd.codes import build_experiment
>>> exp = build_experiment("hgp:seed=rep3,r=2,p=0.01")
>>> exp.n, exp.k, exp.circuit is None, exp.graph_like
(13, 1, True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qecd.codes.css import CssCode
from qecd.codes.experiment import Experiment, circuit_experiment
from qecd.codes.fields import choice_field, int_field, prob_field
from qecd.codes.layout import RoundLayout
from qecd.codes.spec import ExperimentSpec

__all__ = ["CSS_NOISE_MODELS", "css_build", "css_derive", "css_fields", "css_window"]

#: noise of the CSS code families: phenomenological (a DEM) or a circuit (codes/css_circuit.py)
CSS_NOISE_MODELS = ("phenomenological", "circuit", "si1000")


def css_fields(code_fields: dict[str, tuple[Callable[[str], Any], Any]]
               ) -> dict[str, tuple[Callable[[str], Any], Any]]:
    """The family's code fields followed by ``r``, ``p``, ``q``, ``basis``, ``noise``."""
    return {**code_fields,
            "r": (int_field("r", 1), None),
            "p": (prob_field("p"), 0.001),
            "q": (prob_field("q"), None),
            "basis": (choice_field("basis", ("z", "x")), "z"),
            "noise": (choice_field("noise", CSS_NOISE_MODELS), "phenomenological")}


def css_derive(code_of: Callable[[dict[str, Any]], CssCode]) -> Callable[[dict[str, Any]], None]:
    """``q`` defaults to ``p``; ``r`` to the code distance (or its stated bound)."""
    def derive(values: dict[str, Any]) -> None:
        values.setdefault("q", values["p"])
        if "r" not in values:
            values["r"] = int(code_of(values).distance or 1)
    return derive


def css_window(code_of: Callable[[dict[str, Any]], CssCode]
               ) -> Callable[[ExperimentSpec], tuple[int, int]]:
    """Window two code distances, commit one."""
    def window(spec: ExperimentSpec) -> tuple[int, int]:
        d = int(code_of(spec.as_dict()).distance or 1)
        return 2 * d, d
    return window


def css_build(spec: ExperimentSpec, code: CssCode, cycle: Callable[[CssCode], Any]
              ) -> Experiment:
    """A CSS family's experiment: the phenomenological DEM, or a memory circuit built with
    ``cycle(code)`` (:func:`qecd.codes.css_circuit.css_memory_circuit`) under ``circuit``
    (uniform) or ``si1000`` noise."""
    if spec["noise"] != "phenomenological":
        from qecd.codes.css_circuit import css_memory_circuit

        circuit = css_memory_circuit(code, cycle(code), rounds=spec["r"], p=spec["p"],
                                     q=spec["q"], basis=spec["basis"], noise=spec["noise"])
        return circuit_experiment(spec, circuit, name=code.name, n=code.n, k=code.k,
                                  d=code.distance, d_note=code.distance_note, decompose=False)
    from qecd.codes.phenomenological import phenomenological_dem

    dem = phenomenological_dem(code, rounds=spec["r"], p=spec["p"], q=spec["q"],
                               basis=spec["basis"])
    return Experiment(spec, None, dem, RoundLayout.from_dem(dem), code.name, code.n, code.k,
                      code.distance, code.distance_note)
