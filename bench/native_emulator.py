"""The compiled ZeroMQ emulator: SYNDROME packets sent on schedule by a Numba kernel.

The Python emulator (:mod:`qecd.bench.emulator`) sends about 40-50 thousand packets a second
and decodes every reply in Python as it arrives, so at a 1 µs cycle it, not the server, is the
bottleneck. Here the streaming phase runs in :func:`stream_packets`, a ``nogil`` kernel that
calls libzmq on the emulator's DEALER socket directly (the bindings of
:mod:`qecd.transport.server.libzmq_native`, the ones the server's compiled fast path uses):

1. every SYNDROME frame is encoded once, up front, in Python with the wire codec
   (:func:`~qecd.transport.wire.header.pack_header_into`) into one buffer with offsets, in the
   order the Python emulator sends them (packet group ``i`` = rounds ``i .. i+K-1`` of every
   stream, round-robin);
2. the kernel sends packet group ``g`` at ``t0 + (i + K - 1) * cycle`` on ``CLOCK_MONOTONIC``
   (its last round's scheduled time; as fast as possible when the cycle is 0), writing that
   time (or, unpaced, the send time) into the header's ``timestamp_ns`` just before
   ``zmq_send``, and records each packet's send time; like the Python emulator it keeps at
   most ``max_inflight`` rounds per stream sent and not yet covered by a CORRECTION;
3. while it waits (for the next send time, for credit, for room in the socket's queue) it
   receives CORRECTION/ERROR/BYE frames with ``ZMQ_DONTWAIT``, copying each into one
   preallocated buffer with its receipt time, and yields the CPU (``sched_yield``) between
   empty polls so the process's own ZeroMQ I/O thread is never starved; longer waits go to
   ``zmq_poll``;
4. it returns when every stream's rounds are covered by corrections (or its stream was
   closed by a BYE), or when no reply came for ``timeout``.

Python then decodes the copied replies with the codec and hands them to the same
bookkeeping and report as the Python emulator (``WirePhase._on`` and ``run_emulation``), so
both emulators produce one report schema with the same verdicts; the report's ``emulator`` key says
which one ran.

The bare round trip of the same run goes through the same compiled path: :func:`ping_pong`
sends HEARTBEAT frames from a DEALER to the compiled echo ROUTER of
:mod:`qecd.bench.zmq_echo` (which waits in ``zmq_poll`` and answers with ``zmq_send`` the way
the server's fast path does) and waits for each echo as :func:`stream_packets` waits for
corrections. A paced run also measures :func:`paced_echoes`: the same frames sent on the
stream's packet schedule, each timed from its scheduled send as a reaction time is, which is
the floor of a paced stream (idle CPUs wake up slower, and close packets queue).

Example
-------
>>> from qecd.bench.emulator import EmulateConfig, run_emulation
>>> from qecd.transport.server import Server, ServerConfig
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     report = run_emulation(EmulateConfig(connect=server.endpoints[0],
...                            spec="repetition:d=3,r=3,p=0.02", shots=40, rtt_samples=20,
...                            emulator="native"))
>>> report["emulator"], report["lost"], report["mismatches"], report["ok"]
('native', 0, 0, True)
"""

from __future__ import annotations

import numba
import numpy as np

from qecd import _jit
from qecd.bench import zmq_echo as _echo
from qecd.transport.server import libzmq_native as _native
from qecd.transport.shm import atomics as _atomics
from qecd.transport.wire import compiled as _wire

_jit.invalidate_if_changed(__file__, [_native.__file__, _atomics.__file__, _wire.__file__,
                                      _echo.__file__], __name__)

from qecd.bench.emulator import WirePhase  # noqa: E402,I001
from qecd.bench.zmq_echo import NO_REPLY_AT as _NO_REPLY_AT  # noqa: E402
from qecd.bench.zmq_echo import NO_REPLY_BIT as _NO_REPLY_BIT  # noqa: E402
from qecd.transport.server.libzmq_native import (  # noqa: E402
    DONTWAIT, POLLIN, POLLITEM, zmq_errno, zmq_poll, zmq_recv, zmq_send)
from qecd.transport.shm.atomics import monotonic_ns, monotonic_ns_py, sched_yield  # noqa: E402
from qecd.transport.wire.compiled import (  # noqa: E402
    HEADER_SIZE, T_BYE, T_CORRECTION, get_u32, get_u64, put_u64)

__all__ = ["EMULATORS", "NATIVE", "PYTHON", "ST_DONE", "ST_TIMEOUT_CREDIT", "ST_TIMEOUT_TAIL",
           "ST_BUFFER_FULL", "ST_ZMQ_ERROR", "MAX_REPLY", "available", "unavailable_reason",
           "default_emulator", "stream_packets", "ping_pong", "paced_echoes", "NativeWirePhase",
           "compiled_round_trips", "echo_for"]

NATIVE = "native"  #: the compiled emulator of this module
PYTHON = "python"  #: the Python emulator (:class:`qecd.bench.emulator.WirePhase`)
EMULATORS = (NATIVE, PYTHON)

#: stream_packets() results
ST_DONE = 0  #: every stream covered (or closed by the server)
ST_TIMEOUT_CREDIT = 1  #: no reply for ``timeout`` while a stream had no credit left
ST_TIMEOUT_TAIL = 2  #: no reply for ``timeout`` after the last send (the rest is lost)
ST_BUFFER_FULL = 3  #: the reply buffer filled up (more replies than sized for)
ST_ZMQ_ERROR = 4  #: a libzmq call failed (errno in ``res[R_ERRNO]``)
R_STATUS, R_REPLIES, R_BYTES, R_ERRNO, R_T_END, R_PACKETS, R_STREAM = 0, 1, 2, 3, 4, 5, 6
N_RESULTS = 7
MAX_REPLY = 4096  #: bytes reserved for one reply (an ERROR's reason is at most 1 kB)
_TS_AT = 24  #: header timestamp_ns offset
_EAGAIN = 11  # Linux
_EINTR = 4
_SPIN_NS = 2_000_000  #: spin (with sched_yield) this long before waiting in zmq_poll
_ALIGN = 8


def available() -> bool:
    """True when the compiled emulator can drive pyzmq's sockets in this process."""
    return _native.available()


def unavailable_reason() -> str | None:
    """Why :func:`available` is False (pyzmq's backend or its libzmq not usable), or None."""
    return _native.unavailable_reason()


def default_emulator() -> str:
    """``"native"`` when :func:`available`, else ``"python"``."""
    return NATIVE if available() else PYTHON


@numba.njit(**_jit.INLINE)
def _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead):
    """Receive every reply already queued (DONTWAIT), copying each into ``rbuf``; returns
    the number taken, or -1 when the run must stop (``res[R_STATUS]`` says why)."""
    got = 0
    cap = rbuf.shape[0]
    while True:
        nr = res[R_REPLIES]
        off = res[R_BYTES]
        if nr >= r_off.shape[0] or off + MAX_REPLY > cap:
            res[R_STATUS] = ST_BUFFER_FULL
            return -1
        n = zmq_recv(sock, rbuf.ctypes.data + off, MAX_REPLY, DONTWAIT)
        if n < 0:
            e = zmq_errno()
            if e == _EAGAIN or e == _EINTR:
                return got
            res[R_STATUS] = ST_ZMQ_ERROR
            res[R_ERRNO] = e
            return -1
        r_ns[nr] = monotonic_ns()
        r_off[nr] = off
        r_len[nr] = n
        kept = min(n, MAX_REPLY)
        res[R_REPLIES] = nr + 1
        res[R_BYTES] = off + ((kept + _ALIGN - 1) // _ALIGN) * _ALIGN
        got += 1
        if kept < HEADER_SIZE:
            continue  # malformed: Python's decode says what is wrong with it
        sid = get_u32(rbuf, off + 8)
        k = -1
        for j in range(sids.shape[0]):
            if sids[j] == sid:
                k = j
                break
        if k < 0:
            continue
        t = rbuf[off + 3]
        if t == T_CORRECTION and kept >= HEADER_SIZE + 16:
            last = get_u64(rbuf, off + HEADER_SIZE + 8)
            if last + 1 > covered[k]:
                covered[k] = last + 1
        elif t == T_BYE:
            dead[k] = 1


@numba.njit(**_jit.INLINE)
def _rounds_of(frames, off):
    """The ``count`` field of the frame at ``frames[off]``."""
    return np.int64(frames[off + 6]) | (np.int64(frames[off + 7]) << 8)


@numba.njit(**_jit.INLINE)
def _wait_a_little(sock, items, idle_since, now):
    """Between empty polls: yield the CPU, or after a long idle spell wait in zmq_poll."""
    if now - idle_since < _SPIN_NS:
        sched_yield()
        return
    items[0].revents = 0
    zmq_poll(items.ctypes.data, 1, 1)


@numba.njit(**_jit.KERNEL)
def stream_packets(sock, frames, f_off, f_len, f_stream, f_group, g_sched, cycle_ns, t0,
                   sids, total, max_inflight, timeout_ns, sent, covered, dead, send_ns, items,
                   rbuf, r_off, r_len, r_ns, res):
    """Send every pre-encoded SYNDROME on schedule and collect the replies (module docs).

    Parameters
    ----------
    sock : int
        ``zmq.Socket.underlying`` of a connected DEALER (same libzmq as the bindings).
    frames : numpy.ndarray of uint8
        Every packet's frame back to back; packet ``j`` is ``frames[f_off[j]:][:f_len[j]]``.
    f_off, f_len, f_stream, f_group : numpy.ndarray of int64
        Per packet: offset, length, stream index (into ``sids``), packet group.
    g_sched : numpy.ndarray of int64
        Per group: the scheduled round index of its packets' last round (paced send time
        ``t0 + g_sched[g] * cycle_ns``).
    cycle_ns, t0 : int
        Pace (0: as fast as possible) and the schedule's origin (``CLOCK_MONOTONIC`` ns).
    sids, total, max_inflight : stream ids, rounds to send per stream, credit in rounds.
    timeout_ns : int
        Longest wait without any reply before giving up.
    sent, covered, dead : numpy.ndarray of int64 (in/out, per stream)
        Rounds sent, rounds covered by corrections, closed by a server BYE.
    send_ns : numpy.ndarray of int64
        Out: per packet, the time ``zmq_send`` queued it (0: not sent).
    items : numpy.ndarray of POLLITEM, length 1 (the socket, ``POLLIN``)
    rbuf, r_off, r_len, r_ns
        Reply buffer and, per reply, its offset, full length and receipt time.
    res : numpy.ndarray of int64, length ``N_RESULTS``
        Out: status, replies, bytes used, errno, time of the last send, packets sent.
    """
    n_packets = f_off.shape[0]
    last_reply = monotonic_ns()
    idle = last_reply
    j = 0
    while j < n_packets:
        g = f_group[j]
        k = f_stream[j]
        if dead[k] != 0:
            j += 1
            continue
        ts = t0 + g_sched[g] * cycle_ns
        # 1. wait for the schedule (paced), taking replies meanwhile
        if cycle_ns > 0:
            while True:
                now = monotonic_ns()
                if now >= ts:
                    break
                got = _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead)
                if got < 0:
                    return
                if got > 0:
                    idle = monotonic_ns()
                elif ts - now > _SPIN_NS + 1_000_000:
                    items[0].revents = 0
                    zmq_poll(items.ctypes.data, 1, (ts - now - _SPIN_NS) // 1_000_000)
                else:
                    sched_yield()
        # 2. wait for credit
        n_rounds = _rounds_of(frames, f_off[j])
        while sent[k] - covered[k] >= max_inflight and dead[k] == 0:
            got = _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead)
            now = monotonic_ns()
            if got < 0:
                return
            if got > 0:
                last_reply = now
                idle = now
            elif now - last_reply > timeout_ns:
                res[R_STATUS] = ST_TIMEOUT_CREDIT
                res[R_STREAM] = k
                res[R_T_END] = now
                return
            else:
                _wait_a_little(sock, items, idle, now)
        if dead[k] != 0:
            j += 1
            continue
        # 3. send (stamp the header first), retrying while the queue is full
        off = f_off[j]
        while True:
            now = monotonic_ns()
            put_u64(frames, off + _TS_AT, ts if cycle_ns > 0 else now)
            if zmq_send(sock, frames.ctypes.data + off, f_len[j], DONTWAIT) >= 0:
                send_ns[j] = now
                break
            e = zmq_errno()
            if e != _EAGAIN and e != _EINTR:
                res[R_STATUS] = ST_ZMQ_ERROR
                res[R_ERRNO] = e
                return
            got = _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead)
            if got < 0:
                return
            if got > 0:
                last_reply = monotonic_ns()
            elif monotonic_ns() - last_reply > timeout_ns:
                res[R_STATUS] = ST_TIMEOUT_CREDIT
                res[R_STREAM] = k
                res[R_T_END] = monotonic_ns()
                return
            sched_yield()
        sent[k] += n_rounds
        res[R_PACKETS] += 1
        j += 1
        if _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead) < 0:
            return
    res[R_T_END] = monotonic_ns()
    # 4. the tail: until every stream is covered or closed, or the replies stop coming
    last_reply = monotonic_ns()
    idle = last_reply
    while True:
        pending = False
        for k in range(sids.shape[0]):
            if covered[k] < total[k] and dead[k] == 0:
                pending = True
        if not pending:
            res[R_STATUS] = ST_DONE
            return
        got = _take_replies(sock, rbuf, r_off, r_len, r_ns, res, sids, covered, dead)
        now = monotonic_ns()
        if got < 0:
            return
        if got > 0:
            last_reply = now
            idle = now
        elif now - last_reply > timeout_ns:
            res[R_STATUS] = ST_TIMEOUT_TAIL
            return
        else:
            _wait_a_little(sock, items, idle, now)


@numba.njit(**_jit.KERNEL)
def ping_pong(sock, frame, n, count, timeout_ns, rtt, items, rbuf):
    """Send ``frame[:n]`` ``count`` times on DEALER ``sock``, each after the echo of the one
    before (stamping ``timestamp_ns`` with the send time), waiting for each echo as
    :func:`stream_packets` waits for corrections; ``rtt[i]`` gets the i-th round trip in ns.
    Returns the number of round trips completed (fewer when an echo did not come within
    ``timeout_ns`` or libzmq failed)."""
    for i in range(count):
        t = monotonic_ns()
        put_u64(frame, _TS_AT, t)
        while zmq_send(sock, frame.ctypes.data, n, DONTWAIT) < 0:
            e = zmq_errno()
            if (e != _EAGAIN and e != _EINTR) or monotonic_ns() - t > timeout_ns:
                return i
            sched_yield()
        idle = monotonic_ns()
        while True:
            got = zmq_recv(sock, rbuf.ctypes.data, rbuf.shape[0], DONTWAIT)
            now = monotonic_ns()
            if got >= 0:
                rtt[i] = now - t
                break
            e = zmq_errno()
            if e != _EAGAIN and e != _EINTR:
                return i
            if now - t > timeout_ns:
                return i
            _wait_a_little(sock, items, idle, now)
    return count


@numba.njit(**_jit.KERNEL)
def paced_echoes(sock, frame, n, count, gap_ns, timeout_ns, rtt, items, rbuf, reply_every=1):
    """Send ``count`` echoed frames on DEALER ``sock`` on a schedule, one frame every
    ``gap_ns`` whether or not the echoes of the ones before came back (as
    :func:`stream_packets` sends a paced stream's packets), each stamped with its scheduled
    time, taking the echoes meanwhile: ``rtt[i]`` is the i-th echo's receipt minus its stamp.
    With ``reply_every`` = m, only every m-th frame asks for an echo (the others carry
    :data:`~qecd.bench.zmq_echo.NO_REPLY_BIT`), so replies come as often as a stream's
    CORRECTIONs do (one per m packets) and ``count * m`` frames are sent. Both ends then
    idle between packets, or queue behind each other, as they do while a stream is paced
    at that interval. Returns the number of echoes taken (fewer when one did not come
    within ``timeout_ns`` or libzmq failed)."""
    t0 = monotonic_ns() + gap_ns
    sent = got = 0
    total = count * reply_every
    last = monotonic_ns()
    while got < count:
        now = monotonic_ns()
        ts = t0 + sent * gap_ns
        if sent < total and now >= ts:
            put_u64(frame, _TS_AT, ts)
            if (sent + 1) % reply_every == 0:
                frame[_NO_REPLY_AT] &= ~_NO_REPLY_BIT
            else:
                frame[_NO_REPLY_AT] |= _NO_REPLY_BIT
            if zmq_send(sock, frame.ctypes.data, n, DONTWAIT) >= 0:
                sent += 1
                continue
            e = zmq_errno()
            if e != _EAGAIN and e != _EINTR:
                return got
        r = zmq_recv(sock, rbuf.ctypes.data, rbuf.shape[0], DONTWAIT)
        if r >= 0:
            t = monotonic_ns()
            rtt[got] = t - get_u64(rbuf, _TS_AT)
            got += 1
            last = t
            continue
        e = zmq_errno()
        if e != _EAGAIN and e != _EINTR:
            return got
        if now - last > timeout_ns and now - ts > timeout_ns:
            return got
        if sent < total and ts - now > _SPIN_NS + 1_000_000:
            items[0].revents = 0
            zmq_poll(items.ctypes.data, 1, (ts - now - _SPIN_NS) // 1_000_000)
        elif sent < total:
            sched_yield()
        else:
            _wait_a_little(sock, items, last, now)
    frame[_NO_REPLY_AT] &= ~_NO_REPLY_BIT
    return got


def poll_items(sock_handle: int) -> np.ndarray:
    """A one-item ``zmq_pollitem_t`` array waiting for input on ``sock_handle``."""
    items = np.zeros(1, POLLITEM)
    items[0]["socket"] = sock_handle
    items[0]["events"] = POLLIN
    return items


def _warm() -> None:
    """Compile (or load from the cache) both kernels with the real types, sending nothing."""
    z = np.zeros(0, np.int64)
    b = np.zeros(MAX_REPLY, np.uint8)
    res = np.zeros(N_RESULTS, np.int64)
    items = poll_items(0)
    stream_packets(0, b, z, z, z, z, z, 0, 0, np.zeros(0, np.uint32), z, 1, 0, z, z, z, z,
                   items, b, z, z, z, res)
    ping_pong(0, b, 32, 0, 0, z, items, b)
    paced_echoes(0, b, 32, 0, 1, 0, z, items, b, 1)


def _packets(wire) -> tuple[np.ndarray, ...]:
    """Every SYNDROME frame of the run, encoded once with the wire codec, in the Python
    emulator's send order: ``frames``, and per packet offset, length, stream index, group;
    per group its last round's schedule index."""
    from qecd.transport.wire.header import HEADER_SIZE as HS
    from qecd.transport.wire.header import MsgType, pack_header_into

    P = wire.cfg.rounds_per_packet
    top = max(wire.total)
    groups = range(0, top, P)
    plan = [(g, i, k, min(P, wire.total[k] - i)) for g, i in enumerate(groups)
            for k in range(len(wire.streams)) if i < wire.total[k]]
    lens = np.array([HS + wire._offset(i + n) - wire._offset(i) for _, i, _, n in plan],
                    dtype=np.int64)
    f_off = np.zeros(len(plan), np.int64)
    if len(plan):
        np.cumsum(lens[:-1], out=f_off[1:])
    frames = np.zeros(int(lens.sum()), np.uint8)
    mv = memoryview(frames)
    for j, (_, i, k, n) in enumerate(plan):
        o = int(f_off[j])
        a, b = wire._offset(i), wire._offset(i + n)
        pack_header_into(mv, o, MsgType.SYNDROME, count=n, stream_id=wire.streams[k].stream_id,
                         seq=i, timestamp_ns=0, payload_len=b - a)
        mv[o + HS:o + HS + b - a] = wire.flat[k][a:b]
    f_stream = np.array([k for _, _, k, _ in plan], np.int64)
    f_group = np.array([g for g, _, _, _ in plan], np.int64)
    g_sched = np.array([i + P - 1 for i in groups], np.int64)
    return frames, f_off, lens, f_stream, f_group, g_sched


class NativeWirePhase(WirePhase):
    """The streaming phase of :func:`~qecd.bench.emulator.run_emulation` run by
    :func:`stream_packets`: same inputs, same state afterwards (``sent``, ``covered``,
    ``dead``, ``received``, ``reaction``, ``errors``, ``wire_pred``, ``shot_done``, ``late``,
    ``max_late_ns``), so the report code is the Python emulator's."""

    def __init__(self, *args, expected: int = 0, **kw) -> None:
        super().__init__(*args, **kw)
        self.expected = expected
        self.send_ns = np.zeros(0, np.int64)

    def run(self) -> float:
        from qecd.errors import ProtocolError, QecdError
        from qecd.transport.client import ServerTimeout, decode_reply

        _warm()
        cfg = self.cfg
        frames, f_off, f_len, f_stream, f_group, g_sched = _packets(self)
        n_packets = len(f_off)
        cap = 2 * self.expected + n_packets + 1024
        rbuf = np.zeros(cap * 80 + MAX_REPLY, np.uint8)  # pages are touched only when used
        r_off, r_len, r_ns = (np.zeros(cap, np.int64) for _ in range(3))
        sids = np.array([s.stream_id for s in self.streams], np.uint32)
        total = np.array(self.total, np.int64)
        sent = np.zeros(len(sids), np.int64)
        covered = np.zeros(len(sids), np.int64)
        dead = np.zeros(len(sids), np.int64)
        send_ns = np.zeros(n_packets, np.int64)
        res = np.zeros(N_RESULTS, np.int64)
        items = poll_items(self.client.socket.underlying)
        cycle_ns = 0 if cfg.cycle_us is None else int(round(cfg.cycle_us * 1000))
        t0 = int(monotonic_ns_py()) + 1_000_000
        stream_packets(self.client.socket.underlying, frames, f_off, f_len, f_stream, f_group,
                       g_sched, cycle_ns, t0, sids, total, int(self.max_inflight),
                       int(cfg.timeout_s * 1e9), sent, covered, dead, send_ns, items,
                       rbuf, r_off, r_len, r_ns, res)
        self.send_ns = send_ns
        self.sent = [int(x) for x in sent]
        self.dead = [bool(x) for x in dead]
        for s, n in zip(self.streams, self.sent, strict=True):
            s.next_round = n
        for q in range(int(res[R_REPLIES])):
            o, n = int(r_off[q]), int(r_len[q])
            try:
                r = decode_reply(bytes(rbuf[o:o + min(n, MAX_REPLY)]), int(r_ns[q]))
            except ProtocolError as e:
                self.errors["MALFORMED_REPLY"] += 1
                if len(self.error_examples) < 5:
                    self.error_examples.append(f"a reply of {n} bytes: {e}")
                continue
            self._on(r)
        if cycle_ns:  # lateness per packet group, as the Python emulator counts it
            top = max(self.total)
            P = cfg.rounds_per_packet
            first = np.flatnonzero(np.r_[True, f_group[1:] != f_group[:-1]]) if n_packets \
                else np.zeros(0, np.int64)
            for j in first:
                if send_ns[j] == 0:
                    continue
                g = int(f_group[j])
                late = int(send_ns[j]) - (t0 + int(g_sched[g]) * cycle_ns)
                if late > cycle_ns:
                    self.late += min(P, top - g * P)
                    self.max_late_ns = max(self.max_late_ns, late)
        st = int(res[R_STATUS])
        if st == ST_TIMEOUT_CREDIT:
            raise ServerTimeout(f"stream {int(sids[res[R_STREAM]])}: no correction for "
                                f"{cfg.timeout_s} s with {self.max_inflight} rounds in flight")
        if st == ST_BUFFER_FULL:
            raise QecdError(f"native emulator: its reply buffer filled after {res[R_REPLIES]} "
                            f"replies (sized for {cap}): far more replies than corrections "
                            "expected")
        if st == ST_ZMQ_ERROR:
            raise QecdError(f"native emulator: libzmq failed with errno {res[R_ERRNO]}")
        return (int(res[R_T_END]) - t0) / 1e9


def echo_for(connect: str, cpu: int | None = None):
    """A started (not yet ready) :class:`~qecd.bench.zmq_echo.EchoRouter` on the same kind of
    endpoint as ``connect`` (tcp loopback, or an ipc socket in a fresh directory), pinned to
    ``cpu``; start it early so it is ready when :func:`compiled_round_trips` needs it."""
    import tempfile

    from qecd.bench.zmq_echo import EchoRouter

    if connect.startswith("ipc://"):
        tmp = tempfile.mkdtemp(prefix="qecd-echo-")
        return EchoRouter(f"ipc://{tmp}/echo.sock", cpu=cpu, remove_dir=tmp).start()
    return EchoRouter("tcp://127.0.0.1:0", cpu=cpu).start()


def compiled_round_trips(echo, samples: int, *, timeout_s: float = 10.0, gap_ns: int = 0,
                         reply_every: int = 1) -> tuple[np.ndarray, str]:
    """The bare DEALER/ROUTER round trip through the compiled path: ``samples`` HEARTBEAT
    frames from a DEALER (:func:`ping_pong`) to the compiled echo ROUTER ``echo`` (from
    :func:`echo_for`, in another process), after 100 unrecorded ones: back to back
    (:func:`ping_pong`), or sent one every ``gap_ns`` whatever came back
    (:func:`paced_echoes`; the first tenth is not kept), the paced stream's packet interval,
    one in ``reply_every`` answered (the stream's packets per CORRECTION). That is a paced
    stream's floor: CPUs that idle between packets wake up slower (tens of µs on a VM), and
    packets closer than the round trip queue in both I/O threads. Returns the round trips
    (ns) and a description of the method."""
    import zmq

    from qecd.transport._client_core import dealer_socket
    from qecd.transport.wire import encode_heartbeat

    _warm()
    ep = echo.wait_ready()
    sock, _ = dealer_socket(zmq.Context.instance(), ep)
    try:
        frame = np.frombuffer(bytearray(encode_heartbeat()), np.uint8).copy()
        rbuf = np.zeros(MAX_REPLY, np.uint8)
        items = poll_items(sock.underlying)
        warm = np.zeros(min(samples, 100), np.int64)
        ping_pong(sock.underlying, frame, len(frame), len(warm), int(timeout_s * 1e9), warm,
                  items, rbuf)
        rtt = np.zeros(samples, np.int64)
        if gap_ns > 0:  # the first tenth settles the queues, as a stream's first rounds do
            done = paced_echoes(sock.underlying, frame, len(frame), samples, int(gap_ns),
                                int(timeout_s * 1e9), rtt, items, rbuf, int(reply_every))
            rtt = rtt[done // 10:]
            done -= done // 10
        else:
            done = ping_pong(sock.underlying, frame, len(frame), samples,
                             int(timeout_s * 1e9), rtt, items, rbuf)
    finally:
        sock.close(0)
    where = "unpinned" if echo.cpu is None else f"pinned to cpu {echo.cpu}"
    pace = (f"sent one every {gap_ns / 1e3:g} us, each timed from its scheduled send"
            + (f", one in {reply_every} answered" if reply_every > 1 else "")
            if gap_ns > 0 else "back to back")
    return rtt[:done], (f"compiled DEALER (this emulator's kernel) <-> compiled echo ROUTER "
                        f"({pace}) "
                        f"(another process, {where}, answering as the server's fast path "
                        f"does), {ep.split(':')[0]}, same run, before streaming")
