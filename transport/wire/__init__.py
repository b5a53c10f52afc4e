"""The wire protocol: the one codec for ZeroMQ messages and shared-memory ring slots.

``docs/protocol.md`` is the normative, byte-exact specification (hex test vectors checked by
``tests/test_protocol.py``); this package is its reference implementation, one module per part:

- :mod:`~qecd.transport.wire.header`: the 32-byte header, message types, flags, error codes,
  :func:`parse_packet`, :func:`encode_frame`;
- :mod:`~qecd.transport.wire.control`: HELLO, ACCEPT, STATS (msgpack), HEARTBEAT, BYE;
- :mod:`~qecd.transport.wire.syndrome`: SYNDROME bodies (bit-packed rounds);
- :mod:`~qecd.transport.wire.correction`: CORRECTION bodies;
- :mod:`~qecd.transport.wire.error`: ERROR bodies;
- :mod:`~qecd.transport.wire.compiled`: the same header, ERROR and CORRECTION writers in
  Numba for the ring loops, with their constants taken from the enums here.

Encoders raise :class:`ValueError` for arguments the caller got wrong; decoders raise
:class:`~qecd.errors.ProtocolError` carrying the :class:`ErrorCode` to send to the peer.
This package imports nothing of qecd but :mod:`qecd.errors` (and :mod:`qecd._jit` for the
compiled codec). The examples in its modules assume ``from qecd.transport.wire import *``.

Example
-------
>>> import numpy as np
>>> layout = SyndromeLayout([13, 24, 24, 13])          # detectors per round of one shot
>>> bits = np.zeros(13 + 24, dtype=np.uint8); bits[[0, 3, 12, 13 + 23]] = 1
>>> frame = encode_syndrome(bits, layout, stream_id=7, first_round=4, count=2)
>>> header, payload = parse_packet(frame, max_frame=4096)
>>> np.flatnonzero(decode_body(header, payload, layout)).tolist()
[0, 3, 12, 36]
"""

from __future__ import annotations

from qecd.transport.wire.body import (  # noqa: F401
    decode_body,
)
from qecd.transport.wire.control import (  # noqa: F401
    DEFAULT_DECODER,
    INPUTS,
    PQ_MAC_BYTES,
    PQ_MLDSA65_SIG_BYTES,
    PQ_MLKEM768_CT_BYTES,
    PQ_MLKEM768_EK_BYTES,
    PQ_TOKEN_BODY_BYTES,
    PQ_TOKEN_BYTES,
    PQ_X25519_BYTES,
    RESUME_TOKEN_BYTES,
    TRANSPORTS,
    Accept,
    Hello,
    Resume,
    decode_accept,
    decode_bye,
    decode_heartbeat,
    decode_hello,
    decode_stats,
    encode_accept,
    encode_bye,
    encode_heartbeat,
    encode_hello,
    encode_stats,
)
from qecd.transport.wire.correction import (  # noqa: F401
    Correction,
    correction_frame_len,
    decode_correction,
    encode_correction,
    pack_correction_into,
)
from qecd.transport.wire.error import (  # noqa: F401
    ErrorInfo,
    decode_error,
    encode_error,
    encode_error_reply,
)
from qecd.transport.wire.header import (  # noqa: F401
    CORRECTION_FIXED,
    DEFAULT_MAX_FRAME,
    ERROR_FIXED,
    HEADER,
    HEADER_DTYPE,
    HEADER_SIZE,
    MAGIC,
    MAX_COUNT,
    MAX_DETECTORS,
    MAX_HELLO_BYTES,
    MAX_REASON_BYTES,
    MAX_ROUNDS_PER_SHOT,
    MAX_SPEC_BYTES,
    MAX_WINDOW,
    SUPPORTED_VERSIONS,
    VERSION,
    ErrorCode,
    Flags,
    Header,
    MsgType,
    claimed_type,
    encode_frame,
    pack_header_into,
    parse_packet,
)
from qecd.transport.wire.syndrome import (  # noqa: F401
    SyndromeLayout,
    check_round,
    committed_ranges,
    decode_syndrome_payload,
    encode_syndrome,
    pack_syndrome_into,
    unpack_syndrome_into,
)

__all__ = [
    "DEFAULT_DECODER",
    "HEADER_DTYPE", "MAX_DETECTORS", "MAX_ROUNDS_PER_SHOT", "MAX_SPEC_BYTES", "MAX_WINDOW",
    "MAGIC",
    "VERSION",
    "SUPPORTED_VERSIONS",
    "HEADER",
    "HEADER_SIZE",
    "MAX_COUNT",
    "MAX_HELLO_BYTES",
    "PQ_X25519_BYTES", "PQ_MLKEM768_EK_BYTES", "PQ_MLKEM768_CT_BYTES", "PQ_MAC_BYTES",
    "PQ_TOKEN_BODY_BYTES", "PQ_MLDSA65_SIG_BYTES", "PQ_TOKEN_BYTES", "RESUME_TOKEN_BYTES",
    "MAX_REASON_BYTES",
    "DEFAULT_MAX_FRAME",
    "CORRECTION_FIXED",
    "INPUTS",
    "TRANSPORTS",
    "ERROR_FIXED",
    "MsgType",
    "Flags",
    "ErrorCode",
    "Header",
    "Hello",
    "Resume",
    "Accept",
    "Correction",
    "ErrorInfo",
    "SyndromeLayout",
    "committed_ranges",
    "parse_packet",
    "claimed_type",
    "encode_frame",
    "pack_header_into",
    "encode_hello",
    "decode_hello",
    "encode_accept",
    "decode_accept",
    "encode_syndrome",
    "pack_syndrome_into",
    "decode_syndrome_payload",
    "unpack_syndrome_into",
    "check_round",
    "encode_correction",
    "pack_correction_into",
    "correction_frame_len",
    "decode_correction",
    "encode_error",
    "encode_error_reply",
    "decode_error",
    "encode_stats",
    "decode_stats",
    "encode_heartbeat",
    "decode_heartbeat",
    "encode_bye",
    "decode_bye",
    "decode_body",
]
