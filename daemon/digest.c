/* The state digest: SHA-256 over a canonical text of the broker's durable
 * state, so that two states (before a stop and after the restart's replay;
 * later, two replicas) can be compared by one string. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/keytable.h"
#include "daemon/queue.h"
#include "daemon/schedule.h"

#include "core/chan.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feeds one printf-formatted line into the hash. */
static void
feed(EVP_MD_CTX *md, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
feed(EVP_MD_CTX *md, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        EVP_DigestUpdate(md, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* Strings are fed with their length first, so that no two states hash the
 * same text by moving bytes between fields. */
static void
feed_str(EVP_MD_CTX *md, const char *s, size_t len)
{
    feed(md, " %zu:", s ? len : 0);
    if (s)
        EVP_DigestUpdate(md, s, len);
}

/* chan_peek_each callback: the channel's jobs in delivery order, without
 * its tombstones. */
static bool
feed_queued(const void *elem, void *arg)
{
    const struct job *j = *(struct job *const *)elem;
    if (j->state == JOB_QUEUED)
        feed(arg, " %" PRIu64, j->id);
    return true;
}

static void
feed_queue(EVP_MD_CTX *md, const struct queue *q)
{
    feed(md, "queue");
    feed_str(md, q->name, q->name_len);
    feed(md, " %lld %lld %lld %d %d\n", (long long)q->set.capacity, (long long)q->set.ttr_ms,
         (long long)q->set.max_attempts, q->paused, q->closed);
    if (queue_limited(q)) /* only then: digests of queues without limits stay as they were */
        feed(md, "limits %lld %lld %lld %lld\n", (long long)q->set.concurrency,
             (long long)q->set.rate, (long long)q->set.rate_per_ms, (long long)q->set.burst);
    feed(md, "queued");
    for (const struct job *j = q->standby.head; j; j = j->next)
        feed(md, " %" PRIu64, j->id);
    if (q->lanes) { /* priority mode: the channel holds tickets; the lanes, in delivery order */
        for (int l = JOB_MAX_PRIORITY; l >= 0; l--)
            for (const struct job *j = q->lanes[l].head; j; j = j->next)
                feed(md, " %" PRIu64, j->id);
    } else if (q->jobs) {
        chan_peek_each(q->jobs, feed_queued, md);
    }
    feed(md, "\ndead");
    for (const struct job *j = q->dead.head; j; j = j->next)
        feed(md, " %" PRIu64, j->id);
    feed(md, "\n");
}

/* schedules_digest's feed. */
static void
feed_bytes(void *md, const void *p, size_t n)
{
    EVP_DigestUpdate(md, p, n);
}

static void
feed_job(EVP_MD_CTX *md, const struct job *j)
{
    const struct job_extra *x = j->extra;
    int64_t due = j->state == JOB_DELAYED ? j->due : 0;
    feed(md, "job %" PRIu64 " %s %u %u %d %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64, j->id,
         job_state_name(j->state), j->attempt, j->max_attempts, j->ttr_ms, j->created_ms,
         j->deadline_ms, due, x && x->parent ? x->parent->id : 0);
    feed_str(md, j->queue->name, j->queue->name_len);
    feed_str(md, j->payload, j->payload_len);
    feed_str(md, x ? x->error : NULL, x && x->error ? strlen(x->error) : 0);
    feed_str(md, x ? x->result : NULL, x && x->result ? strlen(x->result) : 0);
    if (j->priority) /* only then: digests without priorities stay as they were */
        feed(md, "priority %u", j->priority);
    if (x && x->key) { /* a live job's idempotency key; only then, as before keys existed */
        feed(md, "key");
        feed_str(md, x->key->key, x->key->len);
    }
    if (x && x->traceparent) { /* only when set: digests of jobs without one stay as they were */
        feed(md, " traceparent");
        feed_str(md, x->traceparent, strlen(x->traceparent));
    }
    feed(md, "\n");
}

int
broker_state_digest(struct broker *b, char hex[BROKER_DIGEST_HEX])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        return -1;
    }
    pthread_mutex_lock(&b->lock);
    size_t njobs;
    struct job **jobs = broker_jobs_by_id(b, &njobs);
    if (jobs) {
        for (size_t i = 0; i < b->nqueues; i++)
            feed_queue(md, b->queues[i]);
        schedules_digest(b, feed_bytes, md);
        for (size_t i = 0; i < njobs; i++)
            feed_job(md, jobs[i]);
        /* Queued jobs on their way into a full channel (a requeue parked
         * for room) have no place in it yet: by id. A replay puts them at
         * the channel's tail, in the order of their records, which is the
         * order they would have entered it. */
        feed(md, "entering");
        for (size_t i = 0; i < njobs; i++)
            if (jobs[i]->state == JOB_QUEUED && jobs[i]->in_channel != CHAN_IN &&
                jobs[i]->in_channel != CHAN_STANDBY)
                feed(md, " %" PRIu64, jobs[i]->id);
        feed(md, "\nfinished");
        for (const struct job *j = b->finished.head; j; j = j->next)
            feed(md, " %" PRIu64, j->id);
        feed(md, "\n");
    }
    pthread_mutex_unlock(&b->lock);
    unsigned char sum[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    int ok = jobs && EVP_DigestFinal_ex(md, sum, &n) == 1 && n == 32;
    free(jobs);
    EVP_MD_CTX_free(md);
    if (!ok)
        return -1;
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", sum[i]);
    return 0;
}
