"""Per-round service times in a preallocated ring, server counters, and their Prometheus view.

The server's hot loop calls :meth:`ServiceRecorder.record` once per round: four stores into
preallocated numpy arrays and an index bump, no Python object kept, no histogram update, no
logging. Shared-memory streams are timed by their own Numba loop, one entry per *packet*
(charged to the packet's last round); the server copies those entries in from housekeeping
with :meth:`ServiceRecorder.record_many` (see :mod:`qecd.transport.server.shm_streams`).
Everything else happens off the per-round path:

- :meth:`ServiceRecorder.fold` (the server calls it from its housekeeping, at least every
  0.5 s, and whenever the ring is about to overwrite unfolded entries) bins the new entries,
  vectorised, into a fine log histogram (128 bins per octave: 0.54% resolution, all-time)
  and into the Prometheus buckets :data:`SERVICE_BUCKETS_S` (exact ``le`` counts);
- :meth:`ServiceRecorder.summary` (STATS, whole server) reads percentiles off the fine
  histogram: O(bins), never O(rounds);
- :meth:`ServiceRecorder.stream_summary` (STATS for one stream) is exact over that stream's
  rounds still in the ring;
- :meth:`ServiceRecorder.save_npz` writes the raw per-round arrays (``--record``) for the
  latency harness;
- :class:`PrometheusCollector` turns the folded buckets and :class:`ServerCounters` into
  ``qecd_*`` metric families at scrape time (it never calls ``observe()``; what it shows is
  at most one housekeeping period old), with per-stream families over at most
  ``max_stream_labels`` streams (:class:`StreamLabels`) and ``qecd_build_info``;
- :func:`start_metrics_http` serves them with prometheus_client's process and platform
  collectors (``process_*``, ``python_info``) on a chosen address and port.

Example
-------
>>> rec = ServiceRecorder(capacity=8)
>>> for ns in (900, 1_100, 4_000, 20_000):
...     rec.record(7, ns, 3_000 if ns == 20_000 else 0)
>>> s = rec.summary()
>>> s["count"], s["max_ns"], 880 <= s["p50_ns"] <= 1_120
(4, 20000, True)
>>> rec.stream_summary(7)["p50_ns"], rec.raw()["decoded"].tolist()
(1100, [0, 0, 0, 1])
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["SERVICE_BUCKETS_S", "BUILD_BUCKETS_S", "BuildTimes", "ServiceRecorder",
           "ServerCounters", "StreamRow", "StreamLabels", "PrometheusCollector",
           "start_metrics_http",
           "MAX_STREAM_LABELS"]

#: streams with their own ``stream`` label in the per-stream families; the rest are "other"
MAX_STREAM_LABELS = 16

#: bucket upper bounds (seconds) of ``qecd_round_service_seconds``: 100 ns .. 10 ms
SERVICE_BUCKETS_S: tuple[float, ...] = (
    1e-7, 2e-7, 5e-7, 1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5,
    1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2,
)
_BOUNDS_NS = np.array([round(b * 1e9) for b in SERVICE_BUCKETS_S], dtype=np.int64)
_PER_OCTAVE = 128  # fine histogram: bin b holds values in [2**(b/128), 2**((b+1)/128)) ns
_OCTAVES = 42  # 1 ns .. ~73 min
_NFINE = _PER_OCTAVE * _OCTAVES


#: bucket upper bounds (seconds) of ``qecd_plan_build_seconds``: 1 ms .. 2 min
BUILD_BUCKETS_S: tuple[float, ...] = (
    1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 60.0, 120.0,
)


class BuildTimes:
    """Durations of plan builds in :data:`BUILD_BUCKETS_S` (once per build, never per
    round; read by the exporter's thread as a snapshot).

    >>> t = BuildTimes(); t.observe(0.02); t.observe(5.0)
    >>> counts, total, n = t.snapshot(); counts[3], counts[8], n, round(total, 2)
    (1, 1, 2, 5.02)
    """

    def __init__(self) -> None:
        self._counts = [0] * (len(BUILD_BUCKETS_S) + 1)  # last: above the largest bound
        self._sum = 0.0
        self._n = 0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = int(np.searchsorted(BUILD_BUCKETS_S, seconds, side="left"))
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds
            self._n += 1

    def snapshot(self) -> tuple[list[int], float, int]:
        """(count per bucket, the last above every bound), sum of seconds, builds."""
        with self._lock:
            return list(self._counts), self._sum, self._n


@dataclass
class ServerCounters:
    """Plain counters the server bumps (one thread writes; readers only read ints).

    ``errors_sent`` and ``dropped`` map an :class:`~qecd.transport.wire.ErrorCode` name
    (or ``"corrections"``, ``"replies"``, ``"error_budget"``, ...) to a count; ERRORs that
    shared-memory ring loops sent count under ``"shm_ring"`` (the loops do not report codes).

    ``packets_received`` counts ZeroMQ packets (every message the server loop read, valid or
    not); packets over shared-memory rings are not in it: the ring loops count only the
    SYNDROME packets they processed, ``shm_syndrome_packets``. ``shm_records_lost`` counts
    those whose service-time record was overwritten in its loop's record ring before the
    server copied it into the :class:`ServiceRecorder` (see
    :mod:`qecd.transport.server.shm_streams`).
    """

    packets_received: int = 0
    #: of ``packets_received``: SYNDROME packets served by the compiled fast path
    fast_path_packets: int = 0
    #: of ``packets_received``: HEARTBEATs naming a stream served there, echoed by its kernel
    fast_path_heartbeats: int = 0
    shm_syndrome_packets: int = 0
    shm_records_lost: int = 0
    #: CPU seconds the shared-memory loop threads used (busy or idle), folded at housekeeping
    shm_loop_cpu_s: float = 0.0
    rounds_received: int = 0
    corrections_sent: int = 0
    streams_open: int = 0
    streams_opened: int = 0
    streams_closed: int = 0
    streams_timed_out: int = 0
    #: streams taken over by another connection with a resume token (§6.9, §6.8.5);
    #: refused resumes count in ``hellos_refused["resume"]``
    streams_resumed: int = 0
    connections_refused: int = 0  #: CURVE handshakes the server refused
    backlog_rounds: int = 0
    input_lag_ns: int = 0
    builds: int = 0
    #: decoder plan builds waiting or running (the build queue)
    builds_pending: int = 0
    #: build worker processes replaced (time budget, memory, died)
    build_worker_restarts: int = 0
    #: bytes and plans in the plan cache; plans evicted to stay within its byte budget
    plan_cache_bytes: int = 0
    plan_cache_plans: int = 0
    plan_cache_evictions: int = 0
    #: seconds per finished build (worker time plus the server's share), binned
    build_seconds: BuildTimes = field(default_factory=lambda: BuildTimes())
    errors_sent: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    #: HELLOs refused by a limit or budget, by reason (``time_budget``, ``size_budget``,
    #: ``max_errors``, ``client_builds_in_flight``, ``build_queue_full``, ...)
    hellos_refused: dict[str, int] = field(default_factory=dict)

    def refuse(self, reason: str) -> None:
        """Count one HELLO refused by the limit or budget ``reason``."""
        self.hellos_refused[reason] = self.hellos_refused.get(reason, 0) + 1

    def error(self, name: str, n: int = 1) -> None:
        """Count ``n`` ERROR replies sent with code ``name``."""
        self.errors_sent[name] = self.errors_sent.get(name, 0) + n

    def drop(self, name: str, n: int = 1) -> None:
        """Count ``n`` packets (or replies) dropped without a reply, for reason ``name``."""
        self.dropped[name] = self.dropped.get(name, 0) + n


class ServiceRecorder:
    """A preallocated ring of per-round service times (ns), with folded histograms.

    Parameters
    ----------
    capacity : int
        Rounds kept raw (the newest ``capacity``); histograms cover every round ever
        recorded. The arrays are allocated and touched up front (``capacity`` x 21 bytes),
        so no page fault lands on the per-round path.

    Attributes
    ----------
    count : int
        Rounds recorded so far.
    """

    def __init__(self, capacity: int = 1 << 20) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected >= 1 rounds, got {capacity}")
        self.capacity = int(capacity)
        self.service_ns = np.ones(self.capacity, dtype=np.int64)  # ones: touch every page
        self.decode_ns = np.ones(self.capacity, dtype=np.int64)
        self.decoded = np.ones(self.capacity, dtype=np.uint8)
        self.stream_id = np.ones(self.capacity, dtype=np.uint32)
        for a in (self.service_ns, self.decode_ns, self.decoded, self.stream_id):
            a[:] = 0
        self.count = 0
        self._i = 0
        self._folded = 0
        self._lock = threading.Lock()
        self._fine = np.zeros(_NFINE, dtype=np.int64)
        self._buckets = np.zeros(len(_BOUNDS_NS) + 1, dtype=np.int64)  # last: above 10 ms
        self._sum_ns = 0
        self._max_ns = 0

    def record(self, stream_id: int, service_ns: int, decode_ns: int) -> None:
        """Record one round: its service time and, if it triggered a decode, the decode's
        time (``decode_ns`` 0 = no decode). The per-round path: no allocation."""
        i = self._i
        self.service_ns[i] = service_ns
        self.decode_ns[i] = decode_ns
        self.decoded[i] = decode_ns > 0
        self.stream_id[i] = stream_id
        i += 1
        self._i = 0 if i == self.capacity else i
        self.count += 1
        if self.count - self._folded >= self.capacity:
            self.fold()

    def free_span(self) -> tuple[int, int]:
        """Where a compiled writer may put entries: ``(index, room)``. Entry ``k`` of ``room``
        goes to ``index + k`` modulo :attr:`capacity` of the four arrays (``service_ns``,
        ``decode_ns``, ``decoded`` 0/1, ``stream_id``); then call :meth:`advance`.

        >>> rec = ServiceRecorder(capacity=4)
        >>> at, room = rec.free_span()
        >>> rec.service_ns[at] = 7; rec.advance(1)
        >>> (at, room), rec.count, rec.summary()["count"]
        ((0, 4), 1, 1)
        """
        return self._i, self.capacity - (self.count - self._folded)

    def advance(self, n: int) -> None:
        """Commit ``n`` entries a compiled writer put at :meth:`free_span` (at most its room)."""
        i = self._i + n
        self._i = i % self.capacity
        self.count += n
        if self.count - self._folded >= self.capacity:
            self.fold()

    def record_many(self, stream_id: int, service_ns: np.ndarray,
                    decode_ns: np.ndarray) -> None:
        """Record several entries of one stream at once (vectorised :meth:`record`).

        Parameters
        ----------
        stream_id : int
        service_ns, decode_ns : numpy.ndarray
            int64, same length: each entry's service time and decode time in ns (0 = no
            decode), oldest first. Copied; unfolded entries are folded before the ring
            would overwrite them, so the histograms see every one.

        Examples
        --------
        >>> rec = ServiceRecorder(capacity=4)
        >>> rec.record_many(3, np.array([10, 20, 30, 40, 50, 60]), np.array([0, 0, 30, 0, 0, 60]))
        >>> rec.count, rec.summary()["count"], rec.raw()["service_ns"].tolist()
        (6, 6, [30, 40, 50, 60])
        >>> rec.raw()["decoded"].tolist(), rec.stream_summary(3)["count"]
        ([1, 0, 0, 1], 4)
        """
        service_ns = np.asarray(service_ns, dtype=np.int64)
        decode_ns = np.asarray(decode_ns, dtype=np.int64)
        if service_ns.shape != decode_ns.shape or service_ns.ndim != 1:
            raise ValueError(f"service_ns, decode_ns: expected two 1-d arrays of one length, "
                             f"got shapes {service_ns.shape} and {decode_ns.shape}")
        n, at = service_ns.shape[0], 0
        while at < n:
            room = self.capacity - (self.count - self._folded)
            if room == 0:
                self.fold()
                continue
            k = min(n - at, room, self.capacity - self._i)
            i = self._i
            self.service_ns[i:i + k] = service_ns[at:at + k]
            self.decode_ns[i:i + k] = decode_ns[at:at + k]
            self.decoded[i:i + k] = decode_ns[at:at + k] > 0
            self.stream_id[i:i + k] = stream_id
            i += k
            self._i = 0 if i == self.capacity else i
            self.count += k
            at += k
        if self.count - self._folded >= self.capacity:
            self.fold()

    def _chronological(self, start: int, stop: int, arr: np.ndarray) -> np.ndarray:
        """Entries number ``start .. stop-1`` (absolute record numbers) of ``arr``."""
        a, b = start % self.capacity, stop % self.capacity
        if stop - start == 0:
            return arr[:0]
        if a < b:
            return arr[a:b]
        return np.concatenate([arr[a:], arr[:b]])

    def fold(self) -> None:
        """Bin the entries recorded since the last fold into the histograms (vectorised)."""
        with self._lock:
            start, stop = self._folded, self.count
            if stop == start:
                return
            vals = self._chronological(start, stop, self.service_ns)
            v = np.maximum(vals, 1)
            fine = np.minimum((np.log2(v) * _PER_OCTAVE).astype(np.int64), _NFINE - 1)
            self._fine += np.bincount(fine, minlength=_NFINE)
            self._buckets += np.bincount(np.searchsorted(_BOUNDS_NS, vals, side="left"),
                                         minlength=len(_BOUNDS_NS) + 1)
            self._sum_ns += int(vals.sum())
            self._max_ns = max(self._max_ns, int(vals.max()))
            self._folded = stop

    def buckets(self) -> tuple[np.ndarray, int, int]:
        """Folded state for exporters: (counts per bucket of :data:`SERVICE_BUCKETS_S` plus
        one above the last bound, sum of ns, rounds folded). A consistent snapshot."""
        with self._lock:
            return self._buckets.copy(), self._sum_ns, self._folded

    def summary(self) -> dict[str, int]:
        """Whole-server percentiles over every round recorded, from the fine histogram
        (upper bin edges, 0.54% resolution, capped at the exact max): keys ``count``,
        ``p50_ns``, ``p90_ns``, ``p99_ns``, ``p999_ns``, ``max_ns`` (ints, 0 if empty)."""
        self.fold()
        with self._lock:
            cum = np.cumsum(self._fine)
            n = int(cum[-1])
            out = {"count": n}
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
                if n == 0:
                    out[f"{name}_ns"] = 0
                    continue
                b = int(np.searchsorted(cum, int(np.ceil(q * n)), side="left"))
                out[f"{name}_ns"] = min(int(2 ** ((b + 1) / _PER_OCTAVE)), self._max_ns)
            out["max_ns"] = self._max_ns
            return out

    def stream_summary(self, stream_id: int) -> dict[str, int]:
        """Exact percentiles (nearest rank) of one stream's rounds still in the ring."""
        valid = min(self.count, self.capacity)
        vals = self.service_ns[:valid][self.stream_id[:valid] == stream_id]
        out = {"count": int(vals.size)}
        if vals.size == 0:
            out.update(p50_ns=0, p90_ns=0, p99_ns=0, p999_ns=0, max_ns=0)
            return out
        s = np.sort(vals)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)):
            out[f"{name}_ns"] = int(s[max(int(np.ceil(q * s.size)) - 1, 0)])
        out["max_ns"] = int(s[-1])
        return out

    def raw(self) -> dict[str, np.ndarray]:
        """The newest ``min(count, capacity)`` rounds, oldest first: ``service_ns`` (int64),
        ``decoded`` (uint8 0/1: the round triggered a decode), ``decode_ns`` (int64, 0 when
        no decode), ``stream_id`` (uint32)."""
        start = max(0, self.count - self.capacity)
        return {name: self._chronological(start, self.count, arr).copy()
                for name, arr in (("service_ns", self.service_ns), ("decoded", self.decoded),
                                  ("decode_ns", self.decode_ns), ("stream_id", self.stream_id))}

    def save_npz(self, path: str) -> None:
        """Write :meth:`raw` plus ``total_rounds`` and ``capacity`` as a ``.npz`` file."""
        np.savez(path, total_rounds=np.int64(self.count), capacity=np.int64(self.capacity),
                 **self.raw())


class StreamRow(NamedTuple):
    """One open stream's figures for the per-stream metric families."""

    stream_id: int
    rounds: int
    corrections: int
    errors: int
    uncommitted: int  #: rounds received and not yet covered by a correction
    lag_ns: int  #: input lag of the stream's latest packet (see ``StreamSession.lag_ns``)


class StreamLabels:
    """Which open streams get their own ``stream`` label: at most ``limit``, each for life.

    A stream takes a free label the first time a scrape sees it (lowest id first); a stream
    first seen while every label is taken is ``"other"`` for life. A label is freed when its
    stream closes and goes to the next stream not seen before. So no stream ever moves from
    ``"other"`` to a label of its own, and ``"other"``'s counters (the server-wide total minus
    the labelled streams: closed streams and rounds no stream owns included) never go down;
    the per-stream series of a counter always sum to its server-wide family. ``"other"``'s
    gauges are the unlabelled open streams': uncommitted rounds summed, the largest input
    lag. Thread-safe (scrapes may overlap).

    Examples
    --------
    >>> labels = StreamLabels(limit=2)
    >>> rows = [StreamRow(i, 10 * i, i, 0, 2, 1000 * i) for i in (5, 1, 9)]
    >>> [(k, r.rounds, r.uncommitted, r.lag_ns)
    ...  for k, r in labels.fold(rows, StreamRow(0, 200, 20, 3, 0, 0))]
    [('1', 10, 2, 1000), ('5', 50, 2, 5000), ('other', 140, 2, 9000)]

    Stream 1 closes: its label goes to the new stream 12, not to stream 9 ("other" for life).

    >>> rows = [StreamRow(i, 10 * i, i, 0, 2, 1000 * i) for i in (5, 9, 12)]
    >>> [(k, r.rounds) for k, r in labels.fold(rows, StreamRow(0, 330, 33, 3, 0, 0))]
    [('5', 50), ('12', 120), ('other', 160)]
    """

    def __init__(self, limit: int = MAX_STREAM_LABELS) -> None:
        if limit < 0:
            raise ValueError(f"limit: expected >= 0 labelled streams, got {limit}")
        self.limit = int(limit)
        self._labelled: set[int] = set()
        self._seen_max = 0
        self._lock = threading.Lock()

    def fold(self, rows: Sequence[StreamRow], totals: StreamRow
             ) -> list[tuple[str, StreamRow]]:
        """``(label, row)`` per labelled open stream (by id), then ``("other", row)`` with
        ``stream_id`` 0."""
        ordered = sorted(rows)
        with self._lock:
            self._labelled &= {r.stream_id for r in ordered}
            for r in ordered:
                if r.stream_id > self._seen_max and len(self._labelled) < self.limit:
                    self._labelled.add(r.stream_id)
            if ordered:
                self._seen_max = max(self._seen_max, ordered[-1].stream_id)
            shown = [r for r in ordered if r.stream_id in self._labelled]
        rest = [r for r in ordered if r.stream_id not in self._labelled]
        out = [(str(r.stream_id), r) for r in shown]
        out.append(("other", StreamRow(
            0, max(0, totals.rounds - sum(r.rounds for r in shown)),
            max(0, totals.corrections - sum(r.corrections for r in shown)),
            max(0, totals.errors - sum(r.errors for r in shown)),
            sum(r.uncommitted for r in rest), max((r.lag_ns for r in rest), default=0))))
        return out


def build_info() -> dict[str, str]:
    """Labels of ``qecd_build_info``: qecd, Python and the compiled-code libraries' versions.

    >>> sorted(build_info())
    ['numba', 'numpy', 'python', 'pyzmq', 'version']
    """
    import importlib.metadata

    from qecd import __version__

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "none"

    return {"version": __version__, "python": platform.python_version(),
            "numba": version("numba"), "numpy": version("numpy"), "pyzmq": version("pyzmq")}


class PrometheusCollector:
    """A ``prometheus_client`` custom collector over a server's counters and recorder.

    Families: ``qecd_rounds_total``, ``qecd_corrections_total``, ``qecd_errors_total{code}``
    (ERROR replies sent), ``qecd_dropped_total{reason}`` (packets or replies dropped
    without a reply), ``qecd_shm_records_lost_total`` (ring packets served without a
    service-time entry), ``qecd_shm_loop_cpu_seconds_total`` (CPU time of the ring loops),
    ``qecd_streams_opened_total``, ``qecd_streams_timed_out_total``,
    ``qecd_streams_resumed_total``,
    ``qecd_streams_open``, ``qecd_backlog_rounds``, ``qecd_input_lag_seconds``, the histogram
    ``qecd_round_service_seconds`` (buckets :data:`SERVICE_BUCKETS_S`), for decoder builds
    ``qecd_hellos_refused_total{reason}``, ``qecd_plan_builds_total``,
    ``qecd_plan_builds_pending``, ``qecd_plan_build_seconds`` (buckets
    :data:`BUILD_BUCKETS_S`), ``qecd_build_worker_restarts_total``, ``qecd_plan_cache_bytes``,
    ``qecd_plan_cache_plans``, ``qecd_plan_cache_evictions_total``, and
    ``qecd_build_info{version,python,numba,numpy,pyzmq}`` (always 1). Given ``stream_rows``
    (a callable returning the open streams' :class:`StreamRow`), also the per-stream
    ``qecd_stream_rounds_total``, ``qecd_stream_corrections_total``,
    ``qecd_stream_errors_total``, ``qecd_stream_uncommitted_rounds`` and
    ``qecd_stream_input_lag_seconds``, labelled ``stream`` by :class:`StreamLabels`.

    Examples
    --------
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> counters, rec = ServerCounters(rounds_received=3), ServiceRecorder(4)
    >>> rec.record(1, 1_500, 0); rec.fold()
    >>> reg = CollectorRegistry(auto_describe=False)
    >>> reg.register(PrometheusCollector(counters, rec))
    >>> text = generate_latest(reg).decode()
    >>> 'qecd_rounds_total 3.0' in text, 'qecd_round_service_seconds_bucket{le="2e-06"} 1.0' in text
    (True, True)
    """

    def __init__(self, counters: ServerCounters, recorder: ServiceRecorder, *,
                 stream_rows: Callable[[], Sequence[StreamRow]] | None = None,
                 max_stream_labels: int = MAX_STREAM_LABELS) -> None:
        self.counters = counters
        self.recorder = recorder
        self.stream_rows = stream_rows
        self.labels = StreamLabels(max_stream_labels)
        self._build = build_info()

    def _per_stream(self) -> Iterator[object]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = self.counters
        totals = StreamRow(0, c.rounds_received, c.corrections_sent,
                           sum(dict(c.errors_sent).values()), 0, 0)
        folded = self.labels.fold(self.stream_rows(), totals)
        fams = (
            (CounterMetricFamily, "qecd_stream_rounds", "Syndrome rounds accepted, by stream "
             "(a bounded set of open streams; the rest, closed ones included, as other)",
             lambda r: r.rounds),
            (CounterMetricFamily, "qecd_stream_corrections", "CORRECTION packets sent, by "
             "stream", lambda r: r.corrections),
            (CounterMetricFamily, "qecd_stream_errors", "ERROR replies sent, by stream (other: "
             "also ERRORs tied to no stream)", lambda r: r.errors),
            (GaugeMetricFamily, "qecd_stream_uncommitted_rounds", "Rounds received and not yet "
             "covered by a correction, by open stream", lambda r: r.uncommitted),
            (GaugeMetricFamily, "qecd_stream_input_lag_seconds", "Input lag of the stream's "
             "latest packet (other: the largest)", lambda r: r.lag_ns / 1e9),
        )
        for kind, name, text, value in fams:
            fam = kind(name, text, labels=["stream"])
            for label, row in folded:
                fam.add_metric([label], value(row))
            yield fam

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        c = self.counters
        yield CounterMetricFamily("qecd_rounds", "Syndrome rounds accepted",
                                  value=c.rounds_received)
        yield CounterMetricFamily("qecd_corrections", "CORRECTION packets sent",
                                  value=c.corrections_sent)
        errors = CounterMetricFamily("qecd_errors", "ERROR replies sent, by code",
                                     labels=["code"])
        for name, n in sorted(dict(c.errors_sent).items()):
            errors.add_metric([name], n)
        yield errors
        dropped = CounterMetricFamily("qecd_dropped", "Packets or replies dropped without a "
                                      "reply, by reason", labels=["reason"])
        for name, n in sorted(dict(c.dropped).items()):
            dropped.add_metric([name], n)
        yield dropped
        yield CounterMetricFamily("qecd_shm_records_lost", "Shared-memory SYNDROME packets "
                                  "whose service time was overwritten in their loop's record "
                                  "ring before the server copied it",
                                  value=c.shm_records_lost)
        yield CounterMetricFamily("qecd_shm_loop_cpu_seconds", "CPU time used by the "
                                  "shared-memory ring loops (serving or idle: an idle loop "
                                  "spins briefly, then naps)", value=c.shm_loop_cpu_s)
        yield CounterMetricFamily("qecd_streams_opened", "Streams opened",
                                  value=c.streams_opened)
        yield CounterMetricFamily("qecd_streams_timed_out", "Streams freed after their "
                                  "owner went silent", value=c.streams_timed_out)
        yield CounterMetricFamily("qecd_streams_resumed", "Streams taken over by another "
                                  "connection with a resume token (refused resumes: "
                                  "qecd_hellos_refused_total{reason=\"resume\"})",
                                  value=c.streams_resumed)
        yield CounterMetricFamily("qecd_connections_refused", "Connections whose CURVE "
                                  "handshake the server refused", value=c.connections_refused)
        refused = CounterMetricFamily("qecd_hellos_refused", "HELLOs refused by a limit or "
                                      "budget (DEM limits, build time and size budgets, "
                                      "per-client build budgets, a full build queue), by "
                                      "reason", labels=["reason"])
        for name, n in sorted(dict(c.hellos_refused).items()):
            refused.add_metric([name], n)
        yield refused
        yield CounterMetricFamily("qecd_plan_builds", "Decoder plan builds started",
                                  value=c.builds)
        yield GaugeMetricFamily("qecd_plan_builds_pending", "Decoder plan builds waiting or "
                                "running (the build queue)", value=c.builds_pending)
        yield CounterMetricFamily("qecd_build_worker_restarts", "Build worker processes "
                                  "replaced (time budget, memory, or died)",
                                  value=c.build_worker_restarts)
        yield GaugeMetricFamily("qecd_plan_cache_bytes", "Bytes of decoder plans in the "
                                "plan cache", value=c.plan_cache_bytes)
        yield GaugeMetricFamily("qecd_plan_cache_plans", "Decoder plans in the plan cache",
                                value=c.plan_cache_plans)
        yield CounterMetricFamily("qecd_plan_cache_evictions", "Plans evicted to keep the "
                                  "plan cache within its byte budget",
                                  value=c.plan_cache_evictions)
        bcounts, bsum, _ = c.build_seconds.snapshot()
        bcum = np.cumsum(bcounts).tolist()
        yield HistogramMetricFamily(
            "qecd_plan_build_seconds", "Decoder plan build time: worker process plus the "
            "server's share, per finished build",
            buckets=[(repr(b), int(n)) for b, n in zip(BUILD_BUCKETS_S, bcum[:-1],
                                                       strict=True)] + [("+Inf", int(bcum[-1]))],
            sum_value=bsum)
        yield GaugeMetricFamily("qecd_streams_open", "Streams open", value=c.streams_open)
        yield GaugeMetricFamily("qecd_backlog_rounds", "Rounds received and not yet processed",
                                value=c.backlog_rounds)
        yield GaugeMetricFamily("qecd_input_lag_seconds", "Largest per-stream input lag: "
                                "queueing delay of a stream's latest packet before the server "
                                "read it, over its fastest packet", value=c.input_lag_ns / 1e9)
        info = GaugeMetricFamily("qecd_build_info", "qecd build: version, Python and the "
                                 "versions of the compiled-code libraries (always 1)",
                                 labels=list(self._build))
        info.add_metric(list(self._build.values()), 1)
        yield info
        if self.stream_rows is not None:
            yield from self._per_stream()
        counts, sum_ns, _ = self.recorder.buckets()
        cum = np.cumsum(counts)
        buckets = [(repr(b), int(n)) for b, n in zip(SERVICE_BUCKETS_S, cum[:-1].tolist(),
                                                        strict=True)]
        buckets.append(("+Inf", int(cum[-1])))
        yield HistogramMetricFamily("qecd_round_service_seconds", "Per-round service time: "
                                    "packet received to work done and reply handed to "
                                    "ZeroMQ", buckets=buckets, sum_value=sum_ns / 1e9)


def start_metrics_http(port: int, counters: ServerCounters, recorder: ServiceRecorder, *,
                       addr: str = "127.0.0.1",
                       stream_rows: Callable[[], Sequence[StreamRow]] | None = None,
                       max_stream_labels: int = MAX_STREAM_LABELS):
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread (prometheus_client's WSGI
    server); returns the ``wsgiref`` server, whose ``shutdown()`` stops it.

    The registry holds qecd's collector and prometheus_client's process collector
    (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
    ``process_open_fds``, ``process_start_time_seconds``, ...) and platform collector
    (``python_info``). A scrape runs on the exporter's thread and reads ``/proc``: it costs
    the serving loop a GIL hand-over and a few hundred microseconds of Python, once per
    scrape interval, never per round. ``addr`` ``0.0.0.0`` or ``::`` listens on every
    interface; the default is loopback only. ``port`` 0 picks a free port
    (``server.server_port`` says which).
    """
    from prometheus_client import (
        CollectorRegistry,
        PlatformCollector,
        ProcessCollector,
        start_http_server,
    )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(counters, recorder, stream_rows=stream_rows,
                                          max_stream_labels=max_stream_labels))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    httpd, _thread = start_http_server(port, addr=addr, registry=registry)
    return httpd
