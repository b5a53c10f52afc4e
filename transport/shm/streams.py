"""Python owners of the shared-memory hot path: the server side of one stream
(:class:`ShmStreamServer`) and the emulator's side (:class:`ShmStreamClient`).

The server creates the region (owner-only POSIX shared memory, see
:mod:`qecd.transport.shm.ring`), so its name and geometry can be handed to the client in the
ACCEPT of the ZeroMQ control channel; :meth:`ShmStreamServer.start` runs the stream's loop in
a thread: :func:`~qecd.transport.shm.loop.serve_stream_kernel` with ``uf``, which releases
the GIL for the whole loop (the control thread keeps serving ZeroMQ), or with another decoder
:mod:`qecd.transport.shm.host_loop`, which takes the GIL back only to decode a due window.
Everything the loop touches is allocated here, before the first round: state, plan, packet
buffers and the per-packet record ring.

Example
-------
>>> import numpy as np
>>> from qecd.codes import build_experiment
>>> exp = build_experiment("surface:d=3,r=3,p=0.01")
>>> srv = ShmStreamServer.for_experiment(exp, stream_id=1)
>>> srv.start()
>>> cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=1)
>>> dets, obs = exp.sample(20, seed=1)
>>> res = cli.stream_shots(dets)
>>> res.lost, res.errors, res.predictions.shape
(0, 0, (20, 1))
>>> cli.bye(); srv.join(timeout=5); srv.exit_code
0
>>> cli.close(); srv.close()
True
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from qecd.codes.layout import RoundLayout
from qecd.decoder.compiled_stream import CompiledStream
from qecd.decoder.registry import DEFAULT_STREAM_DECODER
from qecd.decoder.window import StreamDecoder
from qecd.transport import wire as P
from qecd.transport.shm.atomics import set_timer_slack_ns
from qecd.transport.shm.host_loop import HostLoop
from qecd.transport.shm.loop import (
    CTL_CORRECTIONS,
    CTL_ERRORS,
    CTL_NEXT_ROUND,
    CTL_ROUNDS,
    CTL_STOP,
    MAX_OPEN_RECORDS,
    LoopArgs,
    client_pingpong_kernel,
    client_stream_kernel,
    engine_error_text,
    serve_stream_kernel,
)
from qecd.transport.shm.ring import RingPair, slot_size_for
from qecd.transport.wire.compiled import MAX_RING_REASON
from qecd.transport.wire.header import HEADER_DTYPE

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

SERVER_SIDE = 1
#: how long a loop waits for space in the reply ring before it gives up on the stream
SEND_TIMEOUT_NS = 1_000_000_000


def prefaulted(shape, dtype) -> np.ndarray:
    """A zeroed array whose pages are already mapped. ``np.zeros`` of a large array maps
    zero pages lazily, so the hot loop would take a page fault (several µs in a VM) every
    4 KiB it writes; writing every byte now moves those faults before the first round.

    >>> prefaulted((3,), np.int64).tolist()
    [0, 0, 0]
    """
    a = np.empty(shape, dtype=dtype)
    a.fill(0)
    return a


def _slot_size(layout: RoundLayout, num_observables: int, max_faults: int,
               rounds_per_packet: int = 1) -> int:
    syn = P.HEADER_SIZE + rounds_per_packet * max((s + 7) // 8 for s in layout.round_sizes)
    corr = P.correction_frame_len(num_observables, max_faults)
    err = P.HEADER_SIZE + P.ERROR_FIXED.size + MAX_RING_REASON  # an ERROR with its reason
    return slot_size_for(max(syn, corr, err))


class ShmStreamServer:
    """One stream served from a shared-memory ring pair by a Numba loop.

    Parameters
    ----------
    decoder : CompiledStream or StreamDecoder
        The stream's decoder, built (its own instance: the loop owns its state). A
        :class:`CompiledStream` runs the whole loop in Numba (one that
        ``decodes_on_host`` leaves it for the window decode only)
        (:func:`~qecd.transport.shm.loop.serve_stream_kernel`); a :class:`StreamDecoder`
        of any other backend leaves Numba only to decode a due window
        (:mod:`qecd.transport.shm.host_loop`).
    stream_id : int
        The id the client must put in its packets (from the ACCEPT).
    want_faults : bool
        Put the committed fault ids in every CORRECTION.
    n_slots : int
        Slots per ring (a power of two).
    record_capacity : int
        Packets whose service time / lag the record ring holds (the latest ones).
    """

    def __init__(self, decoder: CompiledStream | StreamDecoder, *, stream_id: int,
                 want_faults: bool = False, n_slots: int = 256,
                 record_capacity: int = 2_000_000, idle_timeout_s: float = 30.0) -> None:
        compiled = isinstance(decoder, CompiledStream)
        #: the stream decoder when the whole loop runs in Numba, else None
        self.compiled = decoder if compiled and not decoder.decodes_on_host else None
        #: the stream decoder when the loop leaves Numba to decode a window (a compiled
        #: stream decoding on the host, or a StreamDecoder), else None
        self.host = decoder if self.compiled is None else None
        self.layout = decoder.layout
        self.stream_id = int(stream_id)
        self.want_faults = bool(want_faults)
        self.idle_timeout_ns = int(idle_timeout_s * 1e9)
        if self.compiled is not None:
            max_faults = self.compiled.max_faults
            self.corrections_per_shot = self.compiled.corrections_per_shot
        elif compiled:
            max_faults = self.host.max_faults
            self.corrections_per_shot = self.host.corrections_per_shot
        else:
            max_faults = self.host.faults.num_faults
            self.corrections_per_shot = int((self.host.trigger_table() >= 0).sum())
        slot = _slot_size(decoder.layout, decoder.num_observables,
                          max_faults if want_faults else 0)
        self.pair = RingPair.create(n_slots=n_slots, slot_size=slot, side="server")
        self.region_name = self.pair.region.name
        self.n_slots, self.slot_size = n_slots, slot
        self.in_buf = np.zeros(slot, dtype=np.uint8)
        self.out_buf = np.zeros(slot, dtype=np.uint8)
        self.ctl = np.zeros(8, dtype=np.int64)
        self.rec_service = prefaulted(record_capacity, np.int64)
        self.rec_lag = prefaulted(record_capacity, np.int64)
        self.rec_flags = prefaulted(record_capacity, np.uint8)
        self.rec_n = np.zeros(1, dtype=np.int64)
        self.state = self.compiled.new_state() if self.compiled is not None else None
        self.exit_code: int | None = None
        self._thread: threading.Thread | None = None
        self.cpu: int | None = None
        self._host_loop = None
        if self.host is not None:
            self._host_loop = HostLoop(
                self.host, self.pair.kernel_args(), server_side=SERVER_SIDE,
                in_buf=self.in_buf, out_buf=self.out_buf, ctl=self.ctl,
                records=(self.rec_service, self.rec_lag, self.rec_flags, self.rec_n),
                stream_id=self.stream_id, want_faults=self.want_faults,
                idle_timeout_ns=self.idle_timeout_ns, send_timeout_ns=SEND_TIMEOUT_NS)
            self._host_loop.precompile()
        self.ctl[CTL_STOP] = 1  # compile (or load from Numba's cache) now, not at round 0
        self._serve()

    @property
    def num_observables(self) -> int:
        return self.layout.num_observables

    @property
    def backend(self) -> str:
        return self.compiled.backend if self.compiled is not None else self.host.backend

    @classmethod
    def for_experiment(cls, exp, *, stream_id: int, window: int | None = None,
                       commit: int | None = None, decoder: str = DEFAULT_STREAM_DECODER,
                       **kw) -> ShmStreamServer:
        """Build the stream decoder (``uf`` compiled, or any other backend) and the server."""
        sd = StreamDecoder(exp.dem, exp.layout, decoder, window=window, commit=commit)
        return cls(sd.compile() or sd, stream_id=stream_id, **kw)

    def _serve(self) -> int:
        """Run the loop until it returns; while ``ctl[CTL_STOP]`` is set (construction) it
        returns after one round of polls, which compiles or loads every kernel it calls."""
        if self._host_loop is not None:
            return self._host_loop.run()
        loop = LoopArgs(SERVER_SIDE, self.in_buf, self.out_buf, self.ctl, self.rec_service,
                        self.rec_lag, self.rec_flags, self.rec_n, self.stream_id,
                        self.want_faults, self.idle_timeout_ns, SEND_TIMEOUT_NS,
                        np.zeros(MAX_OPEN_RECORDS, np.int64),
                        np.zeros(MAX_OPEN_RECORDS, np.uint8),
                        *engine_error_text(self.compiled, self.stream_id))
        return int(serve_stream_kernel(self.pair.kernel_args(), loop, self.state,
                                       self.compiled.kernel_args()))

    def _run(self) -> None:
        self._tid = threading.get_native_id()
        if self.cpu is not None:
            import os

            os.sched_setaffinity(threading.get_native_id(), {self.cpu})
        set_timer_slack_ns(1_000)  # an idle loop's naps: 50 µs of default slack is too much
        self.exit_code = self._serve()

    def start(self, cpu: int | None = None) -> None:
        """Run the loop in a thread (pinned to ``cpu`` when given)."""
        self.cpu = cpu
        self.ctl[CTL_STOP] = 0
        self._thread = threading.Thread(target=self._run, name=f"qecd-shm-{self.stream_id}",
                                        daemon=True)
        self._thread.start()

    def cpu_seconds(self) -> float:
        """CPU time the loop's thread has used (user + system, from
        ``/proc/self/task/TID/stat``, clock-tick resolution); after the thread has ended, the
        last value read. 0.0 before it started or where /proc is absent.

        An idle loop spins for a bounded time, then naps (docs/server.md): this is how an
        operator sees what idle rings cost."""
        tid = getattr(self, "_tid", None)
        if tid is not None:
            try:
                with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                # after the name: state is field 3, utime 14, stime 15 (man 5 proc)
                self._cpu_s = (int(fields[11]) + int(fields[12])) / _CLK_TCK
            except (OSError, IndexError, ValueError):
                pass
        return getattr(self, "_cpu_s", 0.0)

    def is_running(self) -> bool:
        """Whether the loop's thread was started and has not returned yet."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Ask the loop to return (it checks every 256 idle polls)."""
        self.ctl[CTL_STOP] = 1

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def counters(self) -> dict:
        return {"rounds": int(self.ctl[CTL_ROUNDS]), "errors": int(self.ctl[CTL_ERRORS]),
                "corrections": int(self.ctl[CTL_CORRECTIONS]),
                "next_round": int(self.ctl[CTL_NEXT_ROUND])}

    def records(self) -> dict[str, np.ndarray]:
        """Per-packet records so far, oldest first: service ns, lag ns, decode flag. The
        arrays are a ring of ``record_capacity`` packets: once more were served, these are
        the latest ``record_capacity`` (``records_total`` says how many there were). Read
        them after the loop returned (:meth:`join`); a running loop's records are read with
        :func:`qecd.transport.server.shm_streams.ring_records`."""
        n = int(self.rec_n[0])
        cap = self.rec_service.shape[0]
        order = np.arange(max(0, n - cap), n) % cap
        return {"service_ns": self.rec_service[order], "lag_ns": self.rec_lag[order],
                "decoded": self.rec_flags[order], "records_total": n}

    def forget_name_once_attached(self) -> bool:
        """Remove the region's name once the client side is claimed (the server's safety
        net for clients that do not remove it themselves); True when it is gone."""
        if self.pair.region._unlinked[0]:
            return True
        if self.pair.region.side_info(0).state != 0:
            self.pair.region.forget_name()
            return True
        return False

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the loop and release the region. Returns False (and keeps the mapping, so
        the loop never reads unmapped memory) when the loop has not returned within
        ``timeout`` seconds, e.g. while still compiling; call again later."""
        self.stop()
        self.join(timeout=timeout)
        if self._thread is not None and self._thread.is_alive():
            return False
        self.pair.close()
        try:
            self.pair.unlink()
        except Exception:  # already unlinked by the finalizer
            pass
        return True


@dataclass
class StreamResult:
    """What the client saw: predictions per shot and every timestamp."""

    predictions: np.ndarray  # uint8 (shots, num_observables), XOR of each shot's corrections
    send_ns: np.ndarray  # per packet: scheduled (paced) or actual send time
    write_ns: np.ndarray  # per packet: when its doorbell was rung
    corr_first: np.ndarray
    corr_last: np.ndarray
    corr_recv_ns: np.ndarray
    corr_ts: np.ndarray
    corr_service_ns: np.ndarray
    corr_round: np.ndarray  # the last round of the packet that triggered each correction
    expected: int
    received: int
    errors: int
    lost: int
    duplicated: int
    status: int  # 0; -3 corrections still missing at the timeout; -4 request ring stayed full

    @property
    def reaction_ns(self) -> np.ndarray:
        """Per correction: receive time minus the send time of the round that triggered it."""
        return self.corr_recv_ns - self.corr_ts


class ShmStreamClient:
    """The emulator's side of a ring pair: sends SYNDROME packets, collects CORRECTIONs."""

    def __init__(self, pair: RingPair, layout: RoundLayout, stream_id: int,
                 corrections_per_shot: int) -> None:
        self.pair = pair
        self.layout = layout
        self.stream_id = int(stream_id)
        self.corrections_per_shot = int(corrections_per_shot)
        self.syn_layout = P.SyndromeLayout(list(layout.round_sizes))
        self.next_round = 0
        self.rx_buf = np.zeros(pair.region.slot_size if hasattr(pair.region, "slot_size")
                               else 4096, dtype=np.uint8)

    @classmethod
    def attach(cls, name: str, layout: RoundLayout, *, stream_id: int,
               corrections_per_shot: int | None = None) -> ShmStreamClient:
        pair = RingPair.attach(name, side="client")
        pair.region.forget_name()  # both sides have it mapped: no one else may attach
        cps = corrections_per_shot
        if cps is None:
            cps = 1
        return cls(pair, layout, stream_id, cps)

    def build_packets(self, dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One SYNDROME frame per round of every shot, built with numpy before the timed loop
        (frames are byte-identical to :func:`qecd.transport.wire.encode_syndrome`'s).

        Returns the concatenated frames (uint8) and their offsets (int64, length frames + 1).
        """
        d = np.asarray(dets, dtype=np.uint8)
        shots = d.shape[0]
        R = self.layout.num_rounds
        nbytes = np.array([(s + 7) // 8 for s in self.layout.round_sizes], dtype=np.int64)
        flen = P.HEADER_SIZE + nbytes
        round_off = np.concatenate([[0], np.cumsum(flen)])
        shot_len = int(round_off[-1])
        out = np.zeros(shots * shot_len, dtype=np.uint8)
        hdr = np.zeros(shots, dtype=HEADER_DTYPE)
        hdr["magic"], hdr["version"] = P.MAGIC, P.VERSION
        hdr["msg_type"] = int(P.MsgType.SYNDROME)
        hdr["count"], hdr["stream_id"] = 1, self.stream_id
        base = self.next_round + np.arange(shots, dtype=np.uint64) * np.uint64(R)
        starts = np.arange(shots, dtype=np.int64) * shot_len
        for t, ids in enumerate(self.layout.detectors):
            hdr["payload_len"] = nbytes[t]
            hdr["round"] = base + np.uint64(t)
            at = starts + round_off[t]
            out[at[:, None] + np.arange(P.HEADER_SIZE)] = hdr.view(np.uint8).reshape(shots, -1)
            packed = np.packbits(d[:, ids], axis=1, bitorder="little")
            out[at[:, None] + P.HEADER_SIZE + np.arange(nbytes[t])] = packed
        ptr = (starts[:, None] + round_off[:-1]).reshape(-1)
        return out, np.concatenate([ptr, [shots * shot_len]]).astype(np.int64)

    def stream_shots(self, dets: np.ndarray, *, cycle_ns: int = 0, timeout_s: float = 30.0,
                     corrections_per_shot: int | None = None) -> StreamResult:
        """Stream whole shots (uint8 (shots, num_detectors)); returns what came back."""
        shots = int(np.asarray(dets).shape[0])
        cps = corrections_per_shot or self.corrections_per_shot
        packets, ptr = self.build_packets(dets)
        expected = shots * cps
        cap = expected + 16
        n_obs = self.layout.num_observables
        send_ns = prefaulted(len(ptr) - 1, np.int64)
        write_ns = prefaulted(len(ptr) - 1, np.int64)
        cf, cl = prefaulted(cap, np.int64), prefaulted(cap, np.int64)
        co = prefaulted((cap, n_obs), np.uint8)
        crecv, cts, csvc, cround = (prefaulted(cap, np.int64) for _ in range(4))
        n_corr, n_err = np.zeros(1, np.int64), np.zeros(1, np.int64)
        words, buf, tx_off, rx_off, n_slots, slot_size = self.pair.kernel_args()
        rx = np.zeros(slot_size, dtype=np.uint8)
        status = client_stream_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, packets,
                                      ptr, int(cycle_ns), send_ns, write_ns, rx, cf, cl, co,
                                      crecv, cts, csvc, cround, n_corr, expected, n_err,
                                      int(timeout_s * 1e9))
        k = int(n_corr[0])
        R = self.layout.num_rounds
        base = self.next_round
        preds = np.zeros((shots, n_obs), dtype=np.uint8)
        seen: dict[tuple[int, int], int] = {}
        for i in range(k):
            key = (int(cf[i]), int(cl[i]))
            seen[key] = seen.get(key, 0) + 1
            shot = (int(cl[i]) - base) // R
            if 0 <= shot < shots:
                preds[shot] ^= co[i]
        self.next_round = base + shots * R
        dup = sum(v - 1 for v in seen.values())
        return StreamResult(preds, send_ns, write_ns, cf[:k], cl[:k], crecv[:k], cts[:k],
                            csvc[:k], cround[:k], expected, k, int(n_err[0]),
                            max(0, expected - (k - dup)), dup, int(status))

    def ping(self, n: int = 10_000, timeout_s: float = 5.0) -> np.ndarray:
        """``n`` HEARTBEAT round trips through the server's loop; returns RTTs in ns."""
        words, buf, tx_off, rx_off, n_slots, slot_size = self.pair.kernel_args()
        pkt = np.frombuffer(P.encode_heartbeat(stream_id=self.stream_id), np.uint8).copy()
        rtt = np.zeros(n, dtype=np.int64)
        rx = np.zeros(slot_size, dtype=np.uint8)
        done = client_pingpong_kernel(words, buf, tx_off, rx_off, n_slots, slot_size, pkt, n,
                                      rtt, rx, int(timeout_s * 1e9))
        return rtt[:done]

    def bye(self, timeout_s: float = 5.0) -> None:
        self.pair.send_bytes(P.encode_bye(stream_id=self.stream_id), timeout=timeout_s)

    def close(self) -> None:
        self.pair.close()
