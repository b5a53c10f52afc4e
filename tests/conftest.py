"""Fixtures shared by the test modules: polling, a real ZeroMQ server on loopback, ``qecd
serve`` in a child process, the offline decode a stream must reproduce, and the check that
no shared-memory region outlives a test.

Helpers are handed out as fixtures (a test asks for ``running_server`` and calls it), so no
test module imports another.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest


def pytest_sessionstart(session) -> None:
    """Compile (or load from Numba's cache) every kernel a server builds, before any test
    runs and outside the per-test timeouts: on a fresh clone the cache is cold, and the
    first tests would otherwise spend their whole timeout waiting for a plan build, the
    engine or a ring loop to compile. The build worker's fork server then loads them from
    the cache written here."""
    import subprocess
    import sys

    from qecd.codes import build_experiment
    from qecd.decoder.registry import backend_names
    from qecd.decoder.window import StreamDecoder
    from qecd.transport.server.build_worker import warm_up_kernels
    from qecd.transport.shm.streams import ShmStreamClient, ShmStreamServer

    # every registered backend's plan, whole shot and windowed: half of them compiled by a
    # second process meanwhile (a cold cache compiles for minutes, on one CPU per process)
    names = backend_names()
    other = subprocess.Popen([sys.executable, "-c", "import sys; from qecd.transport.server."
                              "build_worker import warm_up_kernels; "
                              "warm_up_kernels(sys.argv[1:])", *names[1::2]])
    warm_up_kernels(names[0::2])
    exp = build_experiment("repetition:d=3,r=2,p=0.01")
    dets, _ = exp.sample(20, seed=1)
    for backend in ("uf", "bp-cluster", "pymatching"):  # the engine and a ring loop each
        compiled = StreamDecoder(exp.dem, exp.layout, backend, window=2, commit=1).compile()
        if compiled is None:
            continue
        srv = ShmStreamServer(compiled, stream_id=1)
        srv.start()
        try:
            cli = ShmStreamClient.attach(srv.region_name, exp.layout, stream_id=1,
                                         corrections_per_shot=srv.corrections_per_shot)
            cli.stream_shots(dets, timeout_s=600)
            cli.bye()
            cli.close()
        finally:
            srv.stop()
            srv.join(30)
            srv.close()
    if other.wait() != 0:
        raise RuntimeError(f"kernel warm-up of {names[1::2]} failed (exit {other.returncode})")
    from qecd.transport.server import Server, ServerConfig

    with Server(ServerConfig(binds=("tcp://127.0.0.1:0",))) as server:
        server.warm_fast_path(every_kind=True)  # the ZeroMQ fast path: every engine kind


def _wait_for(cond: Callable[[], object], timeout_s: float = 10.0, poll_s: float = 0.02) -> bool:
    """Poll ``cond()`` every ``poll_s`` until it is true or ``timeout_s`` passed; returns its
    last value, so ``assert wait_for(...)`` fails only when the condition never held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(poll_s)
    return bool(cond())


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., bool]:
    """``wait_for(cond, timeout_s=10.0, poll_s=0.02)``: poll until another thread or process
    makes ``cond()`` true; False when it never did (use as ``assert wait_for(...)``)."""
    return _wait_for


@contextlib.contextmanager
def _running_server(tmp_path=None, **kw) -> Iterator:
    from qecd.transport.server import Server, ServerConfig

    binds = ["tcp://127.0.0.1:0"]
    if tmp_path is not None:
        binds.append(f"ipc://{tmp_path}/qecd.sock")
    server = Server(ServerConfig(binds=tuple(binds), **kw))
    try:
        server.start_thread()
        yield server
    finally:
        server.stop(timeout_s=10)


@pytest.fixture(scope="session")
def running_server() -> Callable[..., contextlib.AbstractContextManager]:
    """``with running_server(tmp_path=None, **config) as server``: a real
    :class:`~qecd.transport.server.Server` on its own thread, bound to a random tcp port on
    127.0.0.1 (``server.endpoints[0]``) and, given ``tmp_path``, an ipc socket in it
    (``server.endpoints[1]``); ``config`` goes to ``ServerConfig``. Stopped on exit."""
    return _running_server


def _offline_commits(exp, dets, window=None, commit=None, backend="pymatching", *,
                     decoder=None):
    from qecd.decoder.window import StreamDecoder

    if decoder is not None:  # a built plan: a fresh stream over it
        sd = decoder.fork()
    else:
        sd = StreamDecoder(exp.dem, exp.layout, backend, window=window, commit=commit)
    R, out = exp.layout.num_rounds, []
    for j, d in enumerate(dets):
        for ids in exp.layout.detectors:
            c = sd.push_round(d[ids])
            if c is not None:
                out.append((j * R + c.first_round, j * R + c.last_round,
                            c.observables.tolist()))
    return out


@pytest.fixture(scope="session")
def offline_commits() -> Callable[..., list]:
    """``offline_commits(exp, dets, window=None, commit=None, backend="pymatching", *,
    decoder=None)``: the ``(first_round, last_round, observables)`` of every commit of an
    offline :class:`~qecd.decoder.window.StreamDecoder` (built for ``exp.dem`` and
    ``exp.layout``, or a fork of ``decoder``) fed ``dets`` round by round, rounds counted
    across shots as on the wire."""
    return _offline_commits


def _serve_subprocess(tmp_path, *extra: str):
    ep = f"ipc://{tmp_path}/s.sock"
    proc = subprocess.Popen([sys.executable, "-m", "qecd", "serve", "--bind", ep, *extra],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(f"{tmp_path}/s.sock"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"qecd serve did not start: {proc.stderr.read()}")
        time.sleep(0.05)
    return proc, ep


@pytest.fixture(scope="session")
def serve_subprocess() -> Callable[..., tuple]:
    """``proc, endpoint = serve_subprocess(tmp_path, *args)``: ``qecd serve`` in a child
    process on an ipc socket in ``tmp_path`` (extra CLI ``args`` appended), returned once the
    socket exists. The caller stops it (``terminate``/``kill``, ``wait``) and closes
    ``proc.stderr``."""
    return _serve_subprocess


def _my_regions() -> set[str]:
    """This process's shared-memory regions (``qecd-<creator pid>-*``): another test run on
    the machine may create and remove its own meanwhile."""
    prefix = f"qecd-{os.getpid()}-"
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(prefix)}
    except FileNotFoundError:  # no /dev/shm: nothing can leak there
        return set()


@pytest.fixture
def no_shm_leak() -> Iterator[Callable[[], set[str]]]:
    """Fails the test if a ``/dev/shm/qecd-<this pid>-*`` region it created outlives it
    (after a garbage collection and up to 5 s for a loop thread to release its ring).
    Yields a function listing this process's regions."""
    before = _my_regions()
    yield _my_regions
    if not _my_regions() <= before:  # a finalizer or a loop thread may still release it
        gc.collect()
        _wait_for(lambda: _my_regions() <= before, timeout_s=5)
    left = _my_regions() - before
    assert not left, f"shared-memory regions outlived the test: {sorted(left)}"


class ServeProcess:
    """A ``qecd serve`` child process with its log in a file; ``start`` is its
    ``server_start`` log event (endpoints, metrics address)."""

    def __init__(self, args: list[str], log_path) -> None:
        self.log = open(log_path, "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "qecd", "serve", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        self.start: dict | None = None

    def started(self) -> bool:
        self.log.seek(0)
        for line in self.log:
            if '"server_start"' in line:
                self.start = json.loads(line)
                return True
        return False

    @property
    def metrics_url(self) -> str:
        return f"http://{self.start['metrics']}/metrics"

    def stop(self) -> int:
        """SIGINT (graceful), then SIGKILL after 30 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def qecd_serve(tmp_path) -> Iterator[Callable[..., ServeProcess]]:
    """``serve = qecd_serve(*args)``: ``qecd serve ARGS`` in a child process, returned once it
    logged ``server_start`` (``serve.start["endpoints"]``, ``serve.start["metrics"]``,
    ``serve.metrics_url``); ``serve.stop()`` stops it gracefully and returns its exit code.
    Every one still running is stopped at teardown."""
    procs: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        p = ServeProcess(list(args), tmp_path / f"serve{len(procs)}.log")
        procs.append(p)
        _wait_for(lambda: p.started() or p.proc.poll() is not None, timeout_s=90)
        if p.start is None:
            p.stop()
            pytest.fail(f"qecd serve did not start: {open(p.log.name).read()[-2000:]}")
        return p

    yield start
    for p in procs:
        with contextlib.suppress(Exception):
            p.stop()
