/* Replay: reads the segments in order, drops superseded and empty ones, cuts
 * a torn tail, refuses (or with --repair, truncates) corruption. */
#include "chanq_config.h"

#include "daemon/journal.h"

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
#include "daemon/journal-internal.h"
#include "daemon/log.h"
#include "daemon/segment.h"

/* Counts the valid records from r's bad frame on (skipping bad ones). */
static uint64_t
count_after(struct segment_reader *r)
{
    uint64_t n = 0;
    const void *rec;
    size_t len;
    while (segment_reader_resync(r)) {
        enum segment_status st;
        while ((st = segment_reader_next(r, &rec, &len)) == SEGMENT_RECORD)
            n++;
        if (st == SEGMENT_END)
            break;
    }
    return n;
}

/* Valid records in segment file i (for the loss count). */
static uint64_t
count_file(struct journal *j, size_t i)
{
    char path[4096], err[256];
    struct segment_reader r;
    const void *rec;
    size_t len;
    uint64_t n = 0;
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
    if (segment_reader_open(&r, path, err, sizeof(err)) < 0)
        return 0;
    for (;;) {
        enum segment_status st = segment_reader_next(&r, &rec, &len);
        if (st == SEGMENT_RECORD) {
            n++;
            continue;
        }
        if (st != SEGMENT_END)
            n += count_after(&r);
        break;
    }
    segment_reader_close(&r);
    return n;
}

/* Deletes every segment after index i (files and list entries). */
static void
drop_segments_after(struct journal *j, size_t i)
{
    char path[4096];
    while (j->nsegs > i + 1) {
        journal_seg_path(j, j->segs[j->nsegs - 1].seq, path, sizeof(path));
        if (unlink(path) != 0)
            log_warn("journal: cannot remove %s: %s", path, strerror(errno));
        journal_segs_remove(j, j->nsegs - 1);
    }
}

/* Cuts segment i at off (deleting it when no whole header remains) and drops
 * the later ones. */
static int
cut_at(struct journal *j, size_t i, uint64_t off, char *err, size_t errlen)
{
    char path[4096];
    int rc = 0;
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
    drop_segments_after(j, i);
    if (off < SEGMENT_HEADER_SIZE) {
        if (unlink(path) != 0)
            rc = -errno;
        else
            journal_segs_remove(j, i);
    } else {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)off) != 0 || fsync(fd) != 0)
            rc = -errno;
        if (fd >= 0)
            close(fd);
        if (rc == 0) {
            j->bytes -= j->segs[i].bytes - off;
            j->segs[i].bytes = off;
        }
    }
    if (rc == 0)
        rc = journal_fsync_dir(j->dir);
    if (rc < 0)
        snprintf(err, errlen, "cannot cut %s at offset %" PRIu64 ": %s", path, off, strerror(-rc));
    return rc;
}

/* A bad frame in segment i: a torn tail when nothing valid follows it (cut
 * it), else corruption (refuse, or cut with repair). */
static int
handle_bad(struct journal *j, size_t i, struct segment_reader *r, enum segment_status st,
           char *err, size_t errlen)
{
    char path[4096];
    uint64_t off = r->header_ok ? r->offset : 0;
    uint64_t size = r->size;
    const char *why = r->header_ok ? segment_status_name(st) : "bad segment header";
    uint64_t later = count_after(r);
    segment_reader_close(r);
    for (size_t k = i + 1; k < j->nsegs; k++)
        later += count_file(j, k);
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));

    if (later == 0) {
        log_warn("journal: %s: torn tail at offset %" PRIu64 " (%s), dropped %" PRIu64 " bytes",
                 path, off, why, size - off);
        return cut_at(j, i, off, err, errlen);
    }
    if (!j->opts.repair) {
        snprintf(err, errlen,
                 "%s at offset %" PRIu64 ": %s (run chanqd --repair to truncate here; %" PRIu64
                 " later records would be lost)",
                 path, off, why, later);
        return -EBADMSG;
    }
    log_warn("journal: repair: %s truncated at offset %" PRIu64 " (%s): %" PRIu64
             " later records lost",
             path, off, why, later);
    return cut_at(j, i, off, err, errlen);
}

/* Deletes the segments a compacted one supersedes (a compaction that
 * crashed after its rename but before its deletes). */
static void
drop_superseded(struct journal *j)
{
    char path[4096], err[256];
    for (size_t i = j->nsegs; i-- > 0;) {
        struct segment_reader r;
        journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
        if (segment_reader_open(&r, path, err, sizeof(err)) < 0)
            continue;
        bool compacted = r.header_ok && (r.flags & SEGMENT_COMPACTED);
        segment_reader_close(&r);
        if (!compacted)
            continue;
        while (i > 0) {
            journal_seg_path(j, j->segs[0].seq, path, sizeof(path));
            log_info("journal: removing %s (superseded by a compaction)", path);
            unlink(path);
            journal_segs_remove(j, 0);
            i--;
        }
        journal_fsync_dir(j->dir);
        return;
    }
}

/* Segment i ends in space preallocated for records that never came: gives
 * it back (the file's size is then its records'). Failing is harmless:
 * the zeros read as the end again next time. */
static void
trim_zero_tail(struct journal *j, size_t i, uint64_t off)
{
    char path[4096];
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, (off_t)off) == 0) {
        j->bytes -= j->segs[i].bytes - off;
        j->segs[i].bytes = off;
    } else {
        log_warn("journal: cannot trim the preallocated tail of %s: %s", path, strerror(errno));
    }
    if (fd >= 0)
        close(fd);
}

/* Replays segment i; *stop is set when the log ended there (cut). */
static int
replay_segment(struct journal *j, size_t i, journal_apply_fn *apply, void *arg, bool *stop,
               char *err, size_t errlen)
{
    char path[4096];
    struct segment_reader r;
    const void *rec;
    size_t len;
    enum segment_status st;
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
    int rc = segment_reader_open(&r, path, err, errlen);
    if (rc < 0)
        return rc;
    while ((st = segment_reader_next(&r, &rec, &len)) == SEGMENT_RECORD) {
        size_t at = r.offset - SEGMENT_FRAME_SIZE - len;
        j->replay_count++;
        if (apply && (rc = apply(arg, rec, len)) < 0) {
            snprintf(err, errlen, "%s at offset %zu: record rejected by replay: %s", path, at,
                     strerror(-rc));
            segment_reader_close(&r);
            return rc;
        }
    }
    if (st == SEGMENT_END) {
        bool trim = r.zero_tail;
        uint64_t end = r.offset;
        segment_reader_close(&r);
        if (trim)
            trim_zero_tail(j, i, end);
        return 0;
    }
    *stop = true;
    return handle_bad(j, i, &r, st, err, errlen);
}

int
journal_replay(struct journal *j, journal_apply_fn *apply, void *arg, char *err, size_t errlen)
{
    char path[4096];
    int rc = 0;
    bool stop = false;
    if (j->replayed || j->started) {
        snprintf(err, errlen, "journal already replayed");
        return -EALREADY;
    }
    drop_superseded(j);
    for (size_t i = 0; i < j->nsegs && !stop; i++)
        if ((rc = replay_segment(j, i, apply, arg, &stop, err, errlen)) < 0)
            return rc;
    /* Segments that hold nothing (a restart's fresh segment never written)
     * are deleted, so restarts do not pile up files. */
    for (size_t i = j->nsegs; i-- > 0;) {
        if (j->segs[i].bytes > SEGMENT_HEADER_SIZE)
            continue;
        journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
        if (unlink(path) == 0)
            journal_segs_remove(j, i);
    }
    j->replayed = true;
    return 0;
}

uint64_t
journal_replayed(const struct journal *j)
{
    return j->replay_count;
}
