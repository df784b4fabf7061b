/* Delivery limits of a queue (see queue.h): a concurrency limit (jobs of
 * the queue reserved at once) and a rate limit (a token bucket: `rate`
 * tokens per `rate_per_ms`, at most `burst` kept).
 *
 * Why counters and a gate rather than a channel of tokens: a delivery needs
 * a job and a slot together, and a select cannot take two channels at once.
 * So a parked delivery receives from the queue's job channel only while
 * there is room for it: `armed` counts those parked deliveries, and room is
 * what the limits allow minus the reserved jobs and the armed receivers, so
 * whichever of them gets a job has a slot and a token waiting. The others
 * are starved: they wait on `gate` instead, a channel whose receivers are
 * served in the order they came; each freed slot or due token sends one
 * wake into it, so starved deliveries are woken one at a time, oldest
 * first, and re-plan. The bucket refills lazily from the monotonic clock;
 * a timer wakes the starved when the next token is due (no polling).
 *
 * The bucket is counted in units of 1/rate_per_ms token: each ms adds
 * `rate` units, a token is `rate_per_ms` units, the bucket holds at most
 * `burst * rate_per_ms` (at most 10^6 * 86,400,000: no overflow). */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/queue.h"

#include "core/chan.h"
#include "core/timer.h"

#include <errno.h>
#include <stdint.h>

/* Pending wakes the gate holds at most: a wake sent while its receiver was
 * between deciding to starve and parking waits there for it. */
#define GATE_CAP 64

bool
queue_limited(const struct queue *q)
{
    return q->set.concurrency > 0 || q->set.rate > 0;
}

static int64_t
bucket_full(const struct queue *q)
{
    return q->set.burst * q->set.rate_per_ms;
}

/* Adds the tokens due since the last refill. */
static void
refill(struct queue *q, int64_t now)
{
    int64_t full = bucket_full(q);
    int64_t ms = now - q->refill_ms;
    if (ms <= 0)
        return;
    q->refill_ms = now;
    if (q->tokens >= full)
        return;
    if (ms > full / q->set.rate + 1)
        q->tokens = full; /* long idle: full, and no overflow in ms * rate */
    else
        q->tokens = q->tokens + ms * q->set.rate < full ? q->tokens + ms * q->set.rate : full;
}

size_t
queue_room(struct queue *q)
{
    if (!queue_limited(q))
        return SIZE_MAX;
    int64_t room = INT64_MAX;
    if (q->set.concurrency > 0)
        room = q->set.concurrency - (int64_t)q->reserved;
    if (q->set.rate > 0) {
        refill(q, timer_now_ms());
        int64_t whole = q->tokens / q->set.rate_per_ms;
        if (whole < room)
            room = whole;
    }
    room -= (int64_t)q->armed;
    return room > 0 ? (size_t)room : 0;
}

int64_t
queue_tokens(const struct queue *q)
{
    if (q->set.rate <= 0)
        return 0;
    struct queue copy = {.set = q->set, .tokens = q->tokens, .refill_ms = q->refill_ms};
    refill(&copy, timer_now_ms());
    return copy.tokens / q->set.rate_per_ms;
}

void
queue_spent(struct queue *q)
{
    if (q->set.rate > 0) {
        refill(q, timer_now_ms());
        q->tokens -= q->set.rate_per_ms;
    }
}

void
queue_room_freed(struct queue *q)
{
    if (!q->gate || q->starved == 0)
        return;
    size_t room = queue_room(q);
    size_t pending = chan_len(q->gate);
    size_t want = room < q->starved ? room : q->starved;
    char one = 1;
    for (size_t i = pending; i < want; i++)
        if (chan_try_send(q->gate, &one) != 0)
            break; /* full: enough wakes are on their way */
}

/* The rate timer: the next token is due. It holds a reference to q from
 * its arming (queue_starving) until here, so a deleted queue is not freed
 * under it. */
static void
rate_tick(void *arg)
{
    struct queue *q = arg;
    struct broker *b = q->broker;
    pthread_mutex_lock(&b->lock);
    queue_room_freed(q);
    if (q->starved > chan_len(q->gate))
        queue_starving(q); /* still some waiting: the token after */
    pthread_mutex_unlock(&b->lock);
    queue_unref(q); /* the armed timer's */
}

void
queue_starving(struct queue *q)
{
    if (q->set.rate <= 0 || !q->rate_timer || q->deleted)
        return; /* a deleted queue delivers nothing: no token to wait for */
    refill(q, timer_now_ms());
    int64_t need = (int64_t)(q->armed + 1) * q->set.rate_per_ms - q->tokens;
    if (need <= 0 || q->tokens >= bucket_full(q))
        return; /* tokens are there: a slot or an armed receiver is what it waits for */
    /* Re-arming moves the one timer: the earliest due token wins anyway,
     * since every starved delivery needs the next one. An armed timer
     * holds a reference (one that fired or was never armed holds none). */
    if (!timer_stop(q->rate_timer))
        queue_ref(q);
    timer_reset(q->rate_timer, (need + q->set.rate - 1) / q->set.rate);
}

int
queue_limits_init(struct queue *q)
{
    if (!queue_limited(q)) {
        queue_room_freed(q); /* limits lifted: whoever starved re-plans */
        return 0;
    }
    if (q->set.rate > 0) {
        q->tokens = bucket_full(q);
        q->refill_ms = timer_now_ms();
    }
    if (!q->gate && (q->gate = chan_new(1, GATE_CAP)) == NULL)
        return -ENOMEM;
    if (q->set.rate > 0 && !q->rate_timer && (q->rate_timer = timer_new(rate_tick, q)) == NULL)
        return -ENOMEM;
    queue_room_freed(q); /* a limit raised or lifted: the starved re-plan */
    return 0;
}

void
queue_limits_stop(struct queue *q)
{
    if (q->rate_timer && timer_stop(q->rate_timer))
        queue_unref(q); /* the armed timer's: never the last (the caller holds one) */
}

void
queue_limits_free(struct queue *q)
{
    timer_free(q->rate_timer);
    q->rate_timer = NULL;
    if (q->gate)
        chan_unref(q->gate);
    q->gate = NULL;
}
