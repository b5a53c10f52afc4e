"""ERROR packets: a code, the type of the packet it answers, the next expected round, a reason.

Specification: ``docs/protocol.md`` §8.

Example
-------
>>> from qecd.transport.wire.header import ErrorCode, parse_packet
>>> info = decode_error(*parse_packet(encode_error(ErrorCode.ROUND_GAP, "round 5", next_round=4)))
>>> info.code == ErrorCode.ROUND_GAP, info.next_round
(True, 4)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from qecd.errors import ProtocolError
from qecd.transport.wire.header import (
    ERROR_FIXED,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_REASON_BYTES,
    SUPPORTED_VERSIONS,
    Buffer,
    ErrorCode,
    Header,
    MsgType,
    _expect_type,
    _view,
    encode_frame,
)


class ErrorInfo(NamedTuple):
    """An ERROR body.

    Attributes
    ----------
    code : int
        An :class:`ErrorCode` (a plain int if this module does not know the code).
    reason : str
        Readable UTF-8 text naming the bad field, what was allowed and what arrived.
    ref_type : int
        ``msg_type`` of the packet that caused the error (0 if it could not be read).
    next_round : int
        For errors on a known stream: the round the server expects next (resend from here).
    versions : tuple of int
        Protocol versions the sender supports.
    """

    code: int
    reason: str
    ref_type: int = 0
    next_round: int = 0
    versions: tuple[int, ...] = SUPPORTED_VERSIONS


def encode_error(code: int, reason: str, *, stream_id: int = 0, seq: int = 0,
                 timestamp_ns: int = 0, ref_type: int = 0, next_round: int = 0,
                 versions: Sequence[int] = SUPPORTED_VERSIONS) -> bytes:
    """Encode an ERROR frame; ``reason`` is cut to :data:`MAX_REASON_BYTES` UTF-8 bytes.

    ``stream_id``, ``seq`` and ``timestamp_ns`` should echo the offending packet's header
    (see :func:`encode_error_reply`).

    Examples
    --------
    >>> f = encode_error(ErrorCode.ROUND_GAP, "gap", stream_id=7, next_round=8)
    >>> decode_error(*parse_packet(f)).next_round
    8
    """
    if not 1 <= int(code) <= 0xFFFF:
        raise ValueError(f"ERROR code: expected 1..65535, got {code}")
    mask = 0
    for v in versions:
        if not 1 <= v <= 16:
            raise ValueError(f"ERROR versions: expected versions in 1..16, got {v}")
        mask |= 1 << (v - 1)
    text = reason.encode("utf-8")
    if len(text) > MAX_REASON_BYTES:
        text = text[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
    try:
        fixed = ERROR_FIXED.pack(int(code), mask, ref_type, 0, 0, next_round)
    except struct.error as e:
        raise ValueError(f"ERROR field out of range: {e}") from None
    return encode_frame(MsgType.ERROR, fixed + text, stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def encode_error_reply(error: ProtocolError, frame: Buffer, *, next_round: int = 0) -> bytes:
    """The ERROR reply to a rejected ``frame``, echoing what of its header could be read.

    Echoes ``msg_type`` (as ``ref_type``) when the magic is right, and ``stream_id``,
    ``round`` and ``timestamp_ns`` when the version is supported and 32 bytes arrived;
    zeros otherwise.

    Examples
    --------
    >>> bad = encode_frame(MsgType.SYNDROME, b"", stream_id=7, seq=9, timestamp_ns=5)
    >>> try:
    ...     parse_packet(bad)
    ... except ProtocolError as e:
    ...     h, p = parse_packet(encode_error_reply(e, bad))
    >>> h.stream_id, h.round, h.timestamp_ns, ErrorCode(decode_error(h, p).code).name
    (7, 9, 5, 'BAD_HEADER')
    """
    mv = _view(frame)
    stream_id = seq = ts = ref = 0
    if len(mv) >= 4 and mv[0] | (mv[1] << 8) == MAGIC:
        ref = mv[3]
        if mv[2] in SUPPORTED_VERSIONS and len(mv) >= HEADER_SIZE:
            h = HEADER.unpack_from(mv)
            stream_id, seq, ts = h[5], h[7], h[8]
    return encode_error(error.code, error.reason, stream_id=stream_id, seq=seq,
                        timestamp_ns=ts, ref_type=ref, next_round=next_round)


def decode_error(header: Header, payload: Buffer) -> ErrorInfo:
    """Decode an ERROR body (16-byte fixed part, then the UTF-8 reason).

    Examples
    --------
    >>> e = decode_error(*parse_packet(encode_error(ErrorCode.SERVER_BUSY, "backlog full")))
    >>> ErrorCode(e.code).name, e.reason, e.versions
    ('SERVER_BUSY', 'backlog full', (1,))
    """
    _expect_type(header, MsgType.ERROR)
    n = len(payload)
    if n < ERROR_FIXED.size:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"ERROR payload: expected at least "
                            f"{ERROR_FIXED.size} bytes, got {n}")
    code, mask, ref, r1, r2, next_round = ERROR_FIXED.unpack_from(payload)
    if code == 0:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "ERROR field 'code': expected 1..65535, "
                            "got 0")
    if r1 or r2:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "ERROR reserved bytes 5-7: expected zero, "
                            f"got {bytes(payload[5:8]).hex(' ')}")
    if n - ERROR_FIXED.size > MAX_REASON_BYTES:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"ERROR reason: expected at most "
                            f"{MAX_REASON_BYTES} bytes, got {n - ERROR_FIXED.size}")
    try:
        reason = bytes(payload[ERROR_FIXED.size:]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD,
                            f"ERROR reason: expected UTF-8 text, got {e.reason}") from None
    try:
        code = ErrorCode(code)
    except ValueError:
        pass  # a newer peer's code: kept as a plain int, handled as a generic failure
    versions = tuple(v + 1 for v in range(16) if mask >> v & 1)
    return ErrorInfo(code, reason, ref, next_round, versions)


# -- SYNDROME ---------------------------------------------------------------------------------


