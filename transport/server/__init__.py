"""The ZeroMQ decoder server: loop and routing, sessions, plan builds, config, metrics, logs.

Modules: :mod:`~qecd.transport.server.loop` (:class:`Server`, :func:`run_server`),
:mod:`~qecd.transport.server.config` (:class:`ServerConfig`),
:mod:`~qecd.transport.server.session` (streams, plans, the decoder pool),
:mod:`~qecd.transport.server.plan_builds` (plans built off the loop, build budgets),
:mod:`~qecd.transport.server.build_worker` (the build process and its budgets),
:mod:`~qecd.transport.server.shm_streams` (shared-memory streams a server runs),
:mod:`~qecd.transport.server.metrics`, :mod:`~qecd.transport.server.rate_limit`,
:mod:`~qecd.transport.server.logs`. The policy essay is ``docs/server.md``.

>>> from qecd.transport.server import Server, ServerConfig
>>> Server.__module__
'qecd.transport.server.loop'
"""

from __future__ import annotations

from qecd.transport.server.config import ServerConfig
from qecd.transport.server.loop import Server, run_server

__all__ = ["Server", "ServerConfig", "run_server"]
