"""decoder/compiled_stream.py: the Numba stream loop equals the Python StreamDecoder, for
every backend that compiles its window decode (``compiles_streams``)."""

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder._uf_windows import compile_uf_windows
from qecd.decoder.compiled_stream import CompiledStream
from qecd.decoder.plan import WindowPlan
from qecd.decoder.registry import backend_class, backend_names
from qecd.decoder.window import StreamDecoder
from qecd.errors import DecoderError

# the first run compiles the stream kernels per window-decoder kind: minutes on a loaded
# 2-CPU machine (cached after)
pytestmark = pytest.mark.timeout(900)

COMPILED = [b for b in backend_names() if backend_class(b).compiles_streams
            and not getattr(backend_class(b), "uses_decompositions", False)]


def _same_commits(sd, cs, dets, layout):
    """Push every round of ``dets`` through both; each commit must match, with the compiled
    side's fault ids the distinct sorted ids the wire carries."""
    n = 0
    for shot in dets:
        for ids in layout.detectors:
            a = sd.push_round(shot[ids])
            b = cs.push_round(np.packbits(shot[ids], bitorder="little"), packed=True)
            assert (a is None) == (b is None)
            if a is not None:
                n += 1
                assert (a.first_round, a.last_round, a.shot_end) == (b.first_round,
                                                                     b.last_round, b.shot_end)
                assert np.array_equal(a.observables, b.observables)
                assert np.array_equal(np.unique(a.fault_ids), b.fault_ids)
    return n


@pytest.mark.parametrize("spec, window, commit", [
    ("surface:d=3,r=3,p=0.01", None, None),
    ("surface:d=3,r=12,p=0.01", 6, 3),
    ("surface:d=5,r=20,p=0.005,basis=x", 10, 5),
    ("repetition:d=5,r=9,p=0.03", 4, 1),
])
def test_compiled_uf_stream_equals_python_stream_decoder(spec, window, commit):
    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, "uf", window=window, commit=commit)
    dets, _ = exp.sample(200, seed=5)
    assert _same_commits(sd, sd.compile(), dets, exp.layout) > 0


@pytest.mark.parametrize("spec, window, commit, options", [
    ("bb:n=72,r=6,p=0.003", None, None, {}),
    ("bb:n=72,r=8,p=0.004", 4, 2, {}),
    ("hgp:seed=hamming7,r=8,p=0.02", 3, 1, {"max_iter": 2, "lsd_order": 2}),
    ("surface:d=3,r=6,p=0.02", 2, 1, {"relay_legs": 0}),
])
def test_compiled_bp_cluster_stream_equals_python_stream_decoder(spec, window, commit,
                                                                 options):
    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, "bp-cluster", window=window, commit=commit,
                       backend_options=options)
    cs = sd.compile()
    assert isinstance(cs, CompiledStream) and cs.backend == "bp-cluster"
    dets, _ = exp.sample(120, seed=11)
    assert _same_commits(sd, cs, dets, exp.layout) > 0
    assert cs.windows.decoders[0].options == sd._windows[0].decoder.options


@pytest.mark.parametrize("backend", COMPILED)
def test_a_compiled_stream_refuses_an_unexplainable_window_and_carries_on(backend):
    # three detectors on a cycle, no boundary: an odd syndrome has no explanation
    import stim

    from qecd.codes import RoundLayout

    dem = stim.DetectorErrorModel("\n".join([
        "error(0.1) D0 D1", "error(0.1) D1 D2", "error(0.1) D2 D0 L0",
        "detector(0, 0) D0", "detector(1, 0) D1", "detector(2, 0) D2"]))
    cs = StreamDecoder(dem, RoundLayout.from_dem(dem), backend).compile()
    with pytest.raises(DecoderError, match=f"{backend}: no set of faults explains"):
        cs.push_round(np.array([1, 1, 1], np.uint8))
    assert cs.next_round == 0
    c = cs.push_round(np.array([1, 0, 1], np.uint8))  # the D2 D0 L0 fault
    assert c.shot_end and c.observables.tolist() == [1]


def test_compiled_stream_resets_between_shots_and_counts_them():
    exp = build_experiment("surface:d=3,r=3,p=0.02")
    cs = StreamDecoder(exp.dem, exp.layout, "uf").compile()
    dets, obs = exp.sample(30, seed=1)
    pred = cs.decode_batch(dets)
    assert cs.next_round == 0 and int(cs._state.st[3]) == 30
    assert pred.shape == obs.shape


def test_uf_windows_need_a_graph_like_plan():
    exp = build_experiment("bb:n=72,r=2,p=0.002")
    plan = WindowPlan.build(exp.dem, exp.layout, graph_like=False)
    with pytest.raises(DecoderError, match="graph-like"):
        compile_uf_windows(plan)


def test_compiled_stream_keeps_the_backend_options():
    exp = build_experiment("surface:d=3,r=3,p=0.02")
    sd = StreamDecoder(exp.dem, exp.layout, "uf", backend_options={"weight_resolution": 7})
    assert sd.compile().windows.decoders[0].weight_resolution == 7


@pytest.mark.parametrize("spec, window, commit", [
    ("surface:d=3,r=3,p=0.02", None, None),
    ("surface:d=5,r=10,p=0.005", 6, 3),
    ("repetition:d=5,r=9,p=0.05", 2, 1),
])
def test_compiled_pymatching_stream_equals_python_stream_decoder(spec, window, commit):
    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=window, commit=commit)
    cs = sd.compile()
    assert cs.decodes_on_host  # Numba up to the PyMatching call and after it
    dets, _ = exp.sample(150, seed=3)
    assert _same_commits(sd, cs, dets, exp.layout) > 0


@pytest.mark.parametrize("backend, spec", [("uf", "surface:d=3,r=6,p=0.01"),
                                           ("pymatching", "surface:d=3,r=6,p=0.01"),
                                           ("bp-cluster", "bb:n=72,r=2,p=0.003")])
def test_a_compiled_stream_pickles_and_decodes_the_same(backend, spec):
    """Plans are built in a worker process and pickled back: every compiled kind must
    survive it (PyMatching's graphs are rebuilt from their edge arrays)."""
    import pickle

    exp = build_experiment(spec)
    sd = StreamDecoder(exp.dem, exp.layout, backend, window=2, commit=1)
    cs = sd.compile()
    assert cs is not None
    twin = pickle.loads(pickle.dumps(cs))
    dets, _ = exp.sample(100, seed=2)
    assert np.array_equal(twin.decode_batch(dets), sd.decode_batch(dets))
