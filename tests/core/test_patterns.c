/* Go's classic concurrency patterns written with core:
 * fan-in, the worker pool, cancellation by close; and the two failures the
 * runtime must report: a leaked goroutine and a deadlock. */
#include "chanq_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/chan.h"
#include "core/select.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

/* fanIn(chs...) <-chan int: one forwarder per input, a closer after wg. */
struct fanin {
    struct chan *out;
    struct wg *wg;
};

struct forward {
    struct fanin *f;
    struct chan_rx in;
};

static void
forwarder(void *arg)
{
    struct forward *fw = arg;
    int v;
    while (chan_rx_recv(fw->in, &v, NULL) == 0) /* for v := range c */
        chan_send(fw->f->out, &v, NULL);
    wg_done(fw->f->wg); /* defer wg.Done() */
}

static void
fanin_closer(void *arg)
{
    struct fanin *f = arg;
    wg_wait(f->wg, NULL);
    chan_close(f->out);
}

static void
producer(void *arg)
{
    struct chan *c = arg;
    for (int i = 1; i <= 100; i++)
        chan_send(c, &i, NULL);
    chan_close(c);
}

static void
fanin_body(void *arg)
{
    size_t base = go_count();
    struct chan *ins[3];
    struct forward fw[3];
    struct fanin f = {.out = chan_new(sizeof(int), 0), .wg = wg_new()};
    for (int i = 0; i < 3; i++) {
        ins[i] = chan_new(sizeof(int), 0);
        go(producer, ins[i]);
    }
    for (int i = 0; i < 3; i++) {
        fw[i] = (struct forward){&f, chan_as_rx(ins[i])};
        wg_add(f.wg, 1);
        go(forwarder, &fw[i]);
    }
    go(fanin_closer, &f);
    int v, n = 0, sum = 0;
    while (chan_recv(f.out, &v, NULL) == 0) {
        n++;
        sum += v;
    }
    ck_assert_msg(n == 300 && sum == 3 * 5050, "fan-in delivered %d values summing %d", n, sum);
    for (int i = 0; i < 50 && go_count() != base; i++)
        go_sleep(1, NULL);
    ck_assert_msg(go_count() == base, "%zu goroutines left after fan-in", go_count() - base);
    for (int i = 0; i < 3; i++)
        chan_unref(ins[i]);
    chan_unref(f.out);
    wg_free(f.wg);
}

START_TEST(fan_in_merges_every_value_and_leaves_no_goroutine)
{
    run_main(fanin_body, NULL, 2);
}
END_TEST

/* workerPool(jobs <-chan int, results chan<- int, n int) */
struct pool {
    struct chan_rx jobs;
    struct chan_tx results;
    struct wg *wg;
};

static int
do_work(int j)
{
    return j * j;
}

static void
pool_worker(void *arg)
{
    struct pool *p = arg;
    int j;
    while (chan_rx_recv(p->jobs, &j, NULL) == 0) {
        int r = do_work(j);
        chan_tx_send(p->results, &r, NULL);
    }
    wg_done(p->wg);
}

static void
worker_pool(void *arg)
{
    struct pool *p = arg;
    for (int i = 0; i < 4; i++) {
        wg_add(p->wg, 1);
        go(pool_worker, p);
    }
    wg_wait(p->wg, NULL);
    chan_tx_close(p->results);
}

static void
feed_jobs(void *arg)
{
    struct chan *jobs = arg;
    for (int j = 1; j <= 1000; j++)
        chan_send(jobs, &j, NULL);
    chan_close(jobs);
}

static void
pool_body(void *arg)
{
    size_t base = go_count();
    struct chan *jobs = chan_new(sizeof(int), 16); /* a known bound on in-flight work */
    struct chan *results = chan_new(sizeof(int), 16);
    struct pool p = {chan_as_rx(jobs), chan_as_tx(results), wg_new()};
    go(feed_jobs, jobs);
    go(worker_pool, &p);
    long sum = 0;
    int r, n = 0;
    while (chan_recv(results, &r, NULL) == 0) {
        sum += r;
        n++;
    }
    ck_assert_msg(n == 1000 && sum == 333833500L, "pool returned %d results summing %ld", n, sum);
    for (int i = 0; i < 50 && go_count() != base; i++)
        go_sleep(1, NULL);
    ck_assert_msg(go_count() == base, "%zu goroutines left after the pool", go_count() - base);
    chan_unref(jobs);
    chan_unref(results);
    wg_free(p.wg);
}

START_TEST(worker_pool_processes_every_job_and_leaves_no_goroutine)
{
    run_main(pool_body, NULL, 2);
}
END_TEST

struct cancel_by_close {
    struct chan *done;
    struct chan *work;
    struct wg *wg;
};

static void
loop_until_done(void *arg)
{
    struct cancel_by_close *c = arg;
    for (;;) {
        int v;
        struct chan_case cs[2] = {{.c = c->done, .dir = CHAN_RECV},
                                  {.c = c->work, .dir = CHAN_RECV, .elem = &v}};
        if (chan_select(cs, 2, NULL, -1) == 0)
            break; /* case <-done: return */
    }
    wg_done(c->wg);
}

static void
cancel_by_close_body(void *arg)
{
    size_t base = go_count();
    struct cancel_by_close c = {chan_new(0, 0), chan_new(sizeof(int), 0), wg_new()};
    wg_add(c.wg, 50);
    for (int i = 0; i < 50; i++)
        go(loop_until_done, &c);
    for (int i = 0; i < 100; i++)
        chan_send(c.work, &i, NULL);
    chan_close(c.done); /* every reader unblocks */
    wg_wait(c.wg, NULL);
    for (int i = 0; i < 50 && go_count() != base; i++)
        go_sleep(1, NULL);
    ck_assert_msg(go_count() == base, "%zu goroutines survived the close", go_count() - base);
    chan_unref(c.done);
    chan_unref(c.work);
    wg_free(c.wg);
}

START_TEST(closing_a_done_channel_cancels_every_goroutine)
{
    run_main(cancel_by_close_body, NULL, 2);
}
END_TEST

/* The classic leak: a send on an unbuffered channel nobody receives. */
static struct chan *leaked_chan; /* kept reachable: the leak is on purpose */

static void
leaky_send(void *arg)
{
    int v = 42;
    chan_send(arg, &v, NULL); /* blocks forever */
}

/* True when the goroutine dump holds text. */
static bool
dump_says(const char *text)
{
    char *dump = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&dump, &len);
    go_dump(f);
    fclose(f);
    bool found = dump && strstr(dump, text);
    free(dump);
    return found;
}

static void
leak_body(void *arg)
{
    size_t base = go_count();
    leaked_chan = chan_new(sizeof(int), 0);
    go(leaky_send, leaked_chan); /* work() returns, the goroutine is stuck */
    /* From the moment it parks (on a busy machine it may start late), 20 ms. */
    for (int i = 0; i < 1000 && !dump_says("chan send"); i++)
        go_sleep(1, NULL);
    go_sleep(20, NULL);
    ck_assert_msg(go_count() == base + 1, "leak check counts %zu goroutines, want %zu",
                  go_count(), base + 1);
    char *dump = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&dump, &len);
    go_dump(f);
    fclose(f);
    ck_assert_msg(strstr(dump, "chan send") != NULL, "dump lacks the wait reason:\n%s", dump);
    /* How long it has been parked: at least the 20 ms slept above, and not
     * absurdly more (the park stamp is a CPU tick count converted to ms). */
    const char *at = strstr(dump, "[chan send, ");
    long parked_ms = at ? strtol(at + strlen("[chan send, "), NULL, 10) : -1;
    ck_assert_msg(parked_ms >= 15 && parked_ms < 10000, "parked for %ld ms, want ~20:\n%s",
                  parked_ms, dump);
    ck_assert_msg(strstr(dump, "test_patterns.c:") != NULL, "dump lacks the spawn site:\n%s",
                  dump);
    free(dump);
}

START_TEST(a_leaked_goroutine_is_reported_by_the_leak_check)
{
    run_main(leak_body, NULL, 2);
}
END_TEST

static void
deadlock_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    int v;
    chan_recv(c, &v, NULL); /* nobody will ever send */
}

static void
deadlock_child(void)
{
    run_main(deadlock_body, NULL, 2);
}

START_TEST(a_deadlock_dies_with_the_go_message)
{
    struct death d;
    death_run(deadlock_child, &d);
    ck_assert_msg(d.signal == SIGABRT, "child ended with signal %d status %d", d.signal, d.status);
    ck_assert_msg(strstr(d.err, "all goroutines are asleep - deadlock!"),
                  "no deadlock message, stderr: %s", d.err);
    ck_assert_msg(strstr(d.err, "chan receive"), "no goroutine dump, stderr: %s", d.err);
}
END_TEST

static void
sleeper_body(void *arg)
{
    go_sleep(50, NULL); /* a pending timer is not a deadlock */
}

static void
sleeper_child(void)
{
    run_main(sleeper_body, NULL, 2);
}

START_TEST(a_sleeping_program_is_not_a_deadlock)
{
    struct death d;
    death_run(sleeper_child, &d);
    ck_assert_msg(d.signal == 0 && d.status == 0, "child ended with signal %d status %d: %s",
                  d.signal, d.status, d.err);
}
END_TEST

Suite *
patterns_suite(void)
{
    Suite *s = suite_create("patterns");
    TCase *tc = tcase_create("patterns");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, fan_in_merges_every_value_and_leaves_no_goroutine);
    tcase_add_test(tc, worker_pool_processes_every_job_and_leaves_no_goroutine);
    tcase_add_test(tc, closing_a_done_channel_cancels_every_goroutine);
    tcase_add_test(tc, a_leaked_goroutine_is_reported_by_the_leak_check);
    tcase_add_test(tc, a_deadlock_dies_with_the_go_message);
    tcase_add_test(tc, a_sleeping_program_is_not_a_deadlock);
    suite_add_tcase(s, tc);
    return s;
}
