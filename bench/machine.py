"""What a report needs to say about where it ran: machine, versions, CPU pinning.

>>> info = machine_info()
>>> sorted(info)[:3]
['affinity', 'cpu_count', 'hostname']
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Host, CPU, Python and library versions, and the current process's CPU affinity."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "affinity": affinity,
        "python": platform.python_version(),
        "versions": {
            d: _version(d)
            for d in ("qecd", "numpy", "numba", "stim", "pymatching", "pyzmq", "ldpc", "sinter")
        },
    }
