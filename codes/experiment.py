"""Experiments: a spec turned into a circuit or DEM, its round layout and code parameters.

Example
-------
>>> exp = build_experiment("surface:d=3,r=3,p=0.001")
>>> exp.layout.round_sizes
(4, 8, 8, 4)
>>> dets, obs = exp.sample(4, seed=7)
>>> dets.shape, obs.shape, dets.dtype
((4, 24), (4, 1), dtype('uint8'))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import stim

from qecd.codes.family import family
from qecd.codes.layout import RoundLayout
from qecd.codes.spec import ExperimentSpec, parse_spec


@dataclass(frozen=True, eq=False)
class Experiment:
    """A sampled-and-decoded experiment.

    Attributes
    ----------
    spec : ExperimentSpec
    circuit : stim.Circuit or None
        The noisy circuit (circuit-level families); None for DEM-only (phenomenological) ones.
    dem : stim.DetectorErrorModel
        With detector coordinates (last = time). Decomposed into graph-like components for
        surface and repetition codes (``decompose_errors=True``).
    layout : RoundLayout
    name, n, k, d, d_note
        Code name and parameters; ``d_note`` says whether ``d`` is exact or a bound.
    """

    spec: ExperimentSpec
    circuit: stim.Circuit | None
    dem: stim.DetectorErrorModel
    layout: RoundLayout
    name: str
    n: int
    k: int
    d: int | None
    d_note: str

    @property
    def graph_like(self) -> bool:
        """True when the DEM decomposes into edges of at most two detectors (its family's
        :attr:`~qecd.codes.family.Family.graph_like`)."""
        return family(self.spec.family).graph_like

    def sample(self, shots: int, *, seed: int | None = None, bit_packed: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``shots`` shots: detection events and the true observable flips.

        Returns uint8 arrays ``(shots, num_detectors)`` and ``(shots, num_observables)``, or
        bit-packed (stim's little bit order) when ``bit_packed``. The same seed gives the same
        shots (stim's seeded samplers).
        """
        if self.circuit is not None:
            return sample_circuit(self.circuit, shots, seed=seed, bit_packed=bit_packed)
        sampler = self.dem.compile_sampler(seed=seed)
        dets, obs, _ = sampler.sample(shots, bit_packed=bit_packed)
        return dets.astype(np.uint8, copy=False), obs.astype(np.uint8, copy=False)


def sample_circuit(circuit: stim.Circuit, shots: int, *, seed: int | None = None,
                   bit_packed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``shots`` shots of ``circuit`` from stim's seeded detector sampler: detection events
    and true observable flips as uint8 (bit-packed, stim's little bit order, when asked)."""
    sampler = circuit.compile_detector_sampler(seed=seed)
    dets, obs = sampler.sample(shots, separate_observables=True, bit_packed=bit_packed)
    return dets.astype(np.uint8, copy=False), obs.astype(np.uint8, copy=False)


def _build(spec: ExperimentSpec) -> Experiment:
    return family(spec.family).build(spec)


@lru_cache(maxsize=64)
def _build_cached(spec: ExperimentSpec) -> Experiment:
    return _build(spec)


def build_experiment(spec: str | ExperimentSpec) -> Experiment:
    """Build (and cache) the experiment a spec names.

    Parameters
    ----------
    spec : str or ExperimentSpec
        e.g. ``"surface:d=5,r=5,p=0.001,noise=si1000,basis=z"`` or ``"bb:n=144,p=0.003"``.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    return _build_cached(spec)


def circuit_experiment(spec: ExperimentSpec, circuit: stim.Circuit, *, name: str, n: int,
                       k: int, d: int | None, d_note: str = "exact",
                       decompose: bool = True) -> Experiment:
    """An experiment from a noisy memory circuit: its DEM (decomposed into graph-like
    components when ``decompose``) and round layout. Families' ``build`` use it."""
    dem = circuit.detector_error_model(decompose_errors=decompose)
    return Experiment(spec, circuit, dem, RoundLayout.from_dem(dem), name, n, k, d, d_note)
