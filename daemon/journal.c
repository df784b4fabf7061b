/* The journal: lock file, segment list, replay with torn-tail cut and
 * repair, the writer goroutine with group commit (its system calls run on an
 * I/O thread so an fsync never holds a runtime worker), and compaction. */
#include "chanq_config.h"

#include "daemon/journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/chan.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/select.h"
#include "core/timer.h"
#include "daemon/log.h"
#include "daemon/segment.h"

#define DEFAULT_SEGMENT_BYTES (64ull << 20)
#define DEFAULT_COMPACT_BYTES (64ull << 20)
#define DEFAULT_INTERVAL_MS 100
#define COMPACT_WRITE_CHUNK (1u << 20) /* compaction writes in pieces of ~1 MiB */
#define TMP_SUFFIX ".tmp"

/* A thread that runs one blocking call at a time for a goroutine, which
 * parks meanwhile: fsync takes ~0.5 ms and would otherwise stall one of the
 * runtime's few worker threads (the runtime has no syscall hand-off). */
struct iothread {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int (*fn)(void *arg); /* the pending call, or NULL */
    void *arg;
    bool stop;         /* set by iothread_stop */
    bool started;      /* tid is valid */
    struct chan *done; /* int results, cap 1: the caller parks on it */
};

/* The records gathered between two writes. Appenders that wait hold a
 * reference; the writer closes `done` once the batch is settled. */
struct batch {
    uint8_t *buf;      /* framed records, written with one writev */
    size_t len, cap;   /* bytes used / allocated */
    uint32_t nowait;   /* records nobody waits for (counted if lost) */
    int rc;            /* 0 or the write/fsync error; read after done closes */
    struct chan *done; /* closed when settled */
    int refs;          /* atomic: the journal's + one per waiter */
};

/* One segment file on disk. */
struct seginfo {
    uint64_t seq;   /* from the file name */
    uint64_t bytes; /* its size */
};

struct journal {
    char *dir;                /* owned copy */
    struct journal_opts opts; /* with defaults filled in */
    struct journal_io io;     /* resolved seam: never NULL fields */
    int lock_fd;              /* dir/LOCK, flock'ed while j lives */

    /* mu guards the fields up to `stats`: appenders, the writer, its I/O
     * thread and the compactor all touch them, briefly. */
    pthread_mutex_t mu;
    struct batch *cur;         /* the batch appends go to */
    bool started;              /* journal_start succeeded */
    bool closing;              /* journal_close began: appends refused */
    bool writer_done;          /* the writer goroutine is about to return */
    int fatal;                 /* sticky error: the file's tail is unknown */
    struct chan *roll_req;     /* a compactor waits for a roll: closed when done */
    int roll_rc;               /* its result */
    struct seginfo *segs;      /* sorted by seq; the last one is current */
    size_t nsegs, segcap;
    uint64_t bytes;            /* sum of segs[].bytes */
    bool compacting;           /* a journal_compact_batch runs */
    int compactors;            /* compaction goroutines spawned, not yet ended */
    uint64_t last_compact_out; /* size the last compaction left (policy) */
    journal_keep_batch_fn *auto_keep; /* journal_set_compactor */
    void *auto_arg;

    /* Writer state: only the writer goroutine and its I/O thread. */
    struct chan *kick;      /* cap 1: "a batch has records" */
    struct iothread iot;    /* the writer's I/O thread */
    int fd;                 /* current segment, -1 before start */
    uint64_t seq;           /* its sequence number */
    uint64_t seg_size;      /* its size */
    bool dirty;             /* interval: written since the last fsync */
    int64_t next_sync_ms;   /* interval: when to fsync next */
    int last_rc;            /* the last write/fsync error, for journal_close */

    /* Replay. */
    bool replayed;
    uint64_t replay_count;
    uint64_t next_seq; /* above every sequence number seen */

    struct journal_stats stats; /* counters, updated with __atomic */
};

static const uint64_t fsync_bounds_us[JOURNAL_FSYNC_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, UINT64_MAX,
};

#define STAT_ADD(j, field, n) __atomic_add_fetch(&(j)->stats.field, (n), __ATOMIC_RELAXED)
#define STAT_SET(j, field, v) __atomic_store_n(&(j)->stats.field, (v), __ATOMIC_RELAXED)

static ssize_t
real_writev(void *arg, int fd, const struct iovec *iov, int iovcnt)
{
    (void)arg;
    ssize_t n;
    do
        n = writev(fd, iov, iovcnt);
    while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

static int
real_fsync(void *arg, int fd)
{
    (void)arg;
    int rc;
    do
        rc = fdatasync(fd);
    while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

static int64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sleeps ~1 ms: parks on a goroutine, blocks elsewhere. */
static void
nap(void)
{
    if (go_on_goroutine()) {
        go_sleep(1, NULL);
    } else {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the I/O thread ---- */

static void *
iothread_main(void *arg)
{
    struct iothread *t = arg;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (!t->fn && !t->stop)
            pthread_cond_wait(&t->cv, &t->mu);
        if (!t->fn)
            break;
        int (*fn)(void *) = t->fn;
        void *fa = t->arg;
        pthread_mutex_unlock(&t->mu);
        int rc = fn(fa);
        pthread_mutex_lock(&t->mu);
        t->fn = NULL;
        chan_try_send(t->done, &rc);
        /* The caller is runnable now: the deadlock check may count again. */
        sched_external_unref();
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static int
iothread_start(struct iothread *t)
{
    memset(t, 0, sizeof(*t));
    if (!(t->done = chan_new(sizeof(int), 1)))
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
    int rc = pthread_create(&t->tid, NULL, iothread_main, t);
    if (rc != 0) {
        chan_unref(t->done);
        return -rc;
    }
    t->started = true;
    return 0;
}

/* Runs fn(arg) on t and parks until it returns; its result. Off a goroutine
 * (or with no thread) the call runs right here. One caller at a time. */
static int
iothread_call(struct iothread *t, int (*fn)(void *), void *arg)
{
    int rc = 0;
    if (!t->started || !go_on_goroutine())
        return fn(arg);
    sched_external_ref();
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->arg = arg;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    chan_recv(t->done, &rc, NULL);
    return rc;
}

static void
iothread_stop(struct iothread *t)
{
    if (!t->started)
        return;
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->tid, NULL);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    chan_unref(t->done);
    t->started = false;
}

/* ---- file helpers (run on I/O threads or the main thread) ---- */

static int
write_all(struct journal *j, int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        struct iovec iov = {(void *)p, len};
        ssize_t n = j->io.writev(j->io.arg, fd, &iov, 1);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
timed_fsync(struct journal *j, int fd)
{
    int64_t t0 = mono_us();
    int rc = j->io.fsync(j->io.arg, fd);
    uint64_t us = (uint64_t)(mono_us() - t0);
    STAT_SET(j, last_fsync_us, us);
    STAT_ADD(j, fsync_count, 1);
    STAT_ADD(j, fsync_sum_us, us);
    for (int i = 0; i < JOURNAL_FSYNC_BUCKETS; i++)
        if (us <= fsync_bounds_us[i])
            STAT_ADD(j, fsync_bucket[i], 1);
    if (rc < 0)
        STAT_ADD(j, fsync_errors, 1);
    return rc;
}

static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static void
seg_path(const struct journal *j, uint64_t seq, char *buf, size_t size)
{
    if (segment_path(buf, size, j->dir, seq) < 0)
        buf[0] = '\0';
}

/* Adds a segment to the list (kept sorted). Caller holds mu. */
static int
segs_add(struct journal *j, uint64_t seq, uint64_t bytes)
{
    if (j->nsegs == j->segcap) {
        size_t cap = j->segcap ? j->segcap * 2 : 16;
        struct seginfo *s = realloc(j->segs, cap * sizeof(*s));
        if (!s)
            return -ENOMEM;
        j->segs = s;
        j->segcap = cap;
    }
    size_t i = j->nsegs;
    while (i > 0 && j->segs[i - 1].seq > seq) {
        j->segs[i] = j->segs[i - 1];
        i--;
    }
    j->segs[i] = (struct seginfo){seq, bytes};
    j->nsegs++;
    j->bytes += bytes;
    return 0;
}

/* Removes segs[i] from the list. Caller holds mu. */
static void
segs_remove(struct journal *j, size_t i)
{
    j->bytes -= j->segs[i].bytes;
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof(*j->segs));
    j->nsegs--;
}

/* Creates segment `seq` with a header, synced (file and dir); the new fd in
 * *fdp. On failure nothing is left behind. */
static int
segment_create(struct journal *j, uint64_t seq, unsigned flags, const char *path, int *fdp)
{
    uint8_t hdr[SEGMENT_HEADER_SIZE];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    (void)seq;
    if (fd < 0)
        return -errno;
    segment_header(hdr, flags);
    int rc = write_all(j, fd, hdr, sizeof(hdr));
    if (rc == 0)
        rc = timed_fsync(j, fd);
    if (rc == 0)
        rc = fsync_dir(j->dir);
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
    seg_path(j, seq, path, sizeof(path));
    int rc = segment_create(j, seq, 0, path, &fd);
    if (rc < 0) {
        log_error("journal: cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    pthread_mutex_lock(&j->mu);
    rc = segs_add(j, seq, SEGMENT_HEADER_SIZE);
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
    j->next_seq = seq + 1;
    return 0;
}

/* ---- open, lock, list ---- */

static int
take_lock(struct journal *j, char *err, size_t errlen)
{
    char path[4096], pid[32];
    snprintf(path, sizeof(path), "%s/LOCK", j->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
            pid[n > 0 ? n : 0] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
            snprintf(err, errlen, "data dir %s is in use by another chanqd (pid %s holds %s)",
                     j->dir, pid[0] ? pid : "unknown", path);
        } else {
            snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        }
        close(fd);
        return -e;
    }
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("journal: cannot write our pid into %s: %s", path, strerror(errno));
    j->lock_fd = fd;
    return 0;
}

static int
list_segments(struct journal *j, char *err, size_t errlen)
{
    DIR *d = opendir(j->dir);
    struct dirent *de;
    int rc = 0;
    if (!d) {
        snprintf(err, errlen, "cannot read data dir %s: %s", j->dir, strerror(errno));
        return -errno;
    }
    while ((de = readdir(d))) {
        uint64_t seq;
        char name[SEGMENT_NAME_LEN + 1], path[4096];
        size_t len = strlen(de->d_name);
        if (len == SEGMENT_NAME_LEN + strlen(TMP_SUFFIX) &&
            strcmp(de->d_name + SEGMENT_NAME_LEN, TMP_SUFFIX) == 0) {
            memcpy(name, de->d_name, SEGMENT_NAME_LEN);
            name[SEGMENT_NAME_LEN] = '\0';
            if (segment_name_parse(name, &seq)) {
                /* An unfinished compaction: the old segments are intact. */
                snprintf(path, sizeof(path), "%s/%s", j->dir, de->d_name);
                log_info("journal: removing unfinished compaction %s", path);
                unlink(path);
            }
            continue;
        }
        if (!segment_name_parse(de->d_name, &seq))
            continue;
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", j->dir, de->d_name);
        if (stat(path, &st) != 0)
            continue;
        if ((rc = segs_add(j, seq, (uint64_t)st.st_size)) < 0) {
            snprintf(err, errlen, "out of memory listing %s", j->dir);
            break;
        }
        if (seq >= j->next_seq)
            j->next_seq = seq + 1;
    }
    closedir(d);
    return rc;
}

struct journal *
journal_open(const char *dir, enum config_fsync fsync, bool repair, char *err, size_t errlen)
{
    struct journal_opts o = {.fsync = fsync, .repair = repair};
    return journal_open_opts(dir, &o, err, errlen);
}

struct journal *
journal_open_opts(const char *dir, const struct journal_opts *opts, char *err, size_t errlen)
{
    struct journal *j = calloc(1, sizeof(*j));
    if (!j || !(j->dir = strdup(dir))) {
        snprintf(err, errlen, "out of memory");
        free(j);
        return NULL;
    }
    j->opts = *opts;
    if (!j->opts.segment_bytes)
        j->opts.segment_bytes = DEFAULT_SEGMENT_BYTES;
    if (!j->opts.compact_bytes)
        j->opts.compact_bytes = DEFAULT_COMPACT_BYTES;
    if (j->opts.interval_ms <= 0)
        j->opts.interval_ms = DEFAULT_INTERVAL_MS;
    j->io.writev = opts->io && opts->io->writev ? opts->io->writev : real_writev;
    j->io.fsync = opts->io && opts->io->fsync ? opts->io->fsync : real_fsync;
    j->io.arg = opts->io ? opts->io->arg : NULL;
    j->fd = -1;
    j->lock_fd = -1;
    j->next_seq = 1;
    pthread_mutex_init(&j->mu, NULL);
    for (int i = 0; i < JOURNAL_FSYNC_BUCKETS; i++)
        j->stats.fsync_bucket_le_us[i] = fsync_bounds_us[i];

    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create data dir %s: %s", dir, strerror(errno));
        goto out_free;
    }
    if (take_lock(j, err, errlen) < 0)
        goto out_free;
    if (list_segments(j, err, errlen) < 0)
        goto out_unlock;
    return j;

out_unlock:
    close(j->lock_fd);
out_free:
    pthread_mutex_destroy(&j->mu);
    free(j->segs);
    free(j->dir);
    free(j);
    return NULL;
}

/* ---- replay ---- */

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
    seg_path(j, j->segs[i].seq, path, sizeof(path));
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
        seg_path(j, j->segs[j->nsegs - 1].seq, path, sizeof(path));
        if (unlink(path) != 0)
            log_warn("journal: cannot remove %s: %s", path, strerror(errno));
        segs_remove(j, j->nsegs - 1);
    }
}

/* Cuts segment i at off (deleting it when no whole header remains) and drops
 * the later ones. */
static int
cut_at(struct journal *j, size_t i, uint64_t off, char *err, size_t errlen)
{
    char path[4096];
    int rc = 0;
    seg_path(j, j->segs[i].seq, path, sizeof(path));
    drop_segments_after(j, i);
    if (off < SEGMENT_HEADER_SIZE) {
        if (unlink(path) != 0)
            rc = -errno;
        else
            segs_remove(j, i);
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
        rc = fsync_dir(j->dir);
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
    seg_path(j, j->segs[i].seq, path, sizeof(path));

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
        seg_path(j, j->segs[i].seq, path, sizeof(path));
        if (segment_reader_open(&r, path, err, sizeof(err)) < 0)
            continue;
        bool compacted = r.header_ok && (r.flags & SEGMENT_COMPACTED);
        segment_reader_close(&r);
        if (!compacted)
            continue;
        while (i > 0) {
            seg_path(j, j->segs[0].seq, path, sizeof(path));
            log_info("journal: removing %s (superseded by a compaction)", path);
            unlink(path);
            segs_remove(j, 0);
            i--;
        }
        fsync_dir(j->dir);
        return;
    }
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
    seg_path(j, j->segs[i].seq, path, sizeof(path));
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
        segment_reader_close(&r);
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
        seg_path(j, j->segs[i].seq, path, sizeof(path));
        if (unlink(path) == 0)
            segs_remove(j, i);
    }
    j->replayed = true;
    return 0;
}

uint64_t
journal_replayed(const struct journal *j)
{
    return j->replay_count;
}

/* ---- batches ---- */

static struct batch *
batch_new(void)
{
    struct batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    if (!(b->done = chan_new(0, 0))) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    return b;
}

static void
batch_unref(struct batch *b)
{
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    chan_unref(b->done);
    free(b->buf);
    free(b);
}

/* Frames rec into the current batch. Caller holds mu. */
static int
batch_add(struct batch *b, const void *rec, size_t len)
{
    size_t need = b->len + SEGMENT_FRAME_SIZE + len;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(b->buf, cap);
        if (!p)
            return -ENOMEM;
        b->buf = p;
        b->cap = cap;
    }
    b->len += segment_frame(b->buf + b->len, rec, len);
    return 0;
}

/* Adds a record; with `wait` returns a reference to its batch in *out. */
static int
append_locked(struct journal *j, const void *rec, size_t len, bool wait, struct batch **out)
{
    if (len == 0 || len > SEGMENT_MAX_RECORD)
        return -EMSGSIZE;
    pthread_mutex_lock(&j->mu);
    int rc = j->closing || !j->started ? -ESHUTDOWN : j->fatal;
    struct batch *b = j->cur;
    bool was_empty = b && b->len == 0;
    if (rc == 0)
        rc = batch_add(b, rec, len);
    if (rc == 0) {
        if (wait) {
            __atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
            *out = b;
        } else {
            b->nowait++;
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (rc < 0)
        return rc;
    STAT_ADD(j, appends, 1);
    if (was_empty)
        chan_try_send(j->kick, NULL);
    return 0;
}

int
journal_append(struct journal *j, const void *rec, size_t len, struct ctx *ctx)
{
    struct batch *b = NULL;
    int rc = append_locked(j, rec, len, true, &b);
    if (rc < 0)
        return rc;
    rc = chan_recv(b->done, NULL, ctx);
    if (rc == -EPIPE)
        rc = __atomic_load_n(&b->rc, __ATOMIC_ACQUIRE);
    batch_unref(b);
    return rc;
}

int
journal_append_nowait(struct journal *j, const void *rec, size_t len)
{
    return append_locked(j, rec, len, false, NULL);
}

/* ---- the writer: runs on its I/O thread ---- */

/* Cuts the current segment back to off after a failed write or fsync, so
 * that the failed batch can never be replayed. If that fails too, the tail
 * is unknown and the journal refuses appends from now on. */
static void
undo_tail(struct journal *j, uint64_t off, int cause)
{
    int rc = ftruncate(j->fd, (off_t)off) != 0 ? -errno : 0;
    if (rc == 0)
        rc = timed_fsync(j, j->fd);
    if (rc == 0)
        return;
    log_error("journal: cannot cut segment %016" PRIx64 ".log back to %" PRIu64
              " after a failed write (%s): %s; refusing further writes",
              j->seq, off, strerror(-cause), strerror(-rc));
    pthread_mutex_lock(&j->mu);
    j->fatal = cause;
    pthread_mutex_unlock(&j->mu);
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
    int rc = write_all(j, j->fd, w->b->buf, w->b->len);
    if (rc < 0) {
        STAT_ADD(j, write_errors, 1);
    } else if (j->opts.fsync == CONFIG_FSYNC_ALWAYS) {
        rc = timed_fsync(j, j->fd);
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
    int rc = timed_fsync(j, j->fd);
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
    int rc = timed_fsync(j, j->fd);
    if (rc == 0)
        rc = open_next_segment(j);
    if (rc == 0)
        j->dirty = false;
    return rc;
}

/* ---- the writer goroutine ---- */

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
    STAT_ADD(j, batches, 1);
    if (rc < 0) {
        j->last_rc = rc;
        STAT_ADD(j, lost_nowait, b->nowait);
        log_error("journal: writing a batch of %zu bytes to segment %016" PRIx64 ".log failed: "
                  "%s; its requests fail",
                  b->len, j->seq, strerror(-rc));
    }
    __atomic_store_n(&b->rc, rc, __ATOMIC_RELEASE);
    chan_close(b->done);
    batch_unref(b);
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
        j->last_rc = rc;
        log_error("journal: fsync of segment %016" PRIx64 ".log failed: %s", j->seq,
                  strerror(-rc));
    }
}

static void
do_roll(struct journal *j, struct chan *req)
{
    int rc = iothread_call(&j->iot, io_roll, j);
    if (rc < 0)
        log_warn("journal: cannot roll to a new segment: %s", strerror(-rc));
    if (req) {
        pthread_mutex_lock(&j->mu);
        j->roll_rc = rc;
        pthread_mutex_unlock(&j->mu);
        chan_close(req);
    }
    if (rc == 0 && j->auto_keep)
        journal_maybe_compact(j, j->auto_keep, j->auto_arg);
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
        while (!spare && !(spare = batch_new()))
            nap();

        pthread_mutex_lock(&j->mu);
        struct batch *b = NULL;
        if (j->cur->len > 0) {
            b = j->cur;
            j->cur = spare;
            spare = NULL;
        }
        struct chan *roll = j->roll_req;
        j->roll_req = NULL;
        closing = j->closing;
        pthread_mutex_unlock(&j->mu);

        if (b)
            write_batch(j, b);
        maybe_sync(j, false);
        if (roll || j->seg_size >= j->opts.segment_bytes)
            do_roll(j, roll);
        if (!closing || b || roll)
            continue;
        pthread_mutex_lock(&j->mu);
        bool empty = j->cur->len == 0 && !j->roll_req;
        pthread_mutex_unlock(&j->mu);
        if (empty)
            break;
    }
    maybe_sync(j, true);
    if (spare)
        batch_unref(spare);
    pthread_mutex_lock(&j->mu);
    j->writer_done = true;
    pthread_mutex_unlock(&j->mu);
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
    if (!(j->kick = chan_new(0, 1)) || !(j->cur = batch_new())) {
        rc = -ENOMEM;
        goto out_free;
    }
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
    return 0;

out_close:
    close(j->fd);
    j->fd = -1;
out_free:
    snprintf(err, errlen, "cannot start the journal in %s: %s", j->dir, strerror(-rc));
    if (j->cur)
        batch_unref(j->cur);
    j->cur = NULL;
    if (j->kick)
        chan_unref(j->kick);
    j->kick = NULL;
    return rc;
}

/* ---- compaction ---- */

/* One compaction: its output file, write buffer and I/O thread. */
struct compaction {
    struct journal *j;
    struct iothread iot;         /* its own: a big fsync must not delay the writer */
    journal_keep_batch_fn *keep; /* the broker's liveness test */
    void *arg;
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
    return write_all(c->j, c->fd, hdr, sizeof(hdr));
}

static int
io_c_write(void *arg)
{
    struct compaction *c = arg;
    int rc = write_all(c->j, c->fd, c->buf, c->len);
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
        rc = fsync_dir(c->j->dir);
    return rc;
}

static int
io_c_delete(void *arg)
{
    struct compaction *c = arg;
    char path[4096];
    for (size_t i = 0; i + 1 < c->nolds; i++) {
        seg_path(c->j, c->olds[i].seq, path, sizeof(path));
        if (unlink(path) != 0)
            log_warn("journal: cannot remove %s: %s", path, strerror(errno));
    }
    return fsync_dir(c->j->dir);
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

/* Asks keep about n records and frames the kept ones into c->buf. */
static int
compact_group(struct compaction *c, const struct journal_rec *recs, size_t n, bool *keep)
{
    memset(keep, 0, n * sizeof(*keep));
    c->keep(c->arg, recs, n, keep);
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        size_t need = c->len + SEGMENT_FRAME_SIZE + recs[i].len;
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
        c->len += segment_frame(c->buf + c->len, recs[i].data, recs[i].len);
    }
    return c->len >= COMPACT_WRITE_CHUNK ? iothread_call(&c->iot, io_c_write, c) : 0;
}

/* Streams one old segment's records through keep. */
static int
compact_segment(struct compaction *c, const struct seginfo *s, struct journal_rec *recs,
                bool *keep)
{
    char path[4096], err[256];
    struct segment_reader r;
    size_t n = 0;
    enum segment_status st;
    seg_path(c->j, s->seq, path, sizeof(path));
    int rc = segment_reader_open(&r, path, err, sizeof(err));
    if (rc < 0) {
        log_error("journal: compaction: %s", err);
        return rc;
    }
    for (;;) {
        st = segment_reader_next(&r, &recs[n].data, &recs[n].len);
        if (st == SEGMENT_RECORD && ++n < JOURNAL_KEEP_BATCH)
            continue;
        if (n > 0 && (rc = compact_group(c, recs, n, keep)) < 0)
            break;
        n = 0;
        if (st != SEGMENT_RECORD)
            break;
    }
    if (rc == 0 && st != SEGMENT_END) {
        log_error("journal: compaction: %s at offset %zu: %s", path, r.offset,
                  segment_status_name(st));
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
                segs_remove(j, i);
                break;
            }
    segs_add(j, c->olds[c->nolds - 1].seq, c->out_bytes); /* fits: entries were removed */
    j->last_compact_out = c->out_bytes;
    pthread_mutex_unlock(&j->mu);
}

static int
compact_run(struct compaction *c)
{
    struct journal_rec *recs = malloc(JOURNAL_KEEP_BATCH * sizeof(*recs));
    bool *keep = malloc(JOURNAL_KEEP_BATCH * sizeof(*keep));
    int rc = recs && keep ? iothread_call(&c->iot, io_c_create, c) : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < c->nolds; i++)
        rc = compact_segment(c, &c->olds[i], recs, keep);
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
    free(recs);
    free(keep);
    return rc;
}

int
journal_compact_batch(struct journal *j, journal_keep_batch_fn *keep, void *arg)
{
    struct compaction c = {.j = j, .keep = keep, .arg = arg, .fd = -1};
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
    seg_path(j, c.olds[c.nolds - 1].seq, c.final, sizeof(c.final));
    snprintf(c.tmp, sizeof(c.tmp), "%s%s", c.final, TMP_SUFFIX);
    if ((rc = iothread_start(&c.iot)) < 0)
        goto out;
    int64_t t0 = timer_now_ms();
    rc = compact_run(&c);
    iothread_stop(&c.iot);
    if (rc < 0) {
        log_error("journal: compaction failed: %s (old segments kept)", strerror(-rc));
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

/* Adapts a per-record keep function to the batch interface. */
struct keep_one {
    journal_keep_fn *fn;
    void *arg;
};

static void
keep_each(void *arg, const struct journal_rec *recs, size_t n, bool *keep)
{
    struct keep_one *k = arg;
    for (size_t i = 0; i < n; i++)
        keep[i] = k->fn(k->arg, recs[i].data, recs[i].len);
}

int
journal_compact(struct journal *j, journal_keep_fn *keep, void *arg)
{
    struct keep_one k = {keep, arg};
    return journal_compact_batch(j, keep_each, &k);
}

/* A compaction started by journal_maybe_compact. */
struct compact_job {
    struct journal *j;
    journal_keep_batch_fn *keep;
    void *arg;
};

static void
compact_main(void *arg)
{
    struct compact_job *cj = arg;
    struct journal *j = cj->j;
    journal_compact_batch(j, cj->keep, cj->arg);
    free(cj);
    pthread_mutex_lock(&j->mu);
    j->compactors--;
    pthread_mutex_unlock(&j->mu);
}

int
journal_maybe_compact(struct journal *j, journal_keep_batch_fn *keep, void *arg)
{
    pthread_mutex_lock(&j->mu);
    bool due = j->started && !j->closing && !j->compacting && j->compactors == 0 &&
               j->bytes > j->opts.compact_bytes && j->bytes >= 2 * j->last_compact_out;
    if (due)
        j->compactors++;
    pthread_mutex_unlock(&j->mu);
    if (!due)
        return 0;
    struct compact_job *cj = malloc(sizeof(*cj));
    if (cj) {
        *cj = (struct compact_job){j, keep, arg};
        if (go(compact_main, cj) == 0)
            return 1;
        free(cj);
    }
    pthread_mutex_lock(&j->mu);
    j->compactors--;
    pthread_mutex_unlock(&j->mu);
    return -ENOMEM;
}

void
journal_set_compactor(struct journal *j, journal_keep_batch_fn *keep, void *arg)
{
    j->auto_keep = keep;
    j->auto_arg = arg;
}

uint64_t
journal_bytes(const struct journal *j)
{
    struct journal *m = (struct journal *)j;
    pthread_mutex_lock(&m->mu);
    uint64_t n = j->bytes;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void
journal_stats(const struct journal *j, struct journal_stats *out)
{
    struct journal *m = (struct journal *)j;
    const uint64_t *src = (const uint64_t *)&j->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    pthread_mutex_lock(&m->mu);
    out->bytes = j->bytes;
    out->segments = j->nsegs;
    pthread_mutex_unlock(&m->mu);
}

int
journal_close(struct journal *j)
{
    if (!j)
        return 0;
    pthread_mutex_lock(&j->mu);
    j->closing = true;
    pthread_mutex_unlock(&j->mu);
    for (;;) {
        pthread_mutex_lock(&j->mu);
        bool idle = !j->compacting && j->compactors == 0;
        pthread_mutex_unlock(&j->mu);
        if (idle)
            break;
        nap();
    }
    if (j->started) {
        chan_try_send(j->kick, NULL);
        for (;;) {
            pthread_mutex_lock(&j->mu);
            bool done = j->writer_done;
            pthread_mutex_unlock(&j->mu);
            if (done)
                break;
            nap();
        }
        iothread_stop(&j->iot);
        batch_unref(j->cur);
        chan_unref(j->kick);
    }
    int rc = j->last_rc;
    if (j->fd >= 0)
        close(j->fd);
    close(j->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&j->mu);
    free(j->segs);
    free(j->dir);
    free(j);
    return rc;
}
