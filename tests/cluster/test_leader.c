/* The serving path of a cluster node on libraft's raft_fixture (three
 * servers, simulated time and network), with the code the daemon runs:
 * broker ops on a broker whose journal is in cluster mode, its batches
 * turned into entries by the cluster replicator
 * (cluster_replicator_init_proposer, the propose seam) and proposed to a
 * fixture server through a mailbox, as the replica thread's is; committed
 * entries applied into each server's cluster_fsm; a new leader's broker
 * made by cluster_fsm_promote_into and broker_start, as the server does.
 *
 * The fixture is driven by the main goroutine only (libraft is not
 * thread-safe): it drains the mailbox into raft_apply, steps the fixture
 * and yields, while the ops run on goroutines of their own and park on
 * the journal like a connection's. */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx.h"
#include "core/go.h"
#include "core/sched.h"
#include "core/timer.h"
#include "daemon/broker.h"
#include "daemon/cluster/fsm.h"
#include "daemon/cluster/replica.h"
#include "daemon/cluster/replicate.h"
#include "daemon/journal/journal.h"
#include "proto/buf.h"
#include "proto/msg.h"
#include "tests/cluster/suites.h"

enum { N = 3, MAX_STEPS = 200000, MAX_REAL_MS = 20000 };

static const struct broker_config cfg = {
    .defaults = {.capacity = 1000, .ttr_ms = 600000, .max_attempts = 5},
    .submit_wait_ms = 0,
    .max_queues = 100,
    .max_payload_bytes = 1 << 20,
    .max_finished = 100,
};

/* A proposal on its way from a journal's writer to the fixture. */
struct pending {
    unsigned node;
    struct raft_buffer buf;
    replica_done_fn *done;
    void *arg;
    struct pending *next;
};

struct lab {
    struct raft_fixture f;
    struct cluster_fsm *fsm[N];
    pthread_mutex_t mu; /* guards the mailbox: the writers push from any thread */
    struct pending *head, **tail;
};

/* A node that serves: its broker and cluster-mode journal, proposing to
 * fixture server `node`. */
struct side {
    struct lab *lab;
    unsigned node;
    struct cluster_proposer prop;
    struct journal_replicator rep;
    char dir[64];
    struct journal *j;
    struct ctx *root;
    struct broker *b;
    struct holder h;
};

/* ---- the mailbox: the writer's side, then the fixture's ---- */

/* cluster_proposer.propose: replica_propose's contract, the answer given
 * on the fixture's goroutine once libraft has one. */
static int
fixture_propose(void *arg, void *entry, size_t len, replica_done_fn *done, void *done_arg)
{
    struct side *s = arg;
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        raft_free(entry);
        return -ENOMEM;
    }
    *p = (struct pending){.node = s->node, .buf = {.base = entry, .len = len}, .done = done,
                          .arg = done_arg};
    pthread_mutex_lock(&s->lab->mu);
    *s->lab->tail = p;
    s->lab->tail = &p->next;
    pthread_mutex_unlock(&s->lab->mu);
    return 0;
}

struct applying {
    struct raft_apply req;
    replica_done_fn *done;
    void *arg;
};

static void
on_applied(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct applying *a = req->data;
    a->done(a->arg, replica_errno(status));
    free(a);
}

/* Hands every queued proposal to its server, as the replica thread does. */
static void
pump(struct lab *l)
{
    pthread_mutex_lock(&l->mu);
    struct pending *p = l->head;
    l->head = NULL;
    l->tail = &l->head;
    pthread_mutex_unlock(&l->mu);
    while (p) {
        struct pending *next = p->next;
        struct applying *a = malloc(sizeof *a);
        ck_assert_ptr_nonnull(a);
        *a = (struct applying){.req.data = a, .done = p->done, .arg = p->arg};
        int rc = raft_apply(raft_fixture_get(&l->f, p->node), &a->req, &p->buf, 1, on_applied);
        if (rc != 0) { /* not taken: the buffer is still ours */
            raft_free(p->buf.base);
            p->done(p->arg, replica_errno(rc));
            free(a);
        }
        free(p);
        p = next;
    }
}

static bool
mailbox_empty(struct lab *l)
{
    pthread_mutex_lock(&l->mu);
    bool empty = l->head == NULL;
    pthread_mutex_unlock(&l->mu);
    return empty;
}

/* One turn: the mailbox, one fixture step (unless time must stand
 * still), the other goroutines. */
static void
turn(struct lab *l, bool step)
{
    pump(l);
    if (step)
        raft_fixture_step(&l->f);
    go_yield();
}

/* Turns until cond(l, arg) holds; false when the bounds ran out first. */
static bool
turn_until_step(struct lab *l, bool (*cond)(struct lab *, void *), void *arg, bool step)
{
    int64_t deadline = timer_now_ms() + MAX_REAL_MS;
    for (int i = 0; i < MAX_STEPS && timer_now_ms() < deadline; i++) {
        if (cond(l, arg))
            return true;
        turn(l, step);
    }
    return cond(l, arg);
}

static bool
turn_until(struct lab *l, bool (*cond)(struct lab *, void *), void *arg)
{
    return turn_until_step(l, cond, arg, true);
}

/* ---- the cluster ---- */

static void
lab_setup(struct lab *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    l->tail = &l->head;
    ck_assert_int_eq(raft_fixture_initialize(&l->f), 0);
    for (unsigned i = 0; i < N; i++) {
        l->fsm[i] = cluster_fsm_new(&cfg);
        ck_assert_ptr_nonnull(l->fsm[i]);
        /* libraft 0.15's fixture has no async_work: snapshots are
         * written in libraft's call (the asynchronous path has its own
         * tests, and runs in the real replica). */
        cluster_fsm_sync_snapshots(l->fsm[i]);
        ck_assert_int_eq(raft_fixture_grow(&l->f, cluster_fsm_raft(l->fsm[i])), 0);
    }
    struct raft_configuration conf;
    ck_assert_int_eq(raft_fixture_configuration(&l->f, N, &conf), 0);
    ck_assert_int_eq(raft_fixture_bootstrap(&l->f, &conf), 0);
    raft_configuration_close(&conf);
    ck_assert_int_eq(raft_fixture_start(&l->f), 0);
}

static void
lab_teardown(struct lab *l)
{
    ck_assert_msg(mailbox_empty(l), "every proposal was handed over");
    raft_fixture_close(&l->f);
    for (unsigned i = 0; i < N; i++)
        cluster_fsm_free(l->fsm[i]);
    pthread_mutex_destroy(&l->mu);
}

struct applied_arg {
    raft_index index;
    unsigned mask; /* the servers that must have applied it */
};

static bool
all_applied(struct lab *l, void *arg)
{
    struct applied_arg *a = arg;
    if (!mailbox_empty(l))
        return false;
    for (unsigned i = 0; i < N; i++)
        if ((a->mask & (1u << i)) && raft_last_applied(raft_fixture_get(&l->f, i)) < a->index)
            return false;
    return true;
}

/* Turns until every server of mask has applied all server `from` has. */
static void
settle(struct lab *l, unsigned from, unsigned mask)
{
    struct applied_arg a = {.index = raft_last_index(raft_fixture_get(&l->f, from)), .mask = mask};
    ck_assert_msg(turn_until(l, all_applied, &a), "servers %#x applied index %llu", mask,
                  (unsigned long long)a.index);
}

static void
isolate(struct lab *l, unsigned i, bool cut)
{
    for (unsigned j = 0; j < N; j++) {
        if (j == i)
            continue;
        if (cut) {
            raft_fixture_saturate(&l->f, i, j);
            raft_fixture_saturate(&l->f, j, i);
        } else {
            raft_fixture_desaturate(&l->f, i, j);
            raft_fixture_desaturate(&l->f, j, i);
        }
    }
}

/* ---- a serving node ---- */

static void
ignore_event(struct holder *h, const char *line, size_t len)
{
    (void)h;
    (void)line;
    (void)len;
}

struct barrier_wait {
    struct raft_barrier req;
    bool done;
    int status;
};

static void
on_barrier(struct raft_barrier *req, int status)
{
    struct barrier_wait *w = req->data;
    w->done = true;
    w->status = status;
}

static bool
barrier_done(struct lab *l, void *arg)
{
    (void)l;
    return ((struct barrier_wait *)arg)->done;
}

/* What the server does once server `node` leads: a barrier first (every
 * entry of earlier terms applied), then the committed state copied into
 * a new broker, its journal proposing to that server, and broker_start. */
static void
side_open(struct lab *l, struct side *s, unsigned node)
{
    *s = (struct side){.lab = l, .node = node, .h = {.send_event = ignore_event}};
    struct barrier_wait w = {.req.data = &w};
    ck_assert_int_eq(raft_barrier(raft_fixture_get(&l->f, node), &w.req, on_barrier), 0);
    ck_assert_msg(turn_until(l, barrier_done, &w) && w.status == 0, "the barrier of server %u",
                  node);
    snprintf(s->dir, sizeof s->dir, "/tmp/chanq-leader-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(s->dir));
    s->prop = (struct cluster_proposer){.propose = fixture_propose, .arg = s};
    cluster_replicator_init_proposer(&s->rep, &s->prop);
    struct journal_opts opts = {.replicator = &s->rep};
    char err[256] = "";
    s->j = journal_open_opts(s->dir, &opts, err, sizeof err);
    ck_assert_msg(s->j != NULL, "journal_open_opts: %s", err);
    ck_assert_msg(journal_start(s->j, err, sizeof err) == 0, "journal_start: %s", err);
    s->root = ctx_with_cancel(NULL);
    s->b = broker_new(&cfg, s->root);
    ck_assert_ptr_nonnull(s->b);
    broker_set_journal(s->b, s->j);
    ck_assert_int_eq(cluster_fsm_promote_into(l->fsm[node], s->b), 0);
    broker_start(s->b);
}

struct closing {
    struct side *s;
    atomic_bool done;
};

static void
close_body(void *arg)
{
    struct closing *c = arg;
    journal_close(c->s->j);
    atomic_store(&c->done, true);
}

static bool
closed(struct lab *l, void *arg)
{
    (void)l;
    return atomic_load(&((struct closing *)arg)->done);
}

/* The node stops serving: its holder goes, then its journal (whose last
 * batches the fixture must still answer), then its broker. */
static void
side_close(struct side *s)
{
    broker_release_holder(s->b, &s->h);
    ctx_cancel(s->root);
    struct closing c = {.s = s};
    go(close_body, &c);
    ck_assert_msg(turn_until(s->lab, closed, &c), "journal_close");
    broker_free(s->b);
    ctx_release(s->root);
    char lock[96];
    snprintf(lock, sizeof lock, "%s/LOCK", s->dir);
    unlink(lock);
    ck_assert_msg(rmdir(s->dir) == 0, "cluster mode left files in %s", s->dir);
}

/* ---- ops, each on a goroutine of its own ---- */

static broker_op_fn *const op_fns[OP_COUNT] = {
    [OP_DECLARE] = broker_op_declare, [OP_SUBMIT] = broker_op_submit,
    [OP_FETCH] = broker_op_fetch,     [OP_ACK] = broker_op_ack,
    [OP_NACK] = broker_op_nack,       [OP_PAUSE] = broker_op_pause,
    [OP_RESUME] = broker_op_resume,
};

struct call {
    struct side *s;
    const char *line;
    int rc;
    struct proto_error err;
    json_t *answer; /* when rc == 0 */
    atomic_bool done;
};

static void
call_body(void *arg)
{
    struct call *c = arg;
    struct request req;
    int rc = msg_decode(c->line, strlen(c->line), NULL, &req, &c->err);
    ck_assert_msg(rc == 0, "the test built a bad request: %s", c->line);
    struct session sess = {.holder = &c->s->h, .ctx = c->s->root};
    struct buf out;
    buf_init(&out);
    c->rc = op_fns[req.op](c->s->b, &sess, &req, &out, &c->err);
    if (c->rc == 0)
        c->answer = json_loadb(out.data, out.len, 0, NULL);
    buf_clear(&out);
    request_clear(&req);
    atomic_store(&c->done, true);
}

static bool
call_done(struct lab *l, void *arg)
{
    (void)l;
    return atomic_load(&((struct call *)arg)->done);
}

static void
call_start(struct call *c, struct side *s, const char *line)
{
    *c = (struct call){.s = s, .line = line};
    go(call_body, c);
}

static void
call_wait(struct call *c)
{
    ck_assert_msg(turn_until(c->s->lab, call_done, c), "%s answered", c->line);
}

/* Runs line on s and returns its answer (new reference), failing the test
 * unless it is ok. */
static json_t *
run_ok(struct side *s, const char *line)
{
    struct call c;
    call_start(&c, s, line);
    call_wait(&c);
    ck_assert_msg(c.rc == 0 && c.answer, "%s: %s", line, c.err.message);
    return c.answer;
}

static char *
run_id(struct side *s, const char *line)
{
    json_t *a = run_ok(s, line);
    char *id = strdup(json_string_value(json_object_get(a, "id")));
    json_decref(a);
    return id;
}

static json_int_t
jobs_in(struct broker *b, const char *state)
{
    json_t *jobs = broker_jobs_json(b);
    json_int_t n = json_integer_value(json_object_get(jobs, state));
    json_decref(jobs);
    return n;
}

static void
assert_same_state(struct lab *l, unsigned mask, struct broker *serving)
{
    char want[BROKER_DIGEST_HEX], got[BROKER_DIGEST_HEX];
    if (serving)
        ck_assert_int_eq(broker_state_digest(serving, want), 0);
    else
        ck_assert_int_eq(cluster_fsm_digest(l->fsm[__builtin_ctz(mask)], want), 0);
    for (unsigned i = 0; i < N; i++) {
        if (!(mask & (1u << i)))
            continue;
        ck_assert_int_eq(cluster_fsm_digest(l->fsm[i], got), 0);
        ck_assert_msg(strcmp(got, want) == 0, "server %u: %s, want %s", i, got, want);
    }
}

/* ---- tests ---- */

struct run {
    void (*body)(struct lab *l);
};

static void
run_main(void *arg)
{
    struct run *r = arg;
    struct lab l;
    lab_setup(&l);
    r->body(&l);
    lab_teardown(&l);
}

static void
run_lab(void (*body)(struct lab *l))
{
    struct run r = {.body = body};
    ck_assert_int_eq(sched_run_main(run_main, &r, 1), 0);
}

struct records_arg {
    uint64_t records;
    unsigned mask;
};

static bool
records_applied(struct lab *l, void *arg)
{
    struct records_arg *a = arg;
    for (unsigned i = 0; i < N; i++) {
        struct cluster_fsm_stats st;
        cluster_fsm_stats(l->fsm[i], &st);
        if ((a->mask & (1u << i)) && st.records < a->records)
            return false;
    }
    return true;
}

/* A leader's serving state, built by real ops, goes through entries into
 * every standby; a server that was down while the others compacted gets
 * it as a snapshot. Every standby then has the serving state's digest. */
static void
snapshot_body(struct lab *l)
{
    for (unsigned i = 0; i < N; i++) {
        raft_set_snapshot_threshold(raft_fixture_get(&l->f, i), 4);
        raft_set_snapshot_trailing(raft_fixture_get(&l->f, i), 1);
    }
    raft_fixture_elect(&l->f, 0);
    raft_fixture_kill(&l->f, 2);
    struct side s;
    side_open(l, &s, 0);
    json_decref(run_ok(&s, "{\"op\":\"declare\",\"queue\":\"q\",\"capacity\":50,\"max_attempts\":4}"));
    for (int k = 0; k < 12; k++) {
        char line[128];
        snprintf(line, sizeof line,
                 "{\"op\":\"submit\",\"queue\":\"%s\",\"payload\":{\"k\":%d}}", k % 3 ? "q" : "r",
                 k);
        free(run_id(&s, line));
    }
    json_t *got = run_ok(&s, "{\"op\":\"fetch\",\"queue\":\"q\",\"count\":3,\"timeout_ms\":0}");
    json_t *jobs = json_object_get(got, "jobs");
    ck_assert_uint_eq(json_array_size(jobs), 3);
    char line[160];
    snprintf(line, sizeof line, "{\"op\":\"ack\",\"id\":\"%s\",\"result\":{\"r\":1}}",
             json_string_value(json_object_get(json_array_get(jobs, 0), "id")));
    json_decref(run_ok(&s, line));
    snprintf(line, sizeof line, "{\"op\":\"nack\",\"id\":\"%s\",\"error\":\"e\",\"dead\":true}",
             json_string_value(json_object_get(json_array_get(jobs, 1), "id")));
    json_decref(run_ok(&s, line));
    json_decref(got);
    json_decref(run_ok(&s, "{\"op\":\"pause\",\"queue\":\"r\"}"));
    settle(l, 0, 0x3);

    struct cluster_fsm_stats st;
    cluster_fsm_stats(l->fsm[0], &st);
    ck_assert_msg(st.snapshots >= 2, "the leader took snapshots (%llu)",
                  (unsigned long long)st.snapshots);
    raft_fixture_revive(&l->f, 2);
    settle(l, 0, 0x7);
    cluster_fsm_stats(l->fsm[2], &st);
    ck_assert_msg(st.restores >= 1, "server 2 caught up through a snapshot");
    assert_same_state(l, 0x7, NULL);
    /* A standby keeps a reserved job on its queue's list, where a serving
     * broker has it with its holder: the digests differ while one is
     * reserved. The holder goes (its job back in the queue, recorded),
     * and then the serving state is what every standby has. */
    ck_assert_int_eq(jobs_in(s.b, "reserved"), 1);
    broker_release_holder(s.b, &s.h);
    ck_assert_int_eq(jobs_in(s.b, "reserved"), 0);
    struct records_arg more = {.records = st.records + 1, .mask = 0x7};
    ck_assert_msg(turn_until(l, records_applied, &more), "the release on every server");
    settle(l, 0, 0x7);
    assert_same_state(l, 0x7, s.b);
    side_close(&s);
}

START_TEST(a_serving_state_reaches_every_standby_also_through_a_snapshot)
{
    run_lab(snapshot_body);
}
END_TEST

static bool
follower(struct lab *l, void *arg)
{
    return raft_state(raft_fixture_get(&l->f, *(unsigned *)arg)) == RAFT_FOLLOWER;
}

static bool
leader_is_not(struct lab *l, void *arg)
{
    unsigned old = *(unsigned *)arg;
    unsigned i = raft_fixture_leader_index(&l->f);
    return i < N && i != old;
}

static bool
appended(struct lab *l, void *arg)
{
    struct applied_arg *a = arg;
    return mailbox_empty(l) && raft_last_index(raft_fixture_get(&l->f, 0)) > a->index;
}

/* The leader is cut off while a submit waits for its entry: the entry
 * fails with "leadership lost", the submit is answered with an error and
 * its job taken back (the journal path of an unwritten record), so the
 * old leader's serving state is the committed state again; the new
 * leader's log wins and the job is applied nowhere. */
static void
leadership_lost_body(struct lab *l)
{
    raft_fixture_elect(&l->f, 0);
    struct side s;
    side_open(l, &s, 0);
    char *a = run_id(&s, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":{\"n\":1}}");
    settle(l, 0, 0x7);

    isolate(l, 0, true);
    struct applied_arg before = {.index = raft_last_index(raft_fixture_get(&l->f, 0))};
    struct call c;
    call_start(&c, &s, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":{\"n\":2}}");
    /* Simulated time stands still until then: the leader must not step
     * down before its writer has proposed the entry. */
    ck_assert_msg(turn_until_step(l, appended, &before, false),
                  "the submit's entry is in the leader's log");
    ck_assert_msg(!atomic_load(&c.done), "no answer before the entry settles");
    unsigned old = 0;
    ck_assert_msg(turn_until(l, follower, &old), "the cut-off leader steps down");
    call_wait(&c);
    ck_assert_msg(c.rc == -1, "the submit whose entry failed is not ok");
    ck_assert_msg(c.err.code != PROTO_OK, "and says why");
    ck_assert_int_eq(jobs_in(s.b, "queued"), 1); /* the second job was taken back */
    ck_assert_int_eq(jobs_in(s.b, "reserved"), 0);

    ck_assert_msg(turn_until(l, leader_is_not, &old), "a new leader");
    unsigned n = raft_fixture_leader_index(&l->f);
    isolate(l, 0, false);
    struct barrier_wait w = {.req.data = &w}; /* the new leader's first entry */
    ck_assert_int_eq(raft_barrier(raft_fixture_get(&l->f, n), &w.req, on_barrier), 0);
    ck_assert(turn_until(l, barrier_done, &w) && w.status == 0);
    settle(l, n, 0x7);
    /* The old leader's serving state, with the job taken back, is the
     * committed state every server has. */
    assert_same_state(l, 0x7, s.b);
    struct cluster_fsm_stats st;
    for (unsigned i = 0; i < N; i++) {
        cluster_fsm_stats(l->fsm[i], &st);
        ck_assert_msg(st.records == 1, "server %u applied %llu records, want 1", i,
                      (unsigned long long)st.records);
    }
    side_close(&s);
    free(a);
}

START_TEST(a_submit_in_flight_when_leadership_is_lost_is_taken_back)
{
    run_lab(leadership_lost_body);
}
END_TEST

/* A job reserved on the old leader (its delivery recorded without
 * waiting, like every delivery) is back in its queue on the new leader
 * with the delivery counted; the requeue goes through the log, so the old
 * leader's standby has it too. */
static void
promotion_body(struct lab *l)
{
    raft_fixture_elect(&l->f, 0);
    struct side s0;
    side_open(l, &s0, 0);
    char *a = run_id(&s0, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":{\"n\":1}}");
    char *b = run_id(&s0, "{\"op\":\"submit\",\"queue\":\"q\",\"payload\":{\"n\":2}}");
    json_t *got = run_ok(&s0, "{\"op\":\"fetch\",\"queue\":\"q\",\"timeout_ms\":0}");
    json_t *job = json_array_get(json_object_get(got, "jobs"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(job, "id")), a);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "attempt")), 1);
    json_decref(got);
    struct records_arg three = {.records = 3, .mask = 0x7}; /* two submits, the delivery */
    ck_assert_msg(turn_until(l, records_applied, &three), "the delivery on every server");
    assert_same_state(l, 0x7, NULL);

    raft_fixture_depose(&l->f);
    raft_fixture_elect(&l->f, 1);
    side_close(&s0); /* a node that lost leadership stops serving */
    struct side s1;
    side_open(l, &s1, 1); /* broker_start requeues job a, recorded */
    ck_assert_int_eq(jobs_in(s1.b, "queued"), 2);
    ck_assert_int_eq(jobs_in(s1.b, "reserved"), 0);
    struct records_arg four = {.records = 4, .mask = 0x7};
    ck_assert_msg(turn_until(l, records_applied, &four), "the requeue on every server");
    assert_same_state(l, 0x7, s1.b);

    got = run_ok(&s1, "{\"op\":\"fetch\",\"queue\":\"q\",\"count\":10,\"timeout_ms\":0}");
    json_t *jobs = json_object_get(got, "jobs");
    ck_assert_uint_eq(json_array_size(jobs), 2);
    for (size_t k = 0; k < 2; k++) {
        job = json_array_get(jobs, k);
        const char *id = json_string_value(json_object_get(job, "id"));
        json_int_t attempt = json_integer_value(json_object_get(job, "attempt"));
        ck_assert_msg(strcmp(id, a) == 0 ? attempt == 2 : strcmp(id, b) == 0 && attempt == 1,
                      "job %s attempt %lld", id, (long long)attempt);
    }
    json_decref(got);
    side_close(&s1);
    free(a);
    free(b);
}

START_TEST(a_new_leader_requeues_the_old_leaders_delivery_with_its_attempt_counted)
{
    run_lab(promotion_body);
}
END_TEST

Suite *
leader_suite(void)
{
    Suite *s = suite_create("leader");
    TCase *tc = tcase_create("fixture");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_serving_state_reaches_every_standby_also_through_a_snapshot);
    tcase_add_test(tc, a_submit_in_flight_when_leadership_is_lost_is_taken_back);
    tcase_add_test(tc, a_new_leader_requeues_the_old_leaders_delivery_with_its_attempt_counted);
    suite_add_tcase(s, tc);
    return s;
}
