"""decoder/compiled_stream.py: the Numba stream loop equals the Python StreamDecoder."""

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder.compiled_stream import CompiledStream
from qecd.decoder.plan import WindowPlan
from qecd.decoder.window import StreamDecoder
from qecd.errors import DecoderError


@pytest.mark.parametrize("spec, window, commit", [
    ("surface:d=3,r=3,p=0.01", None, None),
    ("surface:d=3,r=12,p=0.01", 6, 3),
    ("surface:d=5,r=20,p=0.005,basis=x", 10, 5),
    ("repetition:d=5,r=9,p=0.03", 4, 1),
])
def test_compiled_stream_equals_python_stream_decoder(spec, window, commit):
    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, "uf", window=window, commit=commit)
    cs = CompiledStream(sd.plan)
    dets, _ = exp.sample(200, seed=5)
    for shot in dets:
        for ids in exp.layout.detectors:
            a = sd.push_round(shot[ids])
            b = cs.push_round(np.packbits(shot[ids], bitorder="little"), packed=True)
            assert (a is None) == (b is None)
            if a is not None:
                assert (a.first_round, a.last_round, a.shot_end) == (b.first_round,
                                                                     b.last_round, b.shot_end)
                assert np.array_equal(a.observables, b.observables)
                assert np.array_equal(np.sort(a.fault_ids), b.fault_ids)


def test_compiled_stream_resets_between_shots_and_counts_them():
    exp = build_experiment("surface:d=3,r=3,p=0.02")
    cs = CompiledStream(StreamDecoder(exp.dem, exp.layout, "uf").plan)
    dets, obs = exp.sample(30, seed=1)
    pred = cs.decode_batch(dets)
    assert cs.next_round == 0 and int(cs._state[0][3]) == 30
    assert pred.shape == obs.shape


def test_compiled_stream_needs_a_graph_like_plan():
    exp = build_experiment("bb:n=72,r=2,p=0.002")
    plan = WindowPlan.build(exp.dem, exp.layout, graph_like=False)
    with pytest.raises(DecoderError, match="graph-like"):
        CompiledStream(plan)


def test_compiled_stream_keeps_the_backend_options():
    exp = build_experiment("surface:d=3,r=3,p=0.02")
    sd = StreamDecoder(exp.dem, exp.layout, "uf", backend_options={"weight_resolution": 7})
    assert sd.compile().union.kernel_args() is not None
    assert sd.compile().union.weight_resolution == 7
