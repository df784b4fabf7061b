/* Replay: reads the segments in order, drops superseded and empty ones, cuts
 * a torn tail, refuses (or with --repair, truncates) corruption. */
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
            log_warn_kv(LOG_FIELDS(LOG_STR("path", path), LOG_STR("error", strerror(errno))),
                        "journal: cannot remove %s: %s", path, strerror(errno));
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

/* The damage in one segment file: every stretch of bytes that holds no
 * record that checks, found by one walk that resyncs past each. */
struct damage {
    uint64_t first_off;        /* where the first bad stretch starts */
    enum segment_status first; /* what was wrong there */
    uint64_t stretches;        /* bad stretches */
    uint64_t bad_bytes;        /* bytes in them */
    uint64_t kept_after;       /* records that check after the first stretch */
};

static int
survey(const char *path, struct damage *d, char *err, size_t errlen)
{
    struct segment_reader r;
    const void *rec;
    size_t len;
    bool bad_seen = false;
    memset(d, 0, sizeof *d);
    int rc = segment_reader_open(&r, path, err, errlen);
    if (rc < 0)
        return rc;
    for (;;) {
        enum segment_status st = segment_reader_next(&r, &rec, &len);
        if (st == SEGMENT_RECORD) {
            d->kept_after += bad_seen;
            continue;
        }
        if (st == SEGMENT_END)
            break;
        size_t start = r.offset;
        if (!bad_seen)
            *d = (struct damage){.first_off = start, .first = st};
        bad_seen = true;
        d->stretches++;
        if (!segment_reader_resync(&r)) {
            d->bad_bytes += r.size - start;
            break;
        }
        d->bad_bytes += r.offset - start;
    }
    segment_reader_close(&r);
    return 0;
}

/* Rewrites segment i with every record that checks (in order) and keeps
 * the damaged file beside it as NAME.damaged: a temp file, fsync, a hard
 * link of the old file, rename, dir fsync. */
static int
rewrite_without_damage(struct journal *j, size_t i, const char *path, char *err, size_t errlen)
{
    char tmp[4200], keep[4200];
    struct segment_reader r;
    const void *rec;
    size_t len;
    int rc = segment_reader_open(&r, path, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(tmp, sizeof tmp, "%s%s", path, TMP_SUFFIX);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    uint8_t hdr[SEGMENT_HEADER_SIZE];
    segment_header(hdr, r.header_ok ? r.flags : 0);
    rc = fd < 0 ? -errno : journal_write_all(j, fd, hdr, sizeof hdr);
    uint64_t out = SEGMENT_HEADER_SIZE;
    for (;;) {
        enum segment_status st = segment_reader_next(&r, &rec, &len);
        if (rc < 0 || st == SEGMENT_END)
            break;
        if (st == SEGMENT_RECORD) {
            /* The frame sits right before the record in the mapped file. */
            rc = journal_write_all(j, fd, (const uint8_t *)rec - SEGMENT_FRAME_SIZE,
                                   SEGMENT_FRAME_SIZE + len);
            out += SEGMENT_FRAME_SIZE + len;
        } else if (!segment_reader_resync(&r)) {
            break;
        }
    }
    segment_reader_close(&r);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (fd >= 0)
        close(fd);
    for (int n = 0; rc == 0; n++) {
        snprintf(keep, sizeof keep, n ? "%s.damaged.%d" : "%s.damaged", path, n);
        if (link(path, keep) == 0)
            break;
        if (errno != EEXIST || n > 1000)
            rc = -errno;
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0)
        rc = journal_fsync_dir(j->dir);
    if (rc < 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot rewrite %s without its damage: %s", path, strerror(-rc));
        return rc;
    }
    log_warn_kv(LOG_FIELDS(LOG_STR("path", path)),
                "journal: repair: rewrote %s with every record that checks; the damaged file is "
                "kept as %s",
                path, keep);
    j->bytes = j->bytes - j->segs[i].bytes + out;
    j->segs[i].bytes = out;
    return 0;
}

/* A bad frame (or header) in segment i. A torn tail when no record that
 * checks follows it, in this segment or a later one: cut it. Otherwise it
 * is damage: refuse to start, saying exactly what --repair would drop; with
 * --repair, go on (the caller replays every record that checks and then
 * rewrites the file without the damage). Returns 0 with *torn set when it
 * cut, 0 to go on repairing, or a negative errno. */
static int
handle_bad(struct journal *j, size_t i, const char *path, bool *torn, char *err,
           size_t errlen)
{
    struct damage d;
    int rc = survey(path, &d, err, errlen);
    if (rc < 0)
        return rc;
    uint64_t later = 0;
    for (size_t k = i + 1; k < j->nsegs; k++)
        later += count_file(j, k);
    *torn = d.kept_after == 0 && later == 0;
    if (*torn) {
        log_warn_kv(LOG_FIELDS(LOG_STR("path", path)),
                    "journal: %s: torn tail at offset %" PRIu64 " (%s), dropped %" PRIu64 " bytes",
                    path, d.first_off, segment_status_name(d.first),
                    j->segs[i].bytes - d.first_off);
        return cut_at(j, i, d.first_off, err, errlen);
    }
    if (!j->opts.repair) {
        snprintf(err, errlen,
                 "%s at offset %" PRIu64 ": %s; %" PRIu64 " records that check follow it (%" PRIu64
                 " in later segments). Run chanqd --repair to drop the %" PRIu64
                 " damaged bytes (%" PRIu64 " stretch%s) and keep every record that checks; "
                 "the damaged file is kept as %s.damaged",
                 path, d.first_off, segment_status_name(d.first), d.kept_after + later, later,
                 d.bad_bytes, d.stretches, d.stretches == 1 ? "" : "es", path);
        return -EBADMSG;
    }
    log_warn_kv(LOG_FIELDS(LOG_STR("path", path)),
                "journal: repair: %s: %s at offset %" PRIu64 "; dropping %" PRIu64
                " damaged bytes in %" PRIu64 " stretch%s, keeping the %" PRIu64
                " records that check after it",
                path, segment_status_name(d.first), d.first_off, d.bad_bytes, d.stretches,
                d.stretches == 1 ? "" : "es", d.kept_after);
    return 0;
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
    bool repairing = false;
    journal_seg_path(j, j->segs[i].seq, path, sizeof(path));
    int rc = segment_reader_open(&r, path, err, errlen);
    if (rc < 0)
        return rc;
    for (;;) {
        enum segment_status st = segment_reader_next(&r, &rec, &len);
        if (st == SEGMENT_END)
            break;
        if (st != SEGMENT_RECORD) {
            if (!repairing && (rc = handle_bad(j, i, path, stop, err, errlen)) < 0)
                goto out;
            if (*stop)
                goto out;
            repairing = true;
            if (!segment_reader_resync(&r))
                break;
            continue;
        }
        size_t at = r.offset - SEGMENT_FRAME_SIZE - len;
        j->replay_count++;
        if (apply && (rc = apply(arg, rec, len)) < 0) {
            snprintf(err, errlen, "%s at offset %zu: record rejected by replay: %s", path, at,
                     strerror(-rc));
            goto out;
        }
    }
    bool trim = r.zero_tail && !repairing;
    uint64_t end = r.offset;
    segment_reader_close(&r);
    if (trim)
        trim_zero_tail(j, i, end);
    return repairing ? rewrite_without_damage(j, i, path, err, errlen) : 0;
out:
    segment_reader_close(&r);
    return rc;
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
