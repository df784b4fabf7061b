/* Whom a Raft leader heard from lately: libraft 0.15 checks a majority's
 * contact only once per election timeout, so a leader cut off from the
 * others keeps leading for one to two timeouts. The replica records each
 * answer a voter sends the leader (an AppendEntries result) here and asks,
 * several times per timeout, whether a majority answered within a window
 * shorter than the timeout; when not, it steps down (replica.c), so a
 * cut-off leader stops before the others elect a new one.
 *
 * Plain bookkeeping (no libraft, no clock: callers pass the time), owned
 * and called by one thread, the replica's. */
#ifndef CHANQ_DAEMON_CLUSTER_CONTACT_H
#define CHANQ_DAEMON_CLUSTER_CONTACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct contact;

/* A tracker for up to max_members members; NULL when out of memory. */
struct contact *contact_new(size_t max_members);
void contact_free(struct contact *c);

/* This node became the leader at now_ms: every member counts as heard
 * then (a new leader has a window's grace before its first answers). */
void contact_lead(struct contact *c, uint64_t now_ms);

/* Member id answered this node at now_ms. A member beyond max_members
 * that were ever heard is ignored (never counted as in contact). */
void contact_heard(struct contact *c, uint64_t id, uint64_t now_ms);

/* Whether a majority of the voters (this node, self, counts as in
 * contact) answered within the last window_ms. True when self is the
 * only voter, or there is none. */
bool contact_quorum(const struct contact *c, const uint64_t *voters, size_t nvoters,
                    uint64_t self, uint64_t now_ms, uint64_t window_ms);

#endif
