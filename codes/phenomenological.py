"""Phenomenological and code-capacity noise on a CSS code, as stim detector error models.

Memory experiment in one basis. Basis ``"z"`` prepares and measures in the Z basis: the Z
checks ``hz`` see the X errors, which flip Z logical ``i`` when they hit ``lz[i]`` an odd
number of times. Basis ``"x"`` is the same with ``hx`` and ``lx`` (Z errors).

Phenomenological model, ``rounds = R >= 1`` noisy rounds ``t = 0 .. R-1`` and ``C`` checks:

- before round ``t`` each data qubit ``j`` has an error with probability ``p``;
- each check outcome ``m(t, c)`` is flipped with probability ``q`` (default ``p``);
- round ``t = R`` is a perfect readout of every data qubit (no data errors precede it), from
  which each check's parity and each logical are computed.

Detector ``D(t, c) = m(t, c) xor m(t-1, c)`` with ``m(-1, c) = 0`` (the prepared state is a
+1 eigenstate of these checks), ``D(R, c)`` compares the final parity with ``m(R-1, c)``.
Detector index ``t * C + c`` (round-major); its coordinates are ``(c, t)``, the round last,
which is how qecd derives a round layout from any DEM. Observable ``L i`` is logical ``i``.

So a data error on qubit ``j`` before round ``t`` flips ``D(t, c)`` for each check ``c`` on
``j`` (column ``j`` of the checks) and ``L i`` for each logical ``i`` on ``j``; a measurement
error at ``(t, c)`` flips ``D(t, c)`` and ``D(t+1, c)``. Mechanisms with equal symptoms
(qubits with equal columns) are merged, ``p' = p1 (1 - p2) + p2 (1 - p1)``; mechanisms
with no symptom at all are dropped, as are those of probability 0.

Example
-------
>>> from qecd.codes.bivariate_bicycle import bb_code
>>> dem = phenomenological_dem(bb_code(72), rounds=3, p=0.001)
>>> dem.num_detectors, dem.num_observables, dem.num_errors
(144, 12, 324)
"""

from __future__ import annotations

import math

import numpy as np
import stim

from qecd.codes.css import CssCode
from qecd.errors import SpecError

__all__ = ["code_capacity_dem", "phenomenological_dem"]


def _probability(field: str, value: object) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SpecError(field, "a probability in [0, 0.5)", value) from None
    if not (0.0 <= v < 0.5) or math.isnan(v):
        raise SpecError(field, "a probability in [0, 0.5)", value)
    return v


def _combine(a: float, b: float) -> float:
    """Probability that exactly one of two independent mechanisms fires."""
    return a * (1.0 - b) + b * (1.0 - a)


def _dem_text(
    num_checks: int,
    num_rounds: int,
    num_observables: int,
    mechanisms: dict[tuple[tuple[int, ...], tuple[int, ...]], float],
) -> str:
    lines = [
        f"detector({c}, {t}) D{t * num_checks + c}"
        for t in range(num_rounds)
        for c in range(num_checks)
    ]
    lines += [f"logical_observable L{i}" for i in range(num_observables)]
    for (dets, obs), prob in mechanisms.items():
        if prob <= 0.0:
            continue
        targets = " ".join([f"D{d}" for d in dets] + [f"L{o}" for o in obs])
        lines.append(f"error({prob!r}) {targets}")
    return "\n".join(lines) + "\n"


def _add(
    mechanisms: dict[tuple[tuple[int, ...], tuple[int, ...]], float],
    dets: tuple[int, ...],
    obs: tuple[int, ...],
    prob: float,
) -> None:
    if not dets and not obs:
        return
    key = (dets, obs)
    mechanisms[key] = _combine(mechanisms[key], prob) if key in mechanisms else prob


def _columns(code: CssCode, basis: str) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    h = code.checks(basis)
    logicals = code.logicals(basis)
    check_cols = [np.flatnonzero(h[:, j]) for j in range(code.n)]
    logical_cols = [np.flatnonzero(logicals[:, j]) for j in range(code.n)]
    return h, check_cols, logical_cols


def phenomenological_dem(
    code: CssCode,
    *,
    rounds: int,
    p: float,
    q: float | None = None,
    basis: str = "z",
) -> stim.DetectorErrorModel:
    """Detector error model of a phenomenological-noise memory experiment.

    Parameters
    ----------
    code : CssCode
        The code; ``code.checks(basis)`` gives the ``C`` checks, ``code.logicals(basis)`` the
        ``k`` observables.
    rounds : int
        Noisy measurement rounds ``R >= 1``; a perfect data readout follows them.
    p : float
        Data error probability before each noisy round, in ``[0, 0.5)``.
    q : float or None
        Measurement error probability, in ``[0, 0.5)``; defaults to ``p``.
    basis : str
        ``"z"`` (X errors, checks ``hz``, observables ``lz``) or ``"x"`` (``hx``, ``lx``).

    Returns
    -------
    stim.DetectorErrorModel
        ``(R + 1) * C`` detectors, detector ``t * C + c`` at coordinates ``(c, t)``, and
        ``k`` observables (all declared, touched or not). Every error probability is in
        ``(0, 0.5)``. Mechanisms: ``R * n`` data errors (fewer after merging equal columns)
        and ``R * C`` measurement errors.

    Raises
    ------
    SpecError
        On ``rounds < 1``, a probability outside ``[0, 0.5)`` or a basis other than x/z.

    Examples
    --------
    >>> from qecd.codes.hypergraph_product import hgp_code
    >>> dem = phenomenological_dem(hgp_code("rep3"), rounds=2, p=0.01, q=0.02)
    >>> dem.num_detectors, dem.num_observables
    (18, 1)
    >>> dem.get_detector_coordinates([7])   # check 1 of round 1 (6 Z checks per round)
    {7: [1.0, 1.0]}
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise SpecError("rounds", "an integer >= 1", rounds)
    rounds = int(rounds)
    p = _probability("p", p)
    q = p if q is None else _probability("q", q)
    h, check_cols, logical_cols = _columns(code, basis)
    num_checks = h.shape[0]
    mechanisms: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
    for t in range(rounds):
        offset = t * num_checks
        if p > 0.0:
            for cols, obs in zip(check_cols, logical_cols, strict=True):
                _add(mechanisms, tuple((cols + offset).tolist()), tuple(obs.tolist()), p)
        if q > 0.0:
            for c in range(num_checks):
                _add(mechanisms, (offset + c, offset + num_checks + c), (), q)
    return stim.DetectorErrorModel(_dem_text(num_checks, rounds + 1, code.k, mechanisms))


def code_capacity_dem(code: CssCode, p: float, basis: str = "z") -> stim.DetectorErrorModel:
    """Detector error model of one perfect syndrome measurement after i.i.d. data errors.

    Parameters
    ----------
    code : CssCode
        The code.
    p : float
        Probability of an error on each data qubit, in ``[0, 0.5)``.
    basis : str
        ``"z"`` (X errors seen by ``hz``, observables ``lz``) or ``"x"`` (``hx``, ``lx``).

    Returns
    -------
    stim.DetectorErrorModel
        One detector per check (detector ``c`` at coordinates ``(c, 0)``: round 0), ``k``
        observables, one mechanism per distinct column of ``(checks; logicals)``.

    Examples
    --------
    >>> from qecd.codes.bivariate_bicycle import bb_code
    >>> dem = code_capacity_dem(bb_code(144), p=0.01)
    >>> dem.num_detectors, dem.num_observables, dem.num_errors
    (72, 12, 144)
    """
    p = _probability("p", p)
    h, check_cols, logical_cols = _columns(code, basis)
    mechanisms: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
    if p > 0.0:
        for cols, obs in zip(check_cols, logical_cols, strict=True):
            _add(mechanisms, tuple(cols.tolist()), tuple(obs.tolist()), p)
    return stim.DetectorErrorModel(_dem_text(h.shape[0], 1, code.k, mechanisms))
