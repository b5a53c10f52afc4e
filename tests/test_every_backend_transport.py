"""Every registered backend x {whole shot, sliding window} x {ZeroMQ, shared-memory ring}:
what a stream returns is what the same decoder returns offline on the same shots.

The backends come from the registry when the module is collected, so a backend added to it
is tested here with no edit. One real :class:`~qecd.transport.server.Server` (tcp on
127.0.0.1, random port) serves the module; a stream is opened with a real HELLO, over
ZeroMQ (:class:`~qecd.transport.client.Client`) or with ``transport="shm"`` (a real ring
pair in ``/dev/shm``). Each stream carries an all-zero shot, an all-ones shot and
stim-sampled shots, one SYNDROME per round; the CORRECTIONs must equal the commits of an
offline :class:`~qecd.decoder.window.StreamDecoder` with the same settings (round ranges
and observable flips, none lost, none twice), their per-shot XOR the offline prediction, and
in whole-shot mode also the backend's own ``decode_batch`` of the whole DEM.

Degenerate DEMs go through the same matrix where the server accepts them: no observables,
a time coordinate with no detectors, a single round; so do a detector that no error flips
(and a DEM with no errors), and the window settings at the protocol's edges (one-round
windows, commit = window, a last window of one slice). Where the server or a decoder
refuses one (no detectors at all, a hyperedge DEM for a matching backend, a syndrome no set
of faults explains) the test asserts the refusal is an ERROR whose reason names the
problem, and that nothing hangs. Defects found are ``xfail(strict=True)`` with the defect
in the reason. A slice with no detectors at all cannot be written as a DEM (the
distinct time values are the slices, docs/protocol.md §7), so it is streamed over a ring
served directly by :class:`~qecd.transport.shm.streams.ShmStreamServer`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import stim

from qecd.codes import RoundLayout, build_experiment
from qecd.decoder.registry import backend_class, backend_names, make_decoder
from qecd.decoder.window import StreamDecoder
from qecd.errors import QecdError
from qecd.transport import wire as P
from qecd.transport.client import Client, ServerError
from qecd.transport.server.session import SessionLimits

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("no_shm_leak")]

BACKENDS = backend_names()  # at collection time: a new backend is included automatically
MODES = {"whole": (None, None), "w4c2": (4, 2)}
TRANSPORTS = ("zmq", "shm")
SHOTS = 10  # sampled shots per stream, after an all-zero and an all-ones shot
TIMEOUT_S = 20.0  # any single wait (a hang fails the test, it does not stall the run)


# -- the experiments ------------------------------------------------------------------------
def _rewrite(dem: stim.DetectorErrorModel, *, time=None, drop_observables=False) -> str:
    """``dem`` flattened, with each detector's time coordinate (the last) mapped by ``time``
    and, with ``drop_observables``, every logical observable removed."""
    out = stim.DetectorErrorModel()
    for inst in dem.flattened():
        if inst.type == "logical_observable" and drop_observables:
            continue
        if inst.type == "detector" and time is not None:
            args = inst.args_copy()
            args[-1] = time(args[-1])
            inst = stim.DemInstruction("detector", args, inst.targets_copy())
        elif inst.type == "error" and drop_observables:
            parts, cur = [], []
            for t in inst.targets_copy():
                if t.is_separator():
                    parts.append(cur)
                    cur = []
                elif not t.is_logical_observable_id():
                    cur.append(t)
            parts.append(cur)
            targets = []
            for part in (p for p in parts if p):
                if targets:
                    targets.append(stim.target_separator())
                targets += part
            if not targets:
                continue
            inst = stim.DemInstruction("error", inst.args_copy(), targets)
        out.append(inst)
    return str(out)


@dataclass(frozen=True)
class Experiment:
    """What a HELLO names (a spec, or DEM text) and what the offline decode needs."""

    name: str
    spec: str | None = None
    dem_text: str | None = None
    slices: tuple[int, ...] | None = None  # the round layout the server must announce

    @property
    def dem(self) -> stim.DetectorErrorModel:
        return _dem_and_layout(self)[0]

    @property
    def layout(self) -> RoundLayout:
        return _dem_and_layout(self)[1]

    def hello(self) -> dict:
        return {"spec": self.spec} if self.spec is not None else {"dem": self.dem_text}

    def sample(self, shots: int, seed: int) -> np.ndarray:
        """An all-zero shot, an all-ones shot, then ``shots`` stim-sampled shots."""
        if self.spec is not None:
            dets, _ = build_experiment(self.spec).sample(shots, seed=seed)
        else:
            dets, _, _ = self.dem.compile_sampler(seed=seed).sample(shots)
        n = self.dem.num_detectors
        return np.concatenate([np.zeros((1, n), np.uint8), np.ones((1, n), np.uint8),
                               dets.astype(np.uint8)])


@cache
def _dem_and_layout(e: Experiment) -> tuple[stim.DetectorErrorModel, RoundLayout]:
    if e.spec is not None:
        exp = build_experiment(e.spec)
        return exp.dem, exp.layout
    dem = stim.DetectorErrorModel(e.dem_text)
    return dem, RoundLayout.from_dem(dem)


_SURFACE = "surface:d=3,r=8,p=0.02"  # 9 slices: window 4 commit 2 makes 4 windows
_SMALL = build_experiment("surface:d=3,r=4,p=0.03").dem  # the degenerate DEMs' base

EXPERIMENTS = {
    "surface": Experiment("surface", spec=_SURFACE),
    # a qLDPC code whose DEM has hyperedges (weight-3 and more): for non-matching backends
    "hgp": Experiment("hgp", spec="hgp:seed=hamming7,r=8,p=0.01"),
    "no_observables": Experiment("no_observables",
                                 dem_text=_rewrite(_SMALL, drop_observables=True),
                                 slices=(4, 8, 8, 8, 4)),
    # time coordinates 0, 1, 3, 4, 5: no detector at time 2, which is no slice (§7)
    "time_gap": Experiment("time_gap", dem_text=_rewrite(_SMALL, time=lambda t: t + (t >= 2)),
                           slices=(4, 8, 8, 8, 4)),
    "one_round": Experiment("one_round", dem_text=_rewrite(_SMALL, time=lambda t: 0.0),
                            slices=(32,)),
}


def _has_hyperedges(dem: stim.DetectorErrorModel) -> bool:
    """Whether some error has a component flipping more than two detectors."""
    for inst in dem.flattened():
        if inst.type != "error":
            continue
        n = 0
        for t in inst.targets_copy():
            if t.is_separator():
                n = 0
            elif t.is_relative_detector_id():
                n += 1
                if n > 2:
                    return True
    return False


def _decodes_graphs_only(backend: str) -> bool:
    """What the backend declares (``Decoder.graph_like``): it decodes matching graphs, so it
    refuses a DEM with hyperedges."""
    return bool(backend_class(backend).graph_like)


def _skip_reason(backend: str, e: Experiment) -> str | None:
    if _decodes_graphs_only(backend) and _has_hyperedges(e.dem):
        return (f"{backend} declares graph_like (matching) and {e.name}'s DEM has "
                "hyperedges; its refusal is test_a_matching_backend_refuses_a_hyperedge_dem")
    return None


def _matrix():
    for backend in BACKENDS:
        for ename, e in EXPERIMENTS.items():
            reason = _skip_reason(backend, e)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            for mode in MODES:
                for transport in TRANSPORTS:
                    yield pytest.param(backend, ename, mode, transport, marks=marks,
                                       id=f"{backend}-{ename}-{mode}-{transport}")


# -- the offline reference ------------------------------------------------------------------
@cache
def _offline_decoder(e: Experiment, backend: str, window, commit) -> StreamDecoder:
    return StreamDecoder(e.dem, e.layout, backend, window=window, commit=commit)


def _offline(e, backend, window, commit, dets, offline_commits):
    """Commits (absolute rounds) and per-shot predictions of the offline decode."""
    sd = _offline_decoder(e, backend, window, commit)
    commits = offline_commits(e, dets, decoder=sd)
    preds = sd.fork().decode_batch(dets)
    return commits, preds, sd


def _xor_by_shot(commits, shots, rounds_per_shot, num_observables):
    out = np.zeros((shots, num_observables), np.uint8)
    for _, last, obs in commits:
        out[last // rounds_per_shot] ^= np.asarray(obs, np.uint8)
    return out


# -- the server and the two transports ------------------------------------------------------
@pytest.fixture(scope="module")
def server(running_server):
    # a ring stream's client may compile its kernel for seconds on a cold Numba cache, with
    # the ring and ZeroMQ silent: the stream timeout is generous
    with running_server(drain_s=0.2, shutdown_linger_ms=100, record_capacity=1 << 12,
                        shm_record_capacity=1 << 12,
                        limits=SessionLimits(timeout_ms=300_000)) as srv:
        yield srv


@pytest.fixture
def client(server):
    with Client(server.endpoints[0], timeout_s=TIMEOUT_S) as c:
        yield c


def _stream_zmq(client, e, backend, window, commit, dets):
    """Open a ZeroMQ stream, send every shot round by round, collect its replies, BYE."""
    stream = client.open_stream(**e.hello(), decoder=backend, window=window, commit=commit,
                                timeout_s=60)
    try:
        assert stream.slice_sizes == e.layout.round_sizes
        replies = []
        for shot in dets:
            for ids in e.layout.detectors:
                stream.send_round(shot[ids])
            while (r := client.poll()) is not None:
                replies.append(r)
        n_shot_ends = lambda: sum(1 for r in replies  # noqa: E731
                                  if r.msg_type == P.MsgType.CORRECTION and r.body.shot_end)
        deadline = time.monotonic() + TIMEOUT_S
        while n_shot_ends() < len(dets) and time.monotonic() < deadline:
            replies.append(client.recv(timeout_s=TIMEOUT_S, raise_errors=False))
        rounds = stream.next_round
    finally:
        final = stream.close(timeout_s=TIMEOUT_S)
    while (r := client.poll()) is not None:  # nothing may follow the last correction
        replies.append(r)
    assert final == rounds == len(dets) * e.layout.num_rounds
    assert all(r.stream_id == stream.stream_id for r in replies)
    return stream.accept, replies


def _stream_shm(client, e, backend, window, commit, dets, wait_for, regions):
    """Open a ring stream with a real HELLO, stream every shot round by round over the
    ring, BYE over ZeroMQ; the region's name is gone from the moment both sides mapped it."""
    cli = client.open_shm_stream(**e.hello(), decoder=backend, window=window, commit=commit,
                                 timeout_s=60)
    acc = cli.accept
    try:
        assert acc.shm_region not in regions() and acc.slice_sizes == e.layout.round_sizes
        res = cli.stream_shots(dets, timeout_s=TIMEOUT_S)
        assert client.bye(acc.stream_id, timeout_s=TIMEOUT_S) == len(dets) * e.layout.num_rounds
    finally:
        _release(client, cli)
    return acc, res


def _release(client, cli) -> None:
    """Unmap the client's side; if the test failed before its BYE, BYE the stream too, so
    the server tears the ring down now rather than at the module's end (a stream already
    closed answers UNKNOWN_STREAM, ignored)."""
    cli.close()
    try:
        client.bye(cli.accept.stream_id, timeout_s=5)
    except QecdError:
        pass


def _check_stream(client, e, backend, window, commit, transport, dets, offline_commits,
                  wait_for, regions):
    """Stream ``dets`` and check every CORRECTION against the offline decode."""
    want, preds, sd = _offline(e, backend, window, commit, dets, offline_commits)
    R, n_obs = e.layout.num_rounds, e.layout.num_observables
    assert np.array_equal(_xor_by_shot(want, len(dets), R, n_obs), preds)
    assert not preds[0].any()  # the all-zero shot commits nothing
    if sd.window >= R:  # whole-shot streaming is the backend on the whole DEM
        assert len(want) == len(dets)
        assert np.array_equal(preds, make_decoder(backend, e.dem).decode_batch(dets))
    if transport == "zmq":
        acc, replies = _stream_zmq(client, e, backend, window, commit, dets)
        errors = [r.body for r in replies if r.msg_type != P.MsgType.CORRECTION]
        assert errors == []
        got = [(r.body.first_round, r.body.last_round, r.body.observables.tolist())
               for r in replies]
        assert [r.body.shot_end for r in replies] == [last % R == R - 1 for _, last, _ in got]
        ranges = [(f, la) for f, la, _ in got]
        lost = len(set((f, la) for f, la, _ in want) - set(ranges))
        assert (lost, len(ranges) - len(set(ranges))) == (0, 0)
        assert got == want
        streamed = _xor_by_shot(got, len(dets), R, n_obs)
    else:
        acc, res = _stream_shm(client, e, backend, window, commit, dets, wait_for, regions)
        assert acc.corrections_per_shot == len(want) // len(dets)
        assert (res.lost, res.duplicated, res.errors, res.status) == (0, 0, 0, 0)
        assert list(zip(res.corr_first.tolist(), res.corr_last.tolist(), strict=True)) == \
            [(f, la) for f, la, _ in want]
        streamed = res.predictions
    assert (acc.decoder, acc.num_observables) == (backend, n_obs)
    windowed = sd.window < R
    assert (acc.window, acc.commit) == ((sd.window, sd.commit) if windowed else (None, None))
    assert np.array_equal(streamed, preds)
    return preds


# -- the matrix -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend, experiment, mode, transport", list(_matrix()))
def test_streamed_corrections_equal_the_offline_decode(server, client, offline_commits,
                                                       wait_for, no_shm_leak, backend,
                                                       experiment, mode, transport):
    e = EXPERIMENTS[experiment]
    if e.slices is not None:
        assert e.layout.round_sizes == e.slices
    if experiment == "no_observables":
        assert e.dem.num_observables == 0 and e.dem.num_errors > 0
    dets = e.sample(SHOTS, seed=sum(map(ord, experiment)))
    w, c = MODES[mode]
    preds = _check_stream(client, e, backend, w, c, transport, dets, offline_commits,
                          wait_for, no_shm_leak)
    if e.layout.num_observables and experiment in ("surface", "hgp"):
        assert preds[2:].any(), "the sampled shots must flip observables (else vacuous)"


_CLEAR_REFUSAL = re.compile(r"\bD\d+\b|no (error|fault)")


def _accepted_or_clearly_refused(client, e, backend, window, commit, transport) -> bool:
    """HELLO: True if the server accepts the stream (closed again at once); False if it
    refuses it with BAD_HELLO naming the detector or the missing faults, in which case the
    offline build must refuse it too, with a qecd error."""
    try:
        stream = _open(client, transport, **e.hello(), decoder=backend, window=window,
                       commit=commit)
    except ServerError as err:
        assert err.code == P.ErrorCode.BAD_HELLO
        assert _CLEAR_REFUSAL.search(err.reason), err.reason
        with pytest.raises(QecdError):
            StreamDecoder(e.dem, e.layout, backend, window=window, commit=commit)
        return False
    if transport == "zmq":
        stream.close(timeout_s=TIMEOUT_S)
    else:
        _release(client, stream)
    return True


def _settings():
    """(backend, experiment, window, commit): the windows the protocol allows at the edges
    (one round, commit = window, a last window of one slice), on each backend's codes."""
    for backend in BACKENDS:
        for ename in ("surface", "hgp"):
            e = EXPERIMENTS[ename]
            reason = _skip_reason(backend, e)
            for w, c in ((1, 1), (2, 2), (8, 8), (8, 1), (3, 1)):
                marks = [pytest.mark.skip(reason=reason)] if reason else []
                yield pytest.param(backend, ename, w, c, marks=marks,
                                   id=f"{backend}-{ename}-w{w}c{c}")


@pytest.mark.parametrize("backend, experiment, window, commit", list(_settings()))
def test_every_window_setting_streams_like_offline(client, offline_commits, wait_for,
                                                    no_shm_leak, backend, experiment, window,
                                                    commit):
    """Over ZeroMQ only: the plan is built once per setting whichever transport asks, and
    the matrix above already runs every backend over the ring."""
    e = EXPERIMENTS[experiment]
    if not _accepted_or_clearly_refused(client, e, backend, window, commit, "zmq"):
        return
    dets = e.sample(SHOTS // 2, seed=window * 10 + commit)
    _check_stream(client, e, backend, window, commit, "zmq", dets, offline_commits,
                  wait_for, no_shm_leak)


# a detector that no error flips: the surface DEM plus one at time 2, and detectors alone
_ISOLATED = _rewrite(_SMALL) + f"\ndetector(9, 9, 2) D{_SMALL.num_detectors}\n"
_NO_ERRORS = "logical_observable L0\n" + "".join(
    str(i) + "\n" for i in _SMALL.flattened() if i.type == "detector")
_FAULTLESS = {
    "isolated_detector": Experiment("isolated_detector", dem_text=_ISOLATED,
                                    slices=(4, 8, 9, 8, 4)),
    "no_errors": Experiment("no_errors", dem_text=_NO_ERRORS, slices=(4, 8, 8, 8, 4)),
}


def _faultless_matrix():
    # bp-cluster used to fail here (IndexError in _bp_kernels.first_iteration for a detector
    # no error flips, BAD_HELLO on the wire); fixed in issue 12: such a detector sends no
    # message and a DEM with no faults answers 'not explained' for any flag
    for backend in BACKENDS:
        for name in _FAULTLESS:
            for transport in TRANSPORTS:
                yield pytest.param(backend, name, transport,
                                   id=f"{backend}-{name}-{transport}")


@pytest.mark.parametrize("backend, experiment, transport", list(_faultless_matrix()))
def test_a_detector_no_error_flips_streams_like_offline(client, offline_commits, wait_for,
                                                        no_shm_leak, backend, experiment,
                                                        transport):
    """A legitimate DEM (a noiseless check, or a noiseless experiment): such a detector
    never fires in sampled shots, and every other syndrome decodes as offline."""
    e = _FAULTLESS[experiment]
    assert e.layout.round_sizes == e.slices
    if not _accepted_or_clearly_refused(client, e, backend, *MODES["w4c2"], transport):
        return
    dets = e.sample(SHOTS, seed=4)[[0, *range(2, SHOTS + 2)]]  # no all-ones shot
    _check_stream(client, e, backend, *MODES["w4c2"], transport, dets, offline_commits,
                  wait_for, no_shm_leak)


# -- refusals -------------------------------------------------------------------------------
def _open(client, transport, **kw):
    if transport == "zmq":
        return client.open_stream(**kw, timeout_s=60)
    return client.open_shm_stream(**kw, timeout_s=60)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dem_without_detectors_is_refused_naming_the_problem(client, backend, transport):
    dem = "logical_observable L0\nerror(0.1) L0\n"
    with pytest.raises(ServerError) as e:
        _open(client, transport, dem=dem, decoder=backend)
    assert e.value.code == P.ErrorCode.BAD_HELLO
    assert "'dem'" in e.value.reason and "detectors" in e.value.reason
    assert client.stats()["streams_open"] == 0


def _graph_backends():
    return [b for b in BACKENDS if _decodes_graphs_only(b)]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", _graph_backends())
def test_a_matching_backend_refuses_a_hyperedge_dem(client, backend, transport):
    e = EXPERIMENTS["hgp"]
    assert _has_hyperedges(e.dem)
    with pytest.raises(ServerError) as err:
        _open(client, transport, spec=e.spec, decoder=backend)
    assert err.value.code == P.ErrorCode.BAD_HELLO
    assert "'spec'" in err.value.reason and "detectors" in err.value.reason
    assert "matching graph" in err.value.reason or "hyperedge" in err.value.reason
    assert client.stats()["streams_open"] == 0


# a one-round DEM with no boundary: three detectors on a cycle, so an odd number of
# detection events (the all-ones shot) is explained by no set of faults
_CYCLE = Experiment("cycle", dem_text="\n".join([
    "error(0.1) D0 D1", "error(0.1) D1 D2", "error(0.1) D2 D0 L0",
    "detector(0, 0) D0", "detector(1, 0) D1", "detector(2, 0) D2"]))
_CYCLE_SHOTS = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1], [0, 0, 0]], np.uint8)  # shot 1: odd
_UNEXPLAINED = ("odd parity", "not explained", "no perfect matching")


@dataclass(frozen=True)
class _Err:
    """An ERROR as the client sees it: code, the header's ``round`` and the body."""

    code: int
    round: int
    ref_type: int
    next_round: int
    reason: str


def _cycle_over_zmq(client, backend):
    """Stream ``_CYCLE_SHOTS`` over ZeroMQ: (corrections, errors) in arrival order."""
    stream = client.open_stream(dem=_CYCLE.dem_text, decoder=backend, timeout_s=60)
    got, errors = [], []
    try:
        for shot in _CYCLE_SHOTS:
            stream.send_round(shot)
        while len(got) < 3:
            r = stream.recv(timeout_s=TIMEOUT_S, raise_errors=False)
            if r.msg_type == P.MsgType.CORRECTION:
                got.append(r.body)
            else:
                b = r.body
                errors.append(_Err(b.code, r.seq, b.ref_type, b.next_round, b.reason))
    finally:
        assert stream.close(timeout_s=TIMEOUT_S) == len(_CYCLE_SHOTS)
    return got, errors


def _cycle_over_ring(client, backend):
    """Stream ``_CYCLE_SHOTS`` over a ring opened with a real HELLO: (corrections, errors)."""
    cli = client.open_shm_stream(dem=_CYCLE.dem_text, decoder=backend, timeout_s=60)
    got, errors = [], []
    try:
        lay = P.SyndromeLayout(cli.accept.slice_sizes)
        for k, shot in enumerate(_CYCLE_SHOTS):
            cli.pair.send_bytes(P.encode_syndrome(shot, lay, stream_id=cli.stream_id,
                                                  first_round=k), timeout=TIMEOUT_S)
        while len(got) < 3:
            hdr, payload = P.parse_packet(cli.pair.recv_bytes(timeout=TIMEOUT_S))
            b = P.decode_body(hdr, payload)
            if hdr.msg_type == P.MsgType.CORRECTION:
                got.append(b)
            else:
                errors.append(_Err(b.code, hdr.round, b.ref_type, b.next_round, b.reason))
        assert client.bye(cli.stream_id, timeout_s=TIMEOUT_S) == len(_CYCLE_SHOTS)
    finally:
        _release(client, cli)
    return got, errors


_CYCLE_OVER = {"zmq": _cycle_over_zmq, "shm": _cycle_over_ring}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unexplainable_syndrome_drops_its_shot_and_the_stream_carries_on(
        client, backend, transport):
    """Offline the backend raises a ValueError (qecd's DecoderError, or PyMatching's own)
    saying no set of faults explains the syndrome; on the wire the shot is dropped with
    DECODER_ERROR then SYNDROMES_DROPPED, both naming the next shot as ``next_round``, and
    the next shots decode as offline."""
    sd = _offline_decoder(_CYCLE, backend, None, None).fork()
    with pytest.raises(ValueError) as offline_error:
        sd.decode_batch(_CYCLE_SHOTS[1:2])
    assert any(s in str(offline_error.value).lower() for s in _UNEXPLAINED)
    want = sd.fork().decode_batch(_CYCLE_SHOTS[[0, 2, 3]])
    got, errors = _CYCLE_OVER[transport](client, backend)
    assert [(c.first_round, c.last_round, c.shot_end) for c in got] == [
        (0, 0, True), (2, 2, True), (3, 3, True)]
    assert np.array_equal(np.array([c.observables for c in got]), want)
    assert [(x.code, x.next_round) for x in errors] == [
        (P.ErrorCode.DECODER_ERROR, 2), (P.ErrorCode.SYNDROMES_DROPPED, 2)]
    if transport == "zmq":  # the reasons name the backend, the failure and the lost rounds
        assert backend in errors[0].reason
        assert any(s in errors[0].reason.lower() for s in _UNEXPLAINED)
        assert "rounds 1..1" in errors[1].reason


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_ring_decoder_error_names_the_decoder_and_the_failure(client, backend):
    """A shared-memory loop's ERRORs carried one fixed reason per code (at most 64 bytes):
    over the ring DECODER_ERROR did not say which decoder failed or why, nor
    SYNDROMES_DROPPED which rounds were lost; over ZeroMQ both do (docs/protocol.md §1, §14:
    the loops answer identically). Now the ring's reasons are the ZeroMQ server's."""
    _, errors = _cycle_over_ring(client, backend)
    assert [x.code for x in errors] == [P.ErrorCode.DECODER_ERROR,
                                        P.ErrorCode.SYNDROMES_DROPPED]
    assert backend in errors[0].reason
    assert any(s in errors[0].reason.lower() for s in _UNEXPLAINED)
    assert "rounds 1..1" in errors[1].reason
    _, over_zmq = _cycle_over_zmq(client, backend)
    for ring, zmq in zip(errors, over_zmq, strict=True):  # the same words, stream ids aside
        assert re.sub(r"stream \d+", "stream N", ring.reason) == \
            re.sub(r"stream \d+", "stream N", zmq.reason)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_decoder_error_is_headed_the_same_over_both_transports(client, backend):
    _, over_zmq = _cycle_over_zmq(client, backend)
    _, over_ring = _cycle_over_ring(client, backend)
    head = lambda errs: [(x.code, x.round, x.ref_type, x.next_round) for x in errs]  # noqa: E731
    assert head(over_zmq) == head(over_ring)


# -- a slice with no detectors (not expressible as a DEM: served directly over a ring) -------
_EMPTY_AT = {"first": 0, "middle": 2, "last": 5}


@pytest.mark.parametrize("where", _EMPTY_AT)
@pytest.mark.parametrize("mode", [*MODES, "w2c1"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_slice_streams_over_a_ring_like_offline(offline_commits, no_shm_leak,
                                                         backend, mode, where):
    """One slice of the layout has no detectors: its SYNDROMEs carry 0 bytes, a window may
    consist of it alone (w2c1), and the ring's corrections equal the offline decode."""
    from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

    w, c = MODES.get(mode, (2, 1))
    base = build_experiment("surface:d=3,r=4,p=0.03")
    k, lay = _EMPTY_AT[where], base.layout
    layout = RoundLayout(lay.detectors[:k] + (np.zeros(0, np.int32),) + lay.detectors[k:],
                         lay.num_observables, tuple(float(t) for t in range(lay.num_rounds + 1)))
    sizes = [4, 8, 8, 8, 4]
    assert layout.round_sizes == tuple(sizes[:k] + [0] + sizes[k:])
    dets = Experiment("empty_slice", spec="surface:d=3,r=4,p=0.03").sample(SHOTS, seed=5)
    sd = StreamDecoder(base.dem, layout, backend, window=w, commit=c)
    want = sd.fork().decode_batch(dets)
    commits = offline_commits(SimpleNamespace(dem=base.dem, layout=layout), dets, decoder=sd)
    if mode == "whole":
        assert np.array_equal(want, make_decoder(backend, base.dem).decode_batch(dets))
    srv = ShmStreamServer(sd.compile() or sd, stream_id=7, n_slots=64,
                          record_capacity=1024)
    try:
        srv.start()
        cli = ShmStreamClient.attach(srv.region_name, layout, stream_id=7,
                                     corrections_per_shot=srv.corrections_per_shot)
        try:
            res = cli.stream_shots(dets, timeout_s=TIMEOUT_S)
            cli.bye()
            srv.join(10)
        finally:
            cli.close()
    finally:
        assert srv.close(timeout=10)
    assert (res.lost, res.duplicated, res.errors, res.status) == (0, 0, 0, 0)
    assert list(zip(res.corr_first.tolist(), res.corr_last.tolist(), strict=True)) == \
        [(f, la) for f, la, _ in commits]
    assert np.array_equal(res.predictions, want)
    assert srv.counters()["rounds"] == len(dets) * layout.num_rounds
