"""A backlog on a ring stream (issue 11 item 4): when packets are already waiting, the loop
takes them all in one batch and reads the clock per batch and per decoding packet rather
than per packet, with the answers, their order and the records of the one-at-a-time loop.
Real shared memory and the real Numba loop; the backlog is made by filling the request
ring before the loop starts, as a stalled server finds it."""

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.decoder.window import StreamDecoder
from qecd.transport import wire as P
from qecd.transport.shm.ring import EMPTY, ring_try_recv, ring_try_send
from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

SPEC = "surface:d=3,r=5,p=0.02"
TS = 7  # every packet's timestamp_ns: nonzero, so the loop records its lag from it


def _frames(cli, dets):
    packets, ptr = cli.build_packets(dets)
    out = []
    for k in range(len(ptr) - 1):
        f = packets[ptr[k]:ptr[k + 1]].copy()
        f[24:32] = np.frombuffer(np.uint64(TS).tobytes(), np.uint8)
        out.append(f)
    cli.next_round += len(dets) * cli.layout.num_rounds
    return out


@pytest.fixture
def backlog():
    """A server whose request ring holds ``frames`` (then a BYE) before its loop starts;
    returns the server and every reply, in order, once the loop has returned."""
    made = []

    def run(frames_of):
        exp = build_experiment(SPEC)
        srv = ShmStreamServer.for_experiment(exp, stream_id=3, n_slots=1024)
        cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=3,
                                     corrections_per_shot=srv.corrections_per_shot)
        made.append((srv, cli))
        frames = frames_of(exp, cli) + [np.frombuffer(P.encode_bye(stream_id=3),
                                                      np.uint8).copy()]
        w, b, tx, rx, n, s = cli.pair.kernel_args()
        for f in frames:
            assert ring_try_send(w, b, tx, n, s, f, len(f)) == 0
        srv.start()
        srv.join(timeout=60)
        assert srv.exit_code == 0  # EXIT_BYE
        replies = []
        out = np.zeros(s, np.uint8)
        while (m := ring_try_recv(w, b, rx, n, s, out)) != EMPTY:
            replies.append(bytes(out[:m]))
        return exp, srv, replies

    yield run
    for srv, cli in made:
        cli.close()
        srv.close()


def test_a_backlog_is_answered_in_order_and_equal_to_the_offline_decode(backlog):
    """A HEARTBEAT and a duplicate round in the middle of the backlog are answered where
    they stand among the CORRECTIONs, and the corrections are the offline decode's."""
    held = {}

    def frames_of(exp, cli):
        dets, _ = exp.sample(40, seed=5)
        held["dets"] = dets
        f = _frames(cli, dets)
        hb = np.frombuffer(P.encode_heartbeat(stream_id=3), np.uint8).copy()
        return f[:50] + [hb] + f[50:70] + [f[10]] + f[70:]

    exp, srv, replies = backlog(frames_of)
    headers = [P.parse_packet(r) for r in replies]
    types = [P.MsgType(h.msg_type).name for h, _ in headers]
    R = exp.layout.num_rounds
    # the 50 rounds before the HEARTBEAT complete shots 0..9: their CORRECTIONs come first
    assert types.index("HEARTBEAT") == 50 // R
    errors = [P.decode_error(h, b) for h, b in headers if h.msg_type == P.MsgType.ERROR]
    assert [e.code for e in errors] == [P.ErrorCode.ROUND_DUPLICATE]
    assert types.index("ERROR") == 70 // R + 1  # after shots 0..13 and the HEARTBEAT
    assert types[-1] == "BYE"
    preds = np.zeros((40, exp.layout.num_observables), np.uint8)
    for h, b in headers:
        if h.msg_type == P.MsgType.CORRECTION:
            c = P.decode_correction(h, b)
            preds[c.last_round // R] ^= np.asarray(c.observables, np.uint8)
    offline = StreamDecoder(exp.dem, exp.layout, "uf").decode_batch(held["dets"])
    assert np.array_equal(preds, offline)
    rec = srv.records()
    assert rec["records_total"] == 40 * R  # one per SYNDROME taken (the duplicate: none)
    assert (rec["lag_ns"] >= 0).all() and (rec["service_ns"] >= 0).all()
    assert rec["decoded"].sum() == 40  # one window per shot here


def test_a_backlog_is_timed_per_batch_not_per_round(backlog):
    """Rounds taken in one batch share their pickup time (the clock is read when the batch
    is taken and after each packet that sent a CORRECTION, not once or twice per round):
    pickups are as many as the decoding packets plus two (the first packet is served alone:
    only then is the loop seen to be behind), not one per round as before."""
    exp, srv, _ = backlog(lambda exp, cli: _frames(cli, exp.sample(60, seed=9)[0]))
    rec = srv.records()
    pickups = rec["lag_ns"] + TS
    assert len(pickups) == 60 * exp.layout.num_rounds
    assert len(np.unique(pickups)) <= int(rec["decoded"].sum()) + 2
    # the rounds between two clock reads share the span equally, and spans follow each
    # other: each pickup is at or after the previous span's end
    assert (np.diff(pickups) >= 0).all()
    for p in np.unique(pickups)[1:]:
        before = np.flatnonzero(pickups < p)
        prev = pickups[before[-1]]
        span = int(rec["service_ns"][pickups == prev].sum())
        assert prev + span <= p


@pytest.mark.parametrize("rounds_per_packet", [1, 3])
def test_every_correction_of_a_drained_backlog_is_the_offline_decodes(
        rounds_per_packet, offline_commits):
    """A preloaded backlog of several shots with sliding windows (several CORRECTIONs per
    shot, carries across window boundaries, packets of K rounds crossing shot boundaries):
    every CORRECTION the loop answers while draining it, in order, has the round range and
    observable flips of the offline stream decoder's commit."""
    exp = build_experiment("surface:d=3,r=8,p=0.02")
    R = exp.layout.num_rounds
    shots = 24
    dets, _ = exp.sample(shots, seed=11)
    sd = StreamDecoder(exp.dem, exp.layout, "uf", window=4, commit=2)
    srv = ShmStreamServer(sd.compile(), stream_id=5, n_slots=1024)
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=5,
                                 corrections_per_shot=srv.corrections_per_shot)
    try:
        assert srv.corrections_per_shot > 2  # the windows slide
        lay = P.SyndromeLayout(list(exp.layout.round_sizes))
        rounds = [d[ids] for d in dets for ids in exp.layout.detectors]
        frames = []
        for r0 in range(0, shots * R, rounds_per_packet):
            k = min(rounds_per_packet, shots * R - r0)
            frames.append(np.frombuffer(P.encode_syndrome(
                np.concatenate(rounds[r0:r0 + k]), lay, stream_id=5, first_round=r0, count=k,
                timestamp_ns=TS), np.uint8).copy())
        frames.append(np.frombuffer(P.encode_bye(stream_id=5), np.uint8).copy())
        w, b, tx, rx, n, s = cli.pair.kernel_args()
        for f in frames:
            assert ring_try_send(w, b, tx, n, s, f, len(f)) == 0
        srv.start()
        srv.join(timeout=60)
        assert srv.exit_code == 0  # EXIT_BYE
        got = []
        out = np.zeros(s, np.uint8)
        while (m := ring_try_recv(w, b, rx, n, s, out)) != EMPTY:
            h, body = P.parse_packet(bytes(out[:m]))
            if h.msg_type == P.MsgType.CORRECTION:
                c = P.decode_correction(h, body)
                got.append((c.first_round, c.last_round, list(c.observables)))
            else:
                assert h.msg_type == P.MsgType.BYE, P.MsgType(h.msg_type).name
    finally:
        cli.close()
        srv.close()
    want = offline_commits(exp, dets, 4, 2, "uf")
    assert len(want) == shots * srv.corrections_per_shot
    assert got == want
    assert any(any(o) for *_, o in want)  # some windows flip an observable


def test_a_backlog_read_in_place_hands_every_slot_back_and_a_refilling_producer_loses_nothing():
    """A backlog's packets are read in place in their slots (not copied out) and handed back
    in runs (``ring_release``). Against a small request ring that the compiled client keeps
    refilling as fast as it can (so the loop is behind most of the time, and every slot it
    hands back is written again at once): a slot handed back before it was read would be
    overwritten under the loop (wrong or refused rounds, corrections unlike the offline
    decode). Every shot is answered with the offline decode's correction, nothing is
    refused, and at the BYE the request ring is empty."""
    from qecd.transport.shm.ring import ring_pending

    exp = build_experiment(SPEC)
    shots = 3000
    dets, _ = exp.sample(shots, seed=21)
    srv = ShmStreamServer.for_experiment(exp, stream_id=4, n_slots=16)
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=4,
                                 corrections_per_shot=srv.corrections_per_shot)
    try:
        srv.start()
        res = cli.stream_shots(dets, timeout_s=60)
        w, b, tx, rx, n, s = cli.pair.kernel_args()
        bye = np.frombuffer(P.encode_bye(stream_id=4), np.uint8).copy()
        assert ring_try_send(w, b, tx, n, s, bye, len(bye)) == 0
        srv.join(timeout=60)
        assert srv.exit_code == 0  # EXIT_BYE
        assert ring_pending(w, tx) == 0  # every slot handed back
        rec = srv.records()
        # packets taken in one batch share its pickup (send time + lag): the loop was
        # behind, reading slots in place, for some of them
        pickups = res.send_ns + rec["lag_ns"]
        batched = len(pickups) - len(np.unique(pickups))
    finally:
        cli.close()
        srv.close()
    assert (res.status, res.errors, res.lost, res.duplicated) == (0, 0, 0, 0)
    offline = StreamDecoder(exp.dem, exp.layout, "uf").decode_batch(dets)
    assert np.array_equal(res.predictions, offline)
    assert offline.any()  # some shots flip an observable
    assert len(pickups) == shots * exp.layout.num_rounds and batched > 0, batched


def test_a_corrupt_slot_inside_a_backlog_ends_the_stream_after_the_packets_before_it():
    """A slot no correct producer writes (a doorbell from the wrong lap) in the middle of a
    backlog the loop reads in place: the packets before it are served and handed back, the
    corrupt slot is not consumed, the loop answers ERROR ``RING_CORRUPT`` and returns
    EXIT_CORRUPT (docs/protocol.md §14)."""
    from qecd.transport.shm.loop import EXIT_CORRUPT
    from qecd.transport.shm.ring import RING_HEADER_SIZE, ring_pending
    from qecd.transport.wire.compiled import RING_CORRUPT, ring_reason

    exp = build_experiment(SPEC)
    R = exp.layout.num_rounds
    srv = ShmStreamServer.for_experiment(exp, stream_id=6, n_slots=256)
    cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=6,
                                 corrections_per_shot=srv.corrections_per_shot)
    try:
        frames = _frames(cli, exp.sample(20, seed=3)[0])
        w, b, tx, rx, n, s = cli.pair.kernel_args()
        for f in frames:
            assert ring_try_send(w, b, tx, n, s, f, len(f)) == 0
        bad = 5 * R + 2  # inside shot 5, after 17 packets the loop reads as one backlog
        sw = (tx + RING_HEADER_SIZE + bad * s) // 8
        w[sw] = bad + 1 + n  # a lap ahead
        srv.start()
        srv.join(timeout=60)
        assert srv.exit_code == EXIT_CORRUPT
        assert ring_pending(w, tx) == len(frames) - bad  # consumed up to the corrupt slot
        replies = []
        out = np.zeros(s, np.uint8)
        while (m := ring_try_recv(w, b, rx, n, s, out)) != EMPTY:
            replies.append(P.parse_packet(bytes(out[:m])))
    finally:
        cli.close()
        srv.close()
    types = [P.MsgType(h.msg_type).name for h, _ in replies]
    assert types == ["CORRECTION"] * 5 + ["ERROR"]
    err = P.decode_error(*replies[-1])
    assert err.code == P.ErrorCode.BAD_HEADER and err.reason == ring_reason(RING_CORRUPT), err
