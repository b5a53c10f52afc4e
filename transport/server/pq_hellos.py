"""The server's side of the opt-in post-quantum handshake on HELLO (docs/protocol.md §6.8):
which HELLOs must, may or cannot carry it, the ACCEPT's fields, and stream resumption by
token. The cryptography is in :mod:`qecd.transport.pqc`; this module holds the rules.

Example
-------
>>> from qecd.transport.wire import Hello
>>> PqHellos(None, required=False).admit(Hello(spec="repetition:d=3,r=2,p=0.01"), None)
False
"""

from __future__ import annotations

from qecd.errors import ProtocolError
from qecd.transport.pqc import PqServer, ServerPqState, check_resume_proof
from qecd.transport.wire import ErrorCode, Hello

__all__ = ["PqHellos", "curve_owner"]


def curve_owner(owner: bytes | str) -> str | None:
    """The CURVE public key (Z85 text, ZeroMQ's ``User-Id``) that owns streams, or None in
    plain mode (where the owner is the connection's routing id, a bytes value)."""
    return owner if isinstance(owner, str) else None


class PqHellos:
    """The handshake rules of one server.

    Parameters
    ----------
    pq : PqServer or None
        The server's ML-DSA-65 key (with its CURVE public key set); None = no handshake.
    required : bool
        Refuse HELLOs without the handshake (BAD_HELLO naming what to send).
    """

    def __init__(self, pq: PqServer | None, *, required: bool) -> None:
        if required and pq is None:
            raise ValueError("ServerConfig.pq_required: expected it with a post-quantum key "
                             "(ServerConfig.pq), got pq=None")
        self.pq = pq
        self.required = required

    def admit(self, hello: Hello, owner: bytes | str | None) -> bool:
        """Whether ``hello`` runs the handshake (True) or not (False); raises BAD_HELLO when
        this server requires it and it is missing, or cannot run it and it is present, or
        the client's keys are unusable. Resumes are told apart by ``hello.pq_resume``."""
        if hello.pq_x25519 is None:
            if self.required:
                raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO keys 'pq_x25519'/"
                                    "'pq_mlkem768': this server requires the post-quantum "
                                    "handshake (docs/protocol.md §6.8), got a HELLO without "
                                    "it: pin the server's ML-DSA key (Client(..., pq=PqPin."
                                    "from_file('server.mldsa')))")
            return False
        if self.pq is None:
            raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO keys 'pq_x25519'/'pq_mlkem768': "
                                "this server runs no post-quantum handshake (it was started "
                                "without an ML-DSA key: qecd serve --pq-secret-key), got a "
                                "HELLO with it")
        self.pq.check_keys(hello)
        return True

    def respond(self, hello: Hello, body: bytes, owner: bytes | str,
                stream_id: int) -> tuple[dict, ServerPqState]:
        """The ACCEPT's ``pq_*`` fields for a new (or resumed) stream, and its state."""
        return self.pq.respond(hello, body, curve_client=curve_owner(owner),
                               stream_id=stream_id)

    def resume(self, hello: Hello, owner: bytes | str, streams: dict) -> object:
        """The open stream a resume HELLO may take over (its token verified: this server's
        signature, not expired, the presenting CURVE key, the stream's current token, the
        proof of its session key); raises ProtocolError naming what failed."""
        tok = self.pq.check_resume_token(hello, curve_client=curve_owner(owner))
        s = streams.get(tok.stream_id)
        if s is None or getattr(s, "pq", None) is None:
            raise ProtocolError(ErrorCode.UNKNOWN_STREAM, f"HELLO key 'pq_resume': stream "
                                f"{tok.stream_id} is not open (closed or timed out): open a "
                                "new stream")
        check_resume_proof(s.pq, hello)
        return s
