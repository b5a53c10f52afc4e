"""Client-side multi-round packets: ``Stream.add_round`` gathers K rounds per SYNDROME packet.

Against a real server on loopback: the corrections are those of the same rounds sent one per
packet (and of the offline decode), the server reads one packet per K rounds, nothing
gathered is lost (``flush``, ``send_round``, ``close`` send it first), and a K the server
would refuse is refused before any round is sent.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.transport.aio_client import AsyncClient
from qecd.transport.client import Client

pytestmark = pytest.mark.timeout(180)

SPEC = "surface:d=3,r=5,p=0.02"  # 6 rounds per shot


def _sampled(shots, seed, offline_commits=None, window=None, commit=None):
    """``shots`` shots of SPEC: the experiment, every round's bits in order, and (given the
    ``offline_commits`` fixture) the commits of an offline ``uf`` decode of them."""
    exp = build_experiment(SPEC)
    dets, _ = exp.sample(shots, seed=seed)
    rounds = [d[ids] for d in dets for ids in exp.layout.detectors]
    want = (None if offline_commits is None
            else offline_commits(exp, dets, window, commit, backend="uf"))
    return exp, rounds, want


def _corrections(stream, n_shots):
    """(first_round, last_round, observables) of every CORRECTION until ``n_shots`` shots
    ended."""
    out, ended = [], 0
    while ended < n_shots:
        c = stream.recv_correction(timeout_s=30)
        out.append((c.first_round, c.last_round, c.observables.tolist()))
        ended += bool(c.shot_end)
    return out


async def _acorrections(stream, n_shots):
    """:func:`_corrections` of an asyncio stream."""
    out, ended = [], 0
    while ended < n_shots:
        c = await stream.recv_correction(timeout_s=30)
        out.append((c.first_round, c.last_round, c.observables.tolist()))
        ended += bool(c.shot_end)
    return out


@pytest.mark.parametrize("k", [4, 7])
def test_gathered_rounds_decode_as_rounds_sent_one_by_one(running_server, offline_commits, k):
    # 186 rounds: 2 and 4 left over for K = 4 and 7
    exp, rounds, want = _sampled(31, 5, offline_commits, 4, 2)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        one = client.open_stream(SPEC, decoder="uf", window=4, commit=2)
        many = client.open_stream(SPEC, decoder="uf", window=4, commit=2, rounds_per_packet=k)
        assert (one.rounds_per_packet, many.rounds_per_packet) == (1, k)
        assert (many.rounds_per_shot, many.num_observables) == (exp.layout.num_rounds, 1)
        before = client.stats()["packets_received"]
        for i, bits in enumerate(rounds):
            assert many.add_round(bits, timestamp_ns=1000 + i) == i
            assert many.pending_rounds == (i + 1) % k
        total = 31 * exp.layout.num_rounds
        assert many.next_round == total - total % k  # the rest is still gathered
        assert many.flush() == total - total % k and many.pending_rounds == 0
        assert many.flush() is None
        got_many = _corrections(many, 31)
        after = client.stats()["packets_received"]
        for bits in rounds:
            one.send_round(bits)
        got_one = _corrections(one, 31)
    assert got_many == got_one
    assert got_many == want
    # one packet per K rounds (and the STATS request itself)
    assert after - before == -(-total // k) + 1


def test_nothing_gathered_is_lost_or_reordered(running_server, offline_commits):
    exp, rounds, want = _sampled(3, 6, offline_commits)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        s = client.open_stream(SPEC, decoder="uf", rounds_per_packet=5)
        for bits in rounds[:3]:
            s.add_round(bits)
        assert s.stats()["next_round"] == 0  # the server has seen none of them yet
        assert s.send_round(rounds[3]) == 3  # the three gathered go first, in order
        for bits in rounds[4:10]:
            s.add_round(bits)  # 5 sent as a packet, 1 gathered
        s.set_rounds_per_packet(2)  # sends the one gathered
        assert s.pending_rounds == 0 and s.next_round == 10 and s.rounds_per_packet == 2
        for bits in rounds[10:17]:
            s.add_round(bits)  # 3 packets of 2, 1 gathered
        s.flush()
        got = _corrections(s, 2)  # shots 0 and 1 (rounds 0-11) are answered
        for bits in rounds[17:]:
            s.add_round(bits)
        assert s.pending_rounds == 1  # 18 rounds: one left over from the packets of 2
        assert s.close() == 18  # BYE after the gathered round: the server saw all 18
        assert s.pending_rounds == 0
        got += _corrections(s, 1)  # still readable after the BYE
    assert got == want


def test_a_failed_send_keeps_the_gathered_rounds_for_the_next_flush(running_server,
                                                                     offline_commits):
    """The send of a full packet fails (the server not reading: ServerTimeout): its rounds,
    the one that completed it included, stay gathered; nothing is renumbered, and the next
    add_round (or flush) sends them first."""
    from qecd.transport.client import ServerTimeout

    exp, rounds, want = _sampled(4, 9, offline_commits)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        s = client.open_stream(SPEC, decoder="uf", rounds_per_packet=4)
        real_send = client.send_frame
        failures = []

        def fail_once(frame):  # the queue to the server stays full once
            if not failures:
                failures.append(bytes(frame))
                raise ServerTimeout("send: no room in the queue (injected)")
            real_send(frame)

        client.send_frame = fail_once
        for bits in rounds[:3]:
            s.add_round(bits)
        with pytest.raises(ServerTimeout, match="4 gathered rounds from round 0 were not sent"):
            s.add_round(rounds[3])
        assert (s.pending_rounds, s.next_round) == (4, 0)
        assert s.add_round(rounds[4]) == 4  # the waiting packet goes first, then round 4
        assert (s.pending_rounds, s.next_round) == (1, 4)
        for bits in rounds[5:]:
            s.add_round(bits)
        s.flush()
        got = _corrections(s, 4)
    assert got == want
    assert len(failures) == 1


def test_rewind_drops_what_was_gathered_and_resends_from_the_given_round(running_server):
    _, rounds, _ = _sampled(1, 10)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        s = client.open_stream(SPEC, decoder="uf", rounds_per_packet=4)
        s.add_round(rounds[0])
        s.add_round(rounds[1])
        with pytest.raises(Exception, match=r"2 rounds gathered by add_round are not sent"):
            s.recv_correction(timeout_s=0.2)  # the wait says why nothing comes
        assert s.rewind(0) == 2 and (s.pending_rounds, s.next_round) == (0, 0)
        for bits in rounds:
            s.add_round(bits)
        s.flush()
        c = s.recv_correction(timeout_s=30)
        assert (c.first_round, c.last_round, bool(c.shot_end)) == (0, 5, True)
        s.add_round(rounds[0])
        with pytest.warns(RuntimeWarning, match="1 rounds gathered by add_round were never"):
            client.close()


def test_a_packet_size_the_server_would_refuse_is_refused_first(running_server):
    from qecd.transport.server.session import SessionLimits

    limits = SessionLimits(max_frame=512)  # a HELLO fits; d=3 rounds are at most 1 byte
    with running_server(limits=limits) as server, \
            Client(server.endpoints[0], timeout_s=30) as client:
        for bad in (0, -1, 65_536, 2.0, True):
            with pytest.raises(ValueError, match="rounds_per_packet"):
                client.open_stream(SPEC, decoder="uf", rounds_per_packet=bad)
        assert client.stats()["streams_opened"] == 0  # refused before any HELLO
        s = client.open_stream(SPEC, decoder="uf", rounds_per_packet=3)
        limit = s.accept.max_backlog
        with pytest.raises(ValueError, match=f"at most {limit} rounds per packet"):
            s.set_rounds_per_packet(limit + 1)
        s.set_rounds_per_packet(480)  # 32 + 480 x 1 = 512 bytes at most: taken
        with pytest.raises(ValueError, match="above the server's max_frame of 512"):
            s.set_rounds_per_packet(481)
        assert s.rounds_per_packet == 480
        with pytest.raises(ValueError, match="max_backlog"):
            client.open_stream(SPEC, decoder="uf", rounds_per_packet=limit + 1)
        stats = client.stats()
    # the stream opened for the refused K was closed again, not left behind
    assert stats["streams_opened"] == 2 and stats["streams_open"] == 1


def test_a_round_of_the_wrong_size_leaves_the_packet_as_it_was(running_server):
    _, rounds, _ = _sampled(1, 7)
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        s = client.open_stream(SPEC, decoder="uf", rounds_per_packet=6)
        s.add_round(rounds[0])
        with pytest.raises(ValueError, match="expected shape"):
            s.add_round(np.zeros(len(rounds[1]) + 1, np.uint8))
        assert s.pending_rounds == 1
        for bits in rounds[1:]:
            s.add_round(bits)
        c = s.recv_correction(timeout_s=30)
    assert (c.first_round, c.last_round, bool(c.shot_end)) == (0, 5, True)


def test_the_asyncio_client_gathers_rounds_the_same_way(running_server, offline_commits):
    exp, rounds, want = _sampled(10, 8, offline_commits)

    async def run(endpoint):
        async with AsyncClient(endpoint, timeout_s=30) as client:
            s = await client.open_stream(SPEC, decoder="uf", rounds_per_packet=4)
            assert (s.rounds_per_packet, s.rounds_per_shot) == (4, exp.layout.num_rounds)
            for bits in rounds:
                await s.add_round(bits)
            assert s.pending_rounds == (10 * exp.layout.num_rounds) % 4
            await s.flush()
            got = await _acorrections(s, 10)
            await s.set_rounds_per_packet(3)
            await s.add_round(rounds[0])  # close sends it first
            assert s.pending_rounds == 1
            return got, await s.close()

    with running_server() as server:
        got, final = asyncio.run(run(server.endpoints[0]))
    assert got == want
    assert final == 10 * exp.layout.num_rounds + 1


def test_a_resumed_stream_gathers_k_rounds_from_the_servers_next_round(running_server,
                                                                       offline_commits):
    """A connection drops with rounds gathered and not sent; a new one resumes the stream
    with rounds_per_packet and sends from the server's next round: the corrections are the
    offline decode's."""
    exp, rounds, want = _sampled(3, 11, offline_commits)
    with running_server() as server:
        old = Client(server.endpoints[0], timeout_s=30)
        s = old.open_stream(SPEC, decoder="uf", rounds_per_packet=4)
        for bits in rounds[:7]:
            s.add_round(bits)  # rounds 0-3 sent, 4-6 gathered
        got = _corrections(s, 0)
        token = s.resume_token
        with pytest.warns(RuntimeWarning, match="3 rounds gathered"):
            old.close()  # the connection is gone: the three gathered rounds with it
        with Client(server.endpoints[0], timeout_s=30) as new:
            t = new.resume_stream(s.stream_id, token, rounds_per_packet=4)
            assert (t.next_round, t.rounds_per_packet) == (4, 4)
            for bits in rounds[t.next_round:]:
                t.add_round(bits)
            t.flush()
            got += _corrections(t, 3)
    assert got == want


def test_the_asyncio_stream_takes_concurrent_adds_and_flushes_one_at_a_time(
        running_server, offline_commits):
    """One task adds rounds while another flushes whenever it likes: every round is sent
    once, in order (a packet in flight is not sent again by the other task's flush)."""
    exp, rounds, want = _sampled(20, 12, offline_commits)

    async def run(endpoint):
        async with AsyncClient(endpoint, timeout_s=30) as client:
            s = await client.open_stream(SPEC, decoder="uf", rounds_per_packet=5)

            async def adder():
                for bits in rounds:
                    await s.add_round(bits)
                    await asyncio.sleep(0)

            async def flusher():
                for _ in range(len(rounds)):
                    await s.flush()
                    await asyncio.sleep(0)

            await asyncio.gather(adder(), flusher())
            await s.flush()
            return await _acorrections(s, 20), await s.close()

    with running_server() as server:
        got, final = asyncio.run(run(server.endpoints[0]))
    assert got == want
    assert final == len(rounds)
