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
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import stim

from qecd.codes.layout import RoundLayout
from qecd.decoder.base import Decoder, _zero_one, pack_bits, unpack_bits
from qecd.decoder.plan import WindowPlan, WindowSpec
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
    spec: WindowSpec
    decoder: Decoder
    syndrome: np.ndarray  # preallocated uint8 (len(spec.det_ids),)


class ShotDecoding:
    """Offline use of a round-by-round decoder: whole shots pushed round by round. Shared by
    :class:`StreamDecoder` and :class:`~qecd.decoder.compiled_stream.CompiledStream`, which
    provide ``layout``, ``num_observables``, ``next_round`` and ``push_round``."""

    layout: RoundLayout
    num_observables: int

    def decode_shot(self, dets: np.ndarray) -> np.ndarray:
        """Stream one whole shot (uint8 (num_detectors,), DEM order) through the decoder and
        return the XOR of its corrections' observable flips."""
        d = _zero_one(np.asarray(dets), "syndrome")
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
        d = _zero_one(np.asarray(dets), "batch")
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


class StreamDecoder(ShotDecoding, Decoder):
    """Round-by-round decoding of one stream with any backend; itself a
    :class:`~qecd.decoder.base.Decoder` (whole shots in, the committed faults of all its
    windows out), so anything that takes a decoder takes a windowed one.

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
        self.graph_like = self.backend_class.graph_like
        self.compiles_streams = self.backend_class.compiles_streams
        #: the frozen window plan (:class:`~qecd.decoder.plan.WindowPlan`)
        self.plan = WindowPlan.build(
            dem, layout, graph_like=self.backend_class.graph_like, window=window,
            commit=commit, whole_dem_ok=getattr(self.backend_class, "uses_decompositions", False))
        self.layout = layout
        self.num_rounds = layout.num_rounds
        self.window, self.commit = self.plan.window, self.plan.commit
        self.faults = self.plan.faults
        self._shot_bits = np.zeros(layout.num_detectors, dtype=np.uint8)  # layout order
        self._carry = np.zeros(layout.num_detectors, dtype=np.uint8)  # by det id
        self._cache: dict[str, Decoder] = {}
        options = backend_options or {}
        self.backend_options = dict(options)
        self._windows = [self._backend_for(w, dem, options) for w in self.plan.windows]
        # the window buffers and backend workspaces are shared with every fork: one decode
        # of this plan at a time, whichever thread (ZeroMQ loop, shared-memory loops) asks
        self._decode_lock = threading.Lock()
        self._by_trigger = {w.spec.stop - 1: w for w in self._windows}
        self.reset()

    def _backend_for(self, spec: WindowSpec, dem: stim.DetectorErrorModel,
                     options: dict) -> _Window:
        if spec.whole_dem:  # the backend reads the DEM's ``^`` decompositions
            decoder = self.backend_class.from_dem(dem, **options)
        else:
            decoder = self._cache.get(spec.template)
            if decoder is None:
                decoder = self.backend_class.from_dem(stim.DetectorErrorModel(spec.template),
                                                      **options)
                self._cache[spec.template] = decoder
        return _Window(spec, decoder, np.zeros(len(spec.det_ids), dtype=np.uint8))

    def __getstate__(self) -> dict:
        # shipped from a build process: the lock is recreated on arrival
        state = dict(self.__dict__)
        del state["_decode_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._decode_lock = threading.Lock()

    name = "stream"

    @classmethod
    def from_dem(cls, dem: stim.DetectorErrorModel, *, backend: str,
                 window: int | None = None, commit: int | None = None,
                 layout: RoundLayout | None = None, **options: object) -> StreamDecoder:
        """The :class:`~qecd.decoder.base.Decoder` constructor: ``layout`` defaults to
        ``RoundLayout.from_dem(dem)`` (detector time coordinates); ``options`` go to the
        backend."""
        return cls(dem, layout if layout is not None else RoundLayout.from_dem(dem), backend,
                   window=window, commit=commit, backend_options=options or None)

    def decode_to_faults(self, syndrome: np.ndarray) -> np.ndarray:
        """Stream one whole shot and return every fault its windows committed (ids into
        :attr:`faults`, sorted): their observables XOR to :meth:`decode_shot`'s prediction.

        >>> from qecd.codes import build_experiment
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> sd = StreamDecoder.from_dem(exp.dem, backend="uf", window=2, commit=1)
        >>> dets, _ = exp.sample(1, seed=3)
        >>> bool((sd.faults.observables_of(sd.decode_to_faults(dets[0]))
        ...       == sd.decode_shot(dets[0])).all())
        True
        """
        s = self._check_syndrome(syndrome)
        if self.next_round != 0:
            raise DecoderError("decode_to_faults: a shot is in progress on this stream")
        out = []
        for ids in self.layout.detectors:
            if self.push_round(s[ids]) is not None:
                out.append(self.last_committed_faults)
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)

    def compile(self):
        """This plan compiled by its backend for the Numba loops (a new engine with its own
        state), or None when the backend decodes from Python (see
        :meth:`~qecd.decoder.base.Decoder.compile_stream`)."""
        return self.backend_class.compile_stream(self)

    @property
    def window_decoders(self) -> Mapping[str, Decoder]:
        """The backend instances built, by window template DEM text (read-only; whole-DEM
        windows are not in it)."""
        return MappingProxyType(self._cache)

    @property
    def largest_window_faults(self) -> int:
        """Faults of the largest window's backend decoder (whole-DEM windows included)."""
        return max((w.decoder.faults.num_faults for w in self._windows), default=0)

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
        lo, hi = self.plan.round_offsets[t], self.plan.round_offsets[t + 1]
        b = np.asarray(bits)
        if b.shape != (hi - lo,):
            raise DecoderError(f"round {t}: expected {hi - lo} detector bits, got shape {b.shape}")
        self._shot_bits[lo:hi] = _zero_one(b, f"round {t}")  # bool (0/1 by type): unchecked
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
        return self.plan.round_offsets

    def trigger_table(self) -> np.ndarray:
        """int64 per round of a shot: the index of the window that round completes, or -1.

        >>> from qecd.codes import build_experiment
        >>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
        >>> StreamDecoder(exp.dem, exp.layout, "pymatching", window=2, commit=1).trigger_table()
        array([-1,  0,  1,  2,  3])
        """
        return self.plan.trigger_table()

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
            if w.spec.final:
                self.reset()

    def push_round_packed(self, packed: bytes | np.ndarray) -> Correction | None:
        """Like :meth:`push_round`, with stim-packed bits (little bit order, zero padding)."""
        n = self.layout.round_sizes[self._next_round]
        return self.push_round(unpack_bits(np.frombuffer(packed, dtype=np.uint8),
                                           n).view(np.bool_))

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
        spec, plan = w.spec, self.plan
        np.take(self._shot_bits, plan.layout_pos[spec.det_ids], out=w.syndrome)
        w.syndrome ^= self._carry[spec.det_ids]
        local = w.decoder.decode_to_faults(w.syndrome.view(np.bool_))  # 0/1 by construction
        glob = spec.local_to_global[w.decoder.faults.dem_index[local]]
        committed = glob[plan.fault_first_round[glob] < spec.commit_stop]
        self.last_committed_faults = committed  # ids into self.faults (for checks and tests)
        obs = np.zeros(self.num_observables, dtype=np.uint8)
        t = self.faults
        for f in committed.tolist():
            obs ^= t.obs_mask[f]
            dets = t.detectors_of(f)
            future = dets[plan.round_of[dets] >= spec.commit_stop]
            self._carry[future] ^= 1
        return Correction(
            first_round=spec.start,
            last_round=spec.commit_stop - 1,
            observables=obs,
            fault_ids=np.sort(t.dem_index[committed]),
            shot_end=spec.final,
        )
