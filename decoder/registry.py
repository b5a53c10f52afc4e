"""Backend registry: one name per backend, resolved lazily so a backend is a module that
plugs in (add a line to ``BACKENDS``), not a branch in old code.

Example
-------
>>> from qecd.decoder.registry import backend_names
>>> 'pymatching' in backend_names()
True
"""

from __future__ import annotations

import importlib

import stim

from qecd.decoder.base import Decoder
from qecd.errors import DecoderError

#: backend name -> "module:Class"
BACKENDS: dict[str, str] = {
    "pymatching": "qecd.decoder.pymatching_backend:PyMatchingDecoder",
    "uf": "qecd.decoder.union_find:UnionFindDecoder",
    "bp-cluster": "qecd.decoder.bp_cluster:BpClusterDecoder",
}


def backend_names() -> list[str]:
    """Names accepted by :func:`make_decoder`."""
    return sorted(BACKENDS)


def backend_class(name: str) -> type[Decoder]:
    """The decoder class registered under ``name``."""
    if name not in BACKENDS:
        raise DecoderError(f"unknown decoder {name!r}; allowed: {', '.join(backend_names())}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_decoder(name: str, dem: stim.DetectorErrorModel, **options: object) -> Decoder:
    """Build and warm the backend ``name`` for ``dem``.

    >>> import stim
    >>> dem = stim.DetectorErrorModel("error(0.1) D0 L0\\nerror(0.1) D0 D1\\nerror(0.1) D1")
    >>> make_decoder("pymatching", dem).num_detectors
    2
    """
    return backend_class(name).from_dem(dem, **options)
