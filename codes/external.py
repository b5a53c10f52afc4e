"""Experiments from a researcher's own stim circuit (``qecd bench accuracy --circuit FILE``).

qecd's spec strings name the circuits qecd builds; a researcher comparing decoders on their
own circuit hands over the circuit instead. :func:`circuit_file_experiment` turns it into an
:class:`ExternalExperiment`, which has what the benchmarks read from an
:class:`~qecd.codes.experiment.Experiment` (``dem``, ``layout``, ``graph_like``,
``rounds``, ``sample``, a ``spec`` label):

- the DEM is sinter's: ``circuit.detector_error_model(decompose_errors=True,
  approximate_disjoint_errors=True)`` when stim can decompose every error into graph-like
  pieces (``graph_like``: PyMatching the reference), else the same without decomposition
  (``graph_like`` False: ldpc's BP+OSD-CS7 the reference);
- the round layout is :meth:`RoundLayout.from_dem` with the chosen time coordinate, or None
  when some detector has no coordinates (whole-shot decoders still work; a windowed name is
  refused with the layout's own message);
- ``rounds`` (the per-round figures' divisor) is the number of detector time slices minus
  one, a memory experiment's syndrome rounds (stim's generated circuits: ``rounds=r`` gives
  slices 0..r), unless given.

Example
-------
>>> import stim
>>> c = stim.Circuit.generated("repetition_code:memory", distance=3, rounds=4,
...                            before_round_data_depolarization=0.01)
>>> exp = ExternalExperiment.from_circuit(c, label="rep3")
>>> exp.graph_like, exp.rounds, exp.layout.num_rounds, exp.dem.num_detectors
(True, 4, 5, 10)
>>> dets, obs = exp.sample(3, seed=1)
>>> dets.shape, obs.shape
((3, 10), (3, 1))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import stim

from qecd.codes.experiment import sample_circuit
from qecd.codes.layout import RoundLayout
from qecd.errors import DemError, QecdError


@dataclass(frozen=True, eq=False)
class ExternalExperiment:
    """A stim circuit from outside qecd, with its DEM and (when its detectors carry time
    coordinates) its round layout. ``spec`` is a label (the file name), not a spec string."""

    spec: str
    circuit: stim.Circuit
    dem: stim.DetectorErrorModel
    layout: RoundLayout | None
    graph_like: bool
    rounds: int
    #: why there is no layout (the layout's error), or None
    layout_error: str | None = None
    name: str = "circuit"
    n: int | None = None
    k: int | None = None
    d: int | None = None
    d_note: str = "unknown (a circuit from outside qecd)"

    @classmethod
    def from_circuit(cls, circuit: stim.Circuit, *, label: str, time_coord: int = -1,
                     rounds: int | None = None) -> ExternalExperiment:
        """The experiment of ``circuit`` (see the module docs); ``label`` names it in
        reports and errors. Raises QecdError when the circuit has no detectors or no
        observables (nothing to decode or to check), or ``rounds`` < 1."""
        if circuit.num_detectors == 0 or circuit.num_observables == 0:
            raise QecdError(
                f"{label}: a circuit to decode needs detectors and observables; it has "
                f"{circuit.num_detectors} DETECTOR and {circuit.num_observables} "
                f"OBSERVABLE_INCLUDE")
        try:
            dem = circuit.detector_error_model(decompose_errors=True,
                                               approximate_disjoint_errors=True)
            graph_like = True
        except ValueError:  # stim: some error has no graph-like decomposition
            dem = circuit.detector_error_model(approximate_disjoint_errors=True)
            graph_like = False
        try:
            layout, why = RoundLayout.from_dem(dem, time_coord=time_coord), None
        except DemError as e:
            layout, why = None, str(e)
        if rounds is None:
            rounds = max(1, layout.num_rounds - 1) if layout is not None else 1
        if rounds < 1:
            raise QecdError(f"{label}: rounds: expected an integer >= 1, got {rounds}")
        return cls(label, circuit, dem, layout, graph_like, int(rounds), why)

    def sample(self, shots: int, *, seed: int | None = None, bit_packed: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """``shots`` shots of the circuit (stim's seeded detector sampler): detection events
        and true observable flips, uint8, as :meth:`Experiment.sample`."""
        return sample_circuit(self.circuit, shots, seed=seed, bit_packed=bit_packed)


def circuit_file_experiment(path: str | Path, *, time_coord: int = -1,
                            rounds: int | None = None) -> ExternalExperiment:
    """Read a stim circuit file (``.stim`` text) into an :class:`ExternalExperiment`
    labelled with the file's name; a file stim cannot parse is a QecdError naming it."""
    path = Path(path)
    try:
        circuit = stim.Circuit(path.read_text())
    except OSError as e:
        raise QecdError(f"circuit file {str(path)!r}: {e.strerror or e}") from None
    except ValueError as e:  # stim's parse errors
        raise QecdError(f"circuit file {str(path)!r}: not a stim circuit: {e}") from None
    return ExternalExperiment.from_circuit(circuit, label=path.name, time_coord=time_coord,
                                           rounds=rounds)
