"""The packet header and its constants: one 32-byte little-endian header before every body.

The byte-exact specification is ``docs/protocol.md`` (§3-§5, with hex vectors checked by
``tests/test_protocol.py``); this module is its reference for the header, the message types,
flags and error codes. Every other codec (the Numba one in :mod:`qecd.transport.wire.compiled`)
takes its constants from the enums here.

Example
-------
>>> frame = encode_frame(MsgType.HEARTBEAT, stream_id=3, seq=9)
>>> header, payload = parse_packet(frame)
>>> header.msg_type == MsgType.HEARTBEAT, header.stream_id, header.round, len(payload)
(True, 3, 9, 0)
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from enum import IntEnum, IntFlag
from typing import NamedTuple

import msgpack
import numpy as np

from qecd.errors import ProtocolError

Buffer = bytes | bytearray | memoryview

# -- constants --------------------------------------------------------------------------------

MAGIC = 0x4451  #: u16 at offset 0: the bytes ``b"QD"`` read little-endian
VERSION = 1  #: the protocol version this module speaks
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)  #: versions this module parses
#: the packet header: magic, version, msg_type, flags, count, stream_id, payload_len, round,
#: timestamp_ns; 32 bytes, little-endian, every field naturally aligned
HEADER = struct.Struct("<HBBHHIIQQ")
HEADER_SIZE = HEADER.size
#: CORRECTION fixed part: first_round, last_round, service_ns, num_observables, num_faults
CORRECTION_FIXED = struct.Struct("<QQQII")
#: ERROR fixed part: code, versions mask, ref_type, reserved u8, reserved u16, next_round
ERROR_FIXED = struct.Struct("<HHBBHQ")
#: the header as a numpy structured dtype (fields in ``HEADER``'s order), for vectorised builders
HEADER_DTYPE = np.dtype([
    ("magic", "<u2"), ("version", "u1"), ("msg_type", "u1"), ("flags", "<u2"), ("count", "<u2"),
    ("stream_id", "<u4"), ("payload_len", "<u4"), ("round", "<u8"), ("timestamp_ns", "<u8")])
MAX_COUNT = 0xFFFF  #: most rounds one SYNDROME can carry (``count`` is a u16)
MAX_HELLO_BYTES = 16 << 20  #: largest HELLO body accepted (a large DEM text fits)
MAX_SPEC_BYTES = 1024  #: largest ``spec`` string in a HELLO
MAX_REASON_BYTES = 1024  #: largest ERROR reason (UTF-8 bytes); longer reasons are truncated
MAX_WINDOW = 0xFFFF  #: largest ``window`` / ``commit`` in a HELLO
MAX_DETECTORS = 1 << 24  #: largest detectors per shot an ACCEPT / SyndromeLayout may declare
MAX_ROUNDS_PER_SHOT = 1 << 20  #: largest rounds per shot an ACCEPT / SyndromeLayout may declare
DEFAULT_MAX_FRAME = HEADER_SIZE + MAX_HELLO_BYTES  #: default ``max_frame`` of parse_packet
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_U8 = np.dtype(np.uint8)
_U32_DTYPE = np.dtype("<u4")
_DECODER_RE = re.compile(r"[A-Za-z0-9_.:=,+-]{1,128}")


class MsgType(IntEnum):
    """Packet types (header byte 3). 0 and 9..255 are unassigned and rejected."""

    HELLO = 1  #: client -> server: open a stream (msgpack body)
    ACCEPT = 2  #: server -> client: the stream's id and round layout (msgpack body)
    SYNDROME = 3  #: client -> server: ``count`` consecutive rounds of detection events
    CORRECTION = 4  #: server -> client: committed round range and logical observable flips
    ERROR = 5  #: either way: numeric code, next expected round and a readable reason
    STATS = 6  #: client -> server empty (request); server -> client msgpack map (reply)
    HEARTBEAT = 7  #: client -> server, echoed back; empty body
    BYE = 8  #: close a stream (client request, server reply or server shutdown); empty body


class Flags(IntFlag):
    """Header flag bits (offset 4, u16). Bits not defined for a message type must be 0."""

    NONE = 0
    FAULT_IDS = 1  #: CORRECTION: the body ends with ``num_faults`` u32 fault ids
    SHOT_END = 2  #: CORRECTION: ``last_round`` is the last round of its shot


class ErrorCode(IntEnum):
    """ERROR codes (u16). Ranges: 1-15 framing, 16-31 bodies, 32-47 stream state, 48-63 service.

    The names BUSY/SYNDROMES_DROPPED/INTERNAL follow cudaqx realtime's statuses where the
    meaning is the same (``SERVER_BUSY`` is its ``BUSY``, ``BAD_HELLO`` covers its
    ``INVALID_DECODER``).
    """

    BAD_MAGIC = 1  #: bytes 0-1 are not ``b"QD"``
    UNSUPPORTED_VERSION = 2  #: version byte not supported; ERROR lists the supported ones
    UNKNOWN_TYPE = 3  #: msg_type is not a :class:`MsgType`
    SHORT_FRAME = 4  #: fewer than 4 bytes, or fewer than the 32-byte header
    LENGTH_MISMATCH = 5  #: ``payload_len`` differs from the bytes that follow the header
    OVERSIZE = 6  #: frame (or HELLO body) larger than the receiver's limit
    BAD_FLAGS = 7  #: a flag bit set that is not defined for this message type
    BAD_HEADER = 8  #: a header field out of range for the type (count, stream_id, round)
    BAD_PAYLOAD = 16  #: malformed body: wrong size for the layout, padding bits set, bad map
    BAD_HELLO = 17  #: malformed HELLO, bad spec or DEM, unknown decoder or settings
    UNKNOWN_STREAM = 32  #: no open stream has this id (never opened, closed or timed out)
    NOT_OWNER = 33  #: the stream belongs to another peer
    ROUND_GAP = 34  #: SYNDROME starts after the expected round: packet dropped
    ROUND_DUPLICATE = 35  #: SYNDROME starts before the expected round (duplicate, reordered)
    UNEXPECTED_TYPE = 36  #: a valid type this receiver never accepts (e.g. CORRECTION sent to
    #: the server)
    DECODER_ERROR = 48  #: the decoder failed on this stream's data
    SERVER_BUSY = 49  #: backpressure or no capacity: packet dropped, retry later
    SYNDROMES_DROPPED = 50  #: accepted rounds were discarded; no CORRECTION will cover them
    SHUTTING_DOWN = 51  #: the server is closing; no new work accepted
    INTERNAL = 63  #: a server bug; the server keeps serving other streams


# per-type header rules of parse_packet, indexed by msg_type (plain ints: this is the hot path)
_SYNDROME = int(MsgType.SYNDROME)
_CORRECTION = int(MsgType.CORRECTION)
_FAULT_IDS = int(Flags.FAULT_IDS)
_SHOT_END = int(Flags.SHOT_END)
_ZERO_PAD = bytes(4)
_ALLOWED_FLAGS = (0, 0, 0, 0, int(Flags.FAULT_IDS | Flags.SHOT_END), 0, 0, 0, 0)
#: stream_id rule: 0 any, 1 must be 0 (HELLO), 2 must be non-zero
_STREAM_RULE = (0, 1, 2, 2, 2, 0, 0, 0, 2)
_MIN_PAYLOAD = (0, 1, 1, 0, CORRECTION_FIXED.size, ERROR_FIXED.size, 0, 0, 0)
_MAX_PAYLOAD = (0, _U32, _U32, _U32, _U32, _U32, _U32, 0, 0)


# -- header -----------------------------------------------------------------------------------


class Header(NamedTuple):
    """The 32-byte packet header, in wire order (``Header._make(HEADER.unpack_from(buf))``).

    ``msg_type`` stays a plain ``int`` (compare with :class:`MsgType` members).
    """

    magic: int
    version: int
    msg_type: int
    flags: int
    count: int
    stream_id: int
    payload_len: int
    round: int
    timestamp_ns: int


def claimed_type(frame) -> int:
    """The ``msg_type`` byte of a frame that starts with the magic ``b"QD"``, else -1: what a
    receiver may look at before parsing (nothing is checked beyond the magic).

    >>> claimed_type(encode_frame(MsgType.HELLO, b"")), claimed_type(b"xx")
    (1, -1)
    """
    if len(frame) >= 4 and frame[0] == MAGIC & 0xFF and frame[1] == MAGIC >> 8:
        return int(frame[3])
    return -1


def _view(frame: Buffer) -> memoryview:
    mv = frame if isinstance(frame, memoryview) else memoryview(frame)
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    return mv


def _type_name(t: int) -> str:
    return MsgType(t).name if 1 <= t <= 8 else str(t)


def parse_packet(frame: Buffer, *, max_frame: int = DEFAULT_MAX_FRAME
                 ) -> tuple[Header, memoryview]:
    """Validate one packet's framing and split it into header and payload.

    Checks, in this order (the first failure is raised): size limit (OVERSIZE), at least 4
    bytes (SHORT_FRAME), magic (BAD_MAGIC), version (UNSUPPORTED_VERSION), at least 32 bytes
    (SHORT_FRAME), type (UNKNOWN_TYPE), flags (BAD_FLAGS), ``payload_len`` against the bytes
    that follow (LENGTH_MISMATCH), per-type header fields (BAD_HEADER: ``count``,
    ``stream_id``, round overflow) and per-type fixed body sizes (BAD_PAYLOAD). Bodies are
    checked by the ``decode_*`` functions.

    Parameters
    ----------
    frame : bytes-like
        One ZeroMQ message part (or one ring slot's used bytes).
    max_frame : int
        Largest frame accepted, header included.

    Returns
    -------
    header : Header
    payload : memoryview
        The ``payload_len`` bytes after the header (a view into ``frame``, no copy).

    Raises
    ------
    ProtocolError
        With the :class:`ErrorCode` to reply with.

    Examples
    --------
    >>> h, p = parse_packet(encode_heartbeat(seq=3, timestamp_ns=99), max_frame=64)
    >>> h.msg_type == MsgType.HEARTBEAT, h.round, h.timestamp_ns, len(p)
    (True, 3, 99, 0)
    >>> parse_packet(b"XD" + bytes(30), max_frame=64)
    Traceback (most recent call last):
    qecd.errors.ProtocolError: [1] field 'magic' (bytes 0-1): expected 51 44 (b'QD'), got 58 44
    """
    if type(frame) is not bytes:
        frame = _view(frame)
    n = len(frame)
    if n > max_frame:
        raise ProtocolError(ErrorCode.OVERSIZE,
                            f"frame length: expected at most {max_frame} bytes, got {n}")
    if n < HEADER_SIZE:
        _raise_short(frame, n)
    fields = HEADER.unpack_from(frame)
    magic, version, t, flags, count, sid, plen, rnd, _ = fields
    if magic != MAGIC:
        raise ProtocolError(ErrorCode.BAD_MAGIC, "field 'magic' (bytes 0-1): expected 51 44 "
                            f"(b'QD'), got {bytes(frame[:2]).hex(' ')}")
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "field 'version' (byte 2): expected "
                            f"one of {_versions_text()}, got {version}")
    if not 0 < t < 9:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE,
                            f"field 'msg_type' (byte 3): expected 1..8, got {t}")
    if flags & ~_ALLOWED_FLAGS[t]:
        raise ProtocolError(ErrorCode.BAD_FLAGS, f"{_type_name(t)} field 'flags' (bytes 4-5): "
                            f"expected only bits 0x{_ALLOWED_FLAGS[t]:04x}, got 0x{flags:04x}")
    if plen != n - HEADER_SIZE:
        raise ProtocolError(ErrorCode.LENGTH_MISMATCH, "field 'payload_len' (bytes 12-15): "
                            f"expected {n - HEADER_SIZE} (frame length {n} - {HEADER_SIZE}), "
                            f"got {plen}")
    if t == _SYNDROME:
        if not count:
            raise ProtocolError(ErrorCode.BAD_HEADER, "SYNDROME field 'count' (bytes 6-7): "
                                f"expected 1..{MAX_COUNT} rounds, got 0")
        if rnd + count > _U64 + 1:
            raise ProtocolError(ErrorCode.BAD_HEADER, "SYNDROME fields 'round' + 'count': "
                                f"expected at most 2**64, got {rnd} + {count}")
    elif count:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"{_type_name(t)} field 'count' (bytes 6-7): "
                            f"expected 0 (only SYNDROME uses it), got {count}")
    rule = _STREAM_RULE[t]
    if rule == 1 and sid:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"{_type_name(t)} field 'stream_id' "
                            f"(bytes 8-11): expected 0 (the server assigns it), got {sid}")
    if rule == 2 and not sid:
        raise ProtocolError(ErrorCode.BAD_HEADER, f"{_type_name(t)} field 'stream_id' "
                            "(bytes 8-11): expected a non-zero stream id, got 0")
    if plen < _MIN_PAYLOAD[t] or plen > _MAX_PAYLOAD[t]:
        raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"{_type_name(t)} payload: expected "
                            f"{_payload_rule_text(t)} bytes, got {plen}")
    return Header._make(fields), memoryview(frame)[HEADER_SIZE:]


def _raise_short(frame: Buffer, n: int) -> None:
    """The checks of a frame shorter than the header: magic and version first if present."""
    if n >= 4:
        if frame[0] | (frame[1] << 8) != MAGIC:
            raise ProtocolError(ErrorCode.BAD_MAGIC, "field 'magic' (bytes 0-1): expected "
                                f"51 44 (b'QD'), got {bytes(frame[:2]).hex(' ')}")
        if frame[2] not in SUPPORTED_VERSIONS:
            raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, "field 'version' (byte 2): "
                                f"expected one of {_versions_text()}, got {frame[2]}")
    raise ProtocolError(ErrorCode.SHORT_FRAME,
                        f"frame length: expected at least {HEADER_SIZE} bytes, got {n}")


def _payload_rule_text(t: int) -> str:
    lo, hi = _MIN_PAYLOAD[t], _MAX_PAYLOAD[t]
    return str(lo) if lo == hi else f"at least {lo}"


def pack_header_into(buf: Buffer, offset: int, msg_type: int, *, flags: int = 0, count: int = 0,
                     stream_id: int = 0, seq: int = 0, timestamp_ns: int = 0,
                     payload_len: int = 0) -> None:
    """Write a version-1 header into ``buf[offset:offset + 32]`` (one ``struct`` call).

    ``seq`` fills the ``round`` field (offset 16). No semantic checks: use it for ring slots
    and for building test frames.

    Examples
    --------
    >>> buf = bytearray(32)
    >>> pack_header_into(buf, 0, MsgType.BYE, stream_id=7)
    >>> buf[:12].hex(' ')
    '51 44 01 08 00 00 00 00 07 00 00 00'
    """
    try:
        HEADER.pack_into(buf, offset, MAGIC, VERSION, int(msg_type), flags, count, stream_id,
                         payload_len, seq, timestamp_ns)
    except struct.error as e:
        raise ValueError(f"header field out of range: {e}") from None


def encode_frame(msg_type: int, payload: Buffer = b"", *, flags: int = 0, count: int = 0,
                 stream_id: int = 0, seq: int = 0, timestamp_ns: int = 0,
                 version: int = VERSION, magic: int = MAGIC) -> bytes:
    """Header plus ``payload`` as one frame; ``payload_len`` is set from ``payload``.

    The low-level builder behind every ``encode_*``: no semantic checks, and ``version`` and
    ``magic`` may be overridden (to build hostile frames in tests).

    Examples
    --------
    >>> encode_frame(MsgType.HEARTBEAT, seq=1).hex()[:16]
    '5144010700000000'
    """
    try:
        head = HEADER.pack(magic, version, int(msg_type), flags, count, stream_id,
                           len(payload), seq, timestamp_ns)
    except struct.error as e:
        raise ValueError(f"header field out of range: {e}") from None
    return head + bytes(payload)


def _versions_text(versions: Sequence[int] = SUPPORTED_VERSIONS) -> str:
    return ", ".join(str(v) for v in versions)


def _expect_type(header: Header, t: MsgType) -> None:
    if header.msg_type != t:
        raise ProtocolError(ErrorCode.UNEXPECTED_TYPE, f"field 'msg_type': expected {t.name} "
                            f"({int(t)}), got {_type_name(header.msg_type)}")


# -- msgpack control bodies -------------------------------------------------------------------


def _where_not_utf8(payload: Buffer) -> str:
    """Which top-level key's str (or which key) of a map is not UTF-8, as `` in key 'k'``,
    or ``""`` when it cannot be told (msgpack's error does not say)."""
    try:
        m = msgpack.unpackb(payload, raw=True, strict_map_key=False)
    except Exception:
        return ""
    if not isinstance(m, dict):
        return ""

    def bad(v: object) -> bool:
        if isinstance(v, bytes):
            try:
                v.decode()
            except UnicodeDecodeError:
                return True
            return False
        if isinstance(v, (list, tuple)):
            return any(bad(x) for x in v)
        if isinstance(v, dict):
            return any(bad(k) or bad(x) for k, x in v.items())
        return False

    for k, v in m.items():
        if bad(k):
            return " in a map key"
        if bad(v):
            return f" in key {k.decode()!r}"
    return ""


def _unpack_trouble(e: Exception, size: int, payload: Buffer = b"") -> str:
    """What was wrong with a body msgpack could not unpack, in the protocol's words (not
    msgpack's exception: a C client cannot act on ``ExtraData: unpack(b) received extra
    data.``).

    >>> try:
    ...     msgpack.unpackb(msgpack.packb({"a": 1}) + b"xy")
    ... except Exception as e:
    ...     print(_unpack_trouble(e, 6))
    2 bytes after the end of the map (the body must be the map alone)
    """
    text = str(e)
    if isinstance(e, msgpack.ExtraData):
        n = len(e.extra)
        return (f"{n} byte{'s' if n != 1 else ''} after the end of the map (the body must be "
                f"the map alone)")
    if isinstance(e, msgpack.StackError):
        return "values nested deeper than the decoder allows"
    if isinstance(e, msgpack.FormatError):
        return "a byte that starts no msgpack value (0xc1 is reserved)"
    if isinstance(e, UnicodeDecodeError):
        return (f"a str that is not UTF-8{_where_not_utf8(payload)} ({e.reason} at byte "
                f"{e.start} of it; send bytes as bin)")
    if "incomplete input" in text:
        return ("an empty body" if size == 0 else "1 byte that ends inside a msgpack value "
                "(cut short)" if size == 1
                else f"{size} bytes that end inside a msgpack value (cut short)")
    if "exceeds max_" in text:
        return (f"a map, array, str or bin whose length is more than the {size}-byte body "
                f"could hold (cut short, or a wrong length)")
    if "not allowed for map key" in text:
        return f"a map key that is not a string ({text.split(' is ')[0]})"
    return f"bytes msgpack cannot decode ({type(e).__name__}: {text})"


def _unpack_map(payload: Buffer, code: ErrorCode, what: str) -> dict:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types: all mean "bad bytes"
        raise ProtocolError(code, f"{what} body: not one msgpack map: "
                            f"{_unpack_trouble(e, len(payload), payload)}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(code, f"{what} body: expected a msgpack map, got "
                            f"{type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str):
            raise ProtocolError(code, f"{what} body: expected string keys, got {k!r}")
    return obj


def _is_int(v: object) -> bool:
    return type(v) is int


def _field(m: dict, key: str, code: ErrorCode, what: str, expected: str, ok,
           secret: bool = False) -> object:
    """``m[key]`` when ``ok`` of it, else ProtocolError(``code``) saying what was expected and
    what came: the value itself (cut to 80 characters), except a bin (its length only: bytes
    are unreadable in a reason and may be a credential) and a ``secret`` (its type, and a
    string's length; the reason is logged by the server too)."""
    v = m[key]
    if not ok(v):
        if isinstance(v, (bytes, bytearray)):
            got = f"a bin of {len(v)} bytes"
        elif secret:
            got = f"a value of type {type(v).__name__}" + (
                f" ({len(v)} characters)" if isinstance(v, str) else "")
        else:
            got = repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..."
        raise ProtocolError(code, f"{what} key {key!r}: expected {expected}, got {got}")
    return v


