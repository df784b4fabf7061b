/* A connection's input, on the loop thread: reading the socket, framing
 * lines, counting them in the memory budget, handing them to the goroutine
 * through its bounded channel, and pausing the reads when it is full (TCP
 * then pushes back on the client). */
#include "chanq_config.h"

#include "daemon/conn-internal.h"
#include "daemon/closewatch.h"
#include "daemon/conn_env.h"
#include "daemon/log.h"
#include "daemon/membudget.h"

#include "core/chan.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* A partial line this small is buffered even when the budget is used up:
 * a small request must not cost a connection (counted all the same). */
#define INPUT_FLOOR (16u << 10)

void
conn_line_free(struct conn *c, struct line *l)
{
    size_t n = conn_line_size(l);
    atomic_fetch_sub(&c->in_lines, n);
    membudget_buffers(c->env->budget, -(ptrdiff_t)n);
    free(l);
}

/* The frame's buffer is what was counted for it (after framing). Loop. */
static void
input_settle(struct conn *c)
{
    size_t held = c->frame ? frame_held(c->frame) : 0;
    membudget_buffers(c->env->budget, (ptrdiff_t)held - (ptrdiff_t)c->in_frame);
    c->in_frame = held;
}

static size_t
input_held(const struct conn *c)
{
    return c->in_frame + atomic_load(&c->in_lines);
}

/* The live connection holding the most input. Loop. */
static struct conn *
biggest_input(struct conn *c)
{
    struct conn *big = c;
    for (struct conn *o = c->env->conns; o; o = o->next)
        if (o->bev && input_held(o) > input_held(big))
            big = o;
    return big;
}

/* Tells the client why, best effort (a plain socket only), and closes. */
static void
refuse_input(struct conn *c)
{
    static const char msg[] = "{\"ok\":false,\"error\":{\"code\":\"limit\",\"message\":"
                              "\"memory budget used up: connection closed\"}}\n";
    if (c->plain_fd >= 0 &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !c->out.len) {
        ssize_t w = send(c->plain_fd, msg, sizeof msg - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)w;
    }
    log_warn_limited_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                        "memory budget used up: closed a connection holding %zu bytes of input",
                        input_held(c));
    conn_shutdown(c);
}

/* Counts what framing n more bytes may add to c's frame buffer. When the
 * budget cannot take it (and the buffers are past their reserve: twice the
 * longest line, so that one request of any allowed size is still read
 * while payloads fill the budget, and answered `limit`), the connection
 * holding the most input is closed with `limit` (c itself when that is
 * c): memory then goes to those that finish their lines. False when c was
 * closed. Loop. */
static bool
input_room(struct conn *c, size_t n)
{
    size_t after = frame_held_after(c->frame, n);
    if (after <= c->in_frame)
        return true;
    size_t grow = after - c->in_frame;
    const struct config *cfg = c->env->cfg;
    size_t limit = config_get(cfg, max_memory), reserve = 2 * config_get(cfg, max_frame);
    if (after <= INPUT_FLOOR) {
        membudget_buffers(c->env->budget, (ptrdiff_t)grow);
    } else if (!membudget_try_buffers(c->env->budget, grow, limit, reserve)) {
        struct conn *big = biggest_input(c);
        if (big == c || input_held(big) < grow) {
            refuse_input(c);
            return false;
        }
        refuse_input(big); /* frees its input now: take its place */
        membudget_buffers(c->env->budget, (ptrdiff_t)grow);
    }
    c->in_frame = after;
    return true;
}

void
conn_watch_close(struct conn *c, bool on)
{
    if (on == c->watched)
        return;
    struct closewatch *w = c->env->closewatch;
    if (!on) {
        closewatch_del(w, c->fd);
        c->watched = false;
    } else if (closewatch_add(w, c->fd, c) == 0) {
        c->watched = true;
    } else {
        log_warn_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                    "cannot watch a paused connection for its close: %s", strerror(errno));
    }
}

void
conn_set_reading(struct conn *c, unsigned reason, bool pause)
{
    if (!c->bev)
        return;
    if (pause)
        c->paused |= reason;
    else
        c->paused &= ~reason;
    bool on = !c->paused && !c->input_done;
    if (c->rev) /* a plain socket: our own read event */
        on ? event_add(c->rev, NULL) : event_del(c->rev);
    else
        on ? bufferevent_enable(c->bev, EV_READ) : bufferevent_disable(c->bev, EV_READ);
    /* Not read, but the peer's close or reset must still be seen at once
     * (protocol: a closed connection cancels its waiting requests). The
     * watch stays from the first pause until the input ends: re-arming it
     * at every pause would cost two epoll_ctl per backpressure cycle, and
     * while reading is on it only duplicates what a read sees. */
    if (c->input_done)
        conn_watch_close(c, false);
    else if (!on && !c->peer_eof)
        conn_watch_close(c, true);
}

void
conn_close_reqs(struct conn *c)
{
    if (!c->reqs_closed) {
        c->reqs_closed = true;
        chan_close(c->reqs); /* the goroutine drains what is there, then ends */
    }
}

/* Moves backlog lines into the channel while it has room. */
void
conn_deliver_backlog(struct conn *c)
{
    while (c->backlog) {
        struct line *l = c->backlog;
        struct line *next = l->next; /* once sent, l belongs to the goroutine */
        atomic_store(&c->want_room, 1);
        if (chan_try_send(c->reqs, &l) != 0)
            break;
        c->sent++;
        atomic_fetch_add_explicit(&c->info.received, 1, memory_order_relaxed);
        c->backlog = next;
        if (!c->backlog)
            c->backlog_tail = NULL;
    }
    if (!c->backlog)
        atomic_store(&c->want_room, 0);
    conn_set_reading(c, PAUSE_INFLIGHT, c->backlog != NULL);
    if (c->input_done && !c->backlog)
        conn_close_reqs(c);
}

static bool
append_line(struct conn *c, const char *data, size_t len, bool too_large)
{
    struct line *l = malloc(sizeof *l + len + 1);
    if (!l) {
        log_warn_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                    "out of memory framing a request; closing the connection");
        conn_shutdown(c);
        return false;
    }
    /* Counted, not refused: its bytes were read within the budget. */
    atomic_fetch_add(&c->in_lines, sizeof *l + len + 1);
    membudget_buffers(c->env->budget, (ptrdiff_t)(sizeof *l + len + 1));
    l->next = NULL;
    l->len = len;
    l->too_large = too_large;
    if (len) /* a too-large marker has no bytes (and data may be NULL) */
        memcpy(l->data, data, len);
    l->data[len] = '\0';
    if (c->backlog_tail)
        c->backlog_tail->next = l;
    else
        c->backlog = l;
    c->backlog_tail = l;
    return true;
}

/* Frames n bytes of input into backlog lines. False when the connection
 * was shut down meanwhile (out of memory or budget). Before hello (when a
 * token is required) reading stops at each line until it is answered: a
 * hello must be judged before the next line is framed with its limits. */
static bool
frame_input(struct conn *c, const char *data, size_t n)
{
    if (!input_room(c, n))
        return false;
    frame_push(c->frame, data, n);
    const char *line;
    size_t len;
    enum frame_status st;
    while ((st = frame_next_line(c->frame, &line, &len)) != FRAME_MORE) {
        if (st == FRAME_NOMEM) {
            log_warn_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                        "out of memory buffering a request; closing the connection");
            conn_shutdown(c);
            return false;
        }
        if (!append_line(c, line, st == FRAME_LINE ? len : 0, st == FRAME_TOO_LARGE))
            return false;
        if (c->preauth)
            conn_set_reading(c, PAUSE_AUTH, true);
    }
    input_settle(c);
    return true;
}

/* A TLS connection's input, decrypted by its bufferevent. */
void
conn_on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    c->reads++;
    while (c->bev && (n = evbuffer_get_contiguous_space(in)) > 0) {
        if (!frame_input(c, (const char *)evbuffer_pullup(in, (ev_ssize_t)n), n))
            return;
        evbuffer_drain(in, n);
    }
    conn_deliver_backlog(c);
}

/* A plain socket is read with one recv per readiness, straight into a
 * buffer the frame is fed from: libevent's bufferevent read asks the
 * kernel how much is pending (ioctl FIONREAD) before every readv, one
 * system call in three on a request/answer connection. */
void
conn_on_plain_read(evutil_socket_t fd, short what, void *arg)
{
    static char buf[64 * 1024]; /* the loop thread's; framing copies what it keeps */
    struct conn *c = arg;
    (void)what;
    ssize_t n = recv(fd, buf, c->preauth ? PREAUTH_FRAME : sizeof buf, 0);
    if (n > 0) {
        c->reads++;
        if (frame_input(c, buf, (size_t)n))
            conn_deliver_backlog(c);
        return;
    }
    if (n == 0) {
        conn_on_eof(c);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
    log_debug_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)), "reading a client socket: %s",
                 strerror(errno));
    conn_shutdown(c);
}

static void
drop_backlog(struct conn *c)
{
    while (c->backlog) {
        struct line *l = c->backlog;
        c->backlog = l->next;
        conn_line_free(c, l);
    }
    c->backlog_tail = NULL;
}

/* The requests nobody will handle: their memory goes back now. */
void
conn_drop_input(struct conn *c)
{
    drop_backlog(c);
    struct line *l;
    while (chan_try_recv(c->reqs, &l) == 0)
        conn_line_free(c, l);
    frame_free(c->frame);
    c->frame = NULL;
    input_settle(c);
}
