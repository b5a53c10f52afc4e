"""decoder/window.py: sliding-window stream decoding over any backend."""

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder import make_decoder
from qecd.decoder.window import StreamDecoder
from qecd.errors import DecoderError


def test_whole_shot_mode_equals_the_backend_on_the_same_shots():
    exp = build_experiment("surface:d=3,r=6,p=0.01")
    dets, _ = exp.sample(300, seed=2)
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching")
    ref = make_decoder("pymatching", exp.dem).decode_batch(dets)
    assert np.array_equal(sd.decode_batch(dets), ref)


def test_bulk_windows_share_one_decoder():
    exp = build_experiment("surface:d=3,r=30,p=0.001")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=6, commit=3)
    assert len(sd.plan.windows) == 10
    # first window, the shared bulk window, the one just before the final round (its future
    # boundary faces data-measurement detectors), and the final window
    assert sd.num_window_decoders <= 5


def test_corrections_cover_every_round_exactly_once():
    exp = build_experiment("surface:d=3,r=10,p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=4, commit=2)
    dets, _ = exp.sample(2, seed=0)
    for shot in dets:
        covered = []
        for r, ids in enumerate(exp.layout.detectors):
            c = sd.push_round(shot[ids])
            if c is not None:
                covered += list(range(c.first_round, c.last_round + 1))
                assert c.shot_end == (r == exp.layout.num_rounds - 1)
        assert covered == list(range(exp.layout.num_rounds))


def test_committed_faults_explain_the_whole_shot_syndrome():
    """XOR of every fault committed during a shot reproduces its detection events: the carry
    across window boundaries loses and duplicates nothing."""
    exp = build_experiment("surface:d=3,r=12,p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=6, commit=3)
    dets, _ = exp.sample(40, seed=4)
    for shot in dets:
        committed = []
        for ids in exp.layout.detectors:
            if sd.push_round(shot[ids]) is not None:
                committed += sd.last_committed_faults.tolist()
        assert np.array_equal(sd.faults.syndrome_of(np.array(committed)), shot)


def test_window_ler_within_interval_of_whole_shot_on_long_stream():
    exp = build_experiment("surface:d=3,r=30,p=0.004")
    dets, obs = exp.sample(2000, seed=9)
    win = StreamDecoder(exp.dem, exp.layout, "pymatching", window=6, commit=3)
    whole = StreamDecoder(exp.dem, exp.layout, "pymatching")
    fw = int((win.decode_batch(dets) != obs).any(axis=1).sum())
    fs = int((whole.decode_batch(dets) != obs).any(axis=1).sum())
    # both are binomial counts over the same shots; 3 sigma of their difference
    assert abs(fw - fs) <= 3 * np.sqrt(fw + fs) + 3, (fw, fs)


def test_push_rejects_wrong_round_size_and_early_finish():
    exp = build_experiment("surface:d=3,r=3,p=0.001")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=2, commit=1)
    with pytest.raises(DecoderError, match="expected 4 detector bits"):
        sd.push_round(np.zeros(5, dtype=np.uint8))
    with pytest.raises(DecoderError, match="finish"):
        sd.finish(np.zeros(4, dtype=np.uint8))


def test_bad_commit_is_refused():
    exp = build_experiment("surface:d=3,r=6,p=0.001")
    with pytest.raises(DecoderError, match="commit"):
        StreamDecoder(exp.dem, exp.layout, "pymatching", window=3, commit=4)


def test_one_round_stream_and_empty_syndromes():
    exp = build_experiment("repetition:d=3,r=1,p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=1, commit=1)
    out = sd.decode_shot(np.zeros(exp.dem.num_detectors, dtype=np.uint8))
    assert out.tolist() == [0]


@pytest.mark.parametrize("backend", ["pymatching", "bp-cluster"])
def test_forks_decoding_from_two_threads_agree_with_serial(backend):
    """Forks share window buffers and backend workspaces; concurrent decodes must not mix."""
    import threading

    exp = build_experiment("surface:d=5,r=10,p=0.01")
    plan = StreamDecoder(exp.dem, exp.layout, backend, window=4, commit=2)
    dets, _ = exp.sample(400, seed=3)
    ref = plan.fork().decode_batch(dets)
    out: dict = {}

    def run(i):
        try:
            out[i] = plan.fork().decode_batch(dets)
        except Exception as e:  # a race shows up as a backend error or a wrong answer
            out[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert not isinstance(out[i], Exception), out[i]
        assert np.array_equal(out[i], ref)


def test_a_stream_decoder_is_a_decoder_whose_faults_explain_its_prediction():
    from qecd.decoder.base import Decoder

    exp = build_experiment("surface:d=3,r=6,p=0.01")
    sd = StreamDecoder.from_dem(exp.dem, backend="uf", window=4, commit=2)
    assert isinstance(sd, Decoder) and sd.graph_like and sd.compiles_streams
    dets, _ = exp.sample(50, seed=9)
    for shot in dets:
        faults = sd.decode_to_faults(shot)
        assert np.array_equal(sd.faults.observables_of(faults), sd.decode_shot(shot))
    assert np.array_equal(sd.decode_batch(dets), Decoder.decode_batch(sd, dets))
