"""Measurement input (HELLO ``input="measurements"``, docs/protocol.md §6.3.1): the compiled
XOR tables reproduce stim's own measurement-to-detection conversion, and a stream fed raw
measurements commits exactly what a stream fed the same shots' detection events commits;
streams open by circuit text; every unusable combination is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.codes.measurements import MeasurementLayout
from qecd.transport import wire as P
from qecd.transport.client import Client, ServerError
from qecd.transport.server import Server, ServerConfig


@pytest.fixture(scope="module")
def server():
    srv = Server(ServerConfig(binds=("tcp://127.0.0.1:0",), drain_s=0.2,
                              shutdown_linger_ms=100))
    srv.start_thread()
    try:
        yield srv
    finally:
        srv.stop()


def _sample(exp, shots, seed):
    meas = exp.circuit.compile_sampler(seed=seed).sample(shots).astype(np.uint8)
    dets = exp.circuit.compile_m2d_converter().convert(
        measurements=meas.astype(bool), append_observables=False).astype(np.uint8)
    return meas, dets


@pytest.mark.parametrize("spec", ["surface:d=5,r=6,p=0.01", "surface:d=3,r=4,p=0.02,basis=x",
                                  "surface:d=3,r=3,p=0.01,noise=si1000",
                                  "repetition:d=5,r=4,p=0.05"])
def test_tables_reproduce_stims_conversion_including_reference_parities(spec):
    exp = build_experiment(spec)
    ml = MeasurementLayout.from_circuit(exp.circuit, exp.layout)
    meas, dets = _sample(exp, 64, seed=11)
    assert np.array_equal(ml.convert_shots(meas), dets)
    assert sum(ml.slice_sizes) == exp.circuit.num_measurements
    assert len(ml.slice_sizes) == exp.layout.num_rounds


def test_round_t_needs_only_the_measurements_of_rounds_up_to_t():
    exp = build_experiment("surface:d=3,r=4,p=0.01")
    ml = MeasurementLayout.from_circuit(exp.circuit, exp.layout)
    meas, dets = _sample(exp, 8, seed=2)
    out = np.zeros(64, np.uint8)
    for t in range(exp.layout.num_rounds):
        partial = meas[0].copy()
        partial[ml.offsets[t + 1]:] = 1  # later rounds: garbage that must not matter
        n = ml.convert_round(partial, t, out)
        a, b = ml.round_det_start[t], ml.round_det_start[t + 1]
        assert n == b - a and np.array_equal(out[:n], dets[0, a:b])


def _stream_all(stream, rows, sizes):
    off = np.concatenate([[0], np.cumsum(sizes)])
    for row in rows:
        for t in range(len(sizes)):
            stream.send_round(row[off[t]:off[t + 1]])


def _collect(stream, n):
    return [(c.first_round, c.last_round, c.observables.tolist(), c.shot_end)
            for c in (stream.recv_correction(timeout_s=30) for _ in range(n))]


@pytest.mark.parametrize("decoder", ["pymatching", "uf"])
@pytest.mark.parametrize("window", [None, 4])
def test_same_shots_as_measurements_and_as_detection_events_give_identical_corrections(
        server, window, decoder):
    spec = "surface:d=5,r=8,p=0.01"
    exp = build_experiment(spec)
    meas, dets = _sample(exp, 120, seed=7)
    commit = None if window is None else 2
    with Client(server.endpoints[0], timeout_s=60) as client:
        m = client.open_stream(spec, window=window, commit=commit, input="measurements",
                               decoder=decoder)
        d = client.open_stream(spec, window=window, commit=commit, decoder=decoder)
        assert m.accept.measurement_slice_sizes == MeasurementLayout.from_circuit(
            exp.circuit, exp.layout).slice_sizes
        assert m.accept.slice_sizes == d.accept.slice_sizes  # still the detectors per round
        assert d.accept.measurement_slice_sizes is None
        per_shot = len(P.committed_ranges(exp.layout.num_rounds, window, commit))
        _stream_all(m, meas, m.accept.measurement_slice_sizes)
        got_m = _collect(m, 120 * per_shot)
        _stream_all(d, dets, exp.layout.round_sizes)
        got_d = _collect(d, 120 * per_shot)
        assert got_m == got_d
        assert sum(any(o) for *_, o, end in got_m if end) > 0  # not all-trivial shots
        m.close()
        d.close()


def test_a_stream_opened_by_circuit_text_decodes_like_the_spec(server):
    spec = "surface:d=3,r=5,p=0.01"
    exp = build_experiment(spec)
    meas, dets = _sample(exp, 60, seed=4)
    with Client(server.endpoints[0], timeout_s=60) as client:
        c = client.open_stream(circuit=str(exp.circuit), input="measurements", describe=True)
        s = client.open_stream(spec)
        assert c.accept.slice_sizes == s.accept.slice_sizes
        assert c.accept.slice_detectors == tuple(tuple(int(i) for i in ids)
                                                 for ids in exp.layout.detectors)
        _stream_all(c, meas, c.accept.measurement_slice_sizes)
        _stream_all(s, dets, exp.layout.round_sizes)
        assert _collect(c, 60) == _collect(s, 60)


@pytest.mark.parametrize("keys,match", [
    ({"dem": "error(0.1) D0\ndetector(0, 0) D0\n", "input": "measurements"}, "'input'"),
    ({"spec": "surface:d=3", "input": "measurements", "transport": "shm"}, "'input'"),
    ({"spec": "bb:n=72,r=2", "decoder": "bp-cluster", "input": "measurements"},
     "without a circuit"),
    ({"spec": "surface:d=3", "input": "raw"}, "'input'"),
    ({"spec": "surface:d=3", "circuit": "M 0\n"}, "exactly one"),
    ({"circuit": "NOT_A_GATE 0\n"}, "'circuit'"),
])
def test_unusable_measurement_requests_are_refused_by_name(server, keys, match):
    import msgpack

    with Client(server.endpoints[0], timeout_s=60) as client:
        client.send_frame(P.encode_frame(P.MsgType.HELLO, msgpack.packb(keys), seq=9))
        with pytest.raises(ServerError, match=match) as e:
            client.recv(timeout_s=60)
        assert e.value.code == P.ErrorCode.BAD_HELLO


def test_surface_rounds_carry_their_ancillas_and_the_last_the_data_qubits():
    """docs/protocol.md §6.3.1: surface:d=5 rounds carry 24 measurements, the last 25."""
    exp = build_experiment("surface:d=5,r=10,p=0.001")
    ml = MeasurementLayout.from_circuit(exp.circuit, exp.layout)
    assert ml.slice_sizes == (24,) * 10 + (25,)


def test_a_wrong_sized_measurement_syndrome_names_measurements_not_detectors(server):
    """A measurement stream's SYNDROME of the wrong size is refused in its own unit: the
    bits are raw measurements (the reason said "detectors", the vendor's reading of it was
    that the layout was wrong)."""
    with Client(server.endpoints[0]) as client:
        m = client.open_stream("repetition:d=3,r=2,p=0.01", input="measurements")
        sizes = m.accept.measurement_slice_sizes
        bad = P.encode_frame(P.MsgType.SYNDROME, bytes((sizes[0] + 7) // 8 + 1),
                             stream_id=m.stream_id, seq=0, count=1)
        client.send_frame(bad)
        assert client.socket.poll(5000)
        h, body = P.parse_packet(client.socket.recv())
        e = P.decode_error(h, body)
        assert e.code == P.ErrorCode.BAD_PAYLOAD
        assert f"with {sizes[0]} measurements" in e.reason and "detectors" not in e.reason, e
