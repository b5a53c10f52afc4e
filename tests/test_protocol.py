"""The wire protocol: hex vectors of docs/protocol.md, round trips, error paths and fuzzing.

Every malformed input must end in a ProtocolError carrying a known ErrorCode (what the server
sends back), never in any other exception.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qecd.errors import ProtocolError
from qecd.transport.wire import (
    CORRECTION_FIXED,
    DEFAULT_MAX_FRAME,
    ERROR_FIXED,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_COUNT,
    MAX_HELLO_BYTES,
    MAX_REASON_BYTES,
    Accept,
    Correction,
    ErrorCode,
    ErrorInfo,
    Flags,
    Header,
    Hello,
    MsgType,
    SyndromeLayout,
    check_round,
    correction_frame_len,
    decode_accept,
    decode_body,
    decode_correction,
    decode_error,
    decode_hello,
    decode_stats,
    decode_syndrome_payload,
    encode_accept,
    encode_bye,
    encode_correction,
    encode_error,
    encode_error_reply,
    encode_frame,
    encode_heartbeat,
    encode_hello,
    encode_stats,
    encode_syndrome,
    pack_correction_into,
    pack_header_into,
    pack_syndrome_into,
    parse_packet,
    unpack_syndrome_into,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
KNOWN_CODES = {int(c) for c in ErrorCode}
FAST = settings(max_examples=80, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ = settings(max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- the illustrative session of docs/protocol.md §13 -------------------------------------------

LAYOUT = SyndromeLayout([13, 24, 24, 13])
HELLO = Hello(spec="surface:d=5,r=3,p=0.001", decoder="pymatching", window=4, commit=2,
              want_faults=True)
ACCEPT = Accept(stream_id=7, slice_sizes=(13, 24, 24, 13), num_observables=1,
                decoder="pymatching", window=4, commit=2, want_faults=True, heartbeat_ms=1000,
                timeout_ms=5000, max_backlog=1024, max_frame=65536, server="qecd 0.1.0")
SYNDROME_BITS = np.zeros(37, np.uint8)
SYNDROME_BITS[[0, 3, 12, 13 + 1, 13 + 8, 13 + 23]] = 1
CORRECTION = Correction(4, 7, np.array([1], np.uint8), None, 2500, True)
CORRECTION_FAULTS = CORRECTION._replace(fault_ids=np.array([17, 342], np.uint32))
GAP_REASON = ("SYNDROME field 'round': expected 8 (next round of stream 7), got 9: "
              "1 round(s) missing")
from protocol_vectors import ACCEPT_RESUMED, HELLO_RESUME, STATS  # noqa: E402 (one copy)

TS = 0x1122334455667788

# name -> (encoder call, expected header (msg_type, stream_id, round, timestamp), decoded body)
VECTORS = {
    "hello": (lambda: encode_hello(HELLO, seq=1, timestamp_ns=1_000_000),
              (MsgType.HELLO, 0, 1, 1_000_000), HELLO),
    "accept": (lambda: encode_accept(ACCEPT, seq=1, timestamp_ns=1_000_000),
               (MsgType.ACCEPT, 7, 1, 1_000_000), ACCEPT),
    "syndrome_2_rounds": (lambda: encode_syndrome(SYNDROME_BITS, LAYOUT, stream_id=7,
                                                  first_round=4, count=2, timestamp_ns=TS),
                          (MsgType.SYNDROME, 7, 4, TS), SYNDROME_BITS),
    "correction": (lambda: encode_correction(CORRECTION, stream_id=7, seq=7,
                                             timestamp_ns=0x1122334455667799),
                   (MsgType.CORRECTION, 7, 7, 0x1122334455667799), CORRECTION),
    "correction_faults": (lambda: encode_correction(CORRECTION_FAULTS, stream_id=7, seq=7,
                                                    timestamp_ns=0x1122334455667799),
                          (MsgType.CORRECTION, 7, 7, 0x1122334455667799), CORRECTION_FAULTS),
    "error": (lambda: encode_error(ErrorCode.ROUND_GAP, GAP_REASON, stream_id=7, seq=9,
                                   timestamp_ns=0x11223344556677AA, ref_type=MsgType.SYNDROME,
                                   next_round=8),
              (MsgType.ERROR, 7, 9, 0x11223344556677AA),
              ErrorInfo(ErrorCode.ROUND_GAP, GAP_REASON, MsgType.SYNDROME, 8, (1,))),
    "hello_resume": (lambda: encode_hello(HELLO_RESUME, seq=5, timestamp_ns=2_000_000),
                     (MsgType.HELLO, 0, 5, 2_000_000), HELLO_RESUME),
    "accept_resumed": (lambda: encode_accept(ACCEPT_RESUMED, seq=5, timestamp_ns=2_000_000),
                       (MsgType.ACCEPT, 7, 5, 2_000_000), ACCEPT_RESUMED),
    "heartbeat": (lambda: encode_heartbeat(seq=42, timestamp_ns=TS),
                  (MsgType.HEARTBEAT, 0, 42, TS), None),
    "bye": (lambda: encode_bye(stream_id=7, seq=2), (MsgType.BYE, 7, 2, 0), None),
    "stats_request": (lambda: encode_stats(None, stream_id=7, seq=3),
                      (MsgType.STATS, 7, 3, 0), None),
    "stats_reply": (lambda: encode_stats(STATS, stream_id=7, seq=3),
                    (MsgType.STATS, 7, 3, 0), STATS),
}


def _doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for name, block in re.findall(r"```hex vector=(\w+)\n(.*?)```", text, re.S):
        hexdigits = "".join(line.split("#", 1)[0] for line in block.splitlines())
        out[name] = bytes.fromhex(hexdigits)
    return out


def _same(a, b) -> bool:
    """Equality that understands the numpy arrays inside Correction."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (a is not None and b is not None and np.asarray(a).tolist()
                == np.asarray(b).tolist())
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _reference_payload(layout: SyndromeLayout, first_round: int, count: int,
                       bits: np.ndarray) -> bytes:
    """Slow, obviously correct packing: each round with packbits, concatenated."""
    out, at = b"", 0
    for r in range(first_round, first_round + count):
        n = layout.slice_sizes[r % layout.rounds_per_shot]
        out += np.packbits(bits[at:at + n].astype(np.uint8), bitorder="little").tobytes()
        at += n
    return out


def _code(exc_info) -> ErrorCode:
    return ErrorCode(exc_info.value.code)


# -- the spec's hex vectors ---------------------------------------------------------------------


def test_spec_has_every_required_vector():
    found = _doc_vectors()
    assert set(found) == set(VECTORS)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_encoder_output_matches_spec_vector_byte_for_byte(name):
    encode, _, _ = VECTORS[name]
    assert encode().hex(" ") == _doc_vectors()[name].hex(" ")


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_spec_vector_decodes_back_to_its_fields(name):
    _, (t, sid, rnd, ts), body = VECTORS[name]
    h, p = parse_packet(_doc_vectors()[name], max_frame=65536)
    assert (h.msg_type, h.stream_id, h.round, h.timestamp_ns) == (t, sid, rnd, ts)
    assert _same(decode_body(h, p, LAYOUT), body)


def test_spec_documents_every_type_code_flag_and_header_field():
    text = DOC.read_text(encoding="utf-8")
    for name in list(MsgType.__members__) + list(ErrorCode.__members__) + ["FAULT_IDS",
                                                                           "SHOT_END"]:
        assert f"`{name}`" in text, name
    for field in Header._fields:
        assert f"`{field}`" in text, field
    assert "## 14 Shared-memory ring transport" in text


def test_header_is_32_naturally_aligned_little_endian_bytes():
    assert HEADER.size == HEADER_SIZE == 32 and HEADER.format.startswith("<")
    offsets, at = [], 0
    for code in HEADER.format[1:]:
        size = struct.calcsize("<" + code)
        assert at % size == 0, (code, at)
        offsets.append(at)
        at += size
    assert offsets == [0, 2, 3, 4, 6, 8, 12, 16, 24]
    assert CORRECTION_FIXED.size == 32 and ERROR_FIXED.size == 16
    assert encode_heartbeat()[:2] == b"QD" and MAGIC == 0x4451


def test_syndrome_bit_order_is_stims():
    stim = pytest.importorskip("stim")
    c = stim.Circuit.generated("repetition_code:memory", distance=7, rounds=1,
                               after_clifford_depolarization=0.2)
    sampler = c.compile_detector_sampler(seed=3)
    packed = sampler.sample(8, bit_packed=True)
    sampler = c.compile_detector_sampler(seed=3)
    bits = sampler.sample(8)
    lay = SyndromeLayout([c.num_detectors])
    for shot in range(8):
        frame = encode_syndrome(bits[shot], lay, stream_id=1, first_round=shot)
        assert frame[HEADER_SIZE:] == packed[shot].tobytes()


# -- round trips --------------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
u32 = st.integers(0, 2**32 - 1)
decoder_names = st.from_regex(r"[A-Za-z0-9_.:=,+-]{1,20}", fullmatch=True)


@st.composite
def hellos(draw):
    window = draw(st.none() | st.integers(1, 65535))
    commit = None if window is None else draw(st.none() | st.integers(1, window))
    if draw(st.booleans()):
        spec = draw(st.text(min_size=1, max_size=40))
        return Hello(spec=spec, decoder=draw(decoder_names), window=window, commit=commit,
                     want_faults=draw(st.booleans()))
    dem = draw(st.text(min_size=1, max_size=200).filter(lambda s: s.strip()))
    return Hello(dem=dem, time_coord=draw(st.integers(-256, 255)), decoder=draw(decoder_names),
                 window=window, commit=commit, want_faults=draw(st.booleans()))


@FAST
@given(hellos(), u64, u64)
def test_hello_round_trips(hello, seq, ts):
    h, p = parse_packet(encode_hello(hello, seq=seq, timestamp_ns=ts))
    assert (h.stream_id, h.round, h.timestamp_ns) == (0, seq, ts)
    assert decode_hello(h, p) == hello


@st.composite
def accepts(draw):
    window = draw(st.none() | st.integers(1, 65535))
    return Accept(
        stream_id=draw(st.integers(1, 2**32 - 1)),
        slice_sizes=tuple(draw(st.lists(st.integers(0, 300), min_size=1, max_size=20))),
        num_observables=draw(u32), decoder=draw(st.text(max_size=20)), window=window,
        commit=None if window is None else draw(st.none() | st.integers(1, window)),
        want_faults=draw(st.booleans()), heartbeat_ms=draw(u32), timeout_ms=draw(u32),
        max_backlog=draw(u32), max_frame=draw(st.integers(32, 2**32 - 1)),
        server=draw(st.text(max_size=20)))


@FAST
@given(accepts(), u64)
def test_accept_round_trips(accept, seq):
    h, p = parse_packet(encode_accept(accept, seq=seq))
    assert h.stream_id == accept.stream_id and h.round == seq
    got = decode_accept(h, p)
    assert got == accept
    assert got.rounds_per_shot == len(accept.slice_sizes)
    assert got.layout() == SyndromeLayout(accept.slice_sizes)


@st.composite
def syndromes(draw):
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=6))
    layout = SyndromeLayout(sizes)
    count = draw(st.integers(1, 16))
    first = draw(st.integers(0, 10**6) | st.just(2**64 - count))
    n = layout.num_detectors_in(first, count)
    bits = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.uint8)
    return layout, first, count, bits


@FAST
@given(syndromes(), st.integers(1, 2**32 - 1), u64)
def test_syndrome_round_trips_and_matches_per_round_packbits(case, stream_id, ts):
    layout, first, count, bits = case
    frame = encode_syndrome(bits, layout, stream_id=stream_id, first_round=first, count=count,
                            timestamp_ns=ts)
    assert frame[HEADER_SIZE:] == _reference_payload(layout, first, count, bits)
    assert len(frame) - HEADER_SIZE == layout.payload_len(first, count)
    h, p = parse_packet(frame)
    assert (h.stream_id, h.round, h.count, h.timestamp_ns) == (stream_id, first, count, ts)
    assert decode_syndrome_payload(h, p, layout).tolist() == bits.tolist()
    out = np.full(bits.shape[0] + 5, 7, np.uint8)
    assert unpack_syndrome_into(out, h, p, layout) == bits.shape[0]
    assert out[:bits.shape[0]].tolist() == bits.tolist() and out[bits.shape[0]:].tolist() == [7] * 5


@FAST
@given(st.integers(0, 70), st.none() | st.lists(u32, max_size=8), u64, u64, u64,
       st.booleans(), st.data())
def test_correction_round_trips(nobs, faults, a, b, service, shot_end, data):
    obs = np.array(data.draw(st.lists(st.integers(0, 1), min_size=nobs, max_size=nobs)),
                   dtype=np.uint8)
    first, last = min(a, b), max(a, b)
    fault_ids = None if faults is None else np.array(faults, dtype=np.uint32)
    c = Correction(first, last, obs, fault_ids, service, shot_end)
    frame = encode_correction(c, stream_id=3, seq=last, timestamp_ns=a)
    assert len(frame) == correction_frame_len(nobs, None if faults is None else len(faults))
    h, p = parse_packet(frame)
    assert bool(h.flags & Flags.FAULT_IDS) == (faults is not None)
    assert _same(decode_correction(h, p), c)


@FAST
@given(st.sampled_from(list(ErrorCode)), st.text(max_size=300), u32, u64, u64,
       st.integers(0, 255), u64)
def test_error_round_trips(code, reason, stream_id, seq, ts, ref_type, next_round):
    f = encode_error(code, reason, stream_id=stream_id, seq=seq, timestamp_ns=ts,
                     ref_type=ref_type, next_round=next_round)
    h, p = parse_packet(f)
    assert (h.stream_id, h.round, h.timestamp_ns) == (stream_id, seq, ts)
    assert decode_error(h, p) == ErrorInfo(code, reason, ref_type, next_round, (1,))


stat_values = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
               | st.floats(allow_nan=False) | st.text(max_size=10)
               | st.dictionaries(st.text(max_size=8), st.integers(0, 2**40), max_size=3))


@FAST
@given(st.dictionaries(st.text(max_size=12), stat_values, max_size=6), u32, u64)
def test_stats_round_trips(stats, stream_id, seq):
    h, p = parse_packet(encode_stats(stats, stream_id=stream_id, seq=seq))
    assert decode_stats(h, p) == stats


@FAST
@given(u32, u64, u64, st.integers(1, 2**32 - 1))
def test_heartbeat_and_bye_round_trip(stream_id, seq, ts, bye_stream):
    h, p = parse_packet(encode_heartbeat(stream_id=stream_id, seq=seq, timestamp_ns=ts))
    assert (h.msg_type, h.stream_id, h.round, h.timestamp_ns, len(p)) == (
        MsgType.HEARTBEAT, stream_id, seq, ts, 0)
    assert decode_body(h, p) is None
    h, p = parse_packet(encode_bye(stream_id=bye_stream, seq=seq, timestamp_ns=ts))
    assert (h.msg_type, h.stream_id, h.round) == (MsgType.BYE, bye_stream, seq)
    assert decode_body(h, p) is None


def test_hot_path_packers_write_only_their_frame_into_a_ring_slot():
    slots = np.full(512, 0xAA, dtype=np.uint8)
    n = pack_syndrome_into(slots, 64, SYNDROME_BITS, LAYOUT, stream_id=7, first_round=4,
                           count=2, timestamp_ns=TS)
    assert n == 37
    assert bytes(slots[64:64 + n]) == VECTORS["syndrome_2_rounds"][0]()
    assert (slots[:64] == 0xAA).all() and (slots[64 + n:] == 0xAA).all()
    m = pack_correction_into(slots, 256, stream_id=7, seq=7, first_round=4, last_round=7,
                             observables=np.array([1], np.uint8), fault_ids=[17, 342],
                             service_ns=2500, timestamp_ns=0x1122334455667799, shot_end=True)
    assert bytes(slots[256:256 + m]) == VECTORS["correction_faults"][0]()
    assert (slots[256 + m:] == 0xAA).all()


def test_layout_payload_len_across_shots_matches_the_formula():
    # slices of 2, 3, 3, 2 bytes; 10 bytes per shot
    assert [LAYOUT.payload_len(r, 1) for r in range(8)] == [2, 3, 3, 2] * 2
    assert LAYOUT.payload_len(3, 2) == 4 and LAYOUT.payload_len(0, 8) == 20
    assert LAYOUT.payload_len(2**64 - 4, 4) == 10
    assert LAYOUT.num_detectors_in(4, 2) == 37


def test_rounds_without_detectors_give_empty_payloads():
    lay = SyndromeLayout([0, 5, 0])
    f = encode_syndrome(np.zeros(0, np.uint8), lay, stream_id=1, first_round=3)
    h, p = parse_packet(f)
    assert len(p) == 0 and decode_syndrome_payload(h, p, lay).shape == (0,)
    f = encode_syndrome(np.ones(5, np.uint8), lay, stream_id=1, first_round=0, count=3)
    assert f[HEADER_SIZE:] == b"\x1f"


# -- specific error paths -------------------------------------------------------------------


def _frame(t=MsgType.HEARTBEAT, payload=b"", **kw) -> bytes:
    return encode_frame(t, payload, **kw)


def _raises(frame, code, *, max_frame=DEFAULT_MAX_FRAME, match=None):
    with pytest.raises(ProtocolError, match=match) as e:
        parse_packet(frame, max_frame=max_frame)
    assert _code(e) == code
    return e.value


def test_bad_magic_names_the_field_and_both_values():
    err = _raises(b"XY" + encode_heartbeat()[2:], ErrorCode.BAD_MAGIC)
    assert "magic" in err.reason and "51 44" in err.reason and "58 59" in err.reason


def test_unknown_version_is_refused_and_the_reply_lists_supported_versions():
    frame = _frame(version=2)
    err = _raises(frame, ErrorCode.UNSUPPORTED_VERSION, match="version")
    h, p = parse_packet(encode_error_reply(err, frame))
    info = decode_error(h, p)
    assert info.code == ErrorCode.UNSUPPORTED_VERSION and info.versions == (1,)
    assert info.ref_type == MsgType.HEARTBEAT and h.stream_id == 0  # v2 header not trusted
    # only the first 4 bytes are needed to refuse a version
    _raises(b"QD\x09\x01", ErrorCode.UNSUPPORTED_VERSION)


@pytest.mark.parametrize("t", [0, 9, 255])
def test_unknown_type(t):
    _raises(_frame(t), ErrorCode.UNKNOWN_TYPE, match="msg_type")


@pytest.mark.parametrize("n", [0, 1, 3, 4, 31])
def test_short_frame(n):
    _raises(encode_heartbeat()[:n], ErrorCode.SHORT_FRAME, match="at least 32")


@pytest.mark.parametrize("lie", [-1, +1, 1000, 2**32 - 1])
def test_payload_length_that_lies(lie):
    frame = bytearray(VECTORS["syndrome_2_rounds"][0]())
    struct.pack_into("<I", frame, 12, max(0, (len(frame) - HEADER_SIZE + lie) % 2**32))
    _raises(bytes(frame), ErrorCode.LENGTH_MISMATCH, match="payload_len.*expected 5")


def test_oversize_frame_and_oversize_hello():
    frame = _frame(MsgType.STATS, b"\x80" * 100)
    _raises(frame, ErrorCode.OVERSIZE, max_frame=100, match="at most 100")
    h, p = parse_packet(encode_hello(HELLO))
    with pytest.raises(ProtocolError) as e:
        decode_hello(h, p, max_bytes=10)
    assert _code(e) == ErrorCode.OVERSIZE
    big = Hello(dem="error(0.1) D0\n" * (MAX_HELLO_BYTES // 14 + 1))
    with pytest.raises(ValueError, match="HELLO body"):
        encode_hello(big)


def test_reserved_flag_bits_are_rejected():
    _raises(_frame(MsgType.SYNDROME, b"\x00\x00", flags=Flags.FAULT_IDS, count=1, stream_id=1),
            ErrorCode.BAD_FLAGS, match="flags")
    frame = bytearray(VECTORS["correction"][0]())
    struct.pack_into("<H", frame, 4, 0x0004)
    _raises(bytes(frame), ErrorCode.BAD_FLAGS)


@pytest.mark.parametrize("frame,match", [
    (_frame(MsgType.SYNDROME, b"", count=0, stream_id=1), "count"),
    (_frame(MsgType.HEARTBEAT, count=1), "count"),
    (_frame(MsgType.HELLO, b"\x80", stream_id=5), "stream_id"),
    (_frame(MsgType.SYNDROME, b"\x00", count=1, stream_id=0), "stream_id"),
    (_frame(MsgType.BYE, stream_id=0), "stream_id"),
    (_frame(MsgType.SYNDROME, b"\x00\x00", count=2, stream_id=1, seq=2**64 - 1), "round"),
])
def test_header_fields_out_of_range_for_the_type(frame, match):
    _raises(frame, ErrorCode.BAD_HEADER, match=match)


@pytest.mark.parametrize("frame", [
    _frame(MsgType.HEARTBEAT, b"x"),
    _frame(MsgType.BYE, b"x", stream_id=1),
    _frame(MsgType.CORRECTION, bytes(31), stream_id=1),
    _frame(MsgType.ERROR, bytes(15)),
    _frame(MsgType.HELLO, b""),
])
def test_fixed_body_sizes_are_checked_from_the_header(frame):
    _raises(frame, ErrorCode.BAD_PAYLOAD, match="payload")


def test_syndrome_padding_bits_must_be_zero():
    frame = bytearray(VECTORS["syndrome_2_rounds"][0]())
    frame[HEADER_SIZE + 1] |= 0x20  # bit 13 of round 4: padding of a 13-detector round
    h, p = parse_packet(bytes(frame))
    with pytest.raises(ProtocolError, match=r"round 4 \(13 detectors\).*padding") as e:
        decode_syndrome_payload(h, p, LAYOUT)
    assert _code(e) == ErrorCode.BAD_PAYLOAD
    single = _frame(MsgType.SYNDROME, b"\x00\x80", count=1, stream_id=1, seq=3)
    with pytest.raises(ProtocolError, match="round 3"):
        decode_syndrome_payload(*parse_packet(single), LAYOUT)


@pytest.mark.parametrize("first,count,nbytes", [(4, 2, 4), (4, 2, 6), (4, 1, 3), (5, 1, 2),
                                                 (0, 4, 0)])
def test_wrong_number_of_detector_bytes_for_the_layout(first, count, nbytes):
    f = _frame(MsgType.SYNDROME, bytes(nbytes), count=count, stream_id=7, seq=first)
    with pytest.raises(ProtocolError, match="SYNDROME payload: expected") as e:
        decode_syndrome_payload(*parse_packet(f), LAYOUT)
    assert _code(e) == ErrorCode.BAD_PAYLOAD


def test_correction_body_errors():
    good = VECTORS["correction_faults"][0]()
    cases = {
        "padding": (HEADER_SIZE + 32, 0x02),  # observable bit 1 of a 1-observable correction
        "pad byte": (HEADER_SIZE + 33, 0x01),
        "first > last": (HEADER_SIZE + 0, 0x08),  # first_round 12 > last_round 7
    }
    for name, (at, bit) in cases.items():
        f = bytearray(good)
        f[at] |= bit
        with pytest.raises(ProtocolError) as e:
            decode_correction(*parse_packet(bytes(f)))
        assert _code(e) == ErrorCode.BAD_PAYLOAD, name
    f = bytearray(good)
    struct.pack_into("<H", f, 4, Flags.SHOT_END)  # fault ids present without FAULT_IDS
    with pytest.raises(ProtocolError, match="num_faults"):
        decode_correction(*parse_packet(bytes(f)))
    f = bytearray(good)
    struct.pack_into("<I", f, HEADER_SIZE + 28, 3)  # num_faults says 3, 2 present
    with pytest.raises(ProtocolError, match="expected 48 bytes"):
        decode_correction(*parse_packet(bytes(f)))


def test_error_body_errors():
    good = encode_error(ErrorCode.INTERNAL, "x")
    for at, val, match in [(HEADER_SIZE + 5, 1, "reserved"), (HEADER_SIZE, 0, "code")]:
        f = bytearray(good)
        f[at] = val
        if at == HEADER_SIZE:
            f[at + 1] = 0
        with pytest.raises(ProtocolError, match=match):
            decode_error(*parse_packet(bytes(f)))
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_error(*parse_packet(_frame(MsgType.ERROR, good[HEADER_SIZE:-1] + b"\xff")))
    too_long = _frame(MsgType.ERROR, good[HEADER_SIZE:HEADER_SIZE + 16] + b"a" * 1025)
    with pytest.raises(ProtocolError, match="at most 1024"):
        decode_error(*parse_packet(too_long))
    long_reason = encode_error(ErrorCode.INTERNAL, "é" * 1000)  # 2000 UTF-8 bytes
    assert len(decode_error(*parse_packet(long_reason)).reason.encode()) <= MAX_REASON_BYTES
    future = _frame(MsgType.ERROR, struct.pack("<HHBBHQ", 999, 3, 0, 0, 0, 0) + b"new")
    info = decode_error(*parse_packet(future))
    assert info.code == 999 and not isinstance(info.code, ErrorCode) and info.versions == (1, 2)


def _hello_body(m) -> bytes:
    import msgpack
    return _frame(MsgType.HELLO, msgpack.packb(m, use_bin_type=True))


@pytest.mark.parametrize("body,match", [
    ({"spec": "surface:d=3", "colour": "red"}, "'colour'"),
    ({"spec": "surface:d=3", "dem": "error(0.1) D0"}, "both"),
    ({"decoder": "uf"}, "neither"),
    ({"spec": 5}, "'spec'"),
    ({"spec": ""}, "'spec'"),
    ({"spec": "x" * 1025}, "'spec'"),
    ({"dem": "   "}, "'dem'"),
    ({"spec": "s", "time_coord": 0}, "time_coord"),
    ({"dem": "error(0.1) D0", "time_coord": True}, "time_coord"),
    ({"spec": "s", "window": True}, "'window'"),
    ({"spec": "s", "window": 0}, "'window'"),
    ({"spec": "s", "window": 2.0}, "'window'"),
    ({"spec": "s", "window": 4, "commit": 5}, "'commit'"),
    ({"spec": "s", "commit": 2}, "'commit'"),
    ({"spec": "s", "want_faults": 1}, "'want_faults'"),
    ({"spec": "s", "decoder": "bad name"}, "'decoder'"),
    ([1, 2], "map"),
    ({1: 2}, "map key"),
])
def test_malformed_hello_is_refused(body, match):
    with pytest.raises(ProtocolError, match=match) as e:
        decode_hello(*parse_packet(_hello_body(body)))
    assert _code(e) == ErrorCode.BAD_HELLO


def test_hello_that_is_not_msgpack_is_refused():
    """Each reason says what is wrong with the bytes in the protocol's words: a vendor's
    client (C, its own msgpack) got ``ExtraData: unpack(b) received extra data.`` and
    ``FormatError: `` (empty) from msgpack's exceptions before."""
    cases = {b"\xc1": "a byte that starts no msgpack value",
             b"\x81\xa1": "2 bytes that end inside a msgpack value (cut short)",
             b"\x80\x80": "1 byte after the end of the map (the body must be the map alone)",
             b"\xdf\xff\xff\xff\xff": "whose length is more than the 5-byte body could hold",
             b"\x81": "whose length is more than the 1-byte body could hold (cut short",
             b"\x82\xa1a\x01\xa1": "5 bytes that end inside a msgpack value (cut short)",
             b"\x81\xa1\xff\x00": "a str that is not UTF-8 in a map key",
             b"\x81\xa4spec\xa2\xc3\x28": "a str that is not UTF-8 in key 'spec'",
             b"\x91" * 2000 + b"\x00": "nested deeper than the decoder allows"}
    for junk, words in cases.items():
        with pytest.raises(ProtocolError, match="HELLO body: not one msgpack map") as e:
            decode_hello(*parse_packet(_frame(MsgType.HELLO, junk)))
        assert _code(e) == ErrorCode.BAD_HELLO
        assert words in str(e.value), (junk[:8], str(e.value))
        assert "Error" not in str(e.value) and "unpack(" not in str(e.value)


def test_malformed_accept_is_refused():
    import msgpack
    good = msgpack.unpackb(VECTORS["accept"][0]()[HEADER_SIZE:])
    for key, value, match in [("slice_sizes", [13, 24], "slice_sizes"),
                              ("num_detectors", 75, "num_detectors"),
                              ("stream_id", 8, "stream_id"), ("window", None, "commit"),
                              ("max_frame", 3, "max_frame")]:
        m = dict(good, **{key: value})
        f = _frame(MsgType.ACCEPT, msgpack.packb(m), stream_id=7)
        with pytest.raises(ProtocolError, match=match) as e:
            decode_accept(*parse_packet(f))
        assert _code(e) == ErrorCode.BAD_PAYLOAD
    m = dict(good, future_key=[1])  # unknown keys are ignored (versioning rule 2)
    del m["server"]
    with pytest.raises(ProtocolError, match="'server'"):
        decode_accept(*parse_packet(_frame(MsgType.ACCEPT, msgpack.packb(m), stream_id=7)))
    m["server"] = "x"
    assert decode_accept(*parse_packet(_frame(MsgType.ACCEPT, msgpack.packb(m),
                                              stream_id=7))).server == "x"


def test_round_gaps_and_duplicates():
    with pytest.raises(ProtocolError) as e:  # the spec's ERROR vector carries this reason
        check_round(Header(MAGIC, 1, MsgType.SYNDROME, 0, 1, 7, 3, 9, 0), 8)
    assert e.value.reason == GAP_REASON
    h = parse_packet(VECTORS["syndrome_2_rounds"][0]())[0]  # rounds 4..5
    check_round(h, 4)
    with pytest.raises(ProtocolError, match="expected 3.*got 4") as e:
        check_round(h, 3)
    assert _code(e) == ErrorCode.ROUND_GAP
    for next_round in (5, 6, 100):  # overlapping, duplicate, long past
        with pytest.raises(ProtocolError, match="duplicate or out-of-order") as e:
            check_round(h, next_round)
        assert _code(e) == ErrorCode.ROUND_DUPLICATE


def test_a_decoder_given_the_wrong_type_says_so():
    h, p = parse_packet(encode_heartbeat())
    with pytest.raises(ProtocolError) as e:
        decode_hello(h, p)
    assert _code(e) == ErrorCode.UNEXPECTED_TYPE


def test_error_reply_echoes_only_what_could_be_read():
    syn = VECTORS["syndrome_2_rounds"][0]()
    h, _ = parse_packet(encode_error_reply(ProtocolError(ErrorCode.ROUND_GAP, "gap"), syn,
                                           next_round=3))
    assert (h.stream_id, h.round, h.timestamp_ns) == (7, 4, TS)
    for junk in (b"", b"Q", b"XY" + syn[2:], syn[:20]):
        h, p = parse_packet(encode_error_reply(ProtocolError(ErrorCode.SHORT_FRAME, "s"), junk))
        info = decode_error(h, p)
        assert (h.stream_id, h.round, h.timestamp_ns) == (0, 0, 0)
        assert info.ref_type == (MsgType.SYNDROME if junk[:2] == b"QD" else 0)


def test_encoders_refuse_bad_arguments_with_value_error():
    with pytest.raises(ValueError, match="bits"):
        encode_syndrome(np.zeros(5, np.uint8), LAYOUT, stream_id=1, first_round=0)
    with pytest.raises(ValueError, match="count"):
        encode_syndrome(np.zeros(0, np.uint8), LAYOUT, stream_id=1, first_round=0, count=0)
    with pytest.raises(ValueError, match="count"):
        encode_syndrome(np.zeros(0, np.uint8), LAYOUT, stream_id=1, first_round=0,
                        count=MAX_COUNT + 1)
    with pytest.raises(ValueError, match="fault_ids"):
        encode_correction(CORRECTION._replace(fault_ids=np.array([-1])), stream_id=1)
    with pytest.raises(ValueError, match="rounds"):
        encode_correction(CORRECTION._replace(first_round=9), stream_id=1)
    with pytest.raises(ValueError):
        encode_hello(Hello(spec="s", commit=3))
    with pytest.raises(ValueError):
        encode_accept(ACCEPT._replace(stream_id=0))
    with pytest.raises(ValueError, match="out of range"):
        pack_header_into(bytearray(32), 0, MsgType.BYE, stream_id=2**32)
    with pytest.raises(ValueError):
        SyndromeLayout([])


# -- fuzzing --------------------------------------------------------------------------------

VALID_FRAMES = [encode() for encode, _, _ in VECTORS.values()] + [
    encode_hello(Hello(dem="error(0.1) D0 L0\ndetector(0, 0) D0\n", window=2)),
    encode_syndrome(np.ones(13 + 24 + 24 + 13 + 13, np.uint8), LAYOUT, stream_id=9,
                    first_round=0, count=5),
    encode_error(ErrorCode.UNSUPPORTED_VERSION, "supported versions: 1"),
]


def _parse_and_decode(frame: bytes, layout: SyndromeLayout = LAYOUT) -> None:
    """Either a valid result, or ProtocolError with a known code: nothing else may escape."""
    try:
        h, p = parse_packet(frame, max_frame=4096)
        result = decode_body(h, p, layout)
    except ProtocolError as e:
        assert e.code in KNOWN_CODES, e
        assert e.reason
        return
    if h.msg_type == MsgType.SYNDROME:
        assert result.shape == (layout.num_detectors_in(h.round, h.count),)
        assert set(np.unique(result).tolist()) <= {0, 1}


@FUZZ
@given(st.binary(max_size=120) | st.binary(max_size=120).map(lambda b: b"QD\x01" + b))
def test_fuzz_arbitrary_bytes_never_escape_as_other_exceptions(frame):
    _parse_and_decode(frame)


@st.composite
def mutated_frames(draw):
    frame = bytearray(draw(st.sampled_from(VALID_FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "extend", "byte", "lie"]))
        if op == "flip" and frame:
            i = draw(st.integers(0, 8 * len(frame) - 1))
            frame[i // 8] ^= 1 << (i % 8)
        elif op == "truncate":
            del frame[draw(st.integers(0, len(frame))):]
        elif op == "extend":
            frame += draw(st.binary(min_size=1, max_size=16))
        elif op == "byte" and frame:
            frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
        elif op == "lie" and len(frame) >= HEADER_SIZE:  # a consistent lie about the body
            struct.pack_into("<I", frame, 12, len(frame) - HEADER_SIZE)
    return bytes(frame)


@FUZZ
@given(mutated_frames())
def test_fuzz_truncated_and_bit_flipped_valid_frames(frame):
    _parse_and_decode(frame)


@FUZZ
@given(st.sampled_from(list(MsgType)), st.binary(max_size=80), st.integers(0, 2**16 - 1),
       st.integers(1, MAX_COUNT), u64,
       st.lists(st.integers(0, 20), min_size=1, max_size=5))
def test_fuzz_body_decoders_with_arbitrary_bodies(t, body, flags, count, rnd, sizes):
    count = count if t == MsgType.SYNDROME else 0
    rnd = min(rnd, 2**64 - count)
    h = Header(MAGIC, 1, int(t), flags & (3 if t == MsgType.CORRECTION else 0), count, 7,
               len(body), rnd, 0)
    try:
        decode_body(h, body, SyndromeLayout(sizes))
    except ProtocolError as e:
        assert e.code in KNOWN_CODES


@FAST
@given(st.lists(st.integers(0, 20), min_size=1, max_size=5), st.integers(0, 50),
       st.integers(1, 12), st.data())
def test_fuzz_syndrome_payloads_of_the_right_length_decode_or_report_padding(
        sizes, first, count, data):
    layout = SyndromeLayout(sizes)
    body = data.draw(st.binary(min_size=layout.payload_len(first, count),
                               max_size=layout.payload_len(first, count)))
    frame = _frame(MsgType.SYNDROME, body, count=count, stream_id=1, seq=first)
    h, p = parse_packet(frame)
    try:
        bits = decode_syndrome_payload(h, p, layout)
    except ProtocolError as e:
        assert e.code == ErrorCode.BAD_PAYLOAD and "padding" in e.reason
        return
    # it decoded, so no padding bit was set: repacking gives the same bytes
    assert _reference_payload(layout, first, count, bits) == body
