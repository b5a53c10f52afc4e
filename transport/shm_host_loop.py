"""Shared-memory streams for backends that cannot run inside Numba (``pymatching``, ...).

:func:`~qecd.transport.shm_stream.serve_stream_kernel` runs the whole per-stream loop in
Numba because the ``uf`` window engine is compiled too. PyMatching is a C++ library called
through Python, so here the loop leaves Numba **only when a window must be decoded**:

1. :func:`serve_host_kernel` (Numba, GIL released) polls the request ring, validates each
   packet exactly as the compiled loop does (:func:`~qecd.transport.shm_stream.check_packet`),
   answers HEARTBEATs and ERRORs, and unpacks each round's bits straight into the stream
   decoder's shot buffer (:attr:`~qecd.decoder.window.StreamDecoder.shot_buffer`). When a
   round completes a window it saves where it stopped in ``pend`` and returns
   ``EXIT_DECODE``.
2. Python calls :meth:`~qecd.decoder.window.StreamDecoder.decode_due` for that round (the
   backend's own decode, the commit and the carry across the window boundary), then
   :func:`send_correction_kernel` writes the CORRECTION into the reply ring and rings its
   doorbell, and the loop re-enters Numba where it left off (a packet carrying several
   rounds resumes at its next round).

Rounds that trigger nothing never touch the interpreter. Service time, lag and the decode
flag are recorded per packet as in the compiled loop, so both report the same way; a
CORRECTION's ``service_ns`` runs from taking the packet off the ring to writing the reply.

Example
-------
>>> import numpy as np
>>> from qecd.codes import build_experiment
>>> from qecd.decoder.window import StreamDecoder
>>> from qecd.transport.shm_service import ShmStreamClient, ShmStreamServer
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

import numba
import numpy as np

from qecd import jit_cache
from qecd.transport import _atomics, shm_ring, shm_stream

jit_cache.invalidate_if_changed(__file__, [_atomics.__file__, shm_ring.__file__,
                                           shm_stream.__file__], __name__)

from qecd.decoder.window import StreamDecoder  # noqa: E402
from qecd.transport._atomics import monotonic_ns  # noqa: E402
from qecd.transport.shm_ring import ring_send  # noqa: E402
from qecd.transport.shm_stream import (  # noqa: E402
    CTL_CORRECTIONS,
    CTL_NEXT_ROUND,
    CTL_ROUNDS,
    E_DECODER,
    EXIT_BYE,
    EXIT_SEND_FAILED,
    HEADER_SIZE,
    REPLY_BYE,
    T_SYNDROME,
    _correction,
    _error,
    check_packet,
    poll_request,
    record_packet,
    send_reply,
)

_JIT = dict(cache=True, nogil=True, _nrt=False)

#: serve_host_kernel's extra exit code: a window is due (see ``pend``)
EXIT_DECODE = 16
#: ``pend`` (int64) slots: packet in progress?, its next round index, its round count, its
#: first round, its timestamp, when it was taken off the ring, did it decode?, the round
#: (within the shot) whose window is due
P_ACTIVE, P_NEXT, P_COUNT, P_ROUND, P_TS, P_T0, P_DECODED, P_TRIGGER = range(8)


@numba.njit(**_JIT)
def serve_host_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, server_side, in_buf,
                      out_buf, ctl, rec_service, rec_lag, rec_flags, rec_n, stream_id,
                      idle_timeout_ns, send_timeout_ns, pend, shot_bits, round_offsets, trigger):
    """Serve one stream until a window is due (``EXIT_DECODE``), BYE, a stop request or an
    idle timeout; the arguments are those of
    :func:`~qecd.transport.shm_stream.serve_stream_kernel` up to ``send_timeout_ns``, then
    ``pend`` (int64[8], zeros for a new stream), the decoder's ``shot_bits`` (uint8, layout
    order), the rounds' offsets into it and the round -> window trigger table."""
    n_rounds = round_offsets.shape[0] - 1
    while True:
        if pend[P_ACTIVE] == 0:
            n = poll_request(words, buf, rx_off, n_slots, slot_size, in_buf, ctl, server_side,
                             idle_timeout_ns)
            if n < 0:
                return -1 - n
            t0 = monotonic_ns()
            reply, count, rnd, ts = check_packet(in_buf, n, out_buf, stream_id,
                                                 ctl[CTL_NEXT_ROUND], round_offsets)
            if reply == REPLY_BYE:
                ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, HEADER_SIZE,
                          send_timeout_ns, -1)
                return EXIT_BYE
            if reply > 0:
                if send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, reply,
                              send_timeout_ns, ctl) != 0:
                    return EXIT_SEND_FAILED
                continue
            pend[P_ACTIVE], pend[P_NEXT], pend[P_COUNT], pend[P_ROUND] = 1, 0, count, rnd
            pend[P_TS], pend[P_T0], pend[P_DECODED] = ts, t0, 0
        count, rnd, i = pend[P_COUNT], pend[P_ROUND], pend[P_NEXT]
        o = HEADER_SIZE
        for j in range(i):  # resume after the round that returned for a decode
            t = (rnd + j) % n_rounds
            o += (round_offsets[t + 1] - round_offsets[t] + 7) >> 3
        while i < count:
            t = (rnd + i) % n_rounds
            lo = round_offsets[t]
            for b in range(round_offsets[t + 1] - lo):
                shot_bits[lo + b] = (in_buf[o + (b >> 3)] >> (b & 7)) & 1
            o += (round_offsets[t + 1] - lo + 7) >> 3
            i += 1
            if trigger[t] >= 0:
                pend[P_NEXT], pend[P_TRIGGER], pend[P_DECODED] = i, t, 1
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
    ln = _correction(out_buf, stream_id, rnd + pend[P_COUNT] - 1, pend[P_TS],
                     shot_base + first, shot_base + last, monotonic_ns() - pend[P_T0], obs,
                     faults, faults.shape[0], want_faults, shot_end)
    if ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                 -1) != 0:
        return -1
    ctl[CTL_CORRECTIONS] += 1
    return 0


@numba.njit(**_JIT)
def send_decoder_error_kernel(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, pend,
                              stream_id, send_timeout_ns):
    """Answer a window whose decode raised with ERROR ``DECODER_FAILED``; 0 or -1."""
    ln = _error(out_buf, E_DECODER, T_SYNDROME, stream_id, pend[P_ROUND], pend[P_TS],
                ctl[CTL_NEXT_ROUND])
    return send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                      ctl)


def run_host_loop(sd: StreamDecoder, ring_args: tuple, loop_args: tuple, pend: np.ndarray,
                  want_faults: bool) -> int:
    """Drive :func:`serve_host_kernel` and decode due windows with ``sd`` until the kernel
    returns anything but ``EXIT_DECODE``; returns that ``EXIT_*`` code.

    ``ring_args`` are ``(words, buf, tx_off, rx_off, n_slots, slot_size)``; ``loop_args``
    the kernel's arguments from ``server_side`` to ``send_timeout_ns``."""
    words, buf, tx_off, rx_off, n_slots, slot_size = ring_args
    out_buf, ctl, stream_id, send_timeout_ns = loop_args[2], loop_args[3], loop_args[8], \
        loop_args[10]
    trigger = sd.trigger_table()
    offsets = np.concatenate([[0], np.cumsum(sd.layout.round_sizes)]).astype(np.int64)
    shot_bits = sd.shot_buffer
    while True:
        code = serve_host_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, *loop_args,
                                 pend, shot_bits, offsets, trigger)
        if code != EXIT_DECODE:
            return code
        try:
            c = sd.decode_due(int(pend[P_TRIGGER]))
        except Exception:  # a backend failure answers this window, never ends the stream
            if send_decoder_error_kernel(words, buf, tx_off, n_slots, slot_size, out_buf, ctl,
                                         pend, stream_id, send_timeout_ns) != 0:
                return EXIT_SEND_FAILED
            continue
        if send_correction_kernel(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, pend,
                                  stream_id, c.observables, c.faults.astype(np.int64),
                                  want_faults, c.first_round, c.last_round, c.final,
                                  send_timeout_ns) != 0:
            return EXIT_SEND_FAILED


def precompile_host_kernels(ring_args: tuple, out_buf: np.ndarray, ctl: np.ndarray,
                            pend: np.ndarray, stream_id: int, num_observables: int) -> None:
    """Compile (or load from the cache) the reply kernels for these argument types without
    running them, so the first decoded window of a stream pays no compilation."""
    words, buf, tx_off, _, n_slots, slot_size = ring_args
    corr = (words, buf, tx_off, n_slots, slot_size, out_buf, ctl, pend, stream_id,
            np.zeros(num_observables, np.uint8), np.zeros(1, np.int64), False, 0, 0, False, 0)
    err = (words, buf, tx_off, n_slots, slot_size, out_buf, ctl, pend, stream_id, 0)
    for fn, args in ((send_correction_kernel, corr), (send_decoder_error_kernel, err)):
        fn.compile(tuple(numba.typeof(a) for a in args))
