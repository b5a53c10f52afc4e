"""``qecd conformance``: every rule passes against the real server, a gateway that breaks one
rule is caught, and the CLI exits non-zero on any failure. Also the ring-transport fixes the
runner found (BYE over the ring answers the next round, ring ERRORs carry a reason, a corrupt
slot ends the stream at once instead of stalling until the stream timeout)."""

from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
import zmq

from qecd import conformance as C
from qecd.cli import main
from qecd.transport import wire as P
from qecd.transport.client import Client, ServerError
from qecd.transport.server import Server, ServerConfig
from qecd.transport.server.session import SessionLimits
from qecd.transport.shm.ring import RingPair
from qecd.transport.wire import compiled as WC

SPEC = "repetition:d=3,r=6,p=0.01"


@pytest.fixture(scope="module")
def server():
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, housekeeping_s=0.02,
                              limits=SessionLimits(timeout_ms=120_000)))
    srv.start_thread()
    try:
        yield srv
    finally:
        srv.stop()


class BrokenGateway:
    """A ROUTER in front of the real server that forwards every packet (one DEALER per
    client, so ownership is kept) but rewrites the ``round`` of BYE replies to 0: a gateway
    that gets exactly one rule (§9.5) wrong."""

    def __init__(self, backend: str) -> None:
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.backend = backend
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        backs: dict[bytes, zmq.Socket] = {}
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        while not self.stop.is_set():
            for sock, _ in poller.poll(50):
                if sock is self.front:
                    ident, *parts = self.front.recv_multipart()
                    if ident not in backs:
                        d = self.ctx.socket(zmq.DEALER)
                        d.setsockopt(zmq.LINGER, 0)
                        d.connect(self.backend)
                        backs[ident] = d
                        poller.register(d, zmq.POLLIN)
                    backs[ident].send_multipart(parts)
                else:
                    ident = next(k for k, v in backs.items() if v is sock)
                    frame = bytearray(sock.recv())
                    if len(frame) >= 32 and frame[3] == P.MsgType.BYE:
                        frame[16:24] = bytes(8)  # the broken rule: BYE round 0
                    self.front.send_multipart([ident, bytes(frame)])
        for d in backs.values():
            d.close(0)
        self.front.close(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.ctx.term()


def test_every_rule_passes_against_the_reference_server(server):
    results = C.run_conformance(server.endpoints[0], spec=SPEC)
    failed = [r for r in results if not r.passed]
    assert not failed, C.format_table(failed)
    assert len(results) == len(C.RULES) and len(results) >= 55
    sections = " ".join(r.section for r in results)
    for s in ("§3", "§4", "§5", "§6.1", "§6.3", "§6.4", "§7.1", "§9", "§11", "§12", "§14"):
        assert s in sections, s


def test_a_gateway_breaking_one_rule_is_caught_by_exactly_the_bye_rules(server):
    gw = BrokenGateway(server.endpoints[0])
    try:
        results = C.run_conformance(gw.endpoint, spec=SPEC, shm=False)
    finally:
        gw.close()
    failed = [r for r in results if not r.passed]
    assert "BYE: reply round = next round, incomplete shot discarded, stream gone after" \
        in {r.rule for r in failed}
    assert all("BYE round 0" in r.detail for r in failed), C.format_table(failed)
    assert all(r.passed for r in results if "HELLO" in r.rule or "->" in r.rule
               and "BYE" not in r.rule)
    assert len(failed) < len(results) // 4  # the rest of the protocol is still right


def test_cli_prints_the_table_and_exits_by_verdict(server, capsys):
    assert main(["conformance", "--connect", server.endpoints[0], "--only", "HEARTBEAT",
                 "--no-shm"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "0 failed" in out
    gw = BrokenGateway(server.endpoints[0])
    try:
        assert main(["conformance", "--connect", gw.endpoint, "--only", "BYE: reply",
                     "--no-shm"]) == 1
    finally:
        gw.close()
    out = capsys.readouterr().out
    assert "FAIL" in out and "1 failed" in out


def test_committed_range_rule():
    assert P.committed_ranges(51, 10, 5)[0] == (0, 4, 9)
    assert P.committed_ranges(51, 10, 5)[-1] == (45, 50, 50)
    assert len(P.committed_ranges(51, 10, 5)) == 10
    assert P.committed_ranges(51, 60, 5) == [(0, 50, 50)]
    assert P.committed_ranges(4, 1, 1) == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3)]


# -- the ring fixes, one test each --------------------------------------------------------------


@pytest.fixture
def ring(server):
    with Client(server.endpoints[0], timeout_s=60) as client:
        cli = client.open_shm_stream(SPEC, decoder="pymatching")
        acc = cli.accept
        yield client, acc, cli.pair
        cli.close()
        with contextlib.suppress(ServerError):  # still open unless the test ended it
            client.bye(acc.stream_id)


def _ring_reply(pair: RingPair) -> tuple[P.Header, bytes]:
    h, p = P.parse_packet(pair.recv_bytes(timeout=10))
    return h, bytes(p)


def test_bye_over_the_ring_answers_the_next_expected_round(ring):
    _, acc, pair = ring
    for r in range(3):
        pair.send_bytes(P.encode_syndrome(np.zeros(acc.slice_sizes[r], np.uint8), acc.layout(),
                                          stream_id=acc.stream_id, first_round=r))
    pair.send_bytes(P.encode_bye(stream_id=acc.stream_id, seq=77, timestamp_ns=5))
    h, _ = _ring_reply(pair)
    assert (h.msg_type, h.round, h.timestamp_ns) == (P.MsgType.BYE, 3, 5)  # was 77


def test_ring_errors_carry_a_reason_naming_the_field(ring):
    _, acc, pair = ring
    pair.send_bytes(P.encode_syndrome(np.zeros(acc.slice_sizes[2], np.uint8), acc.layout(),
                                      stream_id=acc.stream_id, first_round=2))
    h, p = _ring_reply(pair)
    e = P.decode_error(h, p)
    assert e.code == P.ErrorCode.ROUND_GAP and e.next_round == 0
    assert "'round'" in e.reason and e.reason == WC.ring_reason(P.ErrorCode.ROUND_GAP)  # was ""


def test_every_ring_reason_fits_the_smallest_slot_the_server_makes():
    from qecd.codes import build_experiment
    from qecd.transport.shm.streams import _slot_size

    exp = build_experiment("repetition:d=2,r=1,p=0.01")
    slot = _slot_size(exp.layout, 1, 0)
    for row in [*P.ErrorCode, WC.RING_CORRUPT]:
        assert len(WC.ring_reason(int(row)).encode()) <= WC.MAX_RING_REASON
    assert slot - 16 >= P.HEADER_SIZE + P.ERROR_FIXED.size + WC.MAX_RING_REASON


@pytest.mark.parametrize("corruption", ["length beyond the slot", "doorbell from the future"])
def test_a_corrupt_ring_slot_ends_the_stream_at_once(ring, corruption):
    client, acc, pair = ring
    region = pair.region
    slot = region.ring_offset(0) + 384
    if corruption == "length beyond the slot":
        region.words[(slot >> 3) + 1] = np.uint64(region.slot_size)
        region.words[slot >> 3] = np.uint64(1)
    else:  # message 0's slot says message 3 is in it: no correct producer writes that
        region.words[(slot >> 3) + 1] = np.uint64(32)
        region.words[slot >> 3] = np.uint64(4)
    t0 = time.monotonic()
    h, p = _ring_reply(pair)
    e = P.decode_error(h, p)
    assert e.code == P.ErrorCode.BAD_HEADER and "ring 0 slot" in e.reason
    r = client.recv(timeout_s=5, raise_errors=False)  # the server ends it over ZeroMQ
    assert (r.msg_type, r.stream_id) == (P.MsgType.BYE, acc.stream_id)
    assert time.monotonic() - t0 < 5  # was: a silent stall until the stream timeout
    with pytest.raises(ServerError) as gone:  # the stream is closed, not just its ring
        client.stats(acc.stream_id)
    assert gone.value.code == P.ErrorCode.UNKNOWN_STREAM


def _one_second_timeout_server() -> Server:
    """A started server whose streams time out after 1 s of their owner's silence."""
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100, housekeeping_s=0.02,
                              limits=SessionLimits(timeout_ms=1000, heartbeat_ms=200)))
    srv.start_thread()
    return srv


def test_heartbeats_in_the_ring_keep_a_ring_stream_alive():
    """§9 step 4 / §14.1: any packet from the owner keeps a stream alive, ring HEARTBEATs
    included (before: only rounds, errors and corrections counted, so a stream kept alive by
    ring HEARTBEATs alone timed out and its ring BYE went unanswered)."""
    srv = _one_second_timeout_server()
    try:
        with Client(srv.endpoints[0], timeout_s=60) as client:
            cli = client.open_shm_stream(SPEC, decoder="pymatching")
            acc, pair = cli.accept, cli.pair
            t_end = time.monotonic() + 2.5  # 2.5 stream timeouts of ring HEARTBEATs only
            seq = 0
            while time.monotonic() < t_end:
                seq += 1
                pair.send_bytes(P.encode_heartbeat(stream_id=acc.stream_id, seq=seq))
                h, _ = _ring_reply(pair)
                assert (h.msg_type, h.round) == (P.MsgType.HEARTBEAT, seq)
                time.sleep(0.15)
            assert client.poll() is None  # no BYE over ZeroMQ: the stream did not time out
            pair.send_bytes(P.encode_bye(stream_id=acc.stream_id, seq=99))
            h, _ = _ring_reply(pair)
            assert (h.msg_type, h.round) == (P.MsgType.BYE, 0)
            cli.close()
    finally:
        srv.stop()


def test_which_rejected_packets_keep_a_stream_alive_is_as_section_9_says():
    """§9 step 4 (after a vendor check found 'any packet ... keeps it alive' untrue): a
    SYNDROME from the owner rejected for its rounds (ROUND_GAP) still keeps the stream alive;
    packets rejected by the header checks (a HEARTBEAT with an undefined flag: BAD_FLAGS) do
    not, and the stream is closed for its owner's silence."""
    import struct

    from qecd.codes import build_experiment

    srv = _one_second_timeout_server()
    try:
        with Client(srv.endpoints[0], timeout_s=60) as client:
            s = client.open_stream(SPEC, timeout_s=60)
            lay = P.SyndromeLayout(tuple(int(n) for n in
                                         build_experiment(SPEC).layout.round_sizes))
            gap = P.encode_syndrome(np.zeros(lay.slice_sizes[5], np.uint8), lay,
                                    stream_id=s.stream_id, first_round=5)
            t_end = time.monotonic() + 2.5  # 2.5 stream timeouts of rejected SYNDROMEs
            while time.monotonic() < t_end:
                client.send_frame(gap)
                r = client.recv(timeout_s=10, raise_errors=False)
                assert r.body.code == P.ErrorCode.ROUND_GAP
                time.sleep(0.15)
            assert s.stream_id in srv._streams  # kept alive
            bad = bytearray(P.encode_heartbeat(stream_id=s.stream_id, seq=1))
            struct.pack_into("<H", bad, 4, 0x0004)
            t_end = time.monotonic() + 2.5
            got = []
            while time.monotonic() < t_end and s.stream_id in srv._streams:
                client.send_frame(bytes(bad))
                got.append(client.recv(timeout_s=10, raise_errors=False))
                time.sleep(0.15)
            assert s.stream_id not in srv._streams  # closed for its owner's silence
            assert any(r.msg_type == P.MsgType.ERROR and r.body.code == P.ErrorCode.BAD_FLAGS
                       for r in got)
    finally:
        srv.stop()
