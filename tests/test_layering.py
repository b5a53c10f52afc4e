"""The dependency rule of the tree, checked by walking every module's imports.

Layers, lowest first (a module may import its own layer and lower ones, never higher):

    errors, _jit <- codes <- decoder <- transport.shm, transport.server <- client <- bench <- cli

and, besides: ``transport.wire`` imports nothing of qecd but ``qecd.errors`` and ``qecd._jit``;
``transport.shm`` never imports ``transport.server``; nothing under ``transport`` imports
``bench``; ``decoder`` never imports ``transport``. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: source folder -> import name of the package it installs as
FOLDERS = {"qecd": "qecd", "codes": "qecd.codes", "decoder": "qecd.decoder",
           "transport": "qecd.transport", "bench": "qecd.bench"}

#: (layer name, module prefixes), lowest first
LAYERS = [
    ("base", ("qecd.errors", "qecd._jit", "qecd.__init__", "qecd.exit_codes", "qecd.extras")),
    ("codes", ("qecd.codes",)),
    ("decoder", ("qecd.decoder",)),
    ("wire", ("qecd.transport.wire",)),
    ("transport", ("qecd.transport.shm", "qecd.transport.server", "qecd.transport.auth",
                   "qecd.transport.pqc",
                   "qecd.transport.engine",
                   "qecd.transport.__init__")),
    ("client", ("qecd.transport.client", "qecd.transport.aio_client",
                "qecd.transport._client_core", "qecd.transport.round_batch")),
    ("bench", ("qecd.bench",)),
    ("cli", ("qecd.cli", "qecd.run", "qecd.__main__", "qecd.conformance")),
]
#: what each layer may import besides its own and lower layers' modules... and stricter rules
FORBIDDEN = [
    ("qecd.transport.wire", ("qecd.",), ("qecd.errors", "qecd._jit", "qecd.transport.wire")),
    ("qecd.transport.shm", ("qecd.transport.server",), ()),
    ("qecd.transport", ("qecd.bench",), ()),
    ("qecd.decoder", ("qecd.transport",), ()),
]


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    rel = path.relative_to(root)
    pkg = FOLDERS[rel.parts[0]]
    parts = list(rel.with_suffix("").parts[1:])
    if parts and parts[-1] == "__init__":
        parts[-1] = "__init__"
    return ".".join([pkg, *parts]) if parts else pkg


def layer_of(name: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if name == p or name.startswith(p + "."):
                best = i
    return best


def qecd_imports(path: pathlib.Path, name: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("qecd")]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if not mod.startswith("qecd"):
                continue
            if mod in ("qecd", "qecd.transport", "qecd.decoder", "qecd.codes", "qecd.bench",
                       "qecd.transport.shm", "qecd.transport.server"):
                # `from qecd.transport import wire`: the imported names are modules
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def violations(root: pathlib.Path = ROOT) -> list[str]:
    found = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            if path.name.startswith(("test_", "bench_")):
                continue
            name = module_name(path, root)
            mine = layer_of(name)
            for line, imported in qecd_imports(path, name):
                where = f"{path.relative_to(root)}:{line}: {name} imports {imported}"
                theirs = layer_of(imported)
                if mine is not None and theirs is not None and theirs > mine:
                    found.append(f"{where} (layer {LAYERS[mine][0]} < {LAYERS[theirs][0]})")
                for prefix, banned, allowed in FORBIDDEN:
                    if (name == prefix or name.startswith(prefix + ".")) and \
                            imported.startswith(banned) and not imported.startswith(allowed):
                        found.append(f"{where} (rule: {prefix} may not import {banned})")
    return found


def test_every_module_respects_the_dependency_rule():
    assert violations() == []


def test_a_deliberate_violation_is_caught(tmp_path):
    for folder in FOLDERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "transport" / "wire").mkdir()
    (tmp_path / "decoder" / "bad.py").write_text("from qecd.transport.client import Client\n")
    (tmp_path / "transport" / "wire" / "bad.py").write_text(
        "def f():\n    import qecd.codes\n")
    found = violations(tmp_path)
    assert len(found) == 3, found  # decoder -> client (layer, rule) and wire -> codes (rule)
    assert any("decoder/bad.py:1" in v and "layer" in v for v in found)
    assert any("wire/bad.py:2" in v for v in found)


@pytest.mark.parametrize("name, layer", [("qecd.transport.wire.header", "wire"),
                                         ("qecd.transport.shm.ring", "transport"),
                                         ("qecd.bench.emulator", "bench"),
                                         ("qecd.cli", "cli")])
def test_modules_are_placed_in_their_layer(name, layer):
    assert LAYERS[layer_of(name)][0] == layer


def test_every_module_is_placed_in_a_layer():
    unplaced = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.startswith(("test_", "bench_")):
                continue
            name = module_name(path)
            if layer_of(name) is None:
                unplaced.append(name)
    assert unplaced == []


def argparse_users(root: pathlib.Path = ROOT) -> list[str]:
    """Modules other than qecd/cli.py that import argparse (every parser lives in the CLI)."""
    out = []
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            if path.relative_to(root).as_posix() == "qecd/cli.py":
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) else [])
                if "argparse" in names:
                    out.append(f"{path.relative_to(root).as_posix()}:{node.lineno}")
    return out


def test_every_argument_parser_lives_in_the_cli(tmp_path):
    assert argparse_users() == []
    for folder in FOLDERS:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "bench" / "tool.py").write_text("def main():\n    import argparse\n")
    assert argparse_users(tmp_path) == ["bench/tool.py:2"]
