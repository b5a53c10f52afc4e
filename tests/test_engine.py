"""transport/engine.py: the compiled per-stream engine behind both transports."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qecd.codes import build_experiment
from qecd.decoder.registry import backend_class, backend_names
from qecd.decoder.window import StreamDecoder
from qecd.errors import ProtocolError
from qecd.transport import engine as E
from qecd.transport.client import Client, ServerError
from qecd.transport.wire import (
    HEADER_SIZE,
    Correction,
    ErrorCode,
    SyndromeLayout,
    correction_frame_len,
    decode_correction,
    encode_correction,
    encode_syndrome,
    parse_packet,
)

# the first run compiles the engine: minutes on a loaded 2-CPU machine (cached after)
pytestmark = pytest.mark.timeout(600)

EXP = build_experiment("surface:d=3,r=6,p=0.03")


def _packets(exp, shot_dets, sizes):
    """Frames carrying one shot's rounds split into packets of ``sizes`` rounds."""
    layout = SyndromeLayout(exp.layout.round_sizes)
    frames, first = [], 0
    for k in sizes:
        ids = np.concatenate([exp.layout.detectors[t] for t in range(first, first + k)])
        frames.append((first, k, np.frombuffer(encode_syndrome(
            shot_dets[ids], layout, stream_id=1, first_round=first, count=k), np.uint8).copy()))
        first += k
    return frames


_SERVICE = slice(HEADER_SIZE + 16, HEADER_SIZE + 24)  # CORRECTION service_ns: a measurement


def _engine_frames(engine, frames, shot_base=0, want_faults=True):
    """The CORRECTION packets the engine writes for ``frames`` (service_ns zeroed)."""
    state, plan = engine.new_state(), engine.kernel_args()
    out = np.zeros(correction_frame_len(engine.num_observables, engine.max_faults), np.uint8)
    got = []
    for first, count, frame in frames:
        i, o = 0, HEADER_SIZE
        while True:
            status, i, o, n, last = E.engine_step(frame, o, i, count, shot_base + first,
                                                  shot_base + first + count - 1, 0, 0, out, 1,
                                                  want_faults, state, plan)
            if status == E.STEP_DONE:
                break
            if status == E.STEP_WINDOW_DUE:  # the window decoder runs here, in Python
                status, n, last = E.engine_resume(
                    engine.windows.host_decode(), i, shot_base + first,
                    shot_base + first + count - 1, 0, 0, out, 1, want_faults, state, plan)
            assert status == E.STEP_CORRECTION
            c = decode_correction(*parse_packet(bytes(out[:n])))
            assert c.last_round == last
            frame_out = out[:n].copy()
            frame_out[_SERVICE] = 0
            got.append(bytes(frame_out))
    return got


def _python_frames(sd, exp, shot, frames):
    """The same CORRECTIONs from the Python StreamDecoder, packed as the ZeroMQ server's
    Python path packs them (distinct sorted fault ids, service_ns 0)."""
    got = []
    for first, count, _ in frames:
        for t in range(first, first + count):
            c = sd.push_round(shot[exp.layout.detectors[t]])
            if c is not None:
                got.append(encode_correction(
                    Correction(c.first_round, c.last_round, c.observables,
                               np.unique(c.fault_ids).astype(np.uint32), 0, c.shot_end),
                    stream_id=1, seq=first + count - 1, timestamp_ns=0))
    return got


_BUILT: dict = {}
#: every backend that compiles its streams, with an experiment it decodes
ENGINES = {"uf": EXP, "bp-cluster": build_experiment("bb:n=72,r=6,p=0.004"),
           "pymatching": build_experiment("surface:d=5,r=6,p=0.01")}


def _built(backend, window, commit):
    """A fresh stream decoder and engine of one plan (built once per setting)."""
    if (backend, window, commit) not in _BUILT:
        exp = ENGINES[backend]
        sd = StreamDecoder(exp.dem, exp.layout, backend, window=window, commit=commit)
        _BUILT[backend, window, commit] = (sd, sd.compile())
    sd, engine = _BUILT[backend, window, commit]
    return sd.fork(), engine


def test_every_backend_that_compiles_streams_has_an_engine_test():
    assert sorted(ENGINES) == sorted(b for b in backend_names()
                                     if backend_class(b).compiles_streams
                                     and not getattr(backend_class(b), "uses_decompositions",
                                                     False))


@pytest.mark.parametrize("backend", sorted(ENGINES))
@pytest.mark.parametrize("window, commit", [(None, None), (4, 2), (2, 1)])
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_engine_writes_the_python_stream_decoders_corrections_byte_for_byte(
        backend, window, commit, data):
    sd, engine = _built(backend, window, commit)
    exp = ENGINES[backend]
    dets, _ = exp.sample(3, seed=data.draw(st.integers(0, 1000)))
    R = exp.layout.num_rounds
    for shot in dets:
        sizes, left = [], R
        while left:
            k = data.draw(st.integers(1, left))
            sizes.append(k)
            left -= k
        frames = _packets(exp, shot, sizes)
        want = _python_frames(sd, exp, shot, frames)
        assert _engine_frames(engine, frames) == want


@settings(max_examples=200, deadline=None)
@given(first=st.integers(0, 20), count=st.integers(1, 8), extra=st.integers(-2, 2),
       pad=st.integers(0, 255), seed=st.integers(0, 2**32 - 1))
def test_payload_check_agrees_with_the_wire_codec(first, count, extra, pad, seed):
    layout = SyndromeLayout(EXP.layout.round_sizes)
    n = max(0, layout.payload_len(first, count) + extra)
    payload = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8)
    if n and pad & 1:  # half the time: a payload whose padding bits are all clear
        bits = np.zeros(layout.num_detectors_in(first, count), np.uint8)
        payload = np.frombuffer(encode_syndrome(bits, layout, stream_id=1, first_round=first,
                                                count=count), np.uint8)[HEADER_SIZE:].copy()
        if extra:
            payload = np.resize(payload, max(0, payload.shape[0] + extra))
    try:
        layout.unpack_into(np.zeros(max(1, layout.num_detectors_in(first, count)), np.uint8),
                           first, count, payload.tobytes())
        wire_ok = True
    except ProtocolError:
        wire_ok = False
    offsets = np.concatenate([[0], np.cumsum(EXP.layout.round_sizes)]).astype(np.int64)
    assert E.payload_ok(payload.copy(), 0, payload.shape[0], first, count, offsets) == wire_ok


@pytest.mark.parametrize("backend, rounds_per_packet", [
    ("uf", 1), ("uf", 3), ("uf", 7), ("uf", 10), ("bp-cluster", 1), ("bp-cluster", 5),
    ("pymatching", 1), ("pymatching", 4)])
def test_a_compiled_stream_over_zeromq_decodes_in_the_engine_with_multi_round_packets(
        running_server, offline_commits, backend, rounds_per_packet):
    exp = ENGINES[backend]
    dets, _ = exp.sample(30, seed=7)
    R = exp.layout.num_rounds
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        stream = client.open_stream(str(exp.spec), decoder=backend, window=4, commit=2,
                                    timeout_s=120)
        session = server._streams[stream.stream_id]
        assert session.engine is not None  # it compiles: the engine serves this stream
        rounds = [shot[ids] for shot in dets for ids in exp.layout.detectors]
        for a in range(0, len(rounds), rounds_per_packet):  # packets may span shots
            chunk = rounds[a:a + rounds_per_packet]
            stream.send_round(np.concatenate(chunk), count=len(chunk))
        got = []
        while sum(g[3] for g in got) < len(dets):
            c = stream.recv_correction(timeout_s=10)
            got.append((c.first_round, c.last_round, c.observables.tolist(), c.shot_end))
        # over the wire, not server.stats() from this thread: the fast path commits its
        # counters once the socket is empty, which may be after the last CORRECTION left
        stats = client.stats()
    want = offline_commits(exp, dets, 4, 2, backend)
    assert [g[:3] for g in got] == [tuple(w) for w in want]
    assert stats["errors_sent"] == 0 and stats["rounds_received"] == 30 * R


def test_a_uf_decode_failure_over_zeromq_drops_the_shot_and_the_stream_resumes(
        running_server):
    # two disconnected edges and no boundary: one fired detector cannot be explained
    dem = ("error(0.1) D0 D1\nerror(0.1) D2 D3\ndetector(0, 0) D0\ndetector(0, 1) D1\n"
           "detector(1, 0) D2\ndetector(1, 1) D3\n")
    with running_server() as server, Client(server.endpoints[0], timeout_s=30) as client:
        stream = client.open_stream(dem=dem, decoder="uf")
        assert server._streams[stream.stream_id].engine is not None
        stream.send_round(np.array([1, 0], np.uint8))
        stream.send_round(np.array([0, 0], np.uint8))  # completes the shot: no solution
        codes = []
        for _ in range(2):
            with pytest.raises(ServerError) as e:
                stream.recv_correction(timeout_s=10)
            codes.append((e.value.code, e.value.next_round))
        assert codes == [(ErrorCode.DECODER_ERROR, 2), (ErrorCode.SYNDROMES_DROPPED, 2)]
        stream.send_round(np.array([1, 1, 1, 1], np.uint8), count=2)  # next shot decodes
        c = stream.recv_correction(timeout_s=10)
        assert (c.first_round, c.last_round, c.shot_end) == (2, 3, True)


def test_a_session_failed_from_python_starts_the_next_shot_with_no_stale_events():
    """``StreamSession.fail`` (the server's answer to a decoder exception raised outside the
    engine's own no-solution path) reset the engine's round counter and carry but kept the
    failed shot's detection events (``st[ST_EVENTS]``): the next shot's window decode would
    then see them as its own."""
    from qecd.decoder.compiled_stream import ST_CARRIED, ST_EVENTS
    from qecd.transport.server.session import DecoderPool, SessionLimits, StreamSession
    from qecd.transport.wire import Hello, encode_syndrome, parse_packet

    exp = build_experiment("surface:d=3,r=5,p=0.02")
    pool = DecoderPool(SessionLimits(max_backlog=64))
    s = StreamSession(1, pool.get_or_build(Hello(dem=str(exp.dem), decoder="uf")), owner=b"A",
                      route=b"A", want_faults=False, limits=pool.limits)
    assert s.engine is not None
    s.accept()
    lay = s.layout
    first = np.ones(lay.num_detectors_in(0, 1), np.uint8)  # a round full of events
    s.begin(*parse_packet(encode_syndrome(first, lay, stream_id=1, first_round=0)))
    status, _, _, _ = s.engine_step(0, 0, 0, 0, 0)  # (the payload is copied from byte 0)
    assert status == E.STEP_DONE and s._engine_state.st[ST_EVENTS] > 0
    s.fail(0)  # as after an exception: the shot is dropped
    st_ = s._engine_state.st
    assert (st_[0], st_[ST_EVENTS], st_[ST_CARRIED]) == (0, 0, 0)
