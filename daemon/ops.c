/* The op table and the server-level ops (hello, ping, stats). */
#include "chanq_config.h"

#include "daemon/ops.h"
#include "daemon/cluster/gate.h"
#include "daemon/log.h"
#include "daemon/clientreg.h"
#include "daemon/conn_env.h"
#include "daemon/stats.h"
#include "daemon/schedule.h"
#include "daemon/tokens.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/timer.h"
#include "proto/encode.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef int op_fn(const struct conn_env *env, struct op_session *os, const struct request *req,
                  struct buf *out, struct proto_error *err);

static int
op_ping(const struct conn_env *env, struct op_session *os, const struct request *req, struct buf *out,
        struct proto_error *err)
{
    return encode_ok(out, req->rid);
}

/* A failed hello is answered late (HELLO_DELAY_MS, doubling per failure
 * on the connection up to HELLO_DELAY_MAX_MS, and queued behind the other
 * failures of its address), and the connection ends after
 * HELLO_MAX_FAILURES: guessing a token costs time, not just a round trip. */
#define HELLO_DELAY_MS 100
#define HELLO_DELAY_MAX_MS 2000
#define HELLO_MAX_FAILURES 3

static int64_t
hello_delay_ms(unsigned failures)
{
    int64_t d = HELLO_DELAY_MS;
    for (unsigned i = 1; i < failures && d < HELLO_DELAY_MAX_MS; i++)
        d *= 2;
    return d < HELLO_DELAY_MAX_MS ? d : HELLO_DELAY_MAX_MS;
}

/* Fails closed: whatever an earlier hello proved, the connection is no
 * longer authenticated. Parks before the answer (the answers before it are
 * sent first); the client leaving or the server stopping ends the park. */
static int
hello_failed(const struct conn_env *env, struct op_session *os, struct proto_error *err)
{
    os->authed = false;
    os->hello_failures++;
    int64_t park = peers_hello_failed(env->peers, &os->peer,
                                      hello_delay_ms(os->hello_failures));
    session_before_park(&os->s);
    go_sleep(park, os->s.ctx);
    os->hangup = os->hello_failures >= HELLO_MAX_FAILURES;
    proto_error_set(err, PROTO_UNAUTHORIZED, "token: missing or not accepted");
    return -1;
}

static int
op_hello(const struct conn_env *env, struct op_session *os, const struct request *req, struct buf *out,
         struct proto_error *err)
{
    /* An address whose failures already queue up is not heard: its token
     * is not even compared, so many connections guess no faster than one. */
    if (tokens_required(env->tokens) && !peers_hello_allowed(env->peers, &os->peer)) {
        os->authed = false;
        os->hangup = true;
        go_sleep(HELLO_DELAY_MS, os->s.ctx); /* and reconnecting costs time too */
        proto_error_set(err, PROTO_LIMIT, "too many failed hellos from this address; retry later");
        return -1;
    }
    if (!tokens_accept(env->tokens, req->token))
        return hello_failed(env, os, err);
    os->authed = true;
    os->hello_failures = 0;
    conn_tag_set_client(&os->tag, req->client.ptr, req->client.len);
    if (os->s.holder && os->s.holder->info)
        client_info_set_name(os->s.holder->info, req->client.ptr, req->client.len);
    json_t *fields = json_pack("{s:s, s:s, s:i}", "server", "chanqd", "version",
                               PACKAGE_VERSION, "protocol", 1);
    if (fields && env->cluster) {
        char role[16], leader[96];
        cluster_gate_get(env->cluster, role, sizeof role, leader, sizeof leader);
        json_object_set_new(fields, "role", json_string(role));
        json_object_set_new(fields, "leader", *leader ? json_string(leader) : json_null());
    }
    int rc = encode_ok_fields(out, req->rid, fields);
    json_decref(fields);
    return rc;
}

static int
op_stats(const struct conn_env *env, struct op_session *os, const struct request *req, struct buf *out,
         struct proto_error *err)
{
    if (req->queue.len)
        return broker_op_stats(env->broker, &os->s, req, out, err);
    json_t *server = stats_server_json(env->stats);
    char digest[BROKER_DIGEST_HEX];
    if (server && req->digest) {
        /* Cluster mode: the committed state, comparable across nodes. */
        if ((env->cluster ? cluster_gate_digest(env->cluster, digest)
                          : broker_state_digest(env->broker, digest)) < 0) {
            json_decref(server);
            proto_error_set(err, PROTO_INTERNAL, "out of memory computing the digest");
            return -1;
        }
        json_object_set_new(server, "state_digest", json_string(digest));
    }
    json_t *fields = server ? json_pack("{s:o}", "server", server) : NULL;
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return rc;
}

/* cluster: this node's view (any node answers, serving or not). */
static int
op_cluster(const struct conn_env *env, struct op_session *os, const struct request *req,
           struct buf *out, struct proto_error *err)
{
    (void)os;
    if (!env->cluster) {
        proto_error_set(err, PROTO_BAD_REQUEST, "this server is a single node, not a cluster");
        return -1;
    }
    json_t *status = cluster_gate_status(env->cluster);
    json_t *fields = status ? json_pack("{s:o}", "cluster", status) : NULL;
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    if (rc < 0)
        proto_error_set(err, PROTO_INTERNAL, "out of memory describing the cluster");
    return rc;
}

/* How long a membership change may take to answer: libraft answers a
 * transfer within an election timeout, an addition once the new node has
 * caught up with the log. */
#define CLUSTER_CHANGE_WAIT_MS 60000

/* The replica's answer to a change, on its thread: into the op's channel
 * (room for one), whose reference it holds. */
static void
change_done(void *arg, int status)
{
    struct chan *c = arg;
    chan_try_send(c, &status);
    chan_unref(c);
}

static void
change_error(int status, int64_t node, struct proto_error *err)
{
    switch (status) {
    case -ENOTCONN:
    case -ECONNRESET:
        proto_error_set(err, PROTO_NOT_LEADER, "this node is no longer the leader");
        return;
    case -EEXIST:
        proto_error_set(err, PROTO_CONFLICT, "node %lld or its address is already a member",
                        (long long)node);
        return;
    case -ENOENT:
        proto_error_set(err, PROTO_NOT_FOUND, node ? "node %lld is not a voting member"
                                                  : "no other voter to hand leadership to",
                        (long long)node);
        return;
    case -EBUSY:
        proto_error_set(err, PROTO_CONFLICT, "another membership change is in progress");
        return;
    case -ETIMEDOUT:
        proto_error_set(err, PROTO_TIMEOUT, "not done in time (the change may still happen)");
        return;
    case -EINVAL:
        proto_error_set(err, PROTO_BAD_REQUEST, "address: not IPV4:PORT[/HOST:PORT]");
        return;
    }
    proto_error_set(err, PROTO_INTERNAL, "membership change failed: %s", strerror(-status));
}

/* cluster_add, cluster_remove, cluster_transfer: answered once the change
 * is committed (or the new leader elected). The gate let only the serving
 * leader through. */
static int
op_cluster_change(const struct conn_env *env, struct op_session *os, const struct request *req,
                  struct buf *out, struct proto_error *err)
{
    enum cluster_change kind = req->op == OP_CLUSTER_ADD      ? CLUSTER_ADD
                               : req->op == OP_CLUSTER_REMOVE ? CLUSTER_REMOVE
                                                              : CLUSTER_TRANSFER;
    int64_t node = req->has_node ? req->node : 0;
    if (kind == CLUSTER_ADD && strchr(req->address.ptr, '/') == NULL) {
        proto_error_set(err, PROTO_BAD_REQUEST,
                        "address: give the client address too (IPV4:PORT/HOST:PORT)");
        return -1;
    }
    struct chan *c = chan_new(sizeof(int), 1);
    if (!c) {
        proto_error_set(err, PROTO_INTERNAL, "out of memory");
        return -1;
    }
    chan_ref(c); /* change_done's */
    int status = cluster_gate_change(env->cluster, kind, (uint64_t)node, req->address.ptr,
                                     change_done, c);
    if (status < 0) {
        chan_unref(c); /* change_done will not come */
    } else {
        /* Not the session's context: a transfer makes this node step down,
         * which ends the session's waits, and its answer must still go out. */
        struct ctx *wait = ctx_with_timeout(NULL, CLUSTER_CHANGE_WAIT_MS);
        if (!wait || chan_recv(c, &status, wait) < 0)
            status = -ETIMEDOUT;
        if (wait)
            ctx_release(wait);
    }
    chan_unref(c);
    if (status < 0) {
        change_error(status, node, err);
        return -1;
    }
    log_info("cluster: %s of node %lld done", msg_op_name(req->op), (long long)node);
    return encode_ok(out, req->rid);
}

/* The open connections (docs/protocol.md, "clients"). */
static int
op_clients(const struct conn_env *env, struct op_session *os, const struct request *req,
           struct buf *out, struct proto_error *err)
{
    json_t *all = env->clients ? client_reg_json(env->clients, env->broker) : json_array();
    json_t *fields = all ? json_pack("{s:o}", "clients", all) : NULL;
    int rc = fields ? encode_ok_fields(out, req->rid, fields) : -1;
    json_decref(fields);
    return rc;
}

/* A broker op, called through the server's broker. */
struct op_entry {
    op_fn *fn;                 /* server-level handler, or NULL */
    broker_op_fn *broker_fn;   /* broker handler, or NULL */
};

static const struct op_entry op_table[OP_COUNT] = {
    [OP_HELLO] = {op_hello, NULL},
    [OP_PING] = {op_ping, NULL},
    [OP_DECLARE] = {NULL, broker_op_declare},
    [OP_SUBMIT] = {NULL, broker_op_submit},
    [OP_FETCH] = {NULL, broker_op_fetch},
    [OP_ACK] = {NULL, broker_op_ack},
    [OP_NACK] = {NULL, broker_op_nack},
    [OP_RELEASE] = {NULL, broker_op_release},
    [OP_TOUCH] = {NULL, broker_op_touch},
    [OP_CANCEL] = {NULL, broker_op_cancel},
    [OP_WAIT] = {NULL, broker_op_wait},
    [OP_JOB] = {NULL, broker_op_job},
    [OP_CLOSE] = {NULL, broker_op_close},
    [OP_PAUSE] = {NULL, broker_op_pause},
    [OP_RESUME] = {NULL, broker_op_resume},
    [OP_KICK] = {NULL, broker_op_kick},
    [OP_QUEUES] = {NULL, broker_op_queues},
    [OP_STATS] = {op_stats, NULL},
    [OP_CONSUME] = {NULL, broker_op_consume},
    [OP_CANCEL_CONSUME] = {NULL, broker_op_cancel_consume},
    [OP_CLUSTER] = {op_cluster, NULL},
    [OP_CLUSTER_ADD] = {op_cluster_change, NULL},
    [OP_CLUSTER_REMOVE] = {op_cluster_change, NULL},
    [OP_CLUSTER_TRANSFER] = {op_cluster_change, NULL},
    [OP_SCHEDULE] = {NULL, broker_op_schedule},
    /* operator ops */
    [OP_LIST] = {NULL, broker_op_list},
    [OP_RETRY] = {NULL, broker_op_retry},
    [OP_DELETE] = {NULL, broker_op_delete},
    [OP_PURGE] = {NULL, broker_op_purge},
    [OP_QUEUE_DELETE] = {NULL, broker_op_queue_delete},
    [OP_CONFIGURE] = {NULL, broker_op_configure},
    [OP_CLIENTS] = {op_clients, NULL},
};

/* Logs an error answer with who got it and for which op and queue (req
 * may be NULL: the line did not decode). */
static void
log_error_answer(const struct op_session *os, const struct request *req,
                 const struct proto_error *err)
{
    enum log_level level = err->code == PROTO_INTERNAL ? LOG_ERROR : LOG_DEBUG;
    if (!log_enabled(level))
        return;
    char queue[256];
    snprintf(queue, sizeof queue, "%.*s", req ? (int)req->queue.len : 0, req ? req->queue.ptr : "");
    struct log_fields f =
        LOG_FIELDS(CONN_TAG_FIELDS(&os->tag), LOG_STR("code", proto_err_code(err->code)),
                   LOG_STR("op", req ? msg_op_name(req->op) : NULL),
                   LOG_STR("queue", queue[0] ? queue : NULL));
    if (level == LOG_ERROR)
        log_kv(level, f, "internal error answered to a client: %s", err->message);
    else
        log_kv(level, f, "client error %s: %s", proto_err_code(err->code), err->message);
}

void
ops_reply_error(struct buf *out, const struct op_session *os, struct span rid,
                const struct proto_error *err)
{
    log_error_answer(os, NULL, err);
    if (encode_proto_error(out, rid, err) < 0)
        log_error_kv(LOG_FIELDS(CONN_TAG_FIELDS(&os->tag)),
                     "out of memory encoding an error reply");
}

/* ops_reply_error for a decoded request: its op and queue are logged too. */
static void
reply_request_error(struct buf *out, const struct op_session *os, const struct request *req,
                    const struct proto_error *err)
{
    log_error_answer(os, req, err);
    if (encode_proto_error(out, req->rid, err) < 0)
        log_error_kv(LOG_FIELDS(CONN_TAG_FIELDS(&os->tag)),
                     "out of memory encoding an error reply");
}

static int
check_admission(const struct conn_env *env, struct op_session *os, const struct request *req,
                struct proto_error *err)
{
    if (!os->authed && req->op != OP_HELLO) {
        proto_error_set(err, PROTO_UNAUTHORIZED, "say hello with the server's token first");
        return -1;
    }
    if (conn_env_stopping(env) && req->op != OP_PING && req->op != OP_STATS) {
        proto_error_set(err, PROTO_SHUTTING_DOWN, "server is stopping; retry elsewhere or later");
        return -1;
    }
    /* Cluster mode: only the ready leader's state is the cluster's. */
    if (env->cluster && req->op != OP_HELLO && req->op != OP_PING && req->op != OP_STATS &&
        req->op != OP_CLUSTER && !cluster_gate_serving(env->cluster)) {
        char role[16], leader[96];
        cluster_gate_get(env->cluster, role, sizeof role, leader, sizeof leader);
        proto_error_set(err, PROTO_NOT_LEADER, "this node is not the leader (%s); leader: %s",
                        role, *leader ? leader : "unknown");
        return -1;
    }
    return 0;
}

void
ops_handle(const struct conn_env *env, struct op_session *os, const struct request *req, struct buf *out)
{
    struct proto_error err = {PROTO_OK, ""};
    const struct op_entry *e = &op_table[req->op];
    int rc = check_admission(env, os, req, &err);
    if (rc == 0 && e->fn)
        rc = e->fn(env, os, req, out, &err);
    else if (rc == 0 && e->broker_fn)
        rc = e->broker_fn(env->broker, &os->s, req, out, &err);
    else if (rc == 0)
        proto_error_set(&err, PROTO_UNKNOWN_OP, "op not handled"), rc = -1;
    if (rc < 0) {
        if (err.code == PROTO_OK)
            proto_error_set(&err, PROTO_INTERNAL, "out of memory");
        reply_request_error(out, os, req, &err);
    }
}
