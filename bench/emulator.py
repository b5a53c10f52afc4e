"""The control-system emulator: stream sampled shots to a server and check every correction.

:func:`run_emulation` samples shots with stim (a spec, or a DEM file with detector
coordinates), decodes them offline with a :class:`~qecd.decoder.window.StreamDecoder` of the
same settings, then streams them through :class:`~qecd.transport.client.Client`: ``streams``
concurrent streams on one connection, each carrying its share of the shots back to back (round
numbers continue across shots), ``rounds_per_packet`` rounds per SYNDROME packet (the
streaming phase is the compiled one of :mod:`qecd.bench.native_emulator` by default, else
:class:`WirePhase` in Python; both feed this module's report), interleaved round-robin across
streams, either as fast as the server takes them (at most ``max_inflight`` rounds per stream
sent and not yet covered by a correction) or paced at a fixed ``cycle_us`` per round. It
collects every reply and reports, as JSON (schema ``qecd.emulate/1``, below):

- ``rounds_sent``, ``corrections_expected`` (the offline decode's commits),
  ``corrections_received``, ``lost`` (expected, never received), ``duplicated`` (received more
  than once), ``unexpected`` (a range the offline decode never committed), ``errors_received``,
  ``shots_unanswered`` (shots whose last correction never came, e.g. the server was killed:
  the report is still written, with their corrections counted as lost),
  ``shots_incomplete`` (the last correction came but another of the shot's did not: its
  lost corrections count as lost, and the shot is left out of ``mismatches`` and
  ``ler_wire``);
- ``ler_wire`` (over the complete shots) and ``ler_offline``: logical error rates against
  stim's true observable flips, with 95% Wilson intervals (``failures``, ``shots``, ``rate``,
  ``ci95``);
- ``mismatches``: complete shots whose wire prediction (XOR of its corrections) differs from
  the offline decode's, and ``correction_mismatches`` per commit. The same deterministic decoder
  on the same rounds must agree exactly, so any mismatch fails the run;
- ``service_time``: the server's per-round service time (its STATS, whole server since it
  started; ``by_stream``: exact per stream), ``reaction_time``: client clock at a CORRECTION's
  receipt minus the send time of the round that triggered it (in paced mode minus its
  *scheduled* send time, so a late sender does not hide queueing), and ``bare_round_trip``:
  HEARTBEAT ping-pong from Python on the same connection before streaming (with the
  native emulator also ``bare_round_trip_compiled``: the same frames from the compiled
  DEALER to a compiled echo ROUTER, see :mod:`qecd.bench.native_emulator`, and in paced
  mode ``bare_round_trip_compiled_paced``: that echo at the stream's packet interval,
  answering one frame in m (m: the stream's packets per CORRECTION), the floor of a paced
  stream, since a CPU that idles between packets wakes up slower), all as
  :func:`~qecd.bench.latency_stats.summarize_ns` summaries (``count``, ``mean_us``,
  ``p50_us``, ``p90_us``, ``p99_us``, ``p99.9_us``, ``max_us``);
- ``emulator`` (``native`` or ``python``: which streaming phase ran) and ``emulator_note``
  (why the default fell back to python, else None);
- ``spec``/``dem``, ``decoder``, ``window``, ``commit`` (in force, from ACCEPT), ``shots``,
  ``streams``, ``rounds_per_shot``, ``mode``, ``cycle_us``, ``max_inflight``, ``throughput``
  (wall time, rounds/s, ``late_sends``: rounds whose packet left more than a cycle
  after its last round's scheduled time), ``seeds``, ``cpu_affinity``, ``machine``;
- ``ok`` and ``failures`` (why not ok). ``qecd emulate`` exits 3 unless ``ok``, 1 when a budget
  of its verdict (:mod:`qecd.bench.verdict`) was not met.

Example
-------
>>> from qecd.transport.server import Server, ServerConfig
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     report = run_emulation(EmulateConfig(connect=server.endpoints[0],
...                            spec="repetition:d=3,r=3,p=0.02", shots=40, streams=2,
...                            rtt_samples=20))
>>> report["schema"], report["lost"], report["duplicated"], report["mismatches"], report["ok"]
('qecd.emulate/1', 0, 0, 0, True)
>>> report["corrections_received"] == report["corrections_expected"] == 40
True
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import stim

from qecd.codes import RoundLayout, build_experiment
from qecd.decoder.registry import parse_decoder_name
from qecd.decoder.window import StreamDecoder
from qecd.errors import QecdError
from qecd.transport.auth import CurveClientKeys
from qecd.transport.client import Client, Reply, ServerTimeout
from qecd.transport.wire import DEFAULT_DECODER, MsgType

__all__ = ["SCHEMA", "EmulateConfig", "run_emulation", "format_report", "write_report"]

SCHEMA = "qecd.emulate/1"


@dataclass(frozen=True)
class EmulateConfig:
    """What to emulate (``qecd emulate`` flags).

    Attributes
    ----------
    connect : str
        Server endpoint.
    spec, dem_path : str or None
        Exactly one: an experiment spec, or a stim DEM file with detector coordinates.
    time_coord : int
        With ``dem_path``: which detector coordinate is time.
    decoder, window, commit
        As in HELLO (``decoder`` may be ``backend-wWcC``).
    shots, streams : int
        Shots in total, split into ``streams`` contiguous blocks, one per stream.
    cycle_us : float or None
        Pace: one round per stream every ``cycle_us``; None = as fast as possible.
    rounds_per_packet : int
        Rounds per SYNDROME packet (K): K consecutive rounds of a stream go in one packet,
        sent (paced) when its last round is due, i.e. K rounds every K cycles, stamped with
        that last round's scheduled time. Packets may span shot boundaries.
    seed : int
        stim sampling seed.
    max_inflight : int or None
        Rounds per stream sent and not yet covered by a correction; default
        ``2 * (window or rounds_per_shot) + 16 + 2 * rounds_per_packet`` (room for two packets
        beyond a window, so multi-round packets do not turn the stream into a ping-pong), and
        in paced mode at least the server's ``max_backlog`` from the ACCEPT (a control system
        sends on its clock; a server that falls behind shows as late sends).
    rtt_samples : int
        HEARTBEAT round trips measured before streaming.
    timeout_s : float
        Longest wait for a reply before giving up (the rest counts as lost).
    curve : CurveClientKeys or None
    cpu : int or None
        Pin the emulator to this CPU.
    emulator : {"native", "python"} or None
        Which streaming phase runs: the compiled one (:mod:`qecd.bench.native_emulator`:
        packets sent and replies taken by a Numba kernel calling libzmq) or the Python one
        (:class:`WirePhase`). None: native when libzmq can be driven from compiled code here,
        else python (the report's ``emulator_note`` says why). Both give this same report.
    echo_cpu : int or None
        Native only: pin the compiled echo ROUTER of the bare round trip
        (``bare_round_trip_compiled``) to this CPU (e.g. the server's).
    """

    connect: str
    spec: str | None = None
    dem_path: str | None = None
    time_coord: int = -1
    decoder: str = DEFAULT_DECODER
    window: int | None = None
    commit: int | None = None
    shots: int = 1000
    streams: int = 1
    cycle_us: float | None = None
    rounds_per_packet: int = 1
    seed: int = 0
    max_inflight: int | None = None
    rtt_samples: int = 1000
    timeout_s: float = 30.0
    curve: CurveClientKeys | None = None
    cpu: int | None = None
    emulator: str | None = None
    echo_cpu: int | None = None


def _choose_emulator(name: str | None) -> tuple[str, str | None]:
    """The emulator to run and, when the default fell back to Python, why."""
    from qecd.bench import native_emulator as native

    if name is None:
        if native.available():
            return native.NATIVE, None
        return native.PYTHON, (f"python: the compiled emulator is unavailable "
                               f"({native.unavailable_reason()})")
    if name not in native.EMULATORS:
        raise QecdError(f"emulator: expected one of {list(native.EMULATORS)}, got {name!r}")
    if name == native.NATIVE and not native.available():
        raise QecdError(f"emulator 'native': unavailable here ({native.unavailable_reason()}); "
                        "use 'python'")
    return name, None


@dataclass
class _Shots:
    dem: stim.DetectorErrorModel
    layout: RoundLayout
    dem_text: str | None
    dets: np.ndarray  # (shots, detectors) uint8
    obs: np.ndarray  # (shots, observables) uint8


def _sample(cfg: EmulateConfig) -> _Shots:
    if (cfg.spec is None) == (cfg.dem_path is None):
        raise QecdError("emulate: expected exactly one of spec and dem_path")
    if cfg.spec is not None:
        exp = build_experiment(cfg.spec)
        dets, obs = exp.sample(cfg.shots, seed=cfg.seed)
        return _Shots(exp.dem, exp.layout, None, dets, obs)
    with open(cfg.dem_path) as f:
        text = f.read()
    dem = stim.DetectorErrorModel(text)
    layout = RoundLayout.from_dem(dem, time_coord=cfg.time_coord)
    dets, obs, _ = dem.compile_sampler(seed=cfg.seed).sample(cfg.shots)
    return _Shots(dem, layout, text, dets.astype(np.uint8), obs.astype(np.uint8))


def _offline(sh: _Shots, cfg: EmulateConfig, blocks: list[np.ndarray]):
    """Per stream: the commits ``{(first, last): observables}`` of an offline decode of its
    shots (absolute rounds), and the per-shot predictions."""
    name = parse_decoder_name(cfg.decoder)
    window, commit = (name.window, name.commit) if name.window else (cfg.window, cfg.commit)
    sd = StreamDecoder(sh.dem, sh.layout, name.backend, window=window, commit=commit)
    R = sh.layout.num_rounds
    ids = sh.layout.detectors
    pred = np.zeros_like(sh.obs)
    commits: list[dict[tuple[int, int], np.ndarray]] = []
    for shots in blocks:
        mine: dict[tuple[int, int], np.ndarray] = {}
        for j, g in enumerate(shots.tolist()):
            base = j * R
            d = sh.dets[g]
            for t in range(R):
                c = sd.push_round(d[ids[t]])
                if c is not None:
                    mine[(base + c.first_round, base + c.last_round)] = c.observables
                    pred[g] ^= c.observables
        commits.append(mine)
    return commits, pred


def _ler(pred: np.ndarray, obs: np.ndarray) -> dict:
    from qecd.bench.stats import wilson_interval

    fails = int(np.any(pred != obs, axis=1).sum())
    n = int(obs.shape[0])
    lo, hi = wilson_interval(fails, n)
    return {"failures": fails, "shots": n, "rate": fails / n if n else None, "ci95": [lo, hi]}


def _server_summary(stats: dict) -> dict:
    out = {"count": stats.get("service_count")}
    for k, name in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"),
                    ("max", "max")):
        v = stats.get(f"service_{k}_ns")
        out[f"{name}_us"] = None if v is None else v / 1e3
    return out


class WirePhase:
    """The streaming phase: one client, ``K`` streams, one thread."""

    def __init__(self, client: Client, streams: list, blocks: list[np.ndarray], sh: _Shots,
                 cfg: EmulateConfig, max_inflight: int) -> None:
        self.client = client
        self.streams = streams
        self.blocks = blocks
        self.cfg = cfg
        self.R = sh.layout.num_rounds
        self.max_inflight = max_inflight
        self.index = {s.stream_id: k for k, s in enumerate(streams)}
        K = len(streams)
        self.total = [len(b) * self.R for b in blocks]
        self.sent = [0] * K
        self.covered = [0] * K
        self.dead = [False] * K
        self.received: list[list[tuple[int, int, np.ndarray]]] = [[] for _ in range(K)]
        self.reaction: list[int] = []
        self.errors: Counter[str] = Counter()
        self.error_examples: list[str] = []
        self.wire_pred = np.zeros_like(sh.obs)
        self.shot_done = np.zeros(sh.obs.shape[0], dtype=bool)  # its last correction came
        self.late = 0
        self.max_late_ns = 0
        # per slice: the bit-packed detection events of every shot, (shots, bytes) uint8
        self.payloads = [np.packbits(sh.dets[:, ids], axis=1, bitorder="little")
                         for ids in sh.layout.detectors]
        # per stream: its rounds' payloads back to back, so a packet of any number of rounds
        # is one slice (no per-packet join on the paced path)
        self.flat = [memoryview(np.concatenate([p[b] for p in self.payloads], axis=1).tobytes())
                     for b in blocks]
        self.shot_bytes = sum(p.shape[1] for p in self.payloads)
        self.round_at = np.concatenate([[0], np.cumsum([p.shape[1] for p in self.payloads])])

    def _offset(self, i: int) -> int:
        """Byte offset of a stream's round ``i`` in its :attr:`flat` payloads."""
        j, t = divmod(i, self.R)
        return j * self.shot_bytes + int(self.round_at[t])

    def _on(self, r: Reply) -> None:
        k = self.index.get(r.stream_id)
        if r.msg_type == MsgType.CORRECTION and k is not None:
            c = r.body
            self.reaction.append(r.recv_ns - r.timestamp_ns)
            self.received[k].append((c.first_round, c.last_round, c.observables))
            j = c.first_round // self.R
            if j < len(self.blocks[k]):
                self.wire_pred[self.blocks[k][j]] ^= c.observables
                if c.shot_end:
                    self.shot_done[self.blocks[k][j]] = True
            self.covered[k] = max(self.covered[k], c.last_round + 1)
        elif r.msg_type == MsgType.ERROR:
            name = r.error.code_name
            self.errors[name] += 1
            if len(self.error_examples) < 5:
                self.error_examples.append(f"stream {r.stream_id}: {name}: {r.body.reason}")
        elif r.msg_type == MsgType.BYE and k is not None:
            self.dead[k] = True  # the server closed it (shutdown or timeout)

    def _pump(self, timeout_ms: int) -> bool:
        """Handle replies already here; with ``timeout_ms`` > 0 wait that long for one."""
        got = False
        if timeout_ms > 0 and not self.client.socket.poll(timeout_ms):
            return False
        while (r := self.client.poll()) is not None:
            self._on(r)
            got = True
        return got

    def _wait_credit(self, k: int) -> None:
        deadline = time.perf_counter() + self.cfg.timeout_s
        while self.sent[k] - self.covered[k] >= self.max_inflight and not self.dead[k]:
            if not self._pump(100) and time.perf_counter() > deadline:
                raise ServerTimeout(f"stream {self.streams[k].stream_id}: no correction for "
                                    f"{self.cfg.timeout_s} s with {self.max_inflight} rounds "
                                    "in flight")

    def run(self) -> float:
        cycle_ns = None if self.cfg.cycle_us is None else int(self.cfg.cycle_us * 1000)
        K = len(self.streams)
        P = self.cfg.rounds_per_packet
        t0 = time.perf_counter_ns() + 1_000_000
        clock = time.perf_counter_ns
        for i in range(0, max(self.total), P):
            ts = None
            if cycle_ns is not None:
                ts = t0 + (i + P - 1) * cycle_ns  # the packet leaves when its last round exists
                while (now := clock()) < ts:
                    left_ms = (ts - now) // 1_000_000
                    self._pump(int(left_ms) if left_ms >= 2 else 0)
                late = clock() - ts
                if late > cycle_ns:  # counted in rounds (the verdict compares with rounds)
                    self.late += min(P, max(self.total) - i)
                    self.max_late_ns = max(self.max_late_ns, late)
            for k in range(K):
                if i >= self.total[k] or self.dead[k]:
                    continue
                if self.sent[k] - self.covered[k] >= self.max_inflight:
                    self._wait_credit(k)
                n = min(P, self.total[k] - i)
                payload = self.flat[k][self._offset(i):self._offset(i + n)]
                self.streams[k].send_payload(payload, count=n, timestamp_ns=ts)
                self.sent[k] += n
            self._pump(0)
        t_end = clock()
        deadline = time.perf_counter() + self.cfg.timeout_s
        while any(c < n and not d for c, n, d in zip(self.covered, self.total, self.dead,
                                                       strict=True)):
            if self._pump(100):
                deadline = time.perf_counter() + self.cfg.timeout_s
            elif time.perf_counter() > deadline:
                break
        return (t_end - t0) / 1e9


def run_emulation(cfg: EmulateConfig) -> dict:
    """Sample, decode offline, stream through the server, compare; returns the report dict
    (see the module docs for its schema)."""
    if cfg.streams < 1 or cfg.shots < cfg.streams:
        raise QecdError(f"emulate: expected 1 <= streams <= shots, got streams={cfg.streams}, "
                        f"shots={cfg.shots}")
    emulator, emulator_note = _choose_emulator(cfg.emulator)
    if cfg.cpu is not None:
        os.sched_setaffinity(0, {cfg.cpu})
    echo = None
    if emulator == "native":  # its far end of the bare round trip starts while we sample
        from qecd.bench.native_emulator import echo_for

        echo = echo_for(cfg.connect, cfg.echo_cpu)
    try:
        return _emulate(cfg, emulator, emulator_note, echo)
    finally:
        if echo is not None:
            echo.close()


def _paced_samples(samples: int, gap_ns: int, spend_s: float = 1.0) -> int:
    """How many paced bare round trips to take: as many as are sent in ``spend_s`` at one
    per ``gap_ns`` (a paced queue needs a while to settle), at least ``samples`` when they
    fit in 4 ``spend_s``, and between 200 and 200,000.

    >>> _paced_samples(5000, 6_000), _paced_samples(5000, 100_000), _paced_samples(5000, 10**6)
    (166666, 10000, 4000)
    """
    n = int(spend_s * 1e9 // max(gap_ns, 1))
    return max(200, min(200_000, max(n, min(samples, 4 * n))))


def _emulate(cfg: EmulateConfig, emulator: str, emulator_note: str | None, echo) -> dict:
    from qecd.bench.latency_stats import summarize_ns
    from qecd.bench.machine import machine_info

    sh = _sample(cfg)
    R = sh.layout.num_rounds
    blocks = np.array_split(np.arange(cfg.shots), cfg.streams)
    commits, offline_pred = _offline(sh, cfg, blocks)
    failures: list[str] = []
    with Client(cfg.connect, curve=cfg.curve, timeout_s=cfg.timeout_s) as client:
        rtt = np.array([client.heartbeat() for _ in range(cfg.rtt_samples)], dtype=np.int64)
        rtt_compiled = rtt_paced = None
        if emulator == "native":
            from qecd.bench.native_emulator import compiled_round_trips

            rtt_compiled, rtt_compiled_method = compiled_round_trips(
                echo, cfg.rtt_samples, timeout_s=cfg.timeout_s)
            if cfg.cycle_us:  # the floor of a paced stream: the echo at its packet interval,
                # answering as often as the server sends CORRECTIONs (one per m packets)
                gap_ns = int(round(cfg.cycle_us * cfg.rounds_per_packet * 1e3))
                per_corr = R * len(blocks[0]) / max(1, len(commits[0])) if commits else R
                m = max(1, int(round(per_corr / cfg.rounds_per_packet)))
                rtt_paced, rtt_paced_method = compiled_round_trips(
                    echo, max(200, _paced_samples(cfg.rtt_samples, gap_ns) // m),
                    timeout_s=cfg.timeout_s, gap_ns=gap_ns, reply_every=m)
        streams = [client.open_stream(cfg.spec, dem=sh.dem_text, decoder=cfg.decoder,
                                      window=cfg.window, commit=cfg.commit,
                                      time_coord=cfg.time_coord)
                   for _ in range(cfg.streams)]
        acc = streams[0].accept
        if tuple(acc.slice_sizes) != sh.layout.round_sizes:
            raise QecdError(f"emulate: the server's layout {acc.slice_sizes} differs from the "
                            f"local one {sh.layout.round_sizes}")
        window_in_force = acc.window
        max_inflight = cfg.max_inflight or max(
            2 * (window_in_force or R) + 16 + 2 * cfg.rounds_per_packet,
            acc.max_backlog if cfg.cycle_us else 0)
        if emulator == "native":
            from qecd.bench.native_emulator import NativeWirePhase

            wire = NativeWirePhase(client, streams, blocks, sh, cfg, max_inflight,
                                   expected=sum(len(c) for c in commits))
        else:
            wire = WirePhase(client, streams, blocks, sh, cfg, max_inflight)
        try:
            wall_s = wire.run()
        except QecdError as e:  # ServerTimeout, or the native emulator's buffer or libzmq
            failures.append(str(e))
            wall_s = float("nan")
        try:
            server_stats = client.stats()
        except QecdError as e:  # the server is gone (killed, shut down): report what came
            failures.append(f"server STATS: {e}")
            server_stats = {}
            wire.dead = [True] * len(streams)
        by_stream = []
        for k, s in enumerate(streams):
            if wire.dead[k]:
                continue
            try:
                by_stream.append(_server_summary(s.stats()))
                s.close()
            except QecdError as e:
                failures.append(f"closing stream {s.stream_id}: {e}")
        while (r := client.poll()) is not None:  # anything that raced the BYEs
            wire._on(r)

    expected = sum(len(c) for c in commits)
    received = sum(len(r) for r in wire.received)
    lost = duplicated = unexpected = corr_mismatch = 0
    complete = wire.shot_done.copy()  # its last correction came, and every other one
    for k, mine in enumerate(commits):
        seen = Counter((a, b) for a, b, _ in wire.received[k])
        missing = [a for (a, b) in mine if (a, b) not in seen]
        lost += len(missing)
        complete[blocks[k][np.array(missing, dtype=np.int64) // R]] = False
        duplicated += sum(n - 1 for n in seen.values() if n > 1)
        unexpected += sum(1 for key in seen if key not in mine)
        for a, b, o in wire.received[k]:
            want = mine.get((a, b))
            if want is not None and not np.array_equal(want, o):
                corr_mismatch += 1
    # a shot whose last correction never came is unanswered, one that lost another correction
    # is incomplete (its lost corrections are counted as lost): neither is a mismatch; only
    # complete shots are compared with the offline decode
    mismatches = int((np.any(wire.wire_pred != offline_pred, axis=1) & complete).sum())
    unanswered = int((~wire.shot_done).sum())
    incomplete = int((wire.shot_done & ~complete).sum())
    errors_received = dict(wire.errors)
    for name, v in (("lost", lost), ("shots_unanswered", unanswered),
                    ("shots_incomplete", incomplete),
                    ("duplicated", duplicated), ("unexpected", unexpected),
                    ("mismatches", mismatches), ("correction_mismatches", corr_mismatch)):
        if v:
            failures.append(f"{name} = {v}")
    if errors_received:
        failures.append(f"errors received: {errors_received} (e.g. {wire.error_examples[:2]})")
    rounds_sent = sum(wire.sent)
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    report = {
        "schema": SCHEMA, "emulator": emulator, "emulator_note": emulator_note,
        "spec": cfg.spec, "dem": cfg.dem_path, "decoder": cfg.decoder,
        "window": window_in_force, "commit": acc.commit,
        "shots": cfg.shots, "streams": cfg.streams, "rounds_per_shot": R,
        "mode": "afap" if cfg.cycle_us is None else "paced", "cycle_us": cfg.cycle_us,
        "max_inflight": max_inflight, "connect": cfg.connect,
        "rounds_sent": rounds_sent, "corrections_expected": expected,
        "corrections_received": received, "lost": lost, "shots_unanswered": unanswered,
        "shots_incomplete": incomplete, "duplicated": duplicated,
        "unexpected": unexpected, "errors_received": errors_received,
        "ler_wire": _ler(wire.wire_pred[complete], sh.obs[complete]),
        "ler_offline": _ler(offline_pred, sh.obs),
        "mismatches": mismatches, "correction_mismatches": corr_mismatch,
        "service_time": {"scope": "server (all rounds since it started)",
                         **_server_summary(server_stats), "by_stream": by_stream},
        "reaction_time": summarize_ns(np.array(wire.reaction, dtype=np.int64)),
        "bare_round_trip": {"method": "HEARTBEAT ping-pong from Python (pyzmq), same "
                            "connection, answered by the server, before streaming",
                            **summarize_ns(rtt)},
        "throughput": {"wall_s": wall_s, "rounds_per_s": rounds_sent / wall_s if wall_s else
                       None, "late_sends": wire.late, "max_late_us": wire.max_late_ns / 1e3},
        "server": {"server": server_stats.get("server"),
                   "cpu_affinity": server_stats.get("cpu_affinity"),
                   "dropped": server_stats.get("dropped"),
                   "errors_by_code": server_stats.get("errors_by_code")},
        "seeds": {"sample": cfg.seed},
        "cpu_affinity": {"emulator": affinity},
        "machine": machine_info(),
        "ok": not failures, "failures": failures,
        # the raw samples, for plots; keys starting with "_" are not written to JSON
        "_samples": {"reaction_ns": np.array(wire.reaction, dtype=np.int64),
                     "rtt_ns": np.asarray(rtt, dtype=np.int64)},
    }
    if rtt_compiled is not None:
        report["bare_round_trip_compiled"] = {"method": rtt_compiled_method,
                                              **summarize_ns(rtt_compiled)}
        report["_samples"]["rtt_compiled_ns"] = rtt_compiled
    if rtt_paced is not None:
        report["bare_round_trip_compiled_paced"] = {"method": rtt_paced_method,
                                                    **summarize_ns(rtt_paced)}
        report["_samples"]["rtt_compiled_paced_ns"] = rtt_paced
    return report


def format_report(report: dict) -> str:
    """A few human-readable lines summarising a report.

    Examples
    --------
    >>> r = {"schema": SCHEMA, "spec": "s", "dem": None, "decoder": "uf", "window": None,
    ...      "commit": None, "shots": 10, "streams": 1, "rounds_sent": 60,
    ...      "corrections_expected": 10, "corrections_received": 10, "lost": 0,
    ...      "duplicated": 0, "mismatches": 0, "ok": True, "failures": [],
    ...      "ler_wire": {"rate": 0.1, "ci95": [0.01, 0.4]},
    ...      "ler_offline": {"rate": 0.1, "ci95": [0.01, 0.4]},
    ...      "service_time": {"p50_us": 1.0, "p99_us": 2.0, "p99.9_us": 3.0, "max_us": 4.0},
    ...      "reaction_time": {"p50_us": 1.0, "p99_us": 2.0, "p99.9_us": 3.0, "max_us": 4.0},
    ...      "bare_round_trip": {"p50_us": 1.0, "p99_us": 2.0, "p99.9_us": 3.0, "max_us": 4.0}}
    >>> print(format_report(r).splitlines()[0])
    qecd emulate: s, decoder uf, whole-shot, 10 shots on 1 stream(s): corrections OK ...
    """
    r = report

    def lat(s: dict) -> str:
        f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        return (f"p50 {f(s.get('p50_us'))} / p99 {f(s.get('p99_us'))} / p99.9 "
                f"{f(s.get('p99.9_us'))} / max {f(s.get('max_us'))} us")

    how = "whole-shot" if r["window"] is None else f"window {r['window']} commit {r['commit']}"
    lw, lo = r["ler_wire"], r["ler_offline"]
    lines = [
        f"qecd emulate: {r['spec'] or r['dem']}, decoder {r['decoder']}, {how}, {r['shots']} "
        f"shots on {r['streams']} stream(s): corrections "
        f"{'OK' if r['ok'] else 'FAILED'} (budgets: the verdict below)",
        f"  rounds sent {r['rounds_sent']}, corrections {r['corrections_received']}/"
        f"{r['corrections_expected']}, lost {r['lost']}, duplicated {r['duplicated']}, "
        f"mismatches {r['mismatches']}",
        f"  LER wire {lw['rate']:.5f} [{lw['ci95'][0]:.5f}, {lw['ci95'][1]:.5f}], offline "
        f"{lo['rate']:.5f} [{lo['ci95'][0]:.5f}, {lo['ci95'][1]:.5f}]",
        f"  service time  {lat(r['service_time'])} (server: every round since it started)",
        *[f"    stream {i}     {lat(st)} (this run's rounds, exact)"
          for i, st in enumerate(r["service_time"].get("by_stream", []))],
        f"  reaction time {lat(r['reaction_time'])}",
        f"  bare RTT      {lat(r['bare_round_trip'])} (HEARTBEAT from Python)",
    ]
    if r.get("bare_round_trip_compiled"):
        lines.append(f"  bare RTT      {lat(r['bare_round_trip_compiled'])} (compiled DEALER <-> "
                     "compiled echo ROUTER)")
    if r.get("bare_round_trip_compiled_paced"):
        lines.append(f"  bare RTT      {lat(r['bare_round_trip_compiled_paced'])} (the same, paced "
                     "at the stream's packet interval)")
    lines.append(f"  emulator      {r.get('emulator', 'python')}"
                 + (f" ({r['emulator_note']})" if r.get("emulator_note") else ""))
    lines += [f"  failure: {f}" for f in r["failures"]]
    return "\n".join(lines)


def write_report(report: dict, path: str) -> None:
    """Write the report as indented JSON (without the raw ``_samples``)."""
    with open(path, "w") as f:
        json.dump({k: v for k, v in report.items() if not k.startswith("_")}, f, indent=2,
                  default=float)
        f.write("\n")
