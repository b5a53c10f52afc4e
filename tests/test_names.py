"""No backend or code-family name outside its own module: code never branches on a name.

A backend's name lives in its own module (its ``name`` attribute) and in the registry's
table (``decoder/registry.py``: name -> module, and the two named defaults); a family's name
in the module that registers it (:mod:`qecd.codes.family`). Everyone else refers to them
through those (``UnionFindDecoder.name``, ``DEFAULT_STREAM_DECODER``, ``family(spec.family)``).
The check reads every string constant of every module (docstrings aside) and fails on one
equal to a registered name anywhere else, except the few listed below with their reason.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from qecd.codes.family import families, family
from qecd.decoder.registry import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS = ("bench", "codes", "decoder", "qecd", "transport")

#: (file, name) -> why the name may appear there
ALLOWED = {
    ("transport/wire/control.py", "pymatching"):
        "DEFAULT_DECODER: the protocol's default decoder (docs/protocol.md 6.1), a wire constant",
    ("bench/machine.py", "pymatching"): "the PyPI distribution's name, to report its version",
    ("codes/bb_circuit.py", "bb"): "the bb family's circuit module reads bb codes' names",
}


def _owner_files() -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for name, target in BACKENDS.items():
        module = target.split(":")[0]
        owners[name] = {module.removeprefix("qecd.").replace(".", "/") + ".py",
                        "decoder/registry.py"}
    for name in families():
        module = family(name).build.__module__
        owners.setdefault(name, set()).add(module.removeprefix("qecd.").replace(".", "/")
                                           + ".py")
    return owners


def _string_constants(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings):
            yield node.lineno, node.value


def _file_violations(path: Path, rel: str, owners: dict[str, set[str]]) -> list[str]:
    return [f"{rel}:{line}: {value!r} (owned by {sorted(owners[value])})"
            for line, value in _string_constants(path)
            if value in owners and rel not in owners[value] and (rel, value) not in ALLOWED]


def _violations() -> list[str]:
    owners = _owner_files()
    return [v for top in PACKAGE_DIRS for path in sorted((ROOT / top).rglob("*.py"))
            for v in _file_violations(path, path.relative_to(ROOT).as_posix(), owners)]


def test_no_backend_or_family_name_outside_its_own_module():
    assert _violations() == []


def test_the_check_catches_a_name_test(tmp_path):
    # a branch on a backend or family name in a transport module is what the rule stops
    bad = tmp_path / "probe.py"
    bad.write_text('"""Doc naming uf is fine."""\n'
                   'def fast(backend, spec):\n'
                   '    return backend == "uf" or spec.family in ("surface",)\n')
    found = _file_violations(bad, "transport/probe.py", _owner_files())
    assert [v.split(" (")[0] for v in found] == ["transport/probe.py:3: 'uf'",
                                                 "transport/probe.py:3: 'surface'"]


def test_the_named_defaults_are_registered():
    from qecd.decoder.registry import DEFAULT_STREAM_DECODER, REFERENCE_GRAPH_DECODER
    from qecd.transport.wire import DEFAULT_DECODER

    for name in (DEFAULT_STREAM_DECODER, REFERENCE_GRAPH_DECODER, DEFAULT_DECODER):
        assert name in BACKENDS
    assert importlib.import_module(BACKENDS[DEFAULT_STREAM_DECODER].split(":")[0])
