/* A connection's goroutine: takes its request lines in order, decodes and
 * runs each (ops_handle; it may park), and hands the answers to the output
 * side, behind the ones that wait for the journal. */
#include "chanq_config.h"

#include "daemon/conn-internal.h"
#include "daemon/answers.h"
#include "daemon/conn_env.h"
#include "daemon/log.h"

#include "core/chan.h"
#include "core/evbridge.h"
#include "core/go.h"
#include "core/select.h"
#include "proto/frame.h"

static void
room_on_loop(void *arg)
{
    struct conn *c = arg;
    if (!c->reqs_closed)
        conn_deliver_backlog(c);
    conn_unref(c);
}

static void
finish_on_loop(void *arg)
{
    struct conn *c = arg;
    c->goroutine_done = true;
    /* It may end before the input does (a line too long before hello):
     * read no more. */
    c->input_done = true;
    conn_set_reading(c, 0, false);
    conn_close_reqs(c);
    conn_drop_input(c);
    if (c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_release_socket(c);
    } else if (c->bev) {
        /* Last answers still queued: give a slow reader a bounded time. */
        struct timeval tv = {30, 0};
        bufferevent_set_timeouts(c->bev, NULL, &tv);
    }
    conn_unref(c); /* the goroutine's reference */
}

/* The loop, on the goroutine's word: the line before it was answered, and
 * maybe a hello accepted. */
static void
auth_on_loop(void *arg)
{
    struct conn *c = arg;
    if (c->bev && c->preauth && atomic_load(&c->authed)) {
        c->preauth = false; /* the full limits from now on */
        if (c->frame)
            frame_set_max(c->frame, c->env->cfg->max_frame);
        if (!c->rev)
            bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        event_del(c->auth_timer);
    }
    if (!c->backlog && chan_len(c->reqs) == 0)
        conn_set_reading(c, PAUSE_AUTH, false);
    conn_unref(c);
}

static void
call_loop(struct conn *c, void (*fn)(void *))
{
    atomic_fetch_add(&c->refs, 1);
    if (evbridge_call(c->env->bridge, fn, c) < 0)
        atomic_fetch_sub(&c->refs, 1); /* never the last: the goroutine holds one */
}

/* Before hello (a token required) the loop reads one line at a time:
 * tell it this one is answered, and whether it was an accepted hello. */
static void
after_preauth_line(struct conn *c)
{
    if (c->auth_seen)
        return;
    if (c->os.authed) {
        c->auth_seen = true;
        atomic_store(&c->authed, 1);
    }
    call_loop(c, auth_on_loop);
}

/* Answers l; false when the connection must end (a line over the small
 * limit before hello: the client is not speaking the protocol). */
static bool
handle_line(struct conn *c, struct line *l, struct buf *out)
{
    if (l->too_large) {
        struct proto_error err;
        bool early = !c->os.authed;
        proto_error_set(&err, PROTO_FRAME_TOO_LARGE, "line longer than %zu bytes%s",
                        early ? (size_t)PREAUTH_FRAME : c->env->cfg->max_frame,
                        early ? " before hello" : "");
        ops_reply_error(out, &c->os, (struct span){NULL, 0}, &err);
        return !early;
    }
    struct request req;
    struct proto_error err = {PROTO_OK, ""};
    struct msg_limits lim = conn_env_msg_limits(c->env);
    if (msg_decode(l->data, l->len, &lim, &req, &err) < 0) {
        ops_reply_error(out, &c->os, req.rid, &err);
    } else {
        c->os.s.line_bytes = conn_line_size(l);
        ops_handle(c->env, &c->os, &req, out);
        c->os.s.line_bytes = 0;
    }
    request_clear(&req);
    return true;
}

/* The broker is about to park this connection's request: send what is
 * already answered, waiting for the journal for those that need it (the
 * parked request may take long; the answers before it must not). */
void
conn_before_park(struct session *s)
{
    struct conn *c = (struct conn *)((char *)s - offsetof(struct conn, os.s));
    answers_settle(c->answers, &c->out, true);
    conn_write_out(c, &c->out);
}

/* The next request line, or NULL once the connection's input ended. While
 * answers wait for the journal, also wakes when the first may be settled
 * (then *l is NULL and the result true). */
static bool
next_request(struct conn *c, struct line **l)
{
    *l = NULL;
    struct chan_case cases[2] = {
        {c->reqs, CHAN_RECV, l, false},
        {answers_wait_chan(c->answers), CHAN_RECV, NULL, false},
    };
    int r = chan_select(cases, cases[1].c ? 2 : 1, NULL, -1);
    return r == 1 || (r == 0 && cases[0].ok);
}

void
conn_goroutine(void *arg)
{
    struct conn *c = arg;
    struct buf *out = &c->out;
    struct line *l;
    bool more = true;
    while (more && next_request(c, &l)) {
        if (l) {
            if (atomic_exchange(&c->want_room, 0))
                call_loop(c, room_on_loop);
            more = handle_line(c, l, &c->fresh);
            conn_line_free(c, l);
            atomic_fetch_add(&c->done, 1);
            atomic_fetch_add_explicit(&c->info.answered, 1, memory_order_relaxed);
            after_preauth_line(c);
            /* A big answer took a while: let other connections (and, on
             * the loop thread, the loop's reads) have a turn. */
            if (c->fresh.len >= FLUSH_AT)
                go_yield();
            /* Behind answers that wait for the journal, in request order. */
            answers_push(c->answers, &c->fresh, out);
        }
        answers_settle(c->answers, out, false);
        if (out->len >= FLUSH_AT || chan_len(c->reqs) == 0)
            conn_write_out(c, out);
        if (c->os.hangup)
            break; /* requests behind it go unanswered, like after a close */
        conn_wait_output_room(c);
    }
    answers_settle(c->answers, out, true);
    conn_write_out(c, out);
    buf_clear(out);
    buf_clear(&c->fresh);
    broker_release_holder(c->env->broker, &c->holder);
    if (evbridge_call(c->env->bridge, finish_on_loop, c) < 0)
        log_error("cannot reach the loop thread to end a connection");
}
