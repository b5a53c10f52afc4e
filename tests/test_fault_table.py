"""FaultTable.from_dem and the union-find pre-matching tables, against their reference rules.

Both used to be Python loops over every DEM error (3.3 s and 1.2 s for the 7.9 MB DEM of a
d=11 surface code over 53 rounds, most of a plan build); they are compiled now. The reference
implementations below are those loops, kept here as the oracle: the compiled ones must give
the same arrays, bit for bit, on DEMs with separators, repeated targets, merges of equal and
different observables, zero probabilities, tags, repeat blocks and shifts.
"""

from __future__ import annotations

import numpy as np
import pytest
import stim

from qecd.decoder._uf_kernels import prematch_tables
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DemError


def reference_from_dem(dem: stim.DetectorErrorModel, graph: bool) -> dict:
    """The merge rules of FaultTable.from_dem, written over stim's instruction objects."""
    flat = dem.flattened()
    merged: dict = {}
    k = -1
    for inst in flat:
        if inst.type != "error":
            continue
        k += 1
        p = float(inst.args_copy()[0])
        if p <= 0.0:
            continue
        comps: list = [(set(), set())]
        for t in inst.targets_copy():
            if t.is_separator():
                comps.append((set(), set()))
            elif t.is_relative_detector_id():
                comps[-1][0].symmetric_difference_update({t.val})
            else:
                comps[-1][1].symmetric_difference_update({t.val})
        if not graph:
            d: set = set()
            o: set = set()
            for a, b in comps:
                d ^= a
                o ^= b
            comps = [(d, o)]
        for dets, obs in comps:
            if not dets:
                continue
            if graph and len(dets) > 2:
                raise DemError(f"error #{k} flips {sorted(dets)}")
            dk, ok = tuple(sorted(dets)), tuple(sorted(obs))
            key = dk if graph else (dk, ok)
            if key not in merged:
                merged[key] = [dk, ok, p, k, p]
            elif merged[key][1] == ok:
                e = merged[key]
                e[2] = e[2] * (1 - p) + p * (1 - e[2])
                if p > e[4]:
                    e[3], e[4] = k, p
            elif p > merged[key][2]:
                merged[key] = [dk, ok, p, k, p]
    rows = sorted(merged.values(), key=lambda e: (e[0], e[1]))
    return {"dets": [list(e[0]) for e in rows], "obs": [list(e[1]) for e in rows],
            "p": [min(e[2], 0.5 - 1e-12) if e[2] >= 0.5 else e[2] for e in rows],
            "index": [e[3] for e in rows]}


def as_dict(t: FaultTable) -> dict:
    return {"dets": [t.detectors_of(f).tolist() for f in range(t.num_faults)],
            "obs": [np.nonzero(t.obs_mask[f])[0].tolist() for f in range(t.num_faults)],
            "p": t.probabilities.tolist(), "index": t.dem_index.tolist()}


def random_dem(rng: np.random.Generator) -> stim.DetectorErrorModel:
    nd, no = int(rng.integers(1, 8)), int(rng.integers(0, 3))
    lines = []
    for _ in range(int(rng.integers(0, 30))):
        p = float(rng.choice([0.0, 0.1, 0.2, 0.3, 0.6, rng.random()]))
        comps = []
        for _ in range(int(rng.integers(1, 4))):
            t = [f"D{int(x)}" for x in rng.integers(0, nd, rng.integers(0, 4))]
            if no:
                t += [f"L{int(x)}" for x in rng.integers(0, no, rng.integers(0, 2))]
            rng.shuffle(t)
            comps.append(" ".join(t) or "D0")
        tag = "[t]" if rng.random() < 0.1 else ""
        lines.append(f"error{tag}({p}) " + " ^ ".join(comps))
    lines.append(f"detector D{nd - 1}")
    if no:
        lines.append(f"logical_observable L{no - 1}")
    if rng.random() < 0.3:
        lines = ["repeat 2 {", *lines, "shift_detectors 2", "}"]
    return stim.DetectorErrorModel("\n".join(lines))


def check(dem: stim.DetectorErrorModel, graph: bool) -> None:
    try:
        want = reference_from_dem(dem, graph)
    except DemError as e:
        with pytest.raises(DemError, match="has a component flipping") as got:
            FaultTable.from_dem(dem, graph=graph)
        assert str(e).split(" flips ")[0] in str(got.value)  # the same error is named
        return
    t = FaultTable.from_dem(dem, graph=graph)
    assert as_dict(t) == want
    assert (t.num_detectors, t.num_observables) == (dem.num_detectors, dem.num_observables)
    assert (t.det_indptr.dtype, t.det_indices.dtype, t.obs_mask.dtype, t.dem_index.dtype) == (
        np.int32, np.int32, np.uint8, np.int64)


@pytest.mark.parametrize("graph", [True, False])
def test_the_compiled_reader_merges_faults_as_the_reference_rules_do(graph):
    rng = np.random.default_rng(2026)
    for _ in range(300):
        check(random_dem(rng), graph)


@pytest.mark.parametrize("decompose", [True, False])
def test_the_compiled_reader_on_circuit_dems(decompose):
    c = stim.Circuit.generated("surface_code:rotated_memory_x", distance=5, rounds=5,
                               after_clifford_depolarization=0.003,
                               before_measure_flip_probability=0.002)
    dem = c.detector_error_model(decompose_errors=decompose)
    check(dem, True)
    check(dem, False)


def test_probabilities_are_read_exactly_as_stim_holds_them():
    ps = [0.1234567890123456774, 1e-9, 3.0000000000000001e-05, 0.49999999999]
    dem = stim.DetectorErrorModel("\n".join(f"error({p!r}) D{k}" for k, p in enumerate(ps)))
    assert FaultTable.from_dem(dem, graph=True).probabilities.tolist() == ps


def reference_prematch(nd: int, uv: np.ndarray, w: np.ndarray) -> tuple[list, list]:
    """prematch_tables' rule (see its docstring) by brute force over every edge."""
    uv, w = uv.astype(int).tolist(), w.astype(int).tolist()
    big = 1 << 60

    def away(x: int, a: int, b: int) -> int:
        ws = [w[f] for f, (u, v) in enumerate(uv) if x in (u, v)
              and (v if u == x else u) not in (a, b)]
        return min(ws, default=big)

    def first(e: int, t0: int, ends: tuple) -> bool:
        for z in ends:
            for f, (u, v) in enumerate(uv):
                if f == e or z not in (u, v):
                    continue
                x = v if u == z else u
                if t0 >= w[f] or (x < nd and 2 * t0 >= w[f] + away(x, ends[0], ends[-1])):
                    return False
        return True

    pe, pb = [0] * len(uv), [-1] * (nd + 1)
    for e, (a, b) in enumerate(uv):
        if b >= nd:
            if first(e, w[e], (a,)):
                pb[a] = e
        elif first(e, (w[e] + 1) // 2, (a, b)):
            pe[e] = 1
    return pe, pb


def test_the_compiled_prematch_tables_follow_their_rule():
    rng = np.random.default_rng(7)
    for _ in range(400):
        nd, ne = int(rng.integers(1, 10)), int(rng.integers(0, 25))
        edges: dict = {}  # distinct edges, as a merged fault table gives
        for _ in range(ne):
            a, b = int(rng.integers(0, nd)), int(rng.integers(0, nd + 1))
            b = nd if a == b else b
            edges.setdefault((min(a, b), max(a, b)), None)
        uv = np.array(list(edges), np.int32).reshape(-1, 2)
        ne = len(uv)
        w = rng.integers(1, 12, ne).astype(np.int32)
        pe, pb = prematch_tables(nd, uv, w)
        assert (pe.tolist(), pb.tolist()) == reference_prematch(nd, uv, w)
        assert (pe.dtype, pb.dtype) == (np.uint8, np.int32)
