"""CURVE access control: only allow-listed keys get service; streams belong to keys.

An unlisted key (or a client without CURVE) gets nothing at all from the server; a listed key
works; a stream opened by one authenticated client is NOT_OWNER for another, and ownership
follows the authenticated key, not the client-chosen routing id.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from qecd.transport.auth import CurveClientKeys, CurveServerKeys, create_keypair
from qecd.transport.client import AuthenticationFailed, Client, ServerError, ServerTimeout
from qecd.transport.wire import ErrorCode, encode_syndrome

pytestmark = pytest.mark.timeout(120)

SPEC = "repetition:d=3,r=2,p=0.01"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    allow = d / "allow"
    allow.mkdir()
    server_pub, server_sec = create_keypair(d, "server")
    out = {"server": CurveServerKeys.from_files(server_sec, allow)}
    for name in ("alice", "bob", "mallory"):
        pub, sec = create_keypair(d, name)
        if name != "mallory":
            shutil.copy(pub, allow)
        out[name] = CurveClientKeys.from_files(sec, server_pub)
    return out


@pytest.fixture(scope="module")
def server(keys, running_server):
    with running_server(curve=keys["server"]) as srv:
        yield srv


def _one_shot(stream):
    for size in stream.slice_sizes:
        stream.send_round(np.zeros(size, np.uint8))
    return stream.recv_correction(5)


def test_a_listed_key_is_served(server, keys):
    with Client(server.endpoints[0], curve=keys["alice"]) as alice:
        s = alice.open_stream(SPEC)
        assert _one_shot(s).shot_end


def test_an_unlisted_key_is_refused(server, keys, wait_for):
    """... and the server counts and logs the refusal (issue 13: refused CURVE connections
    left no log line or metric)."""
    opened = server.counters.streams_opened
    refused = server.counters.connections_refused
    with Client(server.endpoints[0], curve=keys["mallory"], timeout_s=1.5) as mallory:
        with pytest.raises((AuthenticationFailed, ServerTimeout)) as e:
            mallory.open_stream(SPEC, timeout_s=1.5)
        # the handshake monitor names the refusal rather than a bare timeout
        assert isinstance(e.value, AuthenticationFailed), e.value
        with pytest.raises((AuthenticationFailed, ServerTimeout)):
            mallory.heartbeat(timeout_s=0.5)
    assert server.counters.streams_opened == opened  # nothing reached the server
    assert wait_for(lambda: server.counters.connections_refused > refused, 5)
    assert server.stats()["connections_refused"] == server.counters.connections_refused


def test_a_client_without_curve_gets_no_service(server):
    with Client(server.endpoints[0], timeout_s=1.0) as plain:
        with pytest.raises(ServerTimeout):
            plain.heartbeat()


def test_streams_belong_to_the_authenticated_key(server, keys):
    with Client(server.endpoints[0], curve=keys["alice"]) as alice, \
            Client(server.endpoints[0], curve=keys["bob"]) as bob:
        s = alice.open_stream(SPEC)
        steal = encode_syndrome(np.zeros(s.slice_sizes[0], np.uint8), s.layout,
                                stream_id=s.stream_id, first_round=0)
        bob.send_frame(steal)
        with pytest.raises(ServerError) as e:
            bob.recv(5)
        assert e.value.code == ErrorCode.NOT_OWNER and e.value.stream_id == s.stream_id
        with pytest.raises(ServerError) as e:
            bob.stats(s.stream_id)
        assert e.value.code == ErrorCode.NOT_OWNER
        assert s.stats()["rounds_received"] == 0  # bob's round never reached it
        # a second connection with alice's key (a new routing id) may use alice's stream
        with Client(server.endpoints[0], curve=keys["alice"]) as alice2:
            assert alice2.stats(s.stream_id)["stream_id"] == s.stream_id
        assert _one_shot(s).last_round == 2
