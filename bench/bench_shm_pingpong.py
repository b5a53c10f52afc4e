"""Round trip of 64-byte messages over a shared-memory :class:`~qecd.transport.shm.ring.RingPair`.

Two processes (``multiprocessing`` spawn): this one is the client, a child is an echo server
whose loop runs inside Numba (:func:`qecd.transport.shm.ring.ring_recv` then ``ring_send``,
busy-polling). Two client modes over the same server:

``numba``
    the client's loop is one jitted function: stamp ``CLOCK_MONOTONIC``, ``ring_send``,
    ``ring_recv``, stamp; the figure is the transport's floor.
``python``
    a Python ``for`` loop calls the jitted ``ring_send`` and ``ring_recv`` once per message and
    stamps with :func:`time.perf_counter_ns`; the figure adds Numba's dispatch cost (~0.3-0.5
    us per call of 7-9 arguments on this machine) and is what a Python client pays.

Each reply is checked: its first 8 bytes carry the message number. When two CPUs are in this
process's affinity set the client is pinned to the first and the server to the second (the
JSON says so); otherwise nothing is pinned and the waits ``sched_yield`` after 50 us so the
two processes can share one CPU.

Run::

    .venv/bin/python -m qecd.bench.bench_shm_pingpong --round_trips 200000

and compare with the floors of ``/work/shared/design.md`` (printed beside the results as
``floor_us`` and ``ratio_to_floor``).
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import sys
import time

import numpy as np
from numba import njit

from qecd import _jit  # noqa: E402
from qecd.transport.shm import atomics as _atomics  # noqa: E402
from qecd.transport.shm import ring as shm_ring
from qecd.transport.shm.atomics import clock_cost_ns, monotonic_ns
from qecd.transport.shm.ring import (
    CORRUPT,
    DEFAULT_YIELD_AFTER_NS,
    OK,
    TIMEOUT,
    RingPair,
    ring_recv,
    ring_send,
    slot_size_for,
)

_jit.invalidate_if_changed(__file__, [_atomics.__file__, shm_ring.__file__], __name__)

MESSAGE_BYTES = 64
FLOORS_US = {  # /work/shared/design.md, "Floors measured on this machine"
    "numba": {"p50_us": 0.13, "p99_us": 0.23, "p99_9_us": 0.34},
    "python": {"p50_us": 0.96, "p99_us": 1.6},
}


# Not cache=True: Numba's cache keys a function on its own file only, and a cached caller
# embeds its own copy of the ring kernels it calls, so after a change to shm_ring.py a cached
# bench would keep measuring the old kernels. Compiling costs ~1 s per process.
@njit(nogil=True)
def _echo_kernel(words, buf, rx_off, tx_off, n_slots, slot_size, scratch, timeout_ns,
                 yield_after_ns):
    """Echo messages until a zero-length one (returns OK) or a failed wait (its status)."""
    while True:
        got = ring_recv(words, buf, rx_off, n_slots, slot_size, scratch, timeout_ns,
                        yield_after_ns)
        if got == 0:
            return OK
        if got < 0:
            return got
        st = ring_send(words, buf, tx_off, n_slots, slot_size, scratch, got, timeout_ns,
                       yield_after_ns)
        if st != OK:
            return st


@njit(nogil=True)
def _client_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, msg, out, lat, first,
                   timeout_ns, yield_after_ns):
    """``lat.size`` round trips of ``msg``; lat[i] in ns. Returns OK or the failing status."""
    length = msg.shape[0]
    for i in range(lat.shape[0]):
        k = first + i
        for b in range(8):
            msg[b] = (k >> (8 * b)) & 0xFF
        t0 = monotonic_ns()
        st = ring_send(words, buf, tx_off, n_slots, slot_size, msg, length, timeout_ns,
                       yield_after_ns)
        if st != OK:
            return st
        got = ring_recv(words, buf, rx_off, n_slots, slot_size, out, timeout_ns,
                        yield_after_ns)
        t1 = monotonic_ns()
        if got != length:
            return got if got < 0 else CORRUPT
        for b in range(8):
            if out[b] != msg[b]:
                return CORRUPT
        lat[i] = t1 - t0
    return OK


def _server_main(name: str, cpu: int | None, yield_after_ns: int) -> None:
    """Child process: attach as the server and echo until told to stop or the client dies."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    with RingPair.attach(name, side="server") as pair:
        words, buf, tx, rx, n, s = pair.kernel_args()
        scratch = np.zeros(pair.region.max_payload, dtype=np.uint8)
        gc.disable()
        while True:
            st = _echo_kernel(words, buf, rx, tx, n, s, scratch, 1_000_000_000, yield_after_ns)
            if st == TIMEOUT and pair.peer_alive():
                continue
            break
        del words, buf


def _summary(lat_ns: np.ndarray) -> dict:
    q = np.percentile(lat_ns, [50, 99, 99.9])
    return {
        "p50_us": round(q[0] / 1e3, 3),
        "p99_us": round(q[1] / 1e3, 3),
        "p99_9_us": round(q[2] / 1e3, 3),
        "max_us": round(float(lat_ns.max()) / 1e3, 3),
        "mean_us": round(float(lat_ns.mean()) / 1e3, 3),
    }


def _python_loop(args: tuple, msg: np.ndarray, out: np.ndarray, n: int, first: int,
                 timeout_ns: int, yield_after_ns: int) -> np.ndarray:
    words, buf, tx, rx, n_slots, slot_size = args
    send, recv, clock = ring_send, ring_recv, time.perf_counter_ns
    length = msg.shape[0]
    stamps = [0] * n
    for i in range(n):
        msg[:8] = np.frombuffer((first + i).to_bytes(8, "little"), dtype=np.uint8)
        t0 = clock()
        st = send(words, buf, tx, n_slots, slot_size, msg, length, timeout_ns, yield_after_ns)
        got = recv(words, buf, rx, n_slots, slot_size, out, timeout_ns, yield_after_ns)
        stamps[i] = clock() - t0
        if st != OK or got != length:
            raise RuntimeError(f"python loop: send status {st}, recv {got} at message {i}")
        if out[:8].tobytes() != msg[:8].tobytes():
            raise RuntimeError(f"python loop: reply {i} does not echo its message number")
    return np.asarray(stamps, dtype=np.int64)


def run_pingpong(round_trips: int = 200_000, warmup: int = 20_000,
                 modes: tuple[str, ...] = ("numba", "python"), pin: bool = True,
                 n_slots: int = 64) -> dict:
    """Run the ping-pong and return the JSON-ready report (see the module docstring).

    Parameters
    ----------
    round_trips : int
        Timed round trips per mode.
    warmup : int
        Untimed round trips before each mode.
    modes : tuple of str
        ``"numba"`` and/or ``"python"``.
    pin : bool
        Pin client and server to their own CPUs when two are available.
    n_slots : int
        Slots per direction.
    """
    cpus = sorted(os.sched_getaffinity(0))
    pinned = pin and len(cpus) >= 2
    client_cpu, server_cpu = (cpus[0], cpus[1]) if pinned else (None, None)
    yield_after_ns = -1 if pinned else DEFAULT_YIELD_AFTER_NS
    slot_size = slot_size_for(MESSAGE_BYTES)
    timeout_ns = 30_000_000_000  # generous: the first round trips wait for the child's start
    old_affinity = os.sched_getaffinity(0)
    report: dict = {
        "bench": "shm_pingpong",
        "message_bytes": MESSAGE_BYTES,
        "n_slots": n_slots,
        "slot_size": slot_size,
        "round_trips": round_trips,
        "warmup": warmup,
        "pinned": ({"client_cpu": client_cpu, "server_cpu": server_cpu} if pinned
                   else f"nothing pinned (affinity {cpus})"),
        "clock_cost_ns": round(clock_cost_ns(), 1),
    }
    ctx = mp.get_context("spawn")
    with RingPair.create(n_slots=n_slots, slot_size=slot_size, side="client",
                         yield_after_ns=yield_after_ns) as pair:
        child = ctx.Process(target=_server_main, args=(pair.name, server_cpu, yield_after_ns),
                            daemon=True)
        child.start()
        try:
            if pinned:
                os.sched_setaffinity(0, {client_cpu})
            deadline = time.monotonic() + 60
            while not pair.peer_alive():
                if not child.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("echo server did not attach within 60 s")
                time.sleep(0.01)
            args = pair.kernel_args()
            msg = np.zeros(MESSAGE_BYTES, dtype=np.uint8)
            out = np.zeros(pair.region.max_payload, dtype=np.uint8)
            first = 0
            gc.collect()
            gc.freeze()
            gc.disable()
            for mode in modes:
                if mode == "numba":
                    for n in (warmup, round_trips):  # the last pass is kept
                        lat = np.zeros(n, dtype=np.int64)
                        st = _client_kernel(*args, msg, out, lat, first, timeout_ns,
                                            yield_after_ns)
                        if st != OK:
                            raise RuntimeError(f"numba client: status {st}")
                        first += n
                elif mode == "python":
                    for n in (warmup, round_trips):  # the last pass is kept
                        lat = _python_loop(args, msg, out, n, first, timeout_ns,
                                           yield_after_ns)
                        first += n
                else:
                    raise ValueError(f"mode: expected 'numba' or 'python', got {mode!r}")
                summary = _summary(lat)
                floor = FLOORS_US[mode]
                summary["floor_us"] = floor
                summary["ratio_to_floor"] = {k: round(summary[k] / v, 2) for k, v in floor.items()}
                report[mode] = summary
            ring_send(*args[:3], args[4], args[5], msg, 0, 1_000_000_000, -1)  # stop
            del args
        finally:
            gc.enable()
            gc.unfreeze()
            os.sched_setaffinity(0, old_affinity)
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join(5)
    report["server_exitcode"] = child.exitcode
    return report


def command(a) -> int:
    """``qecd bench ring-pingpong``: print the report as JSON; exit 1 if the server failed."""
    modes = ("numba", "python") if a.mode == "both" else (a.mode,)
    report = run_pingpong(a.round_trips, a.warmup, modes, pin=not a.no_pin, n_slots=a.n_slots)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0 if report["server_exitcode"] == 0 else 1

