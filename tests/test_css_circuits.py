"""Circuit-level memory circuits for CSS codes: BB codes with the depth-8 cycle of Bravyi et
al. 2024, HGP codes with a sequential cycle, reachable from spec strings."""

import numpy as np
import pytest
import stim

from qecd.codes import build_experiment
from qecd.codes.bb_circuit import SX, SZ, bb_cycle, bb_memory_circuit
from qecd.codes.bivariate_bicycle import bb_code
from qecd.codes.css_circuit import Moment, SyndromeCycle, css_memory_circuit, sequential_cycle
from qecd.codes.hypergraph_product import hgp_code
from qecd.codes.spec import parse_spec
from qecd.errors import SpecError


def test_bb_cycle_is_seven_cnot_layers_touching_each_qubit_at_most_once_per_moment():
    code = bb_code(144)
    cyc = bb_cycle(code)
    assert len(cyc.moments) == 8
    assert sum(1 for m in cyc.moments if m.cnots) == 7
    for m in cyc.moments:
        qubits = [q for cn in m.cnots for q in cn]
        assert len(qubits) == len(set(qubits))
    # the paper's schedule: X checks idle in layer 0, Z checks idle in layer 6
    assert SX[0] is None and SZ[6] is None
    assert [len(m.cnots) for m in cyc.moments] == [72, 144, 144, 144, 144, 144, 72, 0]


@pytest.mark.parametrize("basis", ["z", "x"])
@pytest.mark.parametrize("n", [72, 144])
def test_noiseless_bb_circuit_has_deterministic_detectors_and_observables(n, basis):
    code = bb_code(n)
    c = bb_memory_circuit(code, rounds=3, p=0.0, basis=basis, noise="none")
    dets, obs = c.compile_detector_sampler(seed=1).sample(64, separate_observables=True)
    assert not dets.any() and not obs.any()
    c.detector_error_model()  # stim refuses non-deterministic detectors


def test_bb72_circuit_distance_is_at_most_6_and_no_single_fault_is_undetectable():
    c = bb_memory_circuit(bb_code(72), rounds=6, p=0.001)
    err = c.search_for_undetectable_logical_errors(
        dont_explore_detection_event_sets_with_size_above=4,
        dont_explore_edges_with_degree_above=4,
        dont_explore_edges_increasing_symptom_degree=False,
        canonicalize_circuit_errors=True)
    assert 2 <= len(err) <= 6
    dem = c.detector_error_model()
    for inst in dem.flattened():
        if inst.type == "error":
            targets = inst.targets_copy()
            if any(t.is_logical_observable_id() for t in targets):
                assert any(t.is_relative_detector_id() for t in targets)


def test_circuit_noise_is_the_papers_uniform_model():
    c = bb_memory_circuit(bb_code(72), rounds=1, p=0.002)
    names = {inst.name: inst.gate_args_copy() for inst in c.flattened()
             if inst.name in ("DEPOLARIZE1", "DEPOLARIZE2", "X_ERROR", "Z_ERROR")}
    assert names == {"DEPOLARIZE1": [0.002], "DEPOLARIZE2": [0.002], "X_ERROR": [0.002],
                     "Z_ERROR": [0.002]}
    # idle data: left data in moment 0, right data in moment 6, all data in moment 7
    idle = [len(inst.targets_copy()) for inst in c.flattened() if inst.name == "DEPOLARIZE1"]
    assert idle == [36, 36, 72]


def test_bb_spec_with_circuit_noise_builds_a_circuit_with_a_round_layout():
    exp = build_experiment("bb:n=72,r=3,p=0.002,noise=circuit")
    assert exp.circuit is not None and not exp.graph_like
    assert exp.layout.round_sizes == (36, 36, 36, 36)
    assert exp.dem.num_observables == 12
    assert max(len([t for t in i.targets_copy() if t.is_relative_detector_id()])
               for i in exp.dem.flattened() if i.type == "error") > 2  # hyperedges
    dets, obs = exp.sample(200, seed=3)
    assert dets.shape == (200, 144) and obs.shape == (200, 12) and dets.any()


def test_spec_strings_name_the_noise_and_keep_phenomenological_as_default():
    assert parse_spec("bb:n=144,r=12,p=0.003,noise=circuit")["noise"] == "circuit"
    assert parse_spec("bb:n=72")["noise"] == "phenomenological"
    assert build_experiment("bb:n=72,r=2").circuit is None
    with pytest.raises(SpecError, match="noise"):
        parse_spec("bb:n=72,noise=circuitlevel")


def test_si1000_and_hgp_circuits_are_deterministic_without_noise():
    for spec in ("bb:n=72,r=2,p=0.001,noise=si1000", "hgp:seed=hamming7,r=2,noise=circuit",
                 "hgp:seed=rep3,r=3,p=0.01,noise=si1000,basis=x"):
        exp = build_experiment(spec)
        quiet = exp.circuit.without_noise()
        dets, obs = quiet.compile_detector_sampler(seed=2).sample(32, separate_observables=True)
        assert not dets.any() and not obs.any(), spec
        assert exp.layout.num_rounds == exp.spec["r"] + 1


def test_sequential_cycle_measures_any_css_code():
    code = hgp_code("hamming7")
    c = css_memory_circuit(code, sequential_cycle(code), rounds=2, p=0.0, noise="none")
    assert not c.compile_detector_sampler(seed=0).sample(16).any()


def test_a_cycle_that_misses_a_coupling_is_refused():
    code = bb_code(72)
    cyc = bb_cycle(code)
    broken = SyndromeCycle((Moment(cnots=cyc.moments[0].cnots[1:], reset_x=True),
                            *cyc.moments[1:]))
    with pytest.raises(SpecError, match="cycle"):
        css_memory_circuit(code, broken, rounds=1, p=0.001)


def test_circuit_level_bb_memory_has_logical_errors_a_decoder_can_fix():
    from qecd.decoder import make_decoder

    exp = build_experiment("bb:n=72,r=3,p=0.002,noise=circuit")
    dets, obs = exp.sample(300, seed=5)
    pred = make_decoder("bp-cluster", exp.dem).decode_batch(dets)
    # most shots flip some logical (220 of 300 here); the decoder fixes nearly all of them
    assert np.any(obs, axis=1).sum() > 150
    assert np.any(pred != obs, axis=1).sum() <= 5
    assert isinstance(exp.circuit, stim.Circuit)


# The parameters and neighbour labels exactly as the paper's own decoder_setup.py writes them
# (github.com/sbravyi/BivariateBicycleCodes): A = x^a1 + y^a2 + y^a3, B = y^b1 + x^b2 + x^b3,
# x = kron(roll(I_l, 1, axis=1), I_m), y = kron(I_l, roll(I_m, 1, axis=1)).
_PAPER_PARAMS = {72: (6, 6, 3, 1, 2, 3, 1, 2), 90: (15, 3, 9, 1, 2, 0, 2, 7),
                 108: (9, 6, 3, 1, 2, 3, 1, 2), 144: (12, 6, 3, 1, 2, 3, 1, 2),
                 288: (12, 12, 3, 2, 7, 3, 1, 2)}


@pytest.mark.parametrize("n", sorted(_PAPER_PARAMS))
def test_bb_cycle_is_the_papers_depth_8_cycle_cnot_for_cnot(n):
    """Re-derive the cycle the way the paper's decoder_setup.py does and compare every CNOT,
    moment by moment (qecd numbers data left then right, then X ancillas, then Z ancillas)."""
    ell, m, a1, a2, a3, b1, b2, b3 = _PAPER_PARAMS[n]
    i_l, i_m = np.identity(ell, dtype=int), np.identity(m, dtype=int)
    x = {i: np.kron(np.roll(i_l, i, axis=1), i_m) for i in range(ell)}
    y = {i: np.kron(i_l, np.roll(i_m, i, axis=1)) for i in range(m)}
    a_terms, b_terms = (x[a1], y[a2], y[a3]), (y[b1], x[b2], x[b3])
    code = bb_code(n)
    lm = ell * m
    np.testing.assert_array_equal(code.hx, np.hstack([sum(a_terms) % 2, sum(b_terms) % 2]))
    np.testing.assert_array_equal(code.hz, np.hstack([(sum(b_terms) % 2).T,
                                                      (sum(a_terms) % 2).T]))

    def x_nb(i, k):  # nbs[(('Xcheck', i), k)]
        return int(np.nonzero(a_terms[k][i, :])[0][0]) if k < 3 else \
            lm + int(np.nonzero(b_terms[k - 3][i, :])[0][0])

    def z_nb(i, k):  # nbs[(('Zcheck', i), k)]
        return int(np.nonzero(b_terms[k][:, i])[0][0]) if k < 3 else \
            lm + int(np.nonzero(a_terms[k - 3][:, i])[0][0])

    s_x, s_z = ["idle", 1, 4, 3, 5, 0, 2], [3, 5, 0, 1, 2, 4, "idle"]
    assert [None if v == "idle" else v for v in s_x] == list(SX)
    assert [None if v == "idle" else v for v in s_z] == list(SZ)
    cycle = bb_cycle(code)
    for t in range(7):
        want = set()
        if s_x[t] != "idle":
            want |= {(n + i, x_nb(i, s_x[t])) for i in range(lm)}
        if s_z[t] != "idle":
            want |= {(z_nb(i, s_z[t]), n + lm + i) for i in range(lm)}
        assert set(cycle.moments[t].cnots) == want, t
    # round 0 prepares the X ancillas, round 6 measures the Z ancillas, round 7 measures X and
    # prepares Z (and has no CNOT)
    flags = [(mo.reset_x, mo.measure_z, mo.measure_x, mo.reset_z) for mo in cycle.moments]
    assert flags[0] == (True, False, False, False) and flags[6] == (False, True, False, False)
    assert flags[7] == (False, False, True, True) and not cycle.moments[7].cnots
