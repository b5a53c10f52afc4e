"""Spec field converters: text in, a validated value out, or SpecError naming the field.

Every family's fields (:class:`~qecd.codes.family.Family`) are built from these.

Example
-------
>>> int_field("d", 3, odd=True)("5")
5
>>> prob_field("p")("0.7")
Traceback (most recent call last):
...
qecd.errors.SpecError: bad spec field 'p': expected a probability in [0, 0.5), got '0.7'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qecd.errors import SpecError

__all__ = ["choice_field", "int_field", "name_field", "prob_field"]


def int_field(field: str, lo: int, odd: bool = False) -> Callable[[str], int]:
    """An integer >= ``lo`` (odd when ``odd``)."""
    what = f"an odd integer >= {lo}" if odd else f"an integer >= {lo}"

    def conv(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise SpecError(field, what, text) from None
        if v < lo or (odd and v % 2 == 0):
            raise SpecError(field, what, text)
        return v

    return conv


def prob_field(field: str) -> Callable[[str], float]:
    """A probability in [0, 0.5)."""
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise SpecError(field, "a probability in [0, 0.5)", text) from None
        if not 0.0 <= v < 0.5:
            raise SpecError(field, "a probability in [0, 0.5)", text)
        return v

    return conv


def choice_field(field: str, allowed: tuple[Any, ...],
                 conv: Callable[[str], Any] = str) -> Callable[[str], Any]:
    """One of ``allowed`` (after ``conv``)."""
    def check(text: str) -> Any:
        try:
            v = conv(text)
        except ValueError:
            v = None
        if v not in allowed:
            raise SpecError(field, "one of " + "|".join(map(str, allowed)), text)
        return v

    return check


def name_field(field: str) -> Callable[[str], str]:
    """A name of letters, digits and '_'."""
    def conv(text: str) -> str:
        if not text or not text.replace("_", "").isalnum():
            raise SpecError(field, "a name of letters, digits and '_'", text)
        return text

    return conv
