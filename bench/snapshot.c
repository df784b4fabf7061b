/* What a cluster snapshot costs: the replicated state machine
 * (daemon/cluster/fsm.h) holding N queued jobs of a 100-byte payload is
 * frozen (on the replica thread: all it stops for), written out as a
 * snapshot (on libuv's thread pool, while replication goes on), then
 * restored into a fresh one (a follower that fell behind, or a restart),
 * and each step is timed.
 *
 * Usage: bench/snapshot [jobs ...]   (default 10000 100000 1000000)
 * Prints one line per size: jobs, freeze ms, write ms, restore ms, bytes. */
#include "chanq_config.h"

#include <raft.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/broker.h"
#include "daemon/cluster/entry.h"
#include "daemon/cluster/fsm.h"
#include "daemon/jrec.h"

enum { BATCH = 1000 };

static double
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
add_submit(struct entry_builder *e, uint64_t id, const char *payload)
{
    struct jrec r = {.type = JREC_SUBMIT};
    r.u.submit = (struct jrec_submit){.id = id, .queue = "q", .queue_len = 1,
                                      .payload = payload, .payload_len = strlen(payload),
                                      .ttr_ms = 30000, .max_attempts = 3,
                                      .created_ms = 1000 + (int64_t)id};
    uint8_t buf[512];
    int n = jrec_encode(&r, buf, sizeof buf);
    return n > 0 ? entry_add(e, buf, (size_t)n) : -1;
}

/* Applies jobs submits, BATCH per entry, as committed entries would be. */
static int
fill(struct raft_fsm *rf, size_t jobs, const char *payload)
{
    for (size_t done = 0; done < jobs;) {
        struct entry_builder e = {0};
        for (size_t i = 0; i < BATCH && done < jobs; i++, done++)
            if (add_submit(&e, done + 1, payload) < 0)
                return -1;
        struct raft_buffer in = {.base = e.buf, .len = e.len};
        void *result;
        int rc = rf->apply(rf, &in, &result);
        entry_reset(&e);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static int
measure(size_t jobs, const struct broker_config *cfg, const char *payload)
{
    struct cluster_fsm *a = cluster_fsm_new(cfg), *b = cluster_fsm_new(cfg);
    if (!a || !b || fill(cluster_fsm_raft(a), jobs, payload) < 0) {
        fprintf(stderr, "snapshot: cannot build a state of %zu jobs\n", jobs);
        return -1;
    }
    struct raft_fsm *ra = cluster_fsm_raft(a), *rb = cluster_fsm_raft(b);
    struct raft_buffer *bufs;
    unsigned n;
    double t0 = now_ms();
    if (ra->snapshot(ra, &bufs, &n) != 0)
        return -1;
    double tf = now_ms();
    if (ra->snapshot_async(ra, &bufs, &n) != 0 || n != 1)
        return -1;
    double t1 = now_ms();
    size_t bytes = bufs[0].len;
    struct raft_buffer copy = {.base = raft_malloc(bytes), .len = bytes};
    memcpy(copy.base, bufs[0].base, bytes);
    ra->snapshot_finalize(ra, &bufs, &n);
    double t2 = now_ms();
    if (rb->restore(rb, &copy) != 0)
        return -1;
    double t3 = now_ms();
    printf("%zu jobs: freeze %.3f ms (replica thread), write %.1f ms (thread pool), "
           "restore %.1f ms, %zu bytes\n",
           jobs, tf - t0, t1 - tf, t3 - t2, bytes);
    cluster_fsm_free(a);
    cluster_fsm_free(b);
    return 0;
}

int
main(int argc, char **argv)
{
    static const size_t sizes[] = {10000, 100000, 1000000};
    char payload[101];
    memset(payload, 'x', 100);
    payload[0] = '"';
    payload[99] = '"';
    payload[100] = '\0';
    struct broker_config cfg = {
        .defaults = {.capacity = 2000000, .ttr_ms = 30000, .max_attempts = 3},
        .submit_wait_ms = 1000,
        .max_queues = 100,
        .max_payload_bytes = 1 << 20,
        .max_finished = 100,
    };
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && rc == 0; i++)
            rc = measure((size_t)strtoull(argv[i], NULL, 10), &cfg, payload);
    } else {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && rc == 0; i++)
            rc = measure(sizes[i], &cfg, payload);
    }
    return rc == 0 ? 0 : 1;
}
