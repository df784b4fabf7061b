/* proto/buf: the growable byte buffer. */
#include "chanq_config.h"

#include "proto/buf.h"
#include "tests/proto/suites.h"

#include <stdint.h>
#include <string.h>

static int
buf_is(const struct buf *b, const char *want)
{
    return b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
}

START_TEST(appends_accumulate_in_order)
{
    struct buf b;
    buf_init(&b);
    ck_assert_msg(b.len == 0 && b.data == NULL, "a new buf allocates nothing");
    ck_assert_msg(buf_append_str(&b, "ab") == 0, "append_str");
    ck_assert_msg(buf_append_char(&b, 'c') == 0, "append_char");
    ck_assert_msg(buf_append(&b, "def", 3) == 0, "append");
    ck_assert_msg(buf_append(&b, NULL, 0) == 0, "empty append is a no-op");
    ck_assert_msg(buf_is(&b, "abcdef"), "got '%.*s'", (int)b.len, b.data);
    buf_clear(&b);
}
END_TEST

START_TEST(integers_print_in_decimal_including_extremes)
{
    struct buf b;
    buf_init(&b);
    buf_append_i64(&b, 0);
    buf_append_char(&b, ' ');
    buf_append_i64(&b, -42);
    buf_append_char(&b, ' ');
    buf_append_i64(&b, INT64_MAX);
    buf_append_char(&b, ' ');
    buf_append_i64(&b, INT64_MIN);
    ck_assert_msg(buf_is(&b, "0 -42 9223372036854775807 -9223372036854775808"), "got '%.*s'",
                  (int)b.len, b.data);
    buf_clear(&b);
}
END_TEST

START_TEST(growth_keeps_contents_and_reset_keeps_storage)
{
    struct buf b;
    buf_init(&b);
    for (int i = 0; i < 10000; i++)
        ck_assert_msg(buf_append_char(&b, (char)('a' + i % 26)) == 0, "append %d", i);
    ck_assert_msg(b.len == 10000 && b.cap >= 10000, "len %zu cap %zu", b.len, b.cap);
    ck_assert_msg(b.data[9999] == (char)('a' + 9999 % 26), "last byte kept");
    char *data = b.data;
    buf_reset(&b);
    ck_assert_msg(b.len == 0 && b.data == data, "reset keeps the storage");
    ck_assert_msg(buf_reserve(&b, SIZE_MAX) != 0, "an impossible reservation fails");
    ck_assert_msg(b.len == 0 && b.data == data, "a failed reservation changes nothing");
    buf_clear(&b);
    ck_assert_msg(b.data == NULL && b.cap == 0, "clear frees");
}
END_TEST

Suite *
buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("append");
    tcase_add_test(tc, appends_accumulate_in_order);
    tcase_add_test(tc, integers_print_in_decimal_including_extremes);
    tcase_add_test(tc, growth_keeps_contents_and_reset_keeps_storage);
    suite_add_tcase(s, tc);
    return s;
}
