"""Control bodies (msgpack maps): HELLO, ACCEPT, STATS, and the empty HEARTBEAT and BYE.

Specification: ``docs/protocol.md`` §6. Control messages are off the per-round path.

Example
-------
>>> from qecd.transport.wire.header import parse_packet
>>> hello = Hello(spec="surface:d=3,r=3,p=0.001", decoder="uf")
>>> decode_hello(*parse_packet(encode_hello(hello))).decoder
'uf'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import msgpack

from qecd.errors import ProtocolError
from qecd.transport.wire.header import (
    _DECODER_RE,
    _U32,
    _U64,
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    MAX_DETECTORS,
    MAX_HELLO_BYTES,
    MAX_ROUNDS_PER_SHOT,
    MAX_SPEC_BYTES,
    MAX_WINDOW,
    Buffer,
    ErrorCode,
    Header,
    MsgType,
    _expect_type,
    _field,
    _is_int,
    _unpack_map,
    encode_frame,
)
from qecd.transport.wire.syndrome import SyndromeLayout

#: the decoder a HELLO without a ``decoder`` key asks for (docs/protocol.md §6.1)
DEFAULT_DECODER = "pymatching"

# -- the opt-in post-quantum handshake's fields (docs/protocol.md §6.8; crypto in
# qecd.transport.pqc): msgpack bin values of exactly these lengths --------------------------
PQ_X25519_BYTES = 32  #: an X25519 public key (RFC 7748)
PQ_MLKEM768_EK_BYTES = 1184  #: an ML-KEM-768 encapsulation key (FIPS 203)
PQ_MLKEM768_CT_BYTES = 1088  #: an ML-KEM-768 ciphertext
PQ_MAC_BYTES = 32  #: an HMAC-SHA256 tag (key confirmation, resume proof)
PQ_TOKEN_BODY_BYTES = 84  #: a session token's signed body (§6.8.4)
PQ_MLDSA65_SIG_BYTES = 3309  #: an ML-DSA-65 signature (FIPS 204)
PQ_TOKEN_BYTES = PQ_TOKEN_BODY_BYTES + PQ_MLDSA65_SIG_BYTES  #: token = body || signature
#: HELLO keys of the handshake: key, byte length (the resume pair is optional)
PQ_HELLO_FIELDS = (("pq_x25519", PQ_X25519_BYTES), ("pq_mlkem768", PQ_MLKEM768_EK_BYTES),
                   ("pq_resume", PQ_TOKEN_BYTES), ("pq_resume_mac", PQ_MAC_BYTES))
#: ACCEPT keys answering a handshake HELLO: key, byte length (all four or none)
PQ_ACCEPT_FIELDS = (("pq_x25519", PQ_X25519_BYTES), ("pq_mlkem768_ct", PQ_MLKEM768_CT_BYTES),
                    ("pq_token", PQ_TOKEN_BYTES), ("pq_confirm", PQ_MAC_BYTES))
#: bytes of a stream's resume token (ACCEPT ``resume_token``, HELLO ``resume.token``, §6.9)
RESUME_TOKEN_BYTES = 32
#: the keys of a HELLO's ``resume`` map, in the reference encoder's order (§6.9)
RESUME_KEYS = ("stream_id", "token")


class Resume(NamedTuple):
    """A HELLO's ``resume`` map (docs/protocol.md §6.9): take over open stream
    ``stream_id`` with the ``resume_token`` of its latest ACCEPT.

    Examples
    --------
    >>> Resume(7, bytes(32)).stream_id
    7
    """

    stream_id: int
    token: bytes


class Hello(NamedTuple):
    """A HELLO body: what to decode and how.

    Attributes
    ----------
    spec : str or None
        An experiment spec string (e.g. ``"surface:d=5,r=5,p=0.001"``, grammar of
        :mod:`qecd.codes`). Exactly one of ``spec`` and ``dem`` is given.
    dem : str or None
        A stim detector error model text whose detector coordinates give the rounds.
    time_coord : int
        Which detector coordinate is time (``-1`` = last), used only with ``dem``.
    decoder : str
        Decoder name (``"pymatching"``, ``"uf"``, ...).
    window, commit : int or None
        Sliding-window rounds and commit rounds; ``window=None`` decodes whole shots
        (``commit`` must then be None); ``commit=None`` lets the server choose.
    want_faults : bool
        Ask for matched fault ids in every CORRECTION.
    transport : str
        Where the stream's rounds flow: ``"zmq"`` (this connection, the default) or
        ``"shm"`` (a shared-memory ring pair the server creates and names in the ACCEPT;
        same-host clients only, any decoder). Sent only when not ``"zmq"``.
    describe : bool
        Ask the ACCEPT to describe the stream (``slice_detectors``, ``commit_ranges``,
        ``dem``; docs/protocol.md §6.2). Sent only when True.
    circuit : str or None
        A stim circuit text (the experiment's third possible source, with detector
        coordinates); exactly one of ``spec``, ``dem`` and ``circuit`` is given.
    input : str
        ``"detectors"`` (SYNDROMEs carry detection events, the default) or
        ``"measurements"`` (they carry each round's raw measurement bits; needs ``spec`` or
        ``circuit``, docs/protocol.md §6.3.1). Sent only when not ``"detectors"``.
    pq_x25519, pq_mlkem768 : bytes or None
        The opt-in post-quantum handshake (docs/protocol.md §6.8): the client's ephemeral
        X25519 public key (32 bytes) and ML-KEM-768 encapsulation key (1184 bytes); both or
        neither. Built by :class:`qecd.transport.pqc.ClientHandshake`.
    pq_resume, pq_resume_mac : bytes or None
        Resume an open stream (§6.8.5): a session token from an earlier ACCEPT and the
        proof that the sender holds that session's key; need ``pq_x25519``/``pq_mlkem768``.
    resume : Resume or None
        Take over an open stream with its ACCEPT's ``resume_token`` (§6.9). A HELLO with
        ``resume`` carries no other key: every other field keeps its default and is not
        sent (the stream keeps its experiment and settings).
    """

    spec: str | None = None
    dem: str | None = None
    time_coord: int = -1
    decoder: str = DEFAULT_DECODER
    window: int | None = None
    commit: int | None = None
    want_faults: bool = False
    transport: str = "zmq"
    describe: bool = False
    circuit: str | None = None
    input: str = "detectors"
    pq_x25519: bytes | None = None
    pq_mlkem768: bytes | None = None
    pq_resume: bytes | None = None
    pq_resume_mac: bytes | None = None
    resume: Resume | None = None


_HELLO_KEYS = ("spec", "dem", "circuit", "time_coord", "decoder", "window", "commit",
               "want_faults", "transport", "describe", "input",
               *(k for k, _ in PQ_HELLO_FIELDS), "resume")
INPUTS = ("detectors", "measurements")  #: values of the HELLO key ``input``
TRANSPORTS = ("zmq", "shm")  #: values of the HELLO key ``transport``


def _hello_from_map(m: dict) -> Hello:
    bad = ErrorCode.BAD_HELLO
    for k in m:
        if k not in _HELLO_KEYS:
            raise ProtocolError(bad, f"HELLO key {k!r}: expected one of "
                                f"{', '.join(_HELLO_KEYS)}, got an unknown key")
    if "resume" in m:
        return Hello(resume=_resume_from(m))
    sources = [k for k in ("spec", "dem", "circuit") if k in m]
    if len(sources) != 1:
        got = {0: "neither", 2: "both (" + " and ".join(sources) + ")", 3: "all three"}
        raise ProtocolError(bad, "HELLO keys 'spec'/'dem'/'circuit': expected exactly one of "
                            f"them, got {got[len(sources)]}")
    spec = dem = circuit = None
    if "spec" in m:
        spec = _field(m, "spec", bad, "HELLO", f"a non-empty string of at most {MAX_SPEC_BYTES} "
                      "bytes", lambda v: isinstance(v, str) and 0 < len(v.encode()) <=
                      MAX_SPEC_BYTES)
        if "time_coord" in m:
            raise ProtocolError(bad, "HELLO key 'time_coord': expected only with 'dem' or "
                                "'circuit', got it with 'spec'")
    elif "dem" in m:
        dem = _field(m, "dem", bad, "HELLO", "a non-empty stim DEM text",
                     lambda v: isinstance(v, str) and v.strip() != "")
    else:
        circuit = _field(m, "circuit", bad, "HELLO", "a non-empty stim circuit text",
                         lambda v: isinstance(v, str) and v.strip() != "")
    time_coord = -1
    if "time_coord" in m:
        time_coord = _field(m, "time_coord", bad, "HELLO", "an integer in -256..255",
                            lambda v: _is_int(v) and -256 <= v <= 255)
    decoder = DEFAULT_DECODER
    if "decoder" in m:
        decoder = _field(m, "decoder", bad, "HELLO", "a name of 1-128 characters "
                         "[A-Za-z0-9_.:=,+-]",
                         lambda v: isinstance(v, str) and _DECODER_RE.fullmatch(v) is not None)
    window = commit = None
    if "window" in m:
        window = _field(m, "window", bad, "HELLO", f"nil or an integer in 1..{MAX_WINDOW}",
                        lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    if "commit" in m:
        commit = _field(m, "commit", bad, "HELLO", f"nil or an integer in 1..{MAX_WINDOW}",
                        lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    if commit is not None:
        if window is None:
            raise ProtocolError(bad, "HELLO key 'commit': expected nil when 'window' is nil "
                                f"(whole-shot decoding), got {commit}")
        if commit > window:
            raise ProtocolError(bad, f"HELLO key 'commit': expected at most window={window}, "
                                f"got {commit}")
    want_faults = False
    if "want_faults" in m:
        want_faults = _field(m, "want_faults", bad, "HELLO", "a boolean",
                             lambda v: isinstance(v, bool))
    transport = "zmq"
    if "transport" in m:
        transport = _field(m, "transport", bad, "HELLO", "'zmq' or 'shm'",
                           lambda v: isinstance(v, str) and v in TRANSPORTS)
    describe = False
    if "describe" in m:
        describe = _field(m, "describe", bad, "HELLO", "a boolean",
                          lambda v: isinstance(v, bool))
    inp = "detectors"
    if "input" in m:
        inp = _field(m, "input", bad, "HELLO", "'detectors' or 'measurements'",
                     lambda v: isinstance(v, str) and v in INPUTS)
    if inp == "measurements" and dem is not None:
        raise ProtocolError(bad, "HELLO key 'input': expected 'detectors' with 'dem' (a DEM "
                            "has no measurements; send 'spec' or 'circuit'), got 'measurements'")
    pq = _pq_fields(m, PQ_HELLO_FIELDS, bad, "HELLO")
    if (pq[0] is None) != (pq[1] is None) or (pq[2] is None) != (pq[3] is None):
        raise ProtocolError(bad, "HELLO keys 'pq_x25519'/'pq_mlkem768' (and 'pq_resume'/"
                            "'pq_resume_mac'): expected both of a pair or neither, got one")
    if pq[2] is not None and pq[0] is None:
        raise ProtocolError(bad, "HELLO key 'pq_resume': expected it with a fresh handshake "
                            "('pq_x25519' and 'pq_mlkem768'), got it alone")
    return Hello(spec, dem, time_coord, decoder, window, commit, want_faults, transport,
                 describe, circuit, inp, *pq)


def _resume_from(m: dict) -> Resume:
    """The ``resume`` map of a HELLO ``m`` (§6.9): alone in the HELLO, exactly the keys
    ``stream_id`` (int 1..2**32-1) and ``token`` (bin of 32 bytes)."""
    bad = ErrorCode.BAD_HELLO
    others = [k for k in m if k != "resume"]
    if others:
        raise ProtocolError(bad, f"HELLO key {others[0]!r}: expected no other key with "
                            "'resume' (a resumed stream keeps its experiment and settings), "
                            f"got {', '.join(others)}")
    r = m["resume"]
    if not isinstance(r, dict) or set(r) != set(RESUME_KEYS):
        got = sorted(map(str, r)) if isinstance(r, dict) else type(r).__name__
        raise ProtocolError(bad, "HELLO key 'resume': expected a map of exactly 'stream_id' "
                            f"and 'token', got {got}")
    sid = _field(r, "stream_id", bad, "HELLO 'resume'", "an integer in 1..2**32-1",
                 lambda v: _is_int(v) and 1 <= v <= _U32)
    tok = _field(r, "token", bad, "HELLO 'resume'",
                 f"a msgpack bin of {RESUME_TOKEN_BYTES} bytes",
                 lambda v: isinstance(v, (bytes, bytearray)) and len(v) == RESUME_TOKEN_BYTES,
                 secret=True)
    return Resume(int(sid), bytes(tok))


def _pq_fields(m: dict, fields: tuple, code: ErrorCode, what: str) -> list:
    """The handshake's bin values of ``m`` (None where absent), each of its exact length."""
    return [None if k not in m else bytes(_field(
        m, k, code, what, f"a msgpack bin of {n} bytes",
        lambda v, n=n: isinstance(v, (bytes, bytearray)) and len(v) == n, secret=True))
        for k, n in fields]


def encode_hello(hello: Hello, *, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a HELLO frame (stream_id 0; ``seq`` is echoed in the ACCEPT or ERROR reply).

    The body is a msgpack map with keys in the order ``spec``|``dem``, ``time_coord`` (only
    with ``dem``), ``decoder``, ``window``, ``commit``, ``want_faults``, then ``transport``
    only when it is not ``"zmq"``, ``describe`` and ``input`` only when not their defaults
    (so a default HELLO's bytes do not change), then the handshake's ``pq_x25519``,
    ``pq_mlkem768``, ``pq_resume``, ``pq_resume_mac`` when given (§6.8).

    Examples
    --------
    >>> f = encode_hello(Hello(spec="surface:d=3,r=3,p=0.001", window=6, commit=3), seq=1)
    >>> decode_hello(*parse_packet(f)).window
    6
    """
    if hello.resume is not None:
        if hello._replace(resume=None) != Hello():
            raise ValueError("Hello.resume: expected every other field at its default (a "
                             "resume HELLO carries only 'resume'), got other fields set")
        m = {"resume": {"stream_id": hello.resume.stream_id,
                        "token": bytes(hello.resume.token)}}
        try:
            _hello_from_map(m)
        except ProtocolError as e:
            raise ValueError(e.reason) from None
        return encode_frame(MsgType.HELLO, msgpack.packb(m, use_bin_type=True), seq=seq,
                            timestamp_ns=timestamp_ns)
    if hello.spec is not None and hello.time_coord != -1:
        raise ValueError(f"Hello.time_coord: expected -1 with spec (used only with dem), "
                         f"got {hello.time_coord}")
    m: dict = {}
    if hello.spec is not None:
        m["spec"] = hello.spec
    if hello.dem is not None:
        m["dem"] = hello.dem
        m["time_coord"] = hello.time_coord
    if hello.circuit is not None:
        m["circuit"] = hello.circuit
        m["time_coord"] = hello.time_coord
    m["decoder"] = hello.decoder
    m["window"] = hello.window
    m["commit"] = hello.commit
    m["want_faults"] = hello.want_faults
    if hello.transport != "zmq":
        m["transport"] = hello.transport
    if hello.describe:
        m["describe"] = True
    if hello.input != "detectors":
        m["input"] = hello.input
    for k, _ in PQ_HELLO_FIELDS:
        if getattr(hello, k) is not None:
            m[k] = bytes(getattr(hello, k))
    try:
        _hello_from_map(m)
    except ProtocolError as e:
        raise ValueError(e.reason) from None
    body = msgpack.packb(m, use_bin_type=True)
    if len(body) > MAX_HELLO_BYTES:
        raise ValueError(f"HELLO body: expected at most {MAX_HELLO_BYTES} bytes, got {len(body)}")
    return encode_frame(MsgType.HELLO, body, seq=seq, timestamp_ns=timestamp_ns)


def decode_hello(header: Header, payload: Buffer, *, max_bytes: int = MAX_HELLO_BYTES) -> Hello:
    """Decode and strictly validate a HELLO body (unknown keys, wrong types: BAD_HELLO).

    Only the syntax is checked here; the server still parses the spec or DEM and answers
    BAD_HELLO if that fails.

    Examples
    --------
    >>> h, p = parse_packet(encode_hello(Hello(dem="error(0.1) D0\\ndetector(0, 0) D0\\n")))
    >>> decode_hello(h, p).decoder
    'pymatching'
    """
    _expect_type(header, MsgType.HELLO)
    if len(payload) > max_bytes:
        raise ProtocolError(ErrorCode.OVERSIZE, f"HELLO payload: expected at most {max_bytes} "
                            f"bytes, got {len(payload)}")
    return _hello_from_map(_unpack_map(payload, ErrorCode.BAD_HELLO, "HELLO"))


class Accept(NamedTuple):
    """An ACCEPT body: the stream the server opened and how its rounds are laid out.

    Attributes
    ----------
    stream_id : int
        Non-zero u32; also in the ACCEPT header and every later packet of the stream.
    slice_sizes : tuple of int
        Detectors in each round of a shot; ``len(slice_sizes)`` is ``rounds_per_shot``.
    num_observables : int
        Logical observables per shot (bits in each CORRECTION).
    decoder : str
    window, commit : int or None
        The settings in force (the server fills in its defaults).
    want_faults : bool
    heartbeat_ms, timeout_ms : int
        Send something at least every ``heartbeat_ms``; a stream whose owner is silent for
        ``timeout_ms`` is closed.
    max_backlog : int
        Rounds a stream may have queued before SYNDROMEs are dropped with SERVER_BUSY.
    max_frame : int
        Largest frame the server accepts, header included.
    server : str
        Server software and version, for logs.
    shm_region : str or None
        Shared-memory streams only (HELLO ``transport="shm"``): the POSIX shm name of the
        stream's ring pair (``qecd-...``), to attach as the client side; None otherwise.
    shm_slots, shm_slot_size : int or None
        That region's geometry: slots per ring (a power of two), bytes per slot.
    corrections_per_shot : int or None
        Shared-memory streams: CORRECTIONs the server sends per shot (one per window).
    measurement_slice_sizes : tuple of int or None
        Measurement-input streams only (HELLO ``input="measurements"``): the raw
        measurements each round's SYNDROME carries (docs/protocol.md §6.3.1).
    slice_detectors : tuple of tuple of int, or None
        Only when the HELLO asked ``describe``: per round of a shot, the DEM detector ids in
        the round's bit order (docs/protocol.md §6.2, §7).
    commit_ranges : tuple of (first, last, trigger) or None
        With ``describe``: each CORRECTION of a shot, rounds relative to the shot (§7.1).
    dem : str or None
        With ``describe``: the stream's detector error model text.
    pq_x25519, pq_mlkem768_ct, pq_token, pq_confirm : bytes or None
        Only in answer to a HELLO with the post-quantum handshake (docs/protocol.md §6.8):
        the server's ephemeral X25519 public key, the ML-KEM-768 ciphertext, the ML-DSA
        signed session token and the key-confirmation tag; all four or none. Check them
        with :meth:`qecd.transport.pqc.ClientHandshake.finish` before trusting the stream.
    next_round : int or None
        Only in the ACCEPT answering a resume (§6.9, §6.8.5): the round the stream expects
        next, where the client continues; None (key absent) in an opening ACCEPT (0).
    resume_token : bytes or None
        32 random bytes that let another connection take the stream over (HELLO ``resume``,
        docs/protocol.md §6.9); every ACCEPT of the reference server carries a fresh one.
        None when the server sent none (servers older than §6.9).
    """

    stream_id: int
    slice_sizes: tuple[int, ...]
    num_observables: int
    decoder: str = DEFAULT_DECODER
    window: int | None = None
    commit: int | None = None
    want_faults: bool = False
    heartbeat_ms: int = 1000
    timeout_ms: int = 5000
    max_backlog: int = 1024
    max_frame: int = DEFAULT_MAX_FRAME
    server: str = ""
    shm_region: str | None = None
    shm_slots: int | None = None
    shm_slot_size: int | None = None
    corrections_per_shot: int | None = None
    measurement_slice_sizes: tuple[int, ...] | None = None
    slice_detectors: tuple[tuple[int, ...], ...] | None = None
    commit_ranges: tuple[tuple[int, int, int], ...] | None = None
    dem: str | None = None
    pq_x25519: bytes | None = None
    pq_mlkem768_ct: bytes | None = None
    pq_token: bytes | None = None
    pq_confirm: bytes | None = None
    resume_token: bytes | None = None
    next_round: int | None = None

    @property
    def rounds_per_shot(self) -> int:
        return len(self.slice_sizes)

    @property
    def num_detectors(self) -> int:
        return sum(self.slice_sizes)

    def layout(self) -> SyndromeLayout:
        """The :class:`SyndromeLayout` of this stream's SYNDROME payloads (measurements per
        round for a measurement-input stream, else detectors per round)."""
        if self.measurement_slice_sizes is not None:
            return SyndromeLayout(self.measurement_slice_sizes)
        return SyndromeLayout(self.slice_sizes)


_ACCEPT_KEYS = ("stream_id", "rounds_per_shot", "slice_sizes", "num_detectors",
                "num_observables", "decoder", "window", "commit", "want_faults", "heartbeat_ms",
                "timeout_ms", "max_backlog", "max_frame", "server")
#: optional ACCEPT keys, present only for shared-memory streams
_ACCEPT_SHM_KEYS = ("shm_region", "shm_slots", "shm_slot_size", "corrections_per_shot")
#: optional ACCEPT keys, present only when the HELLO asked ``describe``
_ACCEPT_DESCRIBE_KEYS = ("slice_detectors", "commit_ranges", "dem")
_SHM_NAME_RE = re.compile(r"qecd-[A-Za-z0-9_.-]{1,200}")


def _u32(v: object) -> bool:
    return _is_int(v) and 0 <= v <= _U32


def encode_accept(accept: Accept, *, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode an ACCEPT frame; ``seq`` and ``timestamp_ns`` echo the HELLO's.

    The body is a msgpack map with the keys of :class:`Accept` plus ``rounds_per_shot`` and
    ``num_detectors``, in the order given in ``docs/protocol.md``; the shared-memory keys
    (``shm_region``, ``shm_slots``, ``shm_slot_size``, ``corrections_per_shot``) follow only
    when ``shm_region`` is set; ``measurement_slice_sizes`` and the description keys when set;
    ``next_round`` and ``resume_token`` when set, then the handshake's ``pq_x25519``,
    ``pq_mlkem768_ct``, ``pq_token``, ``pq_confirm`` last.

    Examples
    --------
    >>> a = Accept(stream_id=7, slice_sizes=(13, 24, 24, 13), num_observables=1)
    >>> decode_accept(*parse_packet(encode_accept(a))).num_detectors
    74
    """
    m = {"stream_id": accept.stream_id, "rounds_per_shot": accept.rounds_per_shot,
         "slice_sizes": [int(s) for s in accept.slice_sizes],
         "num_detectors": int(accept.num_detectors), "num_observables": accept.num_observables,
         "decoder": accept.decoder, "window": accept.window, "commit": accept.commit,
         "want_faults": accept.want_faults, "heartbeat_ms": accept.heartbeat_ms,
         "timeout_ms": accept.timeout_ms, "max_backlog": accept.max_backlog,
         "max_frame": accept.max_frame, "server": accept.server}
    if accept.shm_region is not None:
        m.update(shm_region=accept.shm_region, shm_slots=accept.shm_slots,
                 shm_slot_size=accept.shm_slot_size,
                 corrections_per_shot=accept.corrections_per_shot)
    elif any(getattr(accept, k) is not None for k in _ACCEPT_SHM_KEYS):
        raise ValueError("Accept: shm_slots/shm_slot_size/corrections_per_shot need "
                         "shm_region")
    if accept.measurement_slice_sizes is not None:
        m["measurement_slice_sizes"] = [int(n) for n in accept.measurement_slice_sizes]
    if accept.slice_detectors is not None:
        m.update(slice_detectors=[[int(d) for d in ids] for ids in accept.slice_detectors],
                 commit_ranges=[[int(x) for x in r] for r in accept.commit_ranges or ()],
                 dem=accept.dem)
    if accept.next_round is not None:
        m["next_round"] = int(accept.next_round)
    if accept.resume_token is not None:
        m["resume_token"] = bytes(accept.resume_token)
    for k, _ in PQ_ACCEPT_FIELDS:
        if getattr(accept, k) is not None:
            m[k] = bytes(getattr(accept, k))
    try:
        _accept_from_map(m, accept.stream_id)
    except ProtocolError as e:
        raise ValueError(e.reason) from None
    return encode_frame(MsgType.ACCEPT, msgpack.packb(m, use_bin_type=True),
                        stream_id=accept.stream_id, seq=seq, timestamp_ns=timestamp_ns)


def _accept_from_map(m: dict, header_stream_id: int) -> Accept:
    bad = ErrorCode.BAD_PAYLOAD
    for k in _ACCEPT_KEYS:
        if k not in m:
            raise ProtocolError(bad, f"ACCEPT key {k!r}: expected it, got a map without it")

    def f(key, expected, ok):
        return _field(m, key, bad, "ACCEPT", expected, ok)

    sid = f("stream_id", f"the header's stream id {header_stream_id} (1..2**32-1)",
            lambda v: _is_int(v) and v == header_stream_id and 1 <= v <= _U32)
    rps = f("rounds_per_shot", f"an integer in 1..{MAX_ROUNDS_PER_SHOT}",
            lambda v: _is_int(v) and 1 <= v <= MAX_ROUNDS_PER_SHOT)
    sizes = f("slice_sizes", f"a list of {rps} integers >= 0",
              lambda v: isinstance(v, list) and len(v) == rps
              and all(_is_int(s) and 0 <= s <= MAX_DETECTORS for s in v))
    f("num_detectors", f"sum(slice_sizes) = {sum(sizes)} (at most {MAX_DETECTORS})",
      lambda v: _is_int(v) and v == sum(sizes) and v <= MAX_DETECTORS)
    nobs = f("num_observables", "an integer in 0..2**32-1", _u32)
    dec = f("decoder", "a string", lambda v: isinstance(v, str))
    window = f("window", f"nil or an integer in 1..{MAX_WINDOW}",
               lambda v: v is None or (_is_int(v) and 1 <= v <= MAX_WINDOW))
    commit = f("commit", "nil or an integer in 1..window",
               lambda v: v is None or (_is_int(v) and window is not None and 1 <= v <= window))
    wf = f("want_faults", "a boolean", lambda v: isinstance(v, bool))
    hb = f("heartbeat_ms", "an integer in 0..2**32-1", _u32)
    to = f("timeout_ms", "an integer in 0..2**32-1", _u32)
    mb = f("max_backlog", "an integer in 0..2**32-1", _u32)
    mf = f("max_frame", f"an integer in {HEADER_SIZE}..2**32-1",
           lambda v: _u32(v) and v >= HEADER_SIZE)
    srv = f("server", "a string", lambda v: isinstance(v, str))
    shm: tuple = (None, None, None, None)
    if "shm_region" in m:
        for k in _ACCEPT_SHM_KEYS[1:]:
            if k not in m:
                raise ProtocolError(bad, f"ACCEPT key {k!r}: expected it with 'shm_region', "
                                    "got a map without it")
        shm = (f("shm_region", "a region name 'qecd-...' ([A-Za-z0-9_.-], at most 205 "
                 "characters)", lambda v: isinstance(v, str)
                 and _SHM_NAME_RE.fullmatch(v) is not None),
               f("shm_slots", "a power of two in 1..2**32-1",
                 lambda v: _u32(v) and v > 0 and v & (v - 1) == 0),
               f("shm_slot_size", "a multiple of 64 in 64..2**32-1",
                 lambda v: _u32(v) and v >= 64 and v % 64 == 0),
               f("corrections_per_shot", "an integer in 1..2**32-1",
                 lambda v: _u32(v) and v >= 1))
    msizes = None
    if "measurement_slice_sizes" in m:
        msizes = tuple(f("measurement_slice_sizes", f"a list of {rps} integers >= 0",
                         lambda v: isinstance(v, list) and len(v) == rps
                         and all(_is_int(n) and 0 <= n <= MAX_DETECTORS for n in v)))
    desc: tuple = (None, None, None)
    if any(k in m for k in _ACCEPT_DESCRIBE_KEYS):
        for k in _ACCEPT_DESCRIBE_KEYS:
            if k not in m:
                raise ProtocolError(bad, f"ACCEPT key {k!r}: expected it with the other "
                                    f"description keys, got a map without it")
        dets = f("slice_detectors", f"{rps} lists of detector ids, list t of slice_sizes[t] "
                 "distinct ints in 0..num_detectors-1", lambda v: isinstance(v, list)
                 and len(v) == rps and all(isinstance(ids, list) and len(ids) == n
                                           for ids, n in zip(v, sizes, strict=True))
                 and sorted(d for ids in v for d in ids) == list(range(sum(sizes))))
        ranges = f("commit_ranges", "[first, last, trigger] lists covering rounds "
                   f"0..{rps - 1} in order", lambda v: isinstance(v, list) and len(v) >= 1
                   and all(isinstance(r, list) and len(r) == 3 and all(map(_is_int, r))
                           for r in v) and v[0][0] == 0 and v[-1][1] == rps - 1
                   and all(a[1] + 1 == b[0] for a, b in zip(v, v[1:], strict=False))
                   and all(r[0] <= r[1] <= r[2] < rps for r in v))
        dem_text = f("dem", "a string", lambda v: isinstance(v, str))
        desc = (tuple(tuple(ids) for ids in dets), tuple(tuple(r) for r in ranges), dem_text)
    pq = _pq_fields(m, PQ_ACCEPT_FIELDS, bad, "ACCEPT")
    if any(v is None for v in pq) and any(v is not None for v in pq):
        raise ProtocolError(bad, "ACCEPT keys 'pq_x25519'/'pq_mlkem768_ct'/'pq_token'/"
                            "'pq_confirm': expected all four or none, got "
                            f"{sum(v is not None for v in pq)}")
    token = _pq_fields(m, (("resume_token", RESUME_TOKEN_BYTES),), bad, "ACCEPT")[0]
    nxt = f("next_round", "an integer in 0..2**64-1",
            lambda v: _is_int(v) and 0 <= v <= _U64) if "next_round" in m else None
    return Accept(sid, tuple(sizes), nobs, dec, window, commit, wf, hb, to, mb, mf, srv, *shm,
                  msizes, *desc, *pq, token, nxt)


def decode_accept(header: Header, payload: Buffer) -> Accept:
    """Decode and validate an ACCEPT body (unknown keys are ignored: servers may add keys).

    Examples
    --------
    >>> a = Accept(stream_id=3, slice_sizes=(4, 8, 8, 4), num_observables=1, window=6)
    >>> decode_accept(*parse_packet(encode_accept(a))) == a
    True
    """
    _expect_type(header, MsgType.ACCEPT)
    return _accept_from_map(_unpack_map(payload, ErrorCode.BAD_PAYLOAD, "ACCEPT"),
                            header.stream_id)


StatValue = int | float | str | bool | None | Mapping[str, int | float]


def _stat_ok(v: object) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return not isinstance(v, int) or isinstance(v, bool) or -(1 << 63) <= v <= _U64
    if isinstance(v, Mapping):
        return all(isinstance(k, str) and type(x) in (int, float) and
                   (type(x) is float or -(1 << 63) <= x <= _U64) for k, x in v.items())
    return False


def encode_stats(stats: Mapping[str, StatValue] | None = None, *, stream_id: int = 0,
                 seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a STATS request (``stats=None``: empty body) or reply (a msgpack map).

    Values are int, float, str, bool, nil, or one level of map from str to int or float.

    Examples
    --------
    >>> decode_stats(*parse_packet(encode_stats({"rounds_received": 10}, stream_id=7)))
    {'rounds_received': 10}
    >>> decode_stats(*parse_packet(encode_stats(None))) is None
    True
    """
    if stats is None:
        return encode_frame(MsgType.STATS, b"", stream_id=stream_id, seq=seq,
                            timestamp_ns=timestamp_ns)
    for k, v in stats.items():
        if not isinstance(k, str) or not _stat_ok(v):
            raise ValueError(f"STATS entry {k!r}: expected a str key and an int, float, str, "
                             f"bool, None or a str->number map value, got {v!r}")
    body = msgpack.packb({k: (dict(v) if isinstance(v, Mapping) else v)
                          for k, v in stats.items()}, use_bin_type=True)
    return encode_frame(MsgType.STATS, body, stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_stats(header: Header, payload: Buffer) -> dict | None:
    """Decode a STATS body: ``None`` for a request (empty body), else the reply's map.

    Examples
    --------
    >>> decode_stats(*parse_packet(encode_stats({"drops": {"ROUND_GAP": 2}})))
    {'drops': {'ROUND_GAP': 2}}
    """
    _expect_type(header, MsgType.STATS)
    if len(payload) == 0:
        return None
    m = _unpack_map(payload, ErrorCode.BAD_PAYLOAD, "STATS")
    for k, v in m.items():
        if not _stat_ok(v):
            raise ProtocolError(ErrorCode.BAD_PAYLOAD, f"STATS key {k!r}: expected an int, "
                                f"float, str, bool, nil or a str->number map, got {v!r:.80}")
    return m


# -- empty-bodied messages --------------------------------------------------------------------


def encode_heartbeat(*, stream_id: int = 0, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a HEARTBEAT (empty body). The server echoes it with the same seq and timestamp.

    Examples
    --------
    >>> len(encode_heartbeat(seq=5))
    32
    """
    return encode_frame(MsgType.HEARTBEAT, b"", stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_heartbeat(header: Header, payload: Buffer) -> None:
    """Check a HEARTBEAT's body is empty (everything it says is in the header).

    Examples
    --------
    >>> decode_heartbeat(*parse_packet(encode_heartbeat())) is None
    True
    """
    _expect_type(header, MsgType.HEARTBEAT)
    _expect_empty(payload, "HEARTBEAT")


def encode_bye(*, stream_id: int, seq: int = 0, timestamp_ns: int = 0) -> bytes:
    """Encode a BYE (empty body) closing ``stream_id``.

    Examples
    --------
    >>> parse_packet(encode_bye(stream_id=7))[0].stream_id
    7
    """
    return encode_frame(MsgType.BYE, b"", stream_id=stream_id, seq=seq,
                        timestamp_ns=timestamp_ns)


def decode_bye(header: Header, payload: Buffer) -> None:
    """Check a BYE's body is empty.

    Examples
    --------
    >>> decode_bye(*parse_packet(encode_bye(stream_id=1))) is None
    True
    """
    _expect_type(header, MsgType.BYE)
    _expect_empty(payload, "BYE")


def _expect_empty(payload: Buffer, what: str) -> None:
    if len(payload):
        raise ProtocolError(ErrorCode.BAD_PAYLOAD,
                            f"{what} payload: expected 0 bytes, got {len(payload)}")


# -- ERROR ------------------------------------------------------------------------------------


