/* Channel internals shared by chan.c, select.c and the rest of core/: the
 * struct, waiters and their claim protocol. Lock order: channel locks in
 * ascending address order, then the timer heap lock, then the scheduler
 * lock. Never sched_ready() while holding a channel lock. */
#ifndef CHANQ_CORE_CHAN_INTERNAL_H
#define CHANQ_CORE_CHAN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/chan.h"
#include "core/lock.h"
#include "core/sched-internal.h"
#include "core/waiter.h"
#include "core/select.h"

/* A FIFO of waiters. */
struct waitq {
    struct waiter *first, *last;
};

/* A channel. */
struct chan {
    struct lock lock;      /* guards everything below; released by the park step */
    atomic_int refs;       /* references */
    size_t elem_size;      /* bytes per element */
    size_t cap;            /* capacity: sends are taken while count < cap */
    size_t slots;          /* ring size: >= cap and >= count (chan_set_cap) */
    atomic_size_t count;   /* buffered elements (written under lock) */
    size_t sendx, recvx;   /* ring indexes */
    atomic_bool closed;    /* written under lock */
    struct waitq recvq;    /* parked receivers (empty when count > 0) */
    struct waitq sendq;    /* parked senders (empty unless the buffer is full) */
    unsigned char *buf;    /* slots * elem_size bytes: right after the struct, or its
                            * own allocation once chan_set_cap resized it */
};

/* The select core behind chan_select, go_sleep and blocking calls with a
 * ctx: returns a case index, -EAGAIN (timeout_ms == 0), SELECT_TIMED_OUT
 * (its own timeout), or ctx_err(ctx). `reason` is the go_dump wait reason. */
#define SELECT_TIMED_OUT (-100000)
int select_wait(struct chan_case *cases, size_t n, struct ctx *ctx, int64_t timeout_ms,
                const char *reason);

/* Channel lock held: try to complete a send / a receive now. Return true
 * when done; *peer is then a claimed waiter to sched_ready() after
 * unlocking (or NULL). A receive from a closed, drained channel is "done"
 * with *ok false and elem zeroed. A send on a closed channel aborts. */
bool chan_send_locked(struct chan *c, const void *elem, struct waiter **peer);
bool chan_recv_locked(struct chan *c, void *elem, bool *ok, struct waiter **peer);

/* Waiter queues (channel lock held). */
void waitq_push(struct waitq *q, struct waiter *w);
void waitq_remove(struct waitq *q, struct waiter *w);

/* park_unlock_fn releasing one channel's lock. */
bool chan_park_unlock(struct g *g, void *chan);

#endif
