"""Decoder names and the registry that builds them.

One name per backend, resolved lazily so a backend is a module that plugs in (add a line to
``BACKENDS``), not a branch in old code. A *decoder name* is a backend, optionally with a
sliding window in the same token: ``uf`` decodes whole shots, ``uf-w10c5`` streams with
window 10 and commit 5. The same names key sinter rows (``qecd-uf-w10c5``), benchmark
reports and HELLO packets; :func:`parse_decoder_name` is the one parser of that suffix and
:func:`build_decoder` the one place a name becomes a built decoder.

Example
-------
>>> from qecd.decoder.registry import backend_names
>>> 'pymatching' in backend_names()
True
>>> parse_decoder_name("bp-cluster-w8c4")
DecoderName(backend='bp-cluster', window=8, commit=4)
>>> str(parse_decoder_name("uf"))
'uf'
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

import stim

from qecd.decoder.base import Decoder
from qecd.errors import DecoderError

#: backend name -> "module:Class"
BACKENDS: dict[str, str] = {
    "pymatching": "qecd.decoder.pymatching_backend:PyMatchingDecoder",
    "uf": "qecd.decoder.union_find:UnionFindDecoder",
    "bp-cluster": "qecd.decoder.bp_cluster:BpClusterDecoder",
    "pymatching-corr": "qecd.decoder.pymatching_correlated:CorrelatedPyMatchingDecoder",
    "relay-bp": "qecd.decoder.relay_bp_backend:RelayBpDecoder",
    "uf-corr": "qecd.decoder.correlated_uf:CorrelatedUnionFindDecoder",
    "uf-xcorr": "qecd.decoder.cross_correlated_uf:CrossCorrelatedUnionFindDecoder",
    "belief-uf": "qecd.decoder.belief_uf:BeliefUnionFindDecoder",
}


#: the backend streams use where the caller names none and the compiled engine matters (the
#: shared-memory rings, the latency benchmarks): it compiles into the per-stream engine
DEFAULT_STREAM_DECODER = "uf"
#: the reference every graph-like decoder is measured against (same shots, paired ratios)
REFERENCE_GRAPH_DECODER = "pymatching"


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


_NAME = re.compile(r"^(?P<backend>[a-z][a-z0-9_-]*?)(?:-w(?P<w>\d+)c(?P<c>\d+))?$")


@dataclass(frozen=True)
class DecoderName:
    """A parsed decoder name: backend plus optional window and commit (rounds)."""

    backend: str
    window: int | None = None
    commit: int | None = None

    def __str__(self) -> str:
        if self.window is None:
            return self.backend
        return f"{self.backend}-w{self.window}c{self.commit}"


def parse_decoder_name(name: str) -> DecoderName:
    """Parse ``backend`` or ``backend-w<W>c<C>``; raises DecoderError naming what is allowed."""
    m = _NAME.match(name.strip()) if isinstance(name, str) else None
    allowed = ", ".join(backend_names())
    if m is None or m["backend"] not in backend_names():
        raise DecoderError(
            f"decoder name: expected one of {allowed}, optionally followed by -w<W>c<C> "
            f"(e.g. uf-w10c5), got {name!r}"
        )
    if m["w"] is None:
        return DecoderName(m["backend"])
    w, c = int(m["w"]), int(m["c"])
    if not 1 <= c <= w:
        raise DecoderError(f"decoder name {name!r}: expected 1 <= commit <= window")
    return DecoderName(m["backend"], w, c)


def build_decoder(name: str | DecoderName, dem: stim.DetectorErrorModel, layout=None,
                  **options: object):
    """Build what a decoder name names for ``dem``: the backend itself for a whole-shot name,
    a :class:`~qecd.decoder.window.StreamDecoder` for a windowed one (``layout`` defaults to
    ``RoundLayout.from_dem(dem)``, which needs detector time coordinates). Either way the
    result has ``decode_batch`` and ``decode_batch_packed`` with the same contract.

    >>> import numpy as np
    >>> from qecd.codes import build_experiment
    >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
    >>> dec = build_decoder("pymatching-w2c1", exp.dem, exp.layout)
    >>> dec.decode_batch(np.zeros((2, exp.dem.num_detectors), np.uint8)).tolist()
    [[0], [0]]
    """
    dn = name if isinstance(name, DecoderName) else parse_decoder_name(name)
    if dn.window is None:
        return make_decoder(dn.backend, dem, **options)
    from qecd.codes.layout import RoundLayout
    from qecd.decoder.window import StreamDecoder

    return StreamDecoder(dem, layout if layout is not None else RoundLayout.from_dem(dem),
                         dn.backend, window=dn.window, commit=dn.commit,
                         backend_options=options or None)
