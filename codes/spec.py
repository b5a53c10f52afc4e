"""Experiment spec strings: one string names an experiment everywhere (CLI, protocol, benches).

Grammar: ``family:key=value,key=value,...``. Every family (:mod:`qecd.codes.family`, each
defined in its own module) has a fixed set of fields with defaults; :func:`parse_spec`
validates each and :meth:`ExperimentSpec.__str__` prints the canonical form (every field, in
a fixed order), so ``parse_spec(str(s)) == s``. The fields, with their meaning and defaults
in each family's module docstring:

>>> from qecd.codes.family import family, families
>>> for name in families():
...     print(name, list(family(name).fields))
bb ['n', 'r', 'p', 'q', 'basis', 'noise']
hgp ['seed', 'seed2', 'r', 'p', 'q', 'basis', 'noise']
repetition ['d', 'r', 'p', 'noise']
surface ['d', 'r', 'p', 'noise', 'basis']

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

from dataclasses import dataclass
from typing import Any

from qecd.codes.family import families as _families
from qecd.codes.family import family
from qecd.errors import SpecError


def families() -> list[str]:
    """Experiment families accepted by :func:`parse_spec`.

    >>> families()
    ['bb', 'hgp', 'repetition', 'surface']
    """
    return _families()


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
    name, sep, rest = text.strip().partition(":")
    fam = family(name)
    fields = fam.fields
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))) if sep else ():
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq:
            raise SpecError("spec", "key=value items separated by ','", item)
        if key not in fields:
            raise SpecError(key, f"a field of {name}: " + ", ".join(fields), val)
        if key in values:
            raise SpecError(key, "each field at most once", val)
        values[key] = fields[key][0](val.strip())
    for key in fam.required:
        if key not in values:
            raise SpecError(key, f"a value (required for {name})", None)
    for key, (_, default) in fields.items():
        if key not in values and default is not None:
            values[key] = default
    fam.derive(values)
    return ExperimentSpec(name, tuple((k, values[k]) for k in fields))
