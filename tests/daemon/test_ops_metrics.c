/* daemon/metrics.c and daemon/http.c with a fake stats snapshot: the
 * Prometheus rendering (escaping, counters, the histogram), checked line by
 * line (tests/daemon/test_promcheck.c puts it through the strict checker);
 * the endpoint's routes over a real socket. */
#include "chanq_config.h"

#include <arpa/inet.h>
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon/http.h"
#include "daemon/page_token.h"
#include "daemon/metrics.h"
#include "tests/daemon/metrics_fake.h"
#include "tests/ops/unit_suites.h"

static json_t *
fake_snapshot(void *arg)
{
    atomic_int *calls = arg;
    if (calls)
        atomic_fetch_add(calls, 1);
    return json_loads(metrics_fake_doc, 0, NULL);
}

static void
assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    ck_abort_msg("line '%s' missing from:\n%s", line, text);
}

START_TEST(every_number_becomes_a_described_metric)
{
    char *t = metrics_render_fake();
    assert_line(t, "# HELP chanq_uptime_seconds Seconds since chanqd started.");
    assert_line(t, "# TYPE chanq_uptime_seconds gauge");
    assert_line(t, "chanq_uptime_seconds 12");
    assert_line(t, "chanq_connections 3");
    assert_line(t, "chanq_goroutines 40");
    assert_line(t, "chanq_threads 2");
    assert_line(t, "chanq_resident_memory_bytes 1048576");
    assert_line(t, "chanq_build_info{version=\"0.1.0\"} 1");
    assert_line(t, "chanq_jobs{state=\"queued\"} 5");
    assert_line(t, "chanq_journal_bytes 4096");
    assert_line(t, "chanq_journal_last_fsync_seconds 0.00042");
    assert_line(t, "# TYPE chanq_journal_records_total counter");
    assert_line(t, "chanq_journal_records_total 900");
    assert_line(t, "chanq_journal_batches_total 30");
    assert_line(t, "chanq_journal_batch_wait_seconds_total 1.5");
    assert_line(t, "chanq_journal_fsync_policy{policy=\"always\"} 1");
    assert_line(t, "# TYPE chanq_queue_submitted_total counter");
    assert_line(t, "chanq_queue_capacity{queue=\"mail\"} 10");
    assert_line(t, "chanq_queue_waiting_fetchers{queue=\"mail\"} 4");
    assert_line(t, "chanq_queue_closed{queue=\"mail\"} 1");
    assert_line(t, "chanq_queue_paused{queue=\"mail\"} 0");
    assert_line(t, "chanq_queue_rejected_full_total{queue=\"mail\"} 3");
    assert_line(t, "chanq_queue_blocked_seconds_total{queue=\"mail\"} 1.5");
    free(t);
}
END_TEST

/* server.jobs holds counts by state, totals and bytes: each kind is a
 * family of its own, with the right type, and nothing else becomes a
 * state of chanq_jobs. */
START_TEST(job_figures_get_one_family_per_meaning)
{
    char *t = metrics_render_fake();
    assert_line(t, "# TYPE chanq_jobs gauge");
    assert_line(t, "chanq_jobs{state=\"queued\"} 5");
    assert_line(t, "chanq_jobs{state=\"dead\"} 2");
    assert_line(t, "# TYPE chanq_jobs_finished_total counter");
    assert_line(t, "chanq_jobs_finished_total{state=\"done\"} 7");
    assert_line(t, "chanq_jobs_finished_total{state=\"cancelled\"} 1");
    assert_line(t, "# TYPE chanq_jobs_tracked gauge");
    assert_line(t, "chanq_jobs_tracked 16");
    assert_line(t, "# TYPE chanq_idempotency_keys gauge");
    assert_line(t, "chanq_idempotency_keys 6");
    assert_line(t, "# TYPE chanq_payload_bytes gauge");
    assert_line(t, "chanq_payload_bytes 2048");
    for (const char *p = t; (p = strstr(p, "chanq_jobs{state=\"")); p++) {
        const char *s = p + strlen("chanq_jobs{state=\"");
        ck_assert_msg(strncmp(s, "queued\"", 7) == 0 || strncmp(s, "reserved\"", 9) == 0 ||
                          strncmp(s, "delayed\"", 8) == 0 || strncmp(s, "dead\"", 5) == 0,
                      "chanq_jobs has a state that is not a live state: %.40s", p);
    }
    free(t);
}
END_TEST

/* Every counter's name ends in _total (Prometheus' naming rule). */
START_TEST(every_counter_ends_in_total)
{
    char *t = metrics_render_fake();
    int counters = 0;
    for (const char *p = t; (p = strstr(p, "# TYPE ")); p++) {
        const char *name = p + 7, *sp = strchr(name, ' ');
        ck_assert_msg(sp, "bad TYPE line");
        if (strncmp(sp, " counter\n", 9) != 0)
            continue;
        counters++;
        ck_assert_msg(sp - name > 6 && strncmp(sp - 6, "_total", 6) == 0,
                      "counter %.*s does not end in _total", (int)(sp - name), name);
    }
    ck_assert_msg(counters >= 10, "only %d counters rendered", counters);
    free(t);
}
END_TEST

START_TEST(queue_age_and_run_time_are_in_seconds)
{
    char *t = metrics_render_fake();
    assert_line(t, "# TYPE chanq_queue_oldest_job_age_seconds gauge");
    assert_line(t, "chanq_queue_oldest_job_age_seconds{queue=\"mail\"} 2.5");
    assert_line(t, "chanq_queue_concurrency_limit{queue=\"mail\"} 3");
    assert_line(t, "chanq_queue_rate_tokens{queue=\"mail\"} 7");
    assert_line(t, "# TYPE chanq_job_run_seconds histogram");
    assert_line(t, "chanq_job_run_seconds_bucket{queue=\"mail\",le=\"0.005\"} 60");
    assert_line(t, "chanq_job_run_seconds_bucket{queue=\"mail\",le=\"1\"} 78");
    assert_line(t, "chanq_job_run_seconds_bucket{queue=\"mail\",le=\"+Inf\"} 80");
    assert_line(t, "chanq_job_run_seconds_sum{queue=\"mail\"} 9");
    assert_line(t, "chanq_job_run_seconds_count{queue=\"mail\"} 80");
    ck_assert_msg(!strstr(t, "chanq_job_run_seconds_bucket{queue=\"we"),
                  "a queue without a histogram got one");
    free(t);
}
END_TEST

START_TEST(queue_names_are_escaped_in_labels)
{
    char *t = metrics_render_fake();
    assert_line(t, "chanq_queue_depth{queue=\"we\\\"ird\\\\q\\nname\"} 1");
    assert_line(t, "chanq_queue_paused{queue=\"we\\\"ird\\\\q\\nname\"} 1");
    ck_assert_msg(!strstr(t, "chanq_queue_capacity{queue=\"we"),
                  "a field the queue lacks was rendered");
    free(t);
}
END_TEST

START_TEST(fsync_latency_is_a_cumulative_histogram_in_seconds)
{
    char *t = metrics_render_fake();
    assert_line(t, "# TYPE chanq_journal_fsync_duration_seconds histogram");
    assert_line(t, "chanq_journal_fsync_duration_seconds_bucket{le=\"0.0001\"} 2");
    assert_line(t, "chanq_journal_fsync_duration_seconds_bucket{le=\"0.001\"} 7");
    assert_line(t, "chanq_journal_fsync_duration_seconds_bucket{le=\"0.01\"} 8");
    assert_line(t, "chanq_journal_fsync_duration_seconds_bucket{le=\"+Inf\"} 9");
    assert_line(t, "chanq_journal_fsync_duration_seconds_sum 0.5");
    assert_line(t, "chanq_journal_fsync_duration_seconds_count 9");
    free(t);
}
END_TEST

START_TEST(a_malformed_histogram_is_left_out)
{
    json_t *doc = json_loads("{\"server\":{\"journal\":{\"fsync_hist\":{\"le_us\":[10,5],"
                             "\"counts\":[1,1],\"sum_us\":1,\"count\":2}}}}",
                             0, NULL);
    size_t len;
    char *t = metrics_render(doc, &len);
    json_decref(doc);
    ck_assert_msg(t && !strstr(t, "fsync_duration"), "decreasing bounds were rendered");
    free(t);
    doc = json_loads("{\"server\":{\"journal\":{\"fsync_hist\":{\"le_us\":[5,10],"
                     "\"counts\":[3,1],\"sum_us\":1,\"count\":3}}}}",
                     0, NULL);
    t = metrics_render(doc, &len);
    json_decref(doc);
    ck_assert_msg(t && !strstr(t, "fsync_duration"), "non-cumulative counts were rendered");
    free(t);
}
END_TEST

/* The HTTP endpoint, over a socket: a client thread asks while the test
 * runs the loop. */

struct http_fixture {
    struct event_base *base;
    struct http *http;
    atomic_int calls;     /* snapshot calls */
    bool stopping;        /* http_unhealthy_fn says "stopping" */
    bool fail_snapshot;   /* the snapshot returns NULL */
};

static json_t *
fixture_snapshot(void *arg)
{
    struct http_fixture *f = arg;
    atomic_fetch_add(&f->calls, 1);
    return f->fail_snapshot ? NULL : json_loads(metrics_fake_doc, 0, NULL);
}

static const char *
fixture_stopping(void *arg)
{
    return ((struct http_fixture *)arg)->stopping ? "stopping" : NULL;
}

struct fetch {
    int port;
    const char *request; /* full HTTP request text */
    char response[65536];
    atomic_bool done;
};

static void *
fetch_thread(void *arg)
{
    struct fetch *fe = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fe->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t off = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, fe->request, strlen(fe->request)) == (ssize_t)strlen(fe->request)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (off < sizeof fe->response - 1 && poll(&p, 1, 5000) == 1) {
            ssize_t r = read(fd, fe->response + off, sizeof fe->response - 1 - off);
            if (r <= 0)
                break;
            off += (size_t)r;
        }
    }
    fe->response[off] = '\0';
    close(fd);
    atomic_store(&fe->done, true);
    return NULL;
}

/* Sends request to the fixture's endpoint while running its loop here;
 * returns the whole response (static buffer of fe). */
static const char *
http_fetch(struct http_fixture *f, struct fetch *fe, const char *request)
{
    memset(fe, 0, sizeof *fe);
    fe->port = http_port(f->http);
    fe->request = request;
    pthread_t t;
    ck_assert_msg(pthread_create(&t, NULL, fetch_thread, fe) == 0, "pthread_create");
    for (int i = 0; i < 5000 && !atomic_load(&fe->done); i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
    pthread_join(t, NULL);
    return fe->response;
}

static void
fixture_start(struct http_fixture *f)
{
    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->http = http_new(f->base, "127.0.0.1:0", fixture_snapshot, fixture_stopping, f);
    ck_assert_msg(f->http && http_port(f->http) > 0, "http_new failed");
}

static void
fixture_stop(struct http_fixture *f)
{
    http_free(f->http);
    event_base_free(f->base);
}

#define GET(path) "GET " path " HTTP/1.0\r\nHost: x\r\n\r\n"

START_TEST(metrics_route_serves_the_text_format)
{
    struct http_fixture f;
    static struct fetch fe;
    fixture_start(&f);
    const char *r = http_fetch(&f, &fe, GET("/metrics"));
    ck_assert_msg(strncmp(r, "HTTP/1.0 200", 12) == 0 || strncmp(r, "HTTP/1.1 200", 12) == 0,
                  "status line: %.40s", r);
    ck_assert_msg(strstr(r, "Content-Type: text/plain; version=0.0.4"), "content type: %s", r);
    const char *body = strstr(r, "\r\n\r\n");
    /* The body is the renderer's text as is (check_promcheck checks that). */
    char *want = metrics_render_fake();
    ck_assert_msg(body && strcmp(body + 4, want) == 0, "body differs from the rendering: %s", r);
    free(want);
    ck_assert_msg(atomic_load(&f.calls) == 1, "snapshot called %d times", atomic_load(&f.calls));
    fixture_stop(&f);
}
END_TEST

START_TEST(stats_route_serves_the_snapshot_as_json)
{
    struct http_fixture f;
    static struct fetch fe;
    fixture_start(&f);
    const char *r = http_fetch(&f, &fe, GET("/stats"));
    ck_assert_msg(strstr(r, " 200 ") && strstr(r, "Content-Type: application/json"), "%s", r);
    const char *body = strstr(r, "\r\n\r\n");
    json_t *got = body ? json_loads(body + 4, 0, NULL) : NULL;
    json_t *want = json_loads(metrics_fake_doc, 0, NULL);
    ck_assert_msg(got && json_equal(got, want), "/stats body differs: %s", body ? body : r);
    json_decref(got);
    json_decref(want);
    fixture_stop(&f);
}
END_TEST

START_TEST(healthz_says_ok_then_503_while_stopping)
{
    struct http_fixture f;
    static struct fetch fe;
    fixture_start(&f);
    const char *r = http_fetch(&f, &fe, GET("/healthz"));
    ck_assert_msg(strstr(r, " 200 ") && strstr(r, "\r\n\r\nok\n"), "healthz: %s", r);
    f.stopping = true;
    r = http_fetch(&f, &fe, GET("/healthz"));
    ck_assert_msg(strstr(r, " 503 "), "healthz while stopping: %s", r);
    ck_assert_msg(atomic_load(&f.calls) == 0, "healthz built a snapshot");
    fixture_stop(&f);
}
END_TEST

START_TEST(unknown_paths_methods_and_failed_snapshots_get_errors)
{
    struct http_fixture f;
    static struct fetch fe;
    fixture_start(&f);
    const char *r = http_fetch(&f, &fe, GET("/nope"));
    ck_assert_msg(strstr(r, " 404 "), "unknown path: %s", r);
    r = http_fetch(&f, &fe, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    ck_assert_msg(strstr(r, " 405 ") || strstr(r, " 501 "), "POST: %s", r);
    f.fail_snapshot = true;
    r = http_fetch(&f, &fe, GET("/metrics"));
    ck_assert_msg(strstr(r, " 503 "), "failed snapshot: %s", r);
    r = http_fetch(&f, &fe, GET("/metrics?x=1"));
    ck_assert_msg(strstr(r, " 503 "), "query string not routed: %s", r);
    fixture_stop(&f);
}
END_TEST

/* The page's token (the meta tag's content) of response r into out. */
static void
page_token_of(const char *r, char out[PAGE_TOKEN_LEN + 1])
{
    static const char meta[] = "name=\"chanq-page-token\" content=\"";
    const char *p = strstr(r, meta);
    ck_assert_msg(p, "no page token tag: %.300s", r);
    p += sizeof meta - 1;
    ck_assert_msg(strspn(p, "0123456789abcdef") == PAGE_TOKEN_LEN && p[PAGE_TOKEN_LEN] == '"',
                  "page token: %.40s", p);
    memcpy(out, p, PAGE_TOKEN_LEN);
    out[PAGE_TOKEN_LEN] = '\0';
}

START_TEST(each_page_gets_its_own_token_and_history_needs_one_set)
{
    struct http_fixture f;
    static struct fetch fe;
    fixture_start(&f);
    char a[PAGE_TOKEN_LEN + 1], b[PAGE_TOKEN_LEN + 1];
    const char *r = http_fetch(&f, &fe, GET("/"));
    ck_assert_msg(strstr(r, " 200 ") && !strstr(r, "@CHANQ_PAGE_TOKEN@"), "page: %.200s", r);
    page_token_of(r, a);
    page_token_of(http_fetch(&f, &fe, GET("/")), b);
    ck_assert_msg(strcmp(a, b) != 0, "two pages got the same token %s", a);
    r = http_fetch(&f, &fe, GET("/admin"));
    ck_assert_msg(strstr(r, "\"admin\":false") && strstr(r, "\"page_token\":\""), "%s", r);
    r = http_fetch(&f, &fe, GET("/history"));
    ck_assert_msg(strstr(r, " 404 ") && strstr(r, "not_found"), "history unset: %s", r);
    r = http_fetch(&f, &fe,
                   "POST /admin/pause?queue=q HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}");
    ck_assert_msg(strstr(r, " 403 ") && strstr(r, "--http-admin"), "admin off: %s", r);
    fixture_stop(&f);
}
END_TEST

START_TEST(a_bad_address_is_refused)
{
    struct event_base *base = event_base_new();
    ck_assert_msg(!http_new(base, "nonsense", fake_snapshot, NULL, NULL), "bad address accepted");
    ck_assert_msg(!http_new(base, "192.0.2.1:1", fake_snapshot, NULL, NULL),
                  "an address we do not have was bound");
    event_base_free(base);
}
END_TEST

Suite *
metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("render");
    tcase_add_test(tc, every_number_becomes_a_described_metric);
    tcase_add_test(tc, job_figures_get_one_family_per_meaning);
    tcase_add_test(tc, every_counter_ends_in_total);
    tcase_add_test(tc, queue_age_and_run_time_are_in_seconds);
    tcase_add_test(tc, queue_names_are_escaped_in_labels);
    tcase_add_test(tc, fsync_latency_is_a_cumulative_histogram_in_seconds);
    tcase_add_test(tc, a_malformed_histogram_is_left_out);
    suite_add_tcase(s, tc);
    return s;
}

Suite *
http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("routes");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, metrics_route_serves_the_text_format);
    tcase_add_test(tc, stats_route_serves_the_snapshot_as_json);
    tcase_add_test(tc, healthz_says_ok_then_503_while_stopping);
    tcase_add_test(tc, unknown_paths_methods_and_failed_snapshots_get_errors);
    tcase_add_test(tc, each_page_gets_its_own_token_and_history_needs_one_set);
    tcase_add_test(tc, a_bad_address_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
