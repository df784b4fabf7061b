/* Who a connection is, for its log lines: a number, the name the client
 * gave in hello and the remote address (log.h's conn, client and remote
 * fields). The tag lives in the connection's op_session. */
#ifndef CHANQ_DAEMON_CONN_TAG_H
#define CHANQ_DAEMON_CONN_TAG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/log.h"

enum { CONN_TAG_CLIENT_MAX = 64, CONN_TAG_REMOTE_MAX = 56 };

struct conn_tag {
    uint64_t id;                      /* from 1, per process (set before serving) */
    char remote[CONN_TAG_REMOTE_MAX]; /* HOST:PORT, [V6]:PORT or "unix" (set before serving) */
    char client[CONN_TAG_CLIENT_MAX]; /* hello's client name, cut; valid once client_set */
    _Atomic bool client_set;          /* published by the goroutine, read by any thread */
};

/* Numbers the connection and reads its peer's address from fd. Loop
 * thread, before the connection's goroutine starts. */
void conn_tag_init(struct conn_tag *t, uint64_t id, int fd);

/* Keeps the first client name a hello gives (len bytes, cut to fit); later
 * ones are ignored, so readers on other threads never see it change.
 * The connection's goroutine only. */
void conn_tag_set_client(struct conn_tag *t, const char *name, size_t len);

/* The client name, or NULL before hello named one. Any thread. */
const char *conn_tag_client(const struct conn_tag *t);

/* The tag's fields, to put in LOG_FIELDS(...) with others. */
#define CONN_TAG_FIELDS(t)                                                                         \
    LOG_UINT("conn", (t)->id), LOG_STR("client", conn_tag_client(t)), LOG_STR("remote", (t)->remote)

#endif
