"""Shared-memory streams set up and torn down over the ZeroMQ control channel: HELLO with
``transport="shm"``, ACCEPT naming the ring region, rounds over the ring, every teardown
path (ring BYE, ZeroMQ BYE, shutdown) unlinking the region; a ring stream's rounds, ERRORs
and service times reach STATS, Prometheus and the recorder while it is open, once."""

import contextlib
import os
import threading
import time
import urllib.request

import msgpack
import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder.window import StreamDecoder
from qecd.errors import ProtocolError
from qecd.transport import wire as P
from qecd.transport.client import Client, ServerError
from qecd.transport.server import Server, ServerConfig
from qecd.transport.server.metrics import start_metrics_http
from qecd.transport.server.session import SessionLimits

SPEC = "surface:d=3,r=3,p=0.01"


def _exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


@pytest.fixture
def server():
    with _ring_server() as srv:
        yield srv


def test_protocol_shm_keys_round_trip_and_stay_optional():
    h = P.Hello(spec=SPEC, decoder="uf", transport="shm")
    assert P.decode_hello(*P.parse_packet(P.encode_hello(h))) == h
    assert b"transport" not in P.encode_hello(P.Hello(spec=SPEC))  # default: key omitted
    a = P.Accept(stream_id=3, slice_sizes=(4, 8, 4), num_observables=1, shm_region="qecd-x1",
                 shm_slots=256, shm_slot_size=128, corrections_per_shot=1)
    assert P.decode_accept(*P.parse_packet(P.encode_accept(a))) == a
    assert b"shm_region" not in P.encode_accept(a._replace(
        shm_region=None, shm_slots=None, shm_slot_size=None, corrections_per_shot=None))
    body = msgpack.packb({"spec": SPEC, "transport": "udp"})
    with pytest.raises(ProtocolError, match="'transport'") as e:
        P.decode_hello(*P.parse_packet(P.encode_frame(P.MsgType.HELLO, body)))
    assert e.value.code == P.ErrorCode.BAD_HELLO


def test_shm_stream_over_control_channel(server, wait_for):
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(200, seed=5)
    offline = StreamDecoder(exp.dem, exp.layout, "uf").decode_batch(dets)
    with Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        acc = cli.accept
        # both sides mapped it: the name is gone, so no other process can attach
        assert acc.shm_region.startswith("qecd-") and not _exists(acc.shm_region)
        assert acc.shm_slots >= 1 and acc.shm_slot_size % 64 == 0
        assert acc.corrections_per_shot == 1 and acc.decoder == "uf"
        stats = client.stats()
        assert stats["shm_streams_open"] == 1 and stats["shm_streams_opened"] == 1
        res = cli.stream_shots(dets, timeout_s=20)
        assert (res.lost, res.duplicated, res.errors, res.status) == (0, 0, 0, 0)
        assert np.array_equal(res.predictions, offline)
        st = client.stats(acc.stream_id)
        assert st["transport"] == "shm" and st["shm_rounds"] == 200 * exp.layout.num_rounds
        # a SYNDROME over ZeroMQ for a ring stream is refused
        with pytest.raises(ServerError) as e:
            frame = P.encode_syndrome(np.zeros(acc.slice_sizes[0], np.uint8), acc.layout(),
                                      stream_id=acc.stream_id, first_round=0)
            client.send_frame(frame)
            client.recv(timeout_s=5)
        assert e.value.code == P.ErrorCode.UNEXPECTED_TYPE
        # BYE over the ring: the server reaps the loop and unlinks the region
        cli.bye()
        assert wait_for(lambda: not _exists(acc.shm_region))
        cli.close()
        assert wait_for(lambda: client.stats()["streams_open"] == 0)
        assert client.stats()["rounds_received"] == 200 * exp.layout.num_rounds

        # BYE over ZeroMQ for a second ring stream
        cli2 = client.open_shm_stream(SPEC, window=2, commit=1)
        assert cli2.accept.stream_id != acc.stream_id and not _exists(cli2.accept.shm_region)
        assert client.bye(cli2.accept.stream_id) == 0
        assert not _exists(cli2.accept.shm_region)
        cli2.close()


def test_shm_stream_with_pymatching(server):
    """Any backend over the ring: the loop leaves Numba only to decode a due window."""
    spec = "surface:d=3,r=6,p=0.01"
    exp = build_experiment(spec)
    dets, _ = exp.sample(100, seed=8)
    offline = StreamDecoder(exp.dem, exp.layout, "pymatching", window=4,
                            commit=2).decode_batch(dets)
    with Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(spec, decoder="pymatching", window=4, commit=2)
        assert cli.accept.decoder == "pymatching" and cli.accept.corrections_per_shot == 3
        res = cli.stream_shots(dets, timeout_s=20)
        assert (res.lost, res.duplicated, res.errors, res.status) == (0, 0, 0, 0)
        assert np.array_equal(res.predictions, offline)
        assert client.bye(cli.accept.stream_id) == 100 * exp.layout.num_rounds  # next round
        assert not _exists(cli.accept.shm_region)
        cli.close()


def test_shm_hello_refusals(server):
    with Client(server.endpoints[0], timeout_s=10) as client:
        body = msgpack.packb({"spec": SPEC, "decoder": "uf", "transport": "tcp"})
        client.send_frame(P.encode_frame(P.MsgType.HELLO, body, seq=77))
        with pytest.raises(ServerError, match="transport") as e:
            client.recv(timeout_s=5)
        assert e.value.code == P.ErrorCode.BAD_HELLO
        assert client.stats()["streams_open"] == 0


def test_shutdown_unlinks_open_shm_streams():
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, record_capacity=1 << 14,
                              limits=SessionLimits(timeout_ms=300_000)))
    srv.start_thread()
    try:
        with Client(srv.endpoints[0], timeout_s=10) as client:
            clis = [client.open_shm_stream(SPEC) for _ in range(2)]
            names = [c.accept.shm_region for c in clis]
            srv.stop()
            assert not any(_exists(n) for n in names)
            for c in clis:
                c.close()
    finally:
        srv.stop()


def test_silent_shm_stream_times_out(wait_for):
    with _ring_server(limits=SessionLimits(timeout_ms=300)) as srv, \
            Client(srv.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        assert wait_for(lambda: client.stats()["streams_timed_out"] == 1, 5)
        cli.close()


@contextlib.contextmanager
def _ring_server(**kw):
    # the stream timeout is generous: a cold Numba cache compiles the client's kernel for
    # many seconds, with the ring and ZeroMQ silent
    kw = {"drain_s": 0.2, "shutdown_linger_ms": 100, "housekeeping_s": 0.02,
          "record_capacity": 1 << 14, "limits": SessionLimits(timeout_ms=300_000), **kw}
    kw.setdefault("shm_record_capacity", kw["record_capacity"])  # the loops' ring: same size
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), **kw))
    srv.start_thread()
    try:
        yield srv
    finally:
        srv.stop()


def _scrape(httpd) -> str:
    url = f"http://127.0.0.1:{httpd.server_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


@pytest.mark.parametrize("teardown", ["zmq_bye", "ring_bye"])
def test_ring_stream_rounds_show_in_live_stats_and_count_once_after_close(teardown, wait_for):
    exp = build_experiment(SPEC)
    shots, R = 200, exp.layout.num_rounds
    rounds = shots * R  # the client sends one round per packet: one service time per round
    dets, _ = exp.sample(shots, seed=11)
    with _ring_server() as server, Client(server.endpoints[0], timeout_s=10) as client:
        httpd = start_metrics_http(0, server.counters, server.recorder)
        try:
            cli = client.open_shm_stream(SPEC)
            sid = cli.accept.stream_id
            res = cli.stream_shots(dets, timeout_s=20)
            assert (res.lost, res.errors, res.status) == (0, 0, 0)
            # the stream is still open: its STATS already shows the ring's rounds
            assert wait_for(lambda: client.stats(sid)["service_count"] == rounds)
            st = client.stats(sid)
            assert st["transport"] == "shm" and st["shm_rounds"] == rounds
            assert (st["rounds_received"], st["corrections_sent"], st["next_round"],
                    st["errors_sent"]) == (rounds, shots, rounds, 0)
            assert st["service_max_ns"] >= st["service_p50_ns"] > 0
            whole = client.stats()
            assert whole["streams_open"] == 1
            assert (whole["rounds_received"], whole["corrections_sent"],
                    whole["service_count"], whole["errors_sent"]) == (rounds, shots, rounds, 0)
            text = _scrape(httpd)  # the whole-server STATS above folded the histograms
            for line in (f"qecd_rounds_total {rounds}.0", f"qecd_corrections_total {shots}.0",
                         f'qecd_round_service_seconds_bucket{{le="+Inf"}} {rounds}.0'):
                assert line in text, line

            if teardown == "zmq_bye":
                assert client.bye(sid) == rounds
            else:
                cli.bye()
                assert wait_for(lambda: client.stats()["streams_open"] == 0)
            cli.close()
            whole = client.stats()
            assert whole["streams_open"] == 0
            assert (whole["rounds_received"], whole["corrections_sent"],
                    whole["service_count"]) == (rounds, shots, rounds)
            text = _scrape(httpd)
            assert f"qecd_rounds_total {rounds}.0" in text
            assert f'qecd_round_service_seconds_bucket{{le="+Inf"}} {rounds}.0' in text
        finally:
            httpd.shutdown()
            httpd.server_close()
    # what ``qecd serve --record`` writes: one entry per packet, decodes flagged
    raw = server.recorder.raw()
    mine = raw["stream_id"] == sid
    assert mine.sum() == rounds == server.counters.rounds_received
    assert raw["decoded"][mine].sum() == shots  # one whole-shot decode per shot
    flagged = mine & (raw["decoded"] == 1)
    assert np.array_equal(raw["decode_ns"][flagged], raw["service_ns"][flagged])
    assert not raw["decode_ns"][mine & (raw["decoded"] == 0)].any()


def test_ring_errors_count_live_and_once(wait_for):
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(10, seed=2)
    with _ring_server() as server, Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        acc = cli.accept
        res = cli.stream_shots(dets, timeout_s=20)
        assert (res.lost, res.errors) == (0, 0)
        nxt = 10 * exp.layout.num_rounds
        gap = P.encode_syndrome(np.zeros(acc.slice_sizes[0], np.uint8), acc.layout(),
                                stream_id=acc.stream_id, first_round=nxt + exp.layout.num_rounds)
        cli.pair.send_bytes(gap)
        err = P.decode_error(*P.parse_packet(cli.pair.recv_bytes(timeout=5)))
        assert err.code == P.ErrorCode.ROUND_GAP and err.next_round == nxt
        assert wait_for(lambda: client.stats(acc.stream_id)["errors_sent"] == 1)
        assert client.stats()["errors_by_code"] == {"shm_ring": 1}
        assert client.bye(acc.stream_id) == nxt
        cli.close()
        whole = client.stats()
        assert whole["errors_by_code"] == {"shm_ring": 1} and whole["errors_sent"] == 1
        assert whole["rounds_received"] == nxt


def test_every_ring_packet_reaches_the_recorder_when_folds_keep_up_with_the_record_ring():
    exp = build_experiment(SPEC)
    R, cap, batches, shots = exp.layout.num_rounds, 64, 8, 15
    assert shots * R < cap  # each batch fits the loop's record ring
    dets, _ = exp.sample(batches * shots, seed=4)
    rounds = batches * shots * R
    assert rounds > 4 * cap
    with _ring_server(record_capacity=cap) as server, \
            Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        sid = cli.accept.stream_id
        for b in range(batches):
            res = cli.stream_shots(dets[b * shots:(b + 1) * shots], timeout_s=20)
            assert (res.lost, res.errors) == (0, 0)
            assert cli.ping(1).size == 1  # served after the batch's last record was written
            assert client.stats(sid)["shm_records_lost"] == 0  # folds (or housekeeping did)
            whole = client.stats()  # service_count: all time (a stream's: the raw ring's)
            assert whole["service_count"] == whole["rounds_received"] == (b + 1) * shots * R
        assert client.bye(sid) == rounds
        cli.close()
        whole = client.stats()
    assert (whole["rounds_received"], whole["service_count"], whole["shm_syndrome_packets"],
            whole["shm_records_lost"]) == (rounds, rounds, rounds, 0)
    # the server's recorder keeps the latest entries raw (here as few as a loop's ring):
    # one round per packet, oldest first, so exactly each shot's last round decodes
    raw = server.recorder.raw()
    assert server.recorder.count == rounds and (raw["stream_id"] == sid).all()
    k = np.arange(rounds - raw["decoded"].size, rounds)
    assert np.array_equal(raw["decoded"], (k % R == R - 1).astype(np.uint8))
    assert (raw["service_ns"] > 0).all()


def test_ring_records_overwritten_between_two_folds_are_counted_lost():
    exp = build_experiment(SPEC)
    R, cap, shots = exp.layout.num_rounds, 64, 100
    n = shots * R  # packets per batch, far more than the ring holds
    dets, _ = exp.sample(2 * shots, seed=6)
    # no housekeeping during the test: the only folds are the STATS below and the close
    with _ring_server(record_capacity=cap, housekeeping_s=3600) as server, \
            Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        sid = cli.accept.stream_id
        assert cli.stream_shots(dets[:shots], timeout_s=20).lost == 0
        assert cli.ping(1).size == 1  # every record of the batch is written
        st = client.stats(sid)
        # the loop is live: the slot of packet n - cap may be taking packet n while the fold
        # copies, so the fold keeps packets n - cap + 1 .. n - 1
        assert (st["rounds_received"], st["service_count"], st["shm_records_lost"]) == (
            n, cap - 1, n - cap + 1)
        assert client.stats()["service_count"] == cap - 1
        assert cli.stream_shots(dets[shots:], timeout_s=20).lost == 0
        assert cli.ping(1).size == 1
        assert client.bye(sid) == 2 * n  # joined the loop: this fold keeps a whole ring
        cli.close()
        whole = client.stats()
    assert (whole["rounds_received"], whole["shm_syndrome_packets"]) == (2 * n, 2 * n)
    assert (whole["service_count"], whole["shm_records_lost"]) == (
        2 * cap - 1, 2 * n - (2 * cap - 1))
    raw = server.recorder.raw()
    assert server.recorder.count == 2 * cap - 1 and (raw["stream_id"] == sid).all()
    # oldest first, so the last entry is packet 2n - 1: the last round of a shot
    assert raw["decoded"][-R:].tolist() == [0] * (R - 1) + [1]


@pytest.mark.parametrize("written_during_copy, then_half_written",
                         [(0, False), (0, True), (1, False), (5, True), (7, False),
                          (8, False), (20, True)])
def test_a_fold_keeps_only_records_the_loop_cannot_have_overwritten_while_it_copied(
        monkeypatch, written_during_copy, then_half_written):
    """The loop's progress injected at the worst moment, between the copies of two record
    arrays: whole records written with the loop's own ``record_packet`` into a live loop's
    8-slot ring, then maybe the next packet's slot written but its count not yet published
    (each packet's flag byte holds its number, so a stale slot shows)."""
    from qecd.transport.server import shm_streams
    from qecd.transport.shm.loop import record_packet
    from qecd.transport.shm.streams import ShmStreamServer

    exp = build_experiment(SPEC)
    srv = ShmStreamServer.for_experiment(exp, stream_id=5, n_slots=64, record_capacity=8)
    srv.start()  # running (idle): the fold must assume it writes
    try:
        def write(k):
            for _ in range(k):
                record_packet(srv.rec_service, srv.rec_lag, srv.rec_flags, srv.rec_n, 1, 0,
                              int(srv.rec_n[0]) % 256)

        write(20)  # packets 0..19; 12..19 are in the ring
        real_copy, calls = shm_streams._ring_copy, []

        def copy_then_let_the_loop_run(arr, start, stop):
            out = real_copy(arr, start, stop)
            calls.append(1)
            if len(calls) == 1:  # after the service times, before the flags
                write(written_during_copy)
                if then_half_written:
                    srv.rec_flags[int(srv.rec_n[0]) % 8] = 255
            return out

        monkeypatch.setattr(shm_streams, "_ring_copy", copy_then_let_the_loop_run)
        first, stop, service, flags = shm_streams.ring_records(srv, 10)
        assert flags.tolist() == list(range(first, stop)) and service.size == stop - first
        n = 20 + written_during_copy
        # packet n may be half written into the slot of packet n - 8, so n - 7 is the oldest
        # record that is surely intact; packets 10, 11 were gone before the fold began
        assert (stop, first) == (20, min(20, max(12, n - 7)))
    finally:
        srv.close()


def test_ring_records_copied_while_the_loop_overwrites_them_are_never_stale():
    """A fold racing a loop that laps its 7-slot record ring many times over: every record
    it keeps is the one of the packet it says (packet k decodes iff it is a shot's last
    round), and kept plus lost records account for every packet."""
    from qecd.transport.server.shm_streams import ring_records
    from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

    exp = build_experiment(SPEC)
    R, cap = exp.layout.num_rounds, 7  # 7 and R=4 coprime: a lapped slot shows
    dets, _ = exp.sample(3000, seed=7)
    srv = ShmStreamServer.for_experiment(exp, stream_id=5, n_slots=64, record_capacity=cap)
    srv.start()
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=5)
    out = {}
    feeder = threading.Thread(target=lambda: out.setdefault(
        "res", cli.stream_shots(dets, timeout_s=60)))
    try:
        feeder.start()
        start, kept, lost, folds = 0, 0, 0, 0
        while True:
            done = not feeder.is_alive()
            first, stop, service, decoded = ring_records(srv, start)
            assert start <= first <= stop and service.shape == decoded.shape == (stop - first,)
            k = np.arange(first, stop)
            assert np.array_equal(decoded, (k % R == R - 1).astype(np.uint8)), (first, stop)
            assert (service > 0).all()
            kept, lost, start, folds = kept + stop - first, lost + first - start, stop, folds + 1
            if done:
                break
        assert out["res"].lost == 0
        cli.bye()
        srv.join(timeout=10)
        first, stop, service, _ = ring_records(srv, start)  # returned: nothing is discarded
        kept, lost = kept + stop - first, lost + first - start
        assert kept + lost == stop == 3000 * R and folds > 1
    finally:
        feeder.join(60)
        cli.close()
        srv.close()


def test_a_loop_still_serving_after_its_stream_closed_is_folded_until_released(wait_for):
    """BYE over ZeroMQ while the client keeps the ring busy: the loop (pymatching, so it
    waits for the GIL to decode and keeps a backlog) does not return within the (here
    zero) join timeout, so it stays a zombie, serving its backlog; what it serves after the
    close still reaches the counters and the recorder, once."""
    from qecd.transport.shm.loop import CTL_CORRECTIONS, CTL_ROUNDS
    from qecd.transport.shm.ring import RingError

    exp = build_experiment(SPEC)
    dets, _ = exp.sample(5000, seed=9)
    with _ring_server(record_capacity=1 << 16) as server, \
            Client(server.endpoints[0], timeout_s=10) as client:
        server._shm.join_timeout_s = 0.0
        cli = client.open_shm_stream(SPEC, decoder="pymatching")
        sid = cli.accept.stream_id
        loop = server._streams[sid].shm
        packets, ptr = cli.build_packets(dets)
        halt = threading.Event()

        def feed():  # one packet at a time, replies drained; never blocks for long
            rx = np.zeros(cli.pair.rx.max_payload, np.uint8)
            try:
                for k in range(len(ptr) - 1):
                    if halt.is_set():
                        return
                    cli.pair.send_bytes(packets[ptr[k]:ptr[k + 1]], timeout=0.5)
                    while cli.pair.rx.try_recv(rx) >= 0:
                        pass
            except RingError:  # the loop returned and the ring filled up
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            assert wait_for(lambda: loop.rec_n[0] >= 200)
            client.bye(sid)
        finally:
            halt.set()
            feeder.join(30)
        loop.join(timeout=10)
        assert not loop.is_running()
        assert wait_for(lambda: server._shm.zombies == 0 and not _exists(cli.accept.shm_region))
        cli.close()
        whole = client.stats()
    served = int(loop.ctl[CTL_ROUNDS])
    assert served >= 200 and int(loop.rec_n[0]) == served  # one round per packet
    assert (whole["rounds_received"], whole["corrections_sent"]) == (
        served, int(loop.ctl[CTL_CORRECTIONS]))
    assert (whole["service_count"], whole["shm_syndrome_packets"],
            whole["shm_records_lost"]) == (served, served, 0)
    assert "internal_exception" not in whole["dropped"]


def test_close_while_the_server_loop_runs_leaves_its_rings_to_the_loop_thread():
    """close() from another thread while serve() still runs (as after a stop() whose wait
    timed out) must not fold or release rings under the loop thread: the loop shuts down,
    folds each ring once more and closes the server itself."""
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(50, seed=3)
    rounds = 50 * exp.layout.num_rounds
    server = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                                 shutdown_linger_ms=100, record_capacity=1 << 14,
                                 limits=SessionLimits(timeout_ms=300_000)))
    thread = server.start_thread()
    try:
        with Client(server.endpoints[0], timeout_s=10) as client:
            cli = client.open_shm_stream(SPEC)
            assert cli.stream_shots(dets, timeout_s=20).lost == 0
            assert cli.ping(1).size == 1
            server.close()  # the loop thread is still serving: it closes the server
            thread.join(30)
            assert not thread.is_alive() and not _exists(cli.accept.shm_region)
            cli.close()
        c = server.counters
        assert (c.rounds_received, c.shm_syndrome_packets, server.recorder.count) == (
            rounds, rounds, rounds)
        assert "internal_exception" not in c.dropped and c.streams_open == 0
    finally:
        server.stop()


def _gated_create(server):
    """Make the server's ring creation wait for ``gate`` (on its build worker)."""
    entered, gate, made = threading.Event(), threading.Event(), threading.Event()
    real = server._shm.create

    def create(*a, **kw):
        entered.set()
        assert gate.wait(30)
        try:
            return real(*a, **kw)
        finally:
            made.set()

    server._shm.create = create
    return entered, gate, made


def test_a_ring_being_created_does_not_hold_up_other_clients(server):
    """The slow part of a ring HELLO (compiled decoder, region, kernels) runs on the build
    worker: while it is blocked, another client's HEARTBEAT is answered."""
    entered, gate, _ = _gated_create(server)
    out: dict = {}

    def open_ring():
        with Client(server.endpoints[0], timeout_s=30) as c:
            cli = c.open_shm_stream(SPEC)
            out["region"] = cli.accept.shm_region
            out["ok"] = cli.stream_id > 0  # attached (and the name already forgotten)
            c.bye(cli.accept.stream_id)
            cli.close()

    t = threading.Thread(target=open_ring)
    t.start()
    try:
        assert entered.wait(30)
        with Client(server.endpoints[0], timeout_s=5) as other:
            assert other.heartbeat() > 0  # the loop is free while the ring is being made
            assert other.stats()["streams_open"] == 0
    finally:
        gate.set()
        t.join(60)
    assert out.get("ok") is True and not _exists(out["region"])


def test_shutdown_while_a_ring_is_being_created_releases_it(wait_for):
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, record_capacity=1 << 14,
                              limits=SessionLimits(timeout_ms=300_000)))
    srv.start_thread()
    entered, gate, made = _gated_create(srv)
    before = {n for n in os.listdir("/dev/shm") if n.startswith(f"qecd-{os.getpid()}-")}
    errors: list = []

    def open_ring():
        with Client(srv.endpoints[0], timeout_s=30) as c:
            try:
                c.open_shm_stream(SPEC)
            except ServerError as e:
                errors.append(e.code)

    t = threading.Thread(target=open_ring)
    t.start()
    try:
        assert entered.wait(30)
        srv.stop()
    finally:
        gate.set()
        t.join(60)
    assert errors == [P.ErrorCode.SHUTTING_DOWN]
    assert made.wait(30)  # the worker finished creating it; the server must release it
    mine = lambda: {n for n in os.listdir("/dev/shm")  # noqa: E731
                    if n.startswith(f"qecd-{os.getpid()}-")}
    assert wait_for(lambda: mine() <= before), "the ring created after shutdown outlived it"


def test_one_client_may_hold_only_a_few_ring_streams(no_shm_leak):
    """Issue 13 defect 3: one client could open 256 shared-memory streams, each a loop
    thread; ring streams per client are capped (max_ring_streams_per_client) and the next
    HELLO gets SERVER_BUSY naming the cap, while ZeroMQ streams are still open to it."""
    with _ring_server(max_ring_streams_per_client=2) as srv, \
            Client(srv.endpoints[0], timeout_s=60) as client:
        rings = [client.open_shm_stream(SPEC) for _ in range(2)]
        with pytest.raises(ServerError) as e:
            client.open_shm_stream(SPEC)
        assert e.value.code == P.ErrorCode.SERVER_BUSY
        assert "max_ring_streams_per_client=2" in e.value.reason
        assert client.open_stream(SPEC).stream_id > 0
        for r in rings:
            r.bye()
            r.close()


def test_no_other_process_can_attach_to_a_ring_stream_once_its_client_has(no_shm_leak):
    """Issue 13 defect 4: a process of the same user (no CURVE key) attached to another
    client's region by name (RingPair.attach(..., force=True)), injected a SYNDROME and a
    BYE, and closed the owner's stream. The name is removed once both sides mapped it."""
    from qecd.transport.shm.ring import RegionError, RingPair

    with _ring_server() as srv, Client(srv.endpoints[0], timeout_s=60) as client:
        cli = client.open_shm_stream(SPEC)
        with pytest.raises((FileNotFoundError, RegionError, OSError)):
            RingPair.attach(cli.accept.shm_region, side="client", force=True)
        exp = build_experiment(SPEC)
        dets, _ = exp.sample(5, seed=2)
        res = cli.stream_shots(dets)
        assert (res.lost, res.errors) == (0, 0)
        cli.bye()
        cli.close()


def test_the_server_removes_the_name_when_a_client_attaches_without_doing_so(wait_for):
    """A client written from the spec alone may not remove the name itself: the server does
    once it sees the client side claimed (housekeeping)."""
    from qecd.transport.shm.ring import RingPair

    with _ring_server() as srv, Client(srv.endpoints[0], timeout_s=60) as client:
        client.send_frame(P.encode_hello(P.Hello(spec=SPEC, decoder="uf", transport="shm")))
        accept = client.recv(timeout_s=60).body
        assert _exists(accept.shm_region)  # nobody has attached yet
        pair = RingPair.attach(accept.shm_region, side="client")
        try:
            assert wait_for(lambda: not _exists(accept.shm_region), 5)
        finally:
            pair.close()


def test_a_ring_loop_reports_the_cpu_its_thread_used():
    """cpu_seconds reads the loop thread's own CPU time: a thread that spins 0.3 s shows it,
    one that sleeps does not."""
    from types import SimpleNamespace

    from qecd.transport.shm.streams import ShmStreamServer

    def spin(box, busy):
        box.append(threading.get_native_id())
        t_end = time.thread_time() + 0.3 if busy else 0.0
        while busy and time.thread_time() < t_end:
            pass
        if not busy:
            time.sleep(0.3)
        box.append(ShmStreamServer.cpu_seconds(SimpleNamespace(_tid=box[0])))

    got = {}
    for busy in (True, False):
        box: list = []
        t = threading.Thread(target=spin, args=(box, busy))
        t.start()
        t.join()
        got[busy] = box[1]
    assert got[True] >= 0.25 and got[False] < 0.05
    assert ShmStreamServer.cpu_seconds(SimpleNamespace(_tid=None)) == 0.0


def test_ring_loop_cpu_shows_in_stats_and_prometheus(wait_for):
    from prometheus_client import CollectorRegistry, generate_latest

    from qecd.transport.server.metrics import PrometheusCollector

    with _ring_server() as server, Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        sid = cli.accept.stream_id
        assert cli.ping(200).size == 200
        st = client.stats(sid)
        assert isinstance(st["shm_cpu_seconds"], float) and st["shm_cpu_seconds"] >= 0
        client.bye(sid)
        cli.close()
        whole = client.stats()
        assert whole["shm_loop_cpu_seconds"] >= 0
        registry = CollectorRegistry()
        registry.register(PrometheusCollector(server.counters, server.recorder))
        assert b"qecd_shm_loop_cpu_seconds_total" in generate_latest(registry)
