"""Decoders: one interface (:class:`Decoder`), several backends, sliding windows, sinter.

>>> from qecd.decoder import backend_names
>>> backend_names()  # doctest: +NORMALIZE_WHITESPACE
['belief-uf', 'bp-cluster', 'pymatching', 'pymatching-corr', 'relay-bp', 'uf', 'uf-corr',
 'uf-xcorr']
"""

from qecd.decoder.base import Decoder, pack_bits, unpack_bits
from qecd.decoder.fault_table import FaultTable
from qecd.decoder.registry import backend_class, backend_names, make_decoder

__all__ = [
    "Decoder",
    "FaultTable",
    "backend_class",
    "backend_names",
    "make_decoder",
    "pack_bits",
    "unpack_bits",
]
