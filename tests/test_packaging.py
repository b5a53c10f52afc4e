"""What a new user meets first: the licence, the version, --help, errors without tracebacks,
the bench-gate baselines and the files `qecd serve` leaves behind."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

import qecd
from qecd.cli import build_parser

# New names are imported inside the tests that use them, and exit codes are spelled as
# numbers where a test runs the CLI, so that every test here runs (and fails) on old code.

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _qecd(*args, cwd=None, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "qecd", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, **kw)


def _subparsers(parser, path=()):
    """(command path, parser) for every parser in the tree, the root included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))


def test_license_file_holds_the_apache_2_text_pyproject_names():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_version_is_written_once_and_qecd_version_prints_it():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r"^version\s*=\s*\"", pyproject, re.M)  # not typed a second time
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert 'version = {attr = "qecd.__version__"}' in pyproject
    assert importlib.metadata.version("qecd") == qecd.__version__
    out = _qecd("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"qecd {qecd.__version__}"


def _parser():
    from qecd.cli import spell_flags

    parser = build_parser()
    spell_flags(parser)
    return parser


def _key() -> str:
    from qecd.bench.gate import baseline_key

    return baseline_key()


def test_every_option_with_a_default_shows_it_in_help():
    parser = _parser()
    missing = []
    for path, sub in _subparsers(parser):
        formatter = sub._get_formatter()
        for action in sub._actions:
            if (not action.option_strings or action.default is None or action.nargs == 0
                    or action.default is argparse.SUPPRESS):
                continue  # no default to show, or an on/off flag
            if "default" not in formatter._get_help_string(action):
                missing.append(f"qecd {' '.join(path)} {action.option_strings[0]}")
    assert not missing, missing
    out = _qecd("emulate", "--help")
    assert "--shots SHOTS" in out.stdout and "(default: 1000)" in out.stdout
    out = _qecd("bench", "latency", "--help")
    assert "as fast as possible) (default: 0.0)" in " ".join(out.stdout.split())


def test_help_shows_dashed_flags_and_underscored_spellings_still_parse():
    parser = _parser()
    for path, sub in _subparsers(parser):
        shown = re.findall(r"--[A-Za-z0-9_-]+", sub.format_help())
        assert not [f for f in shown if "_" in f], (path, shown)
    a = parser.parse_args(["bench", "sweep", "--spec", "surface:d=3", "--max_errors", "3",
                           "--rounds-factor", "2"])
    b = parser.parse_args(["bench", "sweep", "--spec", "surface:d=3", "--max-errors", "3",
                           "--rounds_factor", "2"])
    assert (a.max_errors, a.rounds_factor) == (b.max_errors, b.rounds_factor) == (3, 2)
    c = parser.parse_args(["serve", "--max_streams_per_client", "7", "--stream_timeout", "2"])
    assert (c.max_streams_per_client, c.stream_timeout) == (7, 2.0)


def test_a_closed_pipe_on_stdout_ends_quietly_with_exit_141():
    proc = subprocess.Popen([sys.executable, "-m", "qecd", "codes"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before qecd writes: `qecd codes | head -0`
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141  # ExitCode.BROKEN_PIPE
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_a_missing_optional_package_is_one_line_naming_the_extra():
    code = ("import sys; sys.modules['ldpc'] = None\n"
            "from qecd.cli import main\n"
            "sys.exit(main(['bench', 'accuracy', '--spec', 'bb:n=72', '--decoders', "
            "'ldpc-bposd', '--shots', '10']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2  # ExitCode.USAGE
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qecd: error: qecd bench"), lines
    assert "'ldpc', which is not installed" in lines[0]
    assert lines[0].endswith('pip install "qecd[research]"')  # qecd.extras: the one hint


def test_bench_gate_outside_the_repository_finds_the_shipped_baseline(tmp_path):
    out = _qecd("bench", "gate", "--check-baseline", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"baselines for {_key()} found" in out.stdout


def test_bench_gate_without_a_baseline_for_this_machine_says_so_and_exits_5(tmp_path):
    out = _qecd("bench", "gate", "--baseline", str(tmp_path / "none.json"), cwd=tmp_path)
    assert out.returncode == 5  # ExitCode.NO_BASELINE
    assert "Traceback" not in out.stderr
    assert f"no ratio baseline for {_key()}" in out.stderr
    assert "make bench-baseline" in out.stderr


def test_make_bench_gate_stops_before_pytest_without_a_baseline(tmp_path):
    venv = pathlib.Path(sys.executable).parent.parent
    out = subprocess.run(["make", "-s", "bench-gate", f"VENV={venv}",
                          f"STAMP={sys.executable}", f"RATIO_BASELINE={tmp_path}/none.json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "no ratio baseline for" in out.stderr and "Error 5" in out.stderr, out.stderr
    assert "benchmark" not in out.stdout  # pytest never started


def test_shipped_ratio_baseline_is_keyed_and_well_formed():
    files = sorted((ROOT / "bench" / "baseline" / "ratios").glob("*.json"))
    assert files
    for f in files:
        data = json.loads(f.read_text())
        assert data["schema"] == "qecd.bench.gate/1" and data["ratios"]
        assert f.stem.count("-") >= 3  # system-implementation-version-machine


def test_serve_removes_its_ipc_socket_file_at_shutdown(tmp_path, qecd_serve):
    sock = tmp_path / "qecd.sock"
    serve = qecd_serve("--bind", f"ipc://{sock}")
    assert sock.exists()
    assert serve.stop() == 0
    assert not sock.exists()


def test_serve_metrics_listen_on_the_address_given(qecd_serve):
    serve = qecd_serve("--bind", "tcp://127.0.0.1:0", "--metrics-port", "0",
                       "--metrics-addr", "127.0.0.2")
    where = serve.start["metrics"]
    assert where.startswith("127.0.0.2:")
    port = where.split(":")[1]
    text = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10).read()
    text = text.decode()
    assert f'version="{qecd.__version__}"' in text and "process_cpu_seconds_total" in text
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_exit_codes_are_the_documented_ones():
    from qecd.exit_codes import ExitCode

    readme = (ROOT / "README.md").read_text()
    for code in ExitCode:
        assert re.search(rf"\|\s*`?{int(code)}`?\s*\|", readme), f"exit {int(code)} undocumented"


def test_closing_a_server_leaves_the_ipc_file_another_server_bound_since(tmp_path):
    from qecd.transport.server import Server, ServerConfig

    path = tmp_path / "s.sock"
    first = Server(ServerConfig(binds=(f"ipc://{path}",)))
    second = Server(ServerConfig(binds=(f"ipc://{path}",)))  # libzmq replaces the file
    first.close()
    assert path.exists()  # the second server's socket, not the first's
    second.close()
    assert not path.exists()


@pytest.mark.slow
def test_the_wheel_carries_the_licence_the_version_and_the_baselines(tmp_path):
    import shutil
    import zipfile

    src = tmp_path / "src"  # a copy: setuptools writes build/ and *.egg-info beside the source
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "reports", "*.egg-info", "__pycache__", ".*_cache",
        ".hypothesis", ".benchmarks"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(src)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (wheel,) = tmp_path.glob("qecd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    meta = zipfile.ZipFile(wheel).read(f"qecd-{qecd.__version__}.dist-info/METADATA").decode()
    assert f"Version: {qecd.__version__}" in meta
    assert f"qecd-{qecd.__version__}.dist-info/licenses/LICENSE" in names
    assert f"qecd/bench/baseline/ratios/{_key()}.json" in names
    assert any(n.startswith("qecd/bench/baseline/Linux-") and n.endswith(".json")
               and "/ratios/" not in n for n in names)
