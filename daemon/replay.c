/* Replay and start: the journal's records applied in order (the state
 * machine has no other way in), then the step from a replayed state to a
 * serving one. See broker.h. */
#include "chanq_config.h"

#include "daemon/apply.h"
#include "daemon/commit.h"
#include "daemon/log.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"
#include "daemon/schedule.h"

#include <errno.h>

int
broker_replay_apply(void *arg, const void *rec, size_t len)
{
    struct broker *b = arg;
    struct jrec r;
    const char *why = NULL;
    if (jrec_decode(rec, len, &r, &why) < 0) {
        log_error("journal: undecodable record (%s)", why ? why : "?");
        return -EBADMSG;
    }
    pthread_mutex_lock(&b->lock);
    int rc = apply_record(b, &r, NULL);
    pthread_mutex_unlock(&b->lock);
    return rc < 0 ? -ENOMEM : 0;
}

struct start_counts {
    size_t queued, delayed, dead, kept, orphans;
};

static void
count(struct job *j, void *arg)
{
    struct start_counts *n = arg;
    if (j->state == JOB_DELAYED)
        n->delayed++;
    else if (j->state == JOB_QUEUED)
        n->queued++;
    else if (j->state == JOB_DEAD)
        n->dead++;
    else if (j->state == JOB_RESERVED)
        n->orphans++;
    else if (job_state_is_final(j->state))
        n->kept++;
}

static void
arm_timers(struct job *j, void *arg)
{
    (void)arg;
    if (j->state == JOB_DELAYED)
        job_timer_arm(j, j->due - clock_wall_ms());
    if (j->deadline_ms && !job_state_is_final(j->state))
        job_deadline_arm(j);
}

/* The queue's channel is made and its queued jobs move into it, in the
 * order of their records. A job still reserved when the log ended was
 * being worked on by a connection that is gone: it goes back to the tail,
 * after them, with the interrupted delivery counted (in the order of their
 * deliveries). That requeue is a recorded transition, and its record comes
 * after every other one of the queue's: a later replay puts the jobs in
 * the same order. */
static void
start_queue(struct broker *b, struct queue *q)
{
    if (queue_start(q) < 0) {
        log_error_kv(LOG_FIELDS(LOG_STR("queue", q->name)), "out of memory starting queue %s",
                     q->name);
        return;
    }
    struct job_list orphans = {NULL, NULL, 0};
    struct job *j;
    while ((j = queue_standby_pop(q))) {
        if (j->state == JOB_QUEUED)
            queue_place(q, j);
        else
            job_list_append(&orphans, j);
    }
    while ((j = orphans.head)) {
        job_list_remove(&orphans, j);
        commit_state(b, j, (struct jrec_state){.state = JREC_QUEUED, .attempt = j->attempt}, NULL);
    }
    queue_check_drained(q);
}

void
broker_start(struct broker *b)
{
    pthread_mutex_lock(&b->lock);
    struct start_counts n = {0};
    jobtable_each(b->jobs, count, &n);
    b->serving = true;
    for (size_t i = 0; i < b->nqueues; i++)
        start_queue(b, b->queues[i]);
    jobtable_each(b->jobs, arm_timers, NULL);
    pthread_mutex_unlock(&b->lock);
    schedules_start(b);
    if (b->journal)
        log_info("journal: restored %zu queues, %zu queued, %zu delayed, %zu dead jobs, %zu results",
                 b->nqueues, n.queued + n.orphans, n.delayed, n.dead, n.kept);
}

void
broker_set_journal(struct broker *b, struct journal *j)
{
    b->journal = j;
}
