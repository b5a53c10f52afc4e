"""ZeroMQ CURVE helpers: key files, the server's allow-list, socket configuration.

With CURVE on, every connection is encrypted and the server admits only clients whose public
key is in an allow-list directory (``zmq.auth``'s ZAP handler, on its own thread, checks it
once per connection handshake, never per message). The ZAP handler sets each message's
``User-Id`` to the client's public key (Z85 text); the server ties stream ownership to it,
not to the client-chosen routing id. An unlisted key fails the handshake: its messages are
never delivered and it gets no reply at all (the client sees a timeout, or
:class:`~qecd.transport.client.AuthenticationFailed` from its handshake monitor).

Key files are ``zmq.auth``'s certificate format (``name.key`` public, ``name.key_secret``
secret; Z85 text). The allow-list is a directory of public ``.key`` files, read when the
server starts.

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> pub, sec = create_keypair(d, "server")
>>> keys = CurveServerKeys.from_files(sec, allow_dir=d)
>>> len(keys.public), keys.allow_dir == str(d)
(40, True)
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

__all__ = ["CurveServerKeys", "CurveClientKeys", "create_keypair", "start_authenticator",
           "configure_server_socket", "configure_client_socket"]


def create_keypair(directory: str | os.PathLike, name: str) -> tuple[str, str]:
    """Write a new CURVE keypair ``name.key`` / ``name.key_secret`` into ``directory``.

    Returns the (public, secret) file paths. Secret files are created mode 0600.
    """
    Path(directory).mkdir(parents=True, exist_ok=True)
    pub, sec = zmq.auth.create_certificates(str(directory), name)
    os.chmod(sec, 0o600)
    return str(pub), str(sec)


def _load(path: str | os.PathLike, *, need_secret: bool) -> tuple[bytes, bytes | None]:
    public, secret = zmq.auth.load_certificate(str(path))
    if need_secret and not secret:
        raise ValueError(f"{path}: expected a secret key file (zmq.auth '.key_secret'), got "
                         "a public key file")
    return public, secret


@dataclass(frozen=True)
class CurveServerKeys:
    """The server's keypair and the directory of allowed client public keys.

    Attributes
    ----------
    public, secret : bytes
        Z85 keys (40 bytes each).
    allow_dir : str
        Directory of allowed clients' public ``.key`` files.
    """

    public: bytes
    secret: bytes
    allow_dir: str

    @classmethod
    def from_files(cls, secret_file: str | os.PathLike,
                   allow_dir: str | os.PathLike) -> CurveServerKeys:
        """Read the server's ``.key_secret`` file; check the allow-list directory exists."""
        if not Path(allow_dir).is_dir():
            raise ValueError(f"allow_dir: expected a directory of client public keys, got "
                             f"{str(allow_dir)!r}")
        public, secret = _load(secret_file, need_secret=True)
        return cls(public, secret, str(allow_dir))


@dataclass(frozen=True)
class CurveClientKeys:
    """A client's keypair and the server's public key.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> spub, _ = create_keypair(d, "server"); _, csec = create_keypair(d, "client")
    >>> k = CurveClientKeys.from_files(csec, spub)
    >>> k.server_public == zmq.auth.load_certificate(spub)[0]
    True
    """

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, secret_file: str | os.PathLike,
                   server_public_file: str | os.PathLike) -> CurveClientKeys:
        """Read the client's ``.key_secret`` file and the server's public ``.key`` file."""
        public, secret = _load(secret_file, need_secret=True)
        server_public, _ = _load(server_public_file, need_secret=False)
        return cls(public, secret, server_public)


def start_authenticator(context: zmq.Context, allow_dir: str,
                        on_refused: Callable[[str, str], None] | None = None):
    """Start ``zmq.auth``'s ZAP handler thread on ``context`` admitting only the CURVE
    public keys found in ``allow_dir``; returns it (call ``.stop()`` when done).
    ``on_refused(address, reason)`` is called (on the handler's thread) for every refused
    connection, so the server can count and log it."""
    from zmq.auth.thread import ThreadAuthenticator

    class _Reporting(ThreadAuthenticator):
        _address = ""

        async def handle_zap_message(self, msg: list) -> None:  # a coroutine in pyzmq >= 25
            if len(msg) > 3:
                self._address = bytes(msg[3]).decode("utf-8", "replace")
            result = super().handle_zap_message(msg)
            if inspect.isawaitable(result):
                await result

        def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
            super()._send_zap_reply(request_id, status_code, status_text, user_id)
            if status_code != b"200" and on_refused is not None:
                on_refused(self._address, bytes(status_text).decode("utf-8", "replace"))

    auth = _Reporting(context)
    auth.start()
    auth.configure_curve(domain="*", location=str(allow_dir))
    return auth


def configure_server_socket(sock: zmq.Socket, keys: CurveServerKeys) -> None:
    """Make ``sock`` a CURVE server (before ``bind``)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def configure_client_socket(sock: zmq.Socket, keys: CurveClientKeys) -> None:
    """Make ``sock`` a CURVE client of the server whose public key is in ``keys`` (before
    ``connect``)."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = keys.server_public
