"""libzmq called straight from compiled code: the few calls the ZeroMQ fast path needs.

The server's ROUTER socket is a pyzmq :class:`zmq.Socket`; its C handle is
``socket.underlying`` (a ``void *`` as an int). These Numba intrinsics call libzmq's
``zmq_recv``, ``zmq_send``, ``zmq_getsockopt`` and ``zmq_errno`` on that handle from nopython
code, with no Python object and no GIL, so a whole SYNDROME -> CORRECTION turn can run inside
one compiled call (:mod:`qecd.transport.server.fast_path`).

The handle is only meaningful to the libzmq instance that created it. pyzmq wheels bundle
their own libzmq (``pyzmq.libs/libzmq-*.so``) while Debian's ``libzmq5`` may be loaded too, so
the symbols are looked up through pyzmq's own backend extension (``dlsym`` on its handle
searches the libraries it was linked against, i.e. the libzmq that made the socket) and
:func:`available` checks that the resolved ``zmq_recv`` lies in a library whose
``zmq_version`` equals :func:`zmq.zmq_version_info`. The addresses are given to Numba's JIT
linker under ``qecd_zmq_*`` names (:func:`llvmlite.binding.add_symbol`), so cached kernels
resolve them in each new process.

``zmq_poll`` waits on an array of :data:`POLLITEM` records (sockets and plain file
descriptors) without the GIL.

``zmq_recv`` copies a message part into the caller's buffer and returns its full size (a
larger part is truncated: callers size the buffer above the socket's ``ZMQ_MAXMSGSIZE``).

Example
-------
>>> import numpy as np, zmq
>>> from numba import njit
>>> @njit
... def recv_one(sock, buf):
...     return zmq_recv(sock, buf.ctypes.data, buf.shape[0], DONTWAIT)
>>> ctx = zmq.Context()
>>> a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
>>> _ = a.bind("inproc://doc"); _ = b.connect("inproc://doc")
>>> a.send(b"hello"); _ = b.poll(1000)
>>> buf = np.zeros(16, np.uint8)
>>> available(), recv_one(b.underlying, buf), bytes(buf[:5])
(True, 5, b'hello')
>>> recv_one(b.underlying, buf), zmq_errno_py() == zmq.EAGAIN   # empty: -1, EAGAIN
(-1, True)
>>> a.close(); b.close(); ctx.term()
"""

from __future__ import annotations

import ctypes
import os
import weakref

import llvmlite.binding as llvm
import numpy as np
import zmq
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["DONTWAIT", "MSG_T_SIZE", "POLLIN", "POLLITEM", "RCVMORE", "SNDMORE", "available",
           "copy_bytes", "unavailable_reason", "zmq_errno", "zmq_errno_py", "zmq_msg_close",
           "zmq_msg_data", "zmq_msg_recv", "zmq_poll", "zmq_rcvmore", "zmq_recv", "zmq_send",
           "MessageBytes", "take_message"]

DONTWAIT = int(zmq.DONTWAIT)  #: ``ZMQ_DONTWAIT``
SNDMORE = int(zmq.SNDMORE)  #: ``ZMQ_SNDMORE``
RCVMORE = int(zmq.RCVMORE)  #: ``ZMQ_RCVMORE`` (socket option)
_NAMES = ("zmq_recv", "zmq_send", "zmq_getsockopt", "zmq_poll", "zmq_errno", "zmq_version",
          "zmq_msg_init", "zmq_msg_recv", "zmq_msg_data", "zmq_msg_close", "zmq_msg_move",
          "zmq_msg_size")
#: bytes of a ``zmq_msg_t`` (libzmq 4: ``unsigned char _[64]``, pointer-aligned)
MSG_T_SIZE = 64
POLLIN = int(zmq.POLLIN)  #: ``ZMQ_POLLIN``
#: ``zmq_pollitem_t`` on 64-bit Linux: ``void *socket; int fd; short events; short revents``
POLLITEM = np.dtype([("socket", "<u8"), ("fd", "<i4"), ("events", "<i2"),
                     ("revents", "<i2")])


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _resolve() -> tuple[dict[str, int], str | None]:
    """The libzmq symbol addresses pyzmq's backend uses, or a reason they cannot be used."""
    try:
        from zmq.backend.cython import _zmq as backend
    except ImportError as e:  # cffi backend (PyPy) or a broken install
        return {}, f"pyzmq's Cython backend is not importable ({e})"
    try:
        lib = ctypes.CDLL(backend.__file__)
        addrs = {n: ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in _NAMES}
    except (OSError, AttributeError) as e:
        return {}, f"libzmq symbols not found through pyzmq's backend ({e})"
    version = ctypes.CFUNCTYPE(None, *(ctypes.POINTER(ctypes.c_int),) * 3)(addrs["zmq_version"])
    got = [ctypes.c_int() for _ in range(3)]
    version(*(ctypes.byref(x) for x in got))
    if tuple(x.value for x in got) != tuple(zmq.zmq_version_info()):
        return {}, (f"the libzmq found through pyzmq's backend is version "
                    f"{tuple(x.value for x in got)}, pyzmq reports {zmq.zmq_version_info()}")
    return addrs, None


def library_path() -> str | None:
    """Path of the shared library whose ``zmq_recv`` the fast path calls (``dladdr``)."""
    if not _ADDRS:
        return None
    info = _DlInfo()
    libc = ctypes.CDLL(None)
    if not libc.dladdr(ctypes.c_void_p(_ADDRS["zmq_recv"]), ctypes.byref(info)):
        return None
    return os.path.realpath(info.dli_fname.decode())


_ADDRS, _REASON = _resolve()
for _name, _addr in _ADDRS.items():
    llvm.add_symbol(f"qecd_{_name}", _addr)


def available() -> bool:
    """True when compiled code can drive pyzmq's sockets (see :func:`unavailable_reason`)."""
    return _REASON is None


def unavailable_reason() -> str | None:
    """Why :func:`available` is False, or None."""
    return _REASON


def zmq_errno_py() -> int:
    """libzmq's ``zmq_errno()`` for the calling thread, from Python (tests, diagnostics)."""
    return ctypes.CFUNCTYPE(ctypes.c_int)(_ADDRS["zmq_errno"])()


_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.IntType(8).as_pointer()


def _fn(builder, name, ret, args):
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args),
                                          f"qecd_{name}")


def _ptr(context, builder, value, ty):
    """An integer argument (an address) as a ``void *``."""
    return builder.inttoptr(context.cast(builder, value, ty, types.uint64), _PTR)


def _check_ints(fname, *tys):
    for t in tys:
        if not isinstance(t, types.Integer):
            raise TypeError(f"{fname}: expected integer arguments, got {t}")


@intrinsic
def zmq_recv(typingctx, sock, buf_addr, size, flags):
    """``zmq_recv(sock, (void *) buf_addr, size, flags)``: the part's size, or -1."""
    _check_ints("zmq_recv", sock, buf_addr, size, flags)
    sig = types.int32(sock, buf_addr, size, flags)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_recv", _I32, [_PTR, _PTR, _I64, _I32])
        s = _ptr(context, builder, args[0], sock)
        b = _ptr(context, builder, args[1], buf_addr)
        n = context.cast(builder, args[2], size, types.int64)
        f = context.cast(builder, args[3], flags, types.int32)
        return builder.call(fn, [s, b, n, f])

    return sig, codegen


@intrinsic
def zmq_send(typingctx, sock, buf_addr, size, flags):
    """``zmq_send(sock, (const void *) buf_addr, size, flags)``: bytes queued, or -1."""
    _check_ints("zmq_send", sock, buf_addr, size, flags)
    sig = types.int32(sock, buf_addr, size, flags)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_send", _I32, [_PTR, _PTR, _I64, _I32])
        s = _ptr(context, builder, args[0], sock)
        b = _ptr(context, builder, args[1], buf_addr)
        n = context.cast(builder, args[2], size, types.int64)
        f = context.cast(builder, args[3], flags, types.int32)
        return builder.call(fn, [s, b, n, f])

    return sig, codegen


@intrinsic
def zmq_rcvmore(typingctx, sock):
    """``ZMQ_RCVMORE`` of ``sock`` (1 when the part just received has a next part), or -1."""
    _check_ints("zmq_rcvmore", sock)
    sig = types.int32(sock)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_getsockopt", _I32, [_PTR, _I32, _PTR, _I64.as_pointer()])
        s = _ptr(context, builder, args[0], sock)
        val = cgutils.alloca_once(builder, _I32)
        size = cgutils.alloca_once(builder, _I64)
        builder.store(ir.Constant(_I32, 0), val)
        builder.store(ir.Constant(_I64, 4), size)
        rc = builder.call(fn, [s, ir.Constant(_I32, RCVMORE), builder.bitcast(val, _PTR), size])
        ok = builder.icmp_signed("==", rc, ir.Constant(_I32, 0))
        return builder.select(ok, builder.load(val), ir.Constant(_I32, -1))

    return sig, codegen


@intrinsic
def zmq_errno(typingctx):
    """libzmq's ``zmq_errno()`` (the calling thread's errno as libzmq sees it)."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        return builder.call(_fn(builder, "zmq_errno", _I32, []), [])

    return sig, codegen


@intrinsic
def zmq_poll(typingctx, items_addr, nitems, timeout_ms):
    """``zmq_poll((zmq_pollitem_t *) items_addr, nitems, timeout_ms)``: the number of items
    with events, 0 on timeout, -1 on error (``EINTR`` when a signal arrived)."""
    _check_ints("zmq_poll", items_addr, nitems, timeout_ms)
    sig = types.int32(items_addr, nitems, timeout_ms)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_poll", _I32, [_PTR, _I32, _I64])
        p = _ptr(context, builder, args[0], items_addr)
        n = context.cast(builder, args[1], nitems, types.int32)
        t = context.cast(builder, args[2], timeout_ms, types.int64)
        return builder.call(fn, [p, n, t])

    return sig, codegen


@intrinsic
def zmq_msg_recv(typingctx, msg_addr, sock, flags):
    """``zmq_msg_init(msg); zmq_msg_recv(msg, sock, flags)`` with ``msg`` the ``zmq_msg_t``
    at ``msg_addr`` (MSG_T_SIZE bytes): the part's size, or -1 (the message is then empty;
    close it all the same). The part's bytes stay where libzmq put them (no copy)."""
    _check_ints("zmq_msg_recv", msg_addr, sock, flags)
    sig = types.int32(msg_addr, sock, flags)

    def codegen(context, builder, signature, args):
        init = _fn(builder, "zmq_msg_init", _I32, [_PTR])
        recv = _fn(builder, "zmq_msg_recv", _I32, [_PTR, _PTR, _I32])
        m = _ptr(context, builder, args[0], msg_addr)
        s = _ptr(context, builder, args[1], sock)
        f = context.cast(builder, args[2], flags, types.int32)
        builder.call(init, [m])
        return builder.call(recv, [m, s, f])

    return sig, codegen


@intrinsic
def zmq_msg_data(typingctx, msg_addr):
    """``zmq_msg_data(msg)`` as an address (uint64)."""
    _check_ints("zmq_msg_data", msg_addr)
    sig = types.uint64(msg_addr)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_msg_data", _PTR, [_PTR])
        m = _ptr(context, builder, args[0], msg_addr)
        return builder.ptrtoint(builder.call(fn, [m]), _I64)

    return sig, codegen


@intrinsic
def zmq_msg_close(typingctx, msg_addr):
    """``zmq_msg_close(msg)``: 0, or -1."""
    _check_ints("zmq_msg_close", msg_addr)
    sig = types.int32(msg_addr)

    def codegen(context, builder, signature, args):
        fn = _fn(builder, "zmq_msg_close", _I32, [_PTR])
        m = _ptr(context, builder, args[0], msg_addr)
        return builder.call(fn, [m])

    return sig, codegen


@intrinsic
def copy_bytes(typingctx, dst_addr, src_addr, n):
    """``memcpy((void *) dst_addr, (const void *) src_addr, n)``."""
    _check_ints("copy_bytes", dst_addr, src_addr, n)
    sig = types.none(dst_addr, src_addr, n)

    def codegen(context, builder, signature, args):
        d = _ptr(context, builder, args[0], dst_addr)
        s = _ptr(context, builder, args[1], src_addr)
        k = context.cast(builder, args[2], n, types.int64)
        cgutils.raw_memcpy(builder, d, s, k, 1)
        return context.get_dummy_value()

    return sig, codegen


class MessageBytes:
    """Owner of a libzmq message moved out of a receive slot (:func:`take_message`):
    ``zmq_msg_close`` once nothing refers to it. NumPy reads its bytes through
    ``__array_interface__`` (read-only), so the array's ``base`` is this object and nothing
    refers back to it: no cycle, and no ctypes array type per message size (a type is
    cyclic garbage, and the server's collector freezes what survives a young collection, so
    either would be kept until the next full collection)."""

    __slots__ = ("__weakref__", "_msg", "__array_interface__")

    def __init__(self, slot_addr: int, size: int) -> None:
        self._msg = np.empty(MSG_T_SIZE // 8, np.int64)  # pointer-aligned zmq_msg_t
        dst = ctypes.c_void_p(self._msg.ctypes.data)
        if _c("zmq_msg_init", ctypes.c_int, ctypes.c_void_p)(dst) != 0 or _c(
                "zmq_msg_move", ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
                dst, ctypes.c_void_p(slot_addr)) != 0:
            raise OSError(zmq_errno_py(), "zmq_msg_move failed")
        fin = weakref.finalize(self, _close_msg, self._msg)
        fin.atexit = False  # a view may outlive the interpreter's last collection
        got = _c("zmq_msg_size", ctypes.c_size_t, ctypes.c_void_p)(dst)
        if got != size:
            raise ValueError(f"take_message: the slot holds {got} bytes, expected {size}")
        data = _c("zmq_msg_data", ctypes.c_void_p, ctypes.c_void_p)(dst)
        self.__array_interface__ = {"data": (data, True), "shape": (size,),
                                    "typestr": "|u1", "version": 3}


def _close_msg(msg: np.ndarray) -> None:
    _c("zmq_msg_close", ctypes.c_int, ctypes.c_void_p)(ctypes.c_void_p(msg.ctypes.data))


def take_message(slot_addr: int, size: int) -> np.ndarray:
    """The message in the ``zmq_msg_t`` at ``slot_addr`` (left empty, ready for the next
    receive), as a read-only uint8 array of its ``size`` bytes, used in place: the message
    is closed once no view of the array is left."""
    return np.asarray(MessageBytes(slot_addr, size))  # its base keeps the message


_CFUNCS: dict = {}


def _c(name: str, ret, *args):
    f = _CFUNCS.get(name)
    if f is None:
        f = _CFUNCS[name] = ctypes.CFUNCTYPE(ret, *args)(_ADDRS[name])
    return f
