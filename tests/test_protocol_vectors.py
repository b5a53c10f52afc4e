"""docs/protocol_vectors.json: the machine-readable hex vectors, checked against the reference
implementation in both directions and against the hex blocks of docs/protocol.md §13 (the C
client checks the same file in tests/test_c_client.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from protocol_vectors import PATH, build_vectors, dump, load

from qecd.transport import wire as P

DOC = PATH.with_name("protocol.md")


def _doc_blocks() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    return {name: "".join(line.split("#", 1)[0] for line in block.splitlines()).replace(" ", "")
            for name, block in re.findall(r"```hex vector=(\w+)\n(.*?)```", text, re.S)}


def test_the_committed_file_is_what_the_reference_encoders_produce():
    assert PATH.read_text(encoding="utf-8") == dump(build_vectors())


@pytest.mark.parametrize("vec", load(), ids=lambda v: v["name"])
def test_each_vector_decodes_to_its_fields(vec):
    h, payload = P.parse_packet(bytes.fromhex(vec["hex"]))
    assert h._asdict() | {"magic": 0, "version": 0} == vec["header"] | {"magic": 0, "version": 0}
    body = vec["body"]
    t = h.msg_type
    if t == P.MsgType.HELLO:
        hello = P.decode_hello(h, payload)
        if "resume" in body:
            r = body["resume"]
            body = {"resume": P.Resume(r["stream_id"], bytes.fromhex(r["token"]))}
        want = P.Hello(**{"spec": None, "dem": None, **body})
        assert hello == want
    elif t == P.MsgType.ACCEPT:
        a = P.decode_accept(h, payload)
        assert a.rounds_per_shot == body["rounds_per_shot"]
        assert a.num_detectors == body["num_detectors"]
        fields = {k: v for k, v in body.items() if k not in ("rounds_per_shot", "num_detectors")}
        fields["slice_sizes"] = tuple(fields["slice_sizes"])
        if "measurement_slice_sizes" in fields:
            fields["measurement_slice_sizes"] = tuple(fields["measurement_slice_sizes"])
        if "resume_token" in fields:
            fields["resume_token"] = bytes.fromhex(fields["resume_token"])
        if "slice_detectors" in fields:
            fields["slice_detectors"] = tuple(map(tuple, fields["slice_detectors"]))
            fields["commit_ranges"] = tuple(map(tuple, fields["commit_ranges"]))
        assert a == P.Accept(**fields)
    elif t == P.MsgType.SYNDROME:
        lay = P.SyndromeLayout(body["slice_sizes"])
        bits = P.decode_syndrome_payload(h, payload, lay)
        at, fired = 0, []
        for i in range(h.count):
            n = lay.slice_sizes[(h.round + i) % lay.rounds_per_shot]
            fired.append(np.flatnonzero(bits[at:at + n]).tolist())
            at += n
        assert fired == body["fired"]
    elif t == P.MsgType.CORRECTION:
        c = P.decode_correction(h, payload)
        assert (c.first_round, c.last_round, c.service_ns, c.shot_end) == (
            body["first_round"], body["last_round"], body["service_ns"], body["shot_end"])
        assert c.observables.tolist() == body["observables"]
        assert (None if c.fault_ids is None else c.fault_ids.tolist()) == body["fault_ids"]
    elif t == P.MsgType.ERROR:
        e = P.decode_error(h, payload)
        assert (e.code, P.ErrorCode(e.code).name, e.reason, e.ref_type, e.next_round,
                list(e.versions)) == (body["code"], body["code_name"], body["reason"],
                                      body["ref_type"], body["next_round"], body["versions"])
    elif t == P.MsgType.STATS:
        assert (P.decode_stats(h, payload) or {}) == body
    else:
        assert body == {} and len(payload) == 0


def test_the_spec_blocks_are_the_files_vectors_and_the_spec_names_the_file():
    blocks = _doc_blocks()
    by_name = {v["name"]: v["hex"] for v in load()}
    assert blocks and set(blocks) <= set(by_name)
    for name, hexdigits in blocks.items():
        assert hexdigits == by_name[name], name
    assert "protocol_vectors.json" in DOC.read_text(encoding="utf-8")


def test_the_vectors_cover_every_msgpack_form_the_spec_lists():
    """str8, negative fixint, uint8/16/32, map16, nil, true/false all appear."""
    raw = {v["name"]: bytes.fromhex(v["hex"])[32:] for v in load()}
    assert b"\xd9" in raw["hello_dem_shm"] and b"\xff" in raw["hello_dem_shm"]
    assert b"\xcc" in raw["hello_dem_shm"] and b"\xcd" in raw["hello_dem_shm"]
    assert raw["accept_shm"][:3] == b"\xde\x00\x12" and b"\xce" in raw["accept_shm"]
    assert b"\xc0" in raw["accept_shm"] and b"\xc3" in raw["hello"]
    assert b"\xc2" in raw["hello_dem_shm"]
