#include "chanq_config.h"

/* core_bench: microbenchmarks of the core/ runtime, row for row the same as
 * bench/go/main.go and in the same output format (bench/compare-go.sh joins
 * the two). Not a test: it prints figures.
 *
 * Usage: core_bench [-p GOMAXPROCS] [-r RUNS] [-s SCALE] [ROW...] | -l
 * Output: a comment line "# ..." then one line per row, "name value unit",
 * where value is the median of RUNS runs (default 5, or $BENCH_RUNS).
 * Every unit is lower-is-better. -l lists the rows. */

#include <errno.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/select.h"
#include "core/timer.h"
#include "core/wg.h"

extern char **environ;

/* One benchmark: run() does one measured run and returns the value in
 * `unit`. Isolated rows run each time in a fresh child process, because
 * they measure memory, and pages kept by earlier runs would hide it. */
struct row {
    const char *name;
    const char *unit;
    bool isolate;
    double (*run)(double scale);
};

/* The command line, handed to the benchmark goroutine. */
struct opts {
    int procs;         /* worker threads (0: $GOMAXPROCS, else the CPU count) */
    int runs;          /* runs per row; the median is printed */
    double scale;      /* multiplies every iteration count (quick checks) */
    const char *child; /* -c: internal, one run of this row, print the value */
    char **want;       /* rows to run (all when nwant == 0) */
    int nwant;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("core_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* n scaled, at least min. */
static long
count(long n, double scale, long min)
{
    long c = (long)((double)n * scale);

    return c < min ? min : c;
}

static double
ns_per(int64_t el, long n)
{
    return (double)el / (double)n;
}

static struct chan *
must_chan(size_t elem_size, size_t cap)
{
    struct chan *c = chan_new(elem_size, cap);

    if (!c)
        die("chan_new: out of memory");
    return c;
}

static struct wg *
must_wg(void)
{
    struct wg *wg = wg_new();

    if (!wg)
        die("wg_new: out of memory");
    return wg;
}

static void
must_go(go_fn *fn, void *arg)
{
    int rc = go(fn, arg);

    if (rc < 0)
        die("go: %s", strerror(-rc));
}

static void
must_send(struct chan *c, const void *elem)
{
    int rc = chan_send(c, elem, NULL);

    if (rc < 0)
        die("chan_send: %s", strerror(-rc));
}

static void
check_sum(const char *row, long sum, long n)
{
    long want = n * (n - 1) / 2;

    if (sum != want)
        die("%s: checksum %ld, want %ld", row, sum, want);
}

/* --- pingpong_unbuf: two goroutines bounce a value over two unbuffered
 * channels; ns per one-way handoff. */

struct pingpong {
    struct chan *ping, *pong;
    struct wg *done;
};

static void
pingpong_echo(void *arg)
{
    struct pingpong *pp = arg;
    long v;

    while (chan_recv(pp->ping, &v, NULL) == 0)
        must_send(pp->pong, &v);
    wg_done(pp->done);
}

static double
bench_pingpong(double scale)
{
    long n = count(200000, scale, 1000);
    struct pingpong pp = {must_chan(sizeof(long), 0), must_chan(sizeof(long), 0), must_wg()};
    int64_t t0, el;
    long v;

    wg_add(pp.done, 1);
    must_go(pingpong_echo, &pp);
    t0 = now_ns();
    for (long i = 0; i < n; i++) {
        must_send(pp.ping, &i);
        chan_recv(pp.pong, &v, NULL);
    }
    el = now_ns() - t0;
    chan_close(pp.ping);
    wg_wait(pp.done, NULL);
    chan_unref(pp.ping);
    chan_unref(pp.pong);
    wg_free(pp.done);
    return ns_per(el, 2 * n);
}

/* --- spsc_buf1024: one producer, one consumer, capacity 1024. */

struct spsc {
    struct chan *c;
    long n;
    struct wg *done; /* the producer has returned: s may go */
};

static void
spsc_produce(void *arg)
{
    struct spsc *s = arg;

    for (long i = 0; i < s->n; i++)
        must_send(s->c, &i);
    chan_close(s->c);
    wg_done(s->done);
}

static double
bench_spsc(double scale)
{
    struct spsc s = {must_chan(sizeof(long), 1024), count(2000000, scale, 1000), must_wg()};
    long v, sum = 0;
    int64_t t0, el;

    t0 = now_ns();
    wg_add(s.done, 1);
    must_go(spsc_produce, &s);
    while (chan_recv(s.c, &v, NULL) == 0)
        sum += v;
    el = now_ns() - t0;
    check_sum("spsc_buf1024", sum, s.n);
    wg_wait(s.done, NULL);
    wg_free(s.done);
    chan_unref(s.c);
    return ns_per(el, s.n);
}

/* --- mpmc4x4_buf1024: four producers and four consumers share one channel
 * of capacity 1024; the benchmark goroutine closes it after the producers. */

enum { MPMC_P = 4, MPMC_C = 4 };

struct mpmc {
    struct chan *c;
    long per; /* items per producer */
    struct wg *prod, *cons;
    long base[MPMC_P]; /* producer k sends base[k] .. base[k]+per-1 */
    long sum[MPMC_C];  /* consumer k's checksum */
};

struct mpmc_arg {
    struct mpmc *m;
    int k;
};

static void
mpmc_produce(void *arg)
{
    struct mpmc_arg *a = arg;
    struct mpmc *m = a->m;

    for (long i = m->base[a->k]; i < m->base[a->k] + m->per; i++)
        must_send(m->c, &i);
    wg_done(m->prod);
}

static void
mpmc_consume(void *arg)
{
    struct mpmc_arg *a = arg;
    long v, s = 0;

    while (chan_recv(a->m->c, &v, NULL) == 0)
        s += v;
    a->m->sum[a->k] = s;
    wg_done(a->m->cons);
}

static double
bench_mpmc(double scale)
{
    struct mpmc m = {.c = must_chan(sizeof(long), 1024),
                     .per = count(2000000, scale, 1000) / MPMC_P,
                     .prod = must_wg(),
                     .cons = must_wg()};
    struct mpmc_arg pa[MPMC_P], ca[MPMC_C];
    long n = m.per * MPMC_P, sum = 0;
    int64_t t0, el;

    t0 = now_ns();
    wg_add(m.prod, MPMC_P);
    for (int k = 0; k < MPMC_P; k++) {
        m.base[k] = k * m.per;
        pa[k] = (struct mpmc_arg){&m, k};
        must_go(mpmc_produce, &pa[k]);
    }
    wg_add(m.cons, MPMC_C);
    for (int k = 0; k < MPMC_C; k++) {
        ca[k] = (struct mpmc_arg){&m, k};
        must_go(mpmc_consume, &ca[k]);
    }
    wg_wait(m.prod, NULL);
    chan_close(m.c);
    wg_wait(m.cons, NULL);
    el = now_ns() - t0;
    for (int k = 0; k < MPMC_C; k++)
        sum += m.sum[k];
    check_sum("mpmc4x4_buf1024", sum, n);
    chan_unref(m.c);
    wg_free(m.prod);
    wg_free(m.cons);
    return ns_per(el, n);
}

/* --- spawn_exit_1m: GOMAXPROCS chains in which each goroutine starts the
 * next one and exits (Go's BenchmarkCreateGoroutines shape); 1M in all. */

/* One cache line per chain: the chains run on different workers, and Go's
 * version shares nothing between them (the count travels as an argument). */
struct chain {
    _Alignas(64) struct wg *done;
    long left; /* goroutines still to start after this one */
};

static void
chain_step(void *arg)
{
    struct chain *ch = arg;

    if (ch->left == 0) {
        wg_done(ch->done);
        return;
    }
    ch->left--;
    must_go(chain_step, ch); /* the next goroutine owns ch from here on */
}

static double
bench_spawn_chain(double scale)
{
    int procs = sched_threads();
    long per = count(1000000, scale, 1000) / procs;
    struct chain *ch = aligned_alloc(_Alignof(struct chain), (size_t)procs * sizeof(*ch));
    struct wg *done = must_wg();
    int64_t t0, el;

    if (!ch)
        die("out of memory");
    t0 = now_ns();
    wg_add(done, procs);
    for (int i = 0; i < procs; i++) {
        ch[i] = (struct chain){done, per - 1};
        must_go(chain_step, &ch[i]);
    }
    wg_wait(done, NULL);
    el = now_ns() - t0;
    wg_free(done);
    free(ch);
    return ns_per(el, per * procs);
}

/* --- spawn_wait_1m: one goroutine starts 1M goroutines in batches of
 * 10,000; each calls wg_done on the batch's wait group. */

static void
spawn_wait_done(void *arg)
{
    wg_done(arg);
}

static double
bench_spawn_wait(double scale)
{
    enum { BATCH = 10000 };
    long batches = count(1000000, scale, BATCH) / BATCH;
    struct wg *wg = must_wg();
    int64_t t0, el;

    t0 = now_ns();
    for (long b = 0; b < batches; b++) {
        wg_add(wg, BATCH);
        for (int i = 0; i < BATCH; i++)
            must_go(spawn_wait_done, wg);
        wg_wait(wg, NULL);
    }
    el = now_ns() - t0;
    wg_free(wg);
    return ns_per(el, batches * BATCH);
}

/* --- select4_uncontended: each of GOMAXPROCS goroutines owns a ring of four
 * channels of capacity 1 holding one token; each select receives the token
 * and passes it on. Exactly one case is ready (Go's
 * BenchmarkSelectUncontended with four cases). */

struct sel_ring {
    struct wg *done;
    long iters;
};

static void
sel_ring_run(void *arg)
{
    struct sel_ring *r = arg;
    struct chan *c[4];
    struct chan_case cases[4];
    long v = 0;

    for (int i = 0; i < 4; i++) {
        c[i] = must_chan(sizeof(long), 1);
        cases[i] = (struct chan_case){.c = c[i], .dir = CHAN_RECV, .elem = &v};
    }
    must_send(c[0], &v);
    for (long i = 0; i < r->iters; i++) {
        int k = chan_select(cases, 4, NULL, -1);

        if (k < 0)
            die("chan_select: %s", strerror(-k));
        must_send(c[(k + 1) & 3], &v);
    }
    for (int i = 0; i < 4; i++)
        chan_unref(c[i]);
    wg_done(r->done);
}

static double
bench_select_uncontended(double scale)
{
    int procs = sched_threads();
    long per = count(2000000, scale, 1000) / procs;
    struct sel_ring *r = calloc((size_t)procs, sizeof(*r));
    struct wg *done = must_wg();
    int64_t t0, el;

    if (!r)
        die("out of memory");
    t0 = now_ns();
    wg_add(done, procs);
    for (int i = 0; i < procs; i++) {
        r[i] = (struct sel_ring){done, per};
        must_go(sel_ring_run, &r[i]);
    }
    wg_wait(done, NULL);
    el = now_ns() - t0;
    wg_free(done);
    free(r);
    return ns_per(el, per * procs);
}

/* --- select4_blocking: a producer sends round-robin on four unbuffered
 * channels and the benchmark goroutine selects over all four. */

struct sel_feed {
    struct chan *c[4];
    long n;
    struct wg *done; /* the producer has returned: f may go */
};

static void
sel_feed_run(void *arg)
{
    struct sel_feed *f = arg;

    for (long i = 0; i < f->n; i++)
        must_send(f->c[i & 3], &i);
    wg_done(f->done);
}

static double
bench_select_blocking(double scale)
{
    struct sel_feed f = {.n = count(500000, scale, 1000), .done = must_wg()};
    struct chan_case cases[4];
    long v, sum = 0;
    int64_t t0, el;

    for (int i = 0; i < 4; i++) {
        f.c[i] = must_chan(sizeof(long), 0);
        cases[i] = (struct chan_case){.c = f.c[i], .dir = CHAN_RECV, .elem = &v};
    }
    t0 = now_ns();
    wg_add(f.done, 1);
    must_go(sel_feed_run, &f);
    for (long i = 0; i < f.n; i++) {
        int k = chan_select(cases, 4, NULL, -1);

        if (k < 0)
            die("chan_select: %s", strerror(-k));
        sum += v;
    }
    el = now_ns() - t0;
    check_sum("select4_blocking", sum, f.n);
    wg_wait(f.done, NULL);
    wg_free(f.done);
    for (int i = 0; i < 4; i++)
        chan_unref(f.c[i]);
    return ns_per(el, f.n);
}

/* --- ctx_cancel_fanout_10k: 10,000 goroutines wait on one context's done
 * channel; time from ctx_cancel until the last has counted down. */

struct parked {
    struct chan *wait; /* closed to release them */
    struct wg *started, *done;
};

static void
parked_run(void *arg)
{
    struct parked *p = arg;

    wg_done(p->started);
    chan_recv(p->wait, NULL, NULL); /* -EPIPE once closed */
    wg_done(p->done);
}

/* Starts n goroutines parked on p->wait and waits until they are parked. */
static void
parked_start(struct parked *p, long n)
{
    wg_add(p->started, (int)n);
    wg_add(p->done, (int)n);
    for (long i = 0; i < n; i++)
        must_go(parked_run, p);
    wg_wait(p->started, NULL);
    go_sleep(20, NULL); /* let the last ones reach their park */
}

static double
bench_cancel_fanout(double scale)
{
    long n = count(10000, scale, 100);
    struct ctx *ctx = ctx_with_cancel(NULL);
    struct parked p;
    int64_t t0, el;

    if (!ctx)
        die("ctx_with_cancel: out of memory");
    p = (struct parked){ctx_done(ctx), must_wg(), must_wg()};
    parked_start(&p, n);
    t0 = now_ns();
    ctx_cancel(ctx);
    wg_wait(p.done, NULL);
    el = now_ns() - t0;
    ctx_release(ctx);
    wg_free(p.started);
    wg_free(p.done);
    return ns_per(el, n);
}

/* --- sleep_100k_10ms: 100,000 goroutines each sleep 10 ms; wall time from
 * the first start until the last has finished (10 ms is the floor). */

static void
sleeper_run(void *arg)
{
    go_sleep(10, NULL);
    wg_done(arg);
}

static double
bench_sleep(double scale)
{
    long n = count(100000, scale, 100);
    struct wg *wg = must_wg();
    int64_t t0, el;

    t0 = now_ns();
    wg_add(wg, (int)n);
    for (long i = 0; i < n; i++)
        must_go(sleeper_run, wg);
    wg_wait(wg, NULL);
    el = now_ns() - t0;
    wg_free(wg);
    return (double)el / 1e6;
}

/* --- rss_parked_100k: resident memory added by 100,000 goroutines parked
 * in a channel receive, KiB each (in a fresh process). */

static long
resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident;

    if (!f)
        die("/proc/self/statm: %s", strerror(errno));
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        die("/proc/self/statm: unexpected format");
    fclose(f);
    return resident;
}

static double
bench_rss(double scale)
{
    long n = count(100000, scale, 100);
    struct parked p = {must_chan(0, 0), must_wg(), must_wg()};
    long before, after;

    before = resident_pages();
    parked_start(&p, n);
    after = resident_pages();
    chan_close(p.wait);
    wg_wait(p.done, NULL);
    chan_unref(p.wait);
    wg_free(p.started);
    wg_free(p.done);
    return (double)(after - before) * (double)sysconf(_SC_PAGESIZE) / 1024.0 / (double)n;
}

static const struct row rows[] = {
    {"pingpong_unbuf", "ns/handoff", false, bench_pingpong},
    {"spsc_buf1024", "ns/item", false, bench_spsc},
    {"mpmc4x4_buf1024", "ns/item", false, bench_mpmc},
    {"spawn_exit_1m", "ns/goroutine", false, bench_spawn_chain},
    {"spawn_wait_1m", "ns/goroutine", false, bench_spawn_wait},
    {"select4_uncontended", "ns/select", false, bench_select_uncontended},
    {"select4_blocking", "ns/select", false, bench_select_blocking},
    {"ctx_cancel_fanout_10k", "ns/woken", false, bench_cancel_fanout},
    {"sleep_100k_10ms", "ms/total", false, bench_sleep},
    {"rss_parked_100k", "KiB/goroutine", true, bench_rss},
};
enum { NROWS = sizeof(rows) / sizeof(rows[0]) };

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One run of `r` in a child process (this program with -child); returns
 * the value it prints. The calling goroutine blocks its worker meanwhile,
 * which is harmless here: nothing else is running. */
static double
run_isolated(const struct row *r, const struct opts *o)
{
    char exe[PATH_MAX], procs[16], scale[32], out[64];
    char *argv[] = {exe, "-c", (char *)r->name, "-p", procs, "-s", scale, NULL};
    posix_spawn_file_actions_t fa;
    ssize_t len, got = 0;
    int pfd[2], status, rc;
    pid_t pid;
    char *end;
    double v;

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len < 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    exe[len] = '\0';
    snprintf(procs, sizeof(procs), "%d", sched_threads());
    snprintf(scale, sizeof(scale), "%.17g", o->scale);
    if (pipe(pfd) < 0)
        die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    rc = posix_spawn(&pid, exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        die("%s: posix_spawn: %s", r->name, strerror(rc));
    close(pfd[1]);
    while (got < (ssize_t)sizeof(out) - 1 &&
           (len = read(pfd[0], out + got, sizeof(out) - 1 - (size_t)got)) > 0)
        got += len;
    close(pfd[0]);
    out[got] = '\0';
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s: child failed", r->name);
    v = strtod(out, &end);
    if (end == out)
        die("%s: child printed '%s'", r->name, out);
    return v;
}

static bool
wanted(const struct opts *o, const char *name)
{
    if (o->nwant == 0)
        return true;
    for (int i = 0; i < o->nwant; i++)
        if (strcmp(o->want[i], name) == 0)
            return true;
    return false;
}

static const struct row *
find_row(const char *name)
{
    for (int i = 0; i < NROWS; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

/* The benchmark program, run as the main goroutine. */
static void
bench_main(void *arg)
{
    struct opts *o = arg;
    double *v;

    if (o->child) {
        printf("%.3f\n", find_row(o->child)->run(o->scale));
        return;
    }
    v = calloc((size_t)o->runs, sizeof(*v));
    if (!v)
        die("out of memory");
    printf("# core_bench gomaxprocs=%d runs=%d scale=%g\n", sched_threads(), o->runs, o->scale);
    fflush(stdout);
    for (int i = 0; i < NROWS; i++) {
        const struct row *r = &rows[i];

        if (!wanted(o, r->name))
            continue;
        for (int k = 0; k < o->runs; k++)
            v[k] = r->isolate ? run_isolated(r, o) : r->run(o->scale);
        printf("%-24s %12.1f %s\n", r->name, median(v, o->runs), r->unit);
        fflush(stdout);
    }
    free(v);
}

static int
env_int(const char *name, int def)
{
    const char *s = getenv(name);
    int v = s ? atoi(s) : 0;

    return v > 0 ? v : def;
}

static void
usage(void)
{
    fputs("usage: core_bench [-p GOMAXPROCS] [-r RUNS] [-s SCALE] [ROW...] | -l\nrows:", stderr);
    for (int i = 0; i < NROWS; i++)
        fprintf(stderr, " %s", rows[i].name);
    fputc('\n', stderr);
    exit(2);
}

int
main(int argc, char **argv)
{
    struct opts o = {.procs = 0, .runs = env_int("BENCH_RUNS", 5), .scale = 1.0};
    int opt, rc;

    while ((opt = getopt(argc, argv, "lp:r:s:c:h")) != -1) {
        switch (opt) {
        case 'l':
            for (int i = 0; i < NROWS; i++)
                printf("%s\n", rows[i].name);
            return 0;
        case 'p':
            o.procs = atoi(optarg);
            break;
        case 'r':
            o.runs = atoi(optarg);
            break;
        case 's':
            o.scale = strtod(optarg, NULL);
            break;
        case 'c':
            o.child = optarg;
            break;
        default:
            usage();
        }
    }
    if (o.runs < 1 || o.scale <= 0 || o.procs < 0)
        usage();
    o.want = argv + optind;
    o.nwant = argc - optind;
    for (int i = 0; i < o.nwant; i++)
        if (!find_row(o.want[i]))
            usage();
    if (o.child && !find_row(o.child))
        usage();
    rc = sched_run_main(bench_main, &o, o.procs);
    if (rc < 0)
        die("sched_run_main: %s", strerror(-rc));
    return 0;
}
