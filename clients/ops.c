/* libchanq: one function per protocol operation. The hot ones (submit,
 * fetch, ack) write their request text directly; the rest go through
 * jansson. */
#include "chanq_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clients/client-internal.h"

int
chanq_ping(struct chanq_conn *c)
{
    json_t *req = json_pack("{s:s}", "op", "ping"), *resp;
    int rc = chanqi_conn_call(c, req, 0, &resp);
    json_decref(req);
    json_decref(resp);
    return rc;
}

static int
put_queue_list(struct wbuf *b, const char *const *queues, size_t n)
{
    int rc = chanqi_wbuf_puts(b, "[");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0)
            rc = chanqi_wbuf_puts(b, ",");
        if (rc == 0)
            rc = chanqi_wbuf_put_jstr(b, queues[i]);
    }
    return rc == 0 ? chanqi_wbuf_puts(b, "]") : rc;
}

static int
put_opt_i64(struct wbuf *b, const char *key, int64_t v)
{
    return chanqi_wbuf_puts(b, key) == 0 && chanqi_wbuf_put_i64(b, v) == 0 ? 0 : -1;
}

/* Appends the submit request; c->out is unchanged on failure. */
static int
build_submit(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *payload)
{
    struct wbuf *b = &c->out;
    size_t mark = b->len;
    if ((o->queue == NULL) == (o->nqueues == 0))
        return chanqi_conn_fail(c, "bad_request", "submit needs exactly one of queue and queues");
    int rc = chanqi_wbuf_puts(b, "{\"op\":\"submit\",");
    if (o->queue)
        rc = rc ? rc : (chanqi_wbuf_puts(b, "\"queue\":") || chanqi_wbuf_put_jstr(b, o->queue));
    else
        rc = rc ? rc
                : (chanqi_wbuf_puts(b, "\"queues\":") || put_queue_list(b, o->queues, o->nqueues));
    if (o->delay_ms > 0)
        rc = rc ? rc : put_opt_i64(b, ",\"delay_ms\":", o->delay_ms);
    if (o->ttr_ms > 0)
        rc = rc ? rc : put_opt_i64(b, ",\"ttr_ms\":", o->ttr_ms);
    if (o->max_attempts > 0)
        rc = rc ? rc : put_opt_i64(b, ",\"max_attempts\":", o->max_attempts);
    if (o->deadline_ms > 0)
        rc = rc ? rc : put_opt_i64(b, ",\"deadline_ms\":", o->deadline_ms);
    if (o->wait_ms > 0 || o->wait_ms == CHANQ_NO_WAIT)
        rc = rc ? rc : put_opt_i64(b, ",\"wait_ms\":", o->wait_ms > 0 ? o->wait_ms : 0);
    if (o->parent)
        rc = rc ? rc : (chanqi_wbuf_puts(b, ",\"parent\":") || chanqi_wbuf_put_jstr(b, o->parent));
    if (o->traceparent)
        rc = rc ? rc
                : (chanqi_wbuf_puts(b, ",\"traceparent\":") ||
                   chanqi_wbuf_put_jstr(b, o->traceparent));
    if (o->key)
        rc = rc ? rc : (chanqi_wbuf_puts(b, ",\"key\":") || chanqi_wbuf_put_jstr(b, o->key));
    /* Out-of-range values are sent for the server to refuse with its own
     * message (bad_request), rather than dropped here without a word. */
    if (o->priority != 0)
        rc = rc ? rc : put_opt_i64(b, ",\"priority\":", o->priority);
    if (o->run_at != 0)
        rc = rc ? rc : put_opt_i64(b, ",\"run_at\":", o->run_at);
    if (rc == 0 && chanqi_wbuf_puts(b, ",\"payload\":") == 0 &&
        chanqi_wbuf_put_jtext(b, payload) < 0) {
        b->len = mark;
        return chanqi_conn_fail(c, "bad_request", "payload is not JSON");
    }
    rc = rc ? rc : chanqi_wbuf_puts(b, "}\n");
    if (rc < 0) {
        b->len = mark;
        return chanqi_conn_fail_io(c, ENOMEM);
    }
    chanqi_conn_request_done(c);
    return 0;
}

int
chanq_send_submit(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *payload)
{
    if (c->broken)
        return -1;
    return build_submit(c, o, payload);
}

int
chanq_flush(struct chanq_conn *c)
{
    return chanqi_conn_flush(c);
}

/* Reads a submit's answer; again: made again on the leader when it can be
 * (chanqi_conn_recv_again). */
static int
recv_submit(struct chanq_conn *c, bool again, char **id_out, char **queue_out)
{
    json_t *resp;
    c->submit_duplicate = false;
    int rc = again ? chanqi_conn_recv_again(c, -1, &resp, true) : chanqi_conn_recv(c, -1, &resp);
    if (rc == 0) {
        char *id = chanqi_json_dup_str(resp, "id");
        if (!id) {
            rc = chanqi_conn_fail(c, "io", "submit answer without an id");
        } else {
            *id_out = id;
            c->submit_duplicate = json_is_true(json_object_get(resp, "duplicate"));
            if (queue_out)
                *queue_out = chanqi_json_dup_str(resp, "queue");
        }
    }
    json_decref(resp);
    return rc;
}

int
chanq_recv_submit(struct chanq_conn *c, char **id_out, char **queue_out)
{
    return recv_submit(c, true, id_out, queue_out);
}

int
chanq_submit(struct chanq_conn *c, const struct chanq_submit_opts *o, const char *payload,
             char **id_out, char **queue_out)
{
    if (chanqi_conn_revive(c) < 0 || chanq_send_submit(c, o, payload) < 0)
        return -1;
    return recv_submit(c, true, id_out, queue_out);
}

bool
chanq_submit_duplicate(const struct chanq_conn *c)
{
    return c->submit_duplicate;
}

long
chanq_submit_batch(struct chanq_conn *c, const struct chanq_submit_opts *o,
                   const char *const *payloads, size_t n, long window,
                   struct chanq_submit_result *results)
{
    size_t win = window > 0 ? (size_t)window : 256, sent = 0, got = 0;
    long ok = 0;
    int64_t deadline = -1; /* set by the first failover */
    memset(results, 0, n * sizeof *results);
    if (chanqi_conn_revive(c) < 0)
        return -1;
    while (got < n) {
        /* Keep up to `win` submits in flight, written in one go. A payload
         * that is not JSON fails alone, locally, and sends nothing. */
        while (sent < n && sent - got < win) {
            if (chanq_send_submit(c, o, payloads[sent]) < 0) {
                if (c->broken)
                    return -1;
                results[sent].error = c->err;
            }
            sent++;
        }
        struct chanq_submit_result *r = &results[got++];
        if (r->error.code[0])
            continue;
        if (chanq_recv_submit(c, &r->id, &r->queue) == 0) {
            r->duplicate = c->submit_duplicate;
            ok++;
            continue;
        }
        if (deadline < 0)
            deadline = chanqi_conn_now_ms() + (c->cluster ? chanqi_cluster_search_ms(c->cluster) : 0);
        if (chanqi_conn_now_ms() <= deadline && chanqi_conn_failover(c, true) == 0) {
            /* Several servers: this submit and the ones behind it were lost
             * with the connection (or refused by a node that does not
             * lead): made again on the leader, at least once. */
            got--;
            for (size_t i = got; i < sent; i++)
                memset(&results[i].error, 0, sizeof results[i].error);
            sent = got;
            continue;
        }
        if (c->broken)
            return -1;
        r->error = c->err;
    }
    return ok;
}

void
chanq_submit_results_free(struct chanq_submit_result *results, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(results[i].id);
        free(results[i].queue);
        results[i].id = results[i].queue = NULL;
    }
}

int
chanqi_job_from_json(const json_t *j, struct chanq_job *out)
{
    memset(out, 0, sizeof *out);
    out->id = chanqi_json_dup_str(j, "id");
    out->queue = chanqi_json_dup_str(j, "queue");
    json_t *p = json_object_get(j, "payload");
    out->payload = json_dumps(p ? p : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
    out->attempt = json_integer_value(json_object_get(j, "attempt"));
    out->ttr_ms = json_integer_value(json_object_get(j, "ttr_ms"));
    out->deadline = json_integer_value(json_object_get(j, "deadline"));
    bool traced = json_is_string(json_object_get(j, "traceparent"));
    out->traceparent = traced ? chanqi_json_dup_str(j, "traceparent") : NULL;
    return out->id && out->payload && (!traced || out->traceparent) ? 0 : -1;
}

int
chanqi_jobs_from_json(const json_t *arr, struct chanq_job **jobs_out, size_t *n_out)
{
    size_t n = json_array_size(arr);
    *jobs_out = NULL;
    *n_out = 0;
    if (n == 0)
        return 0;
    struct chanq_job *jobs = calloc(n, sizeof *jobs);
    if (!jobs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (chanqi_job_from_json(json_array_get(arr, i), &jobs[i]) < 0) {
            chanq_jobs_free(jobs, i + 1);
            return -1;
        }
    }
    *jobs_out = jobs;
    *n_out = n;
    return 0;
}

void
chanq_jobs_free(struct chanq_job *jobs, size_t n)
{
    if (!jobs)
        return;
    for (size_t i = 0; i < n; i++) {
        free(jobs[i].id);
        free(jobs[i].queue);
        free(jobs[i].payload);
        free(jobs[i].traceparent);
    }
    free(jobs);
}

int
chanq_fetch(struct chanq_conn *c, const struct chanq_fetch_opts *o, struct chanq_job **jobs_out,
            size_t *n_out)
{
    *jobs_out = NULL;
    *n_out = 0;
    if (chanqi_conn_revive(c) < 0)
        return -1;
    if (o->nqueues == 0)
        return chanqi_conn_fail(c, "bad_request", "fetch needs at least one queue");
    struct wbuf *b = &c->out;
    size_t mark = b->len;
    int rc = chanqi_wbuf_puts(b, "{\"op\":\"fetch\",\"queues\":") ||
             put_queue_list(b, o->queues, o->nqueues);
    if (o->timeout_ms >= 0)
        rc = rc ? rc : put_opt_i64(b, ",\"timeout_ms\":", o->timeout_ms);
    if (o->count > 1)
        rc = rc ? rc : put_opt_i64(b, ",\"count\":", o->count);
    if (o->strict)
        rc = rc ? rc : chanqi_wbuf_puts(b, ",\"strict\":true");
    rc = rc ? rc : chanqi_wbuf_puts(b, "}\n");
    if (rc) {
        b->len = mark;
        return chanqi_conn_fail_io(c, ENOMEM);
    }
    chanqi_conn_request_done(c);
    json_t *resp;
    if (chanqi_conn_recv_again(c, o->timeout_ms, &resp, true) < 0) {
        json_decref(resp);
        return -1;
    }
    int rc2 = chanqi_jobs_from_json(json_object_get(resp, "jobs"), jobs_out, n_out);
    json_decref(resp);
    if (rc2 < 0)
        return chanqi_conn_fail(c, "io", "a fetched job without id or payload, or no memory");
    return 0;
}

int
chanq_consume(struct chanq_conn *c, const struct chanq_consume_opts *o)
{
    if (c->broken)
        return -1;
    struct wbuf *b = &c->out;
    size_t mark = b->len;
    int rc = chanqi_wbuf_puts(b, "{\"op\":\"consume\"");
    if (o->nqueues > 0) {
        rc = rc ? rc : chanqi_wbuf_puts(b, ",\"queues\":");
        rc = rc ? rc : put_queue_list(b, o->queues, o->nqueues);
        if (o->strict)
            rc = rc ? rc : chanqi_wbuf_puts(b, ",\"strict\":true");
    }
    if (o->prefetch > 0)
        rc = rc ? rc : put_opt_i64(b, ",\"prefetch\":", o->prefetch);
    rc = rc ? rc : chanqi_wbuf_puts(b, "}\n");
    if (rc) {
        b->len = mark;
        return chanqi_conn_fail_io(c, ENOMEM);
    }
    chanqi_conn_request_done(c);
    return chanq_recv_ok(c);
}

int
chanq_cancel_consume(struct chanq_conn *c)
{
    if (c->broken)
        return -1;
    if (chanqi_wbuf_puts(&c->out, "{\"op\":\"cancel_consume\"}\n") < 0)
        return chanqi_conn_fail_io(c, ENOMEM);
    chanqi_conn_request_done(c);
    return chanq_recv_ok(c);
}

int
chanq_send_ack_many(struct chanq_conn *c, const char *const *ids, size_t n)
{
    if (c->broken)
        return -1;
    if (n == 0 || n > 1000)
        return chanqi_conn_fail(c, "bad_request", "an ack names 1 to 1000 ids, not %zu", n);
    struct wbuf *b = &c->out;
    size_t mark = b->len;
    int rc = chanqi_wbuf_puts(b, "{\"op\":\"ack\",\"ids\":[");
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = (i ? chanqi_wbuf_put(b, ",", 1) : 0) || chanqi_wbuf_put_jstr(b, ids[i]);
    rc = rc ? rc : chanqi_wbuf_puts(b, "]}\n");
    if (rc) {
        b->len = mark;
        return chanqi_conn_fail_io(c, ENOMEM);
    }
    chanqi_conn_request_done(c);
    return 0;
}

int
chanq_recv_many(struct chanq_conn *c, int64_t *done_out, json_t **failed_out)
{
    if (done_out)
        *done_out = 0;
    if (failed_out)
        *failed_out = NULL;
    json_t *resp;
    if (chanqi_conn_recv(c, 0, &resp) < 0) {
        json_decref(resp);
        return -1;
    }
    json_t *done = json_object_get(resp, "acked");
    if (!done)
        done = json_object_get(resp, "nacked");
    if (done_out)
        *done_out = json_integer_value(done);
    json_t *errors = json_object_get(resp, "errors");
    if (failed_out && json_array_size(errors) > 0)
        *failed_out = json_incref(errors);
    json_decref(resp);
    return 0;
}

int
chanq_ack_many(struct chanq_conn *c, const char *const *ids, size_t n, int64_t *done_out,
               json_t **failed_out)
{
    if (chanq_send_ack_many(c, ids, n) < 0)
        return -1;
    return chanq_recv_many(c, done_out, failed_out);
}

int
chanq_send_ack(struct chanq_conn *c, const char *id, const char *result)
{
    if (c->broken)
        return -1;
    struct wbuf *b = &c->out;
    size_t mark = b->len;
    int rc = chanqi_wbuf_puts(b, "{\"op\":\"ack\",\"id\":") || chanqi_wbuf_put_jstr(b, id);
    if (rc == 0 && result) {
        rc = chanqi_wbuf_puts(b, ",\"result\":");
        if (rc == 0 && chanqi_wbuf_put_jtext(b, result) < 0) {
            b->len = mark;
            return chanqi_conn_fail(c, "bad_request", "result is not JSON");
        }
    }
    rc = rc ? rc : chanqi_wbuf_puts(b, "}\n");
    if (rc) {
        b->len = mark;
        return chanqi_conn_fail_io(c, ENOMEM);
    }
    chanqi_conn_request_done(c);
    return 0;
}

int
chanq_recv_ok(struct chanq_conn *c)
{
    json_t *resp;
    int rc = chanqi_conn_recv(c, -1, &resp);
    json_decref(resp);
    return rc;
}

int
chanq_ack(struct chanq_conn *c, const char *id, const char *result)
{
    if (chanq_send_ack(c, id, result) < 0)
        return -1;
    json_t *resp;
    int rc = chanqi_conn_recv(c, 0, &resp);
    json_decref(resp);
    return rc;
}

/* Sends req (takes ownership of it), waits, and returns the answer in *out
 * (may be NULL: the answer is dropped). */
static int
call_new(struct chanq_conn *c, json_t *req, int64_t wait_ms, json_t **out)
{
    json_t *resp = NULL;
    int rc = req ? chanqi_conn_call(c, req, wait_ms, &resp) : chanqi_conn_fail_io(c, ENOMEM);
    json_decref(req);
    if (out && rc == 0)
        *out = resp;
    else
        json_decref(resp);
    return rc;
}

/* call_new, then a new reference to member `key` of the answer in *out. */
static int
call_member(struct chanq_conn *c, json_t *req, int64_t wait_ms, const char *key, json_t **out)
{
    json_t *resp;
    *out = NULL;
    if (call_new(c, req, wait_ms, &resp) < 0)
        return -1;
    json_t *v = json_object_get(resp, key);
    *out = v ? json_incref(v) : json_object();
    json_decref(resp);
    return 0;
}

int
chanq_nack(struct chanq_conn *c, const char *id, const char *error, int64_t delay_ms, bool dead,
           char **state_out)
{
    json_t *req = json_pack("{s:s,s:s}", "op", "nack", "id", id), *resp;
    if (req && error)
        json_object_set_new(req, "error", json_string(error));
    if (req && delay_ms >= 0)
        json_object_set_new(req, "delay_ms", json_integer(delay_ms));
    if (req && dead)
        json_object_set_new(req, "dead", json_true());
    if (call_new(c, req, 0, &resp) < 0)
        return -1;
    if (state_out)
        *state_out = chanqi_json_dup_str(resp, "state");
    json_decref(resp);
    return 0;
}

int
chanq_release(struct chanq_conn *c, const char *id)
{
    return call_new(c, json_pack("{s:s,s:s}", "op", "release", "id", id), 0, NULL);
}

int
chanq_touch(struct chanq_conn *c, const char *id, int64_t ttr_ms)
{
    json_t *req = json_pack("{s:s,s:s}", "op", "touch", "id", id);
    if (req && ttr_ms > 0)
        json_object_set_new(req, "ttr_ms", json_integer(ttr_ms));
    return call_new(c, req, 0, NULL);
}

static int
call_count(struct chanq_conn *c, json_t *req, const char *key, int64_t *n_out)
{
    json_t *resp;
    if (call_new(c, req, 0, &resp) < 0)
        return -1;
    if (n_out)
        *n_out = json_integer_value(json_object_get(resp, key));
    json_decref(resp);
    return 0;
}

int
chanq_cancel(struct chanq_conn *c, const char *id, int64_t *n_out)
{
    return call_count(c, json_pack("{s:s,s:s}", "op", "cancel", "id", id), "cancelled", n_out);
}

int
chanq_wait(struct chanq_conn *c, const char *id, int64_t timeout_ms, json_t **out)
{
    json_t *req = json_pack("{s:s,s:s}", "op", "wait", "id", id);
    if (req && timeout_ms >= 0)
        json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
    *out = NULL;
    return call_new(c, req, timeout_ms, out);
}

int
chanq_job_info(struct chanq_conn *c, const char *id, json_t **out)
{
    return call_member(c, json_pack("{s:s,s:s}", "op", "job", "id", id), 0, "job", out);
}

/* declare and configure: the queue's settings (a negative capacity, a
 * ttr_ms or max_attempts of 0 or less: not sent); *out the queue's stats. */
static int
queue_settings_op(struct chanq_conn *c, const char *op, const char *queue, int64_t capacity,
                  int64_t ttr_ms, int64_t max_attempts, json_t **out)
{
    json_t *req = json_pack("{s:s,s:s}", "op", op, "queue", queue);
    if (req && capacity >= 0)
        json_object_set_new(req, "capacity", json_integer(capacity));
    if (req && ttr_ms > 0)
        json_object_set_new(req, "ttr_ms", json_integer(ttr_ms));
    if (req && max_attempts > 0)
        json_object_set_new(req, "max_attempts", json_integer(max_attempts));
    if (!out)
        return call_new(c, req, 0, NULL);
    return call_member(c, req, 0, "queue", out);
}

int
chanq_declare(struct chanq_conn *c, const char *queue, int64_t capacity, int64_t ttr_ms,
              int64_t max_attempts, json_t **out)
{
    return queue_settings_op(c, "declare", queue, capacity, ttr_ms, max_attempts, out);
}

static int
queue_op(struct chanq_conn *c, const char *op, const char *queue)
{
    return call_new(c, json_pack("{s:s,s:s}", "op", op, "queue", queue), 0, NULL);
}

int
chanq_close_queue(struct chanq_conn *c, const char *queue)
{
    return queue_op(c, "close", queue);
}

int
chanq_pause(struct chanq_conn *c, const char *queue)
{
    return queue_op(c, "pause", queue);
}

int
chanq_resume(struct chanq_conn *c, const char *queue)
{
    return queue_op(c, "resume", queue);
}

int
chanq_kick(struct chanq_conn *c, const char *queue, int64_t count, int64_t *n_out)
{
    json_t *req = json_pack("{s:s,s:s}", "op", "kick", "queue", queue);
    if (req && count > 0)
        json_object_set_new(req, "count", json_integer(count));
    return call_count(c, req, "kicked", n_out);
}

int
chanq_stats(struct chanq_conn *c, const char *queue, json_t **out)
{
    if (queue)
        return call_member(c, json_pack("{s:s,s:s}", "op", "stats", "queue", queue), 0, "queue",
                           out);
    return call_member(c, json_pack("{s:s}", "op", "stats"), 0, "server", out);
}

int
chanq_queues(struct chanq_conn *c, json_t **out)
{
    /* The server answers a page at a time ("next" names the last queue of
     * a page that has more after it). */
    json_t *all = json_object(), *resp = NULL;
    char *after = NULL;
    *out = NULL;
    if (!all)
        return -1;
    for (;;) {
        json_t *req = json_pack("{s:s}", "op", "queues");
        if (req && after)
            json_object_set_new(req, "after", json_string(after));
        free(after);
        after = NULL;
        if (call_new(c, req, 0, &resp) < 0) {
            json_decref(all);
            return -1;
        }
        json_object_update(all, json_object_get(resp, "queues"));
        after = chanqi_json_dup_str(resp, "next");
        json_decref(resp);
        if (!after)
            break;
    }
    *out = all;
    return 0;
}

/* ---- operator ops ---- */

int
chanq_list(struct chanq_conn *c, const struct chanq_list_opts *o, json_t **jobs_out,
           char **next_out)
{
    json_t *req = json_pack("{s:s,s:s,s:s}", "op", "list", "queue", o->queue, "state", o->state);
    if (req && o->newest)
        json_object_set_new(req, "order", json_string("newest"));
    if (req && o->cursor)
        json_object_set_new(req, "cursor", json_string(o->cursor));
    if (req && o->limit > 0)
        json_object_set_new(req, "limit", json_integer(o->limit));
    if (req && o->payload)
        json_object_set_new(req, "payload", json_true());
    json_t *resp;
    *jobs_out = NULL;
    if (next_out)
        *next_out = NULL;
    if (call_new(c, req, 0, &resp) < 0)
        return -1;
    json_t *jobs = json_object_get(resp, "jobs");
    *jobs_out = jobs ? json_incref(jobs) : json_array();
    if (next_out)
        *next_out = chanqi_json_dup_str(resp, "next");
    json_decref(resp);
    return 0;
}

int
chanq_retry(struct chanq_conn *c, const char *id)
{
    return call_new(c, json_pack("{s:s,s:s}", "op", "retry", "id", id), 0, NULL);
}

int
chanq_delete(struct chanq_conn *c, const char *id, bool force, char **state_out)
{
    json_t *req = json_pack("{s:s,s:s}", "op", "delete", "id", id), *resp;
    if (req && force)
        json_object_set_new(req, "force", json_true());
    if (call_new(c, req, 0, &resp) < 0)
        return -1;
    if (state_out)
        *state_out = chanqi_json_dup_str(resp, "state");
    json_decref(resp);
    return 0;
}

int
chanq_purge(struct chanq_conn *c, const char *queue, const char *state, int64_t *n_out)
{
    return call_count(c,
                      json_pack("{s:s,s:s,s:s}", "op", "purge", "queue", queue, "state", state),
                      "purged", n_out);
}

int
chanq_queue_delete(struct chanq_conn *c, const char *queue, int64_t *n_out)
{
    return call_count(c, json_pack("{s:s,s:s}", "op", "queue_delete", "queue", queue), "deleted",
                      n_out);
}

int
chanq_configure(struct chanq_conn *c, const char *queue, int64_t capacity, int64_t ttr_ms,
                int64_t max_attempts, json_t **out)
{
    return queue_settings_op(c, "configure", queue, capacity, ttr_ms, max_attempts, out);
}

int
chanq_clients(struct chanq_conn *c, json_t **out)
{
    return call_member(c, json_pack("{s:s}", "op", "clients"), 0, "clients", out);
}
