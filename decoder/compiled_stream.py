"""A stream decoder compiled end to end: the sliding window of :mod:`qecd.decoder.window` as
Numba kernels over flat arrays (no Python per round), for any backend that compiles its
window decode.

A :class:`~qecd.decoder.plan.WindowPlan` describes the windows of a shot; this module
flattens it. :func:`push_round_kernel` stores a round's bits (bit-packed, stim order, or one
byte per detector) into the shot buffer; when the round completes a window it gathers the
window's syndrome (shot bits XOR the carry), has the backend decode it, then commits: the
observable flips and the carry of committed faults across the boundary, and the committed
fault ids (sorted, distinct, as the Python path reports them). A server loop calls it from
Numba (:mod:`qecd.transport.engine`).

The window decode is the only backend-specific step. A backend compiles it into a
:class:`CompiledWindows`: a NamedTuple of arrays (the Numba argument) whose class carries
the kernel ``decode_window(windows, k, syndrome, n_det, out_lines)``: decode template
``k`` (a distinct window problem, :attr:`~qecd.decoder.plan.WindowSpec.template`) on
``syndrome[:n_det]`` (uint8 0/1, window detector order), write the template's DEM error
lines of the chosen faults into ``out_lines`` and return their count, or a negative number
when no set of faults explains the syndrome. :func:`window_decode` dispatches on the
NamedTuple's class, so this module and the engine never name a backend; a compiled window
kernel must be ``nopython``, allocation-free and ``nogil`` (work arrays are made when it is
built). The kernels of every kind live in ``decoder/_*.py`` modules
(:func:`kernel_sources` lists them for Numba's cache checks).

Nothing is allocated per round: every buffer is made here, at construction, with the
kernels compiled and warmed. One compiled stream decodes one window at a time (the window
kernels' work arrays are shared by all states of it): give each thread its own.

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> exp = build_experiment("surface:d=3,r=9,p=0.01")
>>> sd = StreamDecoder(exp.dem, exp.layout, "uf", window=6, commit=3)
>>> cs = sd.compile()
>>> dets, obs = exp.sample(50, seed=3)
>>> bool((cs.decode_batch(dets) == sd.decode_batch(dets)).all())
True
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from numba.core import types
from numba.experimental import structref
from numba.extending import overload

from qecd import _jit


def kernel_sources() -> list[str]:
    """The files whose Numba code a compiled stream inlines: this module and every private
    kernel module of the decoder package (``decoder/_*.py``: the backends' kernels and their
    compiled window decoders). Modules that call :func:`push_round_kernel` from cached Numba
    code pass these to :func:`qecd._jit.invalidate_if_changed`."""
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.abspath(__file__), *sorted(glob.glob(os.path.join(here, "_*.py")))]


_jit.invalidate_if_changed(__file__, kernel_sources()[1:], __name__)

from qecd.decoder._bits import spread_byte  # noqa: E402
from qecd.decoder.plan import WindowPlan  # noqa: E402
from qecd.decoder.window import Correction, ShotDecoding  # noqa: E402
from qecd.errors import DecoderError  # noqa: E402

_JIT = _jit.KERNEL

#: push_round_kernel return codes (>= 0: a correction with that many committed faults)
NO_CORRECTION = -1
NO_SOLUTION = -2
#: a window is due and its decoder runs outside Numba (:attr:`CompiledWindows.host_decode`):
#: its input is ready; decode it and pass the result to :func:`finish_window_kernel`
WINDOW_DUE = -3
#: ``StreamState.st`` slots besides next round (0), window just decoded (1), final (2) and
#: shots (3): the shot's detection events so far (in ``StreamState.events``) and how many
#: carry bits are set (while 0, a window's syndrome is its events alone)
ST_EVENTS, ST_CARRIED = 4, 5
ST_SIZE = 6


def window_decode(windows, k, syndrome, n_det, out_lines):  # pragma: no cover (Numba only)
    """Decode template ``k``'s window syndrome with the compiled window decoder ``windows``
    (see the module docs); callable from Numba only, where it dispatches on the class of
    the ``windows`` NamedTuple (its ``decode_window`` kernel)."""
    raise TypeError("window_decode is called from Numba kernels only")


@overload(window_decode, jit_options={"nogil": True, "_nrt": False, "boundscheck": False})
def _window_decode_of_kind(windows, k, syndrome, n_det, out_lines):
    kernel = getattr(getattr(windows, "instance_class", None), "decode_window", None)
    if kernel is None:
        return None

    def impl(windows, k, syndrome, n_det, out_lines):
        return kernel(windows, k, syndrome, n_det, out_lines)

    return impl


def window_decode_events(windows, k, events, n_events, syndrome, n_det,
                         out_lines):  # pragma: no cover (Numba only)
    """Decode template ``k``'s window given only its detection events: ``events[:n_events]``,
    window detector indices in increasing order (the syndrome is 1 there, 0 elsewhere).
    A kind whose class has a ``decode_window_events(windows, k, events, n_events,
    out_lines)`` kernel gets them as they are (``uf``: straight to the solver); for any
    other kind the dense ``syndrome[:n_det]`` is written from them and its
    ``decode_window`` runs on it, so the result is always that of :func:`window_decode` on
    the same syndrome. Callable from Numba only."""
    raise TypeError("window_decode_events is called from Numba kernels only")


@overload(window_decode_events, jit_options={"nogil": True, "_nrt": False, "boundscheck": False})
def _window_decode_events_of_kind(windows, k, events, n_events, syndrome, n_det, out_lines):
    cls = getattr(windows, "instance_class", None)
    sparse = getattr(cls, "decode_window_events", None)
    if sparse is not None:
        def impl(windows, k, events, n_events, syndrome, n_det, out_lines):
            return sparse(windows, k, events, n_events, out_lines)

        return impl
    dense = getattr(cls, "decode_window", None)
    if dense is None:
        return None

    def impl_dense(windows, k, events, n_events, syndrome, n_det, out_lines):
        for i in range(n_det):
            syndrome[i] = 0
        for i in range(n_events):
            syndrome[events[i]] = 1
        return dense(windows, k, syndrome, n_det, out_lines)

    return impl_dense


def window_lines_from_host(windows, k, result, out_lines):  # pragma: no cover (Numba only)
    """Template ``k``'s DEM error lines (into ``out_lines``; returns the count) from what the
    host decoder returned; callable from Numba only, dispatching on the class of ``windows``
    (its ``lines_from_host`` kernel), for window decoders that run outside Numba."""
    raise TypeError("window_lines_from_host is called from Numba kernels only")


@overload(window_lines_from_host,
          jit_options={"nogil": True, "_nrt": False, "boundscheck": False})
def _window_lines_of_kind(windows, k, result, out_lines):
    kernel = getattr(getattr(windows, "instance_class", None), "lines_from_host", None)
    if kernel is None:
        return None

    def impl(windows, k, result, out_lines):
        return kernel(windows, k, result, out_lines)

    return impl


@dataclass(frozen=True)
class CompiledWindows:
    """A backend's window decoder compiled for :func:`push_round_kernel`.

    Attributes
    ----------
    arrays : NamedTuple
        The Numba argument; its class has the ``decode_window`` kernel (module docs).
    max_lines : int
        The most faults one window decode may return (sizes the scratch and the committed
        fault ids of a CORRECTION).
    backend : str
        The backend's registry name (for reports and errors).
    no_solution : str
        Why a window can fail (the backend's own wording), completed by the callers with
        the round: "no set of faults explains ...".
    decoders : tuple
        The backend instances the kernel reads (kept alive with it; for inspection).
    host_decode : callable or None
        For a backend that cannot be called from Numba: ``decoding_kernel`` returns
        :data:`WINDOW_DUE` after preparing the window's input in ``arrays``, and
        ``host_decode()`` decodes it (Python, no allocation of ours) and returns what the
        class's ``lines_from_host(arrays, k, result, out_lines)`` kernel turns into template
        lines. It raises ``ValueError`` when no set of faults explains the window, and its
        ``example()`` returns a result for a window without events (to compile the kernels
        that take one at start-up). None for windows decoded inside Numba.
    """

    arrays: tuple
    max_lines: int
    backend: str
    no_solution: str
    decoders: tuple = ()
    host_decode: object = None


@numba.njit(**_JIT)
def _sorted_distinct(a, n):
    """Sort ``a[:n]`` in place (insertion sort: a window commits a handful) and drop
    repeats; returns the new count."""
    for i in range(1, n):
        x = a[i]
        j = i - 1
        while j >= 0 and a[j] > x:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = x
    m = 0
    for i in range(n):
        if m == 0 or a[i] != a[m - 1]:
            a[m] = a[i]
            m += 1
    return m


@numba.njit(**_jit.INLINE)
def _decode_window(w, state, plan, sparse):
    # the helpers it calls take only the arrays they touch: a call passing the whole state
    # and plan (~45 arrays, each flattened into its fields) costs ~50-100 ns, as much as
    # union-find's whole solve of a typical window (docs/benchmarks.md, "Backlog drain")
    syn = plan.window_syn
    st = state.st
    lay0 = plan.win_lay0[w]
    if sparse and lay0 >= 0 and st[ST_CARRIED] == 0:
        # the shot's events (kept by store_round) are the window's syndrome: no carry is
        # set and the window's detectors are consecutive in the shot buffer
        n_det = plan.win_det_ptr[w + 1] - plan.win_det_ptr[w]
        n_ev = _window_events(lay0, n_det, state.events, st[ST_EVENTS], plan.window_events)
        n = window_decode_events(plan.windows, plan.win_tmpl[w], plan.window_events, n_ev,
                                 syn, n_det, plan.window_lines)
    else:
        n_det = _gather_syndrome(w, state.shot_bits, state.carry, syn, plan.win_det_ptr,
                                 plan.win_dets, plan.layout_pos)
        n = window_decode(plan.windows, plan.win_tmpl[w], syn, n_det, plan.window_lines)
    if n == WINDOW_DUE:
        return WINDOW_DUE
    if n < 0:
        return NO_SOLUTION
    return _commit(w, n, state, plan)


@numba.njit(**_JIT)
def _window_events(lay0, n_det, events, n_events, out):
    """The shot's events (layout positions, increasing) inside ``lay0 .. lay0 + n_det``, as
    window indices into ``out``; returns their count."""
    m = 0
    for i in range(n_events):
        q = events[i] - lay0
        if 0 <= q < n_det:
            out[m] = q
            m += 1
    return m


@numba.njit(**_JIT)
def _gather_syndrome(w, shot_bits, carry, syn, win_det_ptr, win_dets, layout_pos):
    """Window ``w``'s syndrome (shot bits XOR the carry, window detector order) into
    ``syn``; returns its detector count."""
    p0 = win_det_ptr[w]
    n_det = win_det_ptr[w + 1] - p0
    for i in range(n_det):
        d = win_dets[p0 + i]
        syn[i] = shot_bits[layout_pos[d]] ^ carry[d]
    return n_det


@numba.njit(**_jit.INLINE)
def _commit(w, n, state, plan):
    """Commit the faults of window ``w`` whose template lines are ``plan.window_lines[:n]``:
    observable flips into ``state.out_obs``, the carry, sorted distinct DEM error indices
    into ``state.out_faults``; returns their count. (Inlined: it unpacks the arrays and
    calls :func:`_commit_lines` with those only.)"""
    return _commit_lines(w, n, state.st, state.carry, state.out_obs, state.out_faults,
                         plan.window_lines, plan.win_commit_stop, plan.win_l2g_ptr,
                         plan.win_l2g, plan.fault_first_round, plan.fault_obs,
                         plan.fault_det_ptr, plan.fault_dets, plan.round_of,
                         plan.fault_dem_index)


@numba.njit(**_JIT)
def _commit_lines(w, n, st, carry, out_obs, out_faults, lines, win_commit_stop, win_l2g_ptr,
                  win_l2g, fault_first_round, fault_obs, fault_det_ptr, fault_dets, round_of,
                  fault_dem_index):
    commit_stop = win_commit_stop[w]
    l2g0 = win_l2g_ptr[w]
    n_obs = out_obs.shape[0]
    for j in range(n_obs):
        out_obs[j] = 0
    m = 0
    for j in range(n):
        g = win_l2g[l2g0 + lines[j]]
        if fault_first_round[g] >= commit_stop:
            continue
        for o in range(n_obs):
            out_obs[o] ^= fault_obs[g, o]
        for q in range(fault_det_ptr[g], fault_det_ptr[g + 1]):
            d = fault_dets[q]
            if round_of[d] >= commit_stop:
                carry[d] ^= 1
                st[ST_CARRIED] += 1 if carry[d] else -1
        out_faults[m] = fault_dem_index[g]
        m += 1
    return _sorted_distinct(out_faults, m)


#: bytes a stream's shot buffer has past its last detector: :func:`store_round` writes a
#: round's last packed byte whole (up to 7 bytes beyond the round, rewritten by the next
#: round before anything reads them, never read past the shot)
SHOT_SLACK = 8


@numba.njit(**_jit.INLINE)
def store_round(bits, o, packed, st, shot_bits, round_offsets, trigger, events):
    """Store the stream's next round from ``bits[o:]`` (bit-packed in stim's little bit order
    when ``packed``, else one byte per detector) into ``shot_bits``, appending its detection
    events (layout positions) to ``events`` (``st[ST_EVENTS]`` of them so far this shot);
    returns the window it completes (also put in ``st[1]``), or -1. Takes only the arrays
    it touches: inlined into a per-round loop that read them out of the state and plan
    once, it costs a few ns where a call passing the whole plan costs ~100 ns.

    A packed byte is stored with one 8-byte store (:func:`~qecd.decoder._bits.spread_byte`:
    4-7 ns per d = 5-sized round against 18-27 for a store per detector), so ``shot_bits`` needs
    :data:`SHOT_SLACK` bytes past the shot's last detector; the bytes a round's last
    packed byte writes beyond the round belong to the next round, which overwrites them
    when it is stored (a window reads only rounds already stored)."""
    t = st[0]
    lo = round_offsets[t]
    hi = round_offsets[t + 1]
    m = st[ST_EVENTS]
    if packed:
        for j in range((hi - lo + 7) >> 3):
            x = bits[o + j]
            base = lo + 8 * j
            spread_byte(shot_bits, base, x)
            if x != 0:  # most bytes: no event
                nb = hi - base if hi - base < 8 else 8
                for i in range(nb):
                    if (x >> i) & 1:
                        events[m] = base + i
                        m += 1
    else:
        for i in range(hi - lo):
            v = 1 if bits[o + i] else 0
            shot_bits[lo + i] = v
            if v:
                events[m] = lo + i
                m += 1
    st[ST_EVENTS] = m
    st[0] = t + 1
    w = trigger[t]
    st[1] = w
    return w


@numba.njit(**_jit.INLINE)
def decode_window_kernel(w, state, plan):
    """Decode and commit window ``w``, whose last round :func:`store_round` just stored; a
    final window ends the shot. Returns as :func:`push_round_kernel` (``WINDOW_DUE`` for a
    window decoded on the host: :func:`finish_window_kernel` then ends it)."""
    r = _decode_window(w, state, plan, True)
    if r == WINDOW_DUE:
        return r
    _window_done(w, state, plan)
    return r


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
        written to ``state.out_faults`` (sorted, distinct DEM error indices; a correction is
        ready in ``state.out_obs``).
    """
    w = store_round(bits, 0, packed, state.st, state.shot_bits, plan.round_offsets,
                    plan.trigger, state.events)
    if w < 0:
        return NO_CORRECTION
    return decode_window_kernel(w, state, plan)


@numba.njit(**_jit.INLINE)
def _window_done(w, state, plan):
    _end_window(w, state.st, state.carry, plan.win_final)


@numba.njit(**_JIT)
def _end_window(w, st, carry, win_final):
    final = win_final[w]
    st[2] = final
    if final:
        st[0] = 0
        st[3] += 1
        clear_shot(st, carry)


@numba.njit(**_jit.INLINE)
def clear_shot(st, carry):
    """Forget the shot's events and carry (the next round stored starts a shot's events;
    ``st[0]`` is the caller's). ``st[ST_CARRIED]`` counts the carry bits set: with none,
    the carry is already clear (most shots: whole-shot windows never carry)."""
    if st[ST_CARRIED] != 0:
        for i in range(carry.shape[0]):
            carry[i] = 0
    st[ST_EVENTS] = 0
    st[ST_CARRIED] = 0



@numba.njit(**_JIT)
def due_window_kernel(t, state, plan):
    """Decode the window round ``t`` completes, the shot's rounds already in
    ``state.shot_bits`` (a loop that stores rounds itself); returns as
    :func:`push_round_kernel` does."""
    st = state.st
    w = plan.trigger[t]
    st[0] = t + 1
    st[1] = w
    r = _decode_window(w, state, plan, False)  # the caller wrote shot_bits, not the events
    if r == WINDOW_DUE:
        return r
    _window_done(w, state, plan)
    return r


@numba.njit(**_JIT)
def finish_window_kernel(result, state, plan):
    """Complete the window :func:`push_round_kernel` returned :data:`WINDOW_DUE` for, with
    ``result``, what the host decoder returned (:attr:`CompiledWindows.host_decode`).
    Returns what :func:`push_round_kernel` would have: the committed fault count, or
    ``NO_SOLUTION``."""
    w = state.st[1]
    n = window_lines_from_host(plan.windows, plan.win_tmpl[w], result, plan.window_lines)
    r = NO_SOLUTION if n < 0 else _commit(w, n, state, plan)
    _window_done(w, state, plan)
    return r


class StreamPlanArrays(NamedTuple):
    """The flat arrays of a compiled stream plan (read-only while decoding, except the
    scratch ``window_syn``, ``window_lines`` and the window decoder's work arrays). Numba
    takes it as one argument; fields are named so a kernel says what it reads."""

    round_offsets: np.ndarray  #: int64 (R + 1,): where round t's detectors start (layout order)
    trigger: np.ndarray  #: int64 (R,): window completed by round t, or -1
    win_final: np.ndarray  #: int64 per window: 1 for a shot's last window
    win_commit_stop: np.ndarray  #: int64 per window: faults before this round are committed
    win_tmpl: np.ndarray  #: int64 per window: which template (distinct window DEM) it uses
    win_det_ptr: np.ndarray  #: CSR over windows of ...
    win_dets: np.ndarray  #: ... their global detector ids, window order
    win_l2g_ptr: np.ndarray  #: CSR over windows of ...
    win_l2g: np.ndarray  #: ... window DEM error line -> global fault id
    layout_pos: np.ndarray  #: detector id -> position in layout order
    round_of: np.ndarray  #: detector id -> round
    fault_first_round: np.ndarray  #: global fault -> earliest round it touches
    fault_det_ptr: np.ndarray  #: CSR over global faults of ...
    fault_dets: np.ndarray  #: ... their detectors
    fault_obs: np.ndarray  #: uint8 (faults, observables) flips
    fault_dem_index: np.ndarray  #: global fault -> DEM error instruction index
    window_syn: np.ndarray  #: scratch uint8: the window's syndrome (window detector order)
    window_lines: np.ndarray  #: scratch int64: template DEM lines the window decode chose
    win_lay0: np.ndarray  #: int64 per window: shot-buffer position of its detector 0 when
    #: its detectors are consecutive there in window order, else -1
    window_events: np.ndarray  #: scratch int64: the window's events (window indices)
    windows: tuple  #: the backend's compiled window decoder (:attr:`CompiledWindows.arrays`)


class StreamState(NamedTuple):
    """Per-stream mutable state of a compiled stream (one per stream)."""

    st: np.ndarray  #: int64 (ST_SIZE,): next round, window just decoded, that window final,
    #: shots, the shot's events so far, carry bits set
    shot_bits: np.ndarray  #: uint8: the shot's detection events so far (layout order), then
    #: :data:`SHOT_SLACK` bytes
    carry: np.ndarray  #: uint8 per detector: syndrome effect of committed faults
    out_obs: np.ndarray  #: uint8: observable flips of the last correction
    out_faults: np.ndarray  #: int64: committed fault ids of the last correction
    events: np.ndarray  #: int64: the shot's detection events so far (shot-buffer positions)


@structref.register
class StreamContextType(types.StructRef):
    """Numba type of :class:`StreamContext`: a stream's state and plan behind one pointer."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


class StreamContext(structref.StructRefProxy):
    """One stream's compiled state and plan as a single object for calls from Python.

    Calling a Numba function with a plan's ~20 arrays costs ~10 µs per call in argument
    unboxing alone (measured here: 13 µs per engine call against 1 µs for a call with two
    arrays, on a loaded machine); a structref is unboxed from one pointer. Build it with
    :func:`stream_context`.
    """


structref.define_boxing(StreamContextType, StreamContext)


@numba.njit(cache=True)
def _new_context(ty, state, plan):
    ctx = structref.new(ty)
    ctx.state = state
    ctx.plan = plan
    return ctx


def context_type(state, plan) -> StreamContextType:
    """The Numba type of the :class:`StreamContext` of ``state`` and ``plan`` (typing their
    ~30 arrays from Python: ~0.3 ms under a profiler)."""
    return StreamContextType([("state", numba.typeof(state)), ("plan", numba.typeof(plan))])


def stream_context(state, plan) -> StreamContext:
    """The :class:`StreamContext` of a stream's state and its plan."""
    return _new_context(context_type(state, plan), state, plan)


@numba.njit(cache=True, nogil=True)
def due_window_ctx(t, ctx):
    """:func:`due_window_kernel` on a :class:`StreamContext`."""
    return due_window_kernel(t, ctx.state, ctx.plan)


@numba.njit(cache=True, nogil=True)
def finish_window_ctx(result, ctx):
    """:func:`finish_window_kernel` on a :class:`StreamContext`."""
    return finish_window_kernel(result, ctx.state, ctx.plan)


@numba.njit(cache=True, nogil=True)
def reset_shot_ctx(ctx):
    """Drop the stream's shot in progress: the next round stored is round 0, no carry."""
    st, carry = ctx.state.st, ctx.state.carry
    st[0] = 0
    clear_shot(st, carry)


@numba.njit(cache=True, nogil=True)
def push_round_ctx(bits, packed, ctx):
    """:func:`push_round_kernel` on a :class:`StreamContext`."""
    return push_round_kernel(bits, packed, ctx.state, ctx.plan)


def _first_if_consecutive(pos: np.ndarray) -> int:
    """``pos[0]`` when ``pos`` is ``pos[0], pos[0] + 1, ...`` (0 when empty), else -1."""
    if len(pos) == 0:
        return 0
    return int(pos[0]) if np.array_equal(pos, np.arange(pos[0], pos[0] + len(pos))) else -1


def templates_of(plan: WindowPlan) -> list[str]:
    """The plan's distinct window problems (DEM texts) in first-use order: template ``k`` of
    a compiled window decoder is ``templates_of(plan)[k]``."""
    seen: dict[str, int] = {}
    for w in plan.windows:
        seen.setdefault(w.template, len(seen))
    return list(seen)


class CompiledStream(ShotDecoding):
    """A :class:`~qecd.decoder.plan.WindowPlan` compiled for the Numba loops, its windows
    decoded by a backend's compiled window decoder.

    Built by the backends (:meth:`~qecd.decoder.base.Decoder.compile_stream`, reached through
    :meth:`~qecd.decoder.window.StreamDecoder.compile`), not directly.

    Parameters
    ----------
    plan : WindowPlan
        The stream's windows (any window; whole-shot works too).
    windows : CompiledWindows
        The backend's window decoder for ``templates_of(plan)``.
    """

    def __init__(self, plan: WindowPlan, windows: CompiledWindows) -> None:
        if any(w.whole_dem for w in plan.windows):
            raise DecoderError("CompiledStream: a whole-DEM window (a backend reading "
                               "decompositions) cannot be compiled")
        self.plan = plan
        self.windows = windows
        self.backend = windows.backend
        self.layout = plan.layout
        self.num_rounds = plan.num_rounds
        self.num_observables = plan.num_observables
        f = plan.faults
        wins = plan.windows
        index = {t: k for k, t in enumerate(templates_of(plan))}
        trigger = plan.trigger_table()
        det_ptr = np.zeros(len(wins) + 1, dtype=np.int64)
        l2g_ptr = np.zeros(len(wins) + 1, dtype=np.int64)
        for i, w in enumerate(wins):
            det_ptr[i + 1] = det_ptr[i] + len(w.det_ids)
            l2g_ptr[i + 1] = l2g_ptr[i] + len(w.local_to_global)
        self.max_faults = max(1, int(windows.max_lines))
        self._plan = StreamPlanArrays(
            plan.round_offsets,
            trigger,
            np.array([int(w.final) for w in wins], dtype=np.int64),
            np.array([w.commit_stop for w in wins], dtype=np.int64),
            np.array([index[w.template] for w in wins], dtype=np.int64),
            det_ptr,
            np.concatenate([w.det_ids for w in wins]).astype(np.int64),
            l2g_ptr,
            np.concatenate([w.local_to_global for w in wins]).astype(np.int64),
            plan.layout_pos,
            plan.round_of,
            plan.fault_first_round,
            f.det_indptr.astype(np.int64),
            f.det_indices.astype(np.int64),
            np.ascontiguousarray(f.obs_mask, dtype=np.uint8),
            f.dem_index.astype(np.int64),
            np.zeros(max(1, int(np.diff(det_ptr).max(initial=0))), dtype=np.uint8),
            np.zeros(self.max_faults, dtype=np.int64),
            np.array([_first_if_consecutive(plan.layout_pos[w.det_ids]) for w in wins],
                     dtype=np.int64),
            np.zeros(max(1, int(np.diff(det_ptr).max(initial=0))), dtype=np.int64),
            windows.arrays,
        )
        #: CORRECTIONs per shot (one per window)
        self.corrections_per_shot = int((trigger >= 0).sum())
        self._state = self.new_state()
        self._ctx = None  # made on first use: a structref does not pickle (plan builds do)
        self._warm_up()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_ctx": None, "_ctx_type": None}

    def fork(self) -> CompiledStream:
        """Another engine over the same plan, for another loop: its own copy of every array
        (the compiled kinds' scratch and workspaces included) and a fresh stream state,
        made through pickle (PyMatching's graphs are rebuilt from their edge arrays). Nothing
        is parsed or compiled.

        >>> import numpy as np
        >>> from qecd.codes import build_experiment
        >>> from qecd.decoder.window import StreamDecoder
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> cs = StreamDecoder(exp.dem, exp.layout, "uf", window=2, commit=1).compile()
        >>> twin = cs.fork()
        >>> dets, _ = exp.sample(20, seed=1)
        >>> twin.kernel_args() is not cs.kernel_args()
        True
        >>> bool((twin.decode_batch(dets) == cs.decode_batch(dets)).all())
        True
        """
        import pickle

        twin = pickle.loads(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        twin._state = twin.new_state()
        return twin

    def new_state(self) -> StreamState:
        """Fresh per-stream state."""
        nd, no = self.layout.num_detectors, self.num_observables
        return StreamState(np.zeros(ST_SIZE, dtype=np.int64),
                           np.zeros(nd + SHOT_SLACK, dtype=np.uint8),
                           np.zeros(nd, dtype=np.uint8), np.zeros(no, dtype=np.uint8),
                           np.zeros(self.max_faults, dtype=np.int64),
                           np.zeros(max(1, nd), dtype=np.int64))

    def kernel_args(self) -> StreamPlanArrays:
        """The plan :func:`push_round_kernel` takes after the per-stream state."""
        return self._plan

    def context(self, state: StreamState) -> StreamContext:
        """``state`` (made by :meth:`new_state`) and this plan as one :class:`StreamContext`.
        Its Numba type is worked out once per plan: every stream a server opens over the plan
        makes one (:func:`context_type`)."""
        ty = self.__dict__.get("_ctx_type")
        if ty is None:
            ty = self._ctx_type = context_type(state, self._plan)
        return _new_context(ty, state, self._plan)

    @property
    def decodes_on_host(self) -> bool:
        """Whether its windows are decoded outside Numba (:attr:`CompiledWindows.host_decode`):
        a loop then leaves Numba when a window is due (``WINDOW_DUE``)."""
        return self.windows.host_decode is not None

    def host_window(self, ctx: StreamContext) -> int:
        """Decode the due window of the stream ``ctx`` on the host and commit it
        (:func:`finish_window_kernel`); returns the committed fault count, or
        ``NO_SOLUTION`` (the stream's shot state is then reset, as the kernels do)."""
        try:
            result = self.windows.host_decode()
        except ValueError:  # the backend found no explanation: the shot is dropped
            reset_shot_ctx(ctx)
            return NO_SOLUTION
        return finish_window_ctx(result, ctx)

    def decode_due(self, ctx: StreamContext, t: int) -> int:
        """Decode and commit the window round ``t`` completes from the stream's
        ``state.shot_bits`` (rounds ``0..t`` of the shot stored there; ``ctx`` from
        :meth:`context`), leaving Numba only for a host decoder; returns the committed fault
        count (in ``state.out_faults``, the flips in ``state.out_obs``) or ``NO_SOLUTION``."""
        r = due_window_ctx(t, ctx)
        return self.host_window(ctx) if r == WINDOW_DUE else r

    def no_solution_reason(self, last_round: int) -> str:
        """The error text of a window ending at ``last_round`` that could not be decoded."""
        return (f"{self.backend}: no set of faults explains the window ending at round "
                f"{last_round} ({self.windows.no_solution})")

    def _warm_up(self) -> None:
        for via_ctx in (False, True):
            state = self.new_state()
            ctx = self.context(state)
            for packed in (False, True):
                for size in self.layout.round_sizes:  # one zero shot
                    bits = np.zeros((size + 7) // 8 if packed else size, np.uint8)
                    r = push_round_ctx(bits, packed, ctx) if via_ctx else \
                        push_round_kernel(bits, packed, state, self._plan)
                    if r == WINDOW_DUE:
                        self.host_window(ctx)
        due_window_ctx(self.num_rounds - 1, ctx)
        reset_shot_ctx(ctx)
        if self.decodes_on_host:  # the commit after a host decode, on an empty result
            state.st[1] = 0
            finish_window_ctx(self.windows.host_decode.example(), ctx)

    @property
    def next_round(self) -> int:
        return int(self._state.st[0])

    def push_round(self, bits: np.ndarray, *, packed: bool = False) -> Correction | None:
        """Python-side twin of :meth:`StreamDecoder.push_round` (for tests and tools)."""
        st, out_obs, out_faults = self._state.st, self._state.out_obs, self._state.out_faults
        t = int(st[0])
        if self._ctx is None:
            self._ctx = self.context(self._state)
        n = push_round_ctx(np.ascontiguousarray(bits, dtype=np.uint8), packed, self._ctx)
        if n == WINDOW_DUE:
            n = self.host_window(self._ctx)
        if n == NO_CORRECTION:
            return None
        if n == NO_SOLUTION:
            raise DecoderError(self.no_solution_reason(t))
        spec = self.plan.windows[int(st[1])]
        return Correction(spec.start, spec.commit_stop - 1, out_obs.copy(),
                          out_faults[:n].copy(), bool(st[2]))
