"""A stream decoder compiled end to end: the sliding window of :mod:`qecd.decoder.window`
with the ``uf`` backend, as Numba kernels over flat arrays (no Python per round).

A :class:`~qecd.decoder.plan.WindowPlan` describes the windows of a shot; this module
flattens that plan. Every distinct window problem (first, bulk, last...) becomes one
component of a single *union* matching graph (their disjoint union, detectors offset), decoded
by one :class:`~qecd.decoder.union_find.UnionFindDecoder`: decoding window ``w`` writes its
syndrome into its component's detectors only, so union-find touches nothing else and costs
what the window alone would. Committing, the carry across the boundary and the observable
flips are done by :func:`push_round_kernel`, which a server loop (the shared-memory ring
server) calls directly from Numba.

Per round the kernel stores the round's bits (bit-packed, stim order, or one byte per
detector) into the shot buffer; when the round completes a window it decodes and commits.
Nothing is allocated: every buffer is made here, at construction, with the kernel compiled
and warmed.

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> exp = build_experiment("surface:d=3,r=9,p=0.01")
>>> sd = StreamDecoder(exp.dem, exp.layout, "uf", window=6, commit=3)
>>> cs = CompiledStream(sd.plan)
>>> dets, obs = exp.sample(50, seed=3)
>>> bool((cs.decode_batch(dets) == sd.decode_batch(dets)).all())
True
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import stim

from qecd import _jit
from qecd.decoder import _uf_kernels

_jit.invalidate_if_changed(__file__, [_uf_kernels.__file__], __name__)

# the solver uf_decode_into runs once it has found the events (same kernels, same order)
from qecd.decoder._uf_kernels import _add_event, _solve  # noqa: E402
from qecd.decoder.plan import WindowPlan  # noqa: E402
from qecd.decoder.union_find import UnionFindDecoder  # noqa: E402
from qecd.decoder.window import Correction, ShotDecoding  # noqa: E402
from qecd.errors import DecoderError  # noqa: E402

_JIT = _jit.KERNEL

#: push_round_kernel return codes (>= 0: a correction with that many committed faults)
NO_CORRECTION = -1
NO_SOLUTION = -2


@numba.njit(**_jit.INLINE)
def _decode_window(w, shot_bits, carry, out_obs, out_faults_committed,
                   win_commit_stop, win_tmpl, win_det_ptr, win_dets, win_l2g_ptr, win_l2g,
                   tmpl_det_off, tmpl_line_off, layout_pos, round_of, fault_first_round,
                   fault_det_ptr, fault_dets, fault_obs, fault_dem_index,
                   union_syn, union_dem_index, uf_out, uf_args):
    # The window's detection events go straight to union-find's solver, in increasing union
    # detector order as uf_decode_into would find them in a dense syndrome: no syndrome
    # array to fill, scan and clear (union_syn stays zero), and no solver call at all for a
    # quiet window.
    k = win_tmpl[w]
    base = tmpl_det_off[k]
    p0 = win_det_ptr[w]
    n_det = win_det_ptr[w + 1] - p0
    flags = uf_args[7]
    touched = uf_args[10]
    n_touched = 0
    for i in range(n_det):
        d = win_dets[p0 + i]
        if shot_bits[layout_pos[d]] != carry[d]:
            n_touched = _add_event(flags, base + i, touched, n_touched)
    n = 0
    if n_touched > 0:
        n = _solve(n_touched, *uf_args, uf_out)
    if n < 0:
        return NO_SOLUTION
    commit_stop = win_commit_stop[w]
    line0 = tmpl_line_off[k]
    l2g0 = win_l2g_ptr[w]
    n_obs = out_obs.shape[0]
    for j in range(n_obs):
        out_obs[j] = 0
    m = 0
    for j in range(n):
        g = win_l2g[l2g0 + union_dem_index[uf_out[j]] - line0]
        if fault_first_round[g] >= commit_stop:
            continue
        for o in range(n_obs):
            out_obs[o] ^= fault_obs[g, o]
        for q in range(fault_det_ptr[g], fault_det_ptr[g + 1]):
            d = fault_dets[q]
            if round_of[d] >= commit_stop:
                carry[d] ^= 1
        out_faults_committed[m] = fault_dem_index[g]
        m += 1
    return m


@numba.njit(**_jit.INLINE)
def store_round(bits, o, packed, st, shot_bits, round_offsets, trigger):
    """Store the stream's next round from ``bits[o:]`` (bit-packed in stim's little bit order
    when ``packed``, else one byte per detector) into ``shot_bits``; returns the window it
    completes (also put in ``st[1]``), or -1. Takes only the arrays it touches: inlined
    into a per-round loop that read them out of the state and plan once, it costs a few ns
    where a call passing the whole plan (~40 arrays, flattened) costs ~100 ns."""
    t = st[0]
    lo = round_offsets[t]
    hi = round_offsets[t + 1]
    if packed:
        for i in range(hi - lo):
            shot_bits[lo + i] = (bits[o + (i >> 3)] >> (i & 7)) & 1
    else:
        for i in range(hi - lo):
            shot_bits[lo + i] = 1 if bits[o + i] else 0
    st[0] = t + 1
    w = trigger[t]
    st[1] = w
    return w


@numba.njit(**_JIT)
def push_round_kernel(bits, packed, state, plan):
    """Store the next round of the stream and decode if it completes a window.

    Parameters
    ----------
    bits : numpy.ndarray of uint8
        The round's detection events: bit-packed (stim's little bit order) when ``packed``
        is True, else one byte per detector.
    state : StreamState
        The stream's state; ``state.st``: ``st[0]`` next round, ``st[1]`` window just
        decoded (or -1), ``st[2]`` 1 if that window was final, ``st[3]`` shots completed.
    plan : StreamPlanArrays
        The plan (:meth:`CompiledStream.kernel_args`).

    Returns
    -------
    int
        ``NO_CORRECTION`` (-1), ``NO_SOLUTION`` (-2), or the number of committed faults
        written to ``out_faults_committed`` (a correction is ready in ``out_obs``).
    """
    w = store_round(bits, 0, packed, state.st, state.shot_bits, plan.round_offsets,
                    plan.trigger)
    if w < 0:
        return NO_CORRECTION
    return decode_window_kernel(w, state, plan)


@numba.njit(**_jit.INLINE)
def decode_window_kernel(w, state, plan):
    """Decode and commit window ``w``, whose last round :func:`store_round` just stored; a
    final window ends the shot. Returns as :func:`push_round_kernel`."""
    st, shot_bits, carry, out_obs, out_faults_committed = state
    win_final = plan.win_final
    r = _decode_window(w, shot_bits, carry, out_obs, out_faults_committed,
                       plan.win_commit_stop, plan.win_tmpl, plan.win_det_ptr, plan.win_dets,
                       plan.win_l2g_ptr, plan.win_l2g, plan.tmpl_det_off, plan.tmpl_line_off,
                       plan.layout_pos, plan.round_of, plan.fault_first_round,
                       plan.fault_det_ptr, plan.fault_dets, plan.fault_obs,
                       plan.fault_dem_index, plan.union_syn, plan.union_dem_index,
                       plan.uf_out, plan.uf_args)
    st[2] = win_final[w]
    if win_final[w]:
        st[0] = 0
        st[3] += 1
        for i in range(carry.shape[0]):
            carry[i] = 0
    return r


class StreamPlanArrays(NamedTuple):
    """The flat arrays of a compiled stream plan (read-only while decoding, except the three
    scratch arrays ``union_syn``, ``uf_out`` and the union-find workspace in ``uf_args``).
    Numba takes it as one argument; fields are named so a kernel says what it reads."""

    round_offsets: np.ndarray  #: int64 (R + 1,): where round t's detectors start (layout order)
    trigger: np.ndarray  #: int64 (R,): window completed by round t, or -1
    win_final: np.ndarray  #: int64 per window: 1 for a shot's last window
    win_commit_stop: np.ndarray  #: int64 per window: faults before this round are committed
    win_tmpl: np.ndarray  #: int64 per window: which template (distinct window DEM) it uses
    win_det_ptr: np.ndarray  #: CSR over windows of ...
    win_dets: np.ndarray  #: ... their global detector ids, window order
    win_l2g_ptr: np.ndarray  #: CSR over windows of ...
    win_l2g: np.ndarray  #: ... window DEM error line -> global fault id
    tmpl_det_off: np.ndarray  #: first detector of each template in the union decoder
    tmpl_line_off: np.ndarray  #: first error line of each template in the union decoder
    layout_pos: np.ndarray  #: detector id -> position in layout order
    round_of: np.ndarray  #: detector id -> round
    fault_first_round: np.ndarray  #: global fault -> earliest round it touches
    fault_det_ptr: np.ndarray  #: CSR over global faults of ...
    fault_dets: np.ndarray  #: ... their detectors
    fault_obs: np.ndarray  #: uint8 (faults, observables) flips
    fault_dem_index: np.ndarray  #: global fault -> DEM error instruction index
    union_syn: np.ndarray  #: the union decoder's dense syndrome (unused: events go to the solver)
    union_dem_index: np.ndarray  #: union decoder fault -> its DEM line
    uf_out: np.ndarray  #: scratch: faults the union-find returns
    uf_args: tuple  #: :meth:`UnionFindDecoder.kernel_args` of the union decoder


class StreamState(NamedTuple):
    """Per-stream mutable state of a compiled stream (one per loop)."""

    st: np.ndarray  #: int64 (4,): next round, window just decoded, that window final, shots
    shot_bits: np.ndarray  #: uint8: the shot's detection events so far (layout order)
    carry: np.ndarray  #: uint8 per detector: syndrome effect of committed faults
    out_obs: np.ndarray  #: uint8: observable flips of the last correction
    out_faults: np.ndarray  #: int64: committed fault ids of the last correction


class CompiledStream(ShotDecoding):
    """A graph-like :class:`~qecd.decoder.plan.WindowPlan` compiled for a Numba loop, every
    window decoded by weighted union-find.

    Parameters
    ----------
    plan : WindowPlan
        A plan built with ``graph_like=True`` (any window; whole-shot works too), e.g.
        ``StreamDecoder(..., "uf").plan``.
    **uf_options
        Passed to :class:`~qecd.decoder.union_find.UnionFindDecoder` (``weight_resolution``,
        ``prematch``).
    """

    backend = UnionFindDecoder.name

    def __init__(self, plan: WindowPlan, **uf_options) -> None:
        f = plan.faults
        if len(f.det_indptr) > 1 and int(np.diff(f.det_indptr).max()) > 2:
            raise DecoderError("CompiledStream compiles graph-like plans for uf; this plan has "
                               f"a fault flipping {int(np.diff(f.det_indptr).max())} detectors")
        if any(w.whole_dem for w in plan.windows):
            raise DecoderError("CompiledStream: a whole-DEM window (a backend reading "
                               "decompositions) cannot be compiled for uf")
        self.plan = plan
        self.layout = plan.layout
        self.num_rounds = plan.num_rounds
        self.num_observables = plan.num_observables
        wins = plan.windows
        templates: dict[str, int] = {}
        for w in wins:
            templates.setdefault(w.template, len(templates))
        tmpl_dems = [stim.DetectorErrorModel(t) for t in templates]
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
        self.union = UnionFindDecoder.from_dem(stim.DetectorErrorModel(header + "\n".join(lines)),
                                               **uf_options)
        trigger = plan.trigger_table()
        det_ptr = np.zeros(len(wins) + 1, dtype=np.int64)
        l2g_ptr = np.zeros(len(wins) + 1, dtype=np.int64)
        for i, w in enumerate(wins):
            det_ptr[i + 1] = det_ptr[i] + len(w.det_ids)
            l2g_ptr[i + 1] = l2g_ptr[i] + len(w.local_to_global)
        self._plan = StreamPlanArrays(
            plan.round_offsets,
            trigger,
            np.array([int(w.final) for w in wins], dtype=np.int64),
            np.array([w.commit_stop for w in wins], dtype=np.int64),
            np.array([templates[w.template] for w in wins], dtype=np.int64),
            det_ptr,
            np.concatenate([w.det_ids for w in wins]).astype(np.int64),
            l2g_ptr,
            np.concatenate([w.local_to_global for w in wins]).astype(np.int64),
            det_off[:-1].copy(),
            line_off,
            plan.layout_pos,
            plan.round_of,
            plan.fault_first_round,
            f.det_indptr.astype(np.int64),
            f.det_indices.astype(np.int64),
            np.ascontiguousarray(f.obs_mask, dtype=np.uint8),
            f.dem_index.astype(np.int64),
            np.zeros(int(det_off[-1]), dtype=np.uint8),
            self.union.faults.dem_index.astype(np.int64),
            np.zeros(int(det_off[-1]) + 1, dtype=np.int64),
            self.union.kernel_args(),
        )
        self.max_faults = int(det_off[-1]) + 1
        #: CORRECTIONs per shot (one per window)
        self.corrections_per_shot = int((trigger >= 0).sum())
        self._state = self.new_state()
        self._warm_up()

    def fork(self) -> CompiledStream:
        """Another engine over the same plan: the read-only arrays are shared, the scratch
        arrays (union syndrome, union-find workspace) and the stream state are new. No
        parsing, no compilation: what a second loop needs, in microseconds to milliseconds.

        >>> from qecd.codes import build_experiment
        >>> from qecd.decoder.window import StreamDecoder
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> cs = StreamDecoder(exp.dem, exp.layout, "uf", window=2, commit=1).compile()
        >>> a, b = cs.fork().kernel_args(), cs.kernel_args()
        >>> a.win_dets is b.win_dets, a.union_syn is b.union_syn
        (True, False)
        """
        twin = object.__new__(CompiledStream)
        twin.__dict__.update(self.__dict__)
        p = self._plan
        twin._plan = p._replace(union_syn=np.zeros_like(p.union_syn),
                                uf_out=np.zeros_like(p.uf_out),
                                uf_args=self.union.kernel_args(fresh_workspace=True))
        twin._state = twin.new_state()
        return twin

    def new_state(self) -> StreamState:
        """Fresh per-stream state."""
        nd, no = self.layout.num_detectors, self.num_observables
        return StreamState(np.zeros(4, dtype=np.int64), np.zeros(nd, dtype=np.uint8),
                np.zeros(nd, dtype=np.uint8), np.zeros(no, dtype=np.uint8),
                np.zeros(self.max_faults, dtype=np.int64))

    def kernel_args(self) -> StreamPlanArrays:
        """The plan :func:`push_round_kernel` takes after the per-stream state."""
        return self._plan

    def _warm_up(self) -> None:
        state = self.new_state()
        for size in self.layout.round_sizes:
            push_round_kernel(np.zeros(size, np.uint8), False, state, self._plan)
        for size in self.layout.round_sizes:
            push_round_kernel(np.zeros((size + 7) // 8, np.uint8), True, state, self._plan)

    @property
    def next_round(self) -> int:
        return int(self._state[0][0])

    def push_round(self, bits: np.ndarray, *, packed: bool = False) -> Correction | None:
        """Python-side twin of :meth:`StreamDecoder.push_round` (for tests and tools)."""
        st, _, _, out_obs, out_faults = self._state
        t = int(st[0])
        n = push_round_kernel(np.ascontiguousarray(bits, dtype=np.uint8), packed,
                              self._state, self._plan)
        if n == NO_CORRECTION:
            return None
        if n == NO_SOLUTION:
            raise DecoderError(f"uf: no set of faults explains the window ending at round {t}")
        w = int(st[1])
        spec = self.plan.windows[w]
        return Correction(spec.start, spec.commit_stop - 1, out_obs.copy(),
                          np.sort(out_faults[:n]), bool(st[2]))
