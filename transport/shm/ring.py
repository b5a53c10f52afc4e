"""Shared-memory SPSC rings in a registered POSIX shm region, for Python and Numba callers.

A *region* is one POSIX shared-memory object ``/dev/shm/qecd-...`` created with mode 0o600 by
one process (the creator) and attached by name by another. It holds a header, two *side*
liveness lines and one or two single-producer single-consumer rings of fixed-size slots. A
:class:`RingPair` is a region with two rings: ring 0 carries requests from side 0 (the client)
to side 1 (the server), ring 1 carries replies back. The ring's slots carry opaque payloads;
the packet layout inside a payload is :mod:`qecd.transport.wire`'s.

The hot path is a set of plain ``@njit`` functions over the region's ``uint64`` and ``uint8``
views (:func:`ring_try_send`, :func:`ring_try_recv`, :func:`ring_send`, :func:`ring_recv`)
that return status codes and never raise or allocate. They are compiled at import for their
explicit signatures (``cache=True``, so later imports load them), release the GIL, and are
built without Numba's reference counting (``_nrt=False``, see ``_KERNEL``): no atomic
reference-count update of each array argument per call, so a poll costs a few ns. The
classes here own the mapping, validate geometry and wrap those functions for the control
path.

A ``cache=True`` kernel in another module that calls these embeds its own copy of them: every
such caller passes this file to :func:`qecd._jit.invalidate_if_changed`, which drops its
cached machine code when this file changes.

The region layout (header, side lines, rings, slots), the memory-ordering rules, liveness,
cleanup and the status codes (:class:`RingStatus`) are specified in ``docs/protocol.md`` §14;
this module is their reference implementation and does not repeat them. Measured figures:
``qecd bench ring-pingpong`` and ``docs/benchmarks.md``.

Example
-------
>>> with RingPair.create(n_slots=8, slot_size=64) as client:
...     with RingPair.attach(client.name, side="server") as server:
...         client.send_bytes(b"round 1")
...         msg = server.recv_bytes()
...         server.send_bytes(msg.upper())
...         client.recv_bytes()
b'ROUND 1'
"""

from __future__ import annotations

import _posixshmem
import contextlib
import dataclasses
import enum
import mmap
import os
import secrets
import stat
import time
import weakref
from typing import NamedTuple

import numpy as np
from numba import njit

from qecd import _jit  # noqa: E402
from qecd.errors import QecdError
from qecd.transport.shm import atomics as _atomics_module  # noqa: E402
from qecd.transport.shm.atomics import (
    copy_bytes,
    cpu_relax,
    load_acquire,
    monotonic_ns,
    prefetch,
    sched_yield,
    store_release,
)

_jit.invalidate_if_changed(__file__, [_atomics_module.__file__], __name__)

__all__ = [
    "CLOCK_EVERY", "HEADER_SIZE", "MAGIC", "MAX_PAUSES", "NAME_PREFIX", "RING_HEADER_SIZE",
    "SLOT_HEADER_SIZE", "SPIN_POLLS", "VERSION", "RingStatus", "OK", "FULL", "EMPTY",
    "TIMEOUT", "PEER_DEAD", "TOO_LARGE", "BUFFER_TOO_SMALL", "CORRUPT", "RegionError",
    "RingError", "SideInfo", "Region", "RingSender", "RingReceiver", "RingPair",
    "ring_try_send", "ring_try_recv", "ring_send", "ring_recv", "ring_pending",
    "region_beat", "region_heartbeat_ns", "sweep_stale_regions", "list_regions",
    "slot_size_for",
]

# -- layout constants ---------------------------------------------------------------------

MAGIC = int.from_bytes(b"QECDRING", "little")  #: u64 at offset 0
VERSION = 1  #: region layout version
NAME_PREFIX = "qecd-"  #: every region name starts with this
HEADER_SIZE = 384  #: bytes before ring 0
RING_HEADER_SIZE = 384  #: bytes before slot 0 of a ring
SLOT_HEADER_SIZE = 16  #: doorbell + length + reserved
SIDE_OFFSET = 128  #: side s's line starts at SIDE_OFFSET + s * SIDE_STRIDE
SIDE_STRIDE = 128
MAX_SLOTS = 1 << 24
MAX_SLOT_SIZE = 1 << 24

# header word indices
_W_MAGIC, _W_VER_HDR, _W_RINGS_SLOTS, _W_SIZE_RSIZE = 0, 1, 2, 3
_W_TOTAL, _W_CREATOR, _W_CREATED = 4, 5, 6
# side line word indices relative to its first word
_S_PID, _S_HB, _S_STATE = 0, 1, 2
# ring header word indices relative to the ring's first word
_R_INDEX, _R_PSIDE, _R_CSIDE, _R_NSLOTS, _R_SSIZE = 0, 1, 2, 3, 4
_R_HEAD, _R_CTAIL, _R_TAIL = 16, 17, 32

STATE_NONE, STATE_ATTACHED, STATE_DETACHED = 0, 1, 2

# -- wait policy (compile-time constants of the kernels) ------------------------------------

SPIN_POLLS = 1024  #: polls without ``pause`` before backing off
MAX_PAUSES = 8  #: back-off cap, ``pause`` instructions per poll (~0.2 us on Zen 2)
CLOCK_EVERY = 64  #: polls between clock reads (a read costs ~22 ns), a power of two
DEFAULT_YIELD_AFTER_NS = 50_000  #: Python wrappers' default ``yield_after_ns``


class RingArgs(NamedTuple):
    """One side's view of a ring pair, as Numba loops take it (one argument)."""

    words: np.ndarray  #: uint64 view of the region (doorbells, indices, liveness)
    buf: np.ndarray  #: uint8 view of the region (slots)
    tx_off: int  #: byte offset of the ring this side sends on
    rx_off: int  #: byte offset of the ring this side receives on
    n_slots: int  #: slots per ring (a power of two)
    slot_size: int  #: bytes per slot


class RingStatus(enum.IntEnum):
    """Status codes returned by the ring functions (a receive returns a length ``>= 0``).

    >>> RingStatus(-1).name
    'FULL'
    """

    OK = 0  #: sent
    FULL = -1  #: no free slot (the consumer has not given credit back)
    EMPTY = -2  #: no message published
    TIMEOUT = -3  #: a wait reached its deadline, the peer may be alive
    PEER_DEAD = -4  #: a wait timed out and the peer's process is gone or detached (Python)
    TOO_LARGE = -5  #: ``length`` outside ``0 .. min(slot_size - 16, len(payload))``
    BUFFER_TOO_SMALL = -6  #: the message is longer than ``out``; it stays in the ring
    CORRUPT = -7  #: a doorbell or length that no correct producer writes


OK = 0
FULL = -1
EMPTY = -2
TIMEOUT = -3
PEER_DEAD = -4
TOO_LARGE = -5
BUFFER_TOO_SMALL = -6
CORRUPT = -7


class RegionError(QecdError, ValueError):
    """A region cannot be created or attached as asked (bad name, geometry, header).

    Parameters
    ----------
    name : str
        The region's name.
    field : str
        The offending field (``"magic"``, ``"version"``, ``"n_slots"``, ...).
    expected : str
        What was allowed.
    got : object
        What was found.
    """

    def __init__(self, name: str, field: str, expected: str, got: object) -> None:
        self.name, self.field, self.expected, self.got = name, field, expected, got
        super().__init__(f"region {name!r} field {field!r}: expected {expected}, got {got!r}")


class RingError(QecdError):
    """A ring call failed with a :class:`RingStatus` (raised by the ``*_bytes`` helpers).

    Parameters
    ----------
    status : int
        The :class:`RingStatus` value.
    reason : str
        What was being done.
    """

    def __init__(self, status: int, reason: str) -> None:
        self.status = RingStatus(status)
        self.reason = reason
        super().__init__(f"[{self.status.name}] {reason}")


# -- Numba kernels --------------------------------------------------------------------------

#: every kernel: cached, GIL released, and compiled without Numba's reference counting. The
#: kernels never allocate, so NRT would do nothing but an atomic ``lock inc``/``lock dec`` of
#: every array argument per call: measured ~40 ns per poll in a wait loop that calls
#: ``ring_try_recv``. ``_nrt`` is a private Numba option (Numba's own tests use it); should a
#: release drop it, deleting it here costs only that overhead.
_KERNEL = _jit.KERNEL
_SIG_TRY_SEND = "int64(uint64[::1], uint8[::1], int64, int64, int64, uint8[::1], int64)"
_SIG_TRY_RECV = "int64(uint64[::1], uint8[::1], int64, int64, int64, uint8[::1])"
_SIG_SEND = ("int64(uint64[::1], uint8[::1], int64, int64, int64, uint8[::1], int64, int64,"
             " int64)")
_SIG_RECV = "int64(uint64[::1], uint8[::1], int64, int64, int64, uint8[::1], int64, int64)"


@njit(_SIG_TRY_SEND, **_KERNEL)
def ring_try_send(words, buf, ring_off, n_slots, slot_size, payload, length):
    """Publish ``payload[:length]`` in the next slot if there is credit; never waits.

    Parameters
    ----------
    words : numpy.ndarray
        ``uint64`` C-contiguous view of the whole region (:attr:`Region.words`).
    buf : numpy.ndarray
        ``uint8`` C-contiguous view of the same memory (:attr:`Region.buf`).
    ring_off : int
        Byte offset of the ring (:attr:`RingSender.offset`).
    n_slots, slot_size : int
        The region's geometry; ``n_slots`` a power of two. Trusted, not checked.
    payload : numpy.ndarray
        ``uint8`` C-contiguous bytes to send.
    length : int
        Bytes of ``payload`` to send, ``0 <= length <= slot_size - 16``.

    Returns
    -------
    int
        ``OK`` (0), ``FULL`` (-1) or ``TOO_LARGE`` (-5).

    Examples
    --------
    >>> with RingPair.create(n_slots=2, slot_size=64) as p:
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     msg = np.arange(5, dtype=np.uint8)
    ...     [ring_try_send(w, b, tx, n, s, msg, 5) for _ in range(3)]
    [0, 0, -1]
    """
    if length < 0 or length > slot_size - SLOT_HEADER_SIZE or length > payload.shape[0]:
        return TOO_LARGE
    rw = ring_off >> 3
    head = np.int64(words[rw + _R_HEAD])
    if head - np.int64(words[rw + _R_CTAIL]) >= n_slots:
        tail = np.int64(load_acquire(words, rw + _R_TAIL))
        words[rw + _R_CTAIL] = tail
        if head - tail >= n_slots:
            return FULL
    slot = ring_off + RING_HEADER_SIZE + (head & (n_slots - 1)) * slot_size
    copy_bytes(buf, slot + SLOT_HEADER_SIZE, payload, 0, length)
    sw = slot >> 3
    words[sw + 1] = length
    store_release(words, sw, head + 1)
    store_release(words, rw + _R_HEAD, head + 1)  # read only by ring_pending
    return OK


@njit(**_jit.INLINE)
def ring_peek(words, buf, ring_off, n_slots, slot_size, ahead):
    """The message ``ahead`` places past the consumer's index, read in place and not
    consumed: ``(length, offset)``, its payload being ``buf[offset:offset + length]``; or
    ``(EMPTY, 0)`` / ``(CORRUPT, 0)``. A consumer that peeks ``0, 1, ... k - 1`` hands the
    slots back with :func:`ring_release` (``k``) once it has read them: until then the
    producer cannot reuse them, so their bytes stay as published (by a producer that
    follows the protocol: the slot is in shared memory, and a reader must stay
    memory-safe whatever the bytes become).

    >>> with RingPair.create(n_slots=4, slot_size=64) as p:
    ...     p.send_bytes(b"ab"); p.send_bytes(b"cde")
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     (n1, o1), (n2, o2) = [ring_peek(w, b, tx, n, s, a) for a in (0, 1)]
    ...     bytes(b[o1:o1 + n1]), bytes(b[o2:o2 + n2]), ring_peek(w, b, tx, n, s, 2)[0]
    (b'ab', b'cde', -2)
    """
    tail = np.int64(words[(ring_off >> 3) + _R_TAIL]) + ahead
    slot = ring_off + RING_HEADER_SIZE + (tail & (n_slots - 1)) * slot_size
    sw = slot >> 3
    seq = np.int64(load_acquire(words, sw))
    if seq != tail + 1:
        stale = tail + 1 - n_slots
        if seq == stale or (stale < 0 and seq == 0):
            return EMPTY, 0
        return CORRUPT, 0
    length = np.int64(words[sw + 1]) & 0xFFFFFFFF
    if length > slot_size - SLOT_HEADER_SIZE:
        return CORRUPT, 0
    return length, slot + SLOT_HEADER_SIZE


@njit(**_jit.INLINE)
def ring_release(words, ring_off, count):
    """Consume the ``count`` messages :func:`ring_peek` read (release: the producer may
    then reuse their slots).

    >>> with RingPair.create(n_slots=4, slot_size=64) as p:
    ...     p.send_bytes(b"ab")
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     ring_release(w, tx, 1)
    ...     ring_pending(w, tx)
    0
    """
    if count > 0:
        rw = (ring_off >> 3) + _R_TAIL
        store_release(words, rw, np.int64(words[rw]) + count)


@njit(_SIG_TRY_RECV, **_KERNEL)
def ring_try_recv(words, buf, ring_off, n_slots, slot_size, out):
    """Take the next message into ``out`` if one is published; never waits.

    Parameters
    ----------
    words, buf, ring_off, n_slots, slot_size
        As in :func:`ring_try_send` (``ring_off`` of the receiving ring).
    out : numpy.ndarray
        ``uint8`` C-contiguous buffer; receives the payload in ``out[:length]``.

    Returns
    -------
    int
        The payload length ``>= 0``, or ``EMPTY`` (-2), ``BUFFER_TOO_SMALL`` (-6, the
        message stays in the ring) or ``CORRUPT`` (-7, nothing consumed).

    Examples
    --------
    >>> with RingPair.create(n_slots=2, slot_size=64) as p:
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     out = np.zeros(48, dtype=np.uint8)
    ...     ring_try_recv(w, b, tx, n, s, out)
    -2
    """
    length, at = ring_peek(words, buf, ring_off, n_slots, slot_size, 0)
    if length < 0:
        return length
    if length > out.shape[0]:
        return BUFFER_TOO_SMALL
    copy_bytes(out, 0, buf, at, length)
    ring_release(words, ring_off, 1)
    return length


@njit(**_KERNEL)
def _backoff(words, hb_word, polls, start, deadline, yield_after_ns):
    """One poll's worth of waiting; returns True at the deadline."""
    if polls > SPIN_POLLS:
        n = (polls - SPIN_POLLS) >> 4
        for _ in range(n if n < MAX_PAUSES else MAX_PAUSES):
            cpu_relax()
    if (polls & (CLOCK_EVERY - 1)) == 0:
        now = monotonic_ns()
        store_release(words, hb_word, now)
        if now >= deadline:
            return True
        if yield_after_ns >= 0 and now - start >= yield_after_ns:
            sched_yield()
    return False


@njit(_SIG_SEND, **_KERNEL)
def ring_send(words, buf, ring_off, n_slots, slot_size, payload, length, timeout_ns,
              yield_after_ns):
    """:func:`ring_try_send`, busy-waiting for credit for at most ``timeout_ns``.

    Parameters
    ----------
    words, buf, ring_off, n_slots, slot_size, payload, length
        As in :func:`ring_try_send`.
    timeout_ns : int
        Deadline in ns of ``CLOCK_MONOTONIC`` from the call (checked every
        :data:`CLOCK_EVERY` polls, so at least that many polls are made).
    yield_after_ns : int
        After waiting this long, call ``sched_yield`` between polls; ``-1`` never yields.

    Returns
    -------
    int
        ``OK``, ``TOO_LARGE`` or ``TIMEOUT`` (-3). Peer death is judged by the caller
        (:meth:`RingSender.send` does).

    Examples
    --------
    >>> with RingPair.create(n_slots=1, slot_size=64) as p:
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     msg = np.zeros(8, dtype=np.uint8)
    ...     first = ring_send(w, b, tx, n, s, msg, 8, 10**6, -1)
    ...     first, ring_send(w, b, tx, n, s, msg, 8, 10**5, -1)
    (0, -3)
    """
    st = ring_try_send(words, buf, ring_off, n_slots, slot_size, payload, length)
    if st != FULL:
        return st
    side = np.int64(words[(ring_off >> 3) + _R_PSIDE])
    hb_word = ((SIDE_OFFSET + side * SIDE_STRIDE) >> 3) + _S_HB
    start = monotonic_ns()
    deadline = start + timeout_ns
    store_release(words, hb_word, start)
    polls = 0
    while True:
        st = ring_try_send(words, buf, ring_off, n_slots, slot_size, payload, length)
        if st != FULL:
            return st
        polls += 1
        if _backoff(words, hb_word, polls, start, deadline, yield_after_ns):
            return TIMEOUT


@njit(_SIG_RECV, **_KERNEL)
def ring_recv(words, buf, ring_off, n_slots, slot_size, out, timeout_ns, yield_after_ns):
    """:func:`ring_try_recv`, busy-waiting for a message for at most ``timeout_ns``.

    Parameters
    ----------
    words, buf, ring_off, n_slots, slot_size, out
        As in :func:`ring_try_recv`.
    timeout_ns, yield_after_ns : int
        As in :func:`ring_send`.

    Returns
    -------
    int
        The payload length, or ``TIMEOUT``, ``BUFFER_TOO_SMALL`` or ``CORRUPT``.

    Examples
    --------
    >>> with RingPair.create(n_slots=4, slot_size=64) as p:
    ...     w, b, tx, rx, n, s = p.kernel_args()
    ...     out = np.zeros(48, dtype=np.uint8)
    ...     ring_recv(w, b, rx, n, s, out, 10**5, -1)
    -3
    """
    got = ring_try_recv(words, buf, ring_off, n_slots, slot_size, out)
    if got != EMPTY:
        return got
    side = np.int64(words[(ring_off >> 3) + _R_CSIDE])
    hb_word = ((SIDE_OFFSET + side * SIDE_STRIDE) >> 3) + _S_HB
    start = monotonic_ns()
    deadline = start + timeout_ns
    store_release(words, hb_word, start)
    polls = 0
    while True:
        got = ring_try_recv(words, buf, ring_off, n_slots, slot_size, out)
        if got != EMPTY:
            return got
        polls += 1
        if _backoff(words, hb_word, polls, start, deadline, yield_after_ns):
            return TIMEOUT


@njit("int64(uint64[::1], int64)", **_KERNEL)
def ring_pending(words, ring_off):
    """Messages published and not yet consumed on the ring at ``ring_off`` (a snapshot).

    >>> with RingPair.create(n_slots=4, slot_size=64) as p:
    ...     p.send_bytes(b"x")
    ...     ring_pending(p.region.words, p.tx.offset)
    1
    """
    rw = ring_off >> 3
    return np.int64(load_acquire(words, rw + _R_HEAD)) - np.int64(
        load_acquire(words, rw + _R_TAIL))


@njit(**_KERNEL)
def ring_prefetch(words, buf, ring_off, n_slots, slot_size, ahead, producer):
    """Prefetch the first cache line of the slot ``ahead`` places past this side's index:
    the consumer's tail (``producer`` 0: a slot it will read) or the producer's head
    (``producer`` 1: a slot it will write). A hint only; a loop serving a backlog calls it
    a few slots ahead, so the lines the other CPU last held arrive while it works."""
    rw = ring_off >> 3
    i = np.int64(words[rw + (_R_HEAD if producer else _R_TAIL)]) + ahead
    prefetch(buf, ring_off + RING_HEADER_SIZE + (i & (n_slots - 1)) * slot_size, producer)


@njit("void(uint64[::1], int64)", **_KERNEL)
def region_beat(words, side):
    """Store ``CLOCK_MONOTONIC`` now as side ``side``'s heartbeat (release).

    >>> with RingPair.create(n_slots=2, slot_size=64) as p:
    ...     region_beat(p.region.words, 0)
    ...     region_heartbeat_ns(p.region.words, 0) <= time.monotonic_ns()
    True
    """
    store_release(words, ((SIDE_OFFSET + side * SIDE_STRIDE) >> 3) + _S_HB, monotonic_ns())


@njit("int64(uint64[::1], int64)", **_KERNEL)
def region_heartbeat_ns(words, side):
    """Side ``side``'s last heartbeat, ``CLOCK_MONOTONIC`` ns (acquire); 0 if never beaten.

    >>> with RingPair.create(n_slots=2, slot_size=64) as p:
    ...     region_heartbeat_ns(p.region.words, 1)
    0
    """
    return np.int64(load_acquire(words, ((SIDE_OFFSET + side * SIDE_STRIDE) >> 3) + _S_HB))


@njit("uint64(uint64[::1], int64)", **_KERNEL)
def _load(words, i):
    return load_acquire(words, i)


@njit("void(uint64[::1], int64, uint64)", **_KERNEL)
def _store(words, i, value):
    store_release(words, i, value)


# -- regions --------------------------------------------------------------------------------


def slot_size_for(max_payload: int) -> int:
    """The smallest valid slot size (a multiple of 64) that carries ``max_payload`` bytes.

    >>> slot_size_for(48), slot_size_for(64), slot_size_for(0)
    (64, 128, 64)
    """
    return max(64, -(-(max_payload + SLOT_HEADER_SIZE) // 64) * 64)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live (not zombie) process in this PID namespace."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: os.kill said it exists
    return state not in (b"Z", b"X")


@dataclasses.dataclass(frozen=True)
class SideInfo:
    """A snapshot of one side's liveness line.

    Attributes
    ----------
    side : int
        0 or 1.
    pid : int
        The claiming process, 0 if never claimed.
    state : int
        0 never attached, 1 attached, 2 detached.
    heartbeat_age_ns : int or None
        ns since its last heartbeat, ``None`` if it never beat.
    pid_alive : bool
        ``os.kill(pid, 0)`` succeeds and the process is not a zombie.
    """

    side: int
    pid: int
    state: int
    heartbeat_age_ns: int | None
    pid_alive: bool

    @property
    def alive(self) -> bool:
        """Attached and its process exists."""
        return self.state == STATE_ATTACHED and self.pid_alive


#: both sides map a region with its pages populated up front (Linux): a ring's slots are
#: otherwise faulted in one page at a time the first time the ring wraps past them, a page
#: fault (2-5 us on a VM) every ~12 slots of 320 bytes on the hot path of a new stream;
#: ``qecd bench ring-drain`` showed it as ~310 faults and +40 ns per round in each of its
#: first eight repeats, until the reply ring had wrapped once
_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


def _release_mapping(mm: mmap.mmap) -> None:
    with contextlib.suppress(BufferError, ValueError):
        mm.close()  # BufferError: numpy views still exported; unmapped when they die


def _finalize(mm: mmap.mmap, name: str, creator_pid: int, unlinked: list[bool]) -> None:
    if os.getpid() == creator_pid and not unlinked[0]:
        unlinked[0] = True
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink("/" + name)
    _release_mapping(mm)


class Region:
    """A registered shared-memory region: header, two side lines and 1-2 rings.

    Use :meth:`create` (the creator owns the name and unlinks it) or :meth:`attach`.
    :attr:`words` and :attr:`buf` are the ``uint64`` and ``uint8`` views the Numba kernels take.

    Examples
    --------
    >>> with Region.create(n_rings=1, n_slots=4, slot_size=64) as r:
    ...     r.claim(0)
    ...     r.n_slots, r.slot_size, r.max_payload, r.total_size, r.name.startswith("qecd-")
    (4, 64, 48, 1024, True)
    """

    def __init__(self, name: str, mm: mmap.mmap, *, creator: bool) -> None:
        self.name = name
        self.creator = creator
        self._mm = mm
        self.words: np.ndarray = np.frombuffer(mm, dtype=np.uint64)
        self.buf: np.ndarray = np.frombuffer(mm, dtype=np.uint8)
        w = self.words
        self.header_size = int(w[_W_VER_HDR] >> np.uint64(32))
        self.n_rings = int(w[_W_RINGS_SLOTS] & np.uint64(0xFFFFFFFF))
        self.n_slots = int(w[_W_RINGS_SLOTS] >> np.uint64(32))
        self.slot_size = int(w[_W_SIZE_RSIZE] & np.uint64(0xFFFFFFFF))
        self.ring_size = int(w[_W_SIZE_RSIZE] >> np.uint64(32))
        self.total_size = int(w[_W_TOTAL])
        self.creator_pid = int(w[_W_CREATOR])
        self.max_payload = self.slot_size - SLOT_HEADER_SIZE
        self._claimed: set[int] = set()
        self._unlinked = [False]
        self._finalizer = weakref.finalize(
            self, _finalize, mm, name, self.creator_pid if creator else -1, self._unlinked)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, n_rings: int, n_slots: int, slot_size: int, *,
               name: str | None = None) -> Region:
        """Create a new region, mode 0o600, zeroed, header filled, magic stored last.

        Parameters
        ----------
        n_rings : int
            1 (side 0 sends to side 1) or 2 (a :class:`RingPair`).
        n_slots : int
            Slots per ring, a power of two in ``1 .. 2**24``.
        slot_size : int
            Bytes per slot, a multiple of 64 in ``64 .. 2**24``; carries ``slot_size - 16``
            payload bytes (:func:`slot_size_for` rounds up a payload size).
        name : str, optional
            Must start with ``"qecd-"``; default ``qecd-<pid>-<random hex>``.

        Returns
        -------
        Region
            The creator's handle. No side is claimed yet (see :meth:`claim`).

        Raises
        ------
        RegionError
            Bad geometry or name; ``FileExistsError`` if the name is taken.
        """
        name = name if name is not None else f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        _check_name(name)
        if n_rings not in (1, 2):
            raise RegionError(name, "n_rings", "1 or 2", n_rings)
        if not (1 <= n_slots <= MAX_SLOTS) or n_slots & (n_slots - 1):
            raise RegionError(name, "n_slots", f"a power of two in 1..{MAX_SLOTS}", n_slots)
        if not (64 <= slot_size <= MAX_SLOT_SIZE) or slot_size % 64:
            raise RegionError(name, "slot_size", f"a multiple of 64 in 64..{MAX_SLOT_SIZE}",
                              slot_size)
        ring_size = RING_HEADER_SIZE + n_slots * slot_size
        total = HEADER_SIZE + n_rings * ring_size
        fd = _posixshmem.shm_open("/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.fchmod(fd, 0o600)  # umask can only clear bits; make the mode explicit anyway
            os.ftruncate(fd, total)
            mm = mmap.mmap(fd, total, _MAP_FLAGS, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink("/" + name)
            raise
        finally:
            os.close(fd)
        w = np.frombuffer(mm, dtype=np.uint64)
        w[_W_VER_HDR] = VERSION | (HEADER_SIZE << 32)
        w[_W_RINGS_SLOTS] = n_rings | (n_slots << 32)
        w[_W_SIZE_RSIZE] = slot_size | (ring_size << 32)
        w[_W_TOTAL] = total
        w[_W_CREATOR] = os.getpid()
        w[_W_CREATED] = time.monotonic_ns()
        for r in range(n_rings):
            rw = (HEADER_SIZE + r * ring_size) >> 3
            w[rw + _R_INDEX] = r
            w[rw + _R_PSIDE] = r % 2
            w[rw + _R_CSIDE] = 1 - r % 2
            w[rw + _R_NSLOTS] = n_slots
            w[rw + _R_SSIZE] = slot_size
        _store(w, _W_MAGIC, np.uint64(MAGIC))
        del w
        return cls(name, mm, creator=True)

    @classmethod
    def attach(cls, name: str, *, n_rings: int | None = None, n_slots: int | None = None,
               slot_size: int | None = None) -> Region:
        """Map an existing region by name, validating owner, mode, magic, version, geometry.

        Parameters
        ----------
        name : str
            The creator's :attr:`name`.
        n_rings, n_slots, slot_size : int, optional
            When given, the region must have exactly this geometry.

        Returns
        -------
        Region
            An attacher's handle (never unlinks the name).

        Raises
        ------
        RegionError
            No such region, not ours, wrong mode, or a header field that does not match.

        Examples
        --------
        >>> with Region.create(n_rings=2, n_slots=8, slot_size=64) as r:
        ...     Region.attach(r.name, n_slots=16)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qecd.transport.shm.ring.RegionError: region 'qecd-...' field 'n_slots': expected 16, got 8
        """
        _check_name(name)
        try:
            fd = _posixshmem.shm_open("/" + name, os.O_RDWR, 0)
        except FileNotFoundError:
            raise RegionError(name, "name", "an existing shared-memory region",
                              "no such region") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid():
                raise RegionError(name, "owner", f"uid {os.geteuid()}", st.st_uid)
            if stat.S_IMODE(st.st_mode) != 0o600:
                raise RegionError(name, "mode", "0o600", oct(stat.S_IMODE(st.st_mode)))
            if st.st_size < HEADER_SIZE:
                raise RegionError(name, "size", f">= {HEADER_SIZE} bytes", st.st_size)
            mm = mmap.mmap(fd, st.st_size, _MAP_FLAGS, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        try:
            _validate_header(name, np.frombuffer(mm, dtype=np.uint64), st.st_size,
                             n_rings, n_slots, slot_size)
        except BaseException:
            _release_mapping(mm)
            raise
        return cls(name, mm, creator=False)

    # -- sides ---------------------------------------------------------------------------

    def _side_word(self, side: int, field: int) -> int:
        if side not in (0, 1):
            raise RegionError(self.name, "side", "0 or 1", side)
        return ((SIDE_OFFSET + side * SIDE_STRIDE) >> 3) + field

    def claim(self, side: int, *, force: bool = False) -> None:
        """Record this process as side ``side``: pid, heartbeat, state attached.

        Raises
        ------
        RegionError
            The side is attached by a live process (``force=True`` takes it over).
        """
        info = self.side_info(side)
        if info.alive and not force:
            raise RegionError(self.name, f"side {side}", "a side no live process holds",
                              f"attached by pid {info.pid}")
        w = self.words
        _store(w, self._side_word(side, _S_PID), np.uint64(os.getpid()))
        _store(w, self._side_word(side, _S_HB), np.uint64(time.monotonic_ns()))
        _store(w, self._side_word(side, _S_STATE), np.uint64(STATE_ATTACHED))
        self._claimed.add(side)

    def beat(self, side: int) -> None:
        """Bump side ``side``'s heartbeat now (waits in the kernels also do)."""
        self._side_word(side, _S_HB)  # validates side
        region_beat(self.words, side)

    def side_info(self, side: int) -> SideInfo:
        """A snapshot of side ``side``'s pid, state, heartbeat age and pid liveness.

        >>> with Region.create(n_rings=1, n_slots=2, slot_size=64) as r:
        ...     r.claim(1)
        ...     r.side_info(1).alive, r.side_info(0).state
        (True, 0)
        """
        w = self.words
        pid = int(_load(w, self._side_word(side, _S_PID)))
        hb = int(_load(w, self._side_word(side, _S_HB)))
        state = int(_load(w, self._side_word(side, _S_STATE)))
        age = time.monotonic_ns() - hb if hb else None
        return SideInfo(side, pid, state, age, _pid_alive(pid))

    def side_alive(self, side: int, max_heartbeat_age: float | None = None) -> bool:
        """Whether side ``side`` is attached by a live process (and beat recently enough).

        Parameters
        ----------
        side : int
            0 or 1.
        max_heartbeat_age : float, optional
            Seconds; when given, also require a heartbeat at most this old.
        """
        info = self.side_info(side)
        if not info.alive:
            return False
        if max_heartbeat_age is None:
            return True
        return info.heartbeat_age_ns is not None and (
            info.heartbeat_age_ns <= max_heartbeat_age * 1e9)

    # -- rings ---------------------------------------------------------------------------

    def ring_offset(self, ring: int) -> int:
        """Byte offset of ring ``ring``."""
        if not 0 <= ring < self.n_rings:
            raise RegionError(self.name, "ring", f"0..{self.n_rings - 1}", ring)
        return HEADER_SIZE + ring * self.ring_size

    def sender(self, ring: int, *, yield_after_ns: int = DEFAULT_YIELD_AFTER_NS) -> RingSender:
        """The producer end of ring ``ring`` (its producer side is ``ring % 2``)."""
        return RingSender(self, ring, yield_after_ns=yield_after_ns)

    def receiver(self, ring: int, *,
                 yield_after_ns: int = DEFAULT_YIELD_AFTER_NS) -> RingReceiver:
        """The consumer end of ring ``ring`` (its consumer side is ``1 - ring % 2``)."""
        return RingReceiver(self, ring, yield_after_ns=yield_after_ns)

    # -- lifetime ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self.words is None

    def close(self) -> None:
        """Mark this process's claimed sides detached and unmap (idempotent).

        The mapping is released once no numpy view of it remains (views handed out by
        :attr:`words`, :attr:`buf` or :meth:`RingPair.kernel_args` keep it alive).
        """
        if self.words is None:
            return
        for side in sorted(self._claimed):
            if int(_load(self.words, self._side_word(side, _S_PID))) == os.getpid():
                _store(self.words, self._side_word(side, _S_STATE), np.uint64(STATE_DETACHED))
        self._claimed.clear()
        self.words = self.buf = None  # type: ignore[assignment]
        if not self.creator or self._unlinked[0]:
            self._finalizer()  # nothing left to unlink: release now
        else:
            _release_mapping(self._mm)  # the finalizer still unlinks at GC / exit

    def unlink(self) -> None:
        """Remove the name (creator only; idempotent). Mapped handles keep working.

        Raises
        ------
        RegionError
            Called on an attached (not created) region.
        """
        if not self.creator:
            raise RegionError(self.name, "unlink", "the creator's handle", "an attacher's")
        if not self._unlinked[0]:
            self._unlinked[0] = True
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink("/" + self.name)

    def forget_name(self) -> None:
        """Remove the region's name, from either side, once both have mapped it: no other
        process can attach from then on, and a killed creator leaves nothing in /dev/shm.
        Idempotent; mapped handles keep working (docs/protocol.md §14)."""
        self._unlinked[0] = True
        with contextlib.suppress(FileNotFoundError):
            _posixshmem.shm_unlink("/" + self.name)

    def __enter__(self) -> Region:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self.creator:
            self.unlink()

    def __repr__(self) -> str:
        role = "creator" if self.creator else "attached"
        return (f"Region({self.name!r}, {role}, n_rings={self.n_rings}, n_slots={self.n_slots}, "
                f"slot_size={self.slot_size})")


def _check_name(name: str) -> None:
    if (not isinstance(name, str) or not name.startswith(NAME_PREFIX) or "/" in name
            or len(name) > 200):
        raise RegionError(str(name), "name", f"'{NAME_PREFIX}...' without '/', <= 200 chars",
                          name)


def _validate_header(name: str, w: np.ndarray, size: int, n_rings: int | None,
                     n_slots: int | None, slot_size: int | None) -> None:
    magic = int(_load(w, _W_MAGIC))
    if magic != MAGIC:
        raise RegionError(name, "magic", f"{MAGIC:#x} (b'QECDRING')", f"{magic:#x}")
    version = int(w[_W_VER_HDR] & np.uint64(0xFFFFFFFF))
    if version != VERSION:
        raise RegionError(name, "version", str(VERSION), version)
    found = {
        "header_size": int(w[_W_VER_HDR] >> np.uint64(32)),
        "n_rings": int(w[_W_RINGS_SLOTS] & np.uint64(0xFFFFFFFF)),
        "n_slots": int(w[_W_RINGS_SLOTS] >> np.uint64(32)),
        "slot_size": int(w[_W_SIZE_RSIZE] & np.uint64(0xFFFFFFFF)),
        "ring_size": int(w[_W_SIZE_RSIZE] >> np.uint64(32)),
        "total_size": int(w[_W_TOTAL]),
    }
    for field, want in (("n_rings", n_rings), ("n_slots", n_slots), ("slot_size", slot_size)):
        if want is not None and found[field] != want:
            raise RegionError(name, field, str(want), found[field])
    ns, ss, nr = found["n_slots"], found["slot_size"], found["n_rings"]
    rules = (
        ("header_size", found["header_size"] == HEADER_SIZE, str(HEADER_SIZE)),
        ("n_rings", nr in (1, 2), "1 or 2"),
        ("n_slots", 1 <= ns <= MAX_SLOTS and not ns & (ns - 1), "a power of two"),
        ("slot_size", 64 <= ss <= MAX_SLOT_SIZE and ss % 64 == 0, "a multiple of 64"),
        ("ring_size", found["ring_size"] == RING_HEADER_SIZE + ns * ss,
         f"{RING_HEADER_SIZE} + n_slots * slot_size"),
        ("total_size", found["total_size"] == HEADER_SIZE + nr * found["ring_size"] == size,
         f"header + rings = the object's size {size}"),
    )
    for field, ok, expected in rules:
        if not ok:
            raise RegionError(name, field, expected, found[field])
    for r in range(nr):
        rw = (HEADER_SIZE + r * found["ring_size"]) >> 3
        got = tuple(int(x) for x in w[rw:rw + 5])
        if got != (r, r % 2, 1 - r % 2, ns, ss):
            raise RegionError(name, f"ring {r} header", str((r, r % 2, 1 - r % 2, ns, ss)), got)


def list_regions(prefix: str = NAME_PREFIX) -> list[str]:
    """Names of the shared-memory objects in ``/dev/shm`` starting with ``prefix``.

    >>> with Region.create(n_rings=1, n_slots=1, slot_size=64) as r:
    ...     r.name in list_regions()
    True
    """
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:
        return []


def sweep_stale_regions(prefix: str = NAME_PREFIX) -> list[str]:
    """Unlink this user's regions whose creator process is gone (e.g. after a SIGKILL).

    Only objects with the qecd magic, owned by this user, and whose ``creator_pid`` is not a
    live process are removed; processes that still map them keep their mapping.

    Parameters
    ----------
    prefix : str
        Only names starting with this are considered.

    Returns
    -------
    list of str
        The names removed.

    Examples
    --------
    >>> with RingPair.create(n_slots=2, slot_size=64) as p:  # its creator (us) is alive
    ...     sweep_stale_regions(prefix=p.name)
    []
    """
    removed = []
    for name in list_regions(prefix):
        try:
            fd = os.open(f"/dev/shm/{name}", os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            head = os.pread(fd, 48, 0) if st.st_uid == os.geteuid() else b""
        finally:
            os.close(fd)
        if len(head) < 48 or int.from_bytes(head[:8], "little") != MAGIC:
            continue
        if not _pid_alive(int.from_bytes(head[40:48], "little")):
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink("/" + name)
                removed.append(name)
    return removed


# -- ring ends ------------------------------------------------------------------------------


class _RingEnd:
    """What both ends of one ring share: geometry, offsets, peer liveness."""

    _role = ""

    def __init__(self, region: Region, ring: int, *, yield_after_ns: int) -> None:
        self.region = region
        self.ring = ring
        self.offset = region.ring_offset(ring)
        self.n_slots = region.n_slots
        self.slot_size = region.slot_size
        self.max_payload = region.max_payload
        self.yield_after_ns = int(yield_after_ns)
        self.side = ring % 2 if self._role == "sender" else 1 - ring % 2
        self.peer_side = 1 - self.side
        self._scratch = np.zeros(self.max_payload, dtype=np.uint8)

    def peer_alive(self, max_heartbeat_age: float | None = None) -> bool:
        """Whether the other end is attached by a live process (see :meth:`Region.side_alive`)."""
        return self.region.side_alive(self.peer_side, max_heartbeat_age)

    def pending(self) -> int:
        """Messages published and not yet consumed (a snapshot)."""
        return int(ring_pending(self.region.words, self.offset))

    def _after_timeout(self) -> int:
        info = self.region.side_info(self.peer_side)
        if info.state == STATE_DETACHED or (info.state == STATE_ATTACHED and not info.pid_alive):
            return PEER_DEAD
        return TIMEOUT

    def _bad_array(self, what: str, arr: object) -> Exception:
        if self.region.closed:
            return RegionError(self.region.name, "state", "an open region", "closed")
        got = (f"{arr.dtype} {arr.ndim}-d, C-contiguous={arr.flags.c_contiguous}, "
               f"writeable={arr.flags.writeable}" if isinstance(arr, np.ndarray)
               else type(arr).__name__)
        return TypeError(f"{what}: expected a writeable C-contiguous 1-d uint8 array, got {got}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.region.name!r}, ring={self.ring}, "
                f"side={self.side})")


class RingSender(_RingEnd):
    """The producer end of one ring; one thread at a time may use it.

    Methods returning ``int`` return :class:`RingStatus` values; ``send_bytes`` raises.
    """

    _role = "sender"

    def try_send(self, payload: np.ndarray, length: int | None = None) -> int:
        """Publish ``payload[:length]`` if a slot is free: ``OK``, ``FULL`` or ``TOO_LARGE``.

        Parameters
        ----------
        payload : numpy.ndarray
            ``uint8`` C-contiguous writeable 1-d array.
        length : int, optional
            Default ``len(payload)``.

        Examples
        --------
        >>> with RingPair.create(n_slots=1, slot_size=64) as p:
        ...     m = np.frombuffer(b"abc", dtype=np.uint8).copy()
        ...     p.tx.try_send(m), p.tx.try_send(m), p.tx.try_send(m, 49)
        (0, -1, -5)
        """
        r = self.region
        try:
            return ring_try_send(r.words, r.buf, self.offset, self.n_slots, self.slot_size,
                                 payload, len(payload) if length is None else length)
        except TypeError:
            raise self._bad_array("try_send payload", payload) from None

    def send(self, payload: np.ndarray, length: int | None = None, *,
             timeout: float = 1.0) -> int:
        """Publish, waiting up to ``timeout`` seconds for a free slot.

        Returns
        -------
        int
            ``OK``, ``TOO_LARGE``, ``TIMEOUT`` (peer alive or never attached) or
            ``PEER_DEAD`` (the consumer's process is gone or it detached).

        Examples
        --------
        >>> with RingPair.create(n_slots=1, slot_size=64) as p:
        ...     m = np.zeros(4, dtype=np.uint8)
        ...     p.tx.send(m, timeout=0.01), p.tx.send(m, timeout=0.001)  # nobody consumes
        (0, -3)
        """
        r = self.region
        try:
            st = ring_send(r.words, r.buf, self.offset, self.n_slots, self.slot_size, payload,
                           len(payload) if length is None else length, int(timeout * 1e9),
                           self.yield_after_ns)
        except TypeError:
            raise self._bad_array("send payload", payload) from None
        return self._after_timeout() if st == TIMEOUT else st

    def send_bytes(self, data: bytes, *, timeout: float = 1.0) -> None:
        """Send ``data`` (any bytes-like); raises :class:`RingError` unless sent.

        >>> with RingPair.create(n_slots=1, slot_size=64) as p:
        ...     p.send_bytes(b"a" * 49)
        Traceback (most recent call last):
        ...
        qecd.transport.shm.ring.RingError: [TOO_LARGE] send of 49 bytes (max payload 48)
        """
        n = len(data)
        if n > self.max_payload:
            raise RingError(TOO_LARGE, f"send of {n} bytes (max payload {self.max_payload})")
        self._scratch[:n] = np.frombuffer(data, dtype=np.uint8)
        st = self.send(self._scratch, n, timeout=timeout)
        if st != OK:
            raise RingError(st, f"send of {n} bytes on ring {self.ring} of {self.region.name}")


class RingReceiver(_RingEnd):
    """The consumer end of one ring; one thread at a time may use it.

    Methods returning ``int`` return a length ``>= 0`` or a :class:`RingStatus` value.
    """

    _role = "receiver"

    def try_recv(self, out: np.ndarray) -> int:
        """Take the next message into ``out``: its length, ``EMPTY``, ``BUFFER_TOO_SMALL``
        or ``CORRUPT``.

        Parameters
        ----------
        out : numpy.ndarray
            ``uint8`` C-contiguous writeable 1-d array; ``out[:length]`` is written.

        Examples
        --------
        >>> with RingPair.create(n_slots=2, slot_size=64) as c, RingPair.attach(c.name) as s:
        ...     out = np.zeros(48, dtype=np.uint8)
        ...     c.send_bytes(b"hi")
        ...     s.rx.try_recv(out), bytes(out[:2]), s.rx.try_recv(out)
        (2, b'hi', -2)
        """
        r = self.region
        try:
            return ring_try_recv(r.words, r.buf, self.offset, self.n_slots, self.slot_size, out)
        except TypeError:
            raise self._bad_array("try_recv out", out) from None

    def recv(self, out: np.ndarray, *, timeout: float = 1.0) -> int:
        """Take the next message, waiting up to ``timeout`` seconds.

        Returns
        -------
        int
            The length, or ``TIMEOUT``, ``PEER_DEAD`` (producer gone and nothing left),
            ``BUFFER_TOO_SMALL`` or ``CORRUPT``.

        Examples
        --------
        >>> with RingPair.create(n_slots=2, slot_size=64) as c, RingPair.attach(c.name) as s:
        ...     out = np.zeros(48, dtype=np.uint8)
        ...     s.send_bytes(b"reply")
        ...     c.rx.recv(out, timeout=0.1), c.rx.recv(out, timeout=0.001)
        (5, -3)
        """
        r = self.region
        try:
            got = ring_recv(r.words, r.buf, self.offset, self.n_slots, self.slot_size, out,
                            int(timeout * 1e9), self.yield_after_ns)
        except TypeError:
            raise self._bad_array("recv out", out) from None
        return self._after_timeout() if got == TIMEOUT else got

    def recv_bytes(self, *, timeout: float = 1.0) -> bytes:
        """The next message as ``bytes``; raises :class:`RingError` on any status.

        >>> with RingPair.create(n_slots=1, slot_size=64) as p:
        ...     p.recv_bytes(timeout=0.001)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qecd.transport.shm.ring.RingError: [TIMEOUT] recv on ring 1 of qecd-...
        """
        got = self.recv(self._scratch, timeout=timeout)
        if got < 0:
            raise RingError(got, f"recv on ring {self.ring} of {self.region.name}")
        return self._scratch[:got].tobytes()


# -- ring pair ------------------------------------------------------------------------------

_SIDES = {"client": 0, "server": 1}


class RingPair:
    """A region with two rings: client->server requests (ring 0), server->client replies (1).

    The creator picks the geometry and its side; :meth:`attach` maps it by name from another
    process and takes the other side. :attr:`tx` and :attr:`rx` are this side's
    :class:`RingSender` and :class:`RingReceiver`.

    Examples
    --------
    >>> with RingPair.create(n_slots=4, slot_size=128, side="server") as srv:
    ...     with RingPair.attach(srv.name) as cli:   # takes the free side, "client"
    ...         cli.side, cli.tx.ring, cli.rx.ring, cli.peer_alive()
    ('client', 0, 1, True)
    """

    def __init__(self, region: Region, side: str, *,
                 yield_after_ns: int = DEFAULT_YIELD_AFTER_NS) -> None:
        if side not in _SIDES:
            raise RegionError(region.name, "side", "'client' or 'server'", side)
        self.region = region
        self.side = side
        s = _SIDES[side]
        self.tx = region.sender(s, yield_after_ns=yield_after_ns)
        self.rx = region.receiver(1 - s, yield_after_ns=yield_after_ns)

    @classmethod
    def create(cls, n_slots: int = 64, slot_size: int = 128, *, side: str = "client",
               name: str | None = None,
               yield_after_ns: int = DEFAULT_YIELD_AFTER_NS) -> RingPair:
        """Create the region (mode 0o600) and claim ``side``.

        Parameters
        ----------
        n_slots : int
            Slots per direction, a power of two.
        slot_size : int
            Bytes per slot, a multiple of 64 (payload ``slot_size - 16``).
        side : {"client", "server"}
            The side this process takes.
        name : str, optional
            ``qecd-...``; default unique.
        yield_after_ns : int
            Waits ``sched_yield`` after this long; ``-1`` never (an isolated CPU).

        Examples
        --------
        >>> with RingPair.create(n_slots=16, slot_size=128) as p:
        ...     p.side, p.tx.ring, p.rx.ring, p.tx.max_payload, p.peer_alive()
        ('client', 0, 1, 112, False)
        """
        if side not in _SIDES:
            raise RegionError(str(name), "side", "'client' or 'server'", side)
        region = Region.create(2, n_slots, slot_size, name=name)
        try:
            region.claim(_SIDES[side])
        except BaseException:
            region.close()
            region.unlink()
            raise
        return cls(region, side, yield_after_ns=yield_after_ns)

    @classmethod
    def attach(cls, name: str, *, side: str | None = None, n_slots: int | None = None,
               slot_size: int | None = None, force: bool = False,
               yield_after_ns: int = DEFAULT_YIELD_AFTER_NS) -> RingPair:
        """Attach by name, validate the header and claim ``side`` (default: the free one).

        Raises
        ------
        RegionError
            Bad magic, version or geometry (see :meth:`Region.attach`), or the side is held
            by a live process.
        """
        region = Region.attach(name, n_rings=2, n_slots=n_slots, slot_size=slot_size)
        try:
            if side is None:
                side = "server" if region.side_info(0).alive else "client"
            if side not in _SIDES:
                raise RegionError(name, "side", "'client' or 'server'", side)
            region.claim(_SIDES[side], force=force)
        except BaseException:
            region.close()
            raise
        return cls(region, side, yield_after_ns=yield_after_ns)

    @property
    def name(self) -> str:
        """The region's name (what the other process attaches to)."""
        return self.region.name

    def kernel_args(self) -> RingArgs:
        """``RingArgs(words, buf, tx_off, rx_off, n_slots, slot_size)`` for Numba loops.

        Examples
        --------
        >>> with RingPair.create(n_slots=4, slot_size=64, side="server") as p:
        ...     w, b, tx, rx, n, s = p.kernel_args()
        ...     w.dtype, b.dtype, tx == p.region.ring_offset(1), (n, s)
        (dtype('uint64'), dtype('uint8'), True, (4, 64))
        """
        r = self.region
        return RingArgs(r.words, r.buf, self.tx.offset, self.rx.offset, r.n_slots, r.slot_size)

    def send_bytes(self, data: bytes, *, timeout: float = 1.0) -> None:
        """:meth:`RingSender.send_bytes` on :attr:`tx`."""
        self.tx.send_bytes(data, timeout=timeout)

    def recv_bytes(self, *, timeout: float = 1.0) -> bytes:
        """:meth:`RingReceiver.recv_bytes` on :attr:`rx`."""
        return self.rx.recv_bytes(timeout=timeout)

    def peer_alive(self, max_heartbeat_age: float | None = None) -> bool:
        """Whether the other side is attached by a live process."""
        return self.region.side_alive(1 - _SIDES[self.side], max_heartbeat_age)

    def beat(self) -> None:
        """Bump this side's heartbeat."""
        self.region.beat(_SIDES[self.side])

    def close(self) -> None:
        """Detach this side and unmap (the creator's name stays until :meth:`unlink`)."""
        self.region.close()

    def unlink(self) -> None:
        """Remove the name (creator only)."""
        self.region.unlink()

    def __enter__(self) -> RingPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.region.__exit__(*exc)

    def __repr__(self) -> str:
        return f"RingPair({self.name!r}, side={self.side!r}, n_slots={self.region.n_slots}, " \
               f"slot_size={self.region.slot_size})"
