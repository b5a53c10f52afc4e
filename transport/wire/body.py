"""Decode any packet's body by its type (the one dispatch over the per-type decoders)."""

from __future__ import annotations

from qecd.errors import ProtocolError
from qecd.transport.wire.control import (
    decode_accept,
    decode_bye,
    decode_heartbeat,
    decode_hello,
    decode_stats,
)
from qecd.transport.wire.correction import decode_correction
from qecd.transport.wire.error import decode_error
from qecd.transport.wire.header import Buffer, ErrorCode, Header, MsgType
from qecd.transport.wire.syndrome import SyndromeLayout, decode_syndrome_payload


def decode_body(header: Header, payload: Buffer, layout: SyndromeLayout | None = None
                ) -> object:
    """Decode any body by ``header.msg_type`` (SYNDROME needs the stream's ``layout``).

    Returns the ``decode_*`` function's result: Hello, Accept, numpy array, Correction,
    ErrorInfo, dict or None.

    Examples
    --------
    >>> from qecd.transport.wire.control import encode_stats
    >>> from qecd.transport.wire.header import parse_packet
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
