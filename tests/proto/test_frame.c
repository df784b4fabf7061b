/* proto/frame: splitting a byte stream into lines. */
#include "chanq_config.h"

#include "proto/frame.h"
#include "tests/proto/suites.h"

#include <stdio.h>
#include <string.h>

/* Feeds input to a fresh frame in chunks of `chunk` bytes and returns a
 * log of what came out: "[line]" per line, "!" per frame_too_large. The
 * log is written to out (NUL-terminated). */
static void
run_frames(size_t max, const char *input, size_t len, size_t chunk, char *out, size_t cap)
{
    struct frame *f = frame_new(max);
    size_t o = 0;
    ck_assert_msg(f != NULL, "frame_new");
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        frame_push(f, input + off, n);
        const char *line;
        size_t ll;
        enum frame_status st;
        while ((st = frame_next_line(f, &line, &ll)) != FRAME_MORE) {
            ck_assert_msg(st != FRAME_NOMEM, "out of memory");
            if (st == FRAME_TOO_LARGE) {
                o += (size_t)snprintf(out + o, cap - o, "!");
            } else {
                ck_assert_msg(ll > 0, "lines are never empty");
                o += (size_t)snprintf(out + o, cap - o, "[%.*s]", (int)ll, line);
            }
            ck_assert_msg(o < cap, "log overflow");
        }
    }
    frame_free(f);
}

/* The same stream split every possible way gives the same log. */
static void
expect_frames(size_t max, const char *input, const char *want)
{
    size_t len = strlen(input);
    for (size_t chunk = 1; chunk <= len; chunk++) {
        char got[4096];
        got[0] = '\0';
        run_frames(max, input, len, chunk, got, sizeof got);
        ck_assert_msg(strcmp(got, want) == 0, "chunk %zu of '%s': got '%s', want '%s'", chunk,
                      input, got, want);
    }
}

START_TEST(whole_lines_in_one_push_come_out_in_place)
{
    struct frame *f = frame_new(100);
    const char *in = "abc\ndef\n";
    const char *line;
    size_t len;
    frame_push(f, in, strlen(in));
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_LINE, "first line");
    ck_assert_msg(line == in && len == 3, "first line points into the input");
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_LINE, "second line");
    ck_assert_msg(line == in + 4 && len == 3, "second line points into the input");
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_MORE, "then more is needed");
    ck_assert_msg(frame_buffered(f) == 0, "nothing buffered");
    frame_free(f);
}
END_TEST

START_TEST(line_split_across_pushes_is_reassembled)
{
    expect_frames(100, "hello world\nsecond\n", "[hello world][second]");
}
END_TEST

START_TEST(crlf_is_stripped_and_a_lone_cr_is_kept)
{
    expect_frames(100, "a\r\nb\rc\r\n\rd\n", "[a][b\rc][\rd]");
}
END_TEST

START_TEST(empty_lines_are_skipped)
{
    expect_frames(100, "\n\r\n\nx\n\n\r\ny\r\n\n", "[x][y]");
}
END_TEST

START_TEST(line_without_newline_waits_in_the_buffer)
{
    struct frame *f = frame_new(100);
    const char *line;
    size_t len;
    frame_push(f, "abc", 3);
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_MORE, "no line yet");
    ck_assert_msg(frame_buffered(f) == 3, "3 bytes buffered, got %zu", frame_buffered(f));
    frame_push(f, "d\n", 2);
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_LINE, "line completes");
    ck_assert_msg(len == 4 && memcmp(line, "abcd", 4) == 0, "got '%.*s'", (int)len, line);
    ck_assert_msg(frame_buffered(f) == 0, "buffer emptied");
    frame_free(f);
}
END_TEST

START_TEST(line_of_exactly_the_maximum_is_accepted_with_lf_or_crlf)
{
    expect_frames(5, "12345\n12345\r\n", "[12345][12345]");
}
END_TEST

START_TEST(line_over_the_maximum_is_reported_once_and_skipped)
{
    expect_frames(5, "123456\nok\n", "![ok]");
    expect_frames(5, "123456\r\nok\n", "![ok]");
    expect_frames(5, "ab\n1234567890123456789012345678901234567890\ncd\n", "[ab]![cd]");
}
END_TEST

START_TEST(several_oversize_lines_in_a_row_are_each_reported)
{
    expect_frames(3, "aaaa\nbbbbbbbbbbbb\ncccc\r\nok\n", "!!![ok]");
}
END_TEST

START_TEST(oversize_line_without_its_end_is_reported_before_the_newline_arrives)
{
    struct frame *f = frame_new(4);
    const char *line;
    size_t len;
    frame_push(f, "0123456", 7);
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_TOO_LARGE, "reported at once");
    ck_assert_msg(frame_buffered(f) == 0, "nothing kept of an oversize line");
    frame_push(f, "789", 3);
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_MORE, "reported only once");
    frame_push(f, "9\nok\n", 5);
    ck_assert_msg(frame_next_line(f, &line, &len) == FRAME_LINE, "next line decodes");
    ck_assert_msg(len == 2 && memcmp(line, "ok", 2) == 0, "got '%.*s'", (int)len, line);
    frame_free(f);
}
END_TEST

START_TEST(max_plus_one_bytes_ending_in_cr_waits_for_the_newline)
{
    /* "12345\r" might still be a 5-byte line ended by "\r\n". */
    expect_frames(5, "12345\r\nx\n", "[12345][x]");
    expect_frames(5, "12345\rx\ny\n", "![y]");
}
END_TEST

/* No assertion to make: Check runs each test in a child process, so a
 * frame_free that touched NULL would crash it and fail the test. */
START_TEST(freeing_null_is_allowed)
{
    frame_free(NULL);
}
END_TEST

Suite *
frame_suite(void)
{
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("lines");
    tcase_add_test(tc, whole_lines_in_one_push_come_out_in_place);
    tcase_add_test(tc, line_split_across_pushes_is_reassembled);
    tcase_add_test(tc, crlf_is_stripped_and_a_lone_cr_is_kept);
    tcase_add_test(tc, empty_lines_are_skipped);
    tcase_add_test(tc, line_without_newline_waits_in_the_buffer);
    tcase_add_test(tc, freeing_null_is_allowed);
    suite_add_tcase(s, tc);
    tc = tcase_create("limits");
    tcase_add_test(tc, line_of_exactly_the_maximum_is_accepted_with_lf_or_crlf);
    tcase_add_test(tc, line_over_the_maximum_is_reported_once_and_skipped);
    tcase_add_test(tc, several_oversize_lines_in_a_row_are_each_reported);
    tcase_add_test(tc, oversize_line_without_its_end_is_reported_before_the_newline_arrives);
    tcase_add_test(tc, max_plus_one_bytes_ending_in_cr_waits_for_the_newline);
    suite_add_tcase(s, tc);
    return s;
}
