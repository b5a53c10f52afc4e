"""The ``bp-cluster`` backend's compiled window decoder (see :mod:`qecd.decoder.compiled_stream`).

A thin layer over :mod:`qecd.decoder._bp_kernels`: template ``k`` (a distinct window problem)
is decoded by :func:`~qecd.decoder._bp_kernels.decode_shot` on that template's own
:class:`~qecd.decoder.bp_cluster.BpClusterDecoder` graph and parameters, exactly as the
Python :class:`~qecd.decoder.window.StreamDecoder` decodes it, with a workspace of its own
made here (BP's cost follows the window's size, so templates are not merged into one graph
as union-find's are). The per-template tuples are homogeneous, so Numba indexes them with
the template number at run time; their DEM error lines come from each template's fault
table (``dem_index``). The tuples always hold :data:`SLOTS` entries (unused ones repeat
template 0), so every plan has the same Numba type and the stream kernels compile once,
not once per template count (a minute each on a loaded 2-CPU machine); a plan with more
distinct windows is decoded from Python.

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.plan import WindowPlan
>>> exp = build_experiment("bb:n=72,r=4,p=0.002")
>>> plan = WindowPlan.build(exp.dem, exp.layout, graph_like=False, window=2, commit=1)
>>> cw = compile_bp_windows(plan, max_iter=5)
>>> cw.backend, len(cw.decoders), len(cw.arrays.graphs) == SLOTS
('bp-cluster', 2, True)
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import stim

from qecd import _jit
from qecd.decoder import _bp_kernels

_jit.invalidate_if_changed(__file__, [_bp_kernels.__file__], __name__)

from qecd.decoder._bp_kernels import decode_shot  # noqa: E402
from qecd.decoder.bp_cluster import NOT_EXPLAINED, BpClusterDecoder  # noqa: E402
from qecd.decoder.compiled_stream import CompiledWindows, templates_of  # noqa: E402
from qecd.decoder.plan import WindowPlan  # noqa: E402


@numba.njit(**_jit.KERNEL)
def _decode_window(b, k, syn, n_det, out_lines):
    n = decode_shot(syn[:n_det], out_lines, b.graphs[k], b.params[k], b.workspaces[k])
    if n < 0:
        return -1
    dem_index = b.dem_index[k]
    for j in range(n):
        out_lines[j] = dem_index[out_lines[j]]
    return n


class BpWindows(NamedTuple):
    """One entry per template (the compiled window decoder's Numba argument)."""

    graphs: tuple  #: each template decoder's ``graph`` (:mod:`qecd.decoder._bp_kernels`)
    params: tuple  #: ... its ``params``
    workspaces: tuple  #: ... a workspace of this compiled stream's own
    dem_index: tuple  #: ... its fault -> template DEM error line (int64)

    decode_window = _decode_window


#: template slots of :class:`BpWindows` (first, bulk and last windows need 3 or 4)
SLOTS = 8


def compile_bp_windows(plan: WindowPlan, **options: object) -> CompiledWindows | None:
    """The BP + cluster window decoder of ``plan`` (``options``: those of
    :class:`~qecd.decoder.bp_cluster.BpClusterOptions`, as the stream's backend options),
    or None when the plan has more than :data:`SLOTS` distinct windows."""
    templates = templates_of(plan)
    if len(templates) > SLOTS:
        return None
    decoders = tuple(BpClusterDecoder.from_dem(stim.DetectorErrorModel(t), **options)
                     for t in templates)
    args = [d.kernel_args(fresh_workspace=True) for d in decoders]
    pad = [0] * (SLOTS - len(args))
    slots = list(range(len(args))) + pad

    def each(get):
        return tuple(get(k) for k in slots)

    arrays = BpWindows(each(lambda k: args[k][0]), each(lambda k: args[k][1]),
                       each(lambda k: args[k][2]),
                       each(lambda k: np.ascontiguousarray(decoders[k].faults.dem_index,
                                                           dtype=np.int64)))
    return CompiledWindows(arrays, max(d.faults.num_faults for d in decoders),
                           BpClusterDecoder.name, f"the syndrome {NOT_EXPLAINED}", decoders)
