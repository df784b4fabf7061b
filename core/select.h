/* chan_select: wait on N send/receive cases at once, Go's select. */
#ifndef CHANQ_CORE_SELECT_H
#define CHANQ_CORE_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/chan.h"

enum chan_dir {
    CHAN_SEND, /* send *elem to c */
    CHAN_RECV, /* receive from c into elem (NULL: discard) */
};

/* One case. The caller owns the array; `ok` is written by chan_select. */
struct chan_case {
    struct chan *c;    /* NULL: a nil channel, never ready */
    enum chan_dir dir; /* send or receive */
    void *elem;        /* send: the value; recv: where the value goes */
    bool ok;           /* recv: false when the channel was closed (elem zeroed) */
};

/* Performs exactly one ready case, chosen uniformly at random among the ready
 * ones, and returns its index. When none is ready:
 *   timeout_ms == 0: returns -EAGAIN at once (Go's default case);
 *   timeout_ms <  0: parks until a case is ready (n == 0: forever);
 *   timeout_ms >  0: parks at most that long, then returns -ETIMEDOUT.
 * `ctx` (may be NULL) bounds the wait too: -ECANCELED or -ETIMEDOUT when it
 * is done first. A ready send case on a closed channel aborts the program.
 * Goroutine only; may park. With timeout_ms == 0 any thread may call it.
 * On a negative return no case was performed. */
int chan_select(struct chan_case *cases, size_t n, struct ctx *ctx, int64_t timeout_ms);

#endif
