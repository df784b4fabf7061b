/* journal_suite and segment tests: append/replay, group commit (fsyncs
 * counted through the journal_io seam), fsync modes, write errors, torn
 * tails, corruption and repair, the lock file, rolls and compaction. Also
 * the test_suites[] list of tests/daemon/check_journal. */
#include "chanq_config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"
#include "daemon/journal/journal.h"
#include "daemon/journal/segment.h"
#include "tests/check_main.h"

Suite *crc32c_suite(void);
Suite *jrec_suite(void);
Suite *journal_suite(void);

Suite *replay_prop_suite(void);
Suite *snapshot_prop_suite(void);
Suite *lifecycle_suite(void);

suite_fn *const test_suites[] = {crc32c_suite, jrec_suite, journal_suite, replay_prop_suite,
                                 snapshot_prop_suite, lifecycle_suite, NULL};

/* fixtures */

/* The journal_io seam: counts calls, injects failures, slows fsync down. */
struct fakeio {
    atomic_int writes;
    atomic_int fsyncs;
    atomic_int fail_write; /* negative errno returned by writev while set */
    atomic_int fail_fsync; /* negative errno returned by fsync while set */
    int fsync_us;          /* how long a (fake) fsync takes */
};

static ssize_t
fake_writev(void *arg, int fd, const struct iovec *iov, int iovcnt)
{
    struct fakeio *f = arg;
    atomic_fetch_add(&f->writes, 1);
    int e = atomic_load(&f->fail_write);
    if (e)
        return e;
    ssize_t n = writev(fd, iov, iovcnt);
    return n < 0 ? -errno : n;
}

static int
fake_fsync(void *arg, int fd)
{
    struct fakeio *f = arg;
    (void)fd;
    atomic_fetch_add(&f->fsyncs, 1);
    if (f->fsync_us)
        usleep((useconds_t)f->fsync_us);
    return atomic_load(&f->fail_fsync);
}

static char test_dir[256];

static void
make_dir(void)
{
    strcpy(test_dir, "/tmp/chanq-journal-XXXXXX");
    ck_assert_msg(mkdtemp(test_dir) != NULL, "mkdtemp");
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void
remove_dir(void)
{
    nftw(test_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Records: "rec-<n>-" padded to a length that varies with n, in a
 * buffer of size bytes (the bound is the caller's real one, so
 * _FORTIFY_SOURCE checks it). */
static size_t
make_record(char *buf, size_t size, int n)
{
    int len = snprintf(buf, size, "rec-%d-", n);
    size_t pad = (size_t)(n % 50);
    ck_assert_msg(len > 0 && (size_t)len + pad <= size, "record %d fits %zu bytes", n, size);
    memset(buf + len, 'x', pad);
    return (size_t)len + pad;
}

/* What a replay saw. */
struct seen {
    int n;
    int bad;        /* records not equal to make_record(expected) */
    int next;       /* the record number expected next */
    char last[128]; /* the last record, NUL-terminated */
};

static int
apply_in_order(void *arg, const void *rec, size_t len)
{
    struct seen *s = arg;
    char want[128];
    size_t wl = make_record(want, sizeof want, s->next);
    if (wl != len || memcmp(want, rec, len) != 0)
        s->bad++;
    s->next++;
    s->n++;
    memcpy(s->last, rec, len < 127 ? len : 127);
    s->last[len < 127 ? len : 127] = '\0';
    return 0;
}

/* Collects records into an array of strings (for compaction order). */
struct collect {
    int n;
    char recs[4096][64];
};

static int
apply_collect(void *arg, const void *rec, size_t len)
{
    struct collect *c = arg;
    if (c->n < 4096 && len < 64) {
        memcpy(c->recs[c->n], rec, len);
        c->recs[c->n][len] = '\0';
    }
    c->n++;
    return 0;
}

static struct journal *
open_dir(enum config_fsync mode, bool repair, struct fakeio *f, uint64_t segment_bytes)
{
    static struct journal_io io;
    char err[512];
    io = (struct journal_io){fake_writev, fake_fsync, f};
    struct journal_opts o = {.fsync = mode, .repair = repair, .segment_bytes = segment_bytes,
                             .io = f ? &io : NULL};
    struct journal *j = journal_open_opts(test_dir, &o, err, sizeof(err));
    ck_assert_msg(j != NULL, "journal_open: %s", err);
    return j;
}

static int
replay_dir(bool repair, journal_apply_fn *apply, void *arg, char *err, size_t errlen)
{
    struct journal *j = open_dir(CONFIG_FSYNC_ALWAYS, repair, NULL, 0);
    int rc = journal_replay(j, apply, arg, err, errlen);
    journal_close(j);
    return rc;
}

/* Runs body as the main goroutine on 2 workers. */
static void
run_main(go_fn *body, void *arg)
{
    ck_assert_msg(sched_run_main(body, arg, 2) == 0, "sched_run_main");
}

/* Starts j (after an empty-or-not replay that must succeed). */
static void
start(struct journal *j)
{
    char err[512];
    int rc = journal_start(j, err, sizeof(err));
    ck_assert_msg(rc == 0, "journal_start: %s", err);
}

/* Lists the segment files: count and the path of the last one. */
static int
list_segments(char *last, size_t size)
{
    DIR *d = opendir(test_dir);
    struct dirent *de;
    int n = 0;
    uint64_t best = 0, seq;
    while ((de = readdir(d)))
        if (segment_name_parse(de->d_name, &seq)) {
            n++;
            if (seq >= best) {
                best = seq;
                if (last)
                    snprintf(last, size, "%s/%s", test_dir, de->d_name);
            }
        }
    closedir(d);
    return n;
}

static off_t
file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Runs fn with stderr captured into out (the log lines). */
static void
capture_stderr(void (*fn)(void *), void *arg, char *out, size_t size)
{
    char path[] = "/tmp/chanq-journal-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, size - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

/* append and replay */

struct writer_args {
    struct journal *j;
    int from, count; /* append records from..from+count-1 */
    int failures;
    int first_rc;
};

static void
append_range(struct writer_args *a)
{
    char rec[128];
    for (int i = a->from; i < a->from + a->count; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        int rc = journal_append(a->j, rec, len, NULL);
        if (rc < 0) {
            if (!a->failures)
                a->first_rc = rc;
            a->failures++;
        }
    }
}

static void
body_append_1000(void *arg)
{
    struct writer_args *a = arg;
    start(a->j);
    append_range(a);
    ck_assert_msg(journal_close(a->j) == 0, "close without errors");
}

START_TEST(appended_records_replay_in_order)
{
    make_dir();
    struct writer_args a = {open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 0), 0, 1000, 0, 0};
    run_main(body_append_1000, &a);
    ck_assert_msg(a.failures == 0, "no append failed (%d)", a.failures);
    struct seen s = {0};
    char err[512];
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 1000 && s.bad == 0, "1000 records in order (%d, %d bad)", s.n, s.bad);
    remove_dir();
}
END_TEST

/* A crash leaves a preallocated segment: records, then space allocated and
 * never written. The reader must find the records' end without reading
 * that space (it costs ~35 ms per MiB as zeros), and the writer allocates
 * a chunk at a time so that, where the filesystem cannot tell, the zeros
 * stay few. */
struct prealloc_args {
    struct journal *j;
    off_t size_while_open;
};

static void
body_prealloc(void *arg)
{
    struct prealloc_args *p = arg;
    char last[512], rec[128];
    start(p->j);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(journal_append(p->j, rec, make_record(rec, sizeof rec, i), NULL), 0);
    list_segments(last, sizeof(last));
    p->size_while_open = file_size(last);
    ck_assert_msg(journal_close(p->j) == 0, "close");
}

START_TEST(a_preallocated_tail_is_allocated_in_chunks_and_never_read)
{
    char last[512], err[256], rec[128];
    make_dir();
    struct prealloc_args p = {open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 64u << 20), 0};
    run_main(body_prealloc, &p);
    ck_assert_msg(p.size_while_open <= (16 << 20),
                  "a 64 MiB segment was allocated whole (%lld bytes), not in 16 MiB chunks",
                  (long long)p.size_while_open);
    /* A crashed writer's segment: 10 records, then 64 MiB allocated. */
    list_segments(last, sizeof(last));
    off_t end = file_size(last);
    int fd = open(last, O_RDWR);
    ck_assert_msg(fd >= 0 && fallocate(fd, 0, 0, 64 << 20) == 0, "fallocate");
    close(fd);
    struct segment_reader r;
    ck_assert_int_eq(segment_reader_open(&r, last, err, sizeof err), 0);
    ck_assert_msg(r.data_limit < (size_t)end + 65536,
                  "the reader would scan %zu bytes of a segment whose records end at %lld",
                  r.data_limit, (long long)end);
    const void *got;
    size_t len;
    int n = 0;
    while (segment_reader_next(&r, &got, &len) == SEGMENT_RECORD) {
        rec[make_record(rec, sizeof rec, n)] = '\0';
        ck_assert_msg(len == strlen(rec) && memcmp(got, rec, len) == 0, "record %d", n);
        n++;
    }
    ck_assert_msg(n == 10 && r.zero_tail && r.offset == (size_t)end,
                  "10 records, then the allocated space read as the end (%d, %d, %zu)", n,
                  r.zero_tail, r.offset);
    segment_reader_close(&r);
    remove_dir();
}
END_TEST

/* group commit */

#define GC_WRITERS 64
#define GC_EACH 20

struct gc_args {
    struct journal *j;
    struct wg *wg;
    struct writer_args w[GC_WRITERS];
    struct journal_stats st; /* taken before the close */
};

/* Each writer's `j` is the journal; the wait group travels in gc_args. */
static struct gc_args *gc_current;

static void
gc_writer_main(void *arg)
{
    struct writer_args *w = arg;
    append_range(w);
    wg_done(gc_current->wg);
}

static void
body_group_commit(void *arg)
{
    struct gc_args *g = arg;
    gc_current = g;
    start(g->j);
    g->wg = wg_new();
    for (int i = 0; i < GC_WRITERS; i++) {
        /* Records are numbered by writer so each writer's order is checkable. */
        g->w[i] = (struct writer_args){g->j, i * GC_EACH, GC_EACH, 0, 0};
        wg_add(g->wg, 1);
        go(gc_writer_main, &g->w[i]);
    }
    wg_wait(g->wg, NULL);
    wg_free(g->wg);
    journal_stats(g->j, &g->st);
    ck_assert_msg(journal_close(g->j) == 0, "close");
}

static int
apply_count(void *arg, const void *rec, size_t len)
{
    (void)rec;
    (void)len;
    (*(int *)arg)++;
    return 0;
}

START_TEST(concurrent_appenders_share_fsyncs)
{
    static struct gc_args g;
#ifdef CHANQ_TSAN
    /* TSan slows the appenders ~10x: a disk as much slower keeps the ratio. */
    struct fakeio f = {.fsync_us = 20000};
#else
    struct fakeio f = {.fsync_us = 2000};
#endif
    make_dir();
    g.j = open_dir(CONFIG_FSYNC_ALWAYS, false, &f, 0);
    run_main(body_group_commit, &g);
    int appends = GC_WRITERS * GC_EACH, fsyncs = atomic_load(&f.fsyncs);
    int fails = 0;
    for (int i = 0; i < GC_WRITERS; i++)
        fails += g.w[i].failures;
    ck_assert_msg(fails == 0, "no append failed");
    fprintf(stderr,
            "group commit: %d appends by %d goroutines, %d fsyncs, %d writes, %llu us mean "
            "batch wait\n",
            appends, GC_WRITERS, fsyncs, atomic_load(&f.writes),
            (unsigned long long)(g.st.batch_wait_us / (g.st.batches ? g.st.batches : 1)));
    ck_assert_msg(fsyncs * 8 < appends, "far fewer fsyncs (%d) than appends (%d)", fsyncs,
                  appends);
    /* The stats tell the same story: every append counted, one batch per
     * fsync at most, and batches queued behind the 2 ms fsync in flight. */
    ck_assert_int_eq(g.st.appends, appends);
    ck_assert_msg(g.st.batches > 0 && g.st.batches <= (uint64_t)fsyncs,
                  "%llu batches for %d fsyncs", (unsigned long long)g.st.batches, fsyncs);
    ck_assert_msg(g.st.batch_wait_us >= 200 * g.st.batches,
                  "batches waited %llu us in all (%llu batches) behind 2 ms fsyncs",
                  (unsigned long long)g.st.batch_wait_us, (unsigned long long)g.st.batches);
    int n = 0;
    char err[512];
    ck_assert_msg(replay_dir(false, apply_count, &n, err, sizeof(err)) == 0, "replay: %s", err);
    ck_assert_msg(n == appends, "every record replays (%d of %d)", n, appends);
    remove_dir();
}
END_TEST

struct async_args {
    struct journal *j;
    int distinct; /* distinct handles among the 10 queued records */
    int rc;       /* first non-zero wait result */
};

static void
body_async(void *arg)
{
    struct async_args *a = arg;
    struct journal_wait *w[10];
    char rec[128];
    start(a->j);
    /* Queued back to back without parking: they land in one or two batches. */
    for (int i = 0; i < 10; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        ck_assert_msg(journal_append_async(a->j, rec, len, &w[i]) == 0, "async append");
        a->distinct += i == 0 || w[i] != w[i - 1];
    }
    size_t len = make_record(rec, sizeof rec, 10);
    ck_assert_msg(journal_append_async(a->j, rec, len, NULL) == 0, "async without a handle");
    journal_wait_release(w[9]);
    for (int i = 0; i < 9; i++) {
        int rc = journal_wait_durable(w[i], NULL);
        if (rc && !a->rc)
            a->rc = rc;
    }
    journal_close(a->j);
}

START_TEST(async_appends_share_a_handle_per_batch)
{
    make_dir();
    struct async_args a = {.j = open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 0)};
    run_main(body_async, &a);
    ck_assert_msg(a.rc == 0, "waits succeed (%d)", a.rc);
    ck_assert_msg(a.distinct <= 3, "records queued together share batches (%d handles)",
                  a.distinct);
    struct seen s = {0};
    char err[512];
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 11 && s.bad == 0, "11 records in order (%d)", s.n);
    remove_dir();
}
END_TEST

/* fsync modes */

struct mode_args {
    struct journal *j;
    struct fakeio *f;
    int fsyncs_after_appends; /* fsyncs counted right after the appends */
    int fsyncs_later;         /* ... and after waiting 3 intervals */
};

static void
body_modes(void *arg)
{
    struct mode_args *m = arg;
    struct writer_args w = {m->j, 0, 50, 0, 0};
    start(m->j);
    int base = atomic_load(&m->f->fsyncs); /* the new segment's header sync */
    append_range(&w);
    ck_assert_msg(w.failures == 0, "appends succeed");
    m->fsyncs_after_appends = atomic_load(&m->f->fsyncs) - base;
    go_sleep(350, NULL);
    m->fsyncs_later = atomic_load(&m->f->fsyncs) - base;
    journal_close(m->j);
}

START_TEST(interval_mode_syncs_on_a_timer_and_never_mode_not_at_all)
{
    struct fakeio f = {0};
    make_dir();
    struct mode_args m = {open_dir(CONFIG_FSYNC_INTERVAL, false, &f, 0), &f, 0, 0};
    run_main(body_modes, &m);
    ck_assert_msg(m.fsyncs_after_appends <= 1, "interval: appends do not wait for fsyncs (%d)",
                  m.fsyncs_after_appends);
    ck_assert_msg(m.fsyncs_later >= 1 && m.fsyncs_later <= 2,
                  "interval: the timer synced once (%d)", m.fsyncs_later);

    struct fakeio g = {0};
    struct mode_args n = {open_dir(CONFIG_FSYNC_NEVER, false, &g, 0), &g, 0, 0};
    run_main(body_modes, &n);
    ck_assert_msg(n.fsyncs_later == 0, "never: no fsync while running (%d)", n.fsyncs_later);

    struct seen s = {0};
    char err[512];
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 100, "both runs' records are there (%d)", s.n);
    remove_dir();
}
END_TEST

static void
body_nowait(void *arg)
{
    struct journal *j = arg;
    char rec[128];
    start(j);
    for (int i = 0; i < 10; i++) {
        size_t len = make_record(rec, sizeof rec, i);
        ck_assert_msg(journal_append_nowait(j, rec, len) == 0, "nowait append");
    }
    ck_assert_msg(journal_append_nowait(j, rec, 0) == -EMSGSIZE, "empty record refused");
    journal_close(j);
}

START_TEST(nowait_records_are_written_by_close)
{
    make_dir();
    run_main(body_nowait, open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 0));
    struct seen s = {0};
    char err[512];
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 10 && s.bad == 0, "10 records (%d)", s.n);
    remove_dir();
}
END_TEST

/* write errors */

struct err_args {
    struct journal *j;
    struct fakeio *f;
    int rc_fail, rc_after;
};

static void
body_errors(void *arg)
{
    struct err_args *e = arg;
    char rec[128];
    start(e->j);
    struct writer_args ok1 = {e->j, 0, 5, 0, 0};
    append_range(&ok1);
    size_t len = make_record(rec, sizeof rec, 999);
    e->rc_fail = journal_append(e->j, rec, len, NULL);
    struct writer_args ok2 = {e->j, 5, 5, 0, 0};
    append_range(&ok2);
    e->rc_after = ok2.failures ? ok2.first_rc : 0;
    journal_close(e->j);
}

/* The failure is switched on by the seam itself once `arm_at` writes were
 * made, so the test does not race the writer. */
struct armed_io {
    struct fakeio base;
    int arm_at;
    int write_err, fsync_err;
};

static ssize_t
armed_writev(void *arg, int fd, const struct iovec *iov, int iovcnt)
{
    struct armed_io *a = arg;
    int n = atomic_fetch_add(&a->base.writes, 1) + 1;
    if (n == a->arm_at) {
        if (a->write_err)
            return a->write_err;
        atomic_store(&a->base.fail_fsync, a->fsync_err);
    }
    ssize_t w = writev(fd, iov, iovcnt);
    return w < 0 ? -errno : w;
}

static int
armed_fsync(void *arg, int fd)
{
    struct armed_io *a = arg;
    (void)fd;
    atomic_fetch_add(&a->base.fsyncs, 1);
    return atomic_exchange(&a->base.fail_fsync, 0); /* fails once */
}

static void
check_error_case(int write_err, int fsync_err)
{
    struct armed_io a = {.arm_at = 7, .write_err = write_err, .fsync_err = fsync_err};
    struct journal_io io = {armed_writev, armed_fsync, &a};
    char err[512];
    make_dir();
    struct journal_opts o = {.fsync = CONFIG_FSYNC_ALWAYS, .io = &io};
    struct err_args e = {journal_open_opts(test_dir, &o, err, sizeof(err)), &a.base, 0, 0};
    ck_assert_msg(e.j != NULL, "open: %s", err);
    run_main(body_errors, &e);
    int want = write_err ? write_err : fsync_err;
    ck_assert_msg(e.rc_fail == want, "the append in the failing batch gets %d (got %d)", want,
                  e.rc_fail);
    ck_assert_msg(e.rc_after == 0, "later appends succeed (%d)", e.rc_after);
    struct seen s = {0};
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 10 && s.bad == 0, "the 10 good records replay, the failed one not "
                  "(%d records, %d unexpected)", s.n, s.bad);
    remove_dir();
}

START_TEST(a_full_disk_fails_the_batch_and_later_appends_work)
{
    check_error_case(-ENOSPC, 0);
}
END_TEST

START_TEST(an_fsync_error_fails_the_batch_and_cuts_it_off)
{
    check_error_case(0, -EIO);
}
END_TEST

/* torn tail, corruption, repair */

static void
write_records(int n, uint64_t segment_bytes)
{
    struct writer_args a = {open_dir(CONFIG_FSYNC_NEVER, false, NULL, segment_bytes), 0, n, 0,
                            0};
    run_main(body_append_1000, &a);
    ck_assert_msg(a.failures == 0, "setup appends");
}

struct replay_call {
    bool repair;
    int rc;
    struct seen s;
    char err[512];
};

static void
do_replay(void *arg)
{
    struct replay_call *r = arg;
    r->rc = replay_dir(r->repair, apply_in_order, &r->s, r->err, sizeof(r->err));
}

START_TEST(a_torn_tail_is_cut_with_a_log_line)
{
    char last[512], log[4096];
    make_dir();
    write_records(20, 0);
    list_segments(last, sizeof(last));
    off_t good = file_size(last);
    /* A frame header promising 100 bytes, followed by only 10. */
    uint8_t torn[18] = {100, 0, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r', 't', 'i', 'a', 'l', '!', '!', '!'};
    int fd = open(last, O_WRONLY | O_APPEND);
    ck_assert_msg(write(fd, torn, sizeof(torn)) == (ssize_t)sizeof(torn), "append torn frame");
    close(fd);

    struct replay_call r = {0};
    capture_stderr(do_replay, &r, log, sizeof(log));
    ck_assert_msg(r.rc == 0, "replay accepts a torn tail: %s", r.err);
    ck_assert_msg(r.s.n == 20 && r.s.bad == 0, "the 20 records survive (%d)", r.s.n);
    char want[600];
    snprintf(want, sizeof(want), "%s: torn tail at offset %lld (short record), dropped 18 bytes",
             last, (long long)good);
    ck_assert_msg(strstr(log, want) != NULL, "log says '%s'; got: %s", want, log);
    ck_assert_msg(file_size(last) == good, "file cut back to %lld (is %lld)", (long long)good,
                  (long long)file_size(last));
    remove_dir();
}
END_TEST

START_TEST(a_torn_header_of_the_newest_segment_is_removed)
{
    char path[600], log[4096];
    make_dir();
    write_records(5, 0);
    snprintf(path, sizeof(path), "%s/%016x.log", test_dir, 0xffff);
    int fd = open(path, O_WRONLY | O_CREAT, 0640);
    ck_assert_msg(write(fd, "chanq", 5) == 5, "write a torn header");
    close(fd);
    struct replay_call r = {0};
    capture_stderr(do_replay, &r, log, sizeof(log));
    ck_assert_msg(r.rc == 0 && r.s.n == 5, "replay ok with 5 records: %s", r.err);
    ck_assert_msg(access(path, F_OK) != 0, "the headless segment was removed");
    ck_assert_msg(strstr(log, "torn tail at offset 0") != NULL, "logged: %s", log);
    remove_dir();
}
END_TEST

/* Flips one byte inside record number `victim` of the (single) segment. */
static off_t
flip_record_byte(const char *path, int victim)
{
    off_t off = SEGMENT_HEADER_SIZE;
    char rec[128];
    for (int i = 0; i < victim; i++)
        off += SEGMENT_FRAME_SIZE + (off_t)make_record(rec, sizeof rec, i);
    int fd = open(path, O_RDWR);
    uint8_t b;
    ck_assert_msg(pread(fd, &b, 1, off + SEGMENT_FRAME_SIZE + 1) == 1, "read byte");
    b ^= 0x20;
    ck_assert_msg(pwrite(fd, &b, 1, off + SEGMENT_FRAME_SIZE + 1) == 1, "flip byte");
    close(fd);
    return off;
}

START_TEST(a_bad_checksum_in_the_middle_stops_replay_until_repaired)
{
    char last[512], log[4096], want[1600], rec[128];
    make_dir();
    write_records(50, 0);
    list_segments(last, sizeof(last));
    off_t off = flip_record_byte(last, 9);
    size_t victim_len = SEGMENT_FRAME_SIZE + make_record(rec, sizeof rec, 9);

    struct replay_call r = {0};
    capture_stderr(do_replay, &r, log, sizeof(log));
    ck_assert_msg(r.rc == -EBADMSG, "replay refuses (rc %d)", r.rc);
    snprintf(want, sizeof(want),
             "%s at offset %lld: bad checksum; 40 records that check follow it (0 in later "
             "segments). Run chanqd --repair to drop the %zu damaged bytes (1 stretch) and keep "
             "every record that checks; the damaged file is kept as %s.damaged",
             last, (long long)off, victim_len, last);
    ck_assert_msg(strcmp(r.err, want) == 0, "message '%s'; got '%s'", want, r.err);
    off_t before = file_size(last);

    struct replay_call fix = {.repair = true};
    capture_stderr(do_replay, &fix, log, sizeof(log));
    ck_assert_msg(fix.rc == 0, "repair succeeds: %s", fix.err);
    rec[make_record(rec, sizeof rec, 49)] = '\0';
    ck_assert_msg(fix.s.n == 49 && strcmp(fix.s.last, rec) == 0,
                  "every record but the damaged one survives, the last one last (%d, '%s')",
                  fix.s.n, fix.s.last);
    ck_assert_msg(strstr(log, "keeping the 40 records that check after it") != NULL,
                  "repair says what it keeps: %s", log);
    ck_assert_msg(file_size(last) == before - (off_t)victim_len, "only the damaged record went");
    char damaged[600];
    snprintf(damaged, sizeof damaged, "%s.damaged", last);
    ck_assert_msg(file_size(damaged) == before, "the damaged file is kept as %s", damaged);

    struct replay_call again = {0};
    do_replay(&again);
    ck_assert_msg(again.rc == 0 && again.s.n == 49, "a repaired journal replays cleanly (%d): %s",
                  again.s.n, again.err);
    remove_dir();
}
END_TEST

START_TEST(corruption_in_an_older_segment_counts_records_of_later_ones)
{
    char path[600];
    make_dir();
    write_records(200, 2048); /* several segments */
    int nsegs = list_segments(NULL, 0);
    ck_assert_msg(nsegs >= 3, "several segments (%d)", nsegs);
    /* the first segment file holds records 0.. */
    DIR *d = opendir(test_dir);
    struct dirent *de;
    uint64_t seq, first = UINT64_MAX;
    while ((de = readdir(d)))
        if (segment_name_parse(de->d_name, &seq) && seq < first)
            first = seq;
    closedir(d);
    snprintf(path, sizeof(path), "%s/%016llx.log", test_dir, (unsigned long long)first);
    flip_record_byte(path, 3);
    struct replay_call r = {0};
    do_replay(&r);
    ck_assert_msg(r.rc == -EBADMSG, "refused");
    ck_assert_msg(strstr(r.err, "196 records that check follow it") != NULL, "count: %s", r.err);
    struct replay_call fix = {.repair = true};
    do_replay(&fix);
    ck_assert_msg(fix.rc == 0 && fix.s.n == 199, "repair keeps the 199 records that check (%d): %s",
                  fix.s.n, fix.err);
    remove_dir();
}
END_TEST

/* Flips one bit of byte `at` of the (single) segment. */
static void
flip_bit(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    ck_assert_msg(pread(fd, &b, 1, at) == 1, "read byte %lld", (long long)at);
    b ^= 0x04;
    ck_assert_msg(pwrite(fd, &b, 1, at) == 1, "flip byte %lld", (long long)at);
    close(fd);
}

/* A flipped bit in the header (magic, version, checksum) is damage, not a
 * torn tail: start-up refuses and names the file, and --repair keeps every
 * record. So does a flipped bit in the first record's length field. */
START_TEST(a_flipped_header_bit_deletes_no_record_that_checks)
{
    static const off_t where[] = {3, 8, 13, SEGMENT_HEADER_SIZE + 1};
    char last[512], log[4096];
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        make_dir();
        write_records(100, 0);
        list_segments(last, sizeof(last));
        off_t size = file_size(last);
        flip_bit(last, where[k]);
        struct replay_call r = {0};
        capture_stderr(do_replay, &r, log, sizeof(log));
        ck_assert_msg(r.rc == -EBADMSG, "byte %lld: replay refuses (rc %d, %d records)",
                      (long long)where[k], r.rc, r.s.n);
        ck_assert_msg(strstr(r.err, last) && strstr(r.err, "at offset") &&
                          strstr(r.err, k < 3 ? "100 records that check" : "99 records that check"),
                      "byte %lld: the refusal names file, offset and what is kept: %s",
                      (long long)where[k], r.err);
        ck_assert_msg(file_size(last) == size, "byte %lld: nothing was cut", (long long)where[k]);
        struct replay_call fix = {.repair = true};
        capture_stderr(do_replay, &fix, log, sizeof(log));
        int want = k < 3 ? 100 : 99; /* a bad length loses its own record only */
        ck_assert_msg(fix.rc == 0 && fix.s.n == want, "byte %lld: repair keeps %d records (%d): %s",
                      (long long)where[k], want, fix.s.n, fix.err);
        struct replay_call again = {0};
        do_replay(&again);
        ck_assert_msg(again.rc == 0 && again.s.n == want, "byte %lld: replays cleanly after repair",
                      (long long)where[k]);
        remove_dir();
    }
}
END_TEST

/* lock file */

START_TEST(a_second_open_of_the_same_dir_is_refused)
{
    char err[512], pid[64];
    make_dir();
    struct journal *j = open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 0);
    struct journal_opts o = {0};
    struct journal *k = journal_open_opts(test_dir, &o, err, sizeof(err));
    ck_assert_msg(k == NULL, "second open refused");
    snprintf(pid, sizeof(pid), "(pid %ld holds", (long)getpid());
    ck_assert_msg(strstr(err, test_dir) && strstr(err, "in use by another chanqd") &&
                      strstr(err, pid),
                  "clear error naming dir and pid: %s", err);
    journal_close(j);
    k = journal_open_opts(test_dir, &o, err, sizeof(err));
    ck_assert_msg(k != NULL, "open after close works: %s", err);
    journal_close(k);
    remove_dir();
}
END_TEST

/* segments and compaction */

START_TEST(segments_roll_at_the_size_limit)
{
    make_dir();
    write_records(1000, 4096);
    int n = list_segments(NULL, 0);
    ck_assert_msg(n >= 4, "several segments (%d)", n);
    struct seen s = {0};
    char err[512];
    ck_assert_msg(replay_dir(false, apply_in_order, &s, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(s.n == 1000 && s.bad == 0, "all records in order across segments (%d)", s.n);
    remove_dir();
}
END_TEST

/* A test snapshotter whose state is the records whose number is a
 * multiple of 10, in log order: a compaction keeps exactly those. */
struct tens {
    int *applied; /* records handed to apply, over every compaction */
    char **recs;
    size_t n;
};

static void *
tens_begin(void *arg)
{
    struct tens *t = calloc(1, sizeof *t);
    if (t) {
        t->applied = arg;
        t->recs = calloc(10000, sizeof *t->recs);
    }
    return t;
}

static int
tens_apply(void *arg, const void *rec, size_t len)
{
    struct tens *t = arg;
    (*t->applied)++;
    if (atoi((const char *)rec + 4) % 10 == 0 && t->n < 10000)
        t->recs[t->n++] = strndup(rec, len);
    return 0;
}

static int
tens_write(void *arg, journal_emit_fn *emit, void *emit_arg)
{
    struct tens *t = arg;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < t->n; i++)
        rc = emit(emit_arg, t->recs[i], strlen(t->recs[i]));
    return rc;
}

static void
tens_end(void *arg)
{
    struct tens *t = arg;
    for (size_t i = 0; i < t->n; i++)
        free(t->recs[i]);
    free(t->recs);
    free(t);
}

static const struct journal_snapshotter tens = {tens_begin, tens_apply, tens_write, tens_end};

struct compact_args {
    struct journal *j;
    int applied;
    int rc;
    uint64_t before, after;
    struct journal_stats st;
};

static void
body_compact(void *arg)
{
    struct compact_args *c = arg;
    start(c->j);
    struct writer_args w = {c->j, 0, 2000, 0, 0};
    append_range(&w);
    c->before = journal_bytes(c->j);
    c->rc = journal_compact(c->j);
    c->after = journal_bytes(c->j);
    struct writer_args w2 = {c->j, 5000, 10, 0, 0};
    append_range(&w2);
    journal_stats(c->j, &c->st);
    journal_close(c->j);
}

START_TEST(compaction_writes_the_snapshot_first_then_later_records)
{
    static struct collect col;
    make_dir();
    struct compact_args c = {.j = open_dir(CONFIG_FSYNC_NEVER, false, NULL, 8192)};
    journal_set_snapshotter(c.j, &tens, &c.applied);
    run_main(body_compact, &c);
    ck_assert_msg(c.rc == 0, "compaction ok (%d)", c.rc);
    ck_assert_msg(c.applied == 2000, "every old record applied once (%d)", c.applied);
    ck_assert_msg(c.after * 5 < c.before, "bytes shrank: %llu -> %llu",
                  (unsigned long long)c.before, (unsigned long long)c.after);
    ck_assert_msg(c.st.compactions == 1, "counted");
    int nsegs = list_segments(NULL, 0);
    ck_assert_msg(nsegs <= 3, "old segments deleted (%d left)", nsegs);

    memset(&col, 0, sizeof(col));
    char err[512], want[64];
    ck_assert_msg(replay_dir(false, apply_collect, &col, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(col.n == 200 + 10, "200 kept + 10 later records (%d)", col.n);
    for (int i = 0; i < 200; i++) {
        want[make_record(want, sizeof want, i * 10)] = '\0';
        ck_assert_msg(strcmp(col.recs[i], want) == 0, "kept record %d is %s (got %s)", i, want,
                      col.recs[i]);
    }
    for (int i = 0; i < 10; i++) {
        want[make_record(want, sizeof want, 5000 + i)] = '\0';
        ck_assert_msg(strcmp(col.recs[200 + i], want) == 0, "later record %d", i);
    }
    remove_dir();
}
END_TEST

START_TEST(a_compacted_segment_supersedes_older_leftovers)
{
    static struct collect col;
    char src[600], dst[600];
    make_dir();
    /* An old-style segment with seq 1 ... */
    write_records(10, 0);
    list_segments(src, sizeof(src));
    snprintf(dst, sizeof(dst), "%s/%016x.log", test_dir, 1);
    ck_assert_msg(strcmp(src, dst) == 0, "first segment is seq 1 (%s)", src);
    /* ... and a compaction's output with seq 2 that kept records 0..2: as if
     * the compaction crashed after its rename, before deleting seq 1. */
    int fd = open(src, O_RDONLY);
    off_t end = SEGMENT_HEADER_SIZE;
    char rec[128];
    for (int i = 0; i < 3; i++)
        end += SEGMENT_FRAME_SIZE + (off_t)make_record(rec, sizeof rec, i);
    uint8_t *buf = malloc((size_t)end);
    ck_assert_msg(pread(fd, buf, (size_t)end, 0) == end, "read");
    close(fd);
    segment_header(buf, SEGMENT_COMPACTED);
    snprintf(dst, sizeof(dst), "%s/%016x.log", test_dir, 2);
    fd = open(dst, O_WRONLY | O_CREAT, 0640);
    ck_assert_msg(write(fd, buf, (size_t)end) == end, "write");
    close(fd);
    free(buf);

    memset(&col, 0, sizeof(col));
    char err[512];
    ck_assert_msg(replay_dir(false, apply_collect, &col, err, sizeof(err)) == 0, "replay: %s",
                  err);
    ck_assert_msg(col.n == 3, "only the compacted records (%d)", col.n);
    ck_assert_msg(access(src, F_OK) != 0, "the superseded segment was deleted");
    remove_dir();
}
END_TEST

struct policy_args {
    struct journal *j;
    int first, second, applied;
};

static void
body_policy(void *arg)
{
    struct policy_args *p = arg;
    start(p->j);
    struct writer_args w = {p->j, 0, 3000, 0, 0};
    append_range(&w);
    /* The writer tries the policy after every roll: past the threshold it
     * compacts by itself (or this call starts it, if it has not yet). */
    p->first = journal_maybe_compact(p->j);
    struct journal_stats st;
    for (int i = 0; i < 2000; i++) {
        journal_stats(p->j, &st);
        if (st.compactions)
            break;
        go_sleep(1, NULL);
    }
    p->first = (int)st.compactions;
    p->second = journal_maybe_compact(p->j);
    journal_close(p->j);
}

START_TEST(maybe_compact_runs_once_past_the_threshold)
{
    char err[512];
    make_dir();
    struct journal_opts o = {.fsync = CONFIG_FSYNC_NEVER, .segment_bytes = 8192,
                             .compact_bytes = 16384};
    struct policy_args p = {.j = journal_open_opts(test_dir, &o, err, sizeof(err))};
    journal_set_snapshotter(p.j, &tens, &p.applied);
    run_main(body_policy, &p);
    ck_assert_msg(p.first >= 1, "a big journal is compacted (%d compactions)", p.first);
    ck_assert_msg(p.second == 0, "a freshly compacted one is not (%d)", p.second);
    remove_dir();
}
END_TEST

static void
body_leak(void *arg)
{
    struct journal *j = arg;
    size_t before = go_count();
    start(j);
    char rec[16];
    size_t len = make_record(rec, sizeof rec, 1);
    ck_assert_msg(journal_append(j, rec, len, NULL) == 0, "append");
    journal_close(j);
    size_t after = go_count();
    for (int i = 0; i < 100 && after > before; i++) {
        go_sleep(1, NULL);
        after = go_count();
    }
    ck_assert_msg(after == before, "the writer goroutine ended (%zu -> %zu)", before, after);
}

START_TEST(close_ends_the_writer_goroutine)
{
    make_dir();
    run_main(body_leak, open_dir(CONFIG_FSYNC_ALWAYS, false, NULL, 0));
    remove_dir();
}
END_TEST

Suite *
journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("journal");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, appended_records_replay_in_order);
    tcase_add_test(tc, concurrent_appenders_share_fsyncs);
    tcase_add_test(tc, async_appends_share_a_handle_per_batch);
    tcase_add_test(tc, interval_mode_syncs_on_a_timer_and_never_mode_not_at_all);
    tcase_add_test(tc, nowait_records_are_written_by_close);
    tcase_add_test(tc, a_full_disk_fails_the_batch_and_later_appends_work);
    tcase_add_test(tc, an_fsync_error_fails_the_batch_and_cuts_it_off);
    tcase_add_test(tc, a_torn_tail_is_cut_with_a_log_line);
    tcase_add_test(tc, a_torn_header_of_the_newest_segment_is_removed);
    tcase_add_test(tc, a_bad_checksum_in_the_middle_stops_replay_until_repaired);
    tcase_add_test(tc, corruption_in_an_older_segment_counts_records_of_later_ones);
    tcase_add_test(tc, a_flipped_header_bit_deletes_no_record_that_checks);
    tcase_add_test(tc, a_preallocated_tail_is_allocated_in_chunks_and_never_read);
    tcase_add_test(tc, a_second_open_of_the_same_dir_is_refused);
    tcase_add_test(tc, segments_roll_at_the_size_limit);
    tcase_add_test(tc, compaction_writes_the_snapshot_first_then_later_records);
    tcase_add_test(tc, a_compacted_segment_supersedes_older_leftovers);
    tcase_add_test(tc, maybe_compact_runs_once_past_the_threshold);
    tcase_add_test(tc, close_ends_the_writer_goroutine);
    suite_add_tcase(s, tc);
    return s;
}
