"""How fast does a ring stream's loop serve a backlog? (``qecd bench ring-drain``)

A stall leaves rounds waiting in the request ring; the loop then serves them back to back,
in batches (:func:`~qecd.transport.shm.loop.serve_stream_kernel`). This harness builds that
situation directly and times it: the request ring is filled with ``shots`` shots' SYNDROME
packets (one round each, as the emulator sends them) and a BYE before the loop starts,
then the loop is run in this thread until the BYE, and the replies are read back. The
figure is the loop's **CPU time per round** (``time.thread_time_ns``: what a shared
machine's other processes take from the wall clock does not count), its inverse in rounds
per µs (the rate a backlog drains at, before subtracting the rounds still arriving), and
beside it, in the same run, the batch decode floor of the same shots
(``decode_batch_packed`` of the backend, whole shots).

Example
-------
>>> r = run_ring_drain("repetition:d=3,r=3,p=0.01", shots=200, repeats=2)
>>> r["schema"], r["rounds"], r["corrections"] == 200
('qecd.bench.ring_drain/1', 800, True)
"""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

SCHEMA = "qecd.bench.ring_drain/1"


def run_ring_drain(spec: str = "surface:d=5,p=0.001", *, shots: int = 4000,
                   repeats: int = 7, seed: int = 2026, cross_core: bool = True) -> dict:
    """Fill, serve and time a backlog ``repeats`` times; returns the
    ``qecd.bench.ring_drain/1`` report (``cpu_ns_per_round`` min and median over the
    repeats, ``rounds_per_us`` from the median, ``batch_floor_ns_per_round``).

    ``cross_core`` (the default where the process may use two CPUs): the ring is filled,
    and the replies read, by a thread on another CPU than the loop's, as the emulator
    does: every slot the loop reads and every reply slot it writes was last touched by
    the other CPU, as after a real stall. Without it, one thread does everything and the
    slots are in the loop's own cache (a floor, not what a drain costs)."""
    cpus = _two_cpus() if cross_core else None
    before = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(threading.get_native_id(), {cpus[1]})
    try:
        return _run(spec, shots, repeats, seed, cpus)
    finally:
        os.sched_setaffinity(threading.get_native_id(), before)


def _run(spec: str, shots: int, repeats: int, seed: int, cpus: list[int] | None) -> dict:
    from qecd.codes import build_experiment
    from qecd.decoder.registry import make_decoder
    from qecd.transport import wire as P
    from qecd.transport.shm.loop import CTL_STOP
    from qecd.transport.shm.ring import EMPTY, ring_try_recv, ring_try_send
    from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

    exp = build_experiment(spec)
    R = exp.layout.num_rounds
    n = shots * R
    n_slots = 1 << int(np.ceil(np.log2(n + 2)))
    srv = ShmStreamServer.for_experiment(exp, stream_id=1, n_slots=n_slots,
                                         record_capacity=n + 16)
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=1,
                                 corrections_per_shot=srv.corrections_per_shot)
    try:
        dets, _ = exp.sample(shots, seed=seed)
        bye = np.frombuffer(P.encode_bye(stream_id=1), np.uint8).copy()
        w, b, tx, rx, ns, ss = cli.pair.kernel_args()
        out = np.zeros(ss, np.uint8)
        cpu, wall, replies = [], [], 0
        for _ in range(repeats):
            packets, ptr = cli.build_packets(dets)
            cli.next_round += n

            def preload(packets=packets, ptr=ptr):
                for k in range(n):
                    f = packets[ptr[k]:ptr[k + 1]]
                    if ring_try_send(w, b, tx, ns, ss, f, len(f)) != 0:
                        raise RuntimeError("the request ring filled while preloading")
                ring_try_send(w, b, tx, ns, ss, bye, len(bye))

            _on_producer_cpu(preload, cpus)
            srv.ctl[CTL_STOP] = 0
            c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
            code = srv._serve()
            cpu.append((time.thread_time_ns() - c0) / n)
            wall.append((time.perf_counter_ns() - t0) / n)
            if code != 0:
                raise RuntimeError(f"the loop returned {code}, expected BYE (0)")
            got = []

            def read_replies(got=got):
                r = 0
                while ring_try_recv(w, b, rx, ns, ss, out) != EMPTY:
                    r += 1
                got.append(r)

            _on_producer_cpu(read_replies, cpus)
            replies = got[0]
        dec = make_decoder(srv.backend, exp.dem)
        packed = np.packbits(dets, axis=1, bitorder="little")
        dec.decode_batch_packed(packed)
        c0 = time.thread_time_ns()
        dec.decode_batch_packed(packed)
        floor = (time.thread_time_ns() - c0) / n
    finally:
        cli.close()
        srv.close()
    med = float(np.median(cpu))
    return {
        "schema": SCHEMA, "spec": str(exp.spec), "decoder": srv.backend, "shots": shots,
        "rounds": n, "repeats": repeats, "corrections": replies - 1,
        "cpu_ns_per_round": {"min": float(min(cpu)), "median": med},
        "wall_ns_per_round_median": float(np.median(wall)),
        "rounds_per_us": 1e3 / med,
        "batch_floor_ns_per_round": floor, "cross_core": cpus is not None,
        "load_average": list(os.getloadavg()),
    }


def _two_cpus() -> list[int] | None:
    """Two CPUs this process may run on (producer, loop), or None when it has one."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:2] if len(cpus) >= 2 else None


def _on_producer_cpu(fn, cpus) -> None:
    """Run ``fn`` in a thread pinned to the producer's CPU (``cpus[0]``), or here."""
    if not cpus:
        fn()
        return
    err: list[BaseException] = []

    def run() -> None:
        os.sched_setaffinity(threading.get_native_id(), {cpus[0]})
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 (re-raised in the caller's thread)
            err.append(e)

    t = threading.Thread(target=run, name="ring-drain-producer")
    t.start()
    t.join()
    if err:
        raise err[0]


def format_ring_drain(r: dict) -> str:
    """The report as one line."""
    c = r["cpu_ns_per_round"]
    return (f"{r['spec']} {r['decoder']}: a backlog of {r['rounds']} rounds served at "
            f"{c['median']:.1f} ns of CPU per round (min {c['min']:.1f}, {r['repeats']} "
            f"repeats) = {r['rounds_per_us']:.1f} rounds/us; batch decode floor "
            f"{r['batch_floor_ns_per_round']:.1f} ns/round; wall "
            f"{r['wall_ns_per_round_median']:.1f} ns/round; "
            f"{'filled from another CPU' if r['cross_core'] else 'filled on the same CPU'}; "
            f"load average "
            f"{r['load_average'][0]:.2f}")


def command(a) -> int:
    """``qecd bench ring-drain`` (flags parsed in :mod:`qecd.cli`)."""
    r = run_ring_drain(a.spec, shots=a.shots, repeats=a.repeats,
                       cross_core=not getattr(a, "same_core", False))
    print(format_ring_drain(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
