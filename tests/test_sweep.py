"""bench/sweep.py: d x p sweeps written as sinter CSV, our JSON and PNGs."""

import argparse
import io
import json
import subprocess
import sys

import pytest
import sinter

from qecd.bench.stats import paired_ratio_interval
from qecd.bench.sweep import (
    format_sweep,
    plot_ler_vs_p,
    plot_time_vs_distance,
    rows_from_progress,
    run_sweep,
    run_tasks_here,
    sweep_specs,
    sweep_tasks,
    write_sinter_csv,
)
from qecd.bench.sweep_paired import failures_path, pack_failures, read_failures, unpack_failures
from qecd.bench.sweep_store import CsvWriter, TaskProgress, read_progress, with_failures
from qecd.cli import add_sweep_arguments
from qecd.cli import main as qecd_main
from qecd.errors import DecoderError, SpecError

BASE = "repetition:d=3"
DECODERS = ["pymatching", "pymatching-w2c1"]


def _tiny(seed=5, **kw):
    opts = dict(distances=[3, 5], ps=[0.01, 0.03], decoders=DECODERS, shots=300, seed=seed)
    opts.update(kw)
    return run_sweep(BASE, **opts)


@pytest.fixture(scope="module")
def rows():
    return _tiny()


@pytest.fixture(scope="module")
def csv_path(rows, tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "sweep.csv"
    write_sinter_csv(rows, path)
    return path


def test_sweep_has_a_row_per_point_and_decoder_with_the_same_shots(rows):
    assert [(r["d"], r["p"], r["decoder"]) for r in rows] == [
        (d, p, dec) for d in (3, 5) for p in (0.01, 0.03) for dec in DECODERS]
    assert {r["shots"] for r in rows} == {300}
    assert all(r["r"] == r["d"] for r in rows)  # family default r = d follows the new d


def test_csv_header_is_sinters(csv_path):
    assert csv_path.read_text().splitlines()[0] == sinter.CSV_HEADER


def test_csv_reads_back_with_sinter_with_decoders_metadata_shots_errors(rows, csv_path):
    stats = sinter.read_stats_from_csv_files(str(csv_path))
    assert len(stats) == len(rows)
    by_id = {s.strong_id: s for s in stats}
    for r in rows:
        s = by_id[r["strong_id"]]
        assert s.decoder == "qecd-" + r["decoder"]
        assert (s.shots, s.errors, s.discards) == (r["shots"], r["errors"], 0)
        m = s.json_metadata
        assert (m["d"], m["p"], m["r"], m["b"], m["noise"]) == (r["d"], r["p"], r["r"], "z",
                                                                 "uniform")
        assert m["spec"] == r["spec"] and m["spec"].startswith("repetition:d=")
        assert m["backend"] == "pymatching"
        assert s.custom_counts["decode_ns"] == r["decode_ns"] > 0
    windowed = [s for s in stats if s.decoder == "qecd-pymatching-w2c1"]
    assert {(s.json_metadata["window"], s.json_metadata["commit"]) for s in windowed} == {(2, 1)}


def test_sinter_plot_command_reads_the_csv(csv_path, tmp_path):
    out = tmp_path / "sinter.png"
    sinter_cli = "import sys; from sinter._command._main import main; sys.exit(main())"
    subprocess.run([sys.executable, "-c", sinter_cli, "plot", "--in", str(csv_path),
                    "--x_func", "m.p", "--group_func", "(decoder, m.d)", "--xaxis", "[log]p",
                    "--out", str(out)], check=True, timeout=60, capture_output=True)
    assert out.stat().st_size > 5000


def test_strong_ids_are_stable_with_the_same_seed_and_differ_with_another(rows):
    again = _tiny(distances=[3], ps=[0.01])
    assert [(r["strong_id"], r["errors"]) for r in again] == [
        (r["strong_id"], r["errors"]) for r in rows[:len(again)]]
    other = _tiny(seed=6, distances=[3], ps=[0.01])
    assert not {r["strong_id"] for r in other} & {r["strong_id"] for r in rows}
    assert len({r["strong_id"] for r in rows}) == len(rows)


def test_errors_at_most_shots_and_interval_contains_the_rate(rows):
    for r in rows:
        assert 0 <= r["errors"] <= r["shots"]
        lo, hi = r["ler_ci95"]
        assert lo <= r["ler"] == r["errors"] / r["shots"] <= hi


def test_pngs_are_written_and_not_trivial(rows, tmp_path):
    a = plot_ler_vs_p(rows, tmp_path / "ler.png")
    b = plot_time_vs_distance(rows, tmp_path / "time.png")
    plot_ler_vs_p(rows, tmp_path / "ler_round.png", per="round")
    assert (tmp_path / "ler_round.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="per: expected 'shot' or 'round'"):
        plot_ler_vs_p(rows, tmp_path / "x.png", per="cycle")
    assert (tmp_path / "ler.png").stat().st_size > 10_000
    assert (tmp_path / "time.png").stat().st_size > 10_000
    assert a.endswith("ler.png") and b.endswith("time.png")


def test_rounds_factor_sets_r_and_a_written_r_is_kept():
    assert [s["r"] for s in sweep_specs(BASE, [3, 5], [0.01], rounds_factor=3)] == [9, 15]
    assert [s["r"] for s in sweep_specs("repetition:d=3,r=4", [3, 5], [0.01])] == [4, 4]
    assert [s["r"] for s in sweep_specs("repetition:r=4,d=3", [5], [0.01],
                                        rounds_factor=1)] == [5]


def test_max_errors_stops_a_point_early_with_the_same_shots_per_decoder():
    rows = run_sweep(BASE, distances=[3], ps=[0.05], decoders=["pymatching"], shots=100_000,
                     seed=2, max_errors=5)
    (r,) = rows
    assert r["errors"] >= 5 and r["shots"] < 100_000 and r["chunks"] >= 1


def test_time_repeats_decode_the_same_shots_again_with_the_same_failures():
    one = run_sweep(BASE, distances=[3], ps=[0.03], decoders=["pymatching"], shots=300, seed=4)
    three = run_sweep(BASE, distances=[3], ps=[0.03], decoders=["pymatching"], shots=300,
                      seed=4, time_repeats=3)
    assert [r["errors"] for r in three] == [r["errors"] for r in one]
    (r,) = three
    assert r["time_repeats"] == 3 and r["decode_ns"] > 0
    assert r["strong_id"] == one[0]["strong_id"]


def test_max_errors_stops_at_the_first_chunk_that_reaches_it():
    (r,) = run_sweep(BASE, distances=[3], ps=[0.05], decoders=["pymatching"], shots=10_000,
                     seed=2, max_errors=20, chunk_shots=100)
    assert r["errors"] >= 20 and r["shots"] == 100 * r["chunks"] < 10_000
    (fewer,) = run_sweep(BASE, distances=[3], ps=[0.05], decoders=["pymatching"],
                         shots=100 * (r["chunks"] - 1), seed=2, chunk_shots=100)
    assert fewer["errors"] < 20  # one chunk fewer had not reached max_errors


def test_bad_inputs_raise_errors_that_name_the_field():
    with pytest.raises(SpecError, match="'d'"):
        sweep_specs("surface:d=3", [4], [0.001])
    with pytest.raises(SpecError, match="family with a 'd' field"):
        sweep_specs("bb:n=72", [3], [0.001])
    with pytest.raises(DecoderError, match="nonsense"):
        run_sweep(BASE, distances=[3], ps=[0.01], decoders=["nonsense"], shots=10, seed=0)


def main(argv: list[str]) -> int:
    return qecd_main(["bench", "sweep", *argv])


def test_cli_writes_csv_to_stdout_table_to_stderr_and_json(tmp_path, capsys):
    js = tmp_path / "s.json"
    code = main(["--spec", BASE, "--distances", "3", "--ps", "0.02", "--decoders",
                 "pymatching", "--shots", "200", "--seed", "1", "--rounds-factor", "2",
                 "--json", str(js), "--workers", "1"])
    assert code == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == sinter.CSV_HEADER and len(out.splitlines()) == 2
    assert "| 3 | 6 | 0.02 | pymatching | 200 |" in err
    assert "1/1 tasks done" in err and "sweep:" in err  # progress and summary on stderr
    report = json.loads(js.read_text())
    assert report["schema"] == "qecd.bench.sweep/2"
    assert report["rows"][0]["us_per_round"] > 0 and report["rows"][0]["r"] == 6


def test_cli_reports_a_bad_distance_with_exit_code_2(capsys):
    assert main(["--spec", "surface:d=3", "--distances", "4", "--ps", "0.001"]) == 2
    assert "'d'" in capsys.readouterr().err


def test_sweep_arguments_plug_into_a_parent_cli(tmp_path, capsys):
    top = argparse.ArgumentParser(prog="qecd")
    bench = top.add_subparsers(dest="command").add_parser("bench")
    add_sweep_arguments(bench.add_subparsers(dest="bench_command").add_parser("sweep"))
    csv = tmp_path / "s.csv"
    args = top.parse_args(["bench", "sweep", "--spec", BASE, "--distances", "3", "--ps",
                           "0.02", "--decoders", "pymatching", "--shots", "100",
                           "--csv", str(csv), "--workers", "1", "--quiet"])
    assert args.rounds_factor is None and args.max_shots == 100
    assert args.func(args) == 0
    assert [s.shots for s in sinter.read_stats_from_csv_files(str(csv))] == [100]
    assert "pymatching" in capsys.readouterr().out


def test_write_sinter_csv_accepts_an_open_file(rows):
    f = io.StringIO()
    stats = write_sinter_csv(rows[:2], f)
    lines = f.getvalue().splitlines()
    assert lines[1:] == [s.to_csv_line() for s in stats]


# --------------------------------------------------------------------------- paired LER ratios

PAIRED_SPEC = "surface:d=3,p=0.015"


def _direct_failures(spec, seed, chunks, chunk_shots):
    """Per-shot failures of PyMatching and qecd's uf on the sweep's chunks, sampled and
    decoded here without the sweep's code (pymatching's own Matching, qecd's uf backend)."""
    import numpy as np
    import pymatching

    from qecd.bench.sweep_tasks import chunk_seed
    from qecd.codes import build_experiment
    from qecd.decoder.registry import build_decoder

    exp = build_experiment(spec)
    matching = pymatching.Matching.from_detector_error_model(exp.dem)
    uf = build_decoder("uf", exp.dem, exp.layout)
    pm_failed, uf_failed = [], []
    for k in range(chunks):
        dets, obs = exp.sample(chunk_shots, seed=chunk_seed(spec, seed, k))
        pm_failed.append(np.any(matching.decode_batch(dets) != obs, axis=1))
        uf_failed.append(np.any(uf.decode_batch(dets) != obs, axis=1))
    return np.concatenate(pm_failed), np.concatenate(uf_failed)


def test_paired_counts_equal_those_of_decoding_the_same_shots_directly():
    import dataclasses

    ref_task, uf_task = sweep_tasks(PAIRED_SPEC, distances=[3], ps=[0.015], decoders=["uf"],
                                    max_shots=3000, seed=11, chunk_shots=1000)
    # uf stops a chunk earlier, as under max_errors: the pairing covers chunks 0-1 only
    uf_task = dataclasses.replace(uf_task, max_shots=2000)
    assert uf_task.strong_id == sweep_tasks(PAIRED_SPEC, distances=[3], ps=[0.015],
                                            decoders=["uf"], max_shots=1, seed=11,
                                            chunk_shots=1000)[1].strong_id
    tasks = [ref_task, uf_task]
    ref_row, uf_row = rows_from_progress(tasks, run_tasks_here(tasks))
    pm, uf = _direct_failures(ref_task.spec, 11, 3, 1000)
    assert (ref_row["shots"], ref_row["errors"]) == (3000, int(pm.sum()))
    assert (uf_row["shots"], uf_row["errors"]) == (2000, int(uf[:2000].sum()))
    pm2, uf2 = pm[:2000], uf[:2000]
    counts = (int((uf2 & pm2).sum()), int((uf2 & ~pm2).sum()), int((~uf2 & pm2).sum()))
    assert counts[1] + counts[2] > 0, "the two decoders never differ: the test shows nothing"
    assert (uf_row["paired_shots"], uf_row["both_failed"], uf_row["only_this_failed"],
            uf_row["only_reference_failed"]) == (2000, *counts)
    ratio, lo, hi = paired_ratio_interval(*counts)
    assert uf_row["ler_ratio_to_reference"] == ratio
    assert uf_row["ler_ratio_to_reference_ci95"] == [lo, hi]
    assert uf_row["ler_ratio_note"].startswith("paired over the 2000 shots of the 2 chunks")
    assert (ref_row["ler_ratio_to_reference"], ref_row["ler_ratio_to_reference_ci95"],
            ref_row["paired_shots"], ref_row["ler_ratio_note"]) == (1.0, [1.0, 1.0], 3000, None)


def _store(path, tasks, prior=None):
    w = CsvWriter.open(path)
    try:
        return run_tasks_here(tasks, w, prior=prior)
    finally:
        w.close()


PAIRED_KEYS = ("ler_ratio_to_reference", "ler_ratio_to_reference_ci95", "paired_shots",
               "both_failed", "only_this_failed", "only_reference_failed", "ler_ratio_note")


def _paired(rows):
    return [(r["decoder"], r["shots"], r["errors"], *(r[k] for k in PAIRED_KEYS)) for r in rows]


def test_an_interrupted_store_resumes_to_the_intervals_of_an_uninterrupted_run(tmp_path):
    def tasks(max_shots):
        return sweep_tasks(PAIRED_SPEC, distances=[3], ps=[0.015], decoders=["uf"],
                           max_shots=max_shots, seed=12, chunk_shots=500)

    fresh = rows_from_progress(tasks(2000), run_tasks_here(tasks(2000)))
    assert all(r["ler_ratio_to_reference_ci95"] for r in fresh)
    path = tmp_path / "s.csv"
    _store(path, tasks(1000))  # "interrupted" after two chunks per task
    with open(failures_path(path), "a") as f:
        f.write('{"id": "cut short by a cra')  # a crash mid-line: dropped on reading
    resumed = _store(path, tasks(2000), prior=read_progress(path))
    assert _paired(rows_from_progress(tasks(2000), resumed)) == _paired(fresh)
    # the store alone, read back, gives the same intervals (what a rerun reports)
    assert _paired(rows_from_progress(tasks(2000), read_progress(path))) == _paired(fresh)
    # and its CSV is still sinter's: one line per chunk, nothing else
    stats = sinter.read_stats_from_csv_files(str(path))
    assert sorted((s.shots, s.custom_counts["chunks"]) for s in stats) == [(2000, 4)] * 2


def test_an_old_store_without_failures_loads_with_no_interval_and_says_why(tmp_path, capsys):
    import os

    def tasks(max_shots):
        return sweep_tasks(PAIRED_SPEC, distances=[3], ps=[0.015], decoders=["uf"],
                           max_shots=max_shots, seed=13, chunk_shots=500)

    path = tmp_path / "old.csv"
    _store(path, tasks(1000))
    os.remove(failures_path(path))  # the CSV alone is what the code before this wrote
    ref_row, uf_row = rows_from_progress(tasks(1000), read_progress(path))
    assert uf_row["ler_ratio_to_reference"] == pytest.approx(
        uf_row["errors"] / ref_row["errors"])  # the ratio of the two rates, as before
    assert uf_row["ler_ratio_to_reference_ci95"] is None and uf_row["paired_shots"] is None
    assert uf_row["ler_ratio_note"] == ("no per-shot failures stored for this decoder: ratio "
                                        "of the two rates, no paired interval")
    assert ref_row["ler_ratio_to_reference_ci95"] == [1.0, 1.0]
    table = format_sweep([ref_row, uf_row])
    assert "| - (1) |" in table and "(1) no per-shot failures stored" in table

    # the command line reports the old store ("nothing to run": no cluster starts)
    js = tmp_path / "old.json"
    code = main(["--spec", PAIRED_SPEC, "--distances", "3", "--ps", "0.015", "--decoders",
                 "uf", "--max_shots", "1000", "--chunk_shots", "500", "--seed", "13",
                 "--csv", str(path), "--json", str(js), "--quiet"])
    assert code == 0 and "nothing to run" in capsys.readouterr().out
    rows = json.loads(js.read_text())["rows"]
    assert _paired(rows) == _paired([ref_row, uf_row])

    # resuming it with more shots pairs the new chunks only, and says so
    more = _store(path, tasks(2000), prior=read_progress(path))
    _, uf_row = rows_from_progress(tasks(2000), more)
    assert uf_row["paired_shots"] == 1000 and uf_row["shots"] == 2000
    assert uf_row["ler_ratio_to_reference_ci95"] is not None
    assert uf_row["ler_ratio_note"].startswith("paired over the 1000 shots of the 2 chunks")


def test_failure_blobs_round_trip_and_a_store_that_does_not_add_up_keeps_none(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    for n, rate in ((0, 0.0), (1, 1.0), (7, 0.5), (10_000, 0.001), (10_000, 0.3)):
        v = rng.random(n) < rate
        got_n, idx = unpack_failures(pack_failures(v))
        assert got_n == n and idx.tolist() == np.flatnonzero(v).tolist()
    with pytest.raises(ValueError, match="do not fit"):
        unpack_failures(pack_failures(np.ones(9, bool))[:-1])

    path = tmp_path / "s.csv"
    tasks = sweep_tasks(PAIRED_SPEC, distances=[3], ps=[0.015], decoders=["uf"],
                        max_shots=1000, seed=14, chunk_shots=500)
    _store(path, tasks)
    blobs = read_failures(failures_path(path))
    assert {len(b) for b in blobs.values()} == {2}
    p = read_progress(path)[tasks[1].strong_id]
    assert all(p.failed)
    # a failures file of another run (other errors): its blobs are not used
    assert with_failures(TaskProgress(1000, p.errors + 1, 2), blobs[tasks[1].strong_id]
                         ).failed == (None, None)
    with open(failures_path(path), "w") as f:
        f.write("not a failures file\n")
    with pytest.raises(ValueError, match="expected a first line with schema"):
        read_progress(path)
