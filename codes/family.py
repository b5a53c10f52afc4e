"""The code family registry: what each experiment family accepts and how it is built.

A *family* (the part of a spec string before ``:``) is a :class:`Family` that its own module
defines and registers: its fields with their converters and defaults, how a validated spec
becomes an :class:`~qecd.codes.experiment.Experiment`, whether its DEM is graph-like
(matching decoders can read it), the sliding window it streams with by default, and the
entries ``qecd codes`` lists. Nothing else in qecd tests a family's name: a new family is a
module added to :data:`FAMILY_MODULES`.

Example
-------
>>> from qecd.codes.family import families, family
>>> fam = family("surface")
>>> list(fam.fields)
['d', 'r', 'p', 'noise', 'basis']
>>> from qecd.codes.spec import parse_spec
>>> fam.default_window(parse_spec("surface:d=5,r=20"))
(10, 5)
>>> families()
['bb', 'hgp', 'repetition', 'surface']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qecd.errors import SpecError

if TYPE_CHECKING:
    from qecd.codes.experiment import Experiment
    from qecd.codes.spec import ExperimentSpec

__all__ = ["FAMILY_MODULES", "Family", "families", "family", "register"]

#: the modules that define (and register) a family, imported on first use
FAMILY_MODULES = (
    "qecd.codes.surface",
    "qecd.codes.repetition",
    "qecd.codes.bivariate_bicycle",
    "qecd.codes.hypergraph_product",
)

Converter = Callable[[str], Any]


@dataclass(frozen=True)
class Family:
    """One experiment family.

    Attributes
    ----------
    name : str
        The spec prefix (``surface`` in ``surface:d=5``).
    fields : dict
        Field name -> ``(converter, default)`` in canonical order; the converter takes the
        text and returns the value or raises :class:`~qecd.errors.SpecError`; a default of
        None means required (if in ``required``) or derived (``derive``).
    required : tuple of str
        Fields a spec must give.
    build : callable
        ``build(spec) -> Experiment``.
    graph_like : bool
        Its DEMs decompose into edges of at most two detectors (matching decoders read them).
    derive : callable
        ``derive(values)`` fills derived fields (rounds, ``q`` = ``p``...) in place, after
        defaults.
    window : callable
        ``window(spec) -> (window, commit)``: the sliding window it streams with by default.
    catalog : tuple of str
        Specs ``qecd codes`` lists for this family.
    """

    name: str
    fields: dict[str, tuple[Converter, Any]]
    required: tuple[str, ...]
    build: Callable[[ExperimentSpec], Experiment]
    graph_like: bool
    derive: Callable[[dict[str, Any]], None]
    window: Callable[[ExperimentSpec], tuple[int, int]]
    catalog: tuple[str, ...] = field(default=())

    def default_window(self, spec: ExperimentSpec) -> tuple[int, int]:
        """``(window, commit)`` for streaming ``spec`` (a window reaching the shot's final
        round is whole-shot decoding: :class:`~qecd.decoder.plan.WindowPlan`)."""
        w, c = self.window(spec)
        return int(w), int(c)


_FAMILIES: dict[str, Family] = {}


def register(fam: Family) -> Family:
    """Add a family (called by its module at import); returns it."""
    old = _FAMILIES.get(fam.name)
    if old is not None and old.build.__code__.co_filename != fam.build.__code__.co_filename:
        raise ValueError(f"code family {fam.name!r} registered twice: by "
                         f"{old.build.__code__.co_filename} and {fam.build.__code__.co_filename}")
    _FAMILIES[fam.name] = fam
    return fam


def _load() -> dict[str, Family]:
    if len(_FAMILIES) < len(FAMILY_MODULES):
        for module in FAMILY_MODULES:
            importlib.import_module(module)
    return _FAMILIES


def families() -> list[str]:
    """Registered family names, sorted."""
    return sorted(_load())


def family(name: str) -> Family:
    """The family registered under ``name``; SpecError naming the allowed ones otherwise."""
    fams = _load()
    if name not in fams:
        raise SpecError("family", "one of " + "|".join(sorted(fams)), name)
    return fams[name]
