"""bench/accuracy.py: one set of shots, several decoders, honest statistics."""

import json

import numpy as np
import pytest

from qecd.bench.accuracy import format_accuracy, run_accuracy
from qecd.bench.stats import wilson_interval
from qecd.cli import main


def test_reference_is_pymatching_for_graph_like_and_ratios_are_relative_to_it():
    r = run_accuracy("surface:d=3,r=3,p=0.01", ["pymatching-w4c2"], shots=2000, seed=3)
    assert r["reference"] == "pymatching"
    names = [d["name"] for d in r["decoders"]]
    assert names == ["pymatching", "pymatching-w4c2"]
    ref = r["decoders"][0]
    assert ref["time_ratio_to_reference"] == 1.0
    for d in r["decoders"]:
        lo, hi = d["ler_ci95"]
        assert lo <= d["ler"] <= hi
        assert d["us_per_round"] * r["rounds"] == pytest.approx(d["us_per_shot"])


def test_reference_is_ldpc_bposd_for_qldpc():
    r = run_accuracy("bb:n=72,r=2,p=0.002", [], shots=50, seed=1)
    assert r["reference"] == "ldpc-bposd"
    assert r["code"]["n"] == 72 and r["code"]["k"] == 12


def test_same_seed_same_failures():
    a = run_accuracy("repetition:d=3,r=3,p=0.03", ["pymatching"], shots=1000, seed=9)
    b = run_accuracy("repetition:d=3,r=3,p=0.03", ["pymatching"], shots=1000, seed=9)
    assert a["decoders"][0]["failures"] == b["decoders"][0]["failures"]


def test_wilson_interval_contains_the_rate_and_shrinks_with_shots():
    lo1, hi1 = wilson_interval(10, 1000)
    lo2, hi2 = wilson_interval(100, 10000)
    assert lo1 < 0.01 < hi1 and lo2 < 0.01 < hi2
    assert hi2 - lo2 < hi1 - lo1
    assert wilson_interval(0, 100)[0] == 0.0


def test_cli_bench_accuracy_writes_json(tmp_path, capsys):
    out = tmp_path / "acc.json"
    code = main(["bench", "accuracy", "--spec", "repetition:d=3,r=2,p=0.02",
                 "--decoders", "pymatching", "--shots", "300", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["schema"] == "qecd.bench.accuracy/1"
    assert "pymatching" in capsys.readouterr().out


def test_cli_reports_bad_spec_with_exit_code_2(capsys):
    assert main(["bench", "accuracy", "--spec", "surface:d=4"]) == 2
    assert "'d'" in capsys.readouterr().err


def test_paired_ratio_interval_uses_only_the_discordant_shots():
    from qecd.bench.stats import paired_ratio_interval

    r, lo, hi = paired_ratio_interval(both=100, only_a=20, only_b=10)
    assert r == pytest.approx(120 / 110) and lo < r < hi
    # the same marginal counts with more disagreement give a wider interval
    r2, lo2, hi2 = paired_ratio_interval(both=10, only_a=110, only_b=100)
    assert r2 == pytest.approx(r) and hi2 - lo2 > hi - lo
    assert paired_ratio_interval(0, 5, 0) == (None, None, None)
    assert paired_ratio_interval(0, 0, 5)[:2] == (0.0, 0.0)


def test_report_gives_each_decoder_a_paired_ratio_with_its_interval():
    r = run_accuracy("surface:d=3,r=3,p=0.02", ["uf", "pymatching-corr"], shots=3000, seed=4)
    ref, *others = r["decoders"]
    assert ref["ler_ratio_ci95"] == [1.0, 1.0]
    for d in others:
        lo, hi = d["ler_ratio_ci95"]
        assert lo <= d["ler_ratio_to_reference"] <= hi
        assert d["failures"] == d["failed_with_reference"] + d["failed_alone"]
        assert ref["failures"] == d["failed_with_reference"] + d["reference_failed_alone"]


def test_qldpc_peers_run_on_the_same_shots():
    pytest.importorskip("relay_bp")
    r = run_accuracy("bb:n=72,r=2,p=0.002,noise=circuit", ["bp-cluster", "relay-bp",
                                                           "ldpc-bplsd"], shots=60, seed=2)
    assert [d["name"] for d in r["decoders"]] == ["ldpc-bposd", "bp-cluster", "relay-bp",
                                                   "ldpc-bplsd"]
    assert all(d["shots"] == 60 for d in r["decoders"])


def test_each_qecd_decoder_is_set_against_the_strongest_peer_of_the_run():
    """The best peer is the one with the fewest failures on these shots, whichever was the
    reference; its paired ratio comes from the shots where exactly one of the two failed."""
    r = run_accuracy("bb:n=72,r=2,p=0.02", ["bp-cluster", "ldpc-bplsd"], shots=100, seed=5)
    rows = {d["name"]: d for d in r["decoders"]}
    peers = [rows["ldpc-bposd"], rows["ldpc-bplsd"]]
    best = min(peers, key=lambda d: d["failures"])
    mine = rows["bp-cluster"]
    assert mine["best_peer"] == best["name"]
    assert mine["ler_ratio_to_best_peer"] is not None
    lo, hi = mine["ler_ratio_best_peer_ci95"]
    assert lo <= mine["ler_ratio_to_best_peer"] <= hi
    assert mine["time_ratio_to_best_peer"] > 0
    assert all(p["best_peer"] is None for p in peers)
    assert "vs best peer" in format_accuracy(r)


def test_cli_time_repeats_keeps_the_least_wall_and_cpu_time_of_every_pass(tmp_path):
    out = tmp_path / "acc.json"
    assert main(["bench", "accuracy", "--spec", "repetition:d=3,r=2,p=0.02", "--decoders",
                 "uf", "--shots", "300", "--time_repeats", "3", "--json", str(out)]) == 0
    for d in json.loads(out.read_text())["decoders"]:
        assert len(d["decode_s_passes"]) == len(d["cpu_s_passes"]) == 3
        assert d["decode_s"] == min(d["decode_s_passes"])
        assert d["cpu_s"] == min(d["cpu_s_passes"]) > 0
        assert d["cpu_us_per_shot"] == pytest.approx(d["cpu_s"] * 1e6 / 300)


def test_failed_shots_are_the_shots_whose_prediction_differs_from_the_truth():
    from qecd.codes import build_experiment
    from qecd.decoder.registry import build_decoder

    r = run_accuracy("repetition:d=3,r=3,p=0.05", ["uf"], shots=400, seed=5)
    exp = build_experiment("repetition:d=3,r=3,p=0.05")
    dets, obs = exp.sample(400, seed=5)
    for d in r["decoders"]:
        pred = build_decoder(d["name"], exp.dem, exp.layout).decode_batch(dets)
        assert d["failed_shots"] == np.flatnonzero(np.any(pred != obs, axis=1)).tolist()
        assert len(d["failed_shots"]) == d["failures"] > 0


def test_accuracy_says_which_decoder_refused_names_the_peers_and_notes_whole_shot_windows():
    """A researcher's cold check: a matching decoder refusing a qLDPC DEM did not say which
    decoder it was; an unknown name's list left out the ldpc peers the command takes; and a
    window as long as the shot (the README's own example) silently decoded whole shots."""
    from qecd.bench.accuracy import format_accuracy, run_accuracy
    from qecd.errors import DecoderError, DemError

    with pytest.raises(DemError, match=r"decoder 'uf' on bb:n=72.*bp-cluster or relay-bp"):
        run_accuracy("bb:n=72,p=0.01", ["uf"], shots=4, reference="bp-cluster")
    with pytest.raises(DecoderError, match="ldpc-bposd, ldpc-bplsd"):
        run_accuracy("repetition:d=3,p=0.01", ["ldpc-foo"], shots=4)
    r = run_accuracy("repetition:d=3,r=2,p=0.01", ["uf-w5c2", "uf-w2c1"], shots=50, seed=1)
    notes = {row["name"]: row["window_note"] for row in r["decoders"]}
    assert notes["uf-w5c2"] == ("uf-w5c2: window 5 >= the shot's 3 detector rounds: it "
                                "decodes whole shots")
    assert notes["uf-w2c1"] is None and notes["pymatching"] is None
    assert "note: uf-w5c2: window 5 >=" in format_accuracy(r)


def _stim_surface(tmp_path, *, coords=True):
    import stim

    c = stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=4,
                               after_clifford_depolarization=0.01,
                               before_measure_flip_probability=0.01)
    text = str(c)
    if not coords:  # a circuit whose detectors carry no coordinates
        import re

        text = re.sub(r"DETECTOR\([^)]*\)", "DETECTOR", text)
    path = tmp_path / ("s3.stim" if coords else "s3_nocoords.stim")
    path.write_text(text)
    return c, path


def test_cli_accuracy_decodes_a_researchers_own_circuit_on_stims_shots(tmp_path, capsys):
    c, path = _stim_surface(tmp_path)
    out = tmp_path / "acc.json"
    assert main(["bench", "accuracy", "--circuit", str(path), "--decoders", "uf,uf-w3c1",
                 "--shots", "2000", "--seed", "4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["spec"] == "s3.stim" and report["reference"] == "pymatching"
    assert report["circuit"]["graph_like"] and report["rounds"] == 4
    assert report["num_detectors"] == c.num_detectors
    # the truth is stim's observable flips of the same seeded shots
    import pymatching

    dets, obs = c.compile_detector_sampler(seed=4).sample(2000, separate_observables=True)
    dem = c.detector_error_model(decompose_errors=True, approximate_disjoint_errors=True)
    pm = pymatching.Matching.from_detector_error_model(dem).decode_batch(dets)
    ref = report["decoders"][0]
    assert ref["name"] == "pymatching"
    assert ref["failures"] == int(np.any(pm != obs, axis=1).sum()) > 0
    assert "graph-like (decomposed) DEM, per-round figures over 4 rounds" in \
        capsys.readouterr().out


def test_circuit_without_coordinates_decodes_whole_shots_and_refuses_windows(tmp_path):
    from qecd.codes.external import circuit_file_experiment
    from qecd.errors import QecdError

    _, path = _stim_surface(tmp_path, coords=False)
    exp = circuit_file_experiment(path)
    assert exp.layout is None and "no coordinates" in exp.layout_error and exp.rounds == 1
    r = run_accuracy(exp, ["uf"], shots=300, seed=1)
    assert "no round layout, so no windows" in format_accuracy(r)
    with pytest.raises(QecdError, match=r"decoder 'uf-w2c1' on s3_nocoords.stim: .*coordinates"):
        run_accuracy(exp, ["uf-w2c1"], shots=10, seed=1)


def test_circuit_stim_cannot_decompose_gets_the_qldpc_reference(tmp_path):
    from qecd.codes import build_experiment
    from qecd.codes.external import circuit_file_experiment

    bb = build_experiment("bb:n=72,r=2,p=0.002,noise=circuit")
    path = tmp_path / "bb72.stim"
    path.write_text(str(bb.circuit))
    exp = circuit_file_experiment(path)
    assert not exp.graph_like and exp.layout is not None
    r = run_accuracy(exp, ["bp-cluster"], shots=40, seed=2)
    assert r["reference"] == "ldpc-bposd" and [d["name"] for d in r["decoders"]] == [
        "ldpc-bposd", "bp-cluster"]


def test_cli_circuit_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.stim"
    bad.write_text("H 0\nNOT_A_GATE 1\n")
    assert main(["bench", "accuracy", "--circuit", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "circuit file" in err and "bad.stim" in err and "not a stim circuit" in err
    assert main(["bench", "accuracy", "--circuit", str(tmp_path / "none.stim")]) == 2
    assert "No such file" in capsys.readouterr().err
