/* The entry framing: what goes in comes out in order, and every malformed
 * entry is refused before any record is passed on. */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <raft.h>
#include <string.h>

#include "daemon/cluster/entry.h"
#include "tests/cluster/suites.h"

struct seen {
    int n;
    char text[64];
};

static int
collect(void *arg, const void *rec, size_t len)
{
    struct seen *s = arg;
    strncat(s->text, rec, len);
    strcat(s->text, "|");
    s->n++;
    return 0;
}

START_TEST(records_come_out_in_the_order_they_went_in)
{
    struct entry_builder b = {0};
    ck_assert_int_eq(entry_add(&b, "one", 3), 0);
    ck_assert_int_eq(entry_add(&b, "two", 3), 0);
    ck_assert_int_eq(entry_add(&b, "three", 5), 0);
    ck_assert_int_eq(entry_count(b.buf, b.len), 3);
    struct seen s = {0};
    ck_assert_int_eq(entry_each(b.buf, b.len, collect, &s), 0);
    ck_assert_str_eq(s.text, "one|two|three|");
    entry_reset(&b);
    ck_assert_msg(b.buf == NULL && b.len == 0, "reset empties the builder");
}
END_TEST

START_TEST(an_empty_record_is_refused)
{
    struct entry_builder b = {0};
    ck_assert_int_eq(entry_add(&b, "", 0), -EMSGSIZE);
    ck_assert_msg(b.len == 0, "nothing added");
}
END_TEST

/* A copy of b with byte at set to v; len bytes. */
static uint8_t *
corrupt(const struct entry_builder *b, size_t at, uint8_t v)
{
    uint8_t *p = raft_malloc(b->len);
    memcpy(p, b->buf, b->len);
    p[at] = v;
    return p;
}

START_TEST(a_malformed_entry_passes_no_record_on)
{
    struct entry_builder b = {0};
    ck_assert_int_eq(entry_add(&b, "abc", 3), 0);
    ck_assert_int_eq(entry_add(&b, "defg", 4), 0);
    /* header 8, "abc" 4+3 at 8, "defg" 4+4 at 15, end 23, padded to 24 */
    ck_assert_uint_eq(b.len, 24);
    ck_assert_int_eq(entry_count(b.buf, b.len), 2);
    const struct {
        size_t at;
        uint8_t v;
        const char *what;
    } bad[] = {
        {0, 99, "unknown version"},
        {1, 1, "nonzero reserved header byte"},
        {4, 200, "body longer than the entry"},
        {4, 7, "body length leaving a whole word of padding"},
        {23, 1, "nonzero padding"},
        {8, 0, "a zero record length"},
        {15, 9, "a record running past the body"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *p = corrupt(&b, bad[i].at, bad[i].v);
        struct seen s = {0};
        ck_assert_msg(entry_each(p, b.len, collect, &s) == -EBADMSG, "%s is refused",
                      bad[i].what);
        ck_assert_msg(s.n == 0, "%s: no record passed on", bad[i].what);
        raft_free(p);
    }
    ck_assert_int_eq(entry_count(b.buf, b.len - 1), -EBADMSG); /* not a whole word */
    ck_assert_int_eq(entry_count(b.buf, 0), -EBADMSG);
    entry_reset(&b);
}
END_TEST

START_TEST(every_entry_is_a_whole_number_of_words)
{
    struct entry_builder b = {0};
    for (size_t n = 1; n <= 20; n++) {
        ck_assert_int_eq(entry_add(&b, "xxxxxxxxxxxxxxxxxxxx", n), 0);
        ck_assert_msg(b.len % 8 == 0, "len %zu after a record of %zu", b.len, n);
        ck_assert_int_eq(entry_count(b.buf, b.len), (long)n);
    }
    entry_reset(&b);
}
END_TEST

START_TEST(a_sealed_entry_of_no_records_is_valid)
{
    struct entry_builder b = {0};
    ck_assert_int_eq(entry_seal(&b), 0);
    ck_assert_uint_eq(b.len, 8);
    struct seen s = {0};
    ck_assert_int_eq(entry_each(b.buf, b.len, collect, &s), 0);
    ck_assert_int_eq(s.n, 0);
    entry_reset(&b);
}
END_TEST

Suite *
entry_suite(void)
{
    Suite *s = suite_create("entry");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, records_come_out_in_the_order_they_went_in);
    tcase_add_test(tc, an_empty_record_is_refused);
    tcase_add_test(tc, a_malformed_entry_passes_no_record_on);
    tcase_add_test(tc, every_entry_is_a_whole_number_of_words);
    tcase_add_test(tc, a_sealed_entry_of_no_records_is_valid);
    suite_add_tcase(s, tc);
    return s;
}
