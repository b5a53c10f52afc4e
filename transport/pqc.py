"""The opt-in post-quantum control plane: a hybrid X25519 + ML-KEM-768 handshake carried on
HELLO/ACCEPT, and ML-DSA-65 signed session tokens (docs/protocol.md §6.8, docs/security.md).

Every byte of cryptography of qecd is in this module, on top of the ``cryptography`` package
(>= 47 ships ML-KEM and ML-DSA; ``pip install "qecd[pqc]"``). Nothing here is on the
per-round path: a handshake costs one HELLO, never a round, and the rings stay crypto-free.

The client sends ephemeral X25519 and ML-KEM-768 public keys in its HELLO; the server
answers in the ACCEPT with its own ephemeral X25519 key, the ML-KEM ciphertext, a session
token it signs with its long-term ML-DSA-65 key, and an HMAC tag. Both derive the keys with
HKDF-SHA256 over both shared secrets, salted with a hash of the transcript (the HELLO body as
sent, both CURVE public keys, the stream id and the server's handshake fields), so a changed
byte anywhere yields other keys and the tag does not verify. The client checks the tag and
the token's signature against the server's pinned ML-DSA public key: a man in the middle
would need to break both X25519 and ML-KEM, or forge ML-DSA.

What the session key protects, exactly: the handshake (key confirmation), the token (bound
to it), and the right to resume a stream (a resume proof is an HMAC under a key derived with
it). It does not encrypt or authenticate rounds or corrections: the data plane is CURVE
(X25519, classical) or plain. See docs/security.md.

Example
-------
>>> import tempfile
>>> from qecd.transport.wire import Hello, encode_hello, HEADER_SIZE, Accept
>>> d = tempfile.mkdtemp()
>>> pub, sec = create_pq_keypair(d, "server")
>>> server = PqServer.from_file(sec)
>>> client = ClientHandshake(PqPin.from_file(pub))
>>> hello = client.hello(Hello(spec="repetition:d=3,r=2,p=0.01"))
>>> body = encode_hello(hello)[HEADER_SIZE:]
>>> fields, state = server.respond(hello, body, curve_client=None, stream_id=7)
>>> accept = Accept(stream_id=7, slice_sizes=(2, 2, 2), num_observables=1, **fields)
>>> session = client.finish(body, accept)
>>> session.session_key == state.session_key, session.stream_id
(True, 7)
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from qecd.errors import ProtocolError, QecdError
from qecd.extras import MissingExtraError
from qecd.transport.wire.control import (
    PQ_MLDSA65_SIG_BYTES,
    PQ_MLKEM768_CT_BYTES,
    PQ_TOKEN_BODY_BYTES,
    PQ_TOKEN_BYTES,
    PQ_X25519_BYTES,
    Accept,
    Hello,
)
from qecd.transport.wire.header import ErrorCode

__all__ = ["PqUnavailable", "PqHandshakeError", "PqPin", "PqServer", "PqSession",
           "ServerPqState", "Token", "ClientHandshake", "create_pq_keypair", "transcript_hash",
           "derive_keys", "accept_tag", "resume_mac", "parse_token", "check_resume_proof",
           "curve_raw", "PIP_INSTALL"]

#: the exact install line a missing ``cryptography`` package asks for
PIP_INSTALL = 'pip install "qecd[pqc]"  (or: pip install "cryptography>=47")'

# labels (ASCII): one per use of a hash, MAC or signature, so no output serves two purposes
LABEL_TRANSCRIPT = b"qecd-pq-v1 transcript"
LABEL_KEYS = b"qecd-pq-v1 keys"
LABEL_BINDING = b"qecd-pq-v1 binding"
LABEL_ACCEPT = b"qecd-pq-v1 accept"
LABEL_RESUME = b"qecd-pq-v1 resume"
TOKEN_CONTEXT = b"qecd-pq-v1 token"  #: the ML-DSA context string of token signatures
TOKEN_MAGIC = b"QDPQTOK1"
CURVE_KEY_BYTES = 32  #: a raw CURVE (Curve25519) public key; all zero without CURVE
_TOKEN = struct.Struct("<8sIQ32s32s")  # magic, stream_id, expires_unix_s, curve key, binding
assert _TOKEN.size == PQ_TOKEN_BODY_BYTES
DEFAULT_TOKEN_LIFETIME_S = 3600


class PqUnavailable(MissingExtraError):
    """The ``cryptography`` package (with ML-KEM and ML-DSA) is missing."""


class PqHandshakeError(QecdError):
    """The server's answer to a post-quantum HELLO does not check out (tampered, replayed,
    signed by another key, or not a handshake answer at all): the stream must not be used."""


@functools.cache
def _crypto():
    """The ``cryptography`` modules this module needs (imported and checked on first use)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as e:
        raise PqUnavailable(f"the post-quantum control plane needs the 'cryptography' package "
                            f"(>= 47, with ML-KEM and ML-DSA), which is missing ({e}): "
                            f"{PIP_INSTALL}") from None
    from cryptography.hazmat.backends.openssl.backend import backend

    for what in ("mlkem", "mldsa"):
        probe = getattr(backend, f"{what}_supported", None)
        if probe is not None and not probe():
            raise PqUnavailable(f"the post-quantum control plane needs {what.upper()}, which "
                                f"this 'cryptography' build does not support (its OpenSSL: "
                                f"{backend.openssl_version_text()}): {PIP_INSTALL}")
    return InvalidSignature, hashes, serialization, mldsa, mlkem, x25519, HKDF


def curve_raw(z85_key: bytes | str | None) -> bytes:
    """A CURVE public key (Z85 text, as in key files and ZeroMQ's ``User-Id``) as the 32 raw
    bytes the transcript and the token carry; 32 zero bytes for None (no CURVE)."""
    if z85_key is None:
        return bytes(CURVE_KEY_BYTES)
    from zmq.utils import z85

    raw = z85.decode(z85_key.encode() if isinstance(z85_key, str) else z85_key)
    if len(raw) != CURVE_KEY_BYTES:
        raise ValueError(f"CURVE public key: expected 40 Z85 characters (32 bytes), got "
                         f"{len(raw)} bytes")
    return raw


# -- keys ----------------------------------------------------------------------------------


def create_pq_keypair(directory: str | os.PathLike, name: str) -> tuple[str, str]:
    """Write a new ML-DSA-65 key pair ``name.mldsa`` (public, PEM SubjectPublicKeyInfo: give
    it to clients to pin) and ``name.mldsa_secret`` (PEM PKCS#8, mode 0600) into
    ``directory``; returns the (public, secret) paths."""
    _, _, ser, mldsa, *_ = _crypto()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    key = mldsa.MLDSA65PrivateKey.generate()
    pub, sec = d / f"{name}.mldsa", d / f"{name}.mldsa_secret"
    fd = os.open(sec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8,
                                  ser.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(ser.Encoding.PEM,
                                                  ser.PublicFormat.SubjectPublicKeyInfo))
    return str(pub), str(sec)


@dataclass(frozen=True)
class PqPin:
    """The server's ML-DSA-65 public key a client pins (1952 raw bytes).

    Examples
    --------
    >>> import tempfile
    >>> pub, _ = create_pq_keypair(tempfile.mkdtemp(), "server")
    >>> len(PqPin.from_file(pub).public)
    1952
    """

    public: bytes

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> PqPin:
        """Read a public key file (PEM SubjectPublicKeyInfo, as :func:`create_pq_keypair`
        writes it)."""
        _, _, ser, mldsa, *_ = _crypto()
        try:
            key = ser.load_pem_public_key(Path(path).read_bytes())
        except ValueError as e:
            raise ValueError(f"{path}: expected an ML-DSA-65 public key (PEM, as qecd keygen "
                             f"--pq writes NAME.mldsa), got a file that does not load "
                             f"({str(e).split('. ')[0]})") from None
        if not isinstance(key, mldsa.MLDSA65PublicKey):
            raise ValueError(f"{path}: expected an ML-DSA-65 public key (PEM), got "
                             f"{type(key).__name__}")
        return cls(key.public_bytes_raw())

    def verify(self, signature: bytes, body: bytes) -> bool:
        """True if ``signature`` is this key's ML-DSA-65 signature of a token ``body``."""
        bad_sig, _, _, mldsa, *_ = _crypto()
        try:
            mldsa.MLDSA65PublicKey.from_public_bytes(self.public).verify(
                signature, body, TOKEN_CONTEXT)
        except bad_sig:
            return False
        return True


# -- the key schedule (docs/protocol.md §6.8.3) ------------------------------------------------


def transcript_hash(hello_body: bytes, curve_client: bytes, curve_server: bytes,
                    stream_id: int, server_x25519: bytes, ciphertext: bytes) -> bytes:
    """SHA-256 of the handshake transcript: the label, the HELLO body exactly as sent
    (length-prefixed u32 little-endian), the raw client and server CURVE public keys (32
    bytes each, zero without CURVE), the stream id (u32 LE), the server's X25519 public key
    and the ML-KEM ciphertext."""
    h = hashlib.sha256(LABEL_TRANSCRIPT)
    h.update(struct.pack("<I", len(hello_body)))
    h.update(hello_body)
    for part, n in ((curve_client, CURVE_KEY_BYTES), (curve_server, CURVE_KEY_BYTES),
                    (server_x25519, PQ_X25519_BYTES), (ciphertext, PQ_MLKEM768_CT_BYTES)):
        if len(part) != n:
            raise ValueError(f"transcript part: expected {n} bytes, got {len(part)}")
    h.update(curve_client)
    h.update(curve_server)
    h.update(struct.pack("<I", stream_id))
    h.update(server_x25519)
    h.update(ciphertext)
    return h.digest()


class SessionKeys(NamedTuple):
    """The three keys of one handshake (32 bytes each) and the token binding."""

    session_key: bytes  #: exported to the application; qecd itself uses it only as below
    confirm_key: bytes  #: ACCEPT's key-confirmation tag
    resume_key: bytes  #: proof of possession when the token is presented again

    @property
    def binding(self) -> bytes:
        """SHA-256(label || session_key): what a token carries instead of the key."""
        return hashlib.sha256(LABEL_BINDING + self.session_key).digest()


def derive_keys(mlkem_secret: bytes, x25519_secret: bytes, th: bytes) -> SessionKeys:
    """HKDF-SHA256(IKM = ML-KEM secret || X25519 secret, salt = transcript hash,
    info = ``qecd-pq-v1 keys``, L = 96) split into session, confirm and resume keys."""
    _, hashes, _, _, _, _, hkdf = _crypto()
    okm = hkdf(algorithm=hashes.SHA256(), length=96, salt=th,
               info=LABEL_KEYS).derive(mlkem_secret + x25519_secret)
    return SessionKeys(okm[:32], okm[32:64], okm[64:])


def accept_tag(keys: SessionKeys, th: bytes, token: bytes) -> bytes:
    """ACCEPT's ``pq_confirm``: HMAC-SHA256(confirm_key, label || TH || token)."""
    return hmac.new(keys.confirm_key, LABEL_ACCEPT + th + token, hashlib.sha256).digest()


def resume_mac(resume_key: bytes, token: bytes, x25519_pub: bytes, mlkem_ek: bytes) -> bytes:
    """A resume HELLO's ``pq_resume_mac``: HMAC-SHA256(resume_key, label || token || the
    new HELLO's ``pq_x25519`` || ``pq_mlkem768``)."""
    return hmac.new(resume_key, LABEL_RESUME + token + x25519_pub + mlkem_ek,
                    hashlib.sha256).digest()


# -- tokens (docs/protocol.md §6.8.4) --------------------------------------------------------


class Token(NamedTuple):
    """A session token's fields (its signed 84-byte body), and the signature."""

    stream_id: int
    expires_unix_s: int
    curve_client: bytes  #: raw CURVE key of the owner (zeros in plain mode)
    binding: bytes  #: :attr:`SessionKeys.binding` of the session that issued it
    body: bytes
    signature: bytes


def parse_token(token: bytes) -> Token:
    """Split a token into its fields (lengths and magic checked; the signature is not)."""
    if len(token) != PQ_TOKEN_BYTES:
        raise ValueError(f"token: expected {PQ_TOKEN_BYTES} bytes, got {len(token)}")
    body = bytes(token[:PQ_TOKEN_BODY_BYTES])
    magic, sid, exp, curve, binding = _TOKEN.unpack(body)
    if magic != TOKEN_MAGIC:
        raise ValueError(f"token: expected magic {TOKEN_MAGIC!r}, got {magic!r}")
    return Token(sid, exp, curve, binding, body, bytes(token[PQ_TOKEN_BODY_BYTES:]))


# -- the client's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class PqSession:
    """What a client keeps of a finished handshake (to resume the stream later).

    Attributes
    ----------
    stream_id : int
    session_key : bytes
        32 bytes shared with the server only (see the module docstring for its uses).
    resume_key : bytes
        Proves possession of this session when :attr:`token` is presented again.
    token : bytes
        The ML-DSA signed session token (3393 bytes).
    expires_unix_s : int
        When the server stops honouring the token (wall clock, seconds).
    """

    stream_id: int
    session_key: bytes
    resume_key: bytes
    token: bytes
    expires_unix_s: int


class ClientHandshake:
    """One client-side handshake: ephemeral keys for one HELLO, then the ACCEPT's check.

    Parameters
    ----------
    pin : PqPin
        The server's ML-DSA-65 public key (tokens signed by any other key are refused).
    curve_client, curve_server : bytes or str, optional
        The CURVE public keys (Z85) of this client and of the server, when CURVE is on.
    x25519_private, mlkem_seed : bytes, optional
        Fixed ephemeral secrets (32 and 64 bytes), for test vectors only; fresh by default.
    """

    def __init__(self, pin: PqPin, *, curve_client: bytes | str | None = None,
                 curve_server: bytes | str | None = None, x25519_private: bytes | None = None,
                 mlkem_seed: bytes | None = None) -> None:
        _, _, _, _, mlkem, x25519, _ = _crypto()
        self.pin = pin
        self.curve_client = curve_raw(curve_client)
        self.curve_server = curve_raw(curve_server)
        self._x = (x25519.X25519PrivateKey.generate() if x25519_private is None
                   else x25519.X25519PrivateKey.from_private_bytes(x25519_private))
        self._k = (mlkem.MLKEM768PrivateKey.generate() if mlkem_seed is None
                   else mlkem.MLKEM768PrivateKey.from_seed_bytes(mlkem_seed))
        self.x25519_public = self._x.public_key().public_bytes_raw()
        self.mlkem_public = self._k.public_key().public_bytes_raw()

    def hello(self, hello: Hello, resume: PqSession | None = None) -> Hello:
        """``hello`` with this handshake's keys added (and, with ``resume``, the token of
        that earlier session and the proof of holding its key)."""
        h = hello._replace(pq_x25519=self.x25519_public, pq_mlkem768=self.mlkem_public)
        if resume is not None:
            h = h._replace(pq_resume=resume.token, pq_resume_mac=resume_mac(
                resume.resume_key, resume.token, self.x25519_public, self.mlkem_public))
        return h

    def finish(self, hello_body: bytes, accept: Accept, *,
               now_unix_s: float | None = None) -> PqSession:
        """Check the ACCEPT's handshake fields and return the session.

        ``hello_body`` is the HELLO's msgpack body exactly as sent (the frame after its
        32-byte header). Raises :class:`PqHandshakeError` naming what failed: fields missing
        (a server without the handshake), key confirmation (something changed in transit, or
        the ACCEPT answers another HELLO), or the token (signature, stream, CURVE key,
        binding, expiry).
        """
        _, _, _, _, mlkem, x25519, _ = _crypto()
        sid = accept.stream_id
        if accept.pq_confirm is None:
            raise PqHandshakeError(f"stream {sid}: the ACCEPT carries no post-quantum "
                                   "handshake fields (pq_x25519, pq_mlkem768_ct, pq_token, "
                                   "pq_confirm): the server does not run it, or they were "
                                   "stripped in transit; refusing the stream")
        try:
            xs = self._x.exchange(x25519.X25519PublicKey.from_public_bytes(accept.pq_x25519))
        except ValueError as e:
            raise PqHandshakeError(f"stream {sid}: ACCEPT key 'pq_x25519' is not a usable "
                                   f"X25519 public key ({e}); refusing the stream") from None
        ks = self._k.decapsulate(accept.pq_mlkem768_ct)  # implicit rejection: never raises
        th = transcript_hash(hello_body, self.curve_client, self.curve_server, sid,
                             accept.pq_x25519, accept.pq_mlkem768_ct)
        keys = derive_keys(ks, xs, th)
        if not hmac.compare_digest(accept_tag(keys, th, accept.pq_token), accept.pq_confirm):
            raise PqHandshakeError(
                f"stream {sid}: ACCEPT key confirmation failed (pq_confirm does not match the "
                "keys this client derives): the HELLO or ACCEPT was changed in transit, or "
                "the ACCEPT answers another HELLO (a replay); refusing the stream")
        tok = parse_token(accept.pq_token)
        if not self.pin.verify(tok.signature, tok.body):
            raise PqHandshakeError(f"stream {sid}: the session token's ML-DSA-65 signature "
                                   "does not verify under the pinned server key (another "
                                   "server, or a man in the middle); refusing the stream")
        now = time.time() if now_unix_s is None else now_unix_s
        for ok, what in ((tok.stream_id == sid, f"stream id {tok.stream_id}"),
                         (tok.curve_client == self.curve_client,
                          f"CURVE key {tok.curve_client.hex()[:16]}..."),
                         (hmac.compare_digest(tok.binding, keys.binding), "another session"),
                         (tok.expires_unix_s > now, f"expiry {tok.expires_unix_s} (now "
                                                    f"{int(now)})")):
            if not ok:
                raise PqHandshakeError(f"stream {sid}: the session token names {what}, not "
                                       "this handshake's; refusing the stream")
        return PqSession(sid, keys.session_key, keys.resume_key, bytes(accept.pq_token),
                         tok.expires_unix_s)


# -- the server's side -----------------------------------------------------------------------


@dataclass
class ServerPqState:
    """What the server keeps per stream opened with the handshake: the current token (a
    resume must present exactly it; each resume issues a new one) and its resume key."""

    token: bytes
    resume_key: bytes
    session_key: bytes


class PqServer:
    """The server's long-term ML-DSA-65 key and the handshake's server side.

    Parameters
    ----------
    signing_key : cryptography MLDSA65PrivateKey
    token_lifetime_s : int
        How long a session token may be presented to resume its stream.
    curve_server : bytes or str, optional
        The server's CURVE public key (Z85) when CURVE is on (it enters the transcript).
    """

    def __init__(self, signing_key, *, token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
                 curve_server: bytes | str | None = None) -> None:
        if token_lifetime_s < 1:
            raise ValueError(f"token_lifetime_s: expected at least 1 second, got "
                             f"{token_lifetime_s}")
        self._sk = signing_key
        self.public = signing_key.public_key().public_bytes_raw()
        self.pin = PqPin(self.public)
        self.token_lifetime_s = int(token_lifetime_s)
        self.curve_server = curve_raw(curve_server)

    @classmethod
    def from_file(cls, secret_file: str | os.PathLike, **kw) -> PqServer:
        """Load the secret key file :func:`create_pq_keypair` wrote (PEM PKCS#8)."""
        _, _, ser, mldsa, *_ = _crypto()
        try:
            key = ser.load_pem_private_key(Path(secret_file).read_bytes(), None)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{secret_file}: expected an ML-DSA-65 secret key (PEM PKCS#8, "
                             f"as qecd keygen --pq writes NAME.mldsa_secret), got a file that "
                             f"does not load ({str(e).split('. ')[0]})") from None
        if not isinstance(key, mldsa.MLDSA65PrivateKey):
            raise ValueError(f"{secret_file}: expected an ML-DSA-65 secret key (PEM PKCS#8), "
                             f"got {type(key).__name__}")
        return cls(key, **kw)

    def with_curve(self, curve_server: bytes | str | None) -> PqServer:
        """This key with the server's CURVE public key set."""
        return PqServer(self._sk, token_lifetime_s=self.token_lifetime_s,
                        curve_server=curve_server)

    @staticmethod
    def check_keys(hello: Hello) -> None:
        """Raise BAD_HELLO if the HELLO's ML-KEM-768 key is not one (cheap; before a build)."""
        _, _, _, _, mlkem, x25519, _ = _crypto()
        try:
            mlkem.MLKEM768PublicKey.from_public_bytes(hello.pq_mlkem768)
            x25519.X25519PublicKey.from_public_bytes(hello.pq_x25519)
        except ValueError as e:
            raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key 'pq_mlkem768'/'pq_x25519': "
                                f"expected valid ML-KEM-768 and X25519 public keys, got "
                                f"keys the library refuses ({e})") from None

    def respond(self, hello: Hello, hello_body: bytes, *, curve_client: bytes | str | None,
                stream_id: int, now_unix_s: float | None = None
                ) -> tuple[dict, ServerPqState]:
        """Answer a handshake HELLO for stream ``stream_id``: the ACCEPT's four ``pq_*``
        fields (a dict for ``Accept(**...)``) and the state to keep for the stream.

        ``hello_body`` is the HELLO's msgpack body exactly as received; ``curve_client`` the
        client's CURVE public key (ZeroMQ's ``User-Id``), None in plain mode. Raises
        ProtocolError(BAD_HELLO) if the client's keys are not usable.
        """
        _, _, _, _, mlkem, x25519, _ = _crypto()
        try:
            ek = mlkem.MLKEM768PublicKey.from_public_bytes(hello.pq_mlkem768)
            peer = x25519.X25519PublicKey.from_public_bytes(hello.pq_x25519)
            mine = x25519.X25519PrivateKey.generate()
            xs = mine.exchange(peer)
        except ValueError as e:
            raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key 'pq_mlkem768'/'pq_x25519': "
                                f"expected valid ML-KEM-768 and X25519 public keys, got "
                                f"keys the library refuses ({e})") from None
        ks, ct = ek.encapsulate()
        x_pub = mine.public_key().public_bytes_raw()
        cc = curve_raw(curve_client)
        th = transcript_hash(hello_body, cc, self.curve_server, stream_id, x_pub, ct)
        keys = derive_keys(ks, xs, th)
        now = time.time() if now_unix_s is None else now_unix_s
        body = _TOKEN.pack(TOKEN_MAGIC, stream_id, int(now) + self.token_lifetime_s, cc,
                           keys.binding)
        token = body + self._sk.sign(body, TOKEN_CONTEXT)
        assert len(token) == PQ_TOKEN_BYTES and len(token) - len(body) == PQ_MLDSA65_SIG_BYTES
        fields = {"pq_x25519": x_pub, "pq_mlkem768_ct": ct, "pq_token": token,
                  "pq_confirm": accept_tag(keys, th, token)}
        return fields, ServerPqState(token, keys.resume_key, keys.session_key)

    def check_resume_token(self, hello: Hello, *, curve_client: bytes | str | None,
                           now_unix_s: float | None = None) -> Token:
        """The token of a resume HELLO, if this server signed it, it has not expired and it
        belongs to the presenting CURVE key; raises ProtocolError (BAD_HELLO, or NOT_OWNER
        for another key's token) otherwise. The caller then checks it is the stream's
        current token and the proof with :func:`check_resume_proof`."""
        try:
            tok = parse_token(hello.pq_resume)
        except ValueError as e:
            raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key 'pq_resume': {e}") from None
        if not self.pin.verify(tok.signature, tok.body):
            raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO key 'pq_resume': expected a token "
                                "signed by this server's ML-DSA-65 key, got a signature that "
                                "does not verify")
        now = time.time() if now_unix_s is None else now_unix_s
        if tok.expires_unix_s <= now:
            raise ProtocolError(ErrorCode.BAD_HELLO, f"HELLO key 'pq_resume': the token of "
                                f"stream {tok.stream_id} expired at {tok.expires_unix_s} "
                                f"(unix s; now {int(now)}): open a new stream")
        cc = curve_raw(curve_client)
        if tok.curve_client != cc:
            raise ProtocolError(ErrorCode.NOT_OWNER, f"HELLO key 'pq_resume': the token of "
                                f"stream {tok.stream_id} was issued to CURVE key "
                                f"{_key_text(tok.curve_client)}, presented by "
                                f"{_key_text(cc)}")
        return tok


def check_resume_proof(state: ServerPqState, hello: Hello) -> None:
    """Raise ProtocolError(BAD_HELLO) unless ``hello`` presents the stream's current token
    with a valid proof of its session's resume key (a used or superseded token, or a
    token without the key, cannot take a stream)."""
    if not hmac.compare_digest(state.token, hello.pq_resume):
        raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO key 'pq_resume': expected the "
                            "stream's current token, got one already used or superseded "
                            "(each resume issues a new token)")
    want = resume_mac(state.resume_key, hello.pq_resume, hello.pq_x25519, hello.pq_mlkem768)
    if not hmac.compare_digest(want, hello.pq_resume_mac):
        raise ProtocolError(ErrorCode.BAD_HELLO, "HELLO key 'pq_resume_mac': expected the "
                            "HMAC of the token and this HELLO's keys under the session's "
                            "resume key, got another value (the token without its session "
                            "key cannot resume a stream)")


def _key_text(raw: bytes) -> str:
    if raw == bytes(CURVE_KEY_BYTES):
        return "none (plain mode)"
    from zmq.utils import z85

    return z85.encode(raw).decode()

