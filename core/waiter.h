/* Waiter records: what a goroutine parked on a channel leaves in the
 * channel's queue (see chan-internal.h for the protocol). Apart from
 * chan-internal.h so that struct g can hold one. */
#ifndef CHANQ_CORE_WAITER_H
#define CHANQ_CORE_WAITER_H

#include <stdatomic.h>
#include <stdbool.h>

struct g;

/* What a parked select (or a blocking send/recv with a ctx) shares between
 * its waiters: whoever dequeues one of them first claims the whole select
 * with a CAS on `done` and alone writes winner. Lives on the parked
 * goroutine's stack. */
struct sel {
    _Atomic int done; /* 0 until claimed */
    int winner;       /* the case index, or -1: the timeout fired */
    struct g *g;      /* the parked goroutine */
};

/* A goroutine parked on one channel (one per case for a select), linked into
 * the channel's sendq or recvq. A plain send or receive uses the one inside
 * its struct g (g->wait); a select's live on its goroutine's stack. */
struct waiter {
    struct g *g;                /* who to wake */
    struct waiter *next, *prev; /* the queue (channel lock) */
    void *elem;                 /* send: the value; recv: where it goes (may be NULL) */
    struct sel *sel;            /* NULL for a plain send/recv: dequeuing is claiming */
    int case_idx;               /* this waiter's case in the select */
    bool success;               /* true: a value moved; false: woken by close */
    bool linked;                /* still in the queue (channel lock) */
};

#endif
