/* Reservations, the job's timers, revocation (see reservation.h). */
#include "chanq_config.h"

#include "daemon/reservation.h"

#include "daemon/commit.h"
#include "daemon/queue.h"

#include "core/timer.h"

#include <stdlib.h>

/* ---- holders ---- */

void
reservation_begin(struct job *j, struct holder *h)
{
    j->holder = h;
    j->since_ms = timer_now_ms();
    if (!h) {
        /* Nobody holds it (a replay): it goes back to its queue when the
         * broker starts, in the order of its last record among the
         * queue's jobs, as it would have had it been requeued then. */
        if (!j->queue->broker->serving) {
            j->in_channel = CHAN_STANDBY;
            job_list_append(&j->queue->standby, j);
        }
        return;
    }
    job_list_append(&h->reserved, j);
    j->due = j->since_ms + j->ttr_ms;
    job_timer_arm(j, j->ttr_ms);
}

void
reservation_end(struct job *j)
{
    struct holder *h = j->holder;
    if (!h && j->in_channel == CHAN_STANDBY) {
        job_list_remove(&j->queue->standby, j);
        j->in_channel = CHAN_OUT;
    }
    j->holder = NULL;
    job_timer_stop(j);
    if (h) {
        job_list_remove(&h->reserved, j);
        consume_credit_back(h);
    }
}

void
reservation_touch(struct job *j, int64_t ttr_ms)
{
    j->due = timer_now_ms() + ttr_ms;
    job_timer_arm(j, ttr_ms);
}

int
reservation_retry(struct broker *b, struct job *j, int64_t delay_ms, bool bury,
                  const char *error, struct durable *w)
{
    struct jrec_state st = {.state = JREC_QUEUED, .attempt = j->attempt, .error = error};
    if (bury || j->attempt >= j->max_attempts) {
        st.state = JREC_DEAD;
    } else if (delay_ms > 0) {
        st.state = JREC_DELAYED;
        st.due_ms = clock_wall_ms() + delay_ms;
    }
    return commit_state(b, j, st, w);
}

static void
send_line(struct job *j, int (*encode)(struct buf *, struct span, void *), void *arg)
{
    struct holder *h = j->holder;
    char idbuf[24];
    struct buf line;
    buf_init(&line);
    if (h && encode(&line, broker_id_span(j->id, idbuf), arg) == 0)
        h->send_event(h, line.data, line.len);
    buf_clear(&line);
}

static int
encode_cancel(struct buf *b, struct span id, void *arg)
{
    (void)arg;
    return encode_event_cancel(b, id);
}

static int
encode_revoked(struct buf *b, struct span id, void *arg)
{
    return encode_event_revoked(b, id, *(enum revoke_reason *)arg);
}

void
holder_send_cancel(struct job *j)
{
    send_line(j, encode_cancel, NULL);
}

void
holder_send_revoked(struct job *j, enum revoke_reason why)
{
    send_line(j, encode_revoked, &why);
}

/* ---- timers ---- */

static void job_timer_fired(void *arg);
static void deadline_fired(void *arg);

void
job_timer_arm(struct job *j, int64_t delay_ms)
{
    if (!j->timer) {
        j->timer = timer_new(job_timer_fired, j);
        if (!j->timer)
            return; /* out of memory: ttr/delay not enforced for this job */
    } else if (timer_stop(j->timer)) {
        timer_reset(j->timer, delay_ms > 0 ? delay_ms : 0); /* keeps the armed reference */
        return;
    }
    job_ref(j); /* the armed timer's reference, dropped when it fires */
    timer_reset(j->timer, delay_ms > 0 ? delay_ms : 0);
}

void
job_timer_stop(struct job *j)
{
    if (j->timer && timer_stop(j->timer))
        job_unref(j);
}

void
job_deadline_arm(struct job *j)
{
    struct job_extra *x = j->extra;
    if (!x->deadline_timer && !(x->deadline_timer = timer_new(deadline_fired, j)))
        return;
    if (timer_stop(x->deadline_timer))
        job_unref(j);
    int64_t left = j->deadline_ms - clock_wall_ms();
    job_ref(j);
    timer_reset(x->deadline_timer, left > 0 ? left : 0);
}

void
job_deadline_stop(struct job *j)
{
    if (j->extra && j->extra->deadline_timer && timer_stop(j->extra->deadline_timer))
        job_unref(j);
}

/* A delay ended (the job is queued), or a ttr ran out (revoked: back to
 * the queue or the dead list, "ttr expired" as its error). */
static void
job_timer_fired(void *arg)
{
    struct job *j = arg;
    struct broker *b = job_broker(j);
    pthread_mutex_lock(&b->lock);
    if (j->state == JOB_DELAYED) {
        commit_state(b, j, (struct jrec_state){.state = JREC_QUEUED, .attempt = j->attempt}, NULL);
    } else if (j->state == JOB_RESERVED && j->holder && timer_now_ms() >= j->due) {
        holder_send_revoked(j, REVOKE_TTR);
        j->queue->count.expired++; /* `expired` counts ttr revocations too */
        reservation_retry(b, j, 0, false, "ttr expired", NULL);
    }
    pthread_mutex_unlock(&b->lock);
    job_unref(j);
}

static void
deadline_fired(void *arg)
{
    struct job *j = arg;
    struct broker *b = job_broker(j);
    pthread_mutex_lock(&b->lock);
    if (!job_state_is_final(j->state) && b->serving) {
        if (j->state == JOB_RESERVED)
            holder_send_revoked(j, REVOKE_DEADLINE);
        j->queue->count.expired++;
        commit_final(b, j, JREC_EXPIRED, NULL, NULL);
    }
    pthread_mutex_unlock(&b->lock);
    job_unref(j);
}

/* ---- connections that go away ---- */

void
broker_release_holder(struct broker *b, struct holder *h)
{
    pthread_mutex_lock(&b->lock);
    consume_stop(h); /* first: it would push into the room the jobs leave */
    /* The most recently reserved first, as chanqd always did. */
    while (h->reserved.tail) {
        struct job *j = h->reserved.tail;
        if (reservation_retry(b, j, 0, false, "connection lost", NULL) < 0)
            reservation_end(j); /* refused (logged): at least h lets go of it */
    }
    pthread_mutex_unlock(&b->lock);
}

bool
broker_holder_busy(struct broker *b, struct holder *h)
{
    pthread_mutex_lock(&b->lock);
    bool busy = h->reserved.n > 0 || h->consumer; /* a consume waits, like a parked fetch */
    pthread_mutex_unlock(&b->lock);
    return busy;
}
