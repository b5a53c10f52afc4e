"""The qecd wire protocol: one packet layout for ZeroMQ messages and shared-memory ring slots.

``docs/protocol.md`` is the normative, byte-exact specification (with hex test vectors that
``tests/test_protocol.py`` checks against this module); this module is its reference
implementation. In short, a packet is a fixed 32-byte little-endian header followed by
``payload_len`` bytes of body:

======  ====  =====  ===============================================================
offset  size  type   field
======  ====  =====  ===============================================================
0       2     u16    ``magic`` = 0x4451 (the bytes ``b"QD"``)
2       1     u8     ``version`` = 1
3       1     u8     ``msg_type`` (:class:`MsgType`)
4       2     u16    ``flags`` (:class:`Flags`; bits not defined for the type are 0)
6       2     u16    ``count``: rounds carried by a SYNDROME, 0 for every other type
8       4     u32    ``stream_id`` (server-assigned, non-zero; 0 = no stream)
12      4     u32    ``payload_len``: bytes after the header
16      8     u64    ``round``: first round of a SYNDROME, else a sequence number
24      8     u64    ``timestamp_ns``: client clock, echoed back by the server
======  ====  =====  ===============================================================

Control bodies (HELLO, ACCEPT, STATS) are msgpack maps; the per-round bodies (SYNDROME,
CORRECTION) and ERROR are raw little-endian binary, so a C or FPGA peer needs no msgpack on
its hot path. Detection events are bit-packed per round with stim's little bit order.

Encoders (``encode_*``, ``pack_*_into``) raise :class:`ValueError` for arguments the caller
got wrong; decoders (:func:`parse_packet`, ``decode_*``, :func:`unpack_syndrome_into`) raise
:class:`~qecd.errors.ProtocolError` carrying the :class:`ErrorCode` to send to the peer, with
a reason naming the field, what was allowed and what arrived, and nothing else.

Example
-------
>>> import numpy as np
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

import re
import struct
from collections.abc import Mapping, Sequence
from enum import IntEnum, IntFlag
from typing import NamedTuple

import msgpack
import numpy as np

from qecd.errors import ProtocolError

__all__ = [
    "MAGIC", "VERSION", "SUPPORTED_VERSIONS", "HEADER", "HEADER_SIZE", "MAX_COUNT",
    "MAX_HELLO_BYTES", "MAX_REASON_BYTES", "DEFAULT_MAX_FRAME", "CORRECTION_FIXED", "TRANSPORTS",
    "ERROR_FIXED", "MsgType", "Flags", "ErrorCode", "Header", "Hello", "Accept", "Correction",
    "ErrorInfo", "SyndromeLayout", "parse_packet", "encode_frame", "pack_header_into",
    "encode_hello", "decode_hello", "encode_accept", "decode_accept", "encode_syndrome",
    "pack_syndrome_into", "decode_syndrome_payload", "unpack_syndrome_into", "check_round",
    "encode_correction", "pack_correction_into", "correction_frame_len", "decode_correction",
    "encode_error", "encode_error_reply", "decode_error", "encode_stats", "decode_stats",
    "encode_heartbeat", "decode_heartbeat", "encode_bye", "decode_bye", "decode_body",
]

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


def _unpack_map(payload: Buffer, code: ErrorCode, what: str) -> dict:
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types: all mean "bad bytes"
        raise ProtocolError(code, f"{what} body: expected one msgpack map, got undecodable "
                            f"bytes ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(code, f"{what} body: expected a msgpack map, got "
                            f"{type(obj).__name__}")
    for k in obj:
        if not isinstance(k, str):
            raise ProtocolError(code, f"{what} body: expected string keys, got {k!r}")
    return obj


def _is_int(v: object) -> bool:
    return type(v) is int


def _field(m: dict, key: str, code: ErrorCode, what: str, expected: str, ok) -> object:
    v = m[key]
    if not ok(v):
        got = repr(v) if len(repr(v)) <= 80 else repr(v)[:77] + "..."
        raise ProtocolError(code, f"{what} key {key!r}: expected {expected}, got {got}")
    return v


class Hello(NamedTuple):
    """A HELLO body: what to decode and how.

    Attributes
    ----------
    spec : str or None
        An experiment spec string (e.g. ``"surface:d=5,r=5,p=0.001"``, grammar of
        :mod:`qecd.codes`). Exactly one of ``spec`` and ``dem`` is given.
    dem : str or None
        A stim detector error model text whose detector coordinates give the rounds.
    time_coord : int
        Which detector coordinate is time (``-1`` = last), used only with ``dem``.
    decoder : str
        Decoder name (``"pymatching"``, ``"uf"``, ...).
    window, commit : int or None
        Sliding-window rounds and commit rounds; ``window=None`` decodes whole shots
        (``commit`` must then be None); ``commit=None`` lets the server choose.
    want_faults : bool
        Ask for matched fault ids in every CORRECTION.
    transport : str
        Where the stream's rounds flow: ``"zmq"`` (this connection, the default) or
        ``"shm"`` (a shared-memory ring pair the server creates and names in the ACCEPT;
        same-host clients only, ``uf`` decoder only). Sent only when not ``"zmq"``.
    """

    spec: str | None = None
    dem: str | None = None
    time_coord: int = -1
    decoder: str = "pymatching"
    window: int | None = None
    commit: int | None = None
    want_faults: bool = False
    transport: str = "zmq"


_HELLO_KEYS = ("spec", "dem", "time_coord", "decoder", "window", "commit", "want_faults",
               "transport")
TRANSPORTS = ("zmq", "shm")  #: values of the HELLO key ``transport``


def _hello_from_map(m: dict) -> Hello:
    bad = ErrorCode.BAD_HELLO
    for k in m:
        if k not in _HELLO_KEYS:
            raise ProtocolError(bad, f"HELLO key {k!r}: expected one of "
                                f"{', '.join(_HELLO_KEYS)}, got an unknown key")
    if ("spec" in m) == ("dem" in m):
        raise ProtocolError(bad, "HELLO keys 'spec'/'dem': expected exactly one of them, got "
                            + ("both" if "spec" in m else "neither"))
    spec = dem = None
    if "spec" in m:
        spec = _field(m, "spec", bad, "HELLO", f"a non-empty string of at most {MAX_SPEC_BYTES} "
                      "bytes", lambda v: isinstance(v, str) and 0 < len(v.encode()) <=
                      MAX_SPEC_BYTES)
        if "time_coord" in m:
            raise ProtocolError(bad, "HELLO key 'time_coord': expected only with 'dem', got it "
                                "with 'spec'")
    else:
        dem = _field(m, "dem", bad, "HELLO", "a non-empty stim DEM text",
                     lambda v: isinstance(v, str) and v.strip() != "")
    time_coord = -1
    if "time_coord" in m:
        time_coord = _field(m, "time_coord", bad, "HELLO", "an integer in -256..255",
                            lambda v: _is_int(v) and -256 <= v <= 255)
    decoder = "pymatching"
    if "decoder" in m:
        decoder = _field(m, "decoder", bad, "HELLO", "a name of 1-128 characters "
                         "[A-Za-z0-9_.:=,+-]",
                         lambda v: isinstance(v, str) and _DECODER_RE.fullmatch(v) is not None)
    window = commit = None
    if "window" in m:
        window = _field(m, "window", bad, "HELLO", f"nil or an integer in 1..{MAX_WINDOW}",
                        lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    if "commit" in m:
        commit = _field(m, "commit", bad, "HELLO", f"nil or an integer in 1..{MAX_WINDOW}",
                        lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    if commit is not None:
        if window is None:
            raise ProtocolError(bad, "HELLO key 'commit': expected nil when 'window' is nil "
                                f"(whole-shot decoding), got {commit}")
        if commit > window:
            raise ProtocolError(bad, f"HELLO key 'commit': expected at most window={window}, "
                                f"got {commit}")
    want_faults = False
    if "want_faults" in m:
        want_faults = _field(m, "want_faults", bad, "HELLO", "a boolean",
                             lambda v: isinstance(v, bool))
    transport = "zmq"
    if "transport" in m:
        transport = _field(m, "transport", bad, "HELLO", "'zmq' or 'shm'",
                           lambda v: isinstance(v, str) and v in TRANSPORTS)
    return Hello(spec, dem, time_coord, decoder, window, commit, want_faults, transport)


def encode_hello(hello: Hello, *, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a HELLO frame (stream_id 0; ``seq`` is echoed in the ACCEPT or ERROR reply).

    The body is a msgpack map with keys in the order ``spec``|``dem``, ``time_coord`` (only
    with ``dem``), ``decoder``, ``window``, ``commit``, ``want_faults``, then ``transport``
    only when it is not ``"zmq"`` (so a default HELLO's bytes do not change).

    Examples
    --------
    >>> f = encode_hello(Hello(spec="surface:d=3,r=3,p=0.001", window=6, commit=3), seq=1)
    >>> decode_hello(*parse_packet(f)).window
    6
    """
    if hello.spec is not None and hello.time_coord != -1:
        raise ValueError(f"Hello.time_coord: expected -1 with spec (used only with dem), "
                         f"got {hello.time_coord}")
    m: dict = {}
    if hello.spec is not None:
        m["spec"] = hello.spec
    if hello.dem is not None:
        m["dem"] = hello.dem
        m["time_coord"] = hello.time_coord
    m["decoder"] = hello.decoder
    m["window"] = hello.window
    m["commit"] = hello.commit
    m["want_faults"] = hello.want_faults
    if hello.transport != "zmq":
        m["transport"] = hello.transport
    try:
        _hello_from_map(m)
    except ProtocolError as e:
        raise ValueError(e.reason) from None
    body = msgpack.packb(m, use_bin_type=True)
    if len(body) > MAX_HELLO_BYTES:
        raise ValueError(f"HELLO body: expected at most {MAX_HELLO_BYTES} bytes, got {len(body)}")
    return encode_frame(MsgType.HELLO, body, seq=seq, timestamp_ns=timestamp_ns)


def decode_hello(header: Header, payload: Buffer, *, max_bytes: int = MAX_HELLO_BYTES) -> Hello:
    """Decode and strictly validate a HELLO body (unknown keys, wrong types: BAD_HELLO).

    Only the syntax is checked here; the server still parses the spec or DEM and answers
    BAD_HELLO if that fails.

    Examples
    --------
    >>> h, p = parse_packet(encode_hello(Hello(dem="error(0.1) D0\\ndetector(0, 0) D0\\n")))
    >>> decode_hello(h, p).decoder
    'pymatching'
    """
    _expect_type(header, MsgType.HELLO)
    if len(payload) > max_bytes:
        raise ProtocolError(ErrorCode.OVERSIZE, f"HELLO payload: expected at most {max_bytes} "
                            f"bytes, got {len(payload)}")
    return _hello_from_map(_unpack_map(payload, ErrorCode.BAD_HELLO, "HELLO"))


class Accept(NamedTuple):
    """An ACCEPT body: the stream the server opened and how its rounds are laid out.

    Attributes
    ----------
    stream_id : int
        Non-zero u32; also in the ACCEPT header and every later packet of the stream.
    slice_sizes : tuple of int
        Detectors in each round of a shot; ``len(slice_sizes)`` is ``rounds_per_shot``.
    num_observables : int
        Logical observables per shot (bits in each CORRECTION).
    decoder : str
    window, commit : int or None
        The settings in force (the server fills in its defaults).
    want_faults : bool
    heartbeat_ms, timeout_ms : int
        Send something at least every ``heartbeat_ms``; a stream whose owner is silent for
        ``timeout_ms`` is closed.
    max_backlog : int
        Rounds a stream may have queued before SYNDROMEs are dropped with SERVER_BUSY.
    max_frame : int
        Largest frame the server accepts, header included.
    server : str
        Server software and version, for logs.
    shm_region : str or None
        Shared-memory streams only (HELLO ``transport="shm"``): the POSIX shm name of the
        stream's ring pair (``qecd-...``), to attach as the client side; None otherwise.
    shm_slots, shm_slot_size : int or None
        That region's geometry: slots per ring (a power of two), bytes per slot.
    corrections_per_shot : int or None
        Shared-memory streams: CORRECTIONs the server sends per shot (one per window).
    """

    stream_id: int
    slice_sizes: tuple[int, ...]
    num_observables: int
    decoder: str = "pymatching"
    window: int | None = None
    commit: int | None = None
    want_faults: bool = False
    heartbeat_ms: int = 1000
    timeout_ms: int = 5000
    max_backlog: int = 1024
    max_frame: int = DEFAULT_MAX_FRAME
    server: str = ""
    shm_region: str | None = None
    shm_slots: int | None = None
    shm_slot_size: int | None = None
    corrections_per_shot: int | None = None

    @property
    def rounds_per_shot(self) -> int:
        return len(self.slice_sizes)

    @property
    def num_detectors(self) -> int:
        return sum(self.slice_sizes)

    def layout(self) -> SyndromeLayout:
        """The :class:`SyndromeLayout` of this stream's SYNDROME payloads."""
        return SyndromeLayout(self.slice_sizes)


_ACCEPT_KEYS = ("stream_id", "rounds_per_shot", "slice_sizes", "num_detectors",
                "num_observables", "decoder", "window", "commit", "want_faults", "heartbeat_ms",
                "timeout_ms", "max_backlog", "max_frame", "server")
#: optional ACCEPT keys, present only for shared-memory streams
_ACCEPT_SHM_KEYS = ("shm_region", "shm_slots", "shm_slot_size", "corrections_per_shot")
_SHM_NAME_RE = re.compile(r"qecd-[A-Za-z0-9_.-]{1,200}")


def _u32(v: object) -> bool:
    return _is_int(v) and 0 <= v <= _U32


def encode_accept(accept: Accept, *, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode an ACCEPT frame; ``seq`` and ``timestamp_ns`` echo the HELLO's.

    The body is a msgpack map with the keys of :class:`Accept` plus ``rounds_per_shot`` and
    ``num_detectors``, in the order given in ``docs/protocol.md``; the shared-memory keys
    (``shm_region``, ``shm_slots``, ``shm_slot_size``, ``corrections_per_shot``) follow only
    when ``shm_region`` is set.

    Examples
    --------
    >>> a = Accept(stream_id=7, slice_sizes=(13, 24, 24, 13), num_observables=1)
    >>> decode_accept(*parse_packet(encode_accept(a))).num_detectors
    74
    """
    m = {"stream_id": accept.stream_id, "rounds_per_shot": accept.rounds_per_shot,
         "slice_sizes": [int(s) for s in accept.slice_sizes],
         "num_detectors": int(accept.num_detectors), "num_observables": accept.num_observables,
         "decoder": accept.decoder, "window": accept.window, "commit": accept.commit,
         "want_faults": accept.want_faults, "heartbeat_ms": accept.heartbeat_ms,
         "timeout_ms": accept.timeout_ms, "max_backlog": accept.max_backlog,
         "max_frame": accept.max_frame, "server": accept.server}
    if accept.shm_region is not None:
        m.update(shm_region=accept.shm_region, shm_slots=accept.shm_slots,
                 shm_slot_size=accept.shm_slot_size,
                 corrections_per_shot=accept.corrections_per_shot)
    elif any(getattr(accept, k) is not None for k in _ACCEPT_SHM_KEYS):
        raise ValueError("Accept: shm_slots/shm_slot_size/corrections_per_shot need "
                         "shm_region")
    try:
        _accept_from_map(m, accept.stream_id)
    except ProtocolError as e:
        raise ValueError(e.reason) from None
    return encode_frame(MsgType.ACCEPT, msgpack.packb(m, use_bin_type=True),
                        stream_id=accept.stream_id, seq=seq, timestamp_ns=timestamp_ns)


def _accept_from_map(m: dict, header_stream_id: int) -> Accept:
    bad = ErrorCode.BAD_PAYLOAD
    for k in _ACCEPT_KEYS:
        if k not in m:
            raise ProtocolError(bad, f"ACCEPT key {k!r}: expected it, got a map without it")

    def f(key, expected, ok):
        return _field(m, key, bad, "ACCEPT", expected, ok)

    sid = f("stream_id", f"the header's stream id {header_stream_id} (1..2**32-1)",
            lambda v: _is_int(v) and v == header_stream_id and 1 <= v <= _U32)
    rps = f("rounds_per_shot", f"an integer in 1..{MAX_ROUNDS_PER_SHOT}",
            lambda v: _is_int(v) and 1 <= v <= MAX_ROUNDS_PER_SHOT)
    sizes = f("slice_sizes", f"a list of {rps} integers >= 0",
              lambda v: isinstance(v, list) and len(v) == rps
              and all(_is_int(s) and 0 <= s <= MAX_DETECTORS for s in v))
    f("num_detectors", f"sum(slice_sizes) = {sum(sizes)} (at most {MAX_DETECTORS})",
      lambda v: _is_int(v) and v == sum(sizes) and v <= MAX_DETECTORS)
    nobs = f("num_observables", "an integer in 0..2**32-1", _u32)
    dec = f("decoder", "a string", lambda v: isinstance(v, str))
    window = f("window", f"nil or an integer in 1..{MAX_WINDOW}",
               lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    commit = f("commit", "nil or an integer in 1..window",
               lambda v: v is None or (_is_int(v) and window is not None and 1 <= v <= window))
    wf = f("want_faults", "a boolean", lambda v: isinstance(v, bool))
    hb = f("heartbeat_ms", "an integer in 0..2**32-1", _u32)
    to = f("timeout_ms", "an integer in 0..2**32-1", _u32)
    mb = f("max_backlog", "an integer in 0..2**32-1", _u32)
    mf = f("max_frame", f"an integer in {HEADER_SIZE}..2**32-1",
           lambda v: _u32(v) and v >= HEADER_SIZE)
    srv = f("server", "a string", lambda v: isinstance(v, str))
    shm: tuple = (None, None, None, None)
    if "shm_region" in m:
        for k in _ACCEPT_SHM_KEYS[1:]:
            if k not in m:
                raise ProtocolError(bad, f"ACCEPT key {k!r}: expected it with 'shm_region', "
                                    "got a map without it")
        shm = (f("shm_region", "a region name 'qecd-...' ([A-Za-z0-9_.-], at most 205 "
                 "characters)", lambda v: isinstance(v, str)
                 and _SHM_NAME_RE.fullmatch(v) is not None),
               f("shm_slots", "a power of two in 1..2**32-1",
                 lambda v: _u32(v) and v > 0 and v & (v - 1) == 0),
               f("shm_slot_size", "a multiple of 64 in 64..2**32-1",
                 lambda v: _u32(v) and v >= 64 and v % 64 == 0),
               f("corrections_per_shot", "an integer in 1..2**32-1",
                 lambda v: _u32(v) and v >= 1))
    return Accept(sid, tuple(sizes), nobs, dec, window, commit, wf, hb, to, mb, mf, srv, *shm)


def decode_accept(header: Header, payload: Buffer) -> Accept:
    """Decode and validate an ACCEPT body (unknown keys are ignored: servers may add keys).

    Examples
    --------
    >>> a = Accept(stream_id=3, slice_sizes=(4, 8, 8, 4), num_observables=1, window=6)
    >>> decode_accept(*parse_packet(encode_accept(a))) == a
    True
    """
    _expect_type(header, MsgType.ACCEPT)
    return _accept_from_map(_unpack_map(payload, ErrorCode.BAD_PAYLOAD, "ACCEPT"),
                            header.stream_id)


StatValue = int | float | str | bool | None | Mapping[str, int | float]


def _stat_ok(v: object) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return not isinstance(v, int) or isinstance(v, bool) or -(1 << 63) <= v <= _U64
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and type(x) in (int, float) and
                   (type(x) is float or -(1 << 63) <= x <= _U64) for k, x in v.items())
    return False


def encode_stats(stats: Mapping[str, StatValue] | None = None, *, stream_id: int = 0,
                 seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a STATS request (``stats=None``: empty body) or reply (a msgpack map).

    Values are int, float, str, bool, nil, or one level of map from str to int or float.

    Examples
    --------
    >>> decode_stats(*parse_packet(encode_stats({"rounds_received": 10}, stream_id=7)))
    {'rounds_received': 10}
    >>> decode_stats(*parse_packet(encode_stats(None))) is None
    True
    """
    if stats is None:
        return encode_frame(MsgType.STATS, b"", stream_id=stream_id, seq=seq,
                            timestamp_ns=timestamp_ns)
    for k, v in stats.items():
        if not isinstance(k, str) or not _stat_ok(v):
            raise ValueError(f"STATS entry {k!r}: expected a str key and an int, float, str, "
                             f"bool, None or a str->number map value, got {v!r}")
    body = msgpack.packb({k: (dict(v) if isinstance(v, Mapping) else v)
                          for k, v in stats.items()}, use_bin_type=True)
    return encode_frame(MsgType.STATS, body, stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_stats(header: Header, payload: Buffer) -> dict | None:
    """Decode a STATS body: ``None`` for a request (empty body), else the reply's map.

    Examples
    --------
    >>> decode_stats(*parse_packet(encode_stats({"drops": {"ROUND_GAP": 2}})))
    {'drops': {'ROUND_GAP': 2}}
    """
    _expect_type(header, MsgType.STATS)
    if len(payload) == 0:
        return None
    m = _unpack_map(payload, ErrorCode.BAD_PAYLOAD, "STATS")
    for k, v in m.items():
        if not _stat_ok(v):
            raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"STATS key {k!r}: expected an int, "
                                f"float, str, bool, nil or a str->number map, got {v!r:.80}")
    return m


# -- empty-bodied messages --------------------------------------------------------------------


def encode_heartbeat(*, stream_id: int = 0, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a HEARTBEAT (empty body). The server echoes it with the same seq and timestamp.

    Examples
    --------
    >>> len(encode_heartbeat(seq=5))
    32
    """
    return encode_frame(MsgType.HEARTBEAT, b"", stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_heartbeat(header: Header, payload: Buffer) -> None:
    """Check a HEARTBEAT's body is empty (everything it says is in the header).

    Examples
    --------
    >>> decode_heartbeat(*parse_packet(encode_heartbeat())) is None
    True
    """
    _expect_type(header, MsgType.HEARTBEAT)
    _expect_empty(payload, "HEARTBEAT")


def encode_bye(*, stream_id: int, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a BYE (empty body) closing ``stream_id``.

    Examples
    --------
    >>> parse_packet(encode_bye(stream_id=7))[0].stream_id
    7
    """
    return encode_frame(MsgType.BYE, b"", stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_bye(header: Header, payload: Buffer) -> None:
    """Check a BYE's body is empty.

    Examples
    --------
    >>> decode_bye(*parse_packet(encode_bye(stream_id=1))) is None
    True
    """
    _expect_type(header, MsgType.BYE)
    _expect_empty(payload, "BYE")


def _expect_empty(payload: Buffer, what: str) -> None:
    if len(payload):
        raise ProtocolError(ErrorCode.BAD_PAYLOAD,
                            f"{what} payload: expected 0 bytes, got {len(payload)}")


# -- ERROR ------------------------------------------------------------------------------------


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

    Examples
    --------
    >>> lay = SyndromeLayout([13, 24, 24, 13])
    >>> lay.rounds_per_shot, lay.shot_bytes, lay.payload_len(4, 2), lay.payload_len(3, 2)
    (4, 10, 5, 4)
    """

    __slots__ = ("slice_sizes", "rounds_per_shot", "num_detectors", "shot_bytes",
                 "_slice_bytes", "_byte_prefix", "_det_prefix", "_keep2", "_pad2")

    def __init__(self, slice_sizes: Sequence[int]) -> None:
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
                f"{', '.join(map(str, sizes))}{more} detectors")

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


def decode_body(header: Header, payload: Buffer, layout: SyndromeLayout | None = None
                ) -> object:
    """Decode any body by ``header.msg_type`` (SYNDROME needs the stream's ``layout``).

    Returns the ``decode_*`` function's result: Hello, Accept, numpy array, Correction,
    ErrorInfo, dict or None.

    Examples
    --------
    >>> decode_body(*parse_packet(encode_stats({"n": 1})))
    {'n': 1}
    """
    t = header.msg_type
    if t == MsgType.SYNDROME:
        if layout is None:
            raise ValueError("layout: expected the stream's SyndromeLayout for a SYNDROME, "
                             "got None")
        return decode_syndrome_payload(header, payload, layout)
    decoder = _DECODERS.get(t)
    if decoder is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"field 'msg_type': expected 1..8, got {t}")
    return decoder(header, payload)


_DECODERS = {MsgType.HELLO: decode_hello, MsgType.ACCEPT: decode_accept,
             MsgType.CORRECTION: decode_correction, MsgType.ERROR: decode_error,
             MsgType.STATS: decode_stats, MsgType.HEARTBEAT: decode_heartbeat,
             MsgType.BYE: decode_bye}
