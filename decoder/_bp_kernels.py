"""Numba kernels of the ``bp-cluster`` backend: belief propagation, then BP-guided clusters.

Everything here is a plain function over flat arrays; :class:`~qecd.decoder.bp_cluster.
BpClusterDecoder` owns the arrays, checks input and warms the kernels up. Every kernel is
``nopython``, ``nogil`` and cached; none allocates, raises or touches a Python object inside the
per-shot loop (failures are negative return codes). Per shot, BP rewrites its message arrays
(every message takes part) while the cluster stage resets only the entries it touched.

Data passed to the kernels (the decoder's :meth:`kernel_args` returns ``(graph, params, ws)``):

``graph`` (read-only, built once from the DEM's check matrix ``H``, detectors x faults)
    0 ``col_ptr``  int32 (n+1)  CSR by columns: the detectors of fault ``v`` are
      ``col_idx[col_ptr[v]:col_ptr[v+1]]``; position ``e`` in ``col_idx`` is edge ``e``
    1 ``col_idx``  int32 (E)
    2 ``row_ptr``  int32 (m+1)  CSR by rows: the faults of detector ``c`` are
      ``row_idx[row_ptr[c]:row_ptr[c+1]]``
    3 ``row_idx``  int32 (E)
    4 ``row_edge`` int32 (E)    edge id (column-CSR position) of each row-CSR entry
    5 ``prior``    float64 (n)  prior LLR ``log((1-p)/p)`` of each fault
    6 ``weight``   float64 (n)  cost of a fault in cluster solutions (the prior LLR: a
      solution of least total weight is the most likely one under independent faults)
    7 ``obs``      uint8 (n, ceil(O/8))  observables of each fault, packed little-endian
    8 ``r1``       float64 (E)  BP's first-iteration detector messages for a zero syndrome
      (row order; depends on ``bp_method`` and ``ms_scaling``: see :func:`first_iteration`)
    9 ``post1``    float64 (n)  the posteriors those messages give
    10 ``gammas``  float64 (L, n) memory strength of each fault in each relay leg (L >= 1 rows;
      only the first ``relay_legs`` are read)

``params`` ``(max_iter, bp_method, schedule, ms_scaling, lsd_order, lsd_min_free,
    relay_legs, relay_iter, relay_stop, relay_min_free, relay_pre_iter, relay_pre_gamma,
    relay_scaling, relay_scaling_from)`` as ``(int64, int64, int64, float64, int64, int64,
    int64, int64, int64, int64, int64, float64, float64, int64)``; ``bp_method`` 0 =
    minimum-sum, 1 = product-sum; ``schedule`` 0 = parallel (flooding), 1 = serial (fault by
    fault); ``relay_scaling`` 0 = the ramp ``1 - 2^-t``, used from disordered leg
    ``relay_scaling_from`` on (the disordered legs before it use ``ms_scaling``).

``ws`` (workspace, written by every shot; one per thread) — see :func:`make_workspace`.

Algorithm (one shot)
--------------------
1. Min-sum (or product-sum) BP on the Tanner graph with the fault priors, stopping as soon as
   the hard decision reproduces the syndrome: that decision is the answer. The flooding
   schedule runs one fused sweep over the detectors per iteration, iteration 1 comes
   precomputed (``r1``, ``post1``) and the convergence check only visits the flipped faults.
2. Otherwise clusters (Hillmann et al., BP+LSD, arXiv 2406.18655; Delfosse, Londe & Beverland,
   arXiv 2103.08049): one cluster per flagged detector. A min-heap keyed by the BP posterior LLR
   holds the faults touching an *invalid* cluster; the most likely one is popped, the clusters
   it touches merge, and its column joins the merged cluster's incremental GF(2) elimination
   (reduced columns stored as dense bit vectors over detector ids, with word spans). A cluster
   is *valid* once its local syndrome is in the span of its columns; it then stops growing
   (until an invalid cluster merges into it), or, with ``lsd_min_free = F > 0``, once it also
   holds ``F`` free (dependent) columns. Growth is global best-first: the column added next,
   anywhere, is the most likely one touching a growing cluster.
3. Each final cluster is solved on its own: columns sorted by posterior (most likely first),
   reduced row echelon form, pivot variables from the syndrome and free variables 0 (as OSD-0);
   with ``lsd_order = L > 0`` also the OSD combination sweep inside the cluster (flip each free
   column alone, and each pair among the first ``L`` free columns, as ldpc's OSD-CS) keeping
   the least total ``weight``.
   The union of the cluster solutions reproduces the syndrome exactly.
4. With ``relay_legs = L > 0`` (the relay stage, after Relay-BP, Müller et al. arXiv
   2506.01779): optionally a first leg of ``relay_pre_iter`` iterations with one uniform
   memory strength ``relay_pre_gamma`` (Relay-BP's pre-iterations), then up to ``L``
   further min-sum legs continue from BP's messages, each with
   per-fault memory strengths drawn once (seeded) from an interval that includes negative
   values (``new = (1 - g) prior + g old + messages``), for up to ``relay_iter``
   iterations each, with min-sum scaling ``relay_scaling`` (0: the ramp ``1 - 2^-t`` over a
   leg's iterations, as Relay-BP) from leg ``relay_scaling_from`` on and ``ms_scaling``
   before; every leg that converges is a candidate, and the solution of least total
   ``weight`` among them and the cluster stage's is the answer. It stops after
   ``relay_stop`` converged legs; when fewer converged, the cluster stage runs once more on
   the last leg's posteriors, growing each cluster until it holds ``relay_min_free`` free
   columns (so the combination sweep has candidates, as OSD-CS has), and its solution is one
   more candidate. The first cluster
   solution is always there, so the answer always reproduces the syndrome, and a relay
   candidate replaces it only when it is more likely.

Return codes of :func:`decode_shot`: ``>= 0`` the number of faults written to ``out_faults``;
``STATUS_NOT_IN_SPAN`` (-1) when no set of faults explains the syndrome (a cluster swallowed its
whole connected component and stayed invalid); ``STATUS_TOO_LARGE`` (-2) when a cluster outgrew
the preallocated elimination buffers (only possible when :func:`make_workspace` had to cap them
at ``max_cluster_words``, i.e. for DEMs with ``m * ceil(n / 64)`` above 4M words).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from qecd import _jit

_jit.invalidate_if_changed(__file__, [], __name__)

#: compile options of every kernel (one place, as numba-stats does)
_JIT = _jit.ALLOCATING

#: magnitude standing in for "certain" (a detector with a single fault fixes that fault)
_BIG_LLR = 1.0e4
#: |tanh| cap of the product-sum rule (keeps arctanh finite)
_TANH_CAP = 0.999999999999

STATUS_NOT_IN_SPAN = -1
STATUS_TOO_LARGE = -2

# column indices of the per-cluster int32 table ``ws.cl`` (shape (m, _CL_COLS))
_PARENT = 0
_NBITS = 1
_NRED = 2  # number of set bits of the cluster's reduced syndrome (0 = valid)
_CK_HEAD = 3
_CK_TAIL = 4
_BIT_HEAD = 5
_BIT_TAIL = 6
_B_HEAD = 7  # basis (reduced columns) linked list
_B_TAIL = 8
_RANK = 9  # number of basis vectors (rank of the cluster's columns)
_CL_COLS = 10

# workspace tuple: the kernels index ``ws`` by position, so this order is part of their ABI
WS_FIELDS = (
    "q", "r", "post", "par", "synd", "cl", "ck_cl", "ck_next", "bit_cl", "bit_next",
    "heap_key", "heap_bit", "in_heap", "arena", "bmeta", "b_next", "sred", "tmp",
    "loc_row", "cols", "col_key", "mat", "rhs", "pivcol", "is_piv", "xsol", "best", "free", "roots",
    "scratch", "info", "post2", "flips", "alt",
)


def make_workspace(graph: tuple, max_cluster_words: int = 1 << 22) -> tuple:
    """Allocate the per-thread workspace for ``graph`` (a tuple as described above).

    ``max_cluster_words`` caps the two elimination buffers (uint64 words each): the basis
    arena (``min(m, n)`` reduced columns of ``ceil(m/64)`` words) and the dense cluster matrix
    (``m`` rows of ``ceil(n/64)`` words). A cluster needing more returns ``STATUS_TOO_LARGE``.

    >>> g = build_graph(np.array([0, 1, 3], np.int32), np.array([0, 0, 1], np.int32), 2,
    ...                 np.array([0.1, 0.1]), np.zeros((2, 1), np.uint8))
    >>> ws = make_workspace(g)
    >>> len(ws) == len(WS_FIELDS)
    True
    """
    col_ptr, col_idx, row_ptr = graph[0], graph[1], graph[2]
    n = col_ptr.shape[0] - 1
    m = row_ptr.shape[0] - 1
    e = col_idx.shape[0]
    wm = max(1, (m + 63) // 64)
    wn = max(1, (n + 63) // 64)
    arena_words = min(max(1, min(m, n)) * wm, max_cluster_words)
    mat_words = min(max(1, m) * wn, max_cluster_words)
    max_col = int(np.max(np.diff(col_ptr))) if n else 1
    max_row = int(np.max(np.diff(row_ptr))) if m else 1
    mm, nn = max(m, 1), max(n, 1)
    ws = {
        "q": np.zeros(max(e, 1), np.float64),
        "r": np.zeros(max(e, 1), np.float64),
        "post": np.zeros(nn, np.float64),
        "par": np.zeros(mm, np.uint8),
        "synd": np.zeros(mm, np.uint8),
        "cl": np.zeros((mm, _CL_COLS), np.int32),
        "ck_cl": np.full(mm, -1, np.int32),
        "ck_next": np.full(mm, -1, np.int32),
        "bit_cl": np.full(nn, -1, np.int32),
        "bit_next": np.full(nn, -1, np.int32),
        "heap_key": np.zeros(nn, np.float64),
        "heap_bit": np.zeros(nn, np.int32),
        "in_heap": np.zeros(nn, np.uint8),
        "arena": np.zeros(arena_words, np.uint64),
        "bmeta": np.zeros((max(1, min(m, n)), 4), np.int32),
        "b_next": np.full(max(1, min(m, n)), -1, np.int32),
        "sred": np.zeros(wm, np.uint64),
        "tmp": np.zeros(wm, np.uint64),
        "loc_row": np.zeros(mm, np.int32),
        "cols": np.zeros(nn, np.int32),
        "col_key": np.zeros(nn, np.float64),
        "mat": np.zeros(mat_words, np.uint64),
        "rhs": np.zeros(mm, np.uint8),
        "pivcol": np.zeros(mm, np.int32),
        "is_piv": np.zeros(nn, np.uint8),
        "xsol": np.zeros(nn, np.uint8),
        "best": np.zeros(nn, np.uint8),
        "free": np.zeros(nn, np.int32),
        "roots": np.zeros(max(max_col, 1), np.int32),
        "scratch": np.zeros(max(max_row, max_col, 1), np.float64),
        "info": np.zeros(4, np.int64),
        "post2": np.zeros(nn, np.float64),
        "flips": np.zeros(nn, np.int32),
        "alt": np.zeros(nn, np.int64),
    }
    return tuple(ws[name] for name in WS_FIELDS)


def build_graph(col_ptr: np.ndarray, col_idx: np.ndarray, num_detectors: int,
                probabilities: np.ndarray, obs_packed: np.ndarray, bp_method: int = 0,
                ms_scaling: float = 0.625, relay_legs: int = 0,
                gamma_interval: tuple[float, float] = (-0.24, 0.66), seed: int = 0) -> tuple:
    """The ``graph`` tuple for a check matrix given by columns (CSR), with fault priors (and
    BP's precomputed first iteration for ``bp_method`` / ``ms_scaling``).

    >>> g = build_graph(np.array([0, 1, 3], np.int32), np.array([0, 0, 1], np.int32), 2,
    ...                 np.array([0.1, 0.1]), np.zeros((2, 1), np.uint8))
    >>> g[2].tolist(), g[3].tolist(), g[4].tolist()
    ([0, 2, 3], [0, 1, 1], [0, 1, 2])
    """
    col_ptr = np.ascontiguousarray(col_ptr, dtype=np.int32)
    col_idx = np.ascontiguousarray(col_idx, dtype=np.int32)
    n = col_ptr.shape[0] - 1
    m = int(num_detectors)
    counts = np.bincount(col_idx, minlength=m).astype(np.int64)
    row_ptr = np.zeros(m + 1, np.int32)
    row_ptr[1:] = np.cumsum(counts)
    edge_col = np.repeat(np.arange(n, dtype=np.int32), np.diff(col_ptr))
    order = np.argsort(col_idx, kind="stable")  # rows in order, columns ascending in a row
    row_idx = np.ascontiguousarray(edge_col[order], dtype=np.int32)
    row_edge = np.ascontiguousarray(order, dtype=np.int32)
    p = np.asarray(probabilities, dtype=np.float64)
    prior = np.log((1.0 - p) / p)
    weight = prior.copy()
    graph = (col_ptr, col_idx, row_ptr, row_idx, row_edge, prior, weight,
             np.ascontiguousarray(obs_packed, dtype=np.uint8))
    r1, post1 = first_iteration(graph, bp_method, ms_scaling)
    rng = np.random.default_rng(seed)
    gammas = rng.uniform(gamma_interval[0], gamma_interval[1], size=(max(1, relay_legs), n))
    return graph + (r1, post1, np.ascontiguousarray(gammas, dtype=np.float64))


# ---------------------------------------------------------------------------------------------
# belief propagation
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _check_to_bit_minsum(c, synd, row_ptr, row_edge, q, r, alpha):
    """Scaled min-sum messages of detector ``c`` to all its faults (two-minimum trick)."""
    a = row_ptr[c]
    b = row_ptr[c + 1]
    sgn = synd[c]
    min1 = _BIG_LLR
    min2 = _BIG_LLR
    amin = -1
    for k in range(a, b):
        x = q[row_edge[k]]
        if x < 0.0:
            sgn ^= 1
            x = -x
        if x < min1:
            min2 = min1
            min1 = x
            amin = k
        elif x < min2:
            min2 = x
    for k in range(a, b):
        e = row_edge[k]
        mag = min2 if k == amin else min1
        s = sgn ^ (1 if q[e] < 0.0 else 0)
        r[e] = -alpha * mag if s else alpha * mag


@njit(**_JIT)
def _check_to_bit_prodsum(c, synd, row_ptr, row_edge, q, r, scratch):
    """Product-sum (tanh rule) messages of detector ``c``, leave-one-out by prefix products."""
    a = row_ptr[c]
    b = row_ptr[c + 1]
    # scratch[i] holds the prefix product of tanh(q/2) over entries a..a+i-1
    acc = 1.0
    for k in range(a, b):
        scratch[k - a] = acc
        acc *= np.tanh(0.5 * q[row_edge[k]])
    suffix = 1.0
    sign = -1.0 if synd[c] else 1.0
    for k in range(b - 1, a - 1, -1):
        e = row_edge[k]
        t = scratch[k - a] * suffix
        if t > _TANH_CAP:
            t = _TANH_CAP
        elif t < -_TANH_CAP:
            t = -_TANH_CAP
        r[e] = sign * 2.0 * np.arctanh(t)
        suffix *= np.tanh(0.5 * q[e])


@njit(**_JIT)
def _decision_ok(synd, nflag, post, col_ptr, col_idx, flips, par):
    """Collect the hard decision (``post <= 0``) into ``flips``; return its size if its
    syndrome is ``synd`` (which has ``nflag`` ones), else -1.

    Costs one pass over the faults plus the edges of the flipped ones, not a pass over all
    edges. ``par`` (uint8, (m,)) is scratch that is all-zero on entry and on exit.
    """
    n = post.shape[0]
    nf = 0
    for v in range(n):
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
                if synd[c]:
                    ones += 1
                    par[c] = 2  # count each detector once
                else:
                    ok = False
    for i in range(nf):
        v = flips[i]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            par[col_idx[e]] = 0
    if ok and ones == nflag:
        return nf
    return -1


@njit(inline="always", **_JIT)
def _minsum_row(s, a, b, row_idx, old, new, r, scratch, alpha):
    """One detector's min-sum update in row order (entries ``a .. b-1``; syndrome bit ``s``):
    the new detector-to-fault messages ``r[k]``, each added to its fault's ``new`` posterior.
    Fault-to-detector messages are ``old[fault] - r[k]``; ``scratch`` holds them meanwhile."""
    # branch-free two-minimum search (most rows have a handful of entries)
    sgn = s
    min1 = _BIG_LLR
    min2 = _BIG_LLR
    amin = a
    for k in range(a, b):
        x = old[row_idx[k]] - r[k]
        scratch[k - a] = x
        sgn ^= x < 0.0
        ax = abs(x)
        min2 = min(min2, max(min1, ax))
        amin = k if ax < min1 else amin
        min1 = min(min1, ax)
    scale = -alpha if sgn else alpha  # sign of the whole row, folded in
    am1 = scale * min1
    am2 = scale * min2
    for k in range(a, b):
        mag = am2 if k == amin else am1
        rk = -mag if scratch[k - a] < 0.0 else mag  # remove this entry's sign
        r[k] = rk
        new[row_idx[k]] += rk


@njit(**_JIT)
def _bp_parallel(synd, nflag, col_ptr, col_idx, row_ptr, row_idx, prior, r1, post1, max_iter,
                 method, alpha, r, post, post2, scratch, flips, par):
    """Flooding BP; returns ``(iteration that converged or 0, 1 if the latest posterior is in
    post2, size of the converged decision in flips)``.

    Messages live in row order (``r[k]``, detector to fault); a fault-to-detector message is
    recomputed on the fly as ``posterior - r[k]``, so an iteration is one sequential sweep over
    the rows (reading the previous posteriors ``old``, writing new detector messages and
    accumulating the new posteriors ``new``) plus an early-exit syndrome check.

    Iteration 1 is precomputed: every fault-to-detector message is its prior, so detector
    ``c`` sends ``(-1)^s_c r1[k]`` where ``r1`` only depends on the priors; the posteriors are
    ``post1`` (the zero-syndrome ones) corrected on the faults of flagged detectors only.
    """
    n = prior.shape[0]
    m = row_ptr.shape[0] - 1
    for k in range(r.shape[0]):
        r[k] = r1[k]
    for v in range(n):
        post[v] = post1[v]
    for c in range(m):
        if synd[c]:
            for k in range(row_ptr[c], row_ptr[c + 1]):
                r[k] = -r1[k]
                post[row_idx[k]] -= 2.0 * r1[k]
    nf = _decision_ok(synd, nflag, post, col_ptr, col_idx, flips, par)
    if nf >= 0:
        return 1, 0, nf
    cur = 0  # 0: `post` holds the latest posterior, 1: `post2` does
    for it in range(2, max_iter + 1):
        old = post if cur == 0 else post2
        new = post2 if cur == 0 else post
        for v in range(n):
            new[v] = prior[v]
        for c in range(m):
            a = row_ptr[c]
            b = row_ptr[c + 1]
            if method == 0:
                _minsum_row(synd[c], a, b, row_idx, old, new, r, scratch, alpha)
            else:
                acc = 1.0
                for k in range(a, b):
                    t = np.tanh(0.5 * (old[row_idx[k]] - r[k]))
                    scratch[k - a] = acc  # prefix product
                    acc *= t
                    r[k] = t  # stash tanh(q/2) until the suffix pass
                suffix = 1.0
                sign = -1.0 if synd[c] else 1.0
                for k in range(b - 1, a - 1, -1):
                    t = r[k]
                    pr = scratch[k - a] * suffix
                    if pr > _TANH_CAP:
                        pr = _TANH_CAP
                    elif pr < -_TANH_CAP:
                        pr = -_TANH_CAP
                    rk = sign * 2.0 * np.arctanh(pr)
                    suffix *= t
                    r[k] = rk
                    new[row_idx[k]] += rk
        cur = 1 - cur
        nf = _decision_ok(synd, nflag, new, col_ptr, col_idx, flips, par)
        if nf >= 0:
            return it, cur, nf
    return 0, cur, 0


def first_iteration(graph: tuple, bp_method: int, ms_scaling: float) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """``(r1, post1)``: BP's first-iteration detector messages for a zero syndrome (row
    order) and the posteriors they give; a flagged detector only flips the sign of its ``r1``.

    >>> g = build_graph(np.array([0, 1, 3], np.int32), np.array([0, 0, 1], np.int32), 2,
    ...                 np.array([0.1, 0.1]), np.zeros((2, 1), np.uint8))
    >>> r1, post1 = first_iteration(g, 0, 1.0)
    >>> np.round(r1, 3).tolist(), np.round(post1 - g[5], 3).tolist()
    ([2.197, 2.197, 10000.0], [2.197, 10002.197])
    """
    row_ptr, row_idx, prior = graph[2], graph[3], graph[5]
    m = row_ptr.shape[0] - 1
    r1 = np.zeros(row_idx.shape[0], np.float64)
    for c in range(m):
        a, b = int(row_ptr[c]), int(row_ptr[c + 1])
        q = prior[row_idx[a:b]]
        if b == a:
            continue  # a detector no fault flips (e.g. a window's slice whose faults all
            # began earlier): it sends nothing; a flag on it is not in the column space
        if b - a == 1:
            r1[a] = ms_scaling * _BIG_LLR if bp_method == 0 else 2.0 * np.arctanh(_TANH_CAP)
        elif bp_method == 0:
            order = np.argsort(q, kind="stable")
            r1[a:b] = ms_scaling * q[order[0]]
            r1[a + order[0]] = ms_scaling * q[order[1]]
        else:
            t = np.tanh(0.5 * q)
            prefix = np.concatenate(([1.0], np.cumprod(t)[:-1]))
            suffix = np.concatenate((np.cumprod(t[::-1])[::-1][1:], [1.0]))
            r1[a:b] = 2.0 * np.arctanh(np.minimum(prefix * suffix, _TANH_CAP))
    post1 = prior.copy()
    np.add.at(post1, row_idx, r1)
    return r1, post1


@njit(**_JIT)
def _bp_serial(synd, nflag, col_ptr, col_idx, row_ptr, row_edge, prior, max_iter, method,
               alpha, q, r, post, scratch, flips, par):
    """Serial BP as ldpc's: fault by fault, each pulls fresh messages from its detectors."""
    n = prior.shape[0]
    for v in range(n):
        post[v] = prior[v]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            q[e] = prior[v]
    for it in range(1, max_iter + 1):
        for v in range(n):
            a = col_ptr[v]
            b = col_ptr[v + 1]
            tot = prior[v]
            for e in range(a, b):
                c = col_idx[e]
                if method == 0:
                    _check_to_bit_minsum(c, synd, row_ptr, row_edge, q, r, alpha)
                else:
                    _check_to_bit_prodsum(c, synd, row_ptr, row_edge, q, r, scratch)
                tot += r[e]
            post[v] = tot
            for e in range(a, b):
                q[e] = tot - r[e]
        nf = _decision_ok(synd, nflag, post, col_ptr, col_idx, flips, par)
        if nf >= 0:
            return it, nf
    return 0, 0


@njit(**_JIT)
def bp_decode(synd, nflag, graph, params, ws):
    """Run BP on one syndrome with ``nflag`` flagged detectors; ``ws.post`` holds the final
    posteriors. Returns ``(iteration, count)``: the iteration after which the hard decision
    reproduced the syndrome (0 when BP did not converge within ``max_iter``; ``ws.post`` then
    guides the clusters) and the size of that decision, listed in ``ws.flips[:count]``.
    """
    col_ptr, col_idx, row_ptr, row_idx, row_edge, prior = (
        graph[0], graph[1], graph[2], graph[3], graph[4], graph[5])
    max_iter, method, schedule, alpha = params[0], params[1], params[2], params[3]
    q, r, post, par, post2, scratch, flips = ws[0], ws[1], ws[2], ws[3], ws[31], ws[29], ws[32]
    n = prior.shape[0]
    if schedule == 1:
        return _bp_serial(synd, nflag, col_ptr, col_idx, row_ptr, row_edge, prior, max_iter,
                          method, alpha, q, r, post, scratch, flips, par)
    it, cur, nf = _bp_parallel(synd, nflag, col_ptr, col_idx, row_ptr, row_idx, prior,
                               graph[8], graph[9], max_iter, method, alpha, r, post, post2,
                               scratch, flips, par)
    if cur == 1 and it == 0:
        for v in range(n):
            post[v] = post2[v]
    return it, nf


# ---------------------------------------------------------------------------------------------
# small helpers: heap, union-find, sorting, bit vectors
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _heap_push(heap_key, heap_bit, size, key, bit):
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        pk = heap_key[parent]
        if pk < key or (pk == key and heap_bit[parent] < bit):
            break
        heap_key[i] = pk
        heap_bit[i] = heap_bit[parent]
        i = parent
    heap_key[i] = key
    heap_bit[i] = bit
    return size + 1


@njit(**_JIT)
def _heap_pop(heap_key, heap_bit, size):
    """Remove the root; returns (bit, new size)."""
    top = heap_bit[0]
    size -= 1
    key = heap_key[size]
    bit = heap_bit[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size:
            k1 = heap_key[child]
            k2 = heap_key[child + 1]
            if k2 < k1 or (k2 == k1 and heap_bit[child + 1] < heap_bit[child]):
                child += 1
        ck = heap_key[child]
        if key < ck or (key == ck and bit < heap_bit[child]):
            break
        heap_key[i] = ck
        heap_bit[i] = heap_bit[child]
        i = child
    if size > 0:
        heap_key[i] = key
        heap_bit[i] = bit
    return top, size


@njit(**_JIT)
def _find(cl, x):
    while cl[x, _PARENT] != x:
        gp = cl[cl[x, _PARENT], _PARENT]
        cl[x, _PARENT] = gp
        x = gp
    return x


@njit(**_JIT)
def _sort_by_key(idx, key, k):
    """Shell sort of ``idx[:k]`` by ``key[:k]`` ascending (ties: smaller idx first), in place."""
    gap = 1
    while gap < k // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for i in range(gap, k):
            ti = idx[i]
            tk = key[i]
            j = i
            while j >= gap and (key[j - gap] > tk or (key[j - gap] == tk and idx[j - gap] > ti)):
                idx[j] = idx[j - gap]
                key[j] = key[j - gap]
                j -= gap
            idx[j] = ti
            key[j] = tk
        gap //= 3


@njit(**_JIT)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(**_JIT)
def _lowest_bit(x):
    """Index of the lowest set bit of a nonzero uint64."""
    i = 0
    while (x & np.uint64(1)) == np.uint64(0):
        x >>= np.uint64(1)
        i += 1
    return i


@njit(**_JIT)
def _push_neighbours(c, row_ptr, row_idx, post, bit_cl, in_heap, heap_key, heap_bit, hsize):
    for k in range(row_ptr[c], row_ptr[c + 1]):
        u = row_idx[k]
        if bit_cl[u] < 0 and in_heap[u] == 0:
            in_heap[u] = 1
            hsize = _heap_push(heap_key, heap_bit, hsize, post[u], u)
    return hsize


# ---------------------------------------------------------------------------------------------
# cluster stage
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _solve_cluster(root, synd, graph, ws, lsd_order, out_faults, nout):
    """Solve one valid cluster (OSD-0, plus the combination sweep when ``lsd_order > 0``).

    Appends the chosen faults to ``out_faults[nout:]``; returns the new count or a status.
    """
    col_ptr, col_idx, weight = graph[0], graph[1], graph[6]
    post = ws[2]
    cl, ck_next, bit_next = ws[5], ws[7], ws[9]
    loc_row, cols, col_key, mat, rhs, pivcol, is_piv, xsol, best, free = (
        ws[18], ws[19], ws[20], ws[21], ws[22], ws[23], ws[24], ws[25], ws[26], ws[27])
    one = np.uint64(1)
    # local rows
    r = 0
    c = cl[root, _CK_HEAD]
    while c >= 0:
        loc_row[c] = r
        rhs[r] = synd[c]
        r += 1
        c = ck_next[c]
    # local columns sorted by posterior LLR, most likely fault first
    k = 0
    v = cl[root, _BIT_HEAD]
    while v >= 0:
        cols[k] = v
        col_key[k] = post[v]
        k += 1
        v = bit_next[v]
    _sort_by_key(cols, col_key, k)
    wk = (k + 63) >> 6
    if r * wk > mat.shape[0]:
        return STATUS_TOO_LARGE
    for i in range(r * wk):
        mat[i] = 0
    for j in range(k):
        v = cols[j]
        for e in range(col_ptr[v], col_ptr[v + 1]):
            mat[loc_row[col_idx[e]] * wk + (j >> 6)] |= one << np.uint64(j & 63)
    # reduced row echelon form, columns in reliability order
    rank = 0
    for j in range(k):
        is_piv[j] = 0
    for j in range(k):
        if rank == r:
            break
        w = j >> 6
        bit = one << np.uint64(j & 63)
        p = -1
        for i in range(rank, r):
            if mat[i * wk + w] & bit:
                p = i
                break
        if p < 0:
            continue
        if p != rank:
            for ww in range(w, wk):
                t = mat[p * wk + ww]
                mat[p * wk + ww] = mat[rank * wk + ww]
                mat[rank * wk + ww] = t
            t8 = rhs[p]
            rhs[p] = rhs[rank]
            rhs[rank] = t8
        for i in range(r):
            if i != rank and (mat[i * wk + w] & bit):
                for ww in range(w, wk):
                    mat[i * wk + ww] ^= mat[rank * wk + ww]
                rhs[i] ^= rhs[rank]
        pivcol[rank] = j
        is_piv[j] = 1
        rank += 1
    for i in range(rank, r):
        if rhs[i]:
            return STATUS_NOT_IN_SPAN  # cannot happen for a valid cluster
    # OSD-0: pivots from the syndrome, free columns 0
    for j in range(k):
        xsol[j] = 0
    for i in range(rank):
        xsol[pivcol[i]] = rhs[i]
    if lsd_order > 0 and rank < k:
        # combination sweep (as ldpc's OSD-CS)
        for j in range(k):
            best[j] = xsol[j]
        best_w = 0.0
        for j in range(k):
            if xsol[j]:
                best_w += weight[cols[j]]
        # every free column, in reliability order: each one alone, and each pair among the
        # first lsd_order of them (ldpc's OSD-CS: weight-1 over all free bits, weight-2 over
        # the first ``osd_order``)
        nfree = 0
        for j in range(k):
            if is_piv[j] == 0:
                free[nfree] = j
                nfree += 1
        npair = min(nfree, lsd_order)
        for a in range(nfree):
            fa = free[a]
            for b in range(a, npair if a < npair else a + 1):
                fb = free[b]
                wgt = weight[cols[fa]]
                if b != a:
                    wgt += weight[cols[fb]]
                wa = fa >> 6
                ba = one << np.uint64(fa & 63)
                wb = fb >> 6
                bb = one << np.uint64(fb & 63)
                for i in range(rank):
                    val = rhs[i]
                    if mat[i * wk + wa] & ba:
                        val ^= 1
                    if b != a and (mat[i * wk + wb] & bb):
                        val ^= 1
                    if val:
                        wgt += weight[cols[pivcol[i]]]
                    if wgt >= best_w:
                        break
                if wgt < best_w:
                    best_w = wgt
                    for j in range(k):
                        best[j] = 0
                    best[fa] = 1
                    best[fb] = 1
                    for i in range(rank):
                        val = rhs[i]
                        if mat[i * wk + wa] & ba:
                            val ^= 1
                        if b != a and (mat[i * wk + wb] & bb):
                            val ^= 1
                        best[pivcol[i]] = val
        for j in range(k):
            xsol[j] = best[j]
    for j in range(k):
        if xsol[j]:
            out_faults[nout] = cols[j]
            nout += 1
    return nout


@njit(**_JIT)
def cluster_decode(synd, graph, params, ws, out_faults):
    """Cluster stage on ``synd`` guided by ``ws.post``; returns the fault count or a status."""
    col_ptr, col_idx, row_ptr, row_idx = graph[0], graph[1], graph[2], graph[3]
    lsd_order = params[4]
    post = ws[2]
    cl, ck_cl, ck_next, bit_cl, bit_next = ws[5], ws[6], ws[7], ws[8], ws[9]
    heap_key, heap_bit, in_heap = ws[10], ws[11], ws[12]
    arena, bmeta, b_next, sred, tmp = ws[13], ws[14], ws[15], ws[16], ws[17]
    roots, info = ws[28], ws[30]
    m = row_ptr.shape[0] - 1
    one = np.uint64(1)
    zero = np.uint64(0)

    # seeds: one cluster per flagged detector
    ncl = 0
    hsize = 0
    for c in range(m):
        if synd[c]:
            cl[ncl, _PARENT] = ncl
            cl[ncl, _NBITS] = 0
            cl[ncl, _NRED] = 1
            cl[ncl, _CK_HEAD] = c
            cl[ncl, _CK_TAIL] = c
            cl[ncl, _BIT_HEAD] = -1
            cl[ncl, _BIT_TAIL] = -1
            cl[ncl, _B_HEAD] = -1
            cl[ncl, _B_TAIL] = -1
            cl[ncl, _RANK] = 0
            ck_cl[c] = ncl
            ck_next[c] = -1
            sred[c >> 6] |= one << np.uint64(c & 63)
            ncl += 1
    for c in range(m):
        if synd[c]:
            hsize = _push_neighbours(c, row_ptr, row_idx, post, bit_cl, in_heap,
                                     heap_key, heap_bit, hsize)
    # a cluster stays *active* (keeps growing) while it is invalid or while it has fewer than
    # lsd_min_free free (dependent) columns for the combination sweep
    want_free = params[5]
    n_active = ncl
    nbasis = 0
    arena_used = 0
    status = 0
    biggest = 0

    while n_active > 0 and hsize > 0:
        v, hsize = _heap_pop(heap_key, heap_bit, hsize)
        in_heap[v] = 0
        if bit_cl[v] >= 0:
            continue
        # distinct roots of the clusters this fault touches
        nroots = 0
        any_active = False
        for e in range(col_ptr[v], col_ptr[v + 1]):
            c = col_idx[e]
            if ck_cl[c] >= 0:
                x = _find(cl, ck_cl[c])
                dup = False
                for t in range(nroots):
                    if roots[t] == x:
                        dup = True
                        break
                if not dup:
                    roots[nroots] = x
                    nroots += 1
                    if cl[x, _NRED] > 0 or cl[x, _NBITS] - cl[x, _RANK] < want_free:
                        any_active = True
        if not any_active:
            continue  # only finished clusters here: they re-push it if they turn active
        # finished clusters about to join an active one: their boundary becomes live again
        root = roots[0]
        j_active = 0
        for t in range(nroots):
            x = roots[t]
            if cl[x, _NRED] > 0 or cl[x, _NBITS] - cl[x, _RANK] < want_free:
                j_active += 1
            else:
                c = cl[x, _CK_HEAD]
                while c >= 0:
                    hsize = _push_neighbours(c, row_ptr, row_idx, post, bit_cl, in_heap,
                                             heap_key, heap_bit, hsize)
                    c = ck_next[c]
            if cl[x, _NBITS] > cl[root, _NBITS]:
                root = x
        # merge every other root into `root` (concatenate lists; bases have disjoint rows)
        for t in range(nroots):
            x = roots[t]
            if x == root:
                continue
            cl[x, _PARENT] = root
            cl[root, _NBITS] += cl[x, _NBITS]
            cl[root, _NRED] += cl[x, _NRED]
            cl[root, _RANK] += cl[x, _RANK]
            ck_next[cl[root, _CK_TAIL]] = cl[x, _CK_HEAD]
            cl[root, _CK_TAIL] = cl[x, _CK_TAIL]
            if cl[x, _BIT_HEAD] >= 0:
                if cl[root, _BIT_HEAD] < 0:
                    cl[root, _BIT_HEAD] = cl[x, _BIT_HEAD]
                else:
                    bit_next[cl[root, _BIT_TAIL]] = cl[x, _BIT_HEAD]
                cl[root, _BIT_TAIL] = cl[x, _BIT_TAIL]
            if cl[x, _B_HEAD] >= 0:
                if cl[root, _B_HEAD] < 0:
                    cl[root, _B_HEAD] = cl[x, _B_HEAD]
                else:
                    b_next[cl[root, _B_TAIL]] = cl[x, _B_HEAD]
                cl[root, _B_TAIL] = cl[x, _B_TAIL]
        n_active -= j_active
        # new detectors join the cluster (all unflagged: every flagged one seeded a cluster)
        for e in range(col_ptr[v], col_ptr[v + 1]):
            c = col_idx[e]
            if ck_cl[c] < 0:
                ck_cl[c] = root
                ck_next[c] = -1
                ck_next[cl[root, _CK_TAIL]] = c
                cl[root, _CK_TAIL] = c
                hsize = _push_neighbours(c, row_ptr, row_idx, post, bit_cl, in_heap,
                                         heap_key, heap_bit, hsize)
        # the fault joins the cluster
        bit_cl[v] = root
        bit_next[v] = -1
        if cl[root, _BIT_HEAD] < 0:
            cl[root, _BIT_HEAD] = v
        else:
            bit_next[cl[root, _BIT_TAIL]] = v
        cl[root, _BIT_TAIL] = v
        cl[root, _NBITS] += 1
        if cl[root, _NBITS] > biggest:
            biggest = cl[root, _NBITS]
        # incremental elimination of its column against the cluster's basis
        lo = col_idx[col_ptr[v]] >> 6
        hi = lo
        for e in range(col_ptr[v], col_ptr[v + 1]):
            c = col_idx[e]
            w = c >> 6
            tmp[w] ^= one << np.uint64(c & 63)
            if w < lo:
                lo = w
            if w > hi:
                hi = w
        bidx = cl[root, _B_HEAD]
        while bidx >= 0:
            prow = bmeta[bidx, 3]
            if tmp[prow >> 6] & (one << np.uint64(prow & 63)):
                off = bmeta[bidx, 0]
                blo = bmeta[bidx, 1]
                bhi = bmeta[bidx, 2]
                for w in range(blo, bhi + 1):
                    tmp[w] ^= arena[off + w - blo]
                if blo < lo:
                    lo = blo
                if bhi > hi:
                    hi = bhi
            bidx = b_next[bidx]
        # trim the span to nonzero words
        while lo <= hi and tmp[lo] == zero:
            lo += 1
        while hi >= lo and tmp[hi] == zero:
            hi -= 1
        if lo <= hi:
            size = hi - lo + 1
            if arena_used + size > arena.shape[0] or nbasis >= bmeta.shape[0]:
                for w in range(lo, hi + 1):
                    tmp[w] = zero
                status = STATUS_TOO_LARGE
                break
            prow = (lo << 6) + _lowest_bit(tmp[lo])
            bmeta[nbasis, 0] = arena_used
            bmeta[nbasis, 1] = lo
            bmeta[nbasis, 2] = hi
            bmeta[nbasis, 3] = prow
            b_next[nbasis] = -1
            for w in range(lo, hi + 1):
                arena[arena_used + w - lo] = tmp[w]
            arena_used += size
            if cl[root, _B_HEAD] < 0:
                cl[root, _B_HEAD] = nbasis
            else:
                b_next[cl[root, _B_TAIL]] = nbasis
            cl[root, _B_TAIL] = nbasis
            if sred[prow >> 6] & (one << np.uint64(prow & 63)):
                delta = 0
                for w in range(lo, hi + 1):
                    old = sred[w]
                    bw = tmp[w]
                    delta += _popcount(bw & ~old) - _popcount(bw & old)
                    sred[w] = old ^ bw
                cl[root, _NRED] += delta
            nbasis += 1
            cl[root, _RANK] += 1
            for w in range(lo, hi + 1):
                tmp[w] = zero
        if cl[root, _NRED] > 0 or cl[root, _NBITS] - cl[root, _RANK] < want_free:
            n_active += 1

    if status == 0:
        for x in range(ncl):
            if cl[x, _PARENT] == x and cl[x, _NRED] > 0:
                status = STATUS_NOT_IN_SPAN
                break
    nout = 0
    if status == 0:
        for x in range(ncl):
            if cl[x, _PARENT] == x:
                nout = _solve_cluster(x, synd, graph, ws, lsd_order, out_faults, nout)
                if nout < 0:
                    status = nout
                    break
    info[2] = biggest
    # reset what this shot touched
    for x in range(ncl):
        if cl[x, _PARENT] == x:
            c = cl[x, _CK_HEAD]
            while c >= 0:
                ck_cl[c] = -1
                sred[c >> 6] = zero
                c = ck_next[c]
            v = cl[x, _BIT_HEAD]
            while v >= 0:
                bit_cl[v] = -1
                v = bit_next[v]
    for i in range(hsize):
        in_heap[heap_bit[i]] = 0
    if status < 0:
        return status
    return nout


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------
@njit(**_JIT)
def _relay_leg(synd, nflag, graph, ws, g, g0, uniform, leg_iter, scaling, cur):
    """One memory-BP leg of up to ``leg_iter`` iterations from the current messages and
    posteriors (``cur`` says which of ``post``/``post2`` holds the latest): memory strengths
    ``g`` per fault, or ``g0`` for every fault when ``uniform``; min-sum scaling ``scaling``,
    or ``1 - 2^-t`` at the leg's iteration ``t`` when ``scaling == 0``. Returns ``(size of the
    converged decision in flips or -1, cur)``."""
    col_ptr, col_idx, row_ptr, row_idx, prior = graph[0], graph[1], graph[2], graph[3], graph[5]
    r, post, par, scratch, post2, flips = ws[1], ws[2], ws[3], ws[29], ws[31], ws[32]
    n = prior.shape[0]
    m = row_ptr.shape[0] - 1
    ramp = 1.0
    for _it in range(leg_iter):
        old = post if cur == 0 else post2
        new = post2 if cur == 0 else post
        if uniform:
            for v in range(n):
                new[v] = (1.0 - g0) * prior[v] + g0 * old[v]
        else:
            for v in range(n):
                new[v] = (1.0 - g[v]) * prior[v] + g[v] * old[v]
        if scaling > 0.0:
            alpha = scaling
        else:
            ramp *= 0.5
            alpha = 1.0 - ramp
        for c in range(m):
            _minsum_row(synd[c], row_ptr[c], row_ptr[c + 1], row_idx, old, new, r, scratch,
                        alpha)
        cur = 1 - cur
        nf = _decision_ok(synd, nflag, new, col_ptr, col_idx, flips, par)
        if nf >= 0:
            return nf, cur
    return -1, cur


@njit(**_JIT)
def relay_legs(synd, nflag, graph, params, ws, out_faults, count):
    """Relay stage: BP legs with disordered memory after the cluster stage (see module docs).

    ``out_faults[:count]`` holds a valid solution (the cluster stage's); with
    ``relay_pre_iter = P > 0`` a first leg of up to ``P`` iterations with the uniform memory
    strength ``relay_pre_gamma`` runs (Relay-BP's pre-iterations), then each leg continues
    min-sum from the current messages and posteriors with memory strengths
    ``graph[10][leg]`` (``new = (1 - g) prior + g old + sum of detector messages``), for up
    to ``relay_iter`` iterations, with min-sum scaling ``relay_scaling`` (0: ``1 - 2^-t`` at
    the leg's iteration ``t``, as Relay-BP's default). A leg whose hard decision reproduces
    the syndrome is a candidate; the lightest solution (total ``weight``) found is kept.
    Stops after ``relay_stop`` converged legs (the first leg counts). Returns the new count
    (``ws.info[3]`` gets the number of converged legs).
    """
    prior, weight, gammas = graph[5], graph[6], graph[10]
    legs, leg_iter, stop = params[6], params[7], params[8]
    pre_iter, pre_gamma, scaling, scaling_from = params[10], params[11], params[12], params[13]
    alpha = params[3]
    post, post2, flips, info = ws[2], ws[31], ws[32], ws[30]
    n = prior.shape[0]
    best_w = 0.0
    for i in range(count):
        best_w += weight[out_faults[i]]
    nconv = 0
    cur = 0  # 0: post holds the latest posterior, 1: post2
    first = -1 if pre_iter > 0 else 0
    for leg in range(first, legs):
        if leg < 0:
            nf, cur = _relay_leg(synd, nflag, graph, ws, gammas[0], pre_gamma, True,
                                 pre_iter, scaling, cur)
        else:
            nf, cur = _relay_leg(synd, nflag, graph, ws, gammas[leg], 0.0, False, leg_iter,
                                 scaling if leg >= scaling_from else alpha, cur)
        if nf >= 0:
            w = 0.0
            for i in range(nf):
                w += weight[flips[i]]
            if w < best_w:
                best_w = w
                for i in range(nf):
                    out_faults[i] = flips[i]
                count = nf
            nconv += 1
        if nconv >= stop:
            break
    if cur == 1:
        for v in range(n):
            post[v] = post2[v]
    info[3] = nconv
    if nconv < stop and legs + pre_iter > 0:
        # no leg (or too few) converged: clusters again, guided by the relayed posteriors
        alt = ws[33]
        wider = (params[0], params[1], params[2], params[3], params[4], params[9], params[6],
                 params[7], params[8], params[9], params[10], params[11], params[12],
                 params[13])
        cnt2 = cluster_decode(synd, graph, wider, ws, alt)
        if cnt2 >= 0:
            w = 0.0
            for i in range(cnt2):
                w += weight[alt[i]]
            if w < best_w:
                for i in range(cnt2):
                    out_faults[i] = alt[i]
                count = cnt2
    return count


@njit(**_JIT)
def decode_shot(syndrome, out_faults, graph, params, ws):
    """Decode one syndrome (uint8 0/1, shape (m,)) into fault ids.

    Writes the faults to ``out_faults[:count]`` (int64, capacity >= n) and returns ``count``
    (``>= 0``), or a negative status (``STATUS_NOT_IN_SPAN``, ``STATUS_TOO_LARGE``).
    ``ws.info`` gets ``[bp iterations (0 = not converged), cluster stage ran, biggest cluster]``.
    An all-zero syndrome returns 0 at once.
    """
    info = ws[30]
    flips = ws[32]
    info[0] = 0
    info[1] = 0
    info[2] = 0
    info[3] = 0
    m = syndrome.shape[0]
    nflag = 0
    for c in range(m):
        nflag += syndrome[c] != 0
    if nflag == 0:
        return 0
    if graph[5].shape[0] == 0:
        return STATUS_NOT_IN_SPAN  # no faults at all (a window of faults that began earlier)
    it, cnt = bp_decode(syndrome, nflag, graph, params, ws)
    info[0] = it
    if it > 0:
        for i in range(cnt):
            out_faults[i] = flips[i]
        return cnt
    info[1] = 1
    info[3] = 0
    cnt = cluster_decode(syndrome, graph, params, ws, out_faults)
    if cnt < 0 or params[6] + params[10] == 0:
        return cnt
    return relay_legs(syndrome, nflag, graph, params, ws, out_faults, cnt)


@njit(**_JIT)
def decode_batch_packed(packed, out_packed, status, out_faults, graph, params, ws):
    """Decode bit-packed shots (uint8 (shots, ceil(m/8)), little bit order) in one call.

    Writes packed observable flips to ``out_packed`` (uint8 (shots, ceil(O/8))) and each
    shot's :func:`decode_shot` result to ``status`` (int64 (shots,)); a shot with a negative
    status gets all-zero predictions.
    """
    obs = graph[7]
    m = graph[2].shape[0] - 1
    synd = ws[4][:m]
    nb = out_packed.shape[1]
    for s in range(packed.shape[0]):
        for c in range(m):
            synd[c] = (packed[s, c >> 3] >> (c & 7)) & 1
        for j in range(nb):
            out_packed[s, j] = 0
        cnt = decode_shot(synd, out_faults, graph, params, ws)
        status[s] = cnt
        for i in range(cnt):
            f = out_faults[i]
            for j in range(nb):
                out_packed[s, j] ^= obs[f, j]


@njit(**_JIT)
def decode_batch(dets, out, status, out_faults, graph, params, ws):
    """Unpacked variant of :func:`decode_batch_packed`: uint8 (shots, m) in,
    uint8 (shots, O) out."""
    obs = graph[7]
    num_obs = out.shape[1]
    for s in range(dets.shape[0]):
        for j in range(num_obs):
            out[s, j] = 0
        cnt = decode_shot(dets[s], out_faults, graph, params, ws)
        status[s] = cnt
        for i in range(cnt):
            f = out_faults[i]
            for j in range(num_obs):
                out[s, j] ^= (obs[f, j >> 3] >> (j & 7)) & 1
