"""The build worker's preload: importing this module warms every plan-building kernel.

:class:`~qecd.transport.server.build_worker.BuildWorker` names it in the ``forkserver``'s
preload list, so the kernels are loaded once, in the fork server, and every build worker
forked from it starts warm (replacing a worker killed by the time budget costs a fork, not a
compilation). A worker started otherwise imports it on start-up. Importing it anywhere else
only costs that warm-up once.
"""

from __future__ import annotations

from qecd.transport.server.build_worker import warm_up_kernels

warm_up_kernels()
