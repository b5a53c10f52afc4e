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
               "--plot", str(tmp_path), "--stall-s", "0.1"])
    assert rc == code
    r = json.loads(out.read_text())
    assert r["schema"] == "qecd.bench.latency/1" and r["transport"] == "shm"
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    assert r["rounds"] == 300 * 4 and r["budget"]["met"] == (code == 0)
    for key in ("service", "reaction", "bare_round_trip", "lag", "reaction_until_reply_ready",
                "reaction_server_side", "emulator_write_delay"):
        assert r["latency_us"][key]["count"] > 0
    # the part of the reaction time spent before the correction was on the ring is a part
    ready, reaction = r["latency_us"]["reaction_until_reply_ready"], r["latency_us"]["reaction"]
    assert ready["count"] == reaction["count"] == 300 and r["reaction_breakdown_note"] is None
    assert r["latency_us"]["reaction_server_side"]["count"] == 300
    stalls = r["platform_stalls"]["cpus"]
    assert len(stalls) == 2 and all(c["seconds"] == 0.1 for c in stalls)
    assert (tmp_path / "latency_ccdf.png").stat().st_size > 5000
    assert (tmp_path / "service_series.png").stat().st_size > 5000


def test_zmq_transport_through_qecd_serve(tmp_path):
    out = tmp_path / "latz.json"
    rc = main(["bench", "latency", "--transport", "zmq", "--decoder", "pymatching", "--spec",
               "repetition:d=3,r=3,p=0.01", "--shots", "200", "--ping", "200", "--no-pin",
               "--serve-arg=--io-thread-nice=0", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["transport"] == "zmq" and r["corrections_received"] == 200
    assert r["serve_args"] == ["--io-thread-nice=0"]
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    assert r["latency_us"]["service"]["count"] == 800


def test_shm_with_pymatching_leaves_numba_only_to_decode(tmp_path):
    out = tmp_path / "latp.json"
    rc = main(["bench", "latency", "--decoder", "pymatching", "--spec",
               "surface:d=3,r=6,p=0.01", "--window", "4", "--commit", "2", "--shots", "200",
               "--ping", "200", "--no-pin", "--stall-s", "0", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["transport"] == "shm" and r["decoder"] == "pymatching"
    assert (r["lost"], r["duplicated"], r["mismatches_vs_offline"]) == (0, 0, 0)
    assert r["corrections_received"] == r["corrections_expected"] == 200 * 3
    assert r["platform_stalls"] is None


def test_serve_args_are_for_the_zmq_server_only():
    from qecd.bench.latency import run_latency
    from qecd.errors import QecdError

    with pytest.raises(QecdError, match="serve_args: arguments for the qecd serve of "
                                        "transport 'zmq'"):
        run_latency("repetition:d=3,r=3,p=0.01", transport="shm", shots=10,
                    serve_args=("--io-thread-nice=0",))


def test_unknown_decoder_is_a_usage_error():
    assert main(["bench", "latency", "--decoder", "nonesuch", "--shots", "10",
                 "--stall-s", "0"]) == 2


def test_backlog_verdict_tells_drained_stalls_from_a_growing_lag():
    import numpy as np

    from qecd.bench.latency import _backlog_trend

    def _kept_up(lag_ns, cycle_us):
        return _backlog_trend(lag_ns, cycle_us)["kept_up"]

    rounds = np.arange(100_000)
    stalls = np.where((rounds % 20_000) < 3000, 3000 - (rounds % 20_000), 0) * 1000  # ns
    assert _kept_up(stalls, 1.0) is True  # a 3 ms stall every 20 ms, drained each time
    assert _kept_up(rounds * 200, 1.0) is False  # 0.2 us more behind per round
    assert _kept_up(stalls, 0.0) is None  # unpaced: no offered rate to keep up with


def test_reaction_breakdown_is_omitted_when_records_do_not_map_to_rounds():
    import numpy as np

    from qecd.bench.latency import _reaction_breakdown

    warm, n = 4, 8
    lag = np.arange(warm + n, dtype=np.int64) * 10
    emu = {"warm_rounds": warm, "errors": 0, "corr_round": np.array([7, 11]),
           "corr_service_ns": np.array([100, 200]), "send_ns": np.arange(n) * 1000,
           "write_ns": np.arange(n) * 1000 + 5}
    ready, server, note = _reaction_breakdown({"lag_ns": lag, "records_total": warm + n},
                                              emu, n)
    assert note is None
    assert ready.tolist() == [70 + 100, 110 + 200] and server.tolist() == [165, 305]
    assert (server <= ready).all()  # the server side is a part: send delays are >= 0
    # one packet more than rounds (e.g. a rejected or extra packet): attribute nothing
    _, _, note = _reaction_breakdown({"lag_ns": lag, "records_total": warm + n + 1}, emu, n)
    assert note and "omitted" in note
    _, _, note = _reaction_breakdown({"lag_ns": lag, "records_total": warm + n},
                                     dict(emu, errors=1), n)
    assert note and "omitted" in note
