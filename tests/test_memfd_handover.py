"""The build worker's hand-over of HELLO bodies and plans through a sealed memory file."""

from __future__ import annotations

import fcntl
import gc
import multiprocessing
import os
from multiprocessing.reduction import send_handle

import numpy as np
import pytest

from qecd.transport.server.memfd_handover import ALIGN, recv_parts, send_parts


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum("qecd-handover" in line for line in f)


def test_parts_arrive_mapped_writable_aligned_and_are_unmapped_with_their_last_array():
    a, b = multiprocessing.Pipe()
    try:
        body = np.arange(100_003, dtype=np.int64)
        sizes = send_parts(a, [b"in band", body, memoryview(b"x" * 5)])
        assert sizes == [7, body.nbytes, 5]
        before = _mappings()
        head, arr, tail = recv_parts(b, sizes)
        assert bytes(head) == b"in band" and bytes(tail) == b"xxxxx"
        assert (arr.view(np.int64) == body).all()
        assert all(p.ctypes.data % ALIGN == 0 for p in (head, arr, tail))
        arr.view(np.int64)[0] = -1  # writable: Numba kernels take these arrays as they are
        assert _mappings() == before + 1 and len(os.listdir("/proc/self/fd")) > 0
        gc.disable()  # freed by reference counts alone (the server's collector is off)
        try:
            del head, arr, tail
            assert _mappings() == before
        finally:
            gc.enable()
    finally:
        a.close()
        b.close()


def _send_raw(conn, data: bytes, *, seal: bool) -> None:
    fd = os.memfd_create("qecd-handover", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, data)
        if seal:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        send_handle(conn, fd, 0)
    finally:
        os.close(fd)


def test_a_file_that_could_shrink_or_is_short_is_refused_not_mapped():
    """A mapping of a file that shrinks afterwards kills the reader with SIGBUS at the first
    read past the new end: the receiver refuses a file whose size is not sealed, and one
    shorter than the sizes it was told."""
    a, b = multiprocessing.Pipe()
    try:
        before = _mappings()
        _send_raw(a, b"y" * 4096, seal=False)
        with pytest.raises(ValueError, match="not sealed"):
            recv_parts(b, [4096])
        _send_raw(a, b"y" * 100, seal=True)
        with pytest.raises(EOFError, match="expected 4096 bytes, the file holds 100"):
            recv_parts(b, [4096])
        assert _mappings() == before
        assert len(os.listdir("/proc/self/fd")) < 64  # no descriptor kept
    finally:
        a.close()
        b.close()
