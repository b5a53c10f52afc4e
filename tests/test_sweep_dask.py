"""bench/sweep_dask.py: `qecd bench sweep` on real Dask clusters (embedded, and one started
from the command line with `dask scheduler` + two `dask worker` processes), a worker killed
mid-run, and resumed sweeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sinter

from qecd.bench.sweep_dask import ClusterOptions, SweepError, open_client, run_sweep_tasks
from qecd.bench.sweep_store import CsvWriter, read_progress
from qecd.bench.sweep_tasks import SweepTask

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: A sweep that takes some seconds on two workers: the Python window decoder is slow.
SWEEP = ["--spec", "repetition:d=3", "--distances", "3,5", "--ps", "0.03",
         "--decoders", "pymatching,uf-w2c1", "--max_shots", "4000", "--max_errors", "400",
         "--chunk_shots", "500", "--seed", "7"]


def _totals(csv_path):
    return {s.strong_id: (s.shots, s.errors, s.custom_counts["chunks"])
            for s in sinter.read_stats_from_csv_files(str(csv_path))}


def _sweep(*args, **kw):
    return subprocess.Popen([str(BIN / "qecd"), "bench", "sweep", *SWEEP, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _finish(proc, timeout=240):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"sweep did not finish in {timeout} s:\n{err[-3000:]}")
    return proc.returncode, out, err


def _rows(path):
    return max(0, len(Path(path).read_text().splitlines()) - 1) if Path(path).exists() else 0


#: the paired LER ratio of a report row and what it was counted from
PAIRED_KEYS = ("ler_ratio_to_reference", "ler_ratio_to_reference_ci95", "paired_shots",
               "both_failed", "only_this_failed", "only_reference_failed", "ler_ratio_note")


def _paired(json_path):
    rows = json.loads(Path(json_path).read_text())["rows"]
    return {(r["spec"], r["decoder"]): tuple(json.dumps(r[k]) for k in PAIRED_KEYS)
            for r in rows}


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """The sweep on the embedded default cluster: its CSV totals per task and its report's
    paired LER ratios."""
    tmp = tmp_path_factory.mktemp("embedded")
    code, out, err = _finish(_sweep("--csv", str(tmp / "sweep.csv"), "--json",
                                    str(tmp / "sweep.json")))
    assert code == 0, err[-3000:]
    assert "embedded Dask LocalCluster" in out and "4/4 tasks done" in out
    paired = _paired(tmp / "sweep.json")
    windowed = [v for (_, dec), v in paired.items() if dec == "uf-w2c1"]
    assert windowed and all(json.loads(v[1]) for v in windowed)  # intervals, not None
    return _totals(tmp / "sweep.csv"), paired


@pytest.fixture(scope="module")
def embedded(embedded_run):
    return embedded_run[0]


@pytest.fixture
def cli_cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, random ports."""
    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []

    def start(name, *args):
        f = open(logs / f"{name}.log", "w")
        p = subprocess.Popen([str(BIN / "dask"), *args], stdout=f, stderr=subprocess.STDOUT,
                             start_new_session=True)
        procs.append(p)
        return p

    start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
          "--scheduler-file", str(sched_file))
    deadline = time.monotonic() + 60
    while not sched_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sched_file.exists(), (logs / "scheduler.log").read_text()
    time.sleep(0.2)
    address = json.loads(sched_file.read_text())["address"]
    assert address.startswith("tcp://127.0.0.1:")
    workers = [start(f"worker{i}", "worker", "--scheduler-file", str(sched_file),
                     "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                     "--no-dashboard", "--name", f"w{i}") for i in range(2)]
    try:
        yield address, workers, logs
    finally:  # workers first, while their scheduler can still see them off
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_cli_cluster_gives_the_embedded_shots_and_errors_and_survives_a_killed_worker(
        embedded_run, cli_cluster, tmp_path):
    embedded, embedded_paired = embedded_run
    address, workers, logs = cli_cluster
    path = tmp_path / "cluster.csv"
    proc = _sweep("--csv", str(path), "--scheduler", address, "--json",
                  str(tmp_path / "r.json"))
    deadline = time.monotonic() + 180
    while _rows(path) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before a worker could be killed"
    rows_at_kill = _rows(path)
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait(timeout=10)
    code, out, err = _finish(proc)
    assert code == 0, err[-3000:]
    assert _totals(path) == embedded  # same shots, errors and chunks per task
    assert rows_at_kill < sum(c for _, _, c in embedded.values())  # killed mid-run
    report = json.loads((tmp_path / "r.json").read_text())
    assert _paired(tmp_path / "r.json") == embedded_paired  # the same paired counts
    assert report["cluster"] == f"Dask scheduler {address}"
    done_after = {w for w, n in report["chunks_by_worker"].items()}
    assert done_after and all(w.startswith("tcp://127.0.0.1:") for w in done_after)
    print(f"\nkilled worker w1 after {rows_at_kill} committed chunks; totals per task equal "
          f"the embedded run's: {sorted(embedded.values())}\n" + out.splitlines()[-2])


def test_interrupted_sweep_resumes_to_the_same_totals_and_a_rerun_skips_everything(
        embedded_run, tmp_path):
    embedded, embedded_paired = embedded_run
    path = tmp_path / "resumed.csv"
    proc = _sweep("--csv", str(path), "--workers", "1")
    deadline = time.monotonic() + 180
    while _rows(path) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    code, _, err = _finish(proc)
    assert code == 130 and "rerun the same command to resume" in err
    partial = _totals(path)
    assert sum(c for _, _, c in partial.values()) < sum(c for _, _, c in embedded.values())

    code, out, err = _finish(_sweep("--csv", str(path), "--workers", "1", "--json",
                                    str(tmp_path / "resumed.json")))
    assert code == 0, err[-3000:]
    assert "resuming" in out
    assert _totals(path) == embedded
    assert _paired(tmp_path / "resumed.json") == embedded_paired
    before = path.read_text()
    code, out, _ = _finish(_sweep("--csv", str(path), "--workers", "1", "--quiet", "--json",
                                  str(tmp_path / "rerun.json")))
    assert code == 0 and "0 chunks run now" in out and "nothing to run" in out
    assert path.read_text() == before
    # a rerun reads every chunk's failures back from the store: the same intervals
    assert _paired(tmp_path / "rerun.json") == embedded_paired


def test_raising_max_shots_on_resume_runs_only_the_new_chunks(tmp_path):
    small = [SweepTask("repetition:d=3,p=0.05", "pymatching", seed=3, max_shots=1000,
                       chunk_shots=250)]
    big = [SweepTask("repetition:d=3,p=0.05", "pymatching", seed=3, max_shots=2000,
                     chunk_shots=250)]
    assert small[0].strong_id == big[0].strong_id
    path = tmp_path / "s.csv"
    with open_client(ClusterOptions(workers=1)) as client:
        w = CsvWriter.open(path)
        first = run_sweep_tasks(client, small, w, quiet=True)
        w.close()
        w = CsvWriter.open(path)
        second = run_sweep_tasks(client, big, w, prior=read_progress(path), quiet=True)
        w.close()
        fresh = run_sweep_tasks(client, big, None, quiet=True)
    sid = big[0].strong_id
    assert (first.new_chunks, second.new_chunks) == (4, 4)
    counts = [(p.shots, p.errors, p.chunks) for p in (second.progress[sid],
                                                      fresh.progress[sid],
                                                      read_progress(path)[sid])]
    assert counts[0] == counts[1] == counts[2] == (2000, counts[0][1], 8)
    # each chunk's failures, committed in two runs, equal those of one fresh run
    blobs = [p.failed for p in (second.progress[sid], fresh.progress[sid],
                                read_progress(path)[sid])]
    assert len(blobs[1]) == 8 and all(blobs[1]) and blobs[0] == blobs[1] == blobs[2]


def test_a_chunk_that_fails_for_good_stops_the_sweep_with_its_error():
    # union-find needs a matching graph; a bivariate bicycle code's DEM is not one
    bad = SweepTask("bb:n=72,r=2,p=0.001", "uf", seed=0, max_shots=10, chunk_shots=10)
    with open_client(ClusterOptions(workers=1)) as client:
        with pytest.raises(SweepError, match="failed after 1 attempt.*a matching graph"):
            run_sweep_tasks(client, [bad], quiet=True)
