"""Numba kernels of the ``uf`` backend: weighted union-find growth + peeling on flat arrays.

Everything here is a plain ``@njit`` function over preallocated arrays; the Python class
:class:`qecd.decoder.union_find.UnionFindDecoder` builds the arrays, checks input and warms
every kernel. Nothing in a kernel allocates, raises or touches a Python object, and a shot
resets only the workspace entries it touched, so a shot with a handful of detection events
costs a handful of cache lines.

Graph layout (node ``num_detectors`` is the boundary ``B``; it has no adjacency row of its own,
a boundary edge is listed only at its detector):

``adj_ptr`` uint32 (N+1,), ``adj`` uint32 (3*nnz,)
    CSR adjacency, interleaved: the k-th neighbour of ``v`` is ``adj[3k]``, via edge
    ``adj[3k+1]`` of weight ``adj[3k+2]``, for ``adj_ptr[v] <= k < adj_ptr[v+1]`` (the weight
    rides along so that a node's first look at its edges reads one contiguous row).
``edge_w`` int32 (E,)
    Integer edge weights (>= 1).
``edge_uv`` uint32 (E, 2)
    Endpoints; a boundary edge is ``(v, B)``.
``pm_edge`` uint8 (E,), ``pm_bnd`` int32 (N,)
    Pre-matching tables (:func:`prematch_tables`); both empty turns pre-matching off.

Per-decoder workspace (owned by the Python class; one decode at a time per workspace):

``parent`` uint32 (N,), ``flags`` uint8 (N,)
    The fields read for every neighbour visited, kept compact so that a node's neighbours
    share cache lines: union-find parent, and ``FL_*`` bits.
``nws`` int32 (N, NWS_FIELDS)
    The other per-node fields (``F_*``), see :func:`fresh_node_workspace`.
``slack`` int32 (E,)
    Remaining growth of each edge (``edge_w`` when fresh, 0 once fully grown or internal).
``touched`` uint32 (N,); ``stack`` uint32 (2N,); ``heap_key`` int64 (N,); ``heap_ver``
int32 (N,); ``satq`` uint32 (max(E, 2N),)
    Scratch: nodes touched this shot; pre-match list, then peeling stack; event heap; first
    look results, then fully grown edges.

Node, edge and adjacency indices are unsigned so that Numba emits no negative-index
wrap-around code on the hot paths (measured 1.5x on an adjacency walk); fields that hold -1
sentinels (``nws``, ``pm_bnd``) stay signed and are cast once checked.

Algorithm (Delfosse & Nickerson, arXiv 1709.06218, with weighted growth as in Huang, Newman &
Brown, arXiv 2004.04693; peeling after Delfosse & Zemor):

0. isolated pairs of neighbouring detection events, and isolated events next to the boundary,
   are pre-matched *tentatively* where :func:`prematch_tables` proves that union-find's first
   event for them is exactly that match; the first time a growing cluster reaches such a node
   the pair is materialized as the neutral cluster union-find would have built by then, so
   the result is identical to plain union-find, only cheaper (most events at low ``p``);
1. every other detection event is an odd cluster;
2. all odd clusters that do not touch the boundary grow at the same rate in one global time
   (the dual growth of sparse blossom), so two isolated events meet half way along a shortest
   path, as in a bidirectional Dijkstra. An edge between two growing clusters grows from both
   ends. Growth is *lazy and event driven*: a binary heap holds each growing cluster's next
   event time (an edge of it becoming fully grown; the first one comes from a single look at
   each event's adjacency row); only the cluster whose event is due is scanned, and within it
   only the nodes whose own next event (``F_EV``) is due -- the others are just owed the
   growth (``F_PEND``), as are the nodes of a cluster that merges, instead of writing it into
   every edge. A prediction made stale by a neighbour that stopped growing is merely early
   (the cluster is rescanned and re-queued); a neighbour that starts growing queues its own,
   correct, event. Ties are taken in (time, root id) order;
3. fully grown edges merge clusters (union by size, path halving); a fully grown boundary edge
   makes its cluster neutral. The edges whose saturation merged two clusters form a spanning
   forest of every cluster (plus at most one boundary edge per cluster);
4. peel that forest from the leaves (a node's incident forest edges are kept as a degree and
   the XOR of their ids, so a leaf's last edge is read off in O(1)): a leaf carrying a
   detection event puts its edge in the correction and passes the event to its neighbour.

Return codes: ``n >= 0`` faults written; ``UF_NO_BOUNDARY`` (-1) when some odd-parity
connected component of the graph has no boundary edge, so no set of faults explains the
syndrome (the workspace is reset all the same, and nothing loops).

Example
-------
>>> import numpy as np
>>> from qecd.decoder import _uf_kernels as k
>>> # a path D0 - D1 - D2 with a boundary edge at D0: edges 0=(0,B) 1=(0,1) 2=(1,2)
>>> args = k.build_kernel_args(3, np.array([[0, 3], [0, 1], [1, 2]], np.int32),
...                            np.array([2, 2, 2], np.int32))
>>> out = np.zeros(4, np.int64)
>>> n = k.uf_decode_into(np.array([1, 0, 1], np.uint8), *args, out)
>>> sorted(out[:n].tolist())
[1, 2]
>>> n = k.uf_decode_into(np.array([1, 0, 0], np.uint8), *args, out)
>>> out[:n].tolist()
[0]
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # llvm.cttz, as Numba itself uses

from qecd import _jit

_jit.invalidate_if_changed(__file__, [], __name__)

#: every kernel's compile options, in one place (``njit`` is always nopython). ``_nrt=False``
#: turns off Numba's reference counting (the option Numba's own string helpers use): these
#: kernels never allocate, and with it on every array bound to a variable or handed to a
#: helper costs an atomic increment and decrement -- measured at 15-25% of decode time.
_JIT = _jit.KERNEL
#: the same for small helpers, inlined into their callers at Numba IR level
_INLINE = _jit.INLINE

UF_NO_BOUNDARY = -1

Arr = np.ndarray  # annotation shorthand: dtypes and shapes are in the module docs

FL_INCL = 1  # the node belongs to a cluster this shot (bit 0: _first_look relies on it)
FL_TENT = 2  # the node's event is tentatively pre-matched
FL_GROW = 4  # (at a root) the cluster is odd and does not touch the boundary: it grows
FL_DEFECT = 8  # detection event still to be explained (peeling)
FL_NB1 = 16  # (first look) exactly one neighbouring detection event
FL_NB2 = 32  # (first look) two or more
FL_WROTE = 64  # the node's edges' slack was written this shot (reset restores them)
FL_ALL = 0xFF

F_PARITY = 0  # number of detection events mod 2 (at a root)
F_BND = 1  # a fully grown boundary edge of the cluster, or -1 (at a root)
F_TLAST = 2  # time up to which the cluster's growth is written into slack (at a root)
F_HEAD = 3  # first node of the cluster's list of growable nodes (at a root)
F_TAIL = 4  # last node of that list (at a root)
F_NEXT = 5  # next node in the list
F_SIZE = 6  # cluster size (at a root)
F_VER = 7  # version of the root's heap entry
F_DEG = 8  # number of incident peeling-forest edges
F_XEDGE = 9  # XOR of the ids of those edges
F_PEND = 10  # growth the node's edges are owed (not yet written into their slack)
F_EV = 11  # time of the node's own next event, as of its last scan
NWS_FIELDS = 12

_FRESH_ROW = (0, -1, 0, -1, -1, -1, 1, 0, 0, 0, 0, 0)
_INF = np.int64(1) << 40
_INF32 = np.int64(2**31 - 1)


def fresh_node_workspace(num_nodes: int) -> np.ndarray:
    """A reset node workspace (int32, shape ``(num_nodes, NWS_FIELDS)``).

    >>> fresh_node_workspace(2)[1].tolist()
    [0, -1, 0, -1, -1, -1, 1, 0, 0, 0, 0, 0]
    """
    return np.tile(np.array(_FRESH_ROW, dtype=np.int32), (num_nodes, 1))


def prematch_tables(num_detectors: int, edge_uv: np.ndarray,
                    edge_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where pre-matching gives exactly union-find's first event.

    Take two neighbouring detection events ``a``, ``b`` that have no other neighbouring
    event. Union-find joins them along their edge at time ``t0 = ceil(w_ab / 2)``, unless
    something touches them first. Nothing does when, for every other edge ``f = (a, x)``
    (and likewise at ``b``):

    - ``t0 < w_f``: their own one-sided growth fully grows ``f`` only at time ``w_f``;
    - ``2 * t0 < w_f + m_x``, with ``m_x`` the lightest edge at ``x`` not leading to ``a`` or
      ``b``: any other cluster reaches ``x`` no earlier than ``m_x`` (a cluster only holds
      nodes within its radius of its events, and ``x`` is not an event), after which ``f``
      grows from both ends and is full no earlier than ``(m_x + w_f) / 2``.

    The same with ``t0 = w_e`` (one-sided growth) decides when a lone event with no
    neighbouring event reaches the boundary edge ``e`` first. Such events are matched
    before union-find runs, tentatively: the first cluster that reaches one of them meets the
    neutral cluster union-find would have built by then (:func:`_materialize`), so the
    result is exactly plain union-find's.

    Returns
    -------
    pm_edge : numpy.ndarray of uint8, shape (E,)
        1 where an isolated pair may be matched along that (two-detector) edge.
    pm_bnd : numpy.ndarray of int32, shape (D + 1,)
        The boundary edge a lone event at that node may be matched to, or -1.

    >>> pe, pb = prematch_tables(2, np.array([[0, 1], [0, 2], [1, 2]], np.int32),
    ...                          np.array([4, 3, 9], np.int32))
    >>> pe.tolist(), pb.tolist()
    ([1, 0, 0], [1, -1, -1])
    """
    uv = np.ascontiguousarray(edge_uv, dtype=np.int64).reshape(-1, 2)
    w = np.ascontiguousarray(edge_w, dtype=np.int64)
    return _prematch_kernel(int(num_detectors), uv, w)


@numba.njit(**_jit.ALLOCATING)
def _prematch_kernel(nd, uv, w):  # pragma: no cover - compiled
    """:func:`prematch_tables` in compiled code (a plan build of a d=11 surface code over 53
    rounds spent 1.2 s in its Python form)."""
    ne = uv.shape[0]
    big = np.iinfo(np.int64).max // 4
    pm_edge = np.zeros(ne, dtype=np.uint8)
    pm_bnd = np.full(nd + 1, -1, dtype=np.int32)
    # the three lightest edges at each node as (weight, other end) in tuple order, for "the
    # lightest edge at x not leading to a or b"; and each node's incident edges in edge order
    top_w = np.full((max(nd, 1), 3), big, np.int64)
    top_y = np.full((max(nd, 1), 3), -1, np.int64)
    deg = np.zeros(nd + 1, np.int64)
    for e in range(ne):
        for s in range(2):
            x = uv[e, s]
            y = uv[e, 1 - s]
            if x < nd:
                deg[x + 1] += 1
                k = 3
                while k > 0 and (w[e] < top_w[x, k - 1]
                                 or (w[e] == top_w[x, k - 1] and y < top_y[x, k - 1])):
                    k -= 1
                if k < 3:
                    for m in range(2, k, -1):
                        top_w[x, m] = top_w[x, m - 1]
                        top_y[x, m] = top_y[x, m - 1]
                    top_w[x, k] = w[e]
                    top_y[x, k] = y
    ptr = np.cumsum(deg)
    fill = ptr[:-1].copy()
    inc_e = np.empty(max(ptr[-1], 1), np.int64)
    inc_y = np.empty(max(ptr[-1], 1), np.int64)
    for e in range(ne):
        for s in range(2):
            x = uv[e, s]
            if x < nd:
                inc_e[fill[x]] = e
                inc_y[fill[x]] = uv[e, 1 - s]
                fill[x] += 1
    for e in range(ne):
        a = uv[e, 0]
        b = uv[e, 1]
        lone = b >= nd
        t0 = w[e] if lone else (w[e] + 1) // 2
        first = True
        for side in range(1 if lone else 2):
            z = a if side == 0 else b
            for q in range(ptr[z], ptr[z + 1]):
                f = inc_e[q]
                if f == e:
                    continue
                if t0 >= w[f]:
                    first = False
                    break
                x = inc_y[q]
                if x < nd:
                    away = big
                    for m in range(3):
                        if top_y[x, m] != a and top_y[x, m] != (a if lone else b):
                            away = top_w[x, m]
                            break
                    if 2 * t0 >= w[f] + away:
                        first = False
                        break
            if not first:
                break
        if first:
            if lone:
                pm_bnd[a] = e
            else:
                pm_edge[e] = 1
    return pm_edge, pm_bnd


def build_kernel_args(num_detectors: int, edge_uv: np.ndarray, edge_w: np.ndarray,
                      prematch: bool = True) -> tuple:
    """Graph arrays plus a fresh workspace, in the order the kernels take them.

    Parameters
    ----------
    num_detectors : int
        ``D``; node ``D`` is the boundary.
    edge_uv : numpy.ndarray of int, shape (E, 2)
        Endpoints of each edge; a boundary edge is ``(v, D)``.
    edge_w : numpy.ndarray of int, shape (E,)
        Positive integer weights.
    prematch : bool
        Build the pre-matching tables (:func:`prematch_tables`); False passes empty ones,
        which turns pre-matching off.

    Returns
    -------
    tuple
        ``(adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags, nws, slack, touched,
        heap_key, heap_ver, satq, stack)``.

    >>> len(build_kernel_args(1, np.array([[0, 1]], np.int32), np.array([3], np.int32)))
    15
    """
    n = num_detectors + 1
    edge_uv = np.ascontiguousarray(edge_uv, dtype=np.uint32).reshape(-1, 2)
    edge_w = np.ascontiguousarray(edge_w, dtype=np.int32)
    ne = edge_uv.shape[0]
    ends = edge_uv.ravel()
    owners = ends[ends < num_detectors]  # the boundary has no adjacency row
    counts = np.bincount(owners, minlength=n).astype(np.int32)
    adj_ptr = np.zeros(n + 1, dtype=np.uint32)
    adj_ptr[1:] = np.cumsum(counts)
    adj = np.zeros(3 * int(adj_ptr[-1]), dtype=np.uint32)
    fill = adj_ptr[:-1].copy()
    for e in range(ne):
        a, b = int(edge_uv[e, 0]), int(edge_uv[e, 1])
        for x, y in ((a, b), (b, a)):
            if x < num_detectors:
                k = fill[x]
                adj[3 * k] = y
                adj[3 * k + 1] = e
                adj[3 * k + 2] = edge_w[e]
                fill[x] += 1
    if prematch:
        pm_edge, pm_bnd = prematch_tables(num_detectors, edge_uv, edge_w)
    else:
        pm_edge, pm_bnd = np.zeros(0, np.uint8), np.zeros(0, np.int32)
    return (adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd) + new_workspace(num_detectors,
                                                                            edge_w)


def new_workspace(num_detectors: int, edge_w: np.ndarray) -> tuple:
    """A fresh per-decode workspace (one per thread) for a graph of ``num_detectors``
    detectors and edge weights ``edge_w``.

    Returns
    -------
    tuple
        ``(parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack)``: the last
        nine of :func:`build_kernel_args`'s arrays.

    >>> [a.shape for a in new_workspace(1, np.array([3, 4], np.int32))][:4]
    [(2,), (2,), (2, 12), (2,)]
    """
    n = num_detectors + 1
    ne = edge_w.shape[0]
    return (
        np.arange(n, dtype=np.uint32),  # parent
        np.zeros(n, np.uint8),  # flags
        fresh_node_workspace(n),
        np.ascontiguousarray(edge_w, dtype=np.int32).copy(),  # slack
        np.zeros(n, np.uint32),  # touched
        np.zeros(n, np.int64),  # heap_key
        np.zeros(n, np.int32),  # heap_ver
        np.zeros(max(ne, 2 * n), np.uint32),  # satq (also first-look scratch)
        np.zeros(2 * n, np.uint32),  # stack (also the pre-match list)
    )


# -- small helpers ----------------------------------------------------------------------------
@numba.njit(**_INLINE)
def _load8(a, s, c0):
    """``a[s, c0:c0+8]`` as one little-endian uint64 (LLVM merges it into one load)."""
    return (np.uint64(a[s, c0]) | np.uint64(a[s, c0 + 1]) << np.uint64(8)
            | np.uint64(a[s, c0 + 2]) << np.uint64(16) | np.uint64(a[s, c0 + 3]) << np.uint64(24)
            | np.uint64(a[s, c0 + 4]) << np.uint64(32) | np.uint64(a[s, c0 + 5]) << np.uint64(40)
            | np.uint64(a[s, c0 + 6]) << np.uint64(48) | np.uint64(a[s, c0 + 7]) << np.uint64(56))


@numba.njit(**_INLINE)
def _or8(a, s, c0):
    """OR of ``a[s, c0:c0+8]``, written out: LLVM turns it into one 8-byte load."""
    return (a[s, c0] | a[s, c0 + 1] | a[s, c0 + 2] | a[s, c0 + 3] | a[s, c0 + 4]
            | a[s, c0 + 5] | a[s, c0 + 6] | a[s, c0 + 7])


@numba.njit(**_INLINE)
def _other_end(edge_uv, e, v):
    """The endpoint of edge ``e`` that is not ``v`` (uint32: Numba widens uint32 arithmetic
    to uint64, which mixed with int64 would become float64)."""
    return np.uint32(edge_uv[e, 0] ^ edge_uv[e, 1] ^ v)


@numba.njit(**_INLINE)
def _or8_1d(a, c0):
    """OR of ``a[c0:c0+8]``."""
    return (a[c0] | a[c0 + 1] | a[c0 + 2] | a[c0 + 3] | a[c0 + 4] | a[c0 + 5] | a[c0 + 6]
            | a[c0 + 7])


@numba.njit(**_INLINE)
def _find(parent, v):
    while True:
        p = parent[v]
        if p == v:
            return v
        gp = parent[p]
        parent[v] = gp
        v = gp


@numba.njit(**_INLINE)
def _heap_push(heap_key, heap_ver, n, key, ver):
    i = n
    while i > 0:
        p = (i - 1) >> 1
        if heap_key[p] <= key:
            break
        heap_key[i] = heap_key[p]
        heap_ver[i] = heap_ver[p]
        i = p
    heap_key[i] = key
    heap_ver[i] = ver
    return n + 1


@numba.njit(**_INLINE)
def _heap_pop(heap_key, heap_ver, n):
    """Remove the root of a heap of ``n`` entries (read it before calling); returns n - 1."""
    n -= 1
    key = heap_key[n]
    ver = heap_ver[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap_key[c + 1] < heap_key[c]:
            c += 1
        if heap_key[c] >= key:
            break
        heap_key[i] = heap_key[c]
        heap_ver[i] = heap_ver[c]
        i = c
    heap_key[i] = key
    heap_ver[i] = ver
    return n


@numba.njit(**_INLINE)
def _add_event(flags, v, touched, n_touched):
    """Mark detector ``v`` as a detection event (its node row is set up only if it is not
    pre-matched, see :func:`_solve`)."""
    flags[v] = FL_INCL | FL_GROW | FL_DEFECT
    touched[n_touched] = v
    return n_touched + 1


@numba.njit(**_INLINE)
def _shrink_slack(x, t0, e_skip, adj_ptr, adj, slack):
    # (the caller marks x FL_WROTE)
    for k in range(adj_ptr[x], adj_ptr[x + 1]):
        e = adj[3 * k + 1]
        if e != e_skip:
            slack[e] = max(slack[e] - t0, 1)


@numba.njit(**_INLINE)
def _materialize(x, bnd, adj_ptr, adj, edge_w, edge_uv, pm_bnd, parent, flags, nws, slack,
                 touched, n_touched):
    """Turn the tentative pre-match of node ``x`` into the neutral cluster union-find would
    have built: a pair joined by its edge at time ``ceil(w/2)`` (or an event joined to the
    boundary at time ``w``), its other edges grown by that time. A cluster reaches it only
    after that time (see :func:`prematch_tables`), so this is exact. Returns n_touched.

    The partner is ``x``'s only tentatively matched neighbour (a pre-matched event has no
    other neighbouring event), or else the boundary."""
    e = pm_bnd[x]
    for k in range(adj_ptr[x], adj_ptr[x + 1]):
        if flags[adj[3 * k]] & FL_TENT:
            e = adj[3 * k + 1]
            break
    a = edge_uv[e, 0]
    b = edge_uv[e, 1]
    slack[e] = 0
    flags[a] = FL_INCL | FL_DEFECT | FL_WROTE
    nws[a, F_HEAD] = a
    nws[a, F_DEG] = 1
    nws[a, F_XEDGE] = e
    touched[n_touched] = a
    n_touched += 1
    nws[a, F_NEXT] = -1
    if b == bnd:
        nws[a, F_TAIL] = a
        nws[a, F_PARITY] = 1
        nws[a, F_BND] = e
        _shrink_slack(a, edge_w[e], e, adj_ptr, adj, slack)
        return n_touched
    t0 = (edge_w[e] + 1) >> 1
    flags[b] = FL_INCL | FL_DEFECT | FL_WROTE
    nws[b, F_DEG] = 1
    nws[b, F_XEDGE] = e
    parent[b] = a
    nws[a, F_SIZE] = 2
    nws[a, F_NEXT] = b
    nws[a, F_TAIL] = b
    touched[n_touched] = b
    n_touched += 1
    _shrink_slack(a, t0, e, adj_ptr, adj, slack)
    _shrink_slack(b, t0, e, adj_ptr, adj, slack)
    return n_touched


@numba.njit(**_INLINE)
def _scan(c, v, prev, t, due_only, adj_ptr, adj, edge_w, edge_uv, pm_bnd, parent, flags, nws,
          slack, touched, n_touched, satq, nsat):
    """Bring growing root ``c``'s growth up to time ``t``, for the nodes of its growable list
    from ``v`` (preceded by ``prev``, -1 at the head) to the end.

    With ``due_only``, a node whose own next event (``F_EV``, from its last scan) is later
    than ``t`` is not looked at: its growth is only owed (``F_PEND``). Every other node has
    its growth written into its edges' slack; nodes with nothing left to grow leave the list,
    internal edges are marked dead, tentatively pre-matched neighbours materialized, and
    edges fully grown by ``t`` (counting what the other end owes or grew since) queued.
    Returns ``(time to the cluster's next event, nsat, n_touched)``. A node's ``F_EV`` can
    only be early, never late: a neighbour that starts growing queues its own event.
    """
    bnd = adj_ptr.shape[0] - 2
    pend_c = t - nws[c, F_TLAST]
    nws[c, F_TLAST] = t
    best = _INF
    while v != -1:
        vu = np.uint32(v)
        nxt = nws[vu, F_NEXT]
        if due_only and nws[vu, F_EV] > t:
            nws[vu, F_PEND] += pend_c
            best = min(best, nws[vu, F_EV] - t)
            prev = v
            v = nxt
            continue
        alive = False
        best_v = _INF
        pend = pend_c + nws[vu, F_PEND]
        nws[vu, F_PEND] = 0
        flags[vu] |= FL_WROTE
        for k in range(adj_ptr[vu], adj_ptr[vu + 1]):
            u = adj[3 * k]
            e = adj[3 * k + 1]
            fu = flags[u]  # the boundary's flags stay 0
            if fu & FL_TENT:
                n_touched = _materialize(u, bnd, adj_ptr, adj, edge_w, edge_uv, pm_bnd, parent,
                                         flags, nws, slack, touched, n_touched)
                fu = flags[u]
            s = slack[e]
            if s <= 0:
                continue
            s -= pend
            s2 = s
            if fu & FL_INCL:
                ru = _find(parent, u)
                if ru == c:
                    slack[e] = 0  # internal edge: never needed
                    continue
                s2 = s - nws[u, F_PEND]  # what the other end owes is grown too
                if flags[ru] & FL_GROW:
                    s2 -= t - nws[ru, F_TLAST]
                    if s2 <= 0:
                        slack[e] = 0
                        satq[nsat] = e
                        nsat += 1
                        continue
                    slack[e] = s
                    alive = True
                    s2 = (s2 + 1) >> 1  # grown from both ends
                    if s2 < best_v:
                        best_v = s2
                    continue
            if s2 <= 0:
                slack[e] = 0
                satq[nsat] = e
                nsat += 1
                continue
            slack[e] = s
            alive = True
            if s2 < best_v:
                best_v = s2
        if alive:
            nws[vu, F_EV] = min(t + best_v, _INF32)
            best = min(best, best_v)
            prev = v
        else:
            if prev == -1:
                nws[c, F_HEAD] = nxt
            else:
                nws[prev, F_NEXT] = nxt
            if nxt == -1:
                nws[c, F_TAIL] = prev
        v = nxt
    return best, nsat, n_touched


@numba.njit(**_INLINE)
def _owe_growth(c, t, nws):
    """Growing root ``c`` is about to merge at time ``t``: the growth its edges got since its
    last scan is recorded per node (``F_PEND``, a handful of nodes) instead of being written
    into every edge (many); whoever next reads such an edge's slack subtracts it."""
    pend = t - nws[c, F_TLAST]
    nws[c, F_TLAST] = t
    if pend == 0:
        return
    v = nws[c, F_HEAD]
    while v != -1:
        nws[v, F_PEND] += pend
        v = nws[v, F_NEXT]


@numba.njit(**_INLINE)
def _join(x, flags, nws, touched, n_touched):
    """A fresh node ``x`` enters a cluster: give it a one-node growable list."""
    if flags[x] & FL_INCL == 0:
        flags[x] = FL_INCL
        nws[x, F_HEAD] = x
        nws[x, F_TAIL] = x
        touched[n_touched] = x
        n_touched += 1
    return n_touched


@numba.njit(**_INLINE)
def _merge_queue(c, t, nsat, adj_ptr, adj, edge_uv, parent, flags, nws, slack, touched,
                 n_touched, satq):
    """Merge clusters along the queued fully grown edges. The growable list of ``c``'s cluster
    stays in front, so what it gained follows its old tail. Returns ``(n_touched, root of
    c's cluster)``."""
    bnd = adj_ptr.shape[0] - 2
    j = 0
    while j < nsat:
        e = satq[j]
        j += 1
        a = edge_uv[e, 0]
        b = edge_uv[e, 1]
        ra = _find(parent, a)
        if b == bnd:
            if nws[ra, F_BND] < 0:
                nws[ra, F_BND] = e
                flags[ra] &= FL_ALL ^ FL_GROW
                nws[a, F_DEG] += 1
                nws[a, F_XEDGE] ^= e
            continue
        rb = _find(parent, b)
        if ra == rb:
            continue
        # growth of both sides up to time t is settled before they become one cluster
        if flags[ra] & FL_GROW:
            _owe_growth(ra, t, nws)
        if flags[rb] & FL_GROW:
            _owe_growth(rb, t, nws)
        n_touched = _join(a, flags, nws, touched, n_touched)
        n_touched = _join(b, flags, nws, touched, n_touched)
        first, second = ra, rb
        if rb == c:
            first, second = rb, ra
        hf = nws[first, F_HEAD]
        tf = nws[first, F_TAIL]
        hs = nws[second, F_HEAD]
        ts = nws[second, F_TAIL]
        if nws[ra, F_SIZE] < nws[rb, F_SIZE]:
            ra, rb = rb, ra
        if first == c:
            c = ra
        parent[rb] = ra
        nws[ra, F_SIZE] += nws[rb, F_SIZE]
        nws[ra, F_PARITY] ^= nws[rb, F_PARITY]
        nws[ra, F_TLAST] = t
        eb = nws[rb, F_BND]
        if eb >= 0:
            if nws[ra, F_BND] < 0:
                nws[ra, F_BND] = eb
            else:  # keep one boundary edge per cluster: the forest stays a forest
                x = edge_uv[eb, 0]
                nws[x, F_DEG] -= 1
                nws[x, F_XEDGE] ^= eb
        if nws[ra, F_PARITY] == 1 and nws[ra, F_BND] < 0:
            flags[ra] |= FL_GROW
        else:
            flags[ra] &= FL_ALL ^ FL_GROW
        if hf == -1:
            hf, tf = hs, ts
        elif hs != -1:
            nws[tf, F_NEXT] = hs
            tf = ts
        nws[ra, F_HEAD] = hf
        nws[ra, F_TAIL] = tf
        nws[a, F_DEG] += 1
        nws[a, F_XEDGE] ^= e
        nws[b, F_DEG] += 1
        nws[b, F_XEDGE] ^= e
    return n_touched, c


@numba.njit(**_INLINE)
def _first_look(n_touched, adj_ptr, adj, flags, touched, scratch):
    """One pass over the events' edges (each a contiguous row) that touches no node row:
    whether an event has one or more neighbouring events (``FL_NB1``/``FL_NB2``), the edge
    to the last one (``scratch[2i]``, for pre-matching), and the time of its first growth
    event (``scratch[2i+1]``), ``min(w)`` over its edges with an edge to another event
    counting ``ceil(w / 2)`` (both ends grow). Nothing has grown yet: no slack is read."""
    for i in range(n_touched):
        v = touched[i]
        cnt = 0
        pe = 0
        best = _INF32
        for k in range(adj_ptr[v], adj_ptr[v + 1]):
            # branch-free (a neighbouring event sits at a random place in the row, so a
            # branch on it would mispredict once per event; LLVM also vectorizes this form,
            # measured 20% faster than the branchy loop and than a select for pe)
            inc = np.int64(flags[adj[3 * k]] & FL_INCL)
            cnt += inc
            pe = max(pe, inc * adj[3 * k + 1])
            best = min(best, (np.int64(adj[3 * k + 2]) + inc) >> inc)
        if cnt == 1:
            flags[v] |= FL_NB1
        elif cnt > 1:
            flags[v] |= FL_NB2
        scratch[2 * i] = pe
        scratch[2 * i + 1] = best


@numba.njit(**_INLINE)
def _prematch(n_touched, adj_ptr, edge_uv, pm_edge, pm_bnd, flags, touched, scratch, stack):
    """Tentatively pre-match isolated pairs / isolated boundary events (step 0 of the module
    docs), after :func:`_first_look`. Kept events are compacted to the front of ``touched``
    (their ``scratch`` entries with them); ``(event, edge)`` of each pre-match goes to
    ``stack``. Returns ``(events kept, pre-matches)``. A kept event's neighbouring events
    are all kept (a pre-matched one has no neighbouring event but its partner), so its first
    event time stays exact."""
    bnd = adj_ptr.shape[0] - 2
    n_keep = 0
    n_pm = 0
    for i in range(n_touched):
        v = touched[i]
        fv = flags[v]
        if fv & FL_INCL == 0:
            continue  # pre-matched as the partner of an earlier event
        e = -1
        u = bnd
        if fv & (FL_NB1 | FL_NB2) == 0:
            e = pm_bnd[v]
        elif fv & FL_NB1:
            e = scratch[2 * i]
            u = _other_end(edge_uv, e, v)
            if pm_edge[e] == 0 or flags[u] & FL_NB1 == 0:
                e = -1
        if e < 0:
            touched[n_keep] = v
            scratch[2 * n_keep + 1] = scratch[2 * i + 1]
            n_keep += 1
            continue
        stack[2 * n_pm] = v
        stack[2 * n_pm + 1] = e
        n_pm += 1
        flags[v] = FL_TENT
        if u != bnd:
            flags[u] = FL_TENT
    return n_keep, n_pm


@numba.njit(**_JIT)
def _solve(n_touched, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags, nws,
           slack, touched, heap_key, heap_ver, satq, stack, out_faults):
    """Pre-match, grow, merge, peel and reset, once the events are the first ``n_touched``
    of ``touched``; returns the number of faults written or ``UF_NO_BOUNDARY``."""
    bnd = adj_ptr.shape[0] - 2
    nf = 0
    n_pm = 0
    _first_look(n_touched, adj_ptr, adj, flags, touched, satq)
    if pm_bnd.shape[0] != 0:
        n_touched, n_pm = _prematch(n_touched, adj_ptr, edge_uv, pm_edge, pm_bnd, flags,
                                    touched, satq, stack)
    nh = 0
    for i in range(n_touched):
        c = touched[i]
        nws[c, F_PARITY] = 1
        nws[c, F_HEAD] = c
        nws[c, F_TAIL] = c
        best = np.int64(satq[2 * i + 1])
        nws[c, F_EV] = best
        if best < _INF32:
            nh = _heap_push(heap_key, heap_ver, nh, (best << 32) | c, 0)

    # -- grow: pop the cluster whose next event is due ----------------------------------------
    while nh > 0:
        key = heap_key[0]
        ver = heap_ver[0]
        nh = _heap_pop(heap_key, heap_ver, nh)
        c = np.uint32(key & 0xFFFFFFFF)
        if parent[c] != c or nws[c, F_VER] != ver or flags[c] & FL_GROW == 0:
            continue  # stale: merged, re-queued or neutral since
        t = key >> 32
        best, nsat, n_touched = _scan(c, nws[c, F_HEAD], -1, t, True, adj_ptr, adj, edge_w,
                                      edge_uv,
                                      pm_bnd, parent, flags, nws, slack, touched, n_touched,
                                      satq, 0)
        while nsat > 0:
            tail = nws[c, F_TAIL]
            n_touched, c = _merge_queue(c, t, nsat, adj_ptr, adj, edge_uv, parent, flags, nws,
                                        slack, touched, n_touched, satq)
            if flags[c] & FL_GROW == 0:
                best = _INF
                break
            # only what the cluster gained needs a look: its old part was just scanned (an
            # edge of it that became internal gives an early prediction, which is harmless)
            start = nws[c, F_HEAD] if tail == -1 else nws[tail, F_NEXT]
            best2, nsat, n_touched = _scan(c, start, tail, t, False, adj_ptr, adj, edge_w,
                                           edge_uv,
                                           pm_bnd, parent, flags, nws, slack, touched,
                                           n_touched, satq, 0)
            best = min(best, best2)
        if best < _INF:
            ver = nws[c, F_VER] + 1
            nws[c, F_VER] = ver
            nh = _heap_push(heap_key, heap_ver, nh, ((t + best) << 32) | c, ver)

    # -- pre-matches no cluster ran into are final ----------------------------------------------
    for i in range(n_pm):
        v = stack[2 * i]
        if flags[v] & FL_TENT == 0:
            continue  # materialized: peeled with its cluster
        e = stack[2 * i + 1]
        out_faults[nf] = e
        nf += 1
        flags[edge_uv[e, 0]] = 0
        flags[edge_uv[e, 1]] = 0  # the boundary's flags stay 0 anyway

    # -- peel the forest from its leaves ------------------------------------------------------
    top = 0
    for i in range(n_touched):
        v = touched[i]
        if nws[v, F_DEG] == 1:
            stack[top] = v
            top += 1
    while top > 0:
        top -= 1
        v = stack[top]
        if nws[v, F_DEG] != 1:
            continue
        e = nws[v, F_XEDGE]
        u = _other_end(edge_uv, e, v)
        nws[v, F_DEG] = 0
        if flags[v] & FL_DEFECT:
            out_faults[nf] = e
            nf += 1
            flags[v] &= FL_ALL ^ FL_DEFECT
            if u != bnd:
                flags[u] ^= FL_DEFECT
        if u != bnd:
            nws[u, F_DEG] -= 1
            nws[u, F_XEDGE] ^= e
            if nws[u, F_DEG] == 1:
                stack[top] = u
                top += 1

    # -- reset what this shot touched; an event left unexplained means no solution -------------
    for i in range(n_touched):
        v = touched[i]
        fv = flags[v]
        if fv & FL_DEFECT:
            nf = UF_NO_BOUNDARY
        if fv & FL_WROTE:  # only scanned nodes wrote slack (an edge's, from one of its ends)
            for k in range(adj_ptr[v], adj_ptr[v + 1]):
                slack[adj[3 * k + 1]] = adj[3 * k + 2]
        parent[v] = v
        flags[v] = 0
        for f in range(NWS_FIELDS):
            nws[v, f] = _FRESH_ROW[f]
    return nf


# -- public kernels ---------------------------------------------------------------------------
@numba.njit(**_JIT)
def uf_decode_into(syndrome: Arr, adj_ptr: Arr, adj: Arr, edge_w: Arr, edge_uv: Arr,
                   pm_edge: Arr, pm_bnd: Arr, parent: Arr, flags: Arr, nws: Arr, slack: Arr,
                   touched: Arr, heap_key: Arr, heap_ver: Arr, satq: Arr, stack: Arr,
                   out_faults: Arr) -> int:
    """Decode one shot into ``out_faults``: the single-shot kernel a server loop calls.

    Parameters
    ----------
    syndrome : numpy.ndarray of uint8, shape (D,)
        Detection events, one byte per detector (nonzero = event).
    adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags, nws, slack, touched, \
heap_key, heap_ver, satq, stack
        The tuple from :func:`build_kernel_args` (or ``UnionFindDecoder.kernel_args()``).
    out_faults : numpy.ndarray of int64, shape (>= D + 1,)
        Receives the correction's edge (= fault) ids, in no particular order.

    Returns
    -------
    int
        Number of faults written, or ``UF_NO_BOUNDARY`` (-1).

    Examples
    --------
    A path D0 - D1 with boundary edges at both ends: edges 0=(0,B) 1=(0,1) 2=(1,B).

    >>> args = build_kernel_args(2, np.array([[0, 2], [0, 1], [1, 2]]), np.array([5, 1, 5]))
    >>> out = np.zeros(3, np.int64)
    >>> n = uf_decode_into(np.array([1, 1], np.uint8), *args, out)
    >>> out[:n].tolist()
    [1]
    >>> uf_decode_into(np.array([0, 0], np.uint8), *args, out)
    0
    """
    n_touched = 0
    nd = syndrome.shape[0]
    full = nd & ~7
    for c0 in range(0, nd, 8):
        if c0 < full and _or8_1d(syndrome, c0) == 0:
            continue  # eight quiet detectors at once
        for v in range(c0, min(c0 + 8, nd)):
            if syndrome[v] != 0:
                n_touched = _add_event(flags, v, touched, n_touched)
    if n_touched == 0:
        return 0
    return _solve(n_touched, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags,
                  nws, slack, touched, heap_key, heap_ver, satq, stack, out_faults)


@numba.njit(**_JIT)
def uf_decode_events(events: Arr, n_events: int, adj_ptr: Arr, adj: Arr, edge_w: Arr,
                     edge_uv: Arr, pm_edge: Arr, pm_bnd: Arr, parent: Arr, flags: Arr,
                     nws: Arr, slack: Arr, touched: Arr, heap_key: Arr, heap_ver: Arr,
                     satq: Arr, stack: Arr, out_faults: Arr) -> int:
    """Decode one shot given as a list of detection events: the same as
    :func:`uf_decode_into` on the syndrome with exactly those detectors set, without reading
    a dense syndrome (a caller that already has the events, or decodes a subset of them).

    ``events[:n_events]`` are distinct detector ids; returns as :func:`uf_decode_into`.

    >>> args = build_kernel_args(2, np.array([[0, 2], [0, 1], [1, 2]]), np.array([5, 1, 5]))
    >>> out = np.zeros(3, np.int64)
    >>> n = uf_decode_events(np.array([1, 0], np.int64), 2, *args, out)
    >>> out[:n].tolist()
    [1]
    """
    if n_events == 0:
        return 0
    for i in range(n_events):
        _add_event(flags, events[i], touched, i)
    return _solve(n_events, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags,
                  nws, slack, touched, heap_key, heap_ver, satq, stack, out_faults)


@numba.njit(**_JIT)
def uf_decode_batch(dets: Arr, adj_ptr: Arr, adj: Arr, edge_w: Arr, edge_uv: Arr, pm_edge: Arr,
                    pm_bnd: Arr, parent: Arr, flags: Arr, nws: Arr, slack: Arr, touched: Arr,
                    heap_key: Arr, heap_ver: Arr, satq: Arr, stack: Arr, out_faults: Arr,
                    obs_dense: Arr, out: Arr) -> int:
    """Decode unpacked shots: ``dets`` uint8 (shots, D) -> ``out`` uint8 (shots, O), XOR-ed in.

    ``obs_dense`` is uint8 (E, O), 1 where edge ``e`` flips observable ``j``. ``out`` must be
    zero on entry. Returns the index of the first shot with no explanation
    (``UF_NO_BOUNDARY``), or -1 when every shot decoded; later shots are still decoded.

    >>> args = build_kernel_args(2, np.array([[0, 2], [0, 1], [1, 2]]), np.array([5, 1, 5]))
    >>> obs = np.array([[1], [0], [0]], np.uint8)  # edge 0 flips L0
    >>> out = np.zeros((2, 1), np.uint8)
    >>> uf_decode_batch(np.array([[1, 1], [1, 0]], np.uint8), *args, np.zeros(3, np.int64),
    ...                 obs, out)
    -1
    >>> out[:, 0].tolist()
    [0, 1]
    """
    bad = -1
    nobs = obs_dense.shape[1]
    ndet = dets.shape[1]
    full = ndet & ~7
    for s in range(dets.shape[0]):
        n_touched = 0
        for c0 in range(0, ndet, 8):
            if c0 < full and _or8(dets, s, c0) == 0:
                continue  # eight quiet detectors at once: most of a low-p shot
            for v in range(c0, min(c0 + 8, ndet)):
                if dets[s, v] != 0:
                    n_touched = _add_event(flags, v, touched, n_touched)
        if n_touched == 0:
            continue
        nf = _solve(n_touched, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags,
                    nws, slack, touched, heap_key, heap_ver, satq, stack, out_faults)
        if nf < 0:
            if bad < 0:
                bad = s
            continue
        for i in range(nf):
            e = out_faults[i]
            for j in range(nobs):
                out[s, j] ^= obs_dense[e, j]
    return bad


@numba.njit(**_JIT)
def uf_decode_batch_packed(packed: Arr, num_detectors: int, adj_ptr: Arr, adj: Arr,
                           edge_w: Arr, edge_uv: Arr, pm_edge: Arr, pm_bnd: Arr, parent: Arr,
                           flags: Arr, nws: Arr, slack: Arr, touched: Arr, heap_key: Arr,
                           heap_ver: Arr, satq: Arr, stack: Arr, out_faults: Arr,
                           obs_packed: Arr, out: Arr) -> int:
    """Decode bit-packed shots (stim's little bit order) into bit-packed predictions.

    ``packed`` uint8 (shots, ceil(D/8)); ``obs_packed`` uint8 (E, ceil(O/8)) the packed
    observable mask of each edge; ``out`` uint8 (shots, ceil(O/8)), zero on entry. Bits at or
    beyond ``num_detectors`` in the last byte are ignored. Returns as
    :func:`uf_decode_batch`.

    >>> args = build_kernel_args(2, np.array([[0, 2], [0, 1], [1, 2]]), np.array([5, 1, 5]))
    >>> out = np.zeros((2, 1), np.uint8)
    >>> uf_decode_batch_packed(np.array([[0b11], [0b01]], np.uint8), 2, *args,
    ...                        np.zeros(3, np.int64), np.array([[1], [0], [0]], np.uint8), out)
    -1
    >>> out[:, 0].tolist()
    [0, 1]
    """
    bad = -1
    nob = obs_packed.shape[1]
    nbytes = packed.shape[1]
    full = nbytes & ~7
    for s in range(packed.shape[0]):
        n_touched = 0
        for c0 in range(0, nbytes, 8):
            # 64 detectors at a time, little-endian as stim packs them; most words are 0
            word = np.uint64(0)
            if c0 < full:
                word = _load8(packed, s, c0)
            else:
                for byte in range(c0, nbytes):
                    word |= np.uint64(packed[s, byte]) << np.uint64(8 * (byte - c0))
            while word != 0:
                v = 8 * c0 + np.int64(trailing_zeros(word))
                word &= word - np.uint64(1)
                if v < num_detectors:
                    n_touched = _add_event(flags, v, touched, n_touched)
        if n_touched == 0:
            continue
        nf = _solve(n_touched, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd, parent, flags,
                    nws, slack, touched, heap_key, heap_ver, satq, stack, out_faults)
        if nf < 0:
            if bad < 0:
                bad = s
            continue
        for i in range(nf):
            e = out_faults[i]
            for j in range(nob):
                out[s, j] ^= obs_packed[e, j]
    return bad
