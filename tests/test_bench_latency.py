"""qecd bench latency: service and emulator in separate processes; the exit code follows the
budget; the JSON schema is stable."""

import json

import pytest

from qecd.cli import main


@pytest.mark.parametrize("budget, code", [(1e6, 0), (1e-6, 1)])
def test_shm_exit_code_follows_the_budget(tmp_path, budget, code):
    out = tmp_path / "lat.json"
    rc = main(["bench", "latency", "--spec", "repetition:d=3,r=3,p=0.01", "--shots", "300",
               "--ping", "300", "--no-pin", "--budget-us", str(budget), "--json", str(out),
               "--plot", str(tmp_path)])
    assert rc == code
    r = json.loads(out.read_text())
    assert r["schema"] == "qecd.bench.latency/1" and r["transport"] == "shm"
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    assert r["rounds"] == 300 * 4 and r["budget"]["met"] == (code == 0)
    for key in ("service", "reaction", "bare_round_trip", "lag"):
        assert r["latency_us"][key]["count"] > 0
    assert (tmp_path / "latency_ccdf.png").stat().st_size > 5000
    assert (tmp_path / "service_series.png").stat().st_size > 5000


def test_zmq_transport_through_qecd_serve(tmp_path):
    out = tmp_path / "latz.json"
    rc = main(["bench", "latency", "--transport", "zmq", "--decoder", "pymatching", "--spec",
               "repetition:d=3,r=3,p=0.01", "--shots", "200", "--ping", "200", "--no-pin",
               "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["transport"] == "zmq" and r["corrections_received"] == 200
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    assert r["latency_us"]["service"]["count"] == 800


def test_shm_refuses_a_decoder_it_does_not_compile():
    assert main(["bench", "latency", "--decoder", "pymatching", "--shots", "10"]) == 2
