"""pytest-benchmark suite: decoder kernels per backend and distance (not part of make test).

Each benchmark decodes one fixed, seeded batch of bit-packed shots; ``extra_info`` records
shots and rounds so reports can show time per round. Run with ``make bench``; the CI gate
(``make bench-gate``) compares medians against the stored baseline and checks the ratios
measured in one run (``qecd.bench.gate``).
"""

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder import make_decoder
from qecd.decoder.bp_cluster import BpClusterDecoder
from qecd.decoder.pymatching_backend import PyMatchingDecoder
from qecd.decoder.union_find import UnionFindDecoder

SHOTS = 2000
SURFACE = [(d, p) for d in (5, 7, 11) for p in (0.001, 0.003)]


def _batch(spec: str):
    exp = build_experiment(spec)
    dets, _ = exp.sample(SHOTS, seed=2026, bit_packed=True)
    return exp, dets


@pytest.mark.parametrize("backend", [PyMatchingDecoder.name, UnionFindDecoder.name])
@pytest.mark.parametrize("d,p", SURFACE)
def test_surface_decode_batch(benchmark, backend, d, p):
    exp, packed = _batch(f"surface:d={d},p={p}")
    dec = make_decoder(backend, exp.dem)
    benchmark.extra_info.update(shots=SHOTS, rounds=d, spec=str(exp.spec))
    out = benchmark(dec.decode_batch_packed, packed)
    assert out.shape == (SHOTS, 1)


@pytest.mark.parametrize("n,p", [(72, 0.003), (144, 0.003)])
def test_bb_decode_batch(benchmark, n, p):
    exp, packed = _batch(f"bb:n={n},r=3,p={p}")
    dec = make_decoder(BpClusterDecoder.name, exp.dem)
    benchmark.extra_info.update(shots=SHOTS, rounds=3, spec=str(exp.spec))
    out = benchmark(dec.decode_batch_packed, packed)
    assert out.shape[0] == SHOTS


def test_single_shot_pymatching_call_overhead(benchmark):
    exp, _ = _batch("surface:d=5,p=0.001")
    dec = make_decoder(PyMatchingDecoder.name, exp.dem)
    syn = np.zeros(exp.dem.num_detectors, dtype=np.uint8)
    syn[[3, 40]] = 1
    benchmark(dec.decode, syn)
