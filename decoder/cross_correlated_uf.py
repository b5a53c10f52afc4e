"""The ``uf-xcorr`` backend: correlated union-find in one pass per detector, ordered by what
the observables depend on.

A circuit-level CSS memory DEM, decomposed into matching-graph edges, falls into connected
components that share no edge: in the surface code one of X-type detectors and one of Z-type
detectors. Only the components whose edges flip an observable decide the prediction; the
others are still evidence. A Y error fires an edge in each kind of component, and each DEM
error ``h = A ^ B`` makes its components correlated: once ``A`` is in the correction, ``B``
is far more likely than its marginal probability says. The decoder

1. decodes the events of the components that flip no observable with plain weighted
   union-find (:mod:`qecd.decoder._uf_kernels`);
2. for each edge ``e`` of that correction and each DEM error ``h`` with ``e`` among its
   components, lowers the weight of ``h``'s other components ``g`` that lie in an
   observable's component to ``log((1 - q) / q)``, ``q = min(p_h / p_e, 1/2)``, where that
   is lower than ``g``'s own weight (the table of :func:`~qecd.decoder.correlated_uf.\
correlation_table`);
3. decodes the events of the observables' components once, with those weights, then
   restores them. Pre-matching uses the tables proven for the DEM's own weights
   (:func:`~qecd.decoder._uf_kernels.prematch_tables`), so this step is union-find on the
   lowered weights except that such isolated pairs are still matched directly; turning it
   off near lowered edges, as ``uf-corr`` does, changed 1 failure in 30,000 shots at d = 5,
   p = 0.3% (130 against 129) and none in 20,000 at d = 7, p = 0.5%, at 20% more time.
   ``prematch=False`` gives exact union-find on the lowered weights.

Every detector's events are decoded exactly once, so the cost is plain union-find's plus
the re-weighting, where the two-pass correlated union-find (``uf-corr``) decodes every event
twice. What it gives up: correlations *inside* an observable's component (hook errors of
one stabilizer type). Measured on circuit-level surface codes (docs/accuracy.md) that costs
nothing measurable; the evidence that pays is across the two kinds of detectors.

A DEM whose components all flip an observable (or none does), or one without ``^``
decompositions (a sliding window's DEMs), decodes exactly as ``uf``. The result always
reproduces the syndrome (both steps are union-find's over disjoint components).

Example
-------
>>> import numpy as np, stim
>>> from qecd.decoder import make_decoder
>>> c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=3,
...                            after_clifford_depolarization=0.01)
>>> dec = make_decoder("uf-xcorr", c.detector_error_model(decompose_errors=True))
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
from qecd.decoder.correlated_uf import correlation_table
from qecd.decoder.union_find import (
    DEFAULT_WEIGHT_RESOLUTION,
    PackedCoreRunner,
    UnionFindDecoder,
)

_jit.invalidate_if_changed(__file__, [_k.__file__], __name__)

__all__ = ["CrossCorrelatedUnionFindDecoder", "observable_components"]

_JIT = _jit.KERNEL


def observable_components(num_detectors: int, edge_uv: np.ndarray,
                          obs_mask: np.ndarray) -> np.ndarray:
    """Which detectors lie in a connected component of the matching graph (the boundary
    node joins nothing) with an edge that flips some observable.

    Parameters
    ----------
    num_detectors : int
    edge_uv : numpy.ndarray of int, shape (E, 2)
        Edge ends; a boundary edge ends at ``num_detectors``.
    obs_mask : numpy.ndarray of uint8, shape (E, O)

    Returns
    -------
    numpy.ndarray of uint8, shape (num_detectors,)
        1 for detectors of an observable's component.

    Examples
    --------
    >>> observable_components(4, np.array([[0, 1], [1, 4], [2, 3]]),
    ...                       np.array([[0], [1], [0]], np.uint8)).tolist()
    [1, 1, 0, 0]
    """
    nd = num_detectors
    uv = np.asarray(edge_uv, np.int64).reshape(-1, 2)
    if nd == 0 or uv.shape[0] == 0:
        return np.zeros(nd, np.uint8)
    parent = np.arange(nd + 1)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in uv:
        if b < nd:
            ra, rb = find(int(a)), find(int(b))
            if ra != rb:
                parent[ra] = rb
    roots = np.array([find(x) for x in range(nd)], np.int64)
    flips = np.asarray(obs_mask).reshape(uv.shape[0], -1).any(axis=1)
    hot = np.zeros(nd + 1, bool)
    hot[roots[uv[flips, 0]]] = True
    return hot[roots].astype(np.uint8)


@numba.njit(**_jit.INLINE)
def _set_weight(g, w, edge_w, slack, adj, adj_pos):
    """Give edge ``g`` weight ``w`` everywhere the kernels read it (its slack is fresh)."""
    edge_w[g] = w
    slack[g] = w
    adj[adj_pos[g, 0] + 2] = w
    if adj_pos[g, 1] >= 0:
        adj[adj_pos[g, 1] + 2] = w


@numba.njit(**_jit.INLINE)
def xcuf_decode_events(events, n_events, relevant, ev_b, graph, ws, out_faults, corr):
    """One shot (module docs, steps 1-3). ``events[:n_events]`` are the shot's detection
    events (reordered in place); ``ev_b`` is scratch of the same size. Writes step 1's faults
    and then step 3's into ``out_faults``; returns ``(faults written, index of step 3's
    first)`` or ``(UF_NO_BOUNDARY, 0)``."""
    adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd = graph
    parent, flags, nws, slack, touched, heap_key, heap_ver, satq, stack = ws
    corr_ptr, corr_edge, corr_w, adj_pos, mod_edge, mod_old = corr
    na = 0
    nb = 0
    for i in range(n_events):  # split in place: evidence first, then the observables' events
        v = events[i]
        if relevant[v]:
            ev_b[nb] = v
            nb += 1
        else:
            events[na] = v
            na += 1
    n1 = 0
    if na > 0:
        n1 = _k.uf_decode_events(events, na, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd,
                                 parent, flags, nws, slack, touched, heap_key, heap_ver,
                                 satq, stack, out_faults)
        if n1 < 0:
            return n1, 0
    if nb == 0:
        return n1, n1
    nmod = 0
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
    n2 = _k.uf_decode_events(ev_b, nb, adj_ptr, adj, edge_w, edge_uv, pm_edge, pm_bnd,
                             parent, flags, nws, slack, touched, heap_key, heap_ver, satq,
                             stack, out_faults[n1:])
    for j in range(nmod - 1, -1, -1):  # reverse: an edge lowered twice ends at its original
        _set_weight(mod_edge[j], mod_old[j], edge_w, slack, adj, adj_pos)
    if n2 < 0:
        return n2, 0
    return n1 + n2, n1


@numba.njit(**_JIT)
def xcuf_decode_batch_packed(packed, num_detectors, events, ev_b, relevant, graph, ws,
                             out_faults, corr, obs_packed, out):
    """Bit-packed shots (stim's little bit order) in, bit-packed observable flips XOR-ed
    into ``out`` (zero on entry); returns the first shot with no solution, or -1 (later
    shots are still decoded)."""
    bad = -1
    nob = out.shape[1]
    nbytes = packed.shape[1]
    full = nbytes & ~7
    for s in range(packed.shape[0]):
        ne = 0
        for c0 in range(0, nbytes, 8):  # 64 detectors at a time; most words are 0
            word = np.uint64(0)
            if c0 < full:
                word = _k._load8(packed, s, c0)
            else:
                for byte in range(c0, nbytes):
                    word |= np.uint64(packed[s, byte]) << np.uint64(8 * (byte - c0))
            while word != 0:
                v = 8 * c0 + np.int64(trailing_zeros(word))
                word &= word - np.uint64(1)
                if v < num_detectors:
                    events[ne] = v
                    ne += 1
        if ne == 0:
            continue
        n, start = xcuf_decode_events(events, ne, relevant, ev_b, graph, ws, out_faults, corr)
        if n < 0:
            if bad < 0:
                bad = s
            continue
        for i in range(start, n):  # only step 3's faults can flip an observable
            f = out_faults[i]
            for ob in range(nob):
                out[s, ob] ^= obs_packed[f, ob]
    return bad
class CrossCorrelatedUnionFindDecoder(PackedCoreRunner, UnionFindDecoder):
    """Correlated union-find with one pass per detector (module docs).

    Parameters
    ----------
    dem : stim.DetectorErrorModel
        Graph-like after decomposition (``decompose_errors=True``); the ``^`` decompositions
        are what correlates the components.
    weight_resolution, prematch
        As ``uf`` (:class:`~qecd.decoder.union_find.UnionFindDecoder`). Step 3 pre-matches
        with the tables proven for the DEM's own weights; ``prematch=False`` makes it exactly
        union-find on the lowered weights.

    Examples
    --------
    One error ``D0 ^ D1 D2 L0`` joins the evidence component ``{D0}`` to the observable's
    component ``{D1, D2}``. With events at D1 alone, its own boundary edge explains it best
    (no flip); with D0's event too, the correlated edge ``D1 D2 L0`` becomes likely and the
    prediction flips L0 (plain ``uf`` and ``pymatching`` say 0 for both).

    >>> import numpy as np, stim
    >>> dem = stim.DetectorErrorModel('''
    ...     error(0.001) D0
    ...     error(0.01) D0 ^ D1 D2 L0
    ...     error(0.02) D1
    ...     error(0.4) D2
    ... ''')
    >>> dec = CrossCorrelatedUnionFindDecoder.from_dem(dem)
    >>> dec.decode(np.array([0, 1, 0], np.uint8)).tolist()
    [0]
    >>> dec.decode(np.array([1, 1, 0], np.uint8)).tolist()
    [1]
    """

    name = "uf-xcorr"
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
        nd = self.num_detectors
        ne = self.faults.num_faults
        relevant = observable_components(nd, self.edge_uv, self.faults.obs_mask)
        ptr, edge, wts = correlation_table(dem, self.faults, weight_resolution)
        # keep only what step 2 uses: from an evidence edge to an observable-component edge
        src = np.repeat(np.arange(ne), np.diff(ptr))
        keep = ((relevant[self.edge_uv[src, 0]] == 0) & (relevant[self.edge_uv[edge, 0]] == 1)
                if edge.size else np.zeros(0, bool))
        ptr = np.zeros(ne + 1, np.int64)
        ptr[1:] = np.cumsum(np.bincount(src[keep], minlength=ne))
        edge, wts = edge[keep].astype(np.int64), wts[keep].astype(np.int32)
        adj = self._args[1]
        adj_pos = np.full((max(ne, 1), 2), -1, np.int64)
        for k in range(len(adj) // 3):  # where each edge's weight sits in the adjacency rows
            e = int(adj[3 * k + 1])
            adj_pos[e, 0 if adj_pos[e, 0] < 0 else 1] = 3 * k
        self.relevant = relevant
        self.correlated_pairs = len(edge)
        self._corr = (ptr, edge, wts, adj_pos, np.zeros(len(edge) + 1, np.int64),
                      np.zeros(len(edge) + 1, np.int32))
        self._events = np.zeros(max(nd, 1), np.int64)
        self._ev_b = np.zeros(max(nd, 1), np.int64)
        self._out2 = np.zeros(2 * (nd + 1), np.int64)
        self._warm_up()

    def _warm_up(self) -> None:
        if self._corr is not None:
            super()._warm_up()

    def _run_packed_core(self, packed: np.ndarray) -> np.ndarray:
        nob = (self.num_observables + 7) // 8
        out = np.zeros((packed.shape[0], max(1, nob)), np.uint8)
        a = self._args
        bad = xcuf_decode_batch_packed(packed, self.num_detectors, self._events, self._ev_b,
                                       self.relevant, a[:6], a[6:], self._out2, self._corr,
                                       self._obs_packed_1, out)
        if bad >= 0:
            raise self._no_solution(bad)
        return out[:, :nob]

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Fault ids (int64, sorted): step 1's correction and step 3's together."""
        s = np.ascontiguousarray(self._check_syndrome(syndrome))
        ev = np.flatnonzero(s).astype(np.int64)
        if ev.size == 0:
            return np.zeros(0, np.int64)
        a = self._args
        n, _ = xcuf_decode_events(ev, ev.size, self.relevant, self._ev_b, a[:6], a[6:],
                                  self._out2, self._corr)
        if n < 0:
            raise self._no_solution(0)
        return np.sort(self._out2[:n])
