/* A connection's answers that wait for the journal, kept in request order.
 *
 * With --fsync always an answer may only be sent once the records behind it
 * are on disk. Rather than park the connection's goroutine until then (one
 * durable request per fsync per connection, however deep the client's
 * pipeline), an op hands its journal waits over with answers_defer and the
 * goroutine reads on: every request of a pipeline lands in the same batch,
 * and one fsync answers them all. Answers still leave in request order:
 * whatever is answered after a deferred answer queues behind it.
 *
 * Owned and used by one goroutine (the connection's); not thread-safe. */
#ifndef CHANQ_DAEMON_ANSWERS_H
#define CHANQ_DAEMON_ANSWERS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/chan.h"
#include "daemon/journal/journal.h"
#include "proto/buf.h"
#include "proto/err.h"
#include "proto/span.h"

struct answers;

/* Called once a deferred answer is settled: rc is 0 when every record was
 * made durable, else the first error (the client got an error answer). */
typedef void answer_done_fn(void *arg, int rc);

/* An empty queue, or NULL when out of memory. */
struct answers *answers_new(void);

/* Frees the queue; it must have been settled (answers_settle with block). */
void answers_free(struct answers *a);

/* Takes out[mark..len) as an answer to send once all n waits are durable
 * (or, if one fails, an error answer for rid instead; the failure is
 * logged), and out[0..mark) as answers ready before it (but after every
 * answer queued so far). out is left empty.
 * Takes over the waits' references; done(arg, rc) (may be NULL) runs when
 * it is settled. Returns 0, or -ENOMEM with nothing taken (the caller then
 * waits itself). */
int answers_defer(struct answers *a, struct buf *out, size_t mark, struct journal_wait **waits,
                  size_t n, struct span rid, answer_done_fn *done, void *arg);

/* Moves the answers in `fresh` (needing no journal) to `ready` when
 * nothing is pending, else behind the pending answers. fresh is left
 * empty. */
void answers_push(struct answers *a, struct buf *fresh, struct buf *ready);

/* Appends the answers that are settled, in order, to out, stopping at the
 * first that still waits; with block, waits for all of them (parks). */
void answers_settle(struct answers *a, struct buf *out, bool block);

/* A channel that is closed once the first pending answer can be settled
 * (for chan_select next to the request channel), or NULL when none is
 * pending. Valid until the next call on a. */
struct chan *answers_wait_chan(const struct answers *a);

/* The error answer for a change that a journal wait returned rc (< 0) for. */
void answers_durable_error(int rc, struct proto_error *err);

#endif
