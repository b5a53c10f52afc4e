"""Rounds gathered one at a time into a stream's next multi-round SYNDROME packet.

At a 1 µs cycle a socket round trip (60-100 µs over tcp loopback here) cannot carry one round
per packet: a control system sends ``K`` consecutive rounds in one SYNDROME (``count = K``,
docs/protocol.md §6.3), K rounds every K cycles. :class:`RoundBatch` is the client side of
that. Each :meth:`RoundBatch.add` packs one round's detection events (bit-packed, stim's
little bit order, the round padded to a byte, exactly as the codec packs ``count`` rounds at
once) into the packet being gathered and says when it holds K. :meth:`RoundBatch.frame`
writes the header (``count`` = the rounds gathered, the last round's timestamp) and returns
the packet, which may be shorter (the end of a run, a shot that must be answered now); the
rounds stay gathered until :meth:`RoundBatch.clear`, called once the packet was sent, so a
send that fails loses nothing. One buffer is reused: a frame is valid until the next
``add``/``clear`` (the clients copy it into ZeroMQ at once).

Both clients use it (``Stream.add_round``, ``flush``, ``rewind``, ``set_rounds_per_packet``);
it does no I/O.

Example
-------
>>> import numpy as np
>>> from qecd.transport.wire import SyndromeLayout, parse_packet, encode_syndrome
>>> lay = SyndromeLayout([2, 3])           # a shot of two rounds: 2 then 3 detectors
>>> batch = RoundBatch(lay, stream_id=7, rounds_per_packet=2)
>>> batch.add(np.array([1, 0]), first_round=0, timestamp_ns=5)      # 1 of 2: not full
False
>>> batch.add(np.array([0, 1, 1]), first_round=0, timestamp_ns=9)   # full: send it
True
>>> frame = batch.frame(first_round=0)
>>> h, _ = parse_packet(bytes(frame))
>>> (h.count, h.round, h.timestamp_ns, batch.pending)
(2, 0, 9, 2)
>>> bytes(frame) == encode_syndrome(np.array([1, 0, 0, 1, 1]), lay, stream_id=7,
...                                 first_round=0, count=2, timestamp_ns=9)
True
>>> batch.clear(), batch.pending                                   # sent: start afresh
(2, 0)
"""

from __future__ import annotations

import warnings

import numpy as np

from qecd.transport.wire import HEADER_SIZE, MAX_COUNT, MsgType, SyndromeLayout
from qecd.transport.wire.header import pack_header_into

__all__ = ["RoundBatch", "batch_for", "check_rounds_per_packet", "largest_round_bytes",
           "unsent", "warn_unsent"]


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
        K, 1 .. 65,535 (``count`` is a u16; :func:`batch_for` also holds K to what the
        server's ACCEPT allows).
    """

    def __init__(self, layout: SyndromeLayout, *, stream_id: int,
                 rounds_per_packet: int) -> None:
        check_rounds_per_packet(rounds_per_packet)
        self.layout = layout
        self.stream_id = int(stream_id)
        self.rounds_per_packet = int(rounds_per_packet)
        self.pending = 0  #: rounds gathered and not yet cleared (sent)
        self._nbytes = 0
        self._ts = 0
        self._buf = bytearray(HEADER_SIZE + largest_round_bytes(layout)
                              * min(self.rounds_per_packet, 4096))

    @property
    def full(self) -> bool:
        """True when K rounds are gathered: send the packet before adding another."""
        return self.pending >= self.rounds_per_packet

    def add(self, bits: np.ndarray, *, first_round: int, timestamp_ns: int) -> bool:
        """Pack round ``first_round + pending`` (``bits``: its detection events, 0/1, in wire
        order) into the packet; ``first_round`` is the packet's first round (the stream's
        next round to send). Returns :attr:`full`. A ``ValueError`` (a round of the wrong
        shape, or a packet already full) leaves the packet as it was."""
        if self.full:
            raise ValueError(f"stream {self.stream_id}: a packet of {self.pending} rounds "
                             "is waiting to be sent: send it (flush) before adding a round")
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
        return self.full

    def frame(self, *, first_round: int) -> memoryview | None:
        """The SYNDROME packet of the rounds gathered so far (``count`` = :attr:`pending`,
        stamped with the last one's timestamp), or None when there are none. The rounds
        stay gathered: :meth:`clear` them once the packet was sent."""
        if not self.pending:
            return None
        pack_header_into(self._buf, 0, MsgType.SYNDROME, count=self.pending,
                         stream_id=self.stream_id, seq=first_round, timestamp_ns=self._ts,
                         payload_len=self._nbytes)
        return memoryview(self._buf)[:HEADER_SIZE + self._nbytes]

    def clear(self) -> int:
        """Forget the rounds gathered (sent, or rewound over); returns how many there were."""
        n, self.pending, self._nbytes = self.pending, 0, 0
        return n


def largest_round_bytes(layout: SyndromeLayout) -> int:
    """Bytes of the layout's largest round, bit-packed (at least 1)."""
    return max(1, max(-(-n // 8) for n in layout.slice_sizes))


def batch_for(accept, k: int) -> RoundBatch:
    """A :class:`RoundBatch` of ``k`` rounds per packet for the stream an ACCEPT opened.
    Refused with a ValueError: ``k`` above the server's ``max_backlog`` (it answers such a
    packet with SERVER_BUSY), or K rounds that could make a frame above its ``max_frame``
    (it drops the connection without a reply, docs/protocol.md §3)."""
    check_rounds_per_packet(k)
    if accept.max_backlog and k > accept.max_backlog:
        raise ValueError(f"rounds_per_packet: the server takes at most {accept.max_backlog} "
                         f"rounds per packet (max_backlog in its ACCEPT), got {k}")
    layout = accept.layout()
    most = HEADER_SIZE + k * largest_round_bytes(layout)
    if accept.max_frame and most > accept.max_frame:
        raise ValueError(f"rounds_per_packet: {k} rounds of up to "
                         f"{largest_round_bytes(layout)} bytes make frames of up to {most} "
                         f"bytes, above the server's max_frame of {accept.max_frame} (ACCEPT)")
    return RoundBatch(layout, stream_id=accept.stream_id, rounds_per_packet=k)


def unsent(pending: int, first_round: int) -> str:
    """What a failed send of a gathered packet leaves, for the error message.

    >>> unsent(3, 12)
    '3 gathered rounds from round 12 were not sent and stay gathered: flush() sends them'
    """
    return (f"{pending} gathered rounds from round {first_round} were not sent and stay "
            "gathered: flush() sends them")


def warn_unsent(streams) -> None:
    """A RuntimeWarning for each stream that still holds gathered rounds (its client is
    closing: they will never be sent)."""
    for st in streams:
        n = getattr(st, "pending_rounds", 0)
        if n:
            warnings.warn(f"stream {st.stream_id}: {n} rounds gathered by add_round were "
                          "never sent (flush() before closing)", RuntimeWarning, stacklevel=3)
