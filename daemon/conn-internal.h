/* What the files of one connection share (never installed, never used
 * outside daemon/conn*.c): struct conn, the limits, and the calls each
 * file makes into the others.
 *   conn.c        life cycle: create, close, free, deadlines, idle, the
 *                 server's list of live connections
 *   conn_read.c   loop thread: reading, framing, input in the memory
 *                 budget, backpressure (pausing the reads)
 *   conn_write.c  output: goroutine -> loop batches, the socket's write
 *                 side, unsent answers in the memory budget
 *   conn_serve.c  the connection's goroutine: requests in, answers out
 * Ownership: the loop side holds the bufferevent; the goroutine, each
 * scheduled loop call and the loop side each hold a reference, and every
 * reference is dropped on the loop thread, where the last one frees the
 * connection. */
#ifndef CHANQ_DAEMON_CONN_INTERNAL_H
#define CHANQ_DAEMON_CONN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "daemon/broker.h"
#include "daemon/clientreg.h"
#include "daemon/conn.h"
#include "daemon/ops.h"
#include "proto/buf.h"

/* Output held for a client that does not read: over HIGH we stop reading
 * its requests; over MAX it is disconnected. */
#define OUT_HIGH (4u << 20)
#define OUT_MAX (64u << 20)
/* Answers are handed to the loop when the goroutine idles or this much piles up. */
#define FLUSH_AT (64u << 10)
/* Before hello, when a token is required: the longest line (a hello needs
 * far less) and the most read at once. */
#define PREAUTH_FRAME 4096

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
    struct conn_env *env;        /* the server's parts it uses (borrowed) */
    struct conn *prev, *next;    /* env->conns, the live connections (loop) */
    _Atomic int refs;            /* see the file comment */
    /* The atomics sit together, away from the loop's plain flags: the
     * compiler may read neighbouring plain fields with one wide load. */
    _Atomic int want_room;       /* loop -> goroutine: tell me when reqs has room */
    _Atomic int flush_scheduled; /* a flush call is queued on the loop */
    _Atomic int authed;          /* goroutine -> loop: hello with a token accepted */
    _Atomic int want_out_room;   /* goroutine -> loop: wake me when answers drain */
    _Atomic int want_push_room;  /* its consume waits for the output to drain */
    _Atomic size_t in_lines;     /* bytes of framed lines not yet handled (budget) */
    _Atomic size_t out_bytes;    /* bytes of answers not yet written (budget) */
    size_t in_frame;             /* budget counted for the frame's buffer (loop) */
    bool preauth;                /* a token is required and not said yet (loop) */
    bool auth_seen;              /* the goroutine published authed */
    struct event *auth_timer;    /* the hello deadline (loop); NULL without a token */
    struct evbuffer_cb_entry *out_cb; /* counts the bufferevent's output */
    struct chan *out_room;       /* loop -> goroutine: answers drained (cap 1) */
    struct chan *push_room;      /* the same for its consume's pusher (cap 1; the pusher
                                  * holds a reference while it waits) */
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
    struct client_info info;     /* listed in env->clients while open (`clients`) */
};

/* What a line counts in the memory budget. */
static inline size_t
conn_line_size(const struct line *l)
{
    return sizeof *l + l->len + 1;
}

/* conn.c. Drops a reference; the last one frees c. Loop thread only. */
void conn_unref(struct conn *c);
/* Closes the socket once the goroutine ended and the output is written
 * (or at once on shutdown); drops the loop side's reference. Loop. */
void conn_release_socket(struct conn *c);
/* The client sent all it will: answer what it sent, cancel waits. Loop. */
void conn_on_eof(struct conn *c);

/* conn_read.c, loop thread only. */
/* Turns reading on or off for reason (PAUSE_*; 0 only re-evaluates). */
void conn_set_reading(struct conn *c, unsigned reason, bool pause);
/* Puts c's socket in the server's close watch, or takes it out. */
void conn_watch_close(struct conn *c, bool on);
/* Moves framed lines into the goroutine's channel while it has room. */
void conn_deliver_backlog(struct conn *c);
/* Closes the request channel: the goroutine answers what is in it, then ends. */
void conn_close_reqs(struct conn *c);
/* Frees the lines nobody will handle and the frame buffer. */
void conn_drop_input(struct conn *c);
/* Frees a line and gives its bytes back to the budget (also the goroutine). */
void conn_line_free(struct conn *c, struct line *l);
/* The read callbacks: a TLS socket's bufferevent, a plain socket's event. */
void conn_on_read(struct bufferevent *bev, void *arg);
void conn_on_plain_read(evutil_socket_t fd, short what, void *arg);

/* conn_write.c */
/* The evbuffer callback counting unsent answers (pending and the
 * socket's output) in the budget. The thread changing the buffer. */
void conn_count_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);
/* Hands out's bytes to the loop for writing and empties out. Any thread. */
void conn_write_out(struct conn *c, struct buf *out);
/* holder.send_event: an event line for this connection. Any thread. */
void conn_send_event(struct holder *h, const char *line, size_t len);
/* holder.output_room: jobs are pushed only while the unsent output is
 * within the connection's share. Any thread; never parks. */
struct chan *conn_output_room(struct holder *h);
/* The bufferevent's write callback: its output drained. Loop. */
void conn_on_write(struct bufferevent *bev, void *arg);
/* Parks the goroutine while its unsent answers are over its share.
 * Goroutine only. */
void conn_wait_output_room(struct conn *c);

/* conn_serve.c: the goroutine's body (go(conn_goroutine, c)), and
 * session.before_park: flushes what is answered before a request parks. */
void conn_goroutine(void *arg);
void conn_before_park(struct session *s);

#endif
