/* crc32c_suite: known answers (RFC 3720 B.4) and agreement with a bitwise
 * reference at every alignment and split. */
#include "chanq_config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/journal/crc32c.h"

Suite *crc32c_suite(void);

/* The textbook one-bit-at-a-time CRC-32C. */
static uint32_t
crc_reference(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

START_TEST(crc32c_matches_known_answers)
{
    uint8_t buf[32];
    ck_assert_msg(crc32c(0, "123456789", 9) == 0xE3069283u, "check value of \"123456789\"");
    ck_assert_msg(crc32c(0, "", 0) == 0, "empty input gives 0");
    memset(buf, 0, sizeof(buf));
    ck_assert_msg(crc32c(0, buf, 32) == 0x8A9136AAu, "32 zero bytes");
    memset(buf, 0xff, sizeof(buf));
    ck_assert_msg(crc32c(0, buf, 32) == 0x62A8AB43u, "32 0xff bytes");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    ck_assert_msg(crc32c(0, buf, 32) == 0x46DD794Eu, "bytes 0..31");
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    ck_assert_msg(crc32c(0, buf, 32) == 0x113FDB5Cu, "bytes 31..0");
}
END_TEST

START_TEST(crc32c_agrees_with_the_bitwise_reference_at_any_alignment_and_split)
{
    uint8_t buf[600];
    srand(42);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < 9; off++) {
        for (size_t len = 0; len + off <= sizeof(buf); len += 37) {
            uint32_t want = crc_reference(buf + off, len);
            ck_assert_msg(crc32c(0, buf + off, len) == want, "off %zu len %zu", off, len);
            size_t cut = len / 3;
            uint32_t two = crc32c(crc32c(0, buf + off, cut), buf + off + cut, len - cut);
            ck_assert_msg(two == want, "chained at %zu: off %zu len %zu", cut, off, len);
        }
    }
}
END_TEST

Suite *
crc32c_suite(void)
{
    Suite *s = suite_create("crc32c");
    TCase *tc = tcase_create("crc32c");
    tcase_add_test(tc, crc32c_matches_known_answers);
    tcase_add_test(tc, crc32c_agrees_with_the_bitwise_reference_at_any_alignment_and_split);
    suite_add_tcase(s, tc);
    return s;
}
