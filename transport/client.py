"""The blocking qecd client: open streams, push rounds, receive corrections.

One :class:`Client` is one ZeroMQ DEALER connection; it can own many streams. Replies of
every stream arrive on that one socket; :meth:`Client.recv` returns them in arrival order,
and :meth:`Stream.recv` (or :meth:`Stream.recv_correction`) returns the next one of its
stream, keeping the others for later calls. Requests that wait for an answer (HELLO, STATS,
HEARTBEAT, BYE) keep every other reply that arrives meanwhile, so nothing is lost.

Errors from the server raise :class:`ServerError`, which carries the ERROR's code
(:class:`~qecd.transport.wire.ErrorCode`), reason, stream id and the ``next_round``
the server expects; a wait that runs out raises :class:`ServerTimeout` (a
:class:`TimeoutError`). With CURVE on, a server that refuses the client's key raises
:class:`AuthenticationFailed` on the first wait instead of a bare timeout.

Liveness: the server frees a stream whose owner has been silent for ``accept.timeout_ms``;
a client that idles (sends no rounds) should call :meth:`Client.heartbeat` at least every
``accept.heartbeat_ms`` (this client does not do it behind your back).

Flow control: ``send`` blocks while ZeroMQ's queue to the server is full (the server's
backpressure) for at most ``timeout_s``, then raises :class:`ServerTimeout`. The server
never blocks on a reply, so a client must read its replies: keep the rounds in flight
(sent, not yet covered by a correction) well under the server's send high-water mark.

Example
-------
>>> import numpy as np
>>> from qecd.transport.server import Server, ServerConfig
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     with Client(server.endpoints[0]) as client:
...         stream = client.open_stream("repetition:d=3,r=2,p=0.01")
...         for size in stream.slice_sizes:            # one shot, round by round
...             _ = stream.send_round(np.zeros(size, np.uint8))
...         c = stream.recv_correction(timeout_s=5)
...         final_round = stream.close()
>>> c.first_round, c.last_round, c.shot_end, c.observables.tolist(), final_round
(0, 2, True, [0], 3)
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import zmq

from qecd.errors import ProtocolError, QecdError
from qecd.transport.auth import CurveClientKeys, configure_client_socket
from qecd.transport.wire import (
    HEADER_SIZE,
    Accept,
    Correction,
    ErrorCode,
    ErrorInfo,
    Hello,
    MsgType,
    SyndromeLayout,
    decode_body,
    encode_bye,
    encode_heartbeat,
    encode_hello,
    encode_stats,
    pack_header_into,
    pack_syndrome_into,
    parse_packet,
)

__all__ = ["Client", "Stream", "Reply", "ServerError", "ServerTimeout", "AuthenticationFailed",
           "decode_reply"]

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


class _Inbox:
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


def _hello(spec: str | None, dem: str | None, decoder: str, window: int | None,
           commit: int | None, want_faults: bool, time_coord: int) -> Hello:
    if (spec is None) == (dem is None):
        raise ValueError("open_stream: expected exactly one of spec and dem")
    return Hello(spec=spec, dem=dem, time_coord=time_coord if dem is not None else -1,
                 decoder=decoder, window=window, commit=commit, want_faults=want_faults)


def _round_layout(spec: str | None, dem: str | None, time_coord: int):
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


class Client:
    """A blocking client connection (one DEALER socket).

    Parameters
    ----------
    endpoint : str
        ``tcp://host:port`` or ``ipc:///path``.
    curve : CurveClientKeys, optional
        CURVE keys (the server's public key included) when the server requires them.
    timeout_s : float
        Default wait for replies and for room to send.
    hwm : int
        SNDHWM and RCVHWM of the socket (messages).
    context : zmq.Context, optional
        Defaults to ``zmq.Context.instance()``.
    """

    def __init__(self, endpoint: str, *, curve: CurveClientKeys | None = None,
                 timeout_s: float = 10.0, hwm: int = 10_000,
                 context: zmq.Context | None = None) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        ctx = context or zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        self._monitor = None
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, hwm)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.SNDTIMEO, int(timeout_s * 1000))
            if curve is not None:
                configure_client_socket(sock, curve)
                # a unique address: pyzmq's default names it after the socket's fd, which a
                # later socket may reuse while the old monitor endpoint still lingers
                addr = f"inproc://qecd-client-monitor-{next(_MONITOR_IDS)}"
                sock.monitor(addr, zmq.EVENT_HANDSHAKE_FAILED_AUTH
                             | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                             | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
                self._monitor = ctx.socket(zmq.PAIR)
                self._monitor.connect(addr)
            sock.connect(endpoint)
        except BaseException:
            sock.close(0)
            raise
        self.socket = sock
        self._inbox = _Inbox()
        self._seq = 0
        self.streams: dict[int, Stream] = {}
        self._closed = False
        self._refused: AuthenticationFailed | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (LINGER 0; streams are left to the server's timeout unless
        closed first). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._monitor is not None:
            self.socket.disable_monitor()
            self._monitor.close(0)
        self.socket.close(0)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # -- raw I/O --------------------------------------------------------------------------
    def send_frame(self, frame: bytes | memoryview | bytearray) -> None:
        """Send one raw packet (blocks at most ``timeout_s`` while the queue is full)."""
        if self._refused is not None:
            raise self._refused
        if self._monitor is not None and not self.socket.poll(0, zmq.POLLOUT):
            # no peer yet (CURVE handshake pending or refused): wait, watching the handshake
            deadline = time.perf_counter() + self.timeout_s
            while not self.socket.poll(50, zmq.POLLOUT):
                self._check_auth()
                if time.perf_counter() > deadline:
                    break
        try:
            self.socket.send(frame, copy=True)
        except zmq.Again:
            self._check_auth()  # a refused CURVE handshake leaves no peer to send to
            raise ServerTimeout(f"send: no room in the queue to {self.endpoint} for "
                                f"{self.timeout_s} s (the server is not reading)") from None

    def _check_auth(self) -> None:
        """Raise AuthenticationFailed if the CURVE handshake was refused (sticky: ZeroMQ does
        not retry a connection the server refused)."""
        if self._monitor is None:
            return
        if self._refused is not None:
            raise self._refused
        from zmq.utils.monitor import recv_monitor_message

        while self._monitor.poll(0):
            ev = recv_monitor_message(self._monitor)
            if ev["event"] in (zmq.EVENT_HANDSHAKE_FAILED_AUTH,
                               zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                               zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._refused = AuthenticationFailed(
                    f"CURVE handshake with {self.endpoint} failed (event {ev['event']}, "
                    f"status {ev['value']}): the server refused this client's key")
                raise self._refused

    def _recv_one(self, deadline: float) -> Reply | None:
        """Receive one packet before ``deadline`` (perf_counter seconds), or None."""
        remaining = deadline - time.perf_counter()
        if self._monitor is not None:  # look at the CURVE handshake every 100 ms
            while remaining > 0.1 and not self.socket.poll(100):
                self._check_auth()
                remaining = deadline - time.perf_counter()
        if remaining <= 0 or not self.socket.poll(max(0, int(remaining * 1000) + 1)):
            return None
        frame = self.socket.recv(copy=True)
        return decode_reply(frame, time.perf_counter_ns())

    def _wait(self, match: Callable[[Reply], bool] | None, timeout_s: float | None,
              what: str) -> Reply:
        r = self._inbox.take(match)
        if r is not None:
            return r
        deadline = time.perf_counter() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            r = self._recv_one(deadline)
            if r is None:
                self._check_auth()
                raise ServerTimeout(f"{what}: no reply from {self.endpoint} within "
                                    f"{self.timeout_s if timeout_s is None else timeout_s} s")
            if match is None or match(r):
                return r
            self._inbox.put(r)

    def poll(self) -> Reply | None:
        """The next reply if one is already here (no waiting), else None."""
        r = self._inbox.take(None)
        if r is not None:
            return r
        if not self.socket.poll(0):
            return None
        return decode_reply(self.socket.recv(copy=True), time.perf_counter_ns())

    def recv(self, timeout_s: float | None = None, *, raise_errors: bool = True) -> Reply:
        """The next reply of any stream (ERROR replies raise ServerError unless
        ``raise_errors`` is False)."""
        r = self._wait(None, timeout_s, "recv")
        if raise_errors and r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    # -- requests -------------------------------------------------------------------------
    def _request(self, frame: bytes, types: tuple[int, ...], timeout_s: float | None,
                 what: str) -> Reply:
        """Send a request and wait for its answer: a reply of one of ``types`` echoing the
        request's stream id and ``round`` (BYE: its ``timestamp_ns``), or an ERROR about it."""
        self.send_frame(frame)
        r = self._wait(reply_matcher(frame, types), timeout_s, what)
        if r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    def open_stream(self, spec: str | None = None, *, dem: str | None = None,
                    decoder: str = "pymatching", window: int | None = None,
                    commit: int | None = None, want_faults: bool = False, time_coord: int = -1,
                    timeout_s: float = HELLO_TIMEOUT_S) -> Stream:
        """Open a stream (HELLO, wait for ACCEPT) for a spec string or a stim DEM text.

        Raises ServerError (e.g. BAD_HELLO, SERVER_BUSY, SHUTTING_DOWN) or ServerTimeout.
        """
        hello = _hello(spec, dem, decoder, window, commit, want_faults, time_coord)
        seq = self._next_seq()
        frame = encode_hello(hello, seq=seq, timestamp_ns=time.perf_counter_ns())
        r = self._request(frame, (MsgType.ACCEPT,), timeout_s, "open_stream")
        stream = Stream(self, r.body)
        self.streams[stream.stream_id] = stream
        return stream

    def open_shm_stream(self, spec: str | None = None, *, dem: str | None = None,
                        decoder: str = "uf", window: int | None = None,
                        commit: int | None = None, want_faults: bool = False,
                        time_coord: int = -1, timeout_s: float = HELLO_TIMEOUT_S):
        """Open a shared-memory stream: HELLO with ``transport="shm"`` over this connection,
        then attach to the ring pair the ACCEPT names (same host only; any decoder: ``uf``
        runs in the server's Numba loop end to end, others are called from it per window).

        Returns a :class:`~qecd.transport.shm.streams.ShmStreamClient` (its ``accept``
        attribute holds the ACCEPT) whose ``stream_shots`` / ``ping`` / ``bye`` use the ring.
        The round layout is rebuilt locally from ``spec`` (or ``dem``) and checked against the
        ACCEPT's ``slice_sizes``. Close it over the ring (``bye()`` then ``close()``) or over
        ZeroMQ (:meth:`bye` with its ``stream_id``). Raises ServerError (e.g. BAD_HELLO),
        ServerTimeout, or QecdError if the ACCEPT names no region.
        """
        from qecd.transport.shm.streams import ShmStreamClient

        hello = _hello(spec, dem, decoder, window, commit, want_faults, time_coord)
        hello = hello._replace(transport="shm")
        layout = _round_layout(spec, dem, time_coord)
        seq = self._next_seq()
        frame = encode_hello(hello, seq=seq, timestamp_ns=time.perf_counter_ns())
        accept: Accept = self._request(frame, (MsgType.ACCEPT,), timeout_s,
                                       "open_shm_stream").body
        try:
            if accept.shm_region is None:
                raise QecdError(f"stream {accept.stream_id}: ACCEPT names no shared-memory "
                                "region (a server without shm support?)")
            if tuple(layout.round_sizes) != tuple(accept.slice_sizes):
                raise QecdError(f"stream {accept.stream_id}: local round layout "
                                f"{tuple(layout.round_sizes)} differs from the ACCEPT's "
                                f"slice_sizes {accept.slice_sizes}")
            cli = ShmStreamClient.attach(accept.shm_region, layout,
                                         stream_id=accept.stream_id,
                                         corrections_per_shot=accept.corrections_per_shot)
        except BaseException:
            try:
                self.bye(accept.stream_id, timeout_s=5.0)
            except QecdError:
                pass
            raise
        cli.accept = accept
        return cli

    def bye(self, stream_id: int, timeout_s: float | None = None) -> int:
        """BYE a stream over ZeroMQ (any transport) and wait for the server's BYE; returns
        the stream's final next round."""
        frame = encode_bye(stream_id=stream_id, seq=self._next_seq(),
                           timestamp_ns=time.perf_counter_ns())
        r = self._request(frame, (MsgType.BYE,), timeout_s, "bye")
        self.streams.pop(stream_id, None)
        return r.seq

    def heartbeat(self, stream_id: int = 0, timeout_s: float | None = None) -> int:
        """Send HEARTBEAT and wait for its echo; returns the round trip in ns."""
        seq = self._next_seq()
        t = time.perf_counter_ns()
        r = self._request(encode_heartbeat(stream_id=stream_id, seq=seq, timestamp_ns=t),
                          (MsgType.HEARTBEAT,), timeout_s, "heartbeat")
        return r.recv_ns - t

    def stats(self, stream_id: int = 0, timeout_s: float | None = None) -> dict:
        """STATS of the whole server (``stream_id`` 0) or of one of this client's streams."""
        seq = self._next_seq()
        frame = encode_stats(None, stream_id=stream_id, seq=seq,
                             timestamp_ns=time.perf_counter_ns())
        return self._request(frame, (MsgType.STATS,), timeout_s, "stats").body


class Stream:
    """An open stream of a :class:`Client` (made by :meth:`Client.open_stream`).

    Attributes
    ----------
    stream_id : int
    accept : Accept
        What the server announced (layout, settings, limits).
    layout : SyndromeLayout
    next_round : int
        The round :meth:`send_round` sends next (absolute, across shots).
    """

    def __init__(self, client: Client, accept: Accept) -> None:
        self.client = client
        self.accept = accept
        self.stream_id = accept.stream_id
        self.layout = SyndromeLayout(accept.slice_sizes)
        self.next_round = 0
        self._buf = bytearray(HEADER_SIZE + max(self.layout.shot_bytes, 1))

    @property
    def slice_sizes(self) -> tuple[int, ...]:
        return self.accept.slice_sizes

    @property
    def rounds_per_shot(self) -> int:
        return self.accept.rounds_per_shot

    @property
    def num_observables(self) -> int:
        return self.accept.num_observables

    def send_round(self, bits: np.ndarray, *, count: int = 1,
                   timestamp_ns: int | None = None) -> int:
        """Send ``count`` rounds from :attr:`next_round`: ``bits`` holds their detection
        events concatenated (uint8/bool 0/1, each round's detectors in wire order). Returns
        the first round sent."""
        first = self.next_round
        need = HEADER_SIZE + self.layout.payload_len(first, count)
        if need > len(self._buf):
            self._buf = bytearray(need)
        ts = time.perf_counter_ns() if timestamp_ns is None else timestamp_ns
        n = pack_syndrome_into(self._buf, 0, bits, self.layout, stream_id=self.stream_id,
                               first_round=first, count=count, timestamp_ns=ts)
        self.client.send_frame(memoryview(self._buf)[:n])
        self.next_round = first + count
        return first

    def send_payload(self, payload: bytes | memoryview, *, count: int = 1,
                     timestamp_ns: int | None = None) -> int:
        """Like :meth:`send_round` with the rounds already bit-packed (stim's little bit
        order, each round padded to a byte; see docs/protocol.md §6.3)."""
        first = self.next_round
        n = len(payload)
        if HEADER_SIZE + n > len(self._buf):
            self._buf = bytearray(HEADER_SIZE + n)
        ts = time.perf_counter_ns() if timestamp_ns is None else timestamp_ns
        pack_header_into(self._buf, 0, MsgType.SYNDROME, count=count, stream_id=self.stream_id,
                         seq=first, timestamp_ns=ts, payload_len=n)
        self._buf[HEADER_SIZE:HEADER_SIZE + n] = memoryview(payload)
        self.client.send_frame(memoryview(self._buf)[:HEADER_SIZE + n])
        self.next_round = first + count
        return first

    def recv(self, timeout_s: float | None = None, *, raise_errors: bool = True) -> Reply:
        """The next reply about this stream (others are kept for their own ``recv``)."""
        sid = self.stream_id
        r = self.client._wait(lambda r: r.stream_id == sid, timeout_s, f"stream {sid} recv")
        if raise_errors and r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    def recv_correction(self, timeout_s: float | None = None) -> Correction:
        """The next CORRECTION of this stream; an ERROR (or BYE) for it raises ServerError
        (or QecdError)."""
        r = self.recv(timeout_s)
        if r.msg_type != MsgType.CORRECTION:
            raise QecdError(f"stream {self.stream_id}: expected a CORRECTION, got "
                            f"{MsgType(r.msg_type).name}")
        return r.body

    def stats(self, timeout_s: float | None = None) -> dict:
        """This stream's STATS."""
        return self.client.stats(self.stream_id, timeout_s)

    def close(self, timeout_s: float | None = None) -> int:
        """Send BYE, wait for the server's BYE; returns the stream's final next round.
        Corrections still in flight before the BYE stay readable with :meth:`recv`."""
        frame = encode_bye(stream_id=self.stream_id, seq=self.client._next_seq(),
                           timestamp_ns=time.perf_counter_ns())
        r = self.client._request(frame, (MsgType.BYE,), timeout_s, "close")
        self.client.streams.pop(self.stream_id, None)
        return r.seq
