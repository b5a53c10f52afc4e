"""Decoder plans built in a separate process, within a time and a size budget.

A plan build (DEM parse, fault table, window graphs, compiled kernels) is seconds of Python
and of C++ that holds the GIL (stim's parser, PyMatching's graph construction: 0.8 s for an
8.8 MB DEM here). The server's loop must not wait for it, so builds run in a *build worker*:
one child process, started from the ``forkserver`` (whose preload imports qecd and warms
every kernel once, :mod:`qecd.transport.server._build_preload`), fed one request at a time
over a socket pair. For each request it decodes the HELLO when the server handed it the raw
bytes (large HELLOs are never unpacked on the loop), computes its :class:`PlanKey` (hashing
the DEM text), asks the server whether the plan is cached, builds it, and sends it back
pickled: numpy arrays, texts and graph edge lists. The raw HELLO and the plan's bytes
cross in a memory file whose descriptor is passed over the socket
(:mod:`~qecd.transport.server.memfd_handover`): one write and one read of the whole, with
the GIL released, where a pipe took hundreds of 64 KB turns of the GIL. The arrays travel
out of band (pickle protocol 5): they are read straight into the memory the plan then uses,
so the unpickler on the server's build thread copies none of them. What
remains there is rebuilding native objects from those arrays (PyMatching's graph edge by
edge, short calls that let the loop have the GIL; see ``docs/server.md`` for each
backend's share).

Budgets, each refused with BAD_HELLO naming the budget:

- time: a build still running after ``time_budget_s`` is stopped by killing the worker,
  which is replaced (:attr:`BuildWorker.restarts`);
- size: a plan whose pickled size exceeds ``max_plan_bytes`` is dropped in the worker and
  never crosses to the server;
- the worker's own memory: after a build that left it above ``max_worker_rss`` bytes it is
  replaced, so a hostile build's heap does not linger.

Example
-------
>>> from qecd.transport.wire import Hello
>>> from qecd.transport.server.session import SessionLimits, plan_key
>>> worker = BuildWorker(SessionLimits(), time_budget_s=60, max_plan_bytes=1 << 30)
>>> hello = Hello(spec="repetition:d=3,r=2,p=0.01")
>>> r = worker.build(plan_key(hello), hello)
>>> r.plan.slice_sizes, r.plan.nbytes > 0, r.worker_pid != os.getpid()
((2, 2, 2), True, True)
>>> worker.close()
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from qecd.errors import ProtocolError
from qecd.transport.server.memfd_handover import recv_parts, send_parts
from qecd.transport.server.session import (
    LimitError,
    PlanKey,
    SessionLimits,
    StreamPlan,
    build_plan,
    plan_key,
)
from qecd.transport.wire import ErrorCode, Header, Hello, decode_hello

__all__ = ["BuildWorker", "BuildResult", "HelloMeta", "BudgetError", "warm_up_kernels"]

#: ``qecd_hellos_refused_total`` reasons of the worker's budgets
TIME_BUDGET, SIZE_BUDGET, WORKER_DIED = "time_budget", "size_budget", "worker_died"


class BudgetError(ProtocolError):
    """A HELLO refused by one of the build budgets; ``budget`` names it (a
    ``qecd_hellos_refused_total`` reason)."""

    def __init__(self, budget: str, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.budget = budget


class HelloMeta(NamedTuple):
    """The HELLO fields the server needs to open a stream (a large HELLO is decoded in the
    worker; these come back with its plan)."""

    want_faults: bool
    transport: str
    describe: bool
    input: str


class BuildResult(NamedTuple):
    """One finished request.

    Attributes
    ----------
    key : PlanKey
    plan : StreamPlan
        With ``nbytes`` set; the cached plan when ``cached``.
    meta : HelloMeta
    cached : bool
        The server had the plan already (no build ran).
    build_s : float
        Time in the worker (decode, key, build, pickle); 0 when cached.
    residual_s : float
        Time on the server's build thread turning the bytes into the plan.
    worker_pid : int
    """

    key: PlanKey
    plan: StreamPlan
    meta: HelloMeta
    cached: bool
    build_s: float
    residual_s: float
    worker_pid: int


def _meta(hello: Hello) -> HelloMeta:
    return HelloMeta(bool(hello.want_faults), hello.transport, bool(hello.describe),
                     hello.input)


def warm_up_kernels(backends: Iterable[str] | None = None) -> None:
    """Build one tiny plan per registered backend whose module loads (whole shot, and a
    window for those that compile streams), so kernels are compiled (or loaded from Numba's
    cache) and modules imported before any request pays for it. ``backends`` limits it to
    those names (default: every registered one)."""
    from qecd.decoder.registry import backend_class, backend_names

    limits = SessionLimits()
    for name in (backend_names() if backends is None else backends):
        try:
            windowed = backend_class(name).compiles_streams
        except Exception:  # an optional backend whose package is missing: nothing to warm
            continue
        for decoder in (name, f"{name}-w2c1") if windowed else (name,):
            hello = Hello(spec="repetition:d=3,r=2,p=0.01", decoder=decoder)
            with contextlib.suppress(ProtocolError):
                build_plan(plan_key(hello, limits), hello, limits)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _worker_main(conn, limits: SessionLimits, max_plan_bytes: int, nice: int,
                 idle: bool = False, cpus: frozenset[int] | None = None) -> None:
    """The child: answer requests until the pipe closes (the server exited or replaced it)."""
    from qecd.transport.server import _build_preload  # noqa: F401  (warm, if not preloaded)

    if cpus:  # off the serving loop's CPU (ServerConfig.build_cpus)
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.sched_setaffinity(0, cpus)

    with contextlib.suppress(OSError):  # the serving loop wins the CPU over a build
        os.nice(nice)
    if idle:  # any runnable task of a normal class preempts it at once, on wake-up
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))

    conn.send(("ready", os.getpid()))
    while True:
        try:
            key, hello, header, size = conn.recv()
            payload = memoryview(recv_parts(conn, [size])[0]) if hello is None else None
        except (EOFError, OSError):
            return
        t0 = time.perf_counter()
        try:
            if hello is None:
                hello = decode_hello(header, payload)
                del payload
                key = plan_key(hello, limits)
            conn.send(("key", key, _meta(hello)))
            if conn.recv() != "build":
                continue
            t0 = time.perf_counter()
            plan = build_plan(key, hello, limits)
            del hello
            buffers: list[pickle.PickleBuffer] = []
            data = pickle.dumps(plan, protocol=5, buffer_callback=buffers.append)
            del plan
            raws = [b.raw() for b in buffers]  # the arrays' memory, sent as it lies
            size = len(data) + sum(r.nbytes for r in raws)
            if size > max_plan_bytes:
                conn.send(("budget", SIZE_BUDGET, ErrorCode.BAD_HELLO,
                           f"HELLO: its decoder plan takes {size} bytes, more than the "
                           f"server's size budget of {max_plan_bytes} bytes "
                           "(max_plan_bytes): use a smaller experiment or a window"))
                continue
            conn.send(("plan", time.perf_counter() - t0, _rss_bytes(),
                       [len(data)] + [r.nbytes for r in raws]))
            send_parts(conn, [data, *raws])
            del data, raws, buffers
        except LimitError as e:
            conn.send(("budget", e.limit, e.code, e.reason))
        except ProtocolError as e:
            conn.send(("error", e.code, e.reason))
        except (EOFError, OSError):
            return
        except Exception as e:  # a builder's own bug: the server answers INTERNAL
            conn.send(("internal", type(e).__name__, str(e)[:300]))


class BuildWorker:
    """The server's build process and its budgets (one request at a time; thread-safe only
    for one caller: the server's build thread).

    Parameters
    ----------
    limits : SessionLimits
        DEM limits, checked in the worker while parsing.
    time_budget_s : float
        Longest a request may take in the worker (decode, key, build, pickle).
    max_plan_bytes : int
        Largest plan (pickled bytes) the worker hands over.
    max_worker_rss : int
        Worker resident memory (bytes) above which it is replaced after a build.
    nice : int
        Added to the worker's scheduling niceness (``os.nice``): on a small host a build
        takes the CPU the serving loop leaves idle, not the loop's.
    idle : bool
        Run the worker in the ``SCHED_IDLE`` class (Linux): a waking task of the normal
        class preempts it at once, where a nice-10 task can keep its CPU for the rest of its
        slice (EEVDF: milliseconds). Builds then use only CPU time nothing else wants; on a
        host kept busy they wait, and the build time budget turns that into BAD_HELLO
        (docs/deploy.md, "Builds beside live streams").
    start_method : str
        ``"forkserver"`` (default: children forked from a warm preloaded process) or
        ``"spawn"``.
    cpus : frozenset of int, optional
        CPUs the worker runs on (``ServerConfig.build_cpus``); None: those it inherits.

    Attributes
    ----------
    restarts : int
        Workers replaced (time budget, memory, or a worker that died).
    pid : int or None
        The current worker's process id.
    """

    def __init__(self, limits: SessionLimits, *, time_budget_s: float, max_plan_bytes: int,
                 max_worker_rss: int = 1 << 30, nice: int = 10, idle: bool = False,
                 start_method: str = "forkserver", cpus: frozenset[int] | None = None) -> None:
        self.limits = limits
        self.time_budget_s = float(time_budget_s)
        self.max_plan_bytes = int(max_plan_bytes)
        self.max_worker_rss = int(max_worker_rss)
        self.nice = int(nice)
        self.idle = bool(idle)
        self.cpus = frozenset(cpus) if cpus else None
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(["qecd.transport.server._build_preload"])
        self.restarts = 0
        self.pid: int | None = None
        self._proc = None
        self._conn = None
        self._closed = False
        self.start()

    def start(self) -> None:
        """Start a worker (returns at once; the first request waits until it is ready)."""
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, name="qecd-build-worker",
                                 args=(child, self.limits, self.max_plan_bytes, self.nice,
                                       self.idle, self.cpus),
                                 daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn, self.pid = proc, parent, None

    def _ready(self, deadline: float) -> None:
        if self.pid is not None:
            return
        # starting a worker is not charged to the request's budget (a fork of the warm
        # forkserver takes milliseconds; a cold one, seconds)
        if not self._conn.poll(max(60.0, deadline - time.monotonic())):
            self._replace()
            raise BudgetError(WORKER_DIED, ErrorCode.INTERNAL, "internal server error: the "
                              "build worker process did not start")
        _, self.pid = self._recv()

    def _recv(self):
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.exitcode if self._proc is not None else None
            self._replace()
            raise BudgetError(WORKER_DIED, ErrorCode.INTERNAL, "internal server error: the "
                              f"build worker process died (exit code {code}) while building "
                              "this HELLO's decoder") from None

    def _wait(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0 or not self._conn.poll(left):
            self._replace()
            raise BudgetError(TIME_BUDGET, ErrorCode.BAD_HELLO, f"HELLO: building its decoder "
                              f"took longer than the server's time budget of "
                              f"{self.time_budget_s:g} s (build_timeout_s); the build was "
                              "stopped: use a smaller experiment or a window")

    def _replace(self) -> None:
        """Kill the worker (whatever it is doing) and start another."""
        self._kill()
        self.restarts += 1
        if not self._closed:
            self.start()

    def _kill(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            self._conn.close()
        with contextlib.suppress(Exception):
            self._proc.kill()
            self._proc.join(5)
            self._proc.close()
        self._proc = self._conn = None
        self.pid = None

    def build(self, key: PlanKey | None, hello: Hello | None,
              raw: tuple[Header, memoryview | bytes] | None = None,
              lookup: Callable[[PlanKey], StreamPlan | None] = lambda key: None
              ) -> BuildResult:
        """Build the plan of a HELLO in the worker (blocking, up to the time budget).

        Parameters
        ----------
        key, hello : PlanKey and Hello, or None and None
            A decoded HELLO and its key; None and None with ``raw``.
        raw : (Header, bytes or memoryview), optional
            An undecoded HELLO (header and msgpack body; a view of the ``zmq.Frame`` it
            arrived in for a large one): decoded and keyed in the worker.
        lookup : callable
            The server's cache: a plan it returns is used and no build runs.

        Raises
        ------
        ProtocolError
            The HELLO's BAD_HELLO (a :class:`BudgetError` for the time and size budgets,
            with ``budget`` a :class:`~qecd.transport.server.session.LimitError`'s limit for
            the DEM limits), or INTERNAL for a builder's bug or a worker that died.
        """
        if self._closed:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "HELLO: the server is shutting down")
        deadline = time.monotonic() + self.time_budget_s
        self._ready(deadline)
        deadline = time.monotonic() + self.time_budget_s
        try:
            self._conn.send((key, hello, raw[0] if raw is not None else None,
                             len(raw[1]) if hello is None else None))
            if hello is None:  # one write of the body, off the GIL (memfd_handover)
                send_parts(self._conn, [raw[1]])
        except (OSError, ValueError):
            self._replace()
            raise BudgetError(WORKER_DIED, ErrorCode.INTERNAL, "internal server error: the "
                              "build worker process is gone") from None
        self._wait(deadline)
        msg = self._recv()
        if msg[0] != "key":
            return self._refusal(msg)
        key, meta = msg[1], msg[2]
        plan = lookup(key)
        if plan is not None:
            self._conn.send("skip")
            return BuildResult(key, plan, meta, True, 0.0, 0.0, self.pid or 0)
        self._conn.send("build")
        self._wait(deadline)
        msg = self._recv()
        if msg[0] != "plan":
            return self._refusal(msg)
        build_s, rss, sizes = msg[1], msg[2], msg[3]
        self._wait(deadline)
        try:
            parts = recv_parts(self._conn, sizes)
        except (EOFError, OSError, ValueError, RuntimeError):
            self._replace()
            raise BudgetError(WORKER_DIED, ErrorCode.INTERNAL, "internal server error: the "
                              "build worker process died while sending a plan") from None
        pid = self.pid or 0
        if rss > self.max_worker_rss:
            self._replace()  # its heap may hold a hostile build's memory
        t0 = time.perf_counter()
        plan = pickle.loads(parts[0], buffers=parts[1:])
        # counted for its pickled size: the native objects rebuilt on arrival (PyMatching's
        # graphs, warm-up state) add ~1-2x that (docs/server.md); the process's resident
        # growth meanwhile is no measure of it (the loop allocates too: a 12 KB plan was
        # counted 13 MB under a fuzz)
        plan.nbytes = sum(sizes)
        del parts
        return BuildResult(key, plan, meta, False, build_s, time.perf_counter() - t0, pid)

    @staticmethod
    def _refusal(msg: tuple):
        kind = msg[0]
        if kind == "budget":
            raise BudgetError(msg[1], msg[2], msg[3])
        if kind == "error":
            raise ProtocolError(msg[1], msg[2])
        raise RuntimeError(f"build worker: {msg[1]}: {msg[2]}")  # a builder's bug

    def close(self) -> None:
        """Stop the worker (killing a build in progress). Idempotent."""
        self._closed = True
        self._kill()
