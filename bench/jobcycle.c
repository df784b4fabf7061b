/*
 * bench/jobcycle.c: closed-loop job-cycle load generator for chanqd,
 * beanstalkd and Redis, in memory and durable (docs/performance.md).
 *
 * One process, one thread, one epoll loop, no dependency on libchanq, so
 * the three servers see the same generator. It speaks:
 *   chanq          NDJSON: submit -> fetch -> ack
 *   chanq-consume  NDJSON: submit; each consumer says `consume` once with
 *                  --prefetch, jobs are pushed to it as events, and the
 *                  ids of each read's jobs go back in one `ack` ("ids"),
 *                  pipelined (no waiting for the answers)
 *   beanstalk      text protocol: use/put, watch/reserve/delete
 *   redis          RESP: LPUSH, BRPOP (the "ack" is implicit: a popped job
 *                  is gone, so the cycle ends when the BRPOP reply arrives)
 *   redis-reliable RESP, Redis's reliable-queue pattern: RPUSH, BLMOVE to a
 *                  processing list of the consumer's own, LREM of the job
 *                  from that list as the ack (the cycle ends on its reply)
 *
 * Cycle: a producer connection submits a 100-byte job whose payload
 * carries its send time and its producer index; a consumer connection
 * fetches one job at a time, acks it and asks for the next in the same
 * write (ack + fetch pipelined, one job held per consumer); the cycle
 * ends when the ack's answer arrives. Each producer keeps a fixed window
 * of jobs in flight (submitted, not yet acked) and submits again as soon
 * as one of its jobs completes: the generator knows that from the
 * producer index in the payload (a per-job completion signal inside this
 * process, not a message between clients).
 *
 * Modes:
 *   cycle  (default) run R runs of N seconds (after a warm-up) and print
 *          cycles/s per run, the median, and p50/p99/p999 latency (submit
 *          sent -> ack answered) from a log-linear histogram of all runs.
 *          --rate R paces submits to R/s in total (token bucket). With
 *          --pid, also the server's CPU time (user + system, all threads,
 *          from /proc) per cycle over the measured seconds.
 *   mem    submit --jobs N jobs (16 connections, batches of 64) with nothing
 *          consuming them and print the server's RSS growth per job
 *          (VmRSS of --pid from /proc, before and after).
 *
 * Output: human lines, and one machine-readable "RESULT ..." line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_LEN 100
#define MAX_CONNS 1024

enum proto { P_CHANQ, P_BEANSTALK, P_REDIS };
/* The way a consumer works, within its protocol. */
enum variant {
    V_PLAIN,    /* chanq fetch + ack, beanstalk reserve + delete, Redis BRPOP */
    V_CONSUME,  /* chanq consume, acks of several ids pipelined */
    V_RELIABLE, /* Redis BLMOVE + LREM */
};
enum role { R_PRODUCER, R_CONSUMER };

/* --proto's names: a protocol and the way its consumers work. */
static const struct {
    const char *name;
    enum proto proto;
    enum variant variant;
} protos[] = {
    {"chanq", P_CHANQ, V_PLAIN},        {"chanq-consume", P_CHANQ, V_CONSUME},
    {"beanstalk", P_BEANSTALK, V_PLAIN}, {"beanstalkd", P_BEANSTALK, V_PLAIN},
    {"redis", P_REDIS, V_PLAIN},        {"redis-reliable", P_REDIS, V_RELIABLE},
};

/* ---------- small helpers ---------- */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "jobcycle: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct buf {
    char *p;
    size_t len; /* bytes held */
    size_t off; /* bytes already consumed (read) or written (write) */
    size_t cap;
};

static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->off > 0 && b->off == b->len) {
        b->off = b->len = 0;
    }
    if (b->len + extra <= b->cap) {
        return;
    }
    if (b->off > 0) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) {
            return;
        }
    }
    size_t ncap = b->cap ? b->cap : 4096;
    while (ncap < b->len + extra) {
        ncap *= 2;
    }
    char *np = realloc(b->p, ncap);
    if (!np) {
        die("out of memory");
    }
    b->p = np;
    b->cap = ncap;
}

static void buf_put(struct buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

/* ---------- latency histogram: log2 magnitude x 64 linear sub-buckets, in ns ---------- */

#define H_SUB 64
#define H_MAG 40
struct hist {
    uint64_t n[H_MAG][H_SUB];
    uint64_t count;
    uint64_t max;
};

static void hist_add(struct hist *h, uint64_t v)
{
    unsigned mag = 0;
    while ((v >> mag) >= H_SUB && mag < H_MAG - 1) {
        mag++;
    }
    unsigned sub = (unsigned)(v >> mag);
    if (sub >= H_SUB) {
        sub = H_SUB - 1;
    }
    h->n[mag][sub]++;
    h->count++;
    if (v > h->max) {
        h->max = v;
    }
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    for (int m = 0; m < H_MAG; m++) {
        for (int s = 0; s < H_SUB; s++) {
            dst->n[m][s] += src->n[m][s];
        }
    }
    dst->count += src->count;
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

/* value (upper edge of the bucket) at quantile q */
static uint64_t hist_q(const struct hist *h, double q)
{
    if (h->count == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count) {
        want = h->count - 1;
    }
    uint64_t seen = 0;
    for (int m = 0; m < H_MAG; m++) {
        for (int s = 0; s < H_SUB; s++) {
            seen += h->n[m][s];
            if (seen > want) {
                uint64_t up = ((uint64_t)(s + 1) << m) - 1;
                return up < h->max ? up : h->max;
            }
        }
    }
    return h->max;
}

/* ---------- connections ---------- */

struct conn {
    int fd;
    int idx; /* producer index or consumer index */
    enum role role;
    struct buf in, out;
    bool want_out; /* EPOLLOUT armed */
    bool dirty;    /* has unsent output */
    /* producer */
    int inflight;      /* submitted, not yet completed */
    int unanswered;    /* submits sent, answer not read */
    bool need_refill;
    /* consumer */
    int expect_ack;    /* ack answers still expected before the fetch answer */
    uint64_t held_ts;  /* send time of the job being acked */
    int held_pid;      /* its producer */
    bool holding;
    /* consumer, chanq-consume: jobs pushed and not yet acked, oldest
     * first, and the acks sent and not yet answered */
    struct held *held;  /* ring of unacked jobs (held[held_head..]) */
    size_t nheld, held_head, held_cap;
    size_t *batches;    /* jobs per ack in flight, oldest first */
    size_t nbatches, batch_head, batch_cap;
    struct buf ids;     /* the ids of the ack being built */
    size_t batch_n;     /* jobs in it */
    bool consume_ok;    /* the consume request was answered */
};

struct held {
    uint64_t ts;
    int pid;
};

struct bench {
    enum proto proto;
    enum variant variant;
    int prefetch; /* chanq-consume */
    int pid;      /* the server's process, for its CPU time (0: not measured) */
    const char *host;
    int port;
    const char *queue; /* the queue of the current run */
    const char *base_queue;
    int producers, consumers, window;
    double rate; /* total submits/s, 0 = unlimited */
    int epfd;
    struct conn *conns[MAX_CONNS];
    int nconns;
    struct conn **prod;
    struct conn **cons;
    char payload[PAYLOAD_LEN + 1];
    /* run state */
    bool measuring;
    bool stopping; /* no new submits */
    uint64_t completed;   /* in measuring window */
    uint64_t total_done;  /* all completions */
    uint64_t submitted;
    uint64_t errors;
    double cpu_s; /* the server's CPU seconds in the measured window */
    struct hist *hist;
    double tokens;
    uint64_t tok_last;
    int rr; /* round-robin start for paced refill */
    char errmsg[256];
};

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        die("fcntl: %s", strerror(errno));
    }
}

static int dial(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        die("socket: %s", strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        die("bad host %s (IPv4 address expected)", host);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        die("connect %s:%d: %s", host, port, strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* write all of [p, p+n) on a blocking socket */
static void write_all(int fd, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write: %s", strerror(errno));
        }
        off += (size_t)w;
    }
}

/* blocking request/answer for set-up (before the socket goes non-blocking):
 * send req, read until the answer holds `lines` CRLF/LF-terminated lines */
static void setup_exchange(int fd, const char *req, size_t reqlen, const char *expect, char *ans,
                           size_t anscap)
{
    write_all(fd, req, reqlen);
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, ans + got, anscap - 1 - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            die("setup read: %s", r == 0 ? "connection closed" : strerror(errno));
        }
        got += (size_t)r;
        ans[got] = '\0';
        if (memchr(ans, '\n', got)) {
            break;
        }
        if (got + 1 >= anscap) {
            break;
        }
    }
    if (expect && !strstr(ans, expect)) {
        die("set-up: sent %.*s got %s", (int)reqlen, req, ans);
    }
}

static void conn_watch(struct bench *b, struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        die("epoll_ctl: %s", strerror(errno));
    }
    c->want_out = out;
}

static struct conn *conn_open(struct bench *b, enum role role, int idx)
{
    if (b->nconns >= MAX_CONNS) {
        die("too many connections");
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        die("out of memory");
    }
    c->fd = dial(b->host, b->port);
    c->role = role;
    c->idx = idx;
    char ans[512];
    char req[512];
    int n;
    switch (b->proto) {
    case P_CHANQ:
        break;
    case P_BEANSTALK:
        if (role == R_PRODUCER) {
            n = snprintf(req, sizeof req, "use %s\r\n", b->queue);
            setup_exchange(c->fd, req, (size_t)n, "USING", ans, sizeof ans);
        } else {
            n = snprintf(req, sizeof req, "watch %s\r\n", b->queue);
            setup_exchange(c->fd, req, (size_t)n, "WATCHING", ans, sizeof ans);
            setup_exchange(c->fd, "ignore default\r\n", 16, "WATCHING", ans, sizeof ans);
        }
        break;
    case P_REDIS:
        break;
    }
    set_nonblock(c->fd);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        die("epoll_ctl add: %s", strerror(errno));
    }
    b->conns[b->nconns++] = c;
    return c;
}

static void conn_free(struct bench *b, struct conn *c)
{
    epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c->held);
    free(c->batches);
    free(c->ids.p);
    free(c);
}

/* ---------- protocol encoders ---------- */

static void make_payload(struct bench *b, uint64_t ts, int pid)
{
    /* the first 22 bytes are "T" + 16 hex digits of the send time + "P" + 4 hex of the producer */
    static const char hex[] = "0123456789abcdef";
    char *p = b->payload;
    p[0] = 'T';
    for (int i = 0; i < 16; i++) {
        p[1 + i] = hex[(ts >> (60 - 4 * i)) & 15];
    }
    p[17] = 'P';
    for (int i = 0; i < 4; i++) {
        p[18 + i] = hex[((unsigned)pid >> (12 - 4 * i)) & 15];
    }
}

static void payload_init(struct bench *b)
{
    memset(b->payload, 'x', PAYLOAD_LEN);
    b->payload[PAYLOAD_LEN] = '\0';
    make_payload(b, 0, 0);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

/* parse "T<16hex>P<4hex>" at p (needs 22 bytes) */
static bool parse_payload(const char *p, size_t avail, uint64_t *ts, int *pid)
{
    if (avail < 22 || p[0] != 'T' || p[17] != 'P') {
        return false;
    }
    uint64_t t = 0;
    for (int i = 0; i < 16; i++) {
        int v = hexval(p[1 + i]);
        if (v < 0) {
            return false;
        }
        t = (t << 4) | (uint64_t)v;
    }
    int id = 0;
    for (int i = 0; i < 4; i++) {
        int v = hexval(p[18 + i]);
        if (v < 0) {
            return false;
        }
        id = (id << 4) | v;
    }
    *ts = t;
    *pid = id;
    return true;
}

/* chanq payload: a JSON string of 100 bytes in all (98 characters + quotes) */
static void enc_submit(struct bench *b, struct buf *o)
{
    char tmp[512];
    int n;
    switch (b->proto) {
    case P_CHANQ:
        n = snprintf(tmp, sizeof tmp, "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":\"%.*s\"}\n",
                     b->queue, PAYLOAD_LEN - 2, b->payload);
        buf_put(o, tmp, (size_t)n);
        break;
    case P_BEANSTALK:
        n = snprintf(tmp, sizeof tmp, "put 0 0 120 %d\r\n%s\r\n", PAYLOAD_LEN, b->payload);
        buf_put(o, tmp, (size_t)n);
        break;
    case P_REDIS:
        n = snprintf(tmp, sizeof tmp, "*3\r\n$5\r\n%s\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n",
                     b->variant == V_RELIABLE ? "RPUSH" : "LPUSH", strlen(b->queue), b->queue,
                     PAYLOAD_LEN, b->payload);
        buf_put(o, tmp, (size_t)n);
        break;
    }
}

/* A consumer's processing list (Redis reliable pattern). */
static int proc_list(char *out, size_t cap, const struct bench *b, const struct conn *c)
{
    return snprintf(out, cap, "%s-proc-%d", b->queue, c->idx);
}

static void enc_fetch(struct bench *b, struct conn *c)
{
    struct buf *o = &c->out;
    char tmp[512], proc[200];
    int n, pl;
    switch (b->proto) {
    case P_CHANQ:
        if (b->variant == V_CONSUME)
            n = snprintf(tmp, sizeof tmp, "{\"op\":\"consume\",\"queues\":[\"%s\"],\"prefetch\":%d}\n",
                         b->queue, b->prefetch);
        else
            n = snprintf(tmp, sizeof tmp, "{\"op\":\"fetch\",\"queues\":[\"%s\"]}\n", b->queue);
        break;
    case P_BEANSTALK:
        n = snprintf(tmp, sizeof tmp, "reserve\r\n");
        break;
    case P_REDIS:
    default:
        if (b->variant == V_RELIABLE) {
            pl = proc_list(proc, sizeof proc, b, c);
            n = snprintf(tmp, sizeof tmp,
                         "*6\r\n$6\r\nBLMOVE\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n$4\r\nLEFT\r\n$5\r\nRIGHT\r\n"
                         "$1\r\n0\r\n",
                         strlen(b->queue), b->queue, pl, proc);
        } else {
            n = snprintf(tmp, sizeof tmp, "*3\r\n$5\r\nBRPOP\r\n$%zu\r\n%s\r\n$1\r\n0\r\n",
                         strlen(b->queue), b->queue);
        }
        break;
    }
    buf_put(o, tmp, (size_t)n);
}

/* Redis reliable: the ack is LREM of the job's value from the consumer's
 * processing list. */
static void enc_lrem(struct bench *b, struct conn *c, const char *val, size_t len)
{
    char tmp[512], proc[200];
    int pl = proc_list(proc, sizeof proc, b, c);
    int n = snprintf(tmp, sizeof tmp, "*4\r\n$4\r\nLREM\r\n$%d\r\n%s\r\n$1\r\n1\r\n$%zu\r\n", pl,
                     proc, len);
    buf_put(&c->out, tmp, (size_t)n);
    buf_put(&c->out, val, len);
    buf_put(&c->out, "\r\n", 2);
}

static void enc_ack(struct bench *b, struct buf *o, const char *id, size_t idlen)
{
    char tmp[256];
    int n;
    if (b->proto == P_CHANQ) {
        n = snprintf(tmp, sizeof tmp, "{\"op\":\"ack\",\"id\":\"%.*s\"}\n", (int)idlen, id);
    } else {
        n = snprintf(tmp, sizeof tmp, "delete %.*s\r\n", (int)idlen, id);
    }
    buf_put(o, tmp, (size_t)n);
}

/* ---------- the loop ---------- */

static void mark_dirty(struct conn *c)
{
    c->dirty = true;
}

static void conn_flush(struct bench *b, struct conn *c)
{
    while (c->out.off < c->out.len) {
        ssize_t w = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    conn_watch(b, c, true);
                }
                return;
            }
            die("send: %s", strerror(errno));
        }
        c->out.off += (size_t)w;
    }
    c->out.off = c->out.len = 0;
    c->dirty = false;
    if (c->want_out) {
        conn_watch(b, c, false);
    }
}

static void tokens_update(struct bench *b)
{
    if (b->rate <= 0) {
        return;
    }
    uint64_t t = now_ns();
    b->tokens += b->rate * (double)(t - b->tok_last) / 1e9;
    b->tok_last = t;
    double burst = b->rate * 0.002 + 1; /* at most 2 ms worth at once */
    if (b->tokens > burst) {
        b->tokens = burst;
    }
}

static void producer_refill(struct bench *b, struct conn *c)
{
    c->need_refill = false;
    if (b->stopping) {
        return;
    }
    uint64_t t = now_ns();
    while (c->inflight < b->window) {
        if (b->rate > 0) {
            if (b->tokens < 1) {
                c->need_refill = true;
                break;
            }
            b->tokens -= 1;
        }
        make_payload(b, t, c->idx);
        enc_submit(b, &c->out);
        c->inflight++;
        c->unanswered++;
        b->submitted++;
    }
    mark_dirty(c);
}

static void complete(struct bench *b, uint64_t ts, int pid)
{
    uint64_t t = now_ns();
    b->total_done++;
    if (b->measuring) {
        b->completed++;
        hist_add(b->hist, t > ts ? t - ts : 0);
    }
    if (pid >= 0 && pid < b->producers && b->prod[pid]->inflight > 0) {
        struct conn *p = b->prod[pid];
        p->inflight--;
        p->need_refill = true;
    }
}

static void proto_error(struct bench *b, struct conn *c, const char *what, const char *at, size_t n)
{
    b->errors++;
    if (!b->errmsg[0]) {
        snprintf(b->errmsg, sizeof b->errmsg, "%s %d: %s: %.*s", c->role == R_PRODUCER ? "producer" : "consumer",
                 c->idx, what, (int)(n > 160 ? 160 : n), at);
    }
}

/* find a line end in [p, p+n); returns length including '\n', or 0 */
static size_t line_len(const char *p, size_t n)
{
    const char *e = memchr(p, '\n', n);
    return e ? (size_t)(e - p) + 1 : 0;
}

/* producer answers: one per submit */
static size_t parse_producer(struct bench *b, struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        used += len;
        bool ok;
        switch (b->proto) {
        case P_CHANQ:
            if (len > 9 && memcmp(s, "{\"event\"", 8) == 0) {
                continue;
            }
            ok = memmem(s, len, "\"ok\":true", 9) != NULL;
            break;
        case P_BEANSTALK:
            ok = len > 9 && memcmp(s, "INSERTED ", 9) == 0;
            break;
        case P_REDIS:
        default:
            ok = s[0] == ':';
            break;
        }
        c->unanswered--;
        if (!ok) {
            proto_error(b, c, "submit failed", s, len);
            c->inflight--; /* the job does not exist */
            c->need_refill = true;
        }
    }
    return used;
}

/* consumer: chanq */
static size_t parse_consumer_chanq(struct bench *b, struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        used += len;
        if (len > 9 && memcmp(s, "{\"event\"", 8) == 0) {
            continue;
        }
        bool ok = memmem(s, len, "\"ok\":true", 9) != NULL;
        if (c->expect_ack > 0) {
            c->expect_ack--;
            if (!ok) {
                proto_error(b, c, "ack failed", s, len);
            }
            if (c->holding) {
                c->holding = false;
                complete(b, c->held_ts, c->held_pid);
            }
            continue;
        }
        /* fetch answer */
        if (!ok) {
            proto_error(b, c, "fetch failed", s, len);
            enc_fetch(b, c);
            mark_dirty(c);
            continue;
        }
        const char *id = memmem(s, len, "\"id\":\"", 6);
        if (!id) { /* empty answer ({"jobs":[]}): ask again */
            enc_fetch(b, c);
            mark_dirty(c);
            continue;
        }
        id += 6;
        const char *ide = memchr(id, '"', (size_t)(s + len - id));
        const char *pl = memmem(s, len, "\"payload\":\"", 11);
        uint64_t ts;
        int pid;
        if (!ide || !pl || !parse_payload(pl + 11, (size_t)(s + len - pl - 11), &ts, &pid)) {
            proto_error(b, c, "cannot parse job", s, len);
            continue;
        }
        c->held_ts = ts;
        c->held_pid = pid;
        c->holding = true;
        c->expect_ack = 1;
        enc_ack(b, &c->out, id, (size_t)(ide - id));
        enc_fetch(b, c);
        mark_dirty(c);
    }
    return used;
}

/* chanq-consume: the unacked jobs (a ring) and the acks in flight. */
static void held_push(struct conn *c, uint64_t ts, int pid)
{
    if (c->nheld == c->held_cap) {
        size_t cap = c->held_cap ? 2 * c->held_cap : 64;
        struct held *h = malloc(cap * sizeof *h);
        if (!h) {
            die("out of memory");
        }
        for (size_t i = 0; i < c->nheld; i++) {
            h[i] = c->held[(c->held_head + i) % c->held_cap];
        }
        free(c->held);
        c->held = h;
        c->held_cap = cap;
        c->held_head = 0;
    }
    c->held[(c->held_head + c->nheld++) % c->held_cap] = (struct held){ts, pid};
}

static struct held held_pop(struct conn *c)
{
    struct held h = c->held[c->held_head];
    c->held_head = (c->held_head + 1) % c->held_cap;
    c->nheld--;
    return h;
}

static void batch_push(struct conn *c, size_t n)
{
    if (c->nbatches == c->batch_cap) {
        size_t cap = c->batch_cap ? 2 * c->batch_cap : 16;
        size_t *v = malloc(cap * sizeof *v);
        if (!v) {
            die("out of memory");
        }
        for (size_t i = 0; i < c->nbatches; i++) {
            v[i] = c->batches[(c->batch_head + i) % c->batch_cap];
        }
        free(c->batches);
        c->batches = v;
        c->batch_cap = cap;
        c->batch_head = 0;
    }
    c->batches[(c->batch_head + c->nbatches++) % c->batch_cap] = n;
}

static size_t batch_pop(struct conn *c)
{
    if (c->nbatches == 0) {
        return 0;
    }
    size_t n = c->batches[c->batch_head];
    c->batch_head = (c->batch_head + 1) % c->batch_cap;
    c->nbatches--;
    return n;
}

/* The jobs of one pushed event: each is held and its id joins the ack
 * being built. */
static void take_pushed(struct bench *b, struct conn *c, const char *s, size_t len)
{
    const char *q = s, *end = s + len;
    while ((q = memmem(q, (size_t)(end - q), "{\"id\":\"", 7))) {
        const char *id = q + 7;
        const char *ide = memchr(id, '"', (size_t)(end - id));
        const char *pl = ide ? memmem(ide, (size_t)(end - ide), "\"payload\":\"", 11) : NULL;
        uint64_t ts;
        int pid;
        if (!pl || !parse_payload(pl + 11, (size_t)(end - pl - 11), &ts, &pid)) {
            proto_error(b, c, "cannot parse a pushed job", s, len);
            return;
        }
        held_push(c, ts, pid);
        if (c->batch_n++) {
            buf_put(&c->ids, ",", 1);
        }
        buf_put(&c->ids, "\"", 1);
        buf_put(&c->ids, id, (size_t)(ide - id));
        buf_put(&c->ids, "\"", 1);
        q = pl + 11;
    }
}

/* consumer: chanq consume. Jobs come as events; the answers are the
 * consume's (first), then one per ack sent. The jobs of one read are
 * acked in one request, without waiting for the answers of the earlier
 * ones. */
static size_t parse_consumer_consume(struct bench *b, struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        used += len;
        if (len > 9 && memcmp(s, "{\"event\"", 8) == 0) {
            if (memmem(s, len, "\"event\":\"jobs\"", 14)) {
                take_pushed(b, c, s, len);
            } else if (memmem(s, len, "consume_end", 11)) {
                proto_error(b, c, "consume ended", s, len);
            }
            continue;
        }
        bool ok = memmem(s, len, "\"ok\":true", 9) != NULL;
        if (!c->consume_ok) {
            c->consume_ok = true;
            if (!ok) {
                proto_error(b, c, "consume failed", s, len);
            }
            continue;
        }
        if (!ok || memmem(s, len, "\"errors\"", 8)) {
            proto_error(b, c, "ack failed", s, len);
        }
        for (size_t k = batch_pop(c); k > 0 && c->nheld > 0; k--) {
            struct held h = held_pop(c);
            complete(b, h.ts, h.pid);
        }
    }
    if (c->batch_n) {
        buf_put(&c->out, "{\"op\":\"ack\",\"ids\":[", 19);
        buf_put(&c->out, c->ids.p + c->ids.off, c->ids.len - c->ids.off);
        buf_put(&c->out, "]}\n", 3);
        batch_push(c, c->batch_n);
        c->batch_n = 0;
        c->ids.off = c->ids.len = 0;
        mark_dirty(c);
    }
    return used;
}

/* consumer: Redis reliable queue. BLMOVE answers $<n>\r\n<value>\r\n; the
 * LREM (ack) of that value and the next BLMOVE go out together. */
static size_t parse_consumer_redis_reliable(struct bench *b, struct conn *c, const char *p,
                                            size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        if (c->expect_ack > 0) {
            used += len;
            c->expect_ack--;
            if (len < 2 || s[0] != ':' || s[1] != '1') {
                proto_error(b, c, "LREM failed", s, len);
            }
            if (c->holding) {
                c->holding = false;
                complete(b, c->held_ts, c->held_pid);
            }
            continue;
        }
        if (s[0] != '$') {
            used += len;
            proto_error(b, c, "BLMOVE failed", s, len);
            enc_fetch(b, c);
            mark_dirty(c);
            continue;
        }
        size_t bl = strtoul(s + 1, NULL, 10);
        if (n - used < len + bl + 2) {
            break; /* value not all here yet */
        }
        const char *val = s + len;
        uint64_t ts;
        int pid;
        if (!parse_payload(val, bl, &ts, &pid)) {
            proto_error(b, c, "cannot parse job", val, bl);
            pid = -1;
            ts = now_ns();
        }
        c->held_ts = ts;
        c->held_pid = pid;
        c->holding = true;
        c->expect_ack = 1;
        enc_lrem(b, c, val, bl);
        enc_fetch(b, c);
        mark_dirty(c);
        used += len + bl + 2;
    }
    return used;
}

/* consumer: beanstalkd */
static size_t parse_consumer_beanstalk(struct bench *b, struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        if (c->expect_ack > 0) {
            used += len;
            c->expect_ack--;
            if (!(len >= 7 && memcmp(s, "DELETED", 7) == 0)) {
                proto_error(b, c, "delete failed", s, len);
            }
            if (c->holding) {
                c->holding = false;
                complete(b, c->held_ts, c->held_pid);
            }
            continue;
        }
        if (len > 9 && memcmp(s, "RESERVED ", 9) == 0) {
            /* RESERVED <id> <bytes>\r\n<body>\r\n */
            const char *id = s + 9;
            const char *sp = memchr(id, ' ', len - 9);
            if (!sp) {
                proto_error(b, c, "bad RESERVED", s, len);
                used += len;
                continue;
            }
            size_t bytes = strtoul(sp + 1, NULL, 10);
            if (n - used < len + bytes + 2) {
                break; /* body not all here yet */
            }
            const char *body = s + len;
            uint64_t ts;
            int pid;
            if (!parse_payload(body, bytes, &ts, &pid)) {
                proto_error(b, c, "cannot parse job", body, bytes);
                pid = -1;
                ts = now_ns();
            }
            c->held_ts = ts;
            c->held_pid = pid;
            c->holding = true;
            c->expect_ack = 1;
            enc_ack(b, &c->out, id, (size_t)(sp - id));
            enc_fetch(b, c);
            mark_dirty(c);
            used += len + bytes + 2;
            continue;
        }
        used += len;
        proto_error(b, c, "reserve failed", s, len);
        enc_fetch(b, c);
        mark_dirty(c);
    }
    return used;
}

/* consumer: Redis; the BRPOP answer is *2\r\n$<n>\r\n<key>\r\n$<n>\r\n<value>\r\n */
static size_t parse_consumer_redis(struct bench *b, struct conn *c, const char *p, size_t n)
{
    size_t used = 0;
    while (used < n) {
        const char *s = p + used;
        const char *end = p + n;
        size_t len = line_len(s, n - used);
        if (!len) {
            break;
        }
        if (s[0] != '*' || s[1] != '2') {
            used += len;
            proto_error(b, c, "BRPOP failed", s, len);
            enc_fetch(b, c);
            mark_dirty(c);
            continue;
        }
        const char *q = s + len;
        const char *val = NULL;
        size_t vlen = 0;
        bool whole = true;
        for (int i = 0; i < 2; i++) {
            size_t l2 = line_len(q, (size_t)(end - q));
            if (!l2 || q[0] != '$') {
                whole = false;
                break;
            }
            size_t bl = strtoul(q + 1, NULL, 10);
            if ((size_t)(end - q) < l2 + bl + 2) {
                whole = false;
                break;
            }
            val = q + l2;
            vlen = bl;
            q += l2 + bl + 2;
        }
        if (!whole) {
            break;
        }
        used = (size_t)(q - p);
        uint64_t ts;
        int pid;
        if (!parse_payload(val, vlen, &ts, &pid)) {
            proto_error(b, c, "cannot parse job", val, vlen);
            continue;
        }
        complete(b, ts, pid);
        enc_fetch(b, c);
        mark_dirty(c);
    }
    return used;
}

static void conn_readable(struct bench *b, struct conn *c)
{
    for (;;) {
        buf_reserve(&c->in, 65536);
        ssize_t r = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            die("recv: %s", strerror(errno));
        }
        if (r == 0) {
            die("%s %d: server closed the connection", c->role == R_PRODUCER ? "producer" : "consumer",
                c->idx);
        }
        c->in.len += (size_t)r;
        const char *p = c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off;
        size_t used;
        if (c->role == R_PRODUCER) {
            used = parse_producer(b, c, p, avail);
        } else if (b->proto == P_CHANQ && b->variant == V_CONSUME) {
            used = parse_consumer_consume(b, c, p, avail);
        } else if (b->proto == P_CHANQ) {
            used = parse_consumer_chanq(b, c, p, avail);
        } else if (b->proto == P_BEANSTALK) {
            used = parse_consumer_beanstalk(b, c, p, avail);
        } else if (b->variant == V_RELIABLE) {
            used = parse_consumer_redis_reliable(b, c, p, avail);
        } else {
            used = parse_consumer_redis(b, c, p, avail);
        }
        c->in.off += used;
        if (c->in.off == c->in.len) {
            c->in.off = c->in.len = 0;
        }
        if ((size_t)r < c->in.cap - c->in.len) {
            break; /* drained the socket: no second recv that would only say EAGAIN */
        }
    }
}

static void pump(struct bench *b);

static void loop_once(struct bench *b, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(b->epfd, evs, 256, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) {
            return;
        }
        die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++) {
        struct conn *c = evs[i].data.ptr;
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
            conn_readable(b, c);
        }
        if (evs[i].events & EPOLLOUT) {
            conn_flush(b, c);
        }
    }
    pump(b);
}

/* submit what the windows allow, then one write per connection with
 * everything this loop turn produced */
static void pump(struct bench *b)
{
    /* refill producers (round robin so a rate limit is shared fairly) */
    tokens_update(b);
    for (int k = 0; k < b->producers; k++) {
        struct conn *p = b->prod[(b->rr + k) % b->producers];
        if (p->need_refill) {
            producer_refill(b, p);
        }
    }
    b->rr = (b->rr + 1) % (b->producers ? b->producers : 1);
    for (int k = 0; k < b->nconns; k++) {
        struct conn *c = b->conns[k];
        if (c->dirty && !c->want_out) {
            conn_flush(b, c);
        }
    }
}

static uint64_t inflight_total(struct bench *b)
{
    uint64_t s = 0;
    for (int i = 0; i < b->producers; i++) {
        s += (uint64_t)b->prod[i]->inflight;
    }
    return s;
}

/* CPU seconds (user + system, every thread) the process has used, from
 * /proc/PID/stat; -1 when unknown. */
static double proc_cpu_s(int pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the name may hold spaces */
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* one run: connect, warm up, measure, drain, disconnect. Returns cycles/s. */
static void chanq_declare(struct bench *b, long capacity)
{
    int fd = dial(b->host, b->port);
    char req[256], ans[1024];
    int n = snprintf(req, sizeof req, "{\"op\":\"declare\",\"queue\":\"%s\",\"capacity\":%ld}\n", b->queue,
                     capacity);
    setup_exchange(fd, req, (size_t)n, NULL, ans, sizeof ans);
    if (!strstr(ans, "\"ok\":true") && !strstr(ans, "conflict")) {
        die("declare: %s", ans);
    }
    close(fd);
}

static double run_once(struct bench *b, int run, double warm_s, double secs, struct hist *h)
{
    /* a fresh queue per run, so nothing a former run left behind can be counted */
    static char qname[160];
    snprintf(qname, sizeof qname, "%s-%d-%d", b->base_queue, (int)getpid(), run);
    b->queue = qname;
    if (b->proto == P_CHANQ) { /* big enough for the window, so submits never park */
        chanq_declare(b, 100000);
    }
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        die("epoll_create1: %s", strerror(errno));
    }
    b->nconns = 0;
    b->prod = calloc((size_t)b->producers, sizeof *b->prod);
    b->cons = calloc((size_t)b->consumers, sizeof *b->cons);
    for (int i = 0; i < b->consumers; i++) {
        b->cons[i] = conn_open(b, R_CONSUMER, i);
    }
    for (int i = 0; i < b->producers; i++) {
        b->prod[i] = conn_open(b, R_PRODUCER, i);
    }
    b->measuring = false;
    b->stopping = false;
    b->completed = b->total_done = b->submitted = 0;
    b->hist = h;
    b->tokens = 0;
    b->tok_last = now_ns();
    for (int i = 0; i < b->consumers; i++) {
        enc_fetch(b, b->cons[i]);
        mark_dirty(b->cons[i]);
    }
    for (int i = 0; i < b->producers; i++) {
        b->prod[i]->need_refill = true;
    }
    int tmo = b->rate > 0 ? 1 : 100;
    pump(b);
    uint64_t t0 = now_ns();
    uint64_t t_warm = t0 + (uint64_t)(warm_s * 1e9);
    while (now_ns() < t_warm) {
        loop_once(b, tmo);
    }
    b->measuring = true;
    double cpu0 = b->pid > 0 ? proc_cpu_s(b->pid) : -1;
    uint64_t m0 = now_ns();
    uint64_t m_end = m0 + (uint64_t)(secs * 1e9);
    uint64_t t;
    while ((t = now_ns()) < m_end) {
        loop_once(b, tmo);
    }
    b->measuring = false;
    double elapsed = (double)(now_ns() - m0) / 1e9;
    double cpu1 = b->pid > 0 ? proc_cpu_s(b->pid) : -1;
    b->cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    double cps = (double)b->completed / elapsed;
    /* drain: stop submitting, let the jobs in flight finish (bounded) */
    b->stopping = true;
    uint64_t d_end = now_ns() + 10ull * 1000000000ull;
    while (inflight_total(b) > 0 && now_ns() < d_end) {
        loop_once(b, 10);
    }
    uint64_t left = inflight_total(b);
    if (left) {
        fprintf(stderr, "jobcycle: warning: %" PRIu64 " jobs still in flight after the drain\n", left);
    }
    for (int i = 0; i < b->nconns; i++) {
        conn_free(b, b->conns[i]);
    }
    b->nconns = 0;
    free(b->prod);
    free(b->cons);
    b->prod = b->cons = NULL;
    close(b->epfd);
    return cps;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---------- memory mode ---------- */

static long rss_kb(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        die("cannot open %s: %s", path, strerror(errno));
    }
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Fill: `conns` connections in lockstep rounds, each round a batch of
 * `batch` pipelined submits per connection, then every answer read. With
 * batch <= chanqd's --max-inflight (64) no connection stops being read, and
 * a durable server can put a whole round in one group commit. */
static void mem_mode(struct bench *b, long jobs, int pid, const char *label, int conns, int batch)
{
    if (pid <= 0) {
        die("--mode mem needs --pid (the server's process id)");
    }
    if (conns < 1 || conns > 256 || batch < 1) {
        die("bad --conns or --window for --mode mem");
    }
    int fds[256];
    char ans[1024];
    char req[512];
    int n;
    for (int i = 0; i < conns; i++) {
        fds[i] = dial(b->host, b->port);
        if (b->proto == P_CHANQ && i == 0) {
            n = snprintf(req, sizeof req, "{\"op\":\"declare\",\"queue\":\"%s\",\"capacity\":%ld}\n", b->queue,
                         jobs + jobs / 10);
            setup_exchange(fds[i], req, (size_t)n, "\"ok\":true", ans, sizeof ans);
        } else if (b->proto == P_BEANSTALK) {
            n = snprintf(req, sizeof req, "use %s\r\n", b->queue);
            setup_exchange(fds[i], req, (size_t)n, "USING", ans, sizeof ans);
        }
    }
    int fd = fds[0];
    usleep(200000);
    long before = rss_kb(pid);
    struct buf out = {0}, in = {0};
    long sent = 0, answered = 0, failed = 0;
    uint64_t t0 = now_ns();
    char firsterr[200] = "";
    while (answered < jobs) {
        long want[256];
        for (int i = 0; i < conns; i++) {
            out.off = out.len = 0;
            want[i] = 0;
            while (sent < jobs && want[i] < batch) {
                make_payload(b, (uint64_t)sent, 0);
                enc_submit(b, &out);
                sent++;
                want[i]++;
            }
            if (out.len) {
                write_all(fds[i], out.p, out.len);
            }
        }
        for (int i = 0; i < conns; i++) {
            in.off = in.len = 0;
            long got = 0;
            while (got < want[i]) {
                buf_reserve(&in, 65536);
                ssize_t r = read(fds[i], in.p + in.len, in.cap - in.len);
                if (r < 0 && errno == EINTR) {
                    continue;
                }
                if (r <= 0) {
                    die("read: %s", r == 0 ? "connection closed" : strerror(errno));
                }
                in.len += (size_t)r;
                for (;;) {
                    const char *s = in.p + in.off;
                    size_t len = line_len(s, in.len - in.off);
                    if (!len) {
                        break;
                    }
                    in.off += len;
                    bool ok = b->proto == P_CHANQ    ? memmem(s, len, "\"ok\":true", 9) != NULL
                              : b->proto == P_REDIS ? s[0] == ':'
                                                     : memcmp(s, "INSERTED", 8) == 0;
                    if (!ok) {
                        failed++;
                        if (!firsterr[0]) {
                            snprintf(firsterr, sizeof firsterr, "%.*s", (int)(len > 150 ? 150 : len), s);
                        }
                    }
                    got++;
                    answered++;
                }
            }
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    /* the server's own count of queued jobs, as a check */
    char dreq[256];
    int dn;
    if (b->proto == P_CHANQ) {
        dn = snprintf(dreq, sizeof dreq, "{\"op\":\"stats\",\"queue\":\"%s\"}\n", b->queue);
    } else if (b->proto == P_BEANSTALK) {
        dn = snprintf(dreq, sizeof dreq, "stats-tube %s\r\n", b->queue);
    } else {
        dn = snprintf(dreq, sizeof dreq, "*2\r\n$4\r\nLLEN\r\n$%zu\r\n%s\r\n", strlen(b->queue), b->queue);
    }
    char dans[4096];
    long depth = -1;
    setup_exchange(fd, dreq, (size_t)dn, NULL, dans, sizeof dans);
    if (b->proto == P_BEANSTALK) { /* YAML body may need a second read */
        size_t got = strlen(dans);
        while (!strstr(dans, "current-jobs-ready") && got + 1 < sizeof dans) {
            ssize_t r = read(fd, dans + got, sizeof dans - 1 - got);
            if (r <= 0) {
                break;
            }
            got += (size_t)r;
            dans[got] = '\0';
        }
    }
    const char *dp = b->proto == P_CHANQ       ? strstr(dans, "\"depth\":")
                     : b->proto == P_BEANSTALK ? strstr(dans, "current-jobs-ready:")
                                               : (dans[0] == ':' ? dans : NULL);
    if (dp) {
        dp = strpbrk(dp, "0123456789");
        depth = dp ? strtol(dp, NULL, 10) : -1;
    }
    usleep(300000);
    long after = rss_kb(pid);
    double per = (double)(after - before) * 1024.0 / (double)jobs;
    printf("%s: %ld jobs of %d bytes queued in %.2f s (%.0f submits/s), %ld failed%s%s\n", label, jobs,
           PAYLOAD_LEN, secs, (double)jobs / secs, failed, failed ? ": " : "", firsterr);
    printf("%s: the server counts %ld jobs queued\n", label, depth);
    printf("%s: RSS %ld kB before, %ld kB after: %.1f bytes per queued job\n", label, before, after, per);
    printf("RESULT mode=mem server=%s jobs=%ld rss_before_kb=%ld rss_after_kb=%ld bytes_per_job=%.1f "
           "failed=%ld depth=%ld\n",
           label, jobs, before, after, per, failed, depth);
    for (int i = 0; i < conns; i++) {
        close(fds[i]);
    }
    free(out.p);
    free(in.p);
}

/* ---------- main ---------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: jobcycle --proto chanq|chanq-consume|beanstalk|redis|redis-reliable --port PORT\n"
            "                [--host 127.0.0.1] [--producers P] [--consumers C] [--window W]\n"
            "                [--seconds N] [--runs R] [--warmup S] [--rate CYCLES_PER_S]\n"
            "                [--queue NAME] [--label NAME] [--scenario NAME] [--prefetch N]\n"
            "                [--pid SERVER_PID]\n"
            "       jobcycle --mode mem --proto ... --port PORT --pid SERVER_PID [--jobs 1000000]\n"
            "                [--conns 16] [--window 64]\n"
            "cycle mode: P producers each keep W jobs in flight (submit -> fetch -> ack);\n"
            "C consumers fetch one job at a time and send ack + next fetch in one write\n"
            "(chanq-consume: jobs are pushed, up to --prefetch (64) unacked per consumer,\n"
            "and acked in batches; redis-reliable: BLMOVE, then LREM + next BLMOVE).\n"
            "--pid: also the server's CPU time per cycle.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct bench b = {.host = "127.0.0.1", .queue = "jobcycle", .producers = 1, .consumers = 1, .window = 1,
                      .prefetch = 64};
    double secs = 5, warm = 1;
    int runs = 3, pid = 0, conns = 16;
    long jobs = 1000000;
    const char *mode = "cycle", *label = NULL, *scenario = NULL;
    const char *proto = NULL;
    static const struct option opts[] = {
        {"proto", 1, 0, 'P'},   {"host", 1, 0, 'h'},      {"port", 1, 0, 'p'},     {"producers", 1, 0, 'n'},
        {"consumers", 1, 0, 'c'}, {"window", 1, 0, 'w'},  {"seconds", 1, 0, 's'},  {"runs", 1, 0, 'r'},
        {"warmup", 1, 0, 'W'},  {"rate", 1, 0, 'R'},      {"queue", 1, 0, 'q'},    {"label", 1, 0, 'l'},
        {"mode", 1, 0, 'm'},    {"pid", 1, 0, 'i'},       {"jobs", 1, 0, 'j'},     {"scenario", 1, 0, 'S'},  {"conns", 1, 0, 'C'},
        {"prefetch", 1, 0, 'F'},
        {"help", 0, 0, '?'},    {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': proto = optarg; break;
        case 'h': b.host = optarg; break;
        case 'p': b.port = atoi(optarg); break;
        case 'n': b.producers = atoi(optarg); break;
        case 'c': b.consumers = atoi(optarg); break;
        case 'w': b.window = atoi(optarg); break;
        case 's': secs = atof(optarg); break;
        case 'r': runs = atoi(optarg); break;
        case 'W': warm = atof(optarg); break;
        case 'R': b.rate = atof(optarg); break;
        case 'q': b.queue = optarg; break;
        case 'l': label = optarg; break;
        case 'm': mode = optarg; break;
        case 'i': pid = atoi(optarg); break;
        case 'j': jobs = atol(optarg); break;
        case 'S': scenario = optarg; break;
        case 'C': conns = atoi(optarg); break;
        case 'F': b.prefetch = atoi(optarg); break;
        default: usage();
        }
    }
    if (!proto || b.port <= 0) {
        usage();
    }
    size_t pi = 0;
    while (pi < sizeof protos / sizeof protos[0] && strcmp(proto, protos[pi].name)) {
        pi++;
    }
    if (pi == sizeof protos / sizeof protos[0]) {
        usage();
    }
    b.proto = protos[pi].proto;
    b.variant = protos[pi].variant;
    if (b.prefetch < 1 || b.prefetch > 1000) {
        die("--prefetch: 1 to 1000");
    }
    b.base_queue = b.queue;
    if (!label) {
        label = protos[pi].name;
    }
    if (b.producers < 1 || b.consumers < 1 || b.window < 1 || b.producers + b.consumers > MAX_CONNS ||
        b.producers > 0xffff || runs < 1 || secs <= 0) {
        die("bad producers/consumers/window/runs/seconds");
    }
    signal(SIGPIPE, SIG_IGN);
    payload_init(&b);

    if (!strcmp(mode, "mem")) {
        mem_mode(&b, jobs, pid, label, conns, b.window > 1 ? b.window : 64);
        return 0;
    }
    if (strcmp(mode, "cycle")) {
        usage();
    }
    b.pid = pid;
    char scen[64];
    if (!scenario) {
        snprintf(scen, sizeof scen, "%dx%d/w%d", b.producers, b.consumers, b.window);
        scenario = scen;
    }
    struct hist *all = calloc(1, sizeof *all);
    double *cps = calloc((size_t)runs, sizeof *cps);
    double *cpu = calloc((size_t)runs, sizeof *cpu);
    if (!all || !cps || !cpu) {
        die("out of memory");
    }
    uint64_t errors = 0;
    for (int r = 0; r < runs; r++) {
        struct hist *h = calloc(1, sizeof *h);
        if (!h) {
            die("out of memory");
        }
        b.errors = 0;
        b.errmsg[0] = '\0';
        cps[r] = run_once(&b, r, warm, secs, h);
        errors += b.errors;
        /* the server's CPU per cycle, in microseconds */
        cpu[r] = b.cpu_s >= 0 && cps[r] > 0 ? b.cpu_s * 1e6 / (cps[r] * secs) : -1;
        char cpubuf[64] = "";
        if (cpu[r] >= 0) {
            snprintf(cpubuf, sizeof cpubuf, ", server CPU %.1f us/cycle", cpu[r]);
        }
        printf("%s %s run %d: %.0f cycles/s, p50 %.0f us, p99 %.0f us%s%s%s\n", label, scenario, r + 1, cps[r],
               (double)hist_q(h, 0.50) / 1e3, (double)hist_q(h, 0.99) / 1e3, cpubuf,
               b.errmsg[0] ? ", first error: " : "", b.errmsg);
        fflush(stdout);
        hist_merge(all, h);
        free(h);
    }
    double sorted[64];
    int ns = runs < 64 ? runs : 64;
    memcpy(sorted, cps, (size_t)ns * sizeof *sorted);
    qsort(sorted, (size_t)ns, sizeof *sorted, cmp_double);
    double med = sorted[ns / 2];
    memcpy(sorted, cpu, (size_t)ns * sizeof *sorted);
    qsort(sorted, (size_t)ns, sizeof *sorted, cmp_double);
    double cpu_med = sorted[ns / 2];
    printf("RESULT mode=cycle server=%s scenario=%s producers=%d consumers=%d window=%d rate=%.0f runs=%d "
           "seconds=%.1f cps=%.0f cps_runs=",
           label, scenario, b.producers, b.consumers, b.window, b.rate, runs, secs, med);
    for (int r = 0; r < runs; r++) {
        printf("%s%.0f", r ? "," : "", cps[r]);
    }
    printf(" p50_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f samples=%" PRIu64 " errors=%" PRIu64,
           (double)hist_q(all, 0.50) / 1e3, (double)hist_q(all, 0.99) / 1e3, (double)hist_q(all, 0.999) / 1e3,
           (double)all->max / 1e3, all->count, errors);
    if (cpu_med >= 0) {
        printf(" cpu_us=%.2f", cpu_med);
    }
    printf("\n");
    free(all);
    free(cps);
    free(cpu);
    return 0;
}
