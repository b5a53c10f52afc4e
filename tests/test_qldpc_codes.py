"""Behaviour of the qLDPC code constructions and their phenomenological DEMs.

Covers ``qecd.codes.css``, ``.bivariate_bicycle``, ``.hypergraph_product`` and
``.phenomenological``; the DEMs are checked against stim's own analysis of an equivalent
noisy circuit (the slow, obviously correct reference).
"""

from __future__ import annotations

import doctest
import itertools

import numpy as np
import pytest
import stim
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qecd.codes import bivariate_bicycle as bb_mod
from qecd.codes import css as css_mod
from qecd.codes import hypergraph_product as hgp_mod
from qecd.codes import phenomenological as ph_mod
from qecd.codes.bivariate_bicycle import BB_CODES, bb_code, bivariate_bicycle
from qecd.codes.css import CssCode, gf2_inverse, gf2_nullspace, gf2_rank, gf2_row_reduce
from qecd.codes.hypergraph_product import (
    HGP_SEEDS,
    classical_distance,
    hgp_code,
    hypergraph_product,
)
from qecd.codes.phenomenological import code_capacity_dem, phenomenological_dem
from qecd.errors import SpecError

FAST = settings(max_examples=40, deadline=None)


def small_matrices(max_rows: int = 4, max_cols: int = 5, min_rows: int = 1):
    shapes = st.tuples(st.integers(min_rows, max_rows), st.integers(1, max_cols))
    return shapes.flatmap(lambda s: arrays(np.uint8, s, elements=st.integers(0, 1)))


def mod2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.int64) @ b.astype(np.int64)) % 2


def assert_valid_css(code: CssCode) -> None:
    """Commutation, symplectic logicals, logicals are not stabilisers."""
    n, k = code.n, code.k
    assert code.hx.dtype == code.hz.dtype == code.lx.dtype == code.lz.dtype == np.uint8
    assert code.lx.shape == code.lz.shape == (k, n)
    assert not mod2(code.hx, code.hz.T).any()
    assert k == n - gf2_rank(code.hx) - gf2_rank(code.hz)
    assert np.array_equal(mod2(code.lx, code.lz.T), np.eye(k, dtype=np.int64))
    assert not mod2(code.hz, code.lx.T).any(), "X logicals must commute with the Z checks"
    assert not mod2(code.hx, code.lz.T).any(), "Z logicals must commute with the X checks"
    # independent of the stabilisers of their own type (so no product of logicals is one)
    assert gf2_rank(np.vstack([code.hx, code.lx])) == gf2_rank(code.hx) + k
    assert gf2_rank(np.vstack([code.hz, code.lz])) == gf2_rank(code.hz) + k


def brute_force_distance(code: CssCode) -> int:
    """min weight of a nontrivial logical, by enumerating ker(hz) and ker(hx)."""
    best = code.n
    for h, other in ((code.hz, code.lz), (code.hx, code.lx)):
        basis = gf2_nullspace(h).astype(np.int64)
        coeffs = np.array(list(itertools.product((0, 1), repeat=basis.shape[0])), np.int64)
        words = coeffs @ basis % 2
        nontrivial = (words @ other.T.astype(np.int64) % 2).any(axis=1)
        best = min(best, int(words[nontrivial].sum(axis=1).min()))
    return best


# -- GF(2) linear algebra -----------------------------------------------------------------


@FAST
@given(small_matrices(6, 8))
def test_gf2_rank_equals_log2_of_row_space_size(m):
    span = {tuple(mod2(np.array(c), m).tolist()) for c in itertools.product((0, 1),
                                                                          repeat=m.shape[0])}
    assert 2 ** gf2_rank(m) == len(span)


@FAST
@given(small_matrices(6, 8))
def test_gf2_nullspace_is_an_independent_basis_of_the_kernel(m):
    kernel = gf2_nullspace(m)
    assert kernel.shape == (m.shape[1] - gf2_rank(m), m.shape[1])
    assert not mod2(m, kernel.T).any()
    assert gf2_rank(kernel) == kernel.shape[0]


@FAST
@given(small_matrices(6, 8))
def test_gf2_row_reduce_gives_rref_of_the_same_row_space(m):
    r, pivots = gf2_row_reduce(m)
    assert r.shape[0] == len(pivots) == gf2_rank(m)
    assert np.array_equal(r[:, list(pivots)], np.eye(len(pivots), dtype=np.uint8))
    assert gf2_rank(np.vstack([m, r])) == len(pivots)


@FAST
@given(small_matrices(5, 5))
def test_gf2_inverse_inverts_or_rejects_singular(m):
    if m.shape[0] != m.shape[1] or gf2_rank(m) < m.shape[0]:
        with pytest.raises(SpecError):
            gf2_inverse(m)
    else:
        assert np.array_equal(mod2(m, gf2_inverse(m)), np.eye(m.shape[0], dtype=np.int64))


def test_gf2_functions_reject_non_binary_and_non_matrix_input():
    with pytest.raises(SpecError, match="entries 0 or 1"):
        gf2_rank([[0, 2]])
    with pytest.raises(SpecError, match="2-D"):
        gf2_nullspace([1, 0, 1])


# -- CssCode ------------------------------------------------------------------------------


def test_from_checks_rejects_anticommuting_checks():
    with pytest.raises(SpecError) as err:
        CssCode.from_checks("bad", [[1, 1, 0]], [[0, 1, 1], [1, 1, 0]])
    assert err.value.field == "hz" and "anticommuting" in str(err.value)


def test_from_checks_rejects_column_mismatch_and_bad_distance():
    with pytest.raises(SpecError, match="columns"):
        CssCode.from_checks("bad", np.zeros((1, 3), np.uint8), np.zeros((1, 4), np.uint8))
    with pytest.raises(SpecError, match="distance"):
        CssCode.from_checks("bad", np.zeros((1, 3), np.uint8), np.zeros((1, 3), np.uint8),
                            distance=0)


def test_code_without_logical_qubits_has_empty_logical_arrays():
    code = CssCode.from_checks("k0", [[1, 1]], [[1, 1]])
    assert code.k == 0 and code.lx.shape == code.lz.shape == (0, 2)


def test_code_arrays_are_read_only_and_code_is_frozen():
    code = bb_code(72)
    with pytest.raises(ValueError):
        code.hx[0, 0] ^= 1
    with pytest.raises(AttributeError):
        code.name = "other"  # type: ignore[misc]


def test_checks_and_logicals_follow_the_basis():
    code = hgp_code("rep3")
    assert code.checks("z") is code.hz and code.checks("X") is code.hx
    assert code.logicals("z") is code.lz and code.logicals("x") is code.lx
    with pytest.raises(SpecError, match="basis"):
        code.checks("y")


# -- bivariate bicycle codes --------------------------------------------------------------


@pytest.mark.parametrize("n", sorted(BB_CODES))
def test_bb_catalog_code_has_stated_n_k_and_valid_logicals(n):
    params = BB_CODES[n]
    code = bb_code(n)
    assert (code.n, code.k, code.distance) == (params.n, params.k, params.d)
    assert code.name == f"bb{n}" and "Bravyi" in code.distance_note
    assert code.hx.shape == code.hz.shape == (n // 2, n)
    # weight-6 checks, every qubit in 3 X checks and 3 Z checks
    for h in (code.hx, code.hz):
        assert set(h.sum(axis=1).tolist()) == {6} and set(h.sum(axis=0).tolist()) == {3}
    assert_valid_css(code)
    # every basis logical is a nontrivial logical, so none may be lighter than d
    assert min(code.lx.sum(axis=1).min(), code.lz.sum(axis=1).min()) >= params.d


def lightest_logical_up_to(h: np.ndarray, other: np.ndarray, w_max: int) -> int | None:
    """Least weight <= w_max of v with h @ v == 0 and other @ v != 0, by meet in the middle."""
    n = h.shape[1]
    cols = [h[:, j].copy() for j in range(n)]

    def subsets(w):
        for r in range(w + 1):
            for s in itertools.combinations(range(n), r):
                syn = np.zeros(h.shape[0], np.uint8)
                for j in s:
                    syn ^= cols[j]
                yield s, syn.tobytes()

    halves: dict[bytes, list[tuple[int, ...]]] = {}
    for s, syn in subsets(w_max // 2):
        halves.setdefault(syn, []).append(s)
    best = None
    for s, syn in subsets((w_max + 1) // 2):
        for t in halves.get(syn, ()):
            v = np.zeros(n, np.uint8)
            v[list(s)] ^= 1
            v[list(t)] ^= 1
            if v.any() and mod2(other, v).any():
                best = int(v.sum()) if best is None else min(best, int(v.sum()))
    return best


def test_bb72_distance_is_exactly_6():
    code = bb_code(72)
    assert lightest_logical_up_to(code.hz, code.lz, 6) == 6  # X logicals
    assert lightest_logical_up_to(code.hx, code.lx, 6) == 6  # Z logicals


def test_bb288_has_a_weight_18_logical_so_d_is_at_most_18():
    code = bb_code(288)
    assert min(code.lx.sum(axis=1).min(), code.lz.sum(axis=1).min()) == 18


def test_bb_catalog_matches_bravyi_table3_polynomials():
    table3 = {72: (6, 6, "x^3+y+y^2", "y^3+x+x^2"), 90: (15, 3, "x^9+y+y^2", "1+x^2+x^7"),
              108: (9, 6, "x^3+y+y^2", "y^3+x+x^2"), 144: (12, 6, "x^3+y+y^2", "y^3+x+x^2"),
              288: (12, 12, "x^3+y^2+y^7", "y^3+x+x^2")}
    for n, (l, m, a, b) in table3.items():
        p = BB_CODES[n]
        assert (p.l, p.m, "+".join(p.a_terms), "+".join(p.b_terms)) == (l, m, a, b)


def test_bb_code_rejects_unknown_n_naming_the_catalog():
    with pytest.raises(SpecError) as err:
        bb_code(100)
    assert err.value.field == "n" and "72, 90, 108, 144, 288" in str(err.value)


def test_bivariate_bicycle_accepts_exponent_pairs_and_rejects_bad_terms():
    by_name = bivariate_bicycle(6, 6, ["x^3", "y", "y^2"], ["y^3", "x", "x^2"])
    by_pair = bivariate_bicycle(6, 6, [(3, 0), (0, 1), (0, 2)], [(0, 3), (1, 0), (2, 0)])
    assert all(np.array_equal(a, b) for a, b in zip(by_name, by_pair, strict=True))
    mixed, _ = bivariate_bicycle(3, 3, ["x y^2", "x^2*y", "1"], ["x"])
    assert mixed.shape == (9, 18) and set(mixed[:, :9].sum(axis=1).tolist()) == {3}
    with pytest.raises(SpecError, match="distinct"):
        bivariate_bicycle(6, 6, ["x", "x^7"], ["y"])
    with pytest.raises(SpecError, match="monomials"):
        bivariate_bicycle(6, 6, ["z^2"], ["y"])
    with pytest.raises(SpecError, match="'l'"):
        bivariate_bicycle(0, 6, ["x"], ["y"])


# -- hypergraph product codes -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HGP_SEEDS))
def test_hgp_seed_parameters_are_what_the_catalog_states(name):
    s = HGP_SEEDS[name]
    r = s.h.shape[0]
    assert (s.n, s.k, s.kt) == (s.h.shape[1], s.n - gf2_rank(s.h), r - gf2_rank(s.h))
    assert (classical_distance(s.h), classical_distance(s.h.T)) == (s.d, s.dt)


@pytest.mark.parametrize("name", sorted(HGP_SEEDS))
def test_hgp_catalog_code_has_tillich_zemor_n_k_and_distance(name):
    s = HGP_SEEDS[name]
    r = s.h.shape[0]
    code = hgp_code(name)
    assert code.n == s.n**2 + r**2
    assert code.k == s.k**2 + s.kt**2
    assert code.distance == min(d for d in (s.d, s.dt) if d is not None)
    assert_valid_css(code)
    assert min(code.lx.sum(axis=1).min(), code.lz.sum(axis=1).min()) >= code.distance
    if s.kt:
        assert "transposed" in code.distance_note


def test_hgp_small_catalog_distances_match_brute_force():
    for code in (hgp_code("rep3"), hgp_code("rep3", "ring5")):
        assert brute_force_distance(code) == code.distance


def test_hgp_of_two_different_seeds():
    code = hgp_code("rep3", "hamming7")
    assert code.name == "hgp_rep3_hamming7"
    assert (code.n, code.k, code.distance) == (3 * 7 + 2 * 3, 1 * 4, 3)
    assert_valid_css(code)


def test_hgp_code_rejects_unknown_seed():
    with pytest.raises(SpecError) as err:
        hgp_code("rep3", "golay")
    assert err.value.field == "seed2" and "hamming7" in str(err.value)


@FAST
@given(small_matrices(3, 4), small_matrices(3, 4))
def test_hgp_of_random_seeds_commutes_and_has_exact_distance(h1, h2):
    code = hypergraph_product(h1, h2, "random")
    (r1, n1), (r2, n2) = h1.shape, h2.shape
    k1, k2 = n1 - gf2_rank(h1), n2 - gf2_rank(h2)
    kt1, kt2 = r1 - gf2_rank(h1), r2 - gf2_rank(h2)
    assert code.n == n1 * n2 + r1 * r2
    assert code.k == k1 * k2 + kt1 * kt2
    assert_valid_css(code)
    if not code.k:
        assert code.distance is None
    elif max(code.n - gf2_rank(code.hx), code.n - gf2_rank(code.hz)) <= 16:  # enumerable
        assert code.distance == brute_force_distance(code)


# -- phenomenological DEMs ----------------------------------------------------------------


def fault_matrix(dem: stim.DetectorErrorModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(detector matrix, observable matrix, probabilities) with one row per mechanism."""
    dets, obs, probs = [], [], []
    for inst in dem.flattened():
        if inst.type != "error":
            continue
        d = np.zeros(dem.num_detectors, np.uint8)
        o = np.zeros(dem.num_observables, np.uint8)
        for t in inst.targets_copy():
            if t.is_relative_detector_id():
                d[t.val] ^= 1
            elif t.is_logical_observable_id():
                o[t.val] ^= 1
        dets.append(d)
        obs.append(o)
        probs.append(inst.args_copy()[0])
    return np.array(dets), np.array(obs), np.array(probs)


def reference_circuit(code: CssCode, rounds: int, p: float, q: float, basis: str) -> stim.Circuit:
    """The same experiment as a stim circuit with MPP check measurements."""
    h, logicals = code.checks(basis), code.logicals(basis)
    c, n = h.shape[0], code.n
    pauli = "Z" if basis == "z" else "X"
    err = "X_ERROR" if basis == "z" else "Z_ERROR"
    circ = stim.Circuit()
    circ.append("R" if basis == "z" else "RX", range(n))
    products = []
    for row in h:
        qs = np.flatnonzero(row).tolist()
        for i, qb in enumerate(qs):
            products.append(stim.target_x(qb) if pauli == "X" else stim.target_z(qb))
            if i + 1 < len(qs):
                products.append(stim.target_combiner())
    for t in range(rounds):
        circ.append(err, range(n), p)
        circ.append("MPP", products, q)
        for i in range(c):
            recs = [stim.target_rec(-c + i)] + ([stim.target_rec(-2 * c + i)] if t else [])
            circ.append("DETECTOR", recs, [i, t])
    circ.append("M" if basis == "z" else "MX", range(n))
    for i, row in enumerate(h):
        recs = [stim.target_rec(-n + int(j)) for j in np.flatnonzero(row)]
        circ.append("DETECTOR", recs + [stim.target_rec(-n - c + i)], [i, rounds])
    for i, row in enumerate(logicals):
        circ.append("OBSERVABLE_INCLUDE",
                    [stim.target_rec(-n + int(j)) for j in np.flatnonzero(row)], i)
    return circ


def mechanism_table(dem: stim.DetectorErrorModel) -> dict[tuple[bytes, bytes], float]:
    d, o, p = fault_matrix(dem)
    return {(d[i].tobytes(), o[i].tobytes()): float(p[i]) for i in range(len(p))}


@pytest.mark.parametrize(("name", "basis"), [("hgp_rep3", "z"), ("hgp_rep3", "x"),
                                             ("bb72", "z"), ("bb72", "x")])
def test_phenomenological_dem_equals_stim_analysis_of_the_circuit(name, basis):
    code = bb_code(72) if name == "bb72" else hgp_code("rep3")
    ours = phenomenological_dem(code, rounds=2, p=0.01, q=0.02, basis=basis)
    ref = reference_circuit(code, 2, 0.01, 0.02, basis).detector_error_model()
    assert ours.num_detectors == ref.num_detectors
    assert ours.get_detector_coordinates() == ref.get_detector_coordinates()
    a, b = mechanism_table(ours), mechanism_table(ref)
    assert a.keys() == b.keys()
    assert all(abs(a[key] - b[key]) < 1e-12 for key in a)


@pytest.mark.parametrize("code_name", ["bb72", "hgp_ring5", "hgp_hamming7"])
@pytest.mark.parametrize("rounds", [1, 3])
def test_phenomenological_dem_shape_and_coordinates(code_name, rounds):
    code = bb_code(72) if code_name == "bb72" else hgp_code(code_name[4:])
    dem = phenomenological_dem(code, rounds=rounds, p=0.001)
    c = code.hz.shape[0]
    assert dem.num_detectors == (rounds + 1) * c
    assert dem.num_observables == code.k
    coords = dem.get_detector_coordinates()
    assert sorted(coords) == list(range(dem.num_detectors))
    assert all(coords[t * c + i] == [i, t] for t in range(rounds + 1) for i in range(c))


def test_data_errors_stay_in_one_round_and_measurement_errors_span_two():
    code = bb_code(72)
    rounds, c = 3, code.hz.shape[0]
    w = int(code.hz.sum(axis=0).max())
    d, o, p = fault_matrix(phenomenological_dem(code, rounds=rounds, p=0.001, q=0.002))
    data = meas = 0
    for row, obs, prob in zip(d, o, p, strict=True):
        hit = np.flatnonzero(row)
        rounds_hit = set((hit // c).tolist())
        if prob == 0.001:  # a data error
            data += 1
            assert len(rounds_hit) == 1 and 1 <= len(hit) <= w
            assert max(rounds_hit) < rounds  # no data noise before the perfect readout
        else:
            meas += 1
            assert prob == 0.002 and not obs.any() and len(hit) == 2
            assert hit[1] - hit[0] == c  # same check, consecutive rounds
    assert (data, meas) == (rounds * code.n, rounds * c)
    assert ((0 < p) & (p < 0.5)).all()


@FAST
@given(st.data())
def test_random_data_errors_have_syndrome_hz_e_and_flip_lz_e(data):
    code = hgp_code("hamming7") if data.draw(st.booleans()) else bb_code(72)
    basis = data.draw(st.sampled_from(["z", "x"]))
    rounds = 2
    h, logicals = code.checks(basis), code.logicals(basis)
    c = h.shape[0]
    d, o, _ = fault_matrix(phenomenological_dem(code, rounds=rounds, p=0.01, q=0.0,
                                                basis=basis))
    t = data.draw(st.integers(0, rounds - 1))
    e = np.zeros(code.n, np.uint8)
    for j in data.draw(st.lists(st.integers(0, code.n - 1), min_size=1, max_size=4)):
        e[j] ^= 1
    # pick each flipped qubit's mechanism in round t and XOR their symptoms
    round_rows = [i for i in range(len(d)) if set((np.flatnonzero(d[i]) // c).tolist()) == {t}]
    lookup = {(d[i][t * c:(t + 1) * c].tobytes(), o[i].tobytes()): i for i in round_rows}
    syn = np.zeros(d.shape[1], np.uint8)
    flips = np.zeros(code.k, np.uint8)
    for j in np.flatnonzero(e):
        key = (h[:, j].tobytes(), logicals[:, j].astype(np.uint8).tobytes())
        syn ^= d[lookup[key]]
        flips ^= o[lookup[key]]
    expected = np.zeros(d.shape[1], np.uint8)
    expected[t * c:(t + 1) * c] = mod2(h, e)
    assert np.array_equal(syn, expected)
    assert np.array_equal(flips, mod2(logicals, e))


def test_equal_mechanisms_are_merged():
    # two qubits with the same check column and no logical: one mechanism, 2p(1-p)
    code = CssCode.from_checks("pair", [[1, 1]], [[1, 1]])
    dem = code_capacity_dem(code, p=0.1)
    _, _, p = fault_matrix(dem)
    assert p.tolist() == pytest.approx([2 * 0.1 * 0.9])


def test_all_observables_declared_even_when_no_error_touches_them():
    code = bb_code(90)
    dem = phenomenological_dem(code, rounds=2, p=0.0, q=0.01)
    d, o, p = fault_matrix(dem)
    assert dem.num_observables == code.k == 8 and not o.any()
    assert len(p) == 2 * code.hz.shape[0]
    no_meas = phenomenological_dem(code, rounds=2, p=0.01, q=0.0)
    assert no_meas.num_errors == 2 * code.n and no_meas.num_detectors == 3 * code.hz.shape[0]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rounds": 0, "p": 0.01}, "rounds"),
    ({"rounds": True, "p": 0.01}, "rounds"),
    ({"rounds": 2, "p": 0.5}, "p"),
    ({"rounds": 2, "p": -0.1}, "p"),
    ({"rounds": 2, "p": float("nan")}, "p"),
    ({"rounds": 2, "p": 0.01, "q": 0.7}, "q"),
    ({"rounds": 2, "p": 0.01, "basis": "y"}, "basis"),
])
def test_phenomenological_dem_rejects_bad_parameters(kwargs, field):
    with pytest.raises(SpecError) as err:
        phenomenological_dem(hgp_code("rep3"), **kwargs)
    assert err.value.field == field


def test_dem_sampling_is_reproducible_with_a_seed():
    dem = phenomenological_dem(bb_code(72), rounds=3, p=0.01)
    a = dem.compile_sampler(seed=1234).sample(10)
    b = dem.compile_sampler(seed=1234).sample(10)
    assert a[0].shape == (10, dem.num_detectors) and a[1].shape == (10, 12)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_code_capacity_dem_is_one_round_of_perfect_checks():
    code = bb_code(144)
    dem = code_capacity_dem(code, p=0.01, basis="x")
    assert (dem.num_detectors, dem.num_observables) == (72, 12)
    coords = dem.get_detector_coordinates()
    assert all(coords[i] == [i, 0] for i in range(72))
    d, o, p = fault_matrix(dem)
    assert np.array_equal(d.T, code.hx) and np.array_equal(o.T, code.lx)
    assert np.allclose(p, 0.01)


@pytest.mark.parametrize("module", [css_mod, bb_mod, hgp_mod, ph_mod],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
