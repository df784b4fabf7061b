/* A borrowed or owned run of bytes: how proto/ passes strings and raw JSON
 * text around without copying or requiring a NUL. */
#ifndef CHANQ_PROTO_SPAN_H
#define CHANQ_PROTO_SPAN_H

#include <stddef.h>
#include <string.h>

/* Bytes [ptr, ptr + len). len == 0 means "absent" wherever a field is
 * optional (no field in the protocol may be the empty string). Who owns the
 * bytes is said by whatever hands the span out. */
struct span {
    const char *ptr; /* first byte; may be NULL when len == 0 */
    size_t len;      /* number of bytes */
};

/* A span over a NUL-terminated C string (NULL gives the empty span). */
static inline struct span
span_str(const char *s)
{
    struct span sp = {s, s ? strlen(s) : 0};
    return sp;
}

#endif
