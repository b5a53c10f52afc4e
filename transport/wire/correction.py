"""CORRECTION bodies: the committed round range, the logical observable flips, optional fault ids.

Specification: ``docs/protocol.md`` §6.4.

Example
-------
>>> from qecd.transport.wire.header import parse_packet
>>> import numpy as np
>>> c = Correction(first_round=0, last_round=4, observables=np.array([1], np.uint8), shot_end=True)
>>> got = decode_correction(*parse_packet(encode_correction(c, stream_id=1)))
>>> got.observables.tolist(), got.last_round, got.shot_end
([1], 4, True)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from qecd.errors import ProtocolError
from qecd.transport.wire.header import (
    _CORRECTION,
    _FAULT_IDS,
    _SHOT_END,
    _U8,
    _U32,
    _U32_DTYPE,
    _U64,
    _ZERO_PAD,
    CORRECTION_FIXED,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    Buffer,
    ErrorCode,
    Header,
    MsgType,
    _expect_type,
    _view,
)


class Correction(NamedTuple):
    """A CORRECTION body.

    Attributes
    ----------
    first_round, last_round : int
        The committed rounds (absolute, inclusive), within one shot.
    observables : numpy.ndarray of uint8, shape (num_observables,)
        0/1 logical observable flips caused by the faults committed for these rounds. XOR
        over a shot's CORRECTIONs gives the shot's prediction.
    fault_ids : numpy.ndarray of uint32 or None
        The committed faults (indices of ``error`` instructions in the DEM, flattened), when
        the stream asked for them; else None.
    service_ns : int
        Server time from receiving the triggering SYNDROME to handing this CORRECTION to
        the transport (0 = not measured).
    shot_end : bool
        ``last_round`` is the final round of its shot: the shot's prediction is complete.
    """

    first_round: int
    last_round: int
    observables: np.ndarray
    fault_ids: np.ndarray | None = None
    service_ns: int = 0
    shot_end: bool = False


def correction_frame_len(num_observables: int, num_faults: int | None = None) -> int:
    """Bytes of a CORRECTION frame (``num_faults=None``: without the fault id section).

    Examples
    --------
    >>> correction_frame_len(1), correction_frame_len(1, 2), correction_frame_len(33)
    (68, 76, 72)
    """
    return (HEADER_SIZE + CORRECTION_FIXED.size + 4 * ((num_observables + 31) // 32)
            + 4 * (num_faults or 0))


def pack_correction_into(buf: Buffer, offset: int, *, stream_id: int, seq: int,
                         first_round: int, last_round: int, observables: np.ndarray,
                         fault_ids: np.ndarray | None = None, service_ns: int = 0,
                         timestamp_ns: int = 0, shot_end: bool = False) -> int:
    """Write a whole CORRECTION frame into ``buf[offset:]``; returns its length.

    Parameters
    ----------
    buf : writable bytes-like
        Must hold ``correction_frame_len(len(observables), len(fault_ids))`` bytes.
    offset : int
    stream_id : int
    seq : int
        Header ``round``: the last round of the SYNDROME packet that triggered this commit.
    first_round, last_round : int
        Committed rounds, inclusive.
    observables : numpy.ndarray, shape (num_observables,)
        0/1 logical flips (non-zero = flipped).
    fault_ids : array of int in 0..2**32-1, optional
        Matched fault ids; sets :attr:`Flags.FAULT_IDS`.
    service_ns, timestamp_ns : int
        ``timestamp_ns`` echoes the triggering SYNDROME's; ``service_ns`` saturates at 2**64-1.
    shot_end : bool
        Sets :attr:`Flags.SHOT_END`.

    Examples
    --------
    >>> buf = bytearray(128)
    >>> pack_correction_into(buf, 0, stream_id=7, seq=7, first_round=4, last_round=7,
    ...                      observables=np.array([1], np.uint8), shot_end=True)
    68
    """
    obs = np.asarray(observables)
    if obs.ndim != 1:
        raise ValueError(f"observables: expected a 1-d array, got shape {obs.shape}")
    if not 0 <= first_round <= last_round <= _U64:
        raise ValueError(f"rounds: expected 0 <= first_round <= last_round < 2**64, got "
                         f"{first_round}..{last_round}")
    nobs = obs.shape[0]
    obs_len = 4 * ((nobs + 31) // 32)
    flags = _SHOT_END if shot_end else 0
    nf = 0
    if fault_ids is not None:
        fi = np.asarray(fault_ids)
        if fi.ndim != 1 or (fi.size and fi.dtype != _U32_DTYPE and (
                fi.dtype.kind not in "iu" or int(fi.min()) < 0 or int(fi.max()) > _U32)):
            raise ValueError(f"fault_ids: expected a 1-d array of integers in 0..2**32-1, got "
                             f"{fi.dtype} {fi.shape}")
        nf = fi.shape[0]
        flags |= _FAULT_IDS
    payload_len = CORRECTION_FIXED.size + obs_len + 4 * nf
    if len(buf) < offset + HEADER_SIZE + payload_len:  # a short bytearray would silently grow
        raise ValueError(f"buf: expected at least {offset + HEADER_SIZE + payload_len} bytes, "
                         f"got {len(buf)}")
    if type(buf) is not bytearray:
        buf = _view(buf)
    at = offset + HEADER_SIZE
    try:
        HEADER.pack_into(buf, offset, MAGIC, VERSION, _CORRECTION, flags, 0, stream_id,
                         payload_len, seq, timestamp_ns)
        CORRECTION_FIXED.pack_into(buf, at, first_round, last_round, min(service_ns, _U64),
                                   nobs, nf)
    except struct.error as e:
        raise ValueError(f"CORRECTION field out of range: {e}") from None
    at += CORRECTION_FIXED.size
    if obs_len:
        used = (nobs + 7) // 8
        buf[at:at + used] = np.packbits(obs, None, "little").data
        buf[at + used:at + obs_len] = _ZERO_PAD[:obs_len - used]
    if nf:
        at += obs_len
        buf[at:at + 4 * nf] = fi.astype("<u4", copy=False).view(np.uint8).data
    return HEADER_SIZE + payload_len


def encode_correction(correction: Correction, *, stream_id: int, seq: int = 0,
                      timestamp_ns: int = 0) -> bytes:
    """Encode a CORRECTION frame (see :func:`pack_correction_into`).

    Examples
    --------
    >>> c = Correction(4, 7, np.array([1], np.uint8), np.array([17, 342]), 2500, True)
    >>> d = decode_correction(*parse_packet(encode_correction(c, stream_id=7, seq=7)))
    >>> d.first_round, d.last_round, d.observables.tolist(), d.fault_ids.tolist(), d.shot_end
    (4, 7, [1], [17, 342], True)
    """
    nf = None if correction.fault_ids is None else len(correction.fault_ids)
    buf = bytearray(correction_frame_len(len(correction.observables), nf))
    pack_correction_into(buf, 0, stream_id=stream_id, seq=seq,
                         first_round=correction.first_round, last_round=correction.last_round,
                         observables=correction.observables, fault_ids=correction.fault_ids,
                         service_ns=correction.service_ns, timestamp_ns=timestamp_ns,
                         shot_end=correction.shot_end)
    return bytes(buf)


def decode_correction(header: Header, payload: Buffer) -> Correction:
    """Decode and validate a CORRECTION body.

    ``fault_ids`` is a read-only view into ``payload`` (no copy).

    Examples
    --------
    >>> c = Correction(0, 2, np.array([0, 1], np.uint8))
    >>> decode_correction(*parse_packet(encode_correction(c, stream_id=1))).observables.tolist()
    [0, 1]
    """
    if header.msg_type != _CORRECTION:
        _expect_type(header, MsgType.CORRECTION)
    n = len(payload)
    if n < CORRECTION_FIXED.size:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "CORRECTION payload: expected at least "
                            f"{CORRECTION_FIXED.size} bytes, got {n}")
    first, last, service, nobs, nf = CORRECTION_FIXED.unpack_from(payload)
    if first > last:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "CORRECTION field 'last_round': expected >= "
                            f"first_round {first}, got {last}")
    has_faults = bool(header.flags & _FAULT_IDS)
    if nf and not has_faults:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, "CORRECTION field 'num_faults': expected 0 "
                            f"without the FAULT_IDS flag, got {nf}")
    obs_len = 4 * ((nobs + 31) // 32)
    expected = CORRECTION_FIXED.size + obs_len + 4 * nf
    if n != expected:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"CORRECTION payload: expected {expected} "
                            f"bytes for {nobs} observables and {nf} fault ids, got {n}")
    fixed = CORRECTION_FIXED.size
    used = (nobs + 7) // 8
    if (nobs & 7 and payload[fixed + used - 1] >> (nobs & 7)) or \
            bytes(payload[fixed + used:fixed + obs_len]) != _ZERO_PAD[:obs_len - used]:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"CORRECTION observable bits: expected bits "
                            f"{nobs}..{8 * obs_len - 1} zero (padding), got "
                            f"{bytes(payload[fixed + max(used - 1, 0):fixed + obs_len]).hex(' ')}")
    observables = np.unpackbits(np.frombuffer(payload, _U8, used, fixed), None, nobs, "little")
    faults = None
    if has_faults:
        faults = np.frombuffer(payload, _U32_DTYPE, nf, fixed + obs_len)
    return Correction(first, last, observables, faults, service,
                      bool(header.flags & _SHOT_END))


# -- dispatch ---------------------------------------------------------------------------------


