"""The shared-memory hot path: one stream served end to end inside Numba.

A co-located control stack and the decoder share a :class:`~qecd.transport.shm.ring.RingPair`
(one SPSC ring per direction). Each slot holds one packet in the wire protocol's layout
(:mod:`qecd.transport.wire`): the client writes SYNDROME packets, the server answers with
CORRECTION (and ERROR / HEARTBEAT / BYE) packets, byte for byte what the ZeroMQ transport
carries. :func:`serve_stream_kernel` is the server's per-stream loop: poll the request ring,
validate the header and round number, append each round to the stream's shot buffer, decode
a window when one is due (a backend compiled with the window logic,
:mod:`qecd.decoder.compiled_stream`), write the CORRECTION into the reply ring and ring its
doorbell. No interpreter, no allocation, no system call on the path (the clock is the vDSO
``clock_gettime``). It returns to Python only on BYE, a stop request, or an idle timeout.

:func:`client_stream_kernel` is the emulator's side: it sends pre-built SYNDROME packets as
fast as possible or paced at a fixed cycle (busy-waiting on the monotonic clock; the packet's
``timestamp_ns`` is its *scheduled* send time, so reaction times include any queueing: no
coordinated omission), drains corrections between sends, and records every timestamp.

Service time per round is measured in the server from the moment the packet is taken off the
ring to the moment the reply's doorbell is rung (or, for a round that triggers nothing, the
moment the round is stored); a packet carrying several rounds charges its time to its last
round. When packets are waiting (a backlog), the loop serves them in one batch with a clock
read per batch and per decoding packet, and the packets between two reads share the span
(:func:`serve_stream_kernel`). The server also records the lag of each packet behind its
scheduled send time (the backlog, in time, at the offered rate).

Example
-------
>>> import numpy as np
>>> from qecd.transport.wire.compiled import get_u32, put_u32
>>> out = np.zeros(8, np.uint8)
>>> put_u32(out, 0, 0x01020304); get_u32(out, 0) == 0x01020304, out[:4].tolist()
(True, [4, 3, 2, 1])
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from qecd import _jit
from qecd.decoder import compiled_stream
from qecd.transport import engine as _engine
from qecd.transport.shm import atomics as _atomics
from qecd.transport.shm import ring as shm_ring
from qecd.transport.wire import compiled as wire_compiled

_jit.invalidate_if_changed(__file__, [*compiled_stream.kernel_sources(),
                                           _atomics.__file__, shm_ring.__file__,
                                           wire_compiled.__file__, _engine.__file__],
                           __name__)

from qecd.decoder.compiled_stream import store_round  # noqa: E402
from qecd.transport.engine import STEP_DONE, STEP_NO_SOLUTION, engine_step  # noqa: E402
from qecd.transport.shm.atomics import (  # noqa: E402
    cpu_relax,
    load_acquire,
    monotonic_ns,
    sleep_us,
    store_release,
)
from qecd.transport.shm.ring import (  # noqa: E402
    BUFFER_TOO_SMALL,
    CORRUPT,
    EMPTY,
    region_beat,
    ring_peek,
    ring_pending,
    ring_prefetch,
    ring_release,
    ring_send,
    ring_try_recv,
    ring_try_send,
)
from qecd.transport.wire.compiled import (  # noqa: E402
    CORR_SERVICE_AT,
    E_BAD_HEADER,
    E_BAD_MAGIC,
    E_BAD_PAYLOAD,
    E_DECODER,
    E_DROPPED,
    E_DUP,
    E_GAP,
    E_LENGTH,
    E_SHORT,
    E_UNEXPECTED,
    E_UNKNOWN_STREAM,
    E_VERSION,
    ERROR_FIXED,
    HEADER_SIZE,
    MAGIC,
    MAX_RING_REASON,
    RING_CORRUPT,
    T_BYE,
    T_CORRECTION,
    T_ERROR,
    T_HEARTBEAT,
    T_SYNDROME,
    VERSION,
    decoder_failed_reason,
    get_u16,
    get_u32,
    get_u64,
    put_decimal,
    put_dropped_reason,
    put_text,
    put_u64,
    write_error,
    write_error_head,
    write_error_reason,
    write_header,
)

_JIT = _jit.KERNEL

class LoopArgs(NamedTuple):
    """What a server loop needs besides its ring and its decoder (one Numba argument)."""

    server_side: int  #: the side the server claimed (1)
    in_buf: np.ndarray  #: uint8 slot-sized buffer a request is copied into
    out_buf: np.ndarray  #: uint8 slot-sized buffer a reply is written into
    ctl: np.ndarray  #: int64 control words shared with the control thread (``CTL_*``)
    rec_service: np.ndarray  #: int64 record ring: service ns per packet
    rec_lag: np.ndarray  #: int64 record ring: lag behind the scheduled send time
    rec_flags: np.ndarray  #: uint8 record ring: 1 if the packet decoded a window
    rec_n: np.ndarray  #: int64 (1,): records written (published with a release store)
    stream_id: int  #: the stream's id
    want_faults: bool  #: put fault ids in CORRECTIONs
    idle_timeout_ns: int  #: return EXIT_IDLE after this long without a request (0: never)
    send_timeout_ns: int  #: give up on the stream when the reply ring stays full this long
    open_lag: np.ndarray  #: int64 (MAX_OPEN_RECORDS,): scratch for a batch's records' lags
    open_flags: np.ndarray  #: uint8 (MAX_OPEN_RECORDS,): scratch for their decode flags
    why: np.ndarray  #: uint8: DECODER_ERROR's reason around the failed round (drop_shot)
    why_split: int  #: bytes of ``why`` before the round's decimal
    why_n: int  #: bytes of ``why`` in all


#: packets a loop serving a backlog times as one batch (one clock read) at most: their
#: records wait in a scratch array and are written and published one by one at its close
MAX_OPEN_RECORDS = 16

#: a loop serving a backlog prefetches the request slot this many places ahead
PREFETCH_AHEAD = 8

#: a loop busy-polls this long after its last packet before it naps
SPIN_NS = 1_000_000
MIN_NAP_US = 10  #: shortest nap of an idle loop
MAX_NAP_US = 1000  #: longest nap: the most the first packet after a long idle spell waits

#: serve_stream_kernel exit codes
EXIT_BYE, EXIT_STOP, EXIT_IDLE, EXIT_SEND_FAILED, EXIT_RECORD_FULL = 0, 1, 2, 3, 4
#: the request ring holds a slot no correct producer writes (docs/protocol.md §14): the loop
#: answers ERROR in the reply ring and returns; the server then ends the stream
EXIT_CORRUPT = 5
#: check_packet's verdicts besides a reply length
REPLY_SYNDROME, REPLY_BYE = 0, -1
#: ctl array slots (int64): stop flag (written by the control thread), rounds served, ERRORs
CTL_STOP, CTL_ROUNDS, CTL_ERRORS, CTL_CORRECTIONS, CTL_NEXT_ROUND = 0, 1, 2, 3, 4
#: ctl slot: packets taken off the request ring (any type: a ring HEARTBEAT keeps a stream
#: alive like one over ZeroMQ, docs/protocol.md §9 step 4, §14.1)
CTL_PACKETS = 5


@numba.njit(**_JIT)
def check_packet(in_buf, n, out_buf, stream_id, next_round, t_next, round_offsets):
    """Validate the packet ``in_buf[:n]`` a server loop just took off its request ring;
    ``t_next`` is ``next_round``'s round within its shot (``next_round % n_rounds``, which
    the stream's decoder keeps: no division per packet).

    Returns ``(reply, count, rnd, ts)``: ``reply`` > 0 is the length of an ERROR or
    HEARTBEAT answer written into ``out_buf`` (send it); ``REPLY_SYNDROME`` (0) means a
    valid SYNDROME of ``count`` rounds from ``rnd`` (its payload length and padding bits
    checked, nothing stored yet); ``REPLY_BYE`` (-1) means a BYE (its echo is in
    ``out_buf[:HEADER_SIZE]``, its ``round`` the stream's next expected round, §9.5).
    """
    n_rounds = round_offsets.shape[0] - 1
    # the header echo is ZeroMQ's (wire.encode_error_reply): the type once the magic is
    # right, the rest once 32 bytes of a supported version arrived; zeros otherwise
    if n < HEADER_SIZE:
        ref = np.int64(in_buf[3]) if n >= 4 and get_u16(in_buf, 0) == MAGIC else 0
        return write_error(out_buf, E_SHORT, ref, 0, 0, 0, next_round), 0, 0, 0
    mtype = np.int64(in_buf[3])
    count = get_u16(in_buf, 6)
    sid = get_u32(in_buf, 8)
    plen = get_u32(in_buf, 12)
    rnd = get_u64(in_buf, 16)
    ts = get_u64(in_buf, 24)
    if get_u16(in_buf, 0) != MAGIC:
        return write_error(out_buf, E_BAD_MAGIC, 0, 0, 0, 0, next_round), 0, rnd, ts
    if in_buf[2] != VERSION:  # only bytes 0-3 mean the same in every version (§12)
        return write_error(out_buf, E_VERSION, mtype, 0, 0, 0, next_round), 0, rnd, ts
    if plen != n - HEADER_SIZE:
        return write_error(out_buf, E_LENGTH, mtype, sid, rnd, ts, next_round), 0, rnd, ts
    if mtype == T_BYE:
        write_header(out_buf, T_BYE, 0, 0, stream_id, 0, next_round, ts)
        return REPLY_BYE, 0, rnd, ts
    if mtype == T_HEARTBEAT:
        write_header(out_buf, T_HEARTBEAT, 0, 0, sid, 0, rnd, ts)
        return HEADER_SIZE, 0, rnd, ts
    code = 0
    if mtype != T_SYNDROME:
        code = E_UNEXPECTED
    elif sid != stream_id:
        code = E_UNKNOWN_STREAM
    elif count < 1:
        code = E_BAD_HEADER
    elif rnd > next_round:
        code = E_GAP
    elif rnd < next_round:
        code = E_DUP
    else:
        need = 0
        o = HEADER_SIZE
        t = t_next
        for _ in range(count):
            size = round_offsets[t + 1] - round_offsets[t]
            nb = (size + 7) >> 3
            if o + nb <= n and size & 7 and (in_buf[o + nb - 1] >> (size & 7)) != 0:
                code = E_BAD_PAYLOAD
            need += nb
            o += nb
            t += 1
            if t == n_rounds:
                t = 0
        if need != plen:
            code = E_BAD_PAYLOAD
    if code != 0:
        return write_error(out_buf, code, mtype, sid, rnd, ts, next_round), 0, rnd, ts
    return REPLY_SYNDROME, count, rnd, ts


#: :func:`check_packet` inlined into the loop serving a backlog, where it runs once per packet:
#: a call there passes three arrays (~21 words) for ~10 ns of checks (86.5-90.0 against
#: 93.9-102.8 ns per round of the whole loop, medians of a ``/tmp`` A/B of the two loops,
#: three runs)
check_packet_inline = numba.njit(**_jit.INLINE)(check_packet.py_func)


@numba.njit(**_JIT)
def send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns, ctl):
    """Send ``out_buf[:ln]`` on the reply ring, counting ERRORs in ``ctl``; 0 or -1."""
    if out_buf[3] == T_ERROR:
        ctl[CTL_ERRORS] += 1
    return ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns, -1)


@numba.njit(**_JIT)
def record_packet(rec_service, rec_lag, rec_flags, rec_n, t0, ts, decoded):
    """Record one processed packet's service time, lag and decode flag. The record arrays
    are a ring: packet ``k`` (counting from 0 over the loop's life) goes to slot
    ``k % capacity``, and ``rec_n[0]`` (the count, published with a release store after the
    slot is written) never stops growing, so a reader that last read up to ``j`` finds
    packets ``j..rec_n[0]-1`` complete, minus any older than ``rec_n[0] - capacity + 1``
    (while the loop runs, the slot of packet ``rec_n[0] - capacity`` may be half-way
    through being overwritten by packet ``rec_n[0]``)."""
    k = rec_n[0]
    i = k % rec_service.shape[0]
    rec_service[i] = monotonic_ns() - t0
    rec_lag[i] = t0 - ts if ts > 0 else 0
    rec_flags[i] = decoded
    store_release(rec_n, 0, k + 1)


@numba.njit(**_JIT)
def poll_request(words, buf, rx_off, n_slots, slot_size, in_buf, ctl, server_side,
                 idle_timeout_ns):
    """Poll the request ring for one packet: its length, or ``-1 - EXIT_*`` when the loop
    must return (stop requested, idle timeout, a corrupt slot: never waited on). Beats the
    region's heartbeat word and checks the stop flag every 256 empty polls (every nap once
    napping).

    The loop busy-polls for :data:`SPIN_NS` after its last packet, so a stream paced faster
    than that never sleeps; an idle stream then naps (``usleep``), longer the longer it idles
    (:func:`nap_us`: 10 µs after 1 ms, up to 1 ms), so idle streams cost almost no CPU and
    the first packet after an idle spell waits at most one nap (docs/protocol.md §14)."""
    polls = 0
    start = monotonic_ns()
    nap = 0
    while True:
        n = ring_try_recv(words, buf, rx_off, n_slots, slot_size, in_buf)
        if n >= 0:
            return n
        if n == CORRUPT or n == BUFFER_TOO_SMALL:  # never data: waiting would only stall
            return -1 - EXIT_CORRUPT
        polls += 1
        if nap > 0 or (polls & 255) == 0:
            if load_acquire(ctl, CTL_STOP) != 0:
                return -1 - EXIT_STOP
            region_beat(words, server_side)
            idle = monotonic_ns() - start
            if idle_timeout_ns > 0 and idle > idle_timeout_ns:
                return -1 - EXIT_IDLE
            if idle > SPIN_NS:
                nap = nap_us(idle)
        if nap > 0:
            sleep_us(nap)
        else:
            cpu_relax()


@numba.njit(**_JIT)
def nap_us(idle_ns):
    """How long an idle loop sleeps per poll after ``idle_ns`` without a packet: 1% of the
    idle time, between :data:`MIN_NAP_US` and :data:`MAX_NAP_US`."""
    us = idle_ns // 100_000
    if us < MIN_NAP_US:
        return MIN_NAP_US
    if us > MAX_NAP_US:
        return MAX_NAP_US
    return us


@numba.njit(**_JIT)
def next_syndrome(words, buf, tx_off, rx_off, n_slots, slot_size, server_side, in_buf,
                  out_buf, ctl, stream_id, idle_timeout_ns, send_timeout_ns, round_offsets):
    """Serve the request ring until a valid SYNDROME is in ``in_buf``: HEARTBEATs are
    echoed, bad packets answered with ERROR, BYE echoed.

    Returns ``(code, count, rnd, ts, t0)``: ``code`` -1 means a SYNDROME of ``count`` rounds
    from ``rnd`` (timestamp ``ts``, taken off the ring at ``t0``) is ready; any other code is
    the ``EXIT_*`` the loop must return (BYE, stop, idle timeout, send failure)."""
    while True:
        n = poll_request(words, buf, rx_off, n_slots, slot_size, in_buf, ctl, server_side,
                         idle_timeout_ns)
        if n >= 0:
            ctl[CTL_PACKETS] += 1
        if n < 0:
            if -1 - n == EXIT_CORRUPT:
                ln = write_error_reason(out_buf, E_BAD_HEADER, RING_CORRUPT, 0, stream_id, 0, 0,
                                        ctl[CTL_NEXT_ROUND])
                send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                           ctl)
            return -1 - n, 0, 0, 0, 0
        t0 = monotonic_ns()
        nxt = ctl[CTL_NEXT_ROUND]
        reply, count, rnd, ts = check_packet(in_buf, n, out_buf, stream_id, nxt,
                                             nxt % (round_offsets.shape[0] - 1),
                                             round_offsets)
        if reply == REPLY_BYE:
            ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, HEADER_SIZE,
                      send_timeout_ns, -1)
            return EXIT_BYE, 0, 0, 0, 0
        if reply == REPLY_SYNDROME:
            return -1, count, rnd, ts, t0
        if send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, reply, send_timeout_ns,
                      ctl) != 0:
            return EXIT_SEND_FAILED, 0, 0, 0, 0


@numba.njit(inline="always", **_JIT)
def round_bytes(round_offsets, t):
    """Bytes of round ``t`` (within the shot) in a SYNDROME payload."""
    return (round_offsets[t + 1] - round_offsets[t] + 7) >> 3


@numba.njit(**_JIT)
def drop_shot(words, buf, tx_off, n_slots, slot_size, out_buf, ctl, stream_id, rnd, ts,
              failed_round, first_lost, last_lost, n_rounds, send_timeout_ns, why, why_split,
              why_n, why_round):
    """A window's decode failed at absolute round ``failed_round`` (of the packet from
    ``rnd``): the rest of that shot is discarded, as on the ZeroMQ path. Sends ERROR
    ``DECODER_ERROR`` and ERROR ``SYNDROMES_DROPPED``, both naming the next shot boundary
    as ``next_round``, and moves the stream there (the packet's later rounds are dropped
    too; rounds before the boundary then get ``ROUND_DUPLICATE``). The caller resets its
    decoder state. Returns the boundary, or -1 when the reply ring stayed full.

    Their reasons are the ZeroMQ server's
    (:func:`~qecd.transport.wire.compiled.decoder_failed_reason`,
    :func:`~qecd.transport.wire.compiled.dropped_reason`): DECODER_ERROR's is
    ``why[:why_split]``, then ``why_round`` in decimal (when >= 0), then
    ``why[why_split:why_n]``; SYNDROMES_DROPPED's names rounds ``first_lost..last_lost``
    (received, never to be corrected) and the boundary."""
    boundary = (failed_round // n_rounds + 1) * n_rounds
    ctl[CTL_NEXT_ROUND] = boundary
    o = HEADER_SIZE + ERROR_FIXED
    o = put_text(out_buf, o, why, why_split)
    if why_round >= 0:
        o = put_decimal(out_buf, o, why_round)
    o = put_text(out_buf, o, why[why_split:], why_n - why_split)
    ln = write_error_head(out_buf, E_DECODER, T_SYNDROME, stream_id, rnd, ts, boundary,
                          o - HEADER_SIZE - ERROR_FIXED)
    if send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                  ctl) != 0:
        return -1
    o = put_dropped_reason(out_buf, HEADER_SIZE + ERROR_FIXED, first_lost, last_lost,
                           stream_id, boundary)
    ln = write_error_head(out_buf, E_DROPPED, T_SYNDROME, stream_id, rnd, ts, boundary,
                          o - HEADER_SIZE - ERROR_FIXED)
    if send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln, send_timeout_ns,
                  ctl) != 0:
        return -1
    return boundary


def decoder_error_text(prefix: str, suffix: str = "") -> tuple[np.ndarray, int, int]:
    """``(why, why_split, why_n)`` for :func:`drop_shot`: ``prefix`` and ``suffix`` (the
    DECODER_ERROR reason before and after the failed round's number) as bytes, cut to
    :data:`~qecd.transport.wire.compiled.MAX_RING_REASON` in all.

    >>> why, split, n = decoder_error_text("a round ", " failed")
    >>> bytes(why[:split]), bytes(why[split:n])
    (b'a round ', b' failed')
    """
    a, b = prefix.encode()[:MAX_RING_REASON], suffix.encode()
    b = b[:max(0, MAX_RING_REASON - len(a))]
    why = np.frombuffer(a + b, np.uint8).copy() if a or b else np.zeros(1, np.uint8)
    return why, len(a), len(a) + len(b)


def engine_error_text(engine, stream_id: int) -> tuple[np.ndarray, int, int]:
    """:func:`decoder_error_text` of a compiled stream's no-solution failure, as the ZeroMQ
    server words it (:meth:`~qecd.decoder.compiled_stream.CompiledStream.no_solution_reason`
    of the failed round)."""
    mark = "\x00round\x00"
    text = decoder_failed_reason(engine.backend, stream_id, "DecoderError",
                                 engine.no_solution_reason(mark))  # type: ignore[arg-type]
    a, _, b = text.partition(mark)
    return decoder_error_text(a, b)


@numba.njit(**_jit.INLINE)
def store_quiet_packet(in_buf, count, st, shot_bits, round_offsets, trigger, events):
    """Store a SYNDROME packet's ``count`` rounds (``in_buf`` from byte 32) when none of them
    completes a window, exactly as the engine would (the same
    :func:`~qecd.decoder.compiled_stream.store_round`); returns False, storing nothing,
    when one does (the engine then takes the packet). Saves the engine call, which passes
    the whole plan and costs more than storing a round, on every round that decodes
    nothing. The decoder's own round counter ``st[0]`` says where the shot is: a shot's
    last round always completes a window, so ``st[0] + i`` stays inside the shot."""
    t = st[0]
    for i in range(count):
        if trigger[t + i] >= 0:
            return False
    o = HEADER_SIZE
    for _ in range(count):
        t = st[0]
        store_round(in_buf, o, True, st, shot_bits, round_offsets, trigger, events)
        o += (round_offsets[t + 1] - round_offsets[t] + 7) >> 3
    return True


@numba.njit(**_jit.INLINE)
def open_record(recs, j, pickup, ts, decoded):
    """Start the ``j``-th record of the open batch: its lag behind its scheduled send time
    and its decode flag, kept in the batch's scratch (``recs[4:6]``) until
    :func:`close_records` writes and publishes it."""
    open_lag, open_flags = recs[4], recs[5]
    open_lag[j] = pickup - ts if ts > 0 else 0
    open_flags[j] = decoded


@numba.njit(**_jit.INLINE)
def close_records(recs, k0, k1, span):
    """Close packets ``k0 .. k1 - 1`` (at most :data:`MAX_OPEN_RECORDS`), served between two
    clock reads ``span`` ns apart: each is given an equal share of the span as its service
    time (one packet: exactly its own time), so the mean service over a run stays the mean
    cost of a round, backlog or not. Each record is written to its slot, then published
    (``rec_n``, release: see :func:`record_packet`) before the next is written, so at most
    one slot is ever being written ahead of the published count."""
    if k1 <= k0:
        return
    rec_service, rec_lag, rec_flags, rec_n, open_lag, open_flags = recs
    cap = rec_service.shape[0]
    share = span // (k1 - k0)
    for k in range(k0, k1):
        i = k % cap
        rec_service[i] = share
        rec_lag[i] = open_lag[k - k0]
        rec_flags[i] = open_flags[k - k0]
        store_release(rec_n, 0, k + 1)


@numba.njit(**_JIT)
def serve_stream_kernel(ring, loop, state, plan):
    """Serve one stream on a ring pair until BYE, a stop request or an idle timeout.

    ``ring`` is the server side's :class:`~qecd.transport.shm.ring.RingArgs`, ``loop`` its
    :class:`LoopArgs`, ``state`` and ``plan`` the compiled stream's
    :class:`~qecd.decoder.compiled_stream.StreamState` and
    :class:`~qecd.decoder.compiled_stream.StreamPlanArrays`.

    ``ctl`` (int64) is shared with the control thread: ``ctl[CTL_STOP]`` != 0 asks the loop
    to return; the loop keeps ``ctl[CTL_ROUNDS]``, ``CTL_ERRORS``, ``CTL_CORRECTIONS`` and
    ``CTL_NEXT_ROUND`` (the next absolute round it expects) up to date. Each processed
    SYNDROME packet is recorded (service time, lag, decode flag). Returns an ``EXIT_*``
    code.

    **Batches.** When another packet is already waiting as the loop finishes one, it is
    behind: it reads how many are waiting (the producer's index, once) and serves them all
    before it looks again, reading the clock only where a time is needed rather than per
    packet: when it picks the batch up, for each CORRECTION's ``service_ns`` (that read
    also closes the records before it), and at the batch's end. Every packet of a batch but
    the first is read in place in its slot (:func:`~qecd.transport.shm.ring.ring_peek`, no
    copy); the slots go back to the producer (``ring_release``) after each CORRECTION sent,
    every :data:`MAX_OPEN_RECORDS` packets, at the batch's end and before any return, never
    before they are read. It prefetches the request
    slot :data:`PREFETCH_AHEAD` places ahead and, after each CORRECTION, the next reply
    slot: their lines were last held by the client's CPU.
    A packet's *pickup* is the clock read before its work began (the CORRECTION's
    ``service_ns`` runs from it), its lag is the pickup minus its scheduled send time, and
    its service time its share of the span between that read and the next one (the
    packets served between two reads share it equally). A stream that keeps up sees
    batches of one packet, measured exactly as before (two reads per packet); a backlog
    left by a stall is served without a clock read or an engine call per quiet round, so it
    drains several times faster than it built up (docs/server.md).
    """
    words, buf, tx_off, rx_off, n_slots, slot_size = ring
    (server_side, in_buf, out_buf, ctl, rec_service, rec_lag, rec_flags, rec_n, stream_id,
     want_faults, idle_timeout_ns, send_timeout_ns, open_lag, open_flags, why, why_split,
     why_n) = loop
    round_offsets = plan.round_offsets
    trigger = plan.trigger
    st = state.st
    shot_bits = state.shot_bits
    events = state.events
    n_rounds = round_offsets.shape[0] - 1
    k = rec_n[0]  # records opened (packet count over the loop's life)
    recs = (rec_service, rec_lag, rec_flags, rec_n, open_lag, open_flags)
    while True:
        n = poll_request(words, buf, rx_off, n_slots, slot_size, in_buf, ctl, server_side,
                         idle_timeout_ns)
        if n < 0:
            if -1 - n == EXIT_CORRUPT:
                ln = write_error_reason(out_buf, E_BAD_HEADER, RING_CORRUPT, 0, stream_id, 0,
                                        0, ctl[CTL_NEXT_ROUND])
                send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln,
                           send_timeout_ns, ctl)
            return -1 - n
        behind = False  # a packet was waiting when the last batch ended
        while True:  # batches
            # only when behind: the producer's index lives on its own cache line, which a
            # read per packet would drag across CPUs even when the loop keeps up
            waiting = ring_pending(words, rx_off) if behind else 0
            pickup = monotonic_ns()
            k0 = k  # first record not yet closed (all opened at ``pickup``)
            held = 0  # slots read in place and not yet handed back (ring_release)
            j = 0
            while True:
                pkt = in_buf  # the batch's first packet was taken into in_buf
                if j > 0:  # the others are read in place: no copy, one release per close
                    n, at = ring_peek(words, buf, rx_off, n_slots, slot_size, held)
                    if n == EMPTY:  # never: ``waiting`` counts published slots only
                        break
                    if n < 0:  # a corrupt slot
                        ring_release(words, rx_off, held)
                        close_records(recs, k0, k, monotonic_ns() - pickup)
                        ln = write_error_reason(out_buf, E_BAD_HEADER, RING_CORRUPT, 0,
                                                stream_id, 0, 0, ctl[CTL_NEXT_ROUND])
                        send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln,
                                   send_timeout_ns, ctl)
                        return EXIT_CORRUPT
                    pkt = buf[at:at + n]
                    held += 1
                if waiting > j + PREFETCH_AHEAD:  # behind: fetch a slot the producer's
                    # CPU wrote while this one works on the current one
                    ring_prefetch(words, buf, rx_off, n_slots, slot_size,
                                  held + PREFETCH_AHEAD, 0)
                ctl[CTL_PACKETS] += 1
                reply, count, rnd, ts = check_packet_inline(pkt, n, out_buf, stream_id,
                                                            ctl[CTL_NEXT_ROUND], st[0],
                                                            round_offsets)
                if reply == REPLY_BYE:
                    ring_release(words, rx_off, held)
                    close_records(recs, k0, k, monotonic_ns() - pickup)
                    ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, HEADER_SIZE,
                              send_timeout_ns, -1)
                    return EXIT_BYE
                if reply != REPLY_SYNDROME:
                    if send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, reply,
                                  send_timeout_ns, ctl) != 0:
                        ring_release(words, rx_off, held)
                        close_records(recs, k0, k, monotonic_ns() - pickup)
                        return EXIT_SEND_FAILED
                elif store_quiet_packet(pkt, count, st, shot_bits, round_offsets, trigger,
                                        events):
                    ctl[CTL_NEXT_ROUND] = rnd + count
                    ctl[CTL_ROUNDS] += count
                    open_record(recs, k - k0, pickup, ts, 0)
                    k += 1
                    if k - k0 >= MAX_OPEN_RECORDS:  # the batch's scratch is full
                        ring_release(words, rx_off, held)
                        held = 0
                        now = monotonic_ns()
                        close_records(recs, k0, k, now - pickup)
                        pickup = now
                        k0 = k
                else:
                    decoded = 0
                    stored = count
                    t_reply = 0  # when the packet's last CORRECTION's service_ns was read
                    i = 0
                    o = HEADER_SIZE
                    while True:
                        status, i, o, ln, _ = engine_step(pkt, o, i, count, rnd,
                                                          rnd + count - 1, ts, pickup, out_buf,
                                                          stream_id, want_faults, state, plan)
                        if status == STEP_DONE:
                            break
                        decoded = 1
                        if status == STEP_NO_SOLUTION:  # the engine reset the stream
                            stored = i
                            t_reply = 0
                            failed = rnd + i - 1
                            w = st[1]  # the window that failed (its commits start the loss)
                            lost = failed - failed % n_rounds + (
                                0 if w == 0 else plan.win_commit_stop[w - 1])
                            if drop_shot(words, buf, tx_off, n_slots, slot_size, out_buf, ctl,
                                         stream_id, rnd, ts, failed, lost, rnd + count - 1,
                                         n_rounds, send_timeout_ns, why, why_split, why_n,
                                         failed) < 0:
                                ring_release(words, rx_off, held)
                                close_records(recs, k0, k,
                                              monotonic_ns() - pickup)
                                return EXIT_SEND_FAILED
                            break
                        if ring_send(words, buf, tx_off, n_slots, slot_size, out_buf, ln,
                                     send_timeout_ns, -1) != 0:
                            ctl[CTL_NEXT_ROUND] = rnd + i
                            ring_release(words, rx_off, held)
                            close_records(recs, k0, k, monotonic_ns() - pickup)
                            return EXIT_SEND_FAILED
                        ctl[CTL_CORRECTIONS] += 1
                        t_reply = pickup + np.int64(get_u64(out_buf, CORR_SERVICE_AT))
                        if behind:  # the next reply's slot, last held by the reader's CPU
                            ring_prefetch(words, buf, tx_off, n_slots, slot_size, 0, 1)
                        if i >= count:  # the packet's last round decoded: it is done
                            break       # (saves an engine call, which passes the plan)
                    if stored == count:
                        ctl[CTL_NEXT_ROUND] = rnd + count
                    ctl[CTL_ROUNDS] += stored
                    open_record(recs, k - k0, pickup, ts, decoded)
                    k += 1
                    if decoded or k - k0 >= MAX_OPEN_RECORDS:  # replies out, or scratch full:
                        ring_release(words, rx_off, held)
                        held = 0
                        # the clock closes the batch's records. Behind, the clock read
                        # the CORRECTION's service_ns came from (pickup + service_ns)
                        # serves: its ring write falls in the next batch's span, so no
                        # time is lost from the run's total, one read per shot is saved
                        now = t_reply if behind and t_reply > 0 else monotonic_ns()
                        close_records(recs, k0, k, now - pickup)
                        pickup = now
                        k0 = k
                j += 1
                if j > waiting:
                    break
            ring_release(words, rx_off, held)  # before the next take, which reads the index
            if k > k0:
                close_records(recs, k0, k, monotonic_ns() - pickup)
            n = ring_try_recv(words, buf, rx_off, n_slots, slot_size, in_buf)
            if n == EMPTY:
                break  # caught up: poll (spin, then nap)
            if n < 0:
                ln = write_error_reason(out_buf, E_BAD_HEADER, RING_CORRUPT, 0, stream_id,
                                        0, 0, ctl[CTL_NEXT_ROUND])
                send_reply(words, buf, tx_off, n_slots, slot_size, out_buf, ln,
                           send_timeout_ns, ctl)
                return EXIT_CORRUPT
            behind = True


@numba.njit(**_JIT)
def client_stream_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, packets, pkt_ptr,
                         cycle_ns, send_ns, write_ns, rx_buf, corr_first, corr_last,
                         corr_obs, corr_recv_ns, corr_ts, corr_service, corr_round, n_corr,
                         expected_corr, n_errors, timeout_ns):
    """Send every packet (paced at ``cycle_ns`` when > 0, else back to back), draining
    replies between sends; then wait for ``expected_corr`` corrections or ``timeout_ns``.

    ``packets`` is the concatenation of whole SYNDROME frames (``pkt_ptr`` offsets); each
    frame's ``timestamp_ns`` is overwritten with its scheduled (paced) or actual send time,
    also stored in ``send_ns``; ``write_ns`` gets the time its doorbell was rung (later than
    ``send_ns`` when this loop was late or the ring was full). Replies: CORRECTIONs fill
    ``corr_*`` at index ``n_corr[0]`` (observables unpacked into ``corr_obs``;
    ``corr_round``: the header's round, the last round of the packet that triggered it),
    ERRORs count in ``n_errors[0]``.
    Returns 0, -3 when the wait for corrections timed out, or -4 when the request ring stayed
    full for ``timeout_ns`` (the server stopped reading).
    """
    n_pkt = pkt_ptr.shape[0] - 1
    n_obs = corr_obs.shape[1]
    start = monotonic_ns() + 1000
    for k in range(n_pkt):
        p0 = pkt_ptr[k]
        ln = pkt_ptr[k + 1] - p0
        if cycle_ns > 0:
            sched = start + k * cycle_ns
            while monotonic_ns() < sched:
                cpu_relax()
            ts = sched
        else:
            ts = monotonic_ns()
        put_u64(packets, p0 + 24, ts)
        send_ns[k] = ts
        full_since = 0
        while ring_try_send(words, buf, tx_off, n_slots, slot_size, packets[p0:p0 + ln],
                            ln) != 0:
            _drain(words, buf, rx_off, n_slots, slot_size, rx_buf, corr_first, corr_last,
                   corr_obs, corr_recv_ns, corr_ts, corr_service, corr_round, n_corr,
                   n_errors, n_obs)
            now = monotonic_ns()
            if full_since == 0:
                full_since = now
            elif now - full_since > timeout_ns:
                return -4  # the ring stayed full: the server stopped reading
            cpu_relax()
        write_ns[k] = monotonic_ns()
        _drain(words, buf, rx_off, n_slots, slot_size, rx_buf, corr_first, corr_last,
               corr_obs, corr_recv_ns, corr_ts, corr_service, corr_round, n_corr, n_errors,
               n_obs)
    deadline = monotonic_ns() + timeout_ns
    while n_corr[0] < expected_corr:
        _drain(words, buf, rx_off, n_slots, slot_size, rx_buf, corr_first, corr_last,
               corr_obs, corr_recv_ns, corr_ts, corr_service, corr_round, n_corr, n_errors,
               n_obs)
        if monotonic_ns() > deadline:
            return -3
        cpu_relax()
    return 0


@numba.njit(**_JIT)
def _drain(words, buf, rx_off, n_slots, slot_size, rx_buf, corr_first, corr_last, corr_obs,
           corr_recv_ns, corr_ts, corr_service, corr_round, n_corr, n_errors, n_obs):
    while True:
        n = ring_try_recv(words, buf, rx_off, n_slots, slot_size, rx_buf)
        if n < 0:
            return
        now = monotonic_ns()
        if n < HEADER_SIZE:
            n_errors[0] += 1
            continue
        mtype = rx_buf[3]
        if mtype == T_CORRECTION:
            k = n_corr[0]
            if k >= corr_first.shape[0]:
                n_errors[0] += 1
                continue
            corr_first[k] = get_u64(rx_buf, 32)
            corr_last[k] = get_u64(rx_buf, 40)
            corr_service[k] = get_u64(rx_buf, 48)
            corr_ts[k] = get_u64(rx_buf, 24)
            corr_round[k] = get_u64(rx_buf, 16)
            corr_recv_ns[k] = now
            for j in range(n_obs):
                corr_obs[k, j] = (rx_buf[64 + (j >> 3)] >> (j & 7)) & 1
            n_corr[0] = k + 1
        elif mtype == T_ERROR:
            n_errors[0] += 1


@numba.njit(**_JIT)
def client_pingpong_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, pkt, n, out_rtt,
                           rx_buf, timeout_ns):
    """``n`` HEARTBEAT round trips through the server loop (the bare transport floor: ring
    write, doorbell, the server's poll and header parse, the echo). Round-trip times (ns)
    go to ``out_rtt``; returns how many completed before a ``timeout_ns`` wait expired."""
    ln = pkt.shape[0]
    for k in range(n):
        t0 = monotonic_ns()
        put_u64(pkt, 24, t0)
        while ring_try_send(words, buf, tx_off, n_slots, slot_size, pkt, ln) != 0:
            if monotonic_ns() - t0 > timeout_ns:
                return k
            cpu_relax()
        while True:
            r = ring_try_recv(words, buf, rx_off, n_slots, slot_size, rx_buf)
            if r >= HEADER_SIZE and rx_buf[3] == T_HEARTBEAT:
                break
            if monotonic_ns() - t0 > timeout_ns:
                return k
            cpu_relax()
        out_rtt[k] = monotonic_ns() - t0
    return n
