/* A client connection: framing on the loop thread, requests on a goroutine,
 * answers back to the loop in batches. Ownership: the loop side holds the
 * bufferevent; the goroutine, each scheduled loop call and the loop side
 * each hold a reference, and every reference is dropped on the loop thread,
 * where the last one frees the connection. */
#include "chanq_config.h"

#include "daemon/conn.h"
#include "daemon/answers.h"
#include "daemon/closewatch.h"
#include "daemon/log.h"
#include "daemon/membudget.h"
#include "daemon/ops.h"
#include "daemon/server.h"
#include "daemon/tls.h"
#include "daemon/broker.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/evbridge.h"
#include "core/go.h"
#include "core/select.h"
#include "proto/frame.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Output held for a client that does not read: over HIGH we stop reading
 * its requests; over MAX it is disconnected. */
#define OUT_HIGH (4u << 20)
#define OUT_MAX (64u << 20)
/* Time a TLS client has to finish its handshake, counted from the accept:
 * a client that sends its handshake a byte at a time gains nothing. */
#define TLS_HANDSHAKE_S 10
/* Answers are handed to the loop when the goroutine idles or this much piles up. */
#define FLUSH_AT (64u << 10)
/* Unsent answers a connection may have before its goroutine takes no more
 * requests: its share of --max-memory, within these bounds. */
#define OUT_SHARE_MIN (64u << 10)
#define OUT_SHARE_MAX (1u << 20)
/* A partial line this small is buffered even when the budget is used up:
 * a small request must not cost a connection (counted all the same). */
#define INPUT_FLOOR (16u << 10)
/* Before hello, when a token is required: the longest line (a hello needs
 * far less), the most read at once, and the time to say it. */
#define PREAUTH_FRAME 4096
#define HELLO_DEADLINE_S 10

/* Why reading is off (bits of conn.paused). */
enum { PAUSE_INFLIGHT = 1, PAUSE_OUTPUT = 2, PAUSE_AUTH = 4 };

/* One framed request line on its way to the goroutine. too_large marks a
 * frame that passed --max-frame (answered in order, like any request). */
struct line {
    struct line *next; /* backlog link (loop thread) */
    size_t len;
    bool too_large;
    char data[];
};

struct conn {
    struct holder holder;        /* the broker's view: reservations and events */
    struct op_session os;        /* auth state + ctx for the broker */
    struct server *srv;          /* owner */
    struct conn *prev, *next;    /* server's list of live connections (loop) */
    _Atomic int refs;            /* see the file comment */
    /* The atomics sit together, away from the loop's plain flags: the
     * compiler may read neighbouring plain fields with one wide load. */
    _Atomic int want_room;       /* loop -> goroutine: tell me when reqs has room */
    _Atomic int flush_scheduled; /* a flush call is queued on the loop */
    _Atomic int authed;          /* goroutine -> loop: hello with a token accepted */
    _Atomic int want_out_room;   /* goroutine -> loop: wake me when answers drain */
    _Atomic size_t in_lines;     /* bytes of framed lines not yet handled (budget) */
    _Atomic size_t out_bytes;    /* bytes of answers not yet written (budget) */
    size_t in_frame;             /* budget counted for the frame's buffer (loop) */
    bool preauth;                /* a token is required and not said yet (loop) */
    bool auth_seen;              /* the goroutine published authed */
    struct event *auth_timer;    /* the hello deadline (loop); NULL without a token */
    struct evbuffer_cb_entry *out_cb; /* counts the bufferevent's output */
    struct chan *out_room;       /* loop -> goroutine: answers drained (cap 1) */
    struct bufferevent *bev;     /* socket; NULL once closed (loop) */
    struct event *rev;           /* plain socket: its read event (loop); NULL with TLS */
    evutil_socket_t plain_fd;    /* the socket when not TLS (direct writes), else -1 */
    struct frame *frame;         /* request framing (loop) */
    struct chan *reqs;           /* struct line * to the goroutine; cap = max inflight */
    bool reqs_closed;            /* reqs is closed (loop) */
    struct line *backlog, *backlog_tail; /* lines framed but not yet in reqs (loop) */
    unsigned paused;             /* PAUSE_* bits (loop) */
    bool input_done;             /* EOF or error: no more requests (loop) */
    bool goroutine_done;         /* the goroutine has ended (loop) */
    struct event *handshake;     /* TLS: the handshake's deadline (loop); NULL once done */
    uint64_t reads;              /* input callbacks so far (loop): activity, for idle */
    uint64_t seen_reads;         /* reads at the last idle check (loop) */
    int64_t idle_since;          /* when the last idle check saw activity (loop) */
    uint64_t sent;               /* lines handed to the goroutine (loop) */
    _Atomic uint64_t done;       /* lines the goroutine has answered */
    struct ctx *ctx;             /* cancelled when the client goes away or the server stops */
    evutil_socket_t fd;          /* the socket (plain or TLS) */
    bool watched;                /* fd is in the server's close watch (loop) */
    bool peer_eof;               /* the close watch saw the peer's EOF (loop) */
    struct evbuffer *pending;    /* answers and events from goroutines (locked) */
    struct buf out;              /* answers ready to go, batched by the goroutine */
    struct buf fresh;            /* the answer of the request being handled */
    struct answers *answers;     /* answers waiting for the journal (goroutine) */
};

static void conn_unref(struct conn *c);

struct conn *
conn_next(const struct conn *c)
{
    return c->next;
}

void
conn_link(struct conn **head, struct conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

void
conn_unlink(struct conn **head, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* ---- the memory budget (daemon/membudget.h) ---- */

static struct membudget *
budget(const struct conn *c)
{
    return broker_membudget(server_broker(c->srv));
}

static size_t
line_size(const struct line *l)
{
    return sizeof *l + l->len + 1;
}

static void
line_free(struct conn *c, struct line *l)
{
    size_t n = line_size(l);
    atomic_fetch_sub(&c->in_lines, n);
    membudget_buffers(budget(c), -(ptrdiff_t)n);
    free(l);
}

/* The frame's buffer is what was counted for it (after framing). Loop. */
static void
input_settle(struct conn *c)
{
    size_t held = c->frame ? frame_held(c->frame) : 0;
    membudget_buffers(budget(c), (ptrdiff_t)held - (ptrdiff_t)c->in_frame);
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
    for (struct conn *o = server_conns(c->srv); o; o = o->next)
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
    log_warn_limited("memory budget used up: closed a connection holding %zu bytes of input",
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
    const struct config *cfg = server_config(c->srv);
    size_t limit = config_get(cfg, max_memory), reserve = 2 * config_get(cfg, max_frame);
    if (after <= INPUT_FLOOR) {
        membudget_buffers(budget(c), (ptrdiff_t)grow);
    } else if (!membudget_try_buffers(budget(c), grow, limit, reserve)) {
        struct conn *big = biggest_input(c);
        if (big == c || input_held(big) < grow) {
            refuse_input(c);
            return false;
        }
        refuse_input(big); /* frees its input now: take its place */
        membudget_buffers(budget(c), (ptrdiff_t)grow);
    }
    c->in_frame = after;
    return true;
}

static size_t
output_share(const struct conn *c)
{
    size_t n = server_connections(c->srv);
    size_t share = config_get(server_config(c->srv), max_memory) / 2 / (n ? n : 1);
    return share < OUT_SHARE_MIN ? OUT_SHARE_MIN : share > OUT_SHARE_MAX ? OUT_SHARE_MAX : share;
}

/* The goroutine waits for its answers to drain: wake it once they are
 * under half its share. */
static void
wake_output_waiter(struct conn *c)
{
    if (atomic_load(&c->want_out_room) && atomic_load(&c->out_bytes) <= output_share(c) / 2 &&
        atomic_exchange(&c->want_out_room, 0)) {
        char one = 1;
        (void)chan_try_send(c->out_room, &one); /* full: a wake is pending already */
    }
}

/* An evbuffer of answers (pending or the socket's output) grew or shrank:
 * the thread that changed it, under its lock. */
static void
count_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;
    (void)buf;
    ptrdiff_t d = (ptrdiff_t)info->n_added - (ptrdiff_t)info->n_deleted;
    if (d == 0)
        return;
    atomic_fetch_add(&c->out_bytes, (size_t)d);
    membudget_buffers(budget(c), d);
    if (d < 0)
        wake_output_waiter(c);
}

/* ---- loop thread: reading, framing, backpressure ---- */

static void
watch_close(struct conn *c, bool on)
{
    if (on == c->watched)
        return;
    struct closewatch *w = server_closewatch(c->srv);
    if (!on) {
        closewatch_del(w, c->fd);
        c->watched = false;
    } else if (closewatch_add(w, c->fd, c) == 0) {
        c->watched = true;
    } else {
        log_warn("cannot watch a paused connection for its close: %s", strerror(errno));
    }
}

static void
set_reading(struct conn *c, unsigned reason, bool pause)
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
        watch_close(c, false);
    else if (!on && !c->peer_eof)
        watch_close(c, true);
}

static void
close_reqs(struct conn *c)
{
    if (!c->reqs_closed) {
        c->reqs_closed = true;
        chan_close(c->reqs); /* the goroutine drains what is there, then ends */
    }
}

/* Moves backlog lines into the channel while it has room. */
static void
deliver_backlog(struct conn *c)
{
    while (c->backlog) {
        struct line *l = c->backlog;
        struct line *next = l->next; /* once sent, l belongs to the goroutine */
        atomic_store(&c->want_room, 1);
        if (chan_try_send(c->reqs, &l) != 0)
            break;
        c->sent++;
        c->backlog = next;
        if (!c->backlog)
            c->backlog_tail = NULL;
    }
    if (!c->backlog)
        atomic_store(&c->want_room, 0);
    set_reading(c, PAUSE_INFLIGHT, c->backlog != NULL);
    if (c->input_done && !c->backlog)
        close_reqs(c);
}

static bool
append_line(struct conn *c, const char *data, size_t len, bool too_large)
{
    struct line *l = malloc(sizeof *l + len + 1);
    if (!l) {
        log_warn("out of memory framing a request; closing the connection");
        conn_shutdown(c);
        return false;
    }
    /* Counted, not refused: its bytes were read within the budget. */
    atomic_fetch_add(&c->in_lines, sizeof *l + len + 1);
    membudget_buffers(budget(c), (ptrdiff_t)(sizeof *l + len + 1));
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
            log_warn("out of memory buffering a request; closing the connection");
            conn_shutdown(c);
            return false;
        }
        if (!append_line(c, line, st == FRAME_LINE ? len : 0, st == FRAME_TOO_LARGE))
            return false;
        if (c->preauth)
            set_reading(c, PAUSE_AUTH, true);
    }
    input_settle(c);
    return true;
}

/* A TLS connection's input, decrypted by its bufferevent. */
static void
on_read(struct bufferevent *bev, void *arg)
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
    deliver_backlog(c);
}

static void on_eof(struct conn *c);

/* A plain socket is read with one recv per readiness, straight into a
 * buffer the frame is fed from: libevent's bufferevent read asks the
 * kernel how much is pending (ioctl FIONREAD) before every readv, one
 * system call in three on a request/answer connection. */
static void
on_plain_read(evutil_socket_t fd, short what, void *arg)
{
    static char buf[64 * 1024]; /* the loop thread's; framing copies what it keeps */
    struct conn *c = arg;
    (void)what;
    ssize_t n = recv(fd, buf, c->preauth ? PREAUTH_FRAME : sizeof buf, 0);
    if (n > 0) {
        c->reads++;
        if (frame_input(c, buf, (size_t)n))
            deliver_backlog(c);
        return;
    }
    if (n == 0) {
        on_eof(c);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return;
    log_debug("reading a client socket: %s", strerror(errno));
    conn_shutdown(c);
}

/* The read event of a plain socket, the handshake deadline of a TLS one. */
static void
free_events(struct conn *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->handshake)
        event_free(c->handshake);
    c->rev = c->handshake = NULL;
}

static void
release_socket(struct conn *c)
{
    if (!c->bev)
        return;
    watch_close(c, false);
    free_events(c); /* before the bufferevent closes the fd */
    if (c->auth_timer) {
        event_free(c->auth_timer);
        c->auth_timer = NULL;
    }
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_drain(out, evbuffer_get_length(out)); /* counted back */
    if (c->out_cb)
        evbuffer_remove_cb_entry(out, c->out_cb);
    bufferevent_free(c->bev);
    c->bev = NULL;
    server_conn_closed(c->srv, c);
    conn_unref(c); /* the loop side's reference */
}

static void
drop_backlog(struct conn *c)
{
    while (c->backlog) {
        struct line *l = c->backlog;
        c->backlog = l->next;
        line_free(c, l);
    }
    c->backlog_tail = NULL;
}

/* The requests nobody will handle: their memory goes back now. */
static void
drop_input(struct conn *c)
{
    drop_backlog(c);
    struct line *l;
    while (chan_try_recv(c->reqs, &l) == 0)
        line_free(c, l);
    frame_free(c->frame);
    c->frame = NULL;
    input_settle(c);
}

void
conn_shutdown(struct conn *c)
{
    ctx_cancel(c->ctx);
    c->input_done = true;
    close_reqs(c);
    drop_input(c);
    release_socket(c);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* TLS handshake done: no more limit */
        free_events(c); /* TLS: only the deadline */
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if (what & BEV_EVENT_ERROR)
            tls_log_error(bev);
        conn_shutdown(c);
        return;
    }
    if (what & BEV_EVENT_EOF)
        on_eof(c);
}

void
conn_peer_gone(void *arg, bool reset)
{
    struct conn *c = arg;
    watch_close(c, false);
    if (reset) {
        /* Nobody will read an answer: as a failed read would. */
        log_debug("a client went away while its requests were not read");
        conn_shutdown(c);
        return;
    }
    /* EOF, maybe behind requests not read yet: cancel the waits now
     * (on_eof's half), and read and answer those requests once reading
     * is on, which then meets the EOF itself. */
    c->peer_eof = true;
    ctx_cancel(c->ctx);
}

/* The client sent all it will: answer what it sent, cancel waits. */
static void
on_eof(struct conn *c)
{
    ctx_cancel(c->ctx);
    conn_drain(c);
}

void
conn_drain(struct conn *c)
{
    c->input_done = true;
    set_reading(c, 0, false);
    deliver_backlog(c);
    if (c->goroutine_done && c->bev &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        release_socket(c);
}

/* Output drained below the low watermark: read again, or finish closing. */
static void
on_write(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->goroutine_done && c->input_done) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            release_socket(c);
        return;
    }
    if (c->paused & PAUSE_OUTPUT) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        set_reading(c, PAUSE_OUTPUT, false);
    }
}

/* ---- goroutine -> loop: output ---- */

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
            log_warn("client does not read its answers (%zu bytes pending): disconnecting", len);
            conn_shutdown(c);
        } else if (len > OUT_HIGH && !(c->paused & PAUSE_OUTPUT)) {
            set_reading(c, PAUSE_OUTPUT, true);
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
    if (server_on_loop_thread(c->srv)) {
        /* A goroutine the loop thread runs itself: write now, no round trip
         * through the loop's queue (and no extra poll). */
        flush_on_loop(c);
        return;
    }
    if (evbridge_call(server_bridge(c->srv), flush_on_loop, c) < 0) {
        atomic_store(&c->flush_scheduled, 0);
        atomic_fetch_sub(&c->refs, 1); /* never the last: the caller holds one */
        log_error("cannot reach the loop thread to write an answer");
    }
}

static void
write_out(struct conn *c, struct buf *out)
{
    if (out->len == 0)
        return;
    evbuffer_add(c->pending, out->data, out->len);
    buf_reset(out);
    schedule_flush(c);
}

/* Any thread, under the broker lock: an event line for this connection. */
static void
send_event(struct holder *h, const char *line, size_t len)
{
    struct conn *c = (struct conn *)h;
    evbuffer_add(c->pending, line, len);
    schedule_flush(c);
}

/* ---- the goroutine ---- */

static void
room_on_loop(void *arg)
{
    struct conn *c = arg;
    if (!c->reqs_closed)
        deliver_backlog(c);
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
    set_reading(c, 0, false);
    close_reqs(c);
    drop_input(c);
    if (c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        release_socket(c);
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
            frame_set_max(c->frame, server_config(c->srv)->max_frame);
        if (!c->rev)
            bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
        event_del(c->auth_timer);
    }
    if (!c->backlog && chan_len(c->reqs) == 0)
        set_reading(c, PAUSE_AUTH, false);
    conn_unref(c);
}

static void
call_loop(struct conn *c, void (*fn)(void *))
{
    atomic_fetch_add(&c->refs, 1);
    if (evbridge_call(server_bridge(c->srv), fn, c) < 0)
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

/* A hello deadline passed without one. */
static void
on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd, (void)what;
    if (!c->preauth)
        return;
    log_debug("a client did not say hello within %d s: closed", HELLO_DEADLINE_S);
    conn_shutdown(c);
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
                        early ? (size_t)PREAUTH_FRAME : server_config(c->srv)->max_frame,
                        early ? " before hello" : "");
        ops_reply_error(out, (struct span){NULL, 0}, &err);
        return !early;
    }
    struct request req;
    struct proto_error err = {PROTO_OK, ""};
    struct msg_limits lim = server_msg_limits(c->srv);
    if (msg_decode(l->data, l->len, &lim, &req, &err) < 0) {
        ops_reply_error(out, req.rid, &err);
    } else {
        c->os.s.line_bytes = line_size(l);
        ops_handle(c->srv, &c->os, &req, out);
        c->os.s.line_bytes = 0;
    }
    request_clear(&req);
    return true;
}

/* The broker is about to park this connection's request: send what is
 * already answered, waiting for the journal for those that need it (the
 * parked request may take long; the answers before it must not). */
static void
before_park(struct session *s)
{
    struct conn *c = (struct conn *)((char *)s - offsetof(struct conn, os.s));
    answers_settle(c->answers, &c->out, true);
    write_out(c, &c->out);
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

/* Answers not yet written over this connection's share: take no more
 * requests until they drain (the loop stops reading once reqs is full),
 * unless the connection is going away. */
static void
wait_output_room(struct conn *c)
{
    if (atomic_load(&c->out_bytes) <= output_share(c))
        return;
    write_out(c, &c->out);
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

static void
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
            line_free(c, l);
            atomic_fetch_add(&c->done, 1);
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
            write_out(c, out);
        if (c->os.hangup)
            break; /* requests behind it go unanswered, like after a close */
        wait_output_room(c);
    }
    answers_settle(c->answers, out, true);
    write_out(c, out);
    buf_clear(out);
    buf_clear(&c->fresh);
    broker_release_holder(server_broker(c->srv), &c->holder);
    if (evbridge_call(server_bridge(c->srv), finish_on_loop, c) < 0)
        log_error("cannot reach the loop thread to end a connection");
}

/* ---- life cycle ---- */

static void
conn_free(struct conn *c)
{
    if (c->reqs) {
        drop_input(c);
        chan_unref(c->reqs);
    }
    frame_free(c->frame);
    if (c->out_room)
        chan_unref(c->out_room);
    if (c->ctx)
        ctx_release(c->ctx);
    if (c->pending) {
        evbuffer_drain(c->pending, evbuffer_get_length(c->pending)); /* counted back */
        evbuffer_free(c->pending);
    }
    answers_free(c->answers);
    free(c);
}

/* Loop thread only (every reference is dropped there). */
static void
conn_unref(struct conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        conn_free(c);
}

static struct conn *
conn_alloc(struct server *srv)
{
    const struct config *cfg = server_config(srv);
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = srv;
    c->preauth = server_needs_token(srv);
    c->frame = frame_new(c->preauth ? PREAUTH_FRAME : cfg->max_frame);
    c->reqs = chan_new(sizeof(struct line *), config_get(cfg, max_inflight));
    c->out_room = chan_new(1, 1);
    c->ctx = ctx_with_cancel(server_root_ctx(srv));
    c->pending = evbuffer_new();
    c->answers = answers_new();
    if (!c->frame || !c->reqs || !c->out_room || !c->ctx || !c->pending || !c->answers ||
        evbuffer_enable_locking(c->pending, NULL) ||
        !evbuffer_add_cb(c->pending, count_output, c)) {
        conn_free(c);
        return NULL;
    }
    c->holder.send_event = send_event;
    c->os.s.holder = &c->holder;
    c->os.s.ctx = c->ctx;
    c->os.s.before_park = before_park;
    c->os.s.answers = c->answers;
    buf_init(&c->out);
    buf_init(&c->fresh);
    c->os.authed = !server_needs_token(srv);
    c->auth_seen = c->os.authed; /* nothing to tell the loop */
    return c;
}

static void
on_handshake_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    log_debug("tls: a client did not finish its handshake in %d s", TLS_HANDSHAKE_S);
    conn_shutdown(c);
}

const struct peer_addr *
conn_peer(const struct conn *c)
{
    return &c->os.peer;
}

void
conn_check_idle(struct conn *c, int64_t now_ms, int64_t timeout_ms)
{
    if (!c->bev || c->input_done || c->handshake)
        return; /* closing already, or the handshake deadline applies */
    bool busy = c->backlog || c->sent != atomic_load(&c->done);
    if (busy || c->reads != c->seen_reads) {
        c->seen_reads = c->reads;
        c->idle_since = now_ms;
        return;
    }
    /* Reservations change on other threads: asked last, under the lock. */
    if (now_ms - c->idle_since < timeout_ms ||
        broker_holder_busy(server_broker(c->srv), &c->holder))
        return;
    log_debug("closing a connection idle for %lld ms", (long long)(now_ms - c->idle_since));
    conn_drain(c);
}

struct conn *
conn_new(struct server *srv, evutil_socket_t fd, const struct peer_addr *peer, struct tls *tls)
{
    /* Answers leave in batches already: Nagle would only add the 40 ms
     * delayed-ACK stall to request/response clients. (Fails harmlessly on
     * Unix sockets.) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = conn_alloc(srv);
    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->fd = fd;
    c->plain_fd = tls ? -1 : fd;
    c->os.peer = *peer;
    c->seen_reads = UINT64_MAX; /* the first idle check starts the clock */
    c->bev = tls ? tls_bufferevent_new(tls, server_base(srv), fd)
                 : bufferevent_socket_new(server_base(srv), fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        conn_free(c);
        return NULL;
    }
    if (tls ? !(c->handshake = evtimer_new(server_base(srv), on_handshake_deadline, c))
            : !(c->rev = event_new(server_base(srv), fd, EV_READ | EV_PERSIST, on_plain_read, c))) {
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    if (c->preauth && !(c->auth_timer = evtimer_new(server_base(srv), on_auth_timeout, c))) {
        if (c->rev)
            event_free(c->rev);
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), count_output, c);
    atomic_init(&c->refs, 2); /* the loop side + the goroutine */
    if (go(conn_goroutine, c) < 0) {
        free_events(c);
        if (c->auth_timer)
            event_free(c->auth_timer);
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    server_conn_opened(srv, c);
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    if (tls) { /* a client that never finishes its handshake is dropped */
        struct timeval tv = {TLS_HANDSHAKE_S, 0};
        evtimer_add(c->handshake, &tv);
    }
    if (c->preauth) { /* small reads, and a deadline, until hello */
        struct timeval tv = {HELLO_DEADLINE_S, 0};
        evtimer_add(c->auth_timer, &tv);
        if (tls)
            bufferevent_setwatermark(c->bev, EV_READ, 0, PREAUTH_FRAME);
    }
    set_reading(c, 0, false);
    return c;
}
