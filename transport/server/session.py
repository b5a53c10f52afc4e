"""Stream sessions: a HELLO validated into a decoder, rounds in, corrections out (no sockets).

A :class:`DecoderPool` turns a HELLO into a :class:`StreamPlan`: the experiment (a spec
string, or a client's DEM text with detector coordinates), its round layout and a built
:class:`~qecd.decoder.window.StreamDecoder`. Plans are keyed by :class:`PlanKey` (experiment,
backend, window, commit) and built once; every stream gets a cheap
:meth:`~qecd.decoder.window.StreamDecoder.fork` of its plan. Building can take seconds (the
server does it on a worker thread); looking a key up and forking take microseconds.

A :class:`StreamSession` is one open stream: its owner, its round bookkeeping (the next
expected round, the first round not yet covered by a correction), and the round-by-round
path ``begin`` (validate and unpack one SYNDROME packet, all or nothing) then ``push`` for
each of its rounds (feed the decoder; a :class:`~qecd.transport.wire.Correction` with
absolute round numbers when a window commits). Rounds are a per-stream u64 counter across
shots: round ``r`` is slice ``r % R`` of shot ``r // R``.

Every rejection raises :class:`~qecd.errors.ProtocolError` with the code the server sends
back, and leaves the session unchanged.

Example
-------
>>> import numpy as np
>>> from qecd.transport.wire import Hello, SyndromeLayout, encode_syndrome, parse_packet
>>> pool = DecoderPool()
>>> plan = pool.get_or_build(Hello(spec="repetition:d=3,r=2,p=0.01"))
>>> s = StreamSession(1, plan, owner=b"peer", route=b"peer")
>>> s.accept().slice_sizes
(2, 2, 2)
>>> lay = SyndromeLayout(s.accept().slice_sizes)
>>> for r in range(3):  # one shot: three rounds; the last one triggers the decode
...     frame = encode_syndrome(np.zeros(2, np.uint8), lay, stream_id=1, first_round=r)
...     n = s.begin(*parse_packet(frame))
...     c = s.push(0)
>>> c.first_round, c.last_round, c.shot_end, s.next_round, s.committed
(0, 2, True, 3, 3)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import stim

from qecd import __version__
from qecd.codes import RoundLayout, build_experiment, parse_spec
from qecd.codes.measurements import MeasurementLayout, convert_round
from qecd.decoder.fault_table import FaultTable
from qecd.decoder.registry import backend_class, parse_decoder_name
from qecd.decoder.window import StreamDecoder
from qecd.errors import DecoderError, ProtocolError, QecdError
from qecd.transport.engine import (
    STEP_CORRECTION,
    STEP_NO_SOLUTION,
    STEP_WINDOW_DUE,
    engine_call,
    engine_no_solution_ctx,
    engine_resume_call,
    payload_ok_ctx,
    warm_up,
)
from qecd.transport.wire import (
    DEFAULT_MAX_FRAME,
    MAX_ROUNDS_PER_SHOT,
    Accept,
    Correction,
    ErrorCode,
    Header,
    Hello,
    SyndromeLayout,
    check_round,
    committed_ranges,
    correction_frame_len,
    pack_correction_into,
)

__all__ = ["SessionLimits", "PlanKey", "StreamPlan", "DecoderPool", "StreamSession",
           "LimitError", "plan_key", "build_plan", "plan_nbytes", "release_memory",
           "return_large_blocks"]

#: exceptions a library may raise on a client's spec, DEM or settings: answered BAD_HELLO
_BAD_INPUT = (QecdError, ValueError, IndexError, KeyError, TypeError, OverflowError)


@dataclass(frozen=True)
class SessionLimits:
    """What the server allows a stream (announced in ACCEPT).

    Attributes
    ----------
    max_detectors : int
        Largest detectors per shot a HELLO's experiment may have (BAD_HELLO above).
    max_errors : int
        Largest number of ``error`` mechanisms a HELLO's DEM may have once its ``repeat``
        blocks are multiplied out (stim counts them without expanding), checked right after
        parsing and before anything walks the DEM: a 76-byte ``repeat 1000000000 {...}``
        is refused at once instead of holding the build for seconds.
    max_backlog : int
        Rounds a stream may have read but not processed; a packet taking it above is
        refused with SERVER_BUSY (so is any packet carrying more rounds than this).
    heartbeat_ms, timeout_ms : int
        Client heartbeat period; silence after which a stream is freed.
    max_frame : int
        Largest packet accepted (OVERSIZE above).
    max_gil_graph_faults : int
        Largest window graph (faults) of a backend the server rebuilds holding the GIL
        (``Decoder.builds_holding_gil``: PyMatching's search graph, built in one C++ call,
        took 40-73 ms for 33,600 edges here, and every live stream waits that long), checked
        on the build worker once the plan is built (BAD_HELLO above, reason
        ``max_gil_graph_faults``; a window, or ``uf``, decodes such experiments). 0: no limit.
    server : str
        Server software and version, announced in ACCEPT.
    """

    max_detectors: int = 1 << 18
    max_errors: int = 1 << 21
    max_backlog: int = 1024
    heartbeat_ms: int = 1000
    timeout_ms: int = 10_000
    max_frame: int = DEFAULT_MAX_FRAME
    max_gil_graph_faults: int = 16_384
    server: str = f"qecd {__version__}"


@dataclass(frozen=True)
class PlanKey:
    """What makes two streams share one plan.

    Attributes
    ----------
    source : str
        ``"spec"`` or ``"dem"``.
    experiment : str
        The canonical spec string, or ``sha256(dem text):time_coord``.
    backend : str
        Decoder backend (``"pymatching"``, ``"uf"``, ``"bp-cluster"``).
    window, commit : int or None
        Requested sliding window (None: whole-shot decoding); commit filled with the server
        default (``max(1, window // 2)``) when the HELLO left it nil.
    """

    source: str
    experiment: str
    backend: str
    window: int | None
    commit: int | None


def _bad_hello(reason: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_HELLO, reason)


class LimitError(ProtocolError):
    """BAD_HELLO because the experiment exceeds one of the server's limits (a hostile or
    oversized HELLO, counted as refused under ``limit`` in ``qecd_hellos_refused_total``).

    >>> e = LimitError("max_errors", "HELLO key 'dem': expected at most 2 error mechanisms")
    >>> e.code, e.limit
    (17, 'max_errors')
    """

    def __init__(self, limit: str, reason: str) -> None:
        super().__init__(ErrorCode.BAD_HELLO, reason)
        self.limit = limit


def plan_key(hello: Hello, limits: SessionLimits | None = None) -> PlanKey:
    """The pool key of a syntactically valid HELLO (fast: no experiment is built).

    Checks what can be checked cheaply: the decoder name (a backend, optionally with
    ``-w<W>c<C>`` when the HELLO's ``window`` is nil), the spec grammar, and an upper bound
    on the detectors of specs that have ``d`` and ``r`` fields (``d * d * (r + 1)``, above
    every such family's count) against ``limits.max_detectors``.

    Raises
    ------
    ProtocolError
        BAD_HELLO naming the field.

    Examples
    --------
    >>> plan_key(Hello(spec="surface:d=3,p=0.001", decoder="pymatching-w6c3"))
    PlanKey(source='spec', experiment='surface:d=3,r=3,p=0.001,noise=uniform,basis=z', \
backend='pymatching', window=6, commit=3)
    >>> plan_key(Hello(spec="surface:d=3", decoder="magic"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    qecd.errors.ProtocolError: [17] HELLO key 'decoder': decoder name: expected ...
    """
    limits = limits or SessionLimits()
    try:
        name = parse_decoder_name(hello.decoder)
    except DecoderError as e:
        raise _bad_hello(f"HELLO key 'decoder': {e}") from None
    window, commit = hello.window, hello.commit
    if name.window is not None:
        if window is not None:
            raise _bad_hello(f"HELLO key 'window': expected nil when 'decoder' names a window "
                             f"({hello.decoder!r}), got {window}")
        window, commit = name.window, name.commit
    if window is not None and commit is None:
        commit = max(1, window // 2)
    if hello.input == "measurements" and hello.transport != "zmq":
        raise _bad_hello("HELLO key 'input': expected 'detectors' with transport "
                         f"{hello.transport!r} (the ring loops take detection events), got "
                         "'measurements'")
    if hello.spec is not None:
        try:
            spec = parse_spec(hello.spec)
        except QecdError as e:
            raise _bad_hello(f"HELLO key 'spec': {e}") from None
        fields = spec.as_dict()
        d, r = fields.get("d"), fields.get("r")
        if isinstance(d, int) and isinstance(r, int) and d * d * (r + 1) > limits.max_detectors:
            raise LimitError("max_detectors", f"HELLO key 'spec': expected at most "
                             f"{limits.max_detectors} detectors per shot, got a code with "
                             f"d={d}, r={r}")
        return PlanKey("spec", str(spec), name.backend, window, commit)
    if hello.circuit is not None:
        digest = hashlib.sha256(hello.circuit.encode("utf-8", "surrogatepass")).hexdigest()
        return PlanKey("circuit", f"{digest}:{hello.time_coord}", name.backend, window, commit)
    digest = hashlib.sha256(hello.dem.encode("utf-8", "surrogatepass")).hexdigest()
    return PlanKey("dem", f"{digest}:{hello.time_coord}", name.backend, window, commit)


class StreamPlan:
    """Everything the streams of one :class:`PlanKey` share, built once.

    Attributes
    ----------
    key : PlanKey
    decoder : StreamDecoder
        The prototype; streams use :meth:`fork`.
    slice_sizes : tuple of int
        Detectors per round of a shot (wire order: increasing DEM detector id).
    num_observables : int
    window, commit : int or None
        Settings in force: None/None for whole-shot decoding (also when the requested
        window covers the whole shot).
    num_faults : int
        Faults in the decoder's table (bounds the fault ids of one CORRECTION).
    engine : CompiledStream or None
        The plan compiled by its backend (``compiles_streams``), shared by this plan's
        ZeroMQ streams (each has its own state; they are all decoded on the server's loop
        thread), which then decode through :mod:`qecd.transport.engine` (a backend called
        from Python only for the window decode, ``decodes_on_host``, is called from
        :meth:`StreamSession.engine_step` on the Python path and between the fast path's
        ``drain`` and ``resume`` kernels); None when the backend decodes from Python.
        Built here, on the build worker, never on the loop.
    dem : stim.DetectorErrorModel or None
        The stream's DEM, for ACCEPTs that describe the stream (HELLO ``describe``).
    """

    def __init__(self, key: PlanKey, decoder: StreamDecoder,
                 dem: stim.DetectorErrorModel | None = None,
                 circuit: stim.Circuit | None = None) -> None:
        self.key = key
        self.decoder = decoder
        self.engine = decoder.compile()
        if self.engine is not None:
            warm_up(self.engine, np.zeros(correction_frame_len(
                decoder.num_observables, self.engine.max_faults), dtype=np.uint8))
        self.dem = dem
        self.circuit = circuit
        self._description: tuple | None = None
        self._measurements: MeasurementLayout | ProtocolError | None = None
        self._lock = threading.Lock()
        self.slice_sizes = tuple(int(n) for n in decoder.layout.round_sizes)
        self.syndrome_layout = SyndromeLayout(self.slice_sizes)
        self.num_observables = int(decoder.num_observables)
        whole = key.window is None or decoder.window >= decoder.num_rounds
        self.window = None if whole else decoder.window
        self.commit = None if whole else decoder.commit
        self.num_faults = int(decoder.faults.num_faults)
        #: bytes this plan holds, as the build worker measured it (its pickled size: arrays,
        #: texts and graph edge lists); what the pool's byte budget counts
        self.nbytes = 0

    def __getstate__(self) -> dict:
        """What the build worker ships to the server: the plan without its stim objects.

        The ACCEPT description and the measurement tables (when the experiment has a
        circuit) are computed first, so the server never parses the DEM or walks the
        circuit itself; the lock is recreated on arrival."""
        self.description()
        if self.circuit is not None:
            try:
                self.measurement_layout()
            except ProtocolError:
                pass  # stored: a HELLO asking for measurements gets this BAD_HELLO
        state = dict(self.__dict__)
        del state["_lock"]
        state["dem"] = state["circuit"] = None
        dets, ranges, text = state["_description"]
        # the DEM text (megabytes) travels as an array, out of band (pickle protocol 5): a
        # str is unpickled by one C call holding the server's GIL, which stalled every live
        # stream for the copy (5-8 ms HEARTBEATs when a 5-8 MB DEM's plan arrived)
        state["_description"] = (dets, ranges, np.frombuffer(text.encode(), np.uint8))
        m = state["_measurements"]
        if isinstance(m, ProtocolError):  # exceptions with two arguments do not pickle
            state["_measurements"] = ("error", m.code, m.reason)
        return state

    def __setstate__(self, state: dict) -> None:
        m = state["_measurements"]
        if isinstance(m, tuple):
            state["_measurements"] = ProtocolError(m[1], m[2])
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if self.engine is not None:  # kernels are compiled in this process already
            warm_up(self.engine, np.zeros(correction_frame_len(
                self.num_observables, self.engine.max_faults), dtype=np.uint8))

    @property
    def decoder_name(self) -> str:
        """The backend name (the window is in ``window``/``commit``)."""
        return self.key.backend

    def fork(self) -> StreamDecoder:
        """A fresh stream decoder sharing this plan's built windows."""
        return self.decoder.fork()

    def measurement_layout(self) -> MeasurementLayout:
        """The XOR tables of measurement input (HELLO ``input="measurements"``), compiled
        once per plan from its circuit. Raises ProtocolError(BAD_HELLO) when the experiment
        has no circuit or its detectors have no round order."""
        with self._lock:
            if self._measurements is None:
                if self.circuit is None:
                    self._measurements = _bad_hello(
                        "HELLO key 'input': expected 'detectors' for an experiment without a "
                        f"circuit ({self.key.source} {self.key.experiment[:60]!r}), got "
                        "'measurements'")
                else:
                    try:
                        self._measurements = MeasurementLayout.from_circuit(
                            self.circuit, self.decoder.layout)
                    except _BAD_INPUT as e:
                        self._measurements = _bad_hello(f"HELLO key 'input': {e}")
            m = self._measurements
        if isinstance(m, ProtocolError):
            raise m
        return m

    def description(self) -> dict:
        """The ACCEPT keys that describe the stream (docs/protocol.md §6.2): each round's DEM
        detector ids in bit order, the shot's committed ranges (§7.1) and the DEM text.
        Built once per plan."""
        if self._description is None:
            dets = tuple(tuple(int(d) for d in ids) for ids in self.decoder.layout.detectors)
            ranges = tuple(committed_ranges(len(self.slice_sizes), self.window, self.commit))
            self._description = (dets, ranges, str(self.dem) if self.dem is not None else "")
        dets, ranges, text = self._description
        if isinstance(text, np.ndarray):  # as it arrived from the build worker
            text = text.tobytes().decode()
        return {"slice_detectors": dets, "commit_ranges": ranges, "dem": text}


def _check_gil_graphs(decoder: StreamDecoder, limits: SessionLimits, what: str) -> None:
    """LimitError if a window graph of a backend that a receiving process rebuilds holding
    the GIL has more than ``limits.max_gil_graph_faults`` faults."""
    cap = limits.max_gil_graph_faults
    if not cap or not decoder.backend_class.builds_holding_gil:
        return
    largest = decoder.largest_window_faults
    if largest > cap:
        raise _gil_graph_error(decoder.backend_class.name, largest, cap, what)


def _check_whole_shot_graph(dem: stim.DetectorErrorModel, key: PlanKey,
                            limits: SessionLimits, what: str) -> None:
    """:func:`_check_gil_graphs` before any backend is built, for a whole-shot plan (no
    window): its one window graph is the DEM's fault table, so a plan that would be refused
    is refused after a parse, not after building the backend's graph (seconds of a worker's
    CPU for a 5-8 MB DEM, refused anyway)."""
    cap = limits.max_gil_graph_faults
    if not cap or key.window is not None:
        return
    cls = backend_class(key.backend)
    if not cls.builds_holding_gil:
        return
    n = FaultTable.from_dem(dem, graph=cls.graph_like).num_faults
    if n > cap:
        raise _gil_graph_error(cls.name, n, cap, what)


def _gil_graph_error(name: str, largest: int, cap: int, what: str) -> LimitError:
    return LimitError("max_gil_graph_faults", (
        f"HELLO key {what!r}: {name} rebuilds its graph in calls that hold the server's "
        f"interpreter lock, stalling every live stream for a time that grows with its "
        f"size: expected a window graph of at most {cap} faults "
        f"(max_gil_graph_faults), got {largest}; decode it with a window "
        f"(decoder '{name}-w<W>c<C>', or the HELLO's window) or with uf"))


def build_plan(key: PlanKey, hello: Hello, limits: SessionLimits | None = None) -> StreamPlan:
    """Build the experiment and decoder a HELLO asks for (slow: seconds for large codes).

    Raises
    ------
    ProtocolError
        BAD_HELLO when the spec or DEM cannot be used (DEM syntax, missing coordinates, too
        many detectors, no detectors, a DEM the backend refuses).

    Examples
    --------
    >>> h = Hello(dem="error(0.1) D0 L0\\nerror(0.1) D0 D1\\nerror(0.1) D1\\n"
    ...               "detector(0, 0) D0\\ndetector(1, 0) D1\\n")
    >>> build_plan(plan_key(h), h).slice_sizes
    (2,)
    >>> h = Hello(dem="error(0.1) D0\\n")
    >>> build_plan(plan_key(h), h)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    qecd.errors.ProtocolError: [17] HELLO key 'dem': 1 of 1 detectors have no coordinates ...
    """
    limits = limits or SessionLimits()
    what = key.source
    try:
        circuit = None
        if key.source == "spec":
            exp = build_experiment(key.experiment)
            dem, layout, circuit = exp.dem, exp.layout, exp.circuit
        elif key.source == "circuit":
            circuit = stim.Circuit(hello.circuit)
            if circuit.num_detectors > limits.max_detectors:
                raise LimitError("max_detectors", f"HELLO key 'circuit': expected at most "
                                 f"{limits.max_detectors} detectors, got "
                                 f"{circuit.num_detectors}")
            try:
                dem = circuit.detector_error_model(decompose_errors=True)
            except ValueError:  # not decomposable into edges: hypergraph backends take it
                dem = circuit.detector_error_model()
            layout = RoundLayout.from_dem(dem, time_coord=hello.time_coord)
        else:
            dem = stim.DetectorErrorModel(hello.dem)
            if dem.num_detectors > limits.max_detectors:
                raise LimitError("max_detectors", f"HELLO key 'dem': expected at most "
                                 f"{limits.max_detectors} detectors, got {dem.num_detectors}")
            if dem.num_errors > limits.max_errors:
                raise LimitError("max_errors", f"HELLO key 'dem': expected at most "
                                 f"{limits.max_errors} error mechanisms (repeat blocks "
                                 f"multiplied out), got {dem.num_errors}")
            layout = RoundLayout.from_dem(dem, time_coord=hello.time_coord)
        if dem.num_detectors == 0:
            raise _bad_hello(f"HELLO key {what!r}: expected an experiment with detectors, got "
                             "none")
        if dem.num_detectors > limits.max_detectors:
            raise LimitError("max_detectors", f"HELLO key {what!r}: expected at most "
                             f"{limits.max_detectors} detectors, got {dem.num_detectors}")
        if layout.num_rounds > MAX_ROUNDS_PER_SHOT:
            raise LimitError("max_rounds", f"HELLO key {what!r}: expected at most "
                             f"{MAX_ROUNDS_PER_SHOT} rounds per shot, got {layout.num_rounds}")
        _check_whole_shot_graph(dem, key, limits, what)
        decoder = StreamDecoder(dem, layout, key.backend, window=key.window, commit=key.commit)
        _check_gil_graphs(decoder, limits, what)
    except ProtocolError:
        raise
    except _BAD_INPUT as e:
        raise _bad_hello(f"HELLO key {what!r}: {e}") from None
    plan = StreamPlan(key, decoder, dem, circuit)
    if hello.input == "measurements":
        plan.measurement_layout()  # compiled here, on the build worker (BAD_HELLO if it fails)
    return plan


class DecoderPool:
    """Plans by key, built once, kept for reuse within a byte budget (least recently used
    dropped first).

    Thread-safe: the server's build thread adds plans and its loop thread looks them up.
    Open streams keep their plan alive even after the pool drops it; a plan's memory returns
    to the operating system once the pool and its last stream let go of it (the pool asks
    glibc to trim its heap after evicting, see :func:`release_memory`).

    Parameters
    ----------
    limits : SessionLimits, optional
    max_bytes : int
        Bytes of plans kept (each plan's :attr:`StreamPlan.nbytes`); the newest plan is kept
        even when it alone is larger.

    Attributes
    ----------
    nbytes : int
        Bytes of the plans kept now.
    evicted : int
        Plans dropped to stay within ``max_bytes`` (or unused for ``idle_s``,
        :meth:`expire`) so far.

    Examples
    --------
    >>> pool = DecoderPool(max_bytes=1)
    >>> a = pool.get_or_build(Hello(spec="repetition:d=3,r=2,p=0.01"))
    >>> b = pool.get_or_build(Hello(spec="repetition:d=5,r=2,p=0.01"))
    >>> len(pool), pool.evicted, pool.nbytes == b.nbytes > 0
    (1, 1, True)
    """

    def __init__(self, limits: SessionLimits | None = None,
                 max_bytes: int = 256 << 20) -> None:
        self.limits = limits or SessionLimits()
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.evicted = 0
        self._plans: OrderedDict[PlanKey, StreamPlan] = OrderedDict()
        self._used: dict[PlanKey, float] = {}  # key -> monotonic time of its last use
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, key: PlanKey) -> StreamPlan | None:
        """The cached plan for ``key``, or None (fast)."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                self._used[key] = time.monotonic()
            return plan

    def put(self, plan: StreamPlan) -> int:
        """Keep ``plan`` (under ``plan.key``), dropping the least recently used plans until
        the pool is within ``max_bytes`` again; returns how many were dropped."""
        with self._lock:
            old = self._plans.pop(plan.key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._plans[plan.key] = plan
            self._used[plan.key] = time.monotonic()
            self.nbytes += plan.nbytes
            dropped = 0
            while self.nbytes > self.max_bytes and len(self._plans) > 1:
                k, gone = self._plans.popitem(last=False)
                self._used.pop(k, None)
                self.nbytes -= gone.nbytes
                dropped += 1
            self.evicted += dropped
        if dropped:
            del gone, old
            release_memory()
        return dropped

    def expire(self, idle_s: float, in_use: Iterable[PlanKey] = ()) -> int:
        """Drop the plans neither looked up nor used by a stream (``in_use``: the keys of
        open streams' plans) for ``idle_s`` seconds; returns how many. A hostile burst of
        large HELLOs filled the cache with plans nobody asked for again, and the server's
        memory stayed up by their size (a fuzz: +57 MB); now it comes back once they idle
        out. The caller returns the freed heap to the system (:func:`release_memory`)."""
        now = time.monotonic()
        with self._lock:
            for k in in_use:
                if k in self._used:
                    self._used[k] = now
            old = [k for k, t in self._used.items() if now - t >= idle_s]
            for k in old:
                del self._used[k]
                self.nbytes -= self._plans.pop(k).nbytes
            self.evicted += len(old)
        return len(old)

    def build(self, key: PlanKey, hello: Hello) -> StreamPlan:
        """Build the plan in this process (slow; see :func:`build_plan`) and keep it. The
        server builds in its build worker process instead
        (:mod:`~qecd.transport.server.build_worker`)."""
        plan = build_plan(key, hello, self.limits)
        plan.nbytes = plan_nbytes(plan)
        self.put(plan)
        return plan

    def get_or_build(self, hello: Hello) -> StreamPlan:
        """Look up, else build (blocking): for tests and single-threaded callers."""
        key = plan_key(hello, self.limits)
        return self.get(key) or self.build(key, hello)


def plan_nbytes(plan: StreamPlan) -> int:
    """The bytes a plan is counted for in a :class:`DecoderPool`, measured as the build
    worker does: its pickled size (numpy arrays, texts, graph edge lists). The native
    objects rebuilt from them on arrival add about 1-2x that again (measured unpickling
    5-8 MB DEMs' plans in a warm process: 12-15 MB pickled, 20-30 MB resident).

    >>> plan_nbytes(DecoderPool().get_or_build(Hello(spec="repetition:d=3,r=2,p=0.01"))) > 0
    True
    """
    import pickle

    return len(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL))


def release_memory() -> None:
    """Hand freed heap memory back to the operating system (glibc ``malloc_trim``; a no-op
    elsewhere). Large numpy arrays are returned by ``free`` already; the native graphs of a
    dropped plan (PyMatching's, many small blocks) stay in the heap until trimmed."""
    import ctypes
    import ctypes.util

    try:  # ctypes releases the GIL for the call
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


#: glibc ``mallopt`` parameter: allocations above it are mmapped (and unmapped when freed)
_M_MMAP_THRESHOLD = -3


def return_large_blocks(threshold: int = 256 << 10) -> bool:
    """Make glibc serve every allocation above ``threshold`` bytes with its own mapping, so
    freeing it returns the memory at once (a plan's arrays, a large HELLO's bytes). By
    default glibc raises that threshold each time such a block is freed (up to 32 MB), after
    which a dropped plan's arrays stay in the heap as holes ``malloc_trim`` cannot always
    return: a server that built 5-8 MB DEMs kept ~100 MB more than its cache held. A fixed
    threshold turns that off. False where there is no glibc.

    >>> isinstance(return_large_blocks(), bool)
    True
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False


class StreamSession:
    """One open stream: owner, decoder fork, round bookkeeping, reply buffer.

    Parameters
    ----------
    stream_id : int
        Non-zero u32 the server assigned.
    plan : StreamPlan
    owner : bytes or str
        Who may use the stream: the ZeroMQ routing id, or the CURVE ``User-Id``.
    route : bytes
        Where replies go (the routing id of the owner's latest packet).
    want_faults : bool
        Put fault ids in CORRECTIONs.
    limits : SessionLimits, optional
    now_ns : int
        Monotonic time of the last packet from the owner (liveness).

    Attributes
    ----------
    next_round : int
        The round the stream expects next (absolute, across shots).
    committed : int
        First round not covered by a correction; rounds ``committed .. next_round-1`` were
        received and are waiting for a window to commit.
    queued : int
        Rounds received for this stream and not yet processed (backlog): at most the rest of
        the packet being handled, since the server handles each packet as it reads it.
    lag_ns : int
        Input lag estimate of the latest packet: its one-way delay (server receipt minus the
        client's ``timestamp_ns``, clock offset included) minus the smallest such delay seen
        on this stream, i.e. how much longer than the fastest packet it spent queued on the
        way (in the client, ZeroMQ, TCP). Grows when a client outruns the server.
    """

    def __init__(self, stream_id: int, plan: StreamPlan, *, owner: bytes | str, route: bytes,
                 want_faults: bool = False, limits: SessionLimits | None = None,
                 now_ns: int = 0, describe: bool = False,
                 measurements: MeasurementLayout | None = None) -> None:
        self.stream_id = stream_id
        self.plan = plan
        self.owner = owner
        self.route = route
        self.want_faults = want_faults
        self.describe = describe
        #: measurement input: the tables, the shot's measurements, the round's detectors
        self.measurements = measurements
        self.limits = limits or SessionLimits()
        self.last_seen_ns = now_ns
        self.decoder = plan.fork()
        self.layout = plan.syndrome_layout
        self._in_sizes = plan.slice_sizes  # bits per round in a SYNDROME
        if measurements is not None:
            self._in_sizes = measurements.slice_sizes
            self.layout = SyndromeLayout(self._in_sizes, "measurements")
            self._shot_meas = np.zeros(max(measurements.num_measurements, 1), np.uint8)
            self._dets = np.zeros(max(max(plan.slice_sizes), 1), np.uint8)
        self.rounds_per_shot = self.layout.rounds_per_shot
        self.next_round = 0
        self.committed = 0
        self.queued = 0
        self.lag_ns = 0
        self._min_delay = 1 << 63
        self.rounds_received = 0
        self.corrections_sent = 0
        self.errors_sent = 0
        self.pq = None  #: opened with the post-quantum handshake: its ServerPqState (pqc.py)
        self.dropped: dict[str, int] = {}
        biggest = max(self._in_sizes)
        self._bits = np.zeros(max(biggest, 1), dtype=np.uint8)
        self._views = tuple(self._bits[:n] for n in self._in_sizes)  # count-1 packets
        self._multi: list[np.ndarray] = []  # per-round views of a multi-round packet
        self._pkt_first = 0
        self._pkt_count = 0
        self._out = bytearray(correction_frame_len(plan.num_observables))
        #: the compiled engine's per-stream state and plan, when the plan has an engine
        self.engine = None
        if plan.engine is not None and measurements is None:  # it reads detector bytes
            self._engine_state = plan.engine.new_state()  # shares memory with the context
            self.engine = plan.engine.context(self._engine_state)
            self._engine_out = np.zeros(correction_frame_len(
                plan.num_observables, plan.engine.max_faults), dtype=np.uint8)
            self._pkt_buf = np.zeros(sum((k + 7) // 8 for k in plan.slice_sizes), np.uint8)
            self._pkt_mv = memoryview(self._pkt_buf)
        #: the stream's :class:`~qecd.transport.shm.streams.ShmStreamServer` when its rounds
        #: flow over a shared-memory ring (HELLO ``transport="shm"``), else None
        self.shm = None

    # -- control ------------------------------------------------------------------------
    def accept(self) -> Accept:
        """The ACCEPT body for this stream."""
        p, lim = self.plan, self.limits
        return Accept(stream_id=self.stream_id, slice_sizes=p.slice_sizes,
                      num_observables=p.num_observables, decoder=p.decoder_name,
                      window=p.window, commit=p.commit, want_faults=self.want_faults,
                      heartbeat_ms=lim.heartbeat_ms, timeout_ms=lim.timeout_ms,
                      max_backlog=lim.max_backlog, max_frame=lim.max_frame, server=lim.server,
                      **self._shm_accept(), **(p.description() if self.describe else {}),
                      **({"measurement_slice_sizes": self._in_sizes}
                         if self.measurements is not None else {}))

    def _shm_accept(self) -> dict:
        srv = self.shm
        if srv is None:
            return {}
        return {"shm_region": srv.region_name, "shm_slots": int(srv.n_slots),
                "shm_slot_size": int(srv.slot_size),
                "corrections_per_shot": int(srv.corrections_per_shot)}

    def check_owner(self, owner: bytes | str) -> None:
        """Raise NOT_OWNER unless ``owner`` opened this stream."""
        if owner != self.owner:
            raise ProtocolError(ErrorCode.NOT_OWNER, f"field 'stream_id': stream "
                                f"{self.stream_id} belongs to another client")

    def note_delay(self, delay_ns: int) -> None:
        """Update :attr:`lag_ns` from one packet's receipt time minus its timestamp."""
        if delay_ns < self._min_delay:
            self._min_delay = delay_ns
        self.lag_ns = delay_ns - self._min_delay

    def uncommitted(self) -> tuple[int, int] | None:
        """Rounds received but not covered by a correction, as ``(first, last)``, or None."""
        if self.next_round > self.committed:
            return self.committed, self.next_round - 1
        return None

    def stats(self) -> dict[str, object]:
        """Counters for a STATS reply (service-time percentiles are the server's to add)."""
        return {"stream_id": self.stream_id, "rounds_received": self.rounds_received,
                "rounds_committed": self.committed, "corrections_sent": self.corrections_sent,
                "next_round": self.next_round, "backlog_rounds": self.queued,
                "input_lag_ns": self.lag_ns,
                "errors_sent": self.errors_sent, "dropped": dict(self.dropped)}

    # -- the round path -----------------------------------------------------------------
    def begin(self, header: Header, payload: memoryview | bytes) -> int:
        """Validate one SYNDROME packet and take all its rounds, or none.

        Checks the round (ROUND_GAP / ROUND_DUPLICATE), the size (SERVER_BUSY if it carries
        more than ``max_backlog`` rounds) and the payload (BAD_PAYLOAD: length and padding
        for the layout), then unpacks it and advances ``next_round`` by ``count``. Returns
        ``count``; then call :meth:`push` for ``i = 0 .. count-1``.
        """
        check_round(header, self.next_round)
        count = header.count
        if count > self.limits.max_backlog:
            raise ProtocolError(ErrorCode.SERVER_BUSY, f"SYNDROME field 'count': expected at "
                                f"most max_backlog={self.limits.max_backlog} rounds per "
                                f"packet, got {count}")
        first = header.round
        if self.engine is not None:  # the engine reads the packed bytes itself
            # the payload is copied into a preallocated writable buffer (no array object per
            # packet; one engine specialisation to compile) and passed whole with its length
            n = len(payload)
            if n > self._pkt_buf.shape[0]:
                self._pkt_buf = np.zeros(max(n, 2 * self._pkt_buf.shape[0]), dtype=np.uint8)
                self._pkt_mv = memoryview(self._pkt_buf)
            self._pkt_mv[:n] = payload
            if not payload_ok_ctx(self._pkt_buf, 0, n, first, count, self.engine):
                self.layout.unpack_into(self._bits if count == 1 else np.zeros(
                    self.layout.num_detectors_in(first, count), np.uint8), first, count,
                    payload)  # raises BAD_PAYLOAD with the detailed reason
                raise ProtocolError(ErrorCode.BAD_PAYLOAD, "SYNDROME payload: rejected by "
                                    "the engine's length and padding check")
        elif count == 1:
            self.layout.unpack_into(self._bits, first, 1, payload)
        else:
            n = self.layout.num_detectors_in(first, count)
            if n > self._bits.shape[0]:
                self._bits = np.zeros(n, dtype=np.uint8)
                self._views = tuple(self._bits[:k] for k in self._in_sizes)
            self.layout.unpack_into(self._bits, first, count, payload)
            sizes, R = self._in_sizes, self.rounds_per_shot
            views, at = [], 0
            for r in range(first, first + count):
                k = sizes[r % R]
                views.append(self._bits[at:at + k])
                at += k
            self._multi = views
        self._pkt_first, self._pkt_count = first, count
        self.next_round = first + count
        self.rounds_received += count
        return count

    def push(self, i: int) -> Correction | None:
        """Feed round ``i`` of the packet taken by :meth:`begin` to the decoder.

        Returns the Correction (absolute rounds; ``fault_ids`` as unique uint32 when the
        stream asked for them; ``service_ns`` 0) when a window commits, else None. Decoder
        exceptions propagate (the caller answers DECODER_ERROR and calls :meth:`fail`).
        """
        r = self._pkt_first + i
        bits = self._views[r % self.rounds_per_shot] if self._pkt_count == 1 else self._multi[i]
        m = self.measurements
        if m is not None:  # raw measurements: store the round's, XOR out its detectors
            t = r % self.rounds_per_shot
            self._shot_meas[m.offsets[t]:m.offsets[t + 1]] = bits
            n = convert_round(self._shot_meas, t, m.round_det_start, m.det_ptr, m.det_meas,
                              m.det_flip, self._dets)
            bits = self._dets[:n]
        c = self.decoder.push_round(bits.view(np.bool_))  # unpacked wire bits: 0/1
        if c is None:
            return None
        base = r - r % self.rounds_per_shot
        last = base + c.last_round
        self.committed = last + 1
        faults = np.unique(c.fault_ids).astype(np.uint32) if self.want_faults else None
        return Correction(base + c.first_round, last, c.observables, faults, 0, c.shot_end)

    def engine_step(self, i: int, o: int, seq: int, timestamp_ns: int, t_recv: int):
        """Run the compiled engine on the packet taken by :meth:`begin` from its round ``i``
        (byte ``o`` of the payload) until a CORRECTION is ready or the packet is done.

        Returns ``(status, i_next, o_next, frame)``: ``frame`` is the CORRECTION packet (a
        view of this session's buffer, valid until the next call) when ``status`` is
        :data:`~qecd.transport.engine.STEP_CORRECTION`; on ``STEP_NO_SOLUTION`` call
        :meth:`fail` with ``i_next - 1``."""
        if timestamp_ns >= 1 << 63:  # a u64 on the wire: the same bits as an int64
            timestamp_ns -= 1 << 64
        status, i, o, n, last = engine_call(
            self._pkt_buf, o, i, self._pkt_count, self._pkt_first, seq, timestamp_ns, t_recv,
            self._engine_out, self.stream_id, self.want_faults, self.engine)
        if status == STEP_WINDOW_DUE:  # the plan's windows are decoded here, in Python
            try:
                result = self.plan.engine.windows.host_decode()
            except ValueError:  # no set of faults explains the window
                engine_no_solution_ctx(self.engine)
                return STEP_NO_SOLUTION, i, o, None
            status, n, last = engine_resume_call(
                result, i, self._pkt_first, seq, timestamp_ns, t_recv, self._engine_out,
                self.stream_id, self.want_faults, self.engine)
        if status == STEP_CORRECTION:
            self.committed = last + 1
            return status, i, o, self._engine_out[:n]
        return status, i, o, None

    def fail(self, i: int) -> tuple[int, int]:
        """Discard the shot whose round ``i`` (of the current packet) the decoder failed on.

        The decoder is reset and the stream moves to the next shot boundary (rounds of the
        packet after it are discarded too and expected again). Returns the received rounds
        that no correction will cover, ``(first, last)``.
        """
        r = self._pkt_first + i
        dropped = (self.committed, self.next_round - 1)
        boundary = (r // self.rounds_per_shot + 1) * self.rounds_per_shot
        self.decoder.reset()
        if self.engine is not None:
            engine_no_solution_ctx(self.engine)  # the kernels' own reset of the shot
        self.next_round = self.committed = boundary
        return dropped

    def correction_frame(self, c: Correction, *, seq: int, timestamp_ns: int,
                         service_ns: int) -> memoryview:
        """Pack ``c`` into this session's reusable buffer; returns the frame (valid until
        the next call: hand it to a copying send)."""
        n_f = None if c.fault_ids is None else len(c.fault_ids)
        need = correction_frame_len(len(c.observables), n_f)
        if need > len(self._out):
            self._out = bytearray(need)
        n = pack_correction_into(self._out, 0, stream_id=self.stream_id, seq=seq,
                                 first_round=c.first_round, last_round=c.last_round,
                                 observables=c.observables, fault_ids=c.fault_ids,
                                 service_ns=service_ns, timestamp_ns=timestamp_ns,
                                 shot_end=c.shot_end)
        return memoryview(self._out)[:n]
