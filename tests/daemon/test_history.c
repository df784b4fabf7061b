/* daemon/history.c and daemon/page_token.c in-process: the ring keeps the
 * last slots in order with per-period deltas, survives totals that go down
 * and samples that fail, and its document has the documented shape; page
 * tokens check, and forged or foreign ones do not. */
#include "chanq_config.h"

#include "daemon/history.h"
#include "daemon/page_token.h"
#include "tests/ops/unit_suites.h"

#include <check.h>
#include <string.h>

struct fake {
    struct history_counts now; /* what the sampler answers */
    bool fail;                 /* the sampler fails */
};

static int
fake_sample(void *arg, struct history_counts *out)
{
    struct fake *f = arg;
    if (f->fail)
        return -1;
    *out = f->now;
    return 0;
}

/* The points of h's document as [t, submitted, processed, failed]. */
static json_t *
points(struct history *h, json_t **doc)
{
    *doc = history_json(h);
    ck_assert_ptr_nonnull(*doc);
    return json_object_get(*doc, "points");
}

static json_int_t
at(json_t *pts, size_t i, size_t k)
{
    return json_integer_value(json_array_get(json_array_get(pts, i), k));
}

START_TEST(ring_keeps_the_last_slots_oldest_first)
{
    struct fake f = {{10, 5, 1}, false};
    struct history *h = history_new(NULL, 1000, 3, fake_sample, &f);
    ck_assert_ptr_nonnull(h);
    json_t *doc;
    ck_assert_uint_eq(json_array_size(points(h, &doc)), 0); /* the baseline is no point */
    json_decref(doc);
    for (int i = 1; i <= 5; i++) {
        f.now.submitted += 10u * (unsigned)i;
        f.now.processed += (unsigned)i;
        f.now.failed += 1;
        history_tick(h, 1000000 + i * 1000);
    }
    json_t *pts = points(h, &doc);
    ck_assert_uint_eq(json_array_size(pts), 3);
    for (size_t k = 0; k < 3; k++) { /* slots 3, 4, 5 */
        ck_assert_int_eq(at(pts, k, 0), 1000 + 3 + (json_int_t)k);
        ck_assert_int_eq(at(pts, k, 1), 10 * (3 + (json_int_t)k));
        ck_assert_int_eq(at(pts, k, 2), 3 + (json_int_t)k);
        ck_assert_int_eq(at(pts, k, 3), 1);
    }
    json_t *t = json_object_get(doc, "totals");
    ck_assert_int_eq(json_integer_value(json_object_get(t, "submitted")), 150);
    ck_assert_int_eq(json_integer_value(json_object_get(t, "processed")), 15);
    ck_assert_int_eq(json_integer_value(json_object_get(t, "failed")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "period_ms")), 1000);
    ck_assert_int_eq(json_integer_value(json_object_get(doc, "slots")), 3);
    json_decref(doc);
    history_free(h);
}
END_TEST

START_TEST(totals_that_go_down_or_fail_count_nothing)
{
    struct fake f = {{100, 100, 100}, false};
    struct history *h = history_new(NULL, 1000, 10, fake_sample, &f);
    f.now = (struct history_counts){40, 30, 20}; /* a queue deleted */
    history_tick(h, 2000);
    f.fail = true;
    history_tick(h, 3000); /* skipped: no slot */
    f.fail = false;
    f.now = (struct history_counts){45, 32, 21};
    history_tick(h, 4000);
    json_t *doc;
    json_t *pts = points(h, &doc);
    ck_assert_uint_eq(json_array_size(pts), 2);
    ck_assert_int_eq(at(pts, 0, 1) + at(pts, 0, 2) + at(pts, 0, 3), 0);
    ck_assert_int_eq(at(pts, 1, 0), 4);
    ck_assert_int_eq(at(pts, 1, 1), 5);
    ck_assert_int_eq(at(pts, 1, 2), 2);
    ck_assert_int_eq(at(pts, 1, 3), 1);
    json_t *t = json_object_get(doc, "totals");
    ck_assert_int_eq(json_integer_value(json_object_get(t, "processed")), 2);
    json_decref(doc);
    history_free(h);
}
END_TEST

START_TEST(bad_shapes_are_refused)
{
    struct fake f = {{0, 0, 0}, false};
    ck_assert_ptr_null(history_new(NULL, 10, 360, fake_sample, &f));
    ck_assert_ptr_null(history_new(NULL, 1000, 1, fake_sample, &f));
    ck_assert_ptr_null(history_new(NULL, 1000, 1000000, fake_sample, &f));
    history_free(NULL);
}
END_TEST

START_TEST(page_tokens_check_and_forgeries_do_not)
{
    struct page_tokens *p = page_tokens_new(), *q = page_tokens_new();
    ck_assert_ptr_nonnull(p);
    ck_assert_ptr_nonnull(q);
    char a[PAGE_TOKEN_LEN + 1], b[PAGE_TOKEN_LEN + 1];
    ck_assert_int_eq(page_token_issue(p, a), 0);
    ck_assert_int_eq(page_token_issue(p, b), 0);
    ck_assert_uint_eq(strlen(a), PAGE_TOKEN_LEN);
    ck_assert_str_ne(a, b);
    ck_assert(page_token_valid(p, a) && page_token_valid(p, b));
    ck_assert(!page_token_valid(q, a)); /* another key: another chanqd */
    char t[PAGE_TOKEN_LEN + 2];
    for (size_t i = 0; i < PAGE_TOKEN_LEN; i++) { /* any one digit changed */
        memcpy(t, a, sizeof a);
        t[i] = t[i] == '0' ? '1' : '0';
        ck_assert_msg(!page_token_valid(p, t), "digit %zu changed still checks", i);
    }
    memcpy(t, a, sizeof a);
    t[0] = (char)(t[0] >= 'a' ? t[0] - 'a' + 'A' : t[0]); /* upper case is not ours */
    ck_assert(t[0] == a[0] || !page_token_valid(p, t));
    memcpy(t, a, sizeof a);
    strcat(t, "0");
    ck_assert(!page_token_valid(p, t));
    ck_assert(!page_token_valid(p, ""));
    ck_assert(!page_token_valid(p, NULL));
    page_tokens_free(p);
    page_tokens_free(q);
}
END_TEST

Suite *
history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("history");
    tcase_add_test(tc, ring_keeps_the_last_slots_oldest_first);
    tcase_add_test(tc, totals_that_go_down_or_fail_count_nothing);
    tcase_add_test(tc, bad_shapes_are_refused);
    tcase_add_test(tc, page_tokens_check_and_forgeries_do_not);
    suite_add_tcase(s, tc);
    return s;
}
