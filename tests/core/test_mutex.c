/* The goroutine-aware mutex. */
#include "chanq_config.h"

#include "core/mutex.h"
#include "core/wg.h"
#include "tests/core/helpers.h"
#include "tests/core/suites.h"

enum { LOCKERS = 8, INCREMENTS = 2000 };

struct counter {
    struct mutex *mu;
    struct wg *wg;
    long value; /* guarded by mu */
    int inside; /* goroutines inside the critical section (guarded by mu) */
};

static void
incrementer(void *arg)
{
    struct counter *c = arg;
    for (int i = 0; i < INCREMENTS; i++) {
        mutex_lock(c->mu);
        ck_assert_msg(++c->inside == 1, "two goroutines inside the mutex");
        long v = c->value;
        if (i % 64 == 0)
            go_yield(); /* park-free switch while holding the lock */
        c->value = v + 1;
        c->inside--;
        mutex_unlock(c->mu);
    }
    wg_done(c->wg);
}

static void
mutex_body(void *arg)
{
    struct counter c = {.mu = mutex_new(), .wg = wg_new()};
    wg_add(c.wg, LOCKERS);
    for (int i = 0; i < LOCKERS; i++)
        go(incrementer, &c);
    wg_wait(c.wg, NULL);
    ck_assert_msg(c.value == LOCKERS * INCREMENTS, "lost updates: %ld of %d", c.value,
                  LOCKERS * INCREMENTS);
    ck_assert_msg(mutex_trylock(c.mu), "trylock of a free mutex failed");
    ck_assert_msg(!mutex_trylock(c.mu), "trylock of a held mutex succeeded");
    mutex_unlock(c.mu);
    mutex_free(c.mu);
    wg_free(c.wg);
}

START_TEST(mutex_excludes_and_loses_no_update)
{
    run_main(mutex_body, NULL, 2);
}
END_TEST

Suite *
mutex_suite(void)
{
    Suite *s = suite_create("mutex");
    TCase *tc = tcase_create("mutex");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, mutex_excludes_and_loses_no_update);
    suite_add_tcase(s, tc);
    return s;
}
