/* A connection's output: the goroutine's answers and the broker's events
 * go to a locked evbuffer and reach the loop in batches (one write each);
 * unsent answers count in the memory budget, and past the connection's
 * share its goroutine takes no more requests until they drain. */
#include "chanq_config.h"

#include "daemon/conn-internal.h"
#include "daemon/conn_env.h"
#include "daemon/log.h"
#include "daemon/membudget.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/evbridge.h"
#include "core/select.h"

/* Unsent answers a connection may have before its goroutine takes no more
 * requests: its share of --max-memory, within these bounds. */
#define OUT_SHARE_MIN (64u << 10)
#define OUT_SHARE_MAX (1u << 20)

static size_t
output_share(const struct conn *c)
{
    size_t n = atomic_load(&c->env->connections);
    size_t share = config_get(c->env->cfg, max_memory) / 2 / (n ? n : 1);
    return share < OUT_SHARE_MIN ? OUT_SHARE_MIN : share > OUT_SHARE_MAX ? OUT_SHARE_MAX : share;
}

/* Wakes the waiter behind *want through room once the unsent answers are
 * under half the share. */
static void
wake_waiter(struct conn *c, _Atomic int *want, struct chan *room)
{
    if (atomic_load(want) && atomic_load(&c->out_bytes) <= output_share(c) / 2 &&
        atomic_exchange(want, 0)) {
        char one = 1;
        (void)chan_try_send(room, &one); /* full: a wake is pending already */
    }
}

/* The goroutine, or the consume's pusher, waits for the answers to drain. */
static void
wake_output_waiter(struct conn *c)
{
    wake_waiter(c, &c->want_out_room, c->out_room);
    wake_waiter(c, &c->want_push_room, c->push_room);
}

struct chan *
conn_output_room(struct holder *h)
{
    struct conn *c = (struct conn *)h;
    if (atomic_load(&c->out_bytes) <= output_share(c))
        return NULL;
    atomic_store(&c->want_push_room, 1);
    /* Checked again after asking: a drain in between would not wake it. */
    if (atomic_load(&c->out_bytes) <= output_share(c) / 2) {
        atomic_store(&c->want_push_room, 0);
        return NULL;
    }
    chan_ref(c->push_room);
    return c->push_room;
}

/* An evbuffer of answers (pending or the socket's output) grew or shrank:
 * the thread that changed it, under its lock. */
void
conn_count_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    (void)buf;
    ptrdiff_t d = (ptrdiff_t)info->n_added - (ptrdiff_t)info->n_deleted;
    if (d == 0)
        return;
    atomic_fetch_add(&c->out_bytes, (size_t)d);
    membudget_buffers(c->env->budget, d);
    if (d < 0)
        wake_output_waiter(c);
}

static void
flush_on_loop(void *arg)
{
    struct conn *c = arg;
    atomic_store(&c->flush_scheduled, 0);
    if (c->bev) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        /* Nothing queued before: write now, straight to the socket. Going
         * through the bufferevent costs an epoll_ctl to arm EV_WRITE, an
         * epoll_wait and another epoll_ctl per answer batch. */
        if (c->plain_fd >= 0 && evbuffer_get_length(out) == 0)
            evbuffer_write(c->pending, c->plain_fd);
        evbuffer_add_buffer(out, c->pending);
        size_t len = evbuffer_get_length(out);
        if (len > OUT_MAX) {
            log_warn_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                        "client does not read its answers (%zu bytes pending): disconnecting", len);
            conn_shutdown(c);
        } else if (len > OUT_HIGH && !(c->paused & PAUSE_OUTPUT)) {
            conn_set_reading(c, PAUSE_OUTPUT, true);
            bufferevent_setwatermark(c->bev, EV_WRITE, OUT_HIGH / 2, 0);
        }
    } else {
        evbuffer_drain(c->pending, evbuffer_get_length(c->pending));
    }
    conn_unref(c);
}

static void
schedule_flush(struct conn *c)
{
    if (atomic_exchange(&c->flush_scheduled, 1))
        return;
    atomic_fetch_add(&c->refs, 1);
    if (conn_env_on_loop_thread(c->env)) {
        /* A goroutine the loop thread runs itself: write now, no round trip
         * through the loop's queue (and no extra poll). */
        flush_on_loop(c);
        return;
    }
    if (evbridge_call(c->env->bridge, flush_on_loop, c) < 0) {
        atomic_store(&c->flush_scheduled, 0);
        atomic_fetch_sub(&c->refs, 1); /* never the last: the caller holds one */
        log_error_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                     "cannot reach the loop thread to write an answer");
    }
}

void
conn_write_out(struct conn *c, struct buf *out)
{
    if (out->len == 0)
        return;
    evbuffer_add(c->pending, out->data, out->len);
    buf_reset(out);
    schedule_flush(c);
}

/* Any thread, under the broker lock: an event line for this connection. */
void
conn_send_event(struct holder *h, const char *line, size_t len)
{
    struct conn *c = (struct conn *)h;
    evbuffer_add(c->pending, line, len);
    schedule_flush(c);
}

/* Output drained below the low watermark: read again, or finish closing. */
void
conn_on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->goroutine_done && c->input_done) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_release_socket(c);
        return;
    }
    if (c->paused & PAUSE_OUTPUT) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        conn_set_reading(c, PAUSE_OUTPUT, false);
    }
}

/* Answers not yet written over this connection's share: take no more
 * requests until they drain (the loop stops reading once reqs is full),
 * unless the connection is going away. */
void
conn_wait_output_room(struct conn *c)
{
    if (atomic_load(&c->out_bytes) <= output_share(c))
        return;
    conn_write_out(c, &c->out);
    atomic_store(&c->want_out_room, 1);
    /* Checked again after asking: a drain in between would not wake us. */
    while (atomic_load(&c->out_bytes) > output_share(c) / 2) {
        struct chan_case cases[2] = {
            {c->out_room, CHAN_RECV, NULL, false},
            {ctx_done(c->ctx), CHAN_RECV, NULL, false},
        };
        if (chan_select(cases, 2, NULL, -1) != 0)
            break;
        atomic_store(&c->want_out_room, 1);
    }
    atomic_store(&c->want_out_room, 0);
}
