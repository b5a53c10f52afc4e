"""The server's shared-memory streams: start each ring loop, watch it, tear it down.

Set-up, how ring rounds reach the counters and the service-time ring, and the teardown
policies are in ``docs/server.md`` (section "Shared-memory streams in the server"); the ring
itself is ``docs/protocol.md`` §14.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qecd.transport.server.metrics import ServerCounters, ServiceRecorder
from qecd.transport.server.session import StreamPlan, StreamSession

__all__ = ["ShmStreams", "SHM_ERRORS", "ring_records"]

log = logging.getLogger("qecd.server")

#: ``errors_by_code`` key of ERRORs a ring loop sent (the loop counts them, not their codes)
SHM_ERRORS = "shm_ring"


def _ring_copy(arr: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A copy of entries ``start .. stop-1`` (packet numbers, at most ``len(arr)`` of them)
    of the ring ``arr``, oldest first."""
    cap = arr.shape[0]
    a, b = start % cap, stop % cap
    if stop == start:
        return arr[:0].copy()
    if a < b:
        return arr[a:b].copy()
    return np.concatenate([arr[a:], arr[:b]])


def ring_records(srv, start: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Copy a ring loop's records of the packets it served from packet ``start`` on.

    Safe while the loop runs: the count is read first (the records below it are complete),
    the slots are copied, then the count is read again, and only records the loop cannot
    have started to overwrite by then are kept. While the loop runs, the slot of packet
    ``n - capacity`` (``n`` the count re-read) may be half written with packet ``n``, so
    records are kept from ``n - capacity + 1`` on; once the loop has returned, the whole
    ring is. The reads are plain numpy loads, kept in program order by x86-64 (TSO); the
    loop publishes the count with a release store.

    Parameters
    ----------
    srv : ShmStreamServer
        The loop's owner (its ``rec_service``, ``rec_flags``, ``rec_n`` and
        ``is_running()`` are read).
    start : int
        The first packet (counted from 0 over the loop's life) not copied before.

    Returns
    -------
    first, stop : int
        The records returned are those of packets ``first .. stop-1``; those of packets
        ``start .. first-1`` are lost (overwritten before they could be copied).
    service_ns : numpy.ndarray
        int64, ``stop - first``: each packet's service time, oldest first.
    decoded : numpy.ndarray
        uint8 0/1, ``stop - first``: the packet triggered a decode.
    """
    live = srv.is_running()  # before the reads: a loop that has returned writes no more
    cap = srv.rec_service.shape[0]
    stop = int(srv.rec_n[0])
    lo = min(max(start, stop - cap), stop)
    service = _ring_copy(srv.rec_service, lo, stop)
    decoded = _ring_copy(srv.rec_flags, lo, stop)
    first = lo
    if live:
        first = min(stop, max(lo, int(srv.rec_n[0]) - cap + 1))
    return first, stop, service[first - lo:], decoded[first - lo:]


@dataclass
class _Folded:
    """How much of one loop's progress is already in the counters and the recorder."""

    rounds: int = 0
    errors: int = 0
    corrections: int = 0
    packets: int = 0  # packets the loop took off the request ring (any type)
    records: int = 0  # packets whose record was copied or counted lost
    lost: int = 0  # of those, records overwritten before a fold could copy them
    cpu_s: float = 0.0  # the loop thread's CPU time already counted


class ShmStreams:
    """The ring loops of one server's shared-memory streams.

    Parameters
    ----------
    counters : ServerCounters
        Where the loops' rounds, corrections, ERRORs, SYNDROME packets and lost records are
        added as they are served, and where a failed cleanup counts as drop
        ``internal_exception``.
    recorder : ServiceRecorder
        Where the loops' per-packet service times are copied.
    record_capacity : int
        Slots of each loop's record ring (packets served between two folds beyond it lose
        their record).
    join_timeout_s : float
        How long :meth:`close` waits for a stopped loop to return before it keeps the loop
        as a zombie (the server's loop thread waits that long).

    Attributes
    ----------
    opened : int
        Ring streams opened so far (STATS ``shm_streams_opened``).
    """

    def __init__(self, counters: ServerCounters, recorder: ServiceRecorder, *,
                 record_capacity: int, join_timeout_s: float = 2.0) -> None:
        self.counters = counters
        self.recorder = recorder
        self.record_capacity = record_capacity
        self.join_timeout_s = join_timeout_s
        self.opened = 0
        # stream id -> (session, loop) of loops stopped and not released yet: normally only
        # for the moment of close; longer for a loop whose thread had not returned (zombie)
        self._stopped: dict[int, tuple[StreamSession, object]] = {}
        self._folded: dict[int, _Folded] = {}  # stream id -> progress already counted

    def create(self, plan: StreamPlan, sid: int, want_faults: bool):
        """A ShmStreamServer for a new stream, not started: its own decoder state (a
        compiled uf plan's scratch buffers are per loop; other backends get a fork of the
        plan), its region and its kernels loaded. The engine is a fork of the plan's (shared
        arrays, new scratch), never compiled again here; the region and the loop's kernels
        are still tens of ms, so the server runs this on its build thread, not its loop."""
        from qecd.transport.shm.streams import ShmStreamServer

        dec = plan.engine.fork() if plan.engine is not None else plan.fork()
        return ShmStreamServer(dec, stream_id=sid, want_faults=want_faults,
                               record_capacity=self.record_capacity,
                               idle_timeout_s=0.0)  # 0: no loop timeout; the server's applies

    @staticmethod
    def start_created(srv) -> None:
        """Start a created loop's thread (cheap); on failure its region is released."""
        try:
            srv.start()
        except BaseException:
            srv.close()
            raise

    def start(self, plan: StreamPlan, sid: int, want_faults: bool):
        """:meth:`create` then :meth:`start_created`, in the caller's thread."""
        srv = self.create(plan, sid, want_faults)
        self.start_created(srv)
        return srv

    def track(self, s: StreamSession) -> None:
        """Start watching the ring of ``s`` (its ``shm`` just set to a started loop)."""
        self.opened += 1
        self._folded[s.stream_id] = _Folded()

    @property
    def zombies(self) -> int:
        """Stopped loops whose thread has not returned yet (their regions stay mapped)."""
        return len(self._stopped)

    def close(self, s: StreamSession) -> dict | None:
        """Stop, join and unlink a stream's ring (idempotent); its loop counters, or None.
        A loop that has not returned within ``join_timeout_s`` becomes a zombie: its
        progress goes on being folded until it is released."""
        srv = s.shm
        if srv is None:
            return None
        srv.stop()
        srv.join(timeout=self.join_timeout_s)
        s.shm = None
        self._stopped[s.stream_id] = (s, srv)
        done = self._folded[s.stream_id]
        self._retire(s.stream_id)  # the rest of its progress (all of it, if it returned)
        c = srv.counters()
        c["exit_code"] = srv.exit_code
        c["records_lost"] = done.lost
        c["cpu_seconds"] = round(done.cpu_s, 3)
        return c

    def stream_stats(self, s: StreamSession) -> dict[str, object]:
        """The STATS keys of a ring stream (``transport``, ``shm_region``, the loop's
        totals as ``shm_*`` and ``shm_records_lost``); empty for a ZeroMQ stream."""
        if s.shm is None:
            return {}
        done = self._folded.get(s.stream_id)
        return {"transport": "shm", "shm_region": s.shm.region_name,
                **{f"shm_{k}": v for k, v in s.shm.counters().items()},
                "shm_records_lost": done.lost if done is not None else 0,
                "shm_cpu_seconds": round(s.shm.cpu_seconds(), 3)}

    def fold(self, s: StreamSession, now_ns: int | None = None) -> bool:
        """Add what the ring loop of ``s`` served since the last fold to the counters, the
        recorder and the session (see the module docs); True when it served anything, and
        then, given ``now_ns``, ring traffic counts as activity (``s.last_seen_ns``).
        Call from the server's loop thread only."""
        srv, done = s.shm, self._folded.get(s.stream_id)
        if srv is None or done is None:
            return False
        return self._fold(s, srv, done, now_ns)

    def _fold(self, s: StreamSession, srv, done: _Folded, now_ns: int | None) -> bool:
        from qecd.transport.shm.loop import (
            CTL_CORRECTIONS,
            CTL_ERRORS,
            CTL_NEXT_ROUND,
            CTL_PACKETS,
            CTL_ROUNDS,
        )

        first, stop, service, decoded = ring_records(srv, done.records)
        ctl = srv.ctl
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
        if stop > done.records:
            lost = first - done.records
            if lost:
                c.shm_records_lost += lost
                done.lost += lost
            if service.size:
                self.recorder.record_many(s.stream_id, service,
                                          np.where(decoded != 0, np.maximum(service, 1), 0))
            c.shm_syndrome_packets += stop - done.records
            done.records = stop
        cpu = srv.cpu_seconds() - done.cpu_s
        if cpu > 0:
            c.shm_loop_cpu_s += cpu
            done.cpu_s += cpu
        packets = int(ctl[CTL_PACKETS]) - done.packets  # HEARTBEATs in the ring count too
        done.packets += packets
        active = bool(rounds or errors or corrections or packets)
        if active and now_ns is not None:
            s.last_seen_ns = now_ns
        return active

    def _retire(self, sid: int) -> None:
        """Fold a stopped loop's progress; once its thread has returned (checked before the
        fold, so that fold is its last and complete), unmap and unlink its region. A loop
        still running is kept and retried from housekeeping, never unmapped under it."""
        s, srv = self._stopped[sid]
        running = srv.is_running()
        try:
            self._fold(s, srv, self._folded[sid], None)
        finally:
            if not running:
                self._release(srv)
                del self._stopped[sid]
                del self._folded[sid]

    def _release(self, srv) -> None:
        try:
            srv.close()  # stop + join (done) + close + unlink
        except Exception as e:  # never let one region's cleanup stop the loop
            self.counters.drop("internal_exception")
            log.error("shm_close_failed", exc_info=e, extra={"qecd": {
                "stream_id": srv.stream_id, "shm_region": srv.region_name}})

    def reap(self, streams: Iterable[StreamSession],
             now_ns: int) -> list[tuple[StreamSession, str, bool]]:
        """Housekeeping: fold zombies' progress and release those that have returned; fold
        every live loop's progress (:meth:`fold`), which also refreshes a stream's liveness
        when it served anything. Returns the streams whose loop returned (client BYE over the
        ring, or a failure) as ``(session, why, notify)`` for the server to close (which
        folds the rest)."""
        for sid in list(self._stopped):
            self._retire(sid)
        shm_streams = [s for s in streams if s.shm is not None]
        if not shm_streams:
            return []
        from qecd.transport.shm.loop import EXIT_BYE

        ended = []
        for s in shm_streams:
            srv = s.shm
            if not srv.is_running():
                code = srv.exit_code
                if code == EXIT_BYE:  # the loop already answered BYE over the ring
                    ended.append((s, "client BYE over the shared-memory ring", False))
                else:
                    ended.append((s, f"shared-memory loop exited (code {code})", True))
                continue
            srv.forget_name_once_attached()
            self.fold(s, now_ns)
        return ended

    def fold_all(self, streams: Iterable[StreamSession], now_ns: int) -> None:
        """:meth:`fold` every ring stream among ``streams`` (before a whole-server STATS)."""
        for s in streams:
            if s.shm is not None:
                self.fold(s, now_ns)

    def join_zombies(self, timeout_s: float = 5.0) -> None:
        """Wait for every stopped loop still running, then fold the rest of its progress
        and release its region (one still running after ``timeout_s`` stays a zombie)."""
        for sid, (_, srv) in list(self._stopped.items()):
            srv.join(timeout=timeout_s)
            self._retire(sid)
