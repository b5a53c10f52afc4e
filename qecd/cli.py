"""The ``qecd`` command line: argparse subcommands over library calls.

Subcommands
-----------
``qecd codes [--json]``
    The code catalog: n, k, d and detectors per round.
``qecd bench accuracy --spec S --decoders a,b [--shots N] [--seed S] [--json PATH]``
    The same shots through several decoders, with intervals and ratios to the reference.
``qecd run``
    The main job on the embedded default (see :mod:`qecd.run`).

Example
-------
>>> main(["codes", "--json", "--only", "surface:d=3"])  # doctest: +ELLIPSIS
[
  {
    "spec": "surface:d=3,r=3,p=0.001,noise=uniform,basis=z",
...
0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable


def _cmd_codes(args: argparse.Namespace) -> int:
    from qecd.codes.catalog import DEFAULT_ENTRIES, catalog

    rows = catalog(args.only or DEFAULT_ENTRIES)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'spec':<48}{'n':>5}{'k':>4}{'d':>4}  {'dets/round':>10}  {'first/final':>11}  d is")
    for r in rows:
        ff = f"{r['first_round_detectors']}/{r['final_round_detectors']}"
        print(f"{r['spec']:<48}{r['n']:>5}{r['k']:>4}{r['d'] or '?':>4}  "
              f"{r['detectors_per_round']:>10}  {ff:>11}  {r['d_note']}")
    return 0


def _cmd_bench_accuracy(args: argparse.Namespace) -> int:
    from qecd.bench.accuracy import format_accuracy, run_accuracy

    report = run_accuracy(args.spec, [d for d in args.decoders.split(",") if d],
                          shots=args.shots, seed=args.seed, reference=args.reference)
    print(format_accuracy(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qecd.run import main_job

    return main_job(quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    p = argparse.ArgumentParser(prog="qecd", description="qecd: a real-time QEC decoder service")
    sub = p.add_subparsers(dest="command")

    c = sub.add_parser("codes", help="list the code catalog")
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.add_argument("--only", action="append", help="only this spec (repeatable)")
    c.set_defaults(func=_cmd_codes)

    r = sub.add_parser("run", help="the main job on the embedded default")
    r.add_argument("--quick", action="store_true", help="a smaller run (for smoke tests)")
    r.set_defaults(func=_cmd_run)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command")
    a = bsub.add_parser("accuracy", help="LER and decode time of decoders on the same shots")
    a.add_argument("--spec", required=True, help="experiment spec, e.g. surface:d=5,p=0.003")
    a.add_argument("--decoders", default="pymatching,uf",
                   help="comma-separated decoder names (e.g. uf,uf-w10c5,ldpc-bposd)")
    a.add_argument("--shots", type=int, default=10_000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--reference", default=None,
                   help="reference decoder (default: pymatching, or ldpc-bposd for qLDPC)")
    a.add_argument("--json", default=None, help="write the JSON report here")
    a.set_defaults(func=_cmd_bench_accuracy)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 0
    from qecd.errors import QecdError

    try:
        return func(args)
    except QecdError as e:
        print(f"qecd: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
