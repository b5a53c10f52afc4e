"""The machine-readable test vectors of docs/protocol.md (docs/protocol_vectors.json).

Each vector is one packet: its header fields, its body as plain JSON values, and its bytes
as hex. :func:`build_vectors` produces them from the reference implementation
(``qecd.transport.wire``); ``tests/test_protocol_vectors.py`` checks the committed file
against it in both directions and the C client's checker (``clients/c/qecd_vectors.c``) reads
the same file through :func:`c_lines`. Regenerate after a deliberate change with::

    python tests/protocol_vectors.py --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from qecd.transport import wire as P

PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol_vectors.json"
TS = 0x1122334455667788
SLICES = [13, 24, 24, 13]
GAP_REASON = ("SYNDROME field 'round': expected 8 (next round of stream 7), got 9: "
              "1 round(s) missing")


def _hello_body(h: P.Hello) -> dict:
    """The HELLO map in the reference encoder's key order (nil = None; bin as hex)."""
    if h.resume is not None:
        return {"resume": {"stream_id": h.resume.stream_id, "token": h.resume.token.hex()}}
    m: dict = {}
    if h.spec is not None:
        m["spec"] = h.spec
    elif h.dem is not None:
        m["dem"] = h.dem
        m["time_coord"] = h.time_coord
    else:
        m["circuit"] = h.circuit
        m["time_coord"] = h.time_coord
    m.update(decoder=h.decoder, window=h.window, commit=h.commit, want_faults=h.want_faults)
    if h.transport != "zmq":
        m["transport"] = h.transport
    if h.describe:
        m["describe"] = True
    if h.input != "detectors":
        m["input"] = h.input
    return m


def _accept_body(a: P.Accept) -> dict:
    m = {"stream_id": a.stream_id, "rounds_per_shot": a.rounds_per_shot,
         "slice_sizes": list(a.slice_sizes), "num_detectors": a.num_detectors,
         "num_observables": a.num_observables, "decoder": a.decoder, "window": a.window,
         "commit": a.commit, "want_faults": a.want_faults, "heartbeat_ms": a.heartbeat_ms,
         "timeout_ms": a.timeout_ms, "max_backlog": a.max_backlog, "max_frame": a.max_frame,
         "server": a.server}
    if a.shm_region is not None:
        m.update(shm_region=a.shm_region, shm_slots=a.shm_slots,
                 shm_slot_size=a.shm_slot_size, corrections_per_shot=a.corrections_per_shot)
    if a.measurement_slice_sizes is not None:
        m["measurement_slice_sizes"] = list(a.measurement_slice_sizes)
    if a.slice_detectors is not None:
        m.update(slice_detectors=[list(ids) for ids in a.slice_detectors],
                 commit_ranges=[list(r) for r in a.commit_ranges], dem=a.dem)
    if a.next_round is not None:
        m["next_round"] = a.next_round
    if a.resume_token is not None:
        m["resume_token"] = a.resume_token.hex()
    return m


HELLO = P.Hello(spec="surface:d=5,r=3,p=0.001", decoder="pymatching", window=4, commit=2,
                want_faults=True)
HELLO_DEM_SHM = P.Hello(dem="error(0.01) D0 L0\ndetector(0, 0) D0\n", time_coord=-1,
                        decoder="uf", window=300, commit=150, transport="shm",
                        describe=True)
ACCEPT = P.Accept(stream_id=7, slice_sizes=(13, 24, 24, 13), num_observables=1,
                  decoder="pymatching", window=4, commit=2, want_faults=True,
                  heartbeat_ms=1000, timeout_ms=5000, max_backlog=1024, max_frame=65536,
                  server="qecd 0.1.0")
ACCEPT_SHM = ACCEPT._replace(stream_id=70000, want_faults=False, window=None, commit=None,
                             decoder="uf", shm_region="qecd-4242-0a1b2c3d4e5f",
                             shm_slots=256, shm_slot_size=128, corrections_per_shot=1)
HELLO_CIRCUIT = P.Hello(circuit="M 0 1\nDETECTOR(0, 0) rec[-1] rec[-2]\n",
                        input="measurements", decoder="pymatching-w10c5")
ACCEPT_MEASUREMENTS = P.Accept(stream_id=12, slice_sizes=(1,), num_observables=0,
                               server="qecd 0.1.0", measurement_slice_sizes=(2,))
DESCRIBED_DEM = ("error(0.1) D0 D2\nerror(0.1) D1 D3 L0\ndetector(0, 0) D0\n"
                 "detector(1, 1) D1\ndetector(0, 0) D2\ndetector(1, 1) D3\n")
ACCEPT_DESCRIBED = P.Accept(stream_id=9, slice_sizes=(2, 2), num_observables=1, window=None,
                            commit=None, server="qecd 0.1.0", max_frame=65536,
                            slice_detectors=((0, 2), (1, 3)), commit_ranges=((0, 1, 1),),
                            dem=DESCRIBED_DEM)
#: the session's resume (§6.9): stream 7's token from its ACCEPT, and the resumed ACCEPT
#: (rounds 0..5 were received: next_round 6) with a fresh token
RESUME_TOKEN = bytes(range(0xa0, 0xc0))
HELLO_RESUME = P.Hello(resume=P.Resume(7, RESUME_TOKEN))
ACCEPT_RESUMED = ACCEPT._replace(next_round=6, resume_token=bytes(range(0xc0, 0xe0)))
#: an opening ACCEPT as plain-mode qecd serve sends it: every one carries a resume token
ACCEPT_TOKEN = ACCEPT._replace(resume_token=RESUME_TOKEN)
FIRED = [[0, 3, 12], [1, 8, 23]]
STATS = {"rounds_received": 8, "backlog_rounds": 0, "errors_sent": 1}


def _syndrome_bits() -> np.ndarray:
    bits = np.zeros(13 + 24, np.uint8)
    bits[FIRED[0]] = 1
    bits[[13 + i for i in FIRED[1]]] = 1
    return bits


def _correction(faults: bool) -> P.Correction:
    return P.Correction(4, 7, np.array([1], np.uint8),
                        np.array([17, 342], np.uint32) if faults else None, 2500, True)


def _correction_body(c: P.Correction) -> dict:
    return {"first_round": c.first_round, "last_round": c.last_round,
            "service_ns": c.service_ns, "observables": [int(b) for b in c.observables],
            "fault_ids": None if c.fault_ids is None else [int(f) for f in c.fault_ids],
            "shot_end": c.shot_end}


def build_vectors() -> list[dict]:
    """Every vector, encoded by the reference implementation."""
    ts2 = 0x1122334455667799
    items = [
        ("hello", P.encode_hello(HELLO, seq=1, timestamp_ns=1_000_000), _hello_body(HELLO)),
        ("hello_dem_shm", P.encode_hello(HELLO_DEM_SHM, seq=2, timestamp_ns=5),
         _hello_body(HELLO_DEM_SHM)),
        ("hello_circuit_measurements", P.encode_hello(HELLO_CIRCUIT, seq=4, timestamp_ns=7),
         _hello_body(HELLO_CIRCUIT)),
        ("accept", P.encode_accept(ACCEPT, seq=1, timestamp_ns=1_000_000), _accept_body(ACCEPT)),
        ("accept_measurements", P.encode_accept(ACCEPT_MEASUREMENTS, seq=4, timestamp_ns=7),
         _accept_body(ACCEPT_MEASUREMENTS)),
        ("accept_shm", P.encode_accept(ACCEPT_SHM, seq=2, timestamp_ns=5),
         _accept_body(ACCEPT_SHM)),
        ("accept_described", P.encode_accept(ACCEPT_DESCRIBED, seq=3, timestamp_ns=6),
         _accept_body(ACCEPT_DESCRIBED)),
        ("accept_with_token", P.encode_accept(ACCEPT_TOKEN, seq=1, timestamp_ns=TS),
         _accept_body(ACCEPT_TOKEN)),
        ("hello_resume", P.encode_hello(HELLO_RESUME, seq=5, timestamp_ns=2_000_000),
         _hello_body(HELLO_RESUME)),
        ("accept_resumed", P.encode_accept(ACCEPT_RESUMED, seq=5, timestamp_ns=2_000_000),
         _accept_body(ACCEPT_RESUMED)),
        ("syndrome_2_rounds", P.encode_syndrome(_syndrome_bits(), P.SyndromeLayout(SLICES),
                                                stream_id=7, first_round=4, count=2,
                                                timestamp_ns=TS),
         {"slice_sizes": SLICES, "fired": FIRED}),
        ("correction", P.encode_correction(_correction(False), stream_id=7, seq=7,
                                           timestamp_ns=ts2), _correction_body(_correction(False))),
        ("correction_faults", P.encode_correction(_correction(True), stream_id=7, seq=7,
                                                  timestamp_ns=ts2),
         _correction_body(_correction(True))),
        ("error", P.encode_error(P.ErrorCode.ROUND_GAP, GAP_REASON, stream_id=7, seq=9,
                                 timestamp_ns=0x11223344556677AA, ref_type=P.MsgType.SYNDROME,
                                 next_round=8),
         {"code": 34, "code_name": "ROUND_GAP", "versions": [1], "ref_type": 3,
          "next_round": 8, "reason": GAP_REASON}),
        ("heartbeat", P.encode_heartbeat(seq=42, timestamp_ns=TS), {}),
        ("bye", P.encode_bye(stream_id=7, seq=2), {}),
        ("stats_request", P.encode_stats(None, stream_id=7, seq=3), {}),
        ("stats_reply", P.encode_stats(STATS, stream_id=7, seq=3), STATS),
    ]
    out = []
    for name, frame, body in items:
        h, _ = P.parse_packet(frame)
        out.append({"name": name, "msg_type": P.MsgType(h.msg_type).name,
                    "header": {"msg_type": h.msg_type, "flags": h.flags, "count": h.count,
                               "stream_id": h.stream_id, "payload_len": h.payload_len,
                               "round": h.round, "timestamp_ns": h.timestamp_ns},
                    "body": body, "hex": frame.hex()})
    return out


# the post-quantum handshake's vector (docs/protocol.md §6.8): fixed secrets; the ML-KEM
# ciphertext and the ML-DSA signature are randomized by their algorithms, so they are drawn
# once and then read back from the committed file (everything else is recomputed from them)
PQ_CLIENT_X25519_PRIVATE = bytes(range(1, 33))
PQ_CLIENT_MLKEM_SEED = bytes(range(64, 128))  # d || z of FIPS 203 ML-KEM.KeyGen_internal
PQ_SERVER_X25519_PRIVATE = bytes(range(33, 65))
PQ_SERVER_MLDSA_SEED = bytes(range(128, 160))  # xi of FIPS 204 ML-DSA.KeyGen_internal
PQ_CURVE_CLIENT = bytes(range(200, 232))
PQ_CURVE_SERVER = bytes(range(160, 192))
PQ_STREAM_ID = 7
PQ_EXPIRES = 4102444800  # 2100-01-01T00:00:00Z
PQ_HELLO = P.Hello(spec="repetition:d=3,r=2,p=0.01", decoder="uf")


def build_pqc_vector(committed: dict | None) -> dict:
    """The handshake of §6.8 with fixed keys, step by step (hex); ``committed`` supplies the
    ciphertext and signature drawn when the vector was first written."""
    import hashlib
    import struct

    from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem, x25519
    from zmq.utils import z85

    from qecd.transport import pqc

    hx = bytes.hex
    client_x = x25519.X25519PrivateKey.from_private_bytes(PQ_CLIENT_X25519_PRIVATE)
    dk = mlkem.MLKEM768PrivateKey.from_seed_bytes(PQ_CLIENT_MLKEM_SEED)
    server_x = x25519.X25519PrivateKey.from_private_bytes(PQ_SERVER_X25519_PRIVATE)
    signer = mldsa.MLDSA65PrivateKey.from_seed_bytes(PQ_SERVER_MLDSA_SEED)
    hs = pqc.ClientHandshake(pqc.PqPin(signer.public_key().public_bytes_raw()),
                             curve_client=z85.encode(PQ_CURVE_CLIENT),
                             curve_server=z85.encode(PQ_CURVE_SERVER),
                             x25519_private=PQ_CLIENT_X25519_PRIVATE,
                             mlkem_seed=PQ_CLIENT_MLKEM_SEED)
    hello = hs.hello(PQ_HELLO)
    hello_frame = P.encode_hello(hello, seq=1, timestamp_ns=1_000_000)
    hello_body = hello_frame[P.HEADER_SIZE:]
    xs = server_x.public_key().public_bytes_raw()
    if committed is not None:
        ct = bytes.fromhex(committed["mlkem768_ciphertext"])
    else:
        ct = dk.public_key().encapsulate()[1]
    ss_k = dk.decapsulate(ct)
    ss_x = client_x.exchange(server_x.public_key())
    th = pqc.transcript_hash(hello_body, PQ_CURVE_CLIENT, PQ_CURVE_SERVER, PQ_STREAM_ID, xs, ct)
    assert th == hashlib.sha256(  # the formula of §6.8.3, written out
        pqc.LABEL_TRANSCRIPT + struct.pack("<I", len(hello_body)) + hello_body
        + PQ_CURVE_CLIENT + PQ_CURVE_SERVER + struct.pack("<I", PQ_STREAM_ID) + xs + ct).digest()
    keys = pqc.derive_keys(ss_k, ss_x, th)
    body = struct.pack("<8sIQ32s32s", pqc.TOKEN_MAGIC, PQ_STREAM_ID, PQ_EXPIRES,
                       PQ_CURVE_CLIENT, keys.binding)
    sig = None
    if committed is not None and committed["token_body"] == hx(body):
        sig = bytes.fromhex(committed["token_signature"])
    if sig is None:
        sig = signer.sign(body, pqc.TOKEN_CONTEXT)
    token = body + sig
    accept = ACCEPT._replace(stream_id=PQ_STREAM_ID, decoder="uf", window=None, commit=None,
                             want_faults=False, slice_sizes=(2, 2, 2), pq_x25519=xs,
                             pq_mlkem768_ct=ct, pq_token=token,
                             pq_confirm=pqc.accept_tag(keys, th, token))
    resume = hs.hello(PQ_HELLO, pqc.PqSession(PQ_STREAM_ID, keys.session_key,
                                              keys.resume_key, token, PQ_EXPIRES))
    return {
        "note": "docs/protocol.md section 6.8; all values hex; the resume MAC is for a HELLO "
                "presenting this token with the same client keys",
        "client_x25519_private": hx(PQ_CLIENT_X25519_PRIVATE),
        "client_mlkem768_seed": hx(PQ_CLIENT_MLKEM_SEED),
        "server_x25519_private": hx(PQ_SERVER_X25519_PRIVATE),
        "server_mldsa65_seed": hx(PQ_SERVER_MLDSA_SEED),
        "server_mldsa65_public": hx(signer.public_key().public_bytes_raw()),
        "curve_client": hx(PQ_CURVE_CLIENT), "curve_server": hx(PQ_CURVE_SERVER),
        "stream_id": PQ_STREAM_ID,
        "client_x25519_public": hx(hello.pq_x25519),
        "client_mlkem768_encapsulation_key": hx(hello.pq_mlkem768),
        "hello": hx(hello_frame),
        "server_x25519_public": hx(xs),
        "mlkem768_ciphertext": hx(ct),
        "mlkem768_shared_secret": hx(ss_k),
        "x25519_shared_secret": hx(ss_x),
        "transcript_hash": hx(th),
        "session_key": hx(keys.session_key), "confirm_key": hx(keys.confirm_key),
        "resume_key": hx(keys.resume_key), "binding": hx(keys.binding),
        "expires_unix_s": PQ_EXPIRES,
        "token_body": hx(body), "token_signature": hx(sig),
        "pq_confirm": hx(accept.pq_confirm),
        "accept": hx(P.encode_accept(accept, seq=1, timestamp_ns=1_000_000)),
        "resume_mac": hx(resume.pq_resume_mac),
    }


def load() -> list[dict]:
    return json.loads(PATH.read_text(encoding="utf-8"))["vectors"]


def load_pqc() -> dict | None:
    """The committed handshake vector (None before it was first written)."""
    if not PATH.exists():
        return None
    return json.loads(PATH.read_text(encoding="utf-8")).get("pqc_handshake")


def dump(vectors: list[dict], pqc: dict | None = None) -> str:
    doc = {"format": "qecd protocol test vectors, version 1",
           "spec": "docs/protocol.md section 13",
           "notes": ["hex: the whole packet (header and body), lowercase",
                     "header: the 32-byte header's fields as integers",
                     "msgpack bin values (HELLO resume.token, ACCEPT resume_token) as "
                     "lowercase hex strings",
                     "body: the body's fields; msgpack bodies as the JSON of the map in wire "
                     "key order (null = msgpack nil); SYNDROME: the stream's slice_sizes and "
                     "each round's fired detectors",
                     "timestamps and rounds are u64: JSON numbers up to 2**64-1"],
           "vectors": vectors,
           "pqc_handshake": pqc if pqc is not None else build_pqc_vector(load_pqc())}
    return json.dumps(doc, indent=1) + "\n"


def _tok(v: object) -> str:
    """One whitespace-free token for the C checker's line format."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return "x" + v.encode().hex()
    if isinstance(v, list):
        return "[" + ",".join(_tok(x) for x in v) + "]"
    raise TypeError(v)


def c_lines(vectors: list[dict]) -> str:
    """The vectors in the C checker's line format: ``name TYPE hex key=value ...`` with the
    header fields then the body's scalar and list fields (strings hex-encoded as ``x..``,
    nested lists as ``[a,b]``, nil as ``nil``)."""
    lines = []
    for v in vectors:
        fields = [f"h.{k}={val}" for k, val in v["header"].items()]
        for k, val in v["body"].items():
            if isinstance(val, dict):
                if k == "resume":  # the HELLO's resume map: its two fields, flattened
                    fields += [f"resume.{kk}={_tok(vv)}" for kk, vv in val.items()]
                continue  # other nested maps (STATS dropped) are checked by skipping in C
            fields.append(f"{k}={_tok(val)}")
        lines.append(" ".join([v["name"], v["msg_type"], v["hex"], *fields]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = dump(build_vectors())
    if "--write" in sys.argv:
        PATH.write_text(text, encoding="utf-8")
        print(f"wrote {PATH}")
    else:
        sys.stdout.write(text)
