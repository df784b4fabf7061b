/* Protocol error codes: one enum mirroring the wire table of docs/protocol.md,
 * and the detail record that goes with a failure. */
#ifndef CHANQ_PROTO_ERR_H
#define CHANQ_PROTO_ERR_H

#include <stdbool.h>
#include <stddef.h>

/* Every code a response can carry, in the order of the wire table. The
 * wire spelling is proto_err_code(); this is the only place it lives. */
enum proto_err {
    PROTO_OK = 0,          /* not an error */
    PROTO_BAD_REQUEST,     /* not JSON / not an object / missing or mistyped field */
    PROTO_FRAME_TOO_LARGE, /* line over --max-frame */
    PROTO_UNKNOWN_OP,      /* "op" not known */
    PROTO_UNAUTHORIZED,    /* token required and not given */
    PROTO_NOT_FOUND,       /* no such job or queue */
    PROTO_NOT_RESERVED,    /* job not reserved by this connection */
    PROTO_QUEUE_FULL,      /* queue at capacity, would not (or could no longer) wait */
    PROTO_TIMEOUT,         /* a blocking request's time ran out */
    PROTO_CLOSED,          /* queue closed (fetch: closed and drained) */
    PROTO_CANCELLED,       /* job was cancelled */
    PROTO_CONFLICT,        /* declare with different settings */
    PROTO_TOO_LARGE,       /* payload over --max-job */
    PROTO_LIMIT,           /* a server limit would be passed */
    PROTO_SHUTTING_DOWN,   /* server is stopping */
    PROTO_NOT_LEADER,      /* cluster mode: this node does not serve (not the leader) */
    PROTO_INTERNAL,        /* a bug */
    PROTO_ERR_COUNT        /* number of codes; not a code */
};

/* The wire code, e.g. "queue_full"; "ok" for PROTO_OK and "internal" for
 * a value outside the enum. Returns a static string. Any thread. */
const char *proto_err_code(enum proto_err code);

/* The reverse lookup (for clients reading a response): true and *out set
 * when s[0..len) is a known wire code, false otherwise. */
bool proto_err_parse(const char *s, size_t len, enum proto_err *out);

/* What went wrong, for the error reply: the code and a human message that
 * names the field and the reason. The message is printable ASCII (user
 * text is sanitised when it is quoted), so it can be sent as is. */
struct proto_error {
    enum proto_err code; /* PROTO_OK when nothing failed */
    char message[256];   /* NUL-terminated, truncated to fit */
};

/* Fills *err (when err is not NULL) with code and a printf-style message. */
void proto_error_set(struct proto_error *err, enum proto_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
