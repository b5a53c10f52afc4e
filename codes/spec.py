"""Experiment spec strings: one string names an experiment everywhere (CLI, protocol, benches).

Grammar: ``family:key=value,key=value,...``. Every family has a fixed set of fields with
defaults; :func:`parse_spec` validates each and :meth:`ExperimentSpec.__str__` prints the
canonical form (every field, in a fixed order), so ``parse_spec(str(s)) == s``.

======================  ==============================================================
family                  fields (default)
======================  ==============================================================
``surface``             ``d`` odd >= 3; ``r`` rounds (d); ``p`` (0.001);
                        ``noise`` uniform|si1000 (uniform); ``basis`` z|x (z)
``repetition``          ``d`` >= 2; ``r`` (d); ``p`` (0.001); ``noise`` (uniform)
``bb``                  ``n`` in 72|90|108|144|288; ``r`` (code distance); ``p`` (0.001);
                        ``q`` measurement error (= p when omitted); ``basis`` (z);
                        ``noise`` phenomenological|circuit|si1000 (phenomenological):
                        ``circuit`` is the depth-8 cycle of Bravyi et al. 2024 under
                        uniform circuit noise (codes/bb_circuit.py)
``hgp``                 ``seed``; ``seed2`` (= seed); ``r`` (code distance); ``p``; ``q``;
                        ``basis``; ``noise`` (as bb; circuits use a sequential X-then-Z
                        cycle, codes/css_circuit.py)
======================  ==============================================================

Example
-------
>>> s = parse_spec("surface:d=5,p=0.001,noise=si1000")
>>> str(s)
'surface:d=5,r=5,p=0.001,noise=si1000,basis=z'
>>> s["d"], s["r"]
(5, 5)
>>> parse_spec(str(s)) == s
True
>>> parse_spec("surface:d=4")
Traceback (most recent call last):
...
qecd.errors.SpecError: bad spec field 'd': expected an odd integer >= 3, got '4'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qecd.errors import SpecError

BB_SIZES = (72, 90, 108, 144, 288)
NOISE_MODELS = ("uniform", "si1000")
#: noise of the CSS code families: phenomenological (a DEM) or a circuit (codes/css_circuit.py)
CSS_NOISE_MODELS = ("phenomenological", "circuit", "si1000")


def _int(field: str, lo: int, odd: bool = False) -> Callable[[str], int]:
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


def _prob(field: str) -> Callable[[str], float]:
    def conv(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise SpecError(field, "a probability in [0, 0.5)", text) from None
        if not 0.0 <= v < 0.5:
            raise SpecError(field, "a probability in [0, 0.5)", text)
        return v

    return conv


def _choice(field: str, allowed: tuple[Any, ...], conv: Callable[[str], Any] = str):
    def check(text: str) -> Any:
        try:
            v = conv(text)
        except ValueError:
            v = None
        if v not in allowed:
            raise SpecError(field, "one of " + "|".join(map(str, allowed)), text)
        return v

    return check


def _name(field: str) -> Callable[[str], str]:
    def conv(text: str) -> str:
        if not text or not text.replace("_", "").isalnum():
            raise SpecError(field, "a name of letters, digits and '_'", text)
        return text

    return conv


# family -> ordered {field: (converter, default)}; default None = required or derived.
_FIELDS: dict[str, dict[str, tuple[Callable[[str], Any], Any]]] = {
    "surface": {
        "d": (_int("d", 3, odd=True), None),
        "r": (_int("r", 1), None),
        "p": (_prob("p"), 0.001),
        "noise": (_choice("noise", NOISE_MODELS), "uniform"),
        "basis": (_choice("basis", ("z", "x")), "z"),
    },
    "repetition": {
        "d": (_int("d", 2), None),
        "r": (_int("r", 1), None),
        "p": (_prob("p"), 0.001),
        "noise": (_choice("noise", NOISE_MODELS), "uniform"),
    },
    "bb": {
        "n": (_choice("n", BB_SIZES, int), None),
        "r": (_int("r", 1), None),
        "p": (_prob("p"), 0.001),
        "q": (_prob("q"), None),
        "basis": (_choice("basis", ("z", "x")), "z"),
        "noise": (_choice("noise", CSS_NOISE_MODELS), "phenomenological"),
    },
    "hgp": {
        "seed": (_name("seed"), None),
        "seed2": (_name("seed2"), None),
        "r": (_int("r", 1), None),
        "p": (_prob("p"), 0.001),
        "q": (_prob("q"), None),
        "basis": (_choice("basis", ("z", "x")), "z"),
        "noise": (_choice("noise", CSS_NOISE_MODELS), "phenomenological"),
    },
}
_REQUIRED = {"surface": ("d",), "repetition": ("d",), "bb": ("n",), "hgp": ("seed",)}


def families() -> list[str]:
    """Experiment families accepted by :func:`parse_spec`.

    >>> families()
    ['bb', 'hgp', 'repetition', 'surface']
    """
    return sorted(_FIELDS)


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment spec: a family and all of its fields, defaults filled in.

    Use :func:`parse_spec` to build one; index it like a mapping (``spec["d"]``).
    """

    family: str
    params: tuple[tuple[str, Any], ...]

    def __getitem__(self, key: str) -> Any:
        for k, v in self.params:
            if k == key:
                return v
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def as_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def replace(self, **changes: Any) -> ExperimentSpec:
        """A copy with some fields changed (re-validated).

        >>> str(parse_spec("repetition:d=3").replace(r=7))
        'repetition:d=3,r=7,p=0.001,noise=uniform'
        """
        d = self.as_dict()
        d.update(changes)
        return parse_spec(f"{self.family}:" + ",".join(f"{k}={_fmt(v)}" for k, v in d.items()))

    def __str__(self) -> str:
        return f"{self.family}:" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params)


def _default_rounds(family: str, values: dict[str, Any]) -> int:
    if family in ("surface", "repetition"):
        return int(values["d"])
    # qLDPC: the code distance (exact or the stated bound) sets the default number of rounds
    from qecd.codes.catalog import css_code_for

    code = css_code_for(family, values)
    return int(code.distance or 1)


def parse_spec(text: str) -> ExperimentSpec:
    """Parse and validate a spec string (see the module docs for the grammar).

    Parameters
    ----------
    text : str
        For example ``"surface:d=5,r=5,p=0.001,noise=si1000,basis=z"`` or
        ``"bb:n=144,r=12,p=0.003"``.

    Raises
    ------
    SpecError
        Naming the bad field, what is allowed and what arrived.
    """
    if not isinstance(text, str):
        raise SpecError("spec", "a string like 'surface:d=5'", text)
    family, sep, rest = text.strip().partition(":")
    if family not in _FIELDS:
        raise SpecError("family", "one of " + "|".join(families()), family)
    fields = _FIELDS[family]
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))) if sep else ():
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq:
            raise SpecError("spec", "key=value items separated by ','", item)
        if key not in fields:
            raise SpecError(key, f"a field of {family}: " + ", ".join(fields), val)
        if key in values:
            raise SpecError(key, "each field at most once", val)
        values[key] = fields[key][0](val.strip())
    for key in _REQUIRED[family]:
        if key not in values:
            raise SpecError(key, f"a value (required for {family})", None)
    for key, (_, default) in fields.items():
        if key not in values and default is not None:
            values[key] = default
    if family in ("bb", "hgp"):
        values.setdefault("q", values["p"])
    if family == "hgp":
        values.setdefault("seed2", values["seed"])
    if "r" not in values:
        values["r"] = _default_rounds(family, values)
    return ExperimentSpec(family, tuple((k, values[k]) for k in fields))
