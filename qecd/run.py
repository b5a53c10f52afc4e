"""``make run`` / ``qecd run``: the main job on an embedded default, over both transports.

The d=5 rotated surface code at p=0.1% (200,000 stim-sampled shots, 1.2 million rounds) is
streamed at the 1 µs cycle of superconducting hardware to the ``uf`` decoder twice, each time
with the service in one process and the control-system emulator in another:

1. over **ZeroMQ** (tcp loopback, ``qecd serve``), the socket a control-stack vendor uses,
   with :data:`ZMQ_ROUNDS_PER_PACKET` rounds per SYNDROME packet (K rounds every K cycles:
   how a vendor amortises the socket's round trip at a 1 µs cycle);
2. over a **shared-memory ring** (one round per slot), the same-host transport.

Each run checks every correction against stim's truth and an offline decode and ends with
the verdict block of :mod:`qecd.bench.verdict`: service time (p99 under 10 µs), reaction time
(p99 under 10 µs, the platform stall reference of the same run beside it), backlog (kept up
with 10^6 rounds/s or not), correctness (nothing lost, duplicated or different), and whether
the machine was loaded. A table then sets the two transports side by side. ``PASS`` only when
every budget held on both; the exit code is the worse of the two. ``--quick`` runs a small
version (used by the tests); ``--shots`` picks the number of shots.

>>> code = main_job(quick=True)  # doctest: +ELLIPSIS
qecd ... main job: ...
verdict: ...
  service time ...
  reaction time ...
  backlog ...
  correctness    met ...
  machine ...
...
both transports ...
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


#: rounds per SYNDROME packet over ZeroMQ in the main job (K rounds sent every K cycles).
#: Measured on the 2-vCPU development VM at 10^6 rounds/s, d=5 (1.2 M rounds, docs/benchmarks.md):
#: K = 6-12 left a lag of 0.4-5 ms (an echo answering every frame, paced alike: 1.2-1.7 ms: one
#: CPU per end does not carry 80-170 thousand packets a second with low latency), K = 16 a lag
#: of 150-450 µs (over 10 packet intervals), K = 20 kept up, K = 24-32 kept up with reaction
#: medians of 116-179 µs by tenth of the run. A packet's rounds are timed from its receipt,
#: so its last round's service time includes the K - 1 before it: per-round service p99 was
#: 5.4-8.2 µs at K = 12-24 but 13 µs at K = 32.
ZMQ_ROUNDS_PER_PACKET = 24
TRANSPORTS = ("zmq", "shm")
_NAMES = {"zmq": "ZeroMQ", "shm": "ring"}


def _cell(summary: dict | None, key: str) -> str:
    v = (summary or {}).get(key)
    return "-" if v is None else f"{v:,.1f}" if v >= 100 else f"{v:.2f}"


def side_by_side(reports: dict[str, dict]) -> str:
    """The two runs' headline figures in one table (µs unless named).

    >>> r = {"latency_us": {"service": {"p50_us": 0.2, "p99_us": 2.0},
    ...      "reaction": {"p50_us": 3.0, "p99_us": 40.0},
    ...      "bare_round_trip": {"p50_us": 0.6, "p99_us": 8.0}},
    ...      "throughput_rounds_per_s": 999000.0, "offered_rounds_per_s": 1e6,
    ...      "lost": 0, "duplicated": 0, "mismatches_vs_offline": 0, "rounds_per_packet": 1,
    ...      "verdict": {"passed": False, "not_met": ["reaction time"]}}
    >>> print(side_by_side({"shm": r}))  # doctest: +NORMALIZE_WHITESPACE
    both transports (us; same code, decoder, shots and cycle):
                                     ring
      rounds per packet                 1
      service time / round p50       0.20
      service time / round p99       2.00
      reaction time p50              3.00
      reaction time p99             40.00
      bare round trip p50            0.60
      bare round trip p99            8.00
      rounds/s served (offered)  999,000 (1,000,000)
      lost / dup / mismatched       0/0/0
      verdict                         FAIL
      ring: not met: reaction time
    """
    cols = list(reports)
    rows = [("rounds per packet", lambda r: str(r.get("rounds_per_packet") or 1))]
    for label, key in (("service time / round", "service"), ("reaction time", "reaction"),
                       ("bare round trip", "bare_round_trip")):
        for q in ("p50", "p99"):
            rows.append((f"{label} {q}",
                         lambda r, k=key, q=q: _cell(r["latency_us"].get(k), f"{q}_us")))
    rows += [
        ("rounds/s served (offered)",
         lambda r: f"{r['throughput_rounds_per_s']:,.0f}"
                   + (f" ({r['offered_rounds_per_s']:,.0f})" if r.get("offered_rounds_per_s")
                      else "")),
        ("lost / dup / mismatched",
         lambda r: f"{r['lost']}/{r['duplicated']}/{r['mismatches_vs_offline']}"),
        ("verdict", lambda r: "PASS" if r["verdict"]["passed"] else "FAIL"),
    ]
    width = max(12, *(len(f(reports[c])) for c in cols for _, f in rows))
    lines = ["both transports (us; same code, decoder, shots and cycle):",
             " " * 28 + "".join(f"{_NAMES.get(c, c):>{width + 2}}" for c in cols)]
    for label, f in rows:
        lines.append(f"  {label:<26}" + "".join(f"{f(reports[c]):>{width + 2}}" for c in cols))
    for c in cols:
        if reports[c]["verdict"]["not_met"]:
            lines.append(f"  {_NAMES.get(c, c)}: not met: "
                         + ", ".join(reports[c]["verdict"]["not_met"]))
    return "\n".join(lines)


def main_job(*, quick: bool = False, shots: int | None = None) -> int:
    """Run the default job; returns the process exit code (0 PASS, 1 a budget not met,
    3 a correctness failure: :class:`~qecd.exit_codes.ExitCode`)."""
    from qecd.bench.latency_report import measure_latency
    from qecd.exit_codes import ExitCode

    if shots is None:
        shots = 2_000 if quick else DEFAULT_SHOTS
    if shots < 1:
        raise ValueError(f"shots: expected >= 1, got {shots}")
    print(f"qecd {__version__} main job: {DEFAULT_SPEC}, uf decoder, {shots:,} shots paced at "
          f"{CYCLE_US:g} us per round, budget {BUDGET_US:g} us (p99); over ZeroMQ "
          f"({ZMQ_ROUNDS_PER_PACKET} rounds per packet), then over a shared-memory ring")
    t0 = time.perf_counter()
    reports, codes = {}, []
    for transport in TRANSPORTS:
        out = {}
        if not quick:
            import os

            os.makedirs(f"reports/{transport}", exist_ok=True)
            out = {"json": f"reports/run-{transport}.json", "plot": f"reports/{transport}"}
        print(f"\n== over {_NAMES[transport]} ==")
        r, verdict = measure_latency(
            spec=DEFAULT_SPEC, shots=shots, cycle_us=CYCLE_US, budget_us=BUDGET_US,
            transport=transport, ping=2000 if quick else 20000,
            rounds_per_packet=ZMQ_ROUNDS_PER_PACKET if transport == "zmq" else 1, **out)
        reports[transport] = r
        codes.append(verdict.exit_code)
    print()
    print(side_by_side(reports))
    code = int(ExitCode.worst(codes))
    print(f"({time.perf_counter() - t0:.0f} s; exit {code}; reports and plots in reports/)"
          if not quick else f"(exit {code})")
    return code
