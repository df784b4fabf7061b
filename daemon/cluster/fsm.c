/* The raft_fsm over a standby broker (see fsm.h). An entry is checked in
 * full before its first record is applied, so a malformed entry changes
 * nothing on any node: libraft hands every node the same bytes, so they
 * all refuse it alike and stay equal. */
#include "chanq_config.h"

#include "daemon/cluster/fsm.h"

#include "daemon/cluster/entry.h"
#include "daemon/jrec.h"
#include "daemon/log.h"

#include <errno.h>
#include <pthread.h>
#include <raft.h>
#include <stdlib.h>

struct cluster_fsm {
    struct raft_fsm raft;       /* what libraft calls; raft.data = this */
    struct broker_config cfg;   /* for the standbys made on restore */
    pthread_mutex_t lock;       /* guards standby and stats */
    struct broker *standby;     /* the committed state */
    struct cluster_fsm_stats stats;
};

static int
check_record(void *arg, const void *rec, size_t len)
{
    (void)arg;
    struct jrec r;
    return jrec_decode(rec, len, &r, NULL) < 0 ? -EBADMSG : 0;
}

/* 0 when every record of the entry decodes. */
static int
entry_check(const void *buf, size_t len)
{
    return entry_each(buf, len, check_record, NULL);
}

/* libraft's apply: a nonzero return reaches the proposer's callback as
 * its status; the entry counts as applied either way. */
static int
fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
    struct cluster_fsm *f = rf->data;
    *result = NULL;
    if (entry_check(buf->base, buf->len) < 0) {
        log_error("cluster: a committed entry of %zu bytes is malformed; skipped", buf->len);
        pthread_mutex_lock(&f->lock);
        f->stats.bad_entries++;
        pthread_mutex_unlock(&f->lock);
        return RAFT_MALFORMED;
    }
    pthread_mutex_lock(&f->lock);
    int rc = entry_each(buf->base, buf->len, broker_replay_apply, f->standby);
    f->stats.entries++;
    f->stats.records += (uint64_t)entry_count(buf->base, buf->len);
    if (rc < 0) {
        /* Only out of memory gets here (the records decoded): the standby
         * missed part of a batch. It is flagged, never silently kept. */
        f->stats.diverged = true;
        log_error("cluster: applying a committed entry failed (%s); this node's state diverged",
                  rc == -ENOMEM ? "out of memory" : "bad record");
    }
    pthread_mutex_unlock(&f->lock);
    return rc < 0 ? RAFT_NOMEM : 0;
}

/* libraft's snapshot (synchronous, in its loop): the standby as records. */
static int
fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster_fsm *f = rf->data;
    struct entry_builder b = {0};
    struct raft_buffer *v = raft_malloc(sizeof *v);
    if (!v)
        return RAFT_NOMEM;
    pthread_mutex_lock(&f->lock);
    int rc = broker_snapshot_write(f->standby, entry_emit, &b);
    if (rc == 0) /* an empty state is an entry of no records */
        rc = entry_seal(&b);
    if (rc == 0) {
        f->stats.snapshots++;
        f->stats.snapshot_bytes = b.len;
    }
    pthread_mutex_unlock(&f->lock);
    if (rc < 0) {
        log_error("cluster: writing a snapshot failed: %s", rc == -ENOMEM ? "out of memory" : "error");
        entry_reset(&b);
        raft_free(v);
        return RAFT_NOMEM;
    }
    v->base = b.buf;
    v->len = b.len;
    *bufs = v;
    *n_bufs = 1;
    return 0;
}

/* Version 2: libraft leaves the buffers to us once the snapshot is stored. */
static int
fsm_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)rf;
    for (unsigned i = 0; i < *n_bufs; i++)
        raft_free((*bufs)[i].base);
    raft_free(*bufs);
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

static int
fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
    struct cluster_fsm *f = rf->data;
    if (entry_check(buf->base, buf->len) < 0) {
        log_error("cluster: a snapshot of %zu bytes is malformed; not restored", buf->len);
        return RAFT_MALFORMED;
    }
    struct broker *fresh = broker_new_standby(&f->cfg);
    if (!fresh)
        return RAFT_NOMEM;
    if (entry_each(buf->base, buf->len, broker_replay_apply, fresh) < 0) {
        broker_free(fresh);
        return RAFT_NOMEM;
    }
    pthread_mutex_lock(&f->lock);
    struct broker *old = f->standby;
    f->standby = fresh;
    f->stats.restores++;
    f->stats.snapshot_bytes = buf->len;
    f->stats.diverged = false;
    pthread_mutex_unlock(&f->lock);
    broker_free(old);
    /* On success the state machine owns the snapshot's bytes. */
    raft_free(buf->base);
    return 0;
}

struct cluster_fsm *
cluster_fsm_new(const struct broker_config *cfg)
{
    struct cluster_fsm *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->cfg = *cfg;
    f->standby = broker_new_standby(cfg);
    if (!f->standby) {
        free(f);
        return NULL;
    }
    pthread_mutex_init(&f->lock, NULL);
    f->raft.version = 2;
    f->raft.data = f;
    f->raft.apply = fsm_apply;
    f->raft.snapshot = fsm_snapshot;
    f->raft.snapshot_finalize = fsm_snapshot_finalize;
    f->raft.restore = fsm_restore;
    return f;
}

void
cluster_fsm_free(struct cluster_fsm *f)
{
    if (!f)
        return;
    broker_free(f->standby);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

struct raft_fsm *
cluster_fsm_raft(struct cluster_fsm *f)
{
    return &f->raft;
}

void
cluster_fsm_stats(struct cluster_fsm *f, struct cluster_fsm_stats *out)
{
    pthread_mutex_lock(&f->lock);
    *out = f->stats;
    pthread_mutex_unlock(&f->lock);
}

int
cluster_fsm_digest(struct cluster_fsm *f, char hex[BROKER_DIGEST_HEX])
{
    pthread_mutex_lock(&f->lock);
    int rc = broker_state_digest(f->standby, hex);
    pthread_mutex_unlock(&f->lock);
    return rc;
}

struct broker *
cluster_fsm_promote(struct cluster_fsm *f, const struct broker_config *cfg, struct ctx *root)
{
    struct broker *b = broker_new(cfg, root);
    if (!b)
        return NULL;
    /* The copy goes record by record straight into the new state (no
     * buffer of the whole snapshot): the standby's records are exactly
     * what rebuilds it. */
    pthread_mutex_lock(&f->lock);
    int rc = broker_snapshot_write(f->standby, broker_replay_apply, b);
    pthread_mutex_unlock(&f->lock);
    if (rc < 0) {
        log_error("cluster: copying the committed state for the new leader failed (%d)", rc);
        broker_free(b);
        return NULL;
    }
    return b;
}
