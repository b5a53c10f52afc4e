"""Sliding-window stream decoding over any backend.

A shot arrives round by round (the rounds of a :class:`~qecd.codes.layout.RoundLayout`).
With window ``W`` and commit ``C`` (Dennis et al. 2002; Skoric et al. arXiv 2209.08552;
Tan et al. arXiv 2209.09219) the decoder waits for rounds ``[a, a + W)``, decodes them, and
*commits* the chosen faults whose earliest detector lies in rounds ``[a, a + C)``: their
observable flips are reported at once in a :class:`Correction`, and their detectors in later
rounds are XOR-ed into a *carry* so the next window, starting at ``a + C``, sees the
syndrome with those faults already applied. The window that reaches the shot's final round
commits everything. Whole-shot mode (``window=None``) decodes once, at the final round.

Window decoding problems are built from the backend's fault table of the whole shot (a
matching graph for ``pymatching``/``uf``, hypergraph columns for ``bp-cluster``): window
``[a, b)`` holds the faults whose earliest detector is in ``[a, b)``, with detectors at or
after ``b`` dropped (the open future boundary). Faults touching earlier rounds were already
decided and are left out. Windows with the same local structure (every bulk window of a
long memory experiment) share one backend instance, built once.

Example
-------
>>> from qecd.codes import build_experiment
>>> exp = build_experiment("surface:d=3,r=9,p=0.001")
>>> sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=6, commit=3)
>>> sd.num_window_decoders  # first window, one shared bulk window, last window
3
>>> dets, obs = exp.sample(1, seed=1)
>>> sd.decode_shot(dets[0]).tolist() == obs[0].tolist() or True
True
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import stim

from qecd.codes.layout import RoundLayout
from qecd.decoder.base import Decoder, pack_bits, unpack_bits
from qecd.decoder.fault_table import FaultTable
from qecd.decoder.registry import backend_class
from qecd.errors import DecoderError


@dataclass(frozen=True)
class Correction:
    """What a stream decoder commits.

    Attributes
    ----------
    first_round, last_round : int
        The committed round range of the shot, inclusive.
    observables : numpy.ndarray of uint8, shape (num_observables,)
        Logical flips of the faults committed now (XOR all of a shot's corrections to get
        the shot's prediction).
    fault_ids : numpy.ndarray of int64
        Indices into ``dem.flattened()``'s ``error`` instructions of the committed faults.
    shot_end : bool
        True for the last correction of a shot.

    The field names are the wire CORRECTION's (:class:`qecd.transport.wire.Correction`).
    """

    first_round: int
    last_round: int
    observables: np.ndarray
    fault_ids: np.ndarray
    shot_end: bool


@dataclass
class _Window:
    start: int  # first round
    stop: int  # one past the last round it reads
    commit_stop: int  # faults with earliest round < commit_stop are committed
    final: bool
    det_ids: np.ndarray  # global detector ids, window order
    decoder: Decoder
    local_to_global: np.ndarray  # window DEM error line -> global fault id
    syndrome: np.ndarray  # preallocated uint8 (len(det_ids),)
    template: str  # the window's DEM text (windows with equal text share a decoder)


class ShotDecoding:
    """Offline use of a round-by-round decoder: whole shots pushed round by round. Shared by
    :class:`StreamDecoder` and :class:`~qecd.decoder.compiled_stream.CompiledStream`, which
    provide ``layout``, ``num_observables``, ``next_round`` and ``push_round``."""

    layout: RoundLayout
    num_observables: int

    def decode_shot(self, dets: np.ndarray) -> np.ndarray:
        """Stream one whole shot (uint8 (num_detectors,), DEM order) through the decoder and
        return the XOR of its corrections' observable flips."""
        d = np.asarray(dets, dtype=np.uint8)
        if self.next_round != 0:  # type: ignore[attr-defined]
            raise DecoderError("decode_shot: a shot is in progress on this stream")
        out = np.zeros(self.num_observables, dtype=np.uint8)
        for ids in self.layout.detectors:
            c = self.push_round(d[ids])  # type: ignore[attr-defined]
            if c is not None:
                out ^= c.observables
        return out

    def decode_batch(self, dets: np.ndarray) -> np.ndarray:
        """:meth:`decode_shot` over a batch: uint8 (shots, num_detectors) -> (shots, num_obs)."""
        d = np.asarray(dets, dtype=np.uint8)
        out = np.zeros((d.shape[0], self.num_observables), dtype=np.uint8)
        for i in range(d.shape[0]):
            out[i] = self.decode_shot(d[i])
        return out

    def decode_batch_packed(self, packed: np.ndarray) -> np.ndarray:
        """Bit-packed in, bit-packed out, as :meth:`qecd.decoder.base.Decoder.decode_batch_packed`
        (stim's little bit order)."""
        p = np.asarray(packed, dtype=np.uint8)
        nd = self.layout.num_detectors
        if p.ndim != 2 or p.shape[1] != (nd + 7) // 8:
            raise DecoderError(f"packed batch: expected shape (shots, {(nd + 7) // 8}), "
                               f"got {p.shape}")
        return pack_bits(self.decode_batch(unpack_bits(p, nd)))


class StreamDecoder(ShotDecoding):
    """Round-by-round decoding of one stream with any backend.

    Parameters
    ----------
    dem : stim.DetectorErrorModel
        The whole shot's DEM.
    layout : RoundLayout
        Its rounds (``RoundLayout.from_dem(dem)`` for a DEM with time coordinates).
    backend : str
        A registered backend name (``pymatching``, ``uf``, ``bp-cluster``).
    window, commit : int or None
        Rounds per window and rounds committed per window; ``window=None`` decodes whole shots.
    backend_options : dict, optional
        Passed to the backend's ``from_dem``.
    """

    def __init__(
        self,
        dem: stim.DetectorErrorModel,
        layout: RoundLayout,
        backend: str,
        *,
        window: int | None = None,
        commit: int | None = None,
        backend_options: dict | None = None,
    ) -> None:
        self.backend_class = backend_class(backend)  # validates the name
        self.backend = backend
        self.layout = layout
        self.num_rounds = layout.num_rounds
        self.num_observables = layout.num_observables
        if layout.num_detectors != dem.num_detectors:
            raise DecoderError(
                f"layout has {layout.num_detectors} detectors, DEM has {dem.num_detectors}"
            )
        if window is not None:
            commit = commit if commit is not None else max(1, window // 2)
            if not 1 <= commit <= window:
                raise DecoderError(f"commit: expected 1 <= commit <= window={window}, got {commit}")
        if window is None or window >= self.num_rounds:
            window, commit = self.num_rounds, self.num_rounds
        self.window, self.commit = int(window), int(commit)
        self.faults = FaultTable.from_dem(dem, graph=self.backend_class.graph_like)
        self._dem = dem  # a whole-shot window of a backend that reads decompositions uses it
        round_of = layout.round_of_detector()
        t = self.faults
        self._fault_first_round = np.array(
            [int(round_of[t.detectors_of(f)].min()) for f in range(t.num_faults)], dtype=np.int64
        )
        self._round_of = round_of
        self._offsets = np.concatenate([[0], np.cumsum(layout.round_sizes)]).astype(np.int64)
        self._shot_bits = np.zeros(layout.num_detectors, dtype=np.uint8)  # layout order
        self._layout_pos = np.empty(layout.num_detectors, dtype=np.int64)  # det id -> position
        self._layout_pos[layout.detectors_in(0, self.num_rounds)] = np.arange(layout.num_detectors)
        self._carry = np.zeros(layout.num_detectors, dtype=np.uint8)  # by det id
        self._cache: dict[str, Decoder] = {}
        self._windows = self._plan(backend, backend_options or {})
        # the window buffers and backend workspaces are shared with every fork: one decode
        # of this plan at a time, whichever thread (ZeroMQ loop, shared-memory loops) asks
        self._decode_lock = threading.Lock()
        self._by_trigger = {w.stop - 1: w for w in self._windows}
        self.reset()

    # -- planning (construction time) -----------------------------------------------------
    def _plan(self, backend: str, options: dict) -> list[_Window]:
        windows: list[_Window] = []
        start = 0
        R, W, C = self.num_rounds, self.window, self.commit
        while True:
            stop = min(start + W, R)
            final = stop == R
            windows.append(self._build_window(start, stop, R if final else start + C, final,
                                              backend, options))
            if final:
                return windows
            start += C

    def _build_window(self, start: int, stop: int, commit_stop: int, final: bool,
                      backend: str, options: dict) -> _Window:
        det_ids = self.layout.detectors_in(start, stop).astype(np.int64)
        if (start == 0 and final and getattr(self.backend_class, "uses_decompositions", False)
                and np.array_equal(det_ids, np.arange(len(det_ids)))):
            # the whole shot, detectors in DEM order: the backend gets the DEM itself, with
            # its ``^`` decompositions (the text below keeps one component per line); its
            # fault table is this plan's, so fault ids map through the DEM error index
            decoder = self.backend_class.from_dem(self._dem, **options)
            to_global = np.zeros(max(1, int(self.faults.dem_index.max(initial=0)) + 1),
                                 np.int64)
            to_global[self.faults.dem_index] = np.arange(self.faults.num_faults)
            return _Window(start, stop, commit_stop, final, det_ids, decoder, to_global,
                           np.zeros(len(det_ids), dtype=np.uint8), str(self._dem))
        local = np.full(self.layout.num_detectors, -1, dtype=np.int64)
        local[det_ids] = np.arange(len(det_ids))
        sel = np.nonzero((self._fault_first_round >= start) & (self._fault_first_round < stop))[0]
        lines = []
        t = self.faults
        for f in sel.tolist():
            dets = local[t.detectors_of(f)]
            dets = np.sort(dets[dets >= 0])
            obs = np.nonzero(t.obs_mask[f])[0]
            lines.append((tuple(dets.tolist()), tuple(obs.tolist()), float(t.probabilities[f]), f))
        lines.sort()
        text = "\n".join(
            f"error({p!r}) " + " ".join([f"D{d}" for d in dd] + [f"L{o}" for o in oo])
            for dd, oo, p, _ in lines
        )
        header = f"detector D{len(det_ids) - 1}\n" if len(det_ids) else ""
        header += "".join(f"logical_observable L{o}\n" for o in range(self.num_observables))
        text = header + text
        decoder = self._cache.get(text)
        if decoder is None:
            decoder = self.backend_class.from_dem(stim.DetectorErrorModel(text), **options)
            self._cache[text] = decoder
        local_to_global = np.array([f for *_, f in lines], dtype=np.int64)
        return _Window(start, stop, commit_stop, final, det_ids, decoder, local_to_global,
                       np.zeros(len(det_ids), dtype=np.uint8), text)

    def compile(self):
        """This plan compiled by its backend for the Numba loops (a new engine with its own
        state), or None when the backend decodes from Python (see
        :meth:`~qecd.decoder.base.Decoder.compile_stream`)."""
        return self.backend_class.compile_stream(self)

    @property
    def num_window_decoders(self) -> int:
        """Distinct backend instances built (windows of the same shape share one)."""
        return len(self._cache)

    def fork(self) -> StreamDecoder:
        """A new stream over the same plan: window decoders, fault table and caches are
        shared (built once), per-stream state is fresh. Forks may decode from different
        threads: the windows' syndrome buffers and the backends' workspaces are shared, so
        the plan's decodes take one lock (uncontended from a single thread).

        >>> from qecd.codes import build_experiment
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> a = StreamDecoder(exp.dem, exp.layout, "pymatching", window=2, commit=1)
        >>> b = a.fork()
        >>> b.num_window_decoders == a.num_window_decoders and b._carry is not a._carry
        True
        """
        twin = object.__new__(StreamDecoder)
        twin.__dict__.update(self.__dict__)
        twin._shot_bits = np.zeros_like(self._shot_bits)
        twin._carry = np.zeros_like(self._carry)
        twin.reset()
        return twin

    # -- streaming --------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current shot; the next round pushed is round 0 of a new shot."""
        self._next_round = 0
        self._carry[:] = 0
        self._obs_total = np.zeros(self.num_observables, dtype=np.uint8)

    @property
    def next_round(self) -> int:
        """The round (within the shot) the decoder expects next."""
        return self._next_round

    def push_round(self, bits: np.ndarray) -> Correction | None:
        """Add the next round's detection events (uint8 0/1 in layout order, length
        ``layout.round_sizes[round]``); returns a Correction when a window was committed.
        After the final round the decoder resets for the next shot."""
        t = self._next_round
        lo, hi = self._offsets[t], self._offsets[t + 1]
        b = np.asarray(bits)
        if b.shape != (hi - lo,):
            raise DecoderError(f"round {t}: expected {hi - lo} detector bits, got shape {b.shape}")
        self._shot_bits[lo:hi] = b
        self._next_round = t + 1
        if t not in self._by_trigger:
            return None
        return self.decode_due(t)

    @property
    def shot_buffer(self) -> np.ndarray:
        """The current shot's detection events so far (uint8, one per detector, layout
        order: round 0's detectors first). A loop that stores rounds itself (the
        shared-memory server) writes here and calls :meth:`decode_due`."""
        return self._shot_bits

    @property
    def round_offsets(self) -> np.ndarray:
        """int64 (num_rounds + 1,): where each round's detectors start in
        :attr:`shot_buffer` (round ``t`` is ``[round_offsets[t], round_offsets[t + 1])``)."""
        return self._offsets

    def trigger_table(self) -> np.ndarray:
        """int64 per round of a shot: the index of the window that round completes, or -1.

        >>> from qecd.codes import build_experiment
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> StreamDecoder(exp.dem, exp.layout, "pymatching", window=2, commit=1).trigger_table()
        array([-1,  0,  1,  2,  3])
        """
        out = np.full(self.num_rounds, -1, dtype=np.int64)
        for i, w in enumerate(self._windows):
            out[w.stop - 1] = i
        return out

    def decode_due(self, t: int) -> Correction:
        """Decode and commit the window that round ``t`` completes, from :attr:`shot_buffer`
        (rounds ``0..t`` of the shot must be in it). After a shot's final window the decoder
        resets for the next shot, also when the backend raises."""
        w = self._by_trigger.get(t)
        if w is None:
            raise DecoderError(f"decode_due: no window ends at round {t}")
        self._next_round = t + 1
        try:
            with self._decode_lock:
                return self._decode_window(w)
        finally:
            if w.final:
                self.reset()

    def push_round_packed(self, packed: bytes | np.ndarray) -> Correction | None:
        """Like :meth:`push_round`, with stim-packed bits (little bit order, zero padding)."""
        n = self.layout.round_sizes[self._next_round]
        return self.push_round(unpack_bits(np.frombuffer(packed, dtype=np.uint8), n))

    def finish(self, final_bits: np.ndarray) -> Correction:
        """Push the final round (data-qubit measurement) and return the final correction."""
        if self._next_round != self.num_rounds - 1:
            raise DecoderError(
                f"finish: expected round {self.num_rounds - 1} next, at round {self._next_round}"
            )
        corr = self.push_round(final_bits)
        assert corr is not None and corr.shot_end
        return corr

    def _decode_window(self, w: _Window) -> Correction:
        pos = self._layout_pos[w.det_ids]
        np.take(self._shot_bits, pos, out=w.syndrome)
        w.syndrome ^= self._carry[w.det_ids]
        local = w.decoder.decode_to_faults(w.syndrome)
        glob = w.local_to_global[w.decoder.faults.dem_index[local]]
        committed = glob[self._fault_first_round[glob] < w.commit_stop]
        self.last_committed_faults = committed  # ids into self.faults (for checks and tests)
        obs = np.zeros(self.num_observables, dtype=np.uint8)
        t = self.faults
        for f in committed.tolist():
            obs ^= t.obs_mask[f]
            dets = t.detectors_of(f)
            future = dets[self._round_of[dets] >= w.commit_stop]
            self._carry[future] ^= 1
        return Correction(
            first_round=w.start,
            last_round=w.commit_stop - 1,
            observables=obs,
            fault_ids=np.sort(t.dem_index[committed]),
            shot_end=w.final,
        )

