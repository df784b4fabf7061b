/* Request dispatch: op -> handler, one small function per protocol op that
 * is not the broker's (hello, ping, server stats), plus the checks every
 * request passes first (auth, shutting down). */
#ifndef CHANQ_DAEMON_OPS_H
#define CHANQ_DAEMON_OPS_H

#include <stdbool.h>

#include "daemon/broker.h"
#include "daemon/conn_tag.h"
#include "daemon/peers.h"
#include "proto/buf.h"
#include "proto/msg.h"

struct conn_env;

/* What one connection's requests share. Owned by the connection. */
struct op_session {
    struct session s;   /* holder + ctx handed to the broker */
    bool authed;        /* said hello with a valid token (or none needed) */
    struct peer_addr peer;     /* the client's address (set before the first request) */
    struct conn_tag tag;       /* number, client name, address: for log lines */
    unsigned hello_failures;   /* failed hellos on this connection */
    bool hangup;        /* the connection is to end after this answer (goroutine) */
};

/* Runs one decoded request against env (borrowed: the broker, the tokens,
 * the stop flag) and appends exactly one response line to out.
 * Goroutine only; may park (submit, fetch, wait). */
void ops_handle(const struct conn_env *env, struct op_session *os, const struct request *req,
                struct buf *out);

/* Appends the error line for a request that did not decode. */
void ops_reply_error(struct buf *out, const struct op_session *os, struct span rid,
                     const struct proto_error *err);

#endif
