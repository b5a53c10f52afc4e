"""SYNDROME bodies: K rounds of detection events, bit-packed per round (stim's little bit order).

Specification: ``docs/protocol.md`` §6.3.

Example
-------
>>> import numpy as np
>>> from qecd.transport.wire.header import MsgType, parse_packet
>>> layout = SyndromeLayout([13, 24, 24, 13])          # detectors per round of one shot
>>> bits = np.zeros(13 + 24, dtype=np.uint8); bits[[0, 3, 12, 13 + 23]] = 1
>>> frame = encode_syndrome(bits, layout, stream_id=7, first_round=4, count=2)
>>> header, payload = parse_packet(frame, max_frame=4096)
>>> header.msg_type == MsgType.SYNDROME, header.round, header.count, bytes(payload).hex()
(True, 4, 2, '0910000080')
>>> np.flatnonzero(decode_syndrome_payload(header, payload, layout)).tolist()
[0, 3, 12, 36]
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from qecd.errors import ProtocolError
from qecd.transport.wire.header import (
    _SYNDROME,
    _U8,
    _U64,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_COUNT,
    MAX_DETECTORS,
    MAX_ROUNDS_PER_SHOT,
    VERSION,
    Buffer,
    ErrorCode,
    Header,
    MsgType,
    _expect_type,
)


class SyndromeLayout:
    """Where each round's bits sit in SYNDROME payloads, for one stream (build once).

    Round ``r`` of a stream is slice ``r % rounds_per_shot`` of shot
    ``r // rounds_per_shot``; slice ``s`` has ``slice_sizes[s]`` detectors, packed into
    ``ceil(slice_sizes[s] / 8)`` bytes with stim's little bit order (detector ``i`` of the
    round is bit ``i % 8`` of byte ``i // 8``) and zero padding bits. A payload is its
    rounds' bytes concatenated.

    Parameters
    ----------
    slice_sizes : sequence of int
        Detectors in each round of a shot (from ACCEPT).
    unit : str
        What the bits are, for error texts: ``"detectors"``, or ``"measurements"`` for a
        measurement-input stream's SYNDROMEs (docs/protocol.md §6.3.1).

    Examples
    --------
    >>> lay = SyndromeLayout([13, 24, 24, 13])
    >>> lay.rounds_per_shot, lay.shot_bytes, lay.payload_len(4, 2), lay.payload_len(3, 2)
    (4, 10, 5, 4)
    """

    __slots__ = ("slice_sizes", "rounds_per_shot", "num_detectors", "shot_bytes",
                 "_slice_bytes", "_byte_prefix", "_det_prefix", "_keep2", "_pad2", "unit")

    def __init__(self, slice_sizes: Sequence[int], unit: str = "detectors") -> None:
        self.unit = unit
        sizes = tuple(int(s) for s in slice_sizes)
        if not 1 <= len(sizes) <= MAX_ROUNDS_PER_SHOT:
            raise ValueError(f"slice_sizes: expected 1..{MAX_ROUNDS_PER_SHOT} rounds per shot, "
                             f"got {len(sizes)}")
        if any(s < 0 for s in sizes) or sum(sizes) > MAX_DETECTORS:
            raise ValueError(f"slice_sizes: expected sizes >= 0 summing to at most "
                             f"{MAX_DETECTORS}, got {sizes if len(sizes) < 9 else '...'}")
        self.slice_sizes = sizes
        self.rounds_per_shot = len(sizes)
        bp, dp = [0], [0]
        for s in sizes:
            bp.append(bp[-1] + (s + 7) // 8)
            dp.append(dp[-1] + s)
        self._slice_bytes = tuple((s + 7) // 8 for s in sizes)
        self._byte_prefix = tuple(bp)
        self._det_prefix = tuple(dp)
        self.shot_bytes = bp[-1]
        self.num_detectors = dp[-1]
        keep = np.zeros(8 * self.shot_bytes, dtype=bool)
        pad = np.zeros(self.shot_bytes, dtype=np.uint8)
        for s, b0 in zip(sizes, bp[:-1], strict=True):
            keep[8 * b0: 8 * b0 + s] = True
            if s % 8:
                pad[b0 + s // 8] = (0xFF << (s % 8)) & 0xFF
        self._keep2 = np.concatenate([keep, keep])  # two shots: any packet up to a shot long
        self._pad2 = np.concatenate([pad, pad])

    def __repr__(self) -> str:
        return f"SyndromeLayout({list(self.slice_sizes)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SyndromeLayout) and self.slice_sizes == other.slice_sizes

    def __hash__(self) -> int:
        return hash(self.slice_sizes)

    def _before(self, prefix: tuple[int, ...], r: int) -> int:
        q, s = divmod(r, self.rounds_per_shot)
        return q * prefix[-1] + prefix[s]

    def payload_len(self, first_round: int, count: int) -> int:
        """Bytes of a SYNDROME payload carrying rounds ``first_round .. first_round+count-1``."""
        bp = self._byte_prefix
        return self._before(bp, first_round + count) - self._before(bp, first_round)

    def num_detectors_in(self, first_round: int, count: int) -> int:
        """Detectors (bits that matter) in rounds ``first_round .. first_round+count-1``."""
        dp = self._det_prefix
        return self._before(dp, first_round + count) - self._before(dp, first_round)

    def _masks(self, first_round: int, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
        start = self._byte_prefix[first_round % self.rounds_per_shot]
        if start + nbytes <= 2 * self.shot_bytes:
            return (self._keep2[8 * start: 8 * (start + nbytes)],
                    self._pad2[start: start + nbytes])
        half = self.shot_bytes
        return (np.resize(self._keep2[:8 * half], 8 * (start + nbytes))[8 * start:],
                np.resize(self._pad2[:half], start + nbytes)[start:])

    def _describe(self, first_round: int, count: int) -> str:
        shown = min(count, 6)
        sizes = [self.slice_sizes[(first_round + i) % self.rounds_per_shot]
                 for i in range(shown)]
        more = ", ..." if count > shown else ""
        return (f"{count} round(s) from round {first_round} with "
                f"{', '.join(map(str, sizes))}{more} {self.unit}")

    def pack_into(self, buf: Buffer, offset: int, first_round: int, count: int,
                  bits: np.ndarray) -> int:
        """Pack ``bits`` (0/1, the rounds' detectors concatenated) into ``buf[offset:]``.

        Returns the number of payload bytes written. Non-zero entries count as 1.
        """
        bits = np.asarray(bits)
        if count == 1:  # the common case: one numpy call
            s = first_round % self.rounds_per_shot
            n, nbytes = self.slice_sizes[s], self._slice_bytes[s]
            if bits.shape != (n,):
                raise ValueError(f"bits: expected shape ({n},) for "
                                 f"{self._describe(first_round, 1)}, got {bits.shape}")
            if offset + nbytes > len(buf):
                raise ValueError(f"buf: expected at least {offset + nbytes} bytes, got "
                                 f"{len(buf)}")
            if nbytes:
                buf[offset:offset + nbytes] = np.packbits(bits, None, "little").data
            return nbytes
        ndet = self.num_detectors_in(first_round, count)
        if bits.ndim != 1 or bits.shape[0] != ndet:
            raise ValueError(f"bits: expected shape ({ndet},) for "
                             f"{self._describe(first_round, count)}, got {bits.shape}")
        nbytes = self.payload_len(first_round, count)
        if offset + nbytes > len(buf):
            raise ValueError(f"buf: expected at least {offset + nbytes} bytes, got {len(buf)}")
        if nbytes:
            keep, _ = self._masks(first_round, nbytes)
            padded = np.zeros(8 * nbytes, dtype=np.uint8)
            padded[keep] = bits != 0
            buf[offset:offset + nbytes] = np.packbits(padded, bitorder="little").data
        return nbytes

    def unpack_into(self, out: np.ndarray, first_round: int, count: int,
                    payload: Buffer) -> int:
        """Check a payload's length and padding and unpack it into ``out[:n]``; returns ``n``.

        ``out[:n]`` receives the 0/1 detection events of the ``n`` detectors of the rounds,
        concatenated in round order. Raises ProtocolError(BAD_PAYLOAD) on a wrong length or
        a set padding bit (``out`` may then be partly written).
        """
        if count == 1:  # the common case: one numpy call
            s = first_round % self.rounds_per_shot
            n, nbytes = self.slice_sizes[s], self._slice_bytes[s]
            if len(payload) != nbytes:
                self._raise_length(first_round, count, len(payload))
            if out.shape[0] < n:
                raise ValueError(f"out: expected at least {n} entries, got {out.shape}")
            if n:
                if n & 7 and payload[nbytes - 1] >> (n & 7):
                    self._raise_padding(first_round, count, payload)
                # positional arguments: numpy's keyword parsing costs ~0.5 us per call here
                out[:n] = np.unpackbits(np.frombuffer(payload, _U8), None, n, "little")
            return n
        nbytes = self.payload_len(first_round, count)
        if len(payload) != nbytes:
            self._raise_length(first_round, count, len(payload))
        ndet = self.num_detectors_in(first_round, count)
        if out.shape[0] < ndet:
            raise ValueError(f"out: expected at least {ndet} entries, got {out.shape}")
        if nbytes:
            pl = np.frombuffer(payload, dtype=np.uint8)
            keep, pad = self._masks(first_round, nbytes)
            if np.bitwise_and(pl, pad).any():
                self._raise_padding(first_round, count, payload)
            np.compress(keep, np.unpackbits(pl, bitorder="little"), out=out[:ndet])
        return ndet

    def unpack(self, first_round: int, count: int, payload: Buffer) -> np.ndarray:
        """Like :meth:`unpack_into`, returning a new uint8 array of the ``n`` detectors."""
        out = np.empty(self.num_detectors_in(first_round, count), dtype=np.uint8)
        self.unpack_into(out, first_round, count, payload)
        return out

    def _raise_length(self, first_round: int, count: int, got: int) -> None:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "SYNDROME payload: expected "
                            f"{self.payload_len(first_round, count)} bytes for "
                            f"{self._describe(first_round, count)}, got {got}")

    def _raise_padding(self, first_round: int, count: int, pl: Buffer) -> None:
        at = 0
        for i in range(count):
            r = first_round + i
            n = self.slice_sizes[r % self.rounds_per_shot]
            at += (n + 7) // 8
            if n & 7 and int(pl[at - 1]) >> (n & 7):
                raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"SYNDROME round {r} ({n} detectors)"
                                    f": expected padding bits {n}..{(n + 7) // 8 * 8 - 1} zero "
                                    f"(payload byte {at - 1}), got byte 0x{int(pl[at - 1]):02x}")
        raise AssertionError("unreachable: padding mask and per-round check disagree")


def _check_syndrome_args(first_round: int, count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count: expected 1..{MAX_COUNT} rounds, got {count}")
    if not 0 <= first_round <= _U64 + 1 - count:
        raise ValueError(f"first_round: expected 0..2**64-count, got {first_round}")


def pack_syndrome_into(buf: Buffer, offset: int, bits: np.ndarray, layout: SyndromeLayout, *,
                       stream_id: int, first_round: int, count: int = 1,
                       timestamp_ns: int = 0) -> int:
    """Write a whole SYNDROME frame (header and payload) into ``buf[offset:]``.

    The hot-path encoder: one ``struct`` call plus one ``numpy.packbits``; ``buf`` is any
    writable buffer (a bytearray, a ring slot's memoryview, a numpy array).

    Parameters
    ----------
    buf : writable bytes-like
        Must hold ``32 + layout.payload_len(first_round, count)`` bytes from ``offset``.
    offset : int
    bits : numpy.ndarray, shape (layout.num_detectors_in(first_round, count),)
        Detection events of the ``count`` rounds, concatenated in round order, each round's
        detectors in DEM detector order; non-zero = fired.
    layout : SyndromeLayout
    stream_id, first_round, count, timestamp_ns : int
        Header fields.

    Returns
    -------
    int
        The frame's length in bytes.

    Examples
    --------
    >>> lay = SyndromeLayout([3])
    >>> buf = bytearray(64)
    >>> pack_syndrome_into(buf, 0, np.array([1, 0, 1]), lay, stream_id=1, first_round=0)
    33
    >>> buf[32]
    5
    """
    if not (1 <= count <= MAX_COUNT and 0 <= first_round <= _U64 + 1 - count):
        _check_syndrome_args(first_round, count)
    nbytes = layout.pack_into(buf, offset + HEADER_SIZE, first_round, count, bits)
    try:
        HEADER.pack_into(buf, offset, MAGIC, VERSION, MsgType.SYNDROME, 0, count, stream_id,
                         nbytes, first_round, timestamp_ns)
    except struct.error as e:
        raise ValueError(f"header field out of range: {e}") from None
    return HEADER_SIZE + nbytes


def encode_syndrome(bits: np.ndarray, layout: SyndromeLayout, *, stream_id: int,
                    first_round: int, count: int = 1, timestamp_ns: int = 0) -> bytes:
    """Encode a SYNDROME frame carrying ``count`` rounds from ``first_round``.

    See :func:`pack_syndrome_into` for the arguments.

    Examples
    --------
    >>> lay = SyndromeLayout([13, 24])
    >>> len(encode_syndrome(np.zeros(37, np.uint8), lay, stream_id=1, first_round=0, count=2))
    37
    """
    _check_syndrome_args(first_round, count)
    buf = bytearray(HEADER_SIZE + layout.payload_len(first_round, count))
    pack_syndrome_into(buf, 0, bits, layout, stream_id=stream_id, first_round=first_round,
                       count=count, timestamp_ns=timestamp_ns)
    return bytes(buf)


def decode_syndrome_payload(header: Header, payload: Buffer,
                            layout: SyndromeLayout) -> np.ndarray:
    """Unpack a SYNDROME payload to uint8 0/1 detection events (the rounds concatenated).

    Raises ProtocolError(BAD_PAYLOAD) when the payload's length is not the sum of
    ``ceil(n/8)`` over the rounds it carries, or a padding bit is set.

    Examples
    --------
    >>> lay = SyndromeLayout([13, 24])
    >>> h, p = parse_packet(encode_frame(MsgType.SYNDROME, b"\\x09\\xf0", stream_id=1, count=1))
    >>> decode_syndrome_payload(h, p, lay)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    qecd.errors.ProtocolError: [16] SYNDROME round 0 (13 detectors): expected padding bits ...
    """
    _expect_type(header, MsgType.SYNDROME)
    return layout.unpack(header.round, header.count, payload)


def unpack_syndrome_into(out: np.ndarray, header: Header, payload: Buffer,
                         layout: SyndromeLayout) -> int:
    """Like :func:`decode_syndrome_payload` but writes into ``out[:n]``; returns ``n``.

    Examples
    --------
    >>> lay = SyndromeLayout([3])
    >>> out = np.zeros(8, np.uint8)
    >>> unpack_syndrome_into(out, *parse_packet(encode_syndrome(
    ...     np.array([0, 1, 1]), lay, stream_id=1, first_round=0)), lay), out[:3].tolist()
    (3, [0, 1, 1])
    """
    if header.msg_type != _SYNDROME:
        _expect_type(header, MsgType.SYNDROME)
    return layout.unpack_into(out, header.round, header.count, payload)


def check_round(header: Header, next_round: int) -> None:
    """Raise ROUND_GAP / ROUND_DUPLICATE unless a SYNDROME starts at ``next_round``.

    A packet that starts later than expected leaves a gap; one that starts earlier (even if
    it also carries new rounds) is a duplicate or arrived out of order. Either way the server
    drops the whole packet and the stream stays at ``next_round``.

    Examples
    --------
    >>> h = Header(MAGIC, 1, MsgType.SYNDROME, 0, 1, 7, 0, 12, 0)
    >>> check_round(h, 12)
    >>> check_round(h, 10)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    qecd.errors.ProtocolError: [34] SYNDROME field 'round': expected 10 ..., got 12: ...
    """
    r = header.round
    if r == next_round:
        return
    if r > next_round:
        raise ProtocolError(ErrorCode.ROUND_GAP, f"SYNDROME field 'round': expected "
                            f"{next_round} (next round of stream {header.stream_id}), got {r}: "
                            f"{r - next_round} round(s) missing")
    raise ProtocolError(ErrorCode.ROUND_DUPLICATE, f"SYNDROME field 'round': expected "
                        f"{next_round} (next round of stream {header.stream_id}), got {r}: "
                        "a duplicate or out-of-order packet")


# -- CORRECTION -------------------------------------------------------------------------------




def committed_ranges(rounds_per_shot: int, window: int | None, commit: int | None
                     ) -> list[tuple[int, int, int]]:
    """The committed-range rule (docs/protocol.md §7.1): ``(first, last, trigger)`` of each
    CORRECTION of one shot, rounds relative to the shot's first round, from the ACCEPT's
    ``rounds_per_shot``, ``window`` and ``commit``.

    >>> committed_ranges(7, 4, 2)
    [(0, 1, 3), (2, 3, 5), (4, 6, 6)]
    >>> committed_ranges(7, None, None)
    [(0, 6, 6)]
    """
    R = rounds_per_shot
    if window is None or window >= R:
        return [(0, R - 1, R - 1)]
    if commit is None or not 1 <= commit <= window:
        raise ValueError(f"commit: expected 1..window={window}, got {commit}")
    out, start = [], 0
    while True:
        stop = min(start + window, R)
        if stop == R:
            out.append((start, R - 1, R - 1))
            return out
        out.append((start, start + commit - 1, stop - 1))
        start += commit
