"""The window plan of a stream: which rounds each window reads, commits and decodes.

A :class:`WindowPlan` is built once per (DEM, layout, window, commit) and never changes: it
holds the shot's fault table, the per-detector and per-fault lookups a stream decoder needs
(position in layout order, round, earliest round of each fault) and one :class:`WindowSpec` per
window, with the window's decoding problem as DEM text (its *template*: bulk windows of a long
memory experiment share one text, so a backend builds them once). Every array is read-only.

It is the one public description of windowing: :class:`~qecd.decoder.window.StreamDecoder`
builds backends from it and decodes in Python; a backend that compiles streams
(:meth:`~qecd.decoder.base.Decoder.compile_stream`) flattens it for Numba. Semantics (window
``W``, commit ``C``, the open future boundary, the carry) are described in
:mod:`qecd.decoder.window`.

Example
-------
>>> from qecd.codes import build_experiment
>>> exp = build_experiment("repetition:d=3,r=4,p=0.01")
>>> plan = WindowPlan.build(exp.dem, exp.layout, graph_like=True, window=2, commit=1)
>>> [(w.start, w.stop, w.commit_stop, w.final) for w in plan.windows]
[(0, 2, 1, False), (1, 3, 2, False), (2, 4, 3, False), (3, 5, 5, True)]
>>> plan.trigger_table().tolist()
[-1, 0, 1, 2, 3]
>>> plan.round_of.flags.writeable
False
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import stim

from qecd.codes.layout import RoundLayout
from qecd.decoder import _dem_scan
from qecd.decoder.fault_table import FaultTable
from qecd.errors import DecoderError

__all__ = ["WindowPlan", "WindowSpec"]


def _frozen(a: np.ndarray, dtype=np.int64) -> np.ndarray:
    out = np.array(a, dtype=dtype)  # always a copy: the plan owns its arrays
    out.flags.writeable = False
    return out


@dataclass(frozen=True)
class WindowSpec:
    """One window of a plan.

    Attributes
    ----------
    start, stop : int
        The rounds it reads: ``[start, stop)``; it is decoded when round ``stop - 1`` arrives.
    commit_stop : int
        Faults whose earliest round is before it are committed by this window.
    final : bool
        The shot's last window (it commits everything).
    det_ids : numpy.ndarray of int64
        Global detector ids of the window, in the window problem's detector order.
    local_to_global : numpy.ndarray of int64
        Window DEM error line -> global fault id (row of :attr:`WindowPlan.faults`).
    template : str
        The window's decoding problem as DEM text (equal texts may share one backend).
    whole_dem : bool
        True when the window is the whole shot and its problem is the shot's DEM itself
        (with ``^`` decompositions), for backends that read them; ``template`` is then
        ``str(dem)`` and ``local_to_global`` maps DEM error indices to global faults.
    """

    start: int
    stop: int
    commit_stop: int
    final: bool
    det_ids: np.ndarray
    local_to_global: np.ndarray
    template: str
    whole_dem: bool = False


@dataclass(frozen=True)
class WindowPlan:
    """A stream's windows and the lookups their decoding needs (all arrays read-only).

    Attributes
    ----------
    layout : RoundLayout
        The shot's rounds.
    faults : FaultTable
        The whole shot's faults (graph-like or hypergraph, as the backend reads them).
    window, commit : int
        Rounds per window and rounds committed per window (both ``num_rounds`` for whole
        shots).
    windows : tuple of WindowSpec
        In shot order; the last is final. A last window that would hold detectors but no
        fault beginning in it is merged into the window before it (that window then reads to
        the end of the shot).
    round_offsets : numpy.ndarray of int64, shape (num_rounds + 1,)
        Where round ``t``'s detectors start in layout order.
    layout_pos : numpy.ndarray of int64
        Detector id -> position in layout order.
    round_of : numpy.ndarray of int64
        Detector id -> round.
    fault_first_round : numpy.ndarray of int64
        Fault -> the earliest round among its detectors.
    """

    layout: RoundLayout
    faults: FaultTable
    window: int
    commit: int
    windows: tuple[WindowSpec, ...]
    round_offsets: np.ndarray
    layout_pos: np.ndarray
    round_of: np.ndarray
    fault_first_round: np.ndarray

    @property
    def num_rounds(self) -> int:
        return self.layout.num_rounds

    @property
    def num_observables(self) -> int:
        return self.layout.num_observables

    def trigger_table(self) -> np.ndarray:
        """int64 per round of a shot: the index of the window that round completes, or -1."""
        out = np.full(self.num_rounds, -1, dtype=np.int64)
        for i, w in enumerate(self.windows):
            out[w.stop - 1] = i
        return out

    @classmethod
    def build(cls, dem: stim.DetectorErrorModel, layout: RoundLayout, *, graph_like: bool,
              window: int | None = None, commit: int | None = None,
              whole_dem_ok: bool = False) -> WindowPlan:
        """Plan the windows of ``dem`` over ``layout``.

        Parameters
        ----------
        graph_like : bool
            Read the DEM as a matching graph (``^`` components as edges) or as hypergraph
            columns (:meth:`FaultTable.from_dem`).
        window, commit : int or None
            Rounds per window (None: whole shots) and committed per window (default
            ``max(1, window // 2)``); ``1 <= commit <= window``.
        whole_dem_ok : bool
            A whole-shot window whose detectors are in DEM order keeps the DEM itself as its
            problem (``WindowSpec.whole_dem``), for backends that read ``^`` decompositions.
        """
        if layout.num_detectors != dem.num_detectors:
            raise DecoderError(
                f"layout has {layout.num_detectors} detectors, DEM has {dem.num_detectors}")
        R = layout.num_rounds
        if window is not None:
            commit = commit if commit is not None else max(1, window // 2)
            if not 1 <= commit <= window:
                raise DecoderError(f"commit: expected 1 <= commit <= window={window}, got {commit}")
        if window is None or window >= R:
            window, commit = R, R
        faults = FaultTable.from_dem(dem, graph=graph_like)
        round_of = layout.round_of_detector().astype(np.int64)
        # the round of each fault's earliest detector (every fault flips at least one)
        first = (np.minimum.reduceat(round_of[faults.det_indices], faults.det_indptr[:-1])
                 if faults.num_faults else np.zeros(0, np.int64))
        layout_pos = np.empty(layout.num_detectors, dtype=np.int64)
        layout_pos[layout.detectors_in(0, R)] = np.arange(layout.num_detectors)
        plan = cls(layout, faults, int(window), int(commit), (), _frozen(
            np.concatenate([[0], np.cumsum(layout.round_sizes)])), _frozen(layout_pos),
            _frozen(round_of), _frozen(first))
        specs = []
        start = 0
        while True:
            stop = min(start + window, R)
            final = stop == R
            specs.append(plan._window(dem, start, stop, R if final else start + commit, final,
                                      whole_dem_ok))
            if final:
                break
            start += commit
        last = specs[-1]
        if len(specs) > 1 and len(last.local_to_global) == 0 and len(last.det_ids):
            # a last window with detectors but no fault of its own (commit = window leaves
            # only the final slice, whose faults all begin earlier, e.g. perfect final
            # measurements) could explain none of its syndrome: the window before it reads
            # on to the end of the shot instead and commits everything
            prev = specs[-2]
            specs[-2:] = [plan._window(dem, prev.start, R, R, True, whole_dem_ok)]
        object.__setattr__(plan, "windows", tuple(specs))
        return plan

    def _window(self, dem: stim.DetectorErrorModel, start: int, stop: int, commit_stop: int,
                final: bool, whole_dem_ok: bool) -> WindowSpec:
        det_ids = self.layout.detectors_in(start, stop).astype(np.int64)
        t = self.faults
        if (whole_dem_ok and start == 0 and final
                and np.array_equal(det_ids, np.arange(len(det_ids)))):
            to_global = np.zeros(max(1, int(t.dem_index.max(initial=0)) + 1), np.int64)
            to_global[t.dem_index] = np.arange(t.num_faults)
            return WindowSpec(start, stop, commit_stop, final, _frozen(det_ids),
                              _frozen(to_global), str(dem), whole_dem=True)
        local = np.full(self.layout.num_detectors, -1, dtype=np.int64)
        local[det_ids] = np.arange(len(det_ids))
        first = self.fault_first_round
        sel = np.nonzero((first >= start) & (first < stop))[0]
        # lines in (detectors, observables, probability, fault) order: sorted by the last
        # two first, then stably by the columns
        sel = sel[np.lexsort((sel, t.probabilities[sel]))]
        det_ptr, dets, obs_ptr, obs = _dem_scan.window_columns(
            sel, t.det_indptr, t.det_indices, local, t.obs_mask)
        order = _dem_scan.sort_components(det_ptr, dets, obs_ptr, obs, 1)
        dl, ol, dp, op = dets.tolist(), obs.tolist(), det_ptr.tolist(), obs_ptr.tolist()
        probs = t.probabilities[sel].tolist()
        body = "\n".join(
            f"error({probs[k]!r}) " + " ".join([f"D{d}" for d in dl[dp[k]:dp[k + 1]]]
                                              + [f"L{o}" for o in ol[op[k]:op[k + 1]]])
            for k in order.tolist())
        lines = sel[order].tolist()
        header = f"detector D{len(det_ids) - 1}\n" if len(det_ids) else ""
        header += "".join(f"logical_observable L{o}\n" for o in range(self.num_observables))
        return WindowSpec(start, stop, commit_stop, final, _frozen(det_ids),
                          _frozen(lines), header + body)
