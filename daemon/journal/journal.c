/* The journal: open (data dir, lock file, segment list), appends into the
 * current batch, stats and close. The writer, replay and compaction live in
 * journal_writer.c, journal_replay.c and journal_compact.c. */
#include "chanq_config.h"

#include "daemon/journal/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
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
#include "core/timer.h"
#include "daemon/journal/journal-internal.h"
#include "daemon/log.h"
#include "daemon/journal/segment.h"

static const uint64_t fsync_bounds_us[JOURNAL_FSYNC_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, UINT64_MAX,
};

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

int64_t
journal_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sleeps ~1 ms: parks on a goroutine, blocks elsewhere. */
void
journal_nap(void)
{
    if (go_on_goroutine()) {
        go_sleep(1, NULL);
    } else {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
int
journal_write_all(struct journal *j, int fd, const void *buf, size_t len)
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

int
journal_timed_fsync(struct journal *j, int fd)
{
    int64_t t0 = journal_mono_us();
    int rc = j->io.fsync(j->io.arg, fd);
    uint64_t us = (uint64_t)(journal_mono_us() - t0);
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

int
journal_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

void
journal_seg_path(const struct journal *j, uint64_t seq, char *buf, size_t size)
{
    if (segment_path(buf, size, j->dir, seq) < 0)
        buf[0] = '\0';
}

/* Adds a segment to the list (kept sorted). Caller holds mu. */
int
journal_segs_add(struct journal *j, uint64_t seq, uint64_t bytes)
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
void
journal_segs_remove(struct journal *j, size_t i)
{
    j->bytes -= j->segs[i].bytes;
    memmove(&j->segs[i], &j->segs[i + 1], (j->nsegs - i - 1) * sizeof(*j->segs));
    j->nsegs--;
}
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
        if ((rc = journal_segs_add(j, seq, (uint64_t)st.st_size)) < 0) {
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
struct batch *
journal_batch_new(void)
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

void
journal_batch_unref(struct batch *b)
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
    if (rc == 0 && was_empty)
        b->first_us = journal_mono_us();
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
    struct journal_wait *w = NULL;
    int rc = journal_append_async(j, rec, len, &w);
    return rc < 0 ? rc : journal_wait_durable(w, ctx);
}

int
journal_append_nowait(struct journal *j, const void *rec, size_t len)
{
    return append_locked(j, rec, len, false, NULL);
}

/* A journal_wait is a batch seen from outside. */
int
journal_append_async(struct journal *j, const void *rec, size_t len, struct journal_wait **wait)
{
    struct batch *b = NULL;
    int rc = append_locked(j, rec, len, wait != NULL, &b);
    if (rc == 0 && wait)
        *wait = (struct journal_wait *)b;
    return rc;
}

int
journal_wait_durable(struct journal_wait *w, struct ctx *ctx)
{
    struct batch *b = (struct batch *)w;
    int rc = chan_recv(b->done, NULL, ctx);
    if (rc == -EPIPE)
        rc = __atomic_load_n(&b->rc, __ATOMIC_ACQUIRE);
    journal_batch_unref(b);
    return rc;
}

int
journal_wait_all(struct journal_wait *const *w, size_t n, struct ctx *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = journal_wait_durable(w[i], ctx);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

void
journal_wait_release(struct journal_wait *w)
{
    journal_batch_unref((struct batch *)w);
}

struct chan *
journal_wait_chan(struct journal_wait *w)
{
    return ((struct batch *)w)->done;
}

void
journal_set_snapshotter(struct journal *j, const struct journal_snapshotter *s, void *arg)
{
    j->snap = s;
    j->snap_arg = arg;
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
        journal_nap();
    }
    if (j->started) {
        chan_try_send(j->kick, NULL);
        for (;;) {
            pthread_mutex_lock(&j->mu);
            bool done = j->writer_done;
            pthread_mutex_unlock(&j->mu);
            if (done)
                break;
            journal_nap();
        }
        iothread_stop(&j->iot);
        journal_batch_unref(j->cur);
        chan_unref(j->kick);
    }
    int rc = j->last_rc;
    if (j->fd >= 0) {
        /* Give back the preallocated rest of the segment (fsync always);
         * if this fails the next replay trims it. */
        if (ftruncate(j->fd, (off_t)j->seg_size) != 0)
            log_warn("journal: cannot trim segment %016" PRIx64 ".log: %s", j->seq,
                     strerror(errno));
        close(j->fd);
    }
    close(j->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&j->mu);
    free(j->segs);
    free(j->dir);
    free(j);
    return rc;
}
