"""The server's configuration: one frozen dataclass, everything ``qecd serve`` can set.

Example
-------
>>> cfg = ServerConfig(binds=("tcp://127.0.0.1:0",), max_streams=16)
>>> cfg.max_streams, cfg.batch, cfg.limits.timeout_ms > 0
(16, 64, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qecd.transport.auth import CurveServerKeys
from qecd.transport.pqc import PqServer
from qecd.transport.server.session import SessionLimits

__all__ = ["ServerConfig"]


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``qecd serve`` can set.

    Attributes
    ----------
    binds : tuple of str
        ZeroMQ endpoints to bind (``tcp://127.0.0.1:5555``, ``ipc:///tmp/qecd.sock``; port 0
        picks a free port, see :attr:`Server.endpoints`).
    limits : SessionLimits
        Per-stream limits announced in ACCEPT (``timeout_ms`` is the stream timeout).
    max_streams : int
        Open streams (plus HELLOs being built) before HELLO gets SERVER_BUSY.
    max_streams_per_client : int
        Open streams one owner (routing id, or CURVE key) may hold (SERVER_BUSY above), so
        one client cannot take every slot.
    max_ring_streams_per_client : int
        Shared-memory streams (open or being set up) one owner may hold: each has a loop
        thread that spins for 1 ms after each packet, so the two CPUs of a small host are
        shared by few of them (SERVER_BUSY above).
    sndhwm, rcvhwm : int
        ZeroMQ high-water marks of the ROUTER, messages per peer.
    batch : int
        Packets handled per loop turn before wake-ups and housekeeping are looked at.
    error_budget_per_s, stats_budget_per_s : int
        ERROR replies / STATS answers per peer per second (beyond: counted drop / SERVER_BUSY).
    max_pending_builds : int
        Decoder plan builds queued or running at once before HELLO gets SERVER_BUSY
        (``build_queue_full``).
    build_process : bool
        Build plans in a separate build worker process (the default): no part of a build
        holds the GIL the loop needs except turning the finished plan's arrays into objects
        (see docs/server.md). False builds on the server's build thread (embedding).
    build_timeout_s : float
        Time budget of one build in the worker; beyond, the worker is killed and replaced and
        the HELLO gets BAD_HELLO (``time_budget``).
    max_plan_bytes : int
        Size budget of one plan (its pickled size); above, BAD_HELLO (``size_budget``).
    plan_cache_bytes : int
        Bytes of plans the server keeps for reuse (least recently used evicted first; an
        evicted plan's memory is returned once its last stream closes).
    max_builds_per_client : int
        HELLOs one owner may have waiting for a build at once (SERVER_BUSY above,
        ``client_builds_in_flight``).
    builds_per_minute_per_client : int
        Builds one owner may start in any 60 s (SERVER_BUSY above,
        ``client_builds_per_minute``).
    build_worker_max_rss : int
        Resident bytes above which the build worker is replaced after a build.
    build_worker_idle : bool
        Run the build worker in Linux's ``SCHED_IDLE`` class instead of at nice 10 (see
        :class:`~qecd.transport.server.build_worker.BuildWorker`; ``qecd serve
        --build-worker-idle``).
    rcvbuf : int
        Kernel receive buffer of each TCP connection, bytes (``ZMQ_RCVBUF``; 0 keeps the
        system's autotuned size, up to ``net.ipv4.tcp_rmem``'s 6 MB). libzmq reads a large
        message straight into it in calls as large as the kernel holds, and its I/O thread
        serves every connection: while 10 clients send 5-8 MB HELLOs at once, one read may
        copy megabytes and the live streams' packets wait behind it. A smaller buffer bounds
        each read, so the I/O thread turns between connections sooner (docs/deploy.md,
        "Builds beside live streams, by CPU", for what was measured).
    build_cpus : frozenset of int or None
        CPUs the build thread (which unpickles arriving plans, holding the GIL for a few
        milliseconds) and the build worker run on; None: wherever the process may run.
        ``qecd serve --cpu C`` sets it to the server's other CPUs (``--build-cpus`` chooses):
        a thread busy on the loop's CPU keeps a woken loop waiting for the scheduler's next
        tick (4 ms at HZ=250) while the other CPU idles, where on separate CPUs the loop
        takes the GIL back within the switch interval.
    oversize_replies : bool
        False (the default): ``ZMQ_MAXMSGSIZE`` is ``max_frame``, so ZeroMQ drops the
        connection of a peer that sends a larger packet before reading it (a 16 MB frame
        read and refused cost the server ~30 ms of CPU; a flood of them starved every
        stream). True: packets up to twice ``max_frame`` are read and answered ``OVERSIZE``
        (larger ones still drop the connection).
    gc_at_housekeeping : bool
        Python's cyclic garbage collector runs from the loop's housekeeping instead of at
        allocation while the server serves (:mod:`~qecd.transport.server.gc_pauses`: a
        fuzz's collections paused the loop 4-200 ms at a time).
    plan_cache_idle_s : float
        A cached plan neither asked for by a HELLO nor used by an open stream for this long
        is dropped (and its memory returned).
    hello_queue : int
        Packets that may wait in the HELLO queue (HELLOs wait while streams are open, and a
        peer's later packets behind its HELLO; :mod:`~qecd.transport.server.hello_queue`);
        a HELLO beyond gets ``SERVER_BUSY``.
    offloop_hello_bytes : int
        HELLO bodies larger than this are not decoded or hashed on the loop: the build worker
        decodes and keys them (every such HELLO counts as a build for the client budgets).
    record_capacity : int
        Rounds kept raw in the service-time ring.
    shm_record_capacity : int
        Packets each shared-memory loop's own record ring holds between two housekeeping
        folds into the service-time ring (the default, 2^18 with 17 bytes each = 4.5 MB per
        stream, covers 0.26 s of a 1 µs cycle: more than twice ``housekeeping_s``); packets
        overwritten before a fold are counted in ``shm_records_lost``.
    curve : CurveServerKeys or None
        CURVE encryption and allow-list authentication; None = plain.
    drain_s, shutdown_linger_ms : float, int
        Graceful shutdown: how long to keep answering queued packets; how long the socket
        may linger to deliver the final ERROR/BYE messages.
    housekeeping_s : float
        Period of timeouts, histogram folding and log summaries.
    pq : PqServer or None
        The opt-in post-quantum handshake on HELLO (docs/protocol.md §6.8): the server's
        ML-DSA-65 key that signs session tokens; None = off (HELLOs carrying it are refused).
    pq_required : bool
        Refuse HELLOs without the handshake (BAD_HELLO); needs ``pq``.
    build_switch_interval_s : float
        While a build or job is pending on the server's build thread (which waits for the
        worker, then turns its plan into objects), the interpreter's GIL switch interval is
        lowered to this (``sys.setswitchinterval``; restored when none is pending) so the
        loop thread gets the GIL back sooner; 0 leaves it alone.
    fast_path : bool
        Serve SYNDROME packets of compiled-engine streams from compiled code that drives
        libzmq itself (:mod:`qecd.transport.server.fast_path`; plain servers only, where
        pyzmq's libzmq is reachable). False keeps every packet on the Python path (the
        reference the fast path is tested against).
    fast_commit_s : float
        While packets flow, the fast path returns to the Python loop (which commits its
        totals and service records) at most this often; 0 returns after every busy spell.
    io_thread_nice : int
        Nice value given to the I/O thread of the server's own ZeroMQ context when the
        process may run on one CPU only (``qecd serve --cpu``), so that a send does not hand
        that CPU to it in the middle of serving a packet
        (:mod:`qecd.transport.server.io_threads`); 0 leaves it alone.
    """

    binds: tuple[str, ...] = ("tcp://127.0.0.1:5555",)
    limits: SessionLimits = field(default_factory=SessionLimits)
    max_streams: int = 1024
    max_streams_per_client: int = 256
    max_ring_streams_per_client: int = 4
    sndhwm: int = 10_000
    rcvhwm: int = 10_000
    batch: int = 64
    error_budget_per_s: int = 1000
    stats_budget_per_s: int = 100
    max_pending_builds: int = 8
    build_process: bool = True
    build_timeout_s: float = 30.0
    max_plan_bytes: int = 128 << 20
    plan_cache_bytes: int = 256 << 20
    max_builds_per_client: int = 2
    builds_per_minute_per_client: int = 30
    build_worker_max_rss: int = 2 << 30
    build_worker_idle: bool = False
    build_cpus: frozenset[int] | None = None
    offloop_hello_bytes: int = 64 << 10
    hello_queue: int = 1024
    plan_cache_idle_s: float = 60.0
    gc_at_housekeeping: bool = True
    oversize_replies: bool = False
    record_capacity: int = 1 << 20
    shm_record_capacity: int = 1 << 18
    curve: CurveServerKeys | None = None
    drain_s: float = 2.0
    shutdown_linger_ms: int = 1000
    housekeeping_s: float = 0.1
    build_switch_interval_s: float = 0.0002
    pq: PqServer | None = None
    pq_required: bool = False
    fast_path: bool = True
    fast_commit_s: float = 0.001
    io_thread_nice: int = 19
    rcvbuf: int = 0
