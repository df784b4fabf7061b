/* chan_select: fairness, default, deadline, ctx, nil cases, close, and no
 * double delivery when selects race for one value. */
#include "chanq_config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/select.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

enum { FAIR_ROUNDS = 10000 };

static void
fairness_body(void *arg)
{
    struct chan *c[3];
    int v[3], hits[3] = {0};
    struct chan_case cases[3];
    for (int i = 0; i < 3; i++) {
        c[i] = chan_new(sizeof(int), 1);
        chan_send(c[i], &i, NULL);
        cases[i] = (struct chan_case){.c = c[i], .dir = CHAN_RECV, .elem = &v[i]};
    }
    for (int r = 0; r < FAIR_ROUNDS; r++) {
        int k = chan_select(cases, 3, NULL, -1);
        ck_assert_msg(k >= 0 && k < 3 && v[k] == k, "select returned %d (value %d)", k,
                      k >= 0 && k < 3 ? v[k] : -1);
        hits[k]++;
        chan_send(c[k], &k, NULL); /* ready again */
    }
    for (int i = 0; i < 3; i++) {
        double share = (double)hits[i] / FAIR_ROUNDS;
        ck_assert_msg(share >= 0.28 && share <= 0.39, "case %d chosen %.1f%% of the time", i,
                      share * 100);
        chan_unref(c[i]);
    }
}

START_TEST(select_is_fair_among_three_ready_channels)
{
    run_main(fairness_body, NULL, 1);
}
END_TEST

START_TEST(select_default_returns_EAGAIN_from_any_thread)
{
    struct chan *c = chan_new(sizeof(int), 0);
    int v;
    struct chan_case cs[2] = {{.c = c, .dir = CHAN_RECV, .elem = &v},
                              {.c = c, .dir = CHAN_SEND, .elem = &v}};
    ck_assert_msg(chan_select(cs, 2, NULL, 0) == -EAGAIN, "default case not taken");
    struct chan *b = chan_new(sizeof(int), 1);
    v = 9;
    struct chan_case snd = {.c = b, .dir = CHAN_SEND, .elem = &v};
    ck_assert_msg(chan_select(&snd, 1, NULL, 0) == 0, "ready send case not taken");
    int out = 0;
    struct chan_case rcv = {.c = b, .dir = CHAN_RECV, .elem = &out};
    ck_assert_msg(chan_select(&rcv, 1, NULL, 0) == 0 && out == 9 && rcv.ok,
                  "ready recv case not taken");
    chan_unref(b);
    chan_unref(c);
}
END_TEST

static void
deadline_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    int v;
    struct chan_case cs = {.c = c, .dir = CHAN_RECV, .elem = &v};
    int64_t t0 = timer_now_ms();
    ck_assert_msg(chan_select(&cs, 1, NULL, 30) == -ETIMEDOUT, "no timeout");
    int64_t took = timer_now_ms() - t0;
    ck_assert_msg(took >= 30 && took < 1000, "timeout after %lld ms, want 30",
                  (long long)took);
    struct ctx *ctx = ctx_with_timeout(NULL, 20);
    ck_assert_msg(chan_select(&cs, 1, ctx, -1) == -ETIMEDOUT, "ctx deadline not reported");
    ctx_release(ctx);
    ctx = ctx_with_cancel(NULL);
    ctx_cancel(ctx);
    ck_assert_msg(chan_select(&cs, 1, ctx, 1000) == -ECANCELED, "ctx cancel not reported");
    ctx_release(ctx);
    chan_unref(c);
}

START_TEST(select_deadline_and_ctx_bound_the_wait)
{
    run_main(deadline_body, NULL, 2);
}
END_TEST

static void
nil_cases_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 1);
    int v = 4, out = 0;
    chan_send(c, &v, NULL);
    struct chan_case cs[3] = {{.c = NULL, .dir = CHAN_RECV, .elem = &out},
                              {.c = c, .dir = CHAN_RECV, .elem = &out},
                              {.c = NULL, .dir = CHAN_SEND, .elem = &v}};
    for (int i = 0; i < 20; i++) {
        int k = chan_select(cs, 3, NULL, 0);
        ck_assert_msg(k == (i == 0 ? 1 : -EAGAIN), "round %d: select returned %d", i, k);
    }
    ck_assert_msg(out == 4, "value not received");
    ck_assert_msg(chan_select(cs, 1, NULL, 10) == -ETIMEDOUT, "nil-only select did not time out");
    chan_unref(c);
}

START_TEST(select_never_picks_nil_channels)
{
    run_main(nil_cases_body, NULL, 1);
}
END_TEST

static void
closer(void *arg)
{
    go_sleep(10, NULL);
    chan_close(arg);
}

static void
closed_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    struct chan *never = chan_new(sizeof(int), 0);
    int v = 5;
    go(closer, c);
    struct chan_case cs[2] = {{.c = never, .dir = CHAN_RECV, .elem = &v},
                              {.c = c, .dir = CHAN_RECV, .elem = &v}};
    int k = chan_select(cs, 2, NULL, -1);
    ck_assert_msg(k == 1 && !cs[1].ok && v == 0, "close: case %d ok %d value %d", k, cs[1].ok, v);
    chan_unref(c);
    chan_unref(never);
}

START_TEST(select_wakes_on_close_with_ok_false)
{
    run_main(closed_body, NULL, 2);
}
END_TEST

enum { RACE_ROUNDS = 2000, RACERS = 4 };

/* Several selects race for values sent one by one: each value must be
 * received exactly once. */
struct race {
    struct chan *a, *b, *stop;
    atomic_llong sum;
    atomic_int count;
    struct wg *wg;
};

static void
racer(void *arg)
{
    struct race *r = arg;
    for (;;) {
        long long va = 0, vb = 0;
        struct chan_case cs[3] = {{.c = r->a, .dir = CHAN_RECV, .elem = &va},
                                  {.c = r->b, .dir = CHAN_RECV, .elem = &vb},
                                  {.c = r->stop, .dir = CHAN_RECV}};
        int k = chan_select(cs, 3, NULL, -1);
        if (k == 2)
            break;
        atomic_fetch_add(&r->sum, k == 0 ? va : vb);
        atomic_fetch_add(&r->count, 1);
    }
    wg_done(r->wg);
}

static void
race_body(void *arg)
{
    struct race r = {.a = chan_new(sizeof(long long), 0),
                     .b = chan_new(sizeof(long long), 0),
                     .stop = chan_new(0, 0),
                     .wg = wg_new()};
    size_t rounds = san_scale(RACE_ROUNDS, 4);
    wg_add(r.wg, RACERS);
    for (int i = 0; i < RACERS; i++)
        go(racer, &r);
    long long want = 0;
    for (size_t i = 1; i <= rounds; i++) {
        long long v = (long long)i;
        chan_send(i % 2 ? r.a : r.b, &v, NULL);
        want += v;
    }
    while (atomic_load(&r.count) < (int)rounds)
        go_sleep(1, NULL);
    chan_close(r.stop);
    wg_wait(r.wg, NULL);
    ck_assert_msg(atomic_load(&r.count) == (int)rounds, "%d deliveries for %zu sends",
                  atomic_load(&r.count), rounds);
    ck_assert_msg(atomic_load(&r.sum) == want, "checksum %lld, want %lld", atomic_load(&r.sum),
                  want);
    wg_free(r.wg);
    chan_unref(r.a);
    chan_unref(r.b);
    chan_unref(r.stop);
}

START_TEST(racing_selects_receive_each_value_exactly_once)
{
    run_main(race_body, NULL, 2);
}
END_TEST

static void
sender_select(void *arg)
{
    struct chan *c = arg;
    int v = 77;
    struct chan *other = chan_new(sizeof(int), 0);
    struct chan_case cs[2] = {{.c = other, .dir = CHAN_RECV, .elem = &v},
                              {.c = c, .dir = CHAN_SEND, .elem = &v}};
    int k = chan_select(cs, 2, NULL, -1);
    ck_assert_msg(k == 1, "send case not chosen (%d)", k);
    chan_unref(other);
    chan_unref(c); /* ours: the select still touches c after the receiver woke */
}

static void
send_case_body(void *arg)
{
    struct chan *c = chan_new(sizeof(int), 0);
    chan_ref(c); /* the sender's */
    go(sender_select, c);
    int v = 0;
    ck_assert_msg(chan_recv(c, &v, NULL) == 0 && v == 77, "got %d from a select send", v);
    chan_unref(c);
}

START_TEST(select_send_case_hands_the_value_to_a_receiver)
{
    run_main(send_case_body, NULL, 2);
}
END_TEST

Suite *
select_suite(void)
{
    Suite *s = suite_create("select");
    TCase *tc = tcase_create("select");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, select_is_fair_among_three_ready_channels);
    tcase_add_test(tc, select_default_returns_EAGAIN_from_any_thread);
    tcase_add_test(tc, select_deadline_and_ctx_bound_the_wait);
    tcase_add_test(tc, select_never_picks_nil_channels);
    tcase_add_test(tc, select_wakes_on_close_with_ok_false);
    tcase_add_test(tc, racing_selects_receive_each_value_exactly_once);
    tcase_add_test(tc, select_send_case_hands_the_value_to_a_receiver);
    suite_add_tcase(s, tc);
    return s;
}
