/* Delivery: how a job leaves its queue for a connection, shared by the two
 * ops that deliver (fetch answers with jobs, consume pushes them as
 * events). A delivery takes ready jobs out of a set of queues (in a random
 * order, or the listed one), reserves each for the holder with a RESERVE
 * record, and when none is ready parks in one select over the queues'
 * channels, which is what makes deliveries fair across the connections
 * waiting on a queue. Lock held unless said otherwise. */
#ifndef CHANQ_DAEMON_DELIVER_H
#define CHANQ_DAEMON_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/encode.h"
#include "proto/msg.h"

struct broker;
struct chan;
struct ctx;
struct durable;
struct holder;
struct job;
struct queue;
struct session;

/* The queues one delivery takes from. */
struct pick {
    struct queue *qs[MSG_MAX_QUEUES];    /* as asked, each a reference of the pick's owner
                                          * (broker_resolve_queues; daemon/queue.h) */
    struct queue *order[MSG_MAX_QUEUES]; /* qs as tried this round (borrowed from qs) */
    size_t nq;
    bool strict; /* the listed order instead of a random one */
};

/* Takes up to max ready jobs from p's queues (a new order each call) and
 * reserves each for h: RESERVE records nobody waits for, the attempt
 * counted. Stops early once the payloads taken reach max_bytes (the first
 * ready job is always taken when max_bytes > 0). got[] receives the jobs,
 * each carrying the reference the channel held; returns how many. */
size_t deliver_take(struct broker *b, struct pick *p, struct holder *h, struct job **got,
                    size_t max, size_t max_bytes);

/* x, just received from q's channel (as deliver_park hands it over, with
 * the channel's reference), stands for the job q delivers next
 * (queue_take: x itself, or with priorities the oldest of the highest
 * level), which is reserved for h and returned with a reference. NULL when
 * there is none to deliver (x was cancelled or expired meanwhile): x's
 * reference is dropped. */
struct job *deliver_reserve(struct broker *b, struct queue *q, struct job *x, struct holder *h);

/* x, received from q's channel, is not wanted after all (its receiver is
 * going away): the job it stands for (queue_take) goes back to the tail of
 * its queue (no record: it never left QUEUED). Consumes the channel's
 * reference. */
void deliver_put_back(struct queue *q, struct job *j);

/* A reserved job whose delivery never reached its holder (the connection
 * is closing, the answer could not be encoded) goes back to the tail of
 * its queue with the attempt taken back, recorded; w may be NULL. */
int deliver_give_back(struct broker *b, struct job *j, struct durable *w);

/* True once every queue of p is closed and drained. */
bool deliver_all_drained(struct pick *p);

/* Releases the lock and parks until one of p's queues hands over a job
 * (0: the job in *j, its queue in *from with a reference the caller drops
 * with queue_unref: p may no longer hold it), the plan changes (a queue
 * paused, resumed or closed: -EAGAIN), `extra` (may be NULL) is ready
 * (-EAGAIN; its value is taken), timeout_ms passes (-ETIMEDOUT; < 0: no
 * limit) or ctx is done (-ECANCELED, -ETIMEDOUT). It waits on the queues p
 * lists when called; p may change meanwhile. s->before_park runs before
 * the park (s may be NULL). Lock held again on return. Goroutine only. */
int deliver_park(struct broker *b, const struct pick *p, struct session *s, struct chan *extra,
                 struct ctx *ctx, int64_t timeout_ms, struct job **j, struct queue **from);

/* A reserved job as the protocol describes it; idbuf (>= 24 bytes) holds
 * the id's text. Borrows from j (valid while the lock is held). */
struct proto_job deliver_describe(const struct job *j, char *idbuf);

#endif
