"""RDMA-style shared-memory transport: regions, SPSC rings, their Numba loops, both sides.

Modules: :mod:`~qecd.transport.shm.atomics` (acquire/release intrinsics, clock),
:mod:`~qecd.transport.shm.ring` (regions and rings: Python owners and ``@njit`` kernels),
:mod:`~qecd.transport.shm.loop` (the compiled per-stream server loop and the emulator's
client loop), :mod:`~qecd.transport.shm.host_loop` (the loop for backends decoded from
Python), :mod:`~qecd.transport.shm.streams` (:class:`ShmStreamServer`, :class:`ShmStreamClient`).
The region layout, memory ordering and failure semantics are specified in
``docs/protocol.md`` §14; nothing here repeats it.

Importing this package imports none of its modules (they compile kernels on first import).
"""
