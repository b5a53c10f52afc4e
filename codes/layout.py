"""Round layouts: which detectors arrive in which round of a stream.

A stream delivers a shot as a sequence of *rounds* (time slices). A detector belongs to the
round given by its time coordinate: by default the last entry of its stim detector
coordinates (``time_coord=-1``; some tools put time first: pass ``time_coord=0``). Distinct
time values, sorted, are numbered 0, 1, 2, ... For stim's generated memory circuits with
``r`` rounds this gives ``r + 1`` rounds: round 0 (the first, *special*: only the stabilizers
of the memory basis are deterministic, so it carries half the detectors of a bulk round),
rounds ``1..r-1`` (bulk), and round ``r`` (the final data-qubit measurement, *special*).

Within a round, detectors are ordered by DEM detector id; a round's bits on the wire follow
that order.

Example
-------
>>> import stim
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3)
>>> lay = RoundLayout.from_dem(c.detector_error_model())
>>> lay.num_rounds, lay.round_sizes
(4, (4, 8, 8, 4))
>>> lay.detectors[0].tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.errors import DemError


@dataclass(frozen=True, eq=False)
class RoundLayout:
    """Detectors per round of one shot.

    Attributes
    ----------
    detectors : tuple of numpy.ndarray (int32)
        ``detectors[t]`` lists the DEM detector ids of round ``t`` in increasing order.
    num_observables : int
        Logical observables of the experiment.
    times : tuple of float
        The time coordinate value of each round.
    """

    detectors: tuple[np.ndarray, ...]
    num_observables: int
    times: tuple[float, ...]

    @property
    def num_rounds(self) -> int:
        return len(self.detectors)

    @property
    def num_detectors(self) -> int:
        return int(sum(len(d) for d in self.detectors))

    @property
    def round_sizes(self) -> tuple[int, ...]:
        return tuple(int(len(d)) for d in self.detectors)

    @property
    def first_round(self) -> np.ndarray:
        """Detector ids of the first (special) round."""
        return self.detectors[0]

    @property
    def final_round(self) -> np.ndarray:
        """Detector ids of the final round (the data-qubit measurement in memory experiments)."""
        return self.detectors[-1]

    @property
    def bulk_size(self) -> int:
        """Detectors in a bulk round (the most common round size)."""
        sizes = self.round_sizes
        return max(set(sizes), key=sizes.count)

    def round_of_detector(self) -> np.ndarray:
        """int32 array mapping every detector id to its round."""
        out = np.full(self.num_detectors, -1, dtype=np.int32)
        for t, ids in enumerate(self.detectors):
            out[ids] = t
        return out

    def detectors_in(self, start: int, stop: int) -> np.ndarray:
        """Detector ids of rounds ``start <= t < stop``, concatenated in round order."""
        parts = self.detectors[max(start, 0) : stop]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoundLayout):
            return NotImplemented
        return (
            self.num_observables == other.num_observables
            and self.times == other.times
            and len(self.detectors) == len(other.detectors)
            and all(np.array_equal(a, b)
                    for a, b in zip(self.detectors, other.detectors, strict=True))
        )

    __hash__ = None  # type: ignore[assignment]

    def to_json(self) -> dict:
        """A JSON-able summary (round sizes and specials)."""
        return {
            "num_rounds": self.num_rounds,
            "num_detectors": self.num_detectors,
            "num_observables": self.num_observables,
            "round_sizes": list(self.round_sizes),
            "first_round_size": int(len(self.first_round)),
            "bulk_round_size": int(self.bulk_size),
            "final_round_size": int(len(self.final_round)),
        }

    @staticmethod
    def from_dem(dem: stim.DetectorErrorModel, *, time_coord: int = -1) -> RoundLayout:
        """Derive the layout of any DEM whose detectors all carry coordinates.

        Parameters
        ----------
        dem : stim.DetectorErrorModel
        time_coord : int
            Which coordinate is time (default: the last one).

        Raises
        ------
        DemError
            If a detector has no coordinates (the message lists some of them) or too few.
        """
        n = dem.num_detectors
        coords = dem.get_detector_coordinates()
        missing = [k for k in range(n) if not coords.get(k)]
        if missing:
            raise DemError(
                f"{len(missing)} of {n} detectors have no coordinates (e.g. D"
                + ", D".join(map(str, missing[:5]))
                + "); every detector needs a time coordinate to be assigned to a round"
            )
        times = np.empty(n, dtype=np.float64)
        for k in range(n):
            c = coords[k]
            if not -len(c) <= time_coord < len(c):
                raise DemError(f"detector D{k} has coordinates {c}: no index {time_coord}")
            times[k] = c[time_coord]
        distinct, round_of = np.unique(times, return_inverse=True)
        order = np.argsort(round_of, kind="stable")
        bounds = np.searchsorted(round_of[order], np.arange(len(distinct) + 1))
        detectors = tuple(
            order[bounds[t] : bounds[t + 1]].astype(np.int32) for t in range(len(distinct))
        )
        return RoundLayout(detectors, dem.num_observables, tuple(float(x) for x in distinct))
