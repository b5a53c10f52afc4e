"""Decoder plans built off the loop thread, and the HELLOs waiting for each.

A HELLO whose plan is cached is answered at once; any other starts (or joins) a build of its
:class:`~qecd.transport.server.session.PlanKey` on one worker thread and waits. Other slow set-up
work (a shared-memory stream's compiled decoder and region) runs on the same worker as a
*job* (:meth:`PlanBuilds.run_job`). The server's loop collects finished builds when the
worker's done-callback wakes it (housekeeping is the safety net) and answers every waiting
HELLO. A build or job competes with the loop for the GIL, so while one is pending the
interpreter's switch interval is lowered (``build_switch_interval_s`` of
:class:`~qecd.transport.server.config.ServerConfig`) and restored once none is.

Example
-------
>>> import threading
>>> from qecd.transport.server.metrics import ServerCounters
>>> from qecd.transport.wire import Hello
>>> from qecd.transport.server.session import DecoderPool, plan_key
>>> pool, woken = DecoderPool(), threading.Event()
>>> builds = PlanBuilds(pool, ServerCounters(), max_pending=2, switch_interval_s=0.0,
...                     on_done=woken.set)
>>> hello = Hello(spec="repetition:d=3,r=2,p=0.01")
>>> builds.submit(plan_key(hello), hello, "hello 1"), builds.waiting_count()
(True, 1)
>>> woken.wait(60)
True
>>> [(waiting, plan.slice_sizes, err) for waiting, plan, err in builds.collect()]
[(['hello 1'], (2, 2, 2), None)]
>>> builds.close()
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from qecd.errors import ProtocolError
from qecd.transport.server.metrics import ServerCounters
from qecd.transport.server.session import DecoderPool, PlanKey, StreamPlan
from qecd.transport.wire import ErrorCode, Hello

__all__ = ["PendingHello", "PlanBuilds"]

log = logging.getLogger("qecd.server")


class PendingHello(NamedTuple):
    """A HELLO waiting for its plan: where and how to answer it."""

    route: bytes
    owner: bytes | str
    head: bytes  # the HELLO's 32-byte header, for the reply's echo
    seq: int
    timestamp_ns: int
    want_faults: bool
    transport: str = "zmq"
    describe: bool = False
    input: str = "detectors"
    pq: tuple | None = None  # a post-quantum handshake: (its Hello, the HELLO body as received)


class PlanBuilds:
    """Plans being built on one worker thread, keyed by PlanKey, with their waiting HELLOs.

    Parameters
    ----------
    pool : DecoderPool
        Builds go through :meth:`DecoderPool.build` (which caches the plan).
    counters : ServerCounters
        ``builds`` counts builds started; a builder's own bug counts as a drop
        ``internal_exception``.
    max_pending : int
        Distinct plans being built at once; beyond, :meth:`submit` raises SERVER_BUSY.
    switch_interval_s : float
        GIL switch interval while a build is pending; 0 leaves it alone.
    on_done : callable
        Called (on the worker thread) when a build finishes: wakes the loop.
    """

    def __init__(self, pool: DecoderPool, counters: ServerCounters, *, max_pending: int,
                 switch_interval_s: float, on_done: Callable[[], None]) -> None:
        self.pool = pool
        self.counters = counters
        self.max_pending = max_pending
        self.switch_interval_s = switch_interval_s
        self._on_done = on_done
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qecd-build")
        self._builds: dict[PlanKey, Future] = {}
        self._waiting: dict[PlanKey, list[PendingHello]] = {}
        self._jobs: list[tuple[object, Future, Callable[[object], None]]] = []
        self._saved_interval: float | None = None

    def __bool__(self) -> bool:
        """True while any build or job is pending."""
        return bool(self._builds) or bool(self._jobs)

    def waiting_count(self) -> int:
        """HELLOs waiting for a plan or a job (they count against ``max_streams``)."""
        return sum(len(w) for w in self._waiting.values()) + len(self._jobs)

    def waiting_for(self, owner: bytes | str, transport: str) -> int:
        """HELLOs of ``owner`` for ``transport`` still waiting for a plan or a ring job."""
        n = sum(1 for w in self._waiting.values() for p in w
                if p.owner == owner and p.transport == transport)
        return n + sum(1 for tag, _, _ in self._jobs
                       if isinstance(tag, tuple) and isinstance(tag[0], PendingHello)
                       and tag[0].owner == owner and tag[0].transport == transport)

    def run_job(self, tag: object, fn: Callable[[], object],
                discard: Callable[[object], None]) -> None:
        """Run ``fn()`` on the worker (after the builds queued before it); :meth:`collect_jobs`
        hands back ``(tag, result, exception)`` once it is done. ``discard(result)`` is
        called for a result nobody will collect (the job finished after :meth:`cancel`)."""
        self._lower_switch_interval()
        fut = self._executor.submit(fn)
        fut.add_done_callback(lambda _f: self._on_done())
        self._jobs.append((tag, fut, discard))

    def collect_jobs(self) -> list[tuple[object, object, BaseException | None]]:
        """Finished jobs: ``(tag, result, None)`` or ``(tag, None, exception)``."""
        out, keep = [], []
        for tag, fut, discard in self._jobs:
            if not fut.done():
                keep.append((tag, fut, discard))
                continue
            exc = fut.exception()
            out.append((tag, None if exc is not None else fut.result(), exc))
        self._jobs = keep
        if out and not keep and all(f.done() for f in self._builds.values()):
            self.restore_switch_interval()
        return out

    def _lower_switch_interval(self) -> None:
        """While anything is pending on the worker, the loop gets the GIL back sooner."""
        if self._saved_interval is None and self.switch_interval_s:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval_s)

    def submit(self, key: PlanKey, hello: Hello, pending: PendingHello) -> bool:
        """Queue ``pending`` behind the build of ``key``, starting the build if none is
        running; True when a build was started. Raises SERVER_BUSY when ``max_pending``
        other plans are already being built."""
        started = False
        if key not in self._builds:
            if len(self._builds) >= self.max_pending:
                raise ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO: expected fewer than "
                                    f"{self.max_pending} decoders being built, "
                                    "got that many: retry later")
            self._lower_switch_interval()
            fut = self._executor.submit(self.pool.build, key, hello)
            fut.add_done_callback(lambda _f: self._on_done())
            self._builds[key] = fut
            self._waiting[key] = []
            self.counters.builds += 1
            started = True
        self._waiting[key].append(pending)
        return started

    def collect(self) -> list[tuple[list[PendingHello], StreamPlan | None,
                                    ProtocolError | None]]:
        """Finished builds: ``(waiting HELLOs, plan, None)`` or ``(waiting, None, error)``
        (the client's BAD_HELLO, or INTERNAL for a builder's own bug, counted and logged)."""
        done = [k for k, f in self._builds.items() if f.done()]
        if done and len(done) == len(self._builds) and not self._jobs:
            self.restore_switch_interval()
        out = []
        for key in done:
            fut = self._builds.pop(key)
            waiting = self._waiting.pop(key, [])
            try:
                plan: StreamPlan | None = fut.result()
                err = None
            except ProtocolError as e:
                plan, err = None, e
            except Exception as e:  # a bug in a builder, not the client's input
                self.counters.drop("internal_exception")
                log.error("build_failed", exc_info=e, extra={"qecd": {"key": str(key)}})
                plan, err = None, ProtocolError(ErrorCode.INTERNAL, f"internal server error "
                                                f"while building the decoder "
                                                f"({type(e).__name__})")
            out.append((waiting, plan, err))
        return out

    def cancel(self) -> list:
        """Cancel every pending build and job (shutdown); returns the HELLOs that were
        waiting for a build and the tags of the jobs."""
        self.restore_switch_interval()
        waiting: list = []
        for key in list(self._builds):
            self._builds.pop(key).cancel()
            waiting += self._waiting.pop(key, [])
        for tag, fut, discard in self._jobs:
            waiting.append(tag)
            if not fut.cancel():  # running or done: its result is released, never used
                fut.add_done_callback(
                    lambda f, d=discard: d(f.result()) if f.exception() is None else None)
        self._jobs = []
        return waiting

    def restore_switch_interval(self) -> None:
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    def close(self) -> None:
        """Stop the worker without waiting for a build in progress."""
        self._executor.shutdown(wait=False, cancel_futures=True)
