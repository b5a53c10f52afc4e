"""The emulator: ``qecd serve`` in one process, ``qecd emulate`` in another, and the report.

Every correction arrives exactly once, the wire decode equals the offline decode of the same
shots, the JSON report follows schema ``qecd.emulate/1``, and ``qecd emulate`` exits non-zero
when something is lost.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qecd.bench.emulator import SCHEMA, EmulateConfig, run_emulation
from qecd.codes import build_experiment

pytestmark = pytest.mark.timeout(180)

SUMMARY_KEYS = {"count", "p50_us", "p99_us", "p99.9_us", "max_us"}


def _emulate(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "qecd", "emulate", *args],
                          capture_output=True, text=True, timeout=timeout)


def _check_schema(r):
    for key in ("schema", "spec", "dem", "decoder", "window", "commit", "shots", "streams",
                "rounds_sent", "corrections_expected", "corrections_received", "lost",
                "duplicated", "ler_wire", "ler_offline", "mismatches", "service_time",
                "reaction_time", "bare_round_trip", "machine", "seeds", "ok", "failures"):
        assert key in r, key
    assert r["schema"] == SCHEMA
    for key in ("service_time", "reaction_time", "bare_round_trip"):
        assert SUMMARY_KEYS <= set(r[key]), key
    for key in ("ler_wire", "ler_offline"):
        assert set(r[key]) >= {"failures", "shots", "rate", "ci95"}


def test_serve_and_emulate_in_two_processes(tmp_path, serve_subprocess):
    proc, ep = serve_subprocess(tmp_path)
    try:
        out = _emulate("--connect", ep, "--spec", "surface:d=3,r=6,p=0.01", "--shots", "300",
                       "--streams", "2", "--window", "4", "--commit", "2",
                       "--rtt-samples", "100", "--json", str(tmp_path / "r.json"))
        whole = _emulate("--connect", ep, "--spec", "surface:d=3,p=0.01", "--shots", "200",
                         "--rtt-samples", "50")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert out.returncode == 0, out.stdout + out.stderr
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert "OK" in out.stdout.splitlines()[0]
    r = json.loads((tmp_path / "r.json").read_text())
    _check_schema(r)
    assert (r["lost"], r["duplicated"], r["unexpected"], r["mismatches"]) == (0, 0, 0, 0)
    assert (r["window"], r["commit"], r["streams"], r["rounds_per_shot"]) == (4, 2, 2, 7)
    assert r["rounds_sent"] == 300 * 7 and r["corrections_received"] == r["corrections_expected"]
    assert r["ler_wire"] == r["ler_offline"] and r["ok"] and not r["failures"]
    assert r["service_time"]["count"] == 300 * 7  # the server's own per-round record
    assert r["reaction_time"]["count"] == r["corrections_received"]


def test_emulate_a_dem_file_paced(tmp_path, running_server):
    exp = build_experiment("repetition:d=5,r=4,p=0.03")
    path = tmp_path / "rep.dem"
    path.write_text(str(exp.dem))
    with running_server() as server:
        r = run_emulation(EmulateConfig(connect=server.endpoints[0], dem_path=str(path),
                                        shots=60, cycle_us=200.0, rtt_samples=20, seed=4))
    _check_schema(r)
    assert r["ok"], r["failures"]
    assert r["mode"] == "paced" and r["dem"] == str(path) and r["rounds_per_shot"] == 5
    assert r["corrections_received"] == 60 and r["ler_wire"] == r["ler_offline"]
    # the raw samples behind the summaries (for plots), never in the JSON
    raw = r["_samples"]
    assert len(raw["reaction_ns"]) == 60 == r["reaction_time"]["count"]
    assert len(raw["rtt_ns"]) == r["bare_round_trip"]["count"]
    from qecd.bench.emulator import write_report

    write_report(r, str(tmp_path / "paced.json"))
    assert "_samples" not in json.loads((tmp_path / "paced.json").read_text())


def test_emulate_exits_non_zero_when_the_server_is_gone(tmp_path):
    out = _emulate("--connect", f"ipc://{tmp_path}/nobody.sock", "--spec",
                   "repetition:d=3,r=2,p=0.01", "--shots", "5", "--timeout", "1",
                   "--rtt-samples", "1", timeout=60)
    assert out.returncode != 0
    assert "no reply" in out.stderr


def test_a_server_killed_mid_run_still_gets_a_report_with_unanswered_shots_lost(
        tmp_path, serve_subprocess, wait_for):
    """Issue 13 defect 7: ``qecd emulate`` wrote no JSON report when the server went away,
    and counted unanswered shots as mismatches. Now the report is written: unanswered shots
    are counted as such (their corrections as lost) and only answered shots are compared."""
    import signal
    import threading

    proc, ep = serve_subprocess(tmp_path)
    out = tmp_path / "r.json"
    result = {}

    def emulate():
        result["p"] = _emulate("--connect", ep, "--spec", "repetition:d=3,r=2,p=0.05",
                               "--shots", "400", "--cycle-us", "10000", "--rtt-samples", "10",
                               "--timeout", "3", "--json", str(out))

    from qecd.transport.client import Client

    # the server answers once its kernels are warm; then sampling, offline decode, HELLO, and
    # some paced shots are answered: watched, not slept on (start-ups take longer on a loaded
    # machine)
    watcher = Client(ep, timeout_s=60)
    watcher.stats()
    t = threading.Thread(target=emulate)
    t.start()
    try:
        assert wait_for(lambda: watcher.stats()["corrections_sent"] >= 10, timeout_s=120,
                        poll_s=0.1)
        watcher.close()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:  # the watch failed: stop the server all the same
            proc.kill()
            proc.wait(30)
        proc.stderr.close()
        t.join(120)
        watcher.close()
    # lost corrections are a correctness failure: exit 3 (qecd.exit_codes.ExitCode.INCORRECT)
    assert result["p"].returncode == 3, result["p"].stdout + result["p"].stderr
    r = json.loads(out.read_text())
    assert 0 < r["shots_unanswered"] < 400 and r["lost"] > 0
    assert r["mismatches"] == 0 and r["ok"] is False
    assert r["ler_wire"]["shots"] == 400 - r["shots_unanswered"]
