/* chan_select: Go's selectgo. Poll the cases in a random order; if none is
 * ready, enqueue one waiter per case (channels locked in address order),
 * park, and let the first waker claim the select with a CAS. */
#include "chanq_config.h"

#include <errno.h>
#include <stdlib.h>

#include "core/chan-internal.h"
#include "core/ctx.h"
#include "core/timer-internal.h"
#include "core/timer.h"

enum {
    SMALL_CASES = 8, /* selects up to this size need no malloc */
};

/* Per-case scratch: the waiter and the two orders. */
struct sel_scratch {
    struct waiter w;   /* enqueued while parked */
    unsigned poll;     /* poll order: a random permutation of the cases */
    unsigned lock;     /* lock order: non-nil cases by channel address */
};

/* What select_unlock needs on the scheduler stack. */
struct sel_park {
    struct chan_case *cases;
    struct sel_scratch *s;
    size_t nlock;          /* entries of the lock order */
    struct rtimer *timer;  /* armed in the park step, or NULL */
    int64_t when;
};

static void
lock_all(struct chan_case *cases, struct sel_scratch *s, size_t nlock)
{
    for (size_t i = 0; i < nlock; i++) {
        struct chan *c = cases[s[i].lock].c;
        if (i == 0 || c != cases[s[i - 1].lock].c)
            lock_acquire(&c->lock);
    }
}

static void
unlock_all(struct chan_case *cases, struct sel_scratch *s, size_t nlock)
{
    for (size_t i = nlock; i-- > 0;) {
        struct chan *c = cases[s[i].lock].c;
        if (i == 0 || c != cases[s[i - 1].lock].c)
            lock_release(&c->lock);
    }
}

/* Park step: the timer is armed before any channel is unlocked, so no waker
 * can resume us while the timer is not yet in the heap (Go's resetForSleep). */
static bool
select_unlock(struct g *g, void *arg)
{
    /* Once the timer is armed it may fire and resume g, whose stack holds
     * *arg: copy it first. The cases stay readable until the lowest channel
     * lock is released, last (g's pass 3 must take that one first). */
    struct sel_park p = *(struct sel_park *)arg;
    if (p.timer)
        rtimer_arm(p.timer, p.when);
    unlock_all(p.cases, p.s, p.nlock);
    return true;
}

/* Timeout callback, under the timer heap lock. */
static void
select_timeout_fire(void *arg)
{
    struct sel *sel = arg;
    int zero = 0;
    if (atomic_compare_exchange_strong(&sel->done, &zero, 1)) {
        sel->winner = -1;
        sched_ready(sel->g);
    }
}

/* Orders: a Fisher-Yates shuffle, and an insertion sort by channel address
 * (selects are small). Returns the number of non-nil cases. */
static size_t
make_orders(struct chan_case *cases, size_t n, struct sel_scratch *s)
{
    for (size_t i = 0; i < n; i++) {
        size_t j = sched_rand() % (i + 1);
        s[i].poll = s[j].poll;
        s[j].poll = (unsigned)i;
    }
    size_t nlock = 0;
    for (size_t i = 0; i < n; i++) {
        if (!cases[i].c)
            continue;
        size_t j = nlock++;
        while (j > 0 && (uintptr_t)cases[s[j - 1].lock].c > (uintptr_t)cases[i].c) {
            s[j].lock = s[j - 1].lock;
            j--;
        }
        s[j].lock = (unsigned)i;
    }
    return nlock;
}

/* Pass 1: the first ready case in poll order, or -1. */
static int
poll_cases(struct chan_case *cases, size_t n, struct sel_scratch *s, struct waiter **peer)
{
    for (size_t k = 0; k < n; k++) {
        struct chan_case *cs = &cases[s[k].poll];
        if (!cs->c)
            continue;
        bool done;
        if (cs->dir == CHAN_SEND) {
            done = chan_send_locked(cs->c, cs->elem, peer);
            cs->ok = true;
        } else {
            done = chan_recv_locked(cs->c, cs->elem, &cs->ok, peer);
        }
        if (done)
            return (int)s[k].poll;
    }
    return -1;
}

static int
select_result(struct chan_case *cases, size_t nuser, struct ctx *ctx, int idx)
{
    if (idx == -1)
        return SELECT_TIMED_OUT;
    if ((size_t)idx == nuser)
        return ctx_err(ctx);
    return idx;
}

static int
select_run(struct chan_case *cases, size_t n, size_t nuser, struct ctx *ctx,
           int64_t timeout_ms, const char *reason, struct sel_scratch *s)
{
    size_t nlock = make_orders(cases, n, s);
    struct waiter *peer = NULL;
    lock_all(cases, s, nlock);
    int idx = poll_cases(cases, n, s, &peer);
    if (idx >= 0 || timeout_ms == 0) {
        unlock_all(cases, s, nlock);
        if (peer)
            sched_ready(peer->g);
        return idx >= 0 ? select_result(cases, nuser, ctx, idx) : -EAGAIN;
    }
    struct g *self = sched_curg();
    if (!self) {
        unlock_all(cases, s, nlock);
        sched_fatal("chan_select: a blocking select called outside a goroutine");
    }

    /* Pass 2: a waiter per case, in lock order. */
    struct sel sel = {.winner = -2, .g = self};
    for (size_t i = 0; i < nlock; i++) {
        unsigned ci = s[i].lock;
        struct waiter *w = &s[ci].w;
        *w = (struct waiter){.g = self, .elem = cases[ci].elem, .sel = &sel, .case_idx = (int)ci};
        waitq_push(cases[ci].dir == CHAN_SEND ? &cases[ci].c->sendq : &cases[ci].c->recvq, w);
    }
    struct rtimer timer = {.mode = RTIMER_INLINE, .fn = select_timeout_fire, .arg = &sel};
    struct sel_park park = {.cases = cases, .s = s, .nlock = nlock};
    if (timeout_ms > 0) {
        park.timer = &timer;
        park.when = timer_now_ms() + timeout_ms;
    }
    sched_park(select_unlock, &park, reason, nlock == 1 ? (void *)cases[s[0].lock].c : NULL);

    /* Pass 3: the winner's waiter was dequeued by its waker; take the
     * others out of their queues. */
    idx = sel.winner;
    /* A timer that fired took itself out of the heap before it woke us (and
     * touches nothing of ours afterwards): only a live one needs stopping. */
    if (park.timer && idx != -1)
        rtimer_stop(&timer);
    if (nlock > 1 || idx == -1) {
        lock_all(cases, s, nlock);
        for (size_t i = 0; i < nlock; i++) {
            unsigned ci = s[i].lock;
            if (s[ci].w.linked)
                waitq_remove(cases[ci].dir == CHAN_SEND ? &cases[ci].c->sendq
                                                        : &cases[ci].c->recvq,
                             &s[ci].w);
        }
        unlock_all(cases, s, nlock);
    }
    if (idx >= 0) {
        bool ok = s[idx].w.success;
        if (cases[idx].dir == CHAN_SEND && !ok)
            sched_fatal("send on closed channel %p", (void *)cases[idx].c);
        cases[idx].ok = ok;
    }
    return select_result(cases, nuser, ctx, idx);
}

int
select_wait(struct chan_case *cases, size_t n, struct ctx *ctx, int64_t timeout_ms,
            const char *reason)
{
    struct chan *done = ctx ? ctx_done(ctx) : NULL;
    size_t total = n + (done ? 1 : 0);
    struct chan_case small_cases[SMALL_CASES + 1];
    struct sel_scratch small_s[SMALL_CASES + 1];
    struct chan_case *all = cases;
    struct sel_scratch *s = small_s;
    void *mem = NULL;
    if (total > SMALL_CASES + 1 || (done && total > SMALL_CASES)) {
        mem = malloc(total * (sizeof *all + sizeof *s));
        if (!mem)
            sched_fatal("chan_select: out of memory for %zu cases", total);
        s = mem;
        all = (struct chan_case *)(s + total);
    } else if (done) {
        all = small_cases;
    }
    if (done) {
        for (size_t i = 0; i < n; i++)
            all[i] = cases[i];
        all[n] = (struct chan_case){.c = done, .dir = CHAN_RECV};
    }
    int rc = select_run(all, total, n, ctx, timeout_ms, reason, s);
    if (done && rc >= 0)
        cases[rc].ok = all[rc].ok;
    free(mem);
    return rc;
}

int
chan_select(struct chan_case *cases, size_t n, struct ctx *ctx, int64_t timeout_ms)
{
    int rc = select_wait(cases, n, ctx, timeout_ms, "select");
    return rc == SELECT_TIMED_OUT ? -ETIMEDOUT : rc;
}
