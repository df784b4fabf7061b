/* The replicated state machine on libraft's raft_fixture, a deterministic
 * in-process cluster of three (in-memory log and network, simulated time):
 * snapshots and their restore, leadership lost with entries in flight,
 * and a new leader's start from its standby. */
#include "chanq_config.h"

#include <check.h>
#include <errno.h>
#include <raft.h>
#include <raft/fixture.h>
#include <string.h>

#include "core/ctx.h"
#include "daemon/broker.h"
#include "daemon/cluster/entry.h"
#include "daemon/cluster/fsm.h"
#include "daemon/cluster/replica.h"
#include "daemon/jrec.h"
#include "tests/cluster/suites.h"

enum { N = 3, MAX_MS = 10000 };

static const struct broker_config cfg = {
    .defaults = {.capacity = 1000, .ttr_ms = 30000, .max_attempts = 3},
    .submit_wait_ms = 1000,
    .max_queues = 100,
    .max_payload_bytes = 1 << 20,
    .max_finished = 100,
};

struct cl {
    struct raft_fixture f;
    struct cluster_fsm *fsm[N];
};

static void
cl_setup(struct cl *c)
{
    ck_assert_int_eq(raft_fixture_initialize(&c->f), 0);
    for (unsigned i = 0; i < N; i++) {
        c->fsm[i] = cluster_fsm_new(&cfg);
        ck_assert_ptr_nonnull(c->fsm[i]);
        /* libraft 0.15's fixture has no async_work: snapshots are
         * written in libraft's call (the asynchronous path has its own
         * tests, and runs in the real replica). */
        cluster_fsm_sync_snapshots(c->fsm[i]);
        ck_assert_int_eq(raft_fixture_grow(&c->f, cluster_fsm_raft(c->fsm[i])), 0);
    }
    struct raft_configuration conf;
    ck_assert_int_eq(raft_fixture_configuration(&c->f, N, &conf), 0);
    ck_assert_int_eq(raft_fixture_bootstrap(&c->f, &conf), 0);
    raft_configuration_close(&conf);
    ck_assert_int_eq(raft_fixture_start(&c->f), 0);
}

static void
cl_teardown(struct cl *c)
{
    raft_fixture_close(&c->f);
    for (unsigned i = 0; i < N; i++)
        cluster_fsm_free(c->fsm[i]);
}

/* ---- records ---- */

static void
add(struct entry_builder *b, const struct jrec *r)
{
    uint8_t buf[512];
    int n = jrec_encode(r, buf, sizeof buf);
    ck_assert_msg(n > 0, "a valid %s record", jrec_type_name(r->type));
    ck_assert_int_eq(entry_add(b, buf, (size_t)n), 0);
}

static void
add_submit(struct entry_builder *b, uint64_t id)
{
    struct jrec r = {.type = JREC_SUBMIT};
    r.u.submit = (struct jrec_submit){.id = id, .queue = "q", .queue_len = 1, .payload = "{}",
                                      .payload_len = 2, .ttr_ms = 30000, .max_attempts = 3,
                                      .created_ms = 1000 + (int64_t)id};
    add(b, &r);
}

static void
add_reserve(struct entry_builder *b, uint64_t id, uint32_t attempt)
{
    struct jrec r = {.type = JREC_RESERVE};
    r.u.reserve = (struct jrec_reserve){.id = id, .attempt = attempt};
    add(b, &r);
}

static void
add_done(struct entry_builder *b, uint64_t id)
{
    struct jrec r = {.type = JREC_FINAL};
    r.u.final = (struct jrec_final){.id = id, .state = JREC_DONE, .result = "1", .result_len = 1};
    add(b, &r);
}

/* The state `entries` give, applied straight into a standby. */
static void
reference_digest(struct entry_builder *entries, size_t n, char hex[BROKER_DIGEST_HEX])
{
    struct broker *b = broker_new_standby(&cfg);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(entry_each(entries[i].buf, entries[i].len, broker_replay_apply, b), 0);
    ck_assert_int_eq(broker_state_digest(b, hex), 0);
    broker_free(b);
}

static void
assert_digest(struct cluster_fsm *f, const char *want, const char *who)
{
    char hex[BROKER_DIGEST_HEX];
    ck_assert_int_eq(cluster_fsm_digest(f, hex), 0);
    ck_assert_msg(strcmp(hex, want) == 0, "%s: digest %s, want %s", who, hex, want);
}

/* ---- proposals ---- */

struct prop {
    struct raft_apply req;
    int calls;
    int status;
};

static void
on_applied(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct prop *p = req->data;
    p->calls++;
    p->status = status;
}

/* Proposes a copy of e on server i; returns the entry's index. */
static raft_index
propose(struct cl *c, unsigned i, const struct entry_builder *e, struct prop *p)
{
    struct raft_buffer buf = {.base = raft_malloc(e->len), .len = e->len};
    memcpy(buf.base, e->buf, e->len);
    p->req.data = p;
    struct raft *r = raft_fixture_get(&c->f, i);
    ck_assert_int_eq(raft_apply(r, &p->req, &buf, 1, on_applied), 0);
    return raft_last_index(r);
}

/* ---- tests ---- */

START_TEST(a_snapshot_restores_to_the_same_state)
{
    struct entry_builder e = {0};
    for (uint64_t id = 1; id <= 20; id++)
        add_submit(&e, id);
    add_reserve(&e, 3, 1);
    add_done(&e, 4);
    char want[BROKER_DIGEST_HEX];
    reference_digest(&e, 1, want);

    struct cluster_fsm *a = cluster_fsm_new(&cfg), *b = cluster_fsm_new(&cfg);
    struct raft_fsm *ra = cluster_fsm_raft(a), *rb = cluster_fsm_raft(b);
    void *result;
    struct raft_buffer in = {.base = e.buf, .len = e.len};
    ck_assert_int_eq(ra->apply(ra, &in, &result), 0);
    assert_digest(a, want, "applied");

    struct raft_buffer *bufs;
    unsigned n;
    ck_assert_int_eq(ra->snapshot(ra, &bufs, &n), 0);
    ck_assert_uint_eq(n, 0); /* frozen only: the writing is snapshot_async's */
    ck_assert_int_eq(ra->snapshot_async(ra, &bufs, &n), 0);
    ck_assert_uint_eq(n, 1);
    /* restore owns what it is given on success: hand it a copy. */
    struct raft_buffer copy = {.base = raft_malloc(bufs[0].len), .len = bufs[0].len};
    memcpy(copy.base, bufs[0].base, copy.len);
    ck_assert_int_eq(ra->snapshot_finalize(ra, &bufs, &n), 0);
    ck_assert_int_eq(rb->restore(rb, &copy), 0);
    assert_digest(b, want, "restored");

    struct cluster_fsm_stats st;
    cluster_fsm_stats(b, &st);
    ck_assert_uint_eq(st.restores, 1);
    ck_assert_msg(!st.diverged, "not diverged");
    cluster_fsm_free(a);
    cluster_fsm_free(b);
    entry_reset(&e);
}
END_TEST

/* While a snapshot is written (off the replica thread) the standby stays
 * as it was frozen; entries committed meanwhile apply at the thaw, in
 * order, and a second snapshot waits its turn. */
START_TEST(entries_applied_during_a_snapshot_wait_for_the_thaw)
{
    struct entry_builder first = {0}, second = {0};
    for (uint64_t id = 1; id <= 10; id++)
        add_submit(&first, id);
    add_done(&second, 3);
    add_submit(&second, 11);
    add_done(&second, 11);
    struct entry_builder both[2] = {first, second};
    char before[BROKER_DIGEST_HEX], after[BROKER_DIGEST_HEX];
    reference_digest(&first, 1, before);
    reference_digest(both, 2, after);

    struct cluster_fsm *a = cluster_fsm_new(&cfg), *b = cluster_fsm_new(&cfg);
    struct raft_fsm *ra = cluster_fsm_raft(a), *rb = cluster_fsm_raft(b);
    void *result;
    struct raft_buffer in = {.base = first.buf, .len = first.len};
    ck_assert_int_eq(ra->apply(ra, &in, &result), 0);
    struct raft_buffer *bufs, *busy_bufs;
    unsigned n, busy_n;
    ck_assert_int_eq(ra->snapshot(ra, &bufs, &n), 0);
    in = (struct raft_buffer){.base = second.buf, .len = second.len};
    ck_assert_int_eq(ra->apply(ra, &in, &result), 0);
    assert_digest(a, before, "frozen");
    ck_assert_int_eq(ra->snapshot(ra, &busy_bufs, &busy_n), RAFT_BUSY);
    ck_assert_int_eq(ra->snapshot_async(ra, &bufs, &n), 0);
    struct raft_buffer copy = {.base = raft_malloc(bufs[0].len), .len = bufs[0].len};
    memcpy(copy.base, bufs[0].base, copy.len);
    ck_assert_int_eq(ra->snapshot_finalize(ra, &bufs, &n), 0);
    assert_digest(a, after, "thawed");
    ck_assert_int_eq(rb->restore(rb, &copy), 0);
    assert_digest(b, before, "the snapshot: the state when it was frozen");
    struct cluster_fsm_stats st;
    cluster_fsm_stats(a, &st);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.snapshots, 1);
    ck_assert_msg(!st.diverged, "not diverged");
    cluster_fsm_free(a);
    cluster_fsm_free(b);
    entry_reset(&first);
    entry_reset(&second);
}
END_TEST

START_TEST(a_malformed_snapshot_leaves_the_state_alone)
{
    struct entry_builder e = {0};
    add_submit(&e, 1);
    char want[BROKER_DIGEST_HEX];
    reference_digest(&e, 1, want);
    struct cluster_fsm *a = cluster_fsm_new(&cfg);
    struct raft_fsm *ra = cluster_fsm_raft(a);
    void *result;
    struct raft_buffer in = {.base = e.buf, .len = e.len};
    ck_assert_int_eq(ra->apply(ra, &in, &result), 0);
    /* A record that is framed well but does not decode. */
    struct entry_builder bad = {0};
    ck_assert_int_eq(entry_add(&bad, "\xff\xff", 2), 0);
    struct raft_buffer bb = {.base = bad.buf, .len = bad.len};
    ck_assert_int_eq(ra->restore(ra, &bb), RAFT_MALFORMED);
    ck_assert_int_eq(ra->apply(ra, &bb, &result), RAFT_MALFORMED);
    assert_digest(a, want, "after the bad snapshot and entry");
    struct cluster_fsm_stats st;
    cluster_fsm_stats(a, &st);
    ck_assert_uint_eq(st.entries, 1);
    ck_assert_uint_eq(st.bad_entries, 1);
    entry_reset(&bad);
    entry_reset(&e);
    cluster_fsm_free(a);
}
END_TEST

/* Server 2 is down while the others take snapshots and drop the log it
 * lacks: on its return it can only catch up through a snapshot. */
START_TEST(a_node_that_fell_behind_catches_up_through_a_snapshot)
{
    struct cl c;
    cl_setup(&c);
    for (unsigned i = 0; i < N; i++) {
        raft_set_snapshot_threshold(raft_fixture_get(&c.f, i), 4);
        raft_set_snapshot_trailing(raft_fixture_get(&c.f, i), 1);
    }
    raft_fixture_elect(&c.f, 0);
    raft_fixture_kill(&c.f, 2);
    enum { E = 12 };
    struct entry_builder e[E] = {{0}};
    struct prop p[E];
    memset(p, 0, sizeof p);
    raft_index last = 0;
    for (unsigned k = 0; k < E; k++) {
        add_submit(&e[k], 100 + k);
        if (k > 0)
            add_reserve(&e[k], 100 + k - 1, 1);
        last = propose(&c, 0, &e[k], &p[k]);
        ck_assert(raft_fixture_step_until_applied(&c.f, 0, last, MAX_MS));
    }
    for (unsigned k = 0; k < E; k++)
        ck_assert_msg(p[k].calls == 1 && p[k].status == 0, "entry %u committed once", k);
    struct cluster_fsm_stats st;
    cluster_fsm_stats(c.fsm[0], &st);
    ck_assert_msg(st.snapshots >= 2, "the leader took snapshots (%llu)",
                  (unsigned long long)st.snapshots);

    raft_fixture_revive(&c.f, 2);
    ck_assert_msg(raft_fixture_step_until_applied(&c.f, N, last, MAX_MS), "all caught up");
    cluster_fsm_stats(c.fsm[2], &st);
    ck_assert_msg(st.restores >= 1, "node 2 restored a snapshot");
    char want[BROKER_DIGEST_HEX];
    reference_digest(e, E, want);
    for (unsigned i = 0; i < N; i++)
        assert_digest(c.fsm[i], want, i == 2 ? "restored node" : "node");
    for (unsigned k = 0; k < E; k++)
        entry_reset(&e[k]);
    cl_teardown(&c);
}
END_TEST

static void
isolate(struct cl *c, unsigned i, bool cut)
{
    for (unsigned j = 0; j < N; j++) {
        if (j == i)
            continue;
        if (cut) {
            raft_fixture_saturate(&c->f, i, j);
            raft_fixture_saturate(&c->f, j, i);
        } else {
            raft_fixture_desaturate(&c->f, i, j);
            raft_fixture_desaturate(&c->f, j, i);
        }
    }
}

static bool
leader_is_not(struct raft_fixture *f, void *arg)
{
    unsigned old = *(unsigned *)arg;
    unsigned l = raft_fixture_leader_index(f);
    return l < raft_fixture_n(f) && l != old;
}

/* The leader is cut off with two entries appended but not replicated:
 * they fail with "leadership lost", the new leader's log wins, and every
 * node applies each committed entry once and the failed ones nowhere. */
START_TEST(entries_in_flight_when_leadership_is_lost_fail_and_apply_nowhere)
{
    struct cl c;
    cl_setup(&c);
    raft_fixture_elect(&c.f, 0);
    struct entry_builder a = {0}, b = {0}, d = {0}, x = {0};
    add_submit(&a, 1);
    add_submit(&b, 2);
    add_submit(&x, 3);
    add_reserve(&x, 1, 1);
    add_submit(&d, 4);
    add_done(&d, 1);
    struct prop pa = {.calls = 0}, pb = {.calls = 0}, px = {.calls = 0}, pd = {.calls = 0};
    raft_index ia = propose(&c, 0, &a, &pa);
    ck_assert(raft_fixture_step_until_applied(&c.f, N, ia, MAX_MS));

    isolate(&c, 0, true);
    propose(&c, 0, &b, &pb);
    propose(&c, 0, &x, &px);
    ck_assert_msg(raft_fixture_step_until_state_is(&c.f, 0, RAFT_FOLLOWER, MAX_MS),
                  "the cut-off leader steps down");
    ck_assert_msg(pb.calls == 1 && px.calls == 1, "both in-flight entries answered once");
    ck_assert_int_eq(replica_errno(pb.status), -ECONNRESET);
    ck_assert_int_eq(replica_errno(px.status), -ECONNRESET);

    unsigned old = 0;
    ck_assert_msg(raft_fixture_step_until(&c.f, leader_is_not, &old, MAX_MS), "a new leader");
    isolate(&c, 0, false);
    unsigned l = raft_fixture_leader_index(&c.f);
    raft_index id = propose(&c, l, &d, &pd);
    ck_assert(raft_fixture_step_until_applied(&c.f, N, id, MAX_MS));
    ck_assert_msg(pd.calls == 1 && pd.status == 0, "the new leader's entry committed");
    ck_assert_msg(pb.calls == 1 && px.calls == 1, "no second answer");

    struct entry_builder committed[] = {a, d};
    char want[BROKER_DIGEST_HEX];
    reference_digest(committed, 2, want);
    for (unsigned i = 0; i < N; i++) {
        assert_digest(c.fsm[i], want, "node");
        struct cluster_fsm_stats st;
        cluster_fsm_stats(c.fsm[i], &st);
        ck_assert_msg(st.entries == 2, "node %u applied %llu entries, want 2", i,
                      (unsigned long long)st.entries);
    }
    entry_reset(&a);
    entry_reset(&b);
    entry_reset(&x);
    entry_reset(&d);
    cl_teardown(&c);
}
END_TEST

/* A follower whose standby has a job reserved (by the old leader's
 * worker) becomes leader: the state it serves from has that job back in
 * its queue, the delivery counted, the others as they were. */
START_TEST(a_new_leader_puts_the_old_leaders_reservations_back)
{
    struct cl c;
    cl_setup(&c);
    raft_fixture_elect(&c.f, 0);
    struct entry_builder e = {0};
    add_submit(&e, 1);
    add_submit(&e, 2);
    add_submit(&e, 3);
    add_reserve(&e, 1, 1);
    add_reserve(&e, 2, 1);
    add_done(&e, 2);
    struct prop p = {.calls = 0};
    raft_index i = propose(&c, 0, &e, &p);
    ck_assert(raft_fixture_step_until_applied(&c.f, N, i, MAX_MS));

    raft_fixture_depose(&c.f);
    raft_fixture_elect(&c.f, 1);
    unsigned l = raft_fixture_leader_index(&c.f);
    ck_assert_uint_eq(l, 1);

    /* What broker_start must make of it: job 1 queued again, attempt 1. */
    struct entry_builder requeue = {0};
    struct jrec st = {.type = JREC_STATE};
    st.u.state = (struct jrec_state){.id = 1, .state = JREC_QUEUED, .attempt = 1};
    add(&requeue, &st);
    struct entry_builder both[] = {e, requeue};
    char want[BROKER_DIGEST_HEX], before[BROKER_DIGEST_HEX];
    reference_digest(both, 2, want);
    reference_digest(&e, 1, before);
    ck_assert_msg(strcmp(want, before) != 0, "the requeue changes the state");

    struct ctx *root = ctx_with_cancel(NULL);
    struct broker *b = cluster_fsm_promote(c.fsm[l], &cfg, root);
    ck_assert_ptr_nonnull(b);
    char got[BROKER_DIGEST_HEX];
    ck_assert_int_eq(broker_state_digest(b, got), 0);
    ck_assert_str_eq(got, before);
    broker_start(b);
    ck_assert_int_eq(broker_state_digest(b, got), 0);
    ck_assert_msg(strcmp(got, want) == 0, "promoted state %s, want %s", got, want);
    json_t *jobs = broker_jobs_json(b);
    char *text = json_dumps(jobs, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_msg(json_integer_value(json_object_get(jobs, "reserved")) == 0,
                  "no job reserved after the start: %s", text);
    ck_assert_msg(json_integer_value(json_object_get(jobs, "queued")) == 2,
                  "jobs 1 and 3 queued: %s", text);
    free(text);
    json_decref(jobs);
    /* The standby follows the log, not the new leader's serving state. */
    assert_digest(c.fsm[l], before, "standby");
    broker_free(b);
    ctx_release(root);
    entry_reset(&requeue);
    entry_reset(&e);
    cl_teardown(&c);
}
END_TEST

Suite *
fsm_suite(void)
{
    Suite *s = suite_create("fsm");
    TCase *tc = tcase_create("fixture");
    tcase_add_test(tc, a_snapshot_restores_to_the_same_state);
    tcase_add_test(tc, a_malformed_snapshot_leaves_the_state_alone);
    tcase_add_test(tc, entries_applied_during_a_snapshot_wait_for_the_thaw);
    tcase_add_test(tc, a_node_that_fell_behind_catches_up_through_a_snapshot);
    tcase_add_test(tc, entries_in_flight_when_leadership_is_lost_fail_and_apply_nowhere);
    tcase_add_test(tc, a_new_leader_puts_the_old_leaders_reservations_back);
    suite_add_tcase(s, tc);
    return s;
}
