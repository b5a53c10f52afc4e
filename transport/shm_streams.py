"""The server's shared-memory streams: start each ring loop, watch it, tear it down.

Shared-memory streams (HELLO ``transport="shm"``, any decoder)
    The control channel stays ZeroMQ: HELLO builds (or reuses) the plan as usual, then the
    server compiles the plan's decoder for a Numba loop (``uf``: the whole window engine,
    :class:`~qecd.decoder.compiled_stream.CompiledStream`; any other backend: a fork of the
    plan's stream decoder, which the loop calls from Python only when a window is due, see
    :mod:`qecd.transport.shm_host_loop`; those decodes hold the GIL, so they compete with
    the ZeroMQ loop thread as ZeroMQ streams' decodes do), creates an owner-only ring pair
    (:class:`~qecd.transport.shm_service.ShmStreamServer`, one per stream), starts its
    GIL-free thread and answers ACCEPT with ``shm_region``, ``shm_slots``, ``shm_slot_size``
    and ``corrections_per_shot``. The stream's rounds and corrections then flow only over
    the ring (a SYNDROME over ZeroMQ for it is refused with ``UNEXPECTED_TYPE``); its
    ZeroMQ stream id is the ring's. Teardown: BYE over ZeroMQ (the loop is stopped, joined
    and the region unlinked), BYE over the ring (the loop exits; housekeeping reaps it),
    the stream timeout (ring traffic and ZeroMQ packets from the owner both count as
    activity) and shutdown (every loop stopped and every region unlinked).

Live metrics of a ring stream
    The loop keeps running totals in its control array (rounds served, ERRORs and
    CORRECTIONs sent, the next round it expects) and one record per processed SYNDROME
    *packet* (service time, a flag saying the packet triggered a decode, lag). The server
    folds each live loop's progress in from housekeeping, from the STATS handler just
    before it answers, and once more when the stream closes (after the loop was joined):
    the deltas of the totals go into :class:`~qecd.transport.metrics.ServerCounters`
    (``rounds_received``, ``corrections_sent``, and ring ERRORs under the code
    :data:`SHM_ERRORS`, since the loop counts them without their codes) and into the
    stream's session (``rounds_received``, ``corrections_sent``, ``errors_sent``,
    ``next_round``); the new records go into the
    :class:`~qecd.transport.metrics.ServiceRecorder` as one entry per packet, under the
    stream's id: ``service_ns`` is the packet's service time as the loop measured it (ring
    receive to the last reply's doorbell, or to the round stored; charged to the packet's
    last round), ``decode_ns`` the same time when the packet triggered a decode, else 0
    (the loop does not time the decode apart). The client library sends one round per
    packet, so entries and rounds then coincide; a loop stops recording when its
    ``record_capacity`` packets are full while it keeps serving, so after that the
    service-time count falls behind the rounds. Every quantity is folded as a delta from
    what was folded before, so nothing is counted twice. The loop publishes only the next
    round it expects, not the first uncommitted one; ``next_round`` stands for both
    (``rounds_committed`` in STATS), as it always has at close.

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
from dataclasses import dataclass

import numpy as np

from qecd.transport.metrics import ServerCounters, ServiceRecorder
from qecd.transport.session import StreamPlan, StreamSession

__all__ = ["ShmStreams", "SHM_ERRORS"]

log = logging.getLogger("qecd.server")

#: ``errors_by_code`` key of ERRORs a ring loop sent (the loop counts them, not their codes)
SHM_ERRORS = "shm_ring"


@dataclass
class _Folded:
    """How much of one loop's progress is already in the counters and the recorder."""

    rounds: int = 0
    errors: int = 0
    corrections: int = 0
    records: int = 0


class ShmStreams:
    """The ring loops of one server's shared-memory streams.

    Parameters
    ----------
    counters : ServerCounters
        Where the loops' rounds, corrections and ERRORs are added as they are served, and
        where a failed cleanup counts as drop ``internal_exception``.
    recorder : ServiceRecorder
        Where the loops' per-packet service times are copied.
    record_capacity : int
        Packets whose service time each loop records.

    Attributes
    ----------
    opened : int
        Ring streams opened so far (STATS ``shm_streams_opened``).
    """

    def __init__(self, counters: ServerCounters, recorder: ServiceRecorder, *,
                 record_capacity: int) -> None:
        self.counters = counters
        self.recorder = recorder
        self.record_capacity = record_capacity
        self.opened = 0
        self._zombies: list = []  # stopped loops whose thread had not returned yet
        self._folded: dict[int, _Folded] = {}  # stream id -> progress already counted

    def start(self, plan: StreamPlan, sid: int, want_faults: bool):
        """A started ShmStreamServer for a new stream (its own decoder state: a compiled uf
        plan's scratch buffers are per loop; other backends get a fork of the plan)."""
        from qecd.decoder.compiled_stream import CompiledStream
        from qecd.transport.shm_service import ShmStreamServer

        sd = plan.decoder
        dec = CompiledStream(sd) if sd.backend == "uf" else plan.fork()
        srv = ShmStreamServer(dec, stream_id=sid,
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
        self._folded[s.stream_id] = _Folded()

    def close(self, s: StreamSession) -> dict | None:
        """Stop, join and unlink a stream's ring (idempotent); its loop counters, or None."""
        srv = s.shm
        if srv is None:
            return None
        srv.stop()
        srv.join(timeout=2.0)
        try:
            self.fold(s)  # the rest of its progress (all of it, once the loop has returned)
        finally:
            s.shm = None
            self._folded.pop(s.stream_id, None)
            self.release(srv)
        c = srv.counters()
        c["exit_code"] = srv.exit_code
        return c

    def fold(self, s: StreamSession, now_ns: int | None = None) -> bool:
        """Add what the ring loop of ``s`` served since the last fold to the counters, the
        recorder and the session (see the module docs); True when it served anything, and
        then, given ``now_ns``, ring traffic counts as activity (``s.last_seen_ns``).
        Call from the server's loop thread only."""
        srv, done = s.shm, self._folded.get(s.stream_id)
        if srv is None or done is None:
            return False
        from qecd.transport.shm_stream import (
            CTL_CORRECTIONS,
            CTL_ERRORS,
            CTL_NEXT_ROUND,
            CTL_ROUNDS,
        )

        ctl = srv.ctl
        n_rec = int(srv.rec_n[0])  # first: records below it are complete
        next_round = int(ctl[CTL_NEXT_ROUND])
        rounds = int(ctl[CTL_ROUNDS]) - done.rounds
        errors = int(ctl[CTL_ERRORS]) - done.errors
        corrections = int(ctl[CTL_CORRECTIONS]) - done.corrections
        c = self.counters
        if rounds:
            c.rounds_received += rounds
            s.rounds_received += rounds
            done.rounds += rounds
        if corrections:
            c.corrections_sent += corrections
            s.corrections_sent += corrections
            done.corrections += corrections
        if errors:
            c.error(SHM_ERRORS, errors)
            s.errors_sent += errors
            done.errors += errors
        s.next_round = s.committed = next_round
        if n_rec > done.records:
            service = srv.rec_service[done.records:n_rec]
            decode = np.where(srv.rec_flags[done.records:n_rec] != 0,
                              np.maximum(service, 1), 0)
            self.recorder.record_many(s.stream_id, service, decode)
            done.records = n_rec
        active = bool(rounds or errors or corrections)
        if active and now_ns is not None:
            s.last_seen_ns = now_ns
        return active

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
        """Housekeeping: release zombies that have returned; fold every live loop's progress
        (:meth:`fold`), which also refreshes a stream's liveness when it served anything.
        Returns the streams whose loop returned (client BYE over the ring, or a failure) as
        ``(session, why, notify)`` for the server to close (which folds the rest)."""
        for srv in list(self._zombies):
            self.release(srv)
        shm_streams = [s for s in streams if s.shm is not None]
        if not shm_streams:
            return []
        from qecd.transport.shm_stream import EXIT_BYE

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
            self.fold(s, now_ns)
        return ended

    def fold_all(self, streams: Iterable[StreamSession], now_ns: int) -> None:
        """:meth:`fold` every ring stream among ``streams`` (before a whole-server STATS)."""
        for s in streams:
            if s.shm is not None:
                self.fold(s, now_ns)

    def join_zombies(self, timeout_s: float = 5.0) -> None:
        """Wait for every stopped loop still running, then release its region."""
        for srv in list(self._zombies):
            srv.join(timeout=timeout_s)
            self.release(srv)
