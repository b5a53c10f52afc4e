"""Cost of measurement input: turning one round's raw measurements into its detection events
(codes/measurements.py), per round, at d=5 and d=11, next to the floor of calling a compiled
function that does nothing with the same arguments. Run with
``pytest bench/test_measurement_conversion.py --benchmark-only``."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from qecd import _jit
from qecd.codes import build_experiment
from qecd.codes.measurements import MeasurementLayout, convert_round

#: no on-disk cache here: a benchmark module is not importable by the name Numba's cache uses
_BENCH = {k: v for k, v in _jit.KERNEL.items() if k != "cache"}


@numba.njit(**_BENCH)
def _noop(shot_meas, t, round_det_start, det_ptr, det_meas, det_flip, out):
    return 0


@numba.njit(**_BENCH)
def convert_all(meas, round_det_start, det_ptr, det_meas, det_flip, out):
    """Every round of every shot, inside Numba (the in-engine cost without Python calls)."""
    total = 0
    for s in range(meas.shape[0]):
        for t in range(round_det_start.shape[0] - 1):
            total += convert_round(meas[s], t, round_det_start, det_ptr, det_meas, det_flip, out)
    return total


def _setup(d: int):
    exp = build_experiment(f"surface:d={d},r={d},p=0.003")
    ml = MeasurementLayout.from_circuit(exp.circuit, exp.layout)
    meas = exp.circuit.compile_sampler(seed=1).sample(64).astype(np.uint8)
    out = np.zeros(max(exp.layout.round_sizes), np.uint8)
    args = (ml.round_det_start, ml.det_ptr, ml.det_meas, ml.det_flip, out)
    return exp, ml, meas, args


@pytest.mark.parametrize("d", [5, 11])
def test_one_bulk_round_from_python(benchmark, d):
    _, _, meas, args = _setup(d)
    benchmark(convert_round, meas[0], 2, *args)


@pytest.mark.parametrize("d", [5, 11])
def test_floor_an_empty_compiled_call(benchmark, d):
    _, _, meas, args = _setup(d)
    benchmark(_noop, meas[0], 2, *args)


@pytest.mark.parametrize("d", [5, 11])
def test_every_round_in_engine(benchmark, d):
    exp, _, meas, args = _setup(d)
    n = benchmark(convert_all, meas, *args)
    assert n == 64 * exp.layout.num_detectors
