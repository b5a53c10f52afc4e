/* qecd_stream: stream detection-event rounds from a file to a qecd server and record the
 * corrections. The example program of the C client (see README.md).
 *
 *   qecd_stream --connect tcp://127.0.0.1:5555 --spec surface:d=5,r=50,p=0.003 \
 *               --in shots.b8 --format b8 [--decoder pymatching] [--window 10 --commit 5]
 *               [--transport zmq|shm] [--shots N] [--out corrections.txt] [--ping N]
 *               [--inflight ROUNDS] [--input measurements] [--dem FILE | --circuit FILE]
 *               [--resume-after ROUNDS] [--rounds-per-packet K]
 *
 * Input: one shot after another, each shot's detectors in DEM order (what stim's samplers
 * write: `stim sample_dem --out_format b8`, or a circuit's detector sampler). The HELLO asks
 * the server to describe the stream (`describe`), and each round's bits are gathered with the
 * ACCEPT's slice_detectors, so no assumption about which detectors form a round is made.
 * --format b8: stim's "b8" (each shot ceil(num_detectors/8) bytes, detector i = bit i%8 of
 * byte i/8); --format 01: stim's "01" (one line of '0'/'1' per shot). With
 * --input measurements the file holds raw measurements in the circuit's record order
 * (`stim sample --out_format b8`) and round t sends the next measurement_slice_sizes[t]
 * of them (docs/protocol.md §6.3.1); the server computes the detection events.
 *
 * Every round goes out as its own SYNDROME (count 1) over the chosen transport, or with
 * --rounds-per-packet K (ZeroMQ) K consecutive rounds per SYNDROME (count K, gathered round
 * by round with qecd_batch; packets span shots, and may overrun --inflight by K - 1), replies are
 * drained between sends; a SERVER_BUSY / ROUND_GAP / ROUND_DUPLICATE ERROR rewinds to the
 * ERROR's next_round. Output (--out): one line per CORRECTION,
 *     first_round last_round shot_end observables(0/1 string) service_ns reaction_ns
 * With --resume-after K (ZeroMQ only) the example drops its connection after round K - 1
 * (once the CORRECTIONs those rounds trigger have arrived), connects anew and takes the stream
 * back with the ACCEPT's resume_token (qecd_resume_stream, docs/protocol.md §6.9),
 * continuing at the resumed ACCEPT's next_round (summary: resumed_at).
 * Then, with --ping N, N bare HEARTBEAT round trips over the same transport; the summary on
 * stdout is one line of key=value pairs. Exit status 0 when every shot's SHOT_END arrived.
 */
#define _POSIX_C_SOURCE 200809L
#include "qecd_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUF_CAP (1u << 20)

typedef struct {
    const char *connect, *spec, *dem_path, *circuit_path, *decoder, *in, *format, *out,
        *transport, *input;
    int window, commit, want_faults;
    long shots, ping, inflight, resume_after, rounds_per_packet;
} options;

static void usage(void) {
    fprintf(stderr,
            "usage: qecd_stream --connect EP (--spec SPEC | --dem FILE | --circuit FILE) "
            "--in FILE [--format b8|01] [--input detectors|measurements] [--decoder NAME] "
            "[--window W --commit C] [--transport zmq|shm] [--shots N] [--out FILE] "
            "[--ping N] [--inflight ROUNDS] [--want-faults] [--resume-after ROUNDS] "
            "[--rounds-per-packet K]\n");
    exit(2);
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) { cap *= 2; buf = realloc(buf, cap + 1); }
    }
    fclose(f);
    if (buf) buf[len] = 0;
    *n = len;
    return buf;
}

/* shots as 0/1 bytes, shots x num_detectors */
static uint8_t *load_shots(const options *o, uint32_t ndet, long *shots) {
    size_t n;
    char *raw = read_file(o->in, &n);
    if (!raw) { perror(o->in); return NULL; }
    long avail;
    uint8_t *bits;
    if (strcmp(o->format, "b8") == 0) {
        size_t per = (ndet + 7) / 8;
        avail = per ? (long)(n / per) : 0;
        if (per && n % per) fprintf(stderr, "warning: %zu trailing bytes ignored\n", n % per);
        bits = malloc((size_t)avail * ndet + 1);
        for (long s = 0; s < avail; s++)
            for (uint32_t i = 0; i < ndet; i++)
                bits[(size_t)s * ndet + i] = ((uint8_t)raw[s * per + i / 8] >> (i % 8)) & 1;
    } else if (strcmp(o->format, "01") == 0) {
        avail = 0;
        bits = malloc(n + 1);
        char *line = raw;
        while (*line) {
            char *end = strchr(line, '\n');
            size_t len = end ? (size_t)(end - line) : strlen(line);
            if (len && line[len - 1] == '\r') len--;
            if (len) {
                if (len != ndet) {
                    fprintf(stderr, "%s: shot %ld has %zu detectors, the stream %u\n", o->in,
                            avail, len, ndet);
                    free(raw); free(bits); return NULL;
                }
                for (uint32_t i = 0; i < ndet; i++) bits[(size_t)avail * ndet + i] = line[i] == '1';
                avail++;
            }
            if (!end) break;
            line = end + 1;
        }
    } else {
        usage();
        return NULL;
    }
    free(raw);
    *shots = o->shots > 0 && o->shots < avail ? o->shots : avail;
    return bits;
}

/* the transport: ZeroMQ session or the ring pair */
typedef struct {
    qecd_session *s;
    qecd_rings rings;
    int shm;
} link_t;

static int link_send(link_t *l, const uint8_t *pkt, size_t n) {
    if (!l->shm) return qecd_session_send(l->s, pkt, n);
    int st = qecd_ring_send(&l->rings, pkt, (uint32_t)n, 10 * 1000000000ll);
    return st == QECD_RING_OK ? 0 : st;
}

/* a packet's length, QECD_E_TIMEOUT, or another negative status */
static long link_recv(link_t *l, uint8_t *buf, int timeout_ms) {
    if (!l->shm) return qecd_session_recv(l->s, buf, BUF_CAP, timeout_ms);
    long got = timeout_ms == 0 ? qecd_ring_try_recv(&l->rings, buf, BUF_CAP)
                               : qecd_ring_recv(&l->rings, buf, BUF_CAP,
                                                (int64_t)timeout_ms * 1000000ll);
    if (got == QECD_RING_EMPTY || got == QECD_RING_TIMEOUT) return QECD_E_TIMEOUT;
    return got;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* CORRECTIONs that rounds 0 .. upto-1 trigger: the described commit_ranges, per shot */
static uint64_t triggered(const qecd_accept *a, uint64_t upto) {
    uint64_t n = 0, R = a->rounds_per_shot;
    for (uint64_t shot = 0; shot * R < upto; shot++)
        for (uint32_t k = 0; k < a->n_commit_ranges; k++)
            n += shot * R + a->commit_ranges[3 * k + 2] < upto;
    return n;
}

int main(int argc, char **argv) {
    options o = {0};
    o.format = "b8";
    o.transport = "zmq";
    o.inflight = 512;
    o.rounds_per_packet = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--want-faults")) { o.want_faults = 1; continue; }
        if (!v) usage();
        if (!strcmp(a, "--connect")) o.connect = v;
        else if (!strcmp(a, "--spec")) o.spec = v;
        else if (!strcmp(a, "--dem")) o.dem_path = v;
        else if (!strcmp(a, "--circuit")) o.circuit_path = v;
        else if (!strcmp(a, "--input")) o.input = v;
        else if (!strcmp(a, "--decoder")) o.decoder = v;
        else if (!strcmp(a, "--in")) o.in = v;
        else if (!strcmp(a, "--format")) o.format = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--transport")) o.transport = v;
        else if (!strcmp(a, "--window")) o.window = atoi(v);
        else if (!strcmp(a, "--commit")) o.commit = atoi(v);
        else if (!strcmp(a, "--shots")) o.shots = atol(v);
        else if (!strcmp(a, "--ping")) o.ping = atol(v);
        else if (!strcmp(a, "--inflight")) o.inflight = atol(v);
        else if (!strcmp(a, "--resume-after")) o.resume_after = atol(v);
        else if (!strcmp(a, "--rounds-per-packet")) o.rounds_per_packet = atol(v);
        else usage();
        i++;
    }
    if (!o.connect || (!!o.spec + !!o.dem_path + !!o.circuit_path) != 1 || !o.in) usage();
    if (o.rounds_per_packet < 1 || o.rounds_per_packet > (long)QECD_MAX_COUNT ||
        (o.rounds_per_packet > 1 && strcmp(o.transport, "zmq"))) {
        fprintf(stderr, "--rounds-per-packet: 1 .. %u, and over zmq only (a ring slot holds "
                "one round)\n", QECD_MAX_COUNT);
        return 2;
    }
    int measurements = o.input && !strcmp(o.input, "measurements");
    link_t l;
    memset(&l, 0, sizeof l);
    l.shm = strcmp(o.transport, "shm") == 0;
    l.s = qecd_session_open(o.connect);
    if (!l.s) { fprintf(stderr, "cannot connect to %s\n", o.connect); return 1; }

    qecd_hello h = qecd_hello_default();
    size_t dem_len;
    char *dem = o.dem_path ? read_file(o.dem_path, &dem_len) : NULL;
    char *circuit = o.circuit_path ? read_file(o.circuit_path, &dem_len) : NULL;
    h.spec = o.spec;
    h.dem = dem;
    h.circuit = circuit;
    h.input = o.input;
    h.decoder = o.decoder;
    h.window = o.window;
    h.commit = o.commit;
    h.want_faults = o.want_faults;
    h.transport = l.shm ? "shm" : NULL;
    h.describe = 1;
    qecd_accept acc;
    int rc = qecd_open_stream(l.s, &h, &acc, 60000);
    if (rc) {
        fprintf(stderr, "HELLO refused (%d): %s\n", rc, qecd_session_last_error(l.s));
        return 1;
    }
    if (l.shm) {
        if (!acc.shm_region[0]) { fprintf(stderr, "ACCEPT names no ring region\n"); return 1; }
        rc = qecd_rings_attach(&l.rings, acc.shm_region, acc.shm_slots, acc.shm_slot_size);
        if (rc) { fprintf(stderr, "attach %s failed (%d)\n", acc.shm_region, rc); return 1; }
    }
    long shots;
    if (measurements && !acc.measurement_slice_sizes) {
        fprintf(stderr, "ACCEPT has no measurement_slice_sizes\n");
        return 1;
    }
    /* bits per shot in the file: detectors (DEM order) or measurements (record order) */
    uint32_t per_shot = acc.num_detectors;
    if (measurements) {
        per_shot = 0;
        for (uint32_t t = 0; t < acc.rounds_per_shot; t++) per_shot += acc.measurement_slice_sizes[t];
    }
    uint8_t *bits = load_shots(&o, per_shot, &shots);
    if (!bits) return 1;
    FILE *out = o.out ? fopen(o.out, "w") : NULL;
    if (o.out && !out) { perror(o.out); return 1; }

    /* each round's packed bytes, built up front: offset of round t of shot s in `packed`.
     * Detection events: round t's i-th bit is DEM detector slice_detectors[P + i] (P =
     * detectors before round t; a server that does not describe streams gets the shot's
     * bits in order). Measurements: round t is the next measurement_slice_sizes[t] bits. */
    uint32_t R = acc.rounds_per_shot;
    const uint32_t *sizes = measurements ? acc.measurement_slice_sizes : acc.slice_sizes;
    uint64_t *prefix = malloc(sizeof(uint64_t) * (R + 1));  /* bytes before round t */
    prefix[0] = 0;
    for (uint32_t t = 0; t < R; t++) prefix[t + 1] = prefix[t] + (sizes[t] + 7) / 8;
    uint64_t shot_bytes = prefix[R];
    uint8_t *packed = calloc((size_t)shots * shot_bytes + 1, 1);
    uint8_t *round_bits = malloc(per_shot + 1);
    const uint32_t *order = measurements ? NULL : acc.slice_detectors;
    for (long s = 0; s < shots; s++) {
        const uint8_t *shot = bits + (size_t)s * per_shot;
        uint32_t at = 0;
        for (uint32_t t = 0; t < R; t++) {
            for (uint32_t i = 0; i < sizes[t]; i++)
                round_bits[i] = shot[order ? order[at + i] : at + i];
            qecd_pack_bits(packed + s * shot_bytes + prefix[t], round_bits, sizes[t]);
            at += sizes[t];
        }
    }
    free(round_bits);
    uint8_t *pkt = malloc(BUF_CAP), *rx = malloc(BUF_CAP);
    /* --rounds-per-packet K: rounds gathered one at a time with qecd_batch, as a controller
     * gathers them while they are measured (values before round t within a shot: before[t]) */
    uint32_t K = (uint32_t)o.rounds_per_packet;
    uint64_t *before = malloc(sizeof(uint64_t) * (R + 1));
    before[0] = 0;
    for (uint32_t t = 0; t < R; t++) before[t + 1] = before[t] + sizes[t];
    uint8_t *one_round = malloc(per_shot + 1), *bbuf = NULL;
    qecd_batch batch;
    if (K > 1) {
        size_t bcap = qecd_batch_capacity(sizes, R, K);
        bbuf = malloc(bcap);
        if (qecd_batch_init(&batch, sizes, R, acc.stream_id, K, 0, bbuf, bcap)) {
            fprintf(stderr, "qecd_batch_init refused K=%u\n", K);
            return 1;
        }
    }
    uint64_t total_rounds = (uint64_t)shots * R, next = 0, committed = 0;
    long corrections = 0, shot_ends = 0, errors = 0, rewinds = 0, bad = 0, packets = 0;
    uint64_t t_start = qecd_monotonic_ns(), t_last = t_start;
    int status = 0;
    long resumed_at = -1;
    while (shot_ends < shots) {
        if (o.resume_after > 0 && resumed_at < 0 && !l.shm && next == (uint64_t)o.resume_after &&
            (uint64_t)corrections >= triggered(&acc, next)) {
            /* the connection drops (no BYE); a new one takes the stream back (§6.9) */
            uint8_t token[QECD_RESUME_TOKEN_BYTES];
            if (!acc.has_resume_token) { fprintf(stderr, "ACCEPT has no resume_token\n"); status = 1; break; }
            memcpy(token, acc.resume_token, sizeof token);
            uint32_t sid = acc.stream_id;
            qecd_session_close(l.s);
            l.s = qecd_session_open(o.connect);
            if (!l.s) { fprintf(stderr, "cannot reconnect\n"); status = 1; break; }
            qecd_accept again;
            rc = qecd_resume_stream(l.s, sid, token, &again, 60000);
            if (rc || !again.has_next_round) {
                fprintf(stderr, "resume refused (%d): %s\n", rc, qecd_session_last_error(l.s));
                status = 1;
                break;
            }
            resumed_at = (long)again.next_round;
            next = again.next_round;
            if (K > 1) qecd_batch_reset(&batch, next);
            memcpy(acc.resume_token, again.resume_token, sizeof token);  /* the fresh one */
            qecd_accept_free(&again);
        }
        /* K rounds per packet (fewer at the end, and none past --resume-after's round) */
        uint64_t count = total_rounds - next < (uint64_t)o.rounds_per_packet
                             ? total_rounds - next : (uint64_t)o.rounds_per_packet;
        if (o.resume_after > 0 && resumed_at < 0 && !l.shm && next < (uint64_t)o.resume_after &&
            (uint64_t)o.resume_after - next < count)
            count = (uint64_t)o.resume_after - next;
        int can_send = next < total_rounds && (long)(next - committed) < o.inflight &&
                       !(o.resume_after > 0 && resumed_at < 0 && !l.shm &&
                         next == (uint64_t)o.resume_after);
        if (can_send && K == 1) {
            uint64_t shot = next / R, t = next % R;
            size_t n = qecd_encode_syndrome(pkt, BUF_CAP, acc.stream_id, next, 1,
                                            qecd_monotonic_ns(), packed + shot * shot_bytes +
                                            prefix[t], prefix[t + 1] - prefix[t]);
            if (link_send(&l, pkt, n)) { fprintf(stderr, "send failed\n"); status = 1; break; }
            next++;
            packets++;
        } else if (can_send) {
            long n = 0;
            for (uint64_t r = next; r < next + count && n >= 0; r++) {
                const uint8_t *sb = bits + (size_t)(r / R) * per_shot;
                uint32_t t = (uint32_t)(r % R);
                for (uint32_t i = 0; i < sizes[t]; i++)
                    one_round[i] = sb[order ? order[before[t] + i] : before[t] + i];
                n = qecd_batch_add(&batch, one_round, sizes[t], qecd_monotonic_ns());
            }
            size_t len = n > 0 ? (size_t)n : qecd_batch_take(&batch);  /* short: the rest */
            if (n < 0 || !len || link_send(&l, bbuf, len)) {
                fprintf(stderr, "send failed\n");
                status = 1;
                break;
            }
            next += count;
            packets++;
        }
        /* drain replies: poll without waiting while there is more to send */
        for (;;) {
            long got = link_recv(&l, rx, can_send ? 0 : 10000);
            uint64_t now = qecd_monotonic_ns();
            if (got == QECD_E_TIMEOUT) {
                if (!can_send) { fprintf(stderr, "timed out waiting for corrections\n"); status = 1; }
                break;
            }
            if (got < 0) { fprintf(stderr, "receive failed (%ld)\n", got); status = 1; break; }
            qecd_header hd;
            if (qecd_parse_packet(rx, (size_t)got, 0, &hd)) { bad++; continue; }
            const uint8_t *body = rx + QECD_HEADER_SIZE;
            if (hd.msg_type == QECD_CORRECTION) {
                qecd_correction c;
                if (qecd_decode_correction(&hd, body, hd.payload_len, &c)) { bad++; continue; }
                corrections++;
                shot_ends += c.shot_end;
                if (c.last_round + 1 > committed) committed = c.last_round + 1;
                t_last = now;
                if (out) {
                    fprintf(out, "%llu %llu %d ", (unsigned long long)c.first_round,
                            (unsigned long long)c.last_round, c.shot_end);
                    for (uint32_t j = 0; j < c.num_observables; j++)
                        fputc('0' + qecd_observable(&c, j), out);
                    fprintf(out, " %llu %llu\n", (unsigned long long)c.service_ns,
                            (unsigned long long)(now - hd.timestamp_ns));
                }
            } else if (hd.msg_type == QECD_ERROR) {
                qecd_error e;
                if (qecd_decode_error(&hd, body, hd.payload_len, &e)) { bad++; continue; }
                errors++;
                fprintf(stderr, "ERROR %s round %llu next_round %llu: %.*s\n",
                        qecd_error_name(e.code) ? qecd_error_name(e.code) : "?",
                        (unsigned long long)hd.round, (unsigned long long)e.next_round,
                        (int)e.reason_len, e.reason);
                if (e.code == QECD_SERVER_BUSY || e.code == QECD_ROUND_GAP ||
                    e.code == QECD_ROUND_DUPLICATE) {
                    if (e.next_round < next) {
                        next = e.next_round;
                        rewinds++;
                        if (K > 1) qecd_batch_reset(&batch, next);
                    }
                    struct timespec ms = {0, 1000000};
                    nanosleep(&ms, NULL);
                } else {
                    status = 1;
                }
            }
            if (status || !can_send) break;
        }
        if (status) break;
    }
    double secs = (double)(t_last - t_start) / 1e9;

    /* bare round trips: HEARTBEAT for the stream, echoed by the server */
    uint64_t *rtt = o.ping > 0 ? malloc(sizeof(uint64_t) * (size_t)o.ping) : NULL;
    long pings = 0;
    for (long i = 0; i < o.ping && !status; i++) {
        uint64_t t0 = qecd_monotonic_ns();
        size_t n = qecd_encode_empty(pkt, BUF_CAP, QECD_HEARTBEAT, acc.stream_id, (uint64_t)i,
                                     t0);
        if (link_send(&l, pkt, n)) break;
        for (;;) {
            long got = link_recv(&l, rx, 5000);
            if (got < 0) { status = 1; break; }
            qecd_header hd;
            if (!qecd_parse_packet(rx, (size_t)got, 0, &hd) && hd.msg_type == QECD_HEARTBEAT &&
                hd.round == (uint64_t)i) {
                rtt[pings++] = qecd_monotonic_ns() - t0;
                break;
            }
        }
    }
    /* BYE over the stream's transport; the server answers BYE with its next expected round */
    size_t n = qecd_encode_empty(pkt, BUF_CAP, QECD_BYE, acc.stream_id,
                                 qecd_session_next_seq(l.s), qecd_monotonic_ns());
    long bye_round = -1;
    if (!link_send(&l, pkt, n)) {
        for (;;) {
            long got = link_recv(&l, rx, 5000);
            if (got < 0) break;
            qecd_header hd;
            if (!qecd_parse_packet(rx, (size_t)got, 0, &hd) && hd.msg_type == QECD_BYE) {
                bye_round = (long)hd.round;
                break;
            }
        }
    }
    printf("input=%s described=%d transport=%s stream=%u shots=%ld rounds=%llu corrections=%ld shot_ends=%ld "
           "errors=%ld rewinds=%ld bad_packets=%ld seconds=%.3f rounds_per_s=%.0f bye_round=%ld resumed_at=%ld "
           "rounds_per_packet=%ld packets=%ld",
           measurements ? "measurements" : "detectors", acc.slice_detectors != NULL, l.shm ? "shm" : "zmq", acc.stream_id, shots, (unsigned long long)total_rounds,
           corrections, shot_ends, errors, rewinds, bad, secs,
           secs > 0 ? (double)total_rounds / secs : 0.0, bye_round, resumed_at,
           o.rounds_per_packet, packets);
    if (pings) {
        qsort(rtt, (size_t)pings, sizeof *rtt, cmp_u64);
        printf(" pings=%ld rtt_p50_us=%.2f rtt_p99_us=%.2f rtt_min_us=%.2f", pings,
               rtt[pings / 2] / 1e3, rtt[(size_t)(pings * 0.99)] / 1e3, rtt[0] / 1e3);
    }
    printf("\n");
    if (out) fclose(out);
    if (l.shm) qecd_rings_detach(&l.rings);
    qecd_accept_free(&acc);
    qecd_session_close(l.s);
    free(bits); free(packed); free(before); free(one_round); free(bbuf); free(pkt); free(rx); free(rtt); free(dem); free(circuit);
    free(prefix);
    return status || shot_ends != shots;
}
