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

import time
from collections.abc import Callable

import numpy as np
import zmq

from qecd.decoder.registry import DEFAULT_STREAM_DECODER
from qecd.errors import QecdError
from qecd.transport._client_core import (
    HELLO_TIMEOUT_S,
    AuthenticationFailed,
    Inbox,
    PqOpen,
    Reply,
    ServerError,
    ServerTimeout,
    checked_streams,
    dealer_socket,
    decode_reply,
    hello_for,
    reply_matcher,
    resume_frame,
    round_layout,
)
from qecd.transport.auth import CurveClientKeys
from qecd.transport.pqc import PqPin, PqSession
from qecd.transport.round_batch import (
    RoundBatch,
    batch_for,
    check_rounds_per_packet,
    unsent,
    warn_unsent,
)
from qecd.transport.wire import (
    DEFAULT_DECODER,
    HEADER_SIZE,
    Accept,
    Correction,
    MsgType,
    encode_bye,
    encode_heartbeat,
    encode_stats,
    pack_header_into,
    pack_syndrome_into,
)

__all__ = ["Client", "Stream", "Reply", "ServerError", "ServerTimeout", "AuthenticationFailed",
           "decode_reply"]

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
    pq : PqPin, optional
        Run the post-quantum handshake on every HELLO (docs/protocol.md §6.8) against this
        pinned ML-DSA-65 server key (``PqPin.from_file("server.mldsa")``): an ACCEPT that does
        not check out raises :class:`~qecd.transport.pqc.PqHandshakeError` (the stream is
        closed), and each :class:`Stream` keeps its ``pq`` session (token, session key).
    """

    def __init__(self, endpoint: str, *, curve: CurveClientKeys | None = None,
                 timeout_s: float = 10.0, hwm: int = 10_000,
                 context: zmq.Context | None = None, pq: PqPin | None = None) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.pq = pq
        self.timeout_s = timeout_s
        self.socket, self._monitor = dealer_socket(
            context or zmq.Context.instance(), endpoint, curve=curve, hwm=hwm,
            send_timeout_ms=int(timeout_s * 1000), watch_auth=curve is not None)
        self._inbox = Inbox()
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
        closed first; rounds a stream gathered and did not send are dropped, with a
        warning). Idempotent."""
        if self._closed:
            return
        self._closed = True
        warn_unsent(self.streams.values())
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
                    decoder: str = DEFAULT_DECODER, window: int | None = None,
                    commit: int | None = None, want_faults: bool = False, time_coord: int = -1,
                    timeout_s: float = HELLO_TIMEOUT_S, circuit: str | None = None,
                    input: str = "detectors", describe: bool = False,
                    resume: PqSession | None = None, rounds_per_packet: int = 1) -> Stream:
        """Open a stream (HELLO, wait for ACCEPT) for a spec string, a stim DEM text or a
        stim circuit text. ``input="measurements"`` sends each round's raw measurements
        (``send_round`` then takes ``accept.measurement_slice_sizes[t]`` bits); ``describe``
        asks the ACCEPT for the rounds' detector ids, committed ranges and DEM.

        ``resume`` (a :class:`~qecd.transport.pqc.PqSession`, ``stream.pq`` of an earlier
        connection; needs ``pq``) takes over that open stream instead, from this connection:
        pass the same experiment and settings as the HELLO that opened it. The returned
        Stream continues at the server's next round.

        ``rounds_per_packet`` (client side, not sent) sets the returned stream's
        :meth:`Stream.set_rounds_per_packet`: how many rounds :meth:`Stream.add_round`
        gathers into one SYNDROME packet (a K the server would refuse: ValueError, and the
        stream is closed again).

        Raises ServerError (e.g. BAD_HELLO, SERVER_BUSY, SHUTTING_DOWN), ServerTimeout, or
        PqHandshakeError.
        """
        check_rounds_per_packet(rounds_per_packet)
        hello = hello_for(spec, dem, decoder, window, commit, want_faults, time_coord,
                          circuit=circuit, input=input, describe=describe)
        op = PqOpen(self.pq, self.curve, hello, resume=resume, seq=self._next_seq())
        r = self._request(op.frame, (MsgType.ACCEPT,), timeout_s, "open_stream")
        session = self._pq_finish(op, r.body)
        stream = Stream(self, r.body)
        stream.pq = session
        self.streams[stream.stream_id] = stream
        if rounds_per_packet != 1:
            try:
                stream.set_rounds_per_packet(rounds_per_packet)
            except ValueError:  # above the server's max_backlog: give the stream back
                stream.close(timeout_s)
                raise
        if resume is not None:
            stream.next_round = r.body.next_round  # (STATS for a server without the key)
            if stream.next_round is None:
                stream.next_round = int(self.stats(stream.stream_id).get("next_round", 0))
        return stream

    def resume_stream(self, stream_id: int, token: bytes,
                      timeout_s: float = HELLO_TIMEOUT_S, *, rounds_per_packet: int = 1
                      ) -> Stream:
        """Take over open stream ``stream_id`` from this connection with ``token``, the
        ``resume_token`` of its latest ACCEPT (``stream.resume_token`` on the connection
        that lost it; docs/protocol.md §6.9). The returned Stream is positioned at the
        server's next expected round (``stream.next_round``) and holds a fresh token (the
        one given is spent). Rounds of an incomplete shot that were received stay
        received: continue from ``next_round``; corrections already sent to the old
        connection are not sent again.

        ``rounds_per_packet`` is as for :meth:`open_stream` (rounds gathered on the lost
        connection and not sent are not carried over: send from ``next_round``). A K the
        server refuses raises ValueError after the resume; the stream is then in
        :attr:`streams`, one round per packet.

        Raises ServerError: ``UNKNOWN_STREAM`` whatever failed (wrong, spent or another
        stream's token, closed stream, another CURVE key, a stream opened with the
        post-quantum handshake), ``BAD_HELLO`` for a shared-memory stream; or ServerTimeout.
        """
        check_rounds_per_packet(rounds_per_packet)
        frame = resume_frame(stream_id, token, self._next_seq())
        accept: Accept = self._request(frame, (MsgType.ACCEPT,), timeout_s,
                                       "resume_stream").body
        if accept.stream_id != stream_id:
            raise QecdError(f"resume_stream: the ACCEPT names stream {accept.stream_id}, "
                            f"expected {stream_id}")
        stream = Stream(self, accept)
        stream.next_round = accept.next_round or 0
        self.streams[stream.stream_id] = stream
        if rounds_per_packet != 1:
            stream.set_rounds_per_packet(rounds_per_packet)
        return stream

    def _pq_finish(self, op: PqOpen, accept: Accept) -> PqSession | None:
        try:
            return op.finish(accept)
        except QecdError:  # a stream we cannot trust: close it (best effort), then say why
            try:
                self.bye(accept.stream_id, timeout_s=min(self.timeout_s, 2.0))
            except QecdError:
                pass
            raise

    def open_shm_stream(self, spec: str | None = None, *, dem: str | None = None,
                        decoder: str = DEFAULT_STREAM_DECODER, window: int | None = None,
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

        hello = hello_for(spec, dem, decoder, window, commit, want_faults, time_coord)
        hello = hello._replace(transport="shm")
        layout = round_layout(spec, dem, time_coord)
        op = PqOpen(self.pq, self.curve, hello, seq=self._next_seq())
        accept: Accept = self._request(op.frame, (MsgType.ACCEPT,), timeout_s,
                                       "open_shm_stream").body
        session = self._pq_finish(op, accept)
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
        cli.pq = session
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
        """Send HEARTBEAT and wait for its echo; returns the round trip in ns (of the last).

        With ``stream_id`` 0 and streams open, one HEARTBEAT names each of them: a server that
        no longer has a stream (it restarted, or timed the stream out) answers
        ``UNKNOWN_STREAM``, raised here as :class:`ServerError`, where an anonymous echo would
        have hidden that the streams are gone."""
        rtt = 0
        for sid in checked_streams(stream_id, self.streams):
            t = time.perf_counter_ns()
            r = self._request(encode_heartbeat(stream_id=sid, seq=self._next_seq(),
                                               timestamp_ns=t),
                              (MsgType.HEARTBEAT,), timeout_s, "heartbeat")
            rtt = r.recv_ns - t
        return rtt

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
        self.layout = accept.layout()  # measurements per round with input="measurements"
        self.next_round = 0
        self.pq = None  #: the PqSession of a post-quantum handshake (token, session key)
        #: the 32-byte token that lets another connection take this stream over
        #: (:meth:`Client.resume_stream`, docs/protocol.md §6.9); None from a server that
        #: issues none. Whoever holds it can take the stream: keep it like a password.
        self.resume_token: bytes | None = accept.resume_token
        self._buf = bytearray(HEADER_SIZE + max(self.layout.shot_bytes, 1))
        self._batch: RoundBatch | None = None

    @property
    def slice_sizes(self) -> tuple[int, ...]:
        return self.accept.slice_sizes

    @property
    def rounds_per_shot(self) -> int:
        return self.accept.rounds_per_shot

    @property
    def num_observables(self) -> int:
        return self.accept.num_observables

    @property
    def rounds_per_packet(self) -> int:
        """K: the rounds :meth:`add_round` gathers into one SYNDROME packet (1: a packet
        per round); see :meth:`set_rounds_per_packet`."""
        return 1 if self._batch is None else self._batch.rounds_per_packet

    @property
    def pending_rounds(self) -> int:
        """Rounds :meth:`add_round` gathered that are not sent yet."""
        return 0 if self._batch is None else self._batch.pending

    def set_rounds_per_packet(self, k: int) -> None:
        """Gather ``k`` rounds per packet from now on, sending what was gathered first.
        Raises ValueError for a ``k`` the server would refuse (above its ``max_backlog``,
        or frames above its ``max_frame``: both from the ACCEPT)."""
        batch = batch_for(self.accept, k)
        self.flush()
        self._batch = batch

    def add_round(self, bits: np.ndarray, *, timestamp_ns: int | None = None) -> int:
        """Gather one round into the packet being built; send the packet once it holds
        :attr:`rounds_per_packet` rounds.

        K rounds every K cycles is how a control system amortises the socket at a 1 µs
        cycle. Rounds gathered are sent by :meth:`flush`, by any
        :meth:`send_round`/:meth:`send_payload` (before their own) and by :meth:`close`;
        until then the server has not seen them, so a shot's correction waits for them.

        Parameters
        ----------
        bits : numpy.ndarray
            The round's detection events (0/1, in wire order), as for :meth:`send_round`.
        timestamp_ns : int, optional
            The round's time (default: now); a packet carries its last round's.

        Returns
        -------
        int
            The round's index (absolute).

        Raises
        ------
        ValueError
            ``bits`` of the wrong size: nothing is gathered.
        ServerTimeout
            The packet this round completed could not be sent: its rounds, this one
            included, stay gathered (:attr:`pending_rounds`); :meth:`flush` sends them
            again (do not add this round again).

        Examples
        --------
        ``stream = client.open_stream(spec, rounds_per_packet=6)``, then
        ``stream.add_round(bits)`` per round and ``stream.flush()`` at the end
        (``tests/test_client_batching.py`` runs this against a server).
        """
        if self._batch is None:
            self._batch = batch_for(self.accept, 1)
        if self._batch.full:  # a packet whose send failed: it goes first
            self.flush()
        ts = time.perf_counter_ns() if timestamp_ns is None else timestamp_ns
        r = self.next_round + self._batch.pending
        if self._batch.add(bits, first_round=self.next_round, timestamp_ns=ts):
            self.flush()
        return r

    def flush(self) -> int | None:
        """Send the rounds :meth:`add_round` gathered (a shorter packet); returns the first
        round sent, or None when none were gathered. If the send fails (ServerTimeout) the
        rounds stay gathered, and a later ``flush`` sends them."""
        b = self._batch
        if b is None or not b.pending:
            return None
        first = self.next_round
        try:
            self.client.send_frame(b.frame(first_round=first))
        except ServerTimeout as e:
            raise ServerTimeout(f"{e}; {unsent(b.pending, first)}") from e
        self.next_round = first + b.clear()
        return first

    def rewind(self, next_round: int) -> int:
        """Send from ``next_round`` on (e.g. an ERROR's ``next_round``, or after a resume),
        dropping the rounds gathered and not sent; returns how many were dropped."""
        dropped = 0 if self._batch is None else self._batch.clear()
        self.next_round = int(next_round)
        return dropped

    def send_round(self, bits: np.ndarray, *, count: int = 1,
                   timestamp_ns: int | None = None) -> int:
        """Send ``count`` rounds from :attr:`next_round`: ``bits`` holds their detection
        events concatenated (uint8/bool 0/1, each round's detectors in wire order). Returns
        the first round sent (rounds :meth:`add_round` gathered go first)."""
        if self._batch is not None and self._batch.pending:
            self.flush()
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
        if self._batch is not None and self._batch.pending:
            self.flush()
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
        what = f"stream {sid} recv"
        if self.pending_rounds:  # a wait that may never end: say why
            what += (f" ({self.pending_rounds} rounds gathered by add_round are not sent "
                     "yet: flush())")
        r = self.client._wait(lambda r: r.stream_id == sid, timeout_s, what)
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
        Corrections still in flight before the BYE stay readable with :meth:`recv`.
        Rounds :meth:`add_round` gathered are sent first."""
        self.flush()
        frame = encode_bye(stream_id=self.stream_id, seq=self.client._next_seq(),
                           timestamp_ns=time.perf_counter_ns())
        r = self.client._request(frame, (MsgType.BYE,), timeout_s, "close")
        self.client.streams.pop(self.stream_id, None)
        return r.seq

