"""The one compiled per-stream engine both transports share: SYNDROME bytes in, CORRECTIONs out.

A stream whose backend compiles streams (:attr:`~qecd.decoder.base.Decoder.compiles_streams`:
a :class:`~qecd.decoder.compiled_stream.CompiledStream`, whatever its window decoder) is
decoded entirely inside Numba, whichever transport carries its rounds:

- the shared-memory loop (:func:`qecd.transport.shm.loop.serve_stream_kernel`) calls
  :func:`engine_step` from Numba for each SYNDROME slot it takes off the ring;
- the ZeroMQ server (:mod:`qecd.transport.server.loop`) calls it from Python for each
  SYNDROME message, with the message's bytes as they arrived (no unpacking, no Python object
  per round, the GIL released while it runs).

:func:`engine_step` feeds the packet's rounds (any number, bit-packed as on the wire) to the
stream's compiled decoder until one completes a window, writes that window's CORRECTION
packet into the caller's buffer and returns; the caller sends it and calls again from where
it stopped, until the packet is done. :func:`payload_ok` is the compiled twin of the wire
codec's SYNDROME payload check (length and padding bits), so a bad packet is refused before
any round is stored. Both are warmed by :func:`warm_up` for the argument types the two
transports pass.

Example
-------
>>> import numpy as np
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> from qecd.transport.wire import SyndromeLayout, encode_syndrome
>>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
>>> engine = StreamDecoder(exp.dem, exp.layout, "uf", window=2, commit=1).compile()
>>> state, plan = engine.new_state(), engine.kernel_args()
>>> frame = np.frombuffer(encode_syndrome(np.zeros(exp.dem.num_detectors, np.uint8),
...     SyndromeLayout(exp.layout.round_sizes), stream_id=1, first_round=0,
...     count=exp.layout.num_rounds), np.uint8).copy()          # a writable buffer
>>> out = np.zeros(256, np.uint8)
>>> i, o, got = 0, 32, []
>>> while True:
...     status, i, o, n, last = engine_step(frame, o, i, exp.layout.num_rounds, 0, 4, 0, 0,
...                                         out, 1, False, state, plan)
...     if status == STEP_DONE:
...         break
...     got.append(last)
>>> got                       # one CORRECTION per window: rounds 0, 1, 2 and the rest
[0, 1, 2, 4]
"""

from __future__ import annotations

import numba
import numpy as np

from qecd import _jit
from qecd.decoder import compiled_stream
from qecd.transport.shm import atomics as _atomics
from qecd.transport.wire import compiled as wire_compiled

_jit.invalidate_if_changed(__file__, [*compiled_stream.kernel_sources(), _atomics.__file__,
                                      wire_compiled.__file__], __name__)

from qecd.decoder.compiled_stream import (  # noqa: E402,I001
    NO_SOLUTION,
    WINDOW_DUE,
    StreamContext,
    clear_shot,
    decode_window_kernel,
    finish_window_kernel,
    reset_shot_ctx,
    store_round,
    stream_context,
)
from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402
from qecd.transport.wire.compiled import write_correction  # noqa: E402

_JIT = _jit.KERNEL

#: :func:`engine_step` statuses
STEP_DONE = 0  #: every round of the packet is stored (and decoded where a window was due)
STEP_CORRECTION = 1  #: a CORRECTION packet is ready in ``out_buf[:frame_len]``
STEP_NO_SOLUTION = 2  #: the decoder found no correction for a window: the shot is dropped
#: a window is due and the stream's window decoder runs outside Numba
#: (:attr:`~qecd.decoder.compiled_stream.CompiledStream.decodes_on_host`): decode it
#: (``host_window``-style) and call :func:`engine_resume` with the result; never returned
#: for a plan decoded inside Numba
STEP_WINDOW_DUE = 3


@numba.njit(**_jit.INLINE)
def engine_step(payload, o, i, count, rnd, seq, ts, t0, out_buf, stream_id, want_faults,
                state, plan):
    """Feed rounds ``i, i + 1, ...`` of a SYNDROME packet to the stream until one completes a
    window or the packet ends.

    Parameters
    ----------
    payload : numpy.ndarray of uint8
        The packet's bytes; round ``i``'s bit-packed detection events start at ``payload[o]``
        (``o`` = 32, the header size, for ``i`` = 0). Already checked (:func:`payload_ok`).
    count, rnd, seq, ts : int
        The packet's round count, first round (absolute), the CORRECTION's ``round`` field
        (the packet's last round) and the ``timestamp_ns`` to echo.
    t0 : int
        ``CLOCK_MONOTONIC`` ns when the packet was received (for ``service_ns``).
    out_buf : numpy.ndarray of uint8
        Where a CORRECTION packet is written (at least ``correction_frame_len`` bytes).
    state, plan : StreamState, StreamPlanArrays
        The stream's compiled decoder (:class:`~qecd.decoder.compiled_stream.CompiledStream`).

    Returns
    -------
    (status, i_next, o_next, frame_len, last_round)
        ``STEP_CORRECTION``: a CORRECTION of ``frame_len`` bytes covering up to absolute round
        ``last_round`` is in ``out_buf``; call again with ``i_next, o_next``.
        ``STEP_NO_SOLUTION``: round ``rnd + i_next - 1`` completed a window the decoder could
        not explain; the stream's state is reset for the next shot. ``STEP_DONE``: the
        packet is consumed.
    """
    round_offsets = plan.round_offsets
    n_rounds = round_offsets.shape[0] - 1
    st = state.st
    shot_bits = state.shot_bits
    events = state.events
    trigger = plan.trigger
    while i < count:
        t = (rnd + i) % n_rounds
        nb = (round_offsets[t + 1] - round_offsets[t] + 7) >> 3
        # push_round_kernel, with the arrays a round touches read out once: only a due
        # window pays for a call that passes the whole plan
        w = store_round(payload, o, True, st, shot_bits, round_offsets, trigger, events)
        o += nb
        i += 1
        if w < 0:
            continue
        r = decode_window_kernel(w, state, plan)
        if r == WINDOW_DUE:
            return STEP_WINDOW_DUE, i, o, 0, 0
        status, n, last = _reply(r, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults,
                                 state, plan)
        return status, i, o, n, last
    return STEP_DONE, i, o, 0, 0


@numba.njit(**_jit.INLINE)
def _reply(r, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, state, plan):
    """The outcome of a window completed by round ``i - 1`` of the packet (``r`` as
    :func:`~qecd.decoder.compiled_stream.push_round_kernel` returns it): ``(status,
    frame_len, last_round)``, the CORRECTION written into ``out_buf``. (Inlined: it passes
    :func:`_reply_frame` only the arrays it reads, not the whole state and plan.)"""
    return _reply_frame(r, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, state.st,
                        state.carry, state.out_obs, state.out_faults, plan.round_offsets,
                        plan.win_commit_stop)


@numba.njit(**_JIT)
def _reply_frame(r, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, st, carry, out_obs,
                 out_faults, round_offsets, win_commit_stop):
    if r == NO_SOLUTION:
        st[0] = 0  # a fresh shot starts at the next boundary
        clear_shot(st, carry)
        return STEP_NO_SOLUTION, 0, rnd + i - 1
    w = st[1]
    t = (rnd + i - 1) % (round_offsets.shape[0] - 1)
    shot_base = rnd + i - 1 - t
    first = shot_base + (0 if w == 0 else win_commit_stop[w - 1])
    last = shot_base + win_commit_stop[w] - 1
    n = write_correction(out_buf, stream_id, seq, ts, first, last, monotonic_ns() - t0,
                         out_obs, out_faults, r, want_faults, st[2] != 0)
    return STEP_CORRECTION, n, last


@numba.njit(**_JIT)
def engine_resume(result, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, state, plan):
    """After :data:`STEP_WINDOW_DUE`: commit the window with ``result`` (what the host
    decoder returned, :attr:`~qecd.decoder.compiled_stream.CompiledWindows.host_decode`)
    and write its reply. ``i`` is the ``i_next`` :func:`engine_step` returned, the other
    arguments are as there. Returns ``(status, frame_len, last_round)``:
    ``STEP_CORRECTION`` or ``STEP_NO_SOLUTION`` as :func:`engine_step` would have; then
    continue the packet with :func:`engine_step` from ``i``."""
    r = finish_window_kernel(result, state, plan)
    return _reply(r, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, state, plan)


@numba.njit(**_JIT)
def payload_ok(payload, o, n, rnd, count, round_offsets):
    """True when ``payload[o:n]`` is exactly the bit-packed rounds ``rnd .. rnd + count - 1``
    with every padding bit zero (docs/protocol.md §6.3)."""
    n_rounds = round_offsets.shape[0] - 1
    for i in range(count):
        t = (rnd + i) % n_rounds
        size = round_offsets[t + 1] - round_offsets[t]
        nb = (size + 7) >> 3
        if o + nb > n:
            return False
        if size & 7 and (payload[o + nb - 1] >> (size & 7)) != 0:
            return False
        o += nb
    return o == n


#: one stream's compiled state and plan as a single object for calls from Python (see
#: :class:`~qecd.decoder.compiled_stream.StreamContext`); pass it to :func:`engine_call`
EngineContext = StreamContext
engine_context = stream_context


@numba.njit(cache=True, nogil=True)
def engine_call(payload, o, i, count, rnd, seq, ts, t0, out_buf, stream_id, want_faults, ctx):
    """:func:`engine_step` for callers in Python: the state and plan come from one
    :class:`EngineContext` (cheap to pass) instead of 27 arrays."""
    return engine_step(payload, o, i, count, rnd, seq, ts, t0, out_buf, stream_id,
                       want_faults, ctx.state, ctx.plan)


@numba.njit(cache=True, nogil=True)
def engine_resume_call(result, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults, ctx):
    """:func:`engine_resume` for callers in Python, with an :class:`EngineContext`."""
    return engine_resume(result, i, rnd, seq, ts, t0, out_buf, stream_id, want_faults,
                         ctx.state, ctx.plan)


#: reset the stream's shot after its host decoder found no explanation (as
#: :func:`engine_step` does on ``STEP_NO_SOLUTION``)
engine_no_solution_ctx = reset_shot_ctx


@numba.njit(cache=True, nogil=True)
def payload_ok_ctx(payload, o, n, rnd, count, ctx):
    """:func:`payload_ok` with the round offsets of an :class:`EngineContext`."""
    return payload_ok(payload, o, n, rnd, count, ctx.plan.round_offsets)


def warm_up(engine, out_buf: np.ndarray) -> None:
    """Compile (or load) :func:`engine_step` and :func:`payload_ok` for the argument types
    both transports pass (a writable uint8 packet buffer: callers copy a received message
    into one, so there is a single specialisation to compile), on a throw-away state."""
    layout = engine.layout
    n_bytes = sum((s + 7) // 8 for s in layout.round_sizes)
    frame = np.zeros(32 + n_bytes, dtype=np.uint8)
    state = engine.new_state()
    ctx = engine.context(state)  # types the context once per plan (here, not at a stream's open)
    payload_ok_ctx(frame, 32, frame.shape[0], 0, layout.num_rounds, ctx)
    i, o = 0, 32
    while True:
        status, i, o, _, _ = engine_call(frame, o, i, layout.num_rounds, 0, 0, 0, 0, out_buf,
                                         1, False, ctx)
        if status == STEP_DONE:
            break
        if status == STEP_WINDOW_DUE:  # (not on zeros: a window without events is done)
            engine_resume_call(engine.windows.host_decode(), i, 0, 0, 0, 0, out_buf, 1, False,
                               ctx)
    if engine.decodes_on_host:  # compile the resume path on an empty result
        state.st[1] = 0
        engine_resume_call(engine.windows.host_decode.example(), 1, 0, 0, 0, 0, out_buf, 1,
                           False, ctx)
        engine_no_solution_ctx(ctx)
