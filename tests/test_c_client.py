"""The C client (clients/c) built with the system C compiler against libzmq and run for real:
it checks docs/protocol_vectors.json in both directions, and its example streams sampled
d=5 surface-code shots to a real ``qecd serve`` on loopback over ZeroMQ and over the
shared-memory rings, whole shot and window 10 commit 5, with every correction equal to an
offline decode of the same shots (none lost, duplicated or different)."""

from __future__ import annotations

import importlib.util
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest
import stim
from protocol_vectors import c_lines, load

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("c_client_check", ROOT / "clients/c/check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

SPEC = "surface:d=5,r=50,p=0.003"
SHOTS = 2000

missing = check.toolchain_missing()
pytestmark = pytest.mark.skipif(missing is not None, reason=str(missing))


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return check.build(tmp_path_factory.mktemp("c-client") / "build")


def _run_vectors(build_dir: Path, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(build_dir / "qecd_vectors")], input=text, capture_output=True,
                          text=True, timeout=60)


def test_the_c_codec_matches_every_vector_both_ways(build_dir):
    p = _run_vectors(build_dir, c_lines(load()))
    assert p.returncode == 0, p.stdout
    assert p.stdout.count("ok ") == len(load())


def test_the_c_vector_check_catches_a_wrong_byte_and_a_wrong_field(build_dir):
    vecs = load()
    corrupt = [dict(v) for v in vecs]
    # one byte of the SYNDROME payload flipped (a detector the fields do not list)
    syn = next(v for v in corrupt if v["name"] == "syndrome_2_rounds")
    syn["hex"] = syn["hex"][:-2] + "81"
    # the CORRECTION's listed observable differs from its bytes
    cor = next(v for v in corrupt if v["name"] == "correction")
    cor["body"] = dict(cor["body"], observables=[0])
    p = _run_vectors(build_dir, c_lines(corrupt))
    assert p.returncode == 2, p.stdout
    assert "FAIL syndrome_2_rounds" in p.stdout and "FAIL correction:" in p.stdout


@pytest.fixture(scope="module")
def serve():
    with check.ServeProcess() as s:
        yield s


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    from qecd.codes import build_experiment

    exp = build_experiment(SPEC)
    dets, _ = exp.sample(SHOTS, seed=14)
    path = tmp_path_factory.mktemp("shots") / "shots.b8"
    check.write_b8(path, dets)  # DEM order, as stim writes it
    return exp, dets, path


@pytest.mark.parametrize("window", ["whole", "10:5"])
def test_the_c_example_drops_its_connection_mid_shot_and_resumes_with_the_token(
        build_dir, serve, shots, tmp_path, window):
    """docs/protocol.md §6.9 from C: after round K-1 (mid-shot) the example closes its
    session without BYE, opens a new one and resumes with the ACCEPT's resume_token at the
    server's next_round; every CORRECTION matches the offline decode, none lost."""
    exp, dets, path = shots
    w, c = check.parse_window(window)
    expected = check.offline_commits(exp, dets, "pymatching", w, c)
    cut = 2 * exp.layout.num_rounds + exp.layout.num_rounds // 2
    out = tmp_path / "corrections.txt"
    summary = check.run_c(build_dir, serve.endpoint, SPEC, path, out, transport="zmq",
                          decoder="pymatching", window=w, commit=c, resume_after=cut)
    assert summary["returncode"] == 0, summary["stderr"]
    assert summary["resumed_at"] == str(cut) and int(summary["errors"]) == 0
    assert summary["bye_round"] == str(SHOTS * exp.layout.num_rounds)
    result = check.compare(expected, check.read_corrections(out))
    assert result == {"expected": len(expected), "received": len(expected), "lost": 0,
                      "duplicated": 0, "mismatched": 0, "unexpected": 0}


@pytest.mark.parametrize("k, inflight", [(7, 0), (64, 0), (40, 48)])
def test_the_c_example_sends_k_rounds_per_packet_and_resumes_between_packets(
        build_dir, serve, shots, tmp_path, k, inflight):
    """--rounds-per-packet K: K consecutive rounds per SYNDROME, gathered round by round with
    qecd_batch (packets span shots; the last is shorter), every CORRECTION as the offline
    decode's, with a resume mid-shot (the packet before it is cut short at the resume
    round); K near --inflight does not stall on a window's uncommitted rounds."""
    exp, dets, path = shots
    w, c = 10, 5
    expected = check.offline_commits(exp, dets, "pymatching", w, c)
    cut = 2 * exp.layout.num_rounds + exp.layout.num_rounds // 2 + 3
    out = tmp_path / "corrections.txt"
    summary = check.run_c(build_dir, serve.endpoint, SPEC, path, out, transport="zmq",
                          decoder="pymatching", window=w, commit=c, resume_after=cut,
                          rounds_per_packet=k, inflight=inflight)
    assert summary["returncode"] == 0, summary["stderr"]
    total = SHOTS * exp.layout.num_rounds
    assert summary["rounds_per_packet"] == str(k) and int(summary["errors"]) == 0
    assert summary["resumed_at"] == str(cut) and summary["bye_round"] == str(total)
    # ceil(cut / K) packets before the resume, ceil((total - cut) / K) after it
    assert int(summary["packets"]) == -(-cut // k) + -(-(total - cut) // k)
    result = check.compare(expected, check.read_corrections(out))
    assert result == {"expected": len(expected), "received": len(expected), "lost": 0,
                      "duplicated": 0, "mismatched": 0, "unexpected": 0}


def test_the_c_example_refuses_k_rounds_per_packet_over_a_ring(build_dir, tmp_path):
    p = subprocess.run([str(build_dir / "qecd_stream"), "--connect", "tcp://127.0.0.1:1",
                        "--spec", SPEC, "--in", str(tmp_path / "none"), "--transport", "shm",
                        "--rounds-per-packet", "4"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "over zmq only" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("window", ["whole", "10:5"])
@pytest.mark.parametrize("transport", ["zmq", "shm"])
def test_the_c_example_streams_every_shot_and_matches_the_offline_decode(
        build_dir, serve, shots, tmp_path, transport, window):
    exp, dets, path = shots
    w, c = check.parse_window(window)
    expected = check.offline_commits(exp, dets, "pymatching", w, c)
    out = tmp_path / "corrections.txt"
    summary = check.run_c(build_dir, serve.endpoint, SPEC, path, out, transport=transport,
                          decoder="pymatching", window=w, commit=c, ping=50)
    assert summary["returncode"] == 0, summary["stderr"]
    assert summary["transport"] == transport and int(summary["shot_ends"]) == SHOTS
    assert summary["described"] == "1"  # rounds gathered with the ACCEPT's slice_detectors
    assert summary["bye_round"] == str(SHOTS * exp.layout.num_rounds)  # over the ring too
    assert int(summary["pings"]) == 50 and int(summary["errors"]) == 0
    result = check.compare(expected, check.read_corrections(out))
    assert result == {"expected": len(expected), "received": len(expected), "lost": 0,
                      "duplicated": 0, "mismatched": 0, "unexpected": 0}
    per_shot = 1 if w is None else len(expected) // SHOTS
    assert len(expected) == SHOTS * per_shot and (w is None or per_shot == 10)


@pytest.mark.slow
@pytest.mark.parametrize("window", ["whole", "10:5"])
def test_the_c_example_sends_raw_measurements_and_gets_the_detection_event_corrections(
        build_dir, serve, tmp_path, window):
    from qecd.codes import build_experiment

    exp = build_experiment(SPEC)
    meas, dets = check.sample_measurements(exp, 1000, seed=21)
    check.write_b8(tmp_path / "measurements.b8", meas)
    w, c = check.parse_window(window)
    expected = check.offline_commits(exp, dets, "pymatching", w, c)
    out = tmp_path / "corrections.txt"
    summary = check.run_c(build_dir, serve.endpoint, SPEC, tmp_path / "measurements.b8", out,
                          transport="zmq", decoder="pymatching", window=w, commit=c,
                          input="measurements")
    assert summary["returncode"] == 0 and summary["input"] == "measurements", summary["stderr"]
    result = check.compare(expected, check.read_corrections(out))
    assert (result["lost"], result["duplicated"], result["mismatched"], result["unexpected"],
            result["received"]) == (0, 0, 0, 0, len(expected))


def _permuted_dem(dem: stim.DetectorErrorModel, perm: np.ndarray) -> stim.DetectorErrorModel:
    """The same model with detector i renamed perm[i] (rounds no longer contiguous ids)."""
    def t(x):
        return stim.target_relative_detector_id(int(perm[x.val])) \
            if x.is_relative_detector_id() else x
    out = stim.DetectorErrorModel()
    for inst in dem.flattened():
        if inst.type in ("error", "detector"):
            out.append(inst.type, inst.args_copy(), [t(x) for x in inst.targets_copy()])
        else:
            out.append(inst)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["zmq", "shm"])
def test_the_c_example_maps_dem_ordered_shots_to_rounds_with_slice_detectors(
        build_dir, serve, tmp_path, transport):
    """A DEM whose rounds' detectors are scattered over the ids: the example must gather
    each round's bits through the ACCEPT's slice_detectors (plain splitting would fail)."""
    from qecd.codes import RoundLayout, build_experiment

    base = build_experiment("surface:d=3,r=6,p=0.01")
    perm = np.random.default_rng(3).permutation(base.dem.num_detectors)
    dem = _permuted_dem(base.dem, perm)
    layout = RoundLayout.from_dem(dem)
    assert not np.array_equal(np.concatenate(layout.detectors), np.arange(dem.num_detectors))
    dets, _, _ = dem.compile_sampler(seed=5).sample(400)
    dets = dets.astype(np.uint8)
    (tmp_path / "model.dem").write_text(str(dem))
    check.write_b8(tmp_path / "shots.b8", dets)
    exp = types.SimpleNamespace(dem=dem, layout=layout)
    for w, c in ((None, None), (4, 2)):
        expected = check.offline_commits(exp, dets, "pymatching", w, c)
        out = tmp_path / f"corr-{w}.txt"
        summary = check.run_c(build_dir, serve.endpoint, None, tmp_path / "shots.b8", out,
                              transport=transport, decoder="pymatching", window=w, commit=c,
                              dem_path=tmp_path / "model.dem")
        assert summary["returncode"] == 0 and summary["described"] == "1", summary["stderr"]
        result = check.compare(expected, check.read_corrections(out))
        assert (result["lost"], result["duplicated"], result["mismatched"],
                result["unexpected"]) == (0, 0, 0, 0), result
        assert result["received"] == len(expected) > 0


def test_the_comparison_counts_losses_duplicates_and_mismatches():
    expected = {(0, 4): (0, "0"), (5, 9): (1, "1")}
    got = [(0, 4, 0, "0", 0, 0), (0, 4, 0, "0", 0, 0), (5, 9, 1, "0", 0, 0), (10, 14, 0, "0", 0, 0)]
    assert check.compare(expected, got) == {"expected": 2, "received": 4, "lost": 0,
                                            "duplicated": 1, "mismatched": 1, "unexpected": 1}
    assert check.compare(expected, got[:1])["lost"] == 1


def test_a_missing_toolchain_is_reported_with_the_install_line(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert check.toolchain_missing() == f"no C compiler (cc/gcc): {check.APT_LINE}"
    assert check.APT_LINE == "apt-get install -y gcc libzmq3-dev pkg-config"
