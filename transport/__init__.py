"""Transports: the wire codec, the ZeroMQ server and clients, shared-memory rings.

Subpackages: :mod:`qecd.transport.wire` (the one codec), :mod:`qecd.transport.shm` (rings and
their loops), :mod:`qecd.transport.server` (the ZeroMQ server). The public names below are
re-exported lazily (importing ``qecd.transport.wire`` does not pull in ZeroMQ, stim or the
decoders):

- server: :class:`Server`, :class:`ServerConfig`, :func:`run_server`;
- sessions: :class:`StreamSession`, :class:`DecoderPool`, :class:`SessionLimits`;
- clients: :class:`Client`, :class:`Stream`, :class:`AsyncClient`, :class:`AsyncStream`,
  :class:`Reply`, :class:`ServerError`, :class:`ServerTimeout`,
  :class:`AuthenticationFailed`;
- access control: :class:`CurveServerKeys`, :class:`CurveClientKeys`,
  :func:`create_keypair`;
- metrics: :class:`ServiceRecorder`, :class:`ServerCounters`.

The control-system emulators live in :mod:`qecd.bench.emulator` (transport never imports bench).

>>> from qecd.transport import Client, ServerError
>>> ServerError.__module__
'qecd.transport._client_core'
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Server": "server", "ServerConfig": "server", "run_server": "server",
    "StreamSession": "server.session", "DecoderPool": "server.session",
    "SessionLimits": "server.session", "StreamPlan": "server.session",
    "Client": "client", "Stream": "client", "Reply": "client", "ServerError": "client",
    "ServerTimeout": "client", "AuthenticationFailed": "client",
    "AsyncClient": "aio_client", "AsyncStream": "aio_client",
    "CurveServerKeys": "auth", "CurveClientKeys": "auth", "create_keypair": "auth",
    "ServiceRecorder": "server.metrics", "ServerCounters": "server.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qecd.transport' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"qecd.transport.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
