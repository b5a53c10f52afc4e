"""Numba intrinsics for shared-memory polling: acquire/release words, pause, clock, yield.

A Numba loop that spins on a shared-memory word with plain loads may have the load hoisted
out of the loop by LLVM and never see another process's store. These intrinsics emit the
LLVM instructions that forbid that and that order the surrounding plain memory accesses:

``load_acquire(arr, i)``
    ``load atomic <ty>, ptr acquire, align <size>`` of ``arr[i]``. No later load or store of
    this thread may be moved before it: data read after seeing a doorbell is the data that
    was written before the doorbell.
``store_release(arr, i, value)``
    ``store atomic <ty> value, ptr release, align <size>`` into ``arr[i]``. No earlier load or
    store may be moved after it: a payload written before the doorbell is visible to whoever
    observes the doorbell with an acquire load.
``load_acquire_addr(addr)`` / ``store_release_addr(addr, value)``
    The same on a raw 8-byte aligned address (``uint64`` word).
``cpu_relax()``
    ``pause`` on x86-64 (``yield`` on AArch64) as inline assembly that also clobbers memory,
    so it is a compiler barrier; a no-op on other CPUs. Spin-wait hint, not an ordering.
``monotonic_ns()``
    ``clock_gettime(CLOCK_MONOTONIC)`` in integer nanoseconds (``int64``), called straight
    from compiled code (no Python object, no GIL); the value is the same clock as
    :func:`time.monotonic_ns`, so it compares across processes of one host.
``sched_yield()``
    ``sched_yield(2)``: give the CPU away when a waiter has spun for long on an oversubscribed
    machine.
``copy_bytes(dst, dst_off, src, src_off, n)``
    ``llvm.memcpy`` of ``n`` bytes between two ``uint8`` arrays (no per-byte index
    wraparound, so LLVM emits wide moves or a ``memcpy`` call); the ranges must not overlap.

Arrays must be one-dimensional, C-contiguous, of a 4- or 8-byte integer dtype; no bounds check
is done (the index is the caller's promise). Indices are element indices, not byte offsets.
The loads and stores are single-copy atomic only for naturally aligned words: numpy arrays
over an ``mmap`` are page aligned, so element indices are always aligned.

On x86-64 an acquire load and a release store compile to plain ``mov`` instructions (the CPU is
TSO); the cost is what they stop the compiler from doing. On AArch64 they become ``ldar`` and
``stlr``.

Measured on the 2-core shared EPYC VM of ``/work/shared/design.md`` (clocksource ``tsc``, so
vDSO): ``monotonic_ns()`` costs ~22 ns from compiled code (see :func:`clock_cost_ns`).

The C symbols ``clock_gettime`` and ``sched_yield`` are resolved from the C library already
loaded in the process and registered with LLVM at import, so ``cache=True`` works for every
function that calls them (the cached object code is linked against the same names). Numba's
cache does not track this file as a dependency of its callers: after changing an intrinsic,
clear the callers' cache files.

Example
-------
>>> import numpy as np
>>> from numba import njit
>>> @njit
... def publish_then_read(w):
...     store_release(w, 1, 42)
...     return load_acquire(w, 1)
>>> publish_then_read(np.zeros(4, dtype=np.uint64))
42
>>> t0 = monotonic_ns_py(); t1 = monotonic_ns_py(); 0 <= t1 - t0 < 10**9
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import time

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from qecd import _jit

_jit.invalidate_if_changed(__file__, [], __name__)

__all__ = [
    "CLOCK_MONOTONIC",
    "clock_cost_ns",
    "copy_bytes",
    "cpu_relax",
    "load_acquire",
    "load_acquire_addr",
    "monotonic_ns",
    "monotonic_ns_py",
    "sched_yield",
    "spin_until_equal",
    "store_release",
    "store_release_addr",
]

CLOCK_MONOTONIC = 1  # <linux/time.h>; glibc and musl agree
_MACHINE = platform.machine().lower()


def _register_libc_symbols() -> None:
    """Make ``clock_gettime``, ``sched_yield`` and ``usleep`` resolvable by Numba's JIT
    linker."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    for name in ("clock_gettime", "sched_yield", "usleep"):
        addr = ctypes.cast(getattr(libc, name), ctypes.c_void_p).value
        llvm.add_symbol(name, addr)


_register_libc_symbols()
# Numba initialises the native target and asm printer but not the asm parser, which LLVM needs
# to emit object code containing inline assembly (``cpu_relax``).
llvm.initialize_native_asmparser()


def _check_word_array(arr: types.Type, fname: str) -> int:
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(arr.dtype, types.Integer)
            and arr.dtype.bitwidth in (32, 64)):
        raise TypeError(f"{fname}: expected a 1-d array of 32- or 64-bit integers, got {arr}")
    return arr.dtype.bitwidth // 8


def _element_pointer(context, builder, arrty, arr, idx, idxty):
    ary = context.make_array(arrty)(context, builder, arr)
    idx64 = context.cast(builder, idx, idxty, types.intp)
    return builder.gep(ary.data, [idx64], inbounds=True)


@intrinsic
def load_acquire(typingctx, arr, idx):
    """``arr[idx]`` read with an atomic acquire load (returns the array's dtype)."""
    size = _check_word_array(arr, "load_acquire")
    if not isinstance(idx, types.Integer):
        raise TypeError(f"load_acquire: index must be an integer, got {idx}")
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, arr, args[0], args[1], idx)
        return builder.load_atomic(ptr, "acquire", size)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, value):
    """``arr[idx] = value`` with an atomic release store (value cast to the array's dtype)."""
    size = _check_word_array(arr, "store_release")
    if not isinstance(idx, types.Integer) or not isinstance(value, types.Integer):
        raise TypeError(f"store_release: index and value must be integers, got {idx}, {value}")
    sig = types.void(arr, idx, value)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, arr, args[0], args[1], idx)
        val = context.cast(builder, args[2], value, arr.dtype)
        builder.store_atomic(val, ptr, "release", size)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def load_acquire_addr(typingctx, addr):
    """The ``uint64`` at raw address ``addr`` (8-byte aligned), read with an acquire load."""
    if not isinstance(addr, types.Integer):
        raise TypeError(f"load_acquire_addr: address must be an integer, got {addr}")
    sig = types.uint64(addr)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load_atomic(ptr, "acquire", 8, typ=ir.IntType(64))

    return sig, codegen


@intrinsic
def store_release_addr(typingctx, addr, value):
    """Store ``value`` as a ``uint64`` at raw address ``addr`` (8-byte aligned), release."""
    if not isinstance(addr, types.Integer) or not isinstance(value, types.Integer):
        raise TypeError(f"store_release_addr: expected integers, got {addr}, {value}")
    sig = types.void(addr, value)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        val = context.cast(builder, args[1], value, types.uint64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


if _MACHINE in ("x86_64", "amd64", "i386", "i686"):
    _PAUSE_ASM = "pause"
elif _MACHINE in ("aarch64", "arm64"):
    _PAUSE_ASM = "yield"
else:  # no spin hint known: only the compiler barrier
    _PAUSE_ASM = ""


@intrinsic
def cpu_relax(typingctx):
    """Spin-wait hint (x86 ``pause``); also a compiler memory barrier."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.VoidType(), [])
        asm = ir.InlineAsm(fnty, _PAUSE_ASM, "~{memory}", side_effect=True)
        builder.call(asm, [])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch(typingctx, arr, idx, write):
    """Hint the CPU to fetch the cache line of ``arr[idx]`` (``write``: a literal-free int,
    1 when it will be written) into its caches; no effect on results. A loop behind on a
    ring prefetches the slots it will read next, whose lines the producer's CPU wrote."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1):
        raise TypeError(f"prefetch: expected a 1-d array, got {arr}")
    for x in (idx, write):
        if not isinstance(x, types.Integer):
            raise TypeError(f"prefetch: index and write flag must be integers, got {x}")
    sig = types.void(arr, idx, write)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, arr, args[0], args[1], idx)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        rw = builder.trunc(context.cast(builder, args[2], write, types.int64), i32)
        rw = builder.and_(rw, ir.Constant(i32, 1))
        # rw must be a constant for LLVM: select between the two forms
        with builder.if_else(builder.icmp_unsigned("!=", rw, ir.Constant(i32, 0))) as (w, r):
            with w:
                builder.call(fn, [ptr, ir.Constant(i32, 1), ir.Constant(i32, 3),
                                  ir.Constant(i32, 1)])
            with r:
                builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3),
                                  ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def monotonic_ns(typingctx):
    """``CLOCK_MONOTONIC`` now, in ``int64`` nanoseconds (``clock_gettime`` via the vDSO)."""
    sig = types.int64()

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ts_ty = ir.LiteralStructType([i64, i64])  # struct timespec {time_t; long;} on LP64
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32), ts_ty.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "clock_gettime")
        ts = cgutils.alloca_once(builder, ts_ty)
        builder.call(fn, [ir.Constant(ir.IntType(32), CLOCK_MONOTONIC), ts])
        sec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 0))
        nsec = builder.load(cgutils.gep_inbounds(builder, ts, 0, 1))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)

    return sig, codegen


@intrinsic
def sched_yield(typingctx):
    """``sched_yield(2)``; returns its ``int32`` result (0 on Linux)."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
        return builder.call(fn, [])

    return sig, codegen


@intrinsic
def sleep_us(typingctx, us):
    """``usleep(3)`` for ``us`` microseconds (an integer); returns its ``int32`` result. The
    thread's timer slack adds to the sleep (see :func:`set_timer_slack_ns`)."""
    sig = types.int32(us)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "usleep")
        return builder.call(fn, [builder.trunc(args[0], ir.IntType(32))])

    return sig, codegen


def set_timer_slack_ns(ns: int) -> bool:
    """Set the calling thread's timer slack (``prctl(PR_SET_TIMERSLACK)``; Linux's default of
    50 µs is added to every short sleep). Returns False where the call is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(29, ctypes.c_ulong(ns), 0, 0, 0) == 0  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        return False


@intrinsic
def copy_bytes(typingctx, dst, dst_off, src, src_off, n):
    """``dst[dst_off:dst_off+n] = src[src_off:src_off+n]`` as one ``llvm.memcpy``; unchecked."""
    for a in (dst, src):
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.dtype == types.uint8):
            raise TypeError(f"copy_bytes: expected 1-d uint8 arrays, got {a}")
    for x in (dst_off, src_off, n):
        if not isinstance(x, types.Integer):
            raise TypeError(f"copy_bytes: offsets and count must be integers, got {x}")
    sig = types.void(dst, dst_off, src, src_off, n)

    def codegen(context, builder, signature, args):
        d = _element_pointer(context, builder, dst, args[0], args[1], dst_off)
        s = _element_pointer(context, builder, src, args[2], args[3], src_off)
        count = context.cast(builder, args[4], n, types.intp)
        cgutils.raw_memcpy(builder, d, s, count, 1)
        return context.get_dummy_value()

    return sig, codegen


def monotonic_ns_py() -> int:
    """The same clock as :func:`monotonic_ns`, from Python (:func:`time.monotonic_ns`).

    >>> monotonic_ns_py() > 0
    True
    """
    return time.monotonic_ns()


@njit(**_jit.CACHED)
def _clock_loop(n: int) -> int:
    acc = 0
    for _ in range(n):
        acc += monotonic_ns() & 1
    return acc


def clock_cost_ns(n: int = 200_000) -> float:
    """Mean cost in ns of one :func:`monotonic_ns` call from compiled code, measured now.

    Parameters
    ----------
    n : int
        Number of calls timed.

    Returns
    -------
    float
        Nanoseconds per call (includes the loop overhead, a few cycles).

    Examples
    --------
    >>> 0.0 < clock_cost_ns(1000) < 100_000.0
    True
    """
    _clock_loop(10)
    t0 = time.perf_counter_ns()
    _clock_loop(n)
    return (time.perf_counter_ns() - t0) / n


@njit(**_jit.CACHED)
def spin_until_equal(words: np.ndarray, index: int, value: int, timeout_ns: int) -> int:
    """Spin until ``words[index] == value`` (acquire loads); the value seen, or -1 on timeout.

    The loop does 256 acquire loads (each followed by :func:`cpu_relax`) between clock reads,
    so a hoisted load would make it miss the store and time out: this is the primitive the
    cross-process visibility test exercises.

    Parameters
    ----------
    words : numpy.ndarray
        uint64 (or any 4/8-byte integer) 1-d array, typically a view of shared memory.
    index : int
        Element index polled.
    value : int
        Value awaited.
    timeout_ns : int
        Give up after this many nanoseconds of ``CLOCK_MONOTONIC``.

    Returns
    -------
    int
        ``value`` once seen, ``-1`` after the timeout.

    Examples
    --------
    >>> w = np.zeros(2, dtype=np.uint64); w[1] = 7
    >>> spin_until_equal(w, 1, 7, 1_000_000), spin_until_equal(w, 0, 7, 1_000_000)
    (7, -1)
    """
    deadline = monotonic_ns() + timeout_ns
    target = value
    while True:
        for _ in range(256):
            if np.int64(load_acquire(words, index)) == target:
                return target
            cpu_relax()
        if monotonic_ns() >= deadline:
            return -1
