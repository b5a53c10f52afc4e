"""Build the C client, run its example against a real ``qecd serve`` and check every correction.

The check a vendor (or CI) runs: compile ``clients/c`` with the system C compiler against
libzmq, start ``qecd serve`` on loopback, sample shots with stim, write them as a stim ``b8``
file in DEM detector order (what stim writes; the example maps them to rounds with the
ACCEPT's ``slice_detectors``), run ``qecd_stream`` over ZeroMQ and over the shared-memory
rings, and compare every CORRECTION it recorded against an offline decode of the same shots
(the Python side computes the expected commits round by round with the same decoder and
window). Lost = an expected (first_round, last_round) commit that never arrived; duplicated =
one that arrived more than once; mismatched = a commit whose observable flips differ from the
offline decode's. The Python client's bare round trip (HEARTBEAT echo over ZeroMQ, ring ping
over the rings) is measured against the same server in the same run.

Usage::

    python clients/c/check.py --shots 10000 --spec surface:d=5,r=50,p=0.003 \
        --windows whole,10:5 --transports zmq,shm --ping 2000

Prints one JSON object per (transport, window) run and exits non-zero on any loss,
duplicate or mismatch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
APT_LINE = "apt-get install -y gcc libzmq3-dev pkg-config"


def toolchain_missing() -> str | None:
    """Why the C client cannot be built here (None if it can): the exact install line."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which(cc) is None:
        return f"no C compiler (cc/gcc): {APT_LINE}"
    if not Path("/usr/include/zmq.h").exists() and subprocess.run(
            ["pkg-config", "--exists", "libzmq"], capture_output=True).returncode != 0:
        return f"no libzmq headers: {APT_LINE}"
    return None


def build(build_dir: Path) -> Path:
    """``make`` the library, the example and the vector checker into ``build_dir``."""
    subprocess.run(["make", "-s", "-C", str(HERE), f"BUILD={build_dir}"], check=True,
                   capture_output=True, text=True)
    return build_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``qecd serve`` on a loopback port in a child process (stopped with SIGINT)."""

    def __init__(self, *extra: str) -> None:
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        qecd = Path(sys.executable).with_name("qecd")
        cmd = [str(qecd) if qecd.exists() else "qecd", "serve", "--bind", self.endpoint, *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        from qecd.transport.client import Client, ServerTimeout

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qecd serve exited: {self.proc.stderr.read().decode()}")
            try:
                with Client(self.endpoint, timeout_s=1.0) as c:
                    c.heartbeat(timeout_s=1.0)
                return
            except ServerTimeout:
                continue
        raise RuntimeError(f"qecd serve did not answer on {self.endpoint}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_b8(path: Path, dets_wire: np.ndarray) -> None:
    """stim's b8 format: each shot's bits packed little-endian, padded to a byte."""
    path.write_bytes(np.packbits(dets_wire, axis=1, bitorder="little").tobytes())


def offline_commits(exp, dets: np.ndarray, decoder: str, window: int | None,
                    commit: int | None) -> dict[tuple[int, int], tuple[int, str]]:
    """Every commit of an offline round-by-round decode: (first, last) -> (shot_end, flips)."""
    from qecd.decoder.window import StreamDecoder

    sd = StreamDecoder(exp.dem, exp.layout, decoder, window=window, commit=commit)
    R = exp.layout.num_rounds
    out = {}
    for j, d in enumerate(dets):
        for ids in exp.layout.detectors:
            c = sd.push_round(d[ids])
            if c is not None:
                first, last = j * R + c.first_round, j * R + c.last_round
                out[(first, last)] = (int(last == j * R + R - 1),
                                      "".join(str(int(b)) for b in c.observables))
    return out


def read_corrections(path: Path) -> list[tuple[int, int, int, str, int, int]]:
    rows = []
    for line in path.read_text().splitlines():
        f, la, end, obs, svc, react = line.split()
        rows.append((int(f), int(la), int(end), obs, int(svc), int(react)))
    return rows


def compare(expected: dict, got: list) -> dict[str, int]:
    """Lost, duplicated and mismatched commits of ``got`` against ``expected``."""
    seen: dict[tuple[int, int], int] = {}
    mismatched = unexpected = 0
    for f, la, end, obs, _svc, _react in got:
        key = (f, la)
        seen[key] = seen.get(key, 0) + 1
        want = expected.get(key)
        if want is None:
            unexpected += 1
        elif seen[key] == 1 and want != (end, obs):
            mismatched += 1
    return {"expected": len(expected), "received": len(got),
            "lost": sum(1 for k in expected if k not in seen),
            "duplicated": sum(v - 1 for v in seen.values()),
            "mismatched": mismatched, "unexpected": unexpected}


def run_c(build_dir: Path, endpoint: str, spec: str | None, shots_file: Path, out: Path, *,
          transport: str, decoder: str, window: int | None, commit: int | None,
          ping: int = 0, timeout_s: float = 600.0, dem_path: Path | None = None,
          input: str = "detectors", resume_after: int = 0,
          rounds_per_packet: int = 1, inflight: int = 0) -> dict:
    """Run ``qecd_stream`` once (for ``spec``, or the DEM file ``dem_path``); its key=value
    summary as a dict (plus ``returncode`` and the end of ``stderr``)."""
    source = ["--spec", spec] if dem_path is None else ["--dem", str(dem_path)]
    cmd = [str(build_dir / "qecd_stream"), "--connect", endpoint, *source,
           "--in", str(shots_file), "--format", "b8", "--decoder", decoder,
           "--transport", transport, "--out", str(out), "--ping", str(ping),
           "--input", input]
    if window is not None:
        cmd += ["--window", str(window), "--commit", str(commit)]
    if resume_after:
        cmd += ["--resume-after", str(resume_after)]
    if rounds_per_packet != 1:
        cmd += ["--rounds-per-packet", str(rounds_per_packet)]
    if inflight:
        cmd += ["--inflight", str(inflight)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    summary = dict(kv.split("=", 1) for kv in p.stdout.split())
    summary["returncode"] = p.returncode
    summary["stderr"] = p.stderr[-2000:]
    return summary


def python_rtt(endpoint: str, spec: str, transport: str, n: int) -> dict:
    """The Python client's bare round trip on a stream of ``spec`` (p50/p99/min in us)."""
    from qecd.transport.client import Client

    with Client(endpoint, timeout_s=30) as client:
        if transport == "zmq":
            stream = client.open_stream(spec)
            rtt = np.empty(n, dtype=np.int64)
            for i in range(n):
                t0 = time.monotonic_ns()
                client.heartbeat(stream.stream_id, timeout_s=5)
                rtt[i] = time.monotonic_ns() - t0
            stream.close()
        else:
            cli = client.open_shm_stream(spec, decoder="pymatching")
            rtt = cli.ping(n)
            cli.bye()
            cli.close()
    rtt = np.sort(rtt)
    return {"pings": int(len(rtt)), "rtt_p50_us": round(float(rtt[len(rtt) // 2]) / 1e3, 2),
            "rtt_p99_us": round(float(rtt[int(len(rtt) * 0.99)]) / 1e3, 2),
            "rtt_min_us": round(float(rtt[0]) / 1e3, 2)}


def parse_window(text: str) -> tuple[int | None, int | None]:
    if text == "whole":
        return None, None
    w, c = text.split(":")
    return int(w), int(c)


def sample_measurements(exp, shots: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw measurements (record order) and the same shots' detection events (stim's own
    conversion), uint8."""
    meas = exp.circuit.compile_sampler(seed=seed).sample(shots)
    dets = exp.circuit.compile_m2d_converter().convert(measurements=meas,
                                                       append_observables=False)
    return meas.astype(np.uint8), dets.astype(np.uint8)


def check(*, spec: str, shots: int, windows: list[str], transports: list[str],
          decoder: str = "pymatching", ping: int = 0, seed: int = 2026,
          workdir: Path | None = None, endpoint: str | None = None,
          inputs: tuple[str, ...] = ("detectors",)) -> list[dict]:
    """Everything above, once per (window, transport, input); a list of result dicts.
    Measurement input sends the same shots' raw measurements (ZeroMQ only), so its expected
    corrections are the detection-event ones."""
    from qecd.codes import build_experiment

    tmp = Path(workdir or tempfile.mkdtemp(prefix="qecd-c-"))
    build_dir = build(tmp / "build")
    exp = build_experiment(spec)
    meas, dets = sample_measurements(exp, shots, seed)
    shots_file = tmp / "shots.b8"
    write_b8(shots_file, dets)
    meas_file = tmp / "measurements.b8"
    write_b8(meas_file, meas)
    results = []
    serve = None if endpoint else ServeProcess()
    try:
        ep = endpoint or serve.endpoint
        for wtext in windows:
            window, commit = parse_window(wtext)
            expected = offline_commits(exp, dets, decoder, window, commit)
            for transport, inp in [(t, i) for i in inputs for t in transports
                                   if i == "detectors" or t == "zmq"]:
                out = tmp / f"corrections-{transport}-{inp}-{wtext.replace(':', 'c')}.txt"
                summary = run_c(build_dir, ep, spec,
                                meas_file if inp == "measurements" else shots_file, out,
                                transport=transport, decoder=decoder, window=window,
                                commit=commit, ping=ping, input=inp)
                got = read_corrections(out) if out.exists() else []
                res = {"transport": transport, "input": inp, "window": wtext, "shots": shots,
                       **compare(expected, got), "c": summary}
                if ping and inp == "detectors":
                    res["python"] = python_rtt(ep, spec, transport, ping)
                react = np.array([r[5] for r in got], dtype=np.int64)
                if react.size:
                    res["c_reaction_p50_us"] = round(float(np.median(react)) / 1e3, 2)
                results.append(res)
    finally:
        if serve is not None:
            serve.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="surface:d=5,r=50,p=0.003")
    ap.add_argument("--shots", type=int, default=10_000)
    ap.add_argument("--windows", default="whole,10:5", help="comma list: whole or W:C")
    ap.add_argument("--transports", default="zmq,shm")
    ap.add_argument("--decoder", default="pymatching")
    ap.add_argument("--ping", type=int, default=2000, help="bare round trips per run")
    ap.add_argument("--connect", default=None, help="use this server instead of starting one")
    ap.add_argument("--inputs", default="detectors",
                    help="comma list: detectors, measurements (raw bits, ZeroMQ only)")
    args = ap.parse_args(argv)
    why = toolchain_missing()
    if why:
        print(why, file=sys.stderr)
        return 2
    results = check(spec=args.spec, shots=args.shots, windows=args.windows.split(","),
                    transports=args.transports.split(","), decoder=args.decoder,
                    ping=args.ping, endpoint=args.connect,
                    inputs=tuple(args.inputs.split(",")))
    bad = 0
    for r in results:
        print(json.dumps(r))
        bad += r["lost"] + r["duplicated"] + r["mismatched"] + r["unexpected"]
        bad += r["c"]["returncode"] != 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
