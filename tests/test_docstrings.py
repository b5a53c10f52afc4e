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
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(mod.__path__)
                  if not m.name.startswith("bench_") and not m.name.startswith("test_")]
    return sorted(set(names) - {"qecd.__main__"})


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"


def test_every_package_is_importable_under_qecd():
    assert qecd.__version__
    for pkg in ("codes", "decoder", "transport", "bench"):
        assert importlib.import_module(f"qecd.{pkg}")
