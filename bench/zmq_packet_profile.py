"""Where one SYNDROME packet's time goes on the ZeroMQ server's Python path.

Real sockets in one process: a DEALER queues ``packets`` one-round SYNDROMEs of a d=5
stream (the compiled stream decoder, ``DEFAULT_STREAM_DECODER``) on a ROUTER, then each is
taken through the steps ``Server._handle`` runs (``recv_multipart``, ``parse_packet``,
``StreamSession.begin``, the engine call, the CORRECTION's ``send_multipart``, the
service-time record), each timed. ``io_nice`` sets the
nice value of the context's I/O thread first (the finding of ``docs/server.md``, "The ZeroMQ
fast path": pinned to one CPU, a send that wakes the I/O thread costs ~30 µs at nice 0 and ~3
µs at nice 19). Run pinned: ``taskset -c 1 python -m qecd.bench.zmq_packet_profile 20000 19``.

Example
-------
>>> rows = profile_packets(600, spec="surface:d=3,r=3,p=0.001")
>>> sorted(rows) == sorted(STEPS) and rows["service"]["count"] == 600
True
"""

from __future__ import annotations

import sys
import time

import numpy as np
import zmq

from qecd.bench.latency_stats import summarize_ns
from qecd.codes import build_experiment
from qecd.decoder.registry import DEFAULT_STREAM_DECODER
from qecd.transport.engine import STEP_DONE
from qecd.transport.server.io_threads import lower_io_threads, thread_ids
from qecd.transport.server.metrics import ServiceRecorder
from qecd.transport.server.session import DecoderPool, SessionLimits, StreamSession
from qecd.transport.wire import Hello, SyndromeLayout, encode_syndrome, parse_packet

__all__ = ["STEPS", "profile_packets"]

#: the timed steps, in order (``send`` only for packets that triggered a CORRECTION)
STEPS = ("recv_multipart", "parse_packet", "begin", "engine", "send", "record", "service")


def profile_packets(packets: int = 20_000, *, spec: str = "surface:d=5,r=5,p=0.001",
                    io_nice: int = 0) -> dict[str, dict]:
    """Time each step of ``packets`` one-round packets; a summary per step (µs)."""
    exp = build_experiment(spec)
    hello = Hello(spec=spec, dem=None, time_coord=-1, decoder=DEFAULT_STREAM_DECODER,
                  window=None, commit=None, want_faults=False)
    plan = DecoderPool(SessionLimits()).get_or_build(hello)
    s = StreamSession(1, plan, owner=b"\0peer", route=b"\0peer")
    layout = SyndromeLayout(exp.layout.round_sizes)
    dets, _ = exp.sample(packets // exp.layout.num_rounds + 1, seed=1)
    rounds = [shot[ids] for shot in dets for ids in exp.layout.detectors][:packets]
    before = thread_ids()
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    if io_nice:
        lower_io_threads(before, io_nice)
    try:
        for sock, opt in ((router, zmq.RCVHWM), (dealer, zmq.SNDHWM), (dealer, zmq.RCVHWM)):
            sock.setsockopt(opt, 0)
        router.bind("tcp://127.0.0.1:0")
        dealer.connect(router.getsockopt_string(zmq.LAST_ENDPOINT))
        for i, r in enumerate(rounds):
            dealer.send(encode_syndrome(r, layout, stream_id=1, first_round=i))
        while router.poll(0) == 0:
            time.sleep(0.01)
        time.sleep(0.5)  # the rest arrive
        rec = ServiceRecorder(packets + 1)
        clock = time.perf_counter_ns
        t = {k: [] for k in STEPS}
        for _ in range(packets):
            t0 = clock()
            parts = router.recv_multipart(zmq.NOBLOCK)
            t1 = clock()
            header, payload = parse_packet(parts[1])
            t2 = clock()
            s.begin(header, payload)
            t3 = clock()
            i = o = 0
            eng = 0
            while True:
                a = clock()
                st, i, o, frame = s.engine_step(i, o, header.round, header.timestamp_ns, t1)
                eng += clock() - a
                if st == STEP_DONE:
                    break
                a = clock()
                router.send_multipart((parts[0], frame), zmq.NOBLOCK)
                t["send"].append(clock() - a)
            t4 = clock()
            rec.record(1, t4 - t1, 0)
            t5 = clock()
            for k, v in (("recv_multipart", t1 - t0), ("parse_packet", t2 - t1),
                         ("begin", t3 - t2), ("engine", eng), ("record", t5 - t4),
                         ("service", t4 - t1)):
                t[k].append(v)
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()
    return {k: summarize_ns(np.array(v, np.int64)) for k, v in t.items()}


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 20_000
    nice = int(argv[1]) if len(argv) > 1 else 0
    rows = profile_packets(n, io_nice=nice)
    print(f"{n} one-round d=5 {DEFAULT_STREAM_DECODER} packets, Python path, "
          f"I/O thread nice {nice} (us)")
    for k, d in rows.items():
        print(f"  {k:<15} n {d['count']:6d}  p50 {d['p50_us']:7.2f}  p99 {d['p99_us']:7.2f}  "
              f"p99.9 {d['p99.9_us']:8.2f}  max {d['max_us']:9.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
