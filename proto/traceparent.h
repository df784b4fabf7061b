/* W3C Trace Context: the traceparent header's syntax
 * (https://www.w3.org/TR/trace-context/#traceparent-header), checked where
 * a job's trace context comes in. Any thread; no state. */
#ifndef CHANQ_PROTO_TRACEPARENT_H
#define CHANQ_PROTO_TRACEPARENT_H

#include <stdbool.h>
#include <stddef.h>

/* Longest traceparent kept: version 00 is 55 bytes; a later version may
 * append fields, which are kept up to this length. */
#define TRACEPARENT_MAX 256

/* Whether s[0..len) is a valid traceparent: VERSION-TRACEID-PARENTID-FLAGS
 * in lowercase hex (2-32-16-2 digits), version not ff, neither id all
 * zeros; version 00 is exactly that (55 bytes), a later one may go on
 * after a '-' (up to TRACEPARENT_MAX). When not, *why (if why is not NULL)
 * names the first problem. */
bool traceparent_valid(const char *s, size_t len, const char **why);

#endif
