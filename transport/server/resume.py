"""Stream resumption by token (docs/protocol.md §6.9): every ACCEPT carries a fresh random
``resume_token``; a HELLO whose only key is ``resume`` = {stream_id, token} moves that open
stream to the connection the HELLO came on, and the presented token is spent.

This module holds the tokens and the rule that decides whether a resume HELLO may take its
stream; the server loop (:mod:`qecd.transport.server.loop`) moves the stream and answers.

What a refusal says is the same whatever failed (no such stream, a wrong, spent or other
stream's token, another CURVE key, a stream opened with the post-quantum handshake): one
``UNKNOWN_STREAM`` with one reason, so a peer without the token learns nothing about which
stream ids exist. Tokens are compared in constant time (:func:`hmac.compare_digest`), also
against a dummy when the stream id is unknown, and are never logged.

Example
-------
>>> from qecd.transport.wire import Resume
>>> tokens = ResumeTokens()
>>> class S: stream_id, owner, pq, shm = 7, b"\\x00peer", None, None
>>> tok = tokens.issue(7)
>>> tokens.take(Resume(7, tok), b"\\x00other", {7: S}).stream_id
7
>>> tokens.take(Resume(7, bytes(32)), b"\\x00other", {7: S})  # doctest: +ELLIPSIS
Traceback (most recent call last):
qecd.errors.ProtocolError: [32] HELLO key 'resume': no open stream matches ...
"""

from __future__ import annotations

import hmac
import secrets

from qecd.errors import ProtocolError
from qecd.transport.server.pq_hellos import curve_owner
from qecd.transport.wire import RESUME_TOKEN_BYTES, ErrorCode, Resume

__all__ = ["REFUSED_REASON", "ResumeTokens", "refuse_ring"]

#: the one reason of every refused resume (docs/protocol.md §6.9: nothing tells the cases
#: apart)
REFUSED_REASON = ("HELLO key 'resume': no open stream matches this stream id and token "
                  "(the token is wrong, spent or another stream's, the stream is closed, it "
                  "belongs to another CURVE key, or it was opened with the post-quantum "
                  "handshake, which resumes only with 'pq_resume')")

_DUMMY = bytes(RESUME_TOKEN_BYTES)  # compared against when the stream id has no token


class ResumeTokens:
    """The current resume token of every open stream of one server.

    Tokens are ``RESUME_TOKEN_BYTES`` bytes from the OS CSPRNG (:func:`secrets.token_bytes`),
    one per stream, replaced by every ACCEPT of the stream (opening or resuming it).
    """

    def __init__(self) -> None:
        self._tokens: dict[int, bytes] = {}

    def issue(self, stream_id: int) -> bytes:
        """A fresh token for ``stream_id`` (the previous one, if any, is spent)."""
        tok = secrets.token_bytes(RESUME_TOKEN_BYTES)
        self._tokens[stream_id] = tok
        return tok

    def forget(self, stream_id: int) -> None:
        """The stream closed: its token resumes nothing any more."""
        self._tokens.pop(stream_id, None)

    def take(self, req: Resume, owner: bytes | str, streams: dict) -> object:
        """The open stream ``req`` may take over from the connection ``owner``; raises
        ProtocolError ``UNKNOWN_STREAM`` (always with :data:`REFUSED_REASON`) unless the
        stream is open, ``req.token`` is its current token, the stream was not opened with
        the post-quantum handshake, and, with CURVE (``owner`` a key), it belongs to that
        key; raises ``BAD_HELLO`` for a shared-memory stream with the right token (its ring
        is not re-handed). The token is not spent here: :meth:`issue` replaces it."""
        s = streams.get(req.stream_id)
        ok = hmac.compare_digest(self._tokens.get(req.stream_id, _DUMMY), req.token)
        ok = ok and s is not None and getattr(s, "pq", None) is None
        key = curve_owner(owner)
        if ok and key is not None:
            ok = s.owner == key
        if not ok:
            raise ProtocolError(ErrorCode.UNKNOWN_STREAM, REFUSED_REASON)
        refuse_ring(s, "resume")
        return s


def refuse_ring(s, key: str) -> None:
    """BAD_HELLO when ``s`` is a shared-memory stream: a resume (``resume`` or
    ``pq_resume``, named by ``key``) never hands its ring to another connection."""
    if s.shm is not None:
        raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key {key!r}: stream {s.stream_id} "
                            "is a shared-memory stream: its ring is not handed to another "
                            "connection (docs/protocol.md §6.9); keep the ZeroMQ connection "
                            "that opened it, or BYE it over the ring")
