"""The compiled ZeroMQ emulator against real servers on loopback.

It must report what the Python emulator reports on the same shots (same corrections, the
same counts, one schema), pace multi-round packets, measure the bare round trip through its
own compiled path, and count replies a server never sent as lost, not as mismatches.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import zmq

from qecd.bench import native_emulator
from qecd.bench.emulator import EmulateConfig, run_emulation
from qecd.cli import main
from qecd.transport.wire import MsgType, parse_packet
from qecd.transport.wire.correction import decode_correction

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(not native_emulator.available(),
                                 reason=f"compiled emulator unavailable: "
                                        f"{native_emulator.unavailable_reason()}")]

SPEC = "surface:d=3,r=8,p=0.02"


def _run(endpoint: str, emulator: str, **kw) -> dict:
    cfg = dict(connect=endpoint, spec=SPEC, shots=120, streams=2, window=4, commit=2,
               rounds_per_packet=3, seed=11, rtt_samples=50, timeout_s=20.0)
    cfg.update(kw)
    return run_emulation(EmulateConfig(emulator=emulator, **cfg))


def test_native_and_python_emulators_report_the_same_corrections(running_server):
    with running_server() as server:
        native = _run(server.endpoints[0], "native")
        python = _run(server.endpoints[0], "python")
    for r in (native, python):
        assert r["ok"], r["failures"]
        assert (r["lost"], r["duplicated"], r["unexpected"], r["mismatches"],
                r["correction_mismatches"], r["shots_incomplete"]) == (0, 0, 0, 0, 0, 0)
    assert (native["emulator"], python["emulator"]) == ("native", "python")
    for key in ("rounds_sent", "corrections_expected", "corrections_received", "ler_wire",
                "ler_offline", "window", "commit", "rounds_per_shot", "max_inflight"):
        assert native[key] == python[key], key
    assert native["rounds_sent"] == 120 * 9
    assert native["reaction_time"]["count"] == native["corrections_received"]
    # one schema: the native report only adds the compiled bare round trip
    assert set(native) - set(python) == {"bare_round_trip_compiled"}
    assert set(python) <= set(native)
    bare = native["bare_round_trip_compiled"]
    assert bare["count"] == 50 and "echo ROUTER" in bare["method"]
    assert "HEARTBEAT" in native["bare_round_trip"]["method"]


def test_paced_multi_round_packets(running_server):
    with running_server() as server:
        r = _run(server.endpoints[0], "native", shots=60, streams=1, rounds_per_packet=4,
                 cycle_us=100.0)
    assert r["ok"], r["failures"]
    assert r["mode"] == "paced" and r["cycle_us"] == 100.0
    assert r["rounds_sent"] == 60 * 9 and r["corrections_received"] == r["corrections_expected"]
    thr = r["throughput"]
    # 540 rounds in packets of 4 every 400 us: the schedule alone spans 134 packet intervals
    assert thr["wall_s"] >= 134 * 4 * 100e-6
    assert thr["late_sends"] is not None and r["reaction_time"]["count"] == 60 * 4
    paced = r["bare_round_trip_compiled_paced"]  # the floor at the same packet interval
    assert paced["count"] >= 180 and "one every 400 us" in paced["method"]


def test_paced_echoes_go_on_schedule_without_waiting_for_the_echoes():
    """The paced floor sends as a paced stream does: a late echo does not hold back the next
    send, and each echo is timed from its packet's scheduled send."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def hold_then_echo():  # answer nothing until all ten arrived
        got = [router.recv_multipart() for _ in range(10)]
        for parts in got:
            router.send_multipart(parts)

    t = threading.Thread(target=hold_then_echo, daemon=True)
    t.start()
    frame = np.zeros(32, np.uint8)
    rtt = np.zeros(10, np.int64)
    items = native_emulator.poll_items(dealer.underlying)
    rbuf = np.zeros(native_emulator.MAX_REPLY, np.uint8)
    gap = 2_000_000
    done = native_emulator.paced_echoes(dealer.underlying, frame, 32, 10, gap, 10**10, rtt,
                                        items, rbuf)
    t.join(10)
    dealer.close(0)
    router.close(0)
    ctx.term()
    assert done == 10
    # the first echo left only after the tenth send, scheduled 9 gaps after the first
    assert rtt[0] >= 9 * gap
    # echo i left after send 9, which was scheduled (9 - i) gaps after send i
    assert all(rtt[i] >= (9 - i) * gap for i in range(10))


def test_the_paced_floor_is_answered_as_often_as_the_stream_is():
    """The paced echo sends every frame on schedule but asks for an echo on one in m (the
    stream's packets per CORRECTION): the compiled echo takes all of them and answers those."""
    from qecd.bench.zmq_echo import EchoRouter

    echo = EchoRouter("tcp://127.0.0.1:0").start()
    try:
        rtt, method = native_emulator.compiled_round_trips(echo, 300, gap_ns=200_000,
                                                           reply_every=3)
    finally:
        echo.close()
    assert len(rtt) == 300 - 30  # the first tenth settles the queues and is not kept
    assert "one every 200 us" in method and "one in 3 answered" in method
    assert echo.served == 100 + 300 * 3  # 100 back-to-back warm-ups, then 900 paced frames


class _DroppingProxy:
    """A ROUTER in front of a real server that forwards everything but drops some of the
    CORRECTIONs on their way back: every one that flips an observable without ending its
    shot (so a report that XORs what arrived would mispredict that shot)."""

    def __init__(self, upstream: str) -> None:
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.bind("tcp://127.0.0.1:0")
        self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.connect(upstream)
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _drop(self, frame: bytes) -> bool:
        header, payload = parse_packet(frame)
        if header.msg_type != MsgType.CORRECTION:
            return False
        c = decode_correction(header, payload)
        return bool(np.any(c.observables)) and not c.shot_end

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        route = None
        while not self._stop.is_set():
            for sock, _ in poller.poll(50):
                if sock is self.front:
                    route, frame = self.front.recv_multipart()
                    self.back.send(frame)
                else:
                    frame = self.back.recv()
                    if self._drop(frame):
                        self.dropped += 1
                    elif route is not None:
                        self.front.send_multipart([route, frame])

    def __enter__(self) -> _DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.front.close(0)
        self.back.close(0)
        self.ctx.term()


@pytest.mark.parametrize("emulator", ["native", "python"])
def test_replies_the_server_never_sent_are_lost_not_mismatched(running_server, emulator):
    """A shot whose last correction arrived after an earlier one was dropped used to be
    compared with the offline decode as if complete, so the dropped flip showed as a
    mismatch: now it is an incomplete shot and the dropped corrections are lost."""
    with running_server() as server, _DroppingProxy(server.endpoints[0]) as proxy:
        r = _run(proxy.endpoint, emulator, shots=200, streams=1, timeout_s=3.0)
    assert proxy.dropped > 0
    assert r["lost"] == proxy.dropped
    assert r["mismatches"] == 0 and r["correction_mismatches"] == 0
    assert r["shots_incomplete"] > 0 and not r["ok"]
    assert r["corrections_received"] == r["corrections_expected"] - proxy.dropped
    assert r["ler_wire"]["shots"] == 200 - r["shots_incomplete"] - r["shots_unanswered"]


def test_an_unknown_emulator_name_is_refused():
    from qecd.errors import QecdError

    with pytest.raises(QecdError, match="emulator: expected one of"):
        run_emulation(EmulateConfig(connect="tcp://127.0.0.1:1", spec=SPEC, emulator="c++"))


def test_bench_latency_zmq_names_the_emulator_and_both_round_trips(tmp_path):
    out = tmp_path / "lat.json"
    rc = main(["bench", "latency", "--transport", "zmq", "--emulator", "native", "--spec",
               "surface:d=3,r=8,p=0.01", "--window", "4", "--commit", "2", "--shots", "100",
               "--rounds-per-packet", "3", "--cycle-us", "50", "--ping", "100", "--no-pin",
               "--stall-s", "0", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc in (0, 1), r  # 1: a budget (e.g. the backlog on a loaded machine) not met
    assert r["emulator"] == "native" and r["emulator_failures"] == []
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    lat = r["latency_us"]
    assert lat["bare_round_trip"]["count"] == 100 and lat["bare_round_trip_python"]["count"] == 100
    assert "echo ROUTER" in r["bare_round_trip_method"]
    # paced: "service adds" is taken against the echo paced like the stream (K x cycle),
    # unless that echo fell behind its own schedule (a saturated transport is no floor)
    assert "one every 150 us" in r["bare_round_trip_paced_method"]
    assert lat["bare_round_trip_paced"]["count"] >= 180
    floor = "bare_round_trip" if r["paced_floor_saturated"] else "bare_round_trip_paced"
    assert r["service_adds_floor"] == floor
    assert r["service_adds_p50_us"] == pytest.approx(
        lat["reaction"]["p50_us"] - lat[floor]["p50_us"])
    assert lat["lag"]["count"] == lat["reaction"]["count"] > 0
    assert r["backlog"]["kept_up"] in (True, False)


def test_bench_latency_refuses_an_emulator_over_shm():
    from qecd.bench.latency import run_latency
    from qecd.errors import QecdError

    with pytest.raises(QecdError, match="emulator: chooses the ZeroMQ emulator"):
        run_latency("repetition:d=3,r=3,p=0.01", transport="shm", emulator="native")
