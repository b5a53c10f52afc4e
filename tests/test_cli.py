"""The qecd command line, run as a user runs it."""

import json
import subprocess
import sys


def _qecd(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "qecd", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_codes_json_lists_the_gross_code_and_d5_surface_code():
    out = _qecd("codes", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["spec"].split(",")[0]: r for r in json.loads(out.stdout)}
    bb = rows["bb:n=144"]
    assert (bb["n"], bb["k"], bb["d"]) == (144, 12, 12)
    s5 = rows["surface:d=5"]
    assert (s5["n"], s5["k"], s5["d"], s5["detectors_per_round"]) == (25, 1, 5, 24)
    assert (s5["first_round_detectors"], s5["final_round_detectors"]) == (12, 12)


def test_codes_table_and_help():
    out = _qecd("codes")
    assert out.returncode == 0 and "surface:d=5" in out.stdout
    assert _qecd("--help").returncode == 0


def test_bad_spec_exits_non_zero_with_the_field_named():
    out = _qecd("bench", "accuracy", "--spec", "bb:n=100")
    assert out.returncode == 2
    assert "'n'" in out.stderr and "72" in out.stderr
