"""The ``belief-uf`` backend: belief-find, BP on the DEM then union-find on reweighted edges.

Belief-find (Higgott, Bohdanowicz, Kubica, Flammia & Campbell, PRX 13, 031007 (2023), arXiv
2203.04948) per shot, all in Numba over preallocated arrays:

1. BP (min-sum with scaling, or product-sum; a small iteration cap) on the DEM's
   *undecomposed* check matrix: each DEM error one column (its ``^`` components XOR-ed,
   identical columns merged: :meth:`FaultTable.from_dem` with ``graph=False``), detectors the
   rows. The kernels are ``bp-cluster``'s (:func:`qecd.decoder._bp_kernels.bp_decode`).
2. If BP's hard decision reproduces the syndrome, it is the answer: each chosen column is
   replaced by the matching-graph edges of its decomposition, and the edges that occur an odd
   number of times are the correction (their detectors XOR to the syndrome).
3. Otherwise the posteriors go onto the matching graph: edge ``e`` gets
   ``p_e = (1 - prod(1 - 2 P_h)) / 2`` over the DEM errors ``h`` whose decomposition contains
   it (``P_h`` = the posterior of ``h``'s column, shared among the DEM errors merged into that
   column in proportion to their priors; ``1 - 2 P = tanh(L / 2)`` for a posterior LLR ``L``),
   then the integer weight ``round(scale * log((1 - p_e) / p_e))`` on ``uf``'s scale
   (:func:`~qecd.decoder.union_find.integer_weights`: the DEM's least likely edge gets
   ``weight_resolution``), between 1 and :data:`MAX_WEIGHT`, and weighted union-find
   (:mod:`qecd.decoder._uf_kernels`) decodes the shot on those weights. Pre-matching is off:
   its proof holds for the DEM's own weights only. An edge no DEM error reaches keeps its
   prior weight.

Only what the shot changed is rewritten: BP far from every detection event computes exactly
what it computes for the all-zero syndrome, so the graph *rests* at the weights of a
zero-syndrome BP run of ``max_iter`` iterations (made once, at construction; ``kernel_args``
shows them), and a shot rewrites (``edge_w``, the weights riding in ``adj``, ``slack``) and
then restores only the edges of the columns whose posterior differs from that run's.

A shot with no detection event returns at once. The result always reproduces the syndrome.

Where it pays: BP visits every (error, detector) incidence of the DEM each iteration, so a
shot that has any event costs at least one pass over the whole DEM (step 1's first iteration
is precomputed, but its decision check and every later iteration are not). Measured
(docs/accuracy.md, belief-uf): on circuit-level surface codes, d = 5-9, 0.33-0.75x ``uf``'s
failures but 1.00-1.31x ``uf-xcorr``'s, at 43-91x PyMatching's CPU time per round; under
measurement-dominated noise 0.89x ``uf``'s and ``uf-xcorr``'s failures, 1.18x PyMatching's.

In a sliding window the window DEMs are single edges (no ``^``), so BP runs on the matching
graph itself, which sees nothing the graph lacks: measured, ``belief-uf-w10c5`` made more
failures than ``uf-w10c5`` (351 vs 316, d = 5, r = 20, p = 0.3%, docs/accuracy.md); a
whole-shot stream gets the DEM itself (``uses_decompositions``). Streams decode from Python
(no compiled engine).

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder import make_decoder
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
...                            after_clifford_depolarization=0.01)
>>> dec = make_decoder("belief-uf", c.detector_error_model(decompose_errors=True))
>>> s = dec.faults.syndrome_of([0, 5, 9])
>>> bool((dec.faults.syndrome_of(dec.decode_to_faults(s)) == s).all())
True
"""

from __future__ import annotations

import numba
import numpy as np
import stim
from numba.cpython.unsafe.numbers import trailing_zeros

from qecd import _jit
from qecd.decoder import _bp_kernels as _bp
from qecd.decoder import _uf_kernels as _k
from qecd.decoder.fault_table import FaultTable
from qecd.decoder.union_find import (
    _MAX_WEIGHT_RESOLUTION,
    DEFAULT_WEIGHT_RESOLUTION,
    PackedCoreRunner,
    UnionFindDecoder,
)
from qecd.errors import DecoderError

_jit.invalidate_if_changed(__file__, [_k.__file__, _bp.__file__], __name__)

__all__ = ["BeliefUnionFindDecoder", "MAX_WEIGHT", "column_edge_maps"]

_JIT = _jit.KERNEL
#: the largest integer weight a reweighted edge gets (an edge BP all but rules out)
MAX_WEIGHT = _MAX_WEIGHT_RESOLUTION
#: the keyword options :meth:`BeliefUnionFindDecoder.from_dem` accepts
OPTIONS = ("weight_resolution", "max_iter", "bp_method", "ms_scaling_factor")
_BP_METHODS = {"minimum_sum": 0, "min_sum": 0, "ms": 0, "product_sum": 1, "ps": 1}


def column_edge_maps(dem: stim.DetectorErrorModel, columns: FaultTable, edges: FaultTable
                     ) -> tuple[np.ndarray, ...]:
    """How the DEM's BP columns map onto its matching-graph edges.

    Parameters
    ----------
    dem : stim.DetectorErrorModel
        With ``^`` decompositions (a DEM without any decomposes each error into one edge).
    columns : FaultTable
        ``FaultTable.from_dem(dem, graph=False)``.
    edges : FaultTable
        ``FaultTable.from_dem(dem, graph=True)``.

    Returns
    -------
    share_ptr : int64 (n + 1,); share_edge : int64 (nnz,); share_frac : float64 (nnz,)
        CSR by column: the edges the column's DEM errors decompose into, each with the share
        of the column's posterior it carries (1.0 when every DEM error merged into the column
        has the edge; ``p_h / sum p`` summed over those that do, otherwise).
    dec_ptr : int64 (n + 1,); dec_edge : int64 (nnz2,)
        CSR by column: one decomposition (the column's most likely DEM error's), edges that
        occur an odd number of times: their detectors XOR to the column's.

    Examples
    --------
    >>> dem = stim.DetectorErrorModel("error(0.1) D0 D1 ^ D2\\nerror(0.2) D2\\nerror(0.1) D0 D1")
    >>> cols = FaultTable.from_dem(dem, graph=False)
    >>> ptr, edge, frac, dptr, dedge = column_edge_maps(
    ...     dem, cols, FaultTable.from_dem(dem, graph=True))
    >>> [sorted(edge[ptr[c]:ptr[c + 1]].tolist()) for c in range(cols.num_faults)]
    [[0], [0, 1], [1]]
    """
    ecode: dict[tuple[int, ...], int] = {}
    for e in range(edges.num_faults):
        ecode[tuple(edges.detectors_of(e).tolist())] = e
    ccode: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    for c in range(columns.num_faults):
        ccode[(tuple(columns.detectors_of(c).tolist()),
               tuple(np.flatnonzero(columns.obs_mask[c]).tolist()))] = c
    n = columns.num_faults
    shares: list[dict[int, float]] = [{} for _ in range(n)]
    total = np.zeros(n)
    best = np.full(n, -1.0)
    dec: list[list[int]] = [[] for _ in range(n)]
    for inst in dem.flattened():
        if inst.type != "error":
            continue
        p = float(inst.args_copy()[0])
        if p <= 0:
            continue
        comps: list[set[int]] = [set()]
        obs: set[int] = set()
        for t in inst.targets_copy():
            if t.is_separator():
                comps.append(set())
            elif t.is_relative_detector_id():
                comps[-1].symmetric_difference_update({t.val})
            elif t.is_logical_observable_id():
                obs.symmetric_difference_update({t.val})
        dets: set[int] = set()
        for comp in comps:
            dets.symmetric_difference_update(comp)
        c = ccode.get((tuple(sorted(dets)), tuple(sorted(obs))))
        if c is None:  # flips no detector (dropped from the columns)
            continue
        ids = [ecode[tuple(sorted(comp))] for comp in comps if comp]
        odd = sorted({e for e in ids if ids.count(e) % 2})
        total[c] += p
        for e in set(ids):
            shares[c][e] = shares[c].get(e, 0.0) + p
        if p > best[c]:
            best[c] = p
            dec[c] = odd
    share_ptr = np.zeros(n + 1, np.int64)
    share_ptr[1:] = np.cumsum([len(s) for s in shares])
    share_edge = np.array([e for s in shares for e in sorted(s)], np.int64)
    share_frac = np.array([min(1.0, s[e] / total[c]) if s[e] < total[c] * (1 - 1e-9) else 1.0
                           for c, s in enumerate(shares) for e in sorted(s)], np.float64)
    dec_ptr = np.zeros(n + 1, np.int64)
    dec_ptr[1:] = np.cumsum([len(d) for d in dec])
    dec_edge = np.array([e for d in dec for e in d], np.int64)
    return share_ptr, share_edge, share_frac, dec_ptr, dec_edge


@numba.njit(**_jit.INLINE)
def _half_tanh(x):
    """``tanh(x / 2)`` = ``1 - 2 P`` for a posterior LLR ``x``, as ``(1 - e) / (1 + e)`` with
    ``e = exp(-|x|)`` (one ``exp``: 2.6x faster than Numba's ``tanh`` here)."""
    e = np.exp(-abs(x))
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0.0 else -t


@numba.njit(**_JIT)
def _edge_weight(e, tcol, edge_ptr, edge_col, edge_frac, prior_w, scale, wmax):
    """Integer weight of edge ``e`` from ``tcol`` = ``tanh(L_c / 2)`` = ``1 - 2 P_c`` of the
    column posteriors (module docs, step 3): ``round(scale * log((1 - p) / p))`` with
    ``1 - 2 p = prod(1 - 2 f P_c)``, in 1..wmax."""
    a = edge_ptr[e]
    b = edge_ptr[e + 1]
    if a == b:
        return prior_w[e]
    x = 1.0
    for k in range(a, b):
        t = tcol[edge_col[k]]
        f = edge_frac[k]
        x *= t if f >= 1.0 else 1.0 - f * (1.0 - t)
    if x <= 0.0:
        return np.int32(1)
    if x >= 1.0:
        return np.int32(wmax)
    llr = np.log((1.0 + x) / (1.0 - x))  # log((1 - p) / p) with p = (1 - x) / 2
    return np.int32(min(max(np.rint(llr * scale), 1.0), float(wmax)))


@numba.njit(**_JIT)
def _write_weight(e, w, edge_w, slack, adj, adj_pos):
    edge_w[e] = w
    slack[e] = w
    adj[adj_pos[e, 0] + 2] = w
    if adj_pos[e, 1] >= 0:
        adj[adj_pos[e, 1] + 2] = w


@numba.njit(**_JIT)
def rest_weights(maps, edge_w, slack, adj):
    """From the zero-syndrome BP run's posteriors ``maps.post0``: their ``tanh(L / 2)``
    (``maps.t0``) and every edge's weight (``maps.rest_w``: the weights the graph rests at
    between shots), written into the graph."""
    edge_ptr, edge_col, edge_frac, prior_w, adj_pos, rest_w = maps[3:9]
    post0, scale_wmax, t0 = maps[10], maps[11], maps[12]
    scale, wmax = scale_wmax[0], np.int32(scale_wmax[1])
    for c in range(post0.shape[0]):
        t0[c] = _half_tanh(post0[c])
    for e in range(edge_w.shape[0]):
        w = _edge_weight(e, t0, edge_ptr, edge_col, edge_frac, prior_w, scale, wmax)
        rest_w[e] = w
        _write_weight(e, w, edge_w, slack, adj, adj_pos)


@numba.njit(**_JIT)
def _iteration_one(syndrome, graph, post, seen, changed, flips, par):
    """BP's first iteration touching only the columns of flagged detectors: ``post`` rests
    at the zero-syndrome posteriors ``post1`` and a flagged detector only turns its messages
    round (:func:`~qecd.decoder._bp_kernels.first_iteration`), in the order ``bp_decode``
    applies them (so the posteriors are bit for bit its own). Lists the columns touched in
    ``changed`` (``seen`` marks them) and the hard decision among them in ``flips``.
    Returns ``(touched, decision size or -1 when it does not reproduce the syndrome)``."""
    col_ptr, col_idx, row_ptr, row_idx, r1 = graph[0], graph[1], graph[2], graph[3], graph[8]
    nc = 0
    nflag = 0
    for c in range(syndrome.shape[0]):
        if syndrome[c]:
            nflag += 1
            for k in range(row_ptr[c], row_ptr[c + 1]):
                v = row_idx[k]
                if seen[v] == 0:
                    seen[v] = 1
                    changed[nc] = v
                    nc += 1
                post[v] -= 2.0 * r1[k]
    nf = 0
    for i in range(nc):  # untouched columns keep post1 > 0: they are not in the decision
        v = changed[i]
        if post[v] <= 0.0:
            flips[nf] = v
            nf += 1
    for i in range(nf):
        v = flips[i]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            par[col_idx[e]] ^= 1
    ok = True
    ones = 0
    for i in range(nf):
        v = flips[i]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            c = col_idx[e]
            if par[c] == 1:
                if syndrome[c]:
                    ones += 1
                    par[c] = 2  # count each detector once
                else:
                    ok = False
    for i in range(nf):
        v = flips[i]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            par[col_idx[e]] = 0
    return nc, nf if ok and ones == nflag else -1


@numba.njit(**_JIT)
def buf_decode_into(syndrome, nflag, uf_args, bp_graph, bp_params, bp_ws, maps, scratch,
                    out_faults):
    """One shot (module docs); returns the number of edge ids written to ``out_faults``,
    or ``UF_NO_BOUNDARY`` (-1). ``syndrome`` (uint8 0/1) has ``nflag`` ones.

    ``maps`` is ``(share_ptr, share_edge, dec_ptr, edge_ptr, edge_col, edge_frac, prior_w,
    adj_pos, rest_w, dec_edge, post0, (scale, wmax), t0)`` (built by
    :class:`BeliefUnionFindDecoder`); ``scratch`` is ``(dirty int64 (E,), mark uint8 (E,),
    info int64 (4,), tcol float64 (n,), changed int64 (n,), post float64 (n,), seen uint8
    (n,))`` with ``mark`` and ``seen`` all-zero, ``tcol`` equal to ``t0`` and ``post`` to BP's
    zero-syndrome first-iteration posteriors between shots (``post`` and ``seen`` serve the
    one-iteration path, :func:`_iteration_one`, which touches only the flagged detectors'
    columns instead of running ``bp_decode`` over the whole DEM). ``info`` gets ``[BP
    iteration that settled the shot or 0, 1 if union-find decoded it on reweighted edges,
    edges reweighted]``. Only the edges of columns whose posterior differs from the
    zero-syndrome run's (``post0``) are reweighted, then put back to ``rest_w``: the rest are
    at those weights already."""
    adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd = uf_args[:6]
    parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack = uf_args[6:]
    share_ptr, share_edge, dec_ptr, edge_ptr, edge_col, edge_frac, prior_w, adj_pos, \
        rest_w, dec_edge, post0, scale_wmax, t0 = maps
    dirty, mark, info, tcol, changed, post1s, seen = scratch
    info[0] = 0
    info[1] = 0
    info[2] = 0
    if nflag == 0:
        return 0
    one = bp_params[0] == 1 and bp_params[2] == 0  # one flooding iteration: only what moved
    nc = 0
    if one:
        nc, cnt = _iteration_one(syndrome, bp_graph, post1s, seen, changed, bp_ws[32],
                                 bp_ws[3])
        it = 1 if cnt >= 0 else 0
        post = post1s
    else:
        it, cnt = _bp.bp_decode(syndrome, nflag, bp_graph, bp_params, bp_ws)
        post = bp_ws[2]
    info[0] = it
    if it > 0:
        flips = bp_ws[32]
        n = 0
        for i in range(cnt):
            c = flips[i]
            for k in range(dec_ptr[c], dec_ptr[c + 1]):
                e = dec_edge[k]
                if mark[e] == 0:
                    out_faults[n] = e
                    n += 1
                mark[e] ^= 1
        m = 0
        for i in range(n):
            e = out_faults[i]
            if mark[e] == 1:
                out_faults[m] = e
                m += 1
            mark[e] = 0
        _rest_columns(one, nc, changed, seen, post1s, bp_graph[9])
        return m
    info[1] = 1
    scale = scale_wmax[0]
    wmax = np.int32(scale_wmax[1])
    if not one:
        for c in range(post.shape[0]):
            if post[c] != post0[c]:
                changed[nc] = c
                nc += 1
    nd = 0
    for i in range(nc):
        c = changed[i]
        tcol[c] = _half_tanh(post[c])  # 1 - 2 P(column c fired)
        for k in range(share_ptr[c], share_ptr[c + 1]):
            e = share_edge[k]
            if mark[e] == 0:
                mark[e] = 1
                dirty[nd] = e
                nd += 1
    info[2] = nd
    for i in range(nd):
        e = dirty[i]
        _write_weight(e, _edge_weight(e, tcol, edge_ptr, edge_col, edge_frac, prior_w, scale,
                                      wmax), edge_w, slack, adj, adj_pos)
    n = _k.uf_decode_into(syndrome, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent,
                          flags, nws, slack, touched, heap_key, heap_ver, satq, stack,
                          out_faults)
    for i in range(nd):
        e = dirty[i]
        mark[e] = 0
        _write_weight(e, rest_w[e], edge_w, slack, adj, adj_pos)
    for i in range(nc):
        tcol[changed[i]] = t0[changed[i]]
    _rest_columns(one, nc, changed, seen, post1s, bp_graph[9])
    return n


@numba.njit(**_JIT)
def _rest_columns(one, nc, changed, seen, post, post1):
    """After a one-iteration shot, the touched columns' posteriors back to ``post1``."""
    if one:
        for i in range(nc):
            c = changed[i]
            post[c] = post1[c]
            seen[c] = 0


@numba.njit(**_JIT)
def buf_decode_batch_packed(packed, num_detectors, syndrome, uf_args, bp_graph, bp_params,
                            bp_ws, maps, scratch, out_faults, obs_packed, out):
    """Bit-packed shots in, bit-packed observable flips XOR-ed into ``out``; returns the
    first shot with no solution, or -1. ``syndrome`` (uint8 (D,)) is all-zero on entry and
    on exit. The DEM's weights are back in place on return."""
    nob = out.shape[1]
    nbytes = packed.shape[1]
    bad = -1
    for s in range(packed.shape[0]):
        ne = 0
        for j in range(nbytes):
            b = np.int64(packed[s, j])
            while b != 0:
                v = 8 * j + trailing_zeros(b)
                b &= b - 1
                if v < num_detectors:
                    syndrome[v] = 1
                    ne += 1
        if ne == 0:
            continue
        n = buf_decode_into(syndrome, ne, uf_args, bp_graph, bp_params, bp_ws, maps, scratch,
                            out_faults)
        for j in range(nbytes):
            b = np.int64(packed[s, j])
            while b != 0:
                v = 8 * j + trailing_zeros(b)
                b &= b - 1
                if v < num_detectors:
                    syndrome[v] = 0
        if n < 0:
            bad = s
            break
        for i in range(n):
            f = out_faults[i]
            for ob in range(nob):
                out[s, ob] ^= obs_packed[f, ob]
    return bad


class BeliefUnionFindDecoder(PackedCoreRunner, UnionFindDecoder):
    """Belief-find: BP on the DEM, then union-find on BP-reweighted edges (module docs).

    Parameters
    ----------
    dem : stim.DetectorErrorModel
        Graph-like after decomposition (``decompose_errors=True``); the ``^`` decompositions
        tell which edges a DEM error's posterior goes to.
    weight_resolution : int, optional
        Integer weight of the DEM's least likely edge, as ``uf`` (default 32); reweighted
        edges use the same scale, capped at :data:`MAX_WEIGHT`.
    max_iter : int, optional
        BP iterations (default 3). Min-sum is not monotone in it: 2 made fewer failures than
        3 on uniform circuit-level surface-code noise, 3-5 fewer than 2 under
        measurement-dominated noise; 1 is no better than ``uf`` (docs/accuracy.md).
    bp_method : str, optional
        ``"minimum_sum"`` (default) or ``"product_sum"`` (aliases ``"ms"``, ``"ps"``).
    ms_scaling_factor : float, optional
        Min-sum scaling in (0, 1] (default 0.625).

    Examples
    --------
    >>> dem = stim.DetectorErrorModel('''
    ...     error(0.1) D0 L0
    ...     error(0.1) D0 D1
    ...     error(0.1) D1 D2
    ...     error(0.1) D2
    ... ''')
    >>> dec = BeliefUnionFindDecoder.from_dem(dem, max_iter=3)
    >>> dec.decode_batch(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]], np.uint8)).tolist()
    [[1], [0], [0]]
    """

    name = "belief-uf"
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
                 weight_resolution: int = DEFAULT_WEIGHT_RESOLUTION, max_iter: int = 3,
                 bp_method: str = "minimum_sum", ms_scaling_factor: float = 0.625) -> None:
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) \
                or not 1 <= max_iter <= 1000:
            raise DecoderError(f"belief-uf: option 'max_iter' expected an int in 1..1000, got "
                               f"{max_iter!r}")
        if bp_method not in _BP_METHODS:
            raise DecoderError(f"belief-uf: option 'bp_method' expected one of "
                               f"{sorted(_BP_METHODS)}, got {bp_method!r}")
        f = ms_scaling_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 < float(f) <= 1.0:
            raise DecoderError(f"belief-uf: option 'ms_scaling_factor' expected a number in "
                               f"(0, 1], got {f!r}")
        self._bp = None
        super().__init__(dem, weight_resolution=weight_resolution, prematch=False)
        self.max_iter, self.bp_method, self.ms_scaling_factor = int(max_iter), bp_method, \
            float(f)
        cols = FaultTable.from_dem(dem, graph=False)
        self.columns = cols
        n = cols.num_faults
        method = _BP_METHODS[bp_method]
        graph = _bp.build_graph(cols.det_indptr, cols.det_indices, cols.num_detectors,
                                cols.probabilities, np.zeros((n, 1), np.uint8),
                                bp_method=method, ms_scaling=float(f))
        ws = list(_bp.make_workspace(graph, max_cluster_words=1))  # BP only: no clusters
        params = (int(max_iter), method, 0, float(f), 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0)
        share_ptr, share_edge, share_frac, dec_ptr, dec_edge = column_edge_maps(
            dem, cols, self.faults)
        ne = self.faults.num_faults
        # the same incidences by edge: the columns (and shares) each edge's weight reads
        col_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(share_ptr))
        order = np.argsort(share_edge, kind="stable")
        edge_ptr = np.zeros(ne + 1, np.int64)
        edge_ptr[1:] = np.cumsum(np.bincount(share_edge, minlength=ne))
        adj = self._args[1]
        adj_pos = np.full((max(ne, 1), 2), -1, np.int64)  # where each edge's weight rides
        for k in range(len(adj) // 3):
            e = int(adj[3 * k + 1])
            adj_pos[e, 0 if adj_pos[e, 0] < 0 else 1] = 3 * k
        p = np.clip(self.faults.probabilities, 1e-300, 0.5 - 1e-12)
        llr = np.log1p(-p) - np.log(p)
        scale = weight_resolution / float(llr.max()) if llr.size else 1.0
        self._maps = (share_ptr, share_edge, dec_ptr, edge_ptr, col_of[order],
                      np.ascontiguousarray(share_frac[order]), self.edge_weights.copy(),
                      adj_pos, np.zeros(max(ne, 1), np.int32), dec_edge,
                      np.zeros(max(n, 1), np.float64),
                      np.array([scale, MAX_WEIGHT], np.float64), np.zeros(max(n, 1), np.float64))
        self._scratch = (np.zeros(max(ne, 1), np.int64), np.zeros(max(ne, 1), np.uint8),
                         np.zeros(4, np.int64), np.zeros(max(n, 1), np.float64),
                         np.zeros(max(n, 1), np.int64), np.zeros(max(n, 1), np.float64),
                         np.zeros(max(n, 1), np.uint8))
        self._out_faults = np.zeros(max(ne, self.num_detectors + 1, 1), np.int64)
        self._syndrome = np.zeros(self.num_detectors, np.uint8)  # all-zero between shots
        ws = tuple(ws)
        if n:  # BP's posteriors on the all-zero syndrome after max_iter iterations (an
            # nflag of -1 never converges), and the weights they give: the graph's rest state
            _bp.bp_decode(self._syndrome, -1, graph, params, ws)
            self._maps[10][:] = ws[2]
        rest_weights(self._maps, self._args[2], self._args[9], self._args[1])
        self._scratch[3][:] = self._maps[12]
        self._scratch[5][:n] = graph[9]  # post1
        self._bp = (graph, params, ws)
        self._warm_up()

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, **options: object
                 ) -> BeliefUnionFindDecoder:
        """Build and warm a decoder; ``options``: ``weight_resolution``, ``max_iter``,
        ``bp_method``, ``ms_scaling_factor``.

        >>> BeliefUnionFindDecoder.from_dem(stim.DetectorErrorModel("error(0.1) D0"), prematch=1)
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        qecd.errors.DecoderError: belief-uf: unknown options ['prematch']; allowed: bp_method, ...
        """
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise DecoderError(f"belief-uf: unknown options {unknown}; allowed: "
                               f"{', '.join(sorted(OPTIONS))}")
        return cls(dem, **options)  # type: ignore[arg-type]

    def _warm_up(self) -> None:
        if self._bp is None:
            return
        super()._warm_up()
        if self.faults.num_faults > 1:  # a shot BP may not settle: the reweighting path too
            s = self.faults.syndrome_of(np.arange(0, self.faults.num_faults, 7))
            self._run_batch_packed(np.packbits(s.reshape(1, -1), axis=1, bitorder="little"))

    def _run_packed_core(self, packed: np.ndarray) -> np.ndarray:
        nob = (self.num_observables + 7) // 8
        out = np.zeros((packed.shape[0], max(1, nob)), np.uint8)
        graph, params, ws = self._bp
        bad = buf_decode_batch_packed(packed, self.num_detectors, self._syndrome, self._args,
                                      graph, params, ws, self._maps, self._scratch,
                                      self._out_faults, self._obs_packed_1, out)
        if bad >= 0:
            raise self._no_solution(bad)
        return out[:, :nob]



    @property
    def last_shot_info(self) -> tuple[int, bool]:
        """``(BP iteration that settled the last shot or 0, whether union-find decoded it on
        reweighted edges)``."""
        info = self._scratch[2]
        return int(info[0]), bool(info[1])

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault (edge) ids (int64, sorted) whose detectors XOR to ``syndrome``."""
        s = np.ascontiguousarray(self._check_syndrome(syndrome), dtype=np.uint8).copy()
        nflag = int(s.sum())
        graph, params, ws = self._bp
        n = buf_decode_into(s, nflag, self._args, graph, params, ws, self._maps, self._scratch,
                            self._out_faults)
        if n < 0:
            raise self._no_solution(0)
        return np.sort(self._out_faults[:n])
