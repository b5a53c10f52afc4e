"""The asyncio qecd client: the blocking client's API as coroutines (``zmq.asyncio``).

Same semantics as :mod:`qecd.transport.client` (same :class:`~qecd.transport.client.Reply`,
:class:`~qecd.transport.client.ServerError` and
:class:`~qecd.transport.client.ServerTimeout`); one :class:`AsyncClient` is one DEALER
socket and may own many streams. Use it from one event loop; concurrent ``recv`` calls of
different streams on the same client are fine (each takes only its own replies), as long as
something keeps reading.

Example
-------
>>> import asyncio, numpy as np
>>> from qecd.transport.server import Server, ServerConfig
>>> async def one_shot(endpoint):
...     async with AsyncClient(endpoint) as client:
...         stream = await client.open_stream("repetition:d=3,r=2,p=0.01")
...         for size in stream.slice_sizes:
...             await stream.send_round(np.zeros(size, np.uint8))
...         c = await stream.recv_correction(timeout_s=5)
...         await stream.close()
...         return c.last_round, c.shot_end
>>> with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
...     _ = server.start_thread()
...     asyncio.run(one_shot(server.endpoints[0]))
(2, True)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np
import zmq
import zmq.asyncio

from qecd.errors import QecdError
from qecd.transport._client_core import (
    HELLO_TIMEOUT_S,
    Inbox,
    PqOpen,
    Reply,
    ServerTimeout,
    checked_streams,
    dealer_socket,
    decode_reply,
    hello_for,
    reply_matcher,
    resume_frame,
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
    pack_syndrome_into,
)

__all__ = ["AsyncClient", "AsyncStream"]


class AsyncClient:
    """An asyncio client connection (one DEALER socket); see :class:`~qecd.transport.client.
    Client` for the parameters."""

    def __init__(self, endpoint: str, *, curve: CurveClientKeys | None = None,
                 timeout_s: float = 10.0, hwm: int = 10_000,
                 context: zmq.asyncio.Context | None = None,
                 pq: PqPin | None = None) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.pq = pq
        self.timeout_s = timeout_s
        self.socket, _ = dealer_socket(context or zmq.asyncio.Context.instance(), endpoint,
                                       curve=curve, hwm=hwm)
        self._inbox = Inbox()
        self._seq = 0
        self._reading = asyncio.Lock()
        self.streams: dict[int, AsyncStream] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (LINGER 0; gathered rounds not sent are dropped, with a
        warning). Idempotent."""
        if not self.socket.closed:
            warn_unsent(self.streams.values())
        self.socket.close(0)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def send_frame(self, frame: bytes | memoryview | bytearray) -> None:
        """Send one raw packet; waits at most ``timeout_s`` for room in the queue."""
        try:
            await asyncio.wait_for(self.socket.send(frame, copy=True), self.timeout_s)
        except asyncio.TimeoutError:
            raise ServerTimeout(f"send: no room in the queue to {self.endpoint} for "
                                f"{self.timeout_s} s (the server is not reading)") from None

    async def _wait(self, match: Callable[[Reply], bool] | None, timeout_s: float | None,
                    what: str) -> Reply:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.perf_counter() + timeout
        while True:
            r = self._inbox.take(match)
            if r is not None:
                return r
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise ServerTimeout(f"{what}: no reply from {self.endpoint} within {timeout} s")
            # one reader at a time, polling in short slices so that the other waiters (of
            # other streams) get their turn and find their replies in the inbox
            async with self._reading:
                r = self._inbox.take(match)
                if r is not None:
                    return r
                if not await self.socket.poll(min(50, int(remaining * 1000) + 1)):
                    continue
                frame = await self.socket.recv(copy=True)
            r = decode_reply(frame, time.perf_counter_ns())
            if match is None or match(r):
                return r
            self._inbox.put(r)

    async def recv(self, timeout_s: float | None = None, *, raise_errors: bool = True) -> Reply:
        """The next reply of any stream (ERROR raises ServerError unless ``raise_errors``)."""
        r = await self._wait(None, timeout_s, "recv")
        if raise_errors and r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    async def _request(self, frame: bytes, types: tuple[int, ...], timeout_s: float | None,
                       what: str) -> Reply:
        await self.send_frame(frame)
        r = await self._wait(reply_matcher(frame, types), timeout_s, what)
        if r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    async def open_stream(self, spec: str | None = None, *, dem: str | None = None,
                          decoder: str = DEFAULT_DECODER, window: int | None = None,
                          commit: int | None = None, want_faults: bool = False,
                          time_coord: int = -1, timeout_s: float = HELLO_TIMEOUT_S,
                          circuit: str | None = None, input: str = "detectors",
                          describe: bool = False, resume: PqSession | None = None,
                          rounds_per_packet: int = 1) -> AsyncStream:
        """Open a stream (HELLO, wait for ACCEPT); raises ServerError, ServerTimeout or
        PqHandshakeError. The keyword arguments (``resume`` and ``rounds_per_packet``
        included) are those of :meth:`qecd.transport.client.Client.open_stream`."""
        check_rounds_per_packet(rounds_per_packet)
        hello = hello_for(spec, dem, decoder, window, commit, want_faults, time_coord,
                          circuit=circuit, input=input, describe=describe)
        op = PqOpen(self.pq, self.curve, hello, resume=resume, seq=self._next_seq())
        r = await self._request(op.frame, (MsgType.ACCEPT,), timeout_s, "open_stream")
        try:
            session = op.finish(r.body)
        except QecdError:  # a stream we cannot trust: close it (best effort), then say why
            try:
                await AsyncStream(self, r.body).close(timeout_s=min(self.timeout_s, 2.0))
            except QecdError:
                pass
            raise
        stream = AsyncStream(self, r.body)
        stream.pq = session
        self.streams[stream.stream_id] = stream
        if rounds_per_packet != 1:
            try:
                await stream.set_rounds_per_packet(rounds_per_packet)
            except ValueError:  # above the server's max_backlog: give the stream back
                await stream.close(timeout_s)
                raise
        if resume is not None:
            stream.next_round = r.body.next_round  # (STATS for a server without the key)
            if stream.next_round is None:
                stream.next_round = int((await self.stats(stream.stream_id)).get("next_round",
                                                                                 0))
        return stream

    async def resume_stream(self, stream_id: int, token: bytes,
                            timeout_s: float = HELLO_TIMEOUT_S, *,
                            rounds_per_packet: int = 1) -> AsyncStream:
        """Take over open stream ``stream_id`` with ``token`` (docs/protocol.md §6.9); as
        :meth:`qecd.transport.client.Client.resume_stream`."""
        check_rounds_per_packet(rounds_per_packet)
        frame = resume_frame(stream_id, token, self._next_seq())
        accept = (await self._request(frame, (MsgType.ACCEPT,), timeout_s,
                                      "resume_stream")).body
        if accept.stream_id != stream_id:
            raise QecdError(f"resume_stream: the ACCEPT names stream {accept.stream_id}, "
                            f"expected {stream_id}")
        stream = AsyncStream(self, accept)
        stream.next_round = accept.next_round or 0
        self.streams[stream.stream_id] = stream
        if rounds_per_packet != 1:
            await stream.set_rounds_per_packet(rounds_per_packet)
        return stream

    async def heartbeat(self, stream_id: int = 0, timeout_s: float | None = None) -> int:
        """HEARTBEAT round trip in ns; with ``stream_id`` 0 it names each open stream, as
        :meth:`qecd.transport.client.Client.heartbeat` does."""
        rtt = 0
        for sid in checked_streams(stream_id, self.streams):
            t = time.perf_counter_ns()
            r = await self._request(encode_heartbeat(stream_id=sid, seq=self._next_seq(),
                                                     timestamp_ns=t),
                                    (MsgType.HEARTBEAT,), timeout_s, "heartbeat")
            rtt = r.recv_ns - t
        return rtt

    async def stats(self, stream_id: int = 0, timeout_s: float | None = None) -> dict:
        """STATS of the server (``stream_id`` 0) or of one of this client's streams."""
        frame = encode_stats(None, stream_id=stream_id, seq=self._next_seq(),
                             timestamp_ns=time.perf_counter_ns())
        return (await self._request(frame, (MsgType.STATS,), timeout_s, "stats")).body


class AsyncStream:
    """An open stream of an :class:`AsyncClient` (see :class:`~qecd.transport.client.Stream`)."""

    def __init__(self, client: AsyncClient, accept: Accept) -> None:
        self.client = client
        self.accept = accept
        self.stream_id = accept.stream_id
        self.layout = accept.layout()  # measurements per round with input="measurements"
        self.next_round = 0
        self.pq = None  #: the PqSession of a post-quantum handshake (token, session key)
        #: the token that lets another connection take this stream over (§6.9)
        self.resume_token: bytes | None = accept.resume_token
        self._batch: RoundBatch | None = None
        self._gather = asyncio.Lock()  # one add_round/flush at a time: rounds have an order

    @property
    def slice_sizes(self) -> tuple[int, ...]:
        return self.accept.slice_sizes

    @property
    def rounds_per_shot(self) -> int:
        return self.accept.rounds_per_shot

    @property
    def rounds_per_packet(self) -> int:
        """K of :meth:`add_round` (see :meth:`set_rounds_per_packet`)."""
        return 1 if self._batch is None else self._batch.rounds_per_packet

    @property
    def pending_rounds(self) -> int:
        """Rounds :meth:`add_round` gathered that are not sent yet."""
        return 0 if self._batch is None else self._batch.pending

    async def set_rounds_per_packet(self, k: int) -> None:
        """:meth:`qecd.transport.client.Stream.set_rounds_per_packet`."""
        batch = batch_for(self.accept, k)
        async with self._gather:
            await self._flush()
            self._batch = batch

    async def add_round(self, bits: np.ndarray, *, timestamp_ns: int | None = None) -> int:
        """:meth:`qecd.transport.client.Stream.add_round`: gather one round, send the packet
        once it holds :attr:`rounds_per_packet`; returns the round's index. Calls from
        several tasks are taken one at a time, in the order they came (a round is numbered
        when it is gathered, and a packet in flight is never sent twice)."""
        async with self._gather:
            if self._batch is None:
                self._batch = batch_for(self.accept, 1)
            if self._batch.full:  # a packet whose send failed: it goes first
                await self._flush()
            ts = time.perf_counter_ns() if timestamp_ns is None else timestamp_ns
            r = self.next_round + self._batch.pending
            if self._batch.add(bits, first_round=self.next_round, timestamp_ns=ts):
                await self._flush()
            return r

    async def flush(self) -> int | None:
        """Send the rounds :meth:`add_round` gathered; the first round sent, or None. If
        the send fails (ServerTimeout) the rounds stay gathered for a later ``flush``."""
        async with self._gather:
            return await self._flush()

    async def _flush(self) -> int | None:
        b = self._batch
        if b is None or not b.pending:
            return None
        first = self.next_round
        try:
            await self.client.send_frame(bytes(b.frame(first_round=first)))
        except ServerTimeout as e:
            raise ServerTimeout(f"{e}; {unsent(b.pending, first)}") from e
        self.next_round = first + b.clear()
        return first

    def rewind(self, next_round: int) -> int:
        """:meth:`qecd.transport.client.Stream.rewind`."""
        dropped = 0 if self._batch is None else self._batch.clear()
        self.next_round = int(next_round)
        return dropped

    async def send_round(self, bits: np.ndarray, *, count: int = 1,
                         timestamp_ns: int | None = None) -> int:
        """Send ``count`` rounds from :attr:`next_round`; returns the first round sent
        (rounds :meth:`add_round` gathered go first)."""
        if self._batch is not None and self._batch.pending:
            await self.flush()
        first = self.next_round
        buf = bytearray(HEADER_SIZE + self.layout.payload_len(first, count))
        ts = time.perf_counter_ns() if timestamp_ns is None else timestamp_ns
        pack_syndrome_into(buf, 0, bits, self.layout, stream_id=self.stream_id,
                           first_round=first, count=count, timestamp_ns=ts)
        await self.client.send_frame(buf)
        self.next_round = first + count
        return first

    async def recv(self, timeout_s: float | None = None, *, raise_errors: bool = True) -> Reply:
        """The next reply about this stream."""
        sid = self.stream_id
        what = f"stream {sid} recv"
        if self.pending_rounds:  # a wait that may never end: say why
            what += (f" ({self.pending_rounds} rounds gathered by add_round are not sent "
                     "yet: flush())")
        r = await self.client._wait(lambda r: r.stream_id == sid, timeout_s, what)
        if raise_errors and r.msg_type == MsgType.ERROR:
            raise r.error
        return r

    async def recv_correction(self, timeout_s: float | None = None) -> Correction:
        """The next CORRECTION of this stream (an ERROR for it raises ServerError)."""
        r = await self.recv(timeout_s)
        if r.msg_type != MsgType.CORRECTION:
            raise QecdError(f"stream {self.stream_id}: expected a CORRECTION, got "
                            f"{MsgType(r.msg_type).name}")
        return r.body

    async def close(self, timeout_s: float | None = None) -> int:
        """BYE (rounds :meth:`add_round` gathered are sent first); returns the stream's final
        next round."""
        await self.flush()
        frame = encode_bye(stream_id=self.stream_id, seq=self.client._next_seq(),
                           timestamp_ns=time.perf_counter_ns())
        r = await self.client._request(frame, (MsgType.BYE,), timeout_s, "close")
        self.client.streams.pop(self.stream_id, None)
        return r.seq
