/* The libevent bridge: a loop thread hands values to goroutines with
 * try-send, goroutines run functions on the loop thread in order. */
#include "chanq_config.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdatomic.h>

#include "core/chan.h"
#include "core/evbridge.h"
#include "core/sched.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

enum { CALLS = 1000 };

struct loop {
    struct event_base *base;
    struct evbridge *bridge;
    pthread_t thread;
    pthread_t loop_id;   /* the loop thread, for the "ran on the loop" check */
    struct chan *to_go;  /* loop -> goroutines */
    struct chan *done;   /* goroutine -> test: all calls ran */
    int next;            /* calls seen so far (loop thread only) */
    atomic_int wrong_thread;
    atomic_int out_of_order;
};

static void *
loop_main(void *arg)
{
    struct loop *l = arg;
    l->loop_id = pthread_self();
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* Runs on the loop thread. */
static void
on_loop(void *arg)
{
    struct loop *l = *(struct loop **)arg;
    int seq = ((int *)arg)[2];
    if (!pthread_equal(pthread_self(), l->loop_id))
        atomic_fetch_add(&l->wrong_thread, 1);
    if (seq != l->next++)
        atomic_fetch_add(&l->out_of_order, 1);
    /* loop -> goroutines, never blocking */
    int rc = chan_try_send(l->to_go, &seq);
    if (rc != 0)
        atomic_fetch_add(&l->out_of_order, 1000000);
    free(arg);
}

static void
stop_loop(void *arg)
{
    struct loop *l = arg;
    event_base_loopbreak(l->base);
}

static void
bridge_body(void *arg)
{
    struct loop *l = arg;
    for (int i = 0; i < CALLS; i++) {
        void **call = malloc(2 * sizeof(void *) + sizeof(int) * 2);
        call[0] = l;
        ((int *)call)[2] = i;
        ck_assert_msg(evbridge_call(l->bridge, on_loop, call) == 0, "evbridge_call failed");
    }
    for (int i = 0; i < CALLS; i++) {
        int v = -1;
        ck_assert_msg(chan_recv(l->to_go, &v, NULL) == 0 && v == i, "got %d from the loop, want %d",
                      v, i);
    }
    evbridge_call(l->bridge, stop_loop, l);
}

START_TEST(loop_and_goroutines_exchange_work_without_blocking)
{
    ck_assert_msg(evthread_use_pthreads() == 0, "evthread_use_pthreads failed");
    struct loop l = {.base = event_base_new(), .to_go = chan_new(sizeof(int), CALLS)};
    ck_assert_msg(l.base && l.to_go, "setup failed");
    l.bridge = evbridge_new(l.base);
    ck_assert_msg(l.bridge != NULL, "evbridge_new failed");
    ck_assert_msg(pthread_create(&l.thread, NULL, loop_main, &l) == 0, "pthread_create failed");
    run_main(bridge_body, &l, 2);
    pthread_join(l.thread, NULL);
    ck_assert_msg(atomic_load(&l.wrong_thread) == 0, "calls ran off the loop thread");
    ck_assert_msg(atomic_load(&l.out_of_order) == 0, "calls ran out of order or try-send failed");
    evbridge_free(l.bridge);
    event_base_free(l.base);
    chan_unref(l.to_go);
}
END_TEST

Suite *
evbridge_suite(void)
{
    Suite *s = suite_create("evbridge");
    TCase *tc = tcase_create("evbridge");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, loop_and_goroutines_exchange_work_without_blocking);
    suite_add_tcase(s, tc);
    return s;
}
