"""Protocol conformance: drive any server through the normative rules of docs/protocol.md.

``qecd conformance --connect tcp://127.0.0.1:5555`` opens raw ZeroMQ DEALER connections (no
qecd client logic in between), sends well-formed and deliberately broken packets, and checks
each reply against the rule it exercises: every error code a client can provoke, the parse
order of §4, the echo rules of §6.5, gaps and duplicates (§9), HEARTBEAT and STATS echoes,
BYE, whole-shot and windowed commits with the committed-range rule of §7.1, and, when the
server offers ``transport="shm"``, the ring transport of §14 (attach, rounds, ERROR with a
reason, HEARTBEAT, BYE with the next round, unlink, a corrupt slot ending the stream).

The rounds sent are all-zero detection events, so every correct decoder commits no
observable flips: the runner needs no decoder of its own and checks only what the protocol
fixes. A rule passes or fails; nothing is skipped silently (a server without ring support
fails the ring rules unless ``shm=False``).

Example
-------
>>> from qecd.transport.server import Server, ServerConfig
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     results = run_conformance(server.endpoints[0], shm=False)
>>> all(r.passed for r in results), len(results) > 40
(True, True)
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack
import numpy as np
import zmq

from qecd.transport import wire as P
from qecd.transport.wire import DEFAULT_DECODER, committed_ranges

__all__ = ["Outcome", "RULES", "run_conformance", "format_table", "committed_ranges"]

#: the experiment the runner opens: small, fast to build, slices of different sizes
DEFAULT_SPEC = "repetition:d=3,r=6,p=0.01"
U64 = (1 << 64) - 1


@dataclass(frozen=True)
class Outcome:
    """One rule's verdict: its id, the spec section, pass/fail and what was seen."""

    rule: str
    section: str
    passed: bool
    detail: str


class Fail(Exception):
    """A rule was broken; the message says what arrived instead."""


def expect(cond: bool, detail: str) -> None:
    if not cond:
        raise Fail(detail)


# -- a raw connection ---------------------------------------------------------------------------


class Peer:
    """One DEALER connection; replies are parsed with the reference parser."""

    def __init__(self, ctx: zmq.Context, endpoint: str, timeout_s: float) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.timeout_s = timeout_s
        self.seq = 100

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, frame: bytes | list[bytes]) -> None:
        if isinstance(frame, list):
            self.sock.send_multipart(frame)
        else:
            self.sock.send(frame)

    def recv(self, timeout_s: float | None = None) -> tuple[P.Header, bytes] | None:
        """The next packet, or None after ``timeout_s``; a malformed reply is a failure."""
        if not self.sock.poll(int(1000 * (self.timeout_s if timeout_s is None else timeout_s))):
            return None
        parts = self.sock.recv_multipart()
        expect(len(parts) == 1, f"a reply of {len(parts)} ZeroMQ parts (expected 1, §3)")
        try:
            h, p = P.parse_packet(parts[0])
        except Exception as e:  # noqa: BLE001 - any failure to parse is the verdict
            raise Fail(f"a reply that does not parse: {e}") from None
        return h, bytes(p)

    def wait(self, match: Callable[[P.Header], bool], what: str,
             timeout_s: float | None = None) -> tuple[P.Header, bytes]:
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = deadline - time.monotonic()
            got = self.recv(max(left, 0.0)) if left > 0 else None
            if got is None:
                raise Fail(f"no {what} within {self.timeout_s:g} s")
            if match(got[0]):
                return got

    def error_for(self, frame: bytes | list[bytes], what: str = "ERROR"
                  ) -> tuple[P.Header, P.ErrorInfo]:
        """Send ``frame`` and return the ERROR it provokes (any other reply is a failure)."""
        self.send(frame)
        got = self.recv()
        expect(got is not None, f"no reply within {self.timeout_s:g} s (expected {what})")
        h, p = got
        expect(h.msg_type == P.MsgType.ERROR,
               f"a {P.MsgType(h.msg_type).name} reply (expected {what})")
        return h, P.decode_error(h, p)

    def close(self) -> None:
        self.sock.close(0)


def _name(code: int) -> str:
    try:
        return P.ErrorCode(code).name
    except ValueError:
        return str(code)


# -- the rules ------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the rules share: the endpoint, two peers and a helper to open streams."""

    ctx: zmq.Context
    endpoint: str
    spec: str
    timeout_s: float
    a: Peer
    b: Peer

    def peer(self) -> Peer:
        return Peer(self.ctx, self.endpoint, self.timeout_s)

    def open(self, peer: Peer | None = None, **hello_keys) -> tuple[P.Header, P.Accept]:
        peer = peer or self.a
        keys = {"spec": self.spec, **hello_keys}
        body = msgpack.packb(keys, use_bin_type=True)
        seq = peer.next_seq()
        peer.send(P.encode_frame(P.MsgType.HELLO, body, seq=seq, timestamp_ns=seq * 7))
        h, p = peer.wait(lambda h: h.round == seq and h.msg_type in (2, 5), "ACCEPT",
                         timeout_s=max(self.timeout_s, 60.0))
        if h.msg_type == P.MsgType.ERROR:
            e = P.decode_error(h, p)
            raise Fail(f"HELLO {keys} refused: {_name(e.code)} {e.reason!r}")
        expect(h.timestamp_ns == seq * 7, "ACCEPT does not echo the HELLO's timestamp_ns")
        try:
            return h, P.decode_accept(h, p)
        except Exception as e:  # noqa: BLE001
            raise Fail(f"ACCEPT body invalid: {e}") from None

    def bye(self, sid: int, peer: Peer | None = None) -> P.Header:
        peer = peer or self.a
        seq = peer.next_seq()
        peer.send(P.encode_bye(stream_id=sid, seq=seq, timestamp_ns=seq))
        h, _ = peer.wait(lambda h: h.msg_type == P.MsgType.BYE and h.stream_id == sid, "BYE")
        return h


def syndrome(acc: P.Accept, first: int, count: int = 1, *, stream_id: int | None = None,
             bits: np.ndarray | None = None, ts: int = 0) -> bytes:
    lay = acc.layout()
    if bits is None:
        bits = np.zeros(lay.num_detectors_in(first, count), np.uint8)
    return P.encode_syndrome(bits, lay, stream_id=stream_id or acc.stream_id,
                             first_round=first, count=count, timestamp_ns=ts)


Rule = Callable[[Context], str]
RULES: list[tuple[str, str, Rule]] = []


def rule(rule_id: str, section: str):
    def deco(fn: Rule) -> Rule:
        RULES.append((rule_id, section, fn))
        return fn
    return deco


def _expect_error(c: Context, frame, code: P.ErrorCode, *, ref_type: int | None = None,
                  echo: tuple[int, int, int] | None = None, next_round: int | None = None,
                  peer: Peer | None = None) -> str:
    h, e = (peer or c.a).error_for(frame, code.name)
    expect(e.code == code, f"{_name(e.code)} (expected {code.name}): {e.reason!r}")
    expect(e.reason.strip() != "", f"{code.name} with an empty reason (§6.5)")
    if ref_type is not None:
        expect(e.ref_type == ref_type, f"ref_type {e.ref_type} (expected {ref_type})")
    if echo is not None:
        expect((h.stream_id, h.round, h.timestamp_ns) == echo,
               f"header echo {(h.stream_id, h.round, h.timestamp_ns)} (expected {echo})")
    if next_round is not None:
        expect(e.next_round == next_round,
               f"next_round {e.next_round} (expected {next_round})")
    return f"{code.name}: {e.reason[:70]}"


# §4 / §11: framing, in parse order

@rule("short frame (0-3 bytes) -> SHORT_FRAME, ref_type 0, zero echo", "§4 §11")
def _r_short(c: Context) -> str:
    return _expect_error(c, b"QD\x01", P.ErrorCode.SHORT_FRAME, ref_type=0, echo=(0, 0, 0))


@rule("wrong magic -> BAD_MAGIC, ref_type 0", "§4 §6.5")
def _r_magic(c: Context) -> str:
    frame = P.encode_frame(P.MsgType.HEARTBEAT, magic=0x4458, stream_id=0, seq=5)
    return _expect_error(c, frame, P.ErrorCode.BAD_MAGIC, ref_type=0, echo=(0, 0, 0))


@rule("unknown version -> version-1 UNSUPPORTED_VERSION listing v1", "§12")
def _r_version(c: Context) -> str:
    frame = P.encode_frame(P.MsgType.HEARTBEAT, version=9, seq=5)
    h, e = c.a.error_for(frame, "UNSUPPORTED_VERSION")
    expect(e.code == P.ErrorCode.UNSUPPORTED_VERSION, f"{_name(e.code)}")
    expect(h.version == 1 and 1 in e.versions, f"version {h.version}, versions {e.versions}")
    return f"versions {list(e.versions)}"


@rule("4-31 bytes with good magic and version -> SHORT_FRAME", "§4")
def _r_short_header(c: Context) -> str:
    return _expect_error(c, P.encode_heartbeat(seq=1)[:20], P.ErrorCode.SHORT_FRAME,
                         ref_type=P.MsgType.HEARTBEAT)


@rule("msg_type 9 -> UNKNOWN_TYPE, ref_type 9, header echoed", "§4 §5")
def _r_unknown_type(c: Context) -> str:
    frame = P.encode_frame(9, seq=77, timestamp_ns=78)
    return _expect_error(c, frame, P.ErrorCode.UNKNOWN_TYPE, ref_type=9, echo=(0, 77, 78))


@rule("undefined flag bit -> BAD_FLAGS", "§5")
def _r_flags(c: Context) -> str:
    return _expect_error(c, P.encode_frame(P.MsgType.HEARTBEAT, flags=1, seq=3),
                         P.ErrorCode.BAD_FLAGS, echo=(0, 3, 0))


@rule("payload_len that lies -> LENGTH_MISMATCH", "§3 §4")
def _r_length(c: Context) -> str:
    frame = bytearray(P.encode_heartbeat(seq=4))
    frame[12] = 9
    return _expect_error(c, bytes(frame), P.ErrorCode.LENGTH_MISMATCH)


@rule("bad flag and a lying length -> BAD_FLAGS (flags are checked first)", "§4")
def _r_order(c: Context) -> str:
    frame = bytearray(P.encode_frame(P.MsgType.HEARTBEAT, flags=4, seq=4))
    frame[12] = 9  # both a bad flag and a lying length: the flag check comes first
    return _expect_error(c, bytes(frame), P.ErrorCode.BAD_FLAGS)


@rule("SYNDROME with count 0 -> BAD_HEADER", "§5")
def _r_count0(c: Context) -> str:
    return _expect_error(c, P.encode_frame(P.MsgType.SYNDROME, b"\x00", stream_id=1, count=0),
                         P.ErrorCode.BAD_HEADER)


@rule("HEARTBEAT with count != 0 -> BAD_HEADER", "§5")
def _r_count_other(c: Context) -> str:
    return _expect_error(c, P.encode_frame(P.MsgType.HEARTBEAT, count=1),
                         P.ErrorCode.BAD_HEADER)


@rule("HELLO with a stream id -> BAD_HEADER", "§5")
def _r_hello_sid(c: Context) -> str:
    body = msgpack.packb({"spec": c.spec})
    return _expect_error(c, P.encode_frame(P.MsgType.HELLO, body, stream_id=3),
                         P.ErrorCode.BAD_HEADER)


@rule("BYE with stream 0 -> BAD_HEADER", "§5")
def _r_bye0(c: Context) -> str:
    return _expect_error(c, P.encode_frame(P.MsgType.BYE), P.ErrorCode.BAD_HEADER)


@rule("round + count > 2^64 -> BAD_HEADER", "§5")
def _r_overflow(c: Context) -> str:
    frame = P.encode_frame(P.MsgType.SYNDROME, b"\x00\x00", stream_id=1, count=2, seq=U64)
    return _expect_error(c, frame, P.ErrorCode.BAD_HEADER)


@rule("two-part ZeroMQ message -> BAD_HEADER", "§3")
def _r_multipart(c: Context) -> str:
    hb = P.encode_heartbeat(seq=8)
    return _expect_error(c, [hb, hb], P.ErrorCode.BAD_HEADER)


@rule("non-empty HEARTBEAT / BYE -> BAD_PAYLOAD", "§6.7")
def _r_hb_body(c: Context) -> str:
    _expect_error(c, P.encode_frame(P.MsgType.HEARTBEAT, b"x"), P.ErrorCode.BAD_PAYLOAD)
    return _expect_error(c, P.encode_frame(P.MsgType.BYE, b"x", stream_id=1),
                         P.ErrorCode.BAD_PAYLOAD)


@rule("packet over max_frame -> OVERSIZE (or the connection dropped unread)", "§3 §11")
def _r_oversize(c: Context) -> str:
    _, acc = c.open()
    c.bye(acc.stream_id)
    p = c.peer()
    try:
        p.send(P.encode_frame(P.MsgType.HEARTBEAT, bytes(acc.max_frame - 31)))
        got = p.recv()
        if got is None:  # ZMQ_MAXMSGSIZE: the server disconnected us; it must still serve
            p2 = c.peer()
            try:
                p2.send(P.encode_heartbeat(seq=1))
                expect(p2.recv() is not None, "no reply at all after an oversize packet")
            finally:
                p2.close()
            return "disconnected (ZMQ_MAXMSGSIZE), server still answers"
        h, body = got
        expect(h.msg_type == P.MsgType.ERROR, f"a {P.MsgType(h.msg_type).name} reply")
        e = P.decode_error(h, body)
        expect(e.code == P.ErrorCode.OVERSIZE, f"{_name(e.code)} (expected OVERSIZE)")
        return f"OVERSIZE at max_frame {acc.max_frame}"
    finally:
        p.close()


# §6.1 / §11: HELLO

_BAD_HELLOS = [
    ("not a map", msgpack.packb([1, 2])),
    ("unknown key", None, {"colour": "red"}),
    ("spec and dem", None, {"dem": "error(0.1) D0\ndetector(0, 0) D0\n"}),
    ("neither spec nor dem", msgpack.packb({"decoder": DEFAULT_DECODER})),
    ("commit > window", None, {"window": 2, "commit": 3}),
    ("commit without window", None, {"commit": 1}),
    ("window 0", None, {"window": 0}),
    ("window as a string", None, {"window": "4"}),
    ("want_faults as an int", None, {"want_faults": 1}),
    ("unknown decoder", None, {"decoder": "no-such-decoder"}),
    ("decoder names a window and window is set", None, {"decoder": "uf-w4c2", "window": 4}),
    ("unparseable spec", msgpack.packb({"spec": "surface:d=4"})),
    ("unknown family", msgpack.packb({"spec": "torus:d=3"})),
    ("DEM without coordinates", msgpack.packb({"dem": "error(0.1) D0 L0\n"})),
    ("DEM that does not parse", msgpack.packb({"dem": "error(0.1 D0\n"})),
    ("time_coord with spec", None, {"time_coord": 0}),
    ("transport 'udp'", None, {"transport": "udp"}),
    ("input 'raw'", None, {"input": "raw"}),
    ("input 'measurements' with a DEM",
     msgpack.packb({"dem": "error(0.1) D0\ndetector(0, 0) D0\n", "input": "measurements"})),
    ("spec and circuit", None, {"circuit": "M 0\nDETECTOR(0, 0) rec[-1]\n"}),
]


def _hello_rule(label: str, body: bytes | None, extra: dict | None = None) -> Rule:
    def check(c: Context) -> str:
        b = body if body is not None else msgpack.packb({"spec": c.spec, **(extra or {})})
        seq = c.a.next_seq()
        return _expect_error(c, P.encode_frame(P.MsgType.HELLO, b, seq=seq, timestamp_ns=3),
                             P.ErrorCode.BAD_HELLO, echo=(0, seq, 3), ref_type=1)
    return check


for _item in _BAD_HELLOS:
    RULES.append((f"HELLO {_item[0]} -> BAD_HELLO", "§6.1 §11",
                  _hello_rule(_item[0], _item[1], _item[2] if len(_item) > 2 else None)))


@rule("HELLO with an empty body -> BAD_PAYLOAD (the §4 size rule), no stream", "§4 §5 §11")
def _r_hello_empty(c: Context) -> str:
    seq = c.a.next_seq()
    return _expect_error(c, P.encode_frame(P.MsgType.HELLO, b"", seq=seq, timestamp_ns=3),
                         P.ErrorCode.BAD_PAYLOAD, echo=(0, seq, 3), ref_type=1)


@rule("ACCEPT: all keys, layout consistent, echoes round and timestamp", "§6.2 §9")
def _r_accept(c: Context) -> str:
    h, acc = c.open(decoder=DEFAULT_DECODER, window=4, commit=2, want_faults=True)
    c.bye(acc.stream_id)
    expect(h.stream_id == acc.stream_id != 0, "header stream_id differs from the body's")
    expect((acc.window, acc.commit, acc.want_faults) == (4, 2, True),
           f"settings in force {(acc.window, acc.commit, acc.want_faults)} (asked 4, 2, True)")
    return f"stream {acc.stream_id}, slice_sizes {list(acc.slice_sizes)}"


@rule("HELLO msgpack in any valid encoding (map16, str8, uint32, int8)", "§2.1")
def _r_msgpack_forms(c: Context) -> str:
    # map16 header, str8 for the spec, uint32 window, int8 commit, keys in another order
    spec = c.spec.encode()
    body = (b"\xde\x00\x03" + b"\xa6window" + b"\xce\x00\x00\x00\x04"
            + b"\xa6commit" + b"\xd0\x02"
            + b"\xa4spec" + b"\xd9" + bytes([len(spec)]) + spec)
    seq = c.a.next_seq()
    c.a.send(P.encode_frame(P.MsgType.HELLO, body, seq=seq))
    h, p = c.a.wait(lambda h: h.round == seq, "ACCEPT", timeout_s=60)
    expect(h.msg_type == P.MsgType.ACCEPT, f"{P.MsgType(h.msg_type).name}: "
           f"{P.decode_error(h, p).reason if h.msg_type == 5 else ''}")
    acc = P.decode_accept(h, p)
    c.bye(acc.stream_id)
    expect((acc.window, acc.commit) == (4, 2), f"window/commit {(acc.window, acc.commit)}")
    return "accepted"


@rule("HELLO describe: ACCEPT lists each round's detector ids, the committed ranges, the DEM",
      "§6.2 §7.1")
def _r_describe(c: Context) -> str:
    import stim

    _, acc = c.open(window=4, commit=2, describe=True)
    c.bye(acc.stream_id)
    expect(acc.slice_detectors is not None, "ACCEPT without slice_detectors")
    expect([len(ids) for ids in acc.slice_detectors] == list(acc.slice_sizes),
           "slice_detectors do not match slice_sizes")
    want = committed_ranges(acc.rounds_per_shot, acc.window, acc.commit)
    expect(list(acc.commit_ranges) == want, f"commit_ranges {list(acc.commit_ranges)[:4]} "
           f"(expected {want[:4]})")
    dem = stim.DetectorErrorModel(acc.dem)
    expect(dem.num_detectors == acc.num_detectors, f"DEM with {dem.num_detectors} detectors")
    coords = dem.get_detector_coordinates()
    for t, ids in enumerate(acc.slice_detectors):  # each round = one time coordinate, ids up
        expect(list(ids) == sorted(ids), f"round {t}'s ids are not increasing")
        expect(len({coords[i][-1] for i in ids}) <= 1, f"round {t} mixes time coordinates")
    _, plain = c.open()
    c.bye(plain.stream_id)
    expect(plain.slice_detectors is None and plain.dem is None,
           "an ACCEPT describes a stream that did not ask (§12: ACCEPTs stay unchanged)")
    return f"{len(acc.slice_detectors)} rounds, {len(acc.commit_ranges)} ranges, DEM " \
           f"{len(acc.dem)} chars"


@rule("decoder name with -w<W>c<C> sets window and commit", "§6.1.2")
def _r_decoder_window(c: Context) -> str:
    _, acc = c.open(decoder="pymatching-w4c2")
    c.bye(acc.stream_id)
    expect((acc.window, acc.commit) == (4, 2), f"ACCEPT window/commit {(acc.window, acc.commit)}")
    return f"decoder {acc.decoder!r}, window 4, commit 2"


@rule("window >= rounds per shot is whole-shot and ACCEPT says so (window nil)", "§6.1 §7.1")
def _r_big_window(c: Context) -> str:
    _, acc = c.open(window=1000)
    c.bye(acc.stream_id)
    expect(acc.window is None and acc.commit is None,
           f"ACCEPT window/commit {(acc.window, acc.commit)} for window 1000 > "
           f"{acc.rounds_per_shot} rounds")
    return "ACCEPT window nil"


# §9: streams

@rule("whole-shot stream: one CORRECTION per shot, SHOT_END, zero flips", "§6.4 §7.1")
def _r_whole(c: Context) -> str:
    return _stream_commits(c, None, None)


@rule("window 4 commit 2: ranges per the committed-range rule, trigger round echoed", "§6.4 §7.1")
def _r_window(c: Context) -> str:
    return _stream_commits(c, 4, 2)


@rule("window 3 commit 3 (commit = window)", "§7.1")
def _r_window_eq(c: Context) -> str:
    return _stream_commits(c, 3, 3)


def _stream_commits(c: Context, window: int | None, commit: int | None) -> str:
    keys = {} if window is None else {"window": window, "commit": commit}
    _, acc = c.open(**keys)
    R, shots = acc.rounds_per_shot, 2
    want = [(j * R + f, j * R + la, j * R + t) for j in range(shots)
            for f, la, t in committed_ranges(R, window, commit)]
    for r in range(shots * R):
        c.a.send(syndrome(acc, r, ts=1000 + r))
    got = []
    while len(got) < len(want):
        h, p = c.a.wait(lambda h: h.stream_id == acc.stream_id, "CORRECTION")
        expect(h.msg_type == P.MsgType.CORRECTION, f"a {P.MsgType(h.msg_type).name}"
               + (f" {P.decode_error(h, p)}" if h.msg_type == 5 else ""))
        k = P.decode_correction(h, p)
        expect(h.timestamp_ns == 1000 + h.round, f"timestamp_ns {h.timestamp_ns} is not the "
               f"triggering SYNDROME's (round {h.round})")
        expect(not k.observables.any(), "flips on an all-zero syndrome")
        shot_last = (k.last_round // R) * R + R - 1
        expect(k.shot_end == (k.last_round == shot_last), f"SHOT_END {k.shot_end} on "
               f"{k.first_round}..{k.last_round}")
        got.append((k.first_round, k.last_round, h.round))
    bye = c.bye(acc.stream_id)
    expect(got == want, f"commits (first, last, trigger) {got[:6]} (expected {want[:6]})")
    expect(bye.round == shots * R, f"BYE round {bye.round} (expected next round {shots * R})")
    return f"{len(got)} commits over {shots} shots of {R} rounds"


@rule("multi-round SYNDROME (count > 1, across a shot boundary)", "§6.3")
def _r_multi(c: Context) -> str:
    _, acc = c.open()
    R = acc.rounds_per_shot
    c.a.send(syndrome(acc, 0, R + 2))
    h, p = c.a.wait(lambda h: h.stream_id == acc.stream_id, "CORRECTION")
    expect(h.msg_type == P.MsgType.CORRECTION and h.round == R + 1,
           f"{P.MsgType(h.msg_type).name} round {h.round}")
    bye = c.bye(acc.stream_id)
    expect(bye.round == R + 2, f"BYE round {bye.round} (expected {R + 2})")
    return "one packet of R+2 rounds committed shot 0"


@rule("ROUND_GAP with next_round, packet dropped, stream stays", "§8 §9")
def _r_gap(c: Context) -> str:
    _, acc = c.open()
    c.a.send(syndrome(acc, 0))
    d = _expect_error(c, syndrome(acc, 3, ts=9), P.ErrorCode.ROUND_GAP,
                      echo=(acc.stream_id, 3, 9), next_round=1, ref_type=3)
    _expect_error(c, syndrome(acc, 2), P.ErrorCode.ROUND_GAP, next_round=1)
    c.bye(acc.stream_id)
    return d


@rule("ROUND_DUPLICATE (duplicate and overlapping) with next_round", "§8 §9")
def _r_dup(c: Context) -> str:
    _, acc = c.open()
    c.a.send(syndrome(acc, 0, 2))
    d = _expect_error(c, syndrome(acc, 1), P.ErrorCode.ROUND_DUPLICATE, next_round=2)
    _expect_error(c, syndrome(acc, 1, 2), P.ErrorCode.ROUND_DUPLICATE, next_round=2)
    bye = c.bye(acc.stream_id)
    expect(bye.round == 2, f"BYE round {bye.round} (expected 2: the duplicates were dropped)")
    return d


@rule("SYNDROME of the wrong size or with a padding bit -> BAD_PAYLOAD, next_round", "§6.3")
def _r_payload(c: Context) -> str:
    _, acc = c.open()
    sizes = acc.slice_sizes
    good = syndrome(acc, 0)
    frame = P.encode_frame(P.MsgType.SYNDROME, good[32:] + b"\x00", stream_id=acc.stream_id,
                           count=1)
    d = _expect_error(c, frame, P.ErrorCode.BAD_PAYLOAD, next_round=0)
    if sizes[0] % 8:
        body = bytearray(good[32:])
        body[-1] |= 0x80
        frame = P.encode_frame(P.MsgType.SYNDROME, bytes(body), stream_id=acc.stream_id, count=1)
        _expect_error(c, frame, P.ErrorCode.BAD_PAYLOAD, next_round=0)
    c.bye(acc.stream_id)
    return d


@rule("UNKNOWN_STREAM for SYNDROME, HEARTBEAT, STATS, BYE of a never-issued stream", "§8 §9")
def _r_unknown(c: Context) -> str:
    sid = 0xFFFFFFF0
    d = _expect_error(c, P.encode_frame(P.MsgType.SYNDROME, b"", stream_id=sid, count=1),
                      P.ErrorCode.UNKNOWN_STREAM, next_round=0)
    for t in (P.MsgType.HEARTBEAT, P.MsgType.STATS, P.MsgType.BYE):
        _expect_error(c, P.encode_frame(t, stream_id=sid), P.ErrorCode.UNKNOWN_STREAM)
    return d


@rule("NOT_OWNER for another peer's stream (next_round 0: no state leaks)", "§8 §9")
def _r_not_owner(c: Context) -> str:
    _, acc = c.open()
    c.a.send(syndrome(acc, 0))
    d = _expect_error(c, syndrome(acc, 1), P.ErrorCode.NOT_OWNER, peer=c.b, next_round=0)
    for frame in (P.encode_stats(None, stream_id=acc.stream_id),
                  P.encode_heartbeat(stream_id=acc.stream_id),
                  P.encode_bye(stream_id=acc.stream_id)):
        _expect_error(c, frame, P.ErrorCode.NOT_OWNER, peer=c.b)
    bye = c.bye(acc.stream_id)
    expect(bye.round == 1, f"the owner's stream moved: BYE round {bye.round} (expected 1)")
    return d


def _resume(c: Context, peer: Peer, sid: int, token: bytes) -> tuple[P.Header, bytes]:
    seq = peer.next_seq()
    peer.send(P.encode_hello(P.Hello(resume=P.Resume(sid, token)), seq=seq,
                             timestamp_ns=seq * 3))
    return peer.wait(lambda h: h.round == seq and h.msg_type in (2, 5), "ACCEPT or ERROR")


@rule("resume: a new connection takes the stream at next_round with a fresh token; the old "
      "one gets NOT_OWNER", "§6.9 §9")
def _r_resume(c: Context) -> str:
    _, acc = c.open(window=4, commit=2)
    expect(acc.resume_token is not None, "ACCEPT without resume_token")
    for r in range(3):
        c.a.send(syndrome(acc, r))
    c.a.send(P.encode_heartbeat(stream_id=acc.stream_id, seq=77))  # in order after them
    c.a.wait(lambda h: h.msg_type == P.MsgType.HEARTBEAT and h.round == 77, "HEARTBEAT")
    new = c.peer()
    try:
        h, p = _resume(c, new, acc.stream_id, acc.resume_token)
        expect(h.msg_type == P.MsgType.ACCEPT, f"resume refused: "
               f"{P.decode_error(h, p).reason if h.msg_type == 5 else ''}")
        again = P.decode_accept(h, p)
        expect(again.stream_id == acc.stream_id == h.stream_id, "ACCEPT names another stream")
        expect(again.next_round == 3, f"next_round {again.next_round} (expected 3)")
        expect(again.slice_sizes == acc.slice_sizes and again.window == 4,
               "the resumed ACCEPT describes another stream")
        expect(again.resume_token not in (None, acc.resume_token), "no fresh resume_token")
        _expect_error(c, syndrome(acc, 3), P.ErrorCode.NOT_OWNER, next_round=0)
        h2, p2 = _resume(c, c.b, acc.stream_id, acc.resume_token)
        expect(h2.msg_type == P.MsgType.ERROR, "a spent token resumed the stream again")
        expect(P.decode_error(h2, p2).code == P.ErrorCode.UNKNOWN_STREAM,
               f"spent token: {_name(P.decode_error(h2, p2).code)} (expected UNKNOWN_STREAM)")
        bye = c.bye(acc.stream_id, new)
        expect(bye.round == 3, f"BYE round {bye.round} (expected 3)")
    finally:
        new.close()
    return f"stream {acc.stream_id} resumed at round 3"


@rule("resume with a wrong token, another stream's, or an unknown id -> one UNKNOWN_STREAM "
      "(same reason, stream 0, next_round 0)", "§6.9 §8")
def _r_resume_refused(c: Context) -> str:
    _, a = c.open()
    _, b = c.open()
    tries = [(a.stream_id, bytes(32)), (a.stream_id, b.resume_token),
             (max(a.stream_id, b.stream_id) + 100_000, a.resume_token)]
    reasons = set()
    for sid, tok in tries:
        h, p = _resume(c, c.b, sid, tok)
        expect(h.msg_type == P.MsgType.ERROR, f"resume of {sid} with a wrong token accepted")
        e = P.decode_error(h, p)
        expect(e.code == P.ErrorCode.UNKNOWN_STREAM and h.stream_id == 0 and e.next_round == 0,
               f"{_name(e.code)} stream {h.stream_id} next_round {e.next_round} (expected "
               "UNKNOWN_STREAM, 0, 0)")
        reasons.add(e.reason)
    expect(len(reasons) == 1, f"the refusals differ: {sorted(reasons)}")
    c.bye(a.stream_id)
    c.bye(b.stream_id)
    return f"UNKNOWN_STREAM: {reasons.pop()[:60]}"


@rule("BYE in the middle of a shot: no ERROR, BYE round = rounds received", "§9.5")
def _r_bye_mid_shot(c: Context) -> str:
    _, acc = c.open()
    n = max(1, acc.rounds_per_shot - 1)
    for r in range(n):
        c.a.send(syndrome(acc, r))
    seq = c.a.next_seq()
    c.a.send(P.encode_bye(stream_id=acc.stream_id, seq=seq, timestamp_ns=seq))
    while True:  # everything up to the BYE reply: no ERROR (SYNDROMES_DROPPED) among it
        got = c.a.recv()
        expect(got is not None, f"no BYE within {c.timeout_s:g} s")
        h, p = got
        if h.msg_type == P.MsgType.ERROR:
            raise Fail(f"ERROR {_name(P.decode_error(h, p).code)} after a BYE mid-shot "
                       "(expected the incomplete shot discarded silently)")
        if h.msg_type == P.MsgType.BYE and h.stream_id == acc.stream_id:
            break
    expect(h.round == n, f"BYE round {h.round} (expected {n})")
    c.a.send(P.encode_heartbeat(seq=4343))
    h, _ = c.a.wait(lambda h: True, "HEARTBEAT echo")
    expect(h.msg_type == P.MsgType.HEARTBEAT and h.round == 4343,
           f"a {P.MsgType(h.msg_type).name} after the BYE (expected nothing)")
    return f"BYE round {n}, nothing else"


@rule("ACCEPT or CORRECTION sent to the server -> UNEXPECTED_TYPE", "§8")
def _r_unexpected(c: Context) -> str:
    acc = P.Accept(stream_id=5, slice_sizes=(1,), num_observables=1)
    _expect_error(c, P.encode_accept(acc), P.ErrorCode.UNEXPECTED_TYPE, ref_type=2)
    corr = P.Correction(0, 0, np.zeros(1, np.uint8))
    return _expect_error(c, P.encode_correction(corr, stream_id=5),
                         P.ErrorCode.UNEXPECTED_TYPE, ref_type=4)


@rule("ERROR sent to the server is never answered", "§9.6")
def _r_error_silent(c: Context) -> str:
    c.a.send(P.encode_error(P.ErrorCode.BAD_PAYLOAD, "client could not parse", stream_id=0))
    c.a.send(P.encode_heartbeat(seq=4242))
    h, _ = c.a.wait(lambda h: True, "HEARTBEAT echo")
    expect(h.msg_type == P.MsgType.HEARTBEAT and h.round == 4242,
           f"a {P.MsgType(h.msg_type).name} came back before the HEARTBEAT echo")
    return "no reply"


@rule("HEARTBEAT echoed byte for byte (stream 0 and own stream)", "§9.4")
def _r_heartbeat(c: Context) -> str:
    frame = P.encode_heartbeat(seq=42, timestamp_ns=0x1122334455667788)
    c.a.send(frame)
    h, _ = c.a.wait(lambda h: h.msg_type == P.MsgType.HEARTBEAT, "HEARTBEAT")
    expect(P.encode_heartbeat(seq=h.round, timestamp_ns=h.timestamp_ns,
                              stream_id=h.stream_id) == frame, "echo differs")
    _, acc = c.open()
    frame = P.encode_heartbeat(stream_id=acc.stream_id, seq=43, timestamp_ns=5)
    c.a.send(frame)
    h, _ = c.a.wait(lambda h: h.msg_type == P.MsgType.HEARTBEAT, "HEARTBEAT")
    expect((h.stream_id, h.round, h.timestamp_ns) == (acc.stream_id, 43, 5), "echo differs")
    c.bye(acc.stream_id)
    return "echoed"


@rule("STATS reply echoes the request and is a msgpack map of the listed value types",
      "§6.6")
def _r_stats(c: Context) -> str:
    seq = c.a.next_seq()
    c.a.send(P.encode_stats(None, seq=seq, timestamp_ns=11))
    h, p = c.a.wait(lambda h: h.msg_type == P.MsgType.STATS, "STATS reply")
    expect((h.stream_id, h.round, h.timestamp_ns) == (0, seq, 11), "STATS echo differs")
    m = P.decode_stats(h, p)
    expect(isinstance(m, dict) and m, "empty STATS reply")
    return f"{len(m)} keys"


@rule("STATS 'dropped' keys are documented reasons", "§6.6")
def _r_dropped(c: Context) -> str:
    c.a.send(P.encode_error(P.ErrorCode.BAD_PAYLOAD, "x"))
    seq = c.a.next_seq()
    c.a.send(P.encode_stats(None, seq=seq))
    h, p = c.a.wait(lambda h: h.msg_type == P.MsgType.STATS, "STATS reply")
    dropped = P.decode_stats(h, p).get("dropped", {})
    allowed = set(P.ErrorCode.__members__) | set(DROP_REASONS)
    bad = sorted(set(dropped) - allowed)
    expect(not bad, f"undocumented keys {bad}")
    return f"keys {sorted(dropped)}"


#: the non-ErrorCode keys of STATS ``dropped`` (docs/protocol.md §6.6)
DROP_REASONS = ("ERROR", "error_budget", "corrections", "replies", "no_route",
                "internal_exception")


@rule("BYE: reply round = next round, incomplete shot discarded, stream gone after", "§9.5")
def _r_bye(c: Context) -> str:
    _, acc = c.open()
    R = acc.rounds_per_shot
    for r in range(R + 2):  # one whole shot and two rounds of the next
        c.a.send(syndrome(acc, r))
    h, _ = c.a.wait(lambda h: h.msg_type == P.MsgType.CORRECTION, "CORRECTION")
    bye = c.bye(acc.stream_id)
    expect(bye.round == R + 2, f"BYE round {bye.round} (expected {R + 2})")
    got = c.a.recv(0.3)
    expect(got is None or got[0].msg_type != P.MsgType.CORRECTION,
           "a CORRECTION for the incomplete shot after BYE")
    _expect_error(c, syndrome(acc, R + 2), P.ErrorCode.UNKNOWN_STREAM)
    return f"BYE round {bye.round}"


# §14: the ring transport

@rule("ring HELLO: ACCEPT names a region /dev/shm/qecd-*, mode 0600, geometry keys", "§6.2 §14")
def _r_ring_accept(c: Context) -> str:
    _, acc = c.open(transport="shm")
    try:
        expect(acc.shm_region is not None, "ACCEPT without shm_region")
        st = os.stat(f"/dev/shm/{acc.shm_region}")
        expect(stat.S_IMODE(st.st_mode) == 0o600, f"mode {oct(stat.S_IMODE(st.st_mode))}")
        return f"{acc.shm_region} {acc.shm_slots}x{acc.shm_slot_size}"
    finally:
        c.bye(acc.stream_id)


@contextlib.contextmanager
def _ring(c: Context, **keys) -> Iterator[tuple[P.Accept, object]]:
    from qecd.transport.shm.ring import RingPair

    _, acc = c.open(transport="shm", **keys)
    pair = RingPair.attach(acc.shm_region, side="client", n_slots=acc.shm_slots,
                           slot_size=acc.shm_slot_size)
    try:
        yield acc, pair
    finally:
        pair.close()
        with contextlib.suppress(Fail):
            c.bye(acc.stream_id)


def _ring_recv(pair, timeout_s: float) -> tuple[P.Header, bytes]:
    try:
        data = pair.recv_bytes(timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - a timeout or a dead peer is the verdict
        raise Fail(f"nothing in ring 1 within {timeout_s:g} s ({type(e).__name__})") from None
    h, p = P.parse_packet(data)
    return h, bytes(p)


@rule("ring: rounds in ring 0, CORRECTIONs per the committed-range rule in ring 1", "§14")
def _r_ring_stream(c: Context) -> str:
    with _ring(c, window=4, commit=2) as (acc, pair):
        R = acc.rounds_per_shot
        want = [(f, la) for f, la, _ in committed_ranges(R, 4, 2)]
        expect(acc.corrections_per_shot == len(want),
               f"corrections_per_shot {acc.corrections_per_shot} (expected {len(want)})")
        for r in range(R):
            pair.send_bytes(syndrome(acc, r), timeout=c.timeout_s)
        got = []
        while len(got) < len(want):
            h, p = _ring_recv(pair, c.timeout_s)
            expect(h.msg_type == P.MsgType.CORRECTION, f"a {P.MsgType(h.msg_type).name}")
            k = P.decode_correction(h, p)
            got.append((k.first_round, k.last_round))
        expect(got == want, f"commits {got} (expected {want})")
        return f"{len(got)} commits"


@rule("ring: SYNDROME over ZeroMQ for a ring stream -> UNEXPECTED_TYPE", "§14")
def _r_ring_zmq_syndrome(c: Context) -> str:
    with _ring(c) as (acc, _pair):
        return _expect_error(c, syndrome(acc, 0), P.ErrorCode.UNEXPECTED_TYPE)


@rule("ring: gap -> ERROR ROUND_GAP in ring 1 with next_round and a reason", "§14 §6.5")
def _r_ring_gap(c: Context) -> str:
    with _ring(c) as (acc, pair):
        pair.send_bytes(syndrome(acc, 2, ts=5), timeout=c.timeout_s)
        h, p = _ring_recv(pair, c.timeout_s)
        expect(h.msg_type == P.MsgType.ERROR, f"a {P.MsgType(h.msg_type).name}")
        e = P.decode_error(h, p)
        expect(e.code == P.ErrorCode.ROUND_GAP and e.next_round == 0,
               f"{_name(e.code)} next_round {e.next_round}")
        expect((h.stream_id, h.round, h.timestamp_ns) == (acc.stream_id, 2, 5), "echo differs")
        expect(e.reason.strip() != "", "ROUND_GAP with an empty reason (§6.5)")
        return e.reason[:70]


@rule("ring: HEARTBEAT echoed in ring 1", "§14")
def _r_ring_heartbeat(c: Context) -> str:
    with _ring(c) as (acc, pair):
        pair.send_bytes(P.encode_heartbeat(stream_id=acc.stream_id, seq=9, timestamp_ns=8),
                        timeout=c.timeout_s)
        h, _ = _ring_recv(pair, c.timeout_s)
        expect((h.msg_type, h.round, h.timestamp_ns) == (P.MsgType.HEARTBEAT, 9, 8),
               f"{P.MsgType(h.msg_type).name} round {h.round}")
        return "echoed"


@rule("ring: BYE -> BYE in ring 1 with round = next round, stream closed", "§14 §9.5")
def _r_ring_bye(c: Context) -> str:
    with _ring(c) as (acc, pair):
        for r in range(3):
            pair.send_bytes(syndrome(acc, r), timeout=c.timeout_s)
        pair.send_bytes(P.encode_bye(stream_id=acc.stream_id, seq=77), timeout=c.timeout_s)
        while True:
            h, _ = _ring_recv(pair, c.timeout_s)
            if h.msg_type == P.MsgType.BYE:
                break
        expect(h.round == 3, f"BYE round {h.round} (expected the next round, 3)")
        deadline = time.monotonic() + c.timeout_s
        while True:  # the server reaps the loop; then the stream id is unknown
            c.a.send(P.encode_heartbeat(stream_id=acc.stream_id, seq=c.a.next_seq()))
            got = c.a.recv()
            expect(got is not None, f"no reply to a HEARTBEAT within {c.timeout_s:g} s")
            if got[0].msg_type == P.MsgType.ERROR:
                e = P.decode_error(*got)
                expect(e.code == P.ErrorCode.UNKNOWN_STREAM, f"{_name(e.code)} to a HEARTBEAT")
                break
            expect(time.monotonic() < deadline, "stream still open after its ring BYE")
            time.sleep(0.05)
        expect(not os.path.exists(f"/dev/shm/{acc.shm_region}"), "region name left behind")
        return "BYE round 3, stream closed"


@rule("ring: a corrupt slot (length > slot) ends the stream with ERROR, not a stall", "§14")
def _r_ring_corrupt(c: Context) -> str:
    with _ring(c) as (acc, pair):
        region = pair.region
        ring0 = region.ring_offset(0)
        slot = ring0 + 384  # slot 0 of ring 0
        w = region.words
        w[(slot >> 3) + 1] = np.uint64(region.slot_size)  # a length no producer writes
        w[slot >> 3] = np.uint64(1)  # the doorbell of message 0
        t0 = time.monotonic()
        h, p = _ring_recv(pair, min(c.timeout_s, 3.0))
        expect(h.msg_type == P.MsgType.ERROR, f"a {P.MsgType(h.msg_type).name}")
        e = P.decode_error(h, p)
        expect(e.reason.strip() != "", "an ERROR with an empty reason")
        c.a.wait(lambda h: h.msg_type == P.MsgType.BYE and h.stream_id == acc.stream_id,
                 "BYE over ZeroMQ ending the stream", timeout_s=3.0)
        return f"{_name(e.code)} after {time.monotonic() - t0:.2f} s: {e.reason[:50]}"


RING_RULES = {r for r, s, _ in RULES if r.startswith("ring")}


def run_conformance(endpoint: str, *, spec: str = DEFAULT_SPEC, timeout_s: float = 5.0,
                    shm: bool = True, only: str | None = None) -> list[Outcome]:
    """Run every rule against the server at ``endpoint``; one :class:`Outcome` per rule.

    Parameters
    ----------
    endpoint : str
        ZeroMQ endpoint of the server (``tcp://host:port`` or ``ipc://path``).
    spec : str
        Experiment the stream rules open (rounds of different sizes help).
    timeout_s : float
        Longest wait for any single reply.
    shm : bool
        Include the §14 ring rules (the server must run on this host).
    only : str, optional
        Run only rules whose id contains this text.
    """
    ctx = zmq.Context.instance()
    out = []
    for rule_id, section, fn in RULES:
        if (not shm and rule_id in RING_RULES) or (only and only not in rule_id):
            continue
        a, b = Peer(ctx, endpoint, timeout_s), Peer(ctx, endpoint, timeout_s)
        c = Context(ctx, endpoint, spec, timeout_s, a, b)
        try:
            detail = fn(c)
            out.append(Outcome(rule_id, section, True, detail or ""))
        except Fail as e:
            out.append(Outcome(rule_id, section, False, str(e)))
        except Exception as e:  # noqa: BLE001 - a rule that crashes fails, with the reason
            out.append(Outcome(rule_id, section, False, f"{type(e).__name__}: {e}"))
        finally:
            a.close()
            b.close()
    return out


def format_table(results: list[Outcome]) -> str:
    """A fixed-width pass/fail table, one rule per line, and a total."""
    width = max(len(r.rule) for r in results)
    lines = [f"{'result':6}  {'rule':{width}}  {'section':10}  detail"]
    for r in results:
        detail = r.detail if len(r.detail) <= 90 else r.detail[:87] + "..."
        lines.append(f"{'PASS' if r.passed else 'FAIL':6}  {r.rule:{width}}  {r.section:10}  "
                     f"{detail}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)
