"""Bit-level helpers of the compiled stream's hot path (Numba only).

:func:`spread_byte` stores one bit-packed byte of detection events as 8 one-byte
detector values (bit ``i`` -> byte ``i``, stim's little bit order) with a single unaligned
8-byte store, where a loop stores them one by one (4.2-6.7 ns against 18.3-26.9 ns per
round, two runs of a loop of 600,000 rounds of a d = 5-sized layout, 12/24/24/24/24/13
detectors, with an 8-byte copy from a table of the same bytes).

Example
-------
>>> import numpy as np, numba
>>> @numba.njit
... def f(out, x):
...     spread_byte(out, 1, x)
>>> out = np.zeros(10, np.uint8); f(out, 0b10000101); out.tolist()
[0, 1, 0, 1, 0, 0, 0, 0, 1, 0]
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import types
from numba.extending import intrinsic

from qecd import _jit

#: byte ``x`` spread to one byte per bit, as a little-endian uint64 (byte ``i`` = bit ``i``)
SPREAD64 = np.array([sum(((x >> i) & 1) << (8 * i) for i in range(8)) for x in range(256)],
                    dtype=np.uint64)


@intrinsic
def _store_u64(typingctx, arr, off, value):
    """``arr[off:off + 8] = value`` (little-endian, unaligned, unchecked) for a 1-d uint8
    array."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.uint8):
        raise TypeError(f"_store_u64: expected a 1-d uint8 array, got {arr}")
    sig = types.void(arr, off, value)

    def codegen(context, builder, signature, args):
        ary = context.make_array(arr)(context, builder, args[0])
        idx = context.cast(builder, args[1], off, types.intp)
        ptr = builder.gep(ary.data, [idx], inbounds=True)
        p64 = builder.bitcast(ptr, ir.IntType(64).as_pointer())
        v = context.cast(builder, args[2], value, types.uint64)
        builder.store(v, p64, align=1)
        return context.get_dummy_value()

    return sig, codegen


@njit(**_jit.INLINE)
def spread_byte(dst, off, x):
    """``dst[off + i] = (x >> i) & 1`` for ``i`` in 0..7, in one store (``dst`` must have 8
    bytes from ``off``)."""
    _store_u64(dst, off, SPREAD64[x])
