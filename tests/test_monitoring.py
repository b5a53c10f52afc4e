"""The deployment kit works against the real things: a live `qecd serve`, promtool and the
Prometheus server (Debian's `prometheus` package), the dashboard's and the alert rules'
metric names, the service unit's and the container's command lines."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import qecd
from qecd.cli import build_parser
from qecd.transport.client import Client, ServerError
from qecd.transport.wire import ErrorCode, encode_error

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
INSTALL = "apt-get install -y prometheus"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason=f"promtool not installed: {INSTALL}")
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason=f"prometheus not installed: {INSTALL}")
#: names that Prometheus makes itself, not an exporter
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
METRIC = re.compile(r"\b((?:qecd|process|python)_[a-zA-Z0-9_]+)\b")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _drive(endpoint: str, wait_for) -> None:
    """Real traffic: two streams with rounds and corrections, one bad frame (an ERROR reply)
    and one ERROR sent to the server (never answered: a counted drop)."""
    with Client(endpoint) as client:
        for _ in range(2):
            s = client.open_stream("repetition:d=3,r=2,p=0.01")
            for size in s.slice_sizes:
                s.send_round(np.zeros(size, np.uint8))
            s.recv_correction(10)
        client.send_frame(b"QD")  # too short: ERROR SHORT_FRAME
        with pytest.raises(ServerError):
            client.recv(10)
        client.send_frame(encode_error(ErrorCode.INTERNAL, "a client-side failure"))
        assert wait_for(lambda: client.stats()["dropped"].get("ERROR") == 1)


@pytest.fixture
def live(qecd_serve, wait_for):
    serve = qecd_serve("--bind", "tcp://127.0.0.1:0", "--metrics-port", "0",
                       "--metrics-streams", "1", "--stream-timeout", "300")
    _drive(serve.start["endpoints"][0], wait_for)
    return serve


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.lists(st.tuples(st.sampled_from(["open", "close", "rounds",
                                                              "scrape"]),
                                             st.integers(0, 50)), max_size=60))
def test_stream_labels_stay_bounded_and_other_never_goes_down(limit, events):
    from qecd.transport.server.metrics import StreamLabels, StreamRow

    labels = StreamLabels(limit)
    rounds: dict[int, int] = {}  # the open streams' counts
    total, next_id, last_other, seen_unlabelled = 0, 1, 0, set()
    for kind, n in [*events, ("scrape", 0)]:
        if kind == "open":
            rounds[next_id] = 0
            next_id += 1
        elif kind == "close" and rounds:
            del rounds[sorted(rounds)[n % len(rounds)]]
        elif kind == "rounds" and rounds:
            rounds[sorted(rounds)[n % len(rounds)]] += n
            total += n
        elif kind == "scrape":
            out = labels.fold([StreamRow(i, r, 0, 0, 0, 0) for i, r in rounds.items()],
                              StreamRow(0, total, 0, 0, 0, 0))
            assert len(out) <= limit + 1 and out[-1][0] == "other"
            assert sum(r.rounds for _, r in out) == total
            assert out[-1][1].rounds >= last_other  # a counter: never down
            last_other = out[-1][1].rounds
            labelled = {int(k) for k, _ in out[:-1]}
            assert not labelled & seen_unlabelled  # "other" for life
            seen_unlabelled |= set(rounds) - labelled


def _scrape(url: str) -> dict[str, list]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _names_in_dashboard() -> set[str]:
    dash = json.loads((DEPLOY / "grafana" / "qecd.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return {m for e in exprs for m in METRIC.findall(e)}


def _names_in_rules() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "qecd_alerts.yml").read_text())
    return {m for g in rules["groups"] for r in g["rules"] for m in METRIC.findall(r["expr"])}


def test_every_metric_the_dashboard_and_the_alerts_name_is_exported(live):
    scraped = _scrape(live.metrics_url)
    wanted = _names_in_dashboard() | _names_in_rules()
    assert len(wanted) >= 15  # the check itself looks at something
    missing = sorted(n for n in wanted - PROMETHEUS_OWN if n not in scraped)
    assert not missing, f"named in deploy/ but not exported by qecd serve: {missing}"
    # the budget bucket the alert and the dashboard select is one qecd exports
    text = (DEPLOY / "grafana" / "qecd.json").read_text() + (
        DEPLOY / "prometheus" / "qecd_alerts.yml").read_text()
    bounds = {s.labels["le"] for s in scraped["qecd_round_service_seconds_bucket"]}
    wanted_le = set(re.findall(r'le=\\?"([^"\\]+)\\?"', text))
    assert wanted_le and wanted_le <= bounds, (wanted_le, bounds)


def test_live_scrape_has_build_info_process_metrics_and_bounded_stream_labels(live):
    scraped = _scrape(live.metrics_url)
    (info,) = scraped["qecd_build_info"]
    assert info.labels["version"] == qecd.__version__ and info.value == 1
    assert {"python", "numba", "numpy", "pyzmq"} <= set(info.labels)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_open_fds", "process_start_time_seconds", "python_info"):
        assert name in scraped, name
    # --metrics-streams 1: the first stream seen has its label, the other one is "other"
    by_stream = {s.labels["stream"]: s.value for s in scraped["qecd_stream_rounds_total"]}
    assert len(by_stream) == 2 and "other" in by_stream
    (total,) = scraped["qecd_rounds_total"]
    assert sum(by_stream.values()) == total.value == 6
    assert scraped["qecd_errors_total"][0].labels["code"] == "SHORT_FRAME"


@needs_promtool
def test_promtool_accepts_the_scrape_config():
    out = subprocess.run(["promtool", "check", "config",
                          str(DEPLOY / "prometheus" / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    out = subprocess.run(["promtool", "check", "rules",
                          str(DEPLOY / "prometheus" / "qecd_alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 9 rules found" in out.stdout


@needs_promtool
def test_promtool_rule_tests_pass_and_can_fail(tmp_path):
    test_file = DEPLOY / "prometheus" / "qecd_alerts_test.yml"
    out = subprocess.run(["promtool", "test", "rules", str(test_file)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    # the same tests against rules whose budget bucket is wrong must fail
    broken = (DEPLOY / "prometheus" / "qecd_alerts.yml").read_text().replace(
        'le="1e-05"', 'le="2e-05"')
    (tmp_path / "qecd_alerts.yml").write_text(broken)
    shutil.copy(test_file, tmp_path / test_file.name)
    bad = subprocess.run(["promtool", "test", "rules", str(tmp_path / test_file.name)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "QecdServiceBudgetBreach" in bad.stdout + bad.stderr


def _prom_query(port: int, query: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success"
    return body["data"]["result"]


@needs_prometheus
@pytest.mark.slow
def test_prometheus_server_scrapes_a_live_qecd_serve(live, tmp_path, wait_for):
    target = live.start["metrics"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(DEPLOY / "prometheus" / "qecd_alerts.yml")]
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [target]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def scraped() -> bool:
            try:
                return bool(_prom_query(port, "qecd_rounds_total"))
            except OSError:
                return False

        assert wait_for(scraped, timeout_s=60, poll_s=0.5), \
            open(tmp_path / "prometheus.log").read()[-3000:]
        (rounds,) = _prom_query(port, "qecd_rounds_total")
        assert rounds["metric"]["job"] == "qecd" and rounds["metric"]["instance"] == target
        assert float(rounds["value"][1]) == 6
        (info,) = _prom_query(port, "qecd_build_info")
        assert info["metric"]["version"] == qecd.__version__
        (up,) = _prom_query(port, 'up{job="qecd"}')
        assert up["value"][1] == "1"
        rules = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/rules", timeout=5).read())["data"]["groups"]
        names = {r["name"] for g in rules for r in g["rules"]}
        assert {"QecdServiceBudgetBreach", "QecdBacklogGrowing", "QecdStreamTimeouts"} <= names
        assert all(r["health"] != "err" for g in rules for r in g["rules"])
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def _serve_args(argv: list[str]):
    from qecd.cli import spell_flags

    parser = build_parser()
    spell_flags(parser)
    return parser.parse_args(argv)


def test_the_systemd_unit_runs_a_command_qecd_serve_accepts():
    text = (DEPLOY / "systemd" / "qecd.service").read_text().replace("\\\n", " ")
    (line,) = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[0].endswith("/qecd")
    args = _serve_args(argv[1:])
    assert args.command == "serve" and args.metrics_port == 9464 and args.cpu == 1
    assert "CPUAffinity=1" in text


def test_the_container_runs_a_command_qecd_serve_accepts():
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert entry[0] == "qecd"
    args = _serve_args(entry[1:] + cmd)
    assert args.metrics_addr == "0.0.0.0" and args.metrics_port == 9464 and args.cpu == 1
    assert re.search(r"^EXPOSE .*\b9464\b", text, re.M)
