"""Stream sessions without sockets: HELLO validation, round bookkeeping, corrections, ownership.

Every rejection must carry the ErrorCode the server sends back and leave the session as it
was; the corrections of a stream must cover each round exactly once and equal an offline
decode of the same shots, however the rounds are cut into packets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qecd.codes import build_experiment
from qecd.decoder.window import StreamDecoder
from qecd.errors import ProtocolError
from qecd.transport.server.session import (
    DecoderPool,
    SessionLimits,
    StreamSession,
    build_plan,
    plan_key,
)
from qecd.transport.wire import (
    ErrorCode,
    Hello,
    MsgType,
    SyndromeLayout,
    encode_frame,
    encode_syndrome,
    parse_packet,
)

SPEC = "surface:d=3,r=5,p=0.02"  # 6 rounds per shot; p high enough for non-trivial syndromes


@pytest.fixture(scope="module")
def pool():
    return DecoderPool(SessionLimits(max_backlog=64))


@pytest.fixture(scope="module")
def shots():
    exp = build_experiment(SPEC)
    dets, obs = exp.sample(60, seed=11)
    return exp, dets


def _session(pool, hello, sid=1, owner=b"A"):
    """A session on the Python round path (``begin`` then ``push``): the plan's compiled
    engine, if any, is switched off for it (tests/test_engine.py covers the engine)."""
    s = StreamSession(sid, pool.get_or_build(hello), owner=owner, route=owner,
                      want_faults=hello.want_faults, limits=pool.limits)
    s.engine = None
    return s


def _code(excinfo) -> str:
    return ErrorCode(excinfo.value.code).name


def _round_bits(exp, dets):
    """Per shot, per round: the round's bits in wire order."""
    return [[d[ids] for ids in exp.layout.detectors] for d in dets]


def _stream(session, exp, dets, cuts):
    """Send the shots' rounds as packets of the given sizes (cycled); return commits."""
    lay = SyndromeLayout(session.accept().slice_sizes)
    flat = [b for shot in _round_bits(exp, dets) for b in shot]
    commits, r, k = [], 0, 0
    while r < len(flat):
        count = min(cuts[k % len(cuts)], len(flat) - r)
        k += 1
        bits = np.concatenate(flat[r:r + count])
        frame = encode_syndrome(bits, lay, stream_id=session.stream_id, first_round=r,
                                count=count)
        assert session.begin(*parse_packet(frame)) == count
        for i in range(count):
            c = session.push(i)
            if c is not None:
                commits.append(c)
        r += count
    return commits


def _offline(exp, dets, window=None, commit=None):
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=window, commit=commit)
    R = exp.layout.num_rounds
    out = []
    for j, shot in enumerate(_round_bits(exp, dets)):
        for bits in shot:
            c = sd.push_round(bits)
            if c is not None:
                out.append((j * R + c.first_round, j * R + c.last_round,
                            c.observables.tolist(), c.fault_ids.tolist()))
    return out


# -- HELLO validation ------------------------------------------------------------------------

@pytest.mark.parametrize("hello, needle", [
    (Hello(spec="surface:d=4"), "'d'"),
    (Hello(spec="nosuchcode:d=3"), "spec"),
    (Hello(spec="surface:d=3", decoder="magic"), "decoder"),
    (Hello(spec="surface:d=3", decoder="uf-w6c3", window=6), "window"),
    (Hello(spec="surface:d=301,r=301"), "detectors"),
])
def test_plan_key_refuses_bad_hellos_with_bad_hello(hello, needle):
    with pytest.raises(ProtocolError) as e:
        plan_key(hello)
    assert _code(e) == "BAD_HELLO" and needle in e.value.reason


@pytest.mark.parametrize("dem, needle", [
    ("garbage", "Unrecognized"),
    ("error(0.1) D0\n", "coordinates"),
    ("error(1.5) D0\ndetector(0, 0) D0\n", "probability"),
    ("error(0.1) D99999999\n", "at most"),  # refused before any per-detector work
    ("error(0.1) L0\n", "detectors"),
    ("error(0.1) D0 D1 D2\ndetector(0, 0) D0\ndetector(0, 1) D1\ndetector(0, 2) D2\n",
     "3 detectors"),
    ("detector(0, 0) D0\n", None),  # a valid DEM: must build
])
def test_malformed_dems_are_bad_hello_and_never_another_exception(dem, needle):
    hello = Hello(dem=dem)
    if needle is None:
        assert build_plan(plan_key(hello), hello).slice_sizes == (1,)
        return
    with pytest.raises(ProtocolError) as e:
        build_plan(plan_key(hello), hello)
    assert _code(e) == "BAD_HELLO" and needle in e.value.reason


def test_pool_builds_a_key_once_and_forks_per_stream(pool):
    h = Hello(spec=SPEC)
    p1, p2 = pool.get_or_build(h), pool.get_or_build(Hello(spec="surface:d=3,r=5,p=0.020"))
    assert p1 is p2  # same canonical spec
    a, b = _session(pool, h, 1), _session(pool, h, 2)
    assert a.decoder is not b.decoder and a.decoder.plan is b.decoder.plan


def test_accept_states_the_settings_in_force(pool):
    whole = _session(pool, Hello(spec=SPEC)).accept()
    assert (whole.window, whole.commit, whole.slice_sizes) == (None, None, (4, 8, 8, 8, 8, 4))
    win = _session(pool, Hello(spec=SPEC, window=4)).accept()
    assert (win.window, win.commit) == (4, 2)  # commit defaults to window // 2
    wide = _session(pool, Hello(spec=SPEC, window=50, commit=10)).accept()
    assert (wide.window, wide.commit) == (None, None)  # a window over the whole shot
    named = _session(pool, Hello(spec=SPEC, decoder="pymatching-w4c1")).accept()
    assert (named.decoder, named.window, named.commit) == ("pymatching", 4, 1)


# -- round bookkeeping -----------------------------------------------------------------------

def _frame(s, first, count=1, bits=None):
    lay = s.layout
    if bits is None:
        bits = np.zeros(lay.num_detectors_in(first, count), np.uint8)
    return parse_packet(encode_syndrome(bits, lay, stream_id=s.stream_id, first_round=first,
                                        count=count))


def _assert_rejected(s, packet, code):
    before = (s.next_round, s.committed, s.rounds_received)
    with pytest.raises(ProtocolError) as e:
        s.begin(*packet)
    assert _code(e) == code
    assert (s.next_round, s.committed, s.rounds_received) == before


def test_gaps_duplicates_and_overlaps_are_refused_and_the_stream_stays(pool):
    s = _session(pool, Hello(spec=SPEC))
    for r in range(3):
        s.begin(*_frame(s, r))
        s.push(0)
    _assert_rejected(s, _frame(s, 5), "ROUND_GAP")
    _assert_rejected(s, _frame(s, 2), "ROUND_DUPLICATE")
    _assert_rejected(s, _frame(s, 0), "ROUND_DUPLICATE")  # reordered
    _assert_rejected(s, _frame(s, 1, count=4), "ROUND_DUPLICATE")  # overlaps new rounds
    assert s.next_round == 3
    s.begin(*_frame(s, 3))  # the stream continues where it was


def test_wrong_detector_count_padding_and_oversized_packets_are_refused(pool):
    s = _session(pool, Hello(spec=SPEC))
    h, _ = _frame(s, 0)  # round 0 has 4 detectors: 1 byte
    for payload in (b"", b"\x01\x00", b"\x10"):  # too short, too long, padding bit 4 set
        frame = encode_frame(MsgType.SYNDROME, payload, stream_id=1, count=1)
        _assert_rejected(s, parse_packet(frame), "BAD_PAYLOAD")
    _assert_rejected(s, _frame(s, 0, count=65), "SERVER_BUSY")  # > max_backlog rounds
    assert s.next_round == 0 and h.round == 0


def test_only_the_owner_may_use_a_stream(pool):
    s = _session(pool, Hello(spec=SPEC), owner=b"alice")
    s.check_owner(b"alice")
    with pytest.raises(ProtocolError) as e:
        s.check_owner(b"mallory")
    assert _code(e) == "NOT_OWNER"


# -- corrections -----------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 9), min_size=1, max_size=5),
       window=st.sampled_from([None, (4, 2), (3, 1), (6, 6)]))
def test_corrections_cover_every_round_once_and_equal_offline_for_any_packetization(
        pool, shots, cuts, window):
    exp, dets = shots
    dets = dets[:12]
    w, c = window or (None, None)
    s = _session(pool, Hello(spec=SPEC, window=w, commit=c, want_faults=True))
    commits = _stream(s, exp, dets, cuts)
    R = exp.layout.num_rounds
    covered = np.zeros(len(dets) * R, dtype=np.int64)
    for cm in commits:
        covered[cm.first_round:cm.last_round + 1] += 1
        assert cm.first_round // R == cm.last_round // R  # never spans two shots
        assert cm.shot_end == (cm.last_round % R == R - 1)
    assert (covered == 1).all()
    got = [(cm.first_round, cm.last_round, cm.observables.tolist(), cm.fault_ids.tolist())
           for cm in commits]
    assert got == _offline(exp, dets, w, c)
    assert s.committed == s.next_round == len(dets) * R and s.uncommitted() is None


def test_two_forked_streams_interleaved_do_not_disturb_each_other(pool, shots):
    exp, dets = shots
    a, b = _session(pool, Hello(spec=SPEC, window=4), 1), _session(pool, Hello(spec=SPEC,
                                                                                window=4), 2)
    bits = _round_bits(exp, dets[:10])
    got = {1: [], 2: []}
    for j in range(5):  # a gets shots 0-4, b shots 5-9, one round at a time each
        for t in range(exp.layout.num_rounds):
            for s, shot in ((a, j), (b, j + 5)):
                s.begin(*_frame(s, s.next_round, 1, bits[shot][t]))
                c = s.push(0)
                if c is not None:
                    got[s.stream_id].append(c.observables.tolist())
    want_a = [o for *_, o, _f in _offline(exp, dets[:5], 4)]
    want_b = [o for *_, o, _f in _offline(exp, dets[5:10], 4)]
    assert got[1] == want_a and got[2] == want_b


def test_a_decoder_failure_drops_the_shot_and_resumes_at_the_next_boundary(pool):
    # two disconnected detectors without a boundary: one fired detector has no matching
    dem = ("error(0.1) D0 D1\nerror(0.1) D2 D3\ndetector(0, 0) D0\ndetector(0, 1) D1\n"
           "detector(1, 0) D2\ndetector(1, 1) D3\n")
    s = _session(pool, Hello(dem=dem))
    assert s.accept().slice_sizes == (2, 2)
    s.begin(*_frame(s, 0, 1, np.array([1, 0], np.uint8)))
    assert s.push(0) is None
    s.begin(*_frame(s, 1, 1, np.array([0, 0], np.uint8)))
    with pytest.raises(ValueError):
        s.push(0)  # PyMatching: no perfect matching (the server answers DECODER_ERROR)
    assert s.fail(0) == (0, 1)
    assert (s.next_round, s.committed) == (2, 2)
    s.begin(*_frame(s, 2, 2, np.array([1, 0, 1, 0], np.uint8)))  # D0, D1: decodes
    assert s.push(0) is None
    c = s.push(1)
    assert (c.first_round, c.last_round, c.shot_end) == (2, 3, True)


def test_a_multi_round_packet_failing_mid_packet_is_dropped_from_the_next_boundary(pool):
    dem = "error(0.1) D0 D1\ndetector(0, 0) D0\ndetector(0, 1) D1\n"
    s = _session(pool, Hello(dem=dem))  # R = 2 rounds of 1 detector
    bits = np.array([0, 0, 1, 0, 0, 0], np.uint8)  # shot 0 fine, shot 1 odd, shot 2 fine
    assert s.begin(*_frame(s, 0, 6, bits)) == 6
    assert s.push(0) is None and s.push(1).last_round == 1
    assert s.push(2) is None
    with pytest.raises(ValueError):
        s.push(3)
    assert s.fail(3) == (2, 5)  # received and never to be corrected
    assert s.next_round == 4  # resend from the next shot (rounds 4, 5 were discarded too)


def test_a_repeat_bomb_dem_is_refused_before_anything_walks_it():
    """Issue 13: a 76-byte HELLO whose DEM repeats an error 10^9 times held the build (and
    the GIL) for about 5 s before its BAD_HELLO; stim counts repeat blocks without expanding
    them, so the cap on error mechanisms refuses it straight after parsing."""
    dem = "repeat 1000000000 {\n    error(0.1) D0\n}\ndetector(0, 0) D0\n"
    h = Hello(dem=dem)
    with pytest.raises(ProtocolError) as e:
        build_plan(plan_key(h), h)
    assert e.value.code == ErrorCode.BAD_HELLO
    assert "at most 2097152 error mechanisms" in str(e.value) and "1000000000" in str(e.value)
    small = SessionLimits(max_errors=2)
    h = Hello(dem="error(0.1) D0\nerror(0.1) D0\nerror(0.1) D0\ndetector(0, 0) D0\n")
    with pytest.raises(ProtocolError, match="at most 2 error mechanisms.*got 3"):
        build_plan(plan_key(h, small), h, small)
