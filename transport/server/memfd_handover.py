"""Megabytes between the server and its build worker in one system call, not a pipe's worth.

A large HELLO (5-8 MB of DEM text) goes to the build worker and its plan (12-18 MB of
arrays) comes back. Streamed through the worker's pipe, each took hundreds of 64 KB writes
and reads, and on the server's side every one of them took the GIL back to run the read
loop: heartbeats of a live stream waited 2-6 ms in the ~20 ms before each plan arrived
(docs/deploy.md, "Builds beside live streams, by CPU"). Here the sender writes the parts
into an anonymous memory file (``memfd_create``), back to back at 64-byte offsets, seals its
size and passes its descriptor over the worker's socket (``SCM_RIGHTS``). The receiver maps
the file (``MAP_SHARED | MAP_POPULATE``, through libc so the GIL is released and no
descriptor is kept) and closes the descriptor: nothing is copied on its side. A copy
(``preadv`` of an 18 MB plan into fresh memory) kept the build thread on its CPU for ~7 ms
of kernel time, and the loop, woken onto that CPU, waited for the rest of the thread's time
slice while the other CPU stood idle. The mapping is unmapped (the GIL released again) when
the last array using it is freed. No name exists anywhere, and a process that dies leaves
nothing behind.

Example
-------
>>> import multiprocessing
>>> a, b = multiprocessing.Pipe()
>>> send_parts(a, [b"header", np.arange(3, dtype=np.int64)])
[6, 24]
>>> parts = recv_parts(b, [6, 24])
>>> bytes(parts[0]), parts[1].view(np.int64).tolist()
(b'header', [0, 1, 2])
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import weakref
from collections.abc import Sequence
from multiprocessing.reduction import recv_handle, send_handle

import numpy as np

__all__ = ["send_parts", "recv_parts", "ALIGN"]

#: offset alignment of each part in the file (numpy's and cache lines')
ALIGN = 64


def _offsets(sizes: Sequence[int]) -> tuple[list[int], int]:
    offs, at = [], 0
    for n in sizes:
        offs.append(at)
        at += -(-int(n) // ALIGN) * ALIGN
    return offs, at


def send_parts(conn, parts: Sequence) -> list[int]:
    """Write ``parts`` (bytes-like objects) into a fresh memory file and send its descriptor
    over ``conn`` (a :func:`multiprocessing.Pipe` end: a Unix socket); returns the parts'
    sizes in bytes, which the receiver passes to :func:`recv_parts`. Every write releases
    the GIL."""
    views = [memoryview(p).cast("B") for p in parts]
    offs, total = _offsets([v.nbytes for v in views])
    fd = os.memfd_create("qecd-handover", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, total)
        for v, off in zip(views, offs, strict=True):
            done = 0
            while done < v.nbytes:
                done += os.pwrite(fd, v[done:], off + done)
        # its size is final: the receiver's mapping can never fault past the end (SIGBUS)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        send_handle(conn, fd, 0)  # the pid is used on Windows only
    finally:
        os.close(fd)
    return [v.nbytes for v in views]


class _Mapping:
    """Owner of a shared mapping of a memory file, unmapped once nothing refers to it.
    NumPy reads it through ``__array_interface__`` (writable), so an array's ``base`` is
    this object and nothing refers back: no cycle, and no ctypes array type per size (types
    are cyclic garbage, which the server's collector would keep; see
    :class:`~qecd.transport.server.libzmq_native.MessageBytes`)."""

    __slots__ = ("__weakref__", "__array_interface__")

    def __init__(self, fd: int, size: int) -> None:
        size = max(int(size), 1)
        addr = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_SHARED | _MAP_POPULATE, fd, 0)
        if addr in (None, _MAP_FAILED):
            err = ctypes.get_errno()
            raise OSError(err, f"handover: mmap of {size} bytes: {os.strerror(err)}")
        fin = weakref.finalize(self, _libc.munmap, addr, size)  # a libc call: no GIL held
        fin.atexit = False  # an array may outlive the interpreter's last collection
        self.__array_interface__ = {"data": (addr, False), "shape": (size,),
                                    "typestr": "|u1", "version": 3}


def recv_parts(conn, sizes: Sequence[int]) -> list[np.ndarray]:
    """Receive the descriptor :func:`send_parts` sent over ``conn`` and return its parts of
    ``sizes`` bytes as writable uint8 arrays over one shared mapping of the file (populated
    in the kernel, with the GIL released; the descriptor is closed at once). The mapping is
    unmapped when the last of them is freed. Raises EOFError when the file is shorter than
    ``sizes`` say, ValueError when its size is not sealed (it could shrink under the
    mapping, and a read past its end would kill the process with SIGBUS)."""
    fd = recv_handle(conn)
    try:
        offs, total = _offsets(sizes)
        have = os.fstat(fd).st_size
        if have < total:
            raise EOFError(f"handover: expected {total} bytes, the file holds {have}")
        if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _SEALS != _SEALS:
            raise ValueError("handover: the file may still change size (not sealed)")
        buf = np.asarray(_Mapping(fd, total))
    finally:
        os.close(fd)
    return [buf[off:off + int(n)] for off, n in zip(offs, sizes, strict=True)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
