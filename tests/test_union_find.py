"""Behaviour of the ``uf`` backend (weighted union-find + peeling, Numba).

Small codes only: the whole file runs in well under a minute on a busy 2-core machine once
Numba's cache is warm (a cold cache adds the one-off compilation, ~15 s).
"""

from __future__ import annotations

import math
import pickle
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
import stim
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qecd.decoder import _uf_kernels as kernels
from qecd.decoder import make_decoder, pack_bits, unpack_bits
from qecd.decoder.union_find import (
    UF_NO_BOUNDARY,
    UnionFindDecoder,
    integer_weights,
    uf_decode_into,
)
from qecd.errors import DecoderError


def surface_circuit(d: int, p: float, rounds: int | None = None) -> stim.Circuit:
    return stim.Circuit.generated(
        "surface_code:rotated_memory_z", distance=d, rounds=d if rounds is None else rounds,
        after_clifford_depolarization=p, before_round_data_depolarization=p,
        before_measure_flip_probability=p, after_reset_flip_probability=p)


def surface_dem(d: int, p: float) -> stim.DetectorErrorModel:
    return surface_circuit(d, p).detector_error_model(decompose_errors=True)


def xor_of(dec, faults: np.ndarray) -> np.ndarray:
    return dec.faults.syndrome_of(faults)


# -- every single fault ------------------------------------------------------------------------
@pytest.mark.parametrize("d", [3, 5])
@pytest.mark.parametrize("backend,options", [
    ("uf", {}), ("uf", {"prematch": False}), ("pymatching", {}),
])
def test_every_single_fault_is_corrected(d, backend, options):
    dem = surface_dem(d, 0.001)
    dec = make_decoder(backend, dem, **options)
    t = dec.faults
    synd = np.array([t.syndrome_of([f]) for f in range(t.num_faults)], dtype=np.uint8)
    np.testing.assert_array_equal(dec.decode_batch(synd), t.obs_mask)
    for f in range(0, t.num_faults, 7):  # the single-shot path too, on a sample
        np.testing.assert_array_equal(dec.decode(synd[f]), t.obs_mask[f])
    if backend == "uf":
        for f in range(t.num_faults):
            got = dec.decode_to_faults(synd[f])
            np.testing.assert_array_equal(xor_of(dec, got), synd[f])


# -- the returned faults always explain the syndrome --------------------------------------------
@st.composite
def small_graphs(draw):
    """A random matching graph of 1..9 detectors: edges, boundary edges, probabilities."""
    n = draw(st.integers(1, 9))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=len(pairs))) if pairs \
        else []
    bnd = draw(st.lists(st.integers(0, n - 1), unique=True, max_size=n))
    lines = [f"detector D{v}" for v in range(n)]  # keep every detector, even isolated ones
    for a, b in edges:
        p = draw(st.floats(0.001, 0.45))
        obs = " L0" if draw(st.booleans()) else ""
        lines.append(f"error({p}) D{a} D{b}{obs}")
    for v in bnd:
        p = draw(st.floats(0.001, 0.45))
        lines.append(f"error({p}) D{v} L0")
    lines.append("logical_observable L0")
    syndrome = draw(st.one_of(
        st.just([0] * n), st.just([1] * n), st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    return stim.DetectorErrorModel("\n".join(lines)), np.array(syndrome, dtype=np.uint8)


def odd_components_without_boundary(dec, syndrome: np.ndarray) -> bool:
    """True if some connected component has odd parity and no boundary edge (no solution)."""
    n = dec.num_detectors
    parent = list(range(n + 1))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in dec.edge_uv.tolist():
        parent[find(a)] = find(b)
    parity: dict[int, int] = {}
    for v in np.nonzero(syndrome)[0].tolist():
        parity[find(v)] = parity.get(find(v), 0) ^ 1
    return any(p and r != find(n) for r, p in parity.items())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_graphs(), st.booleans())
def test_faults_xor_to_the_syndrome_or_decoder_error(graph, prematch):
    dem, syndrome = graph
    dec = UnionFindDecoder.from_dem(dem, prematch=prematch)
    if odd_components_without_boundary(dec, syndrome):
        # documented behaviour: the kernel returns UF_NO_BOUNDARY, the wrapper raises
        with pytest.raises(DecoderError, match="no boundary edge"):
            dec.decode_to_faults(syndrome)
        with pytest.raises(DecoderError, match="shot 0"):
            dec.decode_batch(syndrome[None, :])
        out = np.zeros(dec.num_detectors + 1, np.int64)
        assert uf_decode_into(syndrome, *dec.kernel_args(), out) == UF_NO_BOUNDARY
    else:
        faults = dec.decode_to_faults(syndrome)
        np.testing.assert_array_equal(xor_of(dec, faults), syndrome)
        assert len(set(faults.tolist())) == len(faults)
    # either way the workspace was reset: an all-zero syndrome decodes to nothing
    assert dec.decode_to_faults(np.zeros(dec.num_detectors, np.uint8)).size == 0


@settings(max_examples=60, deadline=None)
@given(st.data())
@example(data=None)
def test_random_syndromes_on_d3_surface_code_are_explained(data):
    dec = _d3_decoder()
    if data is None:  # all ones
        syndrome = np.ones(dec.num_detectors, np.uint8)
    else:
        syndrome = np.array(data.draw(st.lists(st.integers(0, 1), min_size=dec.num_detectors,
                                               max_size=dec.num_detectors)), np.uint8)
    np.testing.assert_array_equal(xor_of(dec, dec.decode_to_faults(syndrome)), syndrome)


_D3: list[UnionFindDecoder] = []


def _d3_decoder() -> UnionFindDecoder:
    if not _D3:
        _D3.append(UnionFindDecoder.from_dem(surface_dem(3, 0.001)))
    return _D3[0]


def test_odd_component_without_boundary_is_reported_not_hung():
    dem = stim.DetectorErrorModel("""
        error(0.1) D0 D1
        error(0.1) D2 L0
    """)
    dec = UnionFindDecoder.from_dem(dem)
    with pytest.raises(DecoderError, match="no boundary edge"):
        dec.decode_to_faults(np.array([1, 0, 0], np.uint8))
    batch = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1]], np.uint8)
    with pytest.raises(DecoderError, match="shot 1"):
        dec.decode_batch(batch)
    with pytest.raises(DecoderError, match="shot 1"):
        dec.decode_batch_packed(pack_bits(batch))
    # the component with a boundary still decodes, and nothing is left behind
    assert dec.decode_to_faults(np.array([1, 1, 1], np.uint8)).tolist() == [0, 1]


# -- against a brute-force minimum-weight decoder -----------------------------------------------
def brute_force_tables(dec: UnionFindDecoder, weights: np.ndarray):
    """For every syndrome (as an int), the minimum total weight of a fault set producing it
    and the observable flip of one such set, by enumerating all 2**E fault subsets."""
    t = dec.faults
    e, d = t.num_faults, t.num_detectors
    assert e <= 22, "too many faults to enumerate"
    fmask = np.array([sum(1 << int(x) for x in t.detectors_of(f)) for f in range(e)], np.int64)
    subsets = np.arange(1 << e, dtype=np.int64)
    syn = np.zeros(1 << e, np.int64)
    wt = np.zeros(1 << e, weights.dtype)
    obs = np.zeros(1 << e, np.int64)
    for f in range(e):
        bit = (subsets >> f) & 1
        syn ^= bit * fmask[f]
        wt += bit * weights[f]
        obs ^= bit * int(t.obs_mask[f, 0])
    order = np.lexsort((wt, syn))
    first = np.ones(order.size, bool)
    first[1:] = syn[order][1:] != syn[order][:-1]
    best_w = np.full(1 << d, -1, weights.dtype)
    best_obs = np.zeros(1 << d, np.int64)
    best_w[syn[order][first]] = wt[order][first]
    best_obs[syn[order][first]] = obs[order][first]
    return best_w, best_obs


def repetition_circuit(rounds: int) -> stim.Circuit:
    return stim.Circuit.generated(
        "repetition_code:memory", distance=3, rounds=rounds, after_clifford_depolarization=0.05,
        before_measure_flip_probability=0.02, after_reset_flip_probability=0.03)


@pytest.mark.parametrize("rounds", [2, 3])
def test_two_events_are_matched_at_minimum_weight_and_more_never_below_it(rounds):
    # Uniform growth is a bidirectional Dijkstra: two events (or one event and the boundary)
    # meet along a shortest path, so with at most two events union-find's correction has the
    # minimum weight (in its own integer weights; a two-sided growth step rounds up, which
    # could only matter for near-ties and does not for this DEM). With more events the
    # peeling forest, not a matching, pairs them, and union-find may exceed the minimum (it
    # does here, for a few syndromes, by up to ~1.4x); the LER test below bounds the effect.
    dem = repetition_circuit(rounds).detector_error_model(decompose_errors=True)
    for prematch in (True, False):
        dec = UnionFindDecoder.from_dem(dem, prematch=prematch)
        w = dec.edge_weights.astype(np.int64)
        best_w, _ = brute_force_tables(dec, w)
        above = 0
        for s in np.nonzero(best_w >= 0)[0]:
            syndrome = ((int(s) >> np.arange(dec.num_detectors)) & 1).astype(np.uint8)
            faults = dec.decode_to_faults(syndrome)
            np.testing.assert_array_equal(xor_of(dec, faults), syndrome)
            uf_w = int(w[faults].sum())
            assert uf_w >= best_w[s]
            if syndrome.sum() <= 2:
                assert uf_w == best_w[s], f"syndrome {syndrome}: {uf_w} > {best_w[s]}"
            above += uf_w > best_w[s]
        assert above < 0.05 * (best_w >= 0).sum()


def test_logical_error_rate_close_to_brute_force_minimum_weight():
    c = repetition_circuit(3)
    dem = c.detector_error_model(decompose_errors=True)
    dec = UnionFindDecoder.from_dem(dem)
    p = dec.faults.probabilities
    _, best_obs = brute_force_tables(dec, np.log((1 - p) / p))
    dets, obs = c.compile_detector_sampler(seed=5).sample(20000, separate_observables=True)
    index = (dets.astype(np.int64) << np.arange(dec.num_detectors)).sum(axis=1)
    mw_fail = int((best_obs[index] != obs[:, 0]).sum())
    uf_fail = int((dec.decode_batch(dets)[:, 0] != obs[:, 0]).sum())
    # ~970 failures each (measured: equal within a few). 10% + 3 sigma of the difference of
    # two Poisson counts of that size (sqrt(2 * 970) ~ 44) still catches any real regression.
    assert uf_fail <= 1.1 * mw_fail + 3 * math.sqrt(2 * mw_fail) + 5, (uf_fail, mw_fail)


# -- batch paths agree ------------------------------------------------------------------------
@pytest.mark.parametrize("d,p", [(3, 0.01), (5, 0.005)])
def test_packed_batch_equals_unpacked_batch_equals_per_shot(d, p):
    c = surface_circuit(d, p)
    dec = UnionFindDecoder.from_dem(c.detector_error_model(decompose_errors=True))
    dets = c.compile_detector_sampler(seed=11).sample(1000)
    dets[0] = 0
    dets[1] = 1
    unpacked = dec.decode_batch(dets)
    packed = dec.decode_batch_packed(pack_bits(dets))
    np.testing.assert_array_equal(unpack_bits(packed, dec.num_observables), unpacked)
    for i in range(0, 1000, 5):
        np.testing.assert_array_equal(dec.decode(dets[i]), unpacked[i])
        np.testing.assert_array_equal(
            dec.faults.observables_of(dec.decode_to_faults(dets[i])), unpacked[i])


def test_prematching_gives_exactly_plain_union_find():
    # The tentative pre-matches are materialized as the clusters union-find would have built
    # (module docs of _uf_kernels), so the two modes return the same fault sets, not just the
    # same logical predictions.
    c = surface_circuit(5, 0.005)
    dem = c.detector_error_model(decompose_errors=True)
    on = UnionFindDecoder.from_dem(dem, prematch=True)
    off = UnionFindDecoder.from_dem(dem, prematch=False)
    assert on.kernel_args()[4].any() and off.kernel_args()[4].size == 0
    for syndrome in c.compile_detector_sampler(seed=3).sample(1500):
        np.testing.assert_array_equal(on.decode_to_faults(syndrome),
                                      off.decode_to_faults(syndrome))


# -- accuracy against PyMatching ----------------------------------------------------------------
def test_logical_error_rate_within_twice_pymatching_d5_p03():
    c = surface_circuit(5, 0.003)
    dem = c.detector_error_model(decompose_errors=True)
    dets, obs = c.compile_detector_sampler(seed=2024).sample(
        20000, separate_observables=True, bit_packed=True)
    fails = {}
    for name in ("uf", "pymatching"):
        pred = make_decoder(name, dem).decode_batch_packed(dets)
        fails[name] = int((pred != obs).any(axis=1).sum())
    uf, pm = fails["uf"], fails["pymatching"]
    # The requirement is LER_uf <= 2 LER_pm. Both counts are ~Poisson (~75-85 here, measured);
    # at the limit LER_uf = 2 LER_pm the difference uf - 2 pm has mean 0 and variance
    # ~ lambda_uf + 4 lambda_pm = 6 lambda_pm (treating the counts as independent, which
    # overstates it: both decoders fail on the same hard shots). So a decoder meeting the
    # requirement passes with >99.8% probability under the bound below, and one that is 4x
    # worse than PyMatching fails it.
    assert uf <= 2 * pm + 3 * math.sqrt(6 * max(pm, 1)) + 5, fails


# -- options, input checks, warm-up -------------------------------------------------------------
def test_options_are_checked():
    dem = surface_dem(3, 0.001)
    with pytest.raises(DecoderError, match="unknown options"):
        make_decoder("uf", dem, max_iter=3)
    with pytest.raises(DecoderError, match="weight_resolution"):
        make_decoder("uf", dem, weight_resolution=0)
    with pytest.raises(DecoderError, match="prematch"):
        make_decoder("uf", dem, prematch="yes")
    dec = make_decoder("uf", dem, weight_resolution=8)
    assert dec.edge_weights.max() == 8 and dec.edge_weights.min() >= 1
    with pytest.raises(DecoderError, match="expected shape"):
        dec.decode(np.zeros(dec.num_detectors + 1, np.uint8))
    with pytest.raises(DecoderError, match="packed batch"):
        dec.decode_batch_packed(np.zeros((2, 1), np.uint8))


def test_integer_weights_follow_log_likelihood():
    w = integer_weights(np.array([0.3, 0.01, 0.001, 0.49999]), 100)
    assert w.tolist()[2] == 100
    assert w[0] < w[1] < w[2] and w[3] == 1


def test_no_kernel_compiles_after_construction():
    dec = UnionFindDecoder.from_dem(surface_dem(3, 0.001))
    jitted = [kernels.uf_decode_into, kernels.uf_decode_batch, kernels.uf_decode_batch_packed]
    before = [len(k.signatures) for k in jitted]
    syn = dec.faults.syndrome_of([1, 5])
    batch = np.stack([syn, syn])
    dec.decode(syn.astype(bool))
    dec.decode_to_faults(syn)
    ro = batch.copy()
    ro.setflags(write=False)
    dec.decode_batch(ro)  # read-only input
    dec.decode_batch(np.asfortranarray(batch))  # non-contiguous input
    dec.decode_batch_packed(pack_bits(batch)[::-1])
    assert [len(k.signatures) for k in jitted] == before


def test_empty_and_observable_free_models():
    dec = UnionFindDecoder.from_dem(stim.DetectorErrorModel("error(0.1) D0 D1\nerror(0.1) D1"))
    assert dec.num_observables == 0
    assert dec.decode(np.array([1, 0], np.uint8)).shape == (0,)
    assert dec.decode_batch_packed(np.array([[1], [0]], np.uint8)).shape == (2, 0)
    empty = UnionFindDecoder.from_dem(stim.DetectorErrorModel("detector D0\nlogical_observable L0"))
    assert empty.decode(np.zeros(1, np.uint8)).tolist() == [0]
    with pytest.raises(DecoderError):
        empty.decode(np.ones(1, np.uint8))


# -- the kernel a Numba server loop calls -----------------------------------------------------
@numba.njit(nogil=True)
def _server_loop(syndromes, args, out_faults, counts):
    for i in range(syndromes.shape[0]):
        counts[i] = uf_decode_into(syndromes[i], *args, out_faults)


def test_single_shot_kernel_runs_inside_numba():
    dec = UnionFindDecoder.from_dem(surface_dem(3, 0.001))
    t = dec.faults
    syndromes = np.array([t.syndrome_of([f]) for f in range(t.num_faults)], np.uint8)
    counts = np.zeros(len(syndromes), np.int64)
    out = np.zeros(dec.num_detectors + 1, np.int64)
    _server_loop(syndromes, dec.kernel_args(fresh_workspace=True), out, counts)
    assert (counts >= 1).all()
    # the last shot's faults are in `out`
    np.testing.assert_array_equal(t.syndrome_of(out[: counts[-1]]), syndromes[-1])


@numba.njit(nogil=True)
def _decode_all(syndromes, args, out_faults, obs_mask, predictions):
    for i in range(syndromes.shape[0]):
        n = uf_decode_into(syndromes[i], *args, out_faults)
        for j in range(n):
            predictions[i] ^= obs_mask[out_faults[j], 0]


def test_threads_with_their_own_workspaces_agree_with_the_decoder():
    c = surface_circuit(5, 0.005)
    dec = UnionFindDecoder.from_dem(c.detector_error_model(decompose_errors=True))
    dets, _ = c.compile_detector_sampler(seed=4).sample(4000, separate_observables=True)
    dets = dets.astype(np.uint8)
    expected = dec.decode_batch(dets)[:, 0]

    def run(part):
        args = dec.kernel_args(fresh_workspace=True)
        assert all(a is b for a, b in zip(args[:6], dec.kernel_args()[:6], strict=True))
        pred = np.zeros(len(part), np.uint8)
        _decode_all(part, args, np.zeros(dec.num_detectors + 1, np.int64), dec.faults.obs_mask,
                    pred)
        return pred

    with ThreadPoolExecutor(2) as pool:  # nogil kernels, one workspace per thread
        got = np.concatenate(list(pool.map(run, [dets[:2000], dets[2000:]])))
    np.testing.assert_array_equal(got, expected)


def test_pickled_decoder_decodes_the_same():
    c = surface_circuit(3, 0.01)
    dec = UnionFindDecoder.from_dem(c.detector_error_model(decompose_errors=True),
                                    weight_resolution=20)
    clone = pickle.loads(pickle.dumps(dec))
    assert clone.weight_resolution == 20
    dets = c.compile_detector_sampler(seed=8).sample(500)
    np.testing.assert_array_equal(clone.decode_batch(dets), dec.decode_batch(dets))
