/* Wait groups. */
#include "chanq_config.h"

#include <errno.h>
#include <stdatomic.h>

#include "core/ctx.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

struct work {
    struct wg *wg;
    atomic_int done;
};

static void
worker(void *arg)
{
    struct work *w = arg;
    go_sleep(go_id() % 5, NULL);
    atomic_fetch_add(&w->done, 1);
    wg_done(w->wg);
}

static void
wg_body(void *arg)
{
    struct work w = {.wg = wg_new()};
    ck_assert_msg(wg_wait(w.wg, NULL) == 0, "wait at zero blocked or failed");
    for (int round = 0; round < 3; round++) {
        atomic_store(&w.done, 0);
        wg_add(w.wg, 100);
        for (int i = 0; i < 100; i++)
            go(worker, &w);
        ck_assert_msg(wg_wait(w.wg, NULL) == 0, "wait failed");
        ck_assert_msg(atomic_load(&w.done) == 100, "round %d: wait returned after %d of 100",
                      round, atomic_load(&w.done));
    }
    wg_add(w.wg, 1);
    struct ctx *ctx = ctx_with_timeout(NULL, 10);
    ck_assert_msg(wg_wait(w.wg, ctx) == -ETIMEDOUT, "wait ignored its ctx");
    ctx_release(ctx);
    wg_done(w.wg);
    wg_free(w.wg);
}

START_TEST(wait_group_waits_for_every_worker_and_is_reusable)
{
    run_main(wg_body, NULL, 2);
}
END_TEST

Suite *
wg_suite(void)
{
    Suite *s = suite_create("wg");
    TCase *tc = tcase_create("wg");
    tcase_add_test(tc, wait_group_waits_for_every_worker_and_is_reusable);
    suite_add_tcase(s, tc);
    return s;
}
