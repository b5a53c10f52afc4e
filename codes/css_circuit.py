"""Circuit-level memory experiments for CSS codes: a syndrome cycle, repeated, as a stim circuit.

A :class:`SyndromeCycle` is a list of *moments* (stim ``TICK``-separated layers) over qubits
numbered ``0 .. n-1`` (data), ``n .. n+mx-1`` (X-check ancillas, in ``hx`` row order) and
``n+mx .. n+mx+mz-1`` (Z-check ancillas, ``hz`` rows). Each moment holds CNOTs (control,
target) and may prepare or measure the X ancillas (``RX``/``MX``) or the Z ancillas
(``R``/``M``). :func:`css_memory_circuit` turns a code and a cycle into a memory experiment
in basis ``z`` (or ``x``):

- an initial moment resets the data (``R``, or ``RX`` for basis x) and the ancillas the cycle
  does not prepare before their first CNOT;
- ``rounds`` noisy cycles; the checks of the memory basis (``hz`` for z) are detectors, each
  round against the previous (round 0 against the +1 eigenvalue of the prepared state);
- a final measurement of every data qubit in the memory basis; one detector per check
  compares its data parity with the check's last outcome; observable ``L i`` is logical ``i``
  (``code.logicals(basis)``).

Detector ``t * C + c`` (``C`` checks of the memory basis) has coordinates ``(c, t)``: time
last, so :meth:`qecd.codes.layout.RoundLayout.from_dem` gives ``rounds + 1`` rounds of ``C``.
Only the memory basis's checks are detectors (as in Bravyi et al. 2024, who decode X and Z
errors apart): the other checks' outcomes are measured and left unused.

Noise models (``noise=``):

- ``"circuit"`` (uniform circuit noise, the model of Bravyi et al. 2024, Sec. 5 and their
  ``decoder_setup.py``): ``DEPOLARIZE2(p)`` after every CNOT, ``DEPOLARIZE1(p)`` on every data
  qubit in each moment where it is not acted on, a flip with probability ``p`` after each
  preparation (``X_ERROR`` after ``R``, ``Z_ERROR`` after ``RX``) and ``q`` before each
  measurement (``q = p`` by default); ancillas are not idled. The paper's X/Y/Z-each-``p/3``
  idle fault is stim's ``DEPOLARIZE1(p)``, and its 15 two-qubit Paulis each ``p/15`` are
  ``DEPOLARIZE2(p)``.
- ``"si1000"``: :func:`qecd.codes.noise.si1000` applied to the noiseless circuit (``q`` unused).
- ``"none"``: no noise (for checking that every detector is deterministic).

Example
-------
>>> import numpy as np
>>> from qecd.codes.css import CssCode
>>> h = np.array([[1, 1, 0], [0, 1, 1]], np.uint8)            # 3-qubit bit-flip code
>>> code = CssCode.from_checks("rep3", np.zeros((0, 3), np.uint8), h, distance=3)
>>> cycle = SyndromeCycle(moments=(
...     Moment(cnots=((0, 3), (1, 4)), reset_z=True),
...     Moment(cnots=((1, 3), (2, 4)), measure_z=True)))
>>> c = css_memory_circuit(code, cycle, rounds=2, p=0.001)
>>> dem = c.detector_error_model()
>>> dem.num_detectors, dem.num_observables
(6, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.codes.css import CssCode
from qecd.errors import SpecError

__all__ = ["Moment", "SyndromeCycle", "css_memory_circuit",
           "sequential_cycle", "CIRCUIT_NOISE_MODELS"]

#: noise models of :func:`css_memory_circuit`
CIRCUIT_NOISE_MODELS = ("circuit", "si1000", "none")


@dataclass(frozen=True)
class Moment:
    """One layer of a syndrome cycle.

    Attributes
    ----------
    cnots : tuple of (int, int)
        ``(control, target)`` pairs, no qubit twice.
    reset_x, measure_x : bool
        Prepare (``RX``, before the CNOTs) / measure (``MX``) every X-check ancilla here.
    reset_z, measure_z : bool
        Prepare (``R``) / measure (``M``) every Z-check ancilla here.
    """

    cnots: tuple[tuple[int, int], ...] = ()
    reset_x: bool = False
    measure_x: bool = False
    reset_z: bool = False
    measure_z: bool = False


@dataclass(frozen=True)
class SyndromeCycle:
    """One round of syndrome measurement: its moments, in order (see the module docs)."""

    moments: tuple[Moment, ...]


def _ancillas(code: CssCode) -> tuple[list[int], list[int]]:
    n, mx, mz = code.n, code.hx.shape[0], code.hz.shape[0]
    return list(range(n, n + mx)), list(range(n + mx, n + mx + mz))


def _check_cycle(code: CssCode, cycle: SyndromeCycle) -> None:
    """Every check ancilla must meet exactly its check's data qubits, once each, and be
    prepared and measured once per cycle; no qubit may appear twice in one moment."""
    n = code.n
    xa, za = _ancillas(code)
    total = n + len(xa) + len(za)
    seen_x = np.zeros(code.hx.shape, np.uint8)
    seen_z = np.zeros(code.hz.shape, np.uint8)
    flags = {f: 0 for f in ("reset_x", "measure_x", "reset_z", "measure_z")}
    for i, mom in enumerate(cycle.moments):
        used: set[int] = set()
        for f in flags:
            flags[f] += int(getattr(mom, f))
        for c, t in mom.cnots:
            if not (0 <= c < total and 0 <= t < total) or c in used or t in used or c == t:
                raise SpecError("cycle", "CNOTs on distinct qubits of this code per moment",
                                f"({c}, {t}) in moment {i}")
            used.update((c, t))
            if c in xa and t < n:
                seen_x[c - n, t] += 1
            elif t in za and c < n:
                seen_z[t - n - len(xa), c] += 1
            else:
                raise SpecError("cycle", "CNOT X-ancilla -> data or data -> Z-ancilla",
                                f"({c}, {t}) in moment {i}")
    if not np.array_equal(seen_x, code.hx) or not np.array_equal(seen_z, code.hz):
        raise SpecError("cycle", "each check ancilla coupled once to each qubit of its check",
                        "a cycle that misses or repeats some coupling")
    need = {"reset_x": bool(xa), "measure_x": bool(xa), "reset_z": bool(za),
            "measure_z": bool(za)}
    if any(v != 1 for f, v in flags.items() if need[f]) or any(
            v > 1 for v in flags.values()):
        raise SpecError("cycle", "one reset and one measurement of each ancilla type per cycle",
                        flags)


def css_memory_circuit(
    code: CssCode,
    cycle: SyndromeCycle,
    *,
    rounds: int,
    p: float,
    q: float | None = None,
    basis: str = "z",
    noise: str = "circuit",
) -> stim.Circuit:
    """A memory experiment of ``code`` with ``rounds`` repetitions of ``cycle``.

    Parameters
    ----------
    code : CssCode
    cycle : SyndromeCycle
        Checked: each ancilla meets its check's data qubits once per cycle, one reset and one
        measurement of each ancilla type per cycle.
    rounds : int
        Noisy syndrome cycles, >= 1.
    p : float
        Physical error rate, in ``[0, 0.5)``.
    q : float or None
        Measurement flip probability under ``"circuit"`` noise (``p`` when None).
    basis : str
        ``"z"`` or ``"x"``: the prepared and measured basis, whose checks are the detectors.
    noise : str
        One of :data:`CIRCUIT_NOISE_MODELS`.

    Returns
    -------
    stim.Circuit
        Unrolled (no ``REPEAT``), moments separated by ``TICK``; detectors at ``(c, t)``.

    Raises
    ------
    SpecError
        On a bad cycle, rounds, probability, basis or noise model.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int | np.integer) or rounds < 1:
        raise SpecError("rounds", "an integer >= 1", rounds)
    if noise not in CIRCUIT_NOISE_MODELS:
        raise SpecError("noise", "one of " + "|".join(CIRCUIT_NOISE_MODELS), noise)
    for field, v in (("p", p), ("q", p if q is None else q)):
        if not (isinstance(v, int | float) and 0.0 <= float(v) < 0.5):
            raise SpecError(field, "a probability in [0, 0.5)", v)
    b = str(basis).lower()
    if b not in ("x", "z"):
        raise SpecError("basis", "'x' or 'z'", basis)
    _check_cycle(code, cycle)
    pc = float(p) if noise == "circuit" else 0.0
    qc = (float(p) if q is None else float(q)) if noise == "circuit" else 0.0
    n = code.n
    xa, za = _ancillas(code)
    data = list(range(n))
    det_anc = za if b == "z" else xa
    checks = code.checks(b)
    num_checks = checks.shape[0]

    c = stim.Circuit()

    def flip(kind: str, qs: list[int], prob: float) -> None:
        if prob > 0 and qs:
            c.append(kind, qs, prob)

    # Initial moment: data in the memory basis; ancillas whose first use comes before their
    # reset in the cycle are prepared here too.
    pre_x = xa if _used_before_reset(cycle, set(xa), "reset_x") else []
    pre_z = za if _used_before_reset(cycle, set(za), "reset_z") else []
    if b == "z":
        c.append("R", data + pre_z)
        flip("X_ERROR", data + pre_z, pc)
        if pre_x:
            c.append("RX", pre_x)
            flip("Z_ERROR", pre_x, pc)
    else:
        c.append("RX", data + pre_x)
        flip("Z_ERROR", data + pre_x, pc)
        if pre_z:
            c.append("R", pre_z)
            flip("X_ERROR", pre_z, pc)
    c.append("TICK")

    per_cycle = _meas_per_cycle(cycle, xa, za)
    for t in range(rounds):
        for mom in cycle.moments:
            touched: set[int] = set()
            if mom.reset_x:
                c.append("RX", xa)
                flip("Z_ERROR", xa, pc)
                touched.update(xa)
            if mom.reset_z:
                c.append("R", za)
                flip("X_ERROR", za, pc)
                touched.update(za)
            if mom.cnots:
                flat = [qq for cn in mom.cnots for qq in cn]
                c.append("CX", flat)
                flip("DEPOLARIZE2", flat, pc)
                touched.update(flat)
            for flag, anc, gate, err in ((mom.measure_z, za, "M", "X_ERROR"),
                                         (mom.measure_x, xa, "MX", "Z_ERROR")):
                if not flag:
                    continue
                flip(err, anc, qc)
                c.append(gate, anc)
                if anc is det_anc:
                    # round t's detector of check j: this outcome xor last cycle's
                    for j in range(len(anc)):
                        now = stim.target_rec(-len(anc) + j)
                        recs = [now] if t == 0 else [
                            now, stim.target_rec(-len(anc) + j - per_cycle)]
                        c.append("DETECTOR", recs, [j, t])
            idle = [qq for qq in data if qq not in touched]
            flip("DEPOLARIZE1", idle, pc)
            c.append("TICK")
    # final data measurement in the memory basis
    flip("X_ERROR" if b == "z" else "Z_ERROR", data, qc)
    c.append("M" if b == "z" else "MX", data)
    # offset (from the end) of ancilla a's last outcome: it was measured in the last cycle
    last_pos = _last_outcome_offsets(cycle, xa, za, det_anc)
    for j in range(num_checks):
        recs = [stim.target_rec(-n + int(qq)) for qq in np.flatnonzero(checks[j])]
        recs.append(stim.target_rec(-n - per_cycle + last_pos[j]))
        c.append("DETECTOR", recs, [j, rounds])
    logicals = code.logicals(b)
    for i in range(logicals.shape[0]):
        c.append("OBSERVABLE_INCLUDE",
                 [stim.target_rec(-n + int(qq)) for qq in np.flatnonzero(logicals[i])], i)
    if noise == "si1000":
        from qecd.codes.noise import si1000

        c = si1000(c, float(p))
    return c


def _used_before_reset(cycle: SyndromeCycle, ancillas: set[int], flag: str) -> bool:
    """Whether a CNOT touches these ancillas before the moment that resets them."""
    for mom in cycle.moments:
        if getattr(mom, flag):
            return False
        if any(a in ancillas for cn in mom.cnots for a in cn):
            return True
    return False


def _meas_per_cycle(cycle: SyndromeCycle, xa: list[int], za: list[int]) -> int:
    return sum(len(xa) * m.measure_x + len(za) * m.measure_z for m in cycle.moments)


def _last_outcome_offsets(cycle: SyndromeCycle, xa: list[int], za: list[int],
                          det_anc: list[int]) -> list[int]:
    """Index within one cycle's measurements of each detector ancilla's outcome."""
    pos = 0
    for m in cycle.moments:
        for flag, anc in ((m.measure_z, za), (m.measure_x, xa)):
            if flag:
                if anc is det_anc:
                    return [pos + j for j in range(len(anc))]
                pos += len(anc)
    raise AssertionError("cycle measures no detector ancilla")  # pragma: no cover


def _color_edges(edges: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Greedy proper edge colouring (no vertex twice in a colour), in the given order."""
    colors: list[list[tuple[int, int]]] = []
    used: list[set[int]] = []
    for u, v in edges:
        for k, s in enumerate(used):
            if u not in s and v not in s:
                colors[k].append((u, v))
                s.update((u, v))
                break
        else:
            colors.append([(u, v)])
            used.append({u, v})
    return colors


def sequential_cycle(code: CssCode) -> SyndromeCycle:
    """A valid cycle for any CSS code: all X checks, then all Z checks.

    The X-check CNOTs (ancilla -> data) are packed into layers by a greedy edge colouring of
    the X Tanner graph, then the Z-check CNOTs (data -> ancilla) likewise. X and Z couplings
    never interleave on a data qubit, so every check is measured exactly (as in the
    sequential depth-12 reference cycle of Bravyi et al. 2024, Sec. 5) whatever the code; the
    depth is about ``2 w`` CNOT layers for checks of weight ``w``.

    >>> from qecd.codes.hypergraph_product import hgp_code
    >>> cyc = sequential_cycle(hgp_code("rep3"))
    >>> len(cyc.moments) >= 4
    True
    """
    xa, za = _ancillas(code)
    x_edges = [(xa[i], int(j)) for i in range(code.hx.shape[0])
               for j in np.flatnonzero(code.hx[i])]
    z_edges = [(int(j), za[i]) for i in range(code.hz.shape[0])
               for j in np.flatnonzero(code.hz[i])]
    layers = _color_edges(x_edges) + _color_edges(z_edges)  # X layers first, then Z
    return SyndromeCycle((Moment(reset_x=True, reset_z=True),
                          *(Moment(cnots=tuple(lay)) for lay in layers),
                          Moment(measure_x=True, measure_z=True)))
