"""The server's shared-memory streams: start each ring loop, watch it, tear it down.

Shared-memory streams (HELLO ``transport="shm"``, ``uf`` decoder only)
    The control channel stays ZeroMQ: HELLO builds (or reuses) the plan as usual, then the
    server compiles the plan's decoder for a Numba loop, creates an owner-only ring pair
    (:class:`~qecd.transport.shm_service.ShmStreamServer`, one per stream), starts its
    GIL-free thread and answers ACCEPT with ``shm_region``, ``shm_slots``, ``shm_slot_size``
    and ``corrections_per_shot``. The stream's rounds and corrections then flow only over
    the ring (a SYNDROME over ZeroMQ for it is refused with ``UNEXPECTED_TYPE``); its
    ZeroMQ stream id is the ring's. Teardown: BYE over ZeroMQ (the loop is stopped, joined
    and the region unlinked), BYE over the ring (the loop exits; housekeeping reaps it),
    the stream timeout (ring traffic and ZeroMQ packets from the owner both count as
    activity) and shutdown (every loop stopped and every region unlinked).

A region is never unmapped under a running loop: a loop that has not returned after its
stop request (e.g. still being compiled) is kept as a *zombie* and released from
housekeeping once it has, and the server joins every zombie before it closes.

:class:`ShmStreams` holds that state for the :class:`~qecd.transport.server.Server`; the
server keeps the stream table and sends every ZeroMQ reply. The whole life of a ring stream
runs in ``tests/test_shm_control.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from qecd.transport.metrics import ServerCounters
from qecd.transport.session import StreamPlan, StreamSession

__all__ = ["ShmStreams"]

log = logging.getLogger("qecd.server")


class ShmStreams:
    """The ring loops of one server's shared-memory streams.

    Parameters
    ----------
    counters : ServerCounters
        Where a closed stream's rounds and corrections are added, and where a failed
        cleanup counts as drop ``internal_exception``.
    record_capacity : int
        Packets whose service time each loop records.

    Attributes
    ----------
    opened : int
        Ring streams opened so far (STATS ``shm_streams_opened``).
    """

    def __init__(self, counters: ServerCounters, *, record_capacity: int) -> None:
        self.counters = counters
        self.record_capacity = record_capacity
        self.opened = 0
        self._zombies: list = []  # stopped loops whose thread had not returned yet
        self._seen: dict[int, int] = {}  # stream id -> ring activity at the last look

    def start(self, plan: StreamPlan, sid: int, want_faults: bool):
        """A started ShmStreamServer for a new stream (its own compiled decoder: the
        compiled plan's scratch buffers are per loop)."""
        from qecd.decoder.compiled_stream import CompiledStream
        from qecd.transport.shm_service import ShmStreamServer

        srv = ShmStreamServer(CompiledStream(plan.decoder), stream_id=sid,
                              want_faults=want_faults,
                              record_capacity=self.record_capacity,
                              idle_timeout_s=0.0)  # 0: no loop timeout; the server's applies
        try:
            srv.start()
        except BaseException:
            srv.close()
            raise
        return srv

    def track(self, s: StreamSession) -> None:
        """Start watching the ring of ``s`` (its ``shm`` just set to a started loop)."""
        self.opened += 1
        self._seen[s.stream_id] = 0

    def close(self, s: StreamSession) -> dict | None:
        """Stop, join and unlink a stream's ring (idempotent); its loop counters, or None."""
        srv = s.shm
        if srv is None:
            return None
        s.shm = None
        self._seen.pop(s.stream_id, None)
        srv.stop()
        srv.join(timeout=2.0)
        self.release(srv)
        c = srv.counters()
        c["exit_code"] = srv.exit_code
        self.counters.rounds_received += c["rounds"]
        self.counters.corrections_sent += c["corrections"]
        s.rounds_received += c["rounds"]
        s.corrections_sent += c["corrections"]
        s.next_round = s.committed = c["next_round"]
        return c

    def release(self, srv) -> None:
        """Unmap and unlink a stopped loop's region; a loop still running (e.g. still being
        compiled) is kept and retried from housekeeping, never unmapped under it."""
        t = srv._thread
        if t is not None and t.is_alive():
            if srv not in self._zombies:
                self._zombies.append(srv)
            return
        if srv in self._zombies:
            self._zombies.remove(srv)
        try:
            srv.close()  # stop + join (done) + close + unlink
        except Exception as e:  # never let one region's cleanup stop the loop
            self.counters.drop("internal_exception")
            log.error("shm_close_failed", exc_info=e, extra={"qecd": {
                "stream_id": srv.stream_id, "shm_region": srv.region_name}})

    def reap(self, streams: Iterable[StreamSession],
             now_ns: int) -> list[tuple[StreamSession, str, bool]]:
        """Housekeeping: release zombies that have returned; ring traffic refreshes a
        stream's liveness. Returns the streams whose loop returned (client BYE over the
        ring, or a failure) as ``(session, why, notify)`` for the server to close."""
        for srv in list(self._zombies):
            self.release(srv)
        shm_streams = [s for s in streams if s.shm is not None]
        if not shm_streams:
            return []
        from qecd.transport.shm_stream import CTL_CORRECTIONS, CTL_ERRORS, CTL_ROUNDS, EXIT_BYE

        ended = []
        for s in shm_streams:
            srv = s.shm
            t = srv._thread
            if t is not None and not t.is_alive():
                code = srv.exit_code
                if code == EXIT_BYE:  # the loop already answered BYE over the ring
                    ended.append((s, "client BYE over the shared-memory ring", False))
                else:
                    ended.append((s, f"shared-memory loop exited (code {code})", True))
                continue
            c = srv.ctl
            seen = int(c[CTL_ROUNDS]) + int(c[CTL_ERRORS]) + int(c[CTL_CORRECTIONS])
            if seen != self._seen.get(s.stream_id):
                self._seen[s.stream_id] = seen
                s.last_seen_ns = now_ns
        return ended

    def join_zombies(self, timeout_s: float = 5.0) -> None:
        """Wait for every stopped loop still running, then release its region."""
        for srv in list(self._zombies):
            srv.join(timeout=timeout_s)
            self.release(srv)
