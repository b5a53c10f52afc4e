"""A compiled ZeroMQ echo ROUTER: the bare DEALER/ROUTER round trip's far end.

The reaction time over ZeroMQ is judged beside the bare round trip of the same run, and the
two must cross the same code: the compiled emulator (:mod:`qecd.bench.native_emulator`) sends
and receives through libzmq from Numba, and the server's fast path
(:mod:`qecd.transport.server.fast_path`) waits in ``zmq_poll``, takes the routing id and the
frame with ``ZMQ_DONTWAIT`` and answers with ``zmq_send(route, SNDMORE)`` +
``zmq_send(frame)``. :func:`echo` does exactly that with no decode in between, so
"reaction minus bare round trip" is what the service adds.

:class:`EchoRouter` runs it in a child process (optionally pinned to a CPU, e.g. the
server's) bound to loopback, until an empty frame arrives or the context exits.

Example
-------
>>> import zmq
>>> with EchoRouter("tcp://127.0.0.1:0") as ep:
...     ctx = zmq.Context.instance(); s = ctx.socket(zmq.DEALER); _ = s.connect(ep)
...     s.send(b"hello"); ok = s.poll(10_000); echoed = s.recv(); s.close(0)
>>> echoed
b'hello'
"""

from __future__ import annotations

import os

import numba
import numpy as np

from qecd import _jit
from qecd.transport.server import libzmq_native as _native
from qecd.transport.shm import atomics as _atomics

_jit.invalidate_if_changed(__file__, [_native.__file__, _atomics.__file__], __name__)

from qecd.transport.server.libzmq_native import (  # noqa: E402,I001
    DONTWAIT, POLLIN, POLLITEM, SNDMORE, zmq_errno, zmq_poll, zmq_rcvmore, zmq_recv, zmq_send)
from qecd.transport.shm.atomics import monotonic_ns  # noqa: E402

__all__ = ["EchoRouter", "echo", "NO_REPLY_AT", "NO_REPLY_BIT"]

_EINTR = 4
#: a frame whose byte NO_REPLY_AT has NO_REPLY_BIT set is taken and not echoed (the high byte
#: of the header's flags field, which no HEARTBEAT sets): the paced floor of
#: :func:`qecd.bench.native_emulator.paced_echoes` answers only as often as the stream's
#: server sends CORRECTIONs
NO_REPLY_AT, NO_REPLY_BIT = 5, 0x80


@numba.njit(**_jit.KERNEL)
def echo(sock, route_buf, frame_buf, items, idle_ns):
    """Echo every (routing id, frame) on ROUTER ``sock`` back to its sender (but frames
    marked :data:`NO_REPLY_BIT`, taken silently) until an empty frame arrives or nothing
    arrived for ``idle_ns``; returns the number taken, or ``-errno`` when libzmq failed."""
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
        if n > NO_REPLY_AT and frame_buf[NO_REPLY_AT] & NO_REPLY_BIT:
            served += 1  # taken, not answered (a paced stream answers only some packets)
            continue
        if zmq_send(sock, route_buf.ctypes.data, rl, SNDMORE | DONTWAIT) >= 0:
            zmq_send(sock, frame_buf.ctypes.data, n, DONTWAIT)
            served += 1


def _serve(bind: str, cpu: int | None, idle_s: float) -> None:
    """The child process: bind, say the endpoint on stdout, echo until stopped."""
    import sys

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
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    served = echo(sock.underlying, route, frame, items, int(idle_s * 1e9))
    print(served, flush=True)
    sock.close(0)
    ctx.term()
    sys.exit(0 if served >= 0 else 1)


class EchoRouter:
    """``with EchoRouter(bind, cpu=None) as endpoint``: :func:`echo` in a child process (a
    plain subprocess, so daemonic callers may use it too) bound to ``bind``
    (``tcp://127.0.0.1:0`` picks a port; ``ipc://path``), pinned to ``cpu`` when given;
    stopped by an empty frame on exit (killed if it does not stop). ``served`` is then the
    number of frames it echoed."""

    def __init__(self, bind: str, *, cpu: int | None = None, idle_s: float = 120.0,
                 remove_dir: str | None = None) -> None:
        self.bind, self.cpu, self.idle_s = bind, cpu, idle_s
        self.remove_dir = remove_dir  #: a directory (of an ipc socket) removed on close
        self.endpoint: str | None = None
        self.served: int | None = None

        self._proc = None

    def start(self) -> EchoRouter:
        """Start the child process (returns at once: it starts while the caller works)."""
        import subprocess
        import sys

        code = (f"from qecd.bench.zmq_echo import _serve; _serve({self.bind!r}, {self.cpu!r}, "
                f"{float(self.idle_s)!r})")
        self._proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        return self

    def wait_ready(self) -> str:
        """Wait until it is bound and its kernel compiled; returns the endpoint."""
        if self.endpoint is None:
            line = self._proc.stdout.readline().strip()
            if not line:
                self._proc.kill()
                err = self._proc.communicate(timeout=10)[1]
                raise RuntimeError(f"echo ROUTER did not start:\n{err}")
            self.endpoint = line
        return self.endpoint

    def __enter__(self) -> str:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop it (an empty frame; killed when it does not stop within 10 s). Idempotent."""
        import subprocess

        import zmq

        if self.remove_dir is not None:
            import shutil

            shutil.rmtree(self.remove_dir, ignore_errors=True)
        if self._proc is None or self._proc.returncode is not None:
            return
        if self.endpoint is None:
            self._proc.kill()
            self._proc.communicate(timeout=10)
            return
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 1000)
        s.connect(self.endpoint)
        s.send(b"")
        try:
            out, _ = self._proc.communicate(timeout=10)
            self.served = int(out.strip()) if out.strip() else None
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate(timeout=10)
        finally:
            s.close(1000)
