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
        Distinct decoder plans being built at once before HELLO gets SERVER_BUSY.
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
        While a decoder plan builds on the worker thread, the interpreter's GIL switch
        interval is lowered to this (``sys.setswitchinterval``; restored when no build is
        pending) so the loop thread gets the GIL back sooner; 0 leaves it alone. C code that
        holds the GIL (stim, PyMatching graph construction) still delays the loop.
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
    record_capacity: int = 1 << 20
    shm_record_capacity: int = 1 << 18
    curve: CurveServerKeys | None = None
    drain_s: float = 2.0
    shutdown_linger_ms: int = 1000
    housekeeping_s: float = 0.1
    build_switch_interval_s: float = 0.0002
    pq: PqServer | None = None
    pq_required: bool = False
