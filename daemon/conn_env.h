/* What the server hands to each connection (daemon/conn.h), op session
 * (daemon/ops.h) and the HTTP admin routes (daemon/http_admin.h): the parts
 * of the daemon they use, so none of them sees struct server.
 *
 * The server embeds one conn_env, fills its pointers once before it serves
 * (server_new) and outlives every user. The pointed-to objects stay owned by
 * the server. Three parts change while serving, each written by one side:
 * `stopping` (the server, on SIGTERM/SIGINT), the loop thread's identity
 * (the server, around its loop) and the list of live connections (conn.c,
 * on the loop thread). */
#ifndef CHANQ_DAEMON_CONN_ENV_H
#define CHANQ_DAEMON_CONN_ENV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/config.h"
#include "proto/msg.h"

struct broker;
struct client_reg;
struct closewatch;
struct cluster_gate;
struct conn;
struct ctx;
struct evbridge;
struct event_base;
struct membudget;
struct peers;
struct stats_src;
struct tokens;

struct conn_env {
    /* Set once before serving; the objects' own headers say which thread
     * may use them. */
    struct event_base *base;       /* the loop: sockets and timers */
    struct evbridge *bridge;       /* goroutines -> loop calls */
    struct broker *broker;         /* queues and jobs: every broker_op_* */
    struct membudget *budget;      /* --max-memory, shared with the broker's payloads */
    struct ctx *root;              /* cancelled when the stop begins: parent of every wait */
    const struct config *cfg;      /* the live config (SIGHUP changes reloadable fields) */
    const struct tokens *tokens;   /* --token-file, or NULL: no hello needed */
    struct peers *peers;           /* per-address counts and failed hellos */
    struct closewatch *closewatch; /* paused sockets, watched for their peer's close */
    const struct stats_src *stats; /* the server half of the stats op */
    struct cluster_gate *cluster;  /* cluster mode: who serves (ops.c); NULL: a single node */
    struct client_reg *clients;    /* open connections for `clients` (daemon/clientreg.h) */

    /* Written while serving. */
    _Atomic bool stopping;         /* a stop began: new requests get `shutting_down` */
    pthread_t loop_thread;         /* the thread running the loop, once loop_running */
    _Atomic bool loop_running;
    struct conn *conns;            /* live connections (loop thread; conn_next) */
    _Atomic size_t connections;    /* how many (written on the loop, read anywhere) */
    size_t closed_since_trim;      /* connections closed since the last malloc_trim (loop) */
    uint64_t conns_made;           /* connections numbered so far, for log lines (loop) */
};

/* What the decoder enforces now (--max-job may change on SIGHUP). Any thread. */
static inline struct msg_limits
conn_env_msg_limits(const struct conn_env *env)
{
    return (struct msg_limits){.max_payload = config_get(env->cfg, max_job)};
}

static inline bool
conn_env_stopping(const struct conn_env *env)
{
    return atomic_load(&env->stopping);
}

/* True when the caller runs on the loop thread (also a goroutine the loop
 * thread runs between polls). Any thread. */
static inline bool
conn_env_on_loop_thread(const struct conn_env *env)
{
    return atomic_load(&env->loop_running) && pthread_equal(pthread_self(), env->loop_thread);
}

#endif
