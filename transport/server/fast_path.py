"""The ZeroMQ data plane in compiled code: SYNDROME in, CORRECTION out, without Python.

The Python loop (:mod:`qecd.transport.server.loop`) costs tens of microseconds per packet in
pyzmq calls, header parsing, attribute lookups and the GIL, and its tail comes from the
interpreter (the switch interval, the collector, other threads). The per-round budget is
10 µs at p99. So the socket is drained by :func:`drain`, a Numba kernel that calls libzmq on
the ROUTER socket itself (:mod:`qecd.transport.server.libzmq_native`) with the GIL released:

1. receive a message (routing id, packet) without waiting;
2. if the packet is a well-formed SYNDROME that the Python path would accept as it stands
   (header rules of :func:`~qecd.transport.wire.parse_packet`, a stream registered here whose
   owner is this routing id, the expected round, ``count`` within ``max_backlog``, the
   payload's length and padding), run the stream's engine on it
   (:func:`~qecd.transport.engine.engine_step`) and send each CORRECTION it writes on the
   same socket, recording every round's service time in the server's
   :class:`~qecd.transport.server.metrics.ServiceRecorder` arrays;
3. anything else (a control message, a bad or out-of-order packet, a stream that is not
   registered, a record ring about to wrap) is left in the kernel's buffers and the kernel
   returns: the Python loop handles that message exactly as it handles every message
   (:meth:`FastPath.handoff_parts`), so every check, error reply, rate limit and counter of
   the Python path applies unchanged, and the fast path only ever serves packets whose
   answer it shares with the Python path byte for byte.

A stream's counters (next round, rounds received, corrections sent, committed round, last
seen, input lag) live in one row of :attr:`FastPath.table`, read and written by both paths:
:class:`FastStreamSession` is a :class:`~qecd.transport.server.session.StreamSession` whose
attributes of those names are that row.

**Windows decoded on the host** (``decodes_on_host``: PyMatching, the protocol's default
decoder, is C++ behind Python). When the engine returns ``STEP_WINDOW_DUE``, :func:`drain`
saves where the packet stopped (its row, round index, byte offset, header fields, receipt and
step times; the packet's bytes stay in ``frame_buf``) and returns ``ST_WINDOW_DUE``.
:meth:`FastPath.drain` calls the plan's ``host_decode()`` (PyMatching's binding on
preallocated views; only PyMatching allocates) and then :func:`resume`, a nogil kernel that
commits the window (:func:`~qecd.transport.engine.engine_resume`), sends its CORRECTION,
records the rounds and serves the rest of the packet, stopping again if another window comes
due; then :func:`drain` is entered again. A ``ValueError`` from the host decoder is the
engine's no-solution outcome (``ST_NO_SOLUTION``: DECODER_ERROR and SYNDROMES_DROPPED from
Python, as on the Python path). Python runs for the window decode alone: the rounds between
windows, the checks and the sends stay in compiled code.

**Several engine kinds at once.** A stream's engine context has a Numba type that depends on
its backend (uf, bp-cluster and pymatching are three types), and a typed list holds one type.
The table keeps one typed list per type (a *kind*, column ``F_KIND``; at most
:attr:`FastPath.MAX_KINDS`), and :func:`drain` is compiled once per kind. A drain serves its
own kind's packets; a packet for a stream of another kind ends the call with
``ST_OTHER_KIND`` (matched, its payload not yet checked), and :meth:`FastPath.drain` enters
that kind's drain, which serves the packet in the buffers first and then keeps draining. Why
this rather than one drain over all kinds, or a per-packet "serve this one" kernel for the
other kinds: a Numba function cannot index a heterogeneous collection of contexts at run time
(a branch per kind would need a specialisation of every combination of kinds a server
happens to hold), while one drain per kind costs one Python round trip (a kernel dispatch
from Python) only when consecutive packets on the socket are for streams of different
kinds; a run of packets of one kind, the usual case (one vendor, one decoder), never leaves
compiled code. A per-packet kernel for the other kinds would pay that round trip on every
one of their packets.

Between two packets the kernel waits in ``zmq_poll`` on the socket and the loop's wake-up
descriptor (until the next housekeeping), not in the Python loop's poller. The server's
totals (:class:`~qecd.transport.server.metrics.ServerCounters`) and the service-time records
it wrote are committed by Python as soon as the socket is empty again, before that wait.

Only plain (non-CURVE) servers use it: with CURVE the owner is the ``User-Id`` property of
each message, which ``zmq_recv`` does not give. Every backend that compiles streams is served
here (``compiles_streams``); others, and raw measurement input, stay on the Python path.
:func:`available` says whether this process can use it at all.

Example
-------
>>> from qecd.transport.client import Client
>>> from qecd.transport.server.loop import Server, ServerConfig
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     with Client(server.endpoints[0]) as client:
...         stream = client.open_stream("repetition:d=3,r=2,p=0.01", decoder="uf")
...         _ = stream.send_round(np.zeros(sum(stream.slice_sizes[:3]), np.uint8), count=3)
...         c = stream.recv_correction(timeout_s=30)
...         _ = client.heartbeat()  # handled by Python: the fast path's totals are in first
>>> (c.first_round, c.last_round), server.counters.fast_path_packets
((0, 2), 1)
"""

from __future__ import annotations

import random
import time

import numba
import numpy as np
import zmq
from numba import typed

from qecd import _jit
from qecd.decoder import compiled_stream
from qecd.transport import engine as _engine
from qecd.transport.server import libzmq_native as _native
from qecd.transport.server.session import StreamSession
from qecd.transport.shm import atomics as _atomics
from qecd.transport.wire import compiled as wire_compiled
from qecd.transport.wire.header import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    Header,
    MsgType,
    claimed_type,
)

_jit.invalidate_if_changed(__file__, [_engine.__file__, compiled_stream.__file__,
                                      _atomics.__file__, wire_compiled.__file__,
                                      _native.__file__], __name__)

from qecd.transport.engine import (  # noqa: E402,I001
    STEP_DONE, STEP_NO_SOLUTION, STEP_WINDOW_DUE, engine_no_solution_ctx, engine_resume,
    engine_step, payload_ok)
from qecd.transport.server.libzmq_native import (  # noqa: E402
    DONTWAIT, MSG_T_SIZE, POLLIN, POLLITEM, SNDMORE, copy_bytes, take_message, zmq_errno,
    zmq_msg_close, zmq_msg_data, zmq_msg_recv, zmq_poll, zmq_rcvmore, zmq_recv, zmq_send)
from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402

__all__ = ["FastPath", "FastStreamSession", "available", "drain", "resume"]

# -- the stream table: one int64 row per registered stream --------------------------------------
F_SID = 0  #: stream id (0: free row)
F_ACTIVE = 1  #: 1 while the stream is served here
F_NEXT = 2  #: next_round
F_RECEIVED = 3  #: rounds_received
F_SENT = 4  #: corrections_sent
F_COMMITTED = 5  #: committed
F_LAST_SEEN = 6  #: last_seen_ns (on the server's liveness clock)
F_MIN_DELAY = 7  #: smallest receipt - timestamp seen (StreamSession._min_delay)
F_LAG = 8  #: lag_ns
F_WANT_FAULTS = 9
F_MAX_BACKLOG = 10
F_ROUTE_LEN = 11
F_KIND = 12  #: which of the fast path's engine kinds (typed lists) the stream's context is in
N_FIELDS = 13
MAX_ROUTE = 256  #: a ZeroMQ routing id is at most 255 bytes
_INT64_MAX = (1 << 63) - 1

# -- drain() results: res[R_*] -----------------------------------------------------------------
#: the socket had no message left (or the budget of packets was used: see R_PACKETS)
ST_EMPTY = 0
#: a message is in the buffers for the Python path (R_ROUTE_LEN, R_FRAME_LEN, R_MORE)
ST_HANDOFF = 1
#: the engine found no solution for a window of stream row R_SLOT (see R_* below)
ST_NO_SOLUTION = 2
#: a libzmq call failed with errno R_ERRNO (not EAGAIN / EHOSTUNREACH)
ST_ZMQ_ERROR = 3
#: a window of stream row R_SLOT is due and its decoder runs on the host: the packet stopped
#: at its round R_I_NEXT (R_I, R_O, R_FIRST, R_TS, R_T0, ... say where); decode it, then
#: :func:`resume`
ST_WINDOW_DUE = 4
#: a packet in the buffers (lengths as for ST_HANDOFF) is for stream row R_PEND, whose engine
#: is of another kind (another Numba type): call :func:`drain` with that kind's list, which
#: serves it first
ST_OTHER_KIND = 5
R_STATUS, R_PACKETS, R_ROUNDS, R_SENT, R_DROPPED, R_RECORDED = 0, 1, 2, 3, 4, 5
R_ROUTE_LEN, R_FRAME_LEN, R_MORE, R_T_RECV, R_ERRNO = 6, 7, 8, 9, 10
R_SLOT, R_I_NEXT, R_DONE, R_T0, R_T1, R_ROUNDS_OF_PACKET = 11, 12, 13, 14, 15, 16
R_I, R_O, R_FIRST, R_TS, R_PEND = 17, 18, 19, 20, 21
#: input: after serving, keep waiting for more packets this long (ns) before returning for
#: Python to commit the totals (0: return as soon as the socket is empty)
R_COMMIT_NS = 22
#: input: address of the drain's ``zmq_msg_t`` receive slot (<= 0: none, copy every packet
#: with ``zmq_recv``); input: packets above this many bytes stay in it unless they could be
#: served here (:func:`could_serve`); output: 1 when the handed-off packet is such a packet
#: (``handoff_parts`` takes it)
R_MSG_ADDR, R_BIG_AT, R_IN_MSG = 23, 24, 25
#: output: HEARTBEATs naming a stream served here that the drain echoed (:func:`_heartbeat_row`),
#: and how many of those echoes were dropped (the peer's queue full, or the peer gone)
R_HEARTBEATS, R_HB_DROPPED = 26, 27
N_RESULTS = 28

_SYNDROME = int(MsgType.SYNDROME)
_HEARTBEAT = int(MsgType.HEARTBEAT)
_HELLO = int(MsgType.HELLO)
_EAGAIN = int(zmq.EAGAIN)
_EINTR = 4  # Linux
_EHOSTUNREACH = int(zmq.EHOSTUNREACH)
_SERVICE_AT = HEADER_SIZE + 16  # CORRECTION service_ns, u64


def available() -> bool:
    """True when this process can serve ZeroMQ packets from compiled code (pyzmq's Cython
    backend and its libzmq found; see
    :func:`~qecd.transport.server.libzmq_native.unavailable_reason`)."""
    return _native.available()


@numba.njit(**_jit.INLINE)
def could_serve(b, n):
    """The packet of ``n`` bytes (``n > HEADER_SIZE``) whose header is in ``b`` claims to be a
    SYNDROME whose ``payload_len`` matches its length: the only kind of packet :func:`drain`
    may serve from its bytes. Any other large packet (a HELLO, or one whose header alone
    refuses it) is handed to the Python path in libzmq's own buffer, uncopied: copying a
    fuzz's 16 MB frame into ``frame_buf`` held the loop 0.6-0.75 ms, and 37 ms the first
    time (its untouched pages faulted in; ``copy_bytes`` timed alone)."""
    return (b[0] == (MAGIC & 0xFF) and b[1] == (MAGIC >> 8) and b[3] == _SYNDROME
            and _u32(b, 12) == n - HEADER_SIZE)


@numba.njit(**_jit.INLINE)
def _u16(b, o):
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@numba.njit(**_jit.INLINE)
def _u32(b, o):
    return _u16(b, o) | (_u16(b, o + 2) << 16)


@numba.njit(**_jit.INLINE)
def _u64(b, o):
    """Little-endian u64 at ``b[o]``, or -1 when it does not fit an int64."""
    hi = _u32(b, o + 4)
    if hi >= 0x80000000:
        return np.int64(-1)
    return _u32(b, o) | (hi << 32)


@numba.njit(**_jit.INLINE)
def _put_u64(b, o, v):
    for k in range(8):
        b[o + k] = (v >> (8 * k)) & 0xFF


@numba.njit(**_jit.INLINE)
def _record(svc, dec, decd, rsid, cap, at, sid, service, decode):
    j = at % cap
    svc[j] = service
    dec[j] = decode
    decd[j] = 1 if decode > 0 else 0
    rsid[j] = sid


@numba.njit(**_jit.CACHED)
def _match(frame, n, route, rl, max_frame, tab, routes, n_used, ctxs, kind):
    """The table row of the stream a SYNDROME ``frame[:n]`` from ``route`` is for, when the
    Python path would take it whole without an error; else -1 (hand it to Python). A stream
    whose engine is of another kind than ``kind`` gives ``-2 - row`` (its payload is checked
    by that kind's :func:`drain`)."""
    if n < HEADER_SIZE + 1 or n > max_frame:
        return -1
    if _u16(frame, 0) != MAGIC or frame[2] != VERSION or frame[3] != _SYNDROME:
        return -1
    if _u16(frame, 4) != 0 or _u32(frame, 12) != n - HEADER_SIZE:
        return -1
    count = _u16(frame, 6)
    sid = _u32(frame, 8)
    if count == 0 or sid == 0:
        return -1
    rnd = _u64(frame, 16)
    ts = _u64(frame, 24)
    if rnd < 0 or ts < 0 or ts >= (np.int64(1) << 62):  # unusual: let Python judge it
        return -1
    slot = _owned_row(sid, route, rl, tab, routes, n_used)
    if slot < 0 or rnd != tab[slot, F_NEXT] or count > tab[slot, F_MAX_BACKLOG]:
        return -1
    if tab[slot, F_KIND] != kind:
        return -2 - slot
    if not payload_ok(frame, HEADER_SIZE, n, rnd, count, ctxs[slot].plan.round_offsets):
        return -1
    return slot


@numba.njit(**_jit.INLINE)
def _owned_row(sid, route, rl, tab, routes, n_used):
    """The table row of active stream ``sid`` when ``route`` owns it (plain mode: the
    owner is the routing id); else -1 (not served here, or another connection's)."""
    for slot in range(n_used):
        if tab[slot, F_SID] != sid or tab[slot, F_ACTIVE] == 0:
            continue
        if tab[slot, F_ROUTE_LEN] != rl:
            return -1
        for k in range(rl):
            if routes[slot, k] != route[k]:
                return -1
        return slot
    return -1


@numba.njit(**_jit.INLINE)
def _heartbeat_row(frame, n, route, rl, tab, routes, n_used):
    """The table row of the stream a HEARTBEAT ``frame[:n]`` from ``route`` names, when the
    Python path would echo it without an error (``Server._on_heartbeat``: a 32-byte header
    of this version, no flags, ``count`` 0, an open stream served here whose owner is this
    routing id); else -1. Any kind: a HEARTBEAT needs no engine."""
    if n != HEADER_SIZE or _u16(frame, 0) != MAGIC or frame[2] != VERSION:
        return -1
    if frame[3] != _HEARTBEAT or _u16(frame, 4) != 0 or _u16(frame, 6) != 0:
        return -1
    sid = _u32(frame, 8)
    if sid == 0 or _u32(frame, 12) != 0:
        return -1
    return _owned_row(sid, route, rl, tab, routes, n_used)


@numba.njit(**_jit.INLINE)
def _send_reply(sock, rptr, rl, out_buf, n, tab, slot, last, t_recv, t0, t1, done, svc, dec,
                decd, rsid, at, res):
    """Send the CORRECTION ``out_buf[:n]`` (``Server._run_engine``: commit, ``service_ns``,
    send) and record the ``done`` rounds it ends at ``at, at + 1, ...``; returns ``(status,
    sent, dropped)``."""
    cap = svc.shape[0]
    sid = tab[slot, F_SID]
    status = ST_EMPTY
    sent = dropped = 0
    tab[slot, F_COMMITTED] = last + 1
    _put_u64(out_buf, _SERVICE_AT, monotonic_ns() - t_recv)
    ok = zmq_send(sock, rptr, rl, SNDMORE | DONTWAIT) >= 0
    if ok:
        ok = zmq_send(sock, out_buf.ctypes.data, n, DONTWAIT) >= 0
    if ok:
        sent = 1
        tab[slot, F_SENT] += 1
    else:
        e = zmq_errno()
        if e != _EAGAIN and e != _EHOSTUNREACH:
            status = ST_ZMQ_ERROR
            res[R_ERRNO] = e
        dropped = 1
    t2 = monotonic_ns()
    for k in range(done - 1):
        _record(svc, dec, decd, rsid, cap, at + k, sid, t1 - t_recv, 0)
    _record(svc, dec, decd, rsid, cap, at + done - 1, sid, t2 - t_recv, t1 - t0)
    return status, sent, dropped


@numba.njit(**_jit.INLINE)
def _stopped_at(res, slot, rl, i, i_next, o, count, rnd, ts, t_recv, t0, t1):
    """Where a packet stopped (a window due on the host, or no solution), for Python and
    :func:`resume` (``rl``: the length of its routing id, still in ``route_buf``)."""
    res[R_SLOT] = slot
    res[R_ROUTE_LEN] = rl
    res[R_I] = i
    res[R_I_NEXT] = i_next
    res[R_DONE] = i_next - i
    res[R_O] = o
    res[R_ROUNDS_OF_PACKET] = count
    res[R_FIRST] = rnd
    res[R_TS] = ts
    res[R_T_RECV] = t_recv
    res[R_T0] = t0
    res[R_T1] = t1


@numba.njit(**_jit.INLINE)
def _serve_rounds(sock, rptr, rl, frame_buf, out_buf, tab, slot, ctx, i, o, count, rnd, ts,
                  t_recv, svc, dec, decd, rsid, at, res):
    """Rounds ``i..count - 1`` of the packet in ``frame_buf`` (round ``i`` at byte ``o``)
    through stream ``slot``'s engine, each CORRECTION sent, each round recorded from ``at``
    on. Returns ``(status, sent, dropped, recorded)``: ``ST_EMPTY`` once the packet is done;
    ``ST_WINDOW_DUE`` / ``ST_NO_SOLUTION`` with :func:`_stopped_at` filled in;
    ``ST_ZMQ_ERROR``."""
    cap = svc.shape[0]
    sid = tab[slot, F_SID]
    want = tab[slot, F_WANT_FAULTS] != 0
    seq = rnd + count - 1
    sent = dropped = recorded = 0
    while True:
        t0 = monotonic_ns()
        st, i_next, o, n, last = engine_step(frame_buf, o, i, count, rnd, seq, ts, t_recv,
                                             out_buf, sid, want, ctx.state, ctx.plan)
        t1 = monotonic_ns()
        done = i_next - i
        if st == STEP_DONE:
            for _ in range(done):
                _record(svc, dec, decd, rsid, cap, at + recorded, sid, t1 - t_recv, 0)
                recorded += 1
            return ST_EMPTY, sent, dropped, recorded
        if st == STEP_NO_SOLUTION or st == STEP_WINDOW_DUE:
            _stopped_at(res, slot, rl, i, i_next, o, count, rnd, ts, t_recv, t0, t1)
            return (ST_NO_SOLUTION if st == STEP_NO_SOLUTION else ST_WINDOW_DUE), sent, \
                dropped, recorded
        status, s1, d1 = _send_reply(sock, rptr, rl, out_buf, n, tab, slot, last, t_recv, t0,
                                     t1, done, svc, dec, decd, rsid, at + recorded, res)
        sent += s1
        dropped += d1
        recorded += done
        i = i_next
        if status != ST_EMPTY:
            return status, sent, dropped, recorded


@numba.njit(**_jit.CACHED)
def drain(sock, kind, budget, stalled_ns, max_frame, route_buf, frame_buf, tab, routes, n_used,
          ctxs, out_buf, svc, dec, decd, rsid, rec_at, room, items, deadline_ns, res):
    """Serve the SYNDROME packets on ROUTER socket ``sock`` (a ``void *``) until ``budget``
    packets were handled, a message needs the Python path, or the socket is empty at
    ``deadline_ns``: when it is empty before then and nothing was served yet in this call,
    wait in ``zmq_poll`` on ``items`` (the socket and the server's wake-up descriptor; a
    wake-up, a signal or the deadline ends the call), so the loop waits for the next packet
    here rather than in Python. A call that served packets goes on waiting for more (served
    the same way) until ``res[R_COMMIT_NS]`` after the first of them, then returns once the
    socket is empty, so that Python commits its totals: the interpreter runs at most once per
    that span while packets flow, not after each (its turn, ~10 µs, capped the rate with one
    round per packet at ~66k packets/s and queued the rest; 0 restores that behaviour).

    Parameters
    ----------
    sock : int
        ``zmq.Socket.underlying`` of the server's ROUTER socket (same libzmq instance).
    kind : int
        Which engine kind ``ctxs`` holds (streams whose table row has another ``F_KIND`` are
        returned as ``ST_OTHER_KIND``). When ``res[R_PEND]`` is a row of this kind on entry,
        the packet already in the buffers is served first (it came from ``ST_OTHER_KIND``).
    budget : int
        Most packets to serve in this call.
    stalled_ns : int
        The server's stall total: ``last_seen_ns`` is written as receipt time minus it.
    max_frame : int
        The server's ``max_frame`` (larger frames go to Python, which refuses them).
    route_buf, frame_buf : numpy.ndarray of uint8
        Receive buffers: at least 256 bytes; more than the socket's ``ZMQ_MAXMSGSIZE``.
    tab, routes, n_used, ctxs : the stream table (see :class:`FastPath`)
    out_buf : numpy.ndarray of uint8
        CORRECTION buffer, at least the largest registered stream's frame.
    svc, dec, decd, rsid : numpy.ndarray
        The service recorder's ring arrays; entries go at ``rec_at, rec_at + 1, ...`` (modulo
        their length), at most ``room`` of them.
    items : numpy.ndarray of POLLITEM, length 2
        The socket, then the wake-up descriptor (``POLLIN`` both).
    deadline_ns : int
        ``CLOCK_MONOTONIC`` ns until which an empty socket is waited for (0: never wait).
    res : numpy.ndarray of int64
        Out: ``res[R_*]`` (status, totals, the handed-off message's lengths, ...).
    """
    packets = rounds = sent = dropped = recorded = 0
    first_t = np.int64(0)
    status = ST_EMPTY
    rptr = route_buf.ctypes.data
    fptr = frame_buf.ctypes.data
    iptr = items.ctypes.data
    pend = res[R_PEND]
    res[R_PEND] = -1
    msg_addr = res[R_MSG_ADDR]
    big_at = res[R_BIG_AT]
    heartbeats = hb_dropped = 0
    while packets + heartbeats < budget:
        if pend >= 0:  # handed over by another kind's drain: already received and matched
            slot, pend = pend, -1
            rl, fl, more, t_recv = res[R_ROUTE_LEN], res[R_FRAME_LEN], 0, res[R_T_RECV]
            if tab[slot, F_KIND] != kind or not payload_ok(
                    frame_buf, HEADER_SIZE, fl, _u64(frame_buf, 16), _u16(frame_buf, 6),
                    ctxs[slot].plan.round_offsets):
                slot = -1
        else:
            rl = zmq_recv(sock, rptr, route_buf.shape[0], DONTWAIT)
            if rl < 0:
                e = zmq_errno()
                if e != _EAGAIN:
                    status = ST_ZMQ_ERROR
                    res[R_ERRNO] = e
                    break
                now = monotonic_ns()
                if now >= deadline_ns:
                    break
                wait_until = deadline_ns
                if packets > 0:  # the caller commits what was served, at the latest once
                    commit_ns = res[R_COMMIT_NS]  # commit_ns after the first of them
                    if commit_ns <= 0 or now - first_t >= commit_ns:
                        break
                    wait_until = min(deadline_ns, first_t + commit_ns)
                items[0].revents = 0
                items[1].revents = 0
                rc = zmq_poll(iptr, 2, (wait_until - now + 999_999) // 1_000_000)
                if rc < 0:
                    e = zmq_errno()
                    if e != _EINTR:
                        status = ST_ZMQ_ERROR
                        res[R_ERRNO] = e
                    break  # a signal: its Python handler runs when this call returns
                if items[1].revents != 0 or rc == 0:
                    break  # a wake-up for the loop, or the deadline
                continue
            more = zmq_rcvmore(sock)
            fl = -1
            kept = False
            if more == 1:
                if msg_addr > 0:  # in libzmq's own buffer first: a large HELLO stays there
                    fl = zmq_msg_recv(msg_addr, sock, DONTWAIT)
                    if fl >= 0:
                        data = zmq_msg_data(msg_addr)
                        if fl > big_at:  # its header first: could the fast path serve it?
                            copy_bytes(fptr, data, min(fl, HEADER_SIZE))
                            kept = not could_serve(frame_buf, fl)
                        if not kept:
                            copy_bytes(fptr, data, min(fl, frame_buf.shape[0]))
                            zmq_msg_close(msg_addr)
                    else:
                        res[R_ERRNO] = zmq_errno()  # before the close
                        zmq_msg_close(msg_addr)
                else:
                    fl = zmq_recv(sock, fptr, frame_buf.shape[0], DONTWAIT)
                    if fl < 0:
                        res[R_ERRNO] = zmq_errno()
                if fl < 0:
                    status = ST_ZMQ_ERROR
                    break
                more = zmq_rcvmore(sock)
            t_recv = monotonic_ns()
            slot = -1
            res[R_IN_MSG] = 1 if kept else 0
            if kept:
                pass  # a HELLO: the Python path's
            elif more == 0 and fl >= 0 and fl <= frame_buf.shape[0] and rl <= route_buf.shape[0]:
                hb = _heartbeat_row(frame_buf, fl, route_buf, rl, tab, routes, n_used)
                if hb >= 0:  # Server._on_heartbeat: liveness, then the byte-identical echo
                    # (not a packet that makes the call return to commit totals: a stream's
                    # HEARTBEATs are answered here while Python waits for the GIL)
                    heartbeats += 1
                    tab[hb, F_LAST_SEEN] = t_recv - stalled_ns
                    ok = zmq_send(sock, rptr, rl, SNDMORE | DONTWAIT) >= 0
                    if ok:
                        ok = zmq_send(sock, fptr, fl, DONTWAIT) >= 0
                    if not ok:
                        e = zmq_errno()
                        if e != _EAGAIN and e != _EHOSTUNREACH:
                            status = ST_ZMQ_ERROR
                            res[R_ERRNO] = e
                            break
                        hb_dropped += 1
                    continue
                slot = _match(frame_buf, fl, route_buf, rl, max_frame, tab, routes, n_used, ctxs,
                              kind)
            if slot <= -2:
                status = ST_OTHER_KIND
                res[R_PEND] = -2 - slot
                res[R_ROUTE_LEN] = rl
                res[R_FRAME_LEN] = fl
                res[R_MORE] = 0
                res[R_T_RECV] = t_recv
                break
        count = _u16(frame_buf, 6) if slot >= 0 else 0
        if slot < 0 or count > room - recorded:
            status = ST_HANDOFF
            res[R_ROUTE_LEN] = rl
            res[R_FRAME_LEN] = fl
            res[R_MORE] = more
            res[R_T_RECV] = t_recv
            break
        if packets == 0:
            first_t = t_recv
        packets += 1
        # StreamSession.begin and Server._on_syndrome: the stream takes the packet
        rnd = tab[slot, F_NEXT]
        ts = _u64(frame_buf, 24)
        tab[slot, F_LAST_SEEN] = t_recv - stalled_ns
        tab[slot, F_NEXT] = rnd + count
        tab[slot, F_RECEIVED] += count
        if ts != 0:
            delay = t_recv - ts
            if delay < tab[slot, F_MIN_DELAY]:
                tab[slot, F_MIN_DELAY] = delay
            tab[slot, F_LAG] = delay - tab[slot, F_MIN_DELAY]
        rounds += count
        # Server._run_engine
        status, s1, d1, r1 = _serve_rounds(sock, rptr, rl, frame_buf, out_buf, tab, slot,
                                           ctxs[slot], 0, HEADER_SIZE, count, rnd, ts, t_recv,
                                           svc, dec, decd, rsid, rec_at + recorded, res)
        sent += s1
        dropped += d1
        recorded += r1
        if status != ST_EMPTY:
            break
    res[R_STATUS] = status
    res[R_PACKETS] = packets
    res[R_ROUNDS] = rounds
    res[R_SENT] = sent
    res[R_DROPPED] = dropped
    res[R_RECORDED] = recorded
    res[R_HEARTBEATS] = heartbeats
    res[R_HB_DROPPED] = hb_dropped
    return status


@numba.njit(**_jit.CACHED)
def resume(sock, result, route_buf, frame_buf, tab, ctxs, out_buf, svc, dec, decd, rsid,
           rec_at, res):
    """After :func:`drain` returned ``ST_WINDOW_DUE``: commit the due window with ``result``
    (what the stream's host decoder returned for it), send its CORRECTION and serve the rest
    of the packet (still in ``frame_buf``), exactly as :func:`drain` would have; the status
    and totals go to ``res`` as there (``R_PACKETS`` and ``R_ROUNDS`` 0: the packet was
    counted by :func:`drain`). ``ST_WINDOW_DUE`` again when a further window of the packet
    comes due; ``ST_EMPTY`` when the packet is done (call :func:`drain` again)."""
    slot, i, i_next, o = res[R_SLOT], res[R_I], res[R_I_NEXT], res[R_O]
    count, rnd, ts, t_recv, t0 = (res[R_ROUNDS_OF_PACKET], res[R_FIRST], res[R_TS],
                                  res[R_T_RECV], res[R_T0])
    rl = res[R_ROUTE_LEN]
    ctx = ctxs[slot]
    sent = dropped = recorded = 0
    st, n, last = engine_resume(result, i_next, rnd, rnd + count - 1, ts, t_recv, out_buf,
                                tab[slot, F_SID], tab[slot, F_WANT_FAULTS] != 0, ctx.state,
                                ctx.plan)
    t1 = monotonic_ns()
    if st == STEP_NO_SOLUTION:
        _stopped_at(res, slot, rl, i, i_next, o, count, rnd, ts, t_recv, t0, t1)
        status = ST_NO_SOLUTION
    else:
        rptr = route_buf.ctypes.data
        status, sent, dropped = _send_reply(sock, rptr, rl, out_buf, n, tab, slot, last, t_recv,
                                            t0, t1, i_next - i, svc, dec, decd, rsid, rec_at,
                                            res)
        recorded = i_next - i
        if status == ST_EMPTY:
            status, s1, d1, r1 = _serve_rounds(sock, rptr, rl, frame_buf, out_buf, tab, slot, ctx,
                                               i_next, o, count, rnd, ts, t_recv, svc, dec, decd,
                                               rsid, rec_at + recorded, res)
            sent += s1
            dropped += d1
            recorded += r1
    res[R_STATUS] = status
    res[R_PACKETS] = 0
    res[R_ROUNDS] = 0
    res[R_SENT] = sent
    res[R_DROPPED] = dropped
    res[R_RECORDED] = recorded
    return status


class FastStreamSession(StreamSession):
    """A ZeroMQ stream whose rounds :func:`drain` may serve: the counters both paths update
    are one row of the fast path's table (``row``, an int64 view) instead of attributes.
    Everything else is :class:`~qecd.transport.server.session.StreamSession`."""

    def __init__(self, *args, row: np.ndarray, **kwargs) -> None:
        self._row = row
        row[:] = 0
        super().__init__(*args, **kwargs)
        row[F_WANT_FAULTS] = int(bool(self.want_faults))
        row[F_MAX_BACKLOG] = int(self.limits.max_backlog)

    def detach(self) -> None:
        """Keep the counters' last values when the table row is given back."""
        self._row = self._row.copy()


def _row_field(index: int, doc: str) -> property:
    def get(self) -> int:
        return int(self._row[index])

    def put(self, value: int) -> None:
        self._row[index] = max(min(int(value), _INT64_MAX), -_INT64_MAX)  # int64 row

    return property(get, put, doc=doc)


for _name, _index in (("next_round", F_NEXT), ("rounds_received", F_RECEIVED),
                      ("corrections_sent", F_SENT), ("committed", F_COMMITTED),
                      ("last_seen_ns", F_LAST_SEEN), ("_min_delay", F_MIN_DELAY),
                      ("lag_ns", F_LAG)):
    setattr(FastStreamSession, _name, _row_field(_index, f"``{_name}`` (table row)"))


class _Kind:
    """One engine kind of the table: the Numba type of its streams' contexts and their typed
    list (indexed by table row), and for a kind decoded on the host, one of its streams'
    ``host_decode`` (for the warm-up).

    Every row no live stream of this kind uses (free rows, other kinds' rows) points at one
    *filler*: a live stream's context (drawn at random), or, while the kind has none, the last
    one that closed. A closed stream's context left in its row kept its state and its plan's
    arrays alive (an evicted plan's too) until the row was reused; repointing every row at
    each close cost O(rows) typed-list writes (41% of the loop's samples in a py-spy profile
    of a HELLO flood whose streams timed out). Now a close writes its
    own row only, and all rows are repointed only when the filler's own stream closes (one
    close in as many as there are live streams, on average, in any order of closes) or the
    first live stream arrives after the kind was empty."""

    def __init__(self, index: int, ctx, host) -> None:
        self.index, self.ctx_type, self.host = index, numba.typeof(ctx), host
        self.ctxs = typed.List.empty_list(self.ctx_type)
        self.ctxs.append(ctx)
        # compile the list's len, setitem and getitem for this type now, not at its first stream
        self.ctxs[len(self.ctxs) - 1] = self.ctxs[0]
        self.live: dict[int, None] = {}  # live rows of this kind
        self.filler, self.filler_slot = ctx, -1  # -1: the filler is no live stream's
        self.warm = False

    def put(self, slot: int, ctx) -> None:
        """Row ``slot`` serves a live stream with context ``ctx``."""
        while len(self.ctxs) <= slot:
            self.ctxs.append(self.filler)
        self.ctxs[slot] = ctx
        self.live[slot] = None
        if self.filler_slot < 0:
            self._repoint(slot)

    def drop(self, slot: int) -> None:
        """Row ``slot``'s stream closed: the row points at the filler again."""
        if slot not in self.live:
            return
        del self.live[slot]
        if slot != self.filler_slot:
            self.ctxs[slot] = self.filler
        elif self.live:  # a random live one: O(1) rows per close on average, whatever the order
            self._repoint(random.choice(tuple(self.live)))
        else:  # no live stream left: the closed context fills until the next one arrives
            self.filler_slot = -1

    def _repoint(self, slot: int) -> None:
        self.filler, self.filler_slot = self.ctxs[slot], slot
        live, filler = self.live, self.filler
        for j in range(len(self.ctxs)):
            if j not in live:
                self.ctxs[j] = filler


class FastPath:
    """The stream table and receive buffers :func:`drain` works on, for one ROUTER socket.

    Parameters
    ----------
    sock : zmq.Socket
        The server's ROUTER socket (plain, no CURVE).
    max_streams : int
        Rows of the table (the server's ``max_streams``).
    wake_fd : int
        A descriptor that becomes readable when the loop must look at something else
        (the server's wake-up socketpair).
    max_frame : int
        The server's ``max_frame``; the socket's ``ZMQ_MAXMSGSIZE`` must be below
        ``2 * max_frame + 64``.
    commit_s : float
        How long :func:`drain` keeps serving after its first packet before it returns for
        the totals to be committed (``R_COMMIT_NS``); readers of the server's counters from
        another thread see them that much late at most (a STATS request is answered after
        the commit).

    Attributes
    ----------
    table : numpy.ndarray of int64, shape (max_streams, N_FIELDS)
    """

    #: most engine kinds (Numba context types, one :func:`drain` specialisation each); the
    #: registered backends that compile streams make three
    MAX_KINDS = 8

    def __init__(self, sock: zmq.Socket, *, max_streams: int, max_frame: int,
                 wake_fd: int, commit_s: float = 0.001, keep_hellos_above: int = 65536) -> None:
        if not available():
            raise RuntimeError(f"the ZeroMQ fast path is not available: "
                               f"{_native.unavailable_reason()}")
        self._sock = sock
        self._ptr = int(sock.underlying)
        self.max_frame = int(max_frame)
        self.table = np.zeros((max_streams, N_FIELDS), np.int64)
        self.routes = np.zeros((max_streams, MAX_ROUTE), np.uint8)
        self.route_buf = np.zeros(MAX_ROUTE, np.uint8)
        self.frame_buf = np.zeros(2 * self.max_frame + 64, np.uint8)  # > ZMQ_MAXMSGSIZE
        self.out_buf = np.zeros(64, np.uint8)
        self.res = np.zeros(N_RESULTS, np.int64)
        self.res[R_COMMIT_NS] = int(commit_s * 1e9)
        self.res[R_PEND] = -1
        # a HELLO above keep_hellos_above bytes is handed over in libzmq's own buffer (the
        # drain's message slot), not copied: copying 5-8 MB HELLOs out of frame_buf held the
        # loop 3-13 ms each (see handoff_parts)
        self._msg = np.zeros(MSG_T_SIZE // 8, np.int64)
        self.res[R_MSG_ADDR] = self._msg.ctypes.data
        self.res[R_BIG_AT] = int(keep_hellos_above)
        self.items = np.zeros(2, POLLITEM)
        self.items["socket"][0] = self._ptr
        self.items["fd"][1] = wake_fd
        self.items["events"] = POLLIN
        self._kinds: list[_Kind] = []
        self._kind = 0  # the kind whose drain runs first (the last one that served)
        self._n_used = 0
        self._free: list[int] = []
        self._slot_of: dict[int, int] = {}
        self._ctx_of: dict[int, object] = {}  # row -> EngineContext
        self._host_of: dict[int, object] = {}  # row -> host_decode() (decodes_on_host plans)
        self.host_windows = 0  #: windows decoded on the host for streams served here

    # -- registration ---------------------------------------------------------------------
    @staticmethod
    def takes_plan(plan) -> bool:
        """True when streams of ``plan`` may be served here: it has a compiled engine. A plan
        whose windows are decoded on the host (``decodes_on_host``: its engine returns
        ``STEP_WINDOW_DUE``, e.g. PyMatching) is served too: :func:`drain` returns
        ``ST_WINDOW_DUE``, Python runs the window decode and :func:`resume` goes on."""
        return plan.engine is not None

    def reserve(self) -> tuple[int, np.ndarray]:
        """A free table row for a new :class:`FastStreamSession`: ``(slot, row view)``."""
        if self._free:
            slot = self._free.pop()
        else:
            if self._n_used == self.table.shape[0]:
                raise RuntimeError("fast path table full")  # max_streams bounds the server too
            slot = self._n_used
            self._n_used += 1
        return slot, self.table[slot]

    def release(self, slot: int) -> None:
        """Give back a row :meth:`reserve` handed out but :meth:`register` did not take."""
        self.table[slot] = 0
        self._free.append(slot)

    def _kind_for(self, ctx, host) -> _Kind | None:
        t = numba.typeof(ctx)
        for k in self._kinds:
            if k.ctx_type == t:
                return k
        if len(self._kinds) >= self.MAX_KINDS:
            return None
        k = _Kind(len(self._kinds), ctx, host)
        self._kinds.append(k)
        return k

    def register(self, slot: int, s: FastStreamSession) -> bool:
        """Serve stream ``s`` (its row is ``slot``) from :func:`drain`. False (nothing
        registered) when its routing id does not fit or it has no engine context (or it
        would be a kind past :attr:`MAX_KINDS`). The first stream of a kind loads (or
        compiles) that kind's kernels."""
        route = s.owner
        ctx = s.engine
        if not isinstance(route, bytes) or len(route) > MAX_ROUTE or ctx is None:
            return False
        host = s.plan.engine.windows.host_decode
        kind = self._kind_for(ctx, host)
        if kind is None:
            return False
        kind.put(slot, ctx)
        if not kind.warm:
            self._warm_kind(kind)
        need = s._engine_out.shape[0]
        if need > self.out_buf.shape[0]:
            self.out_buf = np.zeros(need, np.uint8)
        self.routes[slot, :len(route)] = np.frombuffer(route, np.uint8)
        row = self.table[slot]
        row[F_ROUTE_LEN] = len(route)
        row[F_SID] = s.stream_id
        row[F_KIND] = kind.index
        self._slot_of[s.stream_id] = slot
        self._ctx_of[slot] = ctx
        if host is not None:
            self._host_of[slot] = host
        row[F_ACTIVE] = 1
        return True

    def rebind(self, s: FastStreamSession) -> None:
        """Serve ``s`` for its current owner (a resume moved it to another routing id,
        docs/protocol.md §6.9): only that id's SYNDROMEs match its row from now on. An owner
        that does not fit the table takes the stream off the fast path (Python serves it)."""
        slot = self._slot_of.get(s.stream_id)
        if slot is None:
            return
        route = s.owner
        if not isinstance(route, bytes) or len(route) > MAX_ROUTE:
            self.unregister(s)
            return
        self.routes[slot] = 0
        self.routes[slot, :len(route)] = np.frombuffer(route, np.uint8)
        self.table[slot, F_ROUTE_LEN] = len(route)

    def unregister(self, s: FastStreamSession) -> None:
        """Stop serving ``s`` here (closed); its counters stay readable on ``s``."""
        slot = self._slot_of.pop(s.stream_id, None)
        if slot is None or not isinstance(s, FastStreamSession):
            return
        s.detach()
        kind = self._kinds[int(self.table[slot, F_KIND])]
        self.table[slot] = 0
        self._ctx_of.pop(slot, None)
        self._host_of.pop(slot, None)
        self._free.append(slot)
        kind.drop(slot)

    def __len__(self) -> int:
        return len(self._slot_of)

    # -- serving --------------------------------------------------------------------------
    def warm_up_with(self, plan) -> bool:
        """Load (or compile) the kernels for streams of ``plan`` before any such stream
        (the kind its engine context is of); False when it has no engine."""
        if not self.takes_plan(plan):
            return False
        ctx = plan.engine.context(plan.engine.new_state())
        host = plan.engine.windows.host_decode
        kind = self._kind_for(ctx, host)
        if kind is None:
            return False
        if not kind.warm:
            self._warm_kind(kind)
        return True

    def warm_up(self) -> None:
        """Load (or compile) :func:`drain` (and :func:`resume`) for every kind's types
        without touching the socket (a zero budget)."""
        for kind in self._kinds:
            self._warm_kind(kind)

    def _warm_kind(self, kind: _Kind) -> None:
        rec = _WarmRecorder()
        drain(self._ptr, kind.index, 0, 0, self.max_frame, self.route_buf, self.frame_buf,
              self.table, self.routes, self._n_used, kind.ctxs, self.out_buf, rec.service_ns,
              rec.decode_ns, rec.decoded, rec.stream_id, 0, 0, self.items, 0,
              np.zeros(N_RESULTS, np.int64) - 1)
        if kind.host is not None:
            args = (self._ptr, kind.host.example(), self.route_buf, self.frame_buf, self.table,
                    kind.ctxs, self.out_buf, rec.service_ns, rec.decode_ns, rec.decoded,
                    rec.stream_id, 0, self.res)
            resume.compile(tuple(numba.typeof(a) for a in args))
        kind.warm = True

    def drain(self, budget: int, stalled_ns: int, recorder, deadline_ns: int = 0) -> int:
        """Serve packets from compiled code (:func:`drain`, for as many kinds as the packets
        ask for; each window due on the host is decoded here and :func:`resume` goes on);
        returns the status that ended it, with the totals of the whole call in :attr:`res`.
        The records the kernels wrote are committed to ``recorder``
        (:meth:`ServiceRecorder.advance`) after each kernel call."""
        r = self.res
        packets = rounds = sent = dropped = heartbeats = hb_dropped = 0
        kinds = self._kinds
        if not kinds:
            r[R_STATUS] = ST_EMPTY
            r[R_PACKETS] = r[R_ROUNDS] = r[R_SENT] = r[R_DROPPED] = 0
            r[R_HEARTBEATS] = r[R_HB_DROPPED] = 0
            return ST_EMPTY
        kind = kinds[self._kind] if r[R_PEND] < 0 else kinds[int(self.table[r[R_PEND], F_KIND])]
        while True:
            at, room = recorder.free_span()
            drain(self._ptr, kind.index, budget - packets - heartbeats, stalled_ns,
                  self.max_frame,
                  self.route_buf, self.frame_buf, self.table, self.routes, self._n_used,
                  kind.ctxs, self.out_buf, recorder.service_ns, recorder.decode_ns,
                  recorder.decoded, recorder.stream_id, at, room, self.items,
                  deadline_ns if packets == 0 else 0, r)
            self._kind = kind.index
            heartbeats += int(r[R_HEARTBEATS])
            hb_dropped += int(r[R_HB_DROPPED])
            packets += int(r[R_PACKETS])
            rounds += int(r[R_ROUNDS])
            sent += int(r[R_SENT])
            dropped += int(r[R_DROPPED])
            if r[R_RECORDED]:
                recorder.advance(int(r[R_RECORDED]))
            status = int(r[R_STATUS])
            resumed = False
            while status == ST_WINDOW_DUE:  # Python for the window decode only
                status = self._host_window(kind, recorder)
                sent += int(r[R_SENT])
                dropped += int(r[R_DROPPED])
                resumed = True
            if status == ST_OTHER_KIND:  # that kind's drain serves the packet first
                kind = kinds[int(self.table[r[R_PEND], F_KIND])]
                continue
            if status == ST_EMPTY and resumed and packets + heartbeats < budget:
                continue  # the resumed packet is done: go on draining
            break
        r[R_STATUS] = status
        r[R_PACKETS], r[R_ROUNDS], r[R_SENT], r[R_DROPPED] = packets, rounds, sent, dropped
        r[R_HEARTBEATS], r[R_HB_DROPPED] = heartbeats, hb_dropped
        return status

    def _host_window(self, kind: _Kind, recorder) -> int:
        """The window :func:`drain` (or :func:`resume`) stopped at, decoded on the host, then
        :func:`resume`; returns its status. A decoder that finds no solution (``ValueError``,
        as the Python path takes it) gives ``ST_NO_SOLUTION`` as the engine would."""
        r = self.res
        slot = int(r[R_SLOT])
        self.host_windows += 1
        try:
            result = self._host_of[slot]()
        except ValueError:  # no set of faults explains the window: as STEP_NO_SOLUTION
            engine_no_solution_ctx(self._ctx_of[slot])
            r[R_DONE] = r[R_I_NEXT] - r[R_I]
            r[R_T1] = time.perf_counter_ns()
            r[R_SENT] = r[R_DROPPED] = r[R_RECORDED] = 0
            r[R_STATUS] = ST_NO_SOLUTION
            return ST_NO_SOLUTION
        at, _ = recorder.free_span()
        resume(self._ptr, result, self.route_buf, self.frame_buf, self.table, kind.ctxs,
               self.out_buf, recorder.service_ns, recorder.decode_ns, recorder.decoded,
               recorder.stream_id, at, r)
        if r[R_RECORDED]:
            recorder.advance(int(r[R_RECORDED]))
        return int(r[R_STATUS])

    def handoff_parts(self) -> list:
        """The message :func:`drain` stopped at, as ``recv_multipart`` would have returned it
        (further parts read from the socket). A packet that is not a HELLO comes as a
        ``memoryview`` of the receive buffer, valid until the next :meth:`drain`: the loop
        handles such packets at once and copies one it keeps (a 16 MB frame was copied
        only to be refused: milliseconds on the loop); a HELLO's payload outlives the call (a
        build, a queued HELLO): up to ``keep_hellos_above`` bytes it comes as bytes. Any
        packet above ``keep_hellos_above`` bytes that :func:`drain` could not serve (a
        HELLO, or one its header refuses, :func:`could_serve`) comes as a read-only
        ``memoryview`` of the libzmq message it arrived in (closed once no view of it is
        left), so the loop copies nothing (a 5-8 MB HELLO copied out of the receive buffer
        cost 3.3-13 ms of the loop's time and GIL, 2.7-5.2 ms in a fuzz; a 16 MB fuzz
        frame 0.6-0.75 ms, 37 ms the first time)."""
        r = self.res
        parts = [self.route_buf[:r[R_ROUTE_LEN]].tobytes()]
        n = int(r[R_FRAME_LEN])
        if r[R_IN_MSG]:
            view = take_message(int(r[R_MSG_ADDR]), n)
            r[R_IN_MSG] = 0  # the slot is empty now
            parts.append(memoryview(view))
        elif n >= 0:
            f = self.frame_buf
            hello = claimed_type(f[:min(n, 4)]) == _HELLO
            parts.append(f[:n].tobytes() if hello or n <= 4096 else memoryview(f)[:n])
        if r[R_MORE] == 1:
            parts.extend(_rest(self._sock))
        return parts

    def packet_header(self) -> Header:
        """The header of the packet :func:`drain` stopped at (ST_NO_SOLUTION)."""
        return Header._make(HEADER.unpack_from(self.frame_buf))

    def slot_session_id(self, slot: int) -> int:
        return int(self.table[slot, F_SID])


def _rest(sock: zmq.Socket) -> list[bytes]:
    """The remaining parts of a message whose first parts were read with ``zmq_recv``."""
    parts = []
    while True:
        parts.append(sock.recv(zmq.NOBLOCK))
        if not sock.getsockopt(zmq.RCVMORE):
            return parts


class _WarmRecorder:
    """A recorder with no room: :func:`drain` compiles against its arrays' types."""

    service_ns = np.zeros(1, np.int64)
    decode_ns = np.zeros(1, np.int64)
    decoded = np.zeros(1, np.uint8)
    stream_id = np.zeros(1, np.uint32)

    @staticmethod
    def free_span() -> tuple[int, int]:
        return 0, 0

    def advance(self, n: int) -> None:  # pragma: no cover - a zero budget records nothing
        raise AssertionError("warm-up recorded rounds")
