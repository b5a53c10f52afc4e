"""``qecd bench latency``: does the decoder keep up, and how soon is a correction ready?

The harness starts the service in one process and the emulator in another (``spawn``), pins
them to different CPUs when two are available, streams stim-sampled shots round by round,
and reports, each beside its floor measured in the same run:

- **service time per round** (server side, HdrHistogram): from taking the round's packet off
  the transport to handing the reply (if any) to the transport;
- **reaction time** (client side): from the send time of the round that completed a window
  (its *scheduled* time when paced, so queueing counts) to receiving the CORRECTION;
  floor: the **bare transport round trip** (HEARTBEAT echo through the same server loop;
  over ZeroMQ a compiled echo, back to back and, when paced, at the stream's packet interval,
  which is the floor "service adds" is taken against: CPUs that idle between packets wake up
  slower, and the back-to-back echo never idles);
- **decode cost per round**: mean service time of the rounds that triggered a decode and of
  all rounds; floor: the **offline batch decode** of the same shots per round;
- **throughput** (rounds/s) and **backlog at the offered rate**: how far behind its scheduled
  send time each packet was processed (µs and cycles), which grows without bound when the
  service cannot keep up;
- **logical error rate** over the wire, the offline rate on the same shots, and mismatches.

``--budget-us B`` turns the p99 service time into the exit code (0 met, 1 missed).

Example
-------
>>> r = run_latency("repetition:d=3,r=3,p=0.01", shots=200, ping=200, pin=False, stall_s=0.05)
>>> r["schema"], r["transport"], r["lost"], r["mismatches_vs_offline"]
('qecd.bench.latency/1', 'shm', 0, 0)
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback

import numpy as np

from qecd.bench.latency_stats import budget_verdict, summarize_ns
from qecd.bench.machine import machine_info
from qecd.bench.shm_emulator import ShmEmulateConfig
from qecd.bench.stats import wilson_interval
from qecd.decoder.registry import DEFAULT_STREAM_DECODER

SCHEMA = "qecd.bench.latency/1"


def _cpus(pin: bool) -> tuple[int | None, int | None]:
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if not pin or len(cpus) < 2:
        return None, None
    return cpus[-1], cpus[0]  # server, emulator


def _shm_server_proc(spec, decoder, window, commit, cpu, record_capacity, n_slots, conn):
    try:
        from qecd.codes import build_experiment
        from qecd.transport.shm.streams import ShmStreamServer

        exp = build_experiment(spec)
        srv = ShmStreamServer.for_experiment(exp, stream_id=1, window=window, commit=commit,
                                             decoder=decoder, record_capacity=record_capacity,
                                             n_slots=n_slots)
        srv.start(cpu=cpu)
        conn.send(("ready", srv.region_name, srv.corrections_per_shot))
        conn.recv()  # "stop"
        srv.stop()
        srv.join(10)
        conn.send(("records", srv.records(), srv.counters(), srv.exit_code))
        srv.close()
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _shm_emulator_proc(cfg, conn):
    try:
        from qecd.bench.shm_emulator import run_shm_emulation

        conn.send(("done", run_shm_emulation(cfg, lambda f: conn.send(("progress", f)))))
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _reaction_breakdown(records: dict, emu: dict, n_rounds: int):
    """Split each correction's reaction time using the server's per-packet records.

    Returns ``(until_ready, server_side, note)`` in ns: from the triggering round's
    scheduled send to the reply ready to be written (the server's pick-up time, i.e. the
    schedule plus its recorded lag, plus the CORRECTION's ``service_ns``, stamped just
    before the ring write), and the server-side part of that: from the round's doorbell
    (rung by the emulator) to the same point. The harness sends one round per packet, so
    record ``k`` is absolute round ``k``; when the records do not cover every packet of the
    run exactly (a rejected packet, a wrapped record ring) nothing is attributed and
    ``note`` says why."""
    total = int(records.get("records_total", len(records["lag_ns"])))
    warm = int(emu["warm_rounds"])
    if total != warm + n_rounds or len(records["lag_ns"]) != total or emu["errors"]:
        empty = np.zeros(0, np.int64)
        return empty, empty, (f"records cover {total} packets, expected {warm + n_rounds} "
                              f"with 0 errors ({emu['errors']}): breakdown omitted")
    k = emu["corr_round"].astype(np.int64)
    until_ready = records["lag_ns"][k] + emu["corr_service_ns"]
    kk = k - warm  # index among the timed packets
    server_side = until_ready - (emu["write_ns"][kk] - emu["send_ns"][kk])
    return until_ready, server_side, None


def _lag_trend(lag_ns: np.ndarray, cycle_us: float) -> tuple[str | None, list[float]]:
    """How a paced run's lag behind schedule evolved: the median lag of each tenth of the run
    (µs) and a word for it, judged against 10 cycles (zmq: 10 packet intervals):

    - ``"drained"``: the last tenth's under the bound: whatever backlog stalls built was
      drained rather than carried to the end (the report's ``kept_up``);
    - ``"growing"``: the last tenth's over the bound above the first half's median (the
      offered rate is above what is served, or a stall was not caught up);
    - ``"standing"``: every tenth within one bound of the others, all over it (a flat queue,
      e.g. a transport that batches at this rate);
    - ``"lagging"``: over the bound at the end, neither of those (the figures say how).

    None when unpaced.

    >>> t = np.arange(1000)
    >>> [_lag_trend(x, 1.0)[0] for x in (t * 1000, np.full(1000, 50_000), np.full(1000, 5_000))]
    ['growing', 'standing', 'drained']
    >>> _lag_trend(20_000 + t * 360, 24.0)[0]  # 20 -> 380 us at 240 us per 10 packets
    'growing'
    """
    if not cycle_us or len(lag_ns) < 10:
        return None, []
    tenths = [float(np.median(c)) / 1e3 for c in np.array_split(np.asarray(lag_ns), 10)]
    bound = 10 * cycle_us
    if tenths[-1] < bound:
        return "drained", tenths
    if tenths[-1] > float(np.median(tenths[:5])) + bound:
        return "growing", tenths
    if max(tenths) - min(tenths) <= bound:
        return "standing", tenths
    return "lagging", tenths


def _backlog_trend(lag_ns: np.ndarray, cycle_us: float) -> dict:
    """The report's ``backlog`` keys ``kept_up`` (the lag ``"drained"``: True when the median
    lag over the last tenth of the samples is under 10 cycles; zmq: 10 packet intervals,
    ``cycle_us`` = K x cycle; None when unpaced), ``trend`` and ``lag_by_tenth_us``
    (:func:`_lag_trend`)."""
    trend, tenths = _lag_trend(lag_ns, cycle_us)
    return {"kept_up": None if trend is None else trend == "drained", "trend": trend,
            "lag_by_tenth_us": tenths}


def _recv(conn, timeout: float, who: str):
    if not conn.poll(timeout):
        raise TimeoutError(f"{who} did not answer within {timeout} s")
    msg = conn.recv()
    if msg[0] == "error":
        raise RuntimeError(f"{who} failed:\n{msg[1]}")
    return msg


def run_latency(spec: str = "surface:d=5,p=0.001", *, decoder: str = DEFAULT_STREAM_DECODER,
                transport: str = "shm", shots: int = 20_000, seed: int = 2026,
                cycle_us: float = 0.0, window: int | None = None, commit: int | None = None,
                ping: int = 20_000, pin: bool = True, budget_us: float | None = None,
                stall_s: float = 1.0, ring_slots: int = 4096, rounds_per_packet: int = 1,
                emulator: str | None = None, serve_args: tuple[str, ...] = (),
                progress=None) -> dict:
    """Run one latency experiment and return the ``qecd.bench.latency/1`` report.

    ``transport="shm"``: shared-memory rings served by a Numba stream loop (``uf`` compiled
    end to end; other decoders leave Numba only to decode a due window).
    ``transport="zmq"``: ``qecd serve`` over tcp loopback and the ZeroMQ emulator of
    :mod:`qecd.bench.emulator`. Before streaming, ``stall_s`` seconds of the platform's
    own stalls are measured on the same CPUs (:mod:`qecd.bench.stall_meter`; 0 skips).
    ``ring_slots`` (a power of two) sizes each shm ring: at 4096 slots a stalled server can
    fall 4 ms behind a 1 µs cycle before the emulator has to wait for space, so the
    emulator's send times stay its own. ``rounds_per_packet`` (``zmq`` only for now) sends K
    rounds per SYNDROME packet, K rounds every K cycles when paced. ``emulator`` (``zmq``
    only) picks the ZeroMQ emulator, ``"native"`` (compiled, :mod:`qecd.bench.native_emulator`)
    or ``"python"``; None: native when available. With the native one the bare round trip is
    the compiled DEALER <-> compiled echo ROUTER (pinned to the server's CPU), and the
    HEARTBEAT round trip from Python is kept as ``bare_round_trip_python``. ``serve_args``
    (``zmq`` only) are appended to the ``qecd serve`` command line, e.g.
    ``("--io-thread-nice", "0")``; the report keeps them as ``serve_args``.
    """
    from qecd.decoder.registry import backend_class
    from qecd.errors import QecdError

    if transport not in ("shm", "zmq"):
        raise QecdError(f"transport {transport!r}: expected 'shm' or 'zmq'")
    backend_class(decoder)  # a bad name fails here, not in a child process
    if emulator is not None and transport != "zmq":
        raise QecdError(f"emulator: chooses the ZeroMQ emulator (transport 'zmq'), got "
                        f"emulator={emulator!r} with transport {transport!r}")
    if serve_args and transport != "zmq":
        raise QecdError(f"serve_args: arguments for the qecd serve of transport 'zmq', got "
                        f"{list(serve_args)} with transport {transport!r}")
    if rounds_per_packet < 1 or (transport == "shm" and rounds_per_packet != 1):
        raise QecdError(f"rounds_per_packet: expected 1 over shm (one round per ring slot) or "
                        f">= 1 over zmq, got {rounds_per_packet} over {transport}")
    server_cpu, emu_cpu = _cpus(pin)
    stalls = None
    stall_gaps = None
    if stall_s > 0:
        from qecd.bench.stall_meter import measure_stalls

        if progress:
            progress(f"measuring the platform's stalls for {stall_s:g} s on the same CPUs")
        stalls = measure_stalls([server_cpu, emu_cpu], seconds=stall_s)
        stall_gaps = stalls.pop("_stalls_ns")
    if transport == "zmq":
        report = _run_zmq(spec, decoder=decoder, shots=shots, seed=seed, cycle_us=cycle_us,
                          window=window, commit=commit, ping=ping, pin=pin,
                          budget_us=budget_us, rounds_per_packet=rounds_per_packet,
                          emulator=emulator, serve_args=tuple(serve_args),
                          progress=progress)
        report["platform_stalls"] = stalls
        report["_series"]["platform_gaps_ns"] = stall_gaps
        return report
    from qecd.codes import build_experiment

    exp = build_experiment(spec)
    R = exp.layout.num_rounds
    n_rounds = shots * R
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    e_parent, e_child = ctx.Pipe()
    server = ctx.Process(target=_shm_server_proc, args=(
        str(exp.spec), decoder, window, commit, server_cpu, n_rounds + 50_000, ring_slots,
        s_child), daemon=True)
    server.start()
    emulator = None
    try:
        _, name, cps = _recv(s_parent, 300, "server")
        if progress:
            progress("server ready; streaming")  # then fractions 0..1 as chunks complete
        cycle_ns = int(round(cycle_us * 1000))
        cfg = ShmEmulateConfig(str(exp.spec), name, cps, decoder=decoder, window=window,
                               commit=commit, shots=shots, seed=seed, cycle_ns=cycle_ns,
                               ping=ping, cpu=emu_cpu)
        emulator = ctx.Process(target=_shm_emulator_proc, args=(cfg, e_child), daemon=True)
        emulator.start()
        while True:
            msg = _recv(e_parent, 600, "emulator")
            if msg[0] == "progress":
                if progress:
                    progress(msg[1])
                continue
            emu = msg[1]
            break
        s_parent.send("stop")
        _, records, counters, exit_code = _recv(s_parent, 60, "server")
    finally:
        for p in (emulator, server):
            if p is not None:
                p.join(10)
                if p.is_alive():
                    p.kill()
    warm = emu["warm_rounds"]
    service = records["service_ns"][warm:]
    lag = records["lag_ns"][warm:]
    decoded = records["decoded"][warm:].astype(bool)
    pred, truth, offline = emu["predictions"], emu["truth"], emu["offline"]
    fails_wire = int(np.any(pred != truth, axis=1).sum())
    fails_off = int(np.any(offline != truth, axis=1).sum())
    until_ready, server_side, mapping_note = _reaction_breakdown(records, emu, n_rounds)
    from qecd.bench.drain import drain_summary

    drain = (None if mapping_note else drain_summary(
        emu["send_ns"], emu["write_ns"], lag, service, cycle_us=cycle_us))
    from qecd.bench.deadline import deadline_summary, shot_latencies

    shot_ns = shot_latencies(emu["corr_round"], emu["corr_ts"], emu["corr_ts"] + emu["reaction_ns"],
                             rounds_per_shot=R, shots=shots, first_round=emu["warm_rounds"])
    summaries = {
        "service": summarize_ns(service, include_hdr=True),
        "service_decode_rounds": summarize_ns(service[decoded]),
        "reaction": summarize_ns(emu["reaction_ns"], include_hdr=True),
        "reaction_until_reply_ready": summarize_ns(until_ready),
        "reaction_server_side": summarize_ns(server_side),
        "emulator_write_delay": summarize_ns(emu["write_ns"] - emu["send_ns"]),
        "bare_round_trip": summarize_ns(emu["rtt_ns"]),
        "lag": summarize_ns(lag),
    }
    stream_s = emu["stream_ns"] / 1e9
    report = {
        "schema": SCHEMA,
        "spec": str(exp.spec),
        "decoder": decoder,
        "window": window,
        "commit": commit,
        "transport": transport,
        "shots": shots,
        "rounds": int(len(service)),
        "rounds_per_shot": R,
        "seed": seed,
        "cycle_us": cycle_us,
        "pinning": {"server_cpu": server_cpu, "emulator_cpu": emu_cpu},
        "ring_slots": ring_slots,
        "corrections_expected": emu["expected"],
        "corrections_received": emu["received"],
        "lost": emu["lost"],
        "duplicated": emu["duplicated"],
        "errors": emu["errors"],
        "server_exit": exit_code,
        "server_counters": counters,
        "ler_wire": fails_wire / shots,
        "ler_wire_ci95": list(wilson_interval(fails_wire, shots)),
        "ler_offline": fails_off / shots,
        "ler_offline_ci95": list(wilson_interval(fails_off, shots)),
        "mismatches_vs_offline": int(np.any(pred != offline, axis=1).sum()),
        "latency_us": summaries,
        "decode_cost_us_per_round": {
            "service_mean_all_rounds": float(service.mean()) / 1e3 if len(service) else None,
            "offline_batch": emu["batch_ns"] / 1e3 / n_rounds,
        },
        "throughput_rounds_per_s": n_rounds / stream_s if stream_s else None,
        "offered_rounds_per_s": 1e6 / cycle_us if cycle_us else None,
        "reaction_breakdown_note": mapping_note,
        "backlog": {
            **_backlog_trend(lag, cycle_us),
            # a backlog longer than the ring makes the emulator wait for space: its send
            # delays then include the server's backlog (and the server side excludes it)
            "ring_may_have_filled": (None if not cycle_us or not len(lag)
                                     else bool(lag.max() >= ring_slots * cycle_us * 1e3)),
            "lag_p99_us": summaries["lag"]["p99_us"],
            "lag_max_us": summaries["lag"]["max_us"],
            "lag_p99_cycles": (summaries["lag"]["p99_us"] / cycle_us) if cycle_us else None,
            "final_lag_us": float(lag[-1000:].mean()) / 1e3 if len(lag) else None,
        },
        "platform_stalls": stalls,
        "drain": drain,
        "deadline": deadline_summary(shot_ns, np.any(pred != truth, axis=1), cycle_us=cycle_us),
        "machine": machine_info(),
    }
    if budget_us is not None:
        report["budget"] = budget_verdict(summaries, budget_us=budget_us)
        report["budget_reaction"] = budget_verdict(summaries, budget_us=budget_us,
                                                   metric="reaction")
    report["_series"] = {"service_ns": service, "decoded": decoded,
                         "reaction_ns": emu["reaction_ns"], "rtt_ns": emu["rtt_ns"],
                         "platform_gaps_ns": stall_gaps, "shot_latency_ns": shot_ns}
    return report


def _count(v) -> int:
    return int(sum(v.values())) if isinstance(v, dict) else int(v or 0)


def _backlog_text(b: dict) -> str:
    if b.get("kept_up") is None:
        return ""
    text = ("; backlog bounded (drained by the end)" if b["kept_up"]
            else "; backlog GROWING: the offered rate is above what the service sustains")
    if b.get("ring_may_have_filled"):
        text += ("; the backlog may have filled the ring (emulator send delays then include "
                 "it: raise --ring-slots)")
    return text


def _us(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def format_latency(r: dict) -> str:
    """A short human-readable summary with the floors beside each figure."""
    s = r["latency_us"]

    def row(name, d):
        if not d or d.get("count", 0) == 0:
            return f"  {name:<26} (no samples)"
        return (f"  {name:<26} p50 {d['p50_us']:8.3f}  p90 {d['p90_us']:8.3f}  "
                f"p99 {d['p99_us']:8.3f}  p99.9 {d['p99.9_us']:9.3f}  max {d['max_us']:10.1f}")

    pin = r["pinning"]
    lines = [
        f"{r['spec']}  decoder={r['decoder']} window={r['window']} commit={r['commit']} "
        f"transport={r['transport']}  shots={r['shots']} rounds={r['rounds']} "
        f"cycle={r['cycle_us'] or 'unpaced'} us",
        f"pinning: server cpu {pin['server_cpu']}, emulator cpu {pin['emulator_cpu']}",
        "latency (us):",
        row("service time / round", s["service"]),
        row("  rounds with a decode", s["service_decode_rounds"]),
    ]
    if "service_per_packet" in s:
        lines.append(row(f"service time / packet ({r.get('rounds_per_packet', 1)} r)",
                         s["service_per_packet"]))
    lines += [
        row("reaction time", s["reaction"]),
    ]
    if "reaction_until_reply_ready" in s:
        lines += [row("  until the reply was ready", s["reaction_until_reply_ready"]),
                  row("  server side of it", s["reaction_server_side"]),
                  row("emulator send delay", s["emulator_write_delay"])]
    lines += [
        row("bare transport RTT (floor)", s["bare_round_trip"]),
    ]
    if "bare_round_trip_paced" in s:
        lines.append(row("  paced like the stream", s["bare_round_trip_paced"]))
    if "bare_round_trip_python" in s:
        lines.append(row("  HEARTBEAT from Python", s["bare_round_trip_python"]))
    if r.get("bare_round_trip_method"):
        lines.append(f"  (floor: {r['bare_round_trip_method']})")
    if r.get("bare_round_trip_paced_method"):
        lines.append(f"  (paced floor: {r['bare_round_trip_paced_method']})")
    if r.get("paced_floor_saturated"):
        lines.append("  (the paced echo fell behind its own schedule: the transport alone "
                     "does not carry this packet rate, so it is no floor)")
    if r.get("service_adds_p50_us") is not None:
        which = ("the paced bare RTT" if r.get("service_adds_floor") == "bare_round_trip_paced"
                 else "bare RTT")
        lines.append(f"service adds (reaction p50 - {which} p50): "
                     f"{r['service_adds_p50_us']:.1f} us"
                     + (" (below the floor: within this run's noise)"
                        if r["service_adds_p50_us"] < 0 else ""))
    if r.get("emulator"):
        lines.append(f"emulator: {r['emulator']}"
                     + (f" ({r['emulator_note']})" if r.get("emulator_note") else ""))
    lines += [
        row("lag behind schedule", s["lag"]),
        "decode cost: " + _us(r['decode_cost_us_per_round']['service_mean_all_rounds'])
        + " us/round served (offline batch floor "
        + _us(r['decode_cost_us_per_round']['offline_batch']) + ")",
        f"throughput: {r['throughput_rounds_per_s']:,.0f} rounds/s"
        + (f" (offered {r['offered_rounds_per_s']:,.0f})" if r["offered_rounds_per_s"] else "")
        + _backlog_text(r.get("backlog") or {}),
        f"corrections: {r['corrections_received']}/{r['corrections_expected']}, "
        f"lost {r['lost']}, duplicated {r['duplicated']}, errors {_count(r['errors'])}, "
        f"mismatches vs offline {r['mismatches_vs_offline']}",
        f"LER wire {r['ler_wire']:.2e} [{r['ler_wire_ci95'][0]:.1e}, {r['ler_wire_ci95'][1]:.1e}]"
        f"  offline {r['ler_offline']:.2e}",
    ]
    if r.get("reaction_breakdown_note"):
        lines.append("reaction breakdown: " + r["reaction_breakdown_note"])
    if r.get("transport") == "shm":
        from qecd.bench.drain import format_drain

        lines.append(format_drain(r.get("drain")))
    if r.get("platform_stalls"):
        from qecd.bench.stall_meter import format_stalls

        lines.append("platform stalls (a bare spin loop on the same CPUs, just before streaming):")
        lines.append(format_stalls(r["platform_stalls"]))
    return "\n".join(lines)  # the verdict on every budget: qecd.bench.verdict


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _zmq_emulator_proc(cfg, conn):
    try:
        from qecd.bench.emulator import run_emulation

        conn.send(("done", run_emulation(cfg)))
    except Exception:
        conn.send(("error", traceback.format_exc()))


def _wait_until_serving(server, endpoint: str, progress, limit_s: float = 900.0) -> None:
    """Wait until ``qecd serve`` answers STATS (its kernels warm: minutes with a cold Numba
    cache), so the emulator's first round trips do not time out on a server still starting."""
    import time

    from qecd.errors import QecdError
    from qecd.transport.client import Client, ServerTimeout

    deadline = time.monotonic() + limit_s
    with Client(endpoint, timeout_s=5.0) as client:
        while True:
            try:
                client.stats()
                return
            except ServerTimeout:
                if server.poll() is not None:
                    raise QecdError(f"qecd serve exited with {server.returncode} before "
                                    "serving") from None
                if time.monotonic() > deadline:
                    raise
                if progress:
                    progress("waiting for qecd serve to warm its kernels")


def _run_zmq(spec, *, decoder, shots, seed, cycle_us, window, commit, ping, pin, budget_us,
             rounds_per_packet=1, emulator=None, serve_args=(), progress=None) -> dict:
    import signal
    import subprocess
    import sys
    import tempfile

    from qecd.bench.emulator import EmulateConfig
    from qecd.codes import build_experiment

    exp = build_experiment(spec)
    server_cpu, emu_cpu = _cpus(pin)
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="qecd-lat-")
    record = os.path.join(tmp, "service.npz")
    cmd = [sys.executable, "-m", "qecd", "serve", "--bind", f"tcp://127.0.0.1:{port}",
           "--record", record, "--record-capacity", str(shots * exp.layout.num_rounds + 10_000)]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    cmd += list(serve_args)
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_serving(server, f"tcp://127.0.0.1:{port}", progress)
        cfg = EmulateConfig(connect=f"tcp://127.0.0.1:{port}", spec=str(exp.spec),
                            decoder=decoder, window=window, commit=commit, shots=shots,
                            cycle_us=cycle_us or None, rounds_per_packet=rounds_per_packet,
                            seed=seed, rtt_samples=min(ping, 5000),
                            cpu=emu_cpu, timeout_s=60.0, emulator=emulator,
                            echo_cpu=server_cpu)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        emu = ctx.Process(target=_zmq_emulator_proc, args=(cfg, child), daemon=True)
        if progress:
            progress(f"qecd serve on tcp://127.0.0.1:{port}; streaming over ZeroMQ")
        emu.start()
        _, rep = _recv(parent, 1800, "emulator")
        emu.join(10)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    series = np.load(record) if os.path.exists(record) else None
    service = series["service_ns"] if series is not None else np.zeros(0, np.int64)
    decoded = (series["decoded"].astype(bool) if series is not None
               else np.zeros(0, dtype=bool))
    rt = rep["reaction_time"]
    # like with like: the compiled emulator's bare round trip crosses the same compiled path
    bare = rep.get("bare_round_trip_compiled") or rep["bare_round_trip"]
    # and paced like the stream when it is: both ends then idle between packets, and waking
    # up costs a VM tens of microseconds that the back-to-back echo never pays
    paced = rep.get("bare_round_trip_compiled_paced")
    # ... unless the paced echo itself fell behind its schedule (the transport saturated at
    # this packet rate): then it is no floor, and the back-to-back one is used
    paced_ns = rep.get("_samples", {}).get("rtt_compiled_paced_ns")
    paced_trend = None
    if paced and paced_ns is not None and bare.get("p50_us") is not None:
        paced_trend = _lag_trend(np.asarray(paced_ns) - int(bare["p50_us"] * 1e3),
                                 cycle_us * rounds_per_packet)[0]
    paced_saturated = paced_trend not in (None, "drained")
    floor = paced if paced and not paced_saturated else bare
    # rounds are recorded in order, rounds_per_packet per packet (the last may be shorter):
    # a packet's service is its slowest round's (the work it triggers is done by then)
    per_packet = (np.maximum.reduceat(service, np.arange(0, len(service), rounds_per_packet))
                  if len(service) else service)
    summaries = {
        "service": summarize_ns(service, include_hdr=True),
        "service_per_packet": summarize_ns(per_packet),
        "service_decode_rounds": summarize_ns(service[decoded]),
        "reaction": {k: v for k, v in rt.items()},
        "bare_round_trip": {k: v for k, v in bare.items() if k != "method"},
    }
    # the client-side lag behind schedule: each correction's reaction time (from its packet's
    # scheduled send) over the bare round trip; a backlog that grows shows as a growing lag
    raw = rep.get("_samples", {})
    reaction_ns = raw.get("reaction_ns", np.zeros(0, np.int64))
    bare_p50_ns = int((bare.get("p50_us") or 0) * 1e3)  # the back-to-back one: never kinder
    lag = np.maximum(reaction_ns - bare_p50_ns, 0)
    summaries["lag"] = summarize_ns(lag)
    if paced:
        summaries["bare_round_trip_paced"] = {k: v for k, v in paced.items() if k != "method"}
    if "bare_round_trip_compiled" in rep:
        summaries["bare_round_trip_python"] = {k: v for k, v in rep["bare_round_trip"].items()
                                               if k != "method"}
    adds = (None if rt.get("p50_us") is None or floor.get("p50_us") is None
            else rt["p50_us"] - floor["p50_us"])
    n_rounds = int(rep["rounds_sent"])
    lw, lo = rep["ler_wire"], rep["ler_offline"]
    report = {
        "schema": SCHEMA, "spec": str(exp.spec), "decoder": decoder, "window": window,
        "commit": commit, "transport": "zmq", "shots": shots, "rounds": n_rounds,
        "rounds_per_packet": rounds_per_packet,
        "rounds_per_shot": exp.layout.num_rounds, "seed": seed, "cycle_us": cycle_us,
        "pinning": {"server_cpu": server_cpu, "emulator_cpu": emu_cpu},
        "corrections_expected": rep["corrections_expected"],
        "emulator_failures": rep["failures"],
        "corrections_received": rep["corrections_received"], "lost": rep["lost"],
        "duplicated": rep["duplicated"], "errors": rep.get("errors_received", 0),
        "server_exit": server.returncode, "server_counters": rep.get("server"),
        "ler_wire": lw["rate"], "ler_wire_ci95": lw["ci95"], "ler_offline": lo["rate"],
        "ler_offline_ci95": lo["ci95"], "mismatches_vs_offline": rep["mismatches"],
        "latency_us": summaries,
        "decode_cost_us_per_round": {
            "service_mean_all_rounds": float(service.mean()) / 1e3 if len(service) else None,
            "offline_batch": None,
        },
        "throughput_rounds_per_s": rep["throughput"]["rounds_per_s"],
        "offered_rounds_per_s": 1e6 / cycle_us if cycle_us else None,
        "backlog": {
            **_backlog_trend(lag, cycle_us * rounds_per_packet),
            "rule": "paced: the median lag (reaction time minus the bare round trip's p50) "
                    "over the last tenth of the corrections is under 10 packet intervals "
                    "(K x cycle)",
            "lag_p99_us": summaries["lag"]["p99_us"], "lag_max_us": summaries["lag"]["max_us"],
            "final_lag_us": float(lag[-1000:].mean()) / 1e3 if len(lag) else None,
            "late_sends": rep["throughput"].get("late_sends"),
            "max_late_us": rep["throughput"].get("max_late_us")},
        "emulator": rep["emulator"], "emulator_note": rep.get("emulator_note"),
        "serve_args": list(serve_args),
        "bare_round_trip_method": bare.get("method"),
        "bare_round_trip_paced_method": paced.get("method") if paced else None,
        "service_adds_p50_us": adds,
        "service_adds_floor": ("bare_round_trip_paced" if floor is paced
                               else "bare_round_trip"),
        "paced_floor_saturated": paced_saturated if paced else None,
        "emulator_report": {k: rep[k] for k in ("schema", "max_inflight", "mode")},
        "machine": machine_info(),
    }
    if budget_us is not None:
        report["budget"] = budget_verdict(summaries, budget_us=budget_us)
        report["budget_reaction"] = budget_verdict(summaries, budget_us=budget_us,
                                                   metric="reaction")
    report["_series"] = {"service_ns": service, "decoded": decoded,
                         "reaction_ns": raw.get("reaction_ns", np.zeros(0, np.int64)),
                         "rtt_ns": raw.get("rtt_compiled_ns", raw.get("rtt_ns",
                                                                      np.zeros(0, np.int64)))}
    return report
