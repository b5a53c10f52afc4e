"""HELLOs wait while live streams have packets to serve.

ZeroMQ's ROUTER reads its peers fairly, one message per peer in turn, so a burst of HELLOs
from many connections put every HELLO (plan lookup, stream set-up, engine context, ACCEPT,
log line: 1.0-1.25 ms of loop CPU each under a profiler) between two packets of a live
stream: 46 of 48 flooded ACCEPTs went out before another client's next reply
(``tests/test_hostile_input.py``). The loop now reads such
a HELLO (cheap) and queues it here; it handles queued HELLOs one at a time, each followed by
everything that arrived on the socket meanwhile, so a live stream waits behind at most one
HELLO. A HELLO waits only while some stream is open (nobody to protect otherwise).

Per-peer order is kept (docs/protocol.md §3): once a peer has a queued packet, every later
packet of that peer queues behind it. The queue is bounded; a HELLO that finds it full is
refused with ``SERVER_BUSY`` at once.

>>> q = HelloQueue(limit=2)
>>> hello = b"QD\\x01\\x01" + bytes(28)
>>> q.takes([b"\\x00peer", hello], streams_open=1)
True
>>> q.push([b"\\x00peer", hello], 5); len(q)
1
>>> q.takes([b"\\x00peer", b"QD\\x01\\x03" + bytes(28)], streams_open=1)  # behind its HELLO
True
>>> parts, t_recv = q.pop(); t_recv
5
"""

from __future__ import annotations

from collections import deque

import zmq

from qecd.transport.wire import MsgType, claimed_type

__all__ = ["HelloQueue"]

_HELLO = int(MsgType.HELLO)


def _route(parts: list) -> bytes:
    r = parts[0]
    return r if isinstance(r, bytes) else r.bytes  # a zmq.Frame (zero-copy receive)


def _is_hello(parts: list) -> bool:
    if len(parts) != 2:
        return False
    f = parts[1]
    return claimed_type(f if isinstance(f, (bytes, bytearray, memoryview)) else f.buffer) == _HELLO


class HelloQueue:
    """HELLOs (and the packets their peers sent after them) waiting for a quiet moment.

    Parameters
    ----------
    limit : int
        Packets queued at most; a packet that would queue beyond is refused (the caller
        replies ``SERVER_BUSY``).
    """

    def __init__(self, limit: int = 1024) -> None:
        self.limit = int(limit)
        self._q: deque[tuple[list, int]] = deque()
        self._waiting: dict[bytes, int] = {}  # route -> packets it has queued

    def __len__(self) -> int:
        return len(self._q)

    def takes(self, parts: list, streams_open: int) -> bool:
        """Whether the packet ``parts`` (as ``recv_multipart`` gives it) must wait here: a
        HELLO while streams are open, or any packet of a peer that has packets waiting."""
        if self._waiting and _route(parts) in self._waiting:
            return True
        return streams_open > 0 and _is_hello(parts)

    def full(self) -> bool:
        return len(self._q) >= self.limit

    def push(self, parts: list, t_recv: int) -> None:
        """Queue ``parts`` (received at ``t_recv``, ns) behind its peer's earlier packets."""
        r = _route(parts)
        self._waiting[r] = self._waiting.get(r, 0) + 1
        # a view of the fast path's receive buffer (writable) lives only until its next
        # drain; a view of a zmq.Frame, or the read-only view of a libzmq message the fast
        # path hands a large HELLO in, lives as long as the view
        parts = [bytes(p) if isinstance(p, memoryview) and not p.readonly
                 and not isinstance(p.obj, zmq.Frame) else p for p in parts]
        self._q.append((parts, t_recv))

    def pop(self) -> tuple[list, int]:
        """The oldest queued packet and its receive time."""
        parts, t = self._q.popleft()
        r = _route(parts)
        n = self._waiting[r] - 1
        if n:
            self._waiting[r] = n
        else:
            del self._waiting[r]
        return parts, t
