"""``make run`` / ``qecd run``: the main job on an embedded default.

The service (a shared-memory ring served by the Numba ``uf`` stream loop, the fastest
transport qecd has) runs in one process and the control-system emulator in another; the
emulator streams 200,000 stim-sampled shots of the d=5 rotated surface code at p=0.1%
(1.2 million rounds) paced at the 1 µs cycle of superconducting hardware, checks every
correction against stim's truth and an offline decode, and the harness ends with the verdict
block of :mod:`qecd.bench.verdict`: service time (p99 under 10 µs), reaction time (p99 under
10 µs plus the platform stall reference measured in the same run, stated beside it), backlog
(kept up with 10^6 rounds/s or not), correctness (nothing lost, duplicated or different), and
whether the machine was loaded. ``PASS`` only when all four held. ``--quick`` runs a small
version (used by the tests); ``--shots`` picks the number of shots.

>>> code = main_job(quick=True)  # doctest: +ELLIPSIS
qecd ... main job: ...
verdict: ...
  service time ...
  reaction time ...
  backlog ...
  correctness    met ...
  machine ...
>>> code in (0, 1)  # 1: a latency budget missed (a loaded or stalling machine); never 3
True
"""

from __future__ import annotations

import time

from qecd import __version__

DEFAULT_SPEC = "surface:d=5,r=5,p=0.001"
DEFAULT_SHOTS = 200_000
BUDGET_US = 10.0
CYCLE_US = 1.0


def main_job(*, quick: bool = False, shots: int | None = None) -> int:
    """Run the default job; returns the process exit code (0 PASS, 1 a budget not met,
    3 a correctness failure: :class:`~qecd.exit_codes.ExitCode`)."""
    from qecd.bench.latency_report import latency_report

    if shots is None:
        shots = 2_000 if quick else DEFAULT_SHOTS
    if shots < 1:
        raise ValueError(f"shots: expected >= 1, got {shots}")
    print(f"qecd {__version__} main job: {DEFAULT_SPEC}, uf decoder, shared-memory transport, "
          f"{shots:,} shots paced at {CYCLE_US:g} us per round, budget {BUDGET_US:g} us (p99)")
    out = {}
    if not quick:
        import os

        os.makedirs("reports", exist_ok=True)
        out = {"json": "reports/run.json", "plot": "reports"}
    t0 = time.perf_counter()
    code = latency_report(spec=DEFAULT_SPEC, shots=shots, cycle_us=CYCLE_US, budget_us=BUDGET_US,
                          ping=2000 if quick else 20000, **out)
    print(f"({time.perf_counter() - t0:.0f} s; exit {code}; report and plots in reports/)"
          if not quick else f"(exit {code})")
    return code
