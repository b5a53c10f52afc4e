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

from qecd.errors import SpecError


def css_code_for(family: str, values: dict[str, Any]):
    """The :class:`~qecd.codes.css.CssCode` named by a ``bb`` or ``hgp`` spec's fields."""
    if family == "bb":
        from qecd.codes.bivariate_bicycle import bb_code

        return bb_code(int(values["n"]))
    if family == "hgp":
        from qecd.codes.hypergraph_product import hgp_code

        return hgp_code(values["seed"], values.get("seed2") or values["seed"])
    raise SpecError("family", "bb|hgp (a CSS code family)", family)


def _row(spec_text: str) -> dict[str, Any]:
    from qecd.codes.experiment import build_experiment

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
    }


DEFAULT_ENTRIES = (
    [f"surface:d={d}" for d in (3, 5, 7, 9, 11)]
    + [f"repetition:d={d}" for d in (3, 5, 7)]
    + [f"bb:n={n}" for n in (72, 90, 108, 144, 288)]
    + ["hgp:seed=hamming7", "hgp:seed=rep5"]
)


def catalog(entries: tuple[str, ...] | list[str] = tuple(DEFAULT_ENTRIES)) -> list[dict[str, Any]]:
    """One row per code: spec, name, n, k, d (with a note on exactness), round sizes."""
    return [_row(s) for s in entries]
