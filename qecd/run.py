"""``make run`` / ``qecd run``: the main job on an embedded default.

Until the service and the latency harness land, the main job is the offline pipeline a
stream goes through: sample a surface-code experiment with stim, decode the same shots
whole-shot and with a sliding window, and print the logical error rates with their 95%
intervals, against PyMatching as the reference.

>>> main_job(quick=True)  # doctest: +ELLIPSIS
qecd ... main job: offline accuracy on the embedded default
...
0
"""

from __future__ import annotations

import time

from qecd import __version__

DEFAULT_SPEC = "surface:d=5,r=20,p=0.003"
DEFAULT_DECODERS = ("pymatching", "pymatching-w10c5")


def main_job(*, quick: bool = False) -> int:
    """Run the default job; returns the process exit code."""
    from qecd.bench.accuracy import format_accuracy, run_accuracy
    from qecd.decoder.registry import backend_names

    shots = 500 if quick else 20_000
    decoders = list(DEFAULT_DECODERS)
    try:
        import qecd.decoder.union_find  # noqa: F401

        decoders += ["uf", "uf-w10c5"] if "uf" in backend_names() else []
    except ImportError:
        pass
    print(f"qecd {__version__} main job: offline accuracy on the embedded default")
    t0 = time.perf_counter()
    report = run_accuracy(DEFAULT_SPEC, decoders, shots=shots, seed=2026)
    print(format_accuracy(report))
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
