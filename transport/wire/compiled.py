"""The wire codec in Numba: the header, ERROR and CORRECTION writers the ring loops call.

The same packets as :mod:`qecd.transport.wire.header`, :mod:`~qecd.transport.wire.error` and
:mod:`~qecd.transport.wire.correction` write with ``struct``, for callers inside Numba (no
Python objects, no allocation: they write into the caller's ``uint8`` buffer and return the
frame length). Every constant is taken from the enums and structs of
:mod:`qecd.transport.wire.header`; ``tests/test_wire_agreement.py`` checks that these writers
and readers agree byte for byte with the Python codec.

Example
-------
>>> import numpy as np
>>> out = np.zeros(8, np.uint8)
>>> put_u32(out, 0, 0x01020304); get_u32(out, 0) == 0x01020304, out[:4].tolist()
(True, [4, 3, 2, 1])
"""

from __future__ import annotations

import numba
import numpy as np

from qecd import _jit
from qecd.transport.wire import header as H
from qecd.transport.wire.header import ErrorCode, Flags, MsgType

_JIT = _jit.KERNEL

MAGIC = H.MAGIC
VERSION = H.VERSION
HEADER_SIZE = H.HEADER_SIZE
CORR_FIXED = H.CORRECTION_FIXED.size  #: fixed part of a CORRECTION body
ERROR_FIXED = H.ERROR_FIXED.size  #: fixed part of an ERROR body (the reason follows)
T_SYNDROME = int(MsgType.SYNDROME)
T_CORRECTION = int(MsgType.CORRECTION)
T_ERROR = int(MsgType.ERROR)
T_HEARTBEAT = int(MsgType.HEARTBEAT)
T_BYE = int(MsgType.BYE)
F_FAULT_IDS = int(Flags.FAULT_IDS)
F_SHOT_END = int(Flags.SHOT_END)
E_BAD_MAGIC = int(ErrorCode.BAD_MAGIC)
E_VERSION = int(ErrorCode.UNSUPPORTED_VERSION)
E_UNKNOWN_TYPE = int(ErrorCode.UNKNOWN_TYPE)
E_SHORT = int(ErrorCode.SHORT_FRAME)
E_LENGTH = int(ErrorCode.LENGTH_MISMATCH)
E_BAD_HEADER = int(ErrorCode.BAD_HEADER)
E_BAD_PAYLOAD = int(ErrorCode.BAD_PAYLOAD)
E_UNKNOWN_STREAM = int(ErrorCode.UNKNOWN_STREAM)
E_GAP = int(ErrorCode.ROUND_GAP)
E_DUP = int(ErrorCode.ROUND_DUPLICATE)
E_UNEXPECTED = int(ErrorCode.UNEXPECTED_TYPE)
E_DECODER = int(ErrorCode.DECODER_ERROR)
E_DROPPED = int(ErrorCode.SYNDROMES_DROPPED)


@numba.njit(inline="always", **_JIT)
def get_u16(b, o):
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@numba.njit(inline="always", **_JIT)
def get_u32(b, o):
    return get_u16(b, o) | (get_u16(b, o + 2) << 16)


@numba.njit(inline="always", **_JIT)
def get_u64(b, o):
    return get_u32(b, o) | (get_u32(b, o + 4) << 32)


@numba.njit(inline="always", **_JIT)
def put_u16(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF


@numba.njit(inline="always", **_JIT)
def put_u32(b, o, v):
    put_u16(b, o, v & 0xFFFF)
    put_u16(b, o + 2, (v >> 16) & 0xFFFF)


@numba.njit(inline="always", **_JIT)
def put_u64(b, o, v):
    put_u32(b, o, v & 0xFFFFFFFF)
    put_u32(b, o + 4, (v >> 32) & 0xFFFFFFFF)


@numba.njit(inline="always", **_JIT)
def write_header(b, msg_type, flags, count, stream_id, payload_len, rnd, ts):
    """The 32-byte header at ``b[0:32]`` (layout of :data:`qecd.transport.wire.header.HEADER`)."""
    put_u16(b, 0, MAGIC)
    b[2] = VERSION
    b[3] = msg_type
    put_u16(b, 4, flags)
    put_u16(b, 6, count)
    put_u32(b, 8, stream_id)
    put_u32(b, 12, payload_len)
    put_u64(b, 16, rnd)
    put_u64(b, 24, ts)


#: longest reason a ring loop puts in an ERROR (ring slots leave room for it, §14.2): the
#: fixed reasons below are at most 64 bytes; a dropped shot's DECODER_ERROR and
#: SYNDROMES_DROPPED name the decoder, its failure and the rounds lost, as over ZeroMQ
MAX_RING_REASON = 256
#: reason row for a ring slot whose doorbell or length no correct producer writes
RING_CORRUPT = 64
_RING_REASONS = {
    E_SHORT: "ring packet: expected >= 32 bytes (a header), got fewer",
    E_BAD_MAGIC: "field 'magic': expected 51 44 (b'QD'), got other bytes",
    E_VERSION: "field 'version': expected 1, got another version",
    E_LENGTH: "field 'payload_len': expected slot length - 32, got another",
    E_UNEXPECTED: "field 'msg_type': expected SYNDROME, HEARTBEAT or BYE in ring 0",
    E_UNKNOWN_STREAM: "field 'stream_id': expected the ring's stream (the ACCEPT's)",
    E_BAD_HEADER: "SYNDROME field 'count': expected 1..65535 rounds, got 0",
    E_GAP: "SYNDROME field 'round': expected next_round, got later: a gap",
    E_DUP: "SYNDROME field 'round': expected next_round, got earlier: a dup",
    E_BAD_PAYLOAD: "SYNDROME payload: expected the layout's bytes, zero padding",
    E_DECODER: "decoder failed on this shot's rounds; the rest is dropped",
    E_DROPPED: "rounds before next_round were dropped: no CORRECTION for them",
    RING_CORRUPT: "ring 0 slot: doorbell or length invalid; the stream is closed",
}


#: room of a fixed reason in :data:`REASONS`
_FIXED_REASON = 64


def _reason_table() -> tuple[np.ndarray, np.ndarray]:
    table = np.zeros((RING_CORRUPT + 1, _FIXED_REASON), np.uint8)
    lengths = np.zeros(RING_CORRUPT + 1, np.int64)
    for row, text in _RING_REASONS.items():
        raw = text.encode()
        assert len(raw) <= _FIXED_REASON, text
        table[row, :len(raw)] = np.frombuffer(raw, np.uint8)
        lengths[row] = len(raw)
    return table, lengths


#: the reasons as a Numba constant: row = ErrorCode (or RING_CORRUPT), bytes and lengths
REASONS, REASON_LEN = _reason_table()


def ring_reason(row: int) -> str:
    """The reason text a ring loop sends with ERROR ``row`` (an ErrorCode or RING_CORRUPT).

    >>> ring_reason(E_GAP)
    "SYNDROME field 'round': expected next_round, got later: a gap"
    """
    return _RING_REASONS.get(row, "")


@numba.njit(**_JIT)
def write_error(out, code, ref_type, stream_id, rnd, ts, next_round):
    """An ERROR packet for ``code`` with its fixed reason (:func:`ring_reason`)."""
    return write_error_reason(out, code, code, ref_type, stream_id, rnd, ts, next_round)


@numba.njit(**_JIT)
def write_error_reason(out, code, reason, ref_type, stream_id, rnd, ts, next_round):
    """An ERROR packet for ``code`` whose reason is row ``reason`` of :data:`REASONS` (cut
    to the room ``out`` leaves). Returns the frame length."""
    n = REASON_LEN[reason] if 0 <= reason < REASON_LEN.shape[0] else 0
    o = HEADER_SIZE + ERROR_FIXED
    for i in range(min(n, out.shape[0] - o)):
        out[o + i] = REASONS[reason, i]
    return write_error_head(out, code, ref_type, stream_id, rnd, ts, next_round, n)


@numba.njit(**_JIT)
def write_error_head(out, code, ref_type, stream_id, rnd, ts, next_round, n):
    """The header and fixed part of an ERROR packet whose reason, ``n`` bytes, is already at
    ``out[HEADER_SIZE + ERROR_FIXED:]`` (cut to the room ``out`` leaves and to
    :data:`MAX_RING_REASON`). Returns the frame length."""
    room = min(out.shape[0] - HEADER_SIZE - ERROR_FIXED, MAX_RING_REASON)
    if n > room:
        n = room if room > 0 else 0
    write_header(out, T_ERROR, 0, 0, stream_id, ERROR_FIXED + n, rnd, ts)
    o = HEADER_SIZE  # ERROR_FIXED: code u16, versions u16, ref_type u8, u8 0, u16 0, next_round
    put_u16(out, o, code)
    put_u16(out, o + 2, 1 << (VERSION - 1))
    out[o + 4] = ref_type
    out[o + 5] = 0
    put_u16(out, o + 6, 0)
    put_u64(out, o + 8, next_round)
    return HEADER_SIZE + ERROR_FIXED + n


@numba.njit(**_JIT)
def put_text(out, o, text, n):
    """Copy ``text[:n]`` to ``out[o:]`` as far as ``out`` has room; returns the new offset."""
    m = min(n, out.shape[0] - o)
    for i in range(m):
        out[o + i] = text[i]
    return o + (m if m > 0 else 0)


@numba.njit(**_JIT)
def put_decimal(out, o, v):
    """Write the non-negative integer ``v`` in decimal at ``out[o:]`` (as far as there is
    room); returns the new offset."""
    digits = 1
    x = v
    while x >= 10:
        x //= 10
        digits += 1
    for i in range(digits - 1, -1, -1):
        if o + i < out.shape[0]:
            out[o + i] = 48 + v % 10
        v //= 10
    return min(o + digits, out.shape[0])


#: the reason of SYNDROMES_DROPPED after a failed window, in pieces around its numbers
#: (first and last round lost, stream id, the round to resend from): one text for both
#: transports (:func:`dropped_reason` in Python, :func:`put_dropped_reason` in Numba)
_DROPPED = ("rounds ", "..", " of stream ", " were received but will not be corrected "
            "(decoder error); resend from round ", " (next shot)")
_D0, _D1, _D2, _D3, _D4 = (np.frombuffer(t.encode(), np.uint8).copy() for t in _DROPPED)


def dropped_reason(first: int, last: int, stream_id: int, next_round: int) -> str:
    """SYNDROMES_DROPPED's reason after a failed window.

    >>> print(dropped_reason(1, 1, 7, 2))  # doctest: +NORMALIZE_WHITESPACE
    rounds 1..1 of stream 7 were received but will not be corrected (decoder error);
    resend from round 2 (next shot)
    """
    a, b, c, d, e = _DROPPED
    return f"{a}{first}{b}{last}{c}{stream_id}{d}{next_round}{e}"


def decoder_failed_reason(decoder: str, stream_id: int, error: str, detail: str) -> str:
    """DECODER_ERROR's reason: the decoder, the stream, the exception's name and text.

    >>> decoder_failed_reason("uf", 7, "DecoderError", "uf: no set of faults explains it")
    "decoder 'uf' failed on stream 7: DecoderError: uf: no set of faults explains it"
    """
    return f"decoder {decoder!r} failed on stream {stream_id}: {error}: {detail[:300]}"


@numba.njit(**_JIT)
def put_dropped_reason(out, o, first, last, stream_id, next_round):
    """:func:`dropped_reason` written at ``out[o:]``; returns the new offset."""
    o = put_text(out, o, _D0, _D0.shape[0])
    o = put_decimal(out, o, first)
    o = put_text(out, o, _D1, _D1.shape[0])
    o = put_decimal(out, o, last)
    o = put_text(out, o, _D2, _D2.shape[0])
    o = put_decimal(out, o, stream_id)
    o = put_text(out, o, _D3, _D3.shape[0])
    o = put_decimal(out, o, next_round)
    return put_text(out, o, _D4, _D4.shape[0])


#: byte offset of a CORRECTION's ``service_ns`` (after the header, first and last round)
CORR_SERVICE_AT = HEADER_SIZE + 16


@numba.njit(**_JIT)
def write_correction(out, stream_id, seq, ts, first_round, last_round, service_ns, obs, faults,
                     n_faults, want_faults, shot_end):
    """A CORRECTION packet: ``obs`` (uint8 0/1 per observable) bit-packed, ``faults[:n_faults]``
    appended when ``want_faults``. Returns the frame length."""
    n_obs = obs.shape[0]
    obs_len = 4 * ((n_obs + 31) // 32)
    nf = n_faults if want_faults else 0
    payload = CORR_FIXED + obs_len + 4 * nf
    flags = (F_SHOT_END if shot_end else 0) | (F_FAULT_IDS if want_faults else 0)
    write_header(out, T_CORRECTION, flags, 0, stream_id, payload, seq, ts)
    o = HEADER_SIZE
    put_u64(out, o, first_round)
    put_u64(out, o + 8, last_round)
    put_u64(out, CORR_SERVICE_AT, service_ns)
    put_u32(out, o + 24, n_obs)
    put_u32(out, o + 28, nf)
    o += CORR_FIXED
    for i in range(obs_len):
        out[o + i] = 0
    for j in range(n_obs):
        if obs[j]:
            out[o + (j >> 3)] |= np.uint8(1 << (j & 7))
    o += obs_len
    for i in range(nf):
        put_u32(out, o + 4 * i, faults[i])
    return HEADER_SIZE + payload


