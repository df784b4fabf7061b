/* bench/list: the cost of `list` pages as the cursor moves through a deep
 * queue (docs/performance.md). Submits N jobs (pipelined) to one queue of a
 * running chanqd, then lists them page by page, oldest first, timing each
 * call; prints the median and p99 time per page for each tenth of the
 * queue, so a cost that grew with the cursor's position would show as a
 * rising column. Then the same for a few page sizes at the far end, to
 * show the cost follows the page.
 *
 * With the server's PID (same machine) it also gives the server's CPU
 * time per page for each tenth: on a busy machine the wall time of a
 * long call grows with the time slices it waits for, its CPU does not.
 *
 *   bench/list HOST:PORT [JOBS (default 1000000)] [LIMIT (default 1000)] [PID] */
#include "chanq_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clients/chanq.h"

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The server's CPU time (user + system) in ms, or -1 without a pid. */
static double
server_cpu_ms(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = pid > 0 ? fopen(path, "r") : NULL;
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
pct(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static void
die(struct chanq_conn *c, const char *what)
{
    const struct chanq_error *e = chanq_last_error(c);
    fprintf(stderr, "bench/list: %s: %s: %s\n", what, e->code, e->message);
    exit(1);
}

static void
fill(struct chanq_conn *c, const char *queue, long jobs)
{
    enum { BATCH = 10000 };
    static const char *payloads[BATCH];
    static struct chanq_submit_result res[BATCH];
    for (int i = 0; i < BATCH; i++)
        payloads[i] = "{\"to\":\"someone@example.com\",\"n\":12345}";
    struct chanq_submit_opts o = {.queue = queue};
    double t0 = now_ms();
    for (long done = 0; done < jobs;) {
        size_t n = (size_t)(jobs - done < BATCH ? jobs - done : BATCH);
        long ok = chanq_submit_batch(c, &o, payloads, n, 256, res);
        chanq_submit_results_free(res, n);
        if (ok != (long)n)
            die(c, "submit");
        done += ok;
    }
    double s = (now_ms() - t0) / 1e3;
    printf("submitted %ld jobs in %.1f s (%.0f/s)\n", jobs, s, (double)jobs / s);
}

/* Lists the whole queue; t[i] gets page i's time. Returns the pages. */
static size_t
list_all(struct chanq_conn *c, const char *queue, int64_t limit, double *t, double *cpu,
         size_t cap, long *jobs_seen, long pid)
{
    char *cursor = NULL;
    size_t pages = 0;
    *jobs_seen = 0;
    do {
        struct chanq_list_opts lo = {.queue = queue, .state = "queued", .cursor = cursor,
                                     .limit = limit};
        json_t *jobs;
        char *next;
        double t0 = now_ms();
        if (chanq_list(c, &lo, &jobs, &next) < 0)
            die(c, "list");
        if (pages < cap) {
            t[pages] = now_ms() - t0;
            cpu[pages] = server_cpu_ms(pid);
        }
        pages++;
        *jobs_seen += (long)json_array_size(jobs);
        json_decref(jobs);
        free(cursor);
        cursor = next;
    } while (cursor);
    return pages < cap ? pages : cap;
}

static int64_t
server_rss(struct chanq_conn *c)
{
    json_t *st;
    if (chanq_stats(c, NULL, &st) < 0)
        die(c, "stats");
    int64_t rss = json_integer_value(json_object_get(st, "rss_bytes"));
    json_decref(st);
    return rss;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench/list HOST:PORT [JOBS] [LIMIT]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long jobs = argc > 2 ? atol(argv[2]) : 1000000;
    int64_t limit = argc > 3 ? atol(argv[3]) : 1000;
    long pid = argc > 4 ? atol(argv[4]) : 0;
    struct chanq_error err;
    struct chanq_connect_opts co = {.read_timeout_ms = 600000};
    struct chanq_conn *c = chanq_connect(argv[1], &co, &err);
    if (!c) {
        fprintf(stderr, "bench/list: %s: %s\n", argv[1], err.message);
        return 1;
    }
    const char *queue = "bench-list";
    if (chanq_declare(c, queue, jobs, 0, 0, NULL) < 0)
        die(c, "declare (use a fresh server)");
    int64_t rss0 = server_rss(c);
    fill(c, queue, jobs);
    int64_t rss1 = server_rss(c);
    printf("server RSS %.1f -> %.1f MiB: %.1f bytes per queued job\n", (double)rss0 / 1048576,
           (double)rss1 / 1048576, (double)(rss1 - rss0) / (double)jobs);
    size_t cap = (size_t)(jobs / limit + 2);
    double *t = malloc(cap * sizeof *t), *cpu = malloc(cap * sizeof *cpu);
    long seen;
    double t0 = now_ms(), cpu0 = server_cpu_ms(pid);
    size_t pages = list_all(c, queue, limit, t, cpu, cap, &seen, pid);
    double total = now_ms() - t0;
    printf("listed %ld jobs in %zu pages of %lld: %.1f s, %.2f ms per page\n", seen, pages,
           (long long)limit, total / 1e3, total / (double)pages);
    printf("%-22s %10s %10s %16s\n", "pages (cursor depth)", "median ms", "p99 ms",
           "server CPU ms/page");
    for (int d = 0; d < 10; d++) {
        size_t from = pages * (size_t)d / 10, to = pages * (size_t)(d + 1) / 10;
        if (to <= from)
            continue;
        double *v = malloc((to - from) * sizeof *v);
        memcpy(v, t + from, (to - from) * sizeof *v);
        double med = pct(v, to - from, 0.5), p99 = pct(v, to - from, 0.99);
        char label[48];
        snprintf(label, sizeof label, "%zu-%zu (%d%%)", from, to - 1, d * 10);
        double before = from ? cpu[from - 1] : cpu0;
        double per = pid > 0 ? (cpu[to - 1] - before) / (double)(to - from) : -1;
        printf("%-22s %10.2f %10.2f %16.2f\n", label, med, p99, per);
        free(v);
    }
    /* Page size at the deep end (a cursor 1000 jobs before the last): the
     * cost follows the page. */
    json_t *last;
    struct chanq_list_opts lo = {.queue = queue, .state = "queued", .newest = true, .limit = 1000};
    if (chanq_list(c, &lo, &last, NULL) < 0)
        die(c, "list");
    size_t nlast = json_array_size(last);
    char *probe = nlast ? strdup(json_string_value(
                              json_object_get(json_array_get(last, nlast - 1), "id")))
                        : NULL;
    json_decref(last);
    static const int64_t sizes[] = {10, 100, 999};
    for (size_t i = 0; i < 3; i++) {
        double v[21];
        for (int r = 0; r < 21; r++) {
            struct chanq_list_opts po = {.queue = queue, .state = "queued", .cursor = probe,
                                         .limit = sizes[i]};
            json_t *j;
            char *n;
            double s = now_ms();
            if (chanq_list(c, &po, &j, &n) < 0)
                die(c, "list");
            v[r] = now_ms() - s;
            json_decref(j);
            free(n);
        }
        printf("page of %4lld at the queue's far end: median %.2f ms\n", (long long)sizes[i],
               pct(v, 21, 0.5));
    }
    free(probe);
    free(t);
    free(cpu);
    chanq_conn_free(c);
    return 0;
}
