"""The ``relay-bp`` backend (IBM's Relay-BP through the relay-bp package, an extra)."""

import numpy as np
import pytest
import stim

pytest.importorskip("relay_bp", reason="pip install 'relay-bp==0.2.1' (the qecd[relay] extra)")

from qecd.codes import build_experiment  # noqa: E402
from qecd.decoder import make_decoder  # noqa: E402
from qecd.errors import DecoderError  # noqa: E402


def test_relay_bp_corrects_every_single_fault_of_a_small_circuit_dem():
    c = stim.Circuit.generated("repetition_code:memory", distance=5, rounds=3,
                               after_clifford_depolarization=0.01)
    dec = make_decoder("relay-bp", c.detector_error_model())
    t = dec.faults
    synd = np.array([t.syndrome_of([f]) for f in range(t.num_faults)], np.uint8)
    np.testing.assert_array_equal(dec.decode_batch(synd), t.obs_mask)
    for f in range(0, t.num_faults, 5):
        np.testing.assert_array_equal(t.syndrome_of(dec.decode_to_faults(synd[f])), synd[f])


def test_relay_bp_decodes_circuit_level_bb72_at_least_as_well_as_no_decoder():
    exp = build_experiment("bb:n=72,r=3,p=0.002,noise=circuit")
    dets, obs = exp.sample(200, seed=5)
    dec = make_decoder("relay-bp", exp.dem)
    pred = dec.decode_batch(dets)
    assert pred.shape == obs.shape and pred.dtype == np.uint8
    assert np.any(pred != obs, axis=1).sum() <= 5 < np.any(obs, axis=1).sum()
    np.testing.assert_array_equal(dec.decode(dets[0]), pred[0])
    assert dec.decode(np.zeros(exp.dem.num_detectors, np.uint8)).tolist() == [0] * 12


def test_relay_bp_options_are_checked():
    dem = stim.DetectorErrorModel("error(0.1) D0 L0")
    with pytest.raises(DecoderError, match="unknown options"):
        make_decoder("relay-bp", dem, gamma=0.1)
    with pytest.raises(DecoderError, match="pre_iter"):
        make_decoder("relay-bp", dem, pre_iter=0)
    assert make_decoder("relay-bp", dem, num_sets=4, stop_nconv=2).options.num_sets == 4


def test_relay_bp_decodes_a_syndrome_the_same_whatever_came_before():
    """relay-bp 0.2.1 draws memory strengths from one generator that advances per shot (the
    same shots decoded twice by one decoder differed); the backend passes them explicitly."""
    exp = build_experiment("bb:n=72,r=3,p=0.004,noise=circuit")
    dets, _ = exp.sample(300, seed=1)
    dec = make_decoder("relay-bp", exp.dem)
    first = dec.decode_batch(dets)
    np.testing.assert_array_equal(dec.decode_batch(dets[::-1])[::-1], first)
    np.testing.assert_array_equal(make_decoder("relay-bp", exp.dem).decode_batch(dets), first)
