/* A client connection's life: created for an accepted socket, listed in
 * the server's live connections, closed at EOF, on error, when idle or on
 * shutdown, freed when the last reference goes (see conn-internal.h for
 * which file does what). */
#include "chanq_config.h"

#include "daemon/conn.h"
#include "daemon/answers.h"
#include "daemon/conn-internal.h"
#include "daemon/conn_env.h"
#include "daemon/log.h"
#include "daemon/peers.h"
#include "daemon/tls.h"
#include "daemon/tokens.h"

#include "core/chan.h"
#include "core/ctx.h"
#include "core/go.h"
#include "proto/frame.h"

#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Time a TLS client has to finish its handshake, counted from the accept:
 * a client that sends its handshake a byte at a time gains nothing. */
#define TLS_HANDSHAKE_S 10
/* Time a client has to say hello when a token is required. */
#define HELLO_DEADLINE_S 10
/* Closed connections between two heap trims. */
#define TRIM_EVERY 1024

struct conn *
conn_next(const struct conn *c)
{
    return c->next;
}

static void
conn_link(struct conn **head, struct conn *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
}

static void
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

/* c is served from now on: listed and counted. Loop. */
static void
conn_opened(struct conn *c)
{
    conn_link(&c->env->conns, c);
    atomic_fetch_add(&c->env->connections, 1);
    if (c->env->clients) {
        client_reg_add(c->env->clients, &c->info, c->fd, &c->holder);
        c->holder.info = &c->info;
    }
}

/* c's socket is closed: no longer listed, counted, nor counted for its
 * address. Loop. */
static void
conn_closed(struct conn *c)
{
    struct conn_env *env = c->env;
    conn_unlink(&env->conns, c);
    if (env->clients && c->holder.info)
        client_reg_remove(env->clients, &c->info);
    peers_release(env->peers, conn_peer(c));
    size_t left = atomic_fetch_sub(&env->connections, 1) - 1;
    /* After a wave of connections (10k parked fetchers that all leave),
     * glibc keeps the freed heap: hand it back so RSS follows the load. */
    if (++env->closed_since_trim >= TRIM_EVERY || (left == 0 && env->closed_since_trim > 64)) {
        env->closed_since_trim = 0;
        malloc_trim(0);
    }
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

void
conn_release_socket(struct conn *c)
{
    if (!c->bev)
        return;
    conn_watch_close(c, false);
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
    conn_closed(c);
    conn_unref(c); /* the loop side's reference */
}

void
conn_shutdown(struct conn *c)
{
    ctx_cancel(c->ctx);
    c->input_done = true;
    conn_close_reqs(c);
    conn_drop_input(c);
    conn_release_socket(c);
}

/* The client sent all it will: answer what it sent, cancel waits. */
void
conn_on_eof(struct conn *c)
{
    ctx_cancel(c->ctx);
    conn_drain(c);
}

void
conn_drain(struct conn *c)
{
    c->input_done = true;
    conn_set_reading(c, 0, false);
    conn_deliver_backlog(c);
    if (c->goroutine_done && c->bev &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_release_socket(c);
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
        conn_on_eof(c);
}

void
conn_peer_gone(void *arg, bool reset)
{
    struct conn *c = arg;
    conn_watch_close(c, false);
    if (reset) {
        /* Nobody will read an answer: as a failed read would. */
        log_debug_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                     "a client went away while its requests were not read");
        conn_shutdown(c);
        return;
    }
    /* EOF, maybe behind requests not read yet: cancel the waits now
     * (conn_on_eof's half), and read and answer those requests once reading
     * is on, which then meets the EOF itself. */
    c->peer_eof = true;
    ctx_cancel(c->ctx);
}

/* A hello deadline passed without one. */
static void
on_auth_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd, (void)what;
    if (!c->preauth)
        return;
    log_debug_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                 "a client did not say hello within %d s: closed", HELLO_DEADLINE_S);
    conn_shutdown(c);
}

static void
on_handshake_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    log_debug_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)),
                 "tls: a client did not finish its handshake in %d s", TLS_HANDSHAKE_S);
    conn_shutdown(c);
}

static void
conn_free(struct conn *c)
{
    if (c->reqs) {
        conn_drop_input(c);
        chan_unref(c->reqs);
    }
    frame_free(c->frame);
    if (c->out_room)
        chan_unref(c->out_room);
    if (c->push_room)
        chan_unref(c->push_room);
    if (c->ctx)
        ctx_release(c->ctx);
    if (c->pending) {
        evbuffer_drain(c->pending, evbuffer_get_length(c->pending)); /* counted back */
        evbuffer_free(c->pending);
    }
    answers_free(c->answers);
    client_info_fini(&c->info);
    free(c);
}

/* Loop thread only (every reference is dropped there). */
void
conn_unref(struct conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        conn_free(c);
}

static struct conn *
conn_alloc(struct conn_env *env)
{
    const struct config *cfg = env->cfg;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->env = env;
    c->preauth = tokens_required(env->tokens);
    c->frame = frame_new(c->preauth ? PREAUTH_FRAME : cfg->max_frame);
    c->reqs = chan_new(sizeof(struct line *), config_get(cfg, max_inflight));
    c->out_room = chan_new(1, 1);
    c->push_room = chan_new(1, 1);
    c->ctx = ctx_with_cancel(env->root);
    c->pending = evbuffer_new();
    c->answers = answers_new();
    if (!c->frame || !c->reqs || !c->out_room || !c->push_room || !c->ctx || !c->pending || !c->answers ||
        evbuffer_enable_locking(c->pending, NULL) ||
        !evbuffer_add_cb(c->pending, conn_count_output, c)) {
        conn_free(c);
        return NULL;
    }
    c->holder.send_event = conn_send_event;
    c->holder.output_room = conn_output_room;
    c->os.s.holder = &c->holder;
    c->os.s.ctx = c->ctx;
    c->os.s.before_park = conn_before_park;
    c->os.s.answers = c->answers;
    buf_init(&c->out);
    buf_init(&c->fresh);
    c->os.authed = !tokens_required(env->tokens);
    c->auth_seen = c->os.authed; /* nothing to tell the loop */
    return c;
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
        broker_holder_busy(c->env->broker, &c->holder))
        return;
    log_debug_kv(LOG_FIELDS(CONN_TAG_FIELDS(&c->os.tag)), "closing a connection idle for %lld ms",
                 (long long)(now_ms - c->idle_since));
    conn_drain(c);
}

struct conn *
conn_new(struct conn_env *env, evutil_socket_t fd, const struct peer_addr *peer, struct tls *tls)
{
    /* Answers leave in batches already: Nagle would only add the 40 ms
     * delayed-ACK stall to request/response clients. (Fails harmlessly on
     * Unix sockets.) */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = conn_alloc(env);
    if (!c) {
        evutil_closesocket(fd);
        return NULL;
    }
    c->fd = fd;
    c->plain_fd = tls ? -1 : fd;
    c->os.peer = *peer;
    conn_tag_init(&c->os.tag, ++env->conns_made, (int)fd);
    c->seen_reads = UINT64_MAX; /* the first idle check starts the clock */
    c->bev = tls ? tls_bufferevent_new(tls, env->base, fd)
                 : bufferevent_socket_new(env->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        conn_free(c);
        return NULL;
    }
    if (tls ? !(c->handshake = evtimer_new(env->base, on_handshake_deadline, c))
            : !(c->rev = event_new(env->base, fd, EV_READ | EV_PERSIST, conn_on_plain_read, c))) {
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    if (c->preauth && !(c->auth_timer = evtimer_new(env->base, on_auth_timeout, c))) {
        if (c->rev)
            event_free(c->rev);
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), conn_count_output, c);
    atomic_init(&c->refs, 2); /* the loop side + the goroutine */
    if (go(conn_goroutine, c) < 0) {
        free_events(c);
        if (c->auth_timer)
            event_free(c->auth_timer);
        bufferevent_free(c->bev);
        conn_free(c);
        return NULL;
    }
    conn_opened(c);
    bufferevent_setcb(c->bev, conn_on_read, conn_on_write, on_event, c);
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
    conn_set_reading(c, 0, false);
    return c;
}
