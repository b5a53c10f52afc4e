/* qecd_client.h: a small C11 client for the qecd wire protocol, version 1.
 *
 * Vendor it in: this header and qecd_client.c, compiled with any C11 compiler and linked
 * with libzmq (-lzmq; the shared-memory ring needs nothing beyond POSIX shm_open/mmap).
 * Everything here follows docs/protocol.md; section numbers (§) refer to it.
 *
 * Three layers, usable separately:
 *   1. Codec (no I/O, no allocation except qecd_decode_accept's slice sizes): the 32-byte
 *      header, SYNDROME packing, CORRECTION / ERROR decoding, HELLO encoding and ACCEPT
 *      decoding with the msgpack subset of §2.1.
 *   2. Session: one ZeroMQ DEALER connection (HELLO/ACCEPT, send, receive with a timeout).
 *   3. Rings: the shared-memory ring pair of §14 attached as the client side (side 0),
 *      with C11 acquire loads / release stores and bounded waits.
 *
 * Return convention: functions returning int give 0 on success, a positive protocol
 * ErrorCode (§8) when a packet is malformed or the server answered ERROR, or a negative
 * QECD_E_* / QECD_RING_* status for local failures. Encoders return the packet length, or 0
 * when the buffer is too small or an argument is out of range.
 *
 * Example (over ZeroMQ; error handling elided):
 *
 *     qecd_session *s = qecd_session_open("tcp://127.0.0.1:5555");
 *     qecd_hello h = qecd_hello_default();
 *     h.spec = "surface:d=5,r=50,p=0.003"; h.window = 10; h.commit = 5;
 *     qecd_accept a;
 *     qecd_open_stream(s, &h, &a, 60000);
 *     uint8_t pkt[4096];
 *     size_t n = qecd_encode_syndrome(pkt, sizeof pkt, a.stream_id, 0, 1, now_ns,
 *                                     round0_bytes, qecd_round_bytes(&a, 0));
 *     qecd_session_send(s, pkt, n);
 *     ... qecd_session_recv(s, pkt, sizeof pkt, 1000) -> a CORRECTION ...
 */
#ifndef QECD_CLIENT_H
#define QECD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* -- wire constants (§4, §5) ------------------------------------------------------------- */
#define QECD_MAGIC 0x4451u            /* bytes 51 44 = "QD" */
#define QECD_VERSION 1u
#define QECD_HEADER_SIZE 32u
#define QECD_MAX_COUNT 65535u         /* rounds per SYNDROME */
#define QECD_MAX_HELLO_BYTES (16u << 20)
#define QECD_MAX_SPEC_BYTES 1024u
#define QECD_MAX_DECODER_CHARS 128u
#define QECD_MAX_REASON_BYTES 1024u
#define QECD_MAX_WINDOW 65535u
#define QECD_RESUME_TOKEN_BYTES 32u     /* ACCEPT resume_token, HELLO resume.token (§6.9) */
#define QECD_MAX_ROUNDS_PER_SHOT (1u << 20)
#define QECD_MAX_DETECTORS (1u << 24)
#define QECD_CORRECTION_FIXED 32u
#define QECD_ERROR_FIXED 16u

enum qecd_msg_type {
    QECD_HELLO = 1, QECD_ACCEPT = 2, QECD_SYNDROME = 3, QECD_CORRECTION = 4,
    QECD_ERROR = 5, QECD_STATS = 6, QECD_HEARTBEAT = 7, QECD_BYE = 8
};

enum qecd_flag { QECD_FLAG_FAULT_IDS = 1, QECD_FLAG_SHOT_END = 2 };

enum qecd_error_code {
    QECD_BAD_MAGIC = 1, QECD_UNSUPPORTED_VERSION = 2, QECD_UNKNOWN_TYPE = 3,
    QECD_SHORT_FRAME = 4, QECD_LENGTH_MISMATCH = 5, QECD_OVERSIZE = 6, QECD_BAD_FLAGS = 7,
    QECD_BAD_HEADER = 8, QECD_BAD_PAYLOAD = 16, QECD_BAD_HELLO = 17,
    QECD_UNKNOWN_STREAM = 32, QECD_NOT_OWNER = 33, QECD_ROUND_GAP = 34,
    QECD_ROUND_DUPLICATE = 35, QECD_UNEXPECTED_TYPE = 36, QECD_DECODER_ERROR = 48,
    QECD_SERVER_BUSY = 49, QECD_SYNDROMES_DROPPED = 50, QECD_SHUTTING_DOWN = 51,
    QECD_INTERNAL = 63
};

/* local failures (negative) */
enum qecd_local_status {
    QECD_E_TIMEOUT = -3,     /* a wait reached its deadline */
    QECD_E_SYS = -10,        /* a system or libzmq call failed (see errno) */
    QECD_E_NOMEM = -11,
    QECD_E_ARG = -12,        /* an argument out of range */
    QECD_E_REGION = -13      /* a shared-memory region failed validation */
};

/* name of an ErrorCode ("ROUND_GAP"), or NULL if unknown */
const char *qecd_error_name(int code);

/* -- header (§4) --------------------------------------------------------------------------- */
typedef struct {
    uint16_t magic;
    uint8_t version;
    uint8_t msg_type;
    uint16_t flags;
    uint16_t count;
    uint32_t stream_id;
    uint32_t payload_len;
    uint64_t round;
    uint64_t timestamp_ns;
} qecd_header;

/* write h to p[0..32) little-endian */
void qecd_header_pack(uint8_t *p, const qecd_header *h);
/* read p[0..32) into h, no checks */
void qecd_header_unpack(const uint8_t *p, qecd_header *h);
/* §4 parse order: returns 0 or the ErrorCode of the first failing check; fills h when at
 * least 32 bytes arrived. max_frame: largest packet accepted (0 = no limit). */
int qecd_parse_packet(const uint8_t *p, size_t n, size_t max_frame, qecd_header *h);
/* a header-only packet (HEARTBEAT, BYE, STATS request): returns 32 */
size_t qecd_encode_empty(uint8_t *buf, size_t cap, int msg_type, uint32_t stream_id,
                         uint64_t seq, uint64_t timestamp_ns);

/* -- msgpack subset (§2.1) ------------------------------------------------------------------ */
typedef struct { uint8_t *p; size_t cap, len; int overflow; } qecd_mp_writer;
void qecd_mp_nil(qecd_mp_writer *w);
void qecd_mp_bool(qecd_mp_writer *w, int v);
void qecd_mp_int(qecd_mp_writer *w, int64_t v);     /* shortest encoding */
void qecd_mp_str(qecd_mp_writer *w, const char *s, size_t n);
void qecd_mp_array(qecd_mp_writer *w, uint32_t n);
void qecd_mp_map(qecd_mp_writer *w, uint32_t n);
void qecd_mp_bin(qecd_mp_writer *w, const uint8_t *b, size_t n);  /* bin8/16/32 */

typedef struct { const uint8_t *p; size_t len, pos; int err; } qecd_mp_reader;
enum qecd_mp_kind { QECD_MP_NIL, QECD_MP_BOOL, QECD_MP_INT, QECD_MP_FLOAT, QECD_MP_STR,
                    QECD_MP_BIN, QECD_MP_ARRAY, QECD_MP_MAP, QECD_MP_EXT, QECD_MP_BAD };
/* kind of the next value, without consuming it */
int qecd_mp_peek(const qecd_mp_reader *r);
/* each returns 0 and consumes the value, or sets r->err and returns -1 */
int qecd_mp_read_int(qecd_mp_reader *r, int64_t *v);          /* any msgpack int form */
int qecd_mp_read_uint(qecd_mp_reader *r, uint64_t *v);
int qecd_mp_read_bool(qecd_mp_reader *r, int *v);
int qecd_mp_read_nil(qecd_mp_reader *r);
int qecd_mp_read_str(qecd_mp_reader *r, const char **s, size_t *n);  /* points into input */
int qecd_mp_read_bin(qecd_mp_reader *r, const uint8_t **b, size_t *n); /* points into input */
int qecd_mp_read_array(qecd_mp_reader *r, uint32_t *n);
int qecd_mp_read_map(qecd_mp_reader *r, uint32_t *n);
int qecd_mp_skip(qecd_mp_reader *r);                          /* any value, nested */

/* -- HELLO (§6.1) -------------------------------------------------------------------------- */
typedef struct {
    const char *spec;        /* exactly one of spec, dem and circuit */
    const char *dem;
    const char *circuit;     /* stim circuit text */
    int time_coord;          /* only with dem or circuit; -1 = last coordinate */
    const char *decoder;     /* NULL = omit (server default "pymatching") */
    int32_t window;          /* 0 = nil (whole-shot decoding) */
    int32_t commit;          /* 0 = nil */
    int want_faults;
    const char *transport;   /* NULL or "zmq" = omit; "shm" = shared-memory rings (§14) */
    int describe;            /* ask the ACCEPT for slice_detectors, commit_ranges, dem */
    const char *input;       /* NULL or "detectors" = omit; "measurements": raw bits (§6.3.1) */
    /* resume (§6.9): when resume_token is not NULL the HELLO is {"resume": {"stream_id":
     * resume_stream_id, "token": the QECD_RESUME_TOKEN_BYTES bytes}} and nothing else (every
     * field above is ignored); see qecd_resume_stream */
    uint32_t resume_stream_id;
    const uint8_t *resume_token;
} qecd_hello;

qecd_hello qecd_hello_default(void);
/* the HELLO packet; keys written in the reference encoder's order (spec|dem|circuit,
 * time_coord, decoder, window, commit, want_faults, transport, describe, input) with
 * shortest encodings */
size_t qecd_encode_hello(uint8_t *buf, size_t cap, const qecd_hello *h, uint64_t seq,
                         uint64_t timestamp_ns);

/* -- ACCEPT (§6.2) ------------------------------------------------------------------------- */
typedef struct {
    uint32_t stream_id;
    uint32_t rounds_per_shot;
    uint32_t *slice_sizes;         /* rounds_per_shot entries (malloc'd) */
    uint64_t *round_byte_prefix;   /* rounds_per_shot + 1 entries: P[k] of §6.3 */
    uint32_t num_detectors;
    uint32_t num_observables;
    char decoder[QECD_MAX_DECODER_CHARS + 1];
    int64_t window;                /* 0 = nil */
    int64_t commit;                /* 0 = nil */
    int want_faults;
    int64_t heartbeat_ms, timeout_ms, max_backlog, max_frame;
    char server[128];
    /* shared-memory streams only (shm_region[0] == 0 otherwise) */
    char shm_region[256];
    uint32_t shm_slots, shm_slot_size, corrections_per_shot;
    /* measurement input only (NULL otherwise): measurements per round (rounds_per_shot) */
    uint32_t *measurement_slice_sizes;
    /* with qecd_hello.describe (NULL otherwise, all malloc'd): */
    uint32_t *slice_detectors;     /* num_detectors DEM detector ids, round 0's bits first */
    uint32_t n_commit_ranges;      /* CORRECTIONs per shot */
    uint32_t *commit_ranges;       /* 3 per CORRECTION: first, last, trigger (shot-relative) */
    char *dem;                     /* the DEM text, NUL-terminated */
    /* §6.9: the stream's resume token (keep it secret: it lets any connection take the
     * stream over in plain mode); has_resume_token 0 from a server that sends none */
    int has_resume_token;
    uint8_t resume_token[QECD_RESUME_TOKEN_BYTES];
    /* only in the ACCEPT answering a resume: the round to continue from */
    int has_next_round;
    uint64_t next_round;
} qecd_accept;

/* decode an ACCEPT body (all required keys present, types right, stream_id = the header's;
 * the shm keys all or none; the description keys all or none, slice_detectors matching
 * slice_sizes); unknown keys are skipped. 0 or QECD_BAD_PAYLOAD. Free with qecd_accept_free. */
int qecd_decode_accept(const qecd_header *h, const uint8_t *body, size_t n, qecd_accept *a);
void qecd_accept_free(qecd_accept *a);

/* -- SYNDROME (§6.3) ----------------------------------------------------------------------- */
/* bytes of round r's detection events: ceil(slice_sizes[r % R] / 8) */
size_t qecd_round_bytes(const qecd_accept *a, uint64_t round);
/* payload bytes of rounds first .. first+count-1: B(first+count) - B(first) */
size_t qecd_syndrome_bytes(const qecd_accept *a, uint64_t first_round, uint32_t count);
/* pack n 0/1 values (non-zero = fired) into ceil(n/8) bytes, stim's little bit order,
 * zero padding bits */
void qecd_pack_bits(uint8_t *out, const uint8_t *bits, size_t n);
/* the SYNDROME packet around an already packed payload */
size_t qecd_encode_syndrome(uint8_t *buf, size_t cap, uint32_t stream_id, uint64_t first_round,
                            uint32_t count, uint64_t timestamp_ns, const uint8_t *payload,
                            size_t payload_len);
/* check a SYNDROME payload against the layout: 0 or QECD_BAD_PAYLOAD (length, padding) */
int qecd_check_syndrome(const qecd_accept *a, const qecd_header *h, const uint8_t *payload);

/* K rounds per SYNDROME, gathered one round at a time (how a controller amortises a 60-100 us
 * socket round trip at a 1 us cycle: K rounds every K cycles). Each qecd_batch_add packs one
 * round's 0/1 values straight into the packet in buf; the K-th returns the finished packet,
 * stamped with that round's timestamp_ns. The caller owns buf (qecd_batch_capacity bytes):
 *
 *   size_t cap = qecd_batch_capacity(acc.slice_sizes, acc.rounds_per_shot, K);
 *   uint8_t *buf = malloc(cap);
 *   qecd_batch b;
 *   qecd_batch_init(&b, acc.slice_sizes, acc.rounds_per_shot, acc.stream_id, K, 0, buf, cap);
 *   for each round: long n = qecd_batch_add(&b, bits, nbits, now_ns());
 *                   if (n > 0) qecd_session_send(s, buf, (size_t)n);
 *   at the end:     size_t n = qecd_batch_take(&b); if (n) qecd_session_send(s, buf, n);
 *
 * sizes: values per round (acc.slice_sizes; acc.measurement_slice_sizes with raw
 * measurements); the batch keeps the pointer, so keep acc alive (qecd_accept_free frees it).
 * A packet returned in buf is overwritten by the next qecd_batch_add: send it first. After
 * an ERROR's next_round, or a resume, qecd_batch_reset(&b, next_round). */
typedef struct {
    const uint32_t *sizes;
    uint32_t rounds_per_shot, stream_id, k;
    uint32_t pending;          /* rounds gathered, not yet taken */
    uint64_t first_round;      /* the gathered packet's first round */
    uint64_t timestamp_ns;     /* the last gathered round's */
    size_t payload_len;
    uint8_t *buf;
    size_t cap;
} qecd_batch;

/* bytes of buf that K rounds need at most: the header + K times the largest round */
size_t qecd_batch_capacity(const uint32_t *sizes, uint32_t rounds_per_shot, uint32_t k);
/* 0, or QECD_E_ARG (k outside 1..QECD_MAX_COUNT, stream_id 0, no rounds, buf too small) */
int qecd_batch_init(qecd_batch *b, const uint32_t *sizes, uint32_t rounds_per_shot,
                    uint32_t stream_id, uint32_t k, uint64_t next_round, uint8_t *buf,
                    size_t cap);
/* gather round first_round + pending (n 0/1 values, non-zero = fired): the packet's length
 * in buf when this was the K-th (the next packet starts after it), 0 when gathered, or
 * QECD_E_ARG (n is not the round's size; nothing gathered) */
long qecd_batch_add(qecd_batch *b, const uint8_t *bits, size_t n, uint64_t timestamp_ns);
/* the packet of the rounds gathered so far in buf (its length; 0 when none); the next
 * packet starts after them */
size_t qecd_batch_take(qecd_batch *b);
/* drop what was gathered; the next packet starts at next_round */
void qecd_batch_reset(qecd_batch *b, uint64_t next_round);

/* -- CORRECTION (§6.4) --------------------------------------------------------------------- */
typedef struct {
    uint64_t first_round, last_round, service_ns;
    uint32_t num_observables, num_faults;
    const uint8_t *observables;   /* bit j = observable j (points into the packet) */
    const uint8_t *fault_ids;     /* num_faults little-endian u32 (points into the packet) */
    int shot_end;
} qecd_correction;

int qecd_decode_correction(const qecd_header *h, const uint8_t *body, size_t n,
                           qecd_correction *c);
static inline int qecd_observable(const qecd_correction *c, uint32_t j) {
    return (c->observables[j >> 3] >> (j & 7)) & 1;
}
static inline uint32_t qecd_fault_id(const qecd_correction *c, uint32_t k) {
    const uint8_t *p = c->fault_ids + 4u * k;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
/* a CORRECTION packet (observables as 0/1 bytes, fault_ids NULL = no FAULT_IDS flag) */
size_t qecd_encode_correction(uint8_t *buf, size_t cap, uint32_t stream_id, uint64_t seq,
                              uint64_t timestamp_ns, uint64_t first_round, uint64_t last_round,
                              uint64_t service_ns, const uint8_t *observables,
                              uint32_t num_observables, const uint32_t *fault_ids,
                              uint32_t num_faults, int shot_end);

/* -- ERROR (§6.5) -------------------------------------------------------------------------- */
typedef struct {
    uint16_t code, versions;
    uint8_t ref_type;
    uint64_t next_round;
    const char *reason;     /* UTF-8, NOT NUL-terminated; points into the packet */
    size_t reason_len;
} qecd_error;

int qecd_decode_error(const qecd_header *h, const uint8_t *body, size_t n, qecd_error *e);
size_t qecd_encode_error(uint8_t *buf, size_t cap, uint16_t code, const char *reason,
                         uint32_t stream_id, uint64_t seq, uint64_t timestamp_ns,
                         uint8_t ref_type, uint64_t next_round);

/* -- session over ZeroMQ (§3, §9) ---------------------------------------------------------- */
typedef struct qecd_session qecd_session;

/* a DEALER socket connected to endpoint (tcp://host:port or ipc://path); NULL on failure */
qecd_session *qecd_session_open(const char *endpoint);
void qecd_session_close(qecd_session *s);
/* send one packet (one single-part message); 0 or QECD_E_SYS */
int qecd_session_send(qecd_session *s, const uint8_t *pkt, size_t n);
/* receive one packet into buf; its length, QECD_E_TIMEOUT, QECD_E_SYS, or QECD_E_ARG if it
 * did not fit (it is dropped). timeout_ms < 0 waits forever, 0 polls. */
long qecd_session_recv(qecd_session *s, uint8_t *buf, size_t cap, int timeout_ms);
/* HELLO then wait for the ACCEPT (or ERROR) echoing its sequence number, keeping nothing
 * else (call it before streaming). 0, a server ErrorCode (reason in
 * qecd_session_last_error), or a negative local status. */
int qecd_open_stream(qecd_session *s, const qecd_hello *h, qecd_accept *a, int timeout_ms);
/* take over open stream stream_id from this session with token (the resume_token of its
 * latest ACCEPT, §6.9): 0 and the stream's ACCEPT in a (next_round = where to continue, a
 * fresh resume_token: the given one is spent), or a server ErrorCode (UNKNOWN_STREAM for a
 * wrong/spent/foreign token or a closed stream; BAD_HELLO for a shared-memory stream), or a
 * negative local status */
int qecd_resume_stream(qecd_session *s, uint32_t stream_id, const uint8_t *token,
                       qecd_accept *a, int timeout_ms);
/* the reason text of the last ERROR or local failure (NUL-terminated) */
const char *qecd_session_last_error(const qecd_session *s);
/* next request sequence number (the header's round of HELLO/HEARTBEAT/STATS/BYE) */
uint64_t qecd_session_next_seq(qecd_session *s);

/* CLOCK_MONOTONIC in ns (the clock the ring heartbeats use) */
uint64_t qecd_monotonic_ns(void);

/* -- shared-memory rings (§14) ------------------------------------------------------------- */
#define QECD_RING_MAGIC 0x474e495244434551ull   /* the bytes "QECDRING" */
#define QECD_RING_VERSION 1u
#define QECD_RING_HEADER_SIZE 384u              /* region header, bytes before ring 0 */
#define QECD_RING_RING_HEADER 384u              /* ring header, bytes before slot 0 */
#define QECD_RING_SLOT_HEADER 16u               /* doorbell u64, length u32, reserved u32 */
#define QECD_RING_SIDE_OFFSET 128u
#define QECD_RING_SIDE_STRIDE 128u
#define QECD_RING_SPIN_POLLS 1024u
#define QECD_RING_MAX_PAUSES 8u
#define QECD_RING_CLOCK_EVERY 64u
#define QECD_RING_YIELD_AFTER_NS 50000

enum qecd_ring_status {
    QECD_RING_OK = 0, QECD_RING_FULL = -1, QECD_RING_EMPTY = -2, QECD_RING_TIMEOUT = -3,
    QECD_RING_PEER_DEAD = -4, QECD_RING_TOO_LARGE = -5, QECD_RING_BUFFER_TOO_SMALL = -6,
    QECD_RING_CORRUPT = -7
};

typedef struct {
    uint8_t *base;          /* the mapping */
    size_t size;
    uint32_t n_slots, slot_size;
    size_t tx_off, rx_off;  /* ring 0 (client -> server), ring 1 (server -> client) */
    uint64_t cached_tail;   /* mirrors the ring's cached_tail word */
    int64_t yield_after_ns; /* waits call sched_yield after this long; -1 = never */
    char name[256];
} qecd_rings;

/* shm_open("/" + name), validate the region header (magic, version, geometry, owner, mode
 * 0600), claim side 0 (refused with QECD_E_REGION while a live process holds it) and remove
 * the name (both sides have the region mapped; no other process may attach, §14.1).
 * expect_slots / expect_slot_size: the ACCEPT's values (0 = not checked). */
int qecd_rings_attach(qecd_rings *r, const char *name, uint32_t expect_slots,
                      uint32_t expect_slot_size);
/* mark side 0 detached (state 2) and unmap */
void qecd_rings_detach(qecd_rings *r);
/* publish pkt[0..len) on ring 0: QECD_RING_OK, FULL or TOO_LARGE; never waits */
int qecd_ring_try_send(qecd_rings *r, const uint8_t *pkt, uint32_t len);
/* the same, waiting for credit at most timeout_ns: OK, TOO_LARGE, TIMEOUT or PEER_DEAD */
int qecd_ring_send(qecd_rings *r, const uint8_t *pkt, uint32_t len, int64_t timeout_ns);
/* take the next packet of ring 1 into out: its length >= 0, EMPTY, BUFFER_TOO_SMALL (it
 * stays in the ring) or CORRUPT; never waits */
long qecd_ring_try_recv(qecd_rings *r, uint8_t *out, uint32_t cap);
/* the same, waiting at most timeout_ns: length, TIMEOUT, PEER_DEAD, BUFFER_TOO_SMALL, CORRUPT */
long qecd_ring_recv(qecd_rings *r, uint8_t *out, uint32_t cap, int64_t timeout_ns);
/* store now as side 0's heartbeat (waits do it themselves every CLOCK_EVERY polls) */
void qecd_rings_beat(qecd_rings *r);

#ifdef __cplusplus
}
#endif
#endif /* QECD_CLIENT_H */
