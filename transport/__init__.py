"""Transports: the wire protocol, the ZeroMQ server and clients, shared-memory rings, emulator.

The public names below are re-exported lazily (importing ``qecd.transport.protocol`` or
``qecd.transport.shm_ring`` does not pull in ZeroMQ, stim or the decoders):

- protocol: :mod:`qecd.transport.protocol` (packets, ``parse_packet``, ``encode_*``);
- server: :class:`Server`, :class:`ServerConfig`, :func:`run_server`;
- sessions: :class:`StreamSession`, :class:`DecoderPool`, :class:`SessionLimits`;
- clients: :class:`Client`, :class:`Stream`, :class:`AsyncClient`, :class:`AsyncStream`,
  :class:`Reply`, :class:`ServerError`, :class:`ServerTimeout`,
  :class:`AuthenticationFailed`;
- access control: :class:`CurveServerKeys`, :class:`CurveClientKeys`,
  :func:`create_keypair`;
- metrics: :class:`ServiceRecorder`, :class:`ServerCounters`;
- emulator: :class:`EmulateConfig`, :func:`run_emulation`.

>>> from qecd.transport import Client, ServerError
>>> ServerError.__module__
'qecd.transport.client'
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Server": "server", "ServerConfig": "server", "run_server": "server",
    "StreamSession": "session", "DecoderPool": "session", "SessionLimits": "session",
    "StreamPlan": "session",
    "Client": "client", "Stream": "client", "Reply": "client", "ServerError": "client",
    "ServerTimeout": "client", "AuthenticationFailed": "client",
    "AsyncClient": "aio_client", "AsyncStream": "aio_client",
    "CurveServerKeys": "auth", "CurveClientKeys": "auth", "create_keypair": "auth",
    "ServiceRecorder": "metrics", "ServerCounters": "metrics",
    "EmulateConfig": "emulator", "run_emulation": "emulator",
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
