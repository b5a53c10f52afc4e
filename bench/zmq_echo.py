"""A compiled ZeroMQ echo ROUTER: the bare DEALER/ROUTER round trip's far end.

The reaction time over ZeroMQ is judged beside the bare round trip of the same run, and the
two must cross the same code: the compiled emulator (:mod:`qecd.bench.native_emulator`) sends
and receives through libzmq from Numba, and the server's fast path
(:mod:`qecd.transport.server.fast_path`) waits in ``zmq_poll``, takes the routing id and the
frame with ``ZMQ_DONTWAIT`` and answers with ``zmq_send(route, SNDMORE)`` +
``zmq_send(frame)``. :func:`echo` does exactly that with no decode in between, so
"reaction minus bare round trip" is what the service adds.

:class:`EchoRouter` runs it in a child process (spawned, optionally pinned to a CPU, e.g. the
server's) bound to loopback, until an empty frame arrives or the context exits.

Example
-------
>>> import zmq
>>> with EchoRouter("tcp://127.0.0.1:0") as ep:
...     ctx = zmq.Context.instance(); s = ctx.socket(zmq.DEALER); s.connect(ep)
...     s.send(b"hello"); ok = s.poll(10_000); echoed = s.recv(); s.close(0)
>>> echoed
b'hello'
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback

import numba
import numpy as np

from qecd import _jit
from qecd.transport.server import libzmq_native as _native
from qecd.transport.shm import atomics as _atomics

_jit.invalidate_if_changed(__file__, [_native.__file__, _atomics.__file__], __name__)

from qecd.transport.server.libzmq_native import (  # noqa: E402
    DONTWAIT, POLLIN, POLLITEM, SNDMORE, zmq_errno, zmq_poll, zmq_rcvmore, zmq_recv, zmq_send)
from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402

__all__ = ["EchoRouter", "echo"]

_EINTR = 4


@numba.njit(**_jit.KERNEL)
def echo(sock, route_buf, frame_buf, items, idle_ns):
    """Echo every (routing id, frame) on ROUTER ``sock`` back to its sender until an empty
    frame arrives or nothing arrived for ``idle_ns``; returns the number echoed, or ``-errno``
    when libzmq failed."""
    served = 0
    last = monotonic_ns()
    while True:
        rl = zmq_recv(sock, route_buf.ctypes.data, route_buf.shape[0], DONTWAIT)
        if rl < 0:
            now = monotonic_ns()
            if now - last > idle_ns:
                return served
            items[0].revents = 0
            if zmq_poll(items.ctypes.data, 1, 100) < 0 and zmq_errno() != _EINTR:
                return -zmq_errno()
            continue
        if zmq_rcvmore(sock) != 1:
            continue
        fl = zmq_recv(sock, frame_buf.ctypes.data, frame_buf.shape[0], DONTWAIT)
        if fl < 0:
            return -zmq_errno()
        last = monotonic_ns()
        if fl == 0:
            return served
        n = min(fl, frame_buf.shape[0])
        if zmq_send(sock, route_buf.ctypes.data, rl, SNDMORE | DONTWAIT) >= 0:
            zmq_send(sock, frame_buf.ctypes.data, n, DONTWAIT)
            served += 1


def _echo_proc(bind: str, cpu: int | None, idle_s: float, conn) -> None:
    try:
        import zmq

        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.bind(bind)
        items = np.zeros(1, POLLITEM)
        items[0]["socket"] = sock.underlying
        items[0]["events"] = POLLIN
        route, frame = np.zeros(256, np.uint8), np.zeros(1 << 16, np.uint8)
        echo(sock.underlying, route, frame, items, 1)  # compiled (or loaded) before "ready"
        conn.send(("ready", sock.getsockopt_string(zmq.LAST_ENDPOINT)))
        served = echo(sock.underlying, route, frame, items, int(idle_s * 1e9))
        conn.send(("done", int(served)))
        sock.close(0)
        ctx.term()
    except Exception:
        conn.send(("error", traceback.format_exc()))


class EchoRouter:
    """``with EchoRouter(bind, cpu=None) as endpoint``: :func:`echo` in a spawned process bound
    to ``bind`` (``tcp://127.0.0.1:0`` picks a port; ``ipc://path``), pinned to ``cpu`` when
    given; stopped by an empty frame on exit (killed if it does not stop)."""

    def __init__(self, bind: str, *, cpu: int | None = None, idle_s: float = 120.0) -> None:
        self.bind, self.cpu, self.idle_s = bind, cpu, idle_s
        self.endpoint: str | None = None
        self.served: int | None = None

    def __enter__(self) -> str:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_echo_proc, args=(self.bind, self.cpu, self.idle_s,
                                                          child), daemon=True)
        self._proc.start()
        if not self._conn.poll(120):
            self._proc.kill()
            raise TimeoutError("echo ROUTER did not start within 120 s")
        msg = self._conn.recv()
        if msg[0] != "ready":
            self._proc.join(5)
            raise RuntimeError(f"echo ROUTER failed:\n{msg[1]}")
        self.endpoint = msg[1]
        return self.endpoint

    def __exit__(self, *exc: object) -> None:
        import zmq

        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.connect(self.endpoint)
        s.send(b"")
        if self._conn.poll(10):
            msg = self._conn.recv()
            self.served = msg[1] if msg[0] == "done" else None
        s.close(0)
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
