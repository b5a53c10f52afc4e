"""Codes, noise models, experiment specs and round layouts.

>>> from qecd.codes import build_experiment
>>> exp = build_experiment("repetition:d=3,r=2,p=0.01")
>>> exp.layout.round_sizes
(2, 2, 2)
"""

from qecd.codes.experiment import Experiment, build_experiment
from qecd.codes.layout import RoundLayout
from qecd.codes.spec import ExperimentSpec, families, parse_spec

__all__ = [
    "Experiment",
    "ExperimentSpec",
    "RoundLayout",
    "build_experiment",
    "families",
    "parse_spec",
]
