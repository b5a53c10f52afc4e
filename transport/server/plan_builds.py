"""Decoder plans built off the loop, the HELLOs waiting for each, and the build budgets.

A HELLO whose plan is cached is answered at once; any other starts (or joins) a build of its
:class:`~qecd.transport.server.session.PlanKey` and waits. Builds run in the build worker
process (:mod:`~qecd.transport.server.build_worker`), driven from one thread of the server
that sends the request, waits for the plan within the time budget and unpickles it (the
server's share of a build); a large HELLO (``raw``) is handed over undecoded and keyed in
the worker, so its DEM text is never unpacked or hashed on the loop. Other slow set-up work
(a shared-memory stream's region and loop) runs on the same thread as a *job*
(:meth:`PlanBuilds.run_job`). The loop collects finished builds when the thread's
done-callback wakes it (housekeeping is the safety net) and answers every waiting HELLO.
While anything is pending the interpreter's switch interval is lowered
(``build_switch_interval_s``), so the thread's share hands the GIL back to the loop sooner.

Before a build starts, the per-client budgets apply (SERVER_BUSY naming the budget): HELLOs
of one owner waiting for builds at once, and builds one owner started in the last minute;
and the server-wide queue (``max_pending``).

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
>>> p = PendingHello(b"r", b"\\0me", bytes(32), 0, 0, False)
>>> builds.submit(plan_key(hello), hello, p), builds.waiting_count()
(True, 1)
>>> woken.wait(60)
True
>>> [(len(waiting), plan.slice_sizes, err) for waiting, plan, err in builds.collect()]
[(1, (2, 2, 2), None)]
>>> builds.close()
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

from qecd.errors import ProtocolError
from qecd.transport.server.build_worker import BudgetError, BuildResult, BuildWorker, HelloMeta
from qecd.transport.server.metrics import ServerCounters
from qecd.transport.server.session import (
    DecoderPool,
    LimitError,
    PlanKey,
    StreamPlan,
    release_memory,
)
from qecd.transport.wire import ErrorCode, Header, Hello

__all__ = ["PendingHello", "PlanBuilds", "ClientBudget"]

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


class ClientBudget(NamedTuple):
    """What one owner (CURVE key, or connection in plain mode) may ask of the builder.

    Attributes
    ----------
    in_flight : int
        HELLOs of the owner waiting for a plan build at once.
    per_minute : int
        Builds the owner may start in any 60 s.
    """

    in_flight: int = 2
    per_minute: int = 30


class PlanBuilds:
    """Plans being built, keyed by PlanKey, with their waiting HELLOs and the budgets.

    Parameters
    ----------
    pool : DecoderPool
        Looked up before a build (a plan that arrived meanwhile is used) and given every
        plan built.
    counters : ServerCounters
        ``builds``, ``builds_pending``, ``build_seconds``, ``hellos_refused``,
        ``build_worker_restarts`` and the plan cache gauges; a builder's own bug counts as a
        drop ``internal_exception``.
    max_pending : int
        Builds queued or running at once; beyond, :meth:`submit` raises SERVER_BUSY.
    switch_interval_s : float
        GIL switch interval while anything is pending; 0 leaves it alone.
    on_done : callable
        Called (on the build thread) when a build or job finishes: wakes the loop.
    worker : BuildWorker, optional
        The build process; None builds on the build thread itself (embedding, doctests:
        the build then competes with the loop for the GIL).
    client : ClientBudget, optional
        Per-owner budgets (default: none).
    cpus : frozenset of int, optional
        CPUs the build thread runs on (``ServerConfig.build_cpus``); None: the process's.
    """

    def __init__(self, pool: DecoderPool, counters: ServerCounters, *, max_pending: int,
                 switch_interval_s: float, on_done: Callable[[], None],
                 worker: BuildWorker | None = None,
                 client: ClientBudget | None = None,
                 cpus: frozenset[int] | None = None) -> None:
        self.pool = pool
        self.counters = counters
        self.max_pending = max_pending
        self.switch_interval_s = switch_interval_s
        self.worker = worker
        self.client = client or ClientBudget(1 << 30, 1 << 30)  # default: unlimited
        self._on_done = on_done
        #: the build thread's kernel thread id (once it started)
        self.thread_id: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qecd-build",
                                            initializer=self._on_thread_start, initargs=(cpus,))
        self._builds: dict[object, Future] = {}
        self._waiting: dict[object, list[PendingHello]] = {}
        self._started: dict[object, float] = {}
        self._jobs: list[tuple[object, Future, Callable[[object], None]]] = []
        self._saved_interval: float | None = None
        self._raw_ids = itertools.count()
        self._recent: dict[bytes | str, collections.deque] = {}  # owner -> build start times
        self._refused_logged = 0.0
        self._refused_since = 0
        #: keys whose build was refused for the HELLO's content (BAD_HELLO): a HELLO asking
        #: for one again is refused at once, without a build (the newest 1024)
        self._refused_keys: collections.OrderedDict[PlanKey, tuple[str, int, str]] = \
            collections.OrderedDict()
        #: the same for large HELLOs (decoded and keyed in the worker): the digest of the
        #: bytes whose build was refused, and the error (the newest 1024). A fuzz sent its
        #: few 5-8 MB DEMs over and over; each went to the worker (8 MB through the pipe,
        #: parsed again) to be refused again.
        self._refused_raw: collections.OrderedDict[bytes, ProtocolError] = \
            collections.OrderedDict()

    def __bool__(self) -> bool:
        """True while any build or job is pending."""
        return bool(self._builds) or bool(self._jobs)

    def _on_thread_start(self, cpus: frozenset[int] | None) -> None:
        self.thread_id = threading.get_native_id()
        if cpus:  # this thread only (Linux: pid 0 is the calling thread)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                os.sched_setaffinity(0, cpus)

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) this process's decoding kernels on the build
        thread, so the first plan that arrives is not charged for it."""
        from qecd.transport.server.build_worker import warm_up_kernels

        def warm() -> float:
            t0 = time.perf_counter()
            warm_up_kernels()
            return time.perf_counter() - t0

        self.run_job(None, warm, lambda _r: None)

    def waiting_count(self) -> int:
        """HELLOs waiting for a plan or a job (they count against ``max_streams``)."""
        return sum(len(w) for w in self._waiting.values()) + sum(
            1 for tag, _, _ in self._jobs if tag is not None)

    def waiting_for(self, owner: bytes | str, transport: str) -> int:
        """HELLOs of ``owner`` for ``transport`` still waiting for a plan or a ring job."""
        n = sum(1 for w in self._waiting.values() for p in w
                if p.owner == owner and p.transport == transport)
        return n + sum(1 for tag, _, _ in self._jobs
                       if isinstance(tag, tuple) and isinstance(tag[0], PendingHello)
                       and tag[0].owner == owner and tag[0].transport == transport)

    def run_job(self, tag: object, fn: Callable[[], object],
                discard: Callable[[object], None]) -> None:
        """Run ``fn()`` on the build thread (after the builds queued before it);
        :meth:`collect_jobs` hands back ``(tag, result, exception)`` once it is done.
        ``discard(result)`` is called for a result nobody will collect (the job finished
        after :meth:`cancel`)."""
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
            if tag is None:  # the warm-up
                if exc is not None:
                    log.error("warm_up_failed", exc_info=exc)
                else:
                    log.info("kernels_warm", extra={"qecd": {"seconds": round(fut.result(), 3),
                             "build_worker_pid": self.worker.pid if self.worker else None}})
                continue
            out.append((tag, None if exc is not None else fut.result(), exc))
        self._jobs = keep
        if not keep and all(f.done() for f in self._builds.values()):
            self.restore_switch_interval()
        return out

    def _lower_switch_interval(self) -> None:
        """While anything is pending on the worker, the loop gets the GIL back sooner."""
        if self._saved_interval is None and self.switch_interval_s:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(self.switch_interval_s)

    # -- budgets ---------------------------------------------------------------------------
    def _refuse(self, reason: str, code: int, text: str, owner: bytes | str) -> ProtocolError:
        self.note_refused(reason, text, owner)
        return BudgetError(reason, code, text)

    def note_refused(self, reason: str, text: str, owner: bytes | str) -> None:
        """Count a refused HELLO under ``reason`` and log it (at most one line a second,
        with the number refused since the previous line)."""
        self.counters.refuse(reason)
        self._refused_since += 1
        now = time.monotonic()
        if now - self._refused_logged >= 1.0:
            log.warning("hello_refused", extra={"qecd": {
                "reason": reason, "owner": owner.hex() if isinstance(owner, bytes) else owner,
                "detail": text[:200], "refused_since_last_line": self._refused_since,
                "refused_total": sum(self.counters.hellos_refused.values())}})
            self._refused_logged, self._refused_since = now, 0

    def _check_client(self, owner: bytes | str, starting: bool) -> None:
        mine = sum(1 for w in self._waiting.values() for p in w if p.owner == owner)
        if mine >= self.client.in_flight:
            raise self._refuse("client_builds_in_flight", ErrorCode.SERVER_BUSY,
                               f"HELLO: expected at most max_builds_per_client="
                               f"{self.client.in_flight} HELLOs of this client waiting for "
                               f"a decoder build at once, got {mine} waiting: retry once "
                               "they are answered", owner)
        if not starting:
            return
        now = time.monotonic()
        recent = self._recent.setdefault(owner, collections.deque())
        while recent and now - recent[0] > 60.0:
            recent.popleft()
        if len(recent) >= self.client.per_minute:
            raise self._refuse("client_builds_per_minute", ErrorCode.SERVER_BUSY,
                               f"HELLO: expected at most builds_per_minute_per_client="
                               f"{self.client.per_minute} decoder builds per minute for this "
                               f"client, got {len(recent)} in the last "
                               f"{now - recent[0]:.0f} s: retry in "
                               f"{60.0 - (now - recent[0]):.0f} s", owner)
        if len(self._builds) >= self.max_pending:
            raise self._refuse("build_queue_full", ErrorCode.SERVER_BUSY,
                               f"HELLO: expected fewer than {self.max_pending} decoders being "
                               "built (max_pending_builds), got that many: retry later", owner)
        recent.append(now)
        if len(self._recent) > 4096:  # owners long gone: forget their empty histories
            for o in [o for o, q in self._recent.items() if not q]:
                del self._recent[o]

    # -- builds ----------------------------------------------------------------------------
    def submit(self, key: PlanKey | None, hello: Hello | None, pending: PendingHello,
               raw: tuple[Header, memoryview | bytes] | None = None) -> bool:
        """Queue ``pending`` behind the build of ``key``, starting the build if none is
        running; True when a build was started. With ``key`` and ``hello`` None, ``raw``
        (header, msgpack body) is a HELLO to decode and key in the worker (a build of its
        own). Raises SERVER_BUSY when a per-client budget or the queue is full."""
        known = self._refused_keys.get(key) if key is not None else None
        if known is not None:
            raise self._refuse(*known, pending.owner)
        token: object = key if key is not None else ("raw", next(self._raw_ids))
        starting = token not in self._builds
        self._check_client(pending.owner, starting)
        if starting:
            self._lower_switch_interval()
            fut = self._executor.submit(self._build, key, hello, raw)
            fut.add_done_callback(lambda _f: self._on_done())
            self._builds[token] = fut
            self._waiting[token] = []
            self._started[token] = time.perf_counter()
            self.counters.builds += 1
            self.counters.builds_pending = len(self._builds)
        self._waiting[token].append(pending)
        return starting

    def _build(self, key: PlanKey | None, hello: Hello | None, raw) -> BuildResult:
        """On the build thread: the worker's build, then the plan into the pool."""
        if self.worker is None:
            t0 = time.perf_counter()
            if hello is None:
                from qecd.transport.server.session import plan_key
                from qecd.transport.wire import decode_hello

                hello = decode_hello(*raw)
                key = plan_key(hello, self.pool.limits)
            plan = self.pool.get(key)
            cached = plan is not None
            if plan is None:
                plan = self.pool.build(key, hello)
            meta = HelloMeta(bool(hello.want_faults), hello.transport, bool(hello.describe),
                             hello.input)
            return BuildResult(key, plan, meta, cached, time.perf_counter() - t0, 0.0, 0)
        digest = _raw_digest(raw) if raw is not None else None
        if digest is not None:
            known = self._refused_raw.get(digest)
            if known is not None:  # refused for these very bytes before: no worker round trip
                self._refused_raw.move_to_end(digest)
                raise _fresh(known)
        try:
            res = self.worker.build(key, hello, raw, lookup=self.pool.get)
        except ProtocolError as e:
            if digest is not None and e.code == ErrorCode.BAD_HELLO:
                self._refused_raw[digest] = _fresh(e)  # no traceback: it held the HELLO
                while len(self._refused_raw) > 1024:
                    self._refused_raw.popitem(last=False)
            raise
        finally:
            self.counters.build_worker_restarts = self.worker.restarts
        if not res.cached:
            self.pool.put(res.plan)
        return res

    def collect(self) -> list[tuple[list[PendingHello], StreamPlan | None,
                                    ProtocolError | None]]:
        """Finished builds: ``(waiting HELLOs, plan, None)`` or ``(waiting, None, error)``
        (the client's BAD_HELLO or a budget's refusal, counted; INTERNAL for a builder's
        own bug, counted and logged)."""
        done = [k for k, f in self._builds.items() if f.done()]
        if done and len(done) == len(self._builds) and not self._jobs:
            self.restore_switch_interval()
        out = []
        c = self.counters
        for token in done:
            fut = self._builds.pop(token)
            waiting = self._waiting.pop(token, [])
            elapsed = time.perf_counter() - self._started.pop(token)
            plan: StreamPlan | None = None
            err: ProtocolError | None = None
            try:
                res: BuildResult = fut.result()
            except (BudgetError, LimitError) as e:
                err = _untraced(e)
                reason = e.budget if isinstance(e, BudgetError) else e.limit
                for p in waiting:
                    self.note_refused(reason, e.reason, p.owner)
                self._remember(token, reason, e)
            except ProtocolError as e:
                err = _untraced(e)
                self._remember(token, "bad_hello", e)
            except Exception as e:  # a bug in a builder, not the client's input
                c.drop("internal_exception")
                log.error("build_failed", exc_info=e, extra={"qecd": {"key": str(token)}})
                _untraced(e)
                err = ProtocolError(ErrorCode.INTERNAL, f"internal server error while "
                                    f"building the decoder ({type(e).__name__})")
            else:
                plan = res.plan
                m = res.meta
                waiting = [p._replace(want_faults=m.want_faults, transport=m.transport,
                                      describe=m.describe, input=m.input)
                           if isinstance(token, tuple) else p for p in waiting]
                if not res.cached:
                    c.build_seconds.observe(elapsed)
                    k = res.key
                    log.info("plan_built", extra={"qecd": {
                        "source": k.source, "experiment": k.experiment[:80],
                        "decoder": k.backend, "window": k.window, "nbytes": plan.nbytes,
                        "worker_s": round(res.build_s, 4),
                        "server_s": round(res.residual_s, 4),
                        "queued_and_built_s": round(elapsed, 4), "worker_pid": res.worker_pid,
                        "cache_bytes": self.pool.nbytes, "cache_plans": len(self.pool),
                        "cache_evictions": self.pool.evicted}})
            out.append((waiting, plan, err))
        c.builds_pending = len(self._builds)
        c.plan_cache_bytes, c.plan_cache_plans = self.pool.nbytes, len(self.pool)
        c.plan_cache_evictions = self.pool.evicted
        return out

    def _remember(self, token: object, reason: str, e: ProtocolError) -> None:
        if isinstance(token, PlanKey) and e.code == ErrorCode.BAD_HELLO:
            self._refused_keys[token] = (reason, e.code, e.reason)
            while len(self._refused_keys) > 1024:
                self._refused_keys.popitem(last=False)

    def trim_memory(self) -> None:
        """Return freed heap memory to the operating system, on the build thread (glibc's
        ``malloc_trim`` walks the heap: milliseconds the loop should not spend)."""
        self._executor.submit(release_memory)

    def cancel(self) -> list:
        """Cancel every pending build and job (shutdown); returns the HELLOs that were
        waiting for a build and the tags of the jobs."""
        self.restore_switch_interval()
        waiting: list = []
        for key in list(self._builds):
            self._builds.pop(key).cancel()
            waiting += self._waiting.pop(key, [])
        for tag, fut, discard in self._jobs:
            if tag is not None:
                waiting.append(tag)
            if not fut.cancel():  # running or done: its result is released, never used
                fut.add_done_callback(
                    lambda f, d=discard: d(f.result()) if f.exception() is None else None)
        self._jobs = []
        self.counters.builds_pending = 0
        return waiting

    def restore_switch_interval(self) -> None:
        if self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None

    def close(self) -> None:
        """Stop the build thread without waiting for a build in progress, and the worker
        process (killing its build)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self.worker is not None:
            self.worker.close()


def _untraced(e: BaseException) -> BaseException:
    """``e`` without its traceback. A refused build's exception went through the build
    thread's frames (one held the HELLO: an 8 MB DEM) and the future's: exception ->
    traceback -> frame -> future -> exception is a reference cycle, which only a full garbage
    collection frees, and the server runs those rarely (gc_pauses.py): a fuzz left ~58 MB of
    such HELLOs behind. Without the traceback, reference counts free them at once."""
    e.__traceback__ = None
    return e


def _raw_digest(raw: tuple[Header, object]) -> bytes:
    """What identifies a large HELLO's content: its version, flags and body (hashlib releases
    the GIL while it reads megabytes; this runs on the build thread)."""
    header, payload = raw
    h = hashlib.blake2b(bytes((header.version, header.flags & 0xFF, header.flags >> 8)),
                        digest_size=16)
    h.update(payload)
    return h.digest()


def _fresh(e: ProtocolError) -> ProtocolError:
    """A new exception saying what ``e`` says (class, budget or limit, code, reason), with no
    traceback or context to keep a HELLO alive."""
    if isinstance(e, BudgetError):
        return BudgetError(e.budget, e.code, e.reason)
    if isinstance(e, LimitError):
        return LimitError(e.limit, e.reason)
    return ProtocolError(e.code, e.reason)
