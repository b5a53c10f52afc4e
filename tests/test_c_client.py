"""The C client (clients/c) built with the system C compiler against libzmq and run for real:
it checks docs/protocol_vectors.json in both directions, and its example streams sampled
d=5 surface-code shots to a real ``qecd serve`` on loopback over ZeroMQ and over the
shared-memory rings, whole shot and window 10 commit 5, with every correction equal to an
offline decode of the same shots (none lost, duplicated or different)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
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
    check.write_b8(path, dets[:, check.wire_order(exp)])
    return exp, dets, path


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
    assert int(summary["pings"]) == 50 and int(summary["errors"]) == 0
    result = check.compare(expected, check.read_corrections(out))
    assert result == {"expected": len(expected), "received": len(expected), "lost": 0,
                      "duplicated": 0, "mismatched": 0, "unexpected": 0}
    per_shot = 1 if w is None else len(expected) // SHOTS
    assert len(expected) == SHOTS * per_shot and (w is None or per_shot == 10)


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
