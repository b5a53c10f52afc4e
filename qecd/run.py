"""``make run`` / ``qecd run``: the main job on an embedded default.

The service (a shared-memory ring served by the Numba ``uf`` stream loop, the fastest
transport qecd has) runs in one process and the control-system emulator in another; the
emulator streams 200,000 stim-sampled shots of the d=5 rotated surface code at p=0.1%
(1.2 million rounds) paced at the 1 µs cycle of superconducting hardware, checks every
correction against stim's truth and an offline decode, and the harness ends with a verdict
on the 10 µs budget. ``--quick`` runs a small version (used by the tests).

>>> main_job(quick=True)  # doctest: +ELLIPSIS
qecd ... main job: ...
...
0
"""

from __future__ import annotations

import argparse
import time

from qecd import __version__

DEFAULT_SPEC = "surface:d=5,r=5,p=0.001"
DEFAULT_SHOTS = 200_000
BUDGET_US = 10.0
CYCLE_US = 1.0


def main_job(*, quick: bool = False) -> int:
    """Run the default job; returns the process exit code (see ``qecd bench latency``)."""
    from qecd.bench.latency_cli import add_latency_arguments, latency_main

    shots = 2_000 if quick else DEFAULT_SHOTS
    print(f"qecd {__version__} main job: {DEFAULT_SPEC}, uf decoder, shared-memory transport, "
          f"{shots:,} shots paced at {CYCLE_US:g} us per round, budget {BUDGET_US:g} us (p99)")
    p = argparse.ArgumentParser()
    add_latency_arguments(p)
    argv = ["--spec", DEFAULT_SPEC, "--shots", str(shots), "--cycle-us", str(CYCLE_US),
            "--budget-us", str(BUDGET_US), "--ping", "2000" if quick else "20000"]
    if not quick:
        argv += ["--json", "reports/run.json", "--plot", "reports"]
        import os

        os.makedirs("reports", exist_ok=True)
    t0 = time.perf_counter()
    code = latency_main(p.parse_args(argv))
    verdict = {0: "PASS: every correction right and the p99 per-round service time within the "
                  "budget (the reaction-time tail above is reported, not gated)",
               1: "BUDGET MISSED: corrections right, but the p99 service time is over budget",
               3: "FAIL: corrections lost, duplicated or different from the offline decode"}
    print(f"verdict: {verdict.get(code, f'exit {code}')} ({time.perf_counter() - t0:.0f} s)")
    return code
