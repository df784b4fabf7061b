/* Compaction under churn: producers and workers on their own connections
 * keep submitting, acking, nacking and holding jobs while the journal
 * compacts again and again (by its policy, or at random moments through the
 * CHANQ_TEST_COMPACT_MS seam); then a clean restart and a kill -9 restart
 * must bring back exactly the jobs that were never acked. */
#include "chanq_config.h"

#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/daemon/suites.h"
#include "tests/daemon/util.h"

#if defined(CHANQ_ASAN) || defined(CHANQ_TSAN)
/* The sanitizers make the daemon ~3x slower: a third of the jobs, and a
 * journal that compacts at a third of the size. */
enum { SCALE = 3 };
#define SEGMENT_SIZE "320K"
#define COMPACT_SIZE "640K"
#else
enum { SCALE = 1 };
#define SEGMENT_SIZE "1M"
#define COMPACT_SIZE "2M"
#endif

enum { PRODUCERS = 4, WORKERS = 4, WINDOW = 32, LINE_BUF = 1 << 16 };
#define QUEUE "churn"

/* What the client knows about each job key from the answers it received. */
enum {
    K_SENT = 1,      /* submit sent */
    K_SUBMIT_OK = 2, /* submit answered ok */
    K_ACK_SENT = 4,  /* ack sent */
    K_ACK_OK = 8,    /* ack answered ok: the job must never be delivered again */
    K_HELD = 16,     /* delivered and kept reserved on purpose */
};

struct ledger {
    int nkeys;
    unsigned char *state;  /* per key: K_* bits */
    uint16_t *attempt;     /* per key: attempt of its latest delivery */
    int revived;           /* deliveries of acked jobs (must stay 0) */
    int answered;          /* submit answers received */
    bool stopping;         /* workers send no new fetch */
};

struct peer {
    int fd;
    char buf[LINE_BUF];
    size_t len;
    int inflight;  /* producers: submits without an answer */
    bool fetching; /* workers: a fetch is out */
};

static void
ledger_init(struct ledger *l, int nkeys)
{
    *l = (struct ledger){.nkeys = nkeys,
                         .state = calloc((size_t)nkeys, 1),
                         .attempt = calloc((size_t)nkeys, sizeof(uint16_t))};
    ck_assert_msg(l->state && l->attempt, "out of memory");
}

static void
ledger_free(struct ledger *l)
{
    free(l->state);
    free(l->attempt);
}

static json_int_t
job_key(const json_t *job)
{
    return json_integer_value(json_object_get(json_object_get(job, "payload"), "k"));
}

/* Reads what is available on p and hands each complete line to fn. */
static void
drain(struct peer *p, void (*fn)(struct ledger *, struct peer *, json_t *), struct ledger *l)
{
    for (;;) {
        ssize_t r = read(p->fd, p->buf + p->len, sizeof p->buf - p->len);
        if (r <= 0)
            return;
        p->len += (size_t)r;
        char *start = p->buf, *nl;
        while ((nl = memchr(start, '\n', p->len - (size_t)(start - p->buf)))) {
            *nl = '\0';
            json_t *j = json_loads(start, 0, NULL);
            if (j)
                fn(l, p, j);
            json_decref(j);
            start = nl + 1;
        }
        p->len -= (size_t)(start - p->buf);
        memmove(p->buf, start, p->len);
    }
}

static void
on_submit_answer(struct ledger *l, struct peer *p, json_t *r)
{
    json_int_t k = json_integer_value(json_object_get(r, "rid"));
    p->inflight--;
    l->answered++;
    if (is_ok(r) && k >= 0 && k < l->nkeys)
        l->state[k] |= K_SUBMIT_OK;
}

static void
send_fetch(struct peer *p)
{
    p->fetching = true;
    send_line(p->fd, "{\"op\":\"fetch\",\"queues\":[\"" QUEUE "\"],\"count\":8,"
                     "\"timeout_ms\":20,\"rid\":\"f\"}");
}

/* One delivery: one job in ten is held, one in seven is nacked once, the
 * rest are acked. Answers carry the key in the rid: "a<k>" or "n<k>". */
static void
work_on(struct ledger *l, struct peer *p, const json_t *job)
{
    json_int_t k = job_key(job);
    ck_assert_msg(k >= 0 && k < l->nkeys, "a job with an unknown key came");
    if (l->state[k] & K_ACK_OK)
        l->revived++;
    int attempt = (int)json_integer_value(json_object_get(job, "attempt"));
    l->attempt[k] = (uint16_t)attempt;
    const char *id = json_string_value(json_object_get(job, "id"));
    char line[160];
    if (k % 10 == 0 && !(l->state[k] & K_HELD)) {
        l->state[k] |= K_HELD;
        return;
    }
    if (k % 7 == 3 && attempt == 1) {
        snprintf(line, sizeof line,
                 "{\"op\":\"nack\",\"id\":\"%s\",\"delay_ms\":0,\"error\":\"again\",\"rid\":\"n%lld\"}",
                 id, (long long)k);
    } else {
        snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\",\"rid\":\"a%lld\"}", id,
                 (long long)k);
        l->state[k] |= K_ACK_SENT;
    }
    send_line(p->fd, line);
}

static void
on_worker_answer(struct ledger *l, struct peer *p, json_t *r)
{
    const char *rid = json_string_value(json_object_get(r, "rid"));
    if (!rid)
        return; /* an event */
    if (rid[0] == 'a') {
        long long k = atoll(rid + 1);
        if (is_ok(r) && k >= 0 && k < l->nkeys)
            l->state[k] |= K_ACK_OK;
        return;
    }
    if (rid[0] != 'f')
        return; /* a nack's answer */
    p->fetching = false;
    json_t *jobs = json_object_get(r, "jobs");
    for (size_t i = 0; i < json_array_size(jobs); i++)
        work_on(l, p, json_array_get(jobs, i));
    if (!l->stopping)
        send_fetch(p);
}

static bool
workers_idle(const struct peer *work)
{
    for (int i = 0; i < WORKERS; i++)
        if (work[i].fetching)
            return false;
    return true;
}

static void
poll_and_drain(struct ledger *l, struct peer *prod, struct peer *work)
{
    struct pollfd pfd[PRODUCERS + WORKERS];
    for (int i = 0; i < PRODUCERS + WORKERS; i++)
        pfd[i] = (struct pollfd){i < PRODUCERS ? prod[i].fd : work[i - PRODUCERS].fd, POLLIN, 0};
    poll(pfd, PRODUCERS + WORKERS, 5);
    for (int i = 0; i < PRODUCERS; i++)
        drain(&prod[i], on_submit_answer, l);
    for (int i = 0; i < WORKERS; i++)
        drain(&work[i], on_worker_answer, l);
}

static void
peers_dial(struct harness *h, struct peer *ps, int n)
{
    for (int i = 0; i < n; i++) {
        ps[i] = (struct peer){.fd = dial(h)};
        fcntl(ps[i].fd, F_SETFL, O_NONBLOCK);
    }
}

static void
peers_close(struct peer *ps, int n)
{
    for (int i = 0; i < n; i++)
        harness_close(ps[i].fd);
}

/* Keys [first, last) not yet sent go out, WINDOW in flight per producer. */
static int
produce(struct ledger *l, struct peer *prod, int next, int last)
{
    for (int i = 0; i < PRODUCERS; i++) {
        for (; prod[i].inflight < WINDOW && next < last; next++) {
            char line[192];
            snprintf(line, sizeof line,
                     "{\"op\":\"submit\",\"queue\":\"" QUEUE "\",\"payload\":{\"k\":%d,"
                     "\"pad\":\"%048d\"},\"rid\":%d}",
                     next, next, next);
            l->state[next] |= K_SENT;
            prod[i].inflight++;
            if (send_line(prod[i].fd, line) < 0)
                return next;
        }
    }
    return next;
}

static bool
settled(const struct ledger *l, int first, int last)
{
    for (int k = first; k < last; k++)
        if (!(l->state[k] & (K_HELD | K_ACK_OK)))
            return false;
    return true;
}

/* Churns keys [first, last): until every one is acked or held when
 * kill_at is 0, else until key kill_at is sent (then kill -9). */
static void
churn(struct harness *h, struct ledger *l, int first, int last, int kill_at)
{
    struct peer prod[PRODUCERS], work[WORKERS];
    peers_dial(h, prod, PRODUCERS);
    peers_dial(h, work, WORKERS);
    for (int i = 0; i < WORKERS; i++)
        send_fetch(&work[i]);
    int next = first;
    int64_t start = harness_now_ms();
    for (;;) {
        int64_t now = harness_now_ms();
        if (kill_at ? next >= kill_at : next == last && settled(l, first, last))
            break;
        ck_assert_msg(now - start < 60000, "churn made no progress: %d of %d keys sent", next - first,
                      last - first);
        next = produce(l, prod, next, last);
        poll_and_drain(l, prod, work);
    }
    /* Let the last fetches come back empty before the workers hang up, so
     * no held job is handed to a worker that will never read it. */
    l->stopping = true;
    while (!kill_at && !workers_idle(work)) {
        ck_assert_msg(harness_now_ms() - start < 60000, "the workers' last fetches never ended");
        poll_and_drain(l, prod, work);
    }
    if (kill_at) {
        harness_kill9(h);
        /* Answers already in our socket buffers were sent before the kill. */
        for (int i = 0; i < PRODUCERS; i++)
            drain(&prod[i], on_submit_answer, l);
        for (int i = 0; i < WORKERS; i++)
            drain(&work[i], on_worker_answer, l);
    }
    peers_close(prod, PRODUCERS);
    peers_close(work, WORKERS);
    ck_assert_msg(l->revived == 0, "%d acked jobs were delivered again while serving", l->revived);
}

/* After a restart: fetches (and acks) everything; each job at most once,
 * none that was acked; every job answered ok and never acked is there;
 * a job that was held comes back with its interrupted attempt counted
 * (checked when `exact`, i.e. after a clean stop). */
static void
verify_restart(struct harness *h, struct ledger *l, int nkeys, bool exact)
{
    int fd = dial(h);
    unsigned char *seen = calloc((size_t)nkeys, 1);
    size_t total = 0;
    for (;;) {
        json_t *r = req_ok(fd, "{\"op\":\"fetch\",\"queues\":[\"" QUEUE "\"],\"count\":500,"
                               "\"timeout_ms\":0}");
        json_t *jobs = json_object_get(r, "jobs");
        size_t n = json_array_size(jobs);
        for (size_t i = 0; i < n; i++) {
            json_t *job = json_array_get(jobs, i);
            json_int_t k = job_key(job);
            ck_assert_msg(k >= 0 && k < nkeys, "a job with an unknown key came back");
            ck_assert_msg(!seen[k], "job %lld delivered twice after the restart", (long long)k);
            ck_assert_msg(!(l->state[k] & K_ACK_OK), "acked job %lld came back (attempt %d)",
                          (long long)k, (int)json_integer_value(json_object_get(job, "attempt")));
            int attempt = (int)json_integer_value(json_object_get(job, "attempt"));
            if (exact && (l->state[k] & K_HELD))
                ck_assert_msg(attempt == l->attempt[k] + 1,
                              "held job %lld came back as attempt %d, not %d", (long long)k,
                              attempt, l->attempt[k] + 1);
            seen[k] = 1;
            json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\"}",
                               json_string_value(json_object_get(job, "id"))));
            l->state[k] |= K_ACK_SENT | K_ACK_OK;
            total++;
        }
        json_decref(r);
        if (n == 0)
            break;
    }
    size_t held = 0;
    for (int k = 0; k < nkeys; k++) {
        bool promised = (l->state[k] & K_SUBMIT_OK) && !(l->state[k] & K_ACK_SENT);
        ck_assert_msg(!promised || seen[k], "job %d was answered ok, never acked, and is gone", k);
        held += seen[k] && (l->state[k] & K_HELD);
    }
    fprintf(stderr, "compact churn: restart brought back %zu jobs (%zu held)\n", total, held);
    ck_assert_msg(held > 0, "no held job came back: the test held nothing");
    free(seen);
    harness_close(fd);
}

static void
run_churn_and_restarts(int nkeys)
{
    const char *args[] = {"--journal-segment", SEGMENT_SIZE, "--journal-compact", COMPACT_SIZE,
                          "--fsync", "never", NULL};
    struct harness *h = harness_start(args); /* with a data dir */
    ck_assert_msg(h, "chanqd did not start");
    int fd = dial(h);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"" QUEUE "\",\"capacity\":1000000,"
                           "\"max_attempts\":100}"));
    struct ledger l;
    ledger_init(&l, nkeys);
    int half = nkeys * 6 / 10;

    /* A clean stop after churn: exactly the unacked jobs come back. */
    churn(h, &l, 0, half, 0);
    long long compactions = journal_stat(fd, NULL, "compactions");
    fprintf(stderr, "compact churn: %d keys, %lld compactions before the clean stop\n", half,
            compactions);
    ck_assert_msg(compactions >= 2, "the journal compacted %lld times, not at least twice",
                  compactions);
    harness_close(fd);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after a clean stop");
    verify_restart(h, &l, half, true);

    /* A kill -9 in the middle of churn. */
    l.revived = 0;
    l.stopping = false;
    churn(h, &l, half, nkeys, half + (nkeys - half) * 3 / 4);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after kill -9");
    verify_restart(h, &l, nkeys, false);
    ledger_free(&l);
    ck_assert_int_eq(harness_stop(h), 0);
}

START_TEST(compaction_during_churn_never_revives_an_acked_job_nor_loses_a_queued_one)
{
    run_churn_and_restarts(100000 / SCALE);
}
END_TEST

START_TEST(compaction_at_random_moments_never_revives_an_acked_job_nor_loses_a_queued_one)
{
    setenv("CHANQ_TEST_COMPACT_MS", "40", 1);
    run_churn_and_restarts(50000 / SCALE);
    unsetenv("CHANQ_TEST_COMPACT_MS");
}
END_TEST

/* The server's state digest (stats with "digest":true). */
static char *
state_digest(int fd)
{
    json_t *r = req_ok(fd, "{\"op\":\"stats\",\"digest\":true}");
    const char *d = json_string_value(json_object_get(json_object_get(r, "server"), "state_digest"));
    ck_assert_msg(d && strlen(d) == 64, "no 64-digit state_digest in the server stats");
    char *copy = strdup(d);
    json_decref(r);
    return copy;
}

/* One job in every state that survives a stop, then a clean restart and a
 * kill -9 restart: the digest after each replay is the one before. */
START_TEST(state_digest_is_the_same_after_a_restart_and_tells_states_apart)
{
    const char *args[] = {"--fsync", "never", NULL};
    struct harness *h = harness_start(args);
    ck_assert_msg(h, "chanqd did not start");
    int fd = dial(h);
    char *empty = state_digest(fd);
    json_decref(req_ok(fd, "{\"op\":\"declare\",\"queue\":\"d\",\"capacity\":10,"
                           "\"max_attempts\":1}"));
    char *declared = state_digest(fd);
    ck_assert_str_ne(empty, declared);
    char *parent = submit(fd, "d", "{\"n\":1}");
    json_decref(req_ok(fd, "{\"op\":\"submit\",\"queue\":\"d\",\"payload\":2,\"parent\":\"%s\","
                           "\"delay_ms\":3600000,\"deadline_ms\":7200000}", parent));
    char *done = submit(fd, "d", "3");
    char *dead = submit(fd, "d", "4");
    char *got = fetch_one(fd, "d", 1000);
    ck_assert_str_eq(got, parent); /* FIFO: the first submit is next */
    free(got);
    json_decref(req_ok(fd, "{\"op\":\"nack\",\"id\":\"%s\",\"delay_ms\":0}", parent));
    got = fetch_one(fd, "d", 1000); /* done's turn: parent went to the tail, then dead */
    ck_assert_str_eq(got, done);
    json_decref(req_ok(fd, "{\"op\":\"ack\",\"id\":\"%s\",\"result\":{\"r\":1}}", got));
    free(got);
    got = fetch_one(fd, "d", 1000);
    ck_assert_str_eq(got, dead);
    json_decref(req_ok(fd, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"boom\"}", got));
    free(got);
    char *before = state_digest(fd);
    char *again = state_digest(fd);
    ck_assert_str_eq(before, again);
    free(again);
    ck_assert_str_ne(before, declared);
    harness_close(fd);

    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after a clean stop");
    fd = dial(h);
    char *after = state_digest(fd);
    ck_assert_msg(strcmp(before, after) == 0, "digest %s before the stop, %s after", before, after);
    free(after);
    harness_close(fd);

    harness_kill9(h);
    ck_assert_msg(harness_restart(h) == 0, "chanqd did not restart after kill -9");
    fd = dial(h);
    after = state_digest(fd);
    ck_assert_msg(strcmp(before, after) == 0, "digest %s before the kill, %s after", before, after);
    /* And a change shows: kick the dead job. */
    json_decref(req_ok(fd, "{\"op\":\"kick\",\"queue\":\"d\"}"));
    char *kicked = state_digest(fd);
    ck_assert_str_ne(before, kicked);
    free(kicked);
    free(after);
    free(before);
    free(declared);
    free(empty);
    free(parent);
    free(done);
    free(dead);
    harness_close(fd);
    ck_assert_int_eq(harness_stop(h), 0);
}
END_TEST

Suite *
compact_suite(void)
{
    Suite *s = suite_create("compact");
    TCase *tc = tcase_create("churn");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, compaction_during_churn_never_revives_an_acked_job_nor_loses_a_queued_one);
    tcase_add_test(tc, compaction_at_random_moments_never_revives_an_acked_job_nor_loses_a_queued_one);
    suite_add_tcase(s, tc);
    TCase *dg = tcase_create("digest");
    tcase_set_timeout(dg, 30);
    tcase_add_test(dg, state_digest_is_the_same_after_a_restart_and_tells_states_apart);
    suite_add_tcase(s, dg);
    return s;
}
