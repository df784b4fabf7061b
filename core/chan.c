/* Channels: Go's hchan in C. A mutex per channel, a ring buffer, FIFO queues
 * of parked senders and receivers; values move straight into a parked
 * peer's variable, and peers are woken only after the lock is released. */
#include "chanq_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/chan-internal.h"
#include "core/ctx.h"

enum {
    CLOSE_BATCH = 128, /* waiters chan_close claims per lock hold */
};

struct chan *
chan_new(size_t elem_size, size_t cap)
{
    if (cap && elem_size > (SIZE_MAX - sizeof(struct chan)) / cap)
        return NULL;
    struct chan *c = malloc(sizeof *c + elem_size * cap);
    if (!c)
        return NULL;
    memset(c, 0, sizeof *c);
    atomic_init(&c->refs, 1);
    c->elem_size = elem_size;
    c->cap = cap;
    c->slots = cap;
    c->buf = (unsigned char *)(c + 1);
    return c;
}

void
chan_ref(struct chan *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void
chan_unref(struct chan *c)
{
    if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (c->recvq.first || c->sendq.first)
        sched_fatal("chan_unref: freeing a channel goroutines are parked on");
    if (c->buf != (unsigned char *)(c + 1))
        free(c->buf);
    free(c);
}

void
waitq_push(struct waitq *q, struct waiter *w)
{
    w->next = NULL;
    w->prev = q->last;
    if (q->last)
        q->last->next = w;
    else
        q->first = w;
    q->last = w;
    w->linked = true;
}

void
waitq_remove(struct waitq *q, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->first = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->last = w->prev;
    w->next = w->prev = NULL;
    w->linked = false;
}

/* Pops the first waiter that can be claimed: a select waiter whose select
 * another waker already claimed is dropped (Go's selectDone CAS). */
static struct waiter *
waitq_dequeue(struct waitq *q)
{
    struct waiter *w;
    while ((w = q->first)) {
        waitq_remove(q, w);
        if (!w->sel)
            return w;
        int zero = 0;
        if (atomic_compare_exchange_strong(&w->sel->done, &zero, 1)) {
            w->sel->winner = w->case_idx;
            return w;
        }
    }
    return NULL;
}

static void
elem_copy(void *dst, const void *src, size_t n)
{
    if (n && dst)
        memcpy(dst, src, n);
}

bool
chan_send_locked(struct chan *c, const void *elem, struct waiter **peer)
{
    if (atomic_load_explicit(&c->closed, memory_order_relaxed))
        sched_fatal("send on closed channel %p", (void *)c);
    struct waiter *w = waitq_dequeue(&c->recvq);
    if (w) {
        elem_copy(w->elem, elem, c->elem_size);
        w->success = true;
        *peer = w;
        return true;
    }
    *peer = NULL;
    size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
    if (count < c->cap) {
        elem_copy(c->buf + c->sendx * c->elem_size, elem, c->elem_size);
        c->sendx = (c->sendx + 1) % c->slots;
        atomic_store_explicit(&c->count, count + 1, memory_order_relaxed);
        return true;
    }
    return false;
}

bool
chan_recv_locked(struct chan *c, void *elem, bool *ok, struct waiter **peer)
{
    *peer = NULL;
    *ok = true;
    size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
    if (count > 0) {
        elem_copy(elem, c->buf + c->recvx * c->elem_size, c->elem_size);
        c->recvx = (c->recvx + 1) % c->slots;
        count--;
        /* Room again: the longest-parked sender's value becomes the tail. */
        struct waiter *w = count < c->cap ? waitq_dequeue(&c->sendq) : NULL;
        if (w) {
            elem_copy(c->buf + c->sendx * c->elem_size, w->elem, c->elem_size);
            c->sendx = (c->sendx + 1) % c->slots;
            count++;
            w->success = true;
            *peer = w;
        }
        atomic_store_explicit(&c->count, count, memory_order_relaxed);
        return true;
    }
    struct waiter *w = waitq_dequeue(&c->sendq);
    if (w) { /* unbuffered (or shrunk to 0 and drained): straight from the sender */
        elem_copy(elem, w->elem, c->elem_size);
        w->success = true;
        *peer = w;
        return true;
    }
    if (atomic_load_explicit(&c->closed, memory_order_relaxed)) {
        if (elem && c->elem_size)
            memset(elem, 0, c->elem_size);
        *ok = false;
        return true;
    }
    return false;
}

bool
chan_park_unlock(struct g *g, void *chan)
{
    struct chan *c = chan;
    lock_release(&c->lock);
    return true;
}

static bool
park_forever(struct g *g, void *arg)
{
    return true;
}

/* A send or receive bounded by a ctx: a two-case select. */
static int
chan_op_ctx(struct chan *c, enum chan_dir dir, void *elem, struct ctx *ctx)
{
    int err = ctx_err(ctx);
    if (err)
        return err;
    struct chan_case cs = {.c = c, .dir = dir, .elem = elem};
    int rc = select_wait(&cs, 1, ctx, -1, dir == CHAN_SEND ? "chan send" : "chan receive");
    if (rc < 0)
        return rc;
    return cs.ok || dir == CHAN_SEND ? 0 : -EPIPE;
}

int
chan_send(struct chan *c, const void *elem, struct ctx *ctx)
{
    if (ctx && ctx_done(ctx))
        return chan_op_ctx(c, CHAN_SEND, (void *)elem, ctx);
    struct g *self = sched_self("chan_send");
    if (!c) {
        sched_park(park_forever, NULL, "chan send (nil chan)", NULL);
        sched_fatal("chan_send: woken from a nil channel");
    }
    struct waiter *peer;
    lock_acquire(&c->lock);
    if (chan_send_locked(c, elem, &peer)) {
        lock_release(&c->lock);
        if (peer)
            sched_ready(peer->g);
        return 0;
    }
    struct waiter *w = &self->wait;
    *w = (struct waiter){.g = self, .elem = (void *)elem};
    waitq_push(&c->sendq, w);
    sched_park(chan_park_unlock, c, "chan send", c);
    if (!w->success)
        sched_fatal("send on closed channel %p", (void *)c);
    return 0;
}

int
chan_recv(struct chan *c, void *elem, struct ctx *ctx)
{
    if (ctx && ctx_done(ctx))
        return chan_op_ctx(c, CHAN_RECV, elem, ctx);
    struct g *self = sched_self("chan_recv");
    if (!c) {
        sched_park(park_forever, NULL, "chan receive (nil chan)", NULL);
        sched_fatal("chan_recv: woken from a nil channel");
    }
    struct waiter *peer;
    bool ok;
    lock_acquire(&c->lock);
    if (chan_recv_locked(c, elem, &ok, &peer)) {
        lock_release(&c->lock);
        if (peer)
            sched_ready(peer->g);
        return ok ? 0 : -EPIPE;
    }
    struct waiter *w = &self->wait;
    *w = (struct waiter){.g = self, .elem = elem};
    waitq_push(&c->recvq, w);
    sched_park(chan_park_unlock, c, "chan receive", c);
    return w->success ? 0 : -EPIPE;
}

int
chan_try_send(struct chan *c, const void *elem)
{
    if (!c)
        return -EAGAIN;
    struct waiter *peer;
    lock_acquire(&c->lock);
    bool done = chan_send_locked(c, elem, &peer);
    lock_release(&c->lock);
    if (peer)
        sched_ready(peer->g);
    return done ? 0 : -EAGAIN;
}

int
chan_try_recv(struct chan *c, void *elem)
{
    if (!c)
        return -EAGAIN;
    /* Go's lock-free fast path for the common "nothing there" case. */
    if (atomic_load_explicit(&c->count, memory_order_acquire) == 0 &&
        __atomic_load_n(&c->cap, __ATOMIC_RELAXED) > 0 &&
        !atomic_load_explicit(&c->closed, memory_order_acquire))
        return -EAGAIN;
    struct waiter *peer;
    bool ok;
    lock_acquire(&c->lock);
    bool done = chan_recv_locked(c, elem, &ok, &peer);
    lock_release(&c->lock);
    if (peer)
        sched_ready(peer->g);
    if (!done)
        return -EAGAIN;
    return ok ? 0 : -EPIPE;
}

/* chan_close walks thousands of waiters (in g structs, or on the stacks of
 * goroutines in a select): fetch the one after the next, and the next one's
 * goroutine, ahead (the next was fetched one step earlier). */
static inline void
prefetch_waiters(const struct waiter *next)
{
    if (next) {
        __builtin_prefetch(next->g);
        __builtin_prefetch(next->next);
    }
}

/* Claims up to CLOSE_BATCH waiters of a closed channel (lock held), receivers
 * first, and chains their goroutines (through schedlink, unused while they
 * are parked) in queue order. With thousands of waiters every one can be a
 * cache miss, so they are prefetched. */
static struct g *
close_take_batch_locked(struct chan *c)
{
    struct g *head = NULL, **tailp = &head;
    struct waiter *w;
    for (int n = 0; n < CLOSE_BATCH && (w = waitq_dequeue(&c->recvq)); n++) {
        prefetch_waiters(c->recvq.first);
        if (w->elem && c->elem_size)
            memset(w->elem, 0, c->elem_size);
        w->success = false;
        *tailp = w->g;
        tailp = &w->g->schedlink;
    }
    for (int n = 0; !head && n < CLOSE_BATCH && (w = waitq_dequeue(&c->sendq)); n++) {
        prefetch_waiters(c->sendq.first);
        w->success = false;
        *tailp = w->g;
        tailp = &w->g->schedlink;
    }
    *tailp = NULL;
    return head;
}

void
chan_close(struct chan *c)
{
    if (!c)
        sched_fatal("close of nil channel");
    /* A woken receiver may drop the last reference while this loop still
     * takes the lock for the next batch: hold one of our own until the end
     * (the closer is often not an owner, e.g. a writer answering a request
     * channel that its requester frees once woken). */
    chan_ref(c);
    lock_acquire(&c->lock);
    if (atomic_load_explicit(&c->closed, memory_order_relaxed)) {
        lock_release(&c->lock);
        sched_fatal("close of closed channel %p", (void *)c);
    }
    atomic_store_explicit(&c->closed, true, memory_order_release);
    /* The waiters are taken in batches, each readied as soon as the lock is
     * released, so other workers start on the first batch while this one
     * collects the next (one pass over 10k waiters before anyone could run
     * kept the other cores idle). Between batches the channel is closed:
     * no waiter joins, and one that leaves (timeout, context) had that
     * outcome race the close, as it would in any order. */
    struct g *head;
    while ((head = close_take_batch_locked(c))) {
        lock_release(&c->lock);
        sched_ready_list(head);
        lock_acquire(&c->lock);
    }
    lock_release(&c->lock);
    chan_unref(c);
}

void
chan_peek_each(struct chan *c, chan_peek_fn *fn, void *arg)
{
    if (!c)
        return;
    lock_acquire(&c->lock);
    size_t n = atomic_load_explicit(&c->count, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (!fn(c->buf + ((c->recvx + i) % c->slots) * c->elem_size, arg))
            break;
    lock_release(&c->lock);
}

/* Lock held: moves parked senders' elements into the free slots; returns
 * the woken senders chained through schedlink (sched_ready_list). */
static struct g *
admit_senders_locked(struct chan *c)
{
    struct g *head = NULL, **tailp = &head;
    size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
    struct waiter *w;
    while (count < c->cap && (w = waitq_dequeue(&c->sendq))) {
        elem_copy(c->buf + c->sendx * c->elem_size, w->elem, c->elem_size);
        c->sendx = (c->sendx + 1) % c->cap;
        count++;
        w->success = true;
        *tailp = w->g;
        tailp = &w->g->schedlink;
    }
    *tailp = NULL;
    atomic_store_explicit(&c->count, count, memory_order_relaxed);
    return head;
}

size_t
chan_remove_each(struct chan *c, chan_remove_fn *fn, void *arg)
{
    if (!c || c->cap == 0)
        return 0;
    lock_acquire(&c->lock);
    size_t n = atomic_load_explicit(&c->count, memory_order_relaxed), kept = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char *from = c->buf + ((c->recvx + i) % c->cap) * c->elem_size;
        if (fn(from, arg))
            continue;
        unsigned char *to = c->buf + ((c->recvx + kept) % c->cap) * c->elem_size;
        if (to != from)
            memcpy(to, from, c->elem_size);
        kept++;
    }
    c->sendx = (c->recvx + kept) % c->cap;
    atomic_store_explicit(&c->count, kept, memory_order_relaxed);
    struct g *woken = kept < n ? admit_senders_locked(c) : NULL;
    lock_release(&c->lock);
    if (woken)
        sched_ready_list(woken);
    return n - kept;
}

size_t
chan_len(const struct chan *c)
{
    return c ? atomic_load_explicit(&c->count, memory_order_relaxed) : 0;
}

size_t
chan_cap(const struct chan *c)
{
    return c ? __atomic_load_n(&c->cap, __ATOMIC_RELAXED) : 0;
}

bool
chan_is_closed(const struct chan *c)
{
    return c ? atomic_load_explicit(&c->closed, memory_order_acquire) : false;
}

size_t
chan_elem_size(const struct chan *c)
{
    return c ? c->elem_size : 0;
}

/* Moves the ring into a buffer of `slots` slots (>= count), oldest first. */
static int
chan_resize_ring(struct chan *c, size_t slots)
{
    size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
    if (slots && c->elem_size > SIZE_MAX / slots)
        return -ENOMEM;
    unsigned char *buf = slots && c->elem_size ? malloc(slots * c->elem_size) : NULL;
    if (slots && c->elem_size && !buf)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++)
        memcpy(buf + i * c->elem_size, c->buf + ((c->recvx + i) % c->slots) * c->elem_size,
               c->elem_size);
    if (c->buf != (unsigned char *)(c + 1))
        free(c->buf);
    c->buf = buf ? buf : (unsigned char *)(c + 1); /* no slots: the (empty) inline area */
    c->slots = slots;
    c->recvx = 0;
    c->sendx = slots ? count % slots : 0;
    return 0;
}

/* Lets parked senders in while there is room, a batch at a time (they are
 * woken outside the channel lock). */
static void
chan_admit_senders(struct chan *c)
{
    struct waiter *woken[64];
    size_t n;
    do {
        n = 0;
        lock_acquire(&c->lock);
        size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
        struct waiter *w;
        while (n < 64 && count < c->cap && (w = waitq_dequeue(&c->sendq))) {
            elem_copy(c->buf + c->sendx * c->elem_size, w->elem, c->elem_size);
            c->sendx = (c->sendx + 1) % c->slots;
            count++;
            w->success = true;
            woken[n++] = w;
        }
        atomic_store_explicit(&c->count, count, memory_order_relaxed);
        lock_release(&c->lock);
        for (size_t i = 0; i < n; i++)
            sched_ready(woken[i]->g);
    } while (n == 64);
}

int
chan_set_cap(struct chan *c, size_t cap)
{
    lock_acquire(&c->lock);
    size_t count = atomic_load_explicit(&c->count, memory_order_relaxed);
    size_t slots = cap > count ? cap : count;
    int rc = slots != c->slots ? chan_resize_ring(c, slots) : 0;
    if (rc == 0)
        __atomic_store_n(&c->cap, cap, __ATOMIC_RELAXED); /* chan_try_recv reads it unlocked */
    lock_release(&c->lock);
    if (rc == 0)
        chan_admit_senders(c);
    return rc;
}
