"""The code catalog behind ``qecd codes``: every code family with n, k, d and round sizes.

Example
-------
>>> rows = {row["spec"]: row for row in catalog()}
>>> row = rows["surface:d=5,r=5,p=0.001,noise=uniform,basis=z"]
>>> row["n"], row["k"], row["d"], row["detectors_per_round"]
(25, 1, 5, 24)
"""

from __future__ import annotations

from typing import Any


def _row(spec_text: str) -> dict[str, Any]:
    from qecd.codes.experiment import build_experiment
    from qecd.codes.family import family

    exp = build_experiment(spec_text)
    lay = exp.layout
    return {
        "spec": str(exp.spec),
        "family": exp.spec.family,
        "name": exp.name,
        "n": exp.n,
        "k": exp.k,
        "d": exp.d,
        "d_note": exp.d_note,
        "rounds": lay.num_rounds,
        "detectors_per_round": lay.bulk_size,
        "first_round_detectors": int(len(lay.first_round)),
        "final_round_detectors": int(len(lay.final_round)),
        "num_detectors": lay.num_detectors,
        "num_observables": lay.num_observables,
        "default_window": list(family(exp.spec.family).default_window(exp.spec)),
    }


def default_entries() -> list[str]:
    """Every registered family's catalog entries (:attr:`qecd.codes.family.Family.catalog`)."""
    from qecd.codes.family import families, family

    return [e for name in families() for e in family(name).catalog]


def catalog(entries: tuple[str, ...] | list[str] | None = None) -> list[dict[str, Any]]:
    """One row per code (default: :func:`default_entries`): spec, name, n, k, d (with a note
    on exactness), round sizes and the family's default streaming window."""
    return [_row(s) for s in (default_entries() if entries is None else entries)]
