"""CSS codes from a pair of binary check matrices, and the GF(2) linear algebra they need.

A CSS code on ``n`` qubits is given by ``hx`` (``uint8``, shape ``(mx, n)``, one X-type check
per row) and ``hz`` (``uint8``, shape ``(mz, n)``, one Z-type check per row) with
``hx @ hz.T == 0 (mod 2)``. It encodes ``k = n - rank(hx) - rank(hz)`` logical qubits.
:meth:`CssCode.from_checks` also finds a symplectic basis of logical operators:

- ``lx`` (``uint8``, ``(k, n)``): X-type logicals, rows in ``ker(hz)`` and independent of
  ``rowspace(hx)``;
- ``lz`` (``uint8``, ``(k, n)``): Z-type logicals, rows in ``ker(hx)`` and independent of
  ``rowspace(hz)``;
- ``lx @ lz.T == I_k (mod 2)``: X-logical ``i`` anticommutes with Z-logical ``j`` iff ``i == j``.

So an X error ``e`` (a 0/1 vector over the qubits) has Z-check syndrome ``hz @ e`` and flips
the Z-basis logical measurement ``i`` iff ``lz[i] @ e == 1`` (mod 2); Z errors likewise with
``hx`` and ``lx``.

The linear algebra works on dense ``uint8`` arrays, one XOR of whole rows per pivot: codes
here have at most a few thousand qubits, where this takes milliseconds.

Example
-------
>>> import numpy as np
>>> from qecd.codes.css import CssCode
>>> h = np.array([[1, 1, 0], [0, 1, 1]], dtype=np.uint8)   # 3-qubit bit-flip code
>>> code = CssCode.from_checks("rep3", np.zeros((0, 3), np.uint8), h, distance=1)
>>> code.n, code.k, code.lz.tolist()
(3, 1, [[0, 0, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qecd.errors import SpecError

__all__ = [
    "CssCode",
    "gf2_inverse",
    "gf2_nullspace",
    "gf2_rank",
    "gf2_row_reduce",
]


def _as_gf2_matrix(m: object, field: str = "m") -> np.ndarray:
    """Copy ``m`` into a fresh 2-D ``uint8`` array of 0s and 1s (SpecError otherwise)."""
    a = np.asarray(m)
    if a.ndim != 2:
        raise SpecError(field, "a 2-D binary matrix", f"an array of shape {a.shape}")
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise SpecError(field, "a 2-D binary matrix", f"dtype {a.dtype}")
    if a.size and not np.isin(a, (0, 1)).all():
        raise SpecError(field, "entries 0 or 1", f"values {np.unique(a)[:8].tolist()}")
    return a.astype(np.uint8)


def gf2_row_reduce(m: object) -> tuple[np.ndarray, tuple[int, ...]]:
    """Reduced row echelon form over GF(2).

    Parameters
    ----------
    m : array_like
        A 2-D matrix of 0s and 1s (any integer or bool dtype), shape ``(rows, cols)``.

    Returns
    -------
    r : np.ndarray
        ``uint8``, shape ``(rank, cols)``: the nonzero rows of the reduced row echelon form,
        a basis of the row space of ``m``. Row ``i`` has a 1 at column ``pivots[i]`` and
        every other row has a 0 there.
    pivots : tuple of int
        The pivot column of each row of ``r``, increasing.

    Examples
    --------
    >>> r, piv = gf2_row_reduce([[1, 1, 0], [1, 1, 0], [0, 1, 1]])
    >>> r.tolist(), piv
    ([[1, 0, 1], [0, 1, 1]], (0, 1))
    """
    a = _as_gf2_matrix(m)
    rows, cols = a.shape
    pivots: list[int] = []
    r = 0
    for c in range(cols):
        if r == rows:
            break
        nz = np.flatnonzero(a[r:, c])
        if nz.size == 0:
            continue
        p = r + int(nz[0])
        if p != r:
            a[[r, p]] = a[[p, r]]
        hit = a[:, c].astype(bool)
        hit[r] = False
        a[hit] ^= a[r]
        pivots.append(c)
        r += 1
    return a[:r].copy(), tuple(pivots)


def gf2_rank(m: object) -> int:
    """Rank of a binary matrix over GF(2).

    Parameters
    ----------
    m : array_like
        A 2-D matrix of 0s and 1s, shape ``(rows, cols)``.

    Returns
    -------
    int
        The dimension of the row space over GF(2).

    Examples
    --------
    >>> gf2_rank([[1, 1, 0], [0, 1, 1], [1, 0, 1]])  # the rows sum to zero mod 2
    2
    """
    return len(gf2_row_reduce(m)[1])


def gf2_nullspace(m: object) -> np.ndarray:
    """A basis of the kernel ``{v : m @ v == 0 (mod 2)}``.

    Parameters
    ----------
    m : array_like
        A 2-D matrix of 0s and 1s, shape ``(rows, cols)``.

    Returns
    -------
    np.ndarray
        ``uint8``, shape ``(cols - rank(m), cols)``; the rows are linearly independent and
        span the kernel. Row ``i`` has a single 1 among the free (non-pivot) columns, at the
        ``i``-th free column.

    Examples
    --------
    >>> gf2_nullspace([[1, 1, 0], [0, 1, 1]]).tolist()
    [[1, 1, 1]]
    """
    r, pivots = gf2_row_reduce(m)
    cols = r.shape[1]
    pivot_set = set(pivots)
    free = [c for c in range(cols) if c not in pivot_set]
    basis = np.zeros((len(free), cols), dtype=np.uint8)
    for i, f in enumerate(free):
        basis[i, f] = 1
        basis[i, list(pivots)] = r[:, f]
    return basis


def gf2_inverse(m: object) -> np.ndarray:
    """Inverse of a square binary matrix over GF(2).

    Parameters
    ----------
    m : array_like
        A square matrix of 0s and 1s, shape ``(k, k)``.

    Returns
    -------
    np.ndarray
        ``uint8``, shape ``(k, k)``, with ``m @ inv % 2 == I``.

    Raises
    ------
    SpecError
        If ``m`` is not square or is singular over GF(2).

    Examples
    --------
    >>> gf2_inverse([[1, 1], [0, 1]]).tolist()
    [[1, 1], [0, 1]]
    """
    a = _as_gf2_matrix(m)
    k = a.shape[0]
    if a.shape != (k, k):
        raise SpecError("m", "a square matrix", f"shape {a.shape}")
    r, pivots = gf2_row_reduce(np.hstack([a, np.eye(k, dtype=np.uint8)]))
    if pivots[:k] != tuple(range(k)) or len(pivots) < k:
        raise SpecError("m", "a matrix invertible over GF(2)", f"rank {gf2_rank(a)} < {k}")
    return r[:k, k:].copy()


def _independent_mod(vectors: np.ndarray, subspace: np.ndarray) -> np.ndarray:
    """Rows spanning ``span(vectors)`` modulo ``span(subspace)`` (a complement basis)."""
    sub, pivots = gf2_row_reduce(subspace)
    res = vectors.copy()
    for row, c in zip(sub, pivots, strict=True):
        hit = res[:, c].astype(bool)
        res[hit] ^= row
    # res now vanishes on every pivot column of ``sub``: a combination of its rows lies in
    # span(subspace) only if it is zero, so its own row space is a complement.
    return gf2_row_reduce(res)[0]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.uint8)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False, repr=False)
class CssCode:
    """A CSS code: check matrices, a symplectic logical basis and what is known of ``d``.

    Build one with :meth:`from_checks`, which checks commutation and finds the logicals.
    All arrays are read-only ``uint8`` of 0s and 1s with one column per qubit.

    Attributes
    ----------
    name : str
        A short identifier, e.g. ``"bb144"`` or ``"hgp_rep3"``.
    hx : np.ndarray
        ``(mx, n)`` X-type checks (they detect Z errors). Rows may be linearly dependent.
    hz : np.ndarray
        ``(mz, n)`` Z-type checks (they detect X errors). Rows may be linearly dependent.
    lx : np.ndarray
        ``(k, n)`` X-type logical operators.
    lz : np.ndarray
        ``(k, n)`` Z-type logical operators, ``lx @ lz.T == I_k (mod 2)``.
    distance : int or None
        The code distance (min over X and Z type) if known, else an upper bound or None as
        ``distance_note`` says.
    distance_note : str
        Where ``distance`` comes from, e.g. ``"exact (Bravyi et al. 2024 Table 3)"``.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], np.uint8)
    >>> code = CssCode.from_checks("rep4", np.zeros((0, 4), np.uint8), h)
    >>> code
    CssCode('rep4', n=4, k=1, distance=None)
    """

    name: str
    hx: np.ndarray
    hz: np.ndarray
    lx: np.ndarray
    lz: np.ndarray
    distance: int | None = None
    distance_note: str = ""

    @property
    def n(self) -> int:
        """Number of physical (data) qubits."""
        return int(self.hx.shape[1])

    @property
    def k(self) -> int:
        """Number of logical qubits."""
        return int(self.lx.shape[0])

    def checks(self, basis: str) -> np.ndarray:
        """The checks a memory experiment in ``basis`` decodes with.

        ``"z"`` gives ``hz`` (Z checks, which see the X errors that flip Z logicals);
        ``"x"`` gives ``hx``.

        >>> from qecd.codes.bivariate_bicycle import bb_code
        >>> bb_code(72).checks("z").shape
        (36, 72)
        """
        return self.hz if _basis(basis) == "z" else self.hx

    def logicals(self, basis: str) -> np.ndarray:
        """The logical operators measured by a memory experiment in ``basis``.

        ``"z"`` gives ``lz`` (row ``i`` is flipped by X errors ``e`` with ``lz[i] @ e == 1``);
        ``"x"`` gives ``lx``.

        >>> from qecd.codes.bivariate_bicycle import bb_code
        >>> bb_code(72).logicals("x").shape
        (12, 72)
        """
        return self.lz if _basis(basis) == "z" else self.lx

    def __repr__(self) -> str:
        return f"CssCode({self.name!r}, n={self.n}, k={self.k}, distance={self.distance})"

    @classmethod
    def from_checks(
        cls,
        name: str,
        hx: object,
        hz: object,
        distance: int | None = None,
        distance_note: str = "",
    ) -> CssCode:
        """Build a code from its check matrices, checking them and finding the logicals.

        Parameters
        ----------
        name : str
            Short identifier of the code.
        hx, hz : array_like
            Binary matrices of shape ``(mx, n)`` and ``(mz, n)`` (either may have 0 rows).
        distance : int or None
            The distance if known (not computed here: that is NP-hard in general).
        distance_note : str
            Where ``distance`` comes from.

        Returns
        -------
        CssCode
            With ``k = n - rank(hx) - rank(hz)`` and a symplectic logical basis
            (``lx @ lz.T == I_k``, ``lx`` in ``ker(hz)``, ``lz`` in ``ker(hx)``).

        Raises
        ------
        SpecError
            If the matrices are not binary, have different column counts, or some X check
            anticommutes with some Z check (``hx @ hz.T != 0 mod 2``).

        Examples
        --------
        >>> import numpy as np
        >>> hx = np.array([[1, 1, 1, 1]], np.uint8)
        >>> hz = np.array([[1, 1, 1, 1]], np.uint8)
        >>> code = CssCode.from_checks("c4", hx, hz, distance=2, distance_note="exact")
        >>> code.k, (code.lx @ code.lz.T % 2).tolist()
        (2, [[1, 0], [0, 1]])
        >>> CssCode.from_checks("bad", [[1, 1, 0]], [[0, 1, 1]])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        qecd.errors.SpecError: bad spec field 'hz': expected rows commuting ... first (0, 0)'
        """
        hx_a = _as_gf2_matrix(hx, "hx")
        hz_a = _as_gf2_matrix(hz, "hz")
        if hx_a.shape[1] != hz_a.shape[1]:
            raise SpecError("hz", f"{hx_a.shape[1]} columns, as hx has", hz_a.shape[1])
        comm = (hx_a.astype(np.int64) @ hz_a.T.astype(np.int64)) % 2
        if comm.any():
            bad = np.argwhere(comm)
            raise SpecError(
                "hz",
                "rows commuting with every row of hx (hx @ hz.T == 0 mod 2)",
                f"{len(bad)} anticommuting (X check, Z check) pairs, "
                f"first {tuple(bad[0].tolist())}",
            )
        n = hx_a.shape[1]
        lx0 = _independent_mod(gf2_nullspace(hz_a), hx_a)  # X logicals modulo X stabilisers
        lz0 = _independent_mod(gf2_nullspace(hx_a), hz_a)  # Z logicals modulo Z stabilisers
        k = n - gf2_rank(hx_a) - gf2_rank(hz_a)
        if not (lx0.shape[0] == lz0.shape[0] == k):  # pragma: no cover - a bug, not bad input
            raise AssertionError(f"logical count {lx0.shape[0]}, {lz0.shape[0]} != k = {k}")
        if k:
            # The pairing ker(hz)/row(hx) x ker(hx)/row(hz) -> GF(2) is non-degenerate, so
            # the Gram matrix g = lx0 @ lz0.T is invertible; lz = g^-T @ lz0 makes it I.
            g = (lx0.astype(np.int64) @ lz0.T.astype(np.int64)) % 2
            lz = (gf2_inverse(g).T.astype(np.int64) @ lz0.astype(np.int64)) % 2
        else:
            lz = lz0
        if distance is not None and (not isinstance(distance, int | np.integer) or distance < 1):
            raise SpecError("distance", "None or a positive integer", distance)
        return cls(
            name=str(name),
            hx=_readonly(hx_a),
            hz=_readonly(hz_a),
            lx=_readonly(lx0),
            lz=_readonly(lz),
            distance=None if distance is None else int(distance),
            distance_note=str(distance_note),
        )


def _basis(basis: str) -> str:
    b = str(basis).lower()
    if b not in ("x", "z"):
        raise SpecError("basis", "'x' or 'z'", basis)
    return b
