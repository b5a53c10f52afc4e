"""The ZeroMQ server end to end: real sockets (tcp on loopback, ipc in a temp dir), real
decoders, hard timeouts, cleanup in fixtures.

Several clients with several streams each decode concurrently and every stream's corrections
equal an offline decode of its own shots; the control messages do what docs/protocol.md says;
SIGTERM drains, reports the rounds no correction will cover, says BYE and exits 0.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import numpy as np
import pytest
import zmq

from qecd.codes import build_experiment
from qecd.transport.client import Client, ServerError
from qecd.transport.server import Server, ServerConfig
from qecd.transport.server.metrics import start_metrics_http
from qecd.transport.wire import (
    ErrorCode,
    MsgType,
    encode_heartbeat,
)

pytestmark = pytest.mark.timeout(120)


def stream_shots(client, streams, shots_of, exp):
    """Send every stream's shots round by round (interleaved), collect its commits."""
    got = {s.stream_id: [] for s in streams}
    R = exp.layout.num_rounds
    n_rounds = {s.stream_id: len(shots_of[s.stream_id]) * R for s in streams}
    for i in range(max(n_rounds.values())):
        j, t = divmod(i, R)
        for s in streams:
            if i < n_rounds[s.stream_id]:
                s.send_round(shots_of[s.stream_id][j][exp.layout.detectors[t]])
        while (r := client.poll()) is not None:
            got[r.stream_id].append(r)
    deadline = time.monotonic() + 30
    done = lambda: all(sum(1 for r in got[s.stream_id] if r.msg_type == MsgType.CORRECTION  # noqa: E731
                                  and r.body.shot_end) == len(shots_of[s.stream_id])
                       for s in streams)
    while not done() and time.monotonic() < deadline:
        r = client.recv(timeout_s=5, raise_errors=False)
        got[r.stream_id].append(r)
    return {sid: [(r.body.first_round, r.body.last_round, r.body.observables.tolist())
                  for r in rs if r.msg_type == MsgType.CORRECTION]
            for sid, rs in got.items()}, got


def test_two_clients_with_several_streams_each_match_the_offline_decode(
        tmp_path, running_server, offline_commits):
    exp = build_experiment("surface:d=3,r=5,p=0.02")
    dets, _ = exp.sample(120, seed=3)
    settings = [(None, None), (4, 2), (3, 1)]
    results, errors = {}, []

    def client_run(name, endpoint, first_shot):
        try:
            with Client(endpoint, timeout_s=30) as client:
                streams, shots_of, want = [], {}, {}
                for k, (w, c) in enumerate(settings):
                    s = client.open_stream("surface:d=3,r=5,p=0.02", window=w, commit=c)
                    mine = dets[first_shot + 20 * k: first_shot + 20 * (k + 1)]
                    streams.append(s)
                    shots_of[s.stream_id] = mine
                    want[s.stream_id] = offline_commits(exp, mine, w, c)
                got, _ = stream_shots(client, streams, shots_of, exp)
                results[name] = (got, want)
        except Exception as e:  # surfaced by the main thread's assertion
            errors.append(e)

    with running_server(tmp_path) as server:
        threads = [threading.Thread(target=client_run, args=("tcp", server.endpoints[0], 0)),
                   threading.Thread(target=client_run, args=("ipc", server.endpoints[1], 60))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors, errors
        with Client(server.endpoints[0], timeout_s=30) as client:  # STATS over the wire:
            stats = client.stats()  # the loop commits the fast path's counters first
    assert set(results) == {"tcp", "ipc"}
    for got, want in results.values():
        assert set(got) == set(want) and len(got) == 3
        for sid in got:
            assert got[sid] == want[sid]
    assert stats["streams_opened"] == 6 and stats["errors_sent"] == 0
    assert stats["rounds_received"] == 120 * 6 and not stats["dropped"]


def test_control_messages_heartbeat_stats_bye(tmp_path, running_server):
    with running_server() as server, Client(server.endpoints[0]) as client:
        # HEARTBEAT is echoed byte for byte
        hb = encode_heartbeat(seq=77, timestamp_ns=123456789)
        client.send_frame(hb)
        assert client.socket.poll(5000)
        assert client.socket.recv() == hb
        stream = client.open_stream("repetition:d=3,r=2,p=0.01", want_faults=True)
        assert client.heartbeat(stream.stream_id) > 0
        for size in stream.slice_sizes:
            stream.send_round(np.zeros(size, np.uint8))
        c = stream.recv_correction(5)
        assert c.fault_ids is not None and c.fault_ids.tolist() == [] and c.service_ns > 0
        st = stream.stats()
        assert (st["rounds_received"], st["corrections_sent"], st["next_round"]) == (3, 1, 3)
        assert st["service_count"] == 3 and st["service_max_ns"] >= st["service_p50_ns"] > 0
        whole = client.stats()
        for key in ("streams_open", "uptime_ns", "packets_received", "service_p99_ns",
                    "errors_by_code", "dropped", "backlog_rounds", "input_lag_ns"):
            assert key in whole
        stream.send_round(np.zeros(stream.slice_sizes[0], np.uint8))
        assert stream.close() == 4  # BYE answers the final next round
        with pytest.raises(ServerError) as e:
            client.stats(stream.stream_id)
        assert e.value.code == ErrorCode.UNKNOWN_STREAM


def test_hello_waiting_for_a_build_gets_shutting_down_on_shutdown():
    server = Server(ServerConfig(binds=("tcp://127.0.0.1:0",)))
    server.start_thread()
    try:
        with Client(server.endpoints[0]) as client:
            # a plan nobody has built yet: takes a while
            with pytest.raises(ServerError) as e:
                t = threading.Timer(0.05, server.request_shutdown)
                t.start()
                client.open_stream("surface:d=7,r=30,p=0.001", timeout_s=30)
            t.join()
            assert e.value.code == ErrorCode.SHUTTING_DOWN
    finally:
        server.stop()


def test_prometheus_endpoint_exposes_qecd_metrics(running_server):
    with running_server() as server, Client(server.endpoints[0]) as client:
        httpd = start_metrics_http(0, server.counters, server.recorder)
        try:
            s = client.open_stream("repetition:d=3,r=2,p=0.01")
            for size in s.slice_sizes:
                s.send_round(np.zeros(size, np.uint8))
            s.recv_correction(5)
            client.send_frame(b"QD")  # 2 bytes: SHORT_FRAME
            with pytest.raises(ServerError):
                client.recv(5)
            server.recorder.fold()
            url = f"http://127.0.0.1:{httpd.server_port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        finally:
            httpd.shutdown()
            httpd.server_close()
    for line in ("qecd_rounds_total 3.0", "qecd_corrections_total 1.0",
                 'qecd_errors_total{code="SHORT_FRAME"} 1.0', "qecd_streams_open 1.0",
                 "qecd_backlog_rounds 0.0", 'qecd_round_service_seconds_bucket{le="+Inf"} 3.0',
                 'qecd_round_service_seconds_bucket{le="1e-07"}'):
        assert line in text, line


def test_sigterm_reports_uncommitted_rounds_says_bye_and_exits_0(tmp_path, serve_subprocess):
    record = tmp_path / "rec.npz"
    proc, ep = serve_subprocess(tmp_path, "--record", str(record))
    try:
        with Client(ep, timeout_s=30) as client:
            whole = client.open_stream("surface:d=3,r=5,p=0.001")  # 6 rounds per shot
            win = client.open_stream("surface:d=3,r=5,p=0.001", window=2, commit=1)
            for s, n in ((whole, 9), (win, 4)):  # one shot and a half / a few windows
                for r in range(n):
                    s.send_round(np.zeros(s.slice_sizes[r % 6], np.uint8))
            assert whole.recv_correction(10).last_round == 5
            assert client.stats()["rounds_received"] == 13  # all processed
            proc.send_signal(signal.SIGTERM)
            replies = []
            while not sum(r.msg_type == MsgType.BYE for r in replies) == 2:
                replies.append(client.recv(timeout_s=10, raise_errors=False))
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    by = {}
    for r in replies:
        by.setdefault(r.stream_id, []).append(r)
    w = [r for r in by[win.stream_id] if r.msg_type == MsgType.CORRECTION]
    last_committed = max(r.body.last_round for r in w)
    drops = {sid: [r for r in rs if r.msg_type == MsgType.ERROR] for sid, rs in by.items()}
    e_whole, = drops[whole.stream_id]
    assert e_whole.body.code == ErrorCode.SYNDROMES_DROPPED
    assert "rounds 6..8" in e_whole.body.reason and e_whole.body.next_round == 9
    e_win, = drops[win.stream_id]
    assert f"rounds {last_committed + 1}..3" in e_win.body.reason
    byes = {r.stream_id: r.seq for r in replies if r.msg_type == MsgType.BYE}
    assert byes == {whole.stream_id: 9, win.stream_id: 4}
    data = np.load(record)
    assert int(data["total_rounds"]) == 13 and data["service_ns"].shape == (13,)
    assert data["decoded"].sum() >= 2 and (data["decode_ns"][data["decoded"] == 1] > 0).all()


def test_server_close_releases_its_endpoints(tmp_path, running_server):
    with running_server(tmp_path) as server:
        ep = server.endpoints[0]
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    try:
        sock.bind(ep)  # the port is free again
    finally:
        sock.close(0)


def test_one_client_cannot_take_every_stream_slot(running_server):
    with running_server(max_streams=3, max_streams_per_client=2) as server, \
            Client(server.endpoints[0]) as greedy, Client(server.endpoints[0]) as other:
        for _ in range(2):
            greedy.open_stream("repetition:d=3,r=2,p=0.01")
        with pytest.raises(ServerError) as e:
            greedy.open_stream("repetition:d=3,r=2,p=0.01")
        assert e.value.code == ErrorCode.SERVER_BUSY and "per_client" in e.value.reason
        other.open_stream("repetition:d=3,r=2,p=0.01")
        with pytest.raises(ServerError) as e:  # the server as a whole is full now
            other.open_stream("repetition:d=3,r=2,p=0.01")
        assert e.value.code == ErrorCode.SERVER_BUSY and "max_streams=3" in e.value.reason


def test_async_client_serves_two_streams_concurrently(running_server, offline_commits):
    import asyncio

    from qecd.transport.aio_client import AsyncClient

    exp = build_experiment("surface:d=3,r=5,p=0.02")
    dets, _ = exp.sample(12, seed=9)

    async def run(endpoint):
        async with AsyncClient(endpoint) as client:
            a = await client.open_stream("surface:d=3,r=5,p=0.02")
            b = await client.open_stream("surface:d=3,r=5,p=0.02", window=4, commit=2)

            async def feed_and_collect(stream, shots, n_commits):
                got = []

                async def collect():
                    while len(got) < n_commits:
                        c = await stream.recv_correction(10)
                        got.append((c.first_round, c.last_round, c.observables.tolist()))

                reader = asyncio.create_task(collect())
                for d in shots:
                    for ids in exp.layout.detectors:
                        await stream.send_round(d[ids])
                await reader
                return got

            want_a = offline_commits(exp, dets[:6])
            want_b = offline_commits(exp, dets[6:], 4, 2)
            got_a, got_b = await asyncio.gather(feed_and_collect(a, dets[:6], len(want_a)),
                                                feed_and_collect(b, dets[6:], len(want_b)))
            with pytest.raises(ServerError) as e:
                await client.stats(987654)
            assert e.value.code == ErrorCode.UNKNOWN_STREAM
            assert await b.close() == 36
            return got_a == want_a, got_b == want_b

    with running_server() as server:
        assert asyncio.run(run(server.endpoints[0])) == (True, True)


def test_stats_budget_forgets_its_peers_from_housekeeping_even_without_errors_to_log(
        running_server, wait_for):
    with running_server(housekeeping_s=0.02) as server:
        clients = [Client(server.endpoints[0]) for _ in range(5)]
        try:
            for c in clients:  # each peer gets a window in the STATS budget
                assert c.stats()["errors_sent"] == 0
            # nothing to log (no ERROR was sent), yet the windows go once their second ends
            assert wait_for(lambda: len(server._stats) == 0, timeout_s=5)
        finally:
            for c in clients:
                c.close()


def test_close_while_the_loop_thread_serves_leaves_the_closing_to_that_thread():
    """As after a stop() whose wait timed out: close() from another thread must not touch
    the socket or the streams under the loop; the loop shuts down and closes the server."""
    server = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                                 shutdown_linger_ms=100))
    thread = server.start_thread()
    try:
        with Client(server.endpoints[0], timeout_s=10) as client:
            stream = client.open_stream("repetition:d=3,r=2,p=0.01")
            for size in stream.slice_sizes:
                stream.send_round(np.zeros(size, np.uint8))
            stream.recv_correction(5)
            server.close()  # the loop thread is serving: it does the closing
            thread.join(30)
            assert not thread.is_alive()
            bye = client.recv(timeout_s=5, raise_errors=False)  # shutdown said BYE
            assert bye.msg_type == MsgType.BYE and bye.stream_id == stream.stream_id
        assert "internal_exception" not in server.counters.dropped
        assert server.counters.streams_open == 0
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        try:
            sock.bind(server.endpoints[0])  # the port is free again
        finally:
            sock.close(0)
    finally:
        server.stop()


def test_a_stall_of_the_server_itself_never_closes_a_healthy_stream(tmp_path, serve_subprocess):
    """Issue 13: after the server was stalled for longer than the stream timeout (here
    SIGSTOP for 3x the timeout, as a VM pause does), its silence clock counted the stall and
    closed a healthy stream as "owner silent". Only time the loop could run counts now."""
    proc, ep = serve_subprocess(tmp_path, "--stream-timeout", "1")
    try:
        with Client(ep, timeout_s=30) as client:
            stream = client.open_stream("repetition:d=3,r=2,p=0.01", decoder="uf")
            client.heartbeat()
            os.kill(proc.pid, signal.SIGSTOP)
            time.sleep(3.0)
            os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.3)  # the owner's next heartbeat comes after the server's housekeeping
            client.heartbeat()
            for size in stream.slice_sizes:
                stream.send_round(np.zeros(size, np.uint8))
            c = stream.recv_correction(timeout_s=20)
            assert (c.last_round, c.shot_end) == (2, True)
            assert client.stats()["streams_timed_out"] == 0
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(30)


def test_qecd_serve_sweeps_the_rings_a_killed_server_left_behind(tmp_path, serve_subprocess):
    """Issue 13 defect 6: a server killed with -9 left its /dev/shm region behind and
    `qecd serve` never swept stale regions; now it removes those whose creator is dead."""
    import subprocess
    import sys

    code = ("from qecd.transport.shm.ring import RingPair; import os, sys; "
            "p = RingPair.create(n_slots=4, slot_size=64); print(p.name, flush=True); "
            "sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    name = child.stdout.readline().strip()
    child.kill()
    child.wait(10)
    assert os.path.exists(f"/dev/shm/{name}")  # SIGKILL skips every cleanup hook
    proc, _ = serve_subprocess(tmp_path)
    try:
        assert not os.path.exists(f"/dev/shm/{name}")
    finally:
        proc.terminate()
        proc.wait(30)
        if os.path.exists(f"/dev/shm/{name}"):
            os.unlink(f"/dev/shm/{name}")
    assert "stale_regions_swept" in proc.stderr.read()


def test_a_heartbeat_after_a_server_restart_says_the_streams_are_gone(tmp_path,
                                                                      serve_subprocess):
    """Issue 13 defect 7: after a server restart the client's HEARTBEAT was still echoed
    (the DEALER reconnects silently) and nothing told it that its streams were gone."""
    proc, ep = serve_subprocess(tmp_path)
    try:
        with Client(ep, timeout_s=30) as client:
            stream = client.open_stream("repetition:d=3,r=2,p=0.01")
            assert client.heartbeat() > 0
            proc.terminate()
            proc.wait(30)
            proc, ep2 = serve_subprocess(tmp_path)  # same endpoint, a fresh server
            assert ep2 == ep
            with pytest.raises(ServerError) as e:
                client.heartbeat()
            assert e.value.code == ErrorCode.UNKNOWN_STREAM
            assert e.value.stream_id == stream.stream_id
    finally:
        proc.terminate()
        proc.wait(30)


def test_garbage_collections_run_at_housekeeping_not_where_objects_are_allocated(running_server):
    """Under a fuzz, CPython's collector paused the loop 4-200 ms wherever an allocation
    crossed its threshold (a gc.callbacks probe during a fuzz). While a server
    serves, collections run only from its housekeeping, on the loop's own thread, young
    generations first (docs: transport/server/gc_pauses.py)."""
    import gc

    threads = []

    def seen(phase, info):
        if phase == "start":
            threads.append((threading.current_thread().name, info["generation"]))

    with running_server(housekeeping_s=0.02) as srv:
        deadline = time.monotonic() + 10
        while srv._serving is None and time.monotonic() < deadline:
            time.sleep(0.01)
        loop_thread = srv._serving.name
        gc.callbacks.append(seen)
        try:
            keep = []
            for _ in range(20):  # ~10^5 container objects from this thread, some cyclic
                keep.append([[i] for i in range(5000)])
                a: list = []
                a.append(a)
                time.sleep(0.01)
            time.sleep(0.2)
        finally:
            gc.callbacks.remove(seen)
        young = getattr(getattr(srv, "_gc", None), "young_collections", 0)
    assert threads, "no collection at all while serving"
    assert all(name == loop_thread for name, _ in threads), threads
    assert young >= 1 and all(g <= 1 for _, g in threads)  # no full collection while busy
    assert gc.isenabled()  # automatic collection is back once the server stopped


def test_protocol_md_names_every_key_of_the_servers_stats(running_server):
    """A vendor reading docs/protocol.md alone found STATS keys the server sends that §6.6
    did not name (server, cpu_affinity, streams_opened, ...): every key of a whole-server
    STATS reply, and of a stream's, is in §6.6's table."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    section = doc[doc.index("### 6.6"):doc.index("### 6.7")]
    with running_server() as server, Client(server.endpoints[0]) as client:
        s = client.open_stream("repetition:d=3,r=2,p=0.01", timeout_s=60)
        keys = set(client.stats()) | set(client.stats(s.stream_id))
    assert sorted(k for k in keys if f"`{k}`" not in section) == []


@pytest.mark.parametrize("body", [b"abcd", b"\x80", b"\x81\xa1a\x01", b"x"])
def test_a_stats_request_with_any_body_is_refused_as_not_empty(running_server, body):
    """A STATS request's body must be empty (docs/protocol.md §6.6); any body is refused
    for that, in those words, not parsed as a STATS reply's map first (``abcd`` got "not one
    msgpack map: 3 bytes after the end of the map")."""
    from qecd.transport import wire as P

    with running_server() as server, Client(server.endpoints[0]) as client:
        client.send_frame(P.encode_frame(P.MsgType.STATS, body, seq=3))
        assert client.socket.poll(5000)
        h, b = P.parse_packet(client.socket.recv())
        e = P.decode_error(h, b)
        n = len(body)
        assert e.code == P.ErrorCode.BAD_PAYLOAD
        assert e.reason == (f"STATS request: expected an empty body, got {n} "
                            f"byte{'s' * (n != 1)}"), e
