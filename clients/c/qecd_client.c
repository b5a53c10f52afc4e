/* qecd_client.c: see qecd_client.h and docs/protocol.md. C11, libzmq, POSIX. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE
#include "qecd_client.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* -- little-endian helpers ---------------------------------------------------------------- */
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v) {
    put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16));
}
static inline void put64(uint8_t *p, uint64_t v) {
    put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t get32(const uint8_t *p) {
    return (uint32_t)get16(p) | ((uint32_t)get16(p + 2) << 16);
}
static inline uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

const char *qecd_error_name(int code) {
    switch (code) {
    case 1: return "BAD_MAGIC"; case 2: return "UNSUPPORTED_VERSION";
    case 3: return "UNKNOWN_TYPE"; case 4: return "SHORT_FRAME";
    case 5: return "LENGTH_MISMATCH"; case 6: return "OVERSIZE"; case 7: return "BAD_FLAGS";
    case 8: return "BAD_HEADER"; case 16: return "BAD_PAYLOAD"; case 17: return "BAD_HELLO";
    case 32: return "UNKNOWN_STREAM"; case 33: return "NOT_OWNER"; case 34: return "ROUND_GAP";
    case 35: return "ROUND_DUPLICATE"; case 36: return "UNEXPECTED_TYPE";
    case 48: return "DECODER_ERROR"; case 49: return "SERVER_BUSY";
    case 50: return "SYNDROMES_DROPPED"; case 51: return "SHUTTING_DOWN";
    case 63: return "INTERNAL"; default: return NULL;
    }
}

/* -- header ---------------------------------------------------------------------------- */
void qecd_header_pack(uint8_t *p, const qecd_header *h) {
    put16(p, h->magic); p[2] = h->version; p[3] = h->msg_type; put16(p + 4, h->flags);
    put16(p + 6, h->count); put32(p + 8, h->stream_id); put32(p + 12, h->payload_len);
    put64(p + 16, h->round); put64(p + 24, h->timestamp_ns);
}

void qecd_header_unpack(const uint8_t *p, qecd_header *h) {
    h->magic = get16(p); h->version = p[2]; h->msg_type = p[3]; h->flags = get16(p + 4);
    h->count = get16(p + 6); h->stream_id = get32(p + 8); h->payload_len = get32(p + 12);
    h->round = get64(p + 16); h->timestamp_ns = get64(p + 24);
}

/* allowed flags, stream-id rule (0 any, 1 must be 0, 2 non-zero), body size bounds per type */
static const uint16_t ALLOWED_FLAGS[9] = {0, 0, 0, 0, 3, 0, 0, 0, 0};
static const uint8_t STREAM_RULE[9] = {0, 1, 2, 2, 2, 0, 0, 0, 2};
static const uint32_t MIN_BODY[9] = {0, 1, 1, 0, QECD_CORRECTION_FIXED, QECD_ERROR_FIXED, 0, 0, 0};
static const uint32_t MAX_BODY[9] = {0, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
                                     0xFFFFFFFFu, 0xFFFFFFFFu, 0, 0};

int qecd_parse_packet(const uint8_t *p, size_t n, size_t max_frame, qecd_header *h) {
    if (max_frame && n > max_frame) return QECD_OVERSIZE;
    if (n < 4) return QECD_SHORT_FRAME;
    if (get16(p) != QECD_MAGIC) return QECD_BAD_MAGIC;
    if (p[2] != QECD_VERSION) return QECD_UNSUPPORTED_VERSION;
    if (n < QECD_HEADER_SIZE) return QECD_SHORT_FRAME;
    qecd_header_unpack(p, h);
    unsigned t = h->msg_type;
    if (t < 1 || t > 8) return QECD_UNKNOWN_TYPE;
    if (h->flags & ~ALLOWED_FLAGS[t]) return QECD_BAD_FLAGS;
    if ((uint64_t)h->payload_len != (uint64_t)(n - QECD_HEADER_SIZE)) return QECD_LENGTH_MISMATCH;
    if (t == QECD_SYNDROME) {
        if (h->count == 0) return QECD_BAD_HEADER;
        if (h->round > UINT64_MAX - h->count + 1) return QECD_BAD_HEADER; /* round+count > 2^64 */
    } else if (h->count) {
        return QECD_BAD_HEADER;
    }
    if (STREAM_RULE[t] == 1 && h->stream_id) return QECD_BAD_HEADER;
    if (STREAM_RULE[t] == 2 && !h->stream_id) return QECD_BAD_HEADER;
    if (h->payload_len < MIN_BODY[t] || h->payload_len > MAX_BODY[t]) return QECD_BAD_PAYLOAD;
    return 0;
}

static size_t put_header(uint8_t *buf, size_t cap, int type, uint16_t flags, uint16_t count,
                         uint32_t sid, size_t body, uint64_t seq, uint64_t ts) {
    if (cap < QECD_HEADER_SIZE + body || body > 0xFFFFFFFFu) return 0;
    qecd_header h = {QECD_MAGIC, QECD_VERSION, (uint8_t)type, flags, count, sid,
                     (uint32_t)body, seq, ts};
    qecd_header_pack(buf, &h);
    return QECD_HEADER_SIZE + body;
}

size_t qecd_encode_empty(uint8_t *buf, size_t cap, int msg_type, uint32_t stream_id,
                         uint64_t seq, uint64_t timestamp_ns) {
    return put_header(buf, cap, msg_type, 0, 0, stream_id, 0, seq, timestamp_ns);
}

/* -- msgpack writer ---------------------------------------------------------------------- */
static void mp_raw(qecd_mp_writer *w, const void *src, size_t n) {
    if (w->overflow || w->len + n > w->cap) { w->overflow = 1; return; }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void mp_byte(qecd_mp_writer *w, uint8_t b) { mp_raw(w, &b, 1); }
static void mp_be(qecd_mp_writer *w, uint8_t tag, uint64_t v, int nbytes) {
    uint8_t b[9];
    b[0] = tag;
    for (int i = 0; i < nbytes; i++) b[1 + i] = (uint8_t)(v >> (8 * (nbytes - 1 - i)));
    mp_raw(w, b, (size_t)nbytes + 1);
}
void qecd_mp_nil(qecd_mp_writer *w) { mp_byte(w, 0xc0); }
void qecd_mp_bool(qecd_mp_writer *w, int v) { mp_byte(w, v ? 0xc3 : 0xc2); }
void qecd_mp_int(qecd_mp_writer *w, int64_t v) {
    if (v >= 0) {
        uint64_t u = (uint64_t)v;
        if (u < 128) mp_byte(w, (uint8_t)u);
        else if (u <= 0xFF) mp_be(w, 0xcc, u, 1);
        else if (u <= 0xFFFF) mp_be(w, 0xcd, u, 2);
        else if (u <= 0xFFFFFFFFu) mp_be(w, 0xce, u, 4);
        else mp_be(w, 0xcf, u, 8);
    } else if (v >= -32) {
        mp_byte(w, (uint8_t)(int8_t)v);
    } else if (v >= INT8_MIN) {
        mp_be(w, 0xd0, (uint64_t)v & 0xFF, 1);
    } else if (v >= INT16_MIN) {
        mp_be(w, 0xd1, (uint64_t)v & 0xFFFF, 2);
    } else if (v >= INT32_MIN) {
        mp_be(w, 0xd2, (uint64_t)v & 0xFFFFFFFFu, 4);
    } else {
        mp_be(w, 0xd3, (uint64_t)v, 8);
    }
}
void qecd_mp_str(qecd_mp_writer *w, const char *s, size_t n) {
    if (n < 32) mp_byte(w, (uint8_t)(0xa0 | n));
    else if (n <= 0xFF) mp_be(w, 0xd9, n, 1);
    else if (n <= 0xFFFF) mp_be(w, 0xda, n, 2);
    else mp_be(w, 0xdb, n, 4);
    mp_raw(w, s, n);
}
void qecd_mp_array(qecd_mp_writer *w, uint32_t n) {
    if (n < 16) mp_byte(w, (uint8_t)(0x90 | n));
    else if (n <= 0xFFFF) mp_be(w, 0xdc, n, 2);
    else mp_be(w, 0xdd, n, 4);
}
void qecd_mp_map(qecd_mp_writer *w, uint32_t n) {
    if (n < 16) mp_byte(w, (uint8_t)(0x80 | n));
    else if (n <= 0xFFFF) mp_be(w, 0xde, n, 2);
    else mp_be(w, 0xdf, n, 4);
}

void qecd_mp_bin(qecd_mp_writer *w, const uint8_t *b, size_t n) {
    if (n <= 0xFF) mp_be(w, 0xc4, n, 1);
    else if (n <= 0xFFFF) mp_be(w, 0xc5, n, 2);
    else mp_be(w, 0xc6, n, 4);
    mp_raw(w, b, n);
}

/* -- msgpack reader ---------------------------------------------------------------------- */
static int mp_fail(qecd_mp_reader *r) { r->err = 1; return -1; }
static int mp_need(qecd_mp_reader *r, size_t n) { return r->pos + n <= r->len ? 0 : mp_fail(r); }
static uint64_t mp_be_at(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

int qecd_mp_peek(const qecd_mp_reader *r) {
    if (r->err || r->pos >= r->len) return QECD_MP_BAD;
    uint8_t b = r->p[r->pos];
    if (b <= 0x7f || b >= 0xe0) return QECD_MP_INT;
    if (b <= 0x8f) return QECD_MP_MAP;
    if (b <= 0x9f) return QECD_MP_ARRAY;
    if (b <= 0xbf) return QECD_MP_STR;
    switch (b) {
    case 0xc0: return QECD_MP_NIL;
    case 0xc2: case 0xc3: return QECD_MP_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return QECD_MP_BIN;
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return QECD_MP_EXT;
    case 0xca: case 0xcb: return QECD_MP_FLOAT;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        return QECD_MP_INT;
    case 0xd9: case 0xda: case 0xdb: return QECD_MP_STR;
    case 0xdc: case 0xdd: return QECD_MP_ARRAY;
    case 0xde: case 0xdf: return QECD_MP_MAP;
    default: return QECD_MP_BAD; /* 0xc1 is never used */
    }
}

/* reads an int as a sign flag + magnitude; returns -1 on a non-int */
static int mp_read_any_int(qecd_mp_reader *r, int *negative, uint64_t *mag) {
    if (qecd_mp_peek(r) != QECD_MP_INT) return mp_fail(r);
    uint8_t b = r->p[r->pos];
    *negative = 0;
    if (b <= 0x7f) { *mag = b; r->pos += 1; return 0; }
    if (b >= 0xe0) { *negative = 1; *mag = (uint64_t)(-(int64_t)(int8_t)b); r->pos += 1; return 0; }
    int n = 1 << ((b - 0xcc) & 3); /* cc..cf unsigned 1,2,4,8; d0..d3 signed 1,2,4,8 */
    if (mp_need(r, 1 + (size_t)n)) return -1;
    uint64_t v = mp_be_at(r->p + r->pos + 1, n);
    r->pos += 1 + (size_t)n;
    if (b <= 0xcf) { *mag = v; return 0; }
    int64_t s;
    switch (n) {
    case 1: s = (int8_t)v; break;
    case 2: s = (int16_t)v; break;
    case 4: s = (int32_t)v; break;
    default: s = (int64_t)v; break;
    }
    if (s < 0) { *negative = 1; *mag = (uint64_t)(-(s + 1)) + 1; } else { *mag = (uint64_t)s; }
    return 0;
}

int qecd_mp_read_int(qecd_mp_reader *r, int64_t *v) {
    int neg; uint64_t mag;
    if (mp_read_any_int(r, &neg, &mag)) return -1;
    if (!neg && mag > (uint64_t)INT64_MAX) return mp_fail(r);
    if (neg && mag > (uint64_t)INT64_MAX + 1) return mp_fail(r);
    *v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int qecd_mp_read_uint(qecd_mp_reader *r, uint64_t *v) {
    int neg; uint64_t mag;
    if (mp_read_any_int(r, &neg, &mag)) return -1;
    if (neg && mag) return mp_fail(r);
    *v = mag;
    return 0;
}

int qecd_mp_read_bool(qecd_mp_reader *r, int *v) {
    if (qecd_mp_peek(r) != QECD_MP_BOOL) return mp_fail(r);
    *v = r->p[r->pos++] == 0xc3;
    return 0;
}

int qecd_mp_read_nil(qecd_mp_reader *r) {
    if (qecd_mp_peek(r) != QECD_MP_NIL) return mp_fail(r);
    r->pos++;
    return 0;
}

static int mp_read_len(qecd_mp_reader *r, uint8_t fix_lo, uint8_t fix_mask, uint8_t tag1,
                       int first_width, uint64_t *n) {
    uint8_t b = r->p[r->pos];
    if ((b & ~fix_mask) == fix_lo) { *n = b & fix_mask; r->pos++; return 0; }
    int width = first_width << (b - tag1);
    if (mp_need(r, 1 + (size_t)width)) return -1;
    *n = mp_be_at(r->p + r->pos + 1, width);
    r->pos += 1 + (size_t)width;
    return 0;
}

int qecd_mp_read_str(qecd_mp_reader *r, const char **s, size_t *n) {
    if (qecd_mp_peek(r) != QECD_MP_STR) return mp_fail(r);
    uint64_t len;
    if (mp_read_len(r, 0xa0, 0x1f, 0xd9, 1, &len) || mp_need(r, len)) return mp_fail(r);
    *s = (const char *)r->p + r->pos;
    *n = (size_t)len;
    r->pos += len;
    return 0;
}

int qecd_mp_read_bin(qecd_mp_reader *r, const uint8_t **b, size_t *n) {
    if (qecd_mp_peek(r) != QECD_MP_BIN || mp_need(r, 1)) return mp_fail(r);
    int width = 1 << (r->p[r->pos] - 0xc4);
    if (mp_need(r, 1 + (size_t)width)) return mp_fail(r);
    uint64_t len = mp_be_at(r->p + r->pos + 1, width);
    r->pos += 1 + (size_t)width;
    if (mp_need(r, len)) return mp_fail(r);
    *b = r->p + r->pos;
    *n = (size_t)len;
    r->pos += len;
    return 0;
}

int qecd_mp_read_array(qecd_mp_reader *r, uint32_t *n) {
    if (qecd_mp_peek(r) != QECD_MP_ARRAY) return mp_fail(r);
    uint64_t len;
    if (mp_read_len(r, 0x90, 0x0f, 0xdc, 2, &len)) return -1;
    *n = (uint32_t)len;
    return 0;
}

int qecd_mp_read_map(qecd_mp_reader *r, uint32_t *n) {
    if (qecd_mp_peek(r) != QECD_MP_MAP) return mp_fail(r);
    uint64_t len;
    if (mp_read_len(r, 0x80, 0x0f, 0xde, 2, &len)) return -1;
    *n = (uint32_t)len;
    return 0;
}

static int mp_skip_bytes(qecd_mp_reader *r, size_t head, int width, size_t extra) {
    /* a value of `head` tag bytes, a `width`-byte big-endian length, `extra` more bytes
     * (the ext type byte), then that many data bytes */
    if (mp_need(r, head + (size_t)width + extra)) return -1;
    uint64_t n = mp_be_at(r->p + r->pos + head, width);
    r->pos += head + (size_t)width + extra;
    if (mp_need(r, n)) return -1;
    r->pos += n;
    return 0;
}

static int mp_skip_depth(qecd_mp_reader *r, int depth) {
    if (depth > 64) return mp_fail(r);
    int kind = qecd_mp_peek(r);
    uint8_t b = kind == QECD_MP_BAD ? 0 : r->p[r->pos];
    uint32_t items;
    int64_t iv;
    uint64_t uv;
    const char *s;
    size_t len;
    switch (kind) {
    case QECD_MP_NIL:
    case QECD_MP_BOOL:
        r->pos++;
        return 0;
    case QECD_MP_INT:
        if (b >= 0xcc && b <= 0xcf) return qecd_mp_read_uint(r, &uv);
        return qecd_mp_read_int(r, &iv);
    case QECD_MP_FLOAT:
        return mp_skip_bytes(r, 1, 0, b == 0xca ? 4 : 8);
    case QECD_MP_STR:
        return qecd_mp_read_str(r, &s, &len);
    case QECD_MP_BIN:
        return mp_skip_bytes(r, 1, 1 << (b - 0xc4), 0);
    case QECD_MP_EXT:
        if (b >= 0xd4) return mp_skip_bytes(r, 2, 0, (size_t)1 << (b - 0xd4));
        return mp_skip_bytes(r, 1, 1 << (b - 0xc7), 1);
    case QECD_MP_ARRAY:
        if (qecd_mp_read_array(r, &items)) return -1;
        for (uint32_t i = 0; i < items; i++)
            if (mp_skip_depth(r, depth + 1)) return -1;
        return 0;
    case QECD_MP_MAP:
        if (qecd_mp_read_map(r, &items)) return -1;
        for (uint64_t i = 0; i < 2ull * items; i++)
            if (mp_skip_depth(r, depth + 1)) return -1;
        return 0;
    default:
        return mp_fail(r);
    }
}
int qecd_mp_skip(qecd_mp_reader *r) { return mp_skip_depth(r, 0); }

/* -- HELLO ---------------------------------------------------------------------------------- */
qecd_hello qecd_hello_default(void) {
    qecd_hello h;
    memset(&h, 0, sizeof h);
    h.time_coord = -1;
    return h;
}

size_t qecd_encode_hello(uint8_t *buf, size_t cap, const qecd_hello *h, uint64_t seq,
                         uint64_t timestamp_ns) {
    if (h->resume_token) {  /* §6.9: the resume map alone */
        if (!h->resume_stream_id || cap < QECD_HEADER_SIZE) return 0;
        qecd_mp_writer w = {buf + QECD_HEADER_SIZE, cap - QECD_HEADER_SIZE, 0, 0};
        qecd_mp_map(&w, 1);
        qecd_mp_str(&w, "resume", 6);
        qecd_mp_map(&w, 2);
        qecd_mp_str(&w, "stream_id", 9);
        qecd_mp_int(&w, h->resume_stream_id);
        qecd_mp_str(&w, "token", 5);
        qecd_mp_bin(&w, h->resume_token, QECD_RESUME_TOKEN_BYTES);
        if (w.overflow) return 0;
        return put_header(buf, cap, QECD_HELLO, 0, 0, 0, w.len, seq, timestamp_ns);
    }
    if ((h->spec != NULL) + (h->dem != NULL) + (h->circuit != NULL) != 1 ||
        cap < QECD_HEADER_SIZE)
        return 0;
    if (h->window < 0 || h->window > (int32_t)QECD_MAX_WINDOW || h->commit < 0 ||
        h->commit > h->window || (h->commit && !h->window))
        return 0;
    int shm = h->transport && strcmp(h->transport, "zmq") != 0;
    int meas = h->input && strcmp(h->input, "detectors") != 0;
    uint32_t keys = 1 + (h->spec ? 0u : 1u) + (h->decoder ? 1u : 0u) + 3 + (shm ? 1u : 0u) +
                    (h->describe ? 1u : 0u) + (meas ? 1u : 0u);
    qecd_mp_writer w = {buf + QECD_HEADER_SIZE, cap - QECD_HEADER_SIZE, 0, 0};
    qecd_mp_map(&w, keys);
    if (h->spec) {
        qecd_mp_str(&w, "spec", 4);
        qecd_mp_str(&w, h->spec, strlen(h->spec));
    } else {
        const char *key = h->dem ? "dem" : "circuit", *text = h->dem ? h->dem : h->circuit;
        qecd_mp_str(&w, key, strlen(key));
        qecd_mp_str(&w, text, strlen(text));
        qecd_mp_str(&w, "time_coord", 10);
        qecd_mp_int(&w, h->time_coord);
    }
    if (h->decoder) {
        qecd_mp_str(&w, "decoder", 7);
        qecd_mp_str(&w, h->decoder, strlen(h->decoder));
    }
    qecd_mp_str(&w, "window", 6);
    if (h->window) qecd_mp_int(&w, h->window); else qecd_mp_nil(&w);
    qecd_mp_str(&w, "commit", 6);
    if (h->commit) qecd_mp_int(&w, h->commit); else qecd_mp_nil(&w);
    qecd_mp_str(&w, "want_faults", 11);
    qecd_mp_bool(&w, h->want_faults);
    if (shm) {
        qecd_mp_str(&w, "transport", 9);
        qecd_mp_str(&w, h->transport, strlen(h->transport));
    }
    if (h->describe) {
        qecd_mp_str(&w, "describe", 8);
        qecd_mp_bool(&w, 1);
    }
    if (meas) {
        qecd_mp_str(&w, "input", 5);
        qecd_mp_str(&w, h->input, strlen(h->input));
    }
    if (w.overflow || w.len > QECD_MAX_HELLO_BYTES) return 0;
    return put_header(buf, cap, QECD_HELLO, 0, 0, 0, w.len, seq, timestamp_ns);
}

/* -- ACCEPT ---------------------------------------------------------------------------------- */
static int key_is(const char *k, size_t n, const char *want) {
    return strlen(want) == n && memcmp(k, want, n) == 0;
}

static int read_u32_into(qecd_mp_reader *r, uint64_t lo, uint32_t *out) {
    uint64_t v;
    if (qecd_mp_read_uint(r, &v) || v < lo || v > 0xFFFFFFFFu) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int read_opt_int(qecd_mp_reader *r, int64_t *out) {
    if (qecd_mp_peek(r) == QECD_MP_NIL) { r->pos++; *out = 0; return 0; }
    uint64_t v;
    if (qecd_mp_read_uint(r, &v) || v < 1 || v > QECD_MAX_WINDOW) return -1;
    *out = (int64_t)v;
    return 0;
}

static int read_str_into(qecd_mp_reader *r, char *dst, size_t cap) {
    const char *s; size_t n;
    if (qecd_mp_read_str(r, &s, &n)) return -1;
    if (n >= cap) n = cap - 1;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

void qecd_accept_free(qecd_accept *a) {
    free(a->slice_sizes);
    free(a->round_byte_prefix);
    free(a->slice_detectors);
    free(a->commit_ranges);
    free(a->dem);
    free(a->measurement_slice_sizes);
    a->measurement_slice_sizes = NULL;
    a->slice_sizes = NULL;
    a->round_byte_prefix = NULL;
    a->slice_detectors = NULL;
    a->commit_ranges = NULL;
    a->dem = NULL;
}

/* slice_detectors: an array of arrays of ids, flattened (sizes checked against slice_sizes
 * after the whole map is read) */
static int read_slice_detectors(qecd_mp_reader *r, qecd_accept *a, uint32_t *n_lists,
                                uint32_t **list_sizes) {
    uint32_t m, total = 0, cap = 1024;
    if (qecd_mp_read_array(r, &m) || m < 1 || m > QECD_MAX_ROUNDS_PER_SHOT) return -1;
    *list_sizes = malloc(sizeof(uint32_t) * m);
    a->slice_detectors = malloc(sizeof(uint32_t) * cap);
    if (!*list_sizes || !a->slice_detectors) return -1;
    *n_lists = m;
    for (uint32_t t = 0; t < m; t++) {
        uint32_t k;
        if (qecd_mp_read_array(r, &k)) return -1;
        (*list_sizes)[t] = k;
        for (uint32_t i = 0; i < k; i++) {
            uint64_t v;
            if (qecd_mp_read_uint(r, &v) || v >= QECD_MAX_DETECTORS) return -1;
            if (total == cap) {
                uint32_t *grown = realloc(a->slice_detectors, sizeof(uint32_t) * (cap *= 2));
                if (!grown) return -1;
                a->slice_detectors = grown;
            }
            a->slice_detectors[total++] = (uint32_t)v;
        }
    }
    return 0;
}

static int read_commit_ranges(qecd_mp_reader *r, qecd_accept *a) {
    uint32_t m;
    if (qecd_mp_read_array(r, &m) || m < 1 || m > QECD_MAX_ROUNDS_PER_SHOT) return -1;
    a->commit_ranges = malloc(sizeof(uint32_t) * 3 * m);
    if (!a->commit_ranges) return -1;
    a->n_commit_ranges = m;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t k;
        if (qecd_mp_read_array(r, &k) || k != 3) return -1;
        for (uint32_t j = 0; j < 3; j++) {
            uint64_t v;
            if (qecd_mp_read_uint(r, &v) || v >= QECD_MAX_ROUNDS_PER_SHOT) return -1;
            a->commit_ranges[3 * i + j] = (uint32_t)v;
        }
    }
    return 0;
}

int qecd_decode_accept(const qecd_header *h, const uint8_t *body, size_t n, qecd_accept *a) {
    enum { K_SID, K_RPS, K_SIZES, K_NDET, K_NOBS, K_DEC, K_WIN, K_COM, K_WF, K_HB, K_TO, K_MB,
           K_MF, K_SRV, K_REGION, K_SLOTS, K_SSIZE, K_CPS, K_SDETS, K_RANGES, K_DEM, K_MSIZES,
           K_TOKEN, K_NEXT, K_N };
    static const char *const names[K_N] = {
        "stream_id", "rounds_per_shot", "slice_sizes", "num_detectors", "num_observables",
        "decoder", "window", "commit", "want_faults", "heartbeat_ms", "timeout_ms",
        "max_backlog", "max_frame", "server", "shm_region", "shm_slots", "shm_slot_size",
        "corrections_per_shot", "slice_detectors", "commit_ranges", "dem",
        "measurement_slice_sizes", "resume_token", "next_round"};
    memset(a, 0, sizeof *a);
    if (h->msg_type != QECD_ACCEPT) return QECD_UNEXPECTED_TYPE;
    qecd_mp_reader r = {body, n, 0, 0};
    uint32_t nkeys, seen = 0;
    uint64_t ndet = 0, rps = 0, sum = 0;
    uint32_t n_lists = 0, *list_sizes = NULL, n_msizes = 0;
    if (qecd_mp_read_map(&r, &nkeys)) return QECD_BAD_PAYLOAD;
    for (uint32_t i = 0; i < nkeys; i++) {
        const char *k; size_t kn;
        if (qecd_mp_read_str(&r, &k, &kn)) goto bad;
        int id = -1;
        for (int j = 0; j < K_N; j++) if (key_is(k, kn, names[j])) { id = j; break; }
        if (id < 0) { if (qecd_mp_skip(&r)) goto bad; continue; }
        if (seen & (1u << id)) goto bad; /* a key twice */
        seen |= 1u << id;
        int ok = 0;
        switch (id) {
        case K_SID: ok = !read_u32_into(&r, 1, &a->stream_id); break;
        case K_RPS: ok = !qecd_mp_read_uint(&r, &rps) && rps >= 1 && rps <= QECD_MAX_ROUNDS_PER_SHOT;
            break;
        case K_SIZES: {
            uint32_t m;
            if (qecd_mp_read_array(&r, &m) || m < 1 || m > QECD_MAX_ROUNDS_PER_SHOT) break;
            a->slice_sizes = malloc(sizeof(uint32_t) * m);
            a->round_byte_prefix = malloc(sizeof(uint64_t) * (m + 1u));
            if (!a->slice_sizes || !a->round_byte_prefix) { qecd_accept_free(a); return QECD_E_NOMEM; }
            a->rounds_per_shot = m;
            a->round_byte_prefix[0] = 0;
            ok = 1;
            for (uint32_t s = 0; s < m && ok; s++) {
                uint64_t v = 0;
                ok = !qecd_mp_read_uint(&r, &v) && v <= QECD_MAX_DETECTORS;
                a->slice_sizes[s] = (uint32_t)v;
                sum += v;
                a->round_byte_prefix[s + 1] = a->round_byte_prefix[s] + (v + 7) / 8;
            }
            break;
        }
        case K_NDET: ok = !qecd_mp_read_uint(&r, &ndet); break;
        case K_NOBS: ok = !read_u32_into(&r, 0, &a->num_observables); break;
        case K_DEC: ok = !read_str_into(&r, a->decoder, sizeof a->decoder); break;
        case K_WIN: ok = !read_opt_int(&r, &a->window); break;
        case K_COM: ok = !read_opt_int(&r, &a->commit); break;
        case K_WF: ok = !qecd_mp_read_bool(&r, &a->want_faults); break;
        case K_HB: case K_TO: case K_MB: case K_MF: {
            uint64_t v = 0;
            ok = !qecd_mp_read_uint(&r, &v) && v <= 0xFFFFFFFFu;
            int64_t *dst = id == K_HB ? &a->heartbeat_ms : id == K_TO ? &a->timeout_ms
                           : id == K_MB ? &a->max_backlog : &a->max_frame;
            *dst = (int64_t)v;
            if (id == K_MF && v < QECD_HEADER_SIZE) ok = 0;
            break;
        }
        case K_SRV: ok = !read_str_into(&r, a->server, sizeof a->server); break;
        case K_REGION: {
            const char *s; size_t sn;
            ok = !qecd_mp_read_str(&r, &s, &sn) && sn > 5 && sn <= 205 &&
                 memcmp(s, "qecd-", 5) == 0;
            for (size_t c = 5; ok && c < sn; c++) {
                char ch = s[c];
                ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
            }
            if (ok) { memcpy(a->shm_region, s, sn); a->shm_region[sn] = 0; }
            break;
        }
        case K_SLOTS: ok = !read_u32_into(&r, 1, &a->shm_slots) &&
                           (a->shm_slots & (a->shm_slots - 1)) == 0; break;
        case K_SSIZE: ok = !read_u32_into(&r, 64, &a->shm_slot_size) &&
                           a->shm_slot_size % 64 == 0; break;
        case K_CPS: ok = !read_u32_into(&r, 1, &a->corrections_per_shot); break;
        case K_SDETS: ok = !read_slice_detectors(&r, a, &n_lists, &list_sizes); break;
        case K_RANGES: ok = !read_commit_ranges(&r, a); break;
        case K_MSIZES: {
            uint32_t m;
            if (qecd_mp_read_array(&r, &m) || m < 1 || m > QECD_MAX_ROUNDS_PER_SHOT) break;
            n_msizes = m;
            a->measurement_slice_sizes = malloc(sizeof(uint32_t) * m);
            ok = a->measurement_slice_sizes != NULL;
            for (uint32_t t = 0; ok && t < m; t++)
                ok = !read_u32_into(&r, 0, &a->measurement_slice_sizes[t]);
            break;
        }
        case K_TOKEN: {
            const uint8_t *b; size_t bn;
            ok = !qecd_mp_read_bin(&r, &b, &bn) && bn == QECD_RESUME_TOKEN_BYTES;
            if (ok) { memcpy(a->resume_token, b, bn); a->has_resume_token = 1; }
            break;
        }
        case K_NEXT: ok = !qecd_mp_read_uint(&r, &a->next_round); a->has_next_round = ok; break;
        case K_DEM: {
            const char *s; size_t sn;
            ok = !qecd_mp_read_str(&r, &s, &sn) && (a->dem = malloc(sn + 1)) != NULL;
            if (ok) { memcpy(a->dem, s, sn); a->dem[sn] = 0; }
            break;
        }
        }
        if (!ok) goto bad;
    }
    if (r.pos != r.len) goto bad;                               /* one map, nothing after */
    if ((seen & ((1u << K_REGION) - 1)) != (1u << K_REGION) - 1) goto bad;  /* required keys */
    uint32_t shm_bits = (seen >> K_REGION) & 0xF, desc_bits = (seen >> K_SDETS) & 0x7;
    if (shm_bits != 0 && shm_bits != 0xF) goto bad;             /* all four or none */
    if (desc_bits != 0 && desc_bits != 0x7) goto bad;           /* all three or none */
    if (a->measurement_slice_sizes && n_msizes != a->rounds_per_shot) goto bad;
    if (desc_bits) {  /* slice t lists slice_sizes[t] ids */
        if (n_lists != a->rounds_per_shot) goto bad;
        for (uint32_t t = 0; t < n_lists; t++)
            if (list_sizes[t] != a->slice_sizes[t]) goto bad;
    }
    free(list_sizes);
    list_sizes = NULL;
    if (a->stream_id != h->stream_id || rps != a->rounds_per_shot || ndet != sum ||
        sum > QECD_MAX_DETECTORS)
        goto bad;
    if (a->commit && (!a->window || a->commit > a->window)) goto bad;
    a->num_detectors = (uint32_t)sum;
    return 0;
bad:
    free(list_sizes);
    qecd_accept_free(a);
    return QECD_BAD_PAYLOAD;
}

/* -- SYNDROME --------------------------------------------------------------------------------- */
size_t qecd_round_bytes(const qecd_accept *a, uint64_t round) {
    return (a->slice_sizes[round % a->rounds_per_shot] + 7u) / 8u;
}

static uint64_t bytes_before(const qecd_accept *a, uint64_t x) {
    uint64_t R = a->rounds_per_shot;
    return (x / R) * a->round_byte_prefix[R] + a->round_byte_prefix[x % R];
}

size_t qecd_syndrome_bytes(const qecd_accept *a, uint64_t first_round, uint32_t count) {
    return (size_t)(bytes_before(a, first_round + count) - bytes_before(a, first_round));
}

void qecd_pack_bits(uint8_t *out, const uint8_t *bits, size_t n) {
    memset(out, 0, (n + 7) / 8);
    for (size_t i = 0; i < n; i++)
        if (bits[i]) out[i >> 3] |= (uint8_t)(1u << (i & 7));
}

size_t qecd_encode_syndrome(uint8_t *buf, size_t cap, uint32_t stream_id, uint64_t first_round,
                            uint32_t count, uint64_t timestamp_ns, const uint8_t *payload,
                            size_t payload_len) {
    if (count < 1 || count > QECD_MAX_COUNT || stream_id == 0 ||
        first_round > UINT64_MAX - count + 1)
        return 0;
    size_t n = put_header(buf, cap, QECD_SYNDROME, 0, (uint16_t)count, stream_id, payload_len,
                          first_round, timestamp_ns);
    if (n && payload_len) memcpy(buf + QECD_HEADER_SIZE, payload, payload_len);
    return n;
}

int qecd_check_syndrome(const qecd_accept *a, const qecd_header *h, const uint8_t *payload) {
    if (h->payload_len != qecd_syndrome_bytes(a, h->round, h->count)) return QECD_BAD_PAYLOAD;
    size_t at = 0;
    for (uint32_t i = 0; i < h->count; i++) {
        uint32_t s = a->slice_sizes[(h->round + i) % a->rounds_per_shot];
        at += (s + 7) / 8;
        if ((s & 7) && (payload[at - 1] >> (s & 7))) return QECD_BAD_PAYLOAD;
    }
    return 0;
}

size_t qecd_batch_capacity(const uint32_t *sizes, uint32_t rounds_per_shot, uint32_t k) {
    size_t most = 0;
    for (uint32_t t = 0; t < rounds_per_shot; t++)
        if ((sizes[t] + 7u) / 8u > most) most = (sizes[t] + 7u) / 8u;
    return QECD_HEADER_SIZE + most * (size_t)k;
}

int qecd_batch_init(qecd_batch *b, const uint32_t *sizes, uint32_t rounds_per_shot,
                    uint32_t stream_id, uint32_t k, uint64_t next_round, uint8_t *buf,
                    size_t cap) {
    if (!b || !sizes || !buf || rounds_per_shot == 0 || stream_id == 0 || k < 1 ||
        k > QECD_MAX_COUNT || cap < qecd_batch_capacity(sizes, rounds_per_shot, k))
        return QECD_E_ARG;
    b->sizes = sizes;
    b->rounds_per_shot = rounds_per_shot;
    b->stream_id = stream_id;
    b->k = k;
    b->buf = buf;
    b->cap = cap;
    qecd_batch_reset(b, next_round);
    return 0;
}

void qecd_batch_reset(qecd_batch *b, uint64_t next_round) {
    b->first_round = next_round;
    b->pending = 0;
    b->payload_len = 0;
    b->timestamp_ns = 0;
}

long qecd_batch_add(qecd_batch *b, const uint8_t *bits, size_t n, uint64_t timestamp_ns) {
    uint32_t size = b->sizes[(b->first_round + b->pending) % b->rounds_per_shot];
    size_t nbytes = (size + 7u) / 8u;
    if (n != size || QECD_HEADER_SIZE + b->payload_len + nbytes > b->cap) return QECD_E_ARG;
    qecd_pack_bits(b->buf + QECD_HEADER_SIZE + b->payload_len, bits, n);
    b->payload_len += nbytes;
    b->pending++;
    b->timestamp_ns = timestamp_ns;
    return b->pending >= b->k ? (long)qecd_batch_take(b) : 0;
}

size_t qecd_batch_take(qecd_batch *b) {
    if (b->pending == 0) return 0;
    size_t n = put_header(b->buf, b->cap, QECD_SYNDROME, 0, (uint16_t)b->pending, b->stream_id,
                          b->payload_len, b->first_round, b->timestamp_ns);
    qecd_batch_reset(b, b->first_round + b->pending);
    return n;
}

/* -- CORRECTION -------------------------------------------------------------------------------- */
int qecd_decode_correction(const qecd_header *h, const uint8_t *body, size_t n,
                           qecd_correction *c) {
    if (h->msg_type != QECD_CORRECTION) return QECD_UNEXPECTED_TYPE;
    if (n < QECD_CORRECTION_FIXED) return QECD_BAD_PAYLOAD;
    c->first_round = get64(body);
    c->last_round = get64(body + 8);
    c->service_ns = get64(body + 16);
    c->num_observables = get32(body + 24);
    c->num_faults = get32(body + 28);
    c->shot_end = (h->flags & QECD_FLAG_SHOT_END) != 0;
    int has_faults = (h->flags & QECD_FLAG_FAULT_IDS) != 0;
    if (c->first_round > c->last_round) return QECD_BAD_PAYLOAD;
    if (c->num_faults && !has_faults) return QECD_BAD_PAYLOAD;
    uint64_t obs_len = 4 * (((uint64_t)c->num_observables + 31) / 32);
    if ((uint64_t)n != QECD_CORRECTION_FIXED + obs_len + 4ull * c->num_faults) return QECD_BAD_PAYLOAD;
    c->observables = body + QECD_CORRECTION_FIXED;
    c->fault_ids = has_faults ? body + QECD_CORRECTION_FIXED + obs_len : NULL;
    uint32_t nobs = c->num_observables, used = (nobs + 7) / 8;
    if ((nobs & 7) && (c->observables[used - 1] >> (nobs & 7))) return QECD_BAD_PAYLOAD;
    for (uint64_t i = used; i < obs_len; i++) if (c->observables[i]) return QECD_BAD_PAYLOAD;
    return 0;
}

size_t qecd_encode_correction(uint8_t *buf, size_t cap, uint32_t stream_id, uint64_t seq,
                              uint64_t timestamp_ns, uint64_t first_round, uint64_t last_round,
                              uint64_t service_ns, const uint8_t *observables,
                              uint32_t num_observables, const uint32_t *fault_ids,
                              uint32_t num_faults, int shot_end) {
    if (first_round > last_round || stream_id == 0) return 0;
    uint64_t obs_len = 4 * (((uint64_t)num_observables + 31) / 32);
    uint64_t nf = fault_ids ? num_faults : 0;
    uint64_t body = QECD_CORRECTION_FIXED + obs_len + 4 * nf;
    uint16_t flags = (uint16_t)((shot_end ? QECD_FLAG_SHOT_END : 0) |
                                (fault_ids ? QECD_FLAG_FAULT_IDS : 0));
    size_t total = put_header(buf, cap, QECD_CORRECTION, flags, 0, stream_id, body, seq,
                              timestamp_ns);
    if (!total) return 0;
    uint8_t *p = buf + QECD_HEADER_SIZE;
    put64(p, first_round); put64(p + 8, last_round); put64(p + 16, service_ns);
    put32(p + 24, num_observables); put32(p + 28, (uint32_t)nf);
    memset(p + 32, 0, obs_len);
    for (uint32_t j = 0; j < num_observables; j++)
        if (observables[j]) p[32 + (j >> 3)] |= (uint8_t)(1u << (j & 7));
    for (uint64_t k = 0; k < nf; k++) put32(p + 32 + obs_len + 4 * k, fault_ids[k]);
    return total;
}

/* -- ERROR ----------------------------------------------------------------------------------- */
int qecd_decode_error(const qecd_header *h, const uint8_t *body, size_t n, qecd_error *e) {
    if (h->msg_type != QECD_ERROR) return QECD_UNEXPECTED_TYPE;
    if (n < QECD_ERROR_FIXED || n - QECD_ERROR_FIXED > QECD_MAX_REASON_BYTES) return QECD_BAD_PAYLOAD;
    e->code = get16(body);
    e->versions = get16(body + 2);
    e->ref_type = body[4];
    if (e->code == 0 || body[5] || body[6] || body[7]) return QECD_BAD_PAYLOAD;
    e->next_round = get64(body + 8);
    e->reason = (const char *)body + QECD_ERROR_FIXED;
    e->reason_len = n - QECD_ERROR_FIXED;
    return 0;
}

size_t qecd_encode_error(uint8_t *buf, size_t cap, uint16_t code, const char *reason,
                         uint32_t stream_id, uint64_t seq, uint64_t timestamp_ns,
                         uint8_t ref_type, uint64_t next_round) {
    size_t rn = reason ? strlen(reason) : 0;
    if (code == 0 || rn > QECD_MAX_REASON_BYTES) return 0;
    size_t total = put_header(buf, cap, QECD_ERROR, 0, 0, stream_id, QECD_ERROR_FIXED + rn, seq,
                              timestamp_ns);
    if (!total) return 0;
    uint8_t *p = buf + QECD_HEADER_SIZE;
    put16(p, code); put16(p + 2, 1u << (QECD_VERSION - 1)); p[4] = ref_type; p[5] = 0;
    put16(p + 6, 0); put64(p + 8, next_round);
    if (rn) memcpy(p + QECD_ERROR_FIXED, reason, rn);
    return total;
}

/* -- clock ----------------------------------------------------------------------------------- */
uint64_t qecd_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* -- session --------------------------------------------------------------------------------- */
struct qecd_session {
    void *ctx, *sock;
    uint64_t seq;
    char last_error[QECD_MAX_REASON_BYTES + 64];
};

qecd_session *qecd_session_open(const char *endpoint) {
    qecd_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->ctx = zmq_ctx_new();
    s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    if (!s->sock || zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_connect(s->sock, endpoint)) {
        qecd_session_close(s);
        return NULL;
    }
    s->seq = 1;
    return s;
}

void qecd_session_close(qecd_session *s) {
    if (!s) return;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    free(s);
}

uint64_t qecd_session_next_seq(qecd_session *s) { return s->seq++; }

const char *qecd_session_last_error(const qecd_session *s) { return s->last_error; }

int qecd_session_send(qecd_session *s, const uint8_t *pkt, size_t n) {
    return zmq_send(s->sock, pkt, n, 0) == (int)n ? 0 : QECD_E_SYS;
}

long qecd_session_recv(qecd_session *s, uint8_t *buf, size_t cap, int timeout_ms) {
    zmq_pollitem_t item = {s->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&item, 1, timeout_ms);
    if (rc < 0) return QECD_E_SYS;
    if (rc == 0) return QECD_E_TIMEOUT;
    int n = zmq_recv(s->sock, buf, cap, 0);
    if (n < 0) return QECD_E_SYS;
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &ml);
    if (more || (size_t)n > cap) {  /* not a packet: drain the message and report it */
        while (more) {
            zmq_recv(s->sock, NULL, 0, 0);
            zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &ml);
        }
        return QECD_E_ARG;
    }
    return n;
}

int qecd_open_stream(qecd_session *s, const qecd_hello *h, qecd_accept *a, int timeout_ms) {
    size_t cap = QECD_HEADER_SIZE + 256 + (h->spec ? strlen(h->spec) : 0) +
                 (h->dem ? strlen(h->dem) : 0) + (h->decoder ? strlen(h->decoder) : 0);
    uint8_t *buf = malloc(cap);
    if (!buf) return QECD_E_NOMEM;
    uint64_t seq = qecd_session_next_seq(s);
    size_t n = qecd_encode_hello(buf, cap, h, seq, qecd_monotonic_ns());
    int sent = n ? qecd_session_send(s, buf, n) : QECD_E_ARG;
    free(buf);
    if (!n) snprintf(s->last_error, sizeof s->last_error, "HELLO: arguments out of range");
    if (sent) return sent;
    /* the ACCEPT may be large (a described stream carries its DEM text): take whole messages */
    uint64_t deadline = qecd_monotonic_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint64_t now = qecd_monotonic_ns();
        if (now >= deadline) {
            snprintf(s->last_error, sizeof s->last_error, "no ACCEPT within %d ms", timeout_ms);
            return QECD_E_TIMEOUT;
        }
        zmq_pollitem_t item = {s->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, (long)((deadline - now) / 1000000ull) + 1);
        if (rc < 0) return QECD_E_SYS;
        if (rc == 0) continue;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s->sock, 0) < 0) { zmq_msg_close(&msg); return QECD_E_SYS; }
        const uint8_t *p = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        qecd_header hd;
        int result = -1;
        if (!qecd_parse_packet(p, len, 0, &hd) && hd.round == seq) {
            if (hd.msg_type == QECD_ACCEPT) {
                result = qecd_decode_accept(&hd, p + QECD_HEADER_SIZE, hd.payload_len, a);
                if (result)
                    snprintf(s->last_error, sizeof s->last_error, "ACCEPT body malformed");
            } else if (hd.msg_type == QECD_ERROR && hd.stream_id == 0) {
                qecd_error e;
                result = qecd_decode_error(&hd, p + QECD_HEADER_SIZE, hd.payload_len, &e);
                if (!result) {
                    snprintf(s->last_error, sizeof s->last_error, "%s: %.*s",
                             qecd_error_name(e.code) ? qecd_error_name(e.code) : "?",
                             (int)e.reason_len, e.reason);
                    result = e.code;
                }
            }
        }
        zmq_msg_close(&msg);
        if (result >= 0) return result;
    }
}

int qecd_resume_stream(qecd_session *s, uint32_t stream_id, const uint8_t *token,
                       qecd_accept *a, int timeout_ms) {
    qecd_hello h = qecd_hello_default();
    h.resume_stream_id = stream_id;
    h.resume_token = token;
    if (!token || !stream_id) return QECD_E_ARG;
    int rc = qecd_open_stream(s, &h, a, timeout_ms);
    if (rc == 0 && a->stream_id != stream_id) {
        snprintf(s->last_error, sizeof s->last_error, "ACCEPT names another stream");
        qecd_accept_free(a);
        return QECD_E_ARG;
    }
    return rc;
}

/* -- shared-memory rings ---------------------------------------------------------------------- */
/* word offsets of the region header and of a ring header (bytes / 8) */
enum { W_MAGIC = 0, W_VER_HDR = 1, W_RINGS_SLOTS = 2, W_SIZE_RSIZE = 3, W_TOTAL = 4,
       S_PID = 0, S_HB = 1, S_STATE = 2,
       R_INDEX = 0, R_PSIDE = 1, R_CSIDE = 2, R_NSLOTS = 3, R_SSIZE = 4,
       R_HEAD = 16, R_CTAIL = 17, R_TAIL = 32 };
enum { STATE_ATTACHED = 1, STATE_DETACHED = 2 };

static inline _Atomic uint64_t *word_at(uint8_t *base, size_t byte_off) {
    return (_Atomic uint64_t *)(void *)(base + byte_off);
}
static inline uint64_t load_acq(uint8_t *base, size_t off) {
    return atomic_load_explicit(word_at(base, off), memory_order_acquire);
}
static inline void store_rel(uint8_t *base, size_t off, uint64_t v) {
    atomic_store_explicit(word_at(base, off), v, memory_order_release);
}
static inline uint64_t load_plain(uint8_t *base, size_t off) {
    return atomic_load_explicit(word_at(base, off), memory_order_relaxed);
}
static inline void store_plain(uint8_t *base, size_t off, uint64_t v) {
    atomic_store_explicit(word_at(base, off), v, memory_order_relaxed);
}
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}
static size_t side_off(int side, int field) {
    return QECD_RING_SIDE_OFFSET + (size_t)side * QECD_RING_SIDE_STRIDE + 8u * (size_t)field;
}

static int pid_alive(uint64_t pid) {
    if (pid == 0 || pid > (uint64_t)INT32_MAX) return 0;
    if (kill((pid_t)pid, 0) == 0) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%llu/stat", (unsigned long long)pid);
        FILE *f = fopen(path, "r");
        if (!f) return 1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *close_paren = strrchr(buf, ')');
        return !(close_paren && close_paren[1] == ' ' &&
                 (close_paren[2] == 'Z' || close_paren[2] == 'X'));
    }
    return errno == EPERM;
}

static int side_alive(uint8_t *base, int side) {
    return load_acq(base, side_off(side, S_STATE)) == STATE_ATTACHED &&
           pid_alive(load_acq(base, side_off(side, S_PID)));
}

int qecd_rings_attach(qecd_rings *r, const char *name, uint32_t expect_slots,
                      uint32_t expect_slot_size) {
    memset(r, 0, sizeof *r);
    char path[260];
    if (!name || strncmp(name, "qecd-", 5) != 0 || strchr(name, '/') || strlen(name) > 200)
        return QECD_E_ARG;
    snprintf(path, sizeof path, "/%s", name);  /* POSIX shm names start with "/" */
    int fd = shm_open(path, O_RDWR, 0);
    if (fd < 0) return QECD_E_SYS;
    struct stat st;
    if (fstat(fd, &st) || st.st_uid != geteuid() || (st.st_mode & 0777) != 0600 ||
        st.st_size < (off_t)QECD_RING_HEADER_SIZE) {
        close(fd);
        return QECD_E_REGION;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return QECD_E_SYS;
    uint8_t *b = m;
    r->base = b;
    r->size = (size_t)st.st_size;
    int ok = load_acq(b, 8 * W_MAGIC) == QECD_RING_MAGIC;  /* stored last by the creator */
    uint64_t vh = load_plain(b, 8 * W_VER_HDR), rs = load_plain(b, 8 * W_RINGS_SLOTS);
    uint64_t sr = load_plain(b, 8 * W_SIZE_RSIZE), total = load_plain(b, 8 * W_TOTAL);
    uint64_t n_rings = rs & 0xFFFFFFFFu, n_slots = rs >> 32;
    uint64_t slot_size = sr & 0xFFFFFFFFu, ring_size = sr >> 32;
    ok = ok && (vh & 0xFFFFFFFFu) == QECD_RING_VERSION && (vh >> 32) == QECD_RING_HEADER_SIZE;
    ok = ok && n_rings == 2 && n_slots >= 1 && (n_slots & (n_slots - 1)) == 0;
    ok = ok && slot_size >= 64 && slot_size % 64 == 0;
    ok = ok && ring_size == QECD_RING_RING_HEADER + n_slots * slot_size;
    ok = ok && total == QECD_RING_HEADER_SIZE + 2 * ring_size && total == r->size;
    ok = ok && (!expect_slots || expect_slots == n_slots);
    ok = ok && (!expect_slot_size || expect_slot_size == slot_size);
    for (uint64_t ring = 0; ok && ring < 2; ring++) {
        size_t off = QECD_RING_HEADER_SIZE + ring * ring_size;
        ok = load_plain(b, off + 8 * R_INDEX) == ring &&
             load_plain(b, off + 8 * R_PSIDE) == ring % 2 &&
             load_plain(b, off + 8 * R_CSIDE) == 1 - ring % 2 &&
             load_plain(b, off + 8 * R_NSLOTS) == n_slots &&
             load_plain(b, off + 8 * R_SSIZE) == slot_size;
    }
    if (!ok) { munmap(m, r->size); r->base = NULL; return QECD_E_REGION; }
    r->n_slots = (uint32_t)n_slots;
    r->slot_size = (uint32_t)slot_size;
    r->tx_off = QECD_RING_HEADER_SIZE;
    r->rx_off = QECD_RING_HEADER_SIZE + ring_size;
    r->yield_after_ns = QECD_RING_YIELD_AFTER_NS;
    snprintf(r->name, sizeof r->name, "%s", name);
    /* claim side 0 (the client): refused while a live process holds it */
    uint64_t me = (uint64_t)getpid();
    if (side_alive(b, 0) && load_acq(b, side_off(0, S_PID)) != me) {
        munmap(m, r->size); r->base = NULL;
        return QECD_E_REGION;
    }
    store_rel(b, side_off(0, S_PID), me);
    store_rel(b, side_off(0, S_HB), qecd_monotonic_ns());
    store_rel(b, side_off(0, S_STATE), STATE_ATTACHED);
    r->cached_tail = load_plain(b, r->tx_off + 8 * R_CTAIL);
    shm_unlink(path);  /* both sides have it mapped: no other process may attach (§14.1) */
    return 0;
}

void qecd_rings_detach(qecd_rings *r) {
    if (!r->base) return;
    if (load_acq(r->base, side_off(0, S_PID)) == (uint64_t)getpid())
        store_rel(r->base, side_off(0, S_STATE), STATE_DETACHED);
    munmap(r->base, r->size);
    r->base = NULL;
}

void qecd_rings_beat(qecd_rings *r) {
    store_rel(r->base, side_off(0, S_HB), qecd_monotonic_ns());
}

int qecd_ring_try_send(qecd_rings *r, const uint8_t *pkt, uint32_t len) {
    if (len > r->slot_size - QECD_RING_SLOT_HEADER) return QECD_RING_TOO_LARGE;
    uint8_t *b = r->base;
    size_t ro = r->tx_off;
    uint64_t head = load_plain(b, ro + 8 * R_HEAD);          /* we are its only writer */
    if (head - r->cached_tail >= r->n_slots) {
        r->cached_tail = load_acq(b, ro + 8 * R_TAIL);
        store_plain(b, ro + 8 * R_CTAIL, r->cached_tail);
        if (head - r->cached_tail >= r->n_slots) return QECD_RING_FULL;
    }
    size_t slot = ro + QECD_RING_RING_HEADER + (size_t)(head & (r->n_slots - 1)) * r->slot_size;
    memcpy(b + slot + QECD_RING_SLOT_HEADER, pkt, len);
    store_plain(b, slot + 8, (uint64_t)len);                  /* length u32 + reserved 0 */
    store_rel(b, slot, head + 1);                             /* the doorbell */
    store_rel(b, ro + 8 * R_HEAD, head + 1);
    return QECD_RING_OK;
}

long qecd_ring_try_recv(qecd_rings *r, uint8_t *out, uint32_t cap) {
    uint8_t *b = r->base;
    size_t ro = r->rx_off;
    uint64_t tail = load_plain(b, ro + 8 * R_TAIL);           /* we are its only writer */
    size_t slot = ro + QECD_RING_RING_HEADER + (size_t)(tail & (r->n_slots - 1)) * r->slot_size;
    uint64_t seq = load_acq(b, slot);
    if (seq != tail + 1) {
        uint64_t stale = tail + 1 - r->n_slots;  /* previous lap's message (0: never written) */
        if ((tail + 1 >= r->n_slots && seq == stale) || (tail + 1 < r->n_slots && seq == 0))
            return QECD_RING_EMPTY;
        return QECD_RING_CORRUPT;
    }
    uint64_t len = load_plain(b, slot + 8) & 0xFFFFFFFFu;
    if (len > r->slot_size - QECD_RING_SLOT_HEADER) return QECD_RING_CORRUPT;
    if (len > cap) return QECD_RING_BUFFER_TOO_SMALL;
    memcpy(out, b + slot + QECD_RING_SLOT_HEADER, len);
    store_rel(b, ro + 8 * R_TAIL, tail + 1);                  /* credit after the reads */
    return (long)len;
}

/* one poll's wait; returns 1 at the deadline */
static int backoff(qecd_rings *r, uint64_t polls, uint64_t start, uint64_t deadline) {
    if (polls > QECD_RING_SPIN_POLLS) {
        uint64_t n = (polls - QECD_RING_SPIN_POLLS) >> 4;
        for (uint64_t i = 0; i < (n < QECD_RING_MAX_PAUSES ? n : QECD_RING_MAX_PAUSES); i++)
            cpu_relax();
    }
    if ((polls & (QECD_RING_CLOCK_EVERY - 1)) == 0) {
        uint64_t now = qecd_monotonic_ns();
        store_rel(r->base, side_off(0, S_HB), now);
        if (now >= deadline) return 1;
        if (r->yield_after_ns >= 0 && now - start >= (uint64_t)r->yield_after_ns) sched_yield();
    }
    return 0;
}

static int after_timeout(qecd_rings *r) {
    uint64_t state = load_acq(r->base, side_off(1, S_STATE));
    if (state == STATE_DETACHED) return QECD_RING_PEER_DEAD;
    if (state == STATE_ATTACHED && !pid_alive(load_acq(r->base, side_off(1, S_PID))))
        return QECD_RING_PEER_DEAD;
    return QECD_RING_TIMEOUT;
}

int qecd_ring_send(qecd_rings *r, const uint8_t *pkt, uint32_t len, int64_t timeout_ns) {
    int st = qecd_ring_try_send(r, pkt, len);
    if (st != QECD_RING_FULL) return st;
    uint64_t start = qecd_monotonic_ns(), deadline = start + (uint64_t)timeout_ns;
    for (uint64_t polls = 1;; polls++) {
        st = qecd_ring_try_send(r, pkt, len);
        if (st != QECD_RING_FULL) return st;
        if (backoff(r, polls, start, deadline)) return after_timeout(r);
    }
}

long qecd_ring_recv(qecd_rings *r, uint8_t *out, uint32_t cap, int64_t timeout_ns) {
    long got = qecd_ring_try_recv(r, out, cap);
    if (got != QECD_RING_EMPTY) return got;
    uint64_t start = qecd_monotonic_ns(), deadline = start + (uint64_t)timeout_ns;
    for (uint64_t polls = 1;; polls++) {
        got = qecd_ring_try_recv(r, out, cap);
        if (got != QECD_RING_EMPTY) return got;
        if (backoff(r, polls, start, deadline)) return after_timeout(r);
    }
}
