"""What idle shared-memory streams cost the server, and how soon an idle stream wakes up.

A ring stream's loop busy-polls for :data:`~qecd.transport.shm.loop.SPIN_NS` after its
last packet, then naps between polls, longer the longer it idles (1% of the idle time,
:data:`~qecd.transport.shm.loop.MIN_NAP_US` to :data:`~qecd.transport.shm.loop.MAX_NAP_US`).
This harness measures both sides of that trade-off, with the server's streams in one
process (one loop thread each, as ``qecd serve`` runs them) and the clients in another:

- **idle CPU**: the server process's CPU time (user + system, all threads) over
  ``seconds`` while ``streams`` streams sit idle past their spin window, as a share of one
  CPU;
- **wake-up latency**: after an idle spell of each length in ``idle_ms``, the round trip
  of one HEARTBEAT through a stream's loop (the first packet after the spell; a SYNDROME
  is picked up by the same poll). ``hot`` is the same round trip with the loop spinning
  (back-to-back pings), the floor the wake-up is compared with.

Run it with ``qecd bench idle-rings`` (``--help`` for the settings); figures are
in docs/server.md.

Example
-------
>>> r = run_idle_rings(streams=1, seconds=0.2, idle_ms=(5,), trials=3, hot=20, pin=False)
>>> r["schema"], r["streams"], sorted(r["wake_up_us"])
('qecd.bench.idle_rings/1', 1, ['5'])
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
import traceback

import numpy as np

SCHEMA = "qecd.bench.idle_rings/1"
DEFAULT_SPEC = "surface:d=5,p=0.001"


def _cpus(pin: bool) -> tuple[int | None, int | None]:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if not pin or len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]  # server, clients


def _server_proc(spec: str, streams: int, cpu: int | None, conn) -> None:
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        from qecd.codes import build_experiment
        from qecd.transport.shm.streams import ShmStreamServer

        exp = build_experiment(spec)
        servers = [ShmStreamServer.for_experiment(exp, stream_id=i + 1, n_slots=64)
                   for i in range(streams)]
        for s in servers:
            s.start(cpu=cpu)
        conn.send(("ready", [s.region_name for s in servers]))
        while True:
            msg = conn.recv()
            if msg[0] == "cpu":  # CPU time of this process (every thread) over msg[1] s
                c0, t0 = time.process_time(), time.monotonic()
                time.sleep(msg[1])
                conn.send(("cpu", time.process_time() - c0, time.monotonic() - t0))
            else:
                break
        for s in servers:
            s.stop()
        for s in servers:
            s.join(10)
            s.close()
        conn.send(("closed",))
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _recv(conn, timeout: float):
    if not conn.poll(timeout):
        raise TimeoutError(f"the server process did not answer within {timeout} s")
    msg = conn.recv()
    if msg[0] == "error":
        raise RuntimeError(f"the server process failed:\n{msg[1]}")
    return msg


def _summary_us(ns: np.ndarray) -> dict:
    if len(ns) == 0:
        return {"count": 0}
    us = np.asarray(ns, dtype=np.float64) / 1e3
    return {"count": int(len(us)), "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "max_us": float(us.max())}


def run_idle_rings(spec: str = DEFAULT_SPEC, *, streams: int = 4, seconds: float = 3.0,
                   idle_ms: tuple[float, ...] = (0.5, 5, 50, 500), trials: int = 40,
                   hot: int = 2000, pin: bool = True) -> dict:
    """Measure idle-stream CPU and wake-up latency; returns the ``qecd.bench.idle_rings/1``
    report (keys ``idle_cpu`` and ``wake_up_us``, per idle length in ms, and ``hot_us``).

    ``trials`` wake-ups of the first stream are timed per idle length (the other streams
    stay idle throughout), so a p99 of fewer than 100 trials is close to their maximum."""
    from qecd.codes import build_experiment
    from qecd.transport.shm import loop
    from qecd.transport.shm.streams import ShmStreamClient

    server_cpu, client_cpu = _cpus(pin)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_proc, args=(spec, streams, server_cpu, child),
                       daemon=True)
    proc.start()
    clients = []
    try:
        _, names = _recv(parent, 300)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        exp = build_experiment(spec)
        clients = [ShmStreamClient.attach(n, exp.layout, stream_id=i + 1)
                   for i, n in enumerate(names)]
        clients[0].ping(10)  # compile or load the client kernel before timing
        time.sleep(0.5)  # every loop past its spin window and at its longest nap
        parent.send(("cpu", seconds))
        _, cpu_s, wall_s = _recv(parent, seconds + 60)
        hot_ns = clients[0].ping(hot)
        wake: dict[str, dict] = {}
        for ms in idle_ms:
            got = []
            for _ in range(trials):
                time.sleep(ms / 1e3)
                rtt = clients[0].ping(1, timeout_s=1.0)
                if len(rtt):
                    got.append(int(rtt[0]))
            wake[f"{ms:g}"] = {**_summary_us(np.array(got, dtype=np.int64)),
                               "lost": trials - len(got)}
        parent.send(("stop",))
        _recv(parent, 60)
    finally:
        for c in clients:
            c.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        if client_cpu is not None:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    from qecd.bench.machine import machine_info

    return {
        "schema": SCHEMA, "spec": spec, "streams": streams,
        "loop": {"spin_ns": loop.SPIN_NS, "min_nap_us": loop.MIN_NAP_US,
                 "max_nap_us": loop.MAX_NAP_US},
        "pinning": {"server_cpu": server_cpu, "client_cpu": client_cpu},
        "idle_cpu": {"seconds": wall_s, "cpu_seconds": cpu_s,
                     "share_of_one_cpu": cpu_s / wall_s if wall_s else None},
        "hot_us": _summary_us(hot_ns),
        "wake_up_us": wake,
        "load_average": list(os.getloadavg()),
        "machine": machine_info(),
    }


def format_idle_rings(r: dict) -> str:
    """The human report."""
    c = r["idle_cpu"]
    lines = [f"{r['streams']} idle ring streams ({r['spec']}), loop spins "
             f"{r['loop']['spin_ns'] / 1e6:g} ms then naps {r['loop']['min_nap_us']}-"
             f"{r['loop']['max_nap_us']} us; pinning {r['pinning']}",
             f"server CPU while idle: {100 * c['share_of_one_cpu']:.2f}% of one CPU "
             f"({c['cpu_seconds']:.3f} CPU-s over {c['seconds']:.2f} s)"]

    def row(name, d):
        if not d.get("count"):
            return f"  {name:<28} (no samples)"
        return (f"  {name:<28} p50 {d['p50_us']:9.1f}  p99 {d['p99_us']:9.1f}  "
                f"max {d['max_us']:9.1f} us  (n={d['count']})")

    lines.append("first packet after idling: HEARTBEAT round trip through the loop")
    lines.append(row("hot (loop spinning)", r["hot_us"]))
    for ms, d in r["wake_up_us"].items():
        lines.append(row(f"after {ms} ms idle", d)
                     + (f", {d['lost']} unanswered" if d.get("lost") else ""))
    la = r["load_average"]
    lines.append(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")
    return "\n".join(lines)


def command(a) -> int:
    """``qecd bench idle-rings`` (flags parsed in :mod:`qecd.cli`): print the report, write
    the JSON when asked."""
    r = run_idle_rings(a.spec, streams=a.streams, seconds=a.seconds,
                       idle_ms=tuple(a.idle_ms), trials=a.trials, pin=not a.no_pin)
    print(format_idle_rings(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0
