"""The opt-in post-quantum control plane (docs/protocol.md §6.8, docs/security.md).

A client that pins the server's ML-DSA key gets a stream only when the whole handshake checks
out; every tampering an on-path attacker can do to HELLO or ACCEPT (a flipped byte in any key
field, another session's ciphertext, a replayed ACCEPT, stripped fields) is refused with a
clear error, over real ZeroMQ sockets on loopback through a relay that plays the attacker.
Session tokens resume a stream from another connection, once, and only with their session's
key, before they expire, for the CURVE key they were issued to.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from zmq.utils import z85

pytest.importorskip("cryptography.hazmat.primitives.asymmetric.mlkem",
                    reason='pip install "qecd[pqc]"')

from qecd.transport.auth import CurveClientKeys, CurveServerKeys, create_keypair  # noqa: E402
from qecd.transport.client import Client, ServerError  # noqa: E402
from qecd.transport.pqc import (  # noqa: E402
    ClientHandshake,
    PqHandshakeError,
    PqPin,
    PqServer,
    PqSession,
    create_pq_keypair,
    resume_mac,
)
from qecd.transport.wire import (  # noqa: E402
    HEADER_SIZE,
    ErrorCode,
    Hello,
    MsgType,
    decode_accept,
    encode_frame,
    encode_hello,
    parse_packet,
)

pytestmark = pytest.mark.timeout(120)

SPEC = "repetition:d=3,r=2,p=0.01"
VECTORS = Path(__file__).resolve().parents[1] / "docs" / "protocol_vectors.json"


@pytest.fixture(scope="module")
def pq_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("pq")
    pub, sec = create_pq_keypair(d, "server")
    other_pub, other_sec = create_pq_keypair(d, "other")
    return {"server": PqServer.from_file(sec), "pin": PqPin.from_file(pub),
            "other": PqServer.from_file(other_sec), "other_pin": PqPin.from_file(other_pub),
            "secret_file": sec}


@pytest.fixture(scope="module")
def server(pq_keys, running_server):
    with running_server(pq=pq_keys["server"]) as srv:
        yield srv


def _one_shot(stream):
    for size in stream.slice_sizes:
        stream.send_round(np.zeros(size, np.uint8))
    return stream.recv_correction(5)


class Relay:
    """An on-path attacker between one client and the server: a ROUTER the client connects
    to, a DEALER to the server, and ``tamper(direction, frame) -> frame or None`` applied to
    every packet ("up" client->server, "down" back; None drops it)."""

    def __init__(self, server_endpoint: str, tamper) -> None:
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        self.front.bind("tcp://127.0.0.1:0")
        self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.setsockopt(zmq.LINGER, 0)
        self.back.connect(server_endpoint)
        self.tamper = tamper
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        client = None
        while not self._stop:
            for sock, _ in poller.poll(20):
                if sock is self.front:
                    client, frame = self.front.recv_multipart()
                    out = self.tamper("up", frame)
                    if out is not None:
                        self.back.send(out)
                else:
                    frame = self.back.recv()
                    out = self.tamper("down", frame)
                    if out is not None and client is not None:
                        self.front.send_multipart([client, out])

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.front.close(0)
        self.back.close(0)
        self.ctx.term()


@pytest.fixture
def relay(server):
    made = []

    def start(tamper):
        r = Relay(server.endpoints[0], tamper)
        made.append(r)
        return r

    yield start
    for r in made:
        r.close()


def _edit(frame: bytes, msg_type: MsgType, edit) -> bytes:
    """``frame`` with its msgpack body map changed by ``edit(map)`` (same key order), if it
    is a ``msg_type`` packet; else unchanged."""
    h, payload = parse_packet(frame)
    if h.msg_type != msg_type:
        return frame
    m = msgpack.unpackb(bytes(payload), raw=False)
    edit(m)
    return encode_frame(msg_type, msgpack.packb(m, use_bin_type=True), stream_id=h.stream_id,
                        seq=h.round, timestamp_ns=h.timestamp_ns)


def _flip(key: str, at: int = -1):
    def edit(m):
        b = bytearray(m[key])
        b[at] ^= 0x01
        m[key] = bytes(b)
    return edit


def _open_through(relay_endpoint, pin):
    """Open a stream through the relay, then close it."""
    with Client(relay_endpoint, pq=pin, timeout_s=5) as c:
        c.open_stream(SPEC).close()


@pytest.fixture
def no_stream_left(server, wait_for):
    """``assert no_stream_left()``: the refused stream was closed (the client's BYE), so
    the server holds no more streams than when the test began."""
    before = server.counters.streams_open
    return lambda: wait_for(lambda: server.counters.streams_open == before, timeout_s=5)


# -- a working handshake --------------------------------------------------------------------


def test_a_pinned_client_gets_a_checked_session_and_decodes(server, pq_keys):
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        s = c.open_stream(SPEC)
        assert len(s.pq.session_key) == 32 and s.pq.stream_id == s.stream_id
        assert s.pq.expires_unix_s > time.time()
        assert _one_shot(s).shot_end
        s.close()


@pytest.mark.slow  # the first ring stream of a process loads its Numba kernels
def test_the_handshake_also_runs_on_shm_streams(server, pq_keys):
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        cli = c.open_shm_stream(SPEC, timeout_s=110)
        try:
            assert cli.pq is not None and cli.pq.stream_id == cli.accept.stream_id
            with Client(server.endpoints[0], pq=pq_keys["pin"]) as c2:  # §6.9: not re-handed
                with pytest.raises(ServerError, match="shared-memory") as e:
                    c2.open_stream(SPEC, resume=cli.pq)
                assert e.value.code == ErrorCode.BAD_HELLO
        finally:
            c.bye(cli.accept.stream_id)
            cli.close()


def test_client_and_server_derive_the_same_key_and_a_changed_transcript_another(pq_keys):
    pin, srv = pq_keys["pin"], pq_keys["server"]
    from qecd.transport.wire import Accept

    hs = ClientHandshake(pin)
    hello = hs.hello(Hello(spec=SPEC))
    body = encode_hello(hello)[HEADER_SIZE:]
    fields, state = srv.respond(hello, body, curve_client=None, stream_id=5)
    accept = Accept(stream_id=5, slice_sizes=(2, 2, 2), num_observables=1, **fields)
    assert hs.finish(body, accept).session_key == state.session_key
    other = encode_hello(hello._replace(want_faults=True))[HEADER_SIZE:]
    with pytest.raises(PqHandshakeError, match="key confirmation failed"):
        ClientHandshake(pin).finish(other, accept)  # another client's ephemeral keys
    with pytest.raises(PqHandshakeError, match="key confirmation failed"):
        hs.finish(other, accept)  # the HELLO the server saw differs from the one sent


# -- tampering, over real sockets --------------------------------------------------------------


@pytest.mark.parametrize("direction, key, at", [
    ("up", "pq_x25519", 0), ("up", "pq_x25519", -1),
    ("up", "pq_mlkem768", 0), ("up", "pq_mlkem768", -1),  # a coefficient; rho
    ("down", "pq_x25519", 0), ("down", "pq_mlkem768_ct", 0), ("down", "pq_mlkem768_ct", -1),
    ("down", "pq_token", 0), ("down", "pq_token", -1), ("down", "pq_confirm", 0),
], ids=lambda v: {"up": "HELLO", "down": "ACCEPT"}.get(v, str(v)))
def test_a_flipped_byte_in_any_handshake_field_is_refused(server, pq_keys, relay, no_stream_left,
                                                          direction, key, at):
    msg_type = MsgType.HELLO if direction == "up" else MsgType.ACCEPT

    def tamper(d, frame):
        return _edit(frame, msg_type, _flip(key, at)) if d == direction else frame

    r = relay(tamper)
    try:
        _open_through(r.endpoint, pq_keys["pin"])
    except PqHandshakeError as e:
        assert "key confirmation failed" in str(e)
    except ServerError as e:  # a flipped ML-KEM coefficient may leave the key invalid (1/3329)
        assert key == "pq_mlkem768" and e.code == ErrorCode.BAD_HELLO, e
    else:
        pytest.fail(f"a flipped byte {at} of {key} went unnoticed")
    assert no_stream_left()


def test_a_changed_ordinary_hello_field_is_refused(server, pq_keys, relay, no_stream_left):
    """The transcript is the whole HELLO body: an attacker cannot change what is decoded."""
    def tamper(d, frame):
        if d != "up":
            return frame
        return _edit(frame, MsgType.HELLO, lambda m: m.__setitem__("want_faults", True))

    r = relay(tamper)
    with pytest.raises(PqHandshakeError, match="key confirmation failed"):
        _open_through(r.endpoint, pq_keys["pin"])
    assert no_stream_left()


def test_another_sessions_ciphertext_is_refused(server, pq_keys, relay, no_stream_left):
    seen = []

    def tamper(d, frame):
        if d == "down" and parse_packet(frame)[0].msg_type == MsgType.ACCEPT:
            ct = msgpack.unpackb(bytes(parse_packet(frame)[1]))["pq_mlkem768_ct"]
            seen.append(ct)
            if len(seen) == 2:  # the second session gets the first one's ciphertext
                return _edit(frame, MsgType.ACCEPT,
                             lambda m: m.__setitem__("pq_mlkem768_ct", seen[0]))
        return frame

    r = relay(tamper)
    _open_through(r.endpoint, pq_keys["pin"])
    with pytest.raises(PqHandshakeError, match="key confirmation failed"):
        _open_through(r.endpoint, pq_keys["pin"])
    assert no_stream_left()


def test_a_replayed_accept_is_refused(server, pq_keys, relay, no_stream_left):
    """The relay answers a second HELLO with the first ACCEPT (its header rewritten to
    echo the new HELLO, which an attacker can do): the client's fresh keys do not match."""
    first: list[bytes] = []
    hello_seq: list[int] = []

    def tamper(d, frame):
        h, payload = parse_packet(frame)
        if d == "up" and h.msg_type == MsgType.HELLO:
            hello_seq.append(h.round)
        if d == "down" and h.msg_type == MsgType.ACCEPT:
            if not first:
                first.append(frame)
                return frame
            old_h, old_payload = parse_packet(first[0])
            return encode_frame(MsgType.ACCEPT, bytes(old_payload), stream_id=old_h.stream_id,
                                seq=hello_seq[-1], timestamp_ns=h.timestamp_ns)
        return frame

    r = relay(tamper)
    with Client(r.endpoint, pq=pq_keys["pin"], timeout_s=5) as c:
        c.open_stream(SPEC).close()
        with pytest.raises(PqHandshakeError, match="key confirmation failed"):
            c.open_stream(SPEC)


def test_an_accept_stripped_of_the_handshake_is_refused(server, pq_keys, relay, no_stream_left):
    def strip(m):
        for k in ("pq_x25519", "pq_mlkem768_ct", "pq_token", "pq_confirm"):
            del m[k]

    r = relay(lambda d, f: _edit(f, MsgType.ACCEPT, strip) if d == "down" else f)
    with pytest.raises(PqHandshakeError, match="carries no post-quantum handshake fields"):
        _open_through(r.endpoint, pq_keys["pin"])
    assert no_stream_left()


def test_a_token_signed_by_another_key_is_refused(server, pq_keys, no_stream_left):
    """A client pinning another server's ML-DSA key (a man in the middle holding its own
    key looks the same) refuses the stream."""
    with Client(server.endpoints[0], pq=pq_keys["other_pin"]) as c:
        with pytest.raises(PqHandshakeError, match="signature does not verify under the "
                                                   "pinned server key"):
            c.open_stream(SPEC)
    assert no_stream_left()


# -- what a server requires or cannot do -------------------------------------------------------


def test_a_server_requiring_the_handshake_refuses_a_plain_hello(pq_keys, running_server):
    with running_server(pq=pq_keys["server"], pq_required=True) as srv:
        with Client(srv.endpoints[0]) as c:
            with pytest.raises(ServerError, match="requires the post-quantum handshake") as e:
                c.open_stream(SPEC)
        assert e.value.code == ErrorCode.BAD_HELLO
        with Client(srv.endpoints[0], pq=pq_keys["pin"]) as c:
            assert _one_shot(c.open_stream(SPEC)).shot_end


def test_a_server_without_a_key_refuses_a_handshake_hello(pq_keys, running_server):
    with running_server() as srv, Client(srv.endpoints[0], pq=pq_keys["pin"]) as c:
        with pytest.raises(ServerError, match="runs no post-quantum handshake"):
            c.open_stream(SPEC)


def test_requiring_the_handshake_without_a_key_is_a_config_error():
    from qecd.transport.server import Server, ServerConfig

    with pytest.raises(ValueError, match="pq_required"):
        Server(ServerConfig(binds=("tcp://127.0.0.1:0",), pq_required=True))


def test_serve_without_the_package_names_the_pip_line(pq_keys):
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from qecd.cli import main\n"
            f"sys.exit(main(['serve', '--bind', 'tcp://127.0.0.1:0', '--pq-secret-key', "
            f"{pq_keys['secret_file']!r}]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    assert 'pip install "qecd[pqc]"' in p.stderr


# -- tokens: resuming a stream -----------------------------------------------------------------


def test_a_token_resumes_the_stream_from_a_new_connection_once(server, pq_keys):
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        s = c.open_stream(SPEC)
        _one_shot(s)
        session = s.pq
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c2:  # a new routing id
        s2 = c2.open_stream(SPEC, resume=session)
        assert s2.stream_id == session.stream_id and s2.next_round == 3
        c = _one_shot(s2)
        assert (c.first_round, c.last_round) == (3, 5)
        assert s2.pq.token != session.token  # a fresh token; the presented one is spent
        with pytest.raises(ServerError, match="already used or superseded"):
            c2.open_stream(SPEC, resume=session)
        s2.close()


def test_a_stream_of_the_handshake_resumes_only_with_its_session_token(server, pq_keys):
    """docs/protocol.md §6.9: the plain ``resume_token`` of a stream opened with the
    handshake does not resume it (the uniform refusal: on a plain wire it could be read
    off); the §6.8.5 resume's ACCEPT carries ``next_round`` and a fresh ``resume_token``."""
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        s = c.open_stream(SPEC)
        _one_shot(s)
        assert s.resume_token is not None
        with Client(server.endpoints[0]) as plain:
            with pytest.raises(ServerError) as e:
                plain.resume_stream(s.stream_id, s.resume_token)
            assert e.value.code == ErrorCode.UNKNOWN_STREAM
        with Client(server.endpoints[0], pq=pq_keys["pin"]) as c2:
            s2 = c2.open_stream(SPEC, resume=s.pq)
            assert s2.accept.next_round == 3 == s2.next_round
            assert s2.resume_token not in (None, s.resume_token)
            s2.close()


def test_after_a_resume_the_old_connection_is_refused_on_the_compiled_fast_path(server,
                                                                                 pq_keys):
    """A ``uf`` stream's SYNDROMEs are served by the compiled fast path, which matched them
    by the owner's routing id as it was at ACCEPT: after a resume moved the stream, the old
    connection's rounds were still decoded there (and the new owner's went to Python)."""
    from qecd.transport.wire import encode_syndrome

    with Client(server.endpoints[0], pq=pq_keys["pin"]) as old, \
            Client(server.endpoints[0], pq=pq_keys["pin"]) as new:
        s = old.open_stream(SPEC, decoder="uf")
        _one_shot(s)
        s2 = new.open_stream(SPEC, decoder="uf", resume=s.pq)
        assert s2.next_round == 3
        old.send_frame(encode_syndrome(np.zeros(s.slice_sizes[0], np.uint8), s.layout,
                                       stream_id=s.stream_id, first_round=3))
        with pytest.raises(ServerError) as e:
            s.recv(10)
        assert e.value.code == ErrorCode.NOT_OWNER
        c = _one_shot(s2)
        assert (c.first_round, c.last_round) == (3, 5)
        s2.close()


def test_a_token_without_its_session_key_cannot_resume(server, pq_keys):
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        s = c.open_stream(SPEC)
        stolen = PqSession(s.stream_id, bytes(32), bytes(32), s.pq.token, s.pq.expires_unix_s)
        with Client(server.endpoints[0], pq=pq_keys["pin"]) as thief:
            with pytest.raises(ServerError, match="resume key"):
                thief.open_stream(SPEC, resume=stolen)
        assert _one_shot(s).shot_end  # the owner's stream is untouched


def test_a_token_with_a_wrong_signature_is_refused(server, pq_keys):
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        s = c.open_stream(SPEC)
        bad = bytearray(s.pq.token)
        bad[-1] ^= 0x01
        forged = PqSession(s.stream_id, s.pq.session_key, s.pq.resume_key, bytes(bad),
                           s.pq.expires_unix_s)
        with pytest.raises(ServerError, match="signature that does not verify") as e:
            c.open_stream(SPEC, resume=forged)
        assert e.value.code == ErrorCode.BAD_HELLO


def test_a_token_of_another_server_key_is_refused(server, pq_keys, running_server):
    with running_server(pq=pq_keys["other"]) as other:
        with Client(other.endpoints[0], pq=pq_keys["other_pin"]) as c:
            session = c.open_stream(SPEC).pq
    with Client(server.endpoints[0], pq=pq_keys["pin"]) as c:
        with pytest.raises(ServerError, match="signature that does not verify"):
            c.open_stream(SPEC, resume=session)


def test_an_expired_token_is_refused(pq_keys, running_server, tmp_path):
    short = PqServer.from_file(pq_keys["secret_file"], token_lifetime_s=1)
    with running_server(pq=short) as srv, Client(srv.endpoints[0], pq=pq_keys["pin"]) as c:
        session = c.open_stream(SPEC).pq
        time.sleep(max(0.0, session.expires_unix_s - time.time()) + 0.05)
        with pytest.raises(ServerError, match="expired") as e:
            c.open_stream(SPEC, resume=session)
        assert e.value.code == ErrorCode.BAD_HELLO


@pytest.fixture(scope="module")
def curve_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("curve")
    allow = d / "allow"
    allow.mkdir()
    spub, ssec = create_keypair(d, "server")
    out = {"server": CurveServerKeys.from_files(ssec, allow)}
    for name in ("alice", "bob"):
        pub, sec = create_keypair(d, name)
        shutil.copy(pub, allow)
        out[name] = CurveClientKeys.from_files(sec, spub)
    return out


def test_with_curve_a_token_works_only_for_the_key_it_was_issued_to(pq_keys, curve_keys,
                                                                     running_server):
    with running_server(pq=pq_keys["server"], curve=curve_keys["server"]) as srv:
        with Client(srv.endpoints[0], curve=curve_keys["alice"], pq=pq_keys["pin"]) as alice:
            s = alice.open_stream(SPEC)
            assert _one_shot(s).shot_end
            session = s.pq
            with Client(srv.endpoints[0], curve=curve_keys["bob"], pq=pq_keys["pin"]) as bob:
                with pytest.raises(ServerError, match="issued to CURVE key") as e:
                    bob.open_stream(SPEC, resume=session)  # even with the session's keys
                assert e.value.code == ErrorCode.NOT_OWNER
            with Client(srv.endpoints[0], curve=curve_keys["alice"],
                        pq=pq_keys["pin"]) as again:
                assert again.open_stream(SPEC, resume=session).stream_id == s.stream_id


def test_the_committed_vector_is_what_a_client_from_the_document_computes():
    """docs/protocol_vectors.json ``pqc_handshake``: from its fixed client secrets, the
    client reproduces the session key from the ACCEPT alone and checks the token."""
    v = json.loads(VECTORS.read_text(encoding="utf-8"))["pqc_handshake"]
    b = bytes.fromhex
    hs = ClientHandshake(PqPin(b(v["server_mldsa65_public"])),
                         curve_client=z85.encode(b(v["curve_client"])),
                         curve_server=z85.encode(b(v["curve_server"])),
                         x25519_private=b(v["client_x25519_private"]),
                         mlkem_seed=b(v["client_mlkem768_seed"]))
    assert hs.x25519_public.hex() == v["client_x25519_public"]
    assert hs.mlkem_public.hex() == v["client_mlkem768_encapsulation_key"]
    hello = b(v["hello"])
    accept = decode_accept(*parse_packet(b(v["accept"])))
    session = hs.finish(hello[HEADER_SIZE:], accept, now_unix_s=v["expires_unix_s"] - 1)
    assert session.session_key.hex() == v["session_key"]
    assert session.resume_key.hex() == v["resume_key"]
    assert resume_mac(session.resume_key, session.token, hs.x25519_public,
                      hs.mlkem_public).hex() == v["resume_mac"]
    with pytest.raises(PqHandshakeError, match="expiry"):
        hs.finish(hello[HEADER_SIZE:], accept, now_unix_s=v["expires_unix_s"])


def test_the_asyncio_client_runs_the_same_handshake_and_resume(server, pq_keys):
    import asyncio

    from qecd.transport.aio_client import AsyncClient

    async def run():
        async with AsyncClient(server.endpoints[0], pq=pq_keys["pin"]) as c:
            s = await c.open_stream(SPEC)
            session = s.pq
        async with AsyncClient(server.endpoints[0], pq=pq_keys["pin"]) as c2:
            s2 = await c2.open_stream(SPEC, resume=session)
            await s2.close()
            return s.stream_id, s2.stream_id, s2.pq.token != session.token

    sid, sid2, fresh = asyncio.run(run())
    assert sid == sid2 and fresh


def test_keygen_writes_curve_and_mldsa_pairs_that_serve_and_clients_load(tmp_path, capsys):
    from qecd.cli import main

    assert main(["keygen", str(tmp_path), "srv", "--pq"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["srv.key", "srv.key_secret", "srv.mldsa", "srv.mldsa_secret"]
    assert (tmp_path / "srv.mldsa_secret").stat().st_mode & 0o077 == 0
    server = PqServer.from_file(tmp_path / "srv.mldsa_secret")
    assert PqPin.from_file(tmp_path / "srv.mldsa").public == server.public
    with pytest.raises(ValueError, match="srv.key: expected an ML-DSA-65 public key"):
        PqPin.from_file(tmp_path / "srv.key")
    with pytest.raises(ValueError, match="srv.mldsa: expected an ML-DSA-65 secret key"):
        PqServer.from_file(tmp_path / "srv.mldsa")


def test_the_cost_benchmark_reports_both_kinds_from_one_run(tmp_path, capsys):
    from qecd.cli import main

    out = tmp_path / "pqc.json"
    assert main(["bench", "pqc-handshake", "--hellos", "3", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for kind in ("plain", "pq"):
        assert r[kind]["open_latency_us"]["n"] == 3 and r[kind]["open_latency_us"]["p50"] > 0
    assert r["crypto_alone"]["server_crypto_cpu_us"]["n"] == 3
    assert "load average" in capsys.readouterr().out


def test_a_resume_respects_the_per_client_stream_cap(pq_keys, running_server):
    with running_server(pq=pq_keys["server"], max_streams_per_client=1) as srv:
        with Client(srv.endpoints[0], pq=pq_keys["pin"]) as c, \
                Client(srv.endpoints[0], pq=pq_keys["pin"]) as c2:
            session = c.open_stream(SPEC).pq
            c2.open_stream(SPEC)  # c2's one stream
            with pytest.raises(ServerError, match="max_streams_per_client=1") as e:
                c2.open_stream(SPEC, resume=session)
            assert e.value.code == ErrorCode.SERVER_BUSY
