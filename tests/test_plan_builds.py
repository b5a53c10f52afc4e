"""Decoder plan builds in the build worker process, and their budgets, against a live server.

Every refusal (time budget, size budget, per-client budgets, DEM limits) reaches the client
as an ERROR naming the budget, is counted in ``hellos_refused``, and leaves the server
serving; the plan cache stays within its byte budget.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.request

import numpy as np
import pytest
import zmq

from qecd.codes import build_experiment
from qecd.transport.client import Client, ServerError, decode_reply
from qecd.transport.server.metrics import start_metrics_http
from qecd.transport.wire import ErrorCode, Hello, MsgType, encode_hello

pytestmark = pytest.mark.timeout(180)

SMALL = "repetition:d=3,r=2,p=0.01"


def _decodes(client: Client, spec: str) -> None:
    """A stream of ``spec`` opens and its first shot's correction matches the offline one."""
    exp = build_experiment(spec)
    dets, _ = exp.sample(1, seed=3)
    s = client.open_stream(spec, timeout_s=60)
    for ids in exp.layout.detectors:
        s.send_round(dets[0][ids])
    assert s.recv_correction(30).shot_end


def _dealer(endpoint: str):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _reply(sock, timeout_ms=60_000):
    assert sock.poll(timeout_ms), "no reply"
    return decode_reply(sock.recv())


def test_builds_run_in_another_process_and_are_logged(running_server, caplog):
    caplog.set_level(logging.INFO, logger="qecd.server")
    with running_server() as server, Client(server.endpoints[0]) as client:
        _decodes(client, SMALL)
        built = [r.qecd for r in caplog.records if r.getMessage() == "plan_built"]
        assert built and built[0]["worker_pid"] not in (0, os.getpid())
        assert built[0]["nbytes"] == server.pool.nbytes > 0
        assert server.counters.plan_cache_plans == 1
        assert server.counters.build_seconds.snapshot()[2] == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_builds_run_on_the_build_cpus_and_pinning_the_server_moves_them_off_its_cpu(
        running_server):
    """perf sched during ``qecd bench hostile build-stall``: the build thread, unpickling an
    arriving plan, ran for 2-7 ms on the CPU the loop had last used; the loop, woken there
    by a HEARTBEAT, waited for the scheduler's next tick (4 ms at HZ=250) while the other
    CPU stood idle. The build thread and worker now run on ``build_cpus``, and ``qecd serve
    --cpu C`` sets them to the server's other CPUs."""
    from qecd.transport.server.loop import build_cpus_beside

    mine = sorted(os.sched_getaffinity(0))
    builds = frozenset({mine[-1]})
    with running_server(build_cpus=builds) as server, Client(server.endpoints[0]) as client:
        _decodes(client, SMALL)
        assert os.sched_getaffinity(server._builds.thread_id) == builds
        assert os.sched_getaffinity(server._builds.worker.pid) == builds
        assert os.sched_getaffinity(0) == set(mine)  # the rest of the server is untouched
    assert build_cpus_beside(mine[0]) == frozenset(mine[1:])
    assert build_cpus_beside(mine[0], frozenset({5})) == frozenset({5})


def test_a_build_over_the_time_budget_is_stopped_and_the_server_carries_on(running_server):
    """A 40-byte HELLO whose plan takes many seconds (surface d=25, 100 rounds, uf: 7.8 s
    warm here) is refused when the build exceeds the time budget: the worker is killed and
    replaced, other clients are served, and the next build runs in the new worker.

    uf, not the default pymatching: a pymatching build that beat the budget on a faster CI
    machine (d=17: 2.6 s here) was then refused by max_gil_graph_faults instead."""
    with running_server(build_timeout_s=1) as server, Client(server.endpoints[0]) as client:
        with pytest.raises(ServerError) as e:
            client.open_stream("surface:d=25,r=100,p=0.001", decoder="uf", timeout_s=60)
        assert e.value.code == ErrorCode.BAD_HELLO
        assert "time budget of 1 s (build_timeout_s)" in e.value.reason
        assert server.counters.hellos_refused == {"time_budget": 1}
        assert server.counters.build_worker_restarts == 1
        assert client.heartbeat() > 0
        _decodes(client, SMALL)  # built by the replacement worker


def test_a_plan_over_the_size_budget_is_refused(running_server):
    with running_server(max_plan_bytes=20_000) as server, Client(server.endpoints[0]) as client:
        with pytest.raises(ServerError) as e:
            client.open_stream("surface:d=5,r=5,p=0.001", timeout_s=60)
        assert e.value.code == ErrorCode.BAD_HELLO
        assert "size budget of 20000 bytes (max_plan_bytes)" in e.value.reason
        assert server.counters.hellos_refused == {"size_budget": 1}
        assert len(server.pool) == 0  # nothing of it reached the server
        _decodes(client, SMALL)  # a small plan is within the budget


def test_one_client_may_wait_for_a_limited_number_of_builds(running_server):
    specs = [f"repetition:d=3,r={r},p=0.01" for r in (3, 4, 5)]
    with running_server(max_builds_per_client=2) as server:
        sock = _dealer(server.endpoints[0])
        try:
            for spec in specs:  # pipelined: all three arrive before any build finishes
                sock.send(encode_hello(Hello(spec=spec)))
            replies = [_reply(sock) for _ in specs]
        finally:
            sock.close(0)
        kinds = sorted(r.msg_type for r in replies)
        assert kinds == [MsgType.ACCEPT, MsgType.ACCEPT, MsgType.ERROR]
        err = next(r for r in replies if r.msg_type == MsgType.ERROR).body
        assert err.code == ErrorCode.SERVER_BUSY
        assert "max_builds_per_client=2" in err.reason
        assert server.counters.hellos_refused == {"client_builds_in_flight": 1}


def test_one_client_may_start_a_limited_number_of_builds_per_minute(running_server):
    with running_server(builds_per_minute_per_client=2) as server:
        with Client(server.endpoints[0]) as greedy:
            greedy.open_stream("repetition:d=3,r=3,p=0.01", timeout_s=60)
            greedy.open_stream("repetition:d=3,r=4,p=0.01", timeout_s=60)
            greedy.open_stream("repetition:d=3,r=3,p=0.01", timeout_s=60)  # cached: no build
            with pytest.raises(ServerError) as e:
                greedy.open_stream("repetition:d=3,r=5,p=0.01", timeout_s=60)
            assert e.value.code == ErrorCode.SERVER_BUSY
            assert "builds_per_minute_per_client=2" in e.value.reason
        with Client(server.endpoints[0]) as other:  # another connection: its own budget
            _decodes(other, "repetition:d=3,r=5,p=0.01")
        assert server.counters.hellos_refused == {"client_builds_per_minute": 1}


def test_the_plan_cache_stays_within_its_byte_budget(running_server, caplog):
    caplog.set_level(logging.INFO, logger="qecd.server")
    specs = [f"surface:d=3,r={r},p=0.001" for r in (3, 4, 5)]
    budget = 80_000
    with running_server(plan_cache_bytes=budget) as server, \
            Client(server.endpoints[0]) as client:
        httpd = start_metrics_http(0, server.counters, server.recorder)
        try:
            for spec in specs:
                _decodes(client, spec)
            url = f"http://127.0.0.1:{httpd.server_port}/metrics"
            text = urllib.request.urlopen(url, timeout=5).read().decode()
        finally:
            httpd.shutdown()
            httpd.server_close()
        built = [r.qecd["nbytes"] for r in caplog.records if r.getMessage() == "plan_built"]
        assert len(built) == 3 and sum(built) > budget  # the three plans would not fit
        assert server.pool.nbytes <= budget and server.pool.evicted >= 1
        assert len(server.pool) < 3
        c = server.counters
        assert (c.plan_cache_bytes, c.plan_cache_evictions) == (server.pool.nbytes,
                                                                server.pool.evicted)
        assert f"qecd_plan_cache_bytes {float(server.pool.nbytes)}" in text
        assert f"qecd_plan_cache_evictions_total {float(server.pool.evicted)}" in text
        assert "qecd_plan_build_seconds_count 3.0" in text
        _decodes(client, specs[0])  # an evicted plan is built again when asked for
        assert server.counters.builds == 4


def test_a_large_hello_is_decoded_in_the_worker_with_its_fields(running_server):
    exp = build_experiment("repetition:d=5,r=6,p=0.01")
    dem = str(exp.dem)
    with running_server(offloop_hello_bytes=256) as server, \
            Client(server.endpoints[0]) as client:
        assert len(dem) > 256
        s = client.open_stream(dem=dem, want_faults=True, describe=True, window=4, commit=2,
                               timeout_s=60)
        assert s.accept.want_faults and s.accept.window == 4
        assert s.accept.dem and s.accept.slice_detectors  # describe came through the worker
        sock = _dealer(server.endpoints[0])
        try:
            frame = bytearray(encode_hello(Hello(dem=dem)))
            frame[40] = 0xC1  # msgpack's never-used byte inside the body: not decodable
            sock.send(bytes(frame))
            r = _reply(sock)
        finally:
            sock.close(0)
        assert r.msg_type == MsgType.ERROR and r.body.code == ErrorCode.BAD_HELLO


def test_a_large_hello_refused_once_is_refused_again_without_the_worker(running_server):
    """A large HELLO is decoded and keyed in the worker, so its refusal was never remembered
    (the server knew no key for it): a fuzz's few 5-8 MB DEMs, sent over and over, each went
    to the worker again (megabytes through the pipe, parsed again) to be refused again. Its
    bytes' digest is remembered now, with the error and its reason; other bytes still go to
    the worker."""
    from qecd.transport.server.session import SessionLimits

    dem = str(build_experiment("surface:d=5,r=5,p=0.001").dem)  # 502 faults whole-shot
    with running_server(offloop_hello_bytes=256,
                        limits=SessionLimits(max_gil_graph_faults=300)) as server, \
            Client(server.endpoints[0]) as client:
        worker, calls = server._builds.worker, []
        real = worker.build
        worker.build = lambda *a, **k: calls.append(1) or real(*a, **k)
        errors = []
        for _ in range(3):
            with pytest.raises(ServerError) as e:
                client.open_stream(dem=dem, timeout_s=60)  # pymatching, whole-shot
            errors.append((e.value.code, e.value.reason))
        assert len(calls) == 1
        assert errors[0][0] == ErrorCode.BAD_HELLO and "max_gil_graph_faults" in errors[0][1]
        assert errors == errors[:1] * 3
        assert server.counters.hellos_refused == {"max_gil_graph_faults": 3}
        s = client.open_stream(dem=dem, decoder="uf", timeout_s=60)  # other bytes: built
        assert len(calls) == 2
        s.close()


def test_hostile_dems_are_refused_by_their_limit_and_counted(running_server):
    bomb = "repeat 1000000000 {\n error(0.1) D0\n}\ndetector(0, 0) D0\n"
    with running_server() as server, Client(server.endpoints[0]) as client:
        with pytest.raises(ServerError) as e:
            client.open_stream(dem=bomb, timeout_s=60)
        assert e.value.code == ErrorCode.BAD_HELLO and "error mechanisms" in e.value.reason
        builds = server.counters.builds
        with pytest.raises(ServerError) as again:  # remembered: refused without a build
            client.open_stream(dem=bomb, timeout_s=60)
        assert again.value.reason == e.value.reason and server.counters.builds == builds
        with pytest.raises(ServerError) as e:
            client.open_stream("surface:d=101,r=200,p=0.001", timeout_s=60)
        assert e.value.code == ErrorCode.BAD_HELLO and "detectors" in e.value.reason
        assert server.counters.hellos_refused == {"max_errors": 2, "max_detectors": 1}
        _decodes(client, SMALL)


def test_a_graph_the_server_would_rebuild_holding_the_gil_is_bounded(running_server):
    """PyMatching builds its search graph in one C++ call holding the GIL (40-73 ms for
    33,600 edges, every live stream waiting): above max_gil_graph_faults such a plan is
    refused on the worker, with what to do instead; a window or uf is served."""
    from qecd.transport.server.session import SessionLimits

    spec = "surface:d=5,r=5,p=0.001"  # 502 faults whole-shot, 172 in a 2-round window
    with running_server(limits=SessionLimits(max_gil_graph_faults=300)) as server, \
            Client(server.endpoints[0]) as client:
        with pytest.raises(ServerError) as e:
            client.open_stream(spec, timeout_s=60)  # the protocol's default: pymatching
        assert e.value.code == ErrorCode.BAD_HELLO
        assert ("expected a window graph of at most 300 faults (max_gil_graph_faults), got 502"
                in e.value.reason and "with a window" in e.value.reason)
        assert server.counters.hellos_refused == {"max_gil_graph_faults": 1}
        assert len(server.pool) == 0
        for kw in ({"decoder": "pymatching", "window": 2}, {"decoder": "uf"}):
            s = client.open_stream(spec, timeout_s=60, **kw)
            s.close()


def test_a_whole_shot_graph_over_the_bound_is_refused_before_its_backend_is_built(monkeypatch):
    """A whole-shot plan's one window graph is the DEM's fault table: the bound is checked
    after the parse, before the backend builds its graph (the worker spent seconds building
    the PyMatching graph of each 5-8 MB DEM of a fuzz, only to refuse it). Windows are still
    checked after the build, where each window's graph is known."""
    from qecd.decoder.pymatching_backend import PyMatchingDecoder
    from qecd.transport.server.session import LimitError, SessionLimits, build_plan, plan_key

    built = []
    real = PyMatchingDecoder.from_dem.__func__
    monkeypatch.setattr(PyMatchingDecoder, "from_dem",
                        classmethod(lambda cls, dem, **kw: built.append(1) or real(cls, dem, **kw)))
    hello = Hello(spec="surface:d=5,r=5,p=0.001")  # 502 faults whole-shot
    with pytest.raises(LimitError, match="at most 300 faults .* got 502"):
        build_plan(plan_key(hello), hello, SessionLimits(max_gil_graph_faults=300))
    assert built == []
    windowed = Hello(spec="surface:d=5,r=5,p=0.001", decoder="pymatching-w2c1")
    with pytest.raises(LimitError, match="at most 100 faults"):
        build_plan(plan_key(windowed), windowed, SessionLimits(max_gil_graph_faults=100))
    assert built  # a window's graph is bounded once built
    assert build_plan(plan_key(hello), hello, SessionLimits(max_gil_graph_faults=502))


def test_a_ring_stream_forks_the_plans_engine(running_server, no_shm_leak):
    """The shared-memory stream's engine is a fork of the plan's (its own copy of the
    arrays, through pickle): nothing is parsed or compiled again on the server to open it."""
    spec = "repetition:d=3,r=4,p=0.01"
    exp = build_experiment(spec)
    dets, _ = exp.sample(20, seed=1)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        cli = client.open_shm_stream(spec, decoder="uf")
        plan = server.pool.get(next(iter(server.pool._plans)))
        ring = server._streams[cli.accept.stream_id].shm.compiled
        mine, shared = ring.kernel_args(), plan.engine.kernel_args()
        assert ring is not plan.engine and mine is not shared
        assert np.array_equal(mine.win_dets, shared.win_dets)
        res = cli.stream_shots(dets, timeout_s=20)
        assert (res.lost, res.errors) == (0, 0)
        assert np.array_equal(res.predictions, plan.decoder.fork().decode_batch(dets))
        cli.close()


@pytest.mark.parametrize("spec,decoder", [
    ("surface:d=3,r=5,p=0.01", "pymatching"), ("surface:d=3,r=5,p=0.01", "pymatching-w4c2"),
    ("surface:d=3,r=5,p=0.01", "uf"), ("surface:d=3,r=5,p=0.01", "uf-w4c2"),
    ("surface:d=3,r=5,p=0.01", "pymatching-corr"), ("surface:d=3,r=5,p=0.01", "uf-corr"),
    ("bb:n=72,r=3,p=0.003", "bp-cluster"), ("bb:n=72,r=3,p=0.003", "relay-bp"),
])
def test_a_plan_decodes_alike_after_the_trip_from_the_worker(spec, decoder):
    """The plan the server receives (pickled in the worker: PyMatching's graph as an edge
    list, correlated matching from the DEM text, relay-bp from its fault table) decodes
    every shot as the plan built in place."""
    import pickle

    from qecd.transport.server.session import build_plan, plan_key

    if decoder == "relay-bp":
        pytest.importorskip("relay_bp")
    hello = Hello(spec=spec, decoder=decoder)
    built = build_plan(plan_key(hello), hello)
    arrived = pickle.loads(pickle.dumps(built, protocol=pickle.HIGHEST_PROTOCOL))
    exp = build_experiment(plan_key(hello).experiment)
    dets, _ = exp.sample(300, seed=11)
    assert np.array_equal(arrived.decoder.fork().decode_batch(dets),
                          built.decoder.fork().decode_batch(dets))
    assert arrived.description() == built.description()
    assert (arrived.engine is None) == (built.engine is None)


def test_a_build_worker_that_dies_is_replaced_and_its_hello_answered(running_server,
                                                                      wait_for):
    import signal
    import threading

    with running_server() as server, Client(server.endpoints[0]) as client:
        _decodes(client, SMALL)  # the worker is up
        worker = server._builds.worker
        pid, outcome = worker.pid, {}

        def slow() -> None:
            try:
                client.open_stream("surface:d=25,r=100,p=0.001", decoder="uf", timeout_s=120)
            except ServerError as e:
                outcome["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        assert wait_for(lambda: server.counters.builds_pending == 1, timeout_s=30)
        os.kill(pid, signal.SIGKILL)
        t.join(120)
        e = outcome["error"]
        assert e.code == ErrorCode.INTERNAL and "build worker process died" in e.reason
        assert server.counters.hellos_refused == {"worker_died": 1}
        assert worker.restarts == 1 and worker.pid != pid
        with Client(server.endpoints[0]) as other:
            _decodes(other, "repetition:d=3,r=3,p=0.01")  # built by the replacement


def test_a_pymatching_plan_arrives_with_one_graph_per_window_template():
    """The server rebuilds PyMatching graphs from the pickled plan holding the GIL in C++
    for parts of it (the search graph on the first decode): the Python path's window
    decoders and the engine's host decode share one graph per template, so each is rebuilt
    once (they were two copies), and the edge-returning decode still finds every fault."""
    import pickle

    from qecd.transport.server.session import build_plan, plan_key

    hello = Hello(spec="surface:d=3,r=8,p=0.01", decoder="pymatching-w4c2")
    arrived = pickle.loads(pickle.dumps(build_plan(plan_key(hello), hello)))
    python_side = {id(d) for d in arrived.decoder.window_decoders.values()}
    engine_side = {id(d) for d in arrived.engine.windows.decoders}
    assert python_side == engine_side and len(python_side) >= 1
    exp = build_experiment(plan_key(hello).experiment)
    dets, _ = exp.sample(50, seed=5)
    for d in arrived.decoder.window_decoders.values():
        syn = np.zeros(d.faults.num_detectors, np.uint8)
        syn[:2] = 1
        faults = d.decode_to_faults(syn)
        assert (d.faults.observables_of(faults) == d.decode(syn)).all()


def test_plans_nobody_uses_idle_out_of_the_cache_and_open_streams_keep_theirs():
    """A fuzz's large HELLOs left plans in the cache that no one asked for again, and the
    server's memory stayed up by their size (+57 MB). Plans no HELLO looked up and no open
    stream used for plan_cache_idle_s are dropped now; a plan an open stream uses is kept."""
    from qecd.transport.server.session import DecoderPool

    pool = DecoderPool()
    a = pool.get_or_build(Hello(spec="repetition:d=3,r=2,p=0.01"))
    b = pool.get_or_build(Hello(spec="repetition:d=5,r=2,p=0.01"))
    assert pool.expire(60.0) == 0 and len(pool) == 2
    time.sleep(0.05)
    assert pool.expire(0.04, in_use={a.key}) == 1  # b idled out; a's stream keeps it
    assert pool.get(a.key) is a and pool.get(b.key) is None
    assert pool.nbytes == a.nbytes and pool.evicted == 1


def test_a_plans_arrays_arrive_in_the_mapped_handover_file():
    """Under a fuzz the build thread held the GIL for 117 ms in the unpickler, copying a
    plan's arrays out of the bytes read from the worker (which were themselves copied out of
    the pipe in chunks). The arrays now travel out of band and are read straight into the
    memory the plan uses: every array of the received plan lives in the one mapping of the
    memory file the worker wrote (none in the unpickler's copy of a message), and the plan
    decodes as one built in place."""
    import gc
    import sys

    from qecd.transport.server.build_worker import BuildWorker
    from qecd.transport.server.session import SessionLimits, build_plan, plan_key

    hello = Hello(spec="surface:d=5,r=5,p=0.01", decoder="uf")
    worker = BuildWorker(SessionLimits(), time_budget_s=120, max_plan_bytes=1 << 30)
    try:
        arrived = worker.build(plan_key(hello), hello).plan
    finally:
        worker.close()
    seen, stack, found = set(), [arrived], []
    while stack:  # every array the plan reaches
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, type(sys))):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            found.append(obj)
        else:
            stack.extend(gc.get_referents(obj))
    owners = {}
    for a in found:
        if a.nbytes >= 1024:
            while True:  # down to the memory's owner (a read-only array wraps a memoryview)
                b = a.base.obj if isinstance(a.base, memoryview) else a.base
                if not isinstance(b, np.ndarray):
                    break
                a = b
            owner = a.base.obj if isinstance(a.base, memoryview) else a.base
            owners[id(owner)] = (type(owner).__name__, a.dtype.str, a.ndim)
    # one mapping of the worker's memory file (was: bytes in the pickle, then one array per
    # buffer read from a pipe)
    assert len(owners) == 1, owners
    [(name, dtype, ndim)] = owners.values()
    assert (name, dtype, ndim) == ("_Mapping", "|u1", 1)
    exp = build_experiment(plan_key(hello).experiment)
    dets, _ = exp.sample(200, seed=3)
    built = build_plan(plan_key(hello), hello)
    assert np.array_equal(arrived.decoder.fork().decode_batch(dets),
                          built.decoder.fork().decode_batch(dets))


def test_a_plans_dem_text_travels_out_of_band_and_describes_alike():
    """A plan carried its DEM text (for ACCEPTs with ``describe``) as a str inside the
    pickle: unpickling it is one C call holding the server's GIL for the copy, which stalled
    live streams for milliseconds when a 5-8 MB DEM's plan arrived (build-stall HEARTBEATs
    of 5-8 ms at each plan's arrival). The text now travels as an out-of-band array, and
    the description is the same."""
    import pickle

    from qecd.transport.server.session import SessionLimits, build_plan, plan_key

    dem = build_experiment("surface:d=5,r=40,p=0.01").dem
    hello = Hello(dem=str(dem), decoder="uf")
    plan = build_plan(plan_key(hello, SessionLimits()), hello, SessionLimits())
    want = plan.description()
    shipped = plan.__getstate__()["_description"]
    inband = len(pickle.dumps(shipped, protocol=5, buffer_callback=lambda b: None))
    assert inband < len(str(dem)) / 10, (inband, len(str(dem)))  # was: the text itself
    buffers: list = []
    data = pickle.dumps(plan, protocol=5, buffer_callback=buffers.append)
    arrived = pickle.loads(data, buffers=[b.raw() for b in buffers])
    assert arrived.description() == want and arrived.description()["dem"] == str(dem)


def test_a_large_hello_is_not_copied_on_the_loop(running_server):
    """Ten 5-8 MB HELLOs arriving at once held the loop 2-15 ms each while pyzmq copied
    them out of ZeroMQ's messages (the HEARTBEATs of others waited behind). A packet larger
    than 64 KiB is now handled where ZeroMQ received it: the loop sees a view of the
    message, and small packets still arrive as bytes."""
    exp = build_experiment("surface:d=5,r=12,p=0.01")
    dem = str(exp.dem)
    assert len(dem) > 70_000
    with running_server() as server, Client(server.endpoints[0]) as client:
        seen = []
        handle_now = server._handle_now

        def spy(parts, t_recv):
            seen.append(tuple(type(p.obj if isinstance(p, memoryview) else p).__name__
                              for p in parts[1:]))
            return handle_now(parts, t_recv)

        server._handle_now = spy
        client.heartbeat()
        assert client.open_stream(dem=dem, timeout_s=120).stream_id
        assert seen[0] == ("bytes",)  # the HEARTBEAT
        assert ("Frame",) in seen, seen  # the HELLO: a view of its zmq.Frame, not a copy


def test_a_large_hello_is_not_copied_by_the_fast_path(running_server):
    """With a stream open the fast path reads the socket, and it copied each large HELLO out
    of its receive buffer (3.3-13 ms of the loop's time for 5-8 MB). Such a HELLO now stays
    in the libzmq message it arrived in: the loop sees a read-only view of it, and the
    message is closed once nothing refers to it."""
    import gc
    import weakref

    from qecd.transport.server.libzmq_native import MessageBytes

    exp = build_experiment("surface:d=5,r=12,p=0.01")
    dem = str(exp.dem)
    assert len(dem) > 70_000
    with running_server() as server, Client(server.endpoints[0]) as client:
        live = client.open_stream(SMALL, decoder="uf", timeout_s=60)  # the fast path serves
        assert server._fast is not None and len(server._fast) == 1
        owners = []
        handle_now = server._handle_now

        def spy(parts, t_recv):
            for p in parts[1:]:
                if isinstance(p, memoryview) and isinstance(p.obj, np.ndarray):
                    base = p.obj.base
                    assert isinstance(base, MessageBytes) and p.readonly
                    owners.append(weakref.ref(base))
            return handle_now(parts, t_recv)

        server._handle_now = spy
        assert client.open_stream(dem=dem, timeout_s=120).stream_id
        assert len(owners) == 1, "the HELLO did not arrive in its libzmq message"
        _decodes(client, SMALL)
        live.close()
        for _ in range(50):  # the build thread lets go of it once the worker has it
            gc.collect()
            if owners[0]() is None:
                break
            time.sleep(0.1)
        assert owners[0]() is None, "the HELLO's message was never released"


def test_a_taken_message_leaves_no_cyclic_garbage():
    """The server's collector freezes what survives a young collection, so anything cyclic a
    large HELLO leaves behind stays until the next full collection (which waits for an idle
    loop): a ctypes array type per HELLO size did (~3 KB each, a size chosen by the
    client). A message taken from the slot is freed by reference counts alone."""
    import gc

    from numba import njit

    from qecd.transport.server import libzmq_native as native

    @njit
    def recv(slot, sock):
        return native.zmq_msg_recv(slot.ctypes.data, sock, 0)

    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://taken")
    b.connect("inproc://taken")
    slot = np.zeros(native.MSG_T_SIZE // 8, np.int64)
    try:
        was = gc.isenabled()
        gc.disable()
        try:
            for size in (70_000, 70_001, 70_002, 70_003):
                if size == 70_001:  # the first turn compiled recv: its garbage goes first
                    gc.collect()
                a.send(bytes([size % 251]) * size)
                n = recv(slot, b.underlying)
                view = native.take_message(slot.ctypes.data, n)
                assert n == size and view[0] == size % 251 and not view.flags.writeable
                del view
            assert gc.collect() == 0  # nothing unreachable was left for the collector
        finally:
            if was:
                gc.enable()
    finally:
        a.close(0)
        b.close(0)
        ctx.term()


@pytest.mark.parametrize("idle", [False, True])
def test_the_build_worker_runs_at_nice_10_or_in_the_idle_class(idle):
    """``qecd serve --build-worker-idle`` (``ServerConfig.build_worker_idle``) puts the build
    worker in Linux's SCHED_IDLE class, where a waking serving thread preempts it at once;
    by default it runs at nice 10 in the normal class. Checked on the real worker process,
    after it built a plan."""
    from qecd.transport.server.build_worker import BuildWorker
    from qecd.transport.server.session import SessionLimits, plan_key

    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    hello = Hello(spec="repetition:d=3,r=2,p=0.01")
    worker = BuildWorker(SessionLimits(), time_budget_s=120, max_plan_bytes=1 << 30, idle=idle)
    try:
        assert worker.build(plan_key(hello), hello).plan.slice_sizes == (2, 2, 2)
        policy = os.sched_getscheduler(worker.pid)
        with open(f"/proc/{worker.pid}/stat") as f:
            nice = int(f.read().rsplit(")", 1)[1].split()[16])
    finally:
        worker.close()
    assert policy == (os.SCHED_IDLE if idle else os.SCHED_OTHER)
    assert nice == os.nice(0) + 10 or nice == 19


def test_qecd_serve_has_a_build_worker_idle_flag():
    from qecd.cli import build_parser

    a = build_parser().parse_args(["serve", "--build-worker-idle"])
    b = build_parser().parse_args(["serve"])
    assert (a.build_worker_idle, b.build_worker_idle) == (True, False)


def test_qecd_serve_build_cpus_reads_taskset_lists_and_refuses_cpus_it_cannot_use(capsys):
    """A ``--build-cpus`` outside the process's CPUs would be dropped silently by the build
    thread's pinning (builds then run anywhere): ``qecd serve`` refuses it at start."""
    from qecd.cli import build_parser, main

    p = build_parser()
    assert p.parse_args(["serve", "--build-cpus", "0,2-3"]).build_cpus == [0, 2, 3]
    assert p.parse_args(["serve"]).build_cpus is None
    for bad in ("x", "-1", "", "3-a"):
        with pytest.raises(SystemExit):
            p.parse_args(["serve", "--build-cpus", bad])
    far = max(os.sched_getaffinity(0)) + 64
    assert main(["serve", "--bind", "tcp://127.0.0.1:0", "--build-cpus", str(far)]) == 2
    assert "--build-cpus: expected CPUs this process may run on" in capsys.readouterr().err
