/* Contexts: a tree of depth 3, propagation down and not up, deadlines,
 * values, idempotent cancel. */
#include "chanq_config.h"

#include <errno.h>
#include <stdatomic.h>

#include "core/chan.h"
#include "core/ctx.h"
#include "core/timer.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

struct waiter_arg {
    struct ctx *ctx;
    struct wg *wg;
    atomic_int *woken;
};

static void
wait_done(void *arg)
{
    struct waiter_arg *w = arg;
    if (chan_recv(ctx_done(w->ctx), NULL, NULL) == -EPIPE)
        atomic_fetch_add(w->woken, 1);
    wg_done(w->wg);
}

static void
tree_body(void *arg)
{
    /* root -> mid -> (leaf_a, leaf_b): three levels below background. */
    struct ctx *root = ctx_with_cancel(NULL);
    struct ctx *mid = ctx_with_cancel(root);
    struct ctx *leaf_a = ctx_with_cancel(mid);
    struct ctx *leaf_b = ctx_with_cancel(mid);
    ck_assert_msg(root && mid && leaf_a && leaf_b, "out of memory");

    ctx_cancel(leaf_b);
    ck_assert_msg(ctx_err(leaf_b) == -ECANCELED, "leaf not cancelled");
    ck_assert_msg(ctx_err(mid) == 0 && ctx_err(root) == 0, "child cancel reached its parent");
    ck_assert_msg(chan_is_closed(ctx_done(leaf_b)) && !chan_is_closed(ctx_done(mid)),
                  "done channels disagree with err");
    ctx_cancel(leaf_b); /* idempotent */

    atomic_int woken = 0;
    struct wg *wg = wg_new();
    struct ctx *watched[3] = {root, mid, leaf_a};
    struct waiter_arg args[3];
    wg_add(wg, 3);
    for (int i = 0; i < 3; i++) {
        args[i] = (struct waiter_arg){watched[i], wg, &woken};
        go(wait_done, &args[i]);
    }
    go_sleep(20, NULL);
    ck_assert_msg(atomic_load(&woken) == 0, "a waiter woke before any cancel");
    ctx_cancel(root);
    ck_assert_msg(wg_wait(wg, NULL) == 0, "wg_wait failed");
    ck_assert_msg(atomic_load(&woken) == 3, "root cancel woke %d of 3 levels", atomic_load(&woken));
    ck_assert_msg(ctx_err(leaf_a) == -ECANCELED && ctx_err(mid) == -ECANCELED,
                  "descendants do not report cancellation");
    ck_assert_msg(ctx_err(leaf_b) == -ECANCELED, "earlier cancel error overwritten");
    wg_free(wg);
    ctx_release(leaf_a);
    ctx_release(leaf_b);
    ctx_release(mid);
    ctx_release(root);
}

START_TEST(cancel_reaches_every_descendant_and_never_the_parent)
{
    run_main(tree_body, NULL, 2);
}
END_TEST

static void
deadline_body(void *arg)
{
    int64_t t0 = timer_now_ms();
    struct ctx *root = ctx_with_cancel(NULL);
    struct ctx *timed = ctx_with_timeout(root, 30);
    struct ctx *leaf = ctx_with_cancel(timed);
    ck_assert_msg(ctx_deadline(leaf) == ctx_deadline(timed) && ctx_deadline(root) == -1,
                  "deadlines not inherited");
    ck_assert_msg(chan_recv(ctx_done(leaf), NULL, NULL) == -EPIPE, "leaf not done");
    int64_t took = timer_now_ms() - t0;
    ck_assert_msg(took >= 30 && took < 1000, "deadline fired after %lld ms", (long long)took);
    ck_assert_msg(ctx_err(timed) == -ETIMEDOUT && ctx_err(leaf) == -ETIMEDOUT,
                  "deadline exceeded not reported (%d, %d)", ctx_err(timed), ctx_err(leaf));
    ck_assert_msg(ctx_err(root) == 0, "deadline of a child cancelled its parent");
    struct ctx *late = ctx_with_timeout(root, 100000);
    struct ctx *early = ctx_with_deadline(late, timer_now_ms() - 1);
    ck_assert_msg(ctx_err(early) == -ETIMEDOUT, "past deadline not already exceeded");
    ck_assert_msg(ctx_err(late) == 0, "child deadline reached the parent");
    ctx_release(early);
    ctx_release(late);
    ctx_release(leaf);
    ctx_release(timed);
    ctx_release(root);
}

START_TEST(deadline_exceeded_is_reported_down_the_tree)
{
    run_main(deadline_body, NULL, 2);
}
END_TEST

START_TEST(values_are_found_through_ancestors)
{
    static int key_a, key_b;
    int va = 1, vb = 2;
    struct ctx *a = ctx_with_value(NULL, &key_a, &va);
    struct ctx *c = ctx_with_cancel(a);
    struct ctx *b = ctx_with_value(c, &key_b, &vb);
    ck_assert_msg(ctx_value(b, &key_a) == &va && ctx_value(b, &key_b) == &vb,
                  "values not found");
    ck_assert_msg(ctx_value(a, &key_b) == NULL, "value visible from an ancestor");
    ck_assert_msg(ctx_done(b) == ctx_done(c), "value ctx does not share its parent's done");
    ctx_cancel(c);
    ck_assert_msg(ctx_err(b) == -ECANCELED, "value ctx did not see the cancel");
    ctx_release(b);
    ctx_release(c);
    ctx_release(a);
}
END_TEST

START_TEST(background_is_never_done)
{
    struct ctx *bg = ctx_background();
    ck_assert_msg(ctx_done(bg) == NULL && ctx_err(bg) == 0 && ctx_deadline(bg) == -1,
                  "background looks done");
    ctx_cancel(bg);
    ctx_release(bg);
    ck_assert_msg(ctx_err(bg) == 0, "background was cancelled");
}
END_TEST

START_TEST(child_of_a_cancelled_parent_starts_cancelled)
{
    struct ctx *p = ctx_with_cancel(NULL);
    ctx_cancel(p);
    struct ctx *k = ctx_with_timeout(p, 1000);
    ck_assert_msg(ctx_err(k) == -ECANCELED && chan_is_closed(ctx_done(k)),
                  "child of a cancelled parent is live");
    ctx_release(k);
    ctx_release(p);
}
END_TEST

Suite *
ctx_suite(void)
{
    Suite *s = suite_create("ctx");
    TCase *tc = tcase_create("ctx");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, cancel_reaches_every_descendant_and_never_the_parent);
    tcase_add_test(tc, deadline_exceeded_is_reported_down_the_tree);
    tcase_add_test(tc, values_are_found_through_ancestors);
    tcase_add_test(tc, background_is_never_done);
    tcase_add_test(tc, child_of_a_cancelled_parent_starts_cancelled);
    suite_add_tcase(s, tc);
    return s;
}
