/*
 * wsclient: the load client of the ws4redis_gevent fan-out benchmark (bench/fanout.py).
 *
 * One process, one epoll loop, N non-blocking connections to 127.0.0.1. Modes:
 *
 *   ws         N websockets: HTTP upgrade to PATH (Sec-WebSocket-Accept checked), then server
 *              frames parsed (unmasked; 7/16/64-bit lengths; text/binary; pings answered with
 *              masked pongs; a close frame answered with a masked close).
 *   redis      N direct Redis subscribers: [HELLO 3,] CLIENT SETNAME, SUBSCRIBE CHANNEL, then
 *              pub/sub "message" pushes parsed (RESP2 arrays and RESP3 '>' pushes).
 *   handshake  H websocket handshakes, at most C in flight, each closed right after its 101.
 *
 * Payloads are written by bench/publisher.py: "RUN SEQ TIMESTAMP_NS pad...", where
 * TIMESTAMP_NS is CLOCK_MONOTONIC at send time (Python's time.monotonic_ns()).
 *
 * In ws and redis modes the client prints "READY {json}" once every connection is open (or has
 * failed), then obeys commands on stdin, one per line:
 *   RUN <id> <messages per connection> <timeout seconds>
 *        count run <id>'s messages until every open connection has them all, or the timeout;
 *        then print one JSON line (counts, loss, order, latency percentiles and histogram, CPU).
 *   HELLO  (with --deflate) every open websocket sends one compressed message.
 *   QUIT (or end of input)   close everything and exit.
 * In handshake mode it prints one JSON line and exits.
 *
 * With --deflate (ws mode), each websocket offers permessage-deflate as Chromium does
 * ("permessage-deflate; client_max_window_bits") and inflates the start of the compressed
 * messages it gets (RFC 7692: the server compresses each message on its own,
 * server_no_context_takeover), enough to read run, sequence and timestamp. With
 * the command HELLO (stdin), each open websocket sends one compressed message (so that the server
 * keeps an inflate state for it, as for a client that has spoken). Run reports count the bytes
 * received ("bytes": frames as they came over the socket).
 *
 * Build: cc -O2 -o wsclient wsclient.c -lz   (Linux; libc and zlib)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SCRATCH_SIZE (1 << 20)
#define ULL(x) ((unsigned long long)(x))
#define MAX_HEADER 16384
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { MODE_WS, MODE_REDIS, MODE_HANDSHAKE };
enum state { ST_IDLE, ST_CONNECTING, ST_UPGRADING, ST_OPEN, ST_CLOSED };

struct conn {
    int fd;
    int state;
    uint64_t t_start;       /* when connect() was called (ns) */
    char accept[32];        /* expected Sec-WebSocket-Accept */
    char *out;              /* request bytes not yet written */
    size_t out_len, out_off;
    char *pend;             /* received bytes not yet parsed (a partial frame or reply) */
    size_t pend_len, pend_cap;
    int64_t next_seq;       /* sequence expected next in the current run */
    uint64_t received;      /* messages of the current run */
    int done;               /* received every message of the current run */
    int deflate;            /* permessage-deflate was negotiated */
};

/* -- options --------------------------------------------------------------------------------- */

static enum mode g_mode;
static const char *g_host = "127.0.0.1";
static int g_port;
static int g_conns = 1;
static int g_concurrency = 100;
static int g_count = 1;                 /* handshake mode: handshakes to make */
static double g_connect_timeout = 60.0;
static const char *g_path = "/ws/bench?subscribe-broadcast";
static const char *g_cookie;
static const char *g_channel = "broadcast:bench";
static const char *g_name = "bench-sub";
static int g_resp3;
static int g_deflate;                   /* offer permessage-deflate */

/* -- state ----------------------------------------------------------------------------------- */

static int g_ep;
static struct conn *g_c;
static int g_nslots;
static char *g_scratch;
static int g_started, g_open, g_failed, g_closed_open; /* closed_open: open ones the peer closed */
static int g_inflight;
static int g_ready_printed;
static uint64_t g_t0;
static char g_first_error[256];

/* current run */
static int g_running;
static long g_run_id = -1;
static uint64_t g_per_conn;
static uint64_t g_run_conns;
static uint64_t g_received, g_out_of_order, g_gaps, g_stale, g_bad, g_done_conns;
static uint64_t g_closed_in_run;
static uint64_t g_pings; /* pings answered, since the start */
static uint64_t g_bytes;  /* bytes received during the current run */
static z_stream g_inflate;
static char *g_inflated;
static unsigned char g_hello_frame[256];
static size_t g_hello_len;
static uint64_t g_first_recv, g_last_recv, g_run_start, g_deadline;
static double g_cpu_start;

/* -- time, cpu, errors ----------------------------------------------------------------------- */

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsclient: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void note_error(const char *fmt, ...) {
    if (g_first_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_first_error, sizeof g_first_error, fmt, ap);
    va_end(ap);
}

/* -- latency histogram: log-linear, 64 sub-buckets per power of two (<= 1.6% error), ns ---- */

#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS (2 * SUB + 58 * SUB)

struct hist {
    uint64_t n[NBUCKETS];
    uint64_t count, max;
    double sum;
};

static inline int bucket_of(uint64_t v) {
    if (v < 2 * SUB)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    return 2 * SUB + (shift - 1) * SUB + (int)((v >> shift) - SUB);
}

static inline uint64_t bucket_high(int i) {
    if (i < 2 * SUB)
        return (uint64_t)i;
    int shift = (i - 2 * SUB) / SUB + 1;
    uint64_t top = (uint64_t)((i - 2 * SUB) % SUB + SUB);
    return ((top + 1) << shift) - 1;
}

static inline void hist_add(struct hist *h, uint64_t v) {
    h->n[bucket_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

static double hist_pct(const struct hist *h, double pct) {
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)(pct / 100.0 * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < NBUCKETS; i++) {
        seen += h->n[i];
        if (seen >= rank) {
            uint64_t hi = bucket_high(i);
            return (double)(hi < h->max ? hi : h->max);
        }
    }
    return (double)h->max;
}

/* Percentiles in microseconds, as a JSON object body. */
static void print_pcts(FILE *f, const struct hist *h) {
    fprintf(f, "{\"count\":%llu,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
               "\"p999\":%.1f,\"max\":%.1f}",
            ULL(h->count), h->count ? h->sum / h->count / 1e3 : 0.0,
            hist_pct(h, 50) / 1e3, hist_pct(h, 90) / 1e3, hist_pct(h, 99) / 1e3,
            hist_pct(h, 99.9) / 1e3, (double)h->max / 1e3);
}

/* The non-empty buckets as [[highest value in us, count], ...], for merging across processes. */
static void print_buckets(FILE *f, const struct hist *h) {
    int first = 1;
    fputc('[', f);
    for (int i = 0; i < NBUCKETS; i++) {
        if (!h->n[i])
            continue;
        fprintf(f, "%s[%.3f,%llu]", first ? "" : ",", bucket_high(i) / 1e3,
                ULL(h->n[i]));
        first = 0;
    }
    fputc(']', f);
}

/* ,"error":"first error seen" (quotes, backslashes and control characters left out) */
static void print_error(void) {
    printf(",\"error\":\"");
    for (const char *p = g_first_error; *p; p++)
        if (*p != '"' && *p != '\\' && (unsigned char)*p >= 32)
            putchar(*p);
    putchar('"');
}

static struct hist g_lat;        /* message latency of the current run */
static struct hist g_hs;         /* handshake latency (connect() to 101 or subscribe reply) */

/* -- SHA-1 and base64, for Sec-WebSocket-Accept (RFC 6455 section 4.2.2) ---------------------- */

#define ROL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = calloc(1, total);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = ROL(a, 5) + f + e + k + w[i];
            e = d; d = c; c = ROL(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = 0;
}

static uint64_t g_rng;

static uint64_t rnd(void) { /* xorshift64*, seeded from getrandom */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Dull;
}

/* -- connections ----------------------------------------------------------------------------- */

static void set_out(struct conn *c, const char *data, size_t len) {
    free(c->out);
    c->out = malloc(len);
    memcpy(c->out, data, len);
    c->out_len = len;
    c->out_off = 0;
}

static void build_request(struct conn *c) {
    char buf[4096];
    int n;
    if (g_mode == MODE_REDIS) {
        char *p = buf;
        if (g_resp3)
            p += sprintf(p, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
        p += sprintf(p, "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$%zu\r\n%s\r\n", strlen(g_name),
                     g_name);
        p += sprintf(p, "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n", strlen(g_channel), g_channel);
        n = (int)(p - buf);
    } else {
        unsigned char raw[16], digest[20];
        char key[32], joined[128];
        uint64_t a = rnd(), b = rnd();
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
        base64(raw, 16, key);
        n = snprintf(joined, sizeof joined, "%s%s", key, WS_GUID);
        sha1((unsigned char *)joined, (size_t)n, digest);
        base64(digest, 20, c->accept);
        n = snprintf(buf, sizeof buf,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nOrigin: http://%s:%d\r\n%s%s%s%s\r\n",
                     g_path, g_host, g_port, key, g_host, g_port, g_cookie ? "Cookie: " : "",
                     g_cookie ? g_cookie : "", g_cookie ? "\r\n" : "",
                     g_deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                 "client_max_window_bits\r\n" : "");
    }
    set_out(c, buf, (size_t)n);
}

static void start_conn(struct conn *c) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    inet_pton(AF_INET, g_host, &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s (raise RLIMIT_NOFILE?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->state = ST_CONNECTING;
    c->t_start = now_ns();
    build_request(c);
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS)
        die("connect: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    g_started++;
    g_inflight++;
}

static void drop_conn(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    free(c->out);
    c->out = NULL;
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_cap = 0;
}

/* A connection failed before it was open, or ended after. */
static void fail_conn(struct conn *c, const char *why) {
    if (c->state == ST_OPEN) {
        g_open--;
        g_closed_open++;
        if (g_running && !c->done)
            g_closed_in_run++;
        note_error("connection closed after opening: %s", why);
    } else if (c->state != ST_CLOSED) {
        g_failed++;
        g_inflight--;
        note_error("%s", why);
    }
    c->state = ST_CLOSED;
    drop_conn(c);
}

static void opened(struct conn *c) {
    c->state = ST_OPEN;
    g_open++;
    g_inflight--;
    hist_add(&g_hs, now_ns() - c->t_start);
    if (g_mode == MODE_HANDSHAKE) {
        c->state = ST_CLOSED;
        g_open--;
        drop_conn(c);
    }
}

static void flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            fail_conn(c, strerror(errno));
            return;
        }
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A small frame from the client: masked, as RFC 6455 section 5.3 requires. Best effort. */
static void send_control(struct conn *c, int opcode, const unsigned char *payload, size_t len) {
    unsigned char frame[2 + 4 + 125];
    if (len > 125)
        len = 125;
    uint32_t mask = (uint32_t)rnd();
    frame[0] = (unsigned char)(0x80 | opcode);
    frame[1] = (unsigned char)(0x80 | len);
    memcpy(frame + 2, &mask, 4);
    for (size_t i = 0; i < len; i++)
        frame[6 + i] = payload[i] ^ frame[2 + (i & 3)];
    if (send(c->fd, frame, 6 + len, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
        note_error("cannot send control frame: %s", strerror(errno));
}

/* -- messages -------------------------------------------------------------------------------- */

static inline const char *parse_u64(const char *p, const char *end, uint64_t *out) {
    uint64_t v = 0;
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    *out = v;
    return p > start ? p : NULL;
}

static void on_message(struct conn *c, const char *data, size_t len, uint64_t now) {
    const char *end = data + len, *p;
    uint64_t run, seq, ts;
    if (!(p = parse_u64(data, end, &run)) || p >= end || *p != ' ' ||
        !(p = parse_u64(p + 1, end, &seq)) || p >= end || *p != ' ' ||
        !parse_u64(p + 1, end, &ts)) {
        g_bad++;
        return;
    }
    if (!g_running || (long)run != g_run_id) {
        g_stale++;
        return;
    }
    if ((int64_t)seq == c->next_seq) {
        c->next_seq++;
    } else if ((int64_t)seq > c->next_seq) {
        g_gaps += (uint64_t)((int64_t)seq - c->next_seq);
        c->next_seq = (int64_t)seq + 1;
    } else {
        g_out_of_order++;
    }
    hist_add(&g_lat, now > ts ? now - ts : 0);
    if (!g_first_recv)
        g_first_recv = now;
    g_last_recv = now;
    g_received++;
    if (++c->received == g_per_conn && !c->done) {
        c->done = 1;
        g_done_conns++;
    }
}

/* -- permessage-deflate (RFC 7692) ----------------------------------------------------------- */

/* Inflate the start of one compressed message (its payload, then the 4 bytes the sender
 * removed) into g_inflated: the first INFLATE_HEAD bytes, which hold run, sequence and
 * timestamp (inflating the rest would only measure this client). Returns their length, or -1.
 * Each message starts from a fresh state: the server compresses without context takeover. */
#define INFLATE_HEAD 64
static long inflate_message(const char *payload, size_t len) {
    static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
    if (inflateReset(&g_inflate) != Z_OK)
        return -1;
    g_inflate.next_out = (unsigned char *)g_inflated;
    g_inflate.avail_out = INFLATE_HEAD;
    g_inflate.next_in = (unsigned char *)payload;
    g_inflate.avail_in = (unsigned)len;
    int r = inflate(&g_inflate, Z_SYNC_FLUSH);
    if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
        return -1;
    if (g_inflate.avail_out) { /* the whole message was shorter */
        g_inflate.next_in = (unsigned char *)tail;
        g_inflate.avail_in = 4;
        r = inflate(&g_inflate, Z_SYNC_FLUSH);
        if (r != Z_OK && r != Z_BUF_ERROR && r != Z_STREAM_END)
            return -1;
    }
    return (long)(INFLATE_HEAD - g_inflate.avail_out);
}

/* The --hello frame: a short text, compressed (tail removed), masked, RSV1 set. */
static void build_hello(void) {
    static const char text[] = "{\"hello\": \"from a bench client\"}";
    unsigned char out[128];
    z_stream z = {0};
    deflateInit2(&z, 6, Z_DEFLATED, -12, 8, Z_DEFAULT_STRATEGY);
    z.next_in = (unsigned char *)text;
    z.avail_in = sizeof text - 1;
    z.next_out = out;
    z.avail_out = sizeof out;
    deflate(&z, Z_SYNC_FLUSH);
    size_t len = sizeof out - z.avail_out - 4;
    deflateEnd(&z);
    uint32_t mask = (uint32_t)rnd();
    g_hello_frame[0] = 0x80 | 0x40 | 0x1;
    g_hello_frame[1] = (unsigned char)(0x80 | len);
    memcpy(g_hello_frame + 2, &mask, 4);
    for (size_t i = 0; i < len; i++)
        g_hello_frame[6 + i] = out[i] ^ g_hello_frame[2 + (i & 3)];
    g_hello_len = 6 + len;
}

/* -- websocket frames (RFC 6455 section 5.2) ------------------------------------------------- */

static size_t parse_frames(struct conn *c, const char *data, size_t len, uint64_t now) {
    size_t off = 0;
    while (len - off >= 2 && c->state == ST_OPEN) {
        const unsigned char *h = (const unsigned char *)data + off;
        int fin = h[0] & 0x80, opcode = h[0] & 0x0f;
        if (h[1] & 0x80) {
            fail_conn(c, "server sent a masked frame");
            return len;
        }
        uint64_t plen = h[1] & 0x7f;
        size_t hdr = 2;
        if (plen == 126) {
            if (len - off < 4)
                break;
            plen = (uint64_t)h[2] << 8 | h[3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | h[2 + i];
            hdr = 10;
        }
        if (plen > SCRATCH_SIZE / 2) {
            fail_conn(c, "frame too large for this client");
            return len;
        }
        if (len - off < hdr + plen)
            break;
        const char *payload = data + off + hdr;
        off += hdr + (size_t)plen;
        if (h[0] & 0x40) { /* RSV1: a compressed message */
            long n = c->deflate && fin && opcode <= 0x2 ? inflate_message(payload, plen) : -1;
            if (n < 0) {
                fail_conn(c, "bad compressed frame");
                return len;
            }
            on_message(c, g_inflated, (size_t)n, now);
            continue;
        }
        switch (opcode) {
        case 0x1:
        case 0x2:
            if (fin)
                on_message(c, payload, (size_t)plen, now);
            else
                g_bad++; /* fragmented messages are not expected from this server */
            break;
        case 0x0:
            g_bad++;
            break;
        case 0x9:
            g_pings++;
            send_control(c, 0xA, (const unsigned char *)payload, (size_t)plen);
            break;
        case 0xA:
            break;
        case 0x8: { /* close: answer with the same code, and report code and reason */
            const unsigned char *u = (const unsigned char *)payload;
            int code = plen >= 2 ? (u[0] << 8 | u[1]) : 1005;
            int rlen = plen > 2 ? (int)(plen - 2 > 120 ? 120 : plen - 2) : 0;
            char why[200];
            snprintf(why, sizeof why, "server closed the websocket: %d %.*s", code, rlen,
                     payload + 2);
            send_control(c, 0x8, u, plen >= 2 ? 2 : 0);
            fail_conn(c, why);
            return len;
        }
        default:
            fail_conn(c, "unknown opcode");
            return len;
        }
    }
    return off;
}

static const char *find_header(const char *head, const char *name) {
    size_t n = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

/* The 101 response; returns bytes consumed (0 if incomplete). */
static size_t parse_upgrade(struct conn *c, char *data, size_t len) {
    char *end = memmem(data, len, "\r\n\r\n", 4);
    if (!end) {
        if (len > MAX_HEADER)
            fail_conn(c, "response head too long");
        return len > MAX_HEADER ? len : 0;
    }
    char saved = end[2];
    end[2] = 0;
    const char *accept = find_header(data, "Sec-WebSocket-Accept");
    int ok101 = strncmp(data, "HTTP/1.1 101", 12) == 0;
    int ok_accept = accept && strncmp(accept, c->accept, strlen(c->accept)) == 0;
    if (!ok101 || !ok_accept) {
        char *eol = strstr(data, "\r\n");
        if (eol)
            *eol = 0;
        char why[200];
        snprintf(why, sizeof why, "handshake refused: %.120s%s", data,
                 ok101 ? " (wrong Sec-WebSocket-Accept)" : "");
        end[2] = saved;
        fail_conn(c, why);
        return len;
    }
    const char *ext = find_header(data, "Sec-WebSocket-Extensions");
    c->deflate = ext && strncmp(ext, "permessage-deflate", 18) == 0;
    end[2] = saved;
    if (g_deflate && !c->deflate) {
        fail_conn(c, "permessage-deflate offered but not accepted");
        return len;
    }
    opened(c);
    return (size_t)(end + 4 - data);
}

/* -- RESP (RESP2 and RESP3) ------------------------------------------------------------------ */

struct strref {
    const char *p;
    size_t n;
};

/* Parse one value at p; return bytes consumed, 0 if incomplete, -1 on malformed input.
 * The direct children of the top-level aggregate are counted in *nitems; the first three are
 * kept in items (bulk strings with their text, other types as an empty reference). */
static long resp_value(const char *p, const char *end, int depth, struct strref *items,
                       int *nitems, char *kind) {
    if (p >= end)
        return 0;
    const char *cr = memchr(p, '\r', (size_t)(end - p));
    if (!cr || cr + 1 >= end)
        return 0;
    if (cr[1] != '\n')
        return -1;
    char type = p[0];
    const char *line_end = cr + 2;
    int idx = -1;
    if (depth == 0)
        *kind = type;
    else if (depth == 1 && (idx = (*nitems)++) < 3)
        items[idx] = (struct strref){NULL, 0};
    long long n = 0;
    const char *q = p + 1;
    switch (type) {
    case '+': case '-': case ':': case '_': case '#': case ',': case '(':
        return line_end - p;
    case '$': case '=': case '!': case '*': case '>': case '~': case '%': case '|':
        if (*q == '-')
            return line_end - p; /* null */
        while (q < cr && *q >= '0' && *q <= '9')
            n = n * 10 + (*q++ - '0');
        break;
    default:
        return -1;
    }
    if (type == '$' || type == '=' || type == '!') {
        if (end - line_end < n + 2)
            return 0;
        if (idx >= 0 && idx < 3)
            items[idx] = (struct strref){line_end, (size_t)n};
        return (line_end - p) + n + 2;
    }
    if (type == '%' || type == '|')
        n *= 2;
    const char *r = line_end;
    for (long long i = 0; i < n; i++) {
        long used = resp_value(r, end, depth + 1, items, nitems, kind);
        if (used <= 0)
            return used;
        r += used;
    }
    return r - p;
}

static int is_str(struct strref s, const char *lit) {
    return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

static size_t parse_resp(struct conn *c, const char *data, size_t len, uint64_t now) {
    size_t off = 0;
    while (off < len && c->state != ST_CLOSED) {
        struct strref items[3];
        int nitems = 0;
        char kind = 0;
        long used = resp_value(data + off, data + len, 0, items, &nitems, &kind);
        if (used == 0)
            break;
        if (used < 0) {
            fail_conn(c, "malformed RESP from redis");
            return len;
        }
        if (kind == '-') {
            char why[200];
            snprintf(why, sizeof why, "redis error: %.*s", (int)(used > 150 ? 150 : used - 2),
                     data + off);
            off += (size_t)used;
            fail_conn(c, why);
            return len;
        }
        if ((kind == '*' || kind == '>') && nitems == 3) {
            if (is_str(items[0], "message") && c->state == ST_OPEN)
                on_message(c, items[2].p, items[2].n, now);
            else if (is_str(items[0], "subscribe") && c->state == ST_UPGRADING)
                opened(c);
        }
        off += (size_t)used;
    }
    return off;
}

/* -- the event loop -------------------------------------------------------------------------- */

static void on_readable(struct conn *c) {
    size_t have = c->pend_len;
    if (have)
        memcpy(g_scratch, c->pend, have);
    ssize_t n = recv(c->fd, g_scratch + have, SCRATCH_SIZE - have, 0);
    uint64_t now = now_ns();
    if (n == 0) {
        fail_conn(c, "connection closed by the server");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            fail_conn(c, strerror(errno));
        return;
    }
    size_t len = have + (size_t)n, off = 0;
    if (g_running)
        g_bytes += (uint64_t)n;
    if (c->state == ST_UPGRADING && g_mode != MODE_REDIS) {
        off = parse_upgrade(c, g_scratch, len);
        if (off == 0 && c->state == ST_UPGRADING)
            goto keep;
    }
    if (c->state == ST_CLOSED)
        return;
    if (g_mode == MODE_REDIS)
        off += parse_resp(c, g_scratch + off, len - off, now);
    else if (c->state == ST_OPEN)
        off += parse_frames(c, g_scratch + off, len - off, now);
    if (c->state == ST_CLOSED)
        return;
keep:
    c->pend_len = len - off;
    if (c->pend_len) {
        if (c->pend_cap < c->pend_len) {
            c->pend_cap = c->pend_len < 4096 ? 4096 : c->pend_len;
            c->pend = realloc(c->pend, c->pend_cap);
        }
        memmove(c->pend, g_scratch + off, c->pend_len);
        if (c->pend_len >= SCRATCH_SIZE)
            fail_conn(c, "unparsable input");
    }
}

static void on_writable(struct conn *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            fail_conn(c, strerror(err));
            return;
        }
        c->state = ST_UPGRADING;
    }
    flush_out(c);
}

static void start_more(int total) {
    while (g_started < total && g_inflight < g_concurrency) {
        int slot = g_mode == MODE_HANDSHAKE ? -1 : g_started;
        if (slot < 0) { /* handshake mode: reuse a free slot */
            for (int i = 0; i < g_nslots; i++)
                if (g_c[i].fd < 0) {
                    slot = i;
                    break;
                }
            if (slot < 0)
                return;
        }
        start_conn(&g_c[slot]);
    }
}

static void print_ready(void) {
    double secs = (now_ns() - g_t0) / 1e9;
    printf("READY {\"connected\":%d,\"failed\":%d,\"seconds\":%.4f,\"per_s\":%.1f,"
           "\"handshake_us\":",
           g_open, g_failed, secs, secs > 0 ? g_open / secs : 0.0);
    print_pcts(stdout, &g_hs);
    print_error();
    printf("}\n");
    fflush(stdout);
    g_ready_printed = 1;
}

static void start_run(long id, uint64_t per_conn, double timeout) {
    g_run_id = id;
    g_per_conn = per_conn;
    g_received = g_out_of_order = g_gaps = g_stale = g_bad = g_done_conns = 0;
    g_closed_in_run = 0;
    g_bytes = 0;
    g_first_recv = g_last_recv = 0;
    memset(&g_lat, 0, sizeof g_lat);
    g_run_conns = 0;
    for (int i = 0; i < g_nslots; i++) {
        struct conn *c = &g_c[i];
        c->received = 0;
        c->next_seq = 0;
        c->done = 0;
        if (c->state == ST_OPEN) {
            g_run_conns++;
            if (per_conn == 0) {
                c->done = 1;
                g_done_conns++;
            }
        }
    }
    g_cpu_start = cpu_seconds();
    g_run_start = now_ns();
    g_deadline = g_run_start + (uint64_t)(timeout * 1e9);
    g_running = 1;
}

static void finish_run(int timed_out) {
    uint64_t end = now_ns();
    double cpu = cpu_seconds() - g_cpu_start;
    double wall = (end - g_run_start) / 1e9;
    uint64_t expected = g_run_conns * g_per_conn;
    uint64_t lost = expected > g_received ? expected - g_received : 0;
    printf("{\"run\":%ld,\"conns\":%llu,\"expected\":%llu,\"received\":%llu,\"lost\":%llu,",
           g_run_id, ULL(g_run_conns), ULL(expected), ULL(g_received), ULL(lost));
    printf("\"gaps\":%llu,\"out_of_order\":%llu,\"stale\":%llu,\"malformed\":%llu,",
           ULL(g_gaps), ULL(g_out_of_order), ULL(g_stale), ULL(g_bad));
    printf("\"closed\":%llu,\"pings\":%llu,\"timed_out\":%s,\"bytes\":%llu,",
           ULL(g_closed_in_run), ULL(g_pings), timed_out ? "true" : "false", ULL(g_bytes));
    printf("\"run_start_ns\":%llu,\"first_recv_ns\":%llu,\"last_recv_ns\":%llu,",
           ULL(g_run_start), ULL(g_first_recv), ULL(g_last_recv));
    printf("\"wall_s\":%.4f,\"cpu_s\":%.4f,\"latency_us\":", wall, cpu);
    print_pcts(stdout, &g_lat);
    print_error();
    printf(",\"hist\":");
    print_buckets(stdout, &g_lat);
    printf("}\n");
    fflush(stdout);
    g_running = 0;
}

static char g_cmd[4096];
static size_t g_cmd_len;

/* Returns 0 when the client should exit. */
static int on_stdin(void) {
    ssize_t n = read(0, g_cmd + g_cmd_len, sizeof g_cmd - 1 - g_cmd_len);
    if (n <= 0)
        return n < 0 && errno == EAGAIN;
    g_cmd_len += (size_t)n;
    g_cmd[g_cmd_len] = 0;
    char *nl;
    while ((nl = strchr(g_cmd, '\n'))) {
        *nl = 0;
        long id;
        unsigned long long per;
        double timeout;
        if (sscanf(g_cmd, "RUN %ld %llu %lf", &id, &per, &timeout) == 3) {
            start_run(id, per, timeout);
        } else if (strncmp(g_cmd, "HELLO", 5) == 0 && g_deflate) {
            for (int i = 0; i < g_nslots; i++)
                if (g_c[i].state == ST_OPEN &&
                    send(g_c[i].fd, g_hello_frame, g_hello_len, MSG_NOSIGNAL) < 0)
                    note_error("cannot send the hello frame: %s", strerror(errno));
        } else if (strncmp(g_cmd, "QUIT", 4) == 0) {
            return 0;
        } else if (g_cmd[0]) {
            fprintf(stderr, "wsclient: unknown command: %s\n", g_cmd);
        }
        size_t used = (size_t)(nl + 1 - g_cmd);
        memmove(g_cmd, nl + 1, g_cmd_len - used + 1);
        g_cmd_len -= used;
    }
    return 1;
}

static void handshake_report(void) {
    double secs = (now_ns() - g_t0) / 1e9;
    int ok = (int)g_hs.count;
    printf("{\"mode\":\"handshake\",\"count\":%d,\"ok\":%d,\"failed\":%d,\"concurrency\":%d,"
           "\"seconds\":%.4f,\"handshakes_per_s\":%.1f,\"cpu_s\":%.4f,\"latency_us\":",
           g_count, ok, g_failed, g_concurrency, secs, secs > 0 ? ok / secs : 0.0,
           cpu_seconds());
    print_pcts(stdout, &g_hs);
    print_error();
    printf("}\n");
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: wsclient ws|redis|handshake --port P [--host 127.0.0.1] [--conns N]\n"
            "       [--count H] [--concurrency C] [--connect-timeout S] [--path /ws/F?flags]\n"
            "       [--cookie 'name=value'] [--channel broadcast:F] [--name bench-sub]\n"
            "       [--resp3] [--deflate]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "ws"))
        g_mode = MODE_WS;
    else if (!strcmp(argv[1], "redis"))
        g_mode = MODE_REDIS;
    else if (!strcmp(argv[1], "handshake"))
        g_mode = MODE_HANDSHAKE;
    else
        usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resp3") || !strcmp(a, "--deflate")) {
            *(a[2] == 'r' ? &g_resp3 : &g_deflate) = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) g_host = v;
        else if (!strcmp(a, "--port")) g_port = atoi(v);
        else if (!strcmp(a, "--conns")) g_conns = atoi(v);
        else if (!strcmp(a, "--count")) g_count = atoi(v);
        else if (!strcmp(a, "--concurrency")) g_concurrency = atoi(v);
        else if (!strcmp(a, "--connect-timeout")) g_connect_timeout = atof(v);
        else if (!strcmp(a, "--path")) g_path = v;
        else if (!strcmp(a, "--cookie")) g_cookie = v;
        else if (!strcmp(a, "--channel")) g_channel = v;
        else if (!strcmp(a, "--name")) g_name = v;
        else usage();
    }
    if (g_port <= 0 || g_conns <= 0 || g_count <= 0 || g_concurrency <= 0)
        usage();
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrandom(&g_rng, sizeof g_rng, 0) != sizeof g_rng || !g_rng)
        g_rng = now_ns() | 1;
    g_scratch = malloc(SCRATCH_SIZE);
    g_inflated = malloc(SCRATCH_SIZE);
    if (inflateInit2(&g_inflate, -15) != Z_OK)
        die("inflateInit2 failed");
    if (g_deflate)
        build_hello();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    int total = g_mode == MODE_HANDSHAKE ? g_count : g_conns;
    g_nslots = g_mode == MODE_HANDSHAKE ? g_concurrency : g_conns;
    g_c = calloc((size_t)g_nslots, sizeof *g_c);
    for (int i = 0; i < g_nslots; i++)
        g_c[i].fd = -1;
    if (g_mode != MODE_HANDSHAKE) {
        fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &ev);
    }
    g_t0 = now_ns();
    uint64_t connect_deadline = g_t0 + (uint64_t)(g_connect_timeout * 1e9);
    start_more(total);
    struct epoll_event events[1024];
    int quit = 0;
    for (;;) {
        int n = epoll_wait(g_ep, events, 1024, g_running || !g_ready_printed ? 20 : 200);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c) {
                if (!on_stdin()) {
                    quit = 1;
                    break;
                }
                continue;
            }
            if (c->fd < 0)
                continue;
            uint32_t e = events[i].events;
            if (e & (EPOLLOUT | EPOLLERR | EPOLLHUP) && c->out)
                on_writable(c);
            if (c->fd >= 0 && e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(c);
        }
        if (quit)
            break;
        uint64_t now = now_ns();
        if (g_started < total || g_inflight > 0) {
            if (now > connect_deadline) {
                for (int i = 0; i < g_nslots; i++)
                    if (g_c[i].fd >= 0 && g_c[i].state != ST_OPEN)
                        fail_conn(&g_c[i], "connect timeout");
                g_failed += total - g_started;
                g_started = total;
            } else {
                start_more(total);
            }
        }
        if (g_mode == MODE_HANDSHAKE) {
            if (g_started >= total && g_inflight == 0)
                break;
            continue;
        }
        if (!g_ready_printed && g_started >= total && g_inflight == 0)
            print_ready();
        if (g_running && (g_done_conns + g_closed_in_run >= g_run_conns || now > g_deadline))
            finish_run(g_done_conns + g_closed_in_run < g_run_conns);
    }
    if (g_mode == MODE_HANDSHAKE)
        handshake_report();
    for (int i = 0; i < g_nslots; i++)
        if (g_c[i].fd >= 0)
            drop_conn(&g_c[i]);
    return 0;
}
