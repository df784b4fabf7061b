/* Compaction as a snapshot: roll, replay the closed segments into a fresh
 * state of the snapshotter's, write that state's records into one
 * COMPACTED segment (temp file, fsync, rename, dir fsync), delete the old
 * ones; and the policy hook journal_maybe_compact. */
#include "chanq_config.h"

#include "daemon/journal/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/go.h"
#include "core/timer.h"
#include "daemon/journal/journal-internal.h"
#include "daemon/log.h"
#include "daemon/journal/segment.h"

#define COMPACT_WRITE_CHUNK (1u << 20) /* compaction writes in pieces of ~1 MiB */

/* One compaction: its output file, write buffer and I/O thread. */
struct compaction {
    struct journal *j;
    struct iothread iot;         /* its own: a big fsync must not delay the writer */
    void *snapshot;              /* the snapshotter's, built from the old records */
    struct seginfo *olds;        /* the segments being rewritten, in order */
    size_t nolds;
    char final[4096];            /* output: the newest old segment's name */
    char tmp[4096 + 8];          /* output while written: final + ".tmp" */
    int fd;                      /* the temp file */
    uint8_t *buf;                /* kept records framed, not yet written */
    size_t len, cap;
    uint64_t out_bytes;          /* written to the temp file */
    uint64_t in_bytes;           /* size of the old segments */
};

static int
io_c_create(void *arg)
{
    struct compaction *c = arg;
    uint8_t hdr[SEGMENT_HEADER_SIZE];
    c->fd = open(c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (c->fd < 0)
        return -errno;
    segment_header(hdr, SEGMENT_COMPACTED);
    c->out_bytes = SEGMENT_HEADER_SIZE;
    return journal_write_all(c->j, c->fd, hdr, sizeof(hdr));
}

static int
io_c_write(void *arg)
{
    struct compaction *c = arg;
    int rc = journal_write_all(c->j, c->fd, c->buf, c->len);
    c->out_bytes += c->len;
    c->len = 0;
    return rc;
}

/* Makes the output durable and puts it in place of the newest old segment:
 * from the rename on, replay sees the compacted segment (and deletes the
 * older ones it supersedes if we crash before io_c_delete). */
static int
io_c_finish(void *arg)
{
    struct compaction *c = arg;
    int rc = c->j->io.fsync(c->j->io.arg, c->fd);
    close(c->fd);
    c->fd = -1;
    if (rc == 0 && rename(c->tmp, c->final) != 0)
        rc = -errno;
    if (rc == 0)
        rc = journal_fsync_dir(c->j->dir);
    return rc;
}

static int
io_c_delete(void *arg)
{
    struct compaction *c = arg;
    char path[4096];
    for (size_t i = 0; i + 1 < c->nolds; i++) {
        journal_seg_path(c->j, c->olds[i].seq, path, sizeof(path));
        if (unlink(path) != 0)
            log_warn_kv(LOG_FIELDS(LOG_STR("path", path), LOG_STR("error", strerror(errno))),
                        "journal: cannot remove %s: %s", path, strerror(errno));
    }
    return journal_fsync_dir(c->j->dir);
}

static int
io_c_abort(void *arg)
{
    struct compaction *c = arg;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    unlink(c->tmp);
    return 0;
}

/* journal_emit_fn: frames one snapshot record into c->buf, writing the
 * buffer out past COMPACT_WRITE_CHUNK. */
static int
compact_emit(void *arg, const void *rec, size_t len)
{
    struct compaction *c = arg;
    if (len == 0 || len > SEGMENT_MAX_RECORD)
        return -EMSGSIZE;
    size_t need = c->len + SEGMENT_FRAME_SIZE + len;
    if (need > c->cap) {
        size_t cap = c->cap ? c->cap : COMPACT_WRITE_CHUNK;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(c->buf, cap);
        if (!p)
            return -ENOMEM;
        c->buf = p;
        c->cap = cap;
    }
    c->len += segment_frame(c->buf + c->len, rec, len);
    return c->len >= COMPACT_WRITE_CHUNK ? iothread_call(&c->iot, io_c_write, c) : 0;
}

#define COMPACT_YIELD_EVERY 4096 /* records applied between two yields */

/* Streams one old segment's records into the snapshot state. The work is
 * CPU on a runtime thread: it yields now and then so that requests keep
 * being served. */
static int
compact_segment(struct compaction *c, const struct seginfo *s)
{
    char path[4096], err[256];
    struct segment_reader r;
    enum segment_status st;
    const void *rec;
    size_t len, n = 0;
    journal_seg_path(c->j, s->seq, path, sizeof(path));
    int rc = segment_reader_open(&r, path, err, sizeof(err));
    if (rc < 0) {
        log_error("journal: compaction: %s", err);
        return rc;
    }
    while ((st = segment_reader_next(&r, &rec, &len)) == SEGMENT_RECORD) {
        if ((rc = c->j->snap->apply(c->snapshot, rec, len)) < 0)
            break;
        if (++n % COMPACT_YIELD_EVERY == 0 && go_on_goroutine())
            go_yield();
    }
    if (rc == 0 && st != SEGMENT_END) {
        log_error_kv(LOG_FIELDS(LOG_STR("path", path)), "journal: compaction: %s at offset %zu: %s",
                     path, r.offset, segment_status_name(st));
        rc = -EBADMSG;
    }
    segment_reader_close(&r);
    return rc;
}

/* Has the writer roll to a fresh segment; parks until done. */
static int
request_roll(struct journal *j)
{
    struct chan *done = chan_new(0, 0);
    if (!done)
        return -ENOMEM;
    pthread_mutex_lock(&j->mu);
    j->roll_req = done;
    pthread_mutex_unlock(&j->mu);
    chan_try_send(j->kick, NULL);
    chan_recv(done, NULL, NULL);
    chan_unref(done);
    pthread_mutex_lock(&j->mu);
    int rc = j->roll_rc;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* Replaces the old segments by the output in the list. */
static void
compact_commit(struct compaction *c)
{
    struct journal *j = c->j;
    pthread_mutex_lock(&j->mu);
    for (size_t k = 0; k < c->nolds; k++)
        for (size_t i = 0; i < j->nsegs; i++)
            if (j->segs[i].seq == c->olds[k].seq) {
                journal_segs_remove(j, i);
                break;
            }
    journal_segs_add(j, c->olds[c->nolds - 1].seq, c->out_bytes); /* fits: entries were removed */
    j->last_compact_out = c->out_bytes;
    pthread_mutex_unlock(&j->mu);
}

static int
compact_run(struct compaction *c)
{
    const struct journal_snapshotter *snap = c->j->snap;
    c->snapshot = snap->begin(c->j->snap_arg);
    int rc = c->snapshot ? iothread_call(&c->iot, io_c_create, c) : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < c->nolds; i++)
        rc = compact_segment(c, &c->olds[i]);
    if (rc == 0)
        rc = snap->write(c->snapshot, compact_emit, c);
    if (c->snapshot)
        snap->end(c->snapshot);
    if (rc == 0 && c->len > 0)
        rc = iothread_call(&c->iot, io_c_write, c);
    if (rc == 0)
        rc = iothread_call(&c->iot, io_c_finish, c);
    if (rc == 0) {
        compact_commit(c);
        iothread_call(&c->iot, io_c_delete, c);
    } else {
        iothread_call(&c->iot, io_c_abort, c);
    }
    return rc;
}

int
journal_compact(struct journal *j)
{
    struct compaction c = {.j = j, .fd = -1};
    if (!j->snap)
        return -ENOSYS;
    pthread_mutex_lock(&j->mu);
    int rc = j->closing || !j->started ? -ESHUTDOWN : j->compacting ? -EBUSY : 0;
    if (rc == 0)
        j->compacting = true;
    pthread_mutex_unlock(&j->mu);
    if (rc < 0)
        return rc;
    if ((rc = request_roll(j)) < 0)
        goto out;

    pthread_mutex_lock(&j->mu);
    c.nolds = j->nsegs - 1; /* all but the writer's current segment */
    c.olds = c.nolds ? malloc(c.nolds * sizeof(*c.olds)) : NULL;
    if (c.olds)
        memcpy(c.olds, j->segs, c.nolds * sizeof(*c.olds));
    pthread_mutex_unlock(&j->mu);
    if (c.nolds == 0)
        goto out;
    if (!c.olds) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.nolds; i++)
        c.in_bytes += c.olds[i].bytes;
    journal_seg_path(j, c.olds[c.nolds - 1].seq, c.final, sizeof(c.final));
    snprintf(c.tmp, sizeof(c.tmp), "%s%s", c.final, TMP_SUFFIX);
    if ((rc = iothread_start(&c.iot)) < 0)
        goto out;
    int64_t t0 = timer_now_ms();
    rc = compact_run(&c);
    iothread_stop(&c.iot);
    if (rc < 0) {
        log_error_kv(LOG_FIELDS(LOG_STR("error", strerror(-rc))),
                     "journal: compaction failed: %s (old segments kept)", strerror(-rc));
        goto out;
    }
    STAT_ADD(j, compactions, 1);
    STAT_SET(j, compact_before, c.in_bytes);
    STAT_SET(j, compact_after, c.out_bytes);
    log_info("journal: compacted %zu segments, %" PRIu64 " -> %" PRIu64 " bytes in %" PRId64
             " ms",
             c.nolds, c.in_bytes, c.out_bytes, timer_now_ms() - t0);
out:
    free(c.olds);
    free(c.buf);
    pthread_mutex_lock(&j->mu);
    j->compacting = false;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* A compaction started by journal_maybe_compact. */
static void
compact_main(void *arg)
{
    struct journal *j = arg;
    journal_compact(j);
    pthread_mutex_lock(&j->mu);
    j->compactors--;
    pthread_mutex_unlock(&j->mu);
}

int
journal_maybe_compact(struct journal *j)
{
    pthread_mutex_lock(&j->mu);
    bool due = j->snap && j->started && !j->closing && !j->compacting && j->compactors == 0 &&
               j->bytes > j->opts.compact_bytes && j->bytes >= 2 * j->last_compact_out;
    if (due)
        j->compactors++;
    pthread_mutex_unlock(&j->mu);
    if (!due)
        return 0;
    if (go(compact_main, j) == 0)
        return 1;
    pthread_mutex_lock(&j->mu);
    j->compactors--;
    pthread_mutex_unlock(&j->mu);
    return -ENOMEM;
}

/* The test seam of journal_opts.chaos_compact_ms: compacts at random
 * moments, whatever the policy says, until the journal closes (which waits
 * for it through j->compactors). */
static void
chaos_main(void *arg)
{
    struct journal *j = arg;
    unsigned seed = (unsigned)timer_now_ms();
    for (;;) {
        go_sleep(1 + rand_r(&seed) % j->opts.chaos_compact_ms, NULL);
        pthread_mutex_lock(&j->mu);
        bool closing = j->closing;
        pthread_mutex_unlock(&j->mu);
        if (closing)
            break;
        journal_compact(j);
    }
    pthread_mutex_lock(&j->mu);
    j->compactors--;
    pthread_mutex_unlock(&j->mu);
}

int
journal_start_chaos(struct journal *j)
{
    if (j->opts.chaos_compact_ms <= 0)
        return 0;
    pthread_mutex_lock(&j->mu);
    j->compactors++;
    pthread_mutex_unlock(&j->mu);
    int rc = go(chaos_main, j);
    if (rc < 0) {
        pthread_mutex_lock(&j->mu);
        j->compactors--;
        pthread_mutex_unlock(&j->mu);
    }
    return rc;
}
