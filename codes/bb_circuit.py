"""The depth-8 syndrome cycle of bivariate bicycle codes (Bravyi et al., Nature 627, 778 (2024),
arXiv:2308.07915, Sec. 5 and Fig. 7; their ``decoder_setup.py``).

For ``A = A1 + A2 + A3`` and ``B = B1 + B2 + B3`` (each term a permutation matrix, the
monomials of :data:`qecd.codes.bivariate_bicycle.BB_CODES` in order), each check has six
neighbours, labelled as in the paper:

- X check ``i``: 0, 1, 2 = left data ``A1[i]``, ``A2[i]``, ``A3[i]``; 3, 4, 5 = right data
  ``B1[i]``, ``B2[i]``, ``B3[i]`` (the 1 in that row);
- Z check ``i``: 0, 1, 2 = left data ``B1^T[i]``, ``B2^T[i]``, ``B3^T[i]``; 3, 4, 5 = right data
  ``A1^T[i]``, ``A2^T[i]``, ``A3^T[i]``.

The cycle couples them in the order ``sX = (-, 1, 4, 3, 5, 0, 2)``,
``sZ = (3, 5, 0, 1, 2, 4, -)`` over seven CNOT layers, with the X ancillas prepared in
layer 0 and measured in an eighth moment, the Z ancillas measured in layer 6 and prepared in
the eighth moment for the next cycle:

=======  ==========================  ============================
moment   X checks                    Z checks
=======  ==========================  ============================
0        ``RX``                      CNOT data(sZ[0]) -> anc
1-5      CNOT anc -> data(sX[t])     CNOT data(sZ[t]) -> anc
6        CNOT anc -> data(sX[6])     ``M``
7        ``MX``                      ``R``
=======  ==========================  ============================

Each data qubit is in at most one CNOT per moment; left data idle in moment 0, right data in
moment 6, all data in moment 7 (where uniform circuit noise puts ``DEPOLARIZE1(p)``).

Example
-------
>>> from qecd.codes.bivariate_bicycle import bb_code
>>> c = bb_memory_circuit(bb_code(72), rounds=2, p=0.001)
>>> c.num_qubits, c.num_detectors, c.num_observables
(144, 108, 12)
>>> sum(1 for i in c.flattened() if i.name == "CX") // 2   # CX instructions per cycle: 7
7
"""

from __future__ import annotations

import numpy as np
import stim

from qecd.codes.bivariate_bicycle import BB_CODES, _polynomial
from qecd.codes.css import CssCode
from qecd.codes.css_circuit import Moment, SyndromeCycle, css_memory_circuit
from qecd.errors import SpecError

__all__ = ["SX", "SZ", "bb_cycle", "bb_memory_circuit"]

#: neighbour coupled by X checks / Z checks in CNOT layer t (None = no CNOT), Bravyi et al.
SX: tuple[int | None, ...] = (None, 1, 4, 3, 5, 0, 2)
SZ: tuple[int | None, ...] = (3, 5, 0, 1, 2, 4, None)


def _params_of(code: CssCode):
    if not code.name.startswith("bb") or not code.name[2:].isdigit() \
            or int(code.name[2:]) not in BB_CODES:
        raise SpecError("code", "a catalog BB code (bb_code(n))", code.name)
    return BB_CODES[int(code.name[2:])]


def bb_cycle(code: CssCode) -> SyndromeCycle:
    """The depth-8 cycle of a catalog BB code (qubit numbering of
    :mod:`qecd.codes.css_circuit`: data, then X ancillas, then Z ancillas).

    >>> from qecd.codes.bivariate_bicycle import bb_code
    >>> cyc = bb_cycle(bb_code(72))
    >>> len(cyc.moments), [len(m.cnots) for m in cyc.moments]
    (8, [36, 72, 72, 72, 72, 72, 36, 0])
    """
    prm = _params_of(code)
    l, m = prm.l, prm.m
    lm = l * m
    terms_a = [_polynomial([t], l, m, "a_terms") for t in prm.a_terms]
    terms_b = [_polynomial([t], l, m, "b_terms") for t in prm.b_terms]
    # permutation of each term: row i -> the column of its single 1
    perm_a = [np.argmax(t, axis=1) for t in terms_a]
    perm_b = [np.argmax(t, axis=1) for t in terms_b]
    perm_at = [np.argmax(t.T, axis=1) for t in terms_a]
    perm_bt = [np.argmax(t.T, axis=1) for t in terms_b]
    n = code.n
    xa0, za0 = n, n + lm

    def x_nb(i: int, k: int) -> int:
        return int(perm_a[k][i]) if k < 3 else lm + int(perm_b[k - 3][i])

    def z_nb(i: int, k: int) -> int:
        return int(perm_bt[k][i]) if k < 3 else lm + int(perm_at[k - 3][i])

    moments = []
    for t in range(7):
        cn: list[tuple[int, int]] = []
        if SX[t] is not None:
            cn += [(xa0 + i, x_nb(i, SX[t])) for i in range(lm)]
        if SZ[t] is not None:
            cn += [(z_nb(i, SZ[t]), za0 + i) for i in range(lm)]
        moments.append(Moment(cnots=tuple(cn), reset_x=(t == 0), measure_z=(t == 6)))
    moments.append(Moment(measure_x=True, reset_z=True))
    return SyndromeCycle(tuple(moments))


def bb_memory_circuit(code: CssCode, *, rounds: int, p: float, q: float | None = None,
                      basis: str = "z", noise: str = "circuit") -> stim.Circuit:
    """A memory experiment of a catalog BB code with the depth-8 cycle (see module docs).

    Parameters are those of :func:`qecd.codes.css_circuit.css_memory_circuit`.
    """
    return css_memory_circuit(code, bb_cycle(code), rounds=rounds, p=p, q=q, basis=basis,
                              noise=noise)
