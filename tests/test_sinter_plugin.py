"""decoder/sinter_plugin.py: qecd decoders through every sinter entry point."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sinter
import stim
from sinter._decoding._decoding import sample_decode

from qecd.decoder.sinter_plugin import (
    WINDOW_GRID_MAX,
    QecdSinterDecoder,
    sinter_decoders,
)
from qecd.errors import DecoderError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAMES = ["qecd-pymatching", "qecd-uf", "qecd-bp-cluster", "qecd-pymatching-w4c2",
         "qecd-uf-w4c2", "qecd-bp-cluster-w2c1"]


def _rep(rounds=6, p=0.03):
    return stim.Circuit.generated("repetition_code:memory", distance=3, rounds=rounds,
                                  after_clifford_depolarization=p)


def _surface(rounds=6, p=0.01):
    return stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=rounds,
                                  after_clifford_depolarization=p)


def test_names_resolve_and_decoders_pickle():
    decs = sinter_decoders()
    assert {"qecd-pymatching", "qecd-uf", "qecd-bp-cluster"} <= set(decs)
    assert "qecd-pymatching-w6c3" in decs and "qecd-pymatching-w3c6" not in decs
    assert "pymatching" not in decs
    d = pickle.loads(pickle.dumps(decs["qecd-pymatching-w6c3"]))
    assert isinstance(d, QecdSinterDecoder) and str(d.name) == "pymatching-w6c3"
    assert pickle.loads(pickle.dumps(decs)).get("qecd-uf-w100c50") == QecdSinterDecoder(
        "uf-w100c50")


def test_every_name_is_a_sinter_decoder_through_get_in_getitem_and_dict_copies():
    t = sinter_decoders()
    for name in ["qecd-uf-w10c5", f"qecd-bp-cluster-w{WINDOW_GRID_MAX}c1", "qecd-uf-w99c33"]:
        assert name in t and isinstance(t.get(name), sinter.Decoder)
        assert t[name] == t.get(name) == QecdSinterDecoder(name)
    for copy in (dict(t), {**t}, {**{}, **sinter_decoders()}):
        assert isinstance(copy.get("qecd-uf-w10c5"), sinter.Decoder)
        assert isinstance(copy.get(f"qecd-uf-w{WINDOW_GRID_MAX}c{WINDOW_GRID_MAX}"),
                          sinter.Decoder)
    assert t.get("qecd-uf-w3c6") is None and t.get("qecd-nonsense", 1) == 1
    with pytest.raises(KeyError):
        t["qecd-uf-w3c6"]
    with pytest.raises(DecoderError, match="qecd-<decoder name>"):
        sinter_decoders(["uf-w10c5"])


def test_bit_packed_contract_matches_pymatching():
    c = _surface(rounds=3)
    dem = c.detector_error_model(decompose_errors=True)
    dets, _ = c.compile_detector_sampler(seed=1).sample(200, separate_observables=True,
                                                         bit_packed=True)
    ours = sinter_decoders()["qecd-pymatching"].compile_decoder_for_dem(dem=dem)
    ref = sinter.BUILT_IN_DECODERS["pymatching"].compile_decoder_for_dem(dem=dem)
    a = ours.decode_shots_bit_packed(bit_packed_detection_event_data=dets)
    b = ref.decode_shots_bit_packed(bit_packed_detection_event_data=dets)
    assert isinstance(ours, sinter.CompiledDecoder)
    assert a.dtype == np.uint8 and a.shape == (200, 1)
    assert np.array_equal(a, b)
    with pytest.raises(DecoderError, match=r"expected uint8 of shape \(shots, 3\)"):
        ours.decode_shots_bit_packed(bit_packed_detection_event_data=dets[:, :2])


@pytest.mark.parametrize("name", NAMES)
def test_file_path_and_compiled_path_give_the_same_predictions(name, tmp_path):
    c = _rep()
    dem = c.detector_error_model(decompose_errors=True)
    dets, _ = c.compile_detector_sampler(seed=3).sample(300, separate_observables=True,
                                                         bit_packed=True)
    dec = sinter_decoders()[name]
    compiled = dec.compile_decoder_for_dem(dem=dem).decode_shots_bit_packed(
        bit_packed_detection_event_data=dets)
    dem.to_file(tmp_path / "dem.dem")
    dets.tofile(tmp_path / "dets.b8")
    dec.decode_via_files(num_shots=300, num_dets=dem.num_detectors, num_obs=1,
                         dem_path=tmp_path / "dem.dem", dets_b8_in_path=tmp_path / "dets.b8",
                         obs_predictions_b8_out_path=tmp_path / "obs.b8", tmp_dir=tmp_path)
    on_disk = np.fromfile(tmp_path / "obs.b8", dtype=np.uint8).reshape(300, 1)
    assert np.array_equal(compiled, on_disk)
    assert os.listdir(tmp_path) and sorted(os.listdir(tmp_path)) == ["dem.dem", "dets.b8",
                                                                     "obs.b8"]


def test_decode_via_files_refuses_a_short_input(tmp_path):
    dem = _rep().detector_error_model(decompose_errors=True)
    dem.to_file(tmp_path / "dem.dem")
    (tmp_path / "dets.b8").write_bytes(b"!")
    with pytest.raises(DecoderError, match="the input ended after 1 bytes"):
        QecdSinterDecoder("uf").decode_via_files(
            num_shots=2, num_dets=dem.num_detectors, num_obs=1, dem_path=tmp_path / "dem.dem",
            dets_b8_in_path=tmp_path / "dets.b8", obs_predictions_b8_out_path=tmp_path / "o",
            tmp_dir=tmp_path)


@pytest.mark.parametrize("name", ["qecd-uf", "qecd-uf-w4c2"])
@pytest.mark.parametrize("on_disk", [False, True])
def test_sample_decode_in_memory_and_streamed_to_disk(name, on_disk):
    c = _surface()
    result = sample_decode(circuit_obj=c, circuit_path=None,
                           dem_obj=c.detector_error_model(decompose_errors=True),
                           dem_path=None, num_shots=2000, decoder=name,
                           custom_decoders=sinter_decoders(),
                           __private__unstable__force_decode_on_disk=on_disk)
    assert result.shots == 2000 and 0 < result.errors < 400


def test_predict_observables_and_predict_on_disk_take_windowed_names(tmp_path):
    c = _rep()
    dem = c.detector_error_model(decompose_errors=True)
    dets, obs = c.compile_detector_sampler(seed=5).sample(500, separate_observables=True,
                                                          bit_packed=True)
    table = sinter_decoders()
    a = sinter.predict_observables_bit_packed(dem=dem, dets_bit_packed=dets,
                                              decoder="qecd-uf-w4c2", custom_decoders=table)
    b = sinter.predict_observables(dem=dem, dets=np.unpackbits(
        dets, axis=1, count=dem.num_detectors, bitorder="little").astype(bool),
        decoder="qecd-pymatching-w4c2", custom_decoders=table)
    assert a.shape == (500, 1) and b.shape == (500, 1)
    assert (np.unpackbits(a, axis=1, count=1, bitorder="little") != obs[:, :1] % 2).any(
        axis=1).mean() < 0.2
    dem.to_file(tmp_path / "dem.dem")
    dets.tofile(tmp_path / "dets.b8")
    sinter.predict_on_disk(decoder="qecd-uf-w4c2", dem_path=tmp_path / "dem.dem",
                           dets_path=tmp_path / "dets.b8", dets_format="b8",
                           obs_out_path=tmp_path / "obs.b8", obs_out_format="b8",
                           custom_decoders=table)
    assert np.array_equal(np.fromfile(tmp_path / "obs.b8", dtype=np.uint8).reshape(500, 1), a)


def test_window_decoders_refuse_dems_without_time_coordinates_with_a_clear_error():
    dem = stim.DetectorErrorModel("error(0.1) D0 L0\nerror(0.1) D0 D1\nerror(0.1) D1")
    with pytest.raises(DecoderError, match=r"qecd-uf-w4c2: sliding windows need every "
                                           r"detector to carry a time coordinate.*qecd-uf"):
        QecdSinterDecoder("uf-w4c2").compile_decoder_for_dem(dem=dem)
    QecdSinterDecoder("uf").compile_decoder_for_dem(dem=dem)  # whole shots need none


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("text,n_obs", [("", 0), ("error(0.1) D0", 0),
                                        ("error(0.1) L0", 1), ("error(0.1) L2", 3)])
def test_dems_without_detectors_or_observables_predict_no_flips(name, text, n_obs):
    dem = stim.DetectorErrorModel(text)
    c = sinter_decoders()[name].compile_decoder_for_dem(dem=dem)
    out = c.decode_shots_bit_packed(bit_packed_detection_event_data=np.zeros(
        (4, (dem.num_detectors + 7) // 8), dtype=np.uint8))
    assert out.shape == (4, (n_obs + 7) // 8) and not out.any()


def test_sinter_collect_runs_qecd_decoders():
    stats = sinter.collect(
        num_workers=1,
        tasks=[sinter.Task(circuit=_surface(), json_metadata={"d": 3, "r": 6, "p": 0.01})],
        decoders=["qecd-pymatching", "qecd-pymatching-w4c2"],
        custom_decoders=sinter_decoders(),
        max_shots=2000,
        max_errors=10_000,
    )
    by = {s.decoder: s for s in stats}
    assert set(by) == {"qecd-pymatching", "qecd-pymatching-w4c2"}
    assert all(s.shots == 2000 for s in stats)
    assert all(0 < s.errors < 2000 for s in stats)


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- sinter-example:[^>]*-->\n```bash\n(.*?)```", text, re.S)
    assert m, "README.md lost its sinter example block"
    return m.group(1)


@pytest.mark.slow
def test_readme_sinter_command_runs_verbatim(tmp_path):
    """The README's block, byte for byte, from a directory holding this venv as .venv."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", _readme_block()], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = sinter.read_stats_from_csv_files(str(tmp_path / "stats.csv"))
    got = {(s.decoder, s.json_metadata["d"]) for s in stats}
    assert got == {(d, k) for d in ("qecd-uf", "qecd-uf-w10c5", "qecd-pymatching")
                   for k in (3, 5)}
    for s in stats:
        assert s.json_metadata["r"] == 15 and (s.errors >= 100 or s.shots >= 100_000)
    assert (tmp_path / "ler_per_round.png").stat().st_size > 10_000


@pytest.mark.slow
def test_sinter_command_line_takes_window_names_beyond_the_listed_grid(tmp_path):
    _rep(rounds=4).to_file(tmp_path / "d=3,r=4.stim")
    name = f"qecd-uf-w{WINDOW_GRID_MAX + 8}c3"
    proc = subprocess.run(
        [str(BIN / "sinter"), "collect", "--circuits", str(tmp_path / "d=3,r=4.stim"),
         "--metadata_func", "auto", "--decoders", name, "qecd-uf-w2c1",
         "--custom_decoders_module_function", "qecd.decoder.sinter_plugin:sinter_decoders",
         "--max_shots", "300", "--processes", "1", "--quiet",
         "--save_resume_filepath", str(tmp_path / "s.csv")],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = sinter.read_stats_from_csv_files(str(tmp_path / "s.csv"))
    assert {s.decoder for s in stats} == {name, "qecd-uf-w2c1"}
    assert all(s.shots == 300 for s in stats)
    bad = subprocess.run(
        [str(BIN / "sinter"), "collect", "--circuits", str(tmp_path / "d=3,r=4.stim"),
         "--decoders", "qecd-uf-w3c6",
         "--custom_decoders_module_function", "qecd.decoder.sinter_plugin:sinter_decoders",
         "--max_shots", "10", "--processes", "1", "--quiet"],
        capture_output=True, text=True, timeout=120)
    # qecd's reason, not sinter's "Not a recognized decoder ... Did you forget to specify
    # custom_decoders?" (which listed the table's keys)
    assert bad.returncode != 0 and "Not a recognized decoder" not in bad.stderr
    assert "--decoders qecd-uf-w3c6: decoder name 'uf-w3c6': expected 1 <= commit <= " \
        "window" in bad.stderr
    assert len(bad.stderr) < 5000


@pytest.mark.slow
def test_sinter_plot_draws_qecd_rows_per_round(tmp_path):
    stats = sinter.collect(num_workers=1, decoders=["qecd-uf", "qecd-uf-w4c2"],
                           custom_decoders=sinter_decoders(), max_shots=1000,
                           tasks=[sinter.Task(circuit=_rep(rounds=r),
                                              json_metadata={"d": 3, "r": r})
                                  for r in (6, 12)])
    csv = tmp_path / "s.csv"
    csv.write_text(sinter.CSV_HEADER + "\n" + "".join(s.to_csv_line() + "\n" for s in stats))
    subprocess.run([str(BIN / "sinter"), "plot", "--in", str(csv), "--x_func", "m.r",
                    "--group_func", "decoder", "--failure_units_per_shot_func", "m.r",
                    "--failure_unit_name", "round", "--out", str(tmp_path / "p.png")],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / "p.png").stat().st_size > 10_000
    per_round = sinter.shot_error_rate_to_piece_error_rate
    for s in stats:  # per-round rates from per-shot ones, as sinter plot computes them
        assert 0 < per_round(s.errors / s.shots, pieces=s.json_metadata["r"]) < s.errors / s.shots


SWEEP_ARGV = ["bench", "sweep", "--spec", "repetition:d=3", "--distances", "3", "--ps", "0.01",
              "--max_shots", "10", "--csv", "-", "--quiet"]


@pytest.mark.parametrize("blocked,argv,purpose", [
    ("distributed", SWEEP_ARGV, "qecd bench sweep (Dask distributed)"),
    ("sinter", SWEEP_ARGV, "qecd bench sweep (Dask distributed)"),
    ("ldpc", ["bench", "accuracy", "--spec", "bb:n=72,r=2,p=0.003", "--decoders",
              "ldpc-bposd", "--shots", "10"], "qecd bench accuracy"),
])
def test_missing_research_extra_gives_a_one_line_install_hint(blocked, argv, purpose):
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from qecd.cli import main\n"
            f"sys.exit(main({argv!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"qecd: error: {purpose} needs the Python module {blocked!r}, which is not "
        'installed; install it with: pip install "qecd[research]"']


def test_sinter_suite_counts_refusals_by_design_apart_from_failures(tmp_path):
    from qecd.bench.sinter_suite import REFUSAL, count_outcomes

    xml = tmp_path / "j.xml"
    xml.write_text(f"""<testsuites><testsuite>
      <testcase name="a"/><testcase name="b"><skipped/></testcase>
      <testcase name="c"><failure message="DecoderError: qecd-uf-w4c2: {REFUSAL} (...)"/></testcase>
      <testcase name="d"><failure message="AssertionError: 3 == 4">trace</failure></testcase>
      <testcase name="e"><error message="boom"/></testcase>
    </testsuite></testsuites>""")
    assert count_outcomes(xml) == {"passed": 1, "failed": 2, "refused_by_design": 1,
                                   "skipped": 1}


def test_the_cli_and_its_help_need_no_research_module():
    code = ("import sys\n"
            "for m in ('sinter', 'distributed', 'dask', 'dask_jobqueue', 'ldpc', 'tqdm'):\n"
            "    sys.modules[m] = None\n"
            "from qecd.cli import main\n"
            "main(['bench', 'sweep', '--help'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--slurm-walltime" in proc.stdout and "--scheduler" in proc.stdout


def test_sinter_collect_with_a_malformed_qecd_name_fails_with_qecds_reason(monkeypatch):
    """sinter itself would say "Not a recognized decoder ... Did you forget to specify
    custom_decoders?" for qecd-uf-w4c5: the entry point now names what is wrong."""
    import sys

    monkeypatch.setattr(sys, "argv", ["/usr/bin/sinter", "collect", "--circuits", "a.stim",
                                      "--decoders", "qecd-uf", "qecd-uf-w4c5"])
    with pytest.raises(DecoderError, match=r"--decoders qecd-uf-w4c5: .*1 <= commit <= window"):
        sinter_decoders()
    monkeypatch.setattr(sys, "argv", ["/usr/bin/sinter", "collect", "--decoders",
                                      "qecd-uf-w8c4", "pymatching"])
    assert "qecd-uf-w8c4" in {**sinter_decoders()}
