/* The compaction invariant as a property: random sequences of broker ops
 * (every kind of record: submit, delayed submit, child submit, reserve, ack
 * with and without result, nack, nack to dead, release, touch, cancel, kick,
 * declare, pause, resume, close, a connection's jobs given back) run against a
 * journal that a second goroutine compacts at random moments. Before each
 * compaction every segment file is hard-linked into a shadow directory, so
 * the shadow ends up holding the uncompacted journal. Replaying the
 * compacted directory and the shadow must give the same state. */
#include "chanq_config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"
#include "core/wg.h"
#include "daemon/broker.h"
#include "daemon/journal/journal.h"
#include "daemon/journal/segment.h"
#include "daemon/jrec.h"
#include "proto/buf.h"
#include "proto/msg.h"

Suite *replay_prop_suite(void);

enum { HOLDERS = 3, MAX_HELD = 256, MAX_IDS = 32768, MAX_FINISHED = 40 };
enum { OPS = 12000, MIN_COMPACTIONS = 5 };

static const char *const queue_names[] = {"a", "b", "c"};

struct held {
    int holder;
    uint64_t id;
};

struct prop {
    unsigned seed;
    char dir[64], shadow[80];
    struct ctx *root;
    struct broker *b;
    struct journal *j;
    struct holder holders[HOLDERS];
    struct held held[MAX_HELD];
    int nheld;
    uint64_t ids[MAX_IDS]; /* every submitted id, for cancel and parents */
    int nids;
    atomic_bool stop;   /* tells the compactor to end */
    struct wg *wg;      /* the compactor */
    atomic_int compactions; /* that succeeded */
};

static void
ignore_event(struct holder *h, const char *line, size_t len)
{
    (void)h;
    (void)line;
    (void)len;
}

static unsigned
pick(struct prop *p, unsigned n)
{
    return (unsigned)rand_r(&p->seed) % n;
}

static broker_op_fn *const op_fns[OP_COUNT] = {
    [OP_DECLARE] = broker_op_declare, [OP_SUBMIT] = broker_op_submit,
    [OP_FETCH] = broker_op_fetch,     [OP_ACK] = broker_op_ack,
    [OP_NACK] = broker_op_nack,       [OP_TOUCH] = broker_op_touch,
    [OP_RELEASE] = broker_op_release,
    [OP_CANCEL] = broker_op_cancel,   [OP_CLOSE] = broker_op_close,
    [OP_PAUSE] = broker_op_pause,     [OP_RESUME] = broker_op_resume,
    [OP_KICK] = broker_op_kick,
};

/* Runs one request line as holder h's; the answer (new reference) or NULL
 * when the op said no (a legal outcome: the job may be gone already). */
static json_t *
run_op(struct prop *p, int h, const char *line)
{
    struct request req;
    struct proto_error err;
    int rc = msg_decode(line, strlen(line), NULL, &req, &err);
    ck_assert_msg(rc == 0, "the test built a bad request: %s (%s)", line, err.message);
    ck_assert_msg(op_fns[req.op] != NULL, "no broker op for %s", line);
    struct session s = {.holder = &p->holders[h], .ctx = p->root};
    struct buf out;
    buf_init(&out);
    rc = op_fns[req.op](p->b, &s, &req, &out, &err);
    json_t *answer = rc == 0 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    buf_clear(&out);
    request_clear(&req);
    return answer;
}

static void
run_op_quiet(struct prop *p, int h, const char *line)
{
    json_decref(run_op(p, h, line));
}

static uint64_t
random_id(struct prop *p)
{
    return p->nids ? p->ids[pick(p, (unsigned)p->nids)] : 1;
}

static void
op_submit(struct prop *p, int i)
{
    char line[256], extra[96] = "";
    unsigned kind = pick(p, 20);
    if (kind == 0)
        snprintf(extra, sizeof extra, ",\"delay_ms\":%u", 1 + pick(p, 5));
    else if (kind == 1 && p->nids)
        snprintf(extra, sizeof extra, ",\"parent\":\"%llu\"", (unsigned long long)random_id(p));
    snprintf(line, sizeof line,
             "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":{\"n\":%d},\"wait_ms\":0%s}",
             queue_names[pick(p, 3)], i, extra);
    json_t *a = run_op(p, 0, line);
    const char *id = json_string_value(json_object_get(a, "id"));
    if (id && p->nids < MAX_IDS)
        p->ids[p->nids++] = strtoull(id, NULL, 10);
    json_decref(a);
}

static void
op_fetch(struct prop *p)
{
    int h = (int)pick(p, HOLDERS);
    char line[160];
    snprintf(line, sizeof line,
             "{\"op\":\"fetch\",\"queues\":[\"a\",\"b\",\"c\"],\"count\":%u,\"timeout_ms\":0}",
             1 + pick(p, 4));
    json_t *a = run_op(p, h, line);
    json_t *jobs = json_object_get(a, "jobs");
    for (size_t k = 0; k < json_array_size(jobs) && p->nheld < MAX_HELD; k++) {
        const char *id = json_string_value(json_object_get(json_array_get(jobs, k), "id"));
        p->held[p->nheld++] = (struct held){h, strtoull(id, NULL, 10)};
    }
    json_decref(a);
}

/* Ends a random reservation with ack (maybe with a result), nack (maybe
 * delayed, maybe straight to dead) or release, or just touches it. */
static void
op_settle(struct prop *p, int i)
{
    if (p->nheld == 0)
        return;
    int k = (int)pick(p, (unsigned)p->nheld);
    struct held hd = p->held[k];
    char line[256];
    unsigned what = pick(p, 11);
    if (what < 5)
        snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%llu\"%s}",
                 (unsigned long long)hd.id, what < 2 ? ",\"result\":{\"r\":1}" : "");
    else if (what < 9)
        snprintf(line, sizeof line,
                 "{\"op\":\"nack\",\"id\":\"%llu\",\"error\":\"e%d\",\"delay_ms\":%u%s}",
                 (unsigned long long)hd.id, i, pick(p, 2) * 2, what == 8 ? ",\"dead\":true" : "");
    else if (what == 9)
        snprintf(line, sizeof line, "{\"op\":\"touch\",\"id\":\"%llu\"}", (unsigned long long)hd.id);
    else
        snprintf(line, sizeof line, "{\"op\":\"release\",\"id\":\"%llu\"}",
                 (unsigned long long)hd.id);
    run_op_quiet(p, hd.holder, line);
    if (what != 9)
        p->held[k] = p->held[--p->nheld];
}

/* A connection goes away: the broker gives its jobs back. */
static void
op_release(struct prop *p)
{
    int h = (int)pick(p, HOLDERS);
    broker_release_holder(p->b, &p->holders[h]);
    p->holders[h] = (struct holder){.send_event = ignore_event};
    for (int k = 0; k < p->nheld;)
        if (p->held[k].holder == h)
            p->held[k] = p->held[--p->nheld];
        else
            k++;
}

static void
op_queue_admin(struct prop *p)
{
    char line[200];
    const char *q = queue_names[pick(p, 3)];
    switch (pick(p, 5)) {
    case 0:
        snprintf(line, sizeof line, "{\"op\":\"kick\",\"queue\":\"%s\",\"count\":%u}", q,
                 1 + pick(p, 5));
        break;
    case 1: {
        /* Some with delivery limits: the replay must bring them back. */
        char limits[80] = "";
        if (pick(p, 2) == 0)
            snprintf(limits, sizeof limits, ",\"concurrency\":%u,\"rate\":%u,\"burst\":%u",
                     1 + pick(p, 4), 1000 + pick(p, 2), 1000);
        snprintf(line, sizeof line,
                 "{\"op\":\"declare\",\"queue\":\"%s\",\"capacity\":%u,\"max_attempts\":%u%s}",
                 q, 100000 + pick(p, 3), 2 + pick(p, 3), limits);
        break;
    }
    case 2:
        snprintf(line, sizeof line, "{\"op\":\"pause\",\"queue\":\"%s\"}", q);
        break;
    case 3:
        snprintf(line, sizeof line, "{\"op\":\"resume\",\"queue\":\"%s\"}", q);
        break;
    default:
        snprintf(line, sizeof line, "{\"op\":\"cancel\",\"id\":\"%llu\"}",
                 (unsigned long long)random_id(p));
        break;
    }
    run_op_quiet(p, 0, line);
}

static void
random_op(struct prop *p, int i)
{
    unsigned r = pick(p, 100);
    if (r < 35)
        op_submit(p, i);
    else if (r < 55)
        op_fetch(p);
    else if (r < 85)
        op_settle(p, i);
    else if (r < 87)
        op_release(p);
    else if (r == 87 && pick(p, 20) == 0)
        run_op_quiet(p, 0, "{\"op\":\"close\",\"queue\":\"c\"}");
    else
        op_queue_admin(p);
}

/* Hard-links every segment file of dir into the shadow dir that it does
 * not hold yet: the shadow keeps each segment as it was before compaction
 * replaced or removed it (appends to the current one show through). */
static void
link_segments(struct prop *p)
{
    DIR *d = opendir(p->dir);
    ck_assert_msg(d != NULL, "opendir %s", p->dir);
    struct dirent *de;
    uint64_t seq;
    while ((de = readdir(d))) {
        if (!segment_name_parse(de->d_name, &seq))
            continue;
        char from[512], to[512];
        snprintf(from, sizeof from, "%s/%s", p->dir, de->d_name);
        snprintf(to, sizeof to, "%s/%s", p->shadow, de->d_name);
        ck_assert_msg(link(from, to) == 0 || errno == EEXIST, "link %s: %s", from,
                      strerror(errno));
    }
    closedir(d);
}

static void
compactor_main(void *arg)
{
    struct prop *p = arg;
    unsigned seed = p->seed;
    while (!atomic_load(&p->stop)) {
        go_sleep(rand_r(&seed) % 3, NULL);
        link_segments(p);
        if (journal_compact(p->j) == 0)
            atomic_fetch_add(&p->compactions, 1);
    }
    wg_done(p->wg);
}

static struct broker *
new_broker(struct ctx *root)
{
    struct broker_config cfg = {
        .defaults = {.capacity = 100000, .ttr_ms = 60000, .max_attempts = 3},
        .max_queues = 16,
        .max_payload_bytes = 64 << 20,
        .max_finished = MAX_FINISHED,
    };
    struct broker *b = root ? broker_new(&cfg, root) : broker_new_standby(&cfg);
    ck_assert_msg(b != NULL, "broker_new");
    return b;
}

static struct broker *
new_standby(void)
{
    return new_broker(NULL);
}

/* Collects the records a snapshot writes, as text (one line each: type
 * and id), for the failure message. */
struct snap_text {
    char *text;
    size_t len;
    FILE *f;
};

static int
snap_line(void *arg, const void *rec, size_t len)
{
    struct snap_text *t = arg;
    struct jrec r;
    if (jrec_decode(rec, len, &r, NULL) < 0)
        return -EBADMSG;
    uint64_t id = r.type == JREC_JOB ? r.u.job.s.id : 0;
    fprintf(t->f, "%s %llu ", jrec_type_name(r.type), (unsigned long long)id);
    for (size_t i = 0; i < len; i++) /* the bytes too: equal text, equal records */
        fprintf(t->f, "%02x", ((const unsigned char *)rec)[i]);
    fputc('\n', t->f);
    return 0;
}

/* Replays dir into a standby state; returns its digest and, in *text, the
 * records of its snapshot (both malloc'd). */
static char *
replay_digest(const char *dir, char **text)
{
    char err[512];
    struct journal_opts o = {.fsync = CONFIG_FSYNC_NEVER};
    struct journal *j = journal_open_opts(dir, &o, err, sizeof err);
    ck_assert_msg(j != NULL, "journal_open %s: %s", dir, err);
    struct broker *b = new_standby();
    ck_assert_msg(journal_replay(j, broker_replay_apply, b, err, sizeof err) == 0,
                  "replay of %s: %s", dir, err);
    journal_close(j);
    char *digest = malloc(BROKER_DIGEST_HEX);
    ck_assert_msg(digest && broker_state_digest(b, digest) == 0, "broker_state_digest");
    struct snap_text t = {NULL, 0, NULL};
    t.f = open_memstream(&t.text, &t.len);
    ck_assert_msg(t.f && broker_snapshot_write(b, snap_line, &t) == 0, "broker_snapshot_write");
    fclose(t.f);
    *text = t.text;
    broker_free(b);
    return digest;
}

/* The first record where a and b differ, for the failure message. */
static void
first_difference(const char *a, const char *b, char *out, size_t size)
{
    int line = 1;
    const char *la = a, *lb = b;
    while (*a && *a == *b) {
        if (*a == '\n') {
            line++;
            la = a + 1;
            lb = b + 1;
        }
        a++;
        b++;
    }
    snprintf(out, size, "line %d: compacted '%.*s' vs uncompacted '%.*s'", line,
             (int)strcspn(la, "\n"), la, (int)strcspn(lb, "\n"), lb);
}

static void
start_live(struct prop *p)
{
    char err[512];
    struct journal_opts o = {.fsync = CONFIG_FSYNC_NEVER};
    p->j = journal_open_opts(p->dir, &o, err, sizeof err);
    ck_assert_msg(p->j != NULL, "journal_open: %s", err);
    p->b = new_broker(p->root);
    ck_assert_msg(journal_replay(p->j, broker_replay_apply, p->b, err, sizeof err) == 0, "%s", err);
    journal_set_snapshotter(p->j, &broker_snapshotter, p->b);
    ck_assert_msg(journal_start(p->j, err, sizeof err) == 0, "journal_start: %s", err);
    broker_set_journal(p->b, p->j);
    broker_start(p->b);
    for (int h = 0; h < HOLDERS; h++)
        p->holders[h] = (struct holder){.send_event = ignore_event};
}

static void
body_property(void *arg)
{
    struct prop *p = arg;
    p->root = ctx_with_cancel(NULL);
    start_live(p);
    p->wg = wg_new();
    wg_add(p->wg, 1);
    go(compactor_main, p);
    /* At least OPS ops and MIN_COMPACTIONS compactions (bounded). */
    for (int i = 0; i < OPS || (atomic_load(&p->compactions) < MIN_COMPACTIONS && i < 50 * OPS);
         i++) {
        random_op(p, i);
        if (i % 64 == 0)
            go_yield(); /* let the compactor in on a busy scheduler */
    }
    atomic_store(&p->stop, true);
    wg_wait(p->wg, NULL);
    wg_free(p->wg);
    go_sleep(20, NULL); /* the short delays have all run out */
    for (int h = 0; h < HOLDERS; h++)
        broker_release_holder(p->b, &p->holders[h]);
    ck_assert_msg(journal_close(p->j) == 0, "journal_close");
    link_segments(p);

    char *compacted, *uncompacted;
    char *dc = replay_digest(p->dir, &compacted);
    char *du = replay_digest(p->shadow, &uncompacted);
    char diff[1024];
    first_difference(compacted, uncompacted, diff, sizeof diff);
    ck_assert_msg(strcmp(dc, du) == 0 && strcmp(compacted, uncompacted) == 0,
                  "seed %u, %d compactions: replays differ (digest %.12s vs %.12s) at %s",
                  p->seed, atomic_load(&p->compactions), dc, du, diff);
    ck_assert_msg(atomic_load(&p->compactions) >= MIN_COMPACTIONS, "only %d compactions ran",
                  atomic_load(&p->compactions));
    free(dc);
    free(du);
    free(compacted);
    free(uncompacted);
    ctx_release(p->root);
}

static void
remove_tree(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_msg(system(cmd) == 0, "rm -rf %s", dir);
}

START_TEST(a_compaction_at_any_moment_replays_to_the_same_state_as_the_full_journal)
{
    static struct prop p;
    unsigned seed = (unsigned)time(NULL) + (unsigned)_i * 7919u;
    memset(&p, 0, sizeof p);
    p.seed = seed;
    strcpy(p.dir, "/tmp/chanq-prop-XXXXXX");
    ck_assert_msg(mkdtemp(p.dir) != NULL, "mkdtemp");
    snprintf(p.shadow, sizeof p.shadow, "%s.shadow", p.dir);
    ck_assert_msg(mkdir(p.shadow, 0700) == 0, "mkdir %s", p.shadow);
    ck_assert_msg(sched_run_main(body_property, &p, 2) == 0, "sched_run_main");
    broker_free(p.b);
    fprintf(stderr, "replay property: seed %u, %d compactions, same state\n", seed,
            atomic_load(&p.compactions));
    remove_tree(p.dir);
    remove_tree(p.shadow);
}
END_TEST

Suite *
replay_prop_suite(void)
{
    Suite *s = suite_create("replay_property");
    TCase *tc = tcase_create("compaction");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, a_compaction_at_any_moment_replays_to_the_same_state_as_the_full_journal,
                        0, 10);
    suite_add_tcase(s, tc);
    return s;
}
