"""docs/protocol.md states facts a C programmer relies on without reading qecd: each is
checked here against the code it describes (grammars, the committed-range rule, the ring
constants and status codes, the detector order of spec streams)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from qecd.codes import build_experiment
from qecd.codes.hypergraph_product import HGP_SEEDS
from qecd.codes.spec import families
from qecd.decoder.registry import backend_names
from qecd.decoder.window import StreamDecoder
from qecd.transport.shm import ring
from qecd.transport.wire import committed_ranges

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_spec_and_decoder_grammars_list_exactly_what_the_server_accepts():
    fams = re.search(r'family = (.*)\n', DOC).group(1)
    assert sorted(re.findall(r'"(\w+)"', fams)) == families()
    backends = re.search(r'backend = (.*)\n', DOC).group(1)
    assert sorted(re.findall(r'"([\w-]+)"', backends)) == sorted(backend_names())
    hgp_row = next(line for line in DOC.splitlines() if line.startswith("| `hgp` |"))
    for seed in HGP_SEEDS:
        assert f"`{seed}`" in hgp_row, seed


@pytest.mark.parametrize("spec", ["surface:d=5,r=4", "surface:d=3,r=2,basis=x,noise=si1000",
                                  "repetition:d=3,r=6", "bb:n=72,r=2", "hgp:seed=rep3,r=2"])
def test_spec_streams_carry_each_rounds_detectors_in_dem_order_one_round_after_another(spec):
    exp = build_experiment(spec)
    order = np.concatenate(exp.layout.detectors)
    assert order.tolist() == list(range(exp.layout.num_detectors))
    assert exp.layout.num_rounds == int(re.search(r"r=(\d+)", spec).group(1)) + 1


@pytest.mark.parametrize("R,W,C", [(51, 10, 5), (7, 4, 2), (7, 3, 3), (6, 2, 1), (10, 9, 4),
                                   (5, 5, 2)])
def test_committed_range_rule_is_what_the_decoder_commits(R, W, C):
    exp = build_experiment(f"repetition:d=3,r={R - 1},p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, "pymatching", window=W, commit=C)
    got = []
    for t, ids in enumerate(exp.layout.detectors):
        c = sd.push_round(np.zeros(len(ids), np.uint8))
        if c is not None:
            got.append((c.first_round, c.last_round, t))
    assert got == committed_ranges(R, W if W < R else None, C if W < R else None)
    k_star = max(0, math.ceil((R - W) / C)) if W < R else 0
    assert len(got) == k_star + 1


def test_ring_constants_and_status_codes_in_section_14_are_the_implementations():
    sec = DOC[DOC.index("## 14 "):DOC.index("## 15 ")]
    assert f"`0x{ring.MAGIC:016x}`" in sec
    assert f"`H = {ring.HEADER_SIZE}`" in sec and f"`RH = {ring.RING_HEADER_SIZE}`" in sec
    assert f"`SH = {ring.SLOT_HEADER_SIZE}`" in sec
    assert f"`SPIN_POLLS` = {ring.SPIN_POLLS}" in sec
    assert f"`MAX_PAUSES` = {ring.MAX_PAUSES}" in sec
    assert f"`CLOCK_EVERY` = {ring.CLOCK_EVERY}" in sec
    assert f"{ring.DEFAULT_YIELD_AFTER_NS:,}".replace(",", " ") + " ns" in sec
    assert "| 128 + 128·s | 8 | u64 | side `s` `pid`" in sec and ring.SIDE_OFFSET == 128
    for status in ring.RingStatus:
        v = int(status)
        assert f"| {'−' if v < 0 else ''}{abs(v)} | `{status.name}` |" in sec, status.name
    assert '"/" + shm_region' in sec  # shm_open needs the leading slash
    assert "packet starts at byte 16 of its slot" in sec
    assert ":func:" not in sec and ">>>" not in sec  # a specification, not a docstring


def test_limits_before_accept_in_section_3_are_qecd_serves(monkeypatch):
    """§3 "Limits before ACCEPT": the max_frame a client can count on before any ACCEPT
    (a HELLO is bounded by it) is qecd serve's fixed one, and ZMQ_MAXMSGSIZE follows it."""
    import qecd.transport.server as server_pkg
    from qecd.cli import build_parser
    from qecd.transport.wire import HEADER_SIZE, MAX_HELLO_BYTES

    sec = DOC[DOC.index("## 3 "):DOC.index("## 4 ")]
    configs = []  # what `qecd serve` would run, without running it
    monkeypatch.setattr(server_pkg, "run_server", lambda config, **_: configs.append(config) or 0)
    for extra in ([], ["--oversize-replies"]):
        args = build_parser().parse_args(["serve", *extra])
        assert args.func(args) == 0
    plain, replies = configs
    assert plain.limits.max_frame == replies.limits.max_frame == HEADER_SIZE + MAX_HELLO_BYTES
    assert (plain.oversize_replies, replies.oversize_replies) == (False, True)
    mf = plain.limits.max_frame
    sp = f"{mf:,}".replace(",", " "), f"{2 * mf:,}".replace(",", " ")  # 16 777 248 style
    assert f"| `max_frame` | {sp[0]} = 32 + `MAX_HELLO_BYTES`" in sec
    assert (f"| `ZMQ_MAXMSGSIZE` | {sp[0]} (= `max_frame`); {sp[1]} (= 2 × `max_frame`) with "
            "`--oversize-replies`") in sec
    assert f"expected at most {mf} bytes, got N" in sec  # parse_packet's OVERSIZE reason


def test_section_6_4_example_is_what_the_server_sends(running_server):
    """§6.4: with K rounds per packet a CORRECTION's header ``round`` is the packet's last
    round (not the trigger round), several CORRECTIONs of one packet share it and the
    packet's ``timestamp_ns``; the example table is checked row by row against a server."""
    from qecd.transport.client import Client

    sec = DOC[DOC.index("### 6.4 "):DOC.index("### 6.5 ")]
    rows = re.findall(r"^  \| (?:(\d+), 4, (T\d) \(\d+\.\.\d+\)|\(same packet\)) +\| (\d+) +\| "
                      r"(\d+) +\| (T\d) +\| (\d+) +\| (\d+) +\| (yes|no) +\|$", sec, re.M)
    assert len(rows) == 6
    want, first_of_packet = [], None
    for first, _, _trigger, seq, ts, lo, hi, end in rows:
        first_of_packet = int(first) if first else first_of_packet
        assert int(seq) == first_of_packet + 3 and int(ts[1]) == first_of_packet // 4
        want.append((int(seq), 1000 + int(ts[1]), int(lo), int(hi), end == "yes"))
    R, W, C = 6, 3, 2  # the §7.1 ranges and trigger rounds of shots 0 and 1
    ranges = [(lo + j * R, hi + j * R, t + j * R) for j in range(2)
              for lo, hi, t in committed_ranges(R, W, C)]
    assert ranges == [(w[2], w[3], int(r[2])) for w, r in zip(want, rows, strict=True)]
    with running_server(build_process=False) as srv, Client(srv.endpoints[0]) as c:
        st = c.open_stream("surface:d=5,r=5,p=0.001", decoder="pymatching", window=W,
                           commit=C)
        assert st.rounds_per_shot == R
        for p in range(3):
            n = sum(st.slice_sizes[(st.next_round + i) % R] for i in range(4))
            st.send_round(np.zeros(n, np.uint8), count=4, timestamp_ns=1000 + p)
        got = []
        for _ in want:
            r = st.recv(10)
            got.append((r.seq, r.timestamp_ns, r.body.first_round, r.body.last_round,
                        r.body.shot_end))
        assert got == want
        st.close(10)
