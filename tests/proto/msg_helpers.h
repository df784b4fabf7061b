/* Helpers shared by the msg and pipeline tests. Request lines in tests are
 * written with single quotes for readability; json() turns them into
 * double quotes (so a test line cannot contain a literal single quote). */
#ifndef CHANQ_TESTS_PROTO_MSG_HELPERS_H
#define CHANQ_TESTS_PROTO_MSG_HELPERS_H

#include "proto/buf.h"
#include "proto/msg.h"

/* A malloc'd copy of s with every ' replaced by ". */
char *json(const char *s);

/* Decodes the single-quoted line; fails the test unless it succeeds. */
void decode_ok(const char *line, struct request *out);

/* Decodes the single-quoted line; fails the test unless it is rejected
 * with `code` and a message containing `needle`. */
void expect_reject(const char *line, enum proto_err code, const char *needle);

/* One rejection case, for tables. */
struct reject_case {
    const char *line;
    enum proto_err code;
    const char *needle;
};
#define BAD(line, needle)                                                                          \
    {                                                                                              \
        line, PROTO_BAD_REQUEST, needle                                                            \
    }
void expect_rejects(const struct reject_case *cases, size_t n);
#define EXPECT_REJECTS(arr) expect_rejects(arr, sizeof arr / sizeof arr[0])

/* True when the span holds exactly want. */
int span_is(struct span s, const char *want);

/* Appends a canonical text form of every field of r to b (for comparing
 * requests decoded in different ways). 0 or -ENOMEM. */
int request_describe(const struct request *r, struct buf *b);

#endif
