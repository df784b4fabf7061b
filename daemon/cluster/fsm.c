/* The raft_fsm over a standby broker (see fsm.h). An entry is checked in
 * full before its first record is applied, so a malformed entry changes
 * nothing on any node: libraft hands every node the same bytes, so they
 * all refuse it alike and stay equal.
 *
 * Snapshots are asynchronous (raft_fsm version 3): `snapshot`, on the
 * replica thread, only freezes the standby; `snapshot_async`, on libuv's
 * thread pool, writes it out; `snapshot_finalize`, back on the replica
 * thread once the snapshot is stored, thaws it. libraft goes on
 * replicating, committing and applying meanwhile: an entry applied while
 * the standby is frozen is kept (a copy of its bytes, in order) and
 * applied at the thaw. So the replica thread never stops for O(jobs). */
#include "chanq_config.h"

#include "daemon/cluster/fsm.h"

#include "daemon/cluster/entry.h"
#include "daemon/jrec.h"
#include "daemon/log.h"

#include <errno.h>
#include <pthread.h>
#include <raft.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a new leader waits for a snapshot in progress to finish before
 * it gives up serving (the copy would miss the entries held meanwhile). */
#define THAW_WAIT_S 30

/* An entry applied while the standby was frozen. */
struct held {
    struct held *next;
    size_t len;
    uint8_t bytes[];
};

struct cluster_fsm {
    struct raft_fsm raft;       /* what libraft calls; raft.data = this */
    struct broker_config cfg;   /* for the standbys made on restore */
    pthread_mutex_t lock;       /* guards standby (but see frozen), stats, held */
    pthread_cond_t thawed;      /* frozen went false */
    struct broker *standby;     /* the committed state */
    /* A snapshot is being written from the standby, off the lock: nobody
     * changes it meanwhile (entries wait in held). */
    bool frozen;
    struct held *held, **held_tail;
    struct raft_buffer *snap_bufs; /* snapshot_async's, until finalize */
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

/* Applies a checked entry to the standby. Lock held, not frozen. */
static int
apply_entry(struct cluster_fsm *f, const void *buf, size_t len)
{
    int rc = entry_each(buf, len, broker_replay_apply, f->standby);
    f->stats.entries++;
    f->stats.records += (uint64_t)entry_count(buf, len);
    if (rc < 0) {
        /* Only out of memory gets here (the records decoded): the standby
         * missed part of a batch. It is flagged, never silently kept. */
        f->stats.diverged = true;
        log_error("cluster: applying a committed entry failed (%s); this node's state diverged",
                  rc == -ENOMEM ? "out of memory" : "bad record");
    }
    return rc;
}

/* Keeps a copy of a checked entry for the thaw. Lock held, frozen. */
static int
hold_entry(struct cluster_fsm *f, const void *buf, size_t len)
{
    struct held *h = malloc(sizeof *h + len);
    if (!h) {
        f->stats.diverged = true;
        log_error("cluster: out of memory keeping a committed entry during a snapshot; this "
                  "node's state diverged");
        return -ENOMEM;
    }
    h->next = NULL;
    h->len = len;
    memcpy(h->bytes, buf, len);
    *f->held_tail = h;
    f->held_tail = &h->next;
    return 0;
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
    int rc = f->frozen ? hold_entry(f, buf->base, buf->len) : apply_entry(f, buf->base, buf->len);
    pthread_mutex_unlock(&f->lock);
    return rc < 0 ? RAFT_NOMEM : 0;
}

static int fsm_snapshot_async(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs);
static void thaw(struct cluster_fsm *f);

/* libraft's snapshot, on the replica thread: freezes the standby at the
 * last applied index. RAFT_BUSY (libraft tries again later) while a
 * snapshot is still being written. */
static int
fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster_fsm *f = rf->data;
    pthread_mutex_lock(&f->lock);
    bool busy = f->frozen;
    f->frozen = true;
    pthread_mutex_unlock(&f->lock);
    *bufs = NULL;
    *n_bufs = 0;
    if (busy)
        return RAFT_BUSY;
    if (rf->snapshot_async)
        return 0;
    /* Synchronous (cluster_fsm_sync_snapshots): written here; a failure
     * gets no finalize, so it thaws here. */
    int rc = fsm_snapshot_async(rf, bufs, n_bufs);
    if (rc != 0) {
        pthread_mutex_lock(&f->lock);
        thaw(f);
        pthread_mutex_unlock(&f->lock);
    }
    return rc;
}

/* On libuv's thread pool: the frozen standby as records, one entry. Only
 * readers touch the standby meanwhile (its own lock orders them). */
static int
fsm_snapshot_async(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster_fsm *f = rf->data;
    struct entry_builder b = {0};
    struct raft_buffer *v = raft_malloc(sizeof *v);
    if (!v)
        return RAFT_NOMEM;
    int rc = broker_snapshot_write(f->standby, entry_emit, &b);
    if (rc == 0) /* an empty state is an entry of no records */
        rc = entry_seal(&b);
    if (rc < 0) {
        log_error("cluster: writing a snapshot failed: %s", rc == -ENOMEM ? "out of memory" : "error");
        entry_reset(&b);
        raft_free(v);
        return RAFT_NOMEM;
    }
    v->base = b.buf;
    v->len = b.len;
    pthread_mutex_lock(&f->lock);
    f->snap_bufs = v;
    f->stats.snapshots++;
    f->stats.snapshot_bytes = b.len;
    pthread_mutex_unlock(&f->lock);
    *bufs = v;
    *n_bufs = 1;
    return 0;
}

static void
free_bufs(struct raft_buffer *v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        raft_free(v[i].base);
    raft_free(v);
}

/* Applies what was held, in order. Lock held. */
static void
thaw(struct cluster_fsm *f)
{
    f->frozen = false;
    for (struct held *h = f->held, *next; h; h = next) {
        next = h->next;
        apply_entry(f, h->bytes, h->len);
        free(h);
    }
    f->held = NULL;
    f->held_tail = &f->held;
    pthread_cond_broadcast(&f->thawed);
}

/* On the replica thread, after every `snapshot` that returned 0, whether
 * the snapshot was written and stored or not: the buffers are ours
 * (version 2 and up), and the standby takes the held entries. */
static int
fsm_snapshot_finalize(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cluster_fsm *f = rf->data;
    if (*bufs)
        free_bufs(*bufs, *n_bufs);
    *bufs = NULL;
    *n_bufs = 0;
    pthread_mutex_lock(&f->lock);
    f->snap_bufs = NULL;
    thaw(f);
    pthread_mutex_unlock(&f->lock);
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
    pthread_mutex_lock(&f->lock);
    bool frozen = f->frozen; /* libraft installs no snapshot while taking one */
    pthread_mutex_unlock(&f->lock);
    if (frozen)
        return RAFT_BUSY;
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
    pthread_cond_init(&f->thawed, NULL);
    f->held_tail = &f->held;
    f->raft.version = 3;
    f->raft.data = f;
    f->raft.apply = fsm_apply;
    f->raft.snapshot = fsm_snapshot;
    f->raft.snapshot_async = fsm_snapshot_async;
    f->raft.snapshot_finalize = fsm_snapshot_finalize;
    f->raft.restore = fsm_restore;
    return f;
}

void
cluster_fsm_free(struct cluster_fsm *f)
{
    if (!f)
        return;
    /* A snapshot libraft never finalized (closed meanwhile). */
    if (f->snap_bufs)
        free_bufs(f->snap_bufs, 1);
    for (struct held *h = f->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    broker_free(f->standby);
    pthread_cond_destroy(&f->thawed);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

struct raft_fsm *
cluster_fsm_raft(struct cluster_fsm *f)
{
    return &f->raft;
}

void
cluster_fsm_sync_snapshots(struct cluster_fsm *f)
{
    f->raft.version = 2;
    f->raft.snapshot_async = NULL;
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

int
cluster_fsm_promote_into(struct cluster_fsm *f, struct broker *b)
{
    /* The copy goes record by record straight into the new state (no
     * buffer of the whole snapshot): the standby's records are exactly
     * what rebuilds it. It must hold every committed entry: while a
     * snapshot is being written, some wait in held until the thaw. */
    pthread_mutex_lock(&f->lock);
    int rc = 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += THAW_WAIT_S;
    while (f->frozen && rc == 0)
        rc = pthread_cond_timedwait(&f->thawed, &f->lock, &until);
    if (rc != 0) {
        log_error("cluster: the committed state stayed frozen by a snapshot for %d s", THAW_WAIT_S);
        rc = -ETIMEDOUT;
    } else {
        rc = broker_snapshot_write(f->standby, broker_replay_apply, b);
    }
    pthread_mutex_unlock(&f->lock);
    if (rc < 0)
        log_error("cluster: copying the committed state for the new leader failed (%d)", rc);
    return rc < 0 ? -1 : 0;
}

struct broker *
cluster_fsm_promote(struct cluster_fsm *f, const struct broker_config *cfg, struct ctx *root)
{
    struct broker *b = broker_new(cfg, root);
    if (b && cluster_fsm_promote_into(f, b) < 0) {
        broker_free(b);
        b = NULL;
    }
    return b;
}
