"""transport/server/fast_path.py: the compiled ZeroMQ data plane answers exactly as the Python
path does, byte for byte, for good and bad packets alike, for a backend decoded inside Numba
(uf) and one whose windows are decoded on the host (pymatching); and one server serves every
kind of compiled engine from compiled code at once."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from qecd.codes import build_experiment
from qecd.transport.server import fast_path, libzmq_native
from qecd.transport.server.session import SessionLimits
from qecd.transport.wire import (
    HEADER_SIZE,
    ErrorCode,
    Flags,
    Hello,
    MsgType,
    SyndromeLayout,
    decode_accept,
    encode_bye,
    encode_frame,
    encode_heartbeat,
    encode_hello,
    encode_syndrome,
    parse_packet,
)

pytestmark = [pytest.mark.timeout(600),
              pytest.mark.skipif(not fast_path.available(),
                                 reason=f"fast path unavailable: "
                                        f"{libzmq_native.unavailable_reason()}")]

SPEC = "surface:d=3,r=6,p=0.03"
EXP = build_experiment(SPEC)
LAYOUT = SyndromeLayout(EXP.layout.round_sizes)
R = EXP.layout.num_rounds
# a DEM with two disconnected edges and no boundary: one fired detector has no solution
NO_SOLUTION_DEM = ("error(0.1) D0 D1\nerror(0.1) D2 D3\ndetector(0, 0) D0\n"
                   "detector(0, 1) D1\ndetector(1, 0) D2\ndetector(1, 1) D3\n")


class Peer:
    """A raw DEALER: frames out, every reply's bytes in (CORRECTION service_ns zeroed)."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self._seq = 1000

    def send(self, *parts: bytes) -> None:
        self.sock.send_multipart(list(parts))

    def replies_until_echo(self) -> list[bytes]:
        """Send a HEARTBEAT and collect every reply up to its echo (which ends the list)."""
        self._seq += 1
        self.send(encode_heartbeat(seq=self._seq))
        out = []
        while True:
            assert self.sock.poll(30_000), f"no echo of heartbeat {self._seq}"
            frame = bytearray(self.sock.recv())
            if frame[3] == MsgType.CORRECTION:
                frame[HEADER_SIZE + 16:HEADER_SIZE + 24] = bytes(8)  # service_ns: a timing
            out.append(bytes(frame))
            if bytes(frame) == encode_heartbeat(seq=self._seq):
                return out

    def hello(self, **kw) -> int:
        self.send(encode_hello(Hello(**{"spec": None, "dem": None, "time_coord": -1,
                                        "decoder": "uf", "window": None, "commit": None,
                                        "want_faults": False, **kw})))
        assert self.sock.poll(300_000), "no ACCEPT"
        header, payload = parse_packet(self.sock.recv())
        assert header.msg_type == MsgType.ACCEPT, bytes(payload)
        return decode_accept(header, payload).stream_id


def _rounds(seed: int, shots: int) -> list[np.ndarray]:
    dets, _ = EXP.sample(shots, seed=seed)
    return [shot[ids] for shot in dets for ids in EXP.layout.detectors]


def _syn(rounds, sid, first, count, ts=0) -> bytes:
    return encode_syndrome(np.concatenate(rounds[first:first + count]), LAYOUT, stream_id=sid,
                           first_round=first, count=count, timestamp_ns=ts)


def _with_pad_bit(frame: bytes) -> bytes:
    """The frame with a padding bit set in its last byte (the round's size is not a
    multiple of 8 for this code)."""
    assert EXP.layout.round_sizes[0] % 8
    b = bytearray(frame)
    b[-1] |= 0x80
    return bytes(b)


def _script(server_endpoint: str, decoder: str) -> tuple[list, dict]:
    """Drive one server through good and bad packets; every reply in order, and counters."""
    ctx = zmq.Context()
    a, b = Peer(ctx, server_endpoint), Peer(ctx, server_endpoint)
    try:
        sid = a.hello(spec=SPEC, window=4, commit=2, decoder=decoder)
        sid_f = a.hello(spec=SPEC, window=4, commit=2, want_faults=True, decoder=decoder)
        sid_x = a.hello(dem=NO_SOLUTION_DEM, decoder=decoder)
        rounds = _rounds(7, 6)
        now = 1_000_000  # a fixed timestamp: the echo is compared byte for byte
        steps = [
            ("a", _syn(rounds, sid, 0, 1)), ("a", _syn(rounds, sid, 1, 1)),
            ("a", _syn(rounds, sid, 2, 4, ts=now)),                      # timestamped
            # next: round 6, 4 detectors in one byte whose high 4 bits are padding
            ("a", _syn(rounds, sid, 9, 1)),                              # ROUND_GAP
            ("a", _syn(rounds, sid, 1, 1)),                              # ROUND_DUPLICATE
            ("a", _with_pad_bit(_syn(rounds, sid, 6, 1))),              # BAD_PAYLOAD (pad)
            ("a", _syn(rounds, sid, 6, 1)[:-1]),                         # LENGTH_MISMATCH
            ("a", encode_frame(MsgType.SYNDROME, _syn(rounds, sid, 6, 2)[HEADER_SIZE:-1],
                               count=2, stream_id=sid, seq=6)),          # BAD_PAYLOAD (short)
            ("a", encode_frame(MsgType.SYNDROME, _syn(rounds, sid, 6, 1)[HEADER_SIZE:],
                               flags=int(Flags.SHOT_END), count=1, stream_id=sid, seq=6)),
            ("a", encode_frame(MsgType.SYNDROME, b"\0", count=0, stream_id=sid, seq=6)),
            ("a", _syn(rounds, 99, 6, 1)),                               # UNKNOWN_STREAM
            ("b", _syn(rounds, sid, 6, 1)),                              # NOT_OWNER
            ("a", _syn(rounds, sid, 6, 9)),                              # SERVER_BUSY (backlog)
            ("a", _syn(rounds, sid, 6, 1), b"extra part"),               # two parts
            ("a", encode_frame(MsgType.SYNDROME, _syn(rounds, sid, 6, 1)[HEADER_SIZE:],
                               count=1, stream_id=sid, seq=6, version=9)),
            ("a", _syn(rounds, sid, 6, 1, ts=(1 << 63) + 5)),            # huge timestamp
            ("a", _syn(rounds, sid, 7, 7)),                              # spans a shot
            ("a", _syn(rounds, sid_f, 0, 3, ts=now)), ("a", _syn(rounds, sid_f, 3, 5)),
            ("a", encode_syndrome(np.array([1, 0], np.uint8), SyndromeLayout([2, 2]),
                                  stream_id=sid_x, first_round=0)),
            ("a", encode_syndrome(np.array([0, 0], np.uint8), SyndromeLayout([2, 2]),
                                  stream_id=sid_x, first_round=1)),     # no solution
            ("a", encode_syndrome(np.array([1, 1, 1, 1], np.uint8), SyndromeLayout([2, 2]),
                                  stream_id=sid_x, first_round=2, count=2)),
            # large packets: the fast path hands them over as a view of its receive buffer
            ("a", encode_frame(MsgType.HEARTBEAT, bytes(200_000), seq=8)),  # BAD_PAYLOAD
            ("a", encode_frame(MsgType.SYNDROME, bytes(300_000), count=1, stream_id=sid,
                               seq=6)),                                    # BAD_PAYLOAD
            ("a", _syn(rounds, sid, 6, 1) + bytes(70_000)),                # LENGTH_MISMATCH
        ]
        seen = []
        for who, *parts in steps:
            peer = a if who == "a" else b
            peer.send(*parts)
            seen.append((who, peer.replies_until_echo()))
        # a burst: many packets queued at once, several per drain call, then one reply list
        at = 14
        for k in (1, 2, 3, 1, 4, 1, 1, 2, 1, 3, 2, 1, 1, 4, 1):
            a.send(_syn(rounds, sid, at, k))
            at += k
        seen.append(("burst", a.replies_until_echo()))
        a.send(encode_bye(stream_id=sid))
        seen.append(("bye", a.replies_until_echo()))
        return seen
    finally:
        a.sock.close()
        b.sock.close()
        ctx.term()


def _session_view(s) -> dict:
    d = s.stats()
    d.pop("input_lag_ns")
    return d


# uf decodes its windows inside Numba; pymatching (the protocol's default) on the host, between
# two kernel calls of the fast path
@pytest.fixture(scope="module", params=["uf", "pymatching"])
def both_paths(running_server, request):
    out = {}
    for fast in (False, True):
        with running_server(fast_path=fast, limits=SessionLimits(max_backlog=8)) as server:
            replies = _script(server.endpoints[0], request.param)
            streams = {sid: _session_view(s) for sid, s in server._streams.items()}
            stats = server.stats()
            out[fast] = (replies, streams, stats, server.counters, server.recorder,
                         {sid: s._min_delay for sid, s in server._streams.items()})
        if fast:
            out["host_windows"] = getattr(server._fast, "host_windows", 0)
    out["decoder"] = request.param
    return out


def test_every_reply_is_byte_identical_with_and_without_the_fast_path(both_paths):
    slow, fast = both_paths[False][0], both_paths[True][0]
    assert len(slow) == len(fast)
    for k, (s, f) in enumerate(zip(slow, fast, strict=True)):
        assert s == f, f"step {k}: Python path {s!r}\nfast path {f!r}"
    codes = {r[HEADER_SIZE] | (r[HEADER_SIZE + 1] << 8) for _, rs in slow for r in rs
             if r[3] == MsgType.ERROR}
    assert codes >= {34, 35, 16, 5, 7, 8, 32, 33, 49, 2, 48, 50}  # the bad packets were bad
    assert 63 not in codes  # no INTERNAL: a timestamp above 2**63 is echoed like any other
    assert sum(r[3] == MsgType.CORRECTION for _, rs in slow for r in rs) > 10


def test_stream_counters_and_server_totals_agree_between_the_paths(both_paths):
    (_, s_streams, s_stats, s_ctr, s_rec, _), (_, f_streams, f_stats, f_ctr, f_rec, _) = (
        both_paths[False], both_paths[True])
    assert s_streams == f_streams
    for key in ("packets_received", "rounds_received", "corrections_sent", "errors_sent",
                "dropped", "backlog_rounds"):
        assert s_stats[key] == f_stats[key], key
    assert f_rec.count == s_rec.count  # every round recorded once, in the same records
    assert s_ctr.fast_path_packets == 0
    assert f_ctr.fast_path_packets >= 20  # the fast path really served the good packets
    if both_paths["decoder"] == "pymatching":  # its windows were decoded between kernels
        assert both_paths["host_windows"] >= 10


def test_the_fast_path_records_service_times_and_input_lag(both_paths):
    _, _, _, _, rec, min_delay = both_paths[True]
    raw = rec.raw()
    assert raw["service_ns"].shape[0] == rec.count and (raw["service_ns"] > 0).all()
    assert raw["decoded"].sum() > 0
    assert min(min_delay.values()) < 1 << 62  # the timestamped packet's delay was noted


def test_streams_without_a_compiled_engine_stay_on_the_python_path(running_server):
    from qecd.decoder.registry import backend_class, backend_names
    from qecd.transport.client import Client

    plain = next(n for n in backend_names() if not backend_class(n).compiles_streams)
    with running_server() as server, Client(server.endpoints[0], timeout_s=60) as client:
        stream = client.open_stream("repetition:d=3,r=2,p=0.01", decoder=plain)
        _ = stream.send_round(np.zeros(sum(stream.slice_sizes), np.uint8),
                              count=len(stream.slice_sizes))
        stream.recv_correction(timeout_s=30)
        assert not isinstance(server._streams[stream.stream_id], fast_path.FastStreamSession)
        assert server.counters.fast_path_packets == 0


MIXED_SPEC = "surface:d=3,r=4,p=0.02"


def test_one_server_serves_every_compiled_backend_from_compiled_code_at_once(running_server):
    """uf (decoded in Numba), bp-cluster (another engine type) and pymatching (windows
    decoded on the host) streams on one server, their packets interleaved on the socket:
    every SYNDROME is served by the fast path, and each stream's corrections add up, shot
    by shot, to the offline decode of the same shots."""
    from qecd.decoder.registry import backend_class, backend_names
    from qecd.decoder.window import StreamDecoder
    from qecd.transport.client import Client

    exp = build_experiment(MIXED_SPEC)
    backends = [n for n in backend_names() if backend_class(n).compiles_streams]
    assert {"uf", "bp-cluster", "pymatching"} <= set(backends)
    shots = 12
    dets, _ = exp.sample(shots, seed=5)
    with running_server() as server, Client(server.endpoints[0], timeout_s=120) as client:
        streams = {b: client.open_stream(MIXED_SPEC, decoder=f"{b}-w3c2") for b in backends}
        for b, st in streams.items():
            assert isinstance(server._streams[st.stream_id], fast_path.FastStreamSession), b
        assert len({int(server._fast.table[server._fast._slot_of[st.stream_id],
                                           fast_path.F_KIND]) for st in streams.values()}) \
            == len(backends)  # one engine kind per backend here
        before = server.counters.fast_path_packets
        # two packets per shot, the streams' packets alternating on the socket
        ids, cut = exp.layout.detectors, exp.layout.num_rounds // 2
        for k in range(shots):
            for first, stop in ((0, cut), (cut, len(ids))):
                part = np.concatenate([dets[k][ids[t]] for t in range(first, stop)])
                for st in streams.values():
                    st.send_round(part, count=stop - first)
        got = {}
        for b, st in streams.items():
            flips = np.zeros((shots, exp.dem.num_observables), np.uint8)
            k = 0
            while k < shots:
                c = st.recv_correction(timeout_s=60)
                flips[k] ^= np.asarray(c.observables, np.uint8)
                k += bool(c.shot_end)
            got[b] = flips
        client.heartbeat()  # its echo follows the commit of the packets drained before it
        served = server.counters.fast_path_packets - before
    assert served == 2 * shots * len(backends)  # no packet went through Python
    for b in backends:
        want = StreamDecoder(exp.dem, exp.layout, b, window=3, commit=2).decode_batch(dets)
        assert (got[b] == want).all(), b


def test_a_closed_stream_keeps_its_counters_and_frees_its_row(running_server):
    from qecd.transport.client import Client

    with running_server() as server, Client(server.endpoints[0], timeout_s=60) as client:
        stream = client.open_stream("repetition:d=3,r=2,p=0.01", decoder="uf")
        s = server._streams[stream.stream_id]
        assert isinstance(s, fast_path.FastStreamSession) and len(server._fast) == 1
        _ = stream.send_round(np.zeros(sum(stream.slice_sizes), np.uint8),
                              count=len(stream.slice_sizes))
        stream.recv_correction(timeout_s=30)
        stream.close(timeout_s=30)
        assert len(server._fast) == 0
        assert (s.rounds_received, s.corrections_sent) == (len(stream.slice_sizes), 1)
        assert not server._fast.table.any()


def test_qecd_serve_warms_the_kernel_before_any_stream():
    from qecd.transport.server import Server, ServerConfig

    with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
        assert server.warm_fast_path() and len(server._fast) == 0
    with Server(ServerConfig(binds=("tcp://127.0.0.1:0",), fast_path=False)) as server:
        assert server._fast is None and not server.warm_fast_path()


def test_a_host_decoded_window_is_answered_to_its_packets_sender(running_server):
    """The first packets a server's fast path sees are a pymatching stream's: the CORRECTION
    of each window decoded on the host goes to the routing id the packet came from (it was
    once sent to whatever id a message handed to Python last had: none here, so dropped)."""
    from qecd.transport.client import Client

    exp = build_experiment("surface:d=3,r=4,p=0.05")
    dets, _ = exp.sample(10, seed=3)
    with running_server() as server, Client(server.endpoints[0], timeout_s=60) as client:
        stream = client.open_stream(str(exp.spec), decoder="pymatching", window=3, commit=2)
        for shot in dets:
            for ids in exp.layout.detectors:
                stream.send_round(shot[ids], count=1)
        shots = 0
        while shots < len(dets):
            shots += bool(stream.recv_correction(timeout_s=30).shot_end)
        assert server._fast.host_windows > 0
        assert "corrections" not in server.counters.dropped


class _CountingList(list):
    """Stands in for a kind's typed list: counts the rows written."""

    writes = 0

    def __setitem__(self, i, v):
        type(self).writes += 1
        super().__setitem__(i, v)


def test_a_kinds_free_rows_hold_only_live_contexts_and_a_close_writes_one_row():
    """A fuzz opened and closed hundreds of streams: each close repointed every row of the
    kind's typed list (~15 ms at 1000 rows, on the loop). Now a close writes its own row, and
    no row keeps a closed stream's context while a live one of the kind exists."""
    rng = np.random.default_rng(7)
    ctx = [np.full(1, i) for i in range(2001)]
    kind = fast_path._Kind(0, ctx[0], None)
    kind.ctxs = _CountingList(kind.ctxs)
    live: dict[int, int] = {}  # row -> context number
    opened = 1
    for step in range(2000):
        free = [r for r in range(400) if r not in live]
        closable = [r for r in live if step > 1000 or r != 17]  # row 17: a long-lived stream
        if closable and (rng.random() < 0.5 or not free):
            row = int(rng.choice(closable))
            before, was_filler = _CountingList.writes, row == kind.filler_slot
            kind.drop(row)
            del live[row]
            if not was_filler and _CountingList.writes - before > 1:
                pytest.fail(f"closing row {row} wrote {_CountingList.writes - before} rows")
        else:
            row = 17 if opened == 1 else int(rng.choice(free))
            live[row] = opened
            kind.put(row, ctx[opened])
            opened += 1
        values = [int(c[0]) for c in kind.ctxs]
        assert all(values[r] == n for r, n in live.items())
        if live:  # every other row holds one live context
            fillers = {v for r, v in enumerate(values) if r not in live}
            assert fillers <= set(live.values()) and len(fillers) <= 1
        if step == 1000:  # beside a long-lived stream, O(1) rows per open and close
            assert _CountingList.writes < 3 * opened


def test_a_large_packet_the_fast_path_cannot_serve_is_handed_over_uncopied(running_server):
    """A large packet that is not a SYNDROME of the right length (a fuzz's 16 MB frames: the
    header alone refuses them) stays in libzmq's buffer and reaches the Python path as a
    view of it: the drain copied each into its receive buffer first (0.6-0.75 ms of the loop
    for 16 MB, 37 ms the first time). Its answer is unchanged: LENGTH_MISMATCH, from the
    header."""
    from qecd.transport.client import Client, decode_reply

    with running_server() as server, Client(server.endpoints[0], timeout_s=60) as client:
        client.open_stream("repetition:d=3,r=2,p=0.01", decoder="uf")  # the drain serves
        fp = server._fast
        sentinel = np.arange(1, 65, dtype=np.uint8)
        fp.frame_buf[HEADER_SIZE:HEADER_SIZE + 64] = sentinel
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(server.endpoints[0])
        try:
            frame = bytearray(encode_heartbeat(seq=1)) + b"\xff" * (1 << 20)  # payload_len 0
            sock.send(bytes(frame))
            assert sock.poll(30_000)
            reply = decode_reply(sock.recv())
        finally:
            sock.close(0)
        assert reply.msg_type == MsgType.ERROR
        assert reply.body.code == ErrorCode.LENGTH_MISMATCH
        assert np.array_equal(fp.frame_buf[HEADER_SIZE:HEADER_SIZE + 64], sentinel)
        assert server.counters.errors_sent.get("LENGTH_MISMATCH") == 1


def test_a_streams_heartbeat_is_echoed_by_the_kernel_as_python_would(running_server, wait_for):
    """A HEARTBEAT naming a stream the fast path serves is echoed by the drain (its stream's
    liveness refreshed), byte for byte what Server._on_heartbeat sends, so a stream's
    HEARTBEATs do not wait for the interpreter (a plan's arrival took the build thread 2-41
    ms, ``server_s`` of build-stall runs). A HEARTBEAT from another
    connection naming it, or naming no stream, still goes to Python (NOT_OWNER; the echo)."""
    from qecd.transport.client import Client, decode_reply

    with running_server() as server, Client(server.endpoints[0], timeout_s=60) as client:
        stream = client.open_stream("repetition:d=3,r=2,p=0.01", decoder="uf")
        sid = stream.stream_id
        session = server._streams[sid]
        assert isinstance(session, fast_path.FastStreamSession)
        ctx = zmq.Context.instance()
        socks = []
        try:
            owner_frames = [encode_heartbeat(stream_id=sid, seq=k, timestamp_ns=1000 + k)
                            for k in range(5)]
            before = session.last_seen_ns
            for f in owner_frames:
                client.socket.send(f)
            echoes = [client.socket.recv() for _ in owner_frames]
            assert echoes == owner_frames
            assert session.last_seen_ns > before
            # the totals are committed when the kernel next returns (a housekeeping, or a
            # message for Python), not per HEARTBEAT
            assert wait_for(lambda: server.counters.fast_path_heartbeats == 5, timeout_s=10)
            other = ctx.socket(zmq.DEALER)
            socks.append(other)
            other.setsockopt(zmq.LINGER, 0)
            other.connect(server.endpoints[0])
            other.send(encode_heartbeat(stream_id=sid, seq=9))
            assert other.poll(30_000)
            reply = decode_reply(other.recv())
            assert reply.msg_type == MsgType.ERROR and reply.body.code == ErrorCode.NOT_OWNER
            other.send(encode_heartbeat(seq=10))
            assert other.poll(30_000)
            assert other.recv() == encode_heartbeat(seq=10)
            assert server.counters.fast_path_heartbeats == 5
        finally:
            for s in socks:
                s.close(0)
