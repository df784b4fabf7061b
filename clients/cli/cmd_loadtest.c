/* chanq loadtest: P producer and C consumer connections (one thread each)
 * drive the job cycle submit -> consume (or fetch) -> ack; a sampler records every second
 * (rates, latency percentiles, the server's view of the queue and its RSS)
 * for a live line, a final report, CSV and an SVG chart. */
#include "chanq_config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clients/cli/chart.h"
#include "clients/cli/cli.h"
#include "clients/cli/hist.h"

static const char loadtest_usage[] =
    "Usage: chanq loadtest [OPTIONS]\n"
    "Runs producers and consumers (one connection each) against one queue and\n"
    "reports throughput and submit-to-ack latency. Producers pipeline their\n"
    "submits (--window per round trip); consumers consume, --batch jobs pushed\n"
    "to each at most, and ack what they received in one request (--fetch: they\n"
    "fetch --batch jobs at a time and pipeline their acks). Make consumers\n"
    "slower than producers (--work-us)\n"
    "to watch backpressure: depth pinned at capacity, submit rate down to the\n"
    "ack rate. A live line is printed every second on a terminal.\n"
    "\nOptions:\n"
    "  -p, --producers N    producer connections (default 4)\n"
    "  -c, --consumers N    consumer connections (default 4)\n"
    "  --rate R             submits per second in total (default: flat out)\n"
    "  -d, --duration SEC   produce for SEC seconds (default 10)\n"
    "  -n, --jobs N         or: produce N jobs in total\n"
    "  --payload BYTES      payload size (default 100)\n"
    "  --capacity N         declare the queue with this capacity (default 10000)\n"
    "  --queue NAME         queue name (default loadtest-PID)\n"
    "  --work-us US         consumer time per job (default 0)\n"
    "  --window N           submits in flight per producer (default 64)\n"
    "  --batch N            jobs a consumer holds at most: its prefetch, or its\n"
    "                       jobs per fetch (default 64)\n"
    "  --fetch              consumers fetch instead of consuming\n"
    "  --drain SEC          after producing, wait at most SEC for the consumers\n"
    "                       to ack what was submitted (default 30)\n"
    "  --csv FILE           per-second series as CSV\n"
    "  --svg FILE           chart of depth, rates, p99 latency and RSS over time\n"
    "  --quiet              no live line\n";

enum { OPT_RATE = OPT_FIRST_OWN, OPT_PAYLOAD, OPT_CAPACITY, OPT_QUEUE, OPT_WORK, OPT_WINDOW,
       OPT_BATCH, OPT_CSV, OPT_SVG, OPT_QUIET, OPT_DRAIN, OPT_FETCH };

#define MAX_SAMPLES 86400

/* A consumer's latency histograms: `now` is taken by the sampler each second. */
struct lat {
    pthread_mutex_t mu;
    struct hist now;   /* since the last sample */
};

struct lt {
    struct cli g;
    int producers, consumers;
    double rate;              /* total submits/s, 0: flat out */
    int64_t duration_s, jobs; /* stop condition: jobs > 0 wins */
    int64_t payload_size, capacity, work_us, window, batch;
    int64_t drain_s;          /* how long consumers may drain after producing */
    char queue[160];
    const char *csv, *svg;
    bool quiet;
    bool fetch;               /* consumers fetch instead of consuming */
    char *payload_pad;        /* filler so the payload has payload_size bytes */
    atomic_bool producing;    /* producers run while true */
    atomic_bool consuming;    /* consumers run while true */
    atomic_llong quota;       /* jobs left to claim in --jobs mode */
    atomic_llong submitted, acked, rejected, errors;
    struct lat *lat;          /* one per consumer */
    struct hist total;        /* every latency, merged by the sampler */
    struct timespec start;
};

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static struct chanq_conn *
lt_connect(struct lt *lt)
{
    struct chanq_connect_opts o;
    cli_connect_opts(&lt->g, &o);
    struct chanq_error err;
    struct chanq_conn *c = chanq_connect(lt->g.server, &o, &err);
    if (!c)
        fprintf(stderr, "chanq loadtest: connect %s: %s: %s\n", lt->g.server, err.code,
                err.message);
    return c;
}

/* How many submits this round may send (rate pacing and the job quota). */
static long
claim(struct lt *lt, long want)
{
    if (lt->jobs <= 0)
        return want;
    long long left = atomic_fetch_sub(&lt->quota, want);
    if (left <= 0) {
        atomic_fetch_add(&lt->quota, want);
        return 0;
    }
    if (left < want) {
        atomic_fetch_add(&lt->quota, want - left);
        return (long)left;
    }
    return want;
}

static void *
producer_main(void *arg)
{
    struct lt *lt = arg;
    struct chanq_conn *c = lt_connect(lt);
    if (!c) {
        atomic_fetch_add(&lt->errors, 1);
        return NULL;
    }
    struct chanq_submit_opts o = {.queue = lt->queue};
    char *payload = malloc((size_t)lt->payload_size + 64);
    double per_us = lt->rate > 0 ? lt->rate / lt->producers / 1e6 : 0;
    int64_t t0 = now_us();
    long long sent_total = 0;
    while (atomic_load(&lt->producing)) {
        long n = (long)lt->window;
        if (per_us > 0) {
            /* Open loop: send what is due by now (at most a window). */
            long due = (long)((double)(now_us() - t0) * per_us) - (long)sent_total;
            if (due <= 0) {
                usleep(1000);
                continue;
            }
            n = due < n ? due : n;
        }
        n = claim(lt, n);
        if (n == 0)
            break;
        for (long i = 0; i < n; i++) {
            snprintf(payload, (size_t)lt->payload_size + 64, "{\"t\":%" PRId64 ",\"p\":\"%s\"}",
                     now_us(), lt->payload_pad);
            chanq_send_submit(c, &o, payload);
        }
        sent_total += n;
        for (long i = 0; i < n; i++) {
            char *id = NULL;
            if (chanq_recv_submit(c, &id, NULL) == 0) {
                free(id);
                atomic_fetch_add(&lt->submitted, 1);
                continue;
            }
            const char *code = chanq_last_error(c)->code;
            if (strcmp(code, "io") == 0) {
                fprintf(stderr, "chanq loadtest: producer: %s\n", chanq_last_error(c)->message);
                atomic_fetch_add(&lt->errors, 1);
                goto out;
            }
            atomic_fetch_add(&lt->rejected, 1);
        }
    }
out:
    free(payload);
    chanq_conn_free(c);
    return NULL;
}

/* The submit time (us) a loadtest payload carries. */
static int64_t
payload_time(const char *payload)
{
    const char *t = strstr(payload, "\"t\":");
    return t ? strtoll(t + 4, NULL, 10) : 0;
}

static void
busy_work(int64_t us)
{
    if (us <= 0)
        return;
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

struct consumer_arg {
    struct lt *lt;
    struct lat *lat;
};

/* Acked jobs: counted, and their latency (submit to ack answered) kept. */
static void
record_acked(struct consumer_arg *ca, const int64_t *sent_at, size_t n, long acked)
{
    int64_t t = now_us();
    pthread_mutex_lock(&ca->lat->mu);
    for (size_t i = 0; i < n; i++)
        if (sent_at[i] > 0 && t >= sent_at[i])
            hist_add(&ca->lat->now, (uint64_t)(t - sent_at[i]));
    pthread_mutex_unlock(&ca->lat->mu);
    atomic_fetch_add(&ca->lt->acked, acked);
}

static void
fetch_loop(struct consumer_arg *ca, struct chanq_conn *c)
{
    struct lt *lt = ca->lt;
    const char *queues[] = {lt->queue};
    struct chanq_fetch_opts fo = {.queues = queues, .nqueues = 1, .timeout_ms = 100,
                                  .count = lt->batch};
    int64_t *sent_at = calloc((size_t)lt->batch, sizeof *sent_at);
    while (sent_at && atomic_load(&lt->consuming)) {
        struct chanq_job *jobs;
        size_t n;
        if (chanq_fetch(c, &fo, &jobs, &n) < 0) {
            fprintf(stderr, "chanq loadtest: fetch: %s: %s\n", chanq_last_error(c)->code,
                    chanq_last_error(c)->message);
            atomic_fetch_add(&lt->errors, 1);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            sent_at[i] = payload_time(jobs[i].payload);
            busy_work(lt->work_us);
            chanq_send_ack(c, jobs[i].id, NULL);
        }
        long acked = 0;
        for (size_t i = 0; i < n; i++)
            if (chanq_recv_ok(c) == 0)
                acked++;
        record_acked(ca, sent_at, n, acked);
        chanq_jobs_free(jobs, n);
    }
    free(sent_at);
}

/* The jobs a consuming consumer was pushed and has not acked yet. */
struct held {
    char **ids;
    int64_t *sent_at;
    size_t n, cap;
    bool ended; /* the server ended the consume */
};

static void
on_pushed(const struct chanq_event *ev, void *arg)
{
    struct held *h = arg;
    if (strcmp(ev->type, "consume_end") == 0)
        h->ended = true;
    if (strcmp(ev->type, "jobs") != 0)
        return;
    for (size_t i = 0; i < ev->njobs; i++) {
        if (h->n == h->cap) {
            size_t cap = h->cap ? 2 * h->cap : 64;
            char **ids = realloc(h->ids, cap * sizeof *ids);
            int64_t *at = ids ? realloc(h->sent_at, cap * sizeof *at) : NULL;
            if (ids)
                h->ids = ids;
            if (!at)
                return; /* out of memory: its ttr gives the job back */
            h->sent_at = at;
            h->cap = cap;
        }
        char *id = strdup(ev->jobs[i].id);
        if (!id)
            return;
        h->ids[h->n] = id;
        h->sent_at[h->n++] = payload_time(ev->jobs[i].payload);
    }
}

/* Consumes: waits for pushed jobs, works on them, acks them all in one
 * request (a consumer holds --batch jobs at most: its prefetch) and reads
 * the answer, while the server pushes the next jobs. */
static void
consume_loop(struct consumer_arg *ca, struct chanq_conn *c)
{
    struct lt *lt = ca->lt;
    struct held h = {0};
    chanq_set_event_fn(c, on_pushed, &h);
    const char *queues[] = {lt->queue};
    struct chanq_consume_opts co = {.queues = queues, .nqueues = 1, .prefetch = lt->batch};
    if (chanq_consume(c, &co) < 0) {
        fprintf(stderr, "chanq loadtest: consume: %s: %s\n", chanq_last_error(c)->code,
                chanq_last_error(c)->message);
        atomic_fetch_add(&lt->errors, 1);
        return;
    }
    struct held acking = {0};
    while (atomic_load(&lt->consuming) && !h.ended) {
        if (h.n == 0 && chanq_poll_events(c, 100) < 0)
            break;
        if (h.n == 0)
            continue;
        /* These are acked now; the next ones gather in h meanwhile. */
        struct held t = acking;
        acking = h;
        h = t;
        h.n = 0;
        for (size_t i = 0; i < acking.n; i++)
            busy_work(lt->work_us);
        int64_t done = 0;
        int rc = 0;
        for (size_t off = 0; rc == 0 && off < acking.n; off += 1000) {
            size_t k = acking.n - off < 1000 ? acking.n - off : 1000;
            int64_t d = 0;
            rc = chanq_ack_many(c, (const char *const *)acking.ids + off, k, &d, NULL);
            done += d;
        }
        if (rc < 0) {
            fprintf(stderr, "chanq loadtest: ack: %s: %s\n", chanq_last_error(c)->code,
                    chanq_last_error(c)->message);
            atomic_fetch_add(&lt->errors, 1);
            break;
        }
        record_acked(ca, acking.sent_at, acking.n, (long)done);
        for (size_t i = 0; i < acking.n; i++)
            free(acking.ids[i]);
        acking.n = 0;
    }
    chanq_set_event_fn(c, NULL, NULL);
    for (size_t i = 0; i < h.n; i++)
        free(h.ids[i]);
    for (size_t i = 0; i < acking.n; i++)
        free(acking.ids[i]);
    free(h.ids);
    free(h.sent_at);
    free(acking.ids);
    free(acking.sent_at);
}

static void *
consumer_main(void *arg)
{
    struct consumer_arg *ca = arg;
    struct chanq_conn *c = lt_connect(ca->lt);
    if (!c) {
        atomic_fetch_add(&ca->lt->errors, 1);
        return NULL;
    }
    if (ca->lt->fetch)
        fetch_loop(ca, c);
    else
        consume_loop(ca, c);
    chanq_conn_free(c);
    return NULL;
}

static double
elapsed_s(const struct lt *lt)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - lt->start.tv_sec) + (ts.tv_nsec - lt->start.tv_nsec) / 1e9;
}

/* The server's view: queue depth etc. and its RSS (-1 when unknown). */
static void
server_view(struct chanq_conn *c, const char *queue, struct sample *s)
{
    json_t *q = NULL, *srv = NULL;
    s->depth = s->capacity = s->waiting_submitters = s->blocked_ms = s->rss_mib = -1;
    if (c && chanq_stats(c, queue, &q) == 0) {
        json_t *v;
        if ((v = json_object_get(q, "depth")) && json_is_integer(v))
            s->depth = (double)json_integer_value(v);
        if ((v = json_object_get(q, "capacity")) && json_is_integer(v))
            s->capacity = (double)json_integer_value(v);
        if ((v = json_object_get(q, "waiting_submitters")) && json_is_integer(v))
            s->waiting_submitters = (double)json_integer_value(v);
        if ((v = json_object_get(q, "blocked_ms")) && json_is_integer(v))
            s->blocked_ms = (double)json_integer_value(v);
    }
    if (c && chanq_stats(c, NULL, &srv) == 0) {
        json_t *v = json_object_get(srv, "rss_bytes");
        if (json_is_integer(v))
            s->rss_mib = (double)json_integer_value(v) / (1 << 20);
    }
    json_decref(q);
    json_decref(srv);
}

/* One sample: rates since the previous one, latencies of that second. */
static void
take_sample(struct lt *lt, struct chanq_conn *admin, struct sample *s, long long *last_sub,
            long long *last_ack, long long *last_rej, double *last_t)
{
    struct hist h;
    hist_reset(&h);
    for (int i = 0; i < lt->consumers; i++) {
        pthread_mutex_lock(&lt->lat[i].mu);
        hist_merge(&h, &lt->lat[i].now);
        hist_reset(&lt->lat[i].now);
        pthread_mutex_unlock(&lt->lat[i].mu);
    }
    hist_merge(&lt->total, &h);
    double t = elapsed_s(lt), dt = t - *last_t;
    long long sub = atomic_load(&lt->submitted), ack = atomic_load(&lt->acked),
              rej = atomic_load(&lt->rejected);
    s->t = round(t);
    s->submitted = (double)(sub - *last_sub) / dt;
    s->acked = (double)(ack - *last_ack) / dt;
    s->rejected = (double)(rej - *last_rej) / dt;
    s->p50_ms = hist_quantile(&h, 0.50) / 1000.0;
    s->p99_ms = hist_quantile(&h, 0.99) / 1000.0;
    server_view(admin, lt->queue, s);
    *last_sub = sub;
    *last_ack = ack;
    *last_rej = rej;
    *last_t = t;
}

static void
live_line(const struct sample *s, const char *phase)
{
    fprintf(stderr,
            "\r\033[K%4.0fs %s submit %8.0f/s  ack %8.0f/s  depth %6.0f  waiting %4.0f  "
            "p50 %7.2f ms  p99 %7.2f ms",
            s->t, phase, s->submitted, s->acked, s->depth, s->waiting_submitters, s->p50_ms,
            s->p99_ms);
}

static void
report(const struct lt *lt, const struct sample *s, size_t n, double produce_s, double total_s,
       double blocked0)
{
    long long sub = atomic_load(&lt->submitted), ack = atomic_load(&lt->acked);
    const struct hist *h = &lt->total;
    double peak_rss = 0, first_rss = -1, last_rss = -1, peak_wait = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].rss_mib >= 0) {
            if (first_rss < 0)
                first_rss = s[i].rss_mib;
            last_rss = s[i].rss_mib;
            peak_rss = s[i].rss_mib > peak_rss ? s[i].rss_mib : peak_rss;
        }
        if (s[i].waiting_submitters > peak_wait)
            peak_wait = s[i].waiting_submitters;
    }
    double blocked = n > 0 && s[n - 1].blocked_ms >= 0 && blocked0 >= 0 ? s[n - 1].blocked_ms - blocked0 : -1;
    printf("loadtest: queue %s, %d producers, %d consumers, payload %" PRId64 " B, capacity %" PRId64
           ", work %" PRId64 " us/job, window %" PRId64 ", %s %" PRId64 "\n",
           lt->queue, lt->producers, lt->consumers, lt->payload_size, lt->capacity, lt->work_us,
           lt->window, lt->fetch ? "fetch batch" : "consume prefetch", lt->batch);
    printf("submitted   %lld in %.1f s: %.0f jobs/s\n", sub, produce_s, sub / produce_s);
    printf("acked       %lld in %.1f s: %.0f jobs/s (cycles: submit -> %s -> ack)\n", ack,
           total_s, ack / total_s, lt->fetch ? "fetch" : "consume");
    printf("rejected    %lld submits (queue_full / timeout)\n", (long long)atomic_load(&lt->rejected));
    if (blocked >= 0)
        printf("blocked     %.1f s of submitter time waiting for room (server blocked_ms), "
               "peak %.0f waiting submits\n", blocked / 1000, peak_wait);
    printf("latency     submit -> ack: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  "
           "max %.2f ms  (%" PRIu64 " jobs)\n",
           hist_quantile(h, 0.5) / 1e3, hist_quantile(h, 0.9) / 1e3, hist_quantile(h, 0.99) / 1e3,
           hist_quantile(h, 0.999) / 1e3, h->max_us / 1e3, h->total);
    if (first_rss >= 0)
        printf("chanqd rss  start %.1f MiB, end %.1f MiB, peak %.1f MiB\n", first_rss, last_rss,
               peak_rss);
    if (atomic_load(&lt->errors))
        printf("errors      %lld connections failed (see above)\n",
               (long long)atomic_load(&lt->errors));
}

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    interrupted = 1;
}

static void
parse(struct lt *lt, int argc, char **argv)
{
    static const struct option opts[] = {
        {"producers", required_argument, NULL, 'p'}, {"consumers", required_argument, NULL, 'c'},
        {"rate", required_argument, NULL, OPT_RATE}, {"duration", required_argument, NULL, 'd'},
        {"jobs", required_argument, NULL, 'n'}, {"payload", required_argument, NULL, OPT_PAYLOAD},
        {"capacity", required_argument, NULL, OPT_CAPACITY},
        {"queue", required_argument, NULL, OPT_QUEUE}, {"work-us", required_argument, NULL, OPT_WORK},
        {"window", required_argument, NULL, OPT_WINDOW}, {"batch", required_argument, NULL, OPT_BATCH},
        {"csv", required_argument, NULL, OPT_CSV}, {"svg", required_argument, NULL, OPT_SVG},
        {"quiet", no_argument, NULL, OPT_QUIET}, {"drain", required_argument, NULL, OPT_DRAIN},
        {"fetch", no_argument, NULL, OPT_FETCH},
        CLI_COMMON_OPTIONS};
    int opt;
    while ((opt = cli_getopt(&lt->g, argc, argv, "hp:c:d:n:", opts)) != -1) {
        if (cli_common_opt(&lt->g, opt, optarg))
            continue;
        switch (opt) {
        case 'p': lt->producers = (int)cli_i64(&lt->g, "--producers", optarg); break;
        case 'c': lt->consumers = (int)cli_i64(&lt->g, "--consumers", optarg); break;
        case OPT_RATE: lt->rate = (double)cli_i64(&lt->g, "--rate", optarg); break;
        case 'd': lt->duration_s = cli_i64(&lt->g, "--duration", optarg); break;
        case 'n': lt->jobs = cli_i64(&lt->g, "--jobs", optarg); break;
        case OPT_PAYLOAD: lt->payload_size = cli_i64(&lt->g, "--payload", optarg); break;
        case OPT_CAPACITY: lt->capacity = cli_i64(&lt->g, "--capacity", optarg); break;
        case OPT_QUEUE: snprintf(lt->queue, sizeof lt->queue, "%s", optarg); break;
        case OPT_WORK: lt->work_us = cli_i64(&lt->g, "--work-us", optarg); break;
        case OPT_WINDOW: lt->window = cli_i64(&lt->g, "--window", optarg); break;
        case OPT_BATCH: lt->batch = cli_i64(&lt->g, "--batch", optarg); break;
        case OPT_CSV: lt->csv = optarg; break;
        case OPT_SVG: lt->svg = optarg; break;
        case OPT_QUIET: lt->quiet = true; break;
        case OPT_FETCH: lt->fetch = true; break;
        case OPT_DRAIN: lt->drain_s = cli_i64(&lt->g, "--drain", optarg); break;
        }
    }
    if (optind != argc)
        cli_usage_error(&lt->g, "unexpected argument '%s'", argv[optind]);
    if (lt->producers < 1 || lt->consumers < 1 || lt->window < 1 || lt->batch < 1)
        cli_usage_error(&lt->g, "producers, consumers, window and batch must be at least 1");
    if (lt->batch > 1000)
        cli_usage_error(&lt->g, "--batch is at most 1000");
    if (lt->payload_size < 40)
        lt->payload_size = 40;
}

int
cmd_loadtest(int argc, char **argv)
{
    struct lt *lt = calloc(1, sizeof *lt);
    cli_init(&lt->g, "loadtest", loadtest_usage);
    lt->producers = lt->consumers = 4;
    lt->duration_s = 10;
    lt->payload_size = 100;
    lt->capacity = 10000;
    lt->window = 64;
    lt->batch = 64;
    lt->drain_s = 30;
    snprintf(lt->queue, sizeof lt->queue, "loadtest-%d", (int)getpid());
    parse(lt, argc, argv);
    /* {"t":<up to 16 digits>,"p":"<pad>"} is payload_size bytes. */
    size_t pad = (size_t)lt->payload_size - 32;
    lt->payload_pad = malloc(pad + 1);
    memset(lt->payload_pad, 'x', pad);
    lt->payload_pad[pad] = '\0';
    atomic_store(&lt->quota, lt->jobs);

    struct chanq_conn *admin = cli_connect(&lt->g);
    json_t *q = NULL;
    if (chanq_declare(admin, lt->queue, lt->capacity, 0, 0, &q) < 0) {
        int rc = cli_report(&lt->g, admin, "declare");
        chanq_conn_free(admin);
        return rc;
    }
    json_decref(q);
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    struct sample *series = calloc(MAX_SAMPLES, sizeof *series);
    struct sample s0 = {0};
    server_view(admin, lt->queue, &s0);
    pthread_t *pt = calloc((size_t)lt->producers, sizeof *pt);
    pthread_t *ct = calloc((size_t)lt->consumers, sizeof *ct);
    struct consumer_arg *cargs = calloc((size_t)lt->consumers, sizeof *cargs);
    lt->lat = calloc((size_t)lt->consumers, sizeof *lt->lat);
    atomic_store(&lt->producing, true);
    atomic_store(&lt->consuming, true);
    clock_gettime(CLOCK_MONOTONIC, &lt->start);
    for (int i = 0; i < lt->consumers; i++) {
        pthread_mutex_init(&lt->lat[i].mu, NULL);
        cargs[i] = (struct consumer_arg){lt, &lt->lat[i]};
        pthread_create(&ct[i], NULL, consumer_main, &cargs[i]);
    }
    for (int i = 0; i < lt->producers; i++)
        pthread_create(&pt[i], NULL, producer_main, lt);

    bool tty = isatty(STDERR_FILENO) && !lt->quiet;
    size_t n = 0;
    long long last_sub = 0, last_ack = 0, last_rej = 0;
    double last_t = 0, produce_s = 0, drain_start = -1;
    for (;;) {
        struct timespec tick = {.tv_sec = 1};
        nanosleep(&tick, NULL);
        bool producing = atomic_load(&lt->producing);
        if (n < MAX_SAMPLES) {
            take_sample(lt, admin, &series[n], &last_sub, &last_ack, &last_rej, &last_t);
            if (tty)
                live_line(&series[n], producing ? "   " : "drain");
            n++;
        }
        double t = elapsed_s(lt);
        bool quota_done = lt->jobs > 0 && atomic_load(&lt->quota) <= 0 &&
                          atomic_load(&lt->submitted) + atomic_load(&lt->rejected) >= lt->jobs;
        if (producing && (interrupted || quota_done || (lt->jobs <= 0 && t >= lt->duration_s) ||
                          atomic_load(&lt->errors))) {
            atomic_store(&lt->producing, false);
            for (int i = 0; i < lt->producers; i++)
                pthread_join(pt[i], NULL);
            produce_s = elapsed_s(lt);
            drain_start = produce_s;
        }
        if (!atomic_load(&lt->producing) &&
            (atomic_load(&lt->acked) >= atomic_load(&lt->submitted) || interrupted > 1 ||
             t - drain_start >= lt->drain_s || atomic_load(&lt->errors)))
            break;
    }
    double total_s = elapsed_s(lt);
    atomic_store(&lt->consuming, false);
    for (int i = 0; i < lt->consumers; i++)
        pthread_join(ct[i], NULL);
    if (tty)
        fputs("\n", stderr);
    report(lt, series, n, produce_s, total_s, s0.blocked_ms);
    int rc = CLI_OK;
    if (lt->csv && chart_write_csv(lt->csv, series, n) < 0) {
        fprintf(stderr, "chanq loadtest: %s: %s\n", lt->csv, strerror(errno));
        rc = CLI_USAGE;
    }
    if (lt->svg) {
        char title[300];
        snprintf(title, sizeof title,
                 "chanq loadtest: %d producers, %d consumers (%" PRId64 " us/job), capacity %" PRId64,
                 lt->producers, lt->consumers, lt->work_us, lt->capacity);
        if (chart_write_svg(lt->svg, series, n, title) < 0) {
            fprintf(stderr, "chanq loadtest: %s: %s\n", lt->svg, strerror(errno));
            rc = CLI_USAGE;
        }
    }
    if (atomic_load(&lt->errors))
        rc = CLI_IO;
    chanq_conn_free(admin);
    free(series);
    free(pt);
    free(ct);
    free(cargs);
    free(lt->lat);
    free(lt->payload_pad);
    free(lt);
    return rc;
}
