/* Scale and boundedness: many connections, many parked fetchers that all
 * go away (no goroutine left behind), and a producer flood against a slow
 * consumer (memory stays flat, throughput follows the consumer). */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

/* Sanitizer builds keep freed memory in quarantine: RSS says nothing there. */
#if defined(CHANQ_ASAN) || defined(CHANQ_TSAN)
static const bool rss_meaningful = false;
#else
static const bool rss_meaningful = true;
#endif
/* TSan counts every goroutine as a thread and dies past 8128 of them. */
#if defined(CHANQ_TSAN)
enum { MAX_PARKED = 2000 };
#else
enum { MAX_PARKED = 10000 };
#endif

/* How many sockets this process may open, raised to the hard limit. */
static int
fd_budget(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return (int)(rl.rlim_cur > 100000 ? 100000 : rl.rlim_cur) - 64;
}


static void
wait_stat(int fd, const char *queue, const char *field, long long want, int timeout_ms)
{
    int64_t until = harness_now_ms() + timeout_ms;
    while (harness_now_ms() < until) {
        long long v = queue ? queue_stat(fd, queue, field) : server_stat(fd, field);
        if (v == want)
            return;
        usleep(20 * 1000);
    }
    long long v = queue ? queue_stat(fd, queue, field) : server_stat(fd, field);
    ck_assert_msg(v == want, "%s stayed %lld, want %lld", field, v, want);
}

START_TEST(a_thousand_connections_submit_fetch_and_ack)
{
    int n = fd_budget() / 2;
    if (n > 1000)
        n = 1000;
    struct harness *h = start_daemon(NULL);
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++)
        fds[i] = dial(h);
    for (int i = 0; i < n; i++)
        send_line(fds[i], "{\"op\":\"submit\",\"queue\":\"many\",\"payload\":{\"n\":1}}");
    for (int i = 0; i < n; i++) {
        json_t *r = recv_json(fds[i]);
        ck_assert_msg(is_ok(r), "submit on connection %d failed", i);
        json_decref(r);
    }
    for (int i = 0; i < n; i++)
        send_line(fds[i], "{\"op\":\"fetch\",\"queues\":[\"many\"],\"timeout_ms\":5000}");
    for (int i = 0; i < n; i++) {
        json_t *r = recv_json(fds[i]);
        json_t *job = json_array_get(json_object_get(r, "jobs"), 0);
        ck_assert_msg(job, "connection %d fetched nothing", i);
        char line[128];
        snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\"}",
                 json_string_value(json_object_get(job, "id")));
        send_line(fds[i], line);
        json_decref(r);
    }
    for (int i = 0; i < n; i++) {
        json_t *r = recv_json(fds[i]);
        ck_assert_msg(is_ok(r), "ack on connection %d failed", i);
        json_decref(r);
    }
    ck_assert_int_eq(queue_stat(fds[0], "many", "acked"), n);
    ck_assert_int_eq(server_stat(fds[0], "connections"), n);
    for (int i = 0; i < n; i++)
        harness_close(fds[i]);
    free(fds);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

START_TEST(ten_thousand_parked_fetchers_leave_no_goroutine_behind)
{
    int n = fd_budget() - 200;
    if (n > MAX_PARKED)
        n = MAX_PARKED;
    ck_assert_msg(n >= 1000, "only %d file descriptors available", n);
    const char *args[] = {"--max-connections", "20000", NULL};
    struct harness *h = start_daemon(args);
    int admin = dial(h);
    json_decref(req_ok(admin, "{\"op\":\"declare\",\"queue\":\"idle\"}"));
    long long base_g = server_stat(admin, "goroutines");
    long long base_rss = daemon_rss(h);
    int *fds = calloc((size_t)n, sizeof *fds);
    for (int i = 0; i < n; i++) {
        fds[i] = dial(h);
        send_line(fds[i], "{\"op\":\"fetch\",\"queues\":[\"idle\"]}");
    }
    wait_stat(admin, "idle", "waiting_fetchers", n, 30000);
    long long peak_g = server_stat(admin, "goroutines");
    long long peak_rss = daemon_rss(h);
    ck_assert_msg(peak_g >= base_g + n, "goroutines %lld with %d fetchers parked", peak_g, n);
    for (int i = 0; i < n; i++)
        harness_close(fds[i]);
    free(fds);
    wait_stat(admin, "idle", "waiting_fetchers", 0, 30000);
    wait_stat(admin, NULL, "goroutines", base_g, 30000);
    /* Freed stacks are handed back once the pool has been quiet for a
     * moment (docs/runtime.md): give it up to 5 s. */
    long long want = base_rss + (peak_rss - base_rss) / 2;
    long long after_rss = daemon_rss(h);
    for (int i = 0; i < 50 && rss_meaningful && after_rss >= want; i++) {
        usleep(100 * 1000);
        after_rss = daemon_rss(h);
    }
    fprintf(stderr, "scale: %d parked fetchers: goroutines %lld -> %lld -> %lld, "
                    "RSS %lld -> %lld -> %lld KiB\n",
            n, base_g, peak_g, server_stat(admin, "goroutines"), base_rss / 1024,
            peak_rss / 1024, after_rss / 1024);
    ck_assert_msg(!rss_meaningful || after_rss < want,
                  "RSS did not drop back: %lld -> %lld -> %lld", base_rss, peak_rss, after_rss);
    harness_close(admin);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

/* A producer that pipelines submits as fast as TCP lets it. */
struct producer {
    int fd;
    char *batch;     /* many submit lines */
    size_t len, off; /* what is left to write */
    long long ok, failed;
    char rbuf[65536];
    size_t rlen;
};

static void
producer_pump(struct producer *p)
{
    while (p->off < p->len) {
        ssize_t w = write(p->fd, p->batch + p->off, p->len - p->off);
        if (w <= 0)
            break;
        p->off += (size_t)w;
    }
    if (p->off == p->len)
        p->off = 0; /* keep the flood going */
    ssize_t r;
    while ((r = read(p->fd, p->rbuf + p->rlen, sizeof p->rbuf - p->rlen)) > 0) {
        p->rlen += (size_t)r;
        char *start = p->rbuf, *nl;
        while ((nl = memchr(start, '\n', p->rlen - (size_t)(start - p->rbuf)))) {
            if (strncmp(start, "{\"ok\":true", 10) == 0)
                p->ok++;
            else
                p->failed++;
            start = nl + 1;
        }
        p->rlen -= (size_t)(start - p->rbuf);
        memmove(p->rbuf, start, p->rlen);
    }
}

START_TEST(a_producer_flood_against_a_slow_consumer_stays_bounded)
{
    enum { PRODUCERS = 8, CAPACITY = 50, RUN_MS = 3000 };
    struct harness *h = start_daemon(NULL);
    int admin = dial(h);
    json_decref(req_ok(admin, "{\"op\":\"declare\",\"queue\":\"flood\",\"capacity\":%d}", CAPACITY));
    struct producer ps[PRODUCERS];
    char line[256];
    int len = snprintf(line, sizeof line,
                       "{\"op\":\"submit\",\"queue\":\"flood\",\"payload\":\"%0100d\"}\n", 0);
    for (int i = 0; i < PRODUCERS; i++) {
        memset(&ps[i], 0, sizeof ps[i]);
        ps[i].fd = dial(h);
        fcntl(ps[i].fd, F_SETFL, O_NONBLOCK);
        ps[i].len = (size_t)len * 1000;
        ps[i].batch = malloc(ps[i].len);
        for (int k = 0; k < 1000; k++)
            memcpy(ps[i].batch + (size_t)k * (size_t)len, line, (size_t)len);
    }
    int consumer = dial(h);
    long long acked = 0, rss_1s = 0;
    int64_t start = harness_now_ms();
    while (harness_now_ms() - start < RUN_MS) {
        for (int i = 0; i < PRODUCERS; i++)
            producer_pump(&ps[i]);
        char *id = fetch_one(consumer, "flood", 0);
        if (id) {
            json_decref(req_ok(consumer, "{\"op\":\"ack\",\"id\":\"%s\"}", id));
            acked++;
            free(id);
        }
        if (!rss_1s && harness_now_ms() - start >= 1000)
            rss_1s = daemon_rss(h);
        usleep(2000); /* the slow consumer */
    }
    long long rss_end = daemon_rss(h);
    long long depth = queue_stat(admin, "flood", "depth");
    long long waiting = queue_stat(admin, "flood", "waiting_submitters");
    long long submitted = queue_stat(admin, "flood", "submitted");
    long long ok = 0;
    for (int i = 0; i < PRODUCERS; i++)
        ok += ps[i].ok;
    fprintf(stderr, "flood: acked %lld, submitted %lld (answered ok %lld), depth %lld, "
                    "waiting submitters %lld, RSS %lld -> %lld KiB\n",
            acked, submitted, ok, depth, waiting, rss_1s / 1024, rss_end / 1024);
    ck_assert_msg(acked > 100, "the consumer only acked %lld", acked);
    ck_assert_msg(depth == CAPACITY, "depth %lld is not pinned at capacity %d", depth, CAPACITY);
    ck_assert_msg(waiting >= 1, "no submit is parked on the full queue");
    ck_assert_msg(submitted <= acked + CAPACITY + PRODUCERS,
                  "submits (%lld) ran ahead of the consumer (%lld acked)", submitted, acked);
    ck_assert_msg(!rss_meaningful || rss_end < rss_1s + 4 * 1024 * 1024, "RSS grew from %lld to %lld under the flood",
                  rss_1s, rss_end);
    for (int i = 0; i < PRODUCERS; i++) {
        harness_close(ps[i].fd);
        free(ps[i].batch);
    }
    harness_close(consumer);
    harness_close(admin);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
scale_suite(void)
{
    Suite *s = suite_create("daemon_scale");
    TCase *tc = tcase_create("scale");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, a_thousand_connections_submit_fetch_and_ack);
    tcase_add_test(tc, ten_thousand_parked_fetchers_leave_no_goroutine_behind);
    tcase_add_test(tc, a_producer_flood_against_a_slow_consumer_stays_bounded);
    suite_add_tcase(s, tc);
    return s;
}
