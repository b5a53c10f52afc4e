"""The qecd ZeroMQ server: one ROUTER socket, one hot-loop thread, many streams.

The loop polls the ROUTER (tcp and/or ipc endpoints) and a wake-up socketpair, reads up to
``batch`` packets without blocking, then handles them in arrival order: parse
(:func:`~qecd.transport.wire.parse_packet`), route by stream id to a
:class:`~qecd.transport.server.session.StreamSession` (ownership checked), decode, reply. PyMatching
holds the GIL, so decoding stays on this one thread; decoder plans are built in a separate
build worker process (HELLOs whose plan is cached are answered at once; the others get their
ACCEPT when the build finishes, within the build budgets, without holding up other streams'
packets). Nothing a client sends is ever unpickled (only the server's own build worker's
plans are); msgpack only on the control path.

This module holds the loop, the routing and the replies; its parts live beside it:
:mod:`~qecd.transport.server.config` (:class:`ServerConfig`),
:mod:`~qecd.transport.server.plan_builds` (plans built off the loop, the build budgets),
:mod:`~qecd.transport.server.build_worker` (the build process),
:mod:`~qecd.transport.server.shm_streams` (shared-memory streams),
:mod:`~qecd.transport.server.rate_limit` (the ERROR and STATS budgets) and
:mod:`~qecd.transport.server.logs` (JSON-lines logs and the per-second error summary).

Its policies (per-round service time, backpressure, shutdown, liveness, shared-memory
streams, errors) are the essay ``docs/server.md``; this module implements them.

Example
-------
>>> from qecd.transport.client import Client
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     with Client(server.endpoints[0]) as client:
...         rtt_ns = client.heartbeat()
>>> server.counters.packets_received
1
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import signal
import socket
import struct
import threading
import time

import zmq

from qecd.errors import DecoderError, ProtocolError
from qecd.transport.auth import configure_server_socket, start_authenticator
from qecd.transport.engine import STEP_DONE, STEP_NO_SOLUTION
from qecd.transport.server import fast_path
from qecd.transport.server.build_worker import BuildWorker
from qecd.transport.server.config import ServerConfig
from qecd.transport.server.gc_pauses import GcPauses
from qecd.transport.server.hello_queue import HelloQueue
from qecd.transport.server.io_threads import lower_io_threads, thread_ids
from qecd.transport.server.logs import ErrorSummary, JsonFormatter, configure_json_logging
from qecd.transport.server.metrics import (
    MAX_STREAM_LABELS,
    ServerCounters,
    ServiceRecorder,
    StreamRow,
    start_metrics_http,
)
from qecd.transport.server.plan_builds import ClientBudget, PendingHello, PlanBuilds
from qecd.transport.server.pq_hellos import PqHellos
from qecd.transport.server.rate_limit import RateLimiter
from qecd.transport.server.resume import ResumeTokens, refuse_ring
from qecd.transport.server.session import (
    DecoderPool,
    LimitError,
    StreamPlan,
    StreamSession,
    plan_key,
    return_large_blocks,
)
from qecd.transport.server.shm_streams import ShmStreams
from qecd.transport.wire import (
    HEADER_SIZE,
    ErrorCode,
    Header,
    MsgType,
    claimed_type,
    decode_bye,
    decode_error,
    decode_heartbeat,
    decode_hello,
    encode_accept,
    encode_bye,
    encode_error,
    encode_error_reply,
    encode_stats,
    parse_packet,
)
from qecd.transport.wire.compiled import decoder_failed_reason, dropped_reason

__all__ = ["ServerConfig", "Server", "JsonFormatter", "configure_json_logging", "run_server"]

log = logging.getLogger("qecd.server")
_SERVICE_NS = struct.Struct("<Q")  # CORRECTION service_ns, packet offset 48
_SERVICE_NS_OFFSET = HEADER_SIZE + 16
_SYNDROME = int(MsgType.SYNDROME)
_ERROR = int(MsgType.ERROR)
_SEC = 1_000_000_000
#: a loop turn may take this long beyond its poll wait before the excess counts as a stall
_TURN_ALLOWANCE_NS = 250_000_000


def _one_cpu() -> bool:
    """True when this process may run on a single CPU (``qecd serve --cpu``), where the
    ZeroMQ I/O thread would share it with the loop."""
    try:
        return len(os.sched_getaffinity(0)) == 1
    except (AttributeError, OSError):
        return False


#: packets up to this size are copied out of ZeroMQ's message on the Python path; larger
#: ones are used where ZeroMQ received them (pyzmq copying 5-8 MB HELLOs held the loop
#: 8-15 ms each under a gap probe)
_COPY_MAX = 65536


def _plain_parts(frames: list) -> list:
    """A plain-mode message (``recv_multipart(copy=False)``) as the loop handles it: the
    routing id as bytes, each packet as bytes, or as a view of its ``zmq.Frame`` when larger
    than ``_COPY_MAX``. Against ``copy=True`` this costs ~1.2 us per packet (64-byte packets
    over inproc: 3.6 us against 2.5 us; receiving the routing id alone with a copy and
    testing ``rcvmore`` cost more, 5.8 us)."""
    out = [frames[0].bytes]
    for f in frames[1:]:
        out.append(f.bytes if len(f) <= _COPY_MAX else f.buffer)
    return out


def _peer(route: bytes) -> str:
    return route.hex()


class Server:
    """The ROUTER server. Create, then :meth:`serve` (blocking) or :meth:`start_thread`.

    Parameters
    ----------
    config : ServerConfig
    context : zmq.Context, optional
        Defaults to a private context (terminated on close).

    Attributes
    ----------
    endpoints : list of str
        The bound endpoints, with the real port for ``:0`` binds.
    counters : ServerCounters
    recorder : ServiceRecorder
    pool : DecoderPool
    """

    def __init__(self, config: ServerConfig, *, context: zmq.Context | None = None) -> None:
        self.config = config
        self.limits = config.limits
        pq = config.pq  # checked first: a bad config leaves no socket behind
        if pq is not None and config.curve is not None:
            pq = pq.with_curve(config.curve.public)  # the transcript names the CURVE keys
        self._pq = PqHellos(pq, required=config.pq_required)
        self.counters = ServerCounters()
        self._refused_logged = 0.0  # when the last connection_refused line was written
        self.recorder = ServiceRecorder(config.record_capacity)
        self.pool = DecoderPool(config.limits, max_bytes=config.plan_cache_bytes)
        self._own_ctx = context is None
        threads_before = thread_ids()
        self._ctx = context or zmq.Context()
        self._auth = None
        self._closed = False
        self._thread: threading.Thread | None = None
        # serve() and close() agree under this lock on who closes: while serve() runs, a
        # close() from another thread only marks the close as due and serve() does it
        self._close_lock = threading.Lock()
        self._serving: threading.Thread | None = None  # the thread inside serve()
        self._close_due = False
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.SNDHWM, config.sndhwm)
            sock.setsockopt(zmq.RCVHWM, config.rcvhwm)
            sock.setsockopt(zmq.LINGER, 0)
            if config.rcvbuf > 0:  # bounds each read of a large message (config.py)
                sock.setsockopt(zmq.RCVBUF, config.rcvbuf)
            # a frame above max_frame is refused by ZeroMQ itself before it is read (the
            # peer is disconnected); with oversize_replies, frames up to twice max_frame are
            # read and answered OVERSIZE (config.py)
            sock.setsockopt(zmq.MAXMSGSIZE, (2 if config.oversize_replies else 1)
                            * self.limits.max_frame)
            if config.curve is not None:
                self._auth = start_authenticator(self._ctx, config.curve.allow_dir,
                                                 self._on_refused)
                configure_server_socket(sock, config.curve)
            self.endpoints: list[str] = []
            for ep in config.binds:
                sock.bind(ep)
                self.endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
            self._ipc_files = _ipc_files(self.endpoints)
        except BaseException:
            sock.close(0)
            self._stop_aux()
            raise
        self._sock = sock
        if self._own_ctx and config.io_thread_nice and _one_cpu():  # its I/O thread exists now
            lower_io_threads(threads_before, config.io_thread_nice)
        #: plain mode: the owner is the routing id (with CURVE, each message's User-Id)
        self._plain = config.curve is None
        self._fast = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        #: SYNDROMEs of compiled-engine streams served from compiled code (plain mode only:
        #: with CURVE the owner is each message's User-Id, which zmq_recv does not give)
        if config.fast_path and self._plain and fast_path.available():
            self._fast = fast_path.FastPath(sock, max_streams=config.max_streams,
                                            max_frame=self.limits.max_frame,
                                            wake_fd=self._wake_r.fileno(),
                                            commit_s=config.fast_commit_s,
                                            keep_hellos_above=_COPY_MAX)
        worker = BuildWorker(config.limits, time_budget_s=config.build_timeout_s,
                             max_plan_bytes=config.max_plan_bytes,
                             max_worker_rss=config.build_worker_max_rss,
                             idle=config.build_worker_idle, cpus=config.build_cpus) \
            if config.build_process else None
        self._builds = PlanBuilds(self.pool, self.counters,
                                  max_pending=config.max_pending_builds,
                                  switch_interval_s=config.build_switch_interval_s,
                                  on_done=self._wake, worker=worker,
                                  client=ClientBudget(config.max_builds_per_client,
                                                      config.builds_per_minute_per_client),
                                  cpus=config.build_cpus)
        self._builds.warm_up()
        self._streams: dict[int, StreamSession] = {}
        self._by_owner: dict[bytes | str, set[int]] = {}
        self._resumes = ResumeTokens()  #: every open stream's resume token (§6.9)
        self._next_id = 1
        self._stop = False
        self._stalled_ns = 0  #: total time the loop could not run (see _awake_ns)
        self._trimmed_at = 0  #: streams_closed when freed memory was last handed back
        self._expire_at = 0  #: when the plan cache is next checked for idle plans (ns)
        self._mark_ns, self._mark_allowed = time.perf_counter_ns(), _TURN_ALLOWANCE_NS
        self._shutting_down = False
        self._errors = RateLimiter(config.error_budget_per_s)
        self._hellos = HelloQueue(config.hello_queue)  # HELLOs wait while streams are served
        self._gc = GcPauses() if config.gc_at_housekeeping else None
        self._hk_packets = 0  # packets_received at the previous housekeeping
        self._stats = RateLimiter(config.stats_budget_per_s)
        self._error_log = ErrorSummary(log)
        self._t0 = time.perf_counter_ns()
        self._shm = ShmStreams(self.counters, self.recorder,
                               record_capacity=config.shm_record_capacity)
        self._handlers = {
            MsgType.HELLO: self._on_hello, MsgType.HEARTBEAT: self._on_heartbeat,
            MsgType.STATS: self._on_stats, MsgType.BYE: self._on_bye,
            MsgType.ERROR: self._on_error, MsgType.ACCEPT: self._on_unexpected,
            MsgType.CORRECTION: self._on_unexpected,
        }

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_thread(self) -> threading.Thread:
        """Run :meth:`serve` on a daemon thread (tests, embedding); :meth:`stop` ends it."""
        self._thread = threading.Thread(target=self.serve, name="qecd-server", daemon=True)
        self._thread.start()
        return self._thread

    def request_shutdown(self) -> None:
        """Ask the loop to shut down gracefully (thread- and signal-handler-safe)."""
        self._stop = True
        self._wake()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful shutdown and wait for the loop thread (if any); then close."""
        self.request_shutdown()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.close()

    def close(self) -> None:
        """Release sockets, threads and the context (LINGER 0). Idempotent.

        While :meth:`serve` still runs on another thread (a :meth:`stop` whose wait timed
        out), this only asks it to shut down and leaves the closing to it: that thread owns
        the socket, the stream table and the shared-memory loops, so closing them from here
        would race it. It closes the server when it returns.
        """
        with self._close_lock:
            if self._closed:
                return
            serving = self._serving
            deferred = serving is not None and serving is not threading.current_thread()
            if deferred:
                self._close_due = True
            else:
                self._closed = True
        if deferred:
            self.request_shutdown()
            log.warning("close_deferred", extra={"qecd": {
                "reason": "the loop thread is still running; it closes the server when it "
                          "returns", "streams_open": len(self._streams)}})
            return
        for s in list(self._streams.values()):  # the loop did not get to shut down
            self._shm.close(s)
        self._shm.join_zombies()
        self._sock.close(0)
        self._builds.close()
        self._stop_aux()
        self._wake_r.close()
        self._wake_w.close()
        _remove_ipc_files(self._ipc_files)

    def _stop_aux(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx:
            self._ctx.term()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is already pending) or closed
            pass

    # -- the loop -------------------------------------------------------------------------
    def serve(self) -> None:
        """Serve until :meth:`request_shutdown`, then shut down gracefully (see module
        docs). Blocking; call from one thread only. Returns at once after :meth:`close`."""
        with self._close_lock:
            if self._closed:
                return
            self._serving = threading.current_thread()
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        wake_fd = self._wake_r.fileno()
        hk_ns = int(self.config.housekeeping_s * _SEC)
        next_hk = time.perf_counter_ns() + hk_ns
        self._mark(time.perf_counter_ns(), 0)
        if self._gc is not None:
            self._gc.start()
        try:
            while not self._stop:
                t = time.perf_counter_ns()
                wait_ms = 0 if self._hellos else max(0, (next_hk - t) // 1_000_000)
                self._mark(t, wait_ms * 1_000_000)
                try:
                    events = dict(poller.poll(wait_ms))
                    self._mark(time.perf_counter_ns(), 0)
                    if wake_fd in events:
                        self._drain_wake()
                        self._collect_builds()
                    if self._sock in events:
                        self._read_batch(next_hk)
                    if self._hellos:
                        self._serve_hellos(next_hk)
                    now = time.perf_counter_ns()
                    self._mark(now, 0)  # a stall anywhere in the turn counts before housekeeping
                    if now >= next_hk:
                        self._housekeeping(now)
                        next_hk = now + hk_ns
                except zmq.ContextTerminated:
                    raise
                except Exception as e:  # a bug outside any one packet: count, log, go on
                    self.counters.drop("internal_exception")
                    log.exception("loop_error", extra={"qecd": {"exception": type(e).__name__}})
                    time.sleep(0.001)  # never spin hot on a persistent failure
            self._shutdown()
        finally:
            if self._gc is not None:
                self._gc.stop()
            with self._close_lock:
                self._serving = None
                close_due = self._close_due
                if not close_due:
                    self._sock.close(0)  # a no-op after _shutdown closed it with linger
            if close_due:
                self.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _read_batch(self, wait_until_ns: int = 0) -> int:
        """Read and handle up to ``batch`` packets, each as soon as it is read (no read-ahead:
        a packet's service time never includes waiting behind packets the server already
        holds; the queue, if any, stays in ZeroMQ where the HWMs bound it). The fast path
        may also wait for more packets until ``wait_until_ns`` (the next housekeeping)."""
        if self._fast is not None and len(self._fast):
            return self._read_batch_fast(wait_until_ns)
        sock, plain, handle, clock = self._sock, self._plain, self._handle, time.perf_counter_ns
        n = 0
        for n in range(1, self.config.batch + 1):  # noqa: B007 (n is the count handled)
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return n - 1
            handle(_plain_parts(parts) if plain else parts, clock())
        return n

    def _read_batch_fast(self, wait_until_ns: int) -> int:
        """:meth:`_read_batch` with the compiled fast path serving the SYNDROMEs it takes
        (:mod:`~qecd.transport.server.fast_path`); every other message comes back here and is
        handled by :meth:`_handle` as on the Python path."""
        fast, counters, batch = self._fast, self.counters, self.config.batch
        res = fast.res
        n = 0
        while n < batch:
            if self._stop:  # a signal handler ran while the kernel waited
                return n
            if self._hellos:  # queued HELLOs are served when the socket is empty: no waiting
                wait_until_ns = 0
            if wait_until_ns:  # the kernel may wait until then: not a stall of the loop
                now = time.perf_counter_ns()
                self._mark(now, max(0, wait_until_ns - now))
            status = fast.drain(batch - n, self._stalled_ns, self.recorder, wait_until_ns)
            hb = int(res[fast_path.R_HEARTBEATS])
            if hb:  # a stream's HEARTBEATs, echoed by the kernel (Server._on_heartbeat)
                n += hb
                counters.packets_received += hb
                counters.fast_path_heartbeats += hb
                if res[fast_path.R_HB_DROPPED]:
                    counters.drop("replies", int(res[fast_path.R_HB_DROPPED]))
            k = int(res[fast_path.R_PACKETS])
            if k:
                n += k
                counters.packets_received += k
                counters.fast_path_packets += k
                counters.rounds_received += int(res[fast_path.R_ROUNDS])
                counters.corrections_sent += int(res[fast_path.R_SENT])
                if res[fast_path.R_DROPPED]:
                    counters.drop("corrections", int(res[fast_path.R_DROPPED]))
            if status == fast_path.ST_EMPTY:
                if k and wait_until_ns:  # committed: now wait for the next packet in drain
                    continue
                return n
            if status == fast_path.ST_HANDOFF:
                n += 1
                self._handle(fast.handoff_parts(), int(res[fast_path.R_T_RECV]))
            elif status == fast_path.ST_NO_SOLUTION:  # the packet is counted in k
                self._fast_no_solution()
            else:  # ST_ZMQ_ERROR: as pyzmq would have raised it in _read_batch / _send
                errno = int(res[fast_path.R_ERRNO])
                if errno == zmq.ETERM:
                    raise zmq.ContextTerminated()
                raise zmq.ZMQError(errno)
        return n

    def warm_fast_path(self, every_kind: bool = False) -> bool:
        """Load (or compile) the fast path's kernels now, for the default stream decoder's
        engine kind (with ``every_kind``: for every registered backend that compiles
        streams, one kind each; ~1 s more per kind from a warm cache), so that the first
        stream of a kind does not hold up the loop while they load (a few seconds here); a
        kind not warmed here is loaded when its first stream opens. Builds a tiny plan (a
        distance-3 repetition code) per backend for its engine context type. Returns False
        when there is no fast path or a warm-up failed (then the first stream loads it)."""
        if self._fast is None:
            return False
        from qecd.decoder.registry import DEFAULT_STREAM_DECODER, backend_class, backend_names
        from qecd.transport.server.session import build_plan
        from qecd.transport.wire import Hello

        ok = True
        for name in backend_names() if every_kind else (DEFAULT_STREAM_DECODER,):
            try:
                if not backend_class(name).compiles_streams:
                    continue
            except Exception:  # an optional backend whose package is missing
                continue
            hello = Hello(spec="repetition:d=3,r=1,p=0.01", dem=None, time_coord=-1,
                          decoder=name, window=None, commit=None, want_faults=False)
            try:
                plan = build_plan(plan_key(hello, self.limits), hello, self.limits)
                ok = self._fast.warm_up_with(plan) and ok
            except Exception as e:  # an optimisation only: say so and go on
                log.warning("fast_path_warm_up_failed", extra={"qecd": {
                    "decoder": name, "exception": type(e).__name__, "detail": str(e)[:200]}})
                ok = False
        return ok

    def _fast_no_solution(self) -> None:
        """:meth:`_run_engine`'s STEP_NO_SOLUTION branch for a packet the fast path took."""
        r = self._fast.res
        s = self._streams[self._fast.slot_session_id(int(r[fast_path.R_SLOT]))]
        first = s.next_round - int(r[fast_path.R_ROUNDS_OF_PACKET])
        s._pkt_first, s._pkt_count = first, int(r[fast_path.R_ROUNDS_OF_PACKET])
        i_next, done = int(r[fast_path.R_I_NEXT]), int(r[fast_path.R_DONE])
        t_recv, t0, t1 = (int(r[fast_path.R_T_RECV]), int(r[fast_path.R_T0]),
                          int(r[fast_path.R_T1]))
        self._decoder_failed(s, i_next - 1, DecoderError(
            s.plan.engine.no_solution_reason(first + i_next - 1)), self._fast.packet_header())
        record, clock = self.recorder.record, time.perf_counter_ns
        for _ in range(done):
            record(s.stream_id, clock() - t_recv, t1 - t0)

    def _serve_hellos(self, until_ns: int) -> None:
        """Handle queued HELLOs (:mod:`~qecd.transport.server.hello_queue`) one at a time,
        each followed by everything that arrived on the socket meanwhile, until none is left
        or housekeeping is due at ``until_ns``."""
        hellos = self._hellos
        while hellos and not self._stop:
            parts, t_recv = hellos.pop()
            self._handle_now(parts, t_recv)
            self._read_batch(0)
            if time.perf_counter_ns() >= until_ns:
                return

    def _handle(self, parts: list, t_recv: int) -> None:
        hellos = self._hellos
        if not self._shutting_down and hellos.takes(parts, len(self._streams)):
            if not hellos.full():
                hellos.push(parts, t_recv)
                return
            self.counters.packets_received += 1
            route, frame, _ = self._unpack(parts)
            self._reply_error(route, None, ProtocolError(
                ErrorCode.SERVER_BUSY, f"expected fewer than hello_queue={hellos.limit} "
                f"packets waiting behind HELLOs, got that many (a HELLO flood): this packet "
                f"was not processed; retry later"), frame, None, t_recv)
            return
        self._handle_now(parts, t_recv)

    def _unpack(self, parts: list) -> tuple[bytes, object, bytes | str | None]:
        """A message's routing id, packet (bytes or a view) and owner: the routing id in
        plain mode (parts as :func:`_plain_parts` or the fast path gives them), the CURVE
        key's ``User-Id`` otherwise (parts as ``zmq.Frame``)."""
        if self._plain:
            return parts[0], parts[1], parts[0]
        return parts[0].bytes, parts[1].buffer, parts[1].get("User-Id")

    def _handle_now(self, parts: list, t_recv: int) -> None:
        self.counters.packets_received += 1
        if len(parts) < 2:
            self.counters.drop("no_route")
            return
        route, frame, owner = self._unpack(parts)
        header = None
        try:
            if len(parts) > 2:
                raise ProtocolError(ErrorCode.BAD_HEADER, f"ZeroMQ message: expected one part "
                                    f"per packet (use a DEALER socket), got {len(parts) - 1}")
            header, payload = parse_packet(frame, max_frame=self.limits.max_frame)
            if header.msg_type == _SYNDROME:
                self._on_syndrome(route, owner, header, payload, t_recv)
            else:
                self._handlers[header.msg_type](route, owner, header, payload, frame, t_recv)
        except ProtocolError as e:
            self._reply_error(route, owner, e, frame, header, t_recv)
        except Exception as e:  # a server bug: count it, say so, keep serving
            self.counters.drop("internal_exception")
            log.exception("internal_error", extra={"qecd": {"peer": _peer(route),
                                                            "exception": type(e).__name__}})
            err = ProtocolError(ErrorCode.INTERNAL, f"internal server error "
                                f"({type(e).__name__}); other streams are unaffected")
            self._reply_error(route, owner, err, frame, header, t_recv)

    # -- replies --------------------------------------------------------------------------
    def _send(self, route: bytes, frame: object, what: str) -> bool:
        try:
            self._sock.send_multipart((route, frame), zmq.NOBLOCK)
            return True
        except zmq.Again:  # the peer's queue is full: never block the loop
            self.counters.drop(what)
        except zmq.ZMQError as e:
            if e.errno != zmq.EHOSTUNREACH:
                raise
            self.counters.drop(what)  # the peer is gone
        return False

    def _reply_error(self, route: bytes, owner: bytes | str, err: ProtocolError, frame: object,
                     header: Header | None, now_ns: int) -> None:
        name = _code_name(err.code)
        self._error_log.count(_peer(route), name)
        if claimed_type(frame) == _ERROR:
            self.counters.drop("ERROR")  # ERROR is never answered with ERROR (no ping-pong)
            return
        s = None
        next_round = 0
        if header is not None and header.stream_id:
            s = self._streams.get(header.stream_id)
            if s is not None and s.owner != owner:
                s = None
            if s is not None and header.msg_type == _SYNDROME:
                next_round = s.next_round
        if not self._errors.allow(route, now_ns):
            self.counters.drop("error_budget")
            if s is not None:
                s.dropped["error_budget"] = s.dropped.get("error_budget", 0) + 1
            return
        self._counted_send(route, encode_error_reply(err, frame, next_round=next_round), name, s)

    def _send_error(self, s: StreamSession, code: ErrorCode, reason: str,
                    about: Header | None = None) -> None:
        """An ERROR about stream ``s`` (not subject to the error budget): unsolicited, or
        about the SYNDROME ``about`` (its round and timestamp echoed, ``ref_type``
        SYNDROME)."""
        echo = {} if about is None else {"seq": about.round, "timestamp_ns": about.timestamp_ns,
                                         "ref_type": MsgType.SYNDROME}
        frame = encode_error(code, reason, stream_id=s.stream_id, next_round=s.next_round,
                             **echo)
        self._counted_send(s.route, frame, code.name, s)

    def _counted_send(self, route: bytes, frame: bytes, name: str,
                      s: StreamSession | None) -> None:
        """Send an ERROR, counted before it leaves (a client that has its ERROR also sees it
        in STATS and Prometheus) and uncounted if it could not be queued."""
        self.counters.error(name)
        if s is not None:
            s.errors_sent += 1
        if not self._send(route, frame, "replies"):
            self.counters.error(name, -1)
            if s is not None:
                s.errors_sent -= 1

    # -- handlers -------------------------------------------------------------------------
    def _owned(self, header: Header, owner: bytes | str, route: bytes,
               now_ns: int) -> StreamSession:
        s = self._streams.get(header.stream_id)
        if s is None:
            raise ProtocolError(ErrorCode.UNKNOWN_STREAM, f"field 'stream_id': no open stream "
                                f"{header.stream_id} (never opened, closed or timed out)")
        s.check_owner(owner)
        s.last_seen_ns = self._awake_ns(now_ns)
        s.route = route
        return s

    def _on_syndrome(self, route: bytes, owner: bytes | str, header: Header, payload: object,
                     t_recv: int) -> None:
        s = self._owned(header, owner, route, t_recv)
        if s.shm is not None:
            raise ProtocolError(ErrorCode.UNEXPECTED_TYPE, f"SYNDROME for stream "
                                f"{s.stream_id}: its rounds go over its shared-memory ring "
                                f"{s.shm.region_name!r}, not ZeroMQ")
        count = s.begin(header, payload)  # all or nothing: round, size, payload checks
        if header.timestamp_ns:
            s.note_delay(t_recv - header.timestamp_ns)
        counters = self.counters
        counters.rounds_received += count
        counters.backlog_rounds += count
        s.queued = count
        try:
            if s.engine is not None:
                self._run_engine(s, route, header, count, t_recv)
            else:
                self._run_rounds(s, route, header, count, t_recv)
        finally:
            counters.backlog_rounds -= s.queued
            s.queued = 0

    def _run_rounds(self, s: StreamSession, route: bytes, header: Header, count: int,
                    t_recv: int) -> None:
        record, clock, sid = self.recorder.record, time.perf_counter_ns, s.stream_id
        seq, ts = header.round + count - 1, header.timestamp_ns
        counters = self.counters
        for i in range(count):
            t0 = clock()
            try:
                c = s.push(i)
            except Exception as e:  # the decoder failed on this stream's data
                self._decoder_failed(s, i, e, header)
                record(sid, clock() - t_recv, clock() - t0)
                return
            t1 = clock()
            s.queued -= 1
            counters.backlog_rounds -= 1
            if c is None:
                record(sid, t1 - t_recv, 0)
                continue
            frame = s.correction_frame(c, seq=seq, timestamp_ns=ts, service_ns=0)
            _SERVICE_NS.pack_into(frame, _SERVICE_NS_OFFSET, clock() - t_recv)
            if self._send(route, frame, "corrections"):
                counters.corrections_sent += 1
                s.corrections_sent += 1
            record(sid, clock() - t_recv, t1 - t0)

    def _run_engine(self, s: StreamSession, route: bytes, header: Header, count: int,
                    t_recv: int) -> None:
        """The packet's rounds through the stream's compiled engine (``transport.engine``):
        one call per CORRECTION it triggers, the GIL released inside; every round is
        recorded with its service time (rounds before a decode finish with it)."""
        record, clock, sid = self.recorder.record, time.perf_counter_ns, s.stream_id
        seq, ts = header.round + count - 1, header.timestamp_ns
        counters = self.counters
        i = o = 0
        while True:
            t0 = clock()
            status, i_next, o, frame = s.engine_step(i, o, seq, ts, t_recv)
            t1 = clock()
            done = i_next - i
            s.queued -= done
            counters.backlog_rounds -= done
            if status == STEP_DONE:
                for _ in range(done):
                    record(sid, t1 - t_recv, 0)
                return
            if status == STEP_NO_SOLUTION:
                self._decoder_failed(s, i_next - 1, DecoderError(
                    s.plan.engine.no_solution_reason(header.round + i_next - 1)),
                    header)
                for _ in range(done):
                    record(sid, clock() - t_recv, t1 - t0)
                return
            _SERVICE_NS.pack_into(frame, _SERVICE_NS_OFFSET, clock() - t_recv)
            if self._send(route, frame, "corrections"):
                counters.corrections_sent += 1
                s.corrections_sent += 1
            t2 = clock()
            for _ in range(done - 1):
                record(sid, t1 - t_recv, 0)
            record(sid, t2 - t_recv, t1 - t0)
            i = i_next

    def _decoder_failed(self, s: StreamSession, i: int, e: Exception, header: Header) -> None:
        """Drop the rest of the shot: DECODER_ERROR then SYNDROMES_DROPPED, both headed like
        a reply to the SYNDROME ``header`` whose rounds failed (its round and timestamp,
        ``ref_type`` SYNDROME: docs/protocol.md §6.5), as the ring loop heads them."""
        first, last = s.fail(i)
        self._error_log.count(_peer(s.route), "DECODER_ERROR")
        log.warning("decoder_error", extra={"qecd": {
            "stream_id": s.stream_id, "exception": type(e).__name__, "detail": str(e)[:200],
            "dropped_first": first, "dropped_last": last, "next_round": s.next_round}})
        self._send_error(s, ErrorCode.DECODER_ERROR, decoder_failed_reason(
            s.plan.decoder_name, s.stream_id, type(e).__name__, str(e)), header)
        self._send_error(s, ErrorCode.SYNDROMES_DROPPED, dropped_reason(
            first, last, s.stream_id, s.next_round), header)

    def _on_hello(self, route, owner, header, payload, frame, now_ns) -> None:
        # a large HELLO (a DEM of megabytes) is decoded and hashed in the build worker
        # (not while a post-quantum handshake may be required: that needs the HELLO here)
        large = (len(payload) > self.config.offloop_hello_bytes and self._pq.pq is None
                 and not self._pq.required)
        hello = None if large else decode_hello(header, payload)
        if isinstance(owner, bytes) and owner[:1] != b"\x00":
            # plain mode owns streams by routing id: one a client chose could be claimed by
            # the next client choosing it once the owner is gone. libzmq's automatic ids start
            # with a zero byte, which no client may choose (issue 13, docs/security.md).
            raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO: a client-chosen ZeroMQ routing "
                                "id cannot own a stream (another client could claim it after "
                                "a disconnect): leave the DEALER's routing id unset, or use "
                                "CURVE, where streams follow the client's key")
        if self._shutting_down:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "HELLO: the server is shutting down "
                                "and opens no new streams")
        pq = False if large else self._pq.admit(hello, owner)
        if hello is not None and hello.resume is not None:
            self._resume(route, owner, header, hello.resume, now_ns)
            return
        try:
            key = None if large else plan_key(hello, self.limits)
        except LimitError as e:
            self._builds.note_refused(e.limit, e.reason, owner)
            raise
        if pq and hello.pq_resume is not None:
            self._pq_resume(route, owner, header, hello, bytes(payload), key, now_ns)
            return
        waiting = self._builds.waiting_count()
        if len(self._streams) + waiting >= self.config.max_streams:
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO: expected fewer than "
                                f"max_streams={self.config.max_streams} open streams, got "
                                f"{len(self._streams)} open and {waiting} being built")
        mine = len(self._by_owner.get(owner, ()))
        if mine >= self.config.max_streams_per_client:
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO: expected fewer than "
                                f"max_streams_per_client={self.config.max_streams_per_client}"
                                f" open streams for this client, got {mine}")
        if large:  # its fields are known once the worker decoded it (_collect_builds)
            pending = PendingHello(route, owner, bytes(frame[:HEADER_SIZE]), header.round,
                                   header.timestamp_ns, False)
            self._builds.submit(None, None, pending, raw=(header, payload))
            return
        if hello.transport == "shm":
            self._check_rings(owner)
        pending = PendingHello(route, owner, bytes(frame[:HEADER_SIZE]), header.round,
                                header.timestamp_ns, hello.want_faults, hello.transport,
                                hello.describe, hello.input,
                                (hello, bytes(payload)) if pq else None)
        plan = self.pool.get(key)
        if plan is not None:
            self._open(plan, pending)
            return
        self._builds.submit(key, hello, pending)

    def _check_rings(self, owner: bytes | str, waiting: int = 0) -> None:
        rings = sum(1 for sid in self._by_owner.get(owner, ())
                    if self._streams[sid].shm is not None)
        rings += self._builds.waiting_for(owner, "shm") + waiting
        if rings >= self.config.max_ring_streams_per_client:
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO: expected fewer than "
                                f"max_ring_streams_per_client="
                                f"{self.config.max_ring_streams_per_client} shared-memory "
                                f"streams for this client, got {rings}")

    def _collect_builds(self) -> None:
        self._collect_shm_jobs()
        for waiting, plan, err in self._builds.collect():
            for p in waiting:
                if err is None and self._shutting_down:
                    e2 = ProtocolError(ErrorCode.SHUTTING_DOWN, "HELLO: the server is "
                                       "shutting down and opens no new streams")
                elif err is None and len(self._streams) >= self.config.max_streams:
                    e2 = ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO: expected fewer than "
                                       f"max_streams={self.config.max_streams} open streams")
                else:
                    e2 = err
                if e2 is None and p.transport == "shm":
                    try:  # (a large HELLO's transport is known only now)
                        self._check_rings(p.owner)
                    except ProtocolError as e:
                        e2 = e
                if e2 is None:
                    self._open(plan, p)
                else:
                    self._reply_error(p.route, p.owner, e2, p.head, None,
                                      time.perf_counter_ns())

    def _open(self, plan: StreamPlan, p: PendingHello) -> None:
        sid = self._next_id
        self._next_id += 1
        if p.transport == "shm":  # the slow part (decoder, region, kernels) on the worker
            self._builds.run_job((p, plan, sid),
                                 lambda: self._shm.create(plan, sid, p.want_faults),
                                 lambda srv: srv.close())
            return
        self._register(plan, p, sid, None)

    def _collect_shm_jobs(self) -> None:
        """Answer the ring HELLOs whose loop the worker has created: start it and ACCEPT,
        or release it and answer the error."""
        for (p, plan, sid), srv, exc in self._builds.collect_jobs():
            err = None
            if exc is not None:
                self.counters.drop("internal_exception")
                log.error("shm_open_failed", exc_info=exc, extra={"qecd": {"stream_id": sid}})
                exc.__traceback__ = None  # no reference cycle through the job's frames
                err = ProtocolError(ErrorCode.INTERNAL, f"internal server error while creating "
                                    f"the shared-memory stream ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})")
            elif self._shutting_down:
                err = ProtocolError(ErrorCode.SHUTTING_DOWN, "HELLO: the server is shutting "
                                    "down and opens no new streams")
            if err is None:
                try:
                    self._shm.start_created(srv)
                except Exception as e:
                    self.counters.drop("internal_exception")
                    log.error("shm_open_failed", exc_info=e, extra={"qecd": {"stream_id": sid}})
                    err = ProtocolError(ErrorCode.INTERNAL, f"internal server error while "
                                        f"starting the shared-memory stream "
                                        f"({type(e).__name__})")
                    srv = None
            if err is not None:
                if srv is not None:
                    srv.close()
                self._reply_error(p.route, p.owner, err, p.head, None, time.perf_counter_ns())
                continue
            self._register(plan, p, sid, srv)

    def _register(self, plan: StreamPlan, p: PendingHello, sid: int, shm) -> None:
        """Open stream ``sid`` (its ring loop ``shm`` already started, or None) and ACCEPT."""
        measurements = None
        if p.input == "measurements":
            try:  # compiled by the build (or an earlier stream): a lookup here
                measurements = plan.measurement_layout()
            except ProtocolError as e:
                self._reply_error(p.route, p.owner, e, p.head, None, time.perf_counter_ns())
                return
        kw = dict(owner=p.owner, route=p.route, want_faults=p.want_faults, limits=self.limits,
                  now_ns=self._awake_ns(time.perf_counter_ns()), describe=p.describe,
                  measurements=measurements)
        fast = self._fast
        if (fast is not None and shm is None and measurements is None
                and fast.takes_plan(plan)):
            slot, row = fast.reserve()
            try:
                s = fast_path.FastStreamSession(sid, plan, row=row, **kw)
                if not fast.register(slot, s):
                    s.detach()
                    fast.release(slot)
            except BaseException:
                fast.release(slot)
                raise
        else:
            s = StreamSession(sid, plan, **kw)
        s.shm = shm
        accept = s.accept()._replace(resume_token=self._resumes.issue(sid))
        if p.pq is not None:  # keys checked at HELLO: this signs and encapsulates (~1 ms)
            fields, s.pq = self._pq.respond(*p.pq, p.owner, sid)
            accept = accept._replace(**fields)
        if shm is not None:
            self._shm.track(s)
        self._streams[sid] = s
        self._by_owner.setdefault(p.owner, set()).add(sid)
        self.counters.streams_open += 1
        self.counters.streams_opened += 1
        self._send(p.route, encode_accept(accept, seq=p.seq, timestamp_ns=p.timestamp_ns),
                   "replies")
        k = plan.key
        log.info("stream_open", extra={"qecd": {
            "stream_id": sid, "peer": _peer(p.route), "owner": _owner_text(p.owner),
            "source": k.source, "experiment": k.experiment, "decoder": k.backend,
            "window": plan.window, "commit": plan.commit, "slice_sizes": len(plan.slice_sizes),
            "transport": p.transport, "shm_region": shm.region_name if shm else None,
            "pq": p.pq is not None, "streams_open": len(self._streams)}})

    def _pq_resume(self, route, owner, header, hello, body, key, now_ns) -> None:
        """A HELLO presenting a session token: hand its open stream to this connection
        (plain mode: the new routing id; CURVE: the same key, checked) with a fresh
        handshake and a new token (the presented one is spent), and ACCEPT it again."""
        s = self._pq.resume(hello, owner, self._streams)
        refuse_ring(s, "pq_resume")
        if key != s.plan.key:
            raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key 'pq_resume': expected the "
                                f"HELLO that opened stream {s.stream_id} ({s.plan.key}), got "
                                f"one for {key}")
        self._check_resume_room(s, owner, "pq_resume")
        fields, s.pq = self._pq.respond(hello, body, owner, s.stream_id)
        self._hand_over(s, route, owner, header, fields, now_ns, "pq_resume")

    def _resume(self, route, owner, header, req, now_ns) -> None:
        """A HELLO ``resume`` = {stream_id, token} (§6.9): hand the open stream to this
        connection with a fresh token, or refuse alike whatever failed (counted, logged)."""
        try:
            s = self._resumes.take(req, owner, self._streams)
        except ProtocolError:
            self.counters.refuse("resume")
            log.warning("stream_resume_refused", extra={"qecd": {
                "peer": _peer(route), "owner": _owner_text(owner),
                "stream_id": req.stream_id}})  # never the token
            raise
        self._check_resume_room(s, owner, "resume")
        self._hand_over(s, route, owner, header, {}, now_ns, "resume")

    def _check_resume_room(self, s: StreamSession, owner: bytes | str, key: str) -> None:
        mine = len(self._by_owner.get(owner, ()))
        if s.owner != owner and mine >= self.config.max_streams_per_client:
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"HELLO key {key!r}: expected fewer "
                                f"than max_streams_per_client="
                                f"{self.config.max_streams_per_client} open streams for this "
                                f"client, got {mine}")

    def _hand_over(self, s: StreamSession, route, owner, header, fields: dict, now_ns: int,
                   how: str) -> None:
        """Move stream ``s`` to ``owner`` (plain mode: the new routing id; CURVE: the same
        key) and ACCEPT it again with its next round and a fresh resume token (the
        presented tokens are spent)."""
        if s.owner != owner:
            mine = self._by_owner.get(s.owner)
            mine.discard(s.stream_id)
            if not mine:
                del self._by_owner[s.owner]
            self._by_owner.setdefault(owner, set()).add(s.stream_id)
            s.owner = owner
            if self._fast is not None:
                self._fast.rebind(s)  # the old routing id's SYNDROMEs no longer match
        s.route = route
        s.last_seen_ns = self._awake_ns(now_ns)
        accept = s.accept()._replace(next_round=s.next_round,
                                     resume_token=self._resumes.issue(s.stream_id), **fields)
        self.counters.streams_resumed += 1
        self._send(route, encode_accept(accept, seq=header.round,
                                        timestamp_ns=header.timestamp_ns), "replies")
        log.info("stream_resume", extra={"qecd": {
            "stream_id": s.stream_id, "peer": _peer(route), "owner": _owner_text(owner),
            "next_round": s.next_round, "how": how}})

    def _close(self, s: StreamSession, why: str, *, notify: bool) -> None:
        """Free a stream; with ``notify``, report its uncommitted rounds and send BYE."""
        del self._streams[s.stream_id]
        self._resumes.forget(s.stream_id)
        if self._fast is not None:
            self._fast.unregister(s)
        mine = self._by_owner.get(s.owner)
        if mine is not None:
            mine.discard(s.stream_id)
            if not mine:
                del self._by_owner[s.owner]
        self.counters.streams_open -= 1
        self.counters.streams_closed += 1
        shm = self._shm.close(s)
        unc = s.uncommitted()
        if notify:
            if unc is not None:
                self._send_error(s, ErrorCode.SYNDROMES_DROPPED, f"rounds {unc[0]}..{unc[1]} "
                                 f"of stream {s.stream_id} were received but will not be "
                                 f"corrected: stream closed ({why})")
            self._send(s.route, encode_bye(stream_id=s.stream_id, seq=s.next_round), "replies")
        log.info("stream_close", extra={"qecd": {
            "stream_id": s.stream_id, "why": why, "peer": _peer(s.route),
            "rounds_received": s.rounds_received, "corrections_sent": s.corrections_sent,
            "errors_sent": s.errors_sent, "uncommitted": list(unc) if unc else None,
            "shm": shm, "streams_open": len(self._streams)}})

    def _on_bye(self, route, owner, header, payload, frame, now_ns) -> None:
        decode_bye(header, payload)
        s = self._owned(header, owner, route, now_ns)
        self._close(s, "client BYE", notify=False)  # an incomplete shot is discarded (§9)
        self._send(route, encode_bye(stream_id=s.stream_id, seq=s.next_round,
                                     timestamp_ns=header.timestamp_ns), "replies")

    def _on_heartbeat(self, route, owner, header, payload, frame, now_ns) -> None:
        decode_heartbeat(header, payload)
        if header.stream_id:
            self._owned(header, owner, route, now_ns)
        else:
            for sid in self._by_owner.get(owner, ()):
                s = self._streams[sid]
                s.last_seen_ns = self._awake_ns(now_ns)
                s.route = route
        self._send(route, frame, "replies")  # the echo is byte-identical

    def _on_stats(self, route, owner, header, payload, frame, now_ns) -> None:
        if len(payload):  # a request; a reply's map is not one, whatever it holds
            raise ProtocolError(ErrorCode.BAD_PAYLOAD, "STATS request: expected an empty "
                                f"body, got {len(payload)} byte{'s' * (len(payload) != 1)}")
        s = self._owned(header, owner, route, now_ns) if header.stream_id else None
        if not self._stats.allow(route, now_ns):
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"STATS: expected at most "
                                f"{self.config.stats_budget_per_s} requests per second")
        if s is None:
            # ring rounds up to now
            self._shm.fold_all(self._streams.values(), self._awake_ns(now_ns))
            body = self.stats()
        else:
            self._shm.fold(s, self._awake_ns(now_ns))
            body = s.stats()
            body.update(self._shm.stream_stats(s))
            summ = self.recorder.stream_summary(s.stream_id)
            body.update({f"service_{k}": v for k, v in summ.items()})
        self._send(route, encode_stats(body, stream_id=header.stream_id, seq=header.round,
                                       timestamp_ns=header.timestamp_ns), "replies")

    def _on_error(self, route, owner, header, payload, frame, now_ns) -> None:
        try:  # ERROR is never answered with ERROR (§9): count and log it
            info = decode_error(header, payload)
            name = f"client_{_code_name(info.code)}"
        except ProtocolError:
            name = "client_bad_error"
        self.counters.drop("ERROR")
        self._error_log.count(_peer(route), name)

    def _on_unexpected(self, route, owner, header, payload, frame, now_ns) -> None:
        raise ProtocolError(ErrorCode.UNEXPECTED_TYPE, f"field 'msg_type': "
                            f"{MsgType(header.msg_type).name} is only sent by the server")

    # -- stats, housekeeping, shutdown ----------------------------------------------------
    def stream_rows(self) -> list[StreamRow]:
        """The open streams' figures for the per-stream metrics (read from the exporter's
        thread: one C-level copy of the stream table, then plain int reads)."""
        return [StreamRow(s.stream_id, s.rounds_received, s.corrections_sent, s.errors_sent,
                          max(0, s.next_round - s.committed), s.lag_ns)
                for s in list(self._streams.values())]

    def stats(self) -> dict[str, object]:
        """The whole-server STATS map (see docs/protocol.md §6.6)."""
        c = self.counters
        summ = self.recorder.summary()
        try:
            cpus = ",".join(str(x) for x in sorted(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            cpus = ""
        return {
            "server": self.limits.server, "streams_open": len(self._streams),
            "uptime_ns": time.perf_counter_ns() - self._t0,
            "packets_received": c.packets_received, "rounds_received": c.rounds_received,
            "corrections_sent": c.corrections_sent, "backlog_rounds": c.backlog_rounds,
            "input_lag_ns": c.input_lag_ns,
            "errors_sent": sum(c.errors_sent.values()), "errors_by_code": dict(c.errors_sent),
            "dropped": dict(c.dropped), "streams_opened": c.streams_opened,
            "streams_timed_out": c.streams_timed_out, "builds": c.builds,
            "connections_refused": c.connections_refused,
            "streams_resumed": c.streams_resumed, "hellos_refused": dict(c.hellos_refused),
            "shm_streams_open": sum(s.shm is not None for s in self._streams.values()),
            "shm_streams_opened": self._shm.opened,
            "shm_syndrome_packets": c.shm_syndrome_packets,
            "shm_records_lost": c.shm_records_lost,
            "shm_loop_cpu_seconds": round(c.shm_loop_cpu_s, 3),
            "plan_cache_bytes": c.plan_cache_bytes, "plan_cache_plans": c.plan_cache_plans,
            "hellos_queued": len(self._hellos),
            "service_count": summ["count"],
            **{f"service_{k}": v for k, v in summ.items() if k != "count"},
            "cpu_affinity": cpus,
        }

    def _on_refused(self, address: str, reason: str) -> None:
        """A connection the CURVE handshake refused (called on the ZAP handler's thread):
        counted, and logged at most once a second with the count since the last line."""
        c = self.counters
        c.connections_refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= 1.0:
            self._refused_logged = now
            log.warning("connection_refused", extra={"qecd": {
                "address": address, "reason": reason, "refused_total": c.connections_refused}})

    def _mark(self, now_ns: int, wait_ns: int) -> None:
        """Account the loop's stalls: the time since the previous mark beyond what the loop
        was allowed (the poll wait it asked for, plus ``_TURN_ALLOWANCE_NS`` for its work)
        is time it could not run (the process or the VM stalled), not owners' silence."""
        self._stalled_ns += max(0, now_ns - self._mark_ns - self._mark_allowed)
        self._mark_ns, self._mark_allowed = now_ns, wait_ns + _TURN_ALLOWANCE_NS

    def _awake_ns(self, now_ns: int) -> int:
        """The liveness clock: monotonic time minus the time the loop was stalled (could not
        run at all). Streams' ``last_seen_ns`` and their silence are measured on it, so a
        stall of the server itself never closes a healthy stream."""
        return now_ns - self._stalled_ns

    def _housekeeping(self, now_ns: int) -> None:
        if self._gc is not None:  # collections here, not wherever an allocation lands
            idle = self.counters.packets_received == self._hk_packets
            full = self._gc.full_collections
            self._gc.tick(idle)
            if self._gc.full_collections != full:
                log.info("gc_full", extra={"qecd": {"ms": round(self._gc.last_full_ms, 1),
                                                    "young": self._gc.young_collections}})
        self._hk_packets = self.counters.packets_received
        if self._builds:
            self._collect_builds()  # the wake-up byte is the fast path; this the safety net
        self.counters.input_lag_ns = max((s.lag_ns for s in self._streams.values()), default=0)
        for s, why, notify in self._shm.reap(self._streams.values(), self._awake_ns(now_ns)):
            self._close(s, why, notify=notify)
        timeout_ns = self.limits.timeout_ms * 1_000_000
        awake = self._awake_ns(now_ns)
        for s in [s for s in self._streams.values() if awake - s.last_seen_ns > timeout_ns]:
            self.counters.streams_timed_out += 1
            self._close(s, f"owner silent for more than {self.limits.timeout_ms} ms",
                        notify=True)
        expired = 0
        if now_ns >= self._expire_at:  # plans nobody used for plan_cache_idle_s
            self._expire_at = now_ns + _SEC
            expired = self.pool.expire(self.config.plan_cache_idle_s,
                                       {s.plan.key for s in self._streams.values()})
            c = self.counters
            c.plan_cache_bytes, c.plan_cache_plans = self.pool.nbytes, len(self.pool)
            c.plan_cache_evictions = self.pool.evicted
        if expired or self.counters.streams_closed - self._trimmed_at >= 64:  # memory freed
            self._trimmed_at = self.counters.streams_closed
            self._builds.trim_memory()
        self.recorder.fold()  # after the ring streams' records came in
        self._error_log.flush(now_ns)
        self._errors.prune(now_ns)  # each does the work once per second at most
        self._stats.prune(now_ns)

    def _shutdown(self) -> None:
        self._shutting_down = True
        log.info("shutdown_begin", extra={"qecd": {"streams_open": len(self._streams)}})
        while self._hellos:  # each gets SHUTTING_DOWN, in its peer's order
            self._handle_now(*self._hellos.pop())
        deadline = time.perf_counter_ns() + int(self.config.drain_s * _SEC)
        while time.perf_counter_ns() < deadline and self._read_batch():
            pass
        for w in self._builds.cancel():  # HELLOs still waiting for a plan or a ring
            p = w if isinstance(w, PendingHello) else w[0]  # a ring job: (hello, plan, sid)
            self._reply_error(p.route, p.owner, ProtocolError(
                ErrorCode.SHUTTING_DOWN, "HELLO: the server is shutting down"),
                p.head, None, 0)
        for s in list(self._streams.values()):
            self._close(s, "server shutdown", notify=True)
        self._shm.join_zombies()  # no region outlives the server
        self.recorder.fold()
        self._sock.close(self.config.shutdown_linger_ms)
        log.info("shutdown_end", extra={"qecd": self.stats()})


def _ipc_files(endpoints: list[str]) -> dict[str, tuple[int, int]]:
    """The socket files of bound ``ipc://`` endpoints, each with its (device, inode)."""
    out = {}
    for ep in endpoints:
        path = ep[len("ipc://"):] if ep.startswith("ipc://") else ""
        if path and not path.startswith("@"):  # "@name": Linux abstract namespace, no file
            with contextlib.suppress(OSError):
                st = os.stat(path)
                out[path] = (st.st_dev, st.st_ino)
    return out


def _remove_ipc_files(files: dict[str, tuple[int, int]]) -> None:
    """Remove the socket files this server bound (libzmq leaves them behind), unless another
    process has bound the same path since (a different inode there now)."""
    for path, ident in files.items():
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == ident:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("ipc_unlink_failed", extra={"qecd": {"path": path, "error": str(e)}})


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def _owner_text(owner: bytes | str) -> str:
    return owner.hex() if isinstance(owner, bytes) else str(owner)


def build_cpus_beside(cpu: int, chosen: frozenset[int] | None = None,
                      allowed: set[int] | None = None) -> frozenset[int] | None:
    """Where builds run when the server is pinned to ``cpu``: ``chosen`` if given, else the
    other CPUs this process may use (``allowed``, default its affinity now), else None
    (one CPU: builds share it).

    >>> build_cpus_beside(0, allowed={0, 1}), build_cpus_beside(0, allowed={0})
    (frozenset({1}), None)
    >>> build_cpus_beside(0, frozenset({3}), allowed={0, 1})
    frozenset({3})
    """
    if chosen:
        return frozenset(chosen)
    if allowed is None:
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    return frozenset(allowed - {cpu}) or None


def run_server(config: ServerConfig, *, metrics_port: int | None = None,
               metrics_addr: str = "127.0.0.1", metrics_streams: int = MAX_STREAM_LABELS,
               record_path: str | None = None, cpu: int | None = None) -> int:
    """``qecd serve``: serve until SIGINT/SIGTERM, shut down gracefully, return 0.

    Installs the signal handlers, JSON logging on stderr, the Prometheus endpoint
    (``metrics_addr:metrics_port``, per-stream labels for ``metrics_streams`` streams), pins
    the process to ``cpu`` if given, removes shared-memory regions whose creator is dead (a
    server killed with -9), loads the ZeroMQ fast path's kernel (:meth:`Server.warm_fast_path`),
    freezes the GC generation of start-up objects, removes the socket
    files of ``ipc://`` endpoints at exit, and writes the per-round arrays to ``record_path``
    (``.npz``) at exit.
    """
    configure_json_logging()
    return_large_blocks()  # freed plans give their memory back (see its docs)
    if cpu is not None:
        config = dataclasses.replace(config, build_cpus=build_cpus_beside(cpu, config.build_cpus))
        os.sched_setaffinity(0, {cpu})
    from qecd.transport.shm.ring import sweep_stale_regions

    swept = sweep_stale_regions()  # rings left by a server (or client) killed with -9
    if swept:
        log.warning("stale_regions_swept", extra={"qecd": {"count": len(swept),
                                                            "names": swept[:20]}})
    server = Server(config)
    httpd = None
    try:
        if metrics_port is not None:
            httpd = start_metrics_http(metrics_port, server.counters, server.recorder,
                                       addr=metrics_addr, stream_rows=server.stream_rows,
                                       max_stream_labels=metrics_streams)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: server.request_shutdown())
        # every engine kind before serving (~1 s each from a warm cache): a kind loaded when
        # its first stream opens holds the loop that long (a live stream's HEARTBEAT p99 went
        # from 0.7 ms to 580 ms while HELLOs opened the server's first pymatching streams)
        server.warm_fast_path(every_kind=True)
        gc.collect()
        gc.freeze()
        log.info("server_start", extra={"qecd": {
            "endpoints": server.endpoints, "pid": os.getpid(),
            "metrics": None if httpd is None else f"{metrics_addr}:{httpd.server_port}",
            "metrics_port": None if httpd is None else httpd.server_port,
            "curve": config.curve is not None, "timeout_ms": config.limits.timeout_ms,
            "max_streams": config.max_streams, "cpu": cpu}})
        server.serve()
    finally:
        server.close()
        if httpd is not None:
            httpd.shutdown()
        if record_path:
            server.recorder.save_npz(record_path)
            log.info("record_written", extra={"qecd": {"path": record_path,
                                                       "rounds": server.recorder.count}})
    return 0
