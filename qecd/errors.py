"""The error hierarchy shared by every qecd package.

Every error names the bad field, what was allowed and what arrived, so a user can fix the
input without reading qecd's source.

Example
-------
>>> from qecd.errors import SpecError
>>> try:
...     raise SpecError("d", "an odd integer >= 3", "4")
... except SpecError as e:
...     print(e)
bad spec field 'd': expected an odd integer >= 3, got '4'
"""

from __future__ import annotations


class QecdError(Exception):
    """Base class of every error qecd raises on purpose."""


class SpecError(QecdError, ValueError):
    """An experiment spec string or its parameters are invalid.

    Parameters
    ----------
    field : str
        The name of the offending field (or ``"spec"`` for the whole string).
    expected : str
        What would have been accepted.
    got : str
        What arrived.
    """

    def __init__(self, field: str, expected: str, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"bad spec field {field!r}: expected {expected}, got {got!r}")


class DemError(QecdError, ValueError):
    """A detector error model cannot be used as asked (e.g. not graph-like, no coordinates)."""


class DecoderError(QecdError, ValueError):
    """A decoder was misconfigured or given input of the wrong shape or dtype."""


class ProtocolError(QecdError):
    """A wire-protocol violation, carrying the numeric error code sent to the peer.

    Parameters
    ----------
    code : int
        One of the ``ErrorCode`` values of :mod:`qecd.transport.wire`.
    reason : str
        A readable explanation naming the bad field.
    """

    def __init__(self, code: int, reason: str) -> None:
        self.code = int(code)
        self.reason = reason
        super().__init__(f"[{int(code)}] {reason}")
