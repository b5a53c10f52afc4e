/* qecd_vectors: check the C client against docs/protocol_vectors.json, both directions.
 *
 * Reads the vectors on stdin in a line format (tests/protocol_vectors.py c_lines() makes it
 * from the JSON file):  NAME TYPE HEX key=value ...  with h.<field> header fields, then the
 * body's fields (strings as x<hex>, lists as [a,b], nil as nil). For every vector: parse the
 * packet (§4 checks) and compare the header; decode the body and compare its fields; where
 * the client has an encoder for the type (HELLO, SYNDROME, CORRECTION, ERROR, HEARTBEAT, BYE,
 * STATS request) encode the fields and compare byte for byte. Prints one line per vector,
 * "ok NAME" or "FAIL NAME: why"; exit status = number of failures.
 */
#define _POSIX_C_SOURCE 200809L
#include "qecd_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXF 64

typedef struct { char key[64]; char *val; } field;
typedef struct { field f[MAXF]; int n; } fields;

static const char *get(const fields *fs, const char *k) {
    for (int i = 0; i < fs->n; i++) if (!strcmp(fs->f[i].key, k)) return fs->f[i].val;
    return NULL;
}
static int has(const fields *fs, const char *k) { return get(fs, k) != NULL; }
static uint64_t u64(const fields *fs, const char *k) {
    const char *v = get(fs, k);
    return v ? strtoull(v, NULL, 10) : 0;
}
static int is_nil(const fields *fs, const char *k) {
    const char *v = get(fs, k);
    return !v || !strcmp(v, "nil");
}
static int truth(const fields *fs, const char *k) {
    const char *v = get(fs, k);
    return v && !strcmp(v, "true");
}
/* a hex-encoded string token "x...": decoded in place, NUL-terminated */
static char *str(const fields *fs, const char *k) {
    char *v = (char *)get(fs, k);
    if (!v || v[0] != 'x') return NULL;
    char *out = v, *in = v + 1;
    for (; in[0] && in[1]; in += 2) {
        unsigned b;
        sscanf(in, "%2x", &b);
        *out++ = (char)b;
    }
    *out = 0;
    return v;
}
/* every integer of a list, nested or not ("[[a,b],[c]]" -> a, b, c) */
static int flat_ints(const char *v, uint64_t *out, int cap) {
    int n = 0;
    if (!v || *v != '[') return -1;
    for (const char *p = v; *p && n < cap;) {
        if (*p >= '0' && *p <= '9') out[n++] = strtoull(p, (char **)&p, 10);
        else p++;
    }
    return n;
}

/* a flat list "[a,b,c]" of integers */
static int ints(const char *v, uint64_t *out, int cap) {
    int n = 0;
    if (!v || *v != '[') return -1;
    for (const char *p = v + 1; *p && *p != ']' && n < cap;) {
        out[n++] = strtoull(p, (char **)&p, 10);
        if (*p == ',') p++;
    }
    return n;
}

static size_t unhex(const char *h, uint8_t *out) {
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned b;
        sscanf(h, "%2x", &b);
        out[n++] = (uint8_t)b;
    }
    return n;
}

static char why[512];
#define FAIL(...) do { snprintf(why, sizeof why, __VA_ARGS__); return 1; } while (0)

static int same_bytes(const uint8_t *want, size_t wn, const uint8_t *got, size_t gn) {
    if (wn != gn) FAIL("encoded %zu bytes, the vector has %zu", gn, wn);
    for (size_t i = 0; i < wn; i++)
        if (want[i] != got[i]) FAIL("encoded byte %zu is %02x, the vector has %02x", i, got[i], want[i]);
    return 0;
}

static int check(const char *type, const uint8_t *pkt, size_t n, fields *fs) {
    qecd_header h;
    int rc = qecd_parse_packet(pkt, n, 0, &h);
    if (rc) FAIL("parse: error code %d", rc);
    if (h.msg_type != u64(fs, "h.msg_type") || h.flags != u64(fs, "h.flags") ||
        h.count != u64(fs, "h.count") || h.stream_id != u64(fs, "h.stream_id") ||
        h.payload_len != u64(fs, "h.payload_len") || h.round != u64(fs, "h.round") ||
        h.timestamp_ns != u64(fs, "h.timestamp_ns"))
        FAIL("header fields differ");
    const uint8_t *body = pkt + QECD_HEADER_SIZE;
    uint8_t buf[4096];
    size_t m = 0;
    if (!strcmp(type, "HELLO")) {
        qecd_hello hl = qecd_hello_default();
        hl.spec = str(fs, "spec");
        hl.dem = str(fs, "dem");
        hl.circuit = str(fs, "circuit");
        hl.input = str(fs, "input");
        if (has(fs, "time_coord")) hl.time_coord = atoi(get(fs, "time_coord"));
        hl.decoder = str(fs, "decoder");
        hl.window = is_nil(fs, "window") ? 0 : (int32_t)u64(fs, "window");
        hl.commit = is_nil(fs, "commit") ? 0 : (int32_t)u64(fs, "commit");
        hl.want_faults = truth(fs, "want_faults");
        hl.transport = str(fs, "transport");
        hl.describe = truth(fs, "describe");
        uint8_t token[64];
        if (has(fs, "resume.token")) {  /* §6.9: the resume map alone */
            if (unhex(str(fs, "resume.token"), token) != QECD_RESUME_TOKEN_BYTES)
                FAIL("resume.token: expected %u bytes", QECD_RESUME_TOKEN_BYTES);
            hl = qecd_hello_default();
            hl.resume_stream_id = (uint32_t)u64(fs, "resume.stream_id");
            hl.resume_token = token;
        }
        m = qecd_encode_hello(buf, sizeof buf, &hl, h.round, h.timestamp_ns);
        return same_bytes(pkt, n, buf, m);
    }
    if (!strcmp(type, "ACCEPT")) {
        qecd_accept a;
        rc = qecd_decode_accept(&h, body, h.payload_len, &a);
        if (rc) FAIL("decode_accept: %d", rc);
        uint64_t sizes[64];
        int ns = ints(get(fs, "slice_sizes"), sizes, 64);
        int ok = a.stream_id == u64(fs, "stream_id") && a.rounds_per_shot == (uint32_t)ns &&
                 a.num_detectors == u64(fs, "num_detectors") &&
                 a.num_observables == u64(fs, "num_observables") &&
                 !strcmp(a.decoder, str(fs, "decoder")) &&
                 a.window == (is_nil(fs, "window") ? 0 : (int64_t)u64(fs, "window")) &&
                 a.commit == (is_nil(fs, "commit") ? 0 : (int64_t)u64(fs, "commit")) &&
                 a.want_faults == truth(fs, "want_faults") &&
                 a.heartbeat_ms == (int64_t)u64(fs, "heartbeat_ms") &&
                 a.timeout_ms == (int64_t)u64(fs, "timeout_ms") &&
                 a.max_backlog == (int64_t)u64(fs, "max_backlog") &&
                 a.max_frame == (int64_t)u64(fs, "max_frame") &&
                 !strcmp(a.server, str(fs, "server"));
        for (int i = 0; ok && i < ns; i++) ok = a.slice_sizes[i] == sizes[i];
        if (ok && has(fs, "shm_region"))
            ok = !strcmp(a.shm_region, str(fs, "shm_region")) &&
                 a.shm_slots == u64(fs, "shm_slots") &&
                 a.shm_slot_size == u64(fs, "shm_slot_size") &&
                 a.corrections_per_shot == u64(fs, "corrections_per_shot");
        else if (ok)
            ok = a.shm_region[0] == 0;
        if (ok && has(fs, "measurement_slice_sizes")) {
            uint64_t ms[64];
            int nm = ints(get(fs, "measurement_slice_sizes"), ms, 64);
            ok = a.measurement_slice_sizes && nm == (int)a.rounds_per_shot;
            for (int i = 0; ok && i < nm; i++) ok = a.measurement_slice_sizes[i] == ms[i];
        } else if (ok) {
            ok = !a.measurement_slice_sizes;
        }
        if (ok && has(fs, "slice_detectors")) {
            uint64_t ids[256], rng[256];
            int nid = flat_ints(get(fs, "slice_detectors"), ids, 256);
            int nr = flat_ints(get(fs, "commit_ranges"), rng, 256);
            ok = a.slice_detectors && nid == (int)a.num_detectors && a.commit_ranges &&
                 nr == 3 * (int)a.n_commit_ranges && a.dem && !strcmp(a.dem, str(fs, "dem"));
            for (int i = 0; ok && i < nid; i++) ok = a.slice_detectors[i] == ids[i];
            for (int i = 0; ok && i < nr; i++) ok = a.commit_ranges[i] == rng[i];
        } else if (ok) {
            ok = !a.slice_detectors && !a.commit_ranges && !a.dem;
        }
        if (ok && has(fs, "resume_token")) {
            uint8_t token[64];
            ok = a.has_resume_token &&
                 unhex(str(fs, "resume_token"), token) == QECD_RESUME_TOKEN_BYTES &&
                 !memcmp(token, a.resume_token, QECD_RESUME_TOKEN_BYTES);
        } else if (ok) {
            ok = !a.has_resume_token;
        }
        if (ok && has(fs, "next_round"))
            ok = a.has_next_round && a.next_round == u64(fs, "next_round");
        else if (ok)
            ok = !a.has_next_round;
        qecd_accept_free(&a);
        if (!ok) FAIL("ACCEPT fields differ");
        return 0;
    }
    if (!strcmp(type, "SYNDROME")) {
        uint64_t sizes[64];
        int ns = ints(get(fs, "slice_sizes"), sizes, 64);
        uint32_t s32[64];
        uint64_t prefix[65] = {0};
        for (int i = 0; i < ns; i++) { s32[i] = (uint32_t)sizes[i]; prefix[i + 1] = prefix[i] + (sizes[i] + 7) / 8; }
        qecd_accept lay;
        memset(&lay, 0, sizeof lay);
        lay.rounds_per_shot = (uint32_t)ns;
        lay.slice_sizes = s32;
        lay.round_byte_prefix = prefix;
        if (qecd_check_syndrome(&lay, &h, body)) FAIL("check_syndrome rejected the payload");
        /* fired: [[a,b],[c,d]] -> pack each round, compare with the body, and back */
        const char *p = get(fs, "fired");
        uint8_t payload[1024];
        size_t at = 0;
        for (uint32_t i = 0; i < h.count; i++) {
            uint64_t r = h.round + i;
            uint32_t nd = s32[r % (uint64_t)ns];
            uint8_t bits[1024] = {0};
            p = strchr(p + 1, '[');
            uint64_t ids[64];
            int nf = ints(p, ids, 64);
            for (int k = 0; k < nf; k++) bits[ids[k]] = 1;
            qecd_pack_bits(payload + at, bits, nd);
            for (uint32_t d = 0; d < nd; d++)  /* decode direction: bit d of this round */
                if ((((body + at)[d >> 3] >> (d & 7)) & 1) != bits[d])
                    FAIL("round %llu detector %u decodes differently",
                         (unsigned long long)r, d);
            at += (nd + 7) / 8;
        }
        m = qecd_encode_syndrome(buf, sizeof buf, h.stream_id, h.round, h.count, h.timestamp_ns,
                                 payload, at);
        if (same_bytes(pkt, n, buf, m)) return 1;
        /* and gathered round by round (qecd_batch, K = count): the same bytes */
        qecd_batch b;
        uint8_t gathered[2048];
        if (qecd_batch_init(&b, s32, (uint32_t)ns, h.stream_id, h.count, h.round, gathered,
                            sizeof gathered))
            FAIL("qecd_batch_init refused the layout");
        long got = 0;
        p = get(fs, "fired");
        for (uint32_t i = 0; i < h.count; i++) {
            uint32_t nd = s32[(h.round + i) % (uint64_t)ns];
            uint8_t bits[1024] = {0};
            p = strchr(p + 1, '[');
            uint64_t ids[64];
            int nf = ints(p, ids, 64);
            for (int k = 0; k < nf; k++) bits[ids[k]] = 1;
            got = qecd_batch_add(&b, bits, nd, h.timestamp_ns);
            if (got != (i + 1 == h.count ? (long)n : 0))
                FAIL("qecd_batch_add gave %ld after round %u", got, i);
        }
        uint8_t extra[1025] = {0};
        if (qecd_batch_add(&b, extra, s32[(h.round + h.count) % (uint64_t)ns] + 1, 0) != QECD_E_ARG)
            FAIL("qecd_batch_add took a round of the wrong size");
        if (b.pending != 0 || b.first_round != h.round + h.count || qecd_batch_take(&b) != 0)
            FAIL("qecd_batch did not start afresh after the K-th round");
        return same_bytes(pkt, n, gathered, (size_t)got);
    }
    if (!strcmp(type, "CORRECTION")) {
        qecd_correction c;
        rc = qecd_decode_correction(&h, body, h.payload_len, &c);
        if (rc) FAIL("decode_correction: %d", rc);
        uint64_t obs[64], fids[64];
        int nobs = ints(get(fs, "observables"), obs, 64);
        int nf = is_nil(fs, "fault_ids") ? -1 : ints(get(fs, "fault_ids"), fids, 64);
        if (c.first_round != u64(fs, "first_round") || c.last_round != u64(fs, "last_round") ||
            c.service_ns != u64(fs, "service_ns") || c.num_observables != (uint32_t)nobs ||
            c.shot_end != truth(fs, "shot_end") ||
            (nf < 0 ? c.fault_ids != NULL : c.num_faults != (uint32_t)nf))
            FAIL("CORRECTION fields differ");
        uint8_t ob[64];
        uint32_t f32[64];
        for (int j = 0; j < nobs; j++) {
            ob[j] = (uint8_t)obs[j];
            if (qecd_observable(&c, (uint32_t)j) != (int)obs[j]) FAIL("observable %d differs", j);
        }
        for (int k = 0; k < nf; k++) {
            f32[k] = (uint32_t)fids[k];
            if (qecd_fault_id(&c, (uint32_t)k) != f32[k]) FAIL("fault id %d differs", k);
        }
        m = qecd_encode_correction(buf, sizeof buf, h.stream_id, h.round, h.timestamp_ns,
                                   c.first_round, c.last_round, c.service_ns, ob, (uint32_t)nobs,
                                   nf < 0 ? NULL : f32, nf < 0 ? 0 : (uint32_t)nf, c.shot_end);
        return same_bytes(pkt, n, buf, m);
    }
    if (!strcmp(type, "ERROR")) {
        qecd_error e;
        rc = qecd_decode_error(&h, body, h.payload_len, &e);
        if (rc) FAIL("decode_error: %d", rc);
        const char *reason = str(fs, "reason");
        if (e.code != u64(fs, "code") || e.ref_type != u64(fs, "ref_type") ||
            e.next_round != u64(fs, "next_round") || e.versions != 1 ||
            e.reason_len != strlen(reason) || memcmp(e.reason, reason, e.reason_len) ||
            strcmp(qecd_error_name(e.code), str(fs, "code_name")))
            FAIL("ERROR fields differ");
        m = qecd_encode_error(buf, sizeof buf, e.code, reason, h.stream_id, h.round,
                              h.timestamp_ns, e.ref_type, e.next_round);
        return same_bytes(pkt, n, buf, m);
    }
    if (!strcmp(type, "STATS") && h.payload_len) {
        qecd_mp_reader r = {body, h.payload_len, 0, 0};
        uint32_t nk;
        if (qecd_mp_read_map(&r, &nk)) FAIL("STATS reply is not a map");
        for (uint32_t i = 0; i < nk; i++) {
            const char *k; size_t kn;
            if (qecd_mp_read_str(&r, &k, &kn)) FAIL("STATS key is not a string");
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)kn, k);
            if (qecd_mp_peek(&r) == QECD_MP_INT && has(fs, key)) {
                int64_t v;
                qecd_mp_read_int(&r, &v);
                if ((uint64_t)v != u64(fs, key)) FAIL("STATS %s differs", key);
            } else if (qecd_mp_skip(&r)) {
                FAIL("STATS value of %s unreadable", key);
            }
        }
        if (r.pos != r.len) FAIL("bytes after the STATS map");
        return 0;
    }
    /* HEARTBEAT, BYE, STATS request: header only */
    m = qecd_encode_empty(buf, sizeof buf, h.msg_type, h.stream_id, h.round, h.timestamp_ns);
    return same_bytes(pkt, n, buf, m);
}

int main(void) {
    static char line[1 << 16];
    static uint8_t pkt[1 << 15];
    int failures = 0, count = 0;
    while (fgets(line, sizeof line, stdin)) {
        char *save = NULL, *name = strtok_r(line, " \n", &save);
        if (!name) continue;
        char *type = strtok_r(NULL, " \n", &save), *hex = strtok_r(NULL, " \n", &save);
        fields fs = {0};
        for (char *t; (t = strtok_r(NULL, " \n", &save)) && fs.n < MAXF;) {
            char *eq = strchr(t, '=');
            if (!eq) continue;
            snprintf(fs.f[fs.n].key, sizeof fs.f[fs.n].key, "%.*s", (int)(eq - t), t);
            fs.f[fs.n++].val = eq + 1;
        }
        size_t n = unhex(hex, pkt);
        count++;
        if (check(type, pkt, n, &fs)) {
            printf("FAIL %s: %s\n", name, why);
            failures++;
        } else {
            printf("ok %s\n", name);
        }
    }
    if (!count) { printf("FAIL: no vectors read\n"); return 1; }
    return failures;
}
