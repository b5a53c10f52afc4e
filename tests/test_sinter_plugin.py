"""decoder/sinter_plugin.py: qecd decoders inside a real sinter.collect run."""

import pickle

import numpy as np
import sinter
import stim

from qecd.decoder.sinter_plugin import QecdSinterDecoder, sinter_decoders


def test_names_resolve_and_decoders_pickle():
    decs = sinter_decoders()
    assert {"qecd-pymatching", "qecd-uf", "qecd-bp-cluster"} <= set(decs)
    assert "qecd-pymatching-w6c3" in decs and "qecd-pymatching-w3c6" not in decs
    assert "pymatching" not in decs
    d = pickle.loads(pickle.dumps(decs["qecd-pymatching-w6c3"]))
    assert isinstance(d, QecdSinterDecoder) and str(d.name) == "pymatching-w6c3"


def test_bit_packed_contract_matches_pymatching():
    c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
                               after_clifford_depolarization=0.01)
    dem = c.detector_error_model(decompose_errors=True)
    dets, _ = c.compile_detector_sampler(seed=1).sample(200, separate_observables=True,
                                                         bit_packed=True)
    ours = sinter_decoders()["qecd-pymatching"].compile_decoder_for_dem(dem=dem)
    ref = sinter.BUILT_IN_DECODERS["pymatching"].compile_decoder_for_dem(dem=dem)
    a = ours.decode_shots_bit_packed(bit_packed_detection_event_data=dets)
    b = ref.decode_shots_bit_packed(bit_packed_detection_event_data=dets)
    assert a.dtype == np.uint8 and a.shape == (200, 1)
    assert np.array_equal(a, b)


def test_sinter_collect_runs_qecd_decoders():
    c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=6,
                               after_clifford_depolarization=0.01)
    stats = sinter.collect(
        num_workers=1,
        tasks=[sinter.Task(circuit=c, json_metadata={"d": 3, "r": 6, "p": 0.01})],
        decoders=["qecd-pymatching", "qecd-pymatching-w4c2"],
        custom_decoders=sinter_decoders(),
        max_shots=2000,
        max_errors=10_000,
    )
    by = {s.decoder: s for s in stats}
    assert set(by) == {"qecd-pymatching", "qecd-pymatching-w4c2"}
    assert all(s.shots == 2000 for s in stats)
    assert all(0 < s.errors < 2000 for s in stats)
