"""What the blocking and the asyncio clients share, free of I/O: errors, replies, the rule
that pairs a request with its answer, the inbox of replies not yet handed out, HELLO building,
and the DEALER socket's set-up (CURVE included). :mod:`qecd.transport.client` and
:mod:`qecd.transport.aio_client` differ only in how they wait.

Example
-------
>>> from qecd.transport.wire import encode_heartbeat, MsgType
>>> r = decode_reply(encode_heartbeat(seq=4, timestamp_ns=9))
>>> reply_matcher(encode_heartbeat(seq=4), (MsgType.HEARTBEAT,))(r)
True
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import zmq

from qecd.errors import ProtocolError, QecdError
from qecd.transport.auth import CurveClientKeys, configure_client_socket
from qecd.transport.pqc import ClientHandshake, PqPin, PqSession
from qecd.transport.wire import (
    HEADER_SIZE,
    RESUME_TOKEN_BYTES,
    ErrorCode,
    ErrorInfo,
    Hello,
    MsgType,
    Resume,
    decode_body,
    encode_hello,
    parse_packet,
)

_MONITOR_IDS = itertools.count()
HELLO_TIMEOUT_S = 60.0  #: docs/protocol.md §6.1: building a decoder can take seconds


class ServerError(QecdError):
    """The server answered ERROR.

    Attributes
    ----------
    code : ErrorCode or int
    reason : str
    stream_id : int
        The stream the ERROR is about (0 if none).
    next_round : int
        For SYNDROME errors of a known stream: the round to resend from.
    ref_type : int
        ``msg_type`` of the packet that was rejected.
    seq : int
        The rejected packet's ``round`` field (its first round, or request number).
    """

    def __init__(self, info: ErrorInfo, *, stream_id: int = 0, seq: int = 0) -> None:
        self.code = info.code
        self.reason = info.reason
        self.next_round = info.next_round
        self.ref_type = info.ref_type
        self.stream_id = stream_id
        self.seq = seq
        super().__init__(f"server ERROR {self.code_name} ({int(self.code)}) on stream "
                         f"{stream_id}: {info.reason}")

    @property
    def code_name(self) -> str:
        """The code's name (``"ROUND_GAP"``), or its number if this client does not know it."""
        try:
            return ErrorCode(self.code).name
        except ValueError:
            return str(int(self.code))


class ServerTimeout(QecdError, TimeoutError):
    """No reply (or no room to send) within the timeout."""


class AuthenticationFailed(QecdError, ConnectionRefusedError):
    """The server refused this client's CURVE key (handshake failed)."""


class Reply(NamedTuple):
    """One packet from the server.

    Attributes
    ----------
    msg_type : int
        A :class:`~qecd.transport.wire.MsgType`.
    stream_id, seq, timestamp_ns : int
        Header fields (``seq`` is the header's ``round``).
    body : object
        Decoded body: Correction, ErrorInfo, Accept, dict (STATS) or None.
    recv_ns : int
        ``time.perf_counter_ns()`` right after the packet was received.
    """

    msg_type: int
    stream_id: int
    seq: int
    timestamp_ns: int
    body: object
    recv_ns: int

    @property
    def error(self) -> ServerError | None:
        """The ServerError of an ERROR reply, else None."""
        if self.msg_type != MsgType.ERROR:
            return None
        return ServerError(self.body, stream_id=self.stream_id, seq=self.seq)


def decode_reply(frame: bytes | memoryview, recv_ns: int = 0) -> Reply:
    """Parse and decode one server packet (raises ProtocolError if it is malformed).

    Examples
    --------
    >>> from qecd.transport.wire import encode_heartbeat
    >>> r = decode_reply(encode_heartbeat(seq=4, timestamp_ns=9))
    >>> MsgType(r.msg_type).name, r.seq, r.timestamp_ns
    ('HEARTBEAT', 4, 9)
    """
    header, payload = parse_packet(frame)
    if header.msg_type in (MsgType.SYNDROME, MsgType.HELLO):
        raise ProtocolError(ErrorCode.UNEXPECTED_TYPE, f"field 'msg_type': "
                            f"{MsgType(header.msg_type).name} is only sent by clients")
    body = decode_body(header, payload)
    return Reply(header.msg_type, header.stream_id, header.round, header.timestamp_ns, body,
                 recv_ns)


class Inbox:
    """Replies received but not yet handed out, in arrival order."""

    def __init__(self) -> None:
        self._q: deque[Reply] = deque()

    def take(self, match: Callable[[Reply], bool] | None) -> Reply | None:
        if not self._q:
            return None
        if match is None:
            return self._q.popleft()
        for i, r in enumerate(self._q):
            if match(r):
                del self._q[i]
                return r
        return None

    def put(self, r: Reply) -> None:
        self._q.append(r)

    def __len__(self) -> int:
        return len(self._q)


def hello_for(spec: str | None, dem: str | None, decoder: str, window: int | None,
           commit: int | None, want_faults: bool, time_coord: int, *,
           circuit: str | None = None, input: str = "detectors",
           describe: bool = False) -> Hello:
    if sum(x is not None for x in (spec, dem, circuit)) != 1:
        raise ValueError("open_stream: expected exactly one of spec, dem and circuit")
    return Hello(spec=spec, dem=dem, time_coord=time_coord if spec is None else -1,
                 decoder=decoder, window=window, commit=commit, want_faults=want_faults,
                 describe=describe, circuit=circuit, input=input)


class PqOpen:
    """One HELLO of a client that pins a server's post-quantum key (docs/protocol.md §6.8):
    the frame to send, and :meth:`finish` to check the ACCEPT. Without a pin it is the plain
    HELLO and :meth:`finish` returns None.

    Parameters
    ----------
    pin : PqPin or None
    curve : CurveClientKeys or None
        The connection's CURVE keys (they enter the handshake's transcript).
    hello : Hello
    resume : PqSession, optional
        Take over that session's open stream (its token and proof go in the HELLO).
    seq : int
    """

    def __init__(self, pin: PqPin | None, curve: CurveClientKeys | None, hello: Hello, *,
                 resume: PqSession | None = None, seq: int) -> None:
        self.handshake = None
        if resume is not None and pin is None:
            raise ValueError("open_stream(resume=...): expected a client with a pinned "
                             "post-quantum key (pq=PqPin...), got pq=None")
        if pin is not None:
            self.handshake = ClientHandshake(
                pin, curve_client=curve.public if curve else None,
                curve_server=curve.server_public if curve else None)
            hello = self.handshake.hello(hello, resume)
        self.frame = encode_hello(hello, seq=seq, timestamp_ns=time.perf_counter_ns())

    def finish(self, accept) -> PqSession | None:
        """The PqSession of the ACCEPT (None without a pin); raises PqHandshakeError."""
        if self.handshake is None:
            return None
        return self.handshake.finish(self.frame[HEADER_SIZE:], accept)


def resume_frame(stream_id: int, token: bytes, seq: int) -> bytes:
    """The HELLO that takes over open stream ``stream_id`` with ``token`` (the
    ``resume_token`` of its latest ACCEPT, docs/protocol.md §6.9).

    >>> from qecd.transport.wire import decode_hello
    >>> decode_hello(*parse_packet(resume_frame(7, bytes(32), 1))).resume.stream_id
    7
    """
    if not isinstance(stream_id, int) or not 1 <= stream_id <= 0xFFFF_FFFF:
        raise ValueError(f"resume_stream: stream_id: expected an int in 1..2**32-1, got "
                         f"{stream_id!r}")
    if not isinstance(token, (bytes, bytearray, memoryview)) or len(token) != RESUME_TOKEN_BYTES:
        got = f"{len(token)} bytes" if isinstance(token, (bytes, bytearray, memoryview)) \
            else type(token).__name__
        raise ValueError(f"resume_stream: token: expected the {RESUME_TOKEN_BYTES}-byte "
                         f"resume_token of the stream's latest ACCEPT, got {got}")
    return encode_hello(Hello(resume=Resume(stream_id, bytes(token))), seq=seq,
                        timestamp_ns=time.perf_counter_ns())


def round_layout(spec: str | None, dem: str | None, time_coord: int):
    """The RoundLayout the server will use for this spec or DEM text (built locally)."""
    if spec is not None:
        from qecd.codes import build_experiment

        return build_experiment(spec).layout
    import stim

    from qecd.codes import RoundLayout

    return RoundLayout.from_dem(stim.DetectorErrorModel(dem), time_coord=time_coord)


def reply_matcher(frame: bytes, types: tuple[int, ...]) -> Callable[[Reply], bool]:
    """The rule that pairs a request with its answer (shared by both clients): a reply of one
    of ``types`` echoing the request's stream id and ``round`` (an ACCEPT answers a HELLO;
    a BYE echoes the request's ``timestamp_ns``), or an ERROR about that request."""
    h = parse_packet(frame)[0]

    def match(r: Reply) -> bool:
        if r.stream_id != h.stream_id and not (r.msg_type == MsgType.ACCEPT
                                               and h.msg_type == MsgType.HELLO):
            return False
        if r.msg_type == MsgType.ERROR:
            return r.body.ref_type == h.msg_type and r.seq == h.round
        if r.msg_type == MsgType.BYE:
            return MsgType.BYE in types and r.timestamp_ns == h.timestamp_ns
        return r.msg_type in types and r.seq == h.round

    return match


def checked_streams(stream_id: int, streams: dict) -> list[int]:
    """The stream ids a HEARTBEAT call names: the one asked for, else every open stream (so
    a server that lost them says so), else 0 (an anonymous echo).

    >>> checked_streams(0, {}), checked_streams(0, {3: None, 5: None}), checked_streams(7, {3: 0})
    ([0], [3, 5], [7])
    """
    if stream_id or not streams:
        return [stream_id]
    return list(streams)


def dealer_socket(ctx: zmq.Context, endpoint: str, *, curve: CurveClientKeys | None = None,
                  hwm: int = 10_000, send_timeout_ms: int | None = None,
                  watch_auth: bool = False) -> tuple[zmq.Socket, zmq.Socket | None]:
    """A connected DEALER socket set up as both clients need it (LINGER 0, HWMs, CURVE), and,
    with ``watch_auth``, a PAIR socket receiving its failed-handshake events (else None).
    ``ctx`` may be a ``zmq.Context`` or a ``zmq.asyncio.Context``."""
    sock = ctx.socket(zmq.DEALER)
    monitor = None
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        if send_timeout_ms is not None:
            sock.setsockopt(zmq.SNDTIMEO, send_timeout_ms)
        if curve is not None:
            configure_client_socket(sock, curve)
        if watch_auth:
            # a unique address: pyzmq's default names it after the socket's fd, which a
            # later socket may reuse while the old monitor endpoint still lingers
            addr = f"inproc://qecd-client-monitor-{next(_MONITOR_IDS)}"
            sock.monitor(addr, zmq.EVENT_HANDSHAKE_FAILED_AUTH
                         | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            monitor = ctx.socket(zmq.PAIR)
            monitor.connect(addr)
        sock.connect(endpoint)
    except BaseException:
        sock.close(0)
        if monitor is not None:
            monitor.close(0)
        raise
    return sock, monitor
