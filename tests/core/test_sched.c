/* The scheduler and goroutines: ids, 100k parked goroutines (with guard
 * pages and with the mapping-budget fallback), stack overflow reports,
 * spawning from outside, sched_start/sched_shutdown. */
#include "chanq_config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

static void
ids_body(void *arg)
{
    ck_assert_msg(go_on_goroutine(), "main goroutine says it is not a goroutine");
    ck_assert_msg(go_id() > 0, "goroutine id is 0");
    ck_assert_msg(go_count() == 1, "live goroutines %zu, want 1 (main)", go_count());
    ck_assert_msg(sched_threads() == 3, "sched_threads %d, want 3", sched_threads());
}

START_TEST(goroutines_know_their_id_and_count)
{
    ck_assert_msg(!go_on_goroutine() && go_id() == 0, "test thread looks like a goroutine");
    run_main(ids_body, NULL, 3);
    ck_assert_msg(go_count() == 0, "goroutines left after main: %zu", go_count());
    ck_assert_msg(sched_threads() == 0, "workers left after shutdown");
}
END_TEST

enum { PARKED = 100000 };

struct crowd {
    struct chan *gate;
    struct wg *wg;
    atomic_int released;
};

static void
park_at_gate(void *arg)
{
    struct crowd *c = arg;
    if (chan_recv(c->gate, NULL, NULL) == -EPIPE)
        atomic_fetch_add(&c->released, 1);
    wg_done(c->wg);
}

static void
crowd_body(void *arg)
{
    size_t n = san_scale(PARKED, 50);
    struct crowd c = {.gate = chan_new(0, 0), .wg = wg_new()};
    wg_add(c.wg, (int)n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(go(park_at_gate, &c) == 0, "spawn %zu of %zu failed", i, n);
    go_sleep(50, NULL); /* the spawned goroutines run and park on the gate */
    ck_assert_msg(go_count() == n + 1, "%zu goroutines alive, want %zu", go_count(), n + 1);
    chan_close(c.gate);
    ck_assert_msg(wg_wait(c.wg, NULL) == 0, "wait failed");
    ck_assert_msg(atomic_load(&c.released) == (int)n, "%d of %zu released",
                  atomic_load(&c.released), n);
    for (int i = 0; i < 200 && go_count() != 1; i++)
        go_sleep(5, NULL);
    ck_assert_msg(go_count() == 1, "%zu goroutines not freed", go_count() - 1);
    chan_unref(c.gate);
    wg_free(c.wg);
}

START_TEST(hundred_thousand_parked_goroutines_are_released_and_freed)
{
    run_main(crowd_body, NULL, 2);
}
END_TEST

START_TEST(hundred_thousand_goroutines_fit_the_default_map_count_without_guard_regions)
{
    /* Kernels before 6.13 have no madvise guard regions: each guard page then
     * costs a memory mapping, so only a budget of stacks get one. */
    setenv("CHANQ_STACK_GUARDS", "mprotect", 1);
    run_main(crowd_body, NULL, 2);
}
END_TEST

static volatile int stop_recursing; /* never set: hides the recursion from the compiler */

static int
recurse(int depth)
{
    if (stop_recursing)
        return 0;
    volatile char pad[512];
    pad[0] = (char)depth;
    return recurse(depth + 1) + pad[0];
}

static void
overflow_goroutine(void *arg)
{
    recurse(0);
}

static void
overflow_body(void *arg)
{
    go(overflow_goroutine, NULL);
    go_sleep(5000, NULL);
}

static void
overflow_child(void)
{
    go_set_stack_size(64 * 1024);
    run_main(overflow_body, NULL, 1);
}

static void
overflow_child_canary(void)
{
    setenv("CHANQ_STACK_GUARDS", "canary", 1);
    overflow_child();
}

START_TEST(stack_overflow_is_reported_with_the_spawn_site)
{
    if (SAN_ENABLED)
        return; /* the sanitizers report overflows themselves */
    void (*children[2])(void) = {overflow_child, overflow_child_canary};
    for (int i = 0; i < 2; i++) {
        struct death d;
        death_run(children[i], &d);
        ck_assert_msg(d.signal == SIGABRT, "child %d ended with signal %d status %d", i,
                      d.signal, d.status);
        ck_assert_msg(strstr(d.err, "stack overflow (spawned at ") &&
                          strstr(d.err, "test_sched.c:"),
                      "child %d: no overflow report, stderr: %s", i, d.err);
    }
}
END_TEST

/* A plain thread feeding goroutines with try-send and spawns. */
struct feeder {
    struct chan *c;
    atomic_int got;
    struct wg *wg;
};

static void
count_one(void *arg)
{
    struct feeder *f = arg;
    atomic_fetch_add(&f->got, 1);
    wg_done(f->wg);
}

static void *
feeder_thread(void *arg)
{
    struct feeder *f = arg;
    for (int i = 0; i < 1000; i++) {
        while (chan_try_send(f->c, &i) == -EAGAIN)
            usleep(100);
        ck_assert_msg(go(count_one, f) == 0, "spawn from a plain thread failed");
    }
    return NULL;
}

static void
consumer_body(void *arg)
{
    struct feeder *f = arg;
    for (int i = 0; i < 1000; i++) {
        int v = -1;
        ck_assert_msg(chan_recv(f->c, &v, NULL) == 0 && v == i, "got %d, want %d", v, i);
    }
    wg_wait(f->wg, NULL);
}

static void
external_body(void *arg)
{
    struct feeder *f = arg;
    sched_external_ref();
    pthread_t t;
    ck_assert_msg(pthread_create(&t, NULL, feeder_thread, f) == 0, "pthread_create failed");
    consumer_body(f);
    pthread_join(t, NULL);
    sched_external_unref();
}

START_TEST(plain_threads_can_try_send_and_spawn)
{
    struct feeder f = {.c = chan_new(sizeof(int), 4), .wg = wg_new()};
    wg_add(f.wg, 1000);
    run_main(external_body, &f, 2);
    ck_assert_msg(atomic_load(&f.got) == 1000, "%d of 1000 spawned goroutines ran",
                  atomic_load(&f.got));
    chan_unref(f.c);
    wg_free(f.wg);
}
END_TEST

static void
started_consumer(void *arg)
{
    consumer_body(arg);
}

START_TEST(sched_start_runs_goroutines_beside_the_main_thread)
{
    struct feeder f = {.c = chan_new(sizeof(int), 4), .wg = wg_new()};
    wg_add(f.wg, 1000);
    setenv("GOMAXPROCS", "3", 1);
    ck_assert_msg(sched_start(0) == 0, "sched_start failed");
    ck_assert_msg(sched_threads() == 3, "GOMAXPROCS ignored: %d workers", sched_threads());
    ck_assert_msg(sched_start(1) == -EALREADY, "second sched_start did not say EALREADY");
    ck_assert_msg(go(started_consumer, &f) == 0, "spawn failed");
    feeder_thread(&f);
    for (int i = 0; i < 2000 && go_count() > 0; i++)
        usleep(1000);
    ck_assert_msg(go_count() == 0, "%zu goroutines still alive", go_count());
    sched_shutdown();
    ck_assert_msg(atomic_load(&f.got) == 1000, "%d of 1000 spawned goroutines ran",
                  atomic_load(&f.got));
    chan_unref(f.c);
    wg_free(f.wg);
}
END_TEST

/* sched_loop_attach: a goroutine woken on an event loop's thread runs on
 * that thread in sched_loop_run, and may park and be resumed by a worker. */
struct loop_probe {
    pthread_t loop;         /* the attached thread */
    atomic_int on_loop;     /* goroutines that found themselves on it */
    struct chan *resume;    /* the second half waits here */
    struct wg *done;
};

static void
loop_probe_body(void *arg)
{
    struct loop_probe *p = arg;
    if (pthread_equal(pthread_self(), p->loop))
        atomic_fetch_add(&p->on_loop, 1);
    chan_recv(p->resume, NULL, NULL); /* parks; a worker's send resumes it */
    wg_done(p->done);
}

static void
loop_probe_resumer(void *arg)
{
    struct loop_probe *p = arg;
    for (int i = 0; i < 3; i++)
        chan_send(p->resume, &i, NULL);
}

START_TEST(an_attached_loop_thread_runs_the_goroutines_it_wakes)
{
    struct loop_probe p = {.loop = pthread_self(), .resume = chan_new(sizeof(int), 0),
                           .done = wg_new()};
    ck_assert_msg(sched_loop_attach() == -EINVAL, "attach before sched_start did not fail");
    ck_assert_msg(sched_start(2) == 0, "sched_start failed");
    ck_assert_msg(sched_loop_attach() == 0, "sched_loop_attach failed");
    ck_assert_msg(sched_loop_attach() == -EALREADY, "second attach did not say EALREADY");
    wg_add(p.done, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(go(loop_probe_body, &p) == 0, "spawn failed");
    ck_assert_msg(sched_loop_has_work(), "spawned goroutines were not kept by the loop thread");
    sched_loop_run(64);
    ck_assert_msg(atomic_load(&p.on_loop) == 3, "%d of 3 goroutines ran on the loop thread",
                  atomic_load(&p.on_loop));
    ck_assert_msg(!sched_loop_has_work(), "work left after sched_loop_run");
    /* They are parked now; a goroutine on a worker resumes them there. */
    sched_loop_detach();
    ck_assert_msg(go(loop_probe_resumer, &p) == 0, "spawn failed");
    for (int i = 0; i < 2000 && go_count() > 0; i++)
        usleep(1000);
    ck_assert_msg(go_count() == 0, "%zu goroutines still alive", go_count());
    sched_shutdown();
    chan_unref(p.resume);
    wg_free(p.done);
}
END_TEST

struct yielders {
    atomic_int turns[2];
    struct wg *wg;
};

struct yielder_arg {
    struct yielders *y;
    int me;
};

static void
yielder(void *arg)
{
    struct yielder_arg *a = arg;
    for (int i = 0; i < 1000; i++) {
        atomic_fetch_add(&a->y->turns[a->me], 1);
        go_yield();
    }
    wg_done(a->y->wg);
}

static void
yield_body(void *arg)
{
    struct yielders y = {.wg = wg_new()};
    struct yielder_arg a[2] = {{&y, 0}, {&y, 1}};
    wg_add(y.wg, 2);
    go(yielder, &a[0]);
    go(yielder, &a[1]);
    wg_wait(y.wg, NULL);
    ck_assert_msg(atomic_load(&y.turns[0]) == 1000 && atomic_load(&y.turns[1]) == 1000,
                  "yield lost turns");
    wg_free(y.wg);
}

START_TEST(yield_lets_other_goroutines_run_on_one_thread)
{
    run_main(yield_body, NULL, 1);
}
END_TEST

Suite *
sched_suite(void)
{
    Suite *s = suite_create("sched");
    TCase *tc = tcase_create("sched");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, goroutines_know_their_id_and_count);
    tcase_add_test(tc, hundred_thousand_parked_goroutines_are_released_and_freed);
    tcase_add_test(tc, hundred_thousand_goroutines_fit_the_default_map_count_without_guard_regions);
    tcase_add_test(tc, stack_overflow_is_reported_with_the_spawn_site);
    tcase_add_test(tc, plain_threads_can_try_send_and_spawn);
    tcase_add_test(tc, sched_start_runs_goroutines_beside_the_main_thread);
    tcase_add_test(tc, yield_lets_other_goroutines_run_on_one_thread);
    tcase_add_test(tc, an_attached_loop_thread_runs_the_goroutines_it_wakes);
    suite_add_tcase(s, tc);
    return s;
}
