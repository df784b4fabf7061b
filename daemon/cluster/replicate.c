/* Batch -> entry -> replica_propose. The journal's writer goroutine calls
 * this; replica_propose never blocks, and its answer (on the replica
 * thread) is passed straight to the journal as the batch's settlement. */
#include "chanq_config.h"

#include "daemon/cluster/replicate.h"

#include <errno.h>

#include "daemon/cluster/entry.h"
#include "daemon/cluster/replica.h"

/* The batch's records as one entry in b (empty on entry): 0 or -ENOMEM. */
static int
batch_entry(const void *frames, size_t len, struct entry_builder *b)
{
    int rc = journal_frames_each(frames, len, entry_emit, b);
    if (rc == 0)
        rc = entry_seal(b);
    if (rc < 0)
        entry_reset(b);
    return rc;
}

static int
replicate(void *arg, const void *frames, size_t len, journal_settled_fn *done, void *token)
{
    struct entry_builder b = {0};
    int rc = batch_entry(frames, len, &b);
    /* Ownership of the buffer passes to the replica, also on failure. */
    return rc < 0 ? rc : replica_propose(arg, b.buf, b.len, done, token);
}

static int
replicate_via(void *arg, const void *frames, size_t len, journal_settled_fn *done, void *token)
{
    const struct cluster_proposer *p = arg;
    struct entry_builder b = {0};
    int rc = batch_entry(frames, len, &b);
    return rc < 0 ? rc : p->propose(p->arg, b.buf, b.len, done, token);
}

void
cluster_replicator_init(struct journal_replicator *out, struct replica *r)
{
    *out = (struct journal_replicator){.replicate = replicate, .arg = r};
}

void
cluster_replicator_init_proposer(struct journal_replicator *out, struct cluster_proposer *p)
{
    *out = (struct journal_replicator){.replicate = replicate_via, .arg = p};
}
