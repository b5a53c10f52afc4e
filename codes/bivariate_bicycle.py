"""Bivariate bicycle (BB) codes (Bravyi et al., Nature 627, 778 (2024), arXiv:2308.07915).

With ``S_l`` the ``l x l`` cyclic shift (row ``i`` has its 1 at column ``i + 1 mod l``), let
``x = S_l ⊗ I_m`` and ``y = I_l ⊗ S_m``. Two polynomials ``A``, ``B`` in the commuting
matrices ``x``, ``y`` define the code on ``n = 2 l m`` qubits (``l m`` "left" qubits, then
``l m`` "right" qubits) with

    hx = [A | B],    hz = [B^T | A^T],

which commute because ``hx @ hz.T = AB + BA = 2AB = 0 (mod 2)``. Each check has weight
``|A| + |B|`` (6 for the catalog codes) and there are ``l m`` checks of each type, linearly
dependent (``k = n - 2 rank(hx) > 0``).

:data:`BB_CODES` holds the examples of the paper's Table 3, keyed by ``n``; the distances are
the paper's. The tests re-check ``d = 6`` of the 72-qubit code (meet in the middle); for the
larger codes they only check that no logical in the computed basis is lighter than ``d``.

Example
-------
>>> from qecd.codes.bivariate_bicycle import bb_code
>>> code = bb_code(144)        # the "gross" code
>>> code.n, code.k, code.distance, code.hx.shape
(144, 12, 12, (72, 144))
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qecd.codes.css import CssCode
from qecd.codes.family import Family, register
from qecd.codes.fields import choice_field
from qecd.errors import SpecError

__all__ = ["BB_CODES", "BBParams", "bb_code", "bivariate_bicycle"]

#: A monomial ``x^i y^j``: a string such as ``"1"``, ``"x"``, ``"x^3"``, ``"y^2"``, ``"x^2 y"``,
#: ``"x*y^3"``, or a pair of exponents ``(i, j)``.
Monomial = str | tuple[int, int]

_MONOMIAL = re.compile(r"(?:x(?:\^(\d+))?)?\*?(?:y(?:\^(\d+))?)?")


def _exponents(term: Monomial, field: str) -> tuple[int, int]:
    """Parse one monomial into its exponents ``(i, j)`` of ``x^i y^j``."""
    if isinstance(term, tuple):
        if len(term) == 2 and all(isinstance(e, int | np.integer) and e >= 0 for e in term):
            return int(term[0]), int(term[1])
        raise SpecError(field, "monomials such as 'x^3', 'y', '1' or exponent pairs (i, j)", term)
    s = str(term).replace(" ", "")
    if s == "1":
        return 0, 0
    match = _MONOMIAL.fullmatch(s)
    if not s or match is None:
        raise SpecError(field, "monomials such as 'x^3', 'y', '1' or exponent pairs (i, j)", term)
    i = 0 if "x" not in s else int(match.group(1) or 1)
    j = 0 if "y" not in s else int(match.group(2) or 1)
    return i, j


def _polynomial(terms: Sequence[Monomial], l: int, m: int, field: str) -> np.ndarray:
    """The ``lm x lm`` binary matrix of a sum of distinct monomials in ``x``, ``y``."""
    if isinstance(terms, str) or len(terms) == 0:
        raise SpecError(field, "a non-empty sequence of monomials, e.g. ('x^3', 'y', 'y^2')",
                        terms)
    exps = [_exponents(t, field) for t in terms]
    reduced = [(i % l, j % m) for i, j in exps]
    if len(set(reduced)) != len(reduced):
        raise SpecError(field, f"distinct monomials modulo x^{l} = y^{m} = 1 (equal terms "
                        "cancel)", terms)
    sl = np.roll(np.eye(l, dtype=np.uint8), 1, axis=1)  # row i has its 1 at column i+1 mod l
    sm = np.roll(np.eye(m, dtype=np.uint8), 1, axis=1)
    out = np.zeros((l * m, l * m), dtype=np.uint8)
    for i, j in reduced:
        out ^= np.kron(np.linalg.matrix_power(sl, i), np.linalg.matrix_power(sm, j)).astype(
            np.uint8)
    return out


def bivariate_bicycle(
    l: int, m: int, a_terms: Sequence[Monomial], b_terms: Sequence[Monomial]
) -> tuple[np.ndarray, np.ndarray]:
    """Check matrices of the bivariate bicycle code ``QC(A, B)``.

    Parameters
    ----------
    l, m : int
        Orders of the cyclic shifts: ``x^l = y^m = 1``.
    a_terms, b_terms : sequence of monomials
        The terms of ``A`` and ``B``, e.g. ``("x^3", "y", "y^2")``; each a string ``"1"``,
        ``"x^i"``, ``"y^j"``, ``"x^i y^j"`` or an exponent pair ``(i, j)``. Terms must be
        distinct modulo ``x^l = y^m = 1``.

    Returns
    -------
    hx, hz : np.ndarray
        ``uint8``, each of shape ``(l m, 2 l m)``: ``hx = [A | B]``, ``hz = [B^T | A^T]``.
        Qubit ``a m + b`` (``0 <= a < l``, ``0 <= b < m``) is left qubit ``(a, b)``;
        qubit ``l m + a m + b`` is right qubit ``(a, b)``.

    Raises
    ------
    SpecError
        If ``l`` or ``m`` is not a positive integer or a term is malformed or repeated.

    Examples
    --------
    >>> hx, hz = bivariate_bicycle(6, 6, ["x^3", "y", "y^2"], ["y^3", "x", "x^2"])
    >>> hx.shape, int(hx.sum(axis=1).max()), int((hx.astype(int) @ hz.T % 2).sum())
    ((36, 72), 6, 0)
    """
    for field, v in (("l", l), ("m", m)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise SpecError(field, "a positive integer", v)
    a = _polynomial(a_terms, int(l), int(m), "a_terms")
    b = _polynomial(b_terms, int(l), int(m), "b_terms")
    hx = np.hstack([a, b])
    hz = np.hstack([b.T, a.T])
    return np.ascontiguousarray(hx), np.ascontiguousarray(hz)


@dataclass(frozen=True)
class BBParams:
    """One catalog entry: the construction and the paper's ``[[n, k, d]]``.

    Attributes
    ----------
    l, m : int
        Shift orders.
    a_terms, b_terms : tuple of str
        Monomials of ``A`` and ``B``.
    n, k, d : int
        Parameters as stated in the source.
    distance_note : str
        Where ``d`` comes from.
    """

    l: int
    m: int
    a_terms: tuple[str, ...]
    b_terms: tuple[str, ...]
    n: int
    k: int
    d: int
    distance_note: str


_TABLE3 = "Bravyi et al. 2024 (arXiv:2308.07915) Table 3"

#: The BB codes of Bravyi et al. 2024, Table 3, keyed by ``n``. Each check has weight 6.
BB_CODES: dict[int, BBParams] = {
    72: BBParams(6, 6, ("x^3", "y", "y^2"), ("y^3", "x", "x^2"), 72, 12, 6,
                 f"exact ({_TABLE3}); re-checked by the tests: weight-6 logicals exist and "
                 "none of weight <= 5"),
    90: BBParams(15, 3, ("x^9", "y", "y^2"), ("1", "x^2", "x^7"), 90, 8, 10,
                 f"exact, as stated in {_TABLE3}; not recomputed here"),
    108: BBParams(9, 6, ("x^3", "y", "y^2"), ("y^3", "x", "x^2"), 108, 8, 10,
                  f"exact, as stated in {_TABLE3}; not recomputed here"),
    144: BBParams(12, 6, ("x^3", "y", "y^2"), ("y^3", "x", "x^2"), 144, 12, 12,
                  f"exact, as stated in {_TABLE3} (the 'gross' code); not recomputed here"),
    288: BBParams(12, 12, ("x^3", "y^2", "y^7"), ("y^3", "x", "x^2"), 288, 12, 18,
                  f"as stated in {_TABLE3} (the 'two-gross' code); d <= 18 confirmed here by "
                  "a weight-18 logical, the lower bound not recomputed"),
}


def bb_code(n: int) -> CssCode:
    """The catalog bivariate bicycle code with ``n`` physical qubits.

    Parameters
    ----------
    n : int
        One of the keys of :data:`BB_CODES` (72, 90, 108, 144, 288).

    Returns
    -------
    CssCode
        Named ``f"bb{n}"``, with the paper's distance and a note saying so.

    Raises
    ------
    SpecError
        If ``n`` is not in the catalog; the message lists the allowed values.

    Examples
    --------
    >>> code = bb_code(72)
    >>> code.name, code.n, code.k, code.distance
    ('bb72', 72, 12, 6)
    >>> bb_code(100)
    Traceback (most recent call last):
    ...
    qecd.errors.SpecError: bad spec field 'n': expected one of 72, 90, 108, 144, 288, got 100
    """
    params = BB_CODES.get(n) if isinstance(n, int | np.integer) else None
    if params is None:
        raise SpecError("n", "one of " + ", ".join(map(str, sorted(BB_CODES))), n)
    hx, hz = bivariate_bicycle(params.l, params.m, params.a_terms, params.b_terms)
    return CssCode.from_checks(f"bb{params.n}", hx, hz, distance=params.d,
                               distance_note=params.distance_note)


def _code_of(values: dict) -> CssCode:
    return bb_code(int(values["n"]))


def _build(spec):
    from qecd.codes.bb_circuit import bb_cycle
    from qecd.codes.css_family import css_build

    return css_build(spec, _code_of(spec.as_dict()), bb_cycle)


def _family() -> Family:
    from qecd.codes.css_family import css_derive, css_fields, css_window

    #: ``bb:n=..,r=..,p=..,q=..,basis=..,noise=..``: ``n`` one of the catalog sizes; ``r``
    #: (code distance); ``p`` (0.001); ``q`` measurement error (= p); ``basis`` (z); ``noise``
    #: phenomenological|circuit|si1000: ``circuit`` is the depth-8 cycle of Bravyi et al.
    #: 2024 under uniform circuit noise (codes/bb_circuit.py)
    return Family(
        name="bb",
        fields=css_fields({"n": (choice_field("n", tuple(sorted(BB_CODES)), int), None)}),
        required=("n",),
        build=_build,
        graph_like=False,
        derive=css_derive(_code_of),
        window=css_window(_code_of),
        catalog=tuple(f"bb:n={n}" for n in sorted(BB_CODES)),
    )


FAMILY = register(_family())
