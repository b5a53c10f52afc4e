"""The shared-memory emulator: a control system streaming stim-sampled shots into a ring.

The ZeroMQ emulator (:mod:`qecd.bench.emulator`) speaks the protocol over a socket; this one
attaches to a ring stream a server opened (:class:`~qecd.transport.shm.streams.ShmStreamClient`),
streams shots round by round (paced at ``cycle_ns`` or as fast as the ring takes them), and
returns what it saw beside the truth and an offline decode of the same shots with the same
decoder: predictions, per-correction reaction and service times, losses and duplicates, the
bare ring round trip and the offline batch decode cost. ``qecd bench latency`` runs it in a
process of its own (:mod:`qecd.bench.latency`).

Example
-------
>>> from qecd.codes import build_experiment
>>> from qecd.transport.shm.streams import ShmStreamServer
>>> exp = build_experiment("repetition:d=3,r=3,p=0.01")
>>> srv = ShmStreamServer.for_experiment(exp, stream_id=1)
>>> srv.start()
>>> r = run_shm_emulation(ShmEmulateConfig(str(exp.spec), srv.region_name,
...                       srv.corrections_per_shot, shots=300, ping=100))
>>> r["lost"], r["duplicated"], bool((r["predictions"] == r["offline"]).all())
(0, 0, True)
>>> srv.stop()
>>> srv.join(10)
>>> srv.close()
True
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qecd.decoder.registry import DEFAULT_STREAM_DECODER

__all__ = ["ShmEmulateConfig", "concat_results", "run_shm_emulation"]


@dataclass(frozen=True)
class ShmEmulateConfig:
    """What to stream, and into which ring stream.

    ``region`` and ``corrections_per_shot`` come from the server that opened the stream
    (:class:`~qecd.transport.shm.streams.ShmStreamServer`); ``decoder``/``window``/``commit``
    must be the server's, for the offline comparison. ``cycle_ns`` 0 streams as fast as the
    ring takes rounds; ``ping`` bare round trips are measured first."""

    spec: str
    region: str
    corrections_per_shot: int
    decoder: str = DEFAULT_STREAM_DECODER
    window: int | None = None
    commit: int | None = None
    shots: int = 20_000
    seed: int = 2026
    cycle_ns: int = 0
    ping: int = 20_000
    cpu: int | None = None


def concat_results(parts):
    """One StreamResult from the chunks a stream was sent in (arrays joined, counts added)."""
    from qecd.transport.shm.streams import StreamResult

    if len(parts) == 1:
        return parts[0]
    vals = {}
    for f in dataclasses.fields(StreamResult):
        got = [getattr(p, f.name) for p in parts]
        if isinstance(got[0], np.ndarray):
            vals[f.name] = np.concatenate(got)
        else:
            vals[f.name] = min(got) if f.name == "status" else sum(got)
    return StreamResult(**vals)


def run_shm_emulation(cfg: ShmEmulateConfig,
                      progress: Callable[[float], None] | None = None) -> dict:
    """Stream ``cfg.shots`` shots into the ring and return the raw results (arrays).

    ``progress`` is called with the fraction done after each chunk (the stream is sent in up
    to 20 chunks, with a 10 ms pause between them while nothing is in flight)."""
    import os

    if cfg.cpu is not None:
        os.sched_setaffinity(0, {cfg.cpu})
    from qecd.codes import build_experiment
    from qecd.decoder import make_decoder
    from qecd.decoder.window import StreamDecoder
    from qecd.transport.shm.streams import ShmStreamClient

    exp = build_experiment(cfg.spec)
    shots, seed = cfg.shots, cfg.seed
    cli = ShmStreamClient.attach(cfg.region, exp.layout, stream_id=1,
                                 corrections_per_shot=cfg.corrections_per_shot)
    warm, _ = exp.sample(min(200, shots), seed=seed + 1)
    cli.stream_shots(warm)
    dets, obs = exp.sample(shots, seed=seed)
    rtt = cli.ping(cfg.ping)
    chunks = max(1, min(20, shots // 5000))
    bounds = np.linspace(0, shots, chunks + 1).astype(int)
    parts = []
    t0 = time.perf_counter_ns()
    for i in range(chunks):
        parts.append(cli.stream_shots(dets[bounds[i]:bounds[i + 1]], cycle_ns=cfg.cycle_ns,
                                      timeout_s=60))
        if progress:
            progress((i + 1) / chunks)
        time.sleep(0.01)  # let the harness print while nothing is in flight: its wake-up
        # would otherwise preempt a spinning loop on a 2-CPU machine
    wall_ns = time.perf_counter_ns() - t0
    # time spent streaming: each chunk from its first scheduled send to its last
    # correction received (every shot's last round is answered, so the server was done)
    stream_ns = sum(int(max(p.write_ns[-1], p.corr_recv_ns.max(initial=0)) - p.send_ns[0])
                    for p in parts if len(p.send_ns))
    res = concat_results(parts)
    cli.bye()
    cli.close()
    # offline: the same decoder on the same shots, and the batch decode cost floor
    offline = StreamDecoder(exp.dem, exp.layout, cfg.decoder, window=cfg.window,
                            commit=cfg.commit).decode_batch(dets)
    batch = make_decoder(cfg.decoder, exp.dem)
    packed = np.packbits(dets, axis=1, bitorder="little")
    batch.decode_batch_packed(packed)
    tb = time.perf_counter_ns()
    batch.decode_batch_packed(packed)
    batch_ns = time.perf_counter_ns() - tb
    return {
        "predictions": res.predictions, "truth": obs, "offline": offline,
        "send_ns": res.send_ns, "write_ns": res.write_ns, "reaction_ns": res.reaction_ns,
        "corr_service_ns": res.corr_service_ns, "corr_round": res.corr_round,
        "corr_ts": res.corr_ts, "received": res.received,
        "expected": res.expected, "lost": res.lost, "duplicated": res.duplicated,
        "errors": res.errors, "status": res.status, "rtt_ns": rtt, "wall_ns": wall_ns,
        "stream_ns": stream_ns,
        "batch_ns": batch_ns, "warm_rounds": int(warm.shape[0] * exp.layout.num_rounds),
    }
