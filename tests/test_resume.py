"""Resuming a stream from another connection with the ACCEPT's resume token (issue 13,
docs/protocol.md §6.9), over real ZeroMQ sockets on loopback.

A client whose connection drops (a new DEALER gets a new routing id, which owns nothing)
takes its stream back with ``Client.resume_stream(stream_id, token)`` and finishes the shot
it was in with the corrections an offline decoder gives; the token is single-use; a wrong
token, a spent one, another stream's and an unknown stream id are refused alike; with CURVE
only the owner's key may resume; the old connection's packets are refused afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil

import pytest

from qecd.codes import build_experiment
from qecd.errors import ProtocolError
from qecd.transport._client_core import resume_frame
from qecd.transport.client import Client, ServerError, ServerTimeout
from qecd.transport.wire import (
    RESUME_TOKEN_BYTES,
    ErrorCode,
    Hello,
    MsgType,
    Resume,
    committed_ranges,
    decode_hello,
    encode_frame,
    encode_hello,
    encode_syndrome,
    parse_packet,
)

pytestmark = pytest.mark.timeout(180)

SPEC = "surface:d=3,r=6,p=0.02"  # R = 7 rounds per shot
#: ``pymatching`` is served by the server's Python path; ``uf`` streams by its compiled
#: fast path (plain mode), whose routing table the resume must update too
DECODERS = ("pymatching-w4c2", "uf-w4c2")


@pytest.fixture(scope="module")
def server(running_server):
    with running_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def shots():
    """Three shots of SPEC: each one's detection events in DEM order."""
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(3, seed=13)
    assert dets.any(axis=1).all()  # every shot has detection events to decode
    return exp, dets


def _round_bits(exp, shot, t):
    return shot[exp.layout.detectors[t]]


def _send(stream, exp, dets, first, last):
    """Send absolute rounds ``first .. last`` (inclusive) of ``dets`` one per packet."""
    R = exp.layout.num_rounds
    for r in range(first, last + 1):
        stream.send_round(_round_bits(exp, dets[r // R], r % R))


def _corrections(stream, n):
    return [stream.recv_correction(10) for _ in range(n)]


def _triggered(accept, upto):
    """How many CORRECTIONs rounds ``0 .. upto`` trigger (docs/protocol.md §7.1)."""
    R = accept.rounds_per_shot
    ranges = committed_ranges(R, accept.window, accept.commit)
    return sum(1 for j in range(upto // R + 1) for (_, _, trig) in ranges
               if j * R + trig <= upto)


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_new_connection_resumes_mid_shot_and_finishes_it_exactly(server, shots, decoder,
                                                                   offline_commits):
    """The first client streams a shot and a half, then its socket closes without BYE; a
    second client resumes with the token at the server's next round and finishes: every
    round is corrected once, as the offline decoder does it (no lost rounds)."""
    exp, dets = shots
    R = exp.layout.num_rounds
    cut = R + 4  # rounds 0 .. cut-1 go over the first connection: mid-shot 1
    c1 = Client(server.endpoints[0])
    s1 = c1.open_stream(SPEC, decoder=decoder)
    assert s1.resume_token is not None and len(s1.resume_token) == RESUME_TOKEN_BYTES
    _send(s1, exp, dets, 0, cut - 1)
    got = _corrections(s1, _triggered(s1.accept, cut - 1))
    assert s1.stats()["next_round"] == cut  # (the same connection: in order)
    sid, token = s1.stream_id, s1.resume_token
    c1.close()  # the connection drops: no BYE
    with Client(server.endpoints[0]) as c2:
        s2 = c2.resume_stream(sid, token)
        assert (s2.stream_id, s2.next_round) == (sid, cut)
        assert s2.accept.window == 4 and s2.accept.slice_sizes == s1.accept.slice_sizes
        assert s2.resume_token is not None and s2.resume_token != token  # a fresh one
        _send(s2, exp, dets, cut, 3 * R - 1)
        got += _corrections(s2, _triggered(s2.accept, 3 * R - 1) - len(got))
        s2.close()
    want = offline_commits(exp, dets, 4, 2, backend=decoder.split("-")[0])
    assert [(c.first_round, c.last_round, c.observables.tolist()) for c in got] == want
    assert got[-1].shot_end


@pytest.mark.parametrize("decoder", DECODERS)
def test_the_old_connection_is_refused_after_the_resume(server, shots, decoder):
    exp, dets = shots
    with Client(server.endpoints[0]) as old, Client(server.endpoints[0]) as new:
        s = old.open_stream(SPEC, decoder=decoder)
        _send(s, exp, dets, 0, 2)
        # two connections' packets are not ordered with each other: the old one's rounds
        # are in before the new one resumes (the ACCEPT's next_round says where it stands)
        assert s.stats()["next_round"] == 3
        s2 = new.resume_stream(s.stream_id, s.resume_token)
        assert s2.next_round == 3
        # the old connection's next round, heartbeat, stats and BYE: NOT_OWNER, no effect
        old.send_frame(encode_syndrome(_round_bits(exp, dets[0], 3), s.layout,
                                       stream_id=s.stream_id, first_round=3))
        with pytest.raises(ServerError) as e:
            s.recv(10)
        assert e.value.code == ErrorCode.NOT_OWNER and e.value.next_round == 0
        for call in (lambda: old.heartbeat(s.stream_id), lambda: old.stats(s.stream_id),
                     lambda: old.bye(s.stream_id)):
            with pytest.raises(ServerError) as e:
                call()
            assert e.value.code == ErrorCode.NOT_OWNER
        assert s2.stats()["rounds_received"] == 3  # the refused round never reached it
        _send(s2, exp, dets, 3, 2 * exp.layout.num_rounds - 1)
        assert s2.stats()["next_round"] == 2 * exp.layout.num_rounds
        s2.close()


def test_the_asyncio_client_resumes_too(server, shots):
    import asyncio

    from qecd.transport.aio_client import AsyncClient

    exp, dets = shots

    async def run():
        async with AsyncClient(server.endpoints[0]) as c1:
            s = await c1.open_stream(SPEC)
            for t in range(3):
                await s.send_round(_round_bits(exp, dets[0], t))
            assert (await c1.stats(s.stream_id))["next_round"] == 3
        async with AsyncClient(server.endpoints[0]) as c2:
            s2 = await c2.resume_stream(s.stream_id, s.resume_token)
            for t in range(3, exp.layout.num_rounds):
                await s2.send_round(_round_bits(exp, dets[0], t))
            c = await s2.recv_correction(10)
            await s2.close()
            return s2.next_round, s2.resume_token != s.resume_token, c

    next_round, fresh, c = asyncio.run(run())
    assert next_round == exp.layout.num_rounds and fresh
    assert (c.first_round, c.last_round, c.shot_end) == (0, exp.layout.num_rounds - 1, True)


def test_wrong_spent_and_foreign_tokens_and_unknown_ids_are_refused_alike(server, caplog):
    with Client(server.endpoints[0]) as owner, Client(server.endpoints[0]) as thief:
        a = owner.open_stream(SPEC)
        b = owner.open_stream(SPEC)
        refused_before = server.counters.hellos_refused.get("resume", 0)
        attempts = {"wrong token": (a.stream_id, os.urandom(RESUME_TOKEN_BYTES)),
                    "another stream's token": (a.stream_id, b.resume_token),
                    "unknown stream": (a.stream_id + 1000, a.resume_token)}
        with caplog.at_level(logging.WARNING, logger="qecd.server"):
            errors = {}
            for what, (sid, tok) in attempts.items():
                with pytest.raises(ServerError) as e:
                    thief.resume_stream(sid, tok)
                errors[what] = e.value
            # the owner's token still works (failed attempts spend nothing) and is then spent
            spent = a.resume_token
            with Client(server.endpoints[0]) as again:
                moved = again.resume_stream(a.stream_id, spent)
                with pytest.raises(ServerError) as e:
                    thief.resume_stream(a.stream_id, spent)
                errors["spent token"] = e.value
                moved.close()
        assert {(int(e.code), e.reason, e.stream_id, e.next_round) for e in errors.values()} \
            == {(ErrorCode.UNKNOWN_STREAM, errors["wrong token"].reason, 0, 0)}, errors
        assert server.counters.hellos_refused["resume"] - refused_before == 4
        assert server.stats()["hellos_refused"]["resume"] >= 4
        lines = [r for r in caplog.records if r.getMessage() == "stream_resume_refused"]
        assert len(lines) >= 4
        assert not any(a.resume_token.hex() in r.getMessage() + str(getattr(r, "qecd", ""))
                       for r in caplog.records)  # never logged
        assert b.stats()["next_round"] == 0  # b untouched


def test_refused_resumes_spend_the_error_budget(running_server):
    """Each refusal is an ERROR of the peer's budget (§10): beyond it, counted drops."""
    with running_server(error_budget_per_s=3) as srv, Client(srv.endpoints[0],
                                                             timeout_s=1.0) as thief:
        for i in range(10):  # back to back: within one or two of the budget's seconds
            thief.send_frame(resume_frame(1, os.urandom(RESUME_TOKEN_BYTES), i + 1))
        answered = 0
        with pytest.raises(ServerTimeout):
            while True:
                r = thief.recv(timeout_s=1.0, raise_errors=False)
                assert r.msg_type == MsgType.ERROR
                assert r.body.code == ErrorCode.UNKNOWN_STREAM
                answered += 1
        assert srv.counters.hellos_refused["resume"] == 10
        dropped = srv.counters.dropped.get("error_budget", 0)
        assert answered + dropped == 10 and answered <= 6, (answered, dropped)


def test_the_prometheus_families_count_resumes(server):
    from prometheus_client import CollectorRegistry, generate_latest

    from qecd.transport.server.metrics import PrometheusCollector

    with Client(server.endpoints[0]) as c1, Client(server.endpoints[0]) as c2:
        s = c1.open_stream(SPEC)
        c2.resume_stream(s.stream_id, s.resume_token).close()
        with pytest.raises(ServerError):
            c2.resume_stream(s.stream_id, s.resume_token)
    reg = CollectorRegistry()
    reg.register(PrometheusCollector(server.counters, server.recorder))
    text = generate_latest(reg).decode()
    assert "qecd_streams_resumed_total" in text
    assert 'qecd_hellos_refused_total{reason="resume"}' in text


def test_a_ring_stream_is_not_resumed(server, no_shm_leak):
    """Its region is not handed to another connection: the right token gets a BAD_HELLO
    naming why (and nothing is spent), a wrong one the uniform refusal."""
    with Client(server.endpoints[0]) as c1, Client(server.endpoints[0]) as c2:
        ring = c1.open_shm_stream("repetition:d=3,r=2,p=0.01", decoder="uf")
        try:
            tok = ring.accept.resume_token
            assert tok is not None
            with pytest.raises(ServerError) as e:
                c2.resume_stream(ring.stream_id, tok)
            assert e.value.code == ErrorCode.BAD_HELLO and "shared-memory" in e.value.reason
            with pytest.raises(ServerError) as e:
                c2.resume_stream(ring.stream_id, bytes(RESUME_TOKEN_BYTES))
            assert e.value.code == ErrorCode.UNKNOWN_STREAM
            assert c1.stats(ring.stream_id)["stream_id"] == ring.stream_id  # still c1's
        finally:
            c1.bye(ring.stream_id)
            ring.close()


def test_a_bye_in_the_middle_of_a_shot_discards_it_silently(server, shots):
    """docs/protocol.md §9.5: CORRECTIONs of windows already committed were sent; the
    incomplete rest of the shot is discarded without SYNDROMES_DROPPED or any ERROR, and
    the BYE's ``round`` is the stream's next round (every round received)."""
    exp, dets = shots
    R = exp.layout.num_rounds
    with Client(server.endpoints[0]) as c:
        s = c.open_stream(SPEC, decoder="pymatching-w4c2")
        _send(s, exp, dets, 0, R + 4)  # shot 0 and rounds 0..4 of shot 1
        got = _corrections(s, _triggered(s.accept, R + 4))
        assert got[-1].last_round == R + 1  # shot 1's first window committed
        assert s.close() == R + 5
        assert c.poll() is None
        with pytest.raises(ServerTimeout):  # nothing more arrives: no ERROR, no CORRECTION
            c.recv(timeout_s=0.5)


# -- CURVE: only the owner's key may resume ----------------------------------------------


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    from qecd.transport.auth import CurveClientKeys, CurveServerKeys, create_keypair

    d = tmp_path_factory.mktemp("keys")
    allow = d / "allow"
    allow.mkdir()
    _, server_sec = create_keypair(d, "server")
    out = {"server": CurveServerKeys.from_files(server_sec, allow)}
    for name in ("alice", "bob"):
        pub, sec = create_keypair(d, name)
        shutil.copy(pub, allow)
        out[name] = CurveClientKeys.from_files(sec, d / "server.key")
    return out


def test_with_curve_another_key_is_refused_even_with_the_right_token(running_server, curve,
                                                                    shots):
    exp, dets = shots
    with running_server(curve=curve["server"]) as srv:
        with Client(srv.endpoints[0], curve=curve["alice"]) as alice, \
                Client(srv.endpoints[0], curve=curve["bob"]) as bob:
            s = alice.open_stream(SPEC)
            _send(s, exp, dets, 0, 1)
            with pytest.raises(ServerError) as e:
                bob.resume_stream(s.stream_id, s.resume_token)
            assert e.value.code == ErrorCode.UNKNOWN_STREAM
            with Client(srv.endpoints[0], curve=curve["alice"]) as alice2:
                s2 = alice2.resume_stream(s.stream_id, s.resume_token)  # not spent by bob
                assert s2.next_round == 2
                s2.close()


# -- the HELLO's resume map (wire) ----------------------------------------------------------


def test_the_resume_hello_carries_only_its_map():
    import msgpack

    tok = bytes(range(RESUME_TOKEN_BYTES))
    f = encode_hello(Hello(resume=Resume(7, tok)), seq=3)
    assert decode_hello(*parse_packet(f)).resume == Resume(7, tok)
    with pytest.raises(ValueError, match="resume"):
        encode_hello(Hello(spec=SPEC, resume=Resume(7, tok)))
    bad = [({"resume": {"stream_id": 7, "token": tok}, "spec": SPEC}, "'spec'"),
           ({"resume": {"stream_id": 7}}, "exactly 'stream_id' and 'token'"),
           ({"resume": {"stream_id": 7, "token": tok, "x": 1}}, "exactly"),
           ({"resume": {"stream_id": 0, "token": tok}}, "'stream_id'"),
           ({"resume": {"stream_id": 7, "token": tok[:31]}}, "'token'"),
           ({"resume": {"stream_id": 7, "token": tok.hex()[:32]}}, "'token'"),
           ({"resume": [7, tok]}, "'resume'")]
    for m, needle in bad:
        with pytest.raises(ProtocolError) as e:
            decode_hello(*parse_packet(encode_frame(MsgType.HELLO,
                                                    msgpack.packb(m, use_bin_type=True))))
        assert e.value.code == ErrorCode.BAD_HELLO and needle in e.value.reason, m
    # a mis-framed token is described, never echoed (the reason is logged too)
    for token, said in ((tok[:31], "got a bin of 31 bytes"),
                        (tok.hex()[:32], "got a value of type str (32 characters)")):
        with pytest.raises(ProtocolError) as e:
            decode_hello(*parse_packet(encode_frame(MsgType.HELLO, msgpack.packb(
                {"resume": {"stream_id": 7, "token": token}}, use_bin_type=True))))
        assert said in e.value.reason and tok.hex()[:8] not in e.value.reason \
            and repr(tok[:8])[2:-1] not in e.value.reason, e.value.reason
