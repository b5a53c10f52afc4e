"""Rounds gathered one at a time into a stream's next multi-round SYNDROME packet.

At a 1 µs cycle a socket round trip (60-100 µs over tcp loopback here) cannot carry one round
per packet: a control system sends ``K`` consecutive rounds in one SYNDROME (``count = K``,
docs/protocol.md §6.3), K rounds every K cycles. :class:`RoundBatch` is the client side of
that. Each :meth:`RoundBatch.add` packs one round's detection events (bit-packed, stim's
little bit order, the round padded to a byte, exactly as the codec packs ``count`` rounds at
once) into the packet being gathered; the K-th returns the finished frame, stamped with the
last round's timestamp, for the caller to send. :meth:`RoundBatch.take` ends a shorter
packet early (the end of a run, a pause, a shot that must be answered now). One buffer is
reused for every packet: the frame returned is valid until the next ``add``/``take``
(the clients copy it into ZeroMQ at once).

Both clients use it (``Stream.add_round``/``flush``, ``rounds_per_packet``); it does no I/O.

Example
-------
>>> import numpy as np
>>> from qecd.transport.wire import SyndromeLayout, parse_packet, encode_syndrome
>>> lay = SyndromeLayout([2, 3])           # a shot of two rounds: 2 then 3 detectors
>>> batch = RoundBatch(lay, stream_id=7, rounds_per_packet=2)
>>> batch.add(np.array([1, 0]), first_round=0, timestamp_ns=5) is None   # 1 of 2 gathered
True
>>> frame = batch.add(np.array([0, 1, 1]), first_round=0, timestamp_ns=9)
>>> h, _ = parse_packet(bytes(frame))
>>> (h.count, h.round, h.timestamp_ns, batch.pending)
(2, 0, 9, 0)
>>> bytes(frame) == encode_syndrome(np.array([1, 0, 0, 1, 1]), lay, stream_id=7,
...                                 first_round=0, count=2, timestamp_ns=9)
True
"""

from __future__ import annotations

import numpy as np

from qecd.transport.wire import HEADER_SIZE, MAX_COUNT, MsgType, SyndromeLayout
from qecd.transport.wire.header import pack_header_into

__all__ = ["RoundBatch", "check_rounds_per_packet", "batch_for"]


def check_rounds_per_packet(k: int) -> None:
    """ValueError unless ``k`` is an int from 1 to 65,535 (``count`` is a u16)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_COUNT:
        raise ValueError(f"rounds_per_packet: expected an integer 1 .. {MAX_COUNT}, got {k!r}")


class RoundBatch:
    """The SYNDROME packet a stream is gathering, ``rounds_per_packet`` rounds at most.

    Parameters
    ----------
    layout : SyndromeLayout
        The stream's layout (``accept.layout()``: detectors per round, or measurements per
        round with ``input="measurements"``).
    stream_id : int
    rounds_per_packet : int
        K, 1 .. 65,535 (``count`` is a u16; a server also refuses packets above its
        ``max_backlog`` with SERVER_BUSY, which the clients check when K is set).
    """

    def __init__(self, layout: SyndromeLayout, *, stream_id: int,
                 rounds_per_packet: int) -> None:
        check_rounds_per_packet(rounds_per_packet)
        self.layout = layout
        self.stream_id = int(stream_id)
        self.rounds_per_packet = int(rounds_per_packet)
        self.pending = 0  #: rounds gathered and not yet taken
        self._nbytes = 0
        self._ts = 0
        most = max(1, max(-(-n // 8) for n in layout.slice_sizes))
        self._buf = bytearray(HEADER_SIZE + most * min(self.rounds_per_packet, 4096))

    def add(self, bits: np.ndarray, *, first_round: int, timestamp_ns: int
            ) -> memoryview | None:
        """Pack round ``first_round + pending`` (``bits``: its detection events, 0/1, in wire
        order) into the packet; return the finished frame once it holds
        ``rounds_per_packet`` rounds (stamped ``timestamp_ns``, this last round's time), else
        None. ``first_round`` is the packet's first round (the stream's next round to send).
        A ``ValueError`` (wrong shape) leaves the packet as it was."""
        r = first_round + self.pending
        need = HEADER_SIZE + self._nbytes + self.layout.payload_len(r, 1)
        if need > len(self._buf):  # a fresh buffer: a frame handed out may still be viewed
            grown = bytearray(max(need, 2 * len(self._buf)))
            grown[:HEADER_SIZE + self._nbytes] = self._buf[:HEADER_SIZE + self._nbytes]
            self._buf = grown
        self._nbytes += self.layout.pack_into(self._buf, HEADER_SIZE + self._nbytes, r, 1,
                                              bits)
        self.pending += 1
        self._ts = timestamp_ns
        if self.pending >= self.rounds_per_packet:
            return self.take(first_round=first_round)
        return None

    def take(self, *, first_round: int) -> memoryview | None:
        """The packet of the rounds gathered so far (None when there are none), which then
        starts afresh; ``first_round`` as in :meth:`add`."""
        if not self.pending:
            return None
        pack_header_into(self._buf, 0, MsgType.SYNDROME, count=self.pending,
                         stream_id=self.stream_id, seq=first_round, timestamp_ns=self._ts,
                         payload_len=self._nbytes)
        frame = memoryview(self._buf)[:HEADER_SIZE + self._nbytes]
        self.pending = self._nbytes = 0
        return frame


def batch_for(accept, k: int) -> RoundBatch:
    """A :class:`RoundBatch` of ``k`` rounds per packet for the stream an ACCEPT opened;
    ``k`` above the server's ``max_backlog`` is refused here with a ValueError (the server
    would answer such a packet with SERVER_BUSY)."""
    check_rounds_per_packet(k)
    if accept.max_backlog and k > accept.max_backlog:
        raise ValueError(f"rounds_per_packet: the server takes at most {accept.max_backlog} "
                         f"rounds per packet (max_backlog in its ACCEPT), got {k}")
    return RoundBatch(accept.layout(), stream_id=accept.stream_id, rounds_per_packet=k)
