/* Replay and start: the journal's records applied in order (the state
 * machine has no other way in), then the step from a replayed state to a
 * serving one. See broker.h. */
#include "chanq_config.h"

#include "daemon/apply.h"
#include "daemon/commit.h"
#include "daemon/log.h"
#include "daemon/queue.h"
#include "daemon/reservation.h"

#include <errno.h>
#include <stdlib.h>

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
    size_t queued, delayed, dead, kept;
    struct job **orphans; /* reserved when the log ended */
    size_t norphans;
};

static void
count_and_collect(struct job *j, void *arg)
{
    struct start_counts *n = arg;
    if (j->state == JOB_DELAYED)
        n->delayed++;
    else if (j->state == JOB_QUEUED)
        n->queued++;
    else if (j->state == JOB_DEAD)
        n->dead++;
    else if (j->state == JOB_RESERVED && n->orphans)
        n->orphans[n->norphans++] = j;
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

static int
cmp_job_id(const void *a, const void *b)
{
    uint64_t x = (*(struct job *const *)a)->id, y = (*(struct job *const *)b)->id;
    return x < y ? -1 : x > y;
}

void
broker_start(struct broker *b)
{
    pthread_mutex_lock(&b->lock);
    struct start_counts n = {0};
    n.orphans = malloc((jobtable_count(b->jobs) + 1) * sizeof *n.orphans);
    jobtable_each(b->jobs, count_and_collect, &n);
    b->serving = true;
    for (size_t i = 0; i < b->nqueues; i++)
        if (queue_start(b->queues[i]) < 0)
            log_error("out of memory starting queue %s", b->queues[i]->name);
    /* Jobs reserved when the log ended were being worked on by a
     * connection that is gone: back to the tail of their queue, the
     * interrupted delivery counted (recorded, in id order). */
    if (n.orphans) {
        qsort(n.orphans, n.norphans, sizeof *n.orphans, cmp_job_id);
        for (size_t i = 0; i < n.norphans; i++)
            commit_state(b, n.orphans[i],
                         (struct jrec_state){.state = JREC_QUEUED, .attempt = n.orphans[i]->attempt},
                         NULL);
    }
    jobtable_each(b->jobs, arm_timers, NULL);
    pthread_mutex_unlock(&b->lock);
    free(n.orphans);
    if (b->journal)
        log_info("journal: restored %zu queues, %zu queued, %zu delayed, %zu dead jobs, %zu results",
                 b->nqueues, n.queued + n.norphans, n.delayed, n.dead, n.kept);
}

void
broker_set_journal(struct broker *b, struct journal *j)
{
    b->journal = j;
}
