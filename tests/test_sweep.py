"""bench/sweep.py: d x p sweeps written as sinter CSV, our JSON and PNGs."""

import argparse
import io
import json
import subprocess
import sys

import pytest
import sinter

from qecd.bench.sweep import (
    plot_ler_vs_p,
    plot_time_vs_distance,
    run_sweep,
    sweep_specs,
    write_sinter_csv,
)
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
