"""Keep libzmq's I/O thread from preempting the thread that decodes.

Measured here (``docs/server.md``, "Where a packet's time goes"): with the server pinned to
one CPU, handing a CORRECTION to ``zmq_send`` cost 28-31 µs at the median, because the send
wakes the context's I/O thread (``ZMQbg/IO/0``) on the same CPU and the scheduler switches to
it at once; the decode thread gets the CPU back only after the I/O thread has written the
message to TCP. With the I/O thread's nice value raised to 19 the same send costs ~3 µs
(the message leaves when the decode thread next waits in ``poll``, microseconds later), and
per-round service p99 fell from 84-123 to ~40 µs on the Python path under load.

:func:`lower_io_threads` raises the nice value of the I/O threads a context started (found by
their thread names among the process's threads that were not there before). Raising one's
own nice value needs no privilege. Linux only; elsewhere it does nothing.

Example
-------
>>> import zmq
>>> before = thread_ids()
>>> ctx = zmq.Context(); sock = ctx.socket(zmq.ROUTER)
>>> [os.getpriority(os.PRIO_PROCESS, t) for t in lower_io_threads(before, 19)]
[19]
>>> sock.close(); ctx.term()
"""

from __future__ import annotations

import os
import time

__all__ = ["lower_io_threads", "thread_ids"]

_TASKS = "/proc/self/task"


def thread_ids() -> set[int]:
    """The ids of this process's threads now (empty where ``/proc`` is missing)."""
    try:
        return {int(t) for t in os.listdir(_TASKS)}
    except OSError:
        return set()


def _name(tid: int) -> str:
    try:
        with open(f"{_TASKS}/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def lower_io_threads(before: set[int], nice: int, *, wait_s: float = 0.5) -> list[int]:
    """Set nice value ``nice`` on the libzmq I/O threads (``ZMQbg/IO/*``) started since
    ``before`` (:func:`thread_ids`). A new thread names itself shortly after it starts, so
    unnamed new threads are waited for up to ``wait_s``. Returns the threads changed."""
    deadline = time.monotonic() + wait_s
    while True:
        new = thread_ids() - before
        names = {t: _name(t) for t in new}
        io = [t for t, n in names.items() if n.startswith("ZMQbg/IO")]
        if io or time.monotonic() > deadline or not new:
            break
        time.sleep(0.005)
    done = []
    for tid in io:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done.append(tid)
        except OSError:
            pass
    return done
