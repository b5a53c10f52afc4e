"""Correlated decoders: PyMatching's correlated matching (``pymatching-corr``) and two-pass
correlated union-find (``uf-corr``), checked against the truth and plain decoders on the same
shots."""

import numpy as np
import pytest
import stim

from qecd.codes import build_experiment
from qecd.decoder import make_decoder
from qecd.decoder.registry import parse_decoder_name
from qecd.decoder.window import StreamDecoder


@pytest.fixture(scope="module")
def d5_shots():
    exp = build_experiment("surface:d=5,r=10,p=0.006")
    dets, obs = exp.sample(3000, seed=11)
    return exp, dets, obs


def _fails(pred, obs):
    return np.any(pred != obs, axis=1)


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_correlated_decoders_fail_less_than_plain_matching_on_the_same_shots(d5_shots, backend):
    exp, dets, obs = d5_shots
    plain = _fails(make_decoder("pymatching", exp.dem).decode_batch(dets), obs)
    corr = _fails(make_decoder(backend, exp.dem).decode_batch(dets), obs)
    assert plain.sum() > 100  # failures in the hundreds: the comparison resolves
    # paired: the shots only the correlated decoder fails are far fewer than the reverse
    assert (corr & ~plain).sum() * 1.5 < (plain & ~corr).sum()


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_correlated_corrections_reproduce_the_syndrome(d5_shots, backend):
    exp, dets, _ = d5_shots
    dec = make_decoder(backend, exp.dem)
    for s in dets[:200]:
        faults = dec.decode_to_faults(s)
        np.testing.assert_array_equal(dec.faults.syndrome_of(faults), s)


def test_uf_corr_with_prematching_gives_exactly_the_fault_sets_without_it(d5_shots):
    """Pre-matching is turned off only near lowered edges in the second pass: the answer must
    be the one union-find gives with no pre-matching at all."""
    exp, dets, _ = d5_shots
    a = make_decoder("uf-corr", exp.dem)
    b = make_decoder("uf-corr", exp.dem, prematch=False)
    for s in dets[:1500]:
        np.testing.assert_array_equal(a.decode_to_faults(s), b.decode_to_faults(s))


def test_uf_corr_batch_paths_agree_with_single_shots(d5_shots):
    exp, dets, _ = d5_shots
    dec = make_decoder("uf-corr", exp.dem)
    batch = dec.decode_batch(dets[:300])
    packed = np.unpackbits(dec.decode_batch_packed(np.packbits(dets[:300], axis=1,
                                                               bitorder="little")),
                           axis=1, count=1, bitorder="little")
    single = np.array([dec.decode(s) for s in dets[:300]])
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(packed, single)


def test_without_decompositions_uf_corr_is_plain_uf():
    exp = build_experiment("surface:d=5,r=5,p=0.005")
    dets, _ = exp.sample(500, seed=2)
    text = "\n".join(str(i).replace(" ^", "") for i in exp.dem.flattened()
                     if i.type == "error" and "^" not in str(i))
    dem = stim.DetectorErrorModel(f"detector D{exp.dem.num_detectors - 1}\n"
                                  "logical_observable L0\n" + text)
    a = make_decoder("uf-corr", dem)
    assert a.correlated_pairs == 0
    np.testing.assert_array_equal(a.decode_batch(dets), make_decoder("uf", dem).decode_batch(dets))


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_correlated_backends_stream_through_the_window(backend):
    exp = build_experiment("surface:d=3,r=6,p=0.01")
    name = parse_decoder_name(f"{backend}-w4c2")
    sd = StreamDecoder(exp.dem, exp.layout, name.backend, window=4, commit=2)
    dets, obs = exp.sample(300, seed=4)
    pred = sd.decode_batch(dets)
    assert pred.shape == obs.shape
    assert _fails(pred, obs).mean() < 0.2
    zero = sd.decode_shot(np.zeros(exp.dem.num_detectors, np.uint8))
    assert zero.tolist() == [0]


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_correlated_backends_work_as_sinter_decoders(backend):
    sinter = pytest.importorskip("sinter")
    from qecd.decoder.sinter_plugin import sinter_decoders

    task = sinter.Task(circuit=build_experiment("surface:d=3,r=3,p=0.01").circuit,
                       json_metadata={"d": 3})
    stats = sinter.collect(num_workers=1, tasks=[task], decoders=[f"qecd-{backend}"],
                           custom_decoders=sinter_decoders(), max_shots=500)
    assert stats[0].shots == 500 and stats[0].errors < 100


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_unknown_options_are_refused(backend):
    from qecd.errors import DecoderError

    dem = stim.DetectorErrorModel("error(0.1) D0 L0")
    with pytest.raises(DecoderError, match="unknown options"):
        make_decoder(backend, dem, colour=1)


@pytest.mark.parametrize("backend", ["pymatching-corr", "uf-corr"])
def test_a_whole_shot_stream_keeps_the_correlations(d5_shots, backend):
    """The whole-shot window hands these backends the DEM itself, so streaming a shot gives
    the backend's own whole-DEM answer (one component per line would lose the ``^``)."""
    exp, dets, _ = d5_shots
    sd = StreamDecoder(exp.dem, exp.layout, backend)
    np.testing.assert_array_equal(sd.decode_batch(dets[:300]),
                                  make_decoder(backend, exp.dem).decode_batch(dets[:300]))


def test_pymatching_corr_refuses_an_error_above_one_half_as_a_decoder_error():
    """PyMatching's correlated matching refuses errors of p > 0.5 with its own ValueError,
    which escaped raw (a researcher's cold check); plain pymatching takes such a DEM."""
    from qecd.errors import DecoderError

    dem = stim.DetectorErrorModel("error(0.6) D0 D1\nerror(0.1) D1 L0\n"
                                  "detector(0, 0, 0) D0\ndetector(1, 0, 0) D1")
    with pytest.raises(DecoderError, match="pymatching-corr: PyMatching refused the DEM"):
        make_decoder("pymatching-corr", dem)
    assert make_decoder("pymatching", dem).decode(np.zeros(2, np.uint8)).shape == (1,)


@pytest.mark.parametrize("backend", ["uf", "pymatching", "bp-cluster", "uf-xcorr",
                                     "pymatching-corr", "uf-w2c1"])
def test_detection_events_other_than_0_and_1_are_refused(backend):
    """A 2 in a batch or a syndrome was decoded as a 1, silently (a researcher's cold
    check); every backend and the window now refuse it, naming where it is."""
    from qecd.decoder.registry import build_decoder
    from qecd.errors import DecoderError

    exp = build_experiment("repetition:d=3,r=3,p=0.01")
    dec = build_decoder(backend, exp.dem, exp.layout)
    dets = np.zeros((3, exp.dem.num_detectors), np.uint8)
    dets[2, 1] = 2
    with pytest.raises(DecoderError, match=r"0 or 1, got 2 at index \(2, 1\)"):
        dec.decode_batch(dets)
    if hasattr(dec, "decode"):
        with pytest.raises(DecoderError, match="0 or 1, got 2 at index 1"):
            dec.decode(dets[2])
    assert dec.decode_batch(dets.clip(0, 1)).shape == (3, exp.dem.num_observables)


@pytest.mark.parametrize("name", ["uf", "uf-corr", "uf-xcorr", "belief-uf"])
def test_a_syndrome_no_fault_explains_is_refused_naming_the_backend(name):
    """uf-corr and uf-xcorr said "uf: shot 0: ..." (the base class's text)."""
    from qecd.decoder import make_decoder
    from qecd.errors import DecoderError

    dem = stim.DetectorErrorModel("error(0.1) D0 D1\nerror(0.1) D2 D3\nerror(0.1) D2 L0")
    with pytest.raises(DecoderError, match=rf"^{name}: shot 0: the syndrome has odd parity"):
        make_decoder(name, dem).decode_batch(np.array([[1, 0, 0, 0]], np.uint8))
