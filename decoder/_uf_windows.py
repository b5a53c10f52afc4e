"""The ``uf`` backend's compiled window decoder (see :mod:`qecd.decoder.compiled_stream`).

Every distinct window problem (first, bulk, last...) becomes one component of a single
*union* matching graph (their disjoint union, detectors offset), decoded by one
:class:`~qecd.decoder.union_find.UnionFindDecoder`: decoding template ``k`` writes its
syndrome into its component's detectors only, so union-find touches nothing else and costs
what the window alone would.

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.plan import WindowPlan
>>> exp = build_experiment("surface:d=3,r=9,p=0.01")
>>> plan = WindowPlan.build(exp.dem, exp.layout, graph_like=True, window=6, commit=3)
>>> cw = compile_uf_windows(plan)
>>> cw.backend, len(cw.arrays.tmpl_det_off)   # first, bulk and last windows
('uf', 3)
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import stim

from qecd import _jit
from qecd.decoder import _uf_kernels

_jit.invalidate_if_changed(__file__, [_uf_kernels.__file__], __name__)

from qecd.decoder._uf_kernels import _add_event, _solve  # noqa: E402
from qecd.decoder.compiled_stream import CompiledWindows, templates_of  # noqa: E402
from qecd.decoder.plan import WindowPlan  # noqa: E402
from qecd.decoder.union_find import UnionFindDecoder  # noqa: E402
from qecd.errors import DecoderError  # noqa: E402


@numba.njit(**_jit.KERNEL)
def _decode_window(u, k, syn, n_det, out_lines):
    # the window's detection events go straight to union-find's solver, in increasing union
    # detector order as uf_decode_into would find them in a dense syndrome (no union
    # syndrome to fill and clear, no solver call at all for a quiet window)
    base = u.tmpl_det_off[k]
    flags = u.uf_args[7]
    touched = u.uf_args[10]
    n_touched = 0
    for i in range(n_det):
        if syn[i]:
            n_touched = _add_event(flags, base + i, touched, n_touched)
    return _solve_lines(u, k, n_touched, out_lines)


@numba.njit(**_jit.KERNEL)
def _decode_window_events(u, k, events, n_events, out_lines):
    # the events as the engine kept them (window indices, increasing): no syndrome to scan
    base = u.tmpl_det_off[k]
    flags = u.uf_args[7]
    touched = u.uf_args[10]
    for i in range(n_events):
        _add_event(flags, base + events[i], touched, i)
    return _solve_lines(u, k, n_events, out_lines)


@numba.njit(**_jit.INLINE)
def _solve_lines(u, k, n_touched, out_lines):
    """Solve the events marked in ``touched[:n_touched]``; template ``k``'s lines of the
    chosen faults into ``out_lines``; their count, or -1."""
    if n_touched == 0:
        return 0
    n = _solve(n_touched, *u.uf_args, u.uf_out)
    if n < 0:
        return -1
    line0 = u.tmpl_line_off[k]
    for j in range(n):
        out_lines[j] = u.union_dem_index[u.uf_out[j]] - line0
    return n


class UfWindows(NamedTuple):
    """The union decoder's arrays (the compiled window decoder's Numba argument)."""

    tmpl_det_off: np.ndarray  #: first detector of each template in the union decoder
    tmpl_line_off: np.ndarray  #: first error line of each template in the union decoder
    union_syn: np.ndarray  #: the union decoder's dense syndrome (unused: events go to the solver)
    union_dem_index: np.ndarray  #: union decoder fault -> its DEM line
    uf_out: np.ndarray  #: scratch: faults the union-find returns
    uf_args: tuple  #: :meth:`UnionFindDecoder.kernel_args` of the union decoder

    decode_window = _decode_window
    decode_window_events = _decode_window_events


def compile_uf_windows(plan: WindowPlan, **uf_options: object) -> CompiledWindows:
    """The union-find window decoder of a graph-like ``plan`` (``uf_options`` go to
    :class:`~qecd.decoder.union_find.UnionFindDecoder`: ``weight_resolution``,
    ``prematch``)."""
    f = plan.faults
    if len(f.det_indptr) > 1 and int(np.diff(f.det_indptr).max()) > 2:
        raise DecoderError("uf compiles graph-like plans; this plan has a fault flipping "
                           f"{int(np.diff(f.det_indptr).max())} detectors")
    tmpl_dems = [stim.DetectorErrorModel(t) for t in templates_of(plan)]
    det_off = np.zeros(len(tmpl_dems) + 1, dtype=np.int64)
    line_off = np.zeros(len(tmpl_dems) + 1, dtype=np.int64)
    lines: list[str] = []
    for k, dem in enumerate(tmpl_dems):
        det_off[k + 1] = det_off[k] + dem.num_detectors
        n_lines = 0
        for inst in dem.flattened():
            if inst.type != "error":
                continue
            targets = []
            for t in inst.targets_copy():
                if t.is_relative_detector_id():
                    targets.append(f"D{t.val + det_off[k]}")
                elif t.is_logical_observable_id():
                    targets.append(f"L{t.val}")
            lines.append(f"error({inst.args_copy()[0]!r}) " + " ".join(targets))
            n_lines += 1
        line_off[k + 1] = line_off[k] + n_lines
    header = f"detector D{int(det_off[-1]) - 1}\n" + "".join(
        f"logical_observable L{o}\n" for o in range(plan.num_observables))
    union = UnionFindDecoder.from_dem(stim.DetectorErrorModel(header + "\n".join(lines)),
                                      **uf_options)
    arrays = UfWindows(det_off[:-1].copy(), line_off,
                       np.zeros(int(det_off[-1]), dtype=np.uint8),
                       union.faults.dem_index.astype(np.int64),
                       np.zeros(int(det_off[-1]) + 1, dtype=np.int64),
                       union.kernel_args())
    # a union-find correction is a forest over the union's nodes: at most one edge per node
    return CompiledWindows(arrays, int(det_off[-1]) + 1, UnionFindDecoder.name,
                           "odd parity on a connected component of the matching graph "
                           "that has no boundary edge", (union,))
