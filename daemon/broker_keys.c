/* Idempotency keys in the broker: a job submitted with a key holds it
 * while it is live and for key_window_ms after it finished (done,
 * cancelled, expired); a dead job is live (a kick revives it). A job taken
 * back (DROP) frees its key at once. The table is rebuilt by the records
 * themselves: the key is in the SUBMIT (or a snapshot's JOB) record, and
 * the window starts when the FINAL record is applied; a replay therefore
 * starts the windows of jobs that finished before a restart at the
 * replay (never shorter than the live one). A snapshot writes the keys of
 * finished jobs as KEY records with their windows' ends. */
#include "chanq_config.h"

#include "daemon/broker-internal.h"
#include "daemon/jrec.h"
#include "daemon/keytable.h"
#include "daemon/log.h"

#include <inttypes.h>

int
broker_key_bind(struct broker *b, struct job *j, const char *key, size_t len)
{
    struct job_extra *x = job_extra(j);
    struct key_entry *e = keytable_get(b->keys, key, len, clock_wall_ms());
    if (e && !e->until_ms && e->id != j->id) {
        /* Bound to another live job: only a log the live broker would not
         * have written gets here. The newer record wins; the older job
         * forgets its key. */
        struct job *old = jobtable_get(b->jobs, e->id);
        if (old && old->extra && old->extra->key == e)
            old->extra->key = NULL;
    }
    e = x ? keytable_put(b->keys, key, len, j->id) : NULL;
    if (!e) {
        log_error("out of memory for the key of job %" PRIu64 ": it has none", j->id);
        return -1;
    }
    x->key = e;
    return 0;
}

void
broker_key_finished(struct broker *b, struct job *j)
{
    if (!j->extra || !j->extra->key)
        return;
    keytable_finish(b->keys, j->extra->key, clock_wall_ms() + b->cfg.key_window_ms);
    j->extra->key = NULL; /* the table may free it from now on */
}

void
broker_key_dropped(struct broker *b, struct job *j)
{
    if (!j->extra || !j->extra->key)
        return;
    keytable_remove(b->keys, j->extra->key);
    j->extra->key = NULL;
}

struct key_entry *
broker_key_find(struct broker *b, const char *key, size_t len)
{
    return keytable_get(b->keys, key, len, clock_wall_ms());
}

int
broker_key_apply(struct broker *b, const struct jrec_key *k)
{
    if (k->until_ms <= clock_wall_ms())
        return 0; /* its window is over */
    struct key_entry *e = keytable_get(b->keys, k->key, k->key_len, clock_wall_ms());
    if (e && !e->until_ms)
        return 0; /* a live job holds it now */
    e = keytable_put(b->keys, k->key, k->key_len, k->id);
    if (!e) {
        log_error("out of memory for the key of finished job %" PRIu64 ": it is free", k->id);
        return -1;
    }
    keytable_finish(b->keys, e, k->until_ms);
    return 0;
}
