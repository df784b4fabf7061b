/* The wire error codes (the one table) and the error detail record. */
#include "chanq_config.h"

#include "proto/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const codes[PROTO_ERR_COUNT] = {
    [PROTO_OK] = "ok",
    [PROTO_BAD_REQUEST] = "bad_request",
    [PROTO_FRAME_TOO_LARGE] = "frame_too_large",
    [PROTO_UNKNOWN_OP] = "unknown_op",
    [PROTO_UNAUTHORIZED] = "unauthorized",
    [PROTO_NOT_FOUND] = "not_found",
    [PROTO_NOT_RESERVED] = "not_reserved",
    [PROTO_QUEUE_FULL] = "queue_full",
    [PROTO_TIMEOUT] = "timeout",
    [PROTO_CLOSED] = "closed",
    [PROTO_CANCELLED] = "cancelled",
    [PROTO_CONFLICT] = "conflict",
    [PROTO_TOO_LARGE] = "too_large",
    [PROTO_LIMIT] = "limit",
    [PROTO_SHUTTING_DOWN] = "shutting_down",
    [PROTO_NOT_LEADER] = "not_leader",
    [PROTO_INTERNAL] = "internal",
};

const char *
proto_err_code(enum proto_err code)
{
    if ((unsigned)code >= PROTO_ERR_COUNT)
        return codes[PROTO_INTERNAL];
    return codes[code];
}

bool
proto_err_parse(const char *s, size_t len, enum proto_err *out)
{
    for (int i = 0; i < PROTO_ERR_COUNT; i++) {
        if (strlen(codes[i]) == len && memcmp(codes[i], s, len) == 0) {
            *out = (enum proto_err)i;
            return true;
        }
    }
    return false;
}

void
proto_error_set(struct proto_error *err, enum proto_err code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* Keep the promise of err.h: printable ASCII only, whatever was quoted. */
    for (char *p = err->message; *p; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    }
}
