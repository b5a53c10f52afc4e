"""The ``pymatching`` backend's window decoder for the compiled stream: Numba up to the
PyMatching call and after it (see :mod:`qecd.decoder.compiled_stream`).

PyMatching is C++ behind Python, so a loop leaves Numba for the window decode only
(``WINDOW_DUE``). The kernel :func:`_prepare` lists the window's detection events (its
detector ids, uint64) in a preallocated buffer; :class:`HostDecode` hands a preallocated
view of it to PyMatching's own binding (``Matching._matching_graph.decode_to_edges_array``,
which takes detection events: no syndrome array, no ``nonzero`` on the way in); the
kernel :func:`_lines_from_edges` maps the matched edges (boundary = -1) to the template's
DEM error lines through a per-template adjacency table. Nothing of ours is allocated per
window; PyMatching allocates its result array. An all-zero window never leaves Numba.

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> exp = build_experiment("surface:d=3,r=6,p=0.02")
>>> sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=4, commit=2)
>>> cs = sd.compile()
>>> cs.decodes_on_host
True
>>> dets, _ = exp.sample(40, seed=2)
>>> bool((cs.decode_batch(dets) == sd.decode_batch(dets)).all())
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numba
import numpy as np
import stim

from qecd import _jit

_jit.invalidate_if_changed(__file__, [], __name__)

from qecd.decoder.compiled_stream import WINDOW_DUE, CompiledWindows, templates_of  # noqa: E402
from qecd.decoder.plan import WindowPlan  # noqa: E402
from qecd.decoder.pymatching_backend import PyMatchingDecoder  # noqa: E402


@numba.njit(**_jit.KERNEL)
def _prepare(p, k, syn, n_det, out_lines):
    ne = 0
    events = p.events
    for i in range(n_det):
        if syn[i]:
            events[ne] = i
            ne += 1
    if ne == 0:
        return 0  # nothing to match
    p.due[0] = ne
    p.due[1] = k
    return WINDOW_DUE


@numba.njit(**_jit.KERNEL)
def _lines_from_edges(p, k, edges, out_lines):
    base = p.node_off[k]
    if edges.shape[0] > out_lines.shape[0]:
        return -1
    for j in range(edges.shape[0]):
        u = edges[j, 0]
        v = edges[j, 1]
        if u < 0:
            u, v = v, u
        line = -1
        for q in range(p.adj_ptr[base + u], p.adj_ptr[base + u + 1]):
            if p.adj_nbr[q] == v:
                line = p.adj_line[q]
                break
        if line < 0:
            return -1
        out_lines[j] = line
    return edges.shape[0]


class PmWindows(NamedTuple):
    """The window decoder's arrays (the Numba argument)."""

    due: np.ndarray  #: int64 (2,): detection events of the window due, its template
    events: np.ndarray  #: uint64: those events (window detector ids)
    node_off: np.ndarray  #: int64 per template: its first node in ``adj_ptr``
    adj_ptr: np.ndarray  #: int64 CSR over every template's detectors of ...
    adj_nbr: np.ndarray  #: ... the other end of each edge (-1: the boundary) and ...
    adj_line: np.ndarray  #: ... the template DEM error line of that edge

    decode_window = _prepare
    lines_from_host = _lines_from_edges


class HostDecode:
    """``host_decode()``: the due window through PyMatching, from preallocated views."""

    def __init__(self, arrays: PmWindows, decoders: list) -> None:
        self._arrays, self._decoders = arrays, tuple(decoders)
        self._bind()

    def _bind(self) -> None:
        arrays = self._arrays
        self._due = arrays.due
        self._decode = tuple(d.matching._matching_graph.decode_to_edges_array
                             for d in self._decoders)
        self._views = tuple(arrays.events[:n] for n in range(arrays.events.shape[0] + 1))

    def __getstate__(self) -> dict:
        # PyMatching's graphs and their bound methods do not pickle; the decoders do (as
        # edge arrays) and the arrays are the plan's own (one pickle keeps them shared)
        return {"_arrays": self._arrays, "_decoders": self._decoders}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()

    def __call__(self) -> np.ndarray:
        due = self._due
        return self._decode[due.item(1)](self._views[due.item(0)])

    def example(self) -> np.ndarray:
        """What a window without detection events returns (no edges)."""
        return self._decode[0](self._views[0])


def compile_pymatching_windows(plan: WindowPlan, built: Mapping[str, object] | None = None
                               ) -> CompiledWindows | None:
    """The PyMatching window decoder of a graph-like ``plan``, or None when this PyMatching
    has no detection-event binding (the stream then decodes from Python).

    ``built`` maps window template texts to PyMatching decoders already built for them (a
    :class:`~qecd.decoder.window.StreamDecoder`'s own, :attr:`window_decoders`): those are
    shared rather than built again, so a plan holds one PyMatching graph per template, and a
    process receiving it pickled rebuilds each graph once."""
    built = built or {}
    decoders = []
    for t in templates_of(plan):
        d = built.get(t)
        decoders.append(d if isinstance(d, PyMatchingDecoder)
                        else PyMatchingDecoder.from_dem(stim.DetectorErrorModel(t)))
    graphs = [getattr(d.matching, "_matching_graph", None) for d in decoders]
    if any(not hasattr(g, "decode_to_edges_array") for g in graphs):
        return None
    node_off = np.zeros(len(decoders) + 1, np.int64)
    ptr, nbr, line = [np.zeros(1, np.int64)], [], []
    for k, d in enumerate(decoders):
        f = d.faults
        nd = f.num_detectors
        node_off[k + 1] = node_off[k] + nd
        sizes = np.diff(f.det_indptr)
        real = np.flatnonzero(sizes >= 1)  # (an edge without detectors is never matched)
        start = f.det_indptr[:-1][real]
        u = f.det_indices[start].astype(np.int64)
        v = np.where(sizes[real] == 2,
                     f.det_indices[np.minimum(start + 1, len(f.det_indices) - 1)], -1)
        dem_index = f.dem_index[real]
        ends = np.concatenate([u, v[v >= 0]])  # each edge listed at both its detectors
        others = np.concatenate([v, u[v >= 0]])
        lines = np.concatenate([dem_index, dem_index[v >= 0]]).astype(np.int64)
        order = np.argsort(ends, kind="stable")
        counts = np.bincount(ends, minlength=nd)
        ptr.append(ptr[-1][-1] + np.cumsum(counts))
        nbr.append(others[order].astype(np.int64))
        line.append(lines[order])
    max_det = max(1, max(len(w.det_ids) for w in plan.windows))
    arrays = PmWindows(np.zeros(2, np.int64), np.zeros(max_det, np.uint64), node_off,
                       np.concatenate(ptr).astype(np.int64),
                       np.concatenate(nbr + [np.zeros(0, np.int64)]),
                       np.concatenate(line + [np.zeros(0, np.int64)]))
    max_edges = max(1, max(d.faults.num_faults for d in decoders))
    return CompiledWindows(arrays, max_edges, PyMatchingDecoder.name,
                           "no perfect matching: odd parity on a part of the matching graph "
                           "that has no boundary", tuple(decoders),
                           HostDecode(arrays, decoders))
