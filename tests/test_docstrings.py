"""Every docstring example in the installed qecd packages runs and passes."""

import doctest
import importlib
import pkgutil

import pytest

import qecd


def _modules():
    names = ["qecd"]
    for pkg in ("qecd", "qecd.codes", "qecd.decoder", "qecd.transport", "qecd.bench"):
        mod = importlib.import_module(pkg)
        for m in pkgutil.walk_packages(mod.__path__, prefix=f"{pkg}."):
            leaf = m.name.rsplit(".", 1)[-1]
            if not leaf.startswith(("bench_", "test_")):
                names.append(m.name)
    return sorted(set(names) - {"qecd.__main__"})


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    extraglobs = None
    if name.startswith("qecd.transport.wire."):  # examples there assume the package's names
        extraglobs = vars(importlib.import_module("qecd.transport.wire"))
    result = doctest.testmod(mod, extraglobs=extraglobs,
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"


def test_every_package_is_importable_under_qecd():
    assert qecd.__version__
    for pkg in ("codes", "decoder", "transport", "bench"):
        assert importlib.import_module(f"qecd.{pkg}")
