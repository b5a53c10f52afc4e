"""The cost of the post-quantum handshake per HELLO (docs/protocol.md §6.8), against plain
HELLOs measured in the same run.

Three figures, each for plain and for post-quantum HELLOs:

- **open latency**: a client's ``open_stream`` wall time (key generation, HELLO -> ACCEPT
  over ZeroMQ on loopback, the ACCEPT's checks), the two kinds interleaved so both see the
  same machine; p50 and p99;
- **client CPU** per open (this thread's CPU time around ``open_stream``); p50 and p99;
- **server CPU** per HELLO: the ``qecd serve`` child process's CPU time (user + system, from
  ``/proc``) over each batch of HELLOs divided by their number (a mean; per-HELLO splits are
  not observable from outside). Its plan is cached after the first HELLO, so what differs
  between the kinds is the handshake.

Beside them, the crypto alone in this process (thread CPU per call, p50/p99): the server's
part (key checks, X25519, encapsulation, HKDF, ML-DSA-65 signature) and the client's part
(key generation, X25519, decapsulation, HKDF, tag and signature checks).

Run ``qecd bench pqc-handshake --hellos 200``; the machine's load average is
printed with the figures (a shared machine inflates every column alike).

Example
-------
>>> q = _quantiles([1.0, 2.0, 3.0, 4.0])
>>> q["p50"], q["n"]
(2.5, 4)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["measure_handshakes", "format_table"]

SPEC = "repetition:d=3,r=2,p=0.01"


def _quantiles(xs) -> dict:
    a = np.asarray(xs, dtype=float)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _crypto_alone(n: int, sec: str, pub: str) -> dict:
    """Per-call thread CPU (µs) of each side's handshake work, no sockets."""
    from qecd.transport.pqc import ClientHandshake, PqPin, PqServer
    from qecd.transport.wire import HEADER_SIZE, Accept, Hello, encode_hello

    server, pin = PqServer.from_file(sec), PqPin.from_file(pub)
    srv_us, cli_us = [], []
    for i in range(n + 5):  # 5 warm-up calls
        t0 = time.thread_time_ns()
        hs = ClientHandshake(pin)
        hello = hs.hello(Hello(spec=SPEC))
        body = encode_hello(hello)[HEADER_SIZE:]
        t1 = time.thread_time_ns()
        server.check_keys(hello)
        fields, _ = server.respond(hello, body, curve_client=None, stream_id=1)
        t2 = time.thread_time_ns()
        hs.finish(body, Accept(stream_id=1, slice_sizes=(2, 2, 2), num_observables=1,
                               **fields))
        t3 = time.thread_time_ns()
        if i >= 5:
            srv_us.append((t2 - t1) / 1e3)
            cli_us.append((t1 - t0 + t3 - t2) / 1e3)
    return {"server_crypto_cpu_us": _quantiles(srv_us),
            "client_crypto_cpu_us": _quantiles(cli_us)}


def measure_handshakes(hellos: int = 200, *, batch: int = 20) -> dict:
    """Open ``hellos`` plain and ``hellos`` post-quantum streams against a ``qecd serve``
    child (loopback tcp), interleaved in batches of ``batch``; returns the figures (µs)."""
    from qecd.transport.client import Client
    from qecd.transport.pqc import PqPin, create_pq_keypair

    d = tempfile.mkdtemp(prefix="qecd-pqc-bench-")
    pub, sec = create_pq_keypair(d, "server")
    ep = f"tcp://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "qecd", "serve", "--bind", ep,
                             "--pq-secret-key", sec], stderr=subprocess.DEVNULL)
    lat = {"plain": [], "pq": []}
    ccpu = {"plain": [], "pq": []}
    scpu = {"plain": [0.0, 0], "pq": [0.0, 0]}
    try:
        pin = PqPin.from_file(pub)
        clients = {"plain": Client(ep, timeout_s=30), "pq": Client(ep, timeout_s=30, pq=pin)}
        try:
            for c in clients.values():  # warm-up: server start, plan build, first ACCEPT
                c.open_stream(SPEC, timeout_s=120).close()
            done = 0
            while done < hellos:
                k = min(batch, hellos - done)
                for kind in ("plain", "pq") if (done // batch) % 2 == 0 else ("pq", "plain"):
                    c = clients[kind]
                    s0 = _proc_cpu_s(proc.pid)
                    for _ in range(k):
                        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                        s = c.open_stream(SPEC)
                        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
                        lat[kind].append((t1 - t0) / 1e3)
                        ccpu[kind].append((c1 - c0) / 1e3)
                        s.close()  # BYE: counted in the server's CPU, the same for both
                    scpu[kind][0] += _proc_cpu_s(proc.pid) - s0
                    scpu[kind][1] += k
                done += k
        finally:
            for c in clients.values():
                c.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = {"hellos": hellos, "loadavg": os.getloadavg(), "cpus": os.cpu_count()}
    for kind in ("plain", "pq"):
        out[kind] = {"open_latency_us": _quantiles(lat[kind]),
                     "client_cpu_us": _quantiles(ccpu[kind]),
                     "server_cpu_us_per_hello_with_bye": 1e6 * scpu[kind][0] / scpu[kind][1]}
    out["crypto_alone"] = _crypto_alone(hellos, sec, pub)
    return out


def format_table(r: dict) -> str:
    """The figures as a small text table (µs)."""
    lines = [f"post-quantum handshake cost per HELLO: {r['hellos']} HELLOs per kind, "
             f"{r['cpus']} CPUs, load average {r['loadavg'][0]:.2f} "
             f"(a shared machine inflates every column alike)",
             f"{'':34s}{'plain p50':>11s}{'p99':>9s}{'pq p50':>10s}{'p99':>9s}"]
    for key, name in (("open_latency_us", "open_stream latency (us)"),
                      ("client_cpu_us", "client CPU per open (us)")):
        p, q = r["plain"][key], r["pq"][key]
        lines.append(f"{name:34s}{p['p50']:11.0f}{p['p99']:9.0f}{q['p50']:10.0f}"
                     f"{q['p99']:9.0f}")
    p = r["plain"]["server_cpu_us_per_hello_with_bye"]
    q = r["pq"]["server_cpu_us_per_hello_with_bye"]
    lines.append(f"{'server CPU per HELLO+BYE, mean (us)':34s}{p:11.0f}{'':9s}{q:10.0f}")
    for key, name in (("server_crypto_cpu_us", "server crypto alone, CPU (us)"),
                      ("client_crypto_cpu_us", "client crypto alone, CPU (us)")):
        c = r["crypto_alone"][key]
        lines.append(f"{name:34s}{'':11s}{'':9s}{c['p50']:10.0f}{c['p99']:9.0f}")
    return "\n".join(lines)


def command(args) -> int:
    """``qecd bench pqc-handshake [--hellos N] [--json PATH]``: print the table."""
    if args.hellos < 1:
        raise ValueError(f"--hellos: expected at least 1, got {args.hellos}")
    r = measure_handshakes(args.hellos)
    print(format_table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0
