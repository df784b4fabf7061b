/* A strict, allocation-free JSON scanner (RFC 8259, UTF-8 checked): it
 * validates text and reports where each value lies instead of building a
 * tree. Internal to proto/ (msg.c and the tests use it). */
#ifndef CHANQ_PROTO_SCAN_H
#define CHANQ_PROTO_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum scan_type { SCAN_NULL, SCAN_BOOL, SCAN_NUMBER, SCAN_STRING, SCAN_ARRAY, SCAN_OBJECT };

/* One scanned value: its raw text and what the caller needs to use it
 * without scanning it again. */
struct scan_value {
    enum scan_type type;
    const char *raw; /* first byte of the value's text */
    size_t len;      /* bytes of text (a string includes its quotes) */
    bool has_ws;     /* array/object: whitespace inside, so compaction is needed */
    bool has_escape; /* string: contains a backslash escape */
    bool is_int;     /* number: no fraction, no exponent */
    bool truth;      /* bool: its value */
    size_t nelems;   /* array: number of elements */
};

/* Scanning state over text[0..len). Stack-allocated by the caller. */
struct scan {
    const char *start; /* beginning of the text, for error offsets */
    const char *p;     /* next byte to read */
    const char *end;   /* one past the last byte */
    int max_depth;     /* arrays/objects nested deeper than this are rejected */
    size_t ws;         /* whitespace bytes skipped so far (to detect has_ws) */
    size_t members;    /* members scan_object_next() returned so far */
    const char *why;   /* on failure: the reason (static string) */
    size_t at;         /* on failure: byte offset of the problem */
};

void scan_init(struct scan *s, const char *text, size_t len, int max_depth);

/* Skips whitespace; true when the text is at its end. */
bool scan_at_end(struct scan *s);

/* Scans one value at depth `depth` (the outermost value is depth 1) after
 * any whitespace. 0, or -1 with s->why/s->at set. */
int scan_value(struct scan *s, int depth, struct scan_value *v);

/* Walks the members of the object whose '{' is next (after whitespace):
 * scan_object_open(), then scan_object_next() until it returns 0 (the '}'
 * was consumed) or -1 (error). Members' values are at depth 2. */
int scan_object_open(struct scan *s);
int scan_object_next(struct scan *s, struct scan_value *key, struct scan_value *val);

/* Walks the elements of an already validated array value, in order: *pos
 * starts at 0; returns 1 with *elem set, or 0 after the last element. */
int scan_array_next(const struct scan_value *arr, size_t *pos, struct scan_value *elem);

/* Writes the decoded bytes of a validated string value (without quotes)
 * to out, which has room for v->len bytes; returns how many were written. */
size_t scan_unescape(const struct scan_value *v, char *out);

/* Writes a validated value without insignificant whitespace to out (room
 * for v->len bytes); returns how many bytes were written. */
size_t scan_compact(const struct scan_value *v, char *out);

/* The value of a validated integer number; false when it does not fit. */
bool scan_int64(const struct scan_value *v, int64_t *out);

/* "null", "boolean", "number", "string", "array", "object". */
const char *scan_type_name(enum scan_type t);

#endif
