"""CI regression gates on ratios measured in one run (``qecd bench gate``).

Raw times move with the machine (a busier or slower CI runner); ratios of two codes timed
on the same shots, in the same process, a few milliseconds apart, mostly do not. The gate
times each candidate and its reference alternately (``repeats`` rounds, medians), computes
``candidate / reference``, and fails when a ratio exceeds its limit in the baseline file
(JSON: ``{"ratios": {name: {"max": x, "baseline": y}}}``). ``--write-baseline`` records
the measured ratios with the limit ``baseline * (1 + tolerance)``, capped by the target an
issue set (e.g. uf <= 0.5 x pymatching per round) once that target is met, so a met target
never regresses; an unmet target is reported (``target_met``) and only regressions gate.

pytest-benchmark's own ``--benchmark-compare-fail`` (medians against a stored run) is the
other half of ``make bench-gate``; see the README.

Baselines are kept per Python and machine, :func:`baseline_key` (``Linux-CPython-3.11-x86_64``):
the ratio files in ``bench/baseline/ratios/KEY.json`` (shipped with the package) and
pytest-benchmark's runs in ``bench/baseline/<its machine id>/``. Where none matches, the gate
says so, names the key and exits :attr:`~qecd.exit_codes.ExitCode.NO_BASELINE` (5) instead
of comparing against another machine's figures.

Example
-------
>>> r = measure_ratio("repetition:d=3,r=3,p=0.01", "pymatching", "pymatching",
...                   shots=200, repeats=3)
>>> 0.2 < r["ratio"] < 5
True
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from qecd.codes import build_experiment
from qecd.decoder import make_decoder
from qecd.decoder.registry import DEFAULT_STREAM_DECODER, REFERENCE_GRAPH_DECODER

SCHEMA = "qecd.bench.gate/1"

#: where the baselines live: ``bench/baseline`` in the repository, ``qecd/bench/baseline``
#: when installed (package data)
BASELINE_DIR = Path(__file__).resolve().parent / "baseline"


def baseline_key() -> str:
    """The key of this Python and machine, e.g. ``Linux-CPython-3.11-x86_64``.

    >>> baseline_key().count("-") >= 3
    True
    """
    major, minor = platform.python_version_tuple()[:2]
    return (f"{platform.system()}-{platform.python_implementation()}-{major}.{minor}-"
            f"{platform.machine()}")


def pytest_benchmark_machine_id() -> str:
    """The folder name pytest-benchmark stores this machine's runs under (its
    ``get_machine_id``: system, implementation, Python major.minor, pointer width)."""
    major, minor = platform.python_version_tuple()[:2]
    return (f"{platform.system()}-{platform.python_implementation()}-{major}.{minor}-"
            f"{platform.architecture()[0]}")


def ratio_baseline_path(base_dir: Path | str = BASELINE_DIR) -> Path:
    """``base_dir/ratios/<baseline_key()>.json``."""
    return Path(base_dir) / "ratios" / f"{baseline_key()}.json"


def missing_baselines(base_dir: Path | str = BASELINE_DIR, *,
                      ratios_path: str | None = None, pytest_benchmark: bool = True
                      ) -> list[str]:
    """What ``make bench-gate`` would compare against and cannot find, as sentences."""
    missing = []
    ratios = Path(ratios_path) if ratios_path else ratio_baseline_path(base_dir)
    if not ratios.is_file():
        missing.append(f"no ratio baseline for {baseline_key()} ({ratios})")
    runs = Path(base_dir) / pytest_benchmark_machine_id()
    if pytest_benchmark and not any(runs.glob("*.json")):
        missing.append(f"no pytest-benchmark baseline for {pytest_benchmark_machine_id()} "
                       f"({runs}/)")
    return missing

#: name -> (spec, candidate, reference, hard limit or None)
_FAST, _REF = DEFAULT_STREAM_DECODER, REFERENCE_GRAPH_DECODER
DEFAULT_RATIOS: dict[str, tuple[str, str, str, float | None]] = {
    f"{_FAST}_over_{_REF}_surface_d{d}_p{p}": (f"surface:d={d},p={p}", _FAST, _REF, 0.5)
    for d, p in ((7, 0.001), (7, 0.003), (11, 0.001))
}


def _median_ns(fn: Callable[[], object]) -> int:
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0


def measure_ratio(spec: str, candidate: str, reference: str, *, shots: int = 5000,
                  repeats: int = 7, seed: int = 2026) -> dict:
    """Median decode time of ``candidate`` over ``reference`` on the same packed shots,
    timed alternately so that load on the machine hits both alike."""
    exp = build_experiment(spec)
    packed, _ = exp.sample(shots, seed=seed, bit_packed=True)
    cand = make_decoder(candidate, exp.dem)
    ref = make_decoder(reference, exp.dem)
    tc, tr = [], []
    for _ in range(repeats):
        tc.append(_median_ns(lambda: cand.decode_batch_packed(packed)))
        tr.append(_median_ns(lambda: ref.decode_batch_packed(packed)))
    mc, mr = float(np.median(tc)), float(np.median(tr))
    rounds = int(exp.spec["r"])
    return {
        "spec": str(exp.spec), "candidate": candidate, "reference": reference,
        "shots": shots, "repeats": repeats,
        "candidate_us_per_round": mc / 1e3 / shots / rounds,
        "reference_us_per_round": mr / 1e3 / shots / rounds,
        "ratio": mc / mr,
    }


def run_gate(baseline: dict | None, *, ratios: dict = DEFAULT_RATIOS, shots: int = 5000,
             repeats: int = 7, tolerance: float = 0.3) -> dict:
    """Measure every ratio; compare with ``baseline`` (or build one when None)."""
    results = {}
    ok = True
    for name, (spec, cand, ref, hard) in ratios.items():
        m = measure_ratio(spec, cand, ref, shots=shots, repeats=repeats)
        limit = None
        if baseline is not None:
            entry = baseline.get("ratios", {}).get(name)
            limit = entry["max"] if entry else hard
        else:
            limit = m["ratio"] * (1 + tolerance)
            if hard is not None and m["ratio"] <= hard:
                limit = min(limit, hard)  # a target once met is never loosened again
        passed = limit is None or m["ratio"] <= limit
        ok &= passed
        base = m["ratio"] if baseline is None else (
            (baseline.get("ratios", {}).get(name) or {}).get("baseline"))
        results[name] = {**m, "max": limit, "target": hard, "baseline": base,
                         "target_met": None if hard is None else m["ratio"] <= hard,
                         "passed": passed}
    return {"schema": SCHEMA, "tolerance": tolerance, "passed": ok, "ratios": results}


def format_gate(report: dict) -> str:
    lines = [f"{'ratio':<42}{'measured':>10}{'max':>10}{'cand us/rd':>12}{'ref us/rd':>11}"
             f"  gate  target"]
    for name, r in report["ratios"].items():
        mx = "-" if r["max"] is None else f"{r['max']:.3f}"
        tgt = "-" if r.get("target") is None else (
            f"<= {r['target']:g} {'met' if r['target_met'] else 'NOT MET'}")
        lines.append(f"{name:<42}{r['ratio']:>10.3f}{mx:>10}{r['candidate_us_per_round']:>12.4f}"
                     f"{r['reference_us_per_round']:>11.4f}  {'PASS' if r['passed'] else 'FAIL'}"
                     f"  {tgt}")
    lines.append("gate: " + ("PASS" if report["passed"] else "FAIL"))
    return "\n".join(lines)


def gate_main(baseline_path: str | None, *, write: bool = False, shots: int = 5000,
              repeats: int = 7, json_path: str | None = None, check_only: bool = False) -> int:
    """CLI body of ``qecd bench gate``; returns the exit code.

    0 when every ratio is within its limit (or a baseline was written, or ``check_only`` found
    the baselines), 1 when a ratio is over its limit, 5 when there is no baseline for this
    Python and machine (one line on stderr naming the key; no traceback).
    """
    from qecd.exit_codes import ExitCode

    path = Path(baseline_path) if baseline_path else ratio_baseline_path()
    if write:
        report = run_gate(None, shots=shots, repeats=repeats)
        baseline = {"schema": SCHEMA, "key": baseline_key(), "ratios": {
            k: {"max": v["max"], "baseline": v["ratio"], "spec": v["spec"]}
            for k, v in report["ratios"].items()}}
        os.makedirs(path.parent, exist_ok=True)
        with open(path, "w") as f:
            json.dump(baseline, f, indent=2)
        print(format_gate(report))
        print(f"wrote {path}")
        return ExitCode.OK
    missing = missing_baselines(ratios_path=baseline_path, pytest_benchmark=check_only)
    if missing:
        for line in missing:
            print(f"qecd bench gate: {line}; run `make bench-baseline` on this machine "
                  "(or `qecd bench gate --write-baseline`) to create it", file=sys.stderr)
        return ExitCode.NO_BASELINE
    if check_only:
        print(f"qecd bench gate: baselines for {baseline_key()} found")
        return ExitCode.OK
    with open(path) as f:
        baseline = json.load(f)
    report = run_gate(baseline, shots=shots, repeats=repeats)
    report["baseline"] = {"path": str(path), "key": baseline.get("key", baseline_key())}
    print(f"baseline {path}")
    print(format_gate(report))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
    return ExitCode.OK if report["passed"] else ExitCode.BUDGET_MISSED
