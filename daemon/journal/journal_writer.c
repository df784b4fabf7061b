/* The writer goroutine: takes the current batch, has its I/O thread write
 * (and in `always` mode fsync) it, settles its waiters; interval fsyncs,
 * segment rolls and cutting a failed batch back off the file. */
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
#include "core/sched.h"
#include "core/select.h"
#include "core/timer.h"
#include "daemon/journal/journal-internal.h"
#include "daemon/log.h"
#include "daemon/journal/segment.h"

/* Creates segment `seq` with a header, synced (file and dir); the new fd in
 * *fdp, positioned after the header (records are written at the file
 * offset, which the writer owns). On failure nothing is left behind.
 *
 * With --fsync always the segment's space is allocated ahead of the
 * records (fallocate), PREALLOC_CHUNK at a time: an fdatasync after writing
 * into allocated blocks has no file size or block map to commit, and took
 * 115-175 µs against 200-255 µs after an append on the development
 * machine's ext4. Replay reads the zeros after the last record as the end
 * (a record's length is never 0) and gives the space back. Allocating a
 * chunk, not the whole segment, bounds those zeros: a filesystem that
 * cannot tell unwritten space from data (no SEEK_HOLE) makes replay read
 * them at ~35 ms per MiB. Where fallocate is not supported the file just
 * grows as before. */
#define PREALLOC_CHUNK (16ull << 20)

/* With --fsync always, allocates the next chunk of fd's segment once `need`
 * bytes would pass *alloc, the bytes allocated so far (never past the
 * segment size). A failure only costs the speed-up. */
static void
preallocate(const struct journal *j, int fd, uint64_t *alloc, uint64_t need)
{
    if (j->opts.fsync != CONFIG_FSYNC_ALWAYS || need <= *alloc ||
        *alloc >= j->opts.segment_bytes)
        return;
    uint64_t len = j->opts.segment_bytes - *alloc;
    if (len > PREALLOC_CHUNK)
        len = PREALLOC_CHUNK;
    if (fallocate(fd, 0, (off_t)*alloc, (off_t)len) != 0) {
        log_debug("journal: no preallocation: %s", strerror(errno));
        *alloc = j->opts.segment_bytes; /* do not try again for this segment */
        return;
    }
    *alloc += len;
}

static int
segment_create(struct journal *j, uint64_t seq, unsigned flags, const char *path, int *fdp,
               uint64_t *allocp)
{
    uint8_t hdr[SEGMENT_HEADER_SIZE];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    (void)seq;
    if (fd < 0)
        return -errno;
    segment_header(hdr, flags);
    int rc = journal_write_all(j, fd, hdr, sizeof(hdr));
    *allocp = 0;
    if (rc == 0)
        preallocate(j, fd, allocp, SEGMENT_HEADER_SIZE);
    if (rc == 0)
        rc = journal_timed_fsync(j, fd);
    if (rc == 0)
        rc = journal_fsync_dir(j->dir);
    if (rc < 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    *fdp = fd;
    return 0;
}

/* Opens segment j->next_seq as the current one. */
static int
open_next_segment(struct journal *j)
{
    char path[4096];
    int fd = -1;
    uint64_t seq = j->next_seq;
    journal_seg_path(j, seq, path, sizeof(path));
    uint64_t alloc;
    int rc = segment_create(j, seq, 0, path, &fd, &alloc);
    if (rc < 0) {
        log_error_kv(LOG_FIELDS(LOG_STR("path", path), LOG_STR("error", strerror(-rc))),
                     "journal: cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    pthread_mutex_lock(&j->mu);
    rc = journal_segs_add(j, seq, SEGMENT_HEADER_SIZE);
    pthread_mutex_unlock(&j->mu);
    if (rc < 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->seq = seq;
    j->seg_size = SEGMENT_HEADER_SIZE;
    j->seg_alloc = alloc;
    j->next_seq = seq + 1;
    return 0;
}
/* Cuts the current segment back to off after a failed write or fsync, so
 * that the failed batch can never be replayed. If that fails too, the tail
 * is unknown and the journal refuses appends from now on. */
static void
undo_tail(struct journal *j, uint64_t off, int cause)
{
    int rc = ftruncate(j->fd, (off_t)off) != 0 ? -errno : 0;
    j->seg_alloc = off; /* the cut gave the allocation past off back */
    if (rc == 0 && lseek(j->fd, (off_t)off, SEEK_SET) < 0)
        rc = -errno;
    if (rc == 0)
        rc = journal_timed_fsync(j, j->fd);
    if (rc == 0)
        return;
    log_error("journal: cannot cut segment %016" PRIx64 ".log back to %" PRIu64
              " after a failed write (%s): %s; refusing further writes",
              j->seq, off, strerror(-cause), strerror(-rc));
    pthread_mutex_lock(&j->mu);
    j->fatal = cause;
    pthread_mutex_unlock(&j->mu);
    STAT_SET(j, failed_errno, (uint64_t)-cause);
    if (j->opts.on_failure)
        j->opts.on_failure(j->opts.failure_arg, cause);
}

/* Passed to the I/O thread: the batch and its journal. */
struct write_req {
    struct journal *j;
    struct batch *b;
};

static int
io_write(void *arg)
{
    struct write_req *w = arg;
    struct journal *j = w->j;
    uint64_t off = j->seg_size;
    preallocate(j, j->fd, &j->seg_alloc, off + w->b->len);
    int rc = journal_write_all(j, j->fd, w->b->buf, w->b->len);
    if (rc < 0) {
        STAT_ADD(j, write_errors, 1);
    } else if (j->opts.fsync == CONFIG_FSYNC_ALWAYS) {
        rc = journal_timed_fsync(j, j->fd);
    }
    if (rc < 0) {
        undo_tail(j, off, rc);
        return rc;
    }
    j->seg_size += w->b->len;
    j->dirty = true;
    if (j->opts.fsync == CONFIG_FSYNC_ALWAYS)
        j->dirty = false;
    pthread_mutex_lock(&j->mu);
    j->segs[j->nsegs - 1].bytes = j->seg_size;
    j->bytes += w->b->len;
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static int
io_sync(void *arg)
{
    struct journal *j = arg;
    int rc = journal_timed_fsync(j, j->fd);
    if (rc == 0)
        j->dirty = false;
    return rc;
}

/* Syncs the current segment and starts the next one. On failure the writer
 * stays on the current segment. */
static int
io_roll(void *arg)
{
    struct journal *j = arg;
    int rc = journal_timed_fsync(j, j->fd);
    if (rc == 0)
        rc = open_next_segment(j);
    if (rc == 0)
        j->dirty = false;
    return rc;
}

/* journal_frames_each reads segment framing: u32 length, u32 crc, payload
 * (the crc was computed by the appender and is not checked again). */
int
journal_frames_each(const void *frames, size_t len,
                    int (*fn)(void *arg, const void *rec, size_t len), void *arg)
{
    const uint8_t *p = frames;
    size_t off = 0;
    while (off < len) {
        if (len - off < SEGMENT_FRAME_SIZE)
            return -EBADMSG;
        uint32_t n = (uint32_t)p[off] | (uint32_t)p[off + 1] << 8 | (uint32_t)p[off + 2] << 16 |
                     (uint32_t)p[off + 3] << 24;
        off += SEGMENT_FRAME_SIZE;
        if (n == 0 || n > len - off)
            return -EBADMSG;
        int rc = fn(arg, p + off, n);
        if (rc < 0)
            return rc;
        off += n;
    }
    return 0;
}

/* A batch's settlement, written to segment seq or (replica) replicated:
 * its waiters see rc. */
static void
settle(struct journal *j, struct batch *b, int rc, bool replica, uint64_t seq)
{
    STAT_ADD(j, batches, 1);
    if (rc < 0) {
        __atomic_store_n(&j->last_rc, rc, __ATOMIC_RELAXED);
        STAT_ADD(j, lost_nowait, b->nowait);
        if (replica)
            log_error("journal: replicating a batch of %zu bytes failed: %s; its requests fail",
                      b->len, strerror(-rc));
        else
            log_error("journal: writing a batch of %zu bytes to segment %016" PRIx64 ".log "
                      "failed: %s; its requests fail",
                      b->len, seq, strerror(-rc));
    }
    __atomic_store_n(&b->rc, rc, __ATOMIC_RELEASE);
    chan_close(b->done);
}

/* journal_settled_fn: the replicator's answer, on any thread. Freeing the
 * in-flight slot is the last touch of j: journal_close waits for every
 * slot, then frees j. */
static void
replicated(void *token, int rc)
{
    struct batch *b = token;
    struct journal *j = b->owner;
    if (rc < 0)
        STAT_ADD(j, write_errors, 1);
    settle(j, b, rc, true, 0);
    chan_try_recv(j->inflight, NULL);
    journal_batch_unref(b);
    sched_external_unref();
}

/* Cluster mode: the batch (and the journal's reference on it) goes to the
 * replicator; its waiters are released when it settles. */
static void
replicate_batch(struct journal *j, struct batch *b)
{
    pthread_mutex_lock(&j->mu);
    int rc = j->fatal;
    pthread_mutex_unlock(&j->mu);
    if (rc == 0) {
        chan_send(j->inflight, NULL, NULL); /* parks while JOURNAL_MAX_INFLIGHT are out */
        b->owner = j;
        /* The answer comes from another thread: no deadlock meanwhile. */
        sched_external_ref();
        const struct journal_replicator *r = j->opts.replicator;
        rc = r->replicate(r->arg, b->buf, b->len, replicated, b);
        if (rc == 0)
            return;
        sched_external_unref();
        chan_try_recv(j->inflight, NULL);
    }
    STAT_ADD(j, write_errors, 1);
    settle(j, b, rc, true, 0);
    journal_batch_unref(b);
}

/* Cluster mode, closing: parks until every batch handed out has settled. */
static void
replicate_drain(struct journal *j)
{
    for (int i = 0; i < JOURNAL_MAX_INFLIGHT; i++)
        chan_send(j->inflight, NULL, NULL);
}

static void
write_batch(struct journal *j, struct batch *b)
{
    pthread_mutex_lock(&j->mu);
    int rc = j->fatal;
    pthread_mutex_unlock(&j->mu);
    if (rc == 0) {
        struct write_req w = {j, b};
        rc = iothread_call(&j->iot, io_write, &w);
    }
    settle(j, b, rc, false, j->seq);
    journal_batch_unref(b);
}

static void
maybe_sync(struct journal *j, bool force)
{
    if (!j->dirty)
        return;
    if (!force && (j->opts.fsync != CONFIG_FSYNC_INTERVAL || timer_now_ms() < j->next_sync_ms))
        return;
    int rc = iothread_call(&j->iot, io_sync, j);
    j->next_sync_ms = timer_now_ms() + j->opts.interval_ms;
    if (rc < 0) {
        __atomic_store_n(&j->last_rc, rc, __ATOMIC_RELAXED);
        log_error_kv(LOG_FIELDS(LOG_STR("error", strerror(-rc))),
                     "journal: fsync of segment %016" PRIx64 ".log failed: %s", j->seq,
                     strerror(-rc));
    }
}

static void
do_roll(struct journal *j, struct chan *req)
{
    int rc = iothread_call(&j->iot, io_roll, j);
    if (rc < 0)
        log_warn_kv(LOG_FIELDS(LOG_STR("error", strerror(-rc))),
                    "journal: cannot roll to a new segment: %s", strerror(-rc));
    if (req) {
        pthread_mutex_lock(&j->mu);
        j->roll_rc = rc;
        pthread_mutex_unlock(&j->mu);
        chan_close(req);
    }
    if (rc == 0 && j->snap)
        journal_maybe_compact(j);
}

static void
writer_main(void *arg)
{
    struct journal *j = arg;
    struct batch *spare = NULL;
    bool closing = false;
    for (;;) {
        int64_t timeout = -1;
        if (closing) {
            timeout = 0; /* drain without waiting for kicks */
        } else if (j->dirty && j->opts.fsync == CONFIG_FSYNC_INTERVAL) {
            timeout = j->next_sync_ms - timer_now_ms();
            if (timeout < 1)
                timeout = 1;
        }
        struct chan_case c = {j->kick, CHAN_RECV, NULL, false};
        chan_select(&c, 1, NULL, timeout);
        while (!spare && !(spare = journal_batch_new()))
            journal_nap();

        pthread_mutex_lock(&j->mu);
        struct batch *b = NULL;
        if (j->cur->len > 0) {
            b = j->cur;
            STAT_ADD(j, batch_wait_us, (uint64_t)(journal_mono_us() - b->first_us));
            j->cur = spare;
            spare = NULL;
        }
        struct chan *roll = j->roll_req;
        j->roll_req = NULL;
        closing = j->closing;
        pthread_mutex_unlock(&j->mu);

        if (b && j->opts.replicator)
            replicate_batch(j, b);
        else if (b)
            write_batch(j, b);
        maybe_sync(j, false);
        if (roll || (!j->opts.replicator && j->seg_size >= j->opts.segment_bytes))
            do_roll(j, roll);
        if (!closing || b || roll)
            continue;
        pthread_mutex_lock(&j->mu);
        bool empty = j->cur->len == 0 && !j->roll_req;
        pthread_mutex_unlock(&j->mu);
        if (empty)
            break;
    }
    if (j->opts.replicator)
        replicate_drain(j);
    maybe_sync(j, true);
    if (spare)
        journal_batch_unref(spare);
    pthread_mutex_lock(&j->mu);
    j->writer_done = true;
    pthread_mutex_unlock(&j->mu);
}

/* journal_start in cluster mode: no segment, no I/O thread, no chaos. */
static int
start_replicating(struct journal *j, char *err, size_t errlen)
{
    int rc = -ENOMEM;
    if ((j->inflight = chan_new(0, JOURNAL_MAX_INFLIGHT))) {
        j->started = true;
        if ((rc = go(writer_main, j)) == 0)
            return 0;
        j->started = false;
        chan_unref(j->inflight);
        j->inflight = NULL;
    }
    snprintf(err, errlen, "cannot start the journal in %s: %s", j->dir, strerror(-rc));
    journal_batch_unref(j->cur);
    j->cur = NULL;
    chan_unref(j->kick);
    j->kick = NULL;
    return rc;
}

int
journal_start(struct journal *j, char *err, size_t errlen)
{
    int rc;
    if (j->started) {
        snprintf(err, errlen, "journal already started");
        return -EALREADY;
    }
    if (!j->replayed && (rc = journal_replay(j, NULL, NULL, err, errlen)) < 0)
        return rc;
    if (!(j->kick = chan_new(0, 1)) || !(j->cur = journal_batch_new())) {
        rc = -ENOMEM;
        goto out_free;
    }
    if (j->opts.replicator)
        return start_replicating(j, err, errlen);
    if ((rc = open_next_segment(j)) < 0)
        goto out_free;
    if ((rc = iothread_start(&j->iot)) < 0)
        goto out_close;
    j->next_sync_ms = timer_now_ms() + j->opts.interval_ms;
    j->started = true;
    if ((rc = go(writer_main, j)) < 0) {
        j->started = false;
        iothread_stop(&j->iot);
        goto out_close;
    }
    if (journal_start_chaos(j) < 0)
        log_warn("journal: cannot start the chaos compactor");
    return 0;

out_close:
    close(j->fd);
    j->fd = -1;
out_free:
    snprintf(err, errlen, "cannot start the journal in %s: %s", j->dir, strerror(-rc));
    if (j->cur)
        journal_batch_unref(j->cur);
    j->cur = NULL;
    if (j->kick)
        chan_unref(j->kick);
    j->kick = NULL;
    return rc;
}
