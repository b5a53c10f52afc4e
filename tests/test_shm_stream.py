"""transport/shm_stream.py + shm_service.py: one stream served by a Numba loop over a
shared-memory ring pair; real shared memory, real threads and processes."""

import glob
import multiprocessing as mp
import os

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder.window import StreamDecoder
from qecd.errors import ProtocolError
from qecd.transport import wire as P
from qecd.transport.shm.loop import EXIT_BYE, EXIT_STOP
from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer


def _segments():
    """This process's regions (named ``qecd-<creator pid>-<random>``): another test run on
    the machine may create and remove its own meanwhile."""
    return set(glob.glob(f"/dev/shm/qecd-{os.getpid()}-*"))


@pytest.fixture
def served():
    made = []

    def make(spec, window=None, commit=None, attach=True, **kw):
        exp = build_experiment(spec)
        kw.setdefault("record_capacity", 100_000)
        srv = ShmStreamServer.for_experiment(exp, stream_id=9, window=window, commit=commit,
                                             n_slots=64, **kw)
        srv.start()
        cli = None
        if attach:
            cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=9,
                                         corrections_per_shot=srv.corrections_per_shot)
        made.append((srv, cli))
        return exp, srv, cli

    before = _segments()
    yield make
    for srv, cli in made:
        if cli is not None:
            cli.close()
        srv.close()
    assert _segments() <= before, "a /dev/shm segment outlived its test"


@pytest.mark.parametrize("decoder", ["uf", "pymatching"])
@pytest.mark.parametrize("spec, window, commit", [
    ("surface:d=3,r=3,p=0.01", None, None),
    ("surface:d=3,r=12,p=0.01", 6, 3),
])
def test_ring_stream_equals_offline_decode(served, spec, window, commit, decoder):
    exp, srv, cli = served(spec, window, commit, decoder=decoder)
    assert srv.backend == decoder
    dets, obs = exp.sample(300, seed=2)
    res = cli.stream_shots(dets, timeout_s=20)
    offline = StreamDecoder(exp.dem, exp.layout, decoder, window=window,
                            commit=commit).decode_batch(dets)
    assert (res.lost, res.duplicated, res.errors, res.status) == (0, 0, 0, 0)
    assert np.array_equal(res.predictions, offline)
    rec = srv.records()
    assert len(rec["service_ns"]) == dets.shape[0] * exp.layout.num_rounds
    assert rec["decoded"].sum() == res.received
    cli.bye()
    srv.join(5)
    assert srv.exit_code == EXIT_BYE


@pytest.mark.parametrize("decoder", ["uf", "pymatching"])
def test_ring_packets_are_the_wire_protocol(served, decoder):
    """What the Numba loop writes parses with protocol.py, byte for byte."""
    exp, srv, cli = served("surface:d=3,r=3,p=0.01", want_faults=True, decoder=decoder)
    lay = P.SyndromeLayout(list(exp.layout.round_sizes))
    dets, _ = exp.sample(1, seed=3)
    shot = dets[0]
    shot[:] = 0
    shot[exp.layout.detectors[1][0]] = 1  # one event, surely answered with faults
    for t, ids in enumerate(exp.layout.detectors):
        cli.pair.send_bytes(P.encode_syndrome(shot[ids], lay, stream_id=9, first_round=t,
                                              timestamp_ns=1000 + t))
    frame = cli.pair.recv_bytes(timeout=5)
    hdr, payload = P.parse_packet(frame)
    c = P.decode_correction(hdr, payload)
    assert hdr.msg_type == P.MsgType.CORRECTION and hdr.stream_id == 9
    assert (c.first_round, c.last_round, c.shot_end) == (0, 3, True)
    assert hdr.timestamp_ns == 1003 and c.service_ns > 0
    assert c.fault_ids is not None and len(c.fault_ids) >= 1


@pytest.mark.parametrize("mutate, code", [
    (lambda f: b"XX" + f[2:], P.ErrorCode.BAD_MAGIC),
    (lambda f: f[:2] + b"\x09" + f[3:], P.ErrorCode.UNSUPPORTED_VERSION),
    (lambda f: f[:16] + (5).to_bytes(8, "little") + f[24:], P.ErrorCode.ROUND_GAP),
    (lambda f: f[:8] + (77).to_bytes(4, "little") + f[12:], P.ErrorCode.UNKNOWN_STREAM),
    (lambda f: f[:-1] + b"\xf0", P.ErrorCode.BAD_PAYLOAD),  # padding bits set
    (lambda f: f + b"\x00", P.ErrorCode.LENGTH_MISMATCH),
    (lambda f: f[:10], P.ErrorCode.SHORT_FRAME),
])
@pytest.mark.parametrize("decoder", ["uf", "pymatching"])
def test_bad_packets_get_errors_and_the_stream_carries_on(served, mutate, code, decoder):
    exp, srv, cli = served("surface:d=3,r=3,p=0.01", decoder=decoder)
    lay = P.SyndromeLayout(list(exp.layout.round_sizes))
    good = P.encode_syndrome(np.zeros(4, np.uint8), lay, stream_id=9, first_round=0)
    bad = mutate(good)
    cli.pair.send_bytes(bad)
    hdr, payload = P.parse_packet(cli.pair.recv_bytes(timeout=5))
    err = P.decode_error(hdr, payload)
    assert err.code == code
    assert err.next_round == 0
    # the header echo is ZeroMQ's for the same bytes (the ring echoed an unknown version's
    # fields and put its stream id in a SHORT_FRAME's header; ZeroMQ and §12 say zeros)
    zh, zp = P.parse_packet(P.encode_error_reply(ProtocolError(code, "x"), bad))
    assert (hdr.stream_id, hdr.round, hdr.timestamp_ns, err.ref_type) == \
        (zh.stream_id, zh.round, zh.timestamp_ns, P.decode_error(zh, zp).ref_type)
    dets, _ = exp.sample(50, seed=4)
    res = cli.stream_shots(dets, timeout_s=20)
    assert res.lost == 0 and res.errors == 0


@pytest.mark.parametrize("decoder", ["uf", "pymatching"])
def test_multi_round_packets_resume_after_each_decode(served, decoder):
    """A packet carrying many rounds (several windows and shots) is decoded exactly like
    round-by-round streaming; the host loop returns to Python mid-packet and resumes."""
    spec, window, commit = "surface:d=3,r=9,p=0.02", 4, 2
    exp, srv, cli = served(spec, window, commit, decoder=decoder)
    lay = P.SyndromeLayout(list(exp.layout.round_sizes))
    dets, _ = exp.sample(3, seed=11)
    R = exp.layout.num_rounds
    rounds = [shot[ids] for shot in dets for ids in exp.layout.detectors]
    cut = [0, 5, 5 + R + 2, len(rounds)]  # packets straddle windows and shots
    for a, b in zip(cut[:-1], cut[1:], strict=True):
        frame = P.encode_syndrome(np.concatenate(rounds[a:b]), lay, stream_id=9,
                                  first_round=a, count=b - a)
        cli.pair.send_bytes(frame)
    offline = StreamDecoder(exp.dem, exp.layout, decoder, window=window, commit=commit)
    want = [c for shot in dets for ids in exp.layout.detectors
            if (c := offline.push_round(shot[ids])) is not None]
    got = []
    for _ in want:
        hdr, payload = P.parse_packet(cli.pair.recv_bytes(timeout=5))
        assert hdr.msg_type == P.MsgType.CORRECTION, P.decode_error(hdr, payload)
        got.append(P.decode_correction(hdr, payload))
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        shot_base = (g.last_round // R) * R
        assert (g.first_round - shot_base, g.last_round - shot_base, g.shot_end) == \
            (w.first_round, w.last_round, w.shot_end), i
        assert np.array_equal(g.observables, w.observables)
    assert srv.counters()["rounds"] == len(rounds)


@pytest.mark.parametrize("fail_window", [0, 3])  # mid-shot, and the shot's final window
def test_host_loop_drops_the_shot_of_a_failing_decode_and_carries_on(served, fail_window):
    """As over ZeroMQ: DECODER_ERROR + SYNDROMES_DROPPED naming the next shot boundary, the
    shot's later rounds are refused as duplicates, the following shots decode normally."""
    spec, window, commit = "surface:d=3,r=9,p=0.02", 4, 2
    exp, srv, cli = served(spec, window, commit, decoder="pymatching")
    R = exp.layout.num_rounds
    assert srv.corrections_per_shot == 4
    dets, _ = exp.sample(6, seed=5)
    real = srv.host.decode_due
    calls = {"n": 0}
    bad_call = 2 * 4 + fail_window  # shot 2's window

    def flaky(*args):  # the window decode the loop calls (a compiled stream's or not)
        calls["n"] += 1
        if calls["n"] == bad_call + 1:
            raise RuntimeError("backend failure")
        return real(*args)

    srv.host.decode_due = flaky
    res = cli.stream_shots(dets, timeout_s=5, corrections_per_shot=4)
    offline = StreamDecoder(exp.dem, exp.layout, "pymatching", window=window,
                            commit=commit).decode_batch(dets)
    failed_round = 2 * R + srv.host.plan.trigger_table().tolist().index(fail_window)
    later_rounds_of_shot = 3 * R - 1 - failed_round
    assert res.errors == 2 + later_rounds_of_shot
    assert res.received == 6 * 4 - (4 - fail_window)
    keep = [0, 1, 3, 4, 5]
    assert np.array_equal(res.predictions[keep], offline[keep])
    c = srv.counters()
    assert c["next_round"] == 6 * R and c["errors"] == res.errors


def test_stop_request_ends_the_loop(served):
    exp, srv, cli = served("repetition:d=3,r=2,p=0.01")
    srv.stop()
    srv.join(5)
    assert srv.exit_code == EXIT_STOP


def _client_process(name, spec, cps, q):
    exp = build_experiment(spec)
    cli = ShmStreamClient.attach(name, exp.layout, stream_id=9, corrections_per_shot=cps)
    dets, _ = exp.sample(200, seed=7)
    res = cli.stream_shots(dets, timeout_s=20)
    q.put((res.lost, res.errors, res.predictions.tolist()))
    cli.bye()
    cli.close()


def test_client_in_another_process(served):
    spec = "surface:d=3,r=6,p=0.01"
    exp, srv, _ = served(spec, 4, 2, attach=False)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_client_process, args=(srv.region_name, spec,
                                                  srv.corrections_per_shot, q))
    p.start()
    lost, errors, preds = q.get(timeout=120)
    p.join(30)
    dets, _ = exp.sample(200, seed=7)
    offline = StreamDecoder(exp.dem, exp.layout, "uf", window=4, commit=2).decode_batch(dets)
    assert (lost, errors) == (0, 0)
    assert np.array_equal(np.array(preds, dtype=np.uint8), offline)
    srv.join(5)
    assert srv.exit_code == EXIT_BYE


def test_vectorised_packets_equal_protocol_encoder():
    from qecd.transport.shm.ring import RingPair

    exp = build_experiment("surface:d=3,r=4,p=0.05")
    dets, _ = exp.sample(5, seed=1)
    pair = RingPair.create(n_slots=4, slot_size=128, side="server")
    try:
        cli = ShmStreamClient(pair, exp.layout, stream_id=3, corrections_per_shot=1)
        cli.next_round = 40
        flat, ptr = cli.build_packets(dets)
        lay = P.SyndromeLayout(list(exp.layout.round_sizes))
        k = 0
        for s, shot in enumerate(dets):
            for t, ids in enumerate(exp.layout.detectors):
                want = P.encode_syndrome(shot[ids], lay, stream_id=3,
                                         first_round=40 + s * exp.layout.num_rounds + t)
                assert bytes(flat[ptr[k]:ptr[k + 1]]) == want
                k += 1
        assert k == len(ptr) - 1
    finally:
        pair.close()
        pair.unlink()


def test_records_are_a_ring_of_the_latest_packets(served):
    exp, srv, cli = served("surface:d=3,r=3,p=0.01", record_capacity=64)
    dets, _ = exp.sample(50, seed=12)
    res = cli.stream_shots(dets, timeout_s=20)
    assert res.lost == 0
    rec = srv.records()
    assert rec["records_total"] == 50 * exp.layout.num_rounds == int(srv.rec_n[0])
    assert len(rec["service_ns"]) == 64 and (rec["service_ns"] > 0).all()
    # oldest first: the final round of every shot triggers the decode, and 200 % 4 == 0
    assert rec["decoded"].tolist() == [0, 0, 0, 1] * 16


def test_client_gives_up_when_the_server_stops_reading(served):
    exp, srv, cli = served("surface:d=3,r=3,p=0.01")
    srv.stop()
    srv.join(5)
    dets, _ = exp.sample(100, seed=13)  # 400 packets > 64 slots: the ring fills
    res = cli.stream_shots(dets, timeout_s=0.5)
    assert res.status == -4 and res.received == 0


def test_an_idle_ring_stream_naps_instead_of_burning_a_core_and_still_serves():
    """Issue 13 defect 3: each idle shared-memory stream busy-polled a whole core. Past
    SPIN_NS without a packet the loop now naps (usleep), so over an idle second the process
    uses a small fraction of a CPU; the first round after the idle spell is still served."""
    import resource
    import time

    from qecd.codes import build_experiment
    from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

    exp = build_experiment("repetition:d=3,r=2,p=0.01")
    srv = ShmStreamServer.for_experiment(exp, stream_id=1)
    srv.start()
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=1)
    try:
        time.sleep(0.2)  # past the spin window
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        time.sleep(1.5)
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        assert cpu < 0.25 * (t1 - t0), f"{cpu:.2f} CPU-s over {t1 - t0:.2f} s idle"
        dets, _ = exp.sample(3, seed=1)
        res = cli.stream_shots(dets)
        assert (res.lost, res.errors) == (0, 0)
    finally:
        cli.bye()
        srv.join(timeout=10)
        cli.close()
        srv.close()
