"""`qecd bench sweep --slurm` on a real single-node Slurm (munged + slurmctld + slurmd started
here with a minimal slurm.conf in a temporary directory, on loopback, random ports)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sinter

from qecd.bench.sweep import run_tasks_here, sweep_tasks

pytestmark = pytest.mark.slow

INSTALL = "apt-get install -y slurm-wlm munge"
DAEMONS = ("munged", "slurmctld", "slurmd")


def _find(name):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def slurm():
    """A one-node Slurm cluster (this host, 2 CPUs); yields the environment to reach it."""
    missing = [d for d in (*DAEMONS, "sbatch", "squeue", "munge") if _find(d) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): {INSTALL}")
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm test starts slurmd, which needs root")
    import pwd

    try:
        munge_user = pwd.getpwnam("munge")
    except KeyError:
        pytest.skip(f"no 'munge' user: {INSTALL}")
    # munged runs as the munge user: its key and socket must be reachable from / (pytest's
    # tmp_path lives under a 0700 directory), so the cluster gets its own directory in /tmp
    root = Path(tempfile.mkdtemp(prefix="qecd-slurm-"))
    os.chmod(root, 0o755)
    for sub in ("spool", "spool/ctld", "spool/d", "log", "jobs"):
        (root / sub).mkdir()
    keydir, run = root / "munge", root / "run"
    for d, mode in ((keydir, 0o700), (run, 0o755)):
        d.mkdir()
        os.chown(d, munge_user.pw_uid, munge_user.pw_gid)
        os.chmod(d, mode)
    key = keydir / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chown(key, munge_user.pw_uid, munge_user.pw_gid)
    os.chmod(key, 0o400)
    sock = run / "munge.socket"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=qecdtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
SlurmUser=root
SlurmdUser=root
ReturnToService=2
StateSaveLocation={root}/spool/ctld
SlurmdSpoolDir={root}/spool/d
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pids = {}
    try:
        subprocess.run(["runuser", "-u", "munge", "--", _find("munged"),
                        f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={run}/munged.pid", f"--log-file={keydir}/munged.log",
                        f"--seed-file={keydir}/seed"], check=True, timeout=30,
                       capture_output=True)
        pids["munged"] = int((run / "munged.pid").read_text())
        subprocess.run([_find("slurmctld"), "-f", str(conf)], check=True, env=env, timeout=30)
        _wait(lambda: (root / "slurmctld.pid").exists(), 30, "slurmctld's pid file")
        pids["slurmctld"] = int((root / "slurmctld.pid").read_text())
        subprocess.run([_find("slurmd"), "-f", str(conf), "-N", host], check=True, env=env,
                       timeout=30)
        _wait(lambda: (root / "slurmd.pid").exists(), 30, "slurmd's pid file")
        pids["slurmd"] = int((root / "slurmd.pid").read_text())

        def idle():
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True,
                               text=True, timeout=30)
            return r.stdout.strip() == "idle"
        _wait(idle, 60, "the node to become idle in sinfo")
        yield env, root
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=30)
        try:
            _wait(lambda: subprocess.run(["squeue", "-h"], env=env, capture_output=True,
                                         text=True, timeout=30).stdout.strip() == "",
                  30, "the jobs to end")
        except (AssertionError, subprocess.SubprocessError):
            pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = pids.get(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                _wait(lambda p=pid: not Path(f"/proc/{p}").exists()
                      or "Z" in Path(f"/proc/{p}/stat").read_text().split()[2], 20,
                      f"{name} to stop")
            except (ProcessLookupError, FileNotFoundError):
                pass
        shutil.rmtree(root, ignore_errors=True)


def test_sweep_through_slurm_gives_the_same_shots_and_errors(slurm, tmp_path):
    env, root = slurm
    args = ["--spec", "repetition:d=3", "--distances", "3,5", "--ps", "0.03",
            "--decoders", "pymatching", "--max_shots", "4000", "--max_errors", "300",
            "--chunk_shots", "500", "--seed", "11"]
    csv, js = tmp_path / "slurm.csv", tmp_path / "slurm.json"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "qecd"), "bench", "sweep", *args,
         "--slurm", "--slurm_jobs", "2", "--slurm_cores", "1", "--slurm_memory", "1GB",
         "--slurm_walltime", "00:10:00", "--slurm_interface", "lo",
         "--slurm_log_directory", str(root / "jobs"), "--wait_timeout", "120",
         "--csv", str(csv), "--json", str(js), "--quiet"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tasks = sweep_tasks("repetition:d=3", distances=[3, 5], ps=[0.03],
                        decoders=["pymatching"], max_shots=4000, max_errors=300,
                        chunk_shots=500, seed=11)
    here = run_tasks_here(tasks)
    got = {s.strong_id: (s.shots, s.errors) for s in sinter.read_stats_from_csv_files(str(csv))}
    assert got == {i: (p.shots, p.errors) for i, p in here.items()}
    report = json.loads(js.read_text())
    assert report["cluster"].startswith("Slurm via dask-jobqueue (2 job(s)")
    assert sum(report["chunks_by_worker"].values()) == sum(p.chunks for p in here.values())
    logs = list((root / "jobs").iterdir())
    assert logs, "the Dask workers' Slurm job logs are missing"
    print("\n" + proc.stdout)
