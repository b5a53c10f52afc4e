"""Shared-memory streams set up and torn down over the ZeroMQ control channel: HELLO with
``transport="shm"``, ACCEPT naming the ring region, rounds over the ring, every teardown
path (ring BYE, ZeroMQ BYE, shutdown) unlinking the region; a ring stream's rounds, ERRORs
and service times reach STATS, Prometheus and the recorder while it is open, once."""

import contextlib
import os
import time
import urllib.request

import msgpack
import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder.window import StreamDecoder
from qecd.errors import ProtocolError
from qecd.transport import protocol as P
from qecd.transport.client import Client, ServerError
from qecd.transport.metrics import start_metrics_http
from qecd.transport.server import Server, ServerConfig
from qecd.transport.session import SessionLimits

SPEC = "surface:d=3,r=3,p=0.01"


def _exists(name: str) -> bool:
    return os.path.exists(f"/dev/shm/{name}")


def _wait(cond, timeout_s=10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def server():
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, housekeeping_s=0.02,
                              record_capacity=1 << 14,
                              # generous: a cold Numba cache compiles the client's kernel
                              # for many seconds, with the ring and ZeroMQ silent
                              limits=SessionLimits(timeout_ms=300_000)))
    srv.start_thread()
    yield srv
    srv.stop()


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


def test_shm_stream_over_control_channel(server):
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(200, seed=5)
    offline = StreamDecoder(exp.dem, exp.layout, "uf").decode_batch(dets)
    with Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        acc = cli.accept
        assert acc.shm_region.startswith("qecd-") and _exists(acc.shm_region)
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
        assert _wait(lambda: not _exists(acc.shm_region))
        cli.close()
        assert _wait(lambda: client.stats()["streams_open"] == 0)
        assert client.stats()["rounds_received"] == 200 * exp.layout.num_rounds

        # BYE over ZeroMQ for a second ring stream
        cli2 = client.open_shm_stream(SPEC, window=2, commit=1)
        assert cli2.accept.stream_id != acc.stream_id and _exists(cli2.accept.shm_region)
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
            assert all(_exists(n) for n in names)
            srv.stop()
            assert not any(_exists(n) for n in names)
            for c in clis:
                c.close()
    finally:
        srv.stop()


def test_silent_shm_stream_times_out():
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, housekeeping_s=0.02,
                              record_capacity=1 << 14,
                              limits=SessionLimits(timeout_ms=300)))
    srv.start_thread()
    try:
        with Client(srv.endpoints[0], timeout_s=10) as client:
            cli = client.open_shm_stream(SPEC)
            name = cli.accept.shm_region
            assert _wait(lambda: not _exists(name), 5)
            assert client.stats()["streams_timed_out"] == 1
            cli.close()
    finally:
        srv.stop()


@contextlib.contextmanager
def _ring_server(**kw):
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, housekeeping_s=0.02,
                              record_capacity=kw.pop("record_capacity", 1 << 14),
                              limits=SessionLimits(timeout_ms=300_000), **kw))
    srv.start_thread()
    try:
        yield srv
    finally:
        srv.stop()


def _scrape(httpd) -> str:
    url = f"http://127.0.0.1:{httpd.server_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read().decode()


@pytest.mark.parametrize("teardown", ["zmq_bye", "ring_bye"])
def test_ring_stream_rounds_show_in_live_stats_and_count_once_after_close(teardown):
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
            assert _wait(lambda: client.stats(sid)["service_count"] == rounds)
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
                assert _wait(lambda: client.stats()["streams_open"] == 0)
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


def test_ring_errors_count_live_and_once():
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
        assert _wait(lambda: client.stats(acc.stream_id)["errors_sent"] == 1)
        assert client.stats()["errors_by_code"] == {"shm_ring": 1}
        assert client.bye(acc.stream_id) == nxt
        cli.close()
        whole = client.stats()
        assert whole["errors_by_code"] == {"shm_ring": 1} and whole["errors_sent"] == 1
        assert whole["rounds_received"] == nxt


def test_ring_rounds_beyond_the_loops_record_capacity_still_count():
    exp = build_experiment(SPEC)
    shots = 100
    rounds = shots * exp.layout.num_rounds
    dets, _ = exp.sample(shots, seed=4)
    with _ring_server(record_capacity=64) as server, \
            Client(server.endpoints[0], timeout_s=10) as client:
        cli = client.open_shm_stream(SPEC)
        res = cli.stream_shots(dets, timeout_s=20)
        assert res.lost == 0
        assert _wait(lambda: client.stats()["rounds_received"] == rounds)
        st = client.stats(cli.accept.stream_id)
        assert (st["rounds_received"], st["service_count"]) == (rounds, 64)
        assert client.bye(cli.accept.stream_id) == rounds
        cli.close()
        whole = client.stats()
        assert (whole["rounds_received"], whole["service_count"]) == (rounds, 64)
