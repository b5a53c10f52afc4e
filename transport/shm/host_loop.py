"""Shared-memory streams for backends that cannot run inside Numba (``pymatching``, ...).

:func:`~qecd.transport.shm.loop.serve_stream_kernel` runs the whole per-stream loop in
Numba because the ``uf`` window engine is compiled too. PyMatching is a C++ library called
through Python, so here the loop leaves Numba **only when a window must be decoded**:

1. :func:`serve_host_kernel` (Numba, GIL released) polls the request ring, validates each
   packet exactly as the compiled loop does (:func:`~qecd.transport.shm.loop.check_packet`),
   answers HEARTBEATs and ERRORs, and unpacks each round's bits straight into the stream
   decoder's shot buffer (:attr:`~qecd.decoder.window.StreamDecoder.shot_buffer`). When a
   round completes a window it saves where it stopped in ``pend`` and returns
   ``EXIT_DECODE``.
2. Python calls :meth:`~qecd.decoder.window.StreamDecoder.decode_due` for that round (the
   backend's own decode, the commit and the carry across the window boundary), then
   :func:`send_correction_kernel` writes the CORRECTION into the reply ring and rings its
   doorbell, and the loop re-enters Numba where it left off (a packet carrying several
   rounds resumes at its next round). A decode that raises drops the rest of its shot as
   the ZeroMQ path does (ERROR ``DECODER_ERROR`` and ``SYNDROMES_DROPPED`` naming the next
   shot boundary; one ``decoder_error`` log line); the stream goes on.

Rounds that trigger nothing never touch the interpreter. Service time, lag and the decode
flag are recorded per packet as in the compiled loop, so both report the same way; a
CORRECTION's ``service_ns`` runs from taking the packet off the ring to writing the reply.

Example
-------
>>> import numpy as np
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer
>>> exp = build_experiment("surface:d=3,r=3,p=0.01")
>>> srv = ShmStreamServer(StreamDecoder(exp.dem, exp.layout, "pymatching"), stream_id=1)
>>> srv.start()
>>> cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=1)
>>> dets, obs = exp.sample(20, seed=1)
>>> res = cli.stream_shots(dets)
>>> res.lost, res.errors, res.received
(0, 0, 20)
>>> cli.bye(); srv.join(timeout=5); srv.exit_code
0
>>> cli.close(); srv.close()
True
"""

from __future__ import annotations

import logging

import numba
import numpy as np

from qecd import _jit
from qecd.transport.shm import atomics as _atomics
from qecd.transport.shm import loop as shm_stream
from qecd.transport.shm import ring as shm_ring
from qecd.transport.wire import compiled as wire_compiled

_jit.invalidate_if_changed(__file__, [_atomics.__file__, shm_ring.__file__,
                                           shm_stream.__file__, wire_compiled.__file__], __name__)

from qecd.decoder.compiled_stream import reset_shot_ctx  # noqa: E402
from qecd.decoder.window import StreamDecoder  # noqa: E402
from qecd.errors import DecoderError  # noqa: E402
from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402
from qecd.transport.shm.loop import (  # noqa: E402
    CTL_CORRECTIONS,
    CTL_NEXT_ROUND,
    CTL_ROUNDS,
    EXIT_SEND_FAILED,
    decoder_error_text,
    drop_shot,
    next_syndrome,
    record_packet,
    round_bytes,
)
from qecd.transport.shm.ring import ring_send  # noqa: E402
from qecd.transport.wire.compiled import (  # noqa: E402
    HEADER_SIZE,
    decoder_failed_reason,
    write_correction,
)

_JIT = _jit.KERNEL
log = logging.getLogger("qecd.shm")

#: serve_host_kernel's extra exit code: a window is due (see ``pend``)
EXIT_DECODE = 16
#: ``pend`` (int64) slots: packet in progress?, its next round index, its round count, its
#: first round, its timestamp, when it was taken off the ring, did it decode?, the round
#: (within the shot) whose window is due, the byte offset of the next round in ``in_buf``
P_ACTIVE, P_NEXT, P_COUNT, P_ROUND, P_TS, P_T0, P_DECODED, P_TRIGGER, P_OFFSET = range(9)
#: pend slot: the first absolute round no CORRECTION has covered yet (a drop's first loss)
P_COMMITTED = 9
PEND_SIZE = 10


@numba.njit(**_JIT)
def serve_host_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, server_side, in_buf,
                      out_buf, ctl, rec_service, rec_lag, rec_flags, rec_n, stream_id,
                      idle_timeout_ns, send_timeout_ns, pend, shot_bits, round_offsets, trigger):
    """Serve one stream until a window is due (``EXIT_DECODE``), BYE, a stop request or an
    idle timeout; the arguments are those of
    :func:`~qecd.transport.shm.loop.serve_stream_kernel` up to ``send_timeout_ns``, then
    ``pend`` (int64[PEND_SIZE], zeros for a new stream), the decoder's ``shot_bits`` (uint8,
    layout order), the rounds' offsets into it and the round -> window trigger table."""
    n_rounds = round_offsets.shape[0] - 1
    while True:
        if pend[P_ACTIVE] == 0:
            code, count, rnd, ts, t0 = next_syndrome(
                words, buf, tx_off, rx_off, n_slots, slot_size, server_side, in_buf, out_buf,
                ctl, stream_id, idle_timeout_ns, send_timeout_ns, round_offsets)
            if code >= 0:
                return code
            pend[P_ACTIVE], pend[P_NEXT], pend[P_COUNT], pend[P_ROUND] = 1, 0, count, rnd
            pend[P_TS], pend[P_T0], pend[P_DECODED] = ts, t0, 0
            pend[P_OFFSET] = HEADER_SIZE
        count, rnd, i, o = pend[P_COUNT], pend[P_ROUND], pend[P_NEXT], pend[P_OFFSET]
        while i < count:
            t = (rnd + i) % n_rounds
            lo = round_offsets[t]
            for b in range(round_offsets[t + 1] - lo):
                shot_bits[lo + b] = (in_buf[o + (b >> 3)] >> (b & 7)) & 1
            o += round_bytes(round_offsets, t)
            i += 1
            if trigger[t] >= 0:
                pend[P_NEXT], pend[P_OFFSET], pend[P_TRIGGER], pend[P_DECODED] = i, o, t, 1
                return EXIT_DECODE
        ctl[CTL_NEXT_ROUND] = rnd + count
        ctl[CTL_ROUNDS] += count
        record_packet(rec_service, rec_lag, rec_flags, rec_n, pend[P_T0], pend[P_TS],
                      pend[P_DECODED])
        pend[P_ACTIVE] = 0


@numba.njit(**_JIT)
def send_correction_kernel(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, pend,
                           stream_id, obs, faults, want_faults, first, last, shot_end,
                           send_timeout_ns):
    """Write the CORRECTION for the window :func:`serve_host_kernel` returned for (``first``
    and ``last``: its committed rounds within the shot) and ring the doorbell; 0 or -1."""
    rnd, t = pend[P_ROUND], pend[P_TRIGGER]
    shot_base = rnd + pend[P_NEXT] - 1 - t
    ln = write_correction(out_buf, stream_id, rnd + pend[P_COUNT] - 1, pend[P_TS],
                     shot_base + first, shot_base + last, monotonic_ns() - pend[P_T0], obs,
                     faults, faults.shape[0], want_faults, shot_end)
    if ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                 -1) != 0:
        ctl[CTL_NEXT_ROUND] = rnd + pend[P_NEXT]
        return -1
    ctl[CTL_CORRECTIONS] += 1
    pend[P_COMMITTED] = shot_base + last + 1
    return 0


@numba.njit(**_JIT)
def drop_shot_kernel(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, rec_service,
                     rec_lag, rec_flags, rec_n, pend, stream_id, n_rounds, send_timeout_ns,
                     why, why_n):
    """The window :func:`serve_host_kernel` returned for failed to decode: drop the rest of
    its shot (:func:`~qecd.transport.shm.loop.drop_shot`, DECODER_ERROR's reason
    ``why[:why_n]``) and of the packet, record the packet and clear ``pend``. 0, or -1 when
    the reply ring stayed full."""
    rnd, done = pend[P_ROUND], pend[P_NEXT]
    ctl[CTL_ROUNDS] += done
    r = drop_shot(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, stream_id, rnd,
                  pend[P_TS], rnd + done - 1, pend[P_COMMITTED], rnd + pend[P_COUNT] - 1,
                  n_rounds, send_timeout_ns, why, why_n, why_n, -1)
    if r >= 0:
        pend[P_COMMITTED] = r
    record_packet(rec_service, rec_lag, rec_flags, rec_n, pend[P_T0], pend[P_TS], 1)
    pend[P_ACTIVE] = 0
    return 0 if r >= 0 else -1


class _CompiledWindows:
    """A compiled stream whose window decoder runs in Python
    (:attr:`~qecd.decoder.compiled_stream.CompiledStream.decodes_on_host`), seen as the
    loop sees a :class:`StreamDecoder`: shot buffer, offsets, triggers, decode, reset. The
    window's gathering and commit run in Numba; nothing of ours is allocated per window
    but the view of the committed fault ids."""

    def __init__(self, cs) -> None:
        self.cs, self.state = cs, cs.new_state()
        self.ctx = cs.context(self.state)
        plan = cs.kernel_args()
        self.shot_buffer, self.round_offsets = self.state.shot_bits, plan.round_offsets
        self.trigger = plan.trigger
        self.num_observables, self.num_rounds = cs.num_observables, cs.num_rounds
        self.starts = tuple(w.start for w in cs.plan.windows)
        self.stops = tuple(w.commit_stop - 1 for w in cs.plan.windows)
        self.finals = tuple(w.final for w in cs.plan.windows)

    def decode(self, t: int, last_round: int) -> tuple:
        """(observables, fault ids, first, last, shot_end) of the window round ``t`` ends
        (absolute round ``last_round``, named in the error when it cannot be decoded)."""
        st = self.state
        n = self.cs.decode_due(self.ctx, t)
        if n < 0:
            raise DecoderError(self.cs.no_solution_reason(last_round))
        w = st.st.item(1)
        return st.out_obs, st.out_faults[:n], self.starts[w], self.stops[w], self.finals[w]

    def reset(self) -> None:
        reset_shot_ctx(self.ctx)  # the kernels' own reset of the shot


class _PythonWindows:
    """A :class:`StreamDecoder` as the loop sees it."""

    def __init__(self, sd: StreamDecoder) -> None:
        self.sd = sd
        self.shot_buffer, self.round_offsets = sd.shot_buffer, sd.round_offsets
        self.trigger = sd.trigger_table()
        self.num_observables, self.num_rounds = sd.num_observables, sd.num_rounds

    def decode(self, t: int, last_round: int) -> tuple:
        c = self.sd.decode_due(t)
        return c.observables, c.fault_ids.astype(np.int64), c.first_round, c.last_round, \
            c.shot_end

    def reset(self) -> None:
        self.sd.reset()


class HostLoop:
    """One stream's loop for a decoder called from Python: the ring, the loop's buffers and
    records (those of :class:`~qecd.transport.shm.streams.ShmStreamServer`) and the stream
    decoder (a :class:`StreamDecoder`, or a compiled stream that decodes its windows on the
    host). :meth:`run` serves until the kernel returns anything but ``EXIT_DECODE``."""

    def __init__(self, sd, ring_args: tuple, *, server_side: int,
                 in_buf: np.ndarray, out_buf: np.ndarray, ctl: np.ndarray,
                 records: tuple, stream_id: int, want_faults: bool, idle_timeout_ns: int,
                 send_timeout_ns: int) -> None:
        self.backend = str(sd.backend)  # named in a dropped shot's DECODER_ERROR
        sd = _PythonWindows(sd) if isinstance(sd, StreamDecoder) else _CompiledWindows(sd)
        self.sd = sd
        self.ring = ring_args
        self.out_buf, self.ctl, self.records = out_buf, ctl, records
        self.stream_id, self.want_faults = int(stream_id), bool(want_faults)
        self.send_timeout_ns = int(send_timeout_ns)
        self.pend = np.zeros(PEND_SIZE, dtype=np.int64)
        self.loop_args = (server_side, in_buf, out_buf, ctl, *records, self.stream_id,
                          int(idle_timeout_ns), self.send_timeout_ns, self.pend,
                          sd.shot_buffer, sd.round_offsets, sd.trigger)

    def precompile(self) -> None:
        """Compile (or load from the cache) the reply kernels for these argument types
        without running them, so the first decoded window pays no compilation."""
        words, buf, tx_off, _, n_slots, slot_size = self.ring
        head = (words, buf, tx_off, n_slots, slot_size, self.out_buf, self.ctl)
        corr = head + (self.pend, self.stream_id, np.zeros(self.sd.num_observables, np.uint8),
                       np.zeros(1, np.int64), self.want_faults, 0, 0, False,
                       self.send_timeout_ns)
        why, _, n = decoder_error_text("x")
        drop = head + (*self.records, self.pend, self.stream_id, self.sd.num_rounds,
                       self.send_timeout_ns, why, n)
        for fn, args in ((send_correction_kernel, corr), (drop_shot_kernel, drop)):
            fn.compile(tuple(numba.typeof(a) for a in args))

    def run(self) -> int:
        """Serve until BYE, a stop request, an idle timeout or a send failure; returns that
        ``EXIT_*`` code."""
        words, buf, tx_off, rx_off, n_slots, slot_size = self.ring
        sd, pend = self.sd, self.pend
        while True:
            code = serve_host_kernel(*self.ring, *self.loop_args)
            if code != EXIT_DECODE:
                return code
            try:
                obs, faults, first, last, shot_end = sd.decode(
                    pend.item(P_TRIGGER), pend.item(P_ROUND) + pend.item(P_NEXT) - 1)
            except Exception as e:  # the shot is dropped, the stream goes on (as over ZeroMQ)
                sd.reset()
                log.warning("decoder_error", extra={"qecd": {
                    "stream_id": self.stream_id, "exception": type(e).__name__,
                    "detail": str(e)[:200], "round": int(pend[P_ROUND] + pend[P_NEXT] - 1)}})
                why, _, n = decoder_error_text(decoder_failed_reason(
                    self.backend, self.stream_id, type(e).__name__, str(e)))
                if drop_shot_kernel(words, buf, tx_off, n_slots, slot_size, self.out_buf,
                                    self.ctl, *self.records, pend, self.stream_id,
                                    sd.num_rounds, self.send_timeout_ns, why, n) != 0:
                    return EXIT_SEND_FAILED
                continue
            if send_correction_kernel(words, buf, tx_off, n_slots, slot_size, self.out_buf,
                                      self.ctl, pend, self.stream_id, obs, faults,
                                      self.want_faults, first, last, shot_end,
                                      self.send_timeout_ns) != 0:
                return EXIT_SEND_FAILED
