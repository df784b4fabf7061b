/* Sleep and timers: durations, cancellation, stop/reset, many timers. */
#include "chanq_config.h"

#include <errno.h>
#include <stdatomic.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

static void
sleep_body(void *arg)
{
    int64_t t0 = timer_now_ms();
    ck_assert_msg(go_sleep(25, NULL) == 0, "sleep failed");
    int64_t took = timer_now_ms() - t0;
    ck_assert_msg(took >= 25 && took < 1000, "slept %lld ms for 25", (long long)took);
    struct ctx *ctx = ctx_with_timeout(NULL, 10);
    t0 = timer_now_ms();
    ck_assert_msg(go_sleep(5000, ctx) == -ETIMEDOUT, "ctx deadline did not end the sleep");
    ck_assert_msg(timer_now_ms() - t0 < 1000, "sleep outlived its ctx");
    ctx_release(ctx);
}

START_TEST(sleep_lasts_at_least_its_duration_and_ends_with_its_ctx)
{
    run_main(sleep_body, NULL, 2);
}
END_TEST

static void
fire(void *arg)
{
    chan_send(arg, NULL, NULL);
}

static void
timer_body(void *arg)
{
    struct chan *c = chan_new(0, 1);
    struct timer *t = timer_new(fire, c);
    timer_reset(t, 10);
    ck_assert_msg(chan_recv(c, NULL, NULL) == 0, "timer did not fire");
    ck_assert_msg(!timer_stop(t), "stop after fire said it was armed");
    timer_reset(t, 10000);
    ck_assert_msg(timer_stop(t), "stop of an armed timer said false");
    timer_reset(t, 10000);
    timer_reset(t, 5); /* re-arm earlier */
    ck_assert_msg(chan_recv(c, NULL, NULL) == 0, "re-armed timer did not fire");
    timer_free(t);
    chan_unref(c);
}

START_TEST(timers_fire_on_a_goroutine_and_can_be_stopped_and_reset)
{
    run_main(timer_body, NULL, 2);
}
END_TEST

enum { SLEEPERS = 5000 };

struct sleepers {
    struct wg *wg;
    atomic_int done;
};

static void
sleeper(void *arg)
{
    struct sleepers *s = arg;
    go_sleep(1 + go_id() % 40, NULL);
    atomic_fetch_add(&s->done, 1);
    wg_done(s->wg);
}

static void
many_body(void *arg)
{
    struct sleepers s = {.wg = wg_new()};
    size_t n = san_scale(SLEEPERS, 5);
    wg_add(s.wg, (int)n);
    for (size_t i = 0; i < n; i++)
        go(sleeper, &s);
    wg_wait(s.wg, NULL);
    ck_assert_msg(atomic_load(&s.done) == (int)n, "%d of %zu sleepers woke",
                  atomic_load(&s.done), n);
    wg_free(s.wg);
}

START_TEST(thousands_of_sleeping_goroutines_all_wake)
{
    run_main(many_body, NULL, 2);
}
END_TEST

Suite *
timer_suite(void)
{
    Suite *s = suite_create("timer");
    TCase *tc = tcase_create("timer");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, sleep_lasts_at_least_its_duration_and_ends_with_its_ctx);
    tcase_add_test(tc, timers_fire_on_a_goroutine_and_can_be_stopped_and_reset);
    tcase_add_test(tc, thousands_of_sleeping_goroutines_all_wake);
    suite_add_tcase(s, tc);
    return s;
}
