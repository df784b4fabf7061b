/* The broker's state machine: the one function that turns a journal record
 * into lifecycle transitions (daemon/job.h) and queue changes. The live
 * path (an op commits a record: daemon/commit.h), the replay at start-up
 * and a snapshot's restore all apply records through it, so that a log of
 * records determines the state. */
#ifndef CHANQ_DAEMON_APPLY_H
#define CHANQ_DAEMON_APPLY_H

#include <stdbool.h>

struct broker;
struct holder;
struct jrec;

/* What the live path knows beyond the record. A replay passes NULL. */
struct apply_how {
    struct holder *holder; /* RESERVE: the connection that gets the job */
    bool caller_places;    /* SUBMIT: the submit op puts the job into a channel */
};

/* Applies r to b's state. Returns 0; or -1 when r asks for a transition
 * the lifecycle does not allow, or memory ran out (nothing changed; logged).
 * While b is not serving (a replay, a standby state), a record for a job
 * that is not there or a transition that is not allowed is skipped with a
 * warning and 0 is returned: the journal may name jobs that a compaction
 * forgot. Lock held. */
int apply_record(struct broker *b, const struct jrec *r, const struct apply_how *how);

#endif
