"""The ``uf-corr`` backend: two-pass correlated union-find (the idea of correlated matching,
Fowler arXiv 1310.0863, on qecd's Numba union-find).

A DEM error that decomposes into several edges (``A ^ B``: a Y error in the surface code,
a hook error) makes its edges correlated: once one of them is in the correction, the others
are much more likely than their marginal probability says. The decoder

1. decodes with plain weighted union-find (:mod:`qecd.decoder._uf_kernels`);
2. for each edge ``e`` of that correction and each DEM error ``h`` with ``e`` among its
   components, lowers the weight of ``h``'s other components ``g`` to
   ``log((1 - q) / q)`` with ``q = min(p_h / p_e, 1/2)`` (the probability that ``g`` fired
   given that ``e`` did), if that is lower than ``g``'s own weight;
3. decodes again with those weights, then restores them. Pre-matching stays on in the second
   pass except around the lowered edges: the proof that pre-matching an isolated pair
   ``(a, b)`` is union-find's own first move reads only the weights of edges at ``a``, ``b``
   and their neighbours (:func:`qecd.decoder._uf_kernels.prematch_tables`), so it is turned
   off for every node within one edge of a lowered edge's ends (a copy of the tables,
   restored after the shot). A shot whose first correction has no correlated partner skips
   step 3, so the cost over ``uf`` grows with the error rate.

The result always reproduces the syndrome (both passes are union-find's). Weights use the
same integer scale as ``uf`` (:func:`qecd.decoder.union_find.integer_weights`). The DEM must
carry the decompositions (``decompose_errors=True``); without any ``^`` this is ``uf``. In a
sliding window the window DEMs have no decompositions (as for ``pymatching-corr``); a
whole-shot stream gets the DEM itself (``uses_decompositions``).

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder import make_decoder
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
...                            after_clifford_depolarization=0.01)
>>> dec = make_decoder("uf-corr", c.detector_error_model(decompose_errors=True))
>>> s = dec.faults.syndrome_of([0, 5])
>>> bool((dec.faults.syndrome_of(dec.decode_to_faults(s)) == s).all())
True
"""

from __future__ import annotations

import numba
import numpy as np
import stim
from numba.cpython.unsafe.numbers import trailing_zeros

from qecd import _jit
from qecd.decoder import _uf_kernels as _k
from qecd.decoder.union_find import (
    DEFAULT_WEIGHT_RESOLUTION,
    PackedCoreRunner,
    UnionFindDecoder,
)

_jit.invalidate_if_changed(__file__, [_k.__file__], __name__)

__all__ = ["CorrelatedUnionFindDecoder", "correlation_table"]

_JIT = _jit.KERNEL


def correlation_table(dem: stim.DetectorErrorModel, faults, weight_resolution: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of conditional weights: for fault (edge) ``f``, the edges ``g`` it is correlated
    with and their weight given ``f`` (only where lower than ``g``'s own weight).

    Returns
    -------
    corr_ptr : int64 (F + 1,); corr_edge : int64 (nnz,); corr_w : int32 (nnz,)
    """
    p = np.clip(faults.probabilities, 1e-300, 0.5 - 1e-12)
    llr = np.log1p(-p) - np.log(p)
    scale = weight_resolution / float(llr.max()) if llr.size else 1.0
    own_w = np.maximum(1, np.rint(llr * scale)).astype(np.int64)
    index: dict[tuple[int, ...], int] = {}
    for f in range(faults.num_faults):
        index[tuple(faults.detectors_of(f).tolist())] = f
    best: dict[tuple[int, int], float] = {}
    for inst in dem.flattened():
        if inst.type != "error":
            continue
        ph = float(inst.args_copy()[0])
        comps: list[set[int]] = [set()]
        for t in inst.targets_copy():
            if t.is_separator():
                comps.append(set())
            elif t.is_relative_detector_id():
                comps[-1].symmetric_difference_update({t.val})
        ids = [index.get(tuple(sorted(c))) for c in comps if c]
        ids = sorted({i for i in ids if i is not None})
        if len(ids) < 2 or ph <= 0:
            continue
        for f in ids:
            q = min(ph / float(p[f]), 0.5 - 1e-12)
            for g in ids:
                if g != f and q > best.get((f, g), 0.0):
                    best[(f, g)] = q
    rows: list[list[tuple[int, int]]] = [[] for _ in range(faults.num_faults)]
    for (f, g), q in best.items():
        w = max(1, int(np.rint((np.log1p(-q) - np.log(q)) * scale)))
        if w < own_w[g]:
            rows[f].append((g, w))
    ptr = np.zeros(faults.num_faults + 1, np.int64)
    ptr[1:] = np.cumsum([len(r) for r in rows])
    edge = np.array([g for r in rows for g, _ in sorted(r)], np.int64)
    wts = np.array([w for r in rows for _, w in sorted(r)], np.int32)
    return ptr, edge, wts


@numba.njit(**_JIT)
def _set_weight(g, w, edge_w, slack, adj, adj_pos):
    edge_w[g] = w
    slack[g] = w
    adj[adj_pos[g, 0] + 2] = w
    if adj_pos[g, 1] >= 0:
        adj[adj_pos[g, 1] + 2] = w


@numba.njit(**_JIT)
def _unprematch_events(events, n_events, stamp, cur, adj_ptr, adj, pm2_edge, pm2_bnd,
                       off_edge, off_node, off_bnd):
    """Turn pre-matching off at every detection event within one edge of a node stamped
    ``cur`` (an end of a lowered edge): its boundary match and every edge at it, so no pair
    touching it is pre-matched. Records what changed; returns the counts ``(edges, nodes)``."""
    n_off_e = 0
    n_off_n = 0
    for i in range(n_events):
        a = events[i]
        near = stamp[a] == cur
        k = adj_ptr[a]
        while not near and k < adj_ptr[a + 1]:
            near = stamp[adj[3 * k]] == cur
            k += 1
        if not near:
            continue
        if pm2_bnd[a] >= 0:
            off_node[n_off_n] = a
            off_bnd[n_off_n] = pm2_bnd[a]
            n_off_n += 1
            pm2_bnd[a] = -1
        for k in range(adj_ptr[a], adj_ptr[a + 1]):
            f = adj[3 * k + 1]
            if pm2_edge[f] != 0:
                pm2_edge[f] = 0
                off_edge[n_off_e] = f
                n_off_e += 1
    return n_off_e, n_off_n


@numba.njit(**_JIT)
def cuf_decode_into(syndrome, events, n_events, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd,
                    parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack,
                    out_faults, corr_ptr, corr_edge, corr_w, adj_pos, pm2_edge, pm2_bnd,
                    mod_edge, mod_old, off_edge, off_node, off_bnd, stamp):
    """One shot, two passes (module docs); returns the fault count or UF_NO_BOUNDARY.

    ``events[:n_events]`` lists the detectors with an event (those ``syndrome`` marks);
    ``pm2_edge``/``pm2_bnd`` are this decoder's copies of the pre-matching tables (empty
    when pre-matching is off); ``mod_*``, ``off_*`` and ``stamp`` are scratch."""
    n1 = _k.uf_decode_into(syndrome, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent,
                           flags, nws, slack, touched, heap_key, heap_ver, satq, stack,
                           out_faults)
    if n1 <= 0:
        return n1
    nmod = 0
    use_pm = pm2_edge.shape[0] > 0
    nd = syndrome.shape[0]
    stamp[nd + 1] += 1  # this shot's stamp value
    cur = stamp[nd + 1]
    for i in range(n1):
        f = out_faults[i]
        for k in range(corr_ptr[f], corr_ptr[f + 1]):
            g = corr_edge[k]
            w = corr_w[k]
            if w < edge_w[g]:
                mod_edge[nmod] = g
                mod_old[nmod] = edge_w[g]
                nmod += 1
                _set_weight(g, w, edge_w, slack, adj, adj_pos)
                stamp[edge_uv[g, 0]] = cur
                stamp[edge_uv[g, 1]] = cur
    if nmod == 0:
        return n1
    n_off_e = 0
    n_off_n = 0
    if use_pm:
        n_off_e, n_off_n = _unprematch_events(events, n_events, stamp, cur, adj_ptr, adj,
                                              pm2_edge, pm2_bnd, off_edge, off_node, off_bnd)
    n2 = _k.uf_decode_into(syndrome, adj_ptr, adj, edge_w, edge_uv, pm2_edge, pm2_bnd,
                           parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack,
                           out_faults)
    for j in range(nmod - 1, -1, -1):  # reverse: an edge lowered twice ends at its original
        _set_weight(mod_edge[j], mod_old[j], edge_w, slack, adj, adj_pos)
    for j in range(n_off_e):
        pm2_edge[off_edge[j]] = 1
    for j in range(n_off_n):
        pm2_bnd[off_node[j]] = off_bnd[j]
    return n2


@numba.njit(**_JIT)
def cuf_decode_batch_packed(packed, num_detectors, syndrome, events, args_graph, args_ws,
                            out_faults, corr, obs_packed, out):
    """Bit-packed shots in, bit-packed observable flips XOR-ed into ``out``; returns the first
    shot with no solution, or -1."""
    adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd = args_graph
    parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack = args_ws
    corr_ptr, corr_edge, corr_w, adj_pos, pm2_edge, pm2_bnd, mod_edge, mod_old, off_edge, \
        off_node, off_bnd, stamp = corr
    nob = out.shape[1]
    nbytes = packed.shape[1]
    for s in range(packed.shape[0]):
        ne = 0  # ``syndrome`` is all-zero here: set this shot's events, clear them after
        for j in range(nbytes):
            b = np.int64(packed[s, j])
            while b != 0:
                v = 8 * j + trailing_zeros(b)
                b &= b - 1
                if v < num_detectors:
                    syndrome[v] = 1
                    events[ne] = v
                    ne += 1
        if ne == 0:
            continue
        n = cuf_decode_into(syndrome, events, ne, adj_ptr, adj, edge_w, edge_uv, pm_edge,
                            pm_bnd, parent, flags, nws, slack, touched, heap_key, heap_ver,
                            satq, stack, out_faults, corr_ptr, corr_edge, corr_w, adj_pos,
                            pm2_edge, pm2_bnd, mod_edge, mod_old, off_edge, off_node, off_bnd,
                            stamp)
        for i in range(ne):
            syndrome[events[i]] = 0
        if n < 0:
            return s
        for i in range(n):
            f = out_faults[i]
            for ob in range(nob):
                out[s, ob] ^= obs_packed[f, ob]
    return -1


class CorrelatedUnionFindDecoder(PackedCoreRunner, UnionFindDecoder):
    """Two-pass correlated union-find (module docs); options as ``uf``."""

    name = "uf-corr"
    graph_like = True
    #: reads the DEM's ``^`` decompositions: a whole-shot window hands it the DEM itself
    uses_decompositions = True
    #: streams run through the Python window path (the compiled stream engine is plain uf's)
    compiles_streams = False

    @classmethod
    def compile_stream(cls, stream: object) -> None:
        """None: no compiled engine (it would run plain ``uf``); streams decode from Python."""
        return None

    def __init__(self, dem: stim.DetectorErrorModel, *,
                 weight_resolution: int = DEFAULT_WEIGHT_RESOLUTION,
                 prematch: bool = True) -> None:
        self._corr = None
        super().__init__(dem, weight_resolution=weight_resolution, prematch=prematch)
        ptr, edge, wts = correlation_table(dem, self.faults, weight_resolution)
        adj_ptr, adj = self._args[0], self._args[1]
        ne = self.faults.num_faults
        adj_pos = np.full((max(ne, 1), 2), -1, np.int64)
        nslots = len(adj) // 3
        for k in range(nslots):
            e = int(adj[3 * k + 1])
            col = 0 if adj_pos[e, 0] < 0 else 1
            adj_pos[e, col] = 3 * k
        del adj_ptr
        self.correlated_pairs = len(edge)
        pm_edge, pm_bnd = self._args[4], self._args[5]
        nmod = len(edge) + 1
        self._corr = (ptr, edge, wts, adj_pos, pm_edge.copy(), pm_bnd.copy(),
                      np.zeros(nmod, np.int64), np.zeros(nmod, np.int32),
                      np.zeros(max(ne, 1), np.int64), np.zeros(self.num_detectors + 1, np.int64),
                      np.zeros(self.num_detectors + 1, np.int32),
                      np.zeros(self.num_detectors + 2, np.int64))  # stamps; [-1] = counter
        self._syndrome = np.zeros(self.num_detectors, np.uint8)  # all-zero between shots
        self._events = np.zeros(max(self.num_detectors, 1), np.int64)
        self._warm_up()

    def _warm_up(self) -> None:
        if self._corr is not None:
            super()._warm_up()

    def _run_packed_core(self, packed: np.ndarray) -> np.ndarray:
        out = np.zeros((packed.shape[0], max(1, (self.num_observables + 7) // 8)), np.uint8)
        a = self._args
        bad = cuf_decode_batch_packed(packed, self.num_detectors, self._syndrome, self._events,
                                      a[:6], a[6:], self._out_faults, self._corr,
                                      self._obs_packed_1, out)
        if bad >= 0:
            raise self._no_solution(bad)
        return out[:, :(self.num_observables + 7) // 8]


    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids (int64, sorted) of the second pass's correction."""
        s = (np.ascontiguousarray(self._check_syndrome(syndrome), dtype=np.uint8) != 0).astype(
            np.uint8)
        ev = np.flatnonzero(s).astype(np.int64)
        if ev.size == 0:
            return np.zeros(0, np.int64)
        a = self._args
        n = cuf_decode_into(s, ev, ev.size, *a, self._out_faults, *self._corr)
        if n < 0:
            raise self._no_solution(0)
        return np.sort(self._out_faults[:n])
