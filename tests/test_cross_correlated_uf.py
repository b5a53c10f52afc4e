"""Correlated union-find with one pass per detector (``uf-xcorr``): the components that flip
no observable are decoded first and their correction re-weights the observables' components.
Checked against the truth, PyMatching and plain union-find on the same shots."""

import numpy as np
import pytest
import stim

from qecd.codes import build_experiment
from qecd.decoder import make_decoder
from qecd.decoder.cross_correlated_uf import observable_components
from qecd.decoder.window import StreamDecoder
from qecd.errors import DecoderError

BACKEND = "uf-xcorr"


@pytest.fixture(scope="module")
def d5_shots():
    exp = build_experiment("surface:d=5,r=10,p=0.006")
    dets, obs = exp.sample(3000, seed=11)
    return exp, dets, obs


def _fails(pred, obs):
    return np.any(pred != obs, axis=1)


def test_fails_less_than_pymatching_on_the_same_shots(d5_shots):
    exp, dets, obs = d5_shots
    matching = _fails(make_decoder("pymatching", exp.dem).decode_batch(dets), obs)
    mine = _fails(make_decoder(BACKEND, exp.dem).decode_batch(dets), obs)
    assert matching.sum() > 100  # failures in the hundreds: the comparison resolves
    # paired: the shots only uf-xcorr fails are far fewer than those only PyMatching fails
    assert (mine & ~matching).sum() * 1.5 < (matching & ~mine).sum()


@pytest.mark.parametrize("spec", ["surface:d=5,r=10,p=0.006,basis=x",
                                  "surface:d=5,r=10,p=0.004,noise=si1000"])
def test_fails_less_than_plain_union_find_beyond_the_default_circuit(spec):
    exp = build_experiment(spec)
    dets, obs = exp.sample(3000, seed=5)
    plain = _fails(make_decoder("uf", exp.dem).decode_batch(dets), obs)
    mine = _fails(make_decoder(BACKEND, exp.dem).decode_batch(dets), obs)
    assert plain.sum() > 50
    assert (mine & ~plain).sum() < (plain & ~mine).sum()


def test_corrections_reproduce_the_syndrome(d5_shots):
    exp, dets, _ = d5_shots
    dec = make_decoder(BACKEND, exp.dem)
    both = 0
    for s in dets[:300]:
        faults = dec.decode_to_faults(s)
        np.testing.assert_array_equal(dec.faults.syndrome_of(faults), s)
        both += bool(s[dec.relevant == 1].any() and s[dec.relevant == 0].any())
    assert both > 100  # most shots exercise both steps


def test_batch_paths_agree_with_single_shots_and_leave_the_weights_as_they_were(d5_shots):
    exp, dets, _ = d5_shots
    dec = make_decoder(BACKEND, exp.dem)
    graph = [a.copy() for a in dec.kernel_args()[:6]]
    batch = dec.decode_batch(dets[:300])
    packed = np.unpackbits(dec.decode_batch_packed(np.packbits(dets[:300], axis=1,
                                                               bitorder="little")),
                           axis=1, count=1, bitorder="little")
    single = np.array([dec.decode(s) for s in dets[:300]])
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(packed, single)
    for before, after in zip(graph, dec.kernel_args()[:6], strict=True):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(dec.kernel_args()[9], dec.edge_weights)  # slack is fresh


def test_a_dem_whose_only_component_carries_the_observable_decodes_as_uf():
    c = stim.Circuit.generated("repetition_code:memory", distance=5, rounds=5,
                               after_clifford_depolarization=0.03)
    dem = c.detector_error_model(decompose_errors=True)
    dets, _ = c.compile_detector_sampler(seed=3).sample(400, separate_observables=True)
    dets = dets.astype(np.uint8)
    mine, plain = make_decoder(BACKEND, dem), make_decoder("uf", dem)
    assert mine.relevant.all() and mine.correlated_pairs == 0
    for s in dets:
        np.testing.assert_array_equal(mine.decode_to_faults(s), plain.decode_to_faults(s))


def test_without_decompositions_it_predicts_as_plain_uf():
    exp = build_experiment("surface:d=5,r=5,p=0.005")
    dets, _ = exp.sample(500, seed=2)
    text = "\n".join(str(i) for i in exp.dem.flattened()
                     if i.type == "error" and "^" not in str(i))
    dem = stim.DetectorErrorModel(f"detector D{exp.dem.num_detectors - 1}\n"
                                  "logical_observable L0\n" + text)
    mine = make_decoder(BACKEND, dem)
    assert mine.correlated_pairs == 0
    np.testing.assert_array_equal(mine.decode_batch(dets),
                                  make_decoder("uf", dem).decode_batch(dets))


def test_observable_components_split_the_surface_code_by_stabilizer_type():
    exp = build_experiment("surface:d=3,r=3,p=0.001")
    dec = make_decoder(BACKEND, exp.dem)
    coords = exp.dem.get_detector_coordinates()
    # rotated memory-z: the Z-type detectors carry the observable, X-type ones are evidence
    assert 0 < dec.relevant.sum() < exp.dem.num_detectors
    assert dec.correlated_pairs > 0
    assert len(coords) == dec.relevant.size
    assert observable_components(0, np.zeros((0, 2), int), np.zeros((0, 1), np.uint8)).size == 0


def test_streams_through_the_window_and_keeps_correlations_in_a_whole_shot_window(d5_shots):
    exp = build_experiment("surface:d=3,r=6,p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, BACKEND, window=4, commit=2)
    dets, obs = exp.sample(300, seed=4)
    assert _fails(sd.decode_batch(dets), obs).mean() < 0.2
    assert sd.decode_shot(np.zeros(exp.dem.num_detectors, np.uint8)).tolist() == [0]
    exp5, dets5, _ = d5_shots
    whole = StreamDecoder(exp5.dem, exp5.layout, BACKEND)
    np.testing.assert_array_equal(whole.decode_batch(dets5[:300]),
                                  make_decoder(BACKEND, exp5.dem).decode_batch(dets5[:300]))


def test_works_as_a_sinter_decoder():
    sinter = pytest.importorskip("sinter")
    from qecd.decoder.sinter_plugin import sinter_decoders

    task = sinter.Task(circuit=build_experiment("surface:d=3,r=3,p=0.01").circuit,
                       json_metadata={"d": 3})
    stats = sinter.collect(num_workers=1, tasks=[task], decoders=[f"qecd-{BACKEND}"],
                           custom_decoders=sinter_decoders(), max_shots=500)
    assert stats[0].shots == 500 and stats[0].errors < 100


def test_bad_options_are_refused():
    dem = stim.DetectorErrorModel("error(0.1) D0 L0")
    with pytest.raises(DecoderError, match="unknown options"):
        make_decoder(BACKEND, dem, colour=1)
    with pytest.raises(DecoderError, match="weight_resolution"):
        make_decoder(BACKEND, dem, weight_resolution=0)


def test_union_find_on_an_event_list_is_union_find_on_the_syndrome(d5_shots):
    from qecd.decoder._uf_kernels import uf_decode_events, uf_decode_into

    exp, dets, _ = d5_shots
    args = make_decoder("uf", exp.dem).kernel_args()
    a_out = np.zeros(exp.dem.num_detectors + 1, np.int64)
    b_out = a_out.copy()
    for s in dets[:300]:
        n = uf_decode_into(s, *args, a_out)
        ev = np.flatnonzero(s).astype(np.int64)
        m = uf_decode_events(ev, ev.size, *args, b_out)
        assert sorted(a_out[:n].tolist()) == sorted(b_out[:m].tolist())
