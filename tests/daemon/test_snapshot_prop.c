/* The state machine's snapshot property, as a unit property over random
 * record sequences: for any log R and any cut k, applying the snapshot of
 * the state R[0..k) made, then R[k..), gives the state R gives (equal
 * state digests), and restoring a snapshot gives back the state it was
 * taken of. The sequences use every record type a live broker writes
 * (SUBMIT with delays, deadlines and parents, RESERVE, STATE queued /
 * delayed / dead, FINAL done / cancelled / expired, DROP, QUEUE, MOVE);
 * the snapshots add JOB and ORDER. CHANQ_SNAPSHOT_SEED=N replays a seed. */
#include "chanq_config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/broker.h"
#include "daemon/jrec.h"

Suite *snapshot_prop_suite(void);

enum { MAX_JOBS = 600, MAX_RECS = 4000, NQUEUES = 3, KEPT = 25 };

static const char *const queue_names[NQUEUES] = {"a", "b", "c"};

enum mstate { M_NONE, M_DELAYED, M_QUEUED, M_RESERVED, M_DEAD, M_FINAL, M_GONE };

/* The test's own small model of which transitions are legal. */
struct model {
    unsigned seed;
    enum mstate st[MAX_JOBS];
    int queue[MAX_JOBS];
    unsigned attempt[MAX_JOBS];
    int njobs;
    uint8_t *recs[MAX_RECS]; /* the log, encoded */
    size_t lens[MAX_RECS];
    int nrecs;
};

static unsigned
pick(struct model *m, unsigned n)
{
    return (unsigned)rand_r(&m->seed) % n;
}

static void
emit(struct model *m, const struct jrec *r)
{
    size_t n = jrec_size(r);
    ck_assert_msg(n > 0, "a valid %s record", jrec_type_name(r->type));
    m->recs[m->nrecs] = malloc(n);
    ck_assert_int_eq(jrec_encode(r, m->recs[m->nrecs], n), (int)n);
    m->lens[m->nrecs++] = n;
}

static uint64_t
job_id(int i)
{
    return 1000 + (uint64_t)i;
}

/* A random job in one of the states in mask (bit per enum mstate), or -1. */
static int
job_in(struct model *m, unsigned mask)
{
    if (m->njobs == 0)
        return -1;
    int start = (int)pick(m, (unsigned)m->njobs);
    for (int k = 0; k < m->njobs; k++) {
        int i = (start + k) % m->njobs;
        if (mask & (1u << m->st[i]))
            return i;
    }
    return -1;
}

#define LIVE ((1u << M_DELAYED) | (1u << M_QUEUED) | (1u << M_RESERVED))

static void
gen_submit(struct model *m)
{
    if (m->njobs == MAX_JOBS)
        return;
    int i = m->njobs++;
    int parent = pick(m, 3) == 0 ? job_in(m, LIVE | (1u << M_DEAD) | (1u << M_FINAL)) : -1;
    char payload[32];
    snprintf(payload, sizeof payload, "{\"n\":%d}", i);
    struct jrec r = {.type = JREC_SUBMIT};
    r.u.submit = (struct jrec_submit){
        .id = job_id(i),
        .queue = queue_names[m->queue[i] = (int)pick(m, NQUEUES)],
        .queue_len = 1,
        .payload = payload,
        .payload_len = strlen(payload),
        .ttr_ms = 1000 + pick(m, 5000),
        .max_attempts = 1 + pick(m, 4),
        .created_ms = 1700000000000 + i,
        .deadline_ms = pick(m, 4) == 0 ? 1800000000000 + i : 0,
        .due_ms = pick(m, 4) == 0 ? 1700000100000 + i : 0,
        .parent_id = parent >= 0 ? job_id(parent) : 0,
    };
    /* Idempotency keys on some, from a small set: a later submit may take
     * over a key (the snapshot must say who holds it). */
    char key[16];
    if (pick(m, 2) == 0) {
        snprintf(key, sizeof key, "k%u", pick(m, 40));
        r.u.submit.key = key;
        r.u.submit.key_len = strlen(key);
    }
    if (pick(m, 3) == 0)
        r.u.submit.priority = pick(m, 10); /* a level; the snapshot keeps it */
    m->st[i] = r.u.submit.due_ms ? M_DELAYED : M_QUEUED;
    emit(m, &r);
}

static void
gen_reserve(struct model *m)
{
    int i = job_in(m, 1u << M_QUEUED);
    if (i < 0)
        return;
    struct jrec r = {.type = JREC_RESERVE};
    r.u.reserve = (struct jrec_reserve){.id = job_id(i), .attempt = ++m->attempt[i]};
    m->st[i] = M_RESERVED;
    emit(m, &r);
}

static void
gen_state(struct model *m)
{
    static const char *const errors[] = {"", "boom", "ttr expired", "connection lost"};
    int i = job_in(m, (1u << M_RESERVED) | (1u << M_DELAYED) | (1u << M_DEAD));
    if (i < 0)
        return;
    struct jrec r = {.type = JREC_STATE};
    const char *e = errors[pick(m, 4)];
    r.u.state = (struct jrec_state){.id = job_id(i), .state = JREC_QUEUED,
                                    .attempt = m->attempt[i], .error = e, .error_len = strlen(e)};
    if (m->st[i] == M_RESERVED) {
        unsigned k = pick(m, 4);
        if (k == 0) {
            r.u.state.state = JREC_DEAD;
        } else if (k == 1) {
            r.u.state.state = JREC_DELAYED;
            r.u.state.due_ms = 1700000200000 + pick(m, 1000);
        } else if (k == 2 && m->attempt[i] > 0) {
            r.u.state.attempt = --m->attempt[i]; /* a release */
        }
    } else if (m->st[i] == M_DEAD) {
        r.u.state.attempt = m->attempt[i] = 0; /* a kick */
    }
    m->st[i] = r.u.state.state == JREC_DEAD      ? M_DEAD
               : r.u.state.state == JREC_DELAYED ? M_DELAYED
                                                 : M_QUEUED;
    emit(m, &r);
}

static void
gen_final(struct model *m)
{
    bool done = pick(m, 2) == 0;
    int i = job_in(m, done ? 1u << M_RESERVED : LIVE);
    if (i < 0)
        return;
    struct jrec r = {.type = JREC_FINAL};
    r.u.final = (struct jrec_final){
        .id = job_id(i),
        .state = done ? JREC_DONE : pick(m, 2) ? JREC_CANCELLED : JREC_EXPIRED,
        .result = done && pick(m, 2) ? "{\"r\":1}" : NULL,
    };
    r.u.final.result_len = r.u.final.result ? strlen(r.u.final.result) : 0;
    m->st[i] = M_FINAL;
    emit(m, &r);
}

static void
gen_drop(struct model *m)
{
    int i = job_in(m, LIVE);
    if (i < 0)
        return;
    struct jrec r = {.type = JREC_DROP};
    r.u.drop.id = job_id(i);
    m->st[i] = M_GONE;
    emit(m, &r);
}

static void
gen_move(struct model *m)
{
    int i = job_in(m, 1u << M_QUEUED);
    if (i < 0)
        return;
    struct jrec r = {.type = JREC_MOVE};
    m->queue[i] = (int)pick(m, NQUEUES);
    r.u.move = (struct jrec_move){.id = job_id(i), .queue = queue_names[m->queue[i]],
                                  .queue_len = 1};
    emit(m, &r);
}

static void
gen_queue(struct model *m)
{
    struct jrec r = {.type = JREC_QUEUE};
    r.u.queue = (struct jrec_queue){
        .name = queue_names[pick(m, NQUEUES)],
        .name_len = 1,
        .capacity = 10 + pick(m, 3),
        .ttr_ms = 1000 * (1 + pick(m, 3)),
        .max_attempts = 1 + pick(m, 3),
        .paused = pick(m, 4) == 0,
        .closed = pick(m, 10) == 0,
    };
    /* Delivery limits, on some: the snapshot must carry them. */
    if (pick(m, 2) == 0)
        r.u.queue.concurrency = 1 + pick(m, 5);
    if (pick(m, 2) == 0) {
        r.u.queue.rate = 1 + pick(m, 100);
        r.u.queue.rate_per_ms = 1000 * (1 + pick(m, 3));
        r.u.queue.burst = 1 + pick(m, 10);
    }
    emit(m, &r);
}

static void
generate(struct model *m, int n)
{
    void (*const gens[])(struct model *) = {gen_submit, gen_submit, gen_submit, gen_reserve,
                                            gen_reserve, gen_state,  gen_state,  gen_final,
                                            gen_drop,    gen_move,   gen_queue};
    while (m->nrecs < n)
        gens[pick(m, sizeof gens / sizeof gens[0])](m);
}

static struct broker *
standby(void)
{
    struct broker_config cfg = {
        .defaults = {.capacity = 100, .ttr_ms = 30000, .max_attempts = 3},
        .max_queues = 16,
        .max_payload_bytes = 1 << 20,
        .max_finished = KEPT,
        .key_window_ms = 3600 * 1000,
        .max_keys_kept = 1000,
    };
    struct broker *b = broker_new_standby(&cfg);
    ck_assert_msg(b != NULL, "broker_new_standby");
    return b;
}

static void
apply_range(struct broker *b, const struct model *m, int from, int to)
{
    for (int i = from; i < to; i++)
        ck_assert_msg(broker_replay_apply(b, m->recs[i], m->lens[i]) == 0, "record %d applies", i);
}

/* emit callback: applies each snapshot record to another standby. */
static int
restore(void *arg, const void *rec, size_t len)
{
    return broker_replay_apply(arg, rec, len);
}

static void
digest(struct broker *b, char *out)
{
    ck_assert_msg(broker_state_digest(b, out) == 0, "broker_state_digest");
}

static void
check_seed(unsigned seed, int nrecs)
{
    struct model *m = calloc(1, sizeof *m);
    m->seed = seed;
    generate(m, nrecs);
    struct broker *full = standby();
    apply_range(full, m, 0, m->nrecs);
    char want[BROKER_DIGEST_HEX], got[BROKER_DIGEST_HEX], cut_digest[BROKER_DIGEST_HEX];
    digest(full, want);
    for (int round = 0; round < 4; round++) {
        int k = (int)(rand_r(&seed) % (unsigned)(m->nrecs + 1));
        struct broker *prefix = standby(), *restored = standby(), *twice = standby();
        apply_range(prefix, m, 0, k);
        digest(prefix, cut_digest);
        ck_assert_int_eq(broker_snapshot_write(prefix, restore, restored), 0);
        digest(restored, got);
        ck_assert_msg(strcmp(got, cut_digest) == 0,
                      "seed %u: the snapshot at record %d restores another state", m->seed, k);
        ck_assert_int_eq(broker_snapshot_write(restored, restore, twice), 0);
        digest(twice, got);
        ck_assert_msg(strcmp(got, cut_digest) == 0,
                      "seed %u: a snapshot of a snapshot at %d differs", m->seed, k);
        apply_range(restored, m, k, m->nrecs);
        digest(restored, got);
        ck_assert_msg(strcmp(got, want) == 0,
                      "seed %u: snapshot at record %d of %d, then the rest: %.12s, not %.12s",
                      m->seed, k, m->nrecs, got, want);
        broker_free(prefix);
        broker_free(restored);
        broker_free(twice);
    }
    broker_free(full);
    for (int i = 0; i < m->nrecs; i++)
        free(m->recs[i]);
    free(m);
}

START_TEST(a_snapshot_at_any_record_then_the_rest_gives_the_same_state)
{
    const char *env = getenv("CHANQ_SNAPSHOT_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10)
                        : (unsigned)time(NULL) * 7919u + (unsigned)_i * 104729u;
    int nrecs = 50 + (int)(seed % (MAX_RECS - 50));
    check_seed(seed, nrecs);
    if (_i == 0)
        fprintf(stderr, "snapshot property: seed %u (%d records) and more, same states\n", seed,
                nrecs);
}
END_TEST

Suite *
snapshot_prop_suite(void)
{
    Suite *s = suite_create("snapshot_property");
    TCase *tc = tcase_create("random_logs");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, a_snapshot_at_any_record_then_the_rest_gives_the_same_state, 0, 40);
    suite_add_tcase(s, tc);
    return s;
}
